//! The `sluice` binary: parses the command line, runs `serve` or a client
//! command, and turns any error into one `error: ...` line on stderr.

use std::process::ExitCode;

use clap::Parser;
use sluice::cli::{Cli, Command};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(args).await.map(|()| ExitCode::SUCCESS),
        command => sluice::cli::execute(command).await,
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Placeholder until `sluice::serve::run` lands.
async fn serve(_args: sluice::serve::ServeArgs) -> anyhow::Result<()> {
    anyhow::bail!("`sluice serve` is not yet available in this build")
}
