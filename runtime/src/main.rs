//! The `sluice` binary: parses the command line, runs `serve` or a client
//! command, and turns any error into one `error: ...` line on stderr.

use std::process::ExitCode;

use clap::Parser;
use sluice::cli::{Cli, Command};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => sluice::serve::run(args).await.map(|()| ExitCode::SUCCESS),
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
