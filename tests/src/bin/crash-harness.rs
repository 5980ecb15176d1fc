//! `crash-harness`: runs the crash harness ([`sluice_tests::crash`]) once and
//! prints its figures; exits 1 if any promise broke.
//!
//! ```text
//! crash-harness [--kills 200] [--producers 4] [--seed 1] [--min-life-ms 100]
//!               [--max-life-ms 900] [--data-dir DIR]
//! ```
//!
//! Run it with `scripts/crash.sh` (`make crash`), which builds what it needs.

use std::path::PathBuf;

use sluice_tests::crash::{CrashConfig, run};

fn main() {
    let mut config = CrashConfig {
        kills: 200,
        ..CrashConfig::default()
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || {
            args.next()
                .unwrap_or_else(|| usage(&format!("{flag} needs a value")))
        };
        let number = |v: String| -> u64 {
            v.parse()
                .unwrap_or_else(|_| usage(&format!("{v:?} is not a number")))
        };
        match flag.as_str() {
            "--kills" => config.kills = number(value()) as usize,
            "--producers" => config.producers = number(value()) as usize,
            "--seed" => config.seed = number(value()),
            "--min-life-ms" => config.min_life_ms = number(value()),
            "--max-life-ms" => config.max_life_ms = number(value()),
            "--data-dir" => config.data_dir = Some(PathBuf::from(value())),
            "-h" | "--help" => usage(""),
            other => usage(&format!("unknown option {other}")),
        }
    }
    if config.min_life_ms > config.max_life_ms || config.producers == 0 {
        usage("need --min-life-ms <= --max-life-ms and at least one producer");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    println!(
        "crash harness: {} kills, {} producers, seed {}, lives {}..={} ms",
        config.kills, config.producers, config.seed, config.min_life_ms, config.max_life_ms
    );
    let report = runtime.block_on(run(config));
    println!("{report}");
    if !report.violations.is_empty() {
        std::process::exit(1);
    }
}

fn usage(problem: &str) -> ! {
    if !problem.is_empty() {
        eprintln!("error: {problem}");
    }
    eprintln!(
        "usage: crash-harness [--kills N] [--producers N] [--seed N] [--min-life-ms MS] \
         [--max-life-ms MS] [--data-dir DIR]"
    );
    std::process::exit(2);
}
