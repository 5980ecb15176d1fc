//! The `sluice` binary: parses the command line, runs `serve` or a client
//! command, and turns any error into one `error: ...` line on stderr.

use std::process::ExitCode;

use clap::Parser;
use sluice::cli::{Cli, Command};

/// mimalloc (feature `mimalloc`, on by default, built without transparent
/// huge pages): with glibc's malloc the server spent a quarter of its CPU in
/// `malloc`/`free`, and a third in the slow path once the in-memory store
/// reached gigabytes. W1 drains ~2× faster with it; without huge pages its
/// peak RSS matches glibc's (docs/decisions.md).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    quiet_on_closed_stdout();
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

/// `sluice status ID | head -1` closes stdout early; printing then panics with
/// "Broken pipe". Exit quietly with 141 (128 + SIGPIPE), as other tools do,
/// instead of printing a panic.
fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}
