//! The multi-runner fault test: three `sluice serve` processes on one
//! PostgreSQL database under the crash harness's mixed workload; runners
//! SIGKILLed at random moments and restarted, the database restarted once,
//! one runner cut off the network and healed; then the whole history checked
//! (see `sluice_tests::crash::pg`, docs/crash-testing.md).
//!
//! Needs the private cluster of `scripts/pg.sh` (`SLUICE_TEST_PG_URL`; under
//! `CI=true` a missing URL fails) and root for the network namespace (under
//! `CI=true` its absence fails; otherwise the cut is skipped, and said so).
//! `SLUICE_PG_FAULT_KILLS` sets the number of kills (default 8; `make crash`
//! runs 60), `SLUICE_PG_FAULT_SEED` the seed.

use sluice_tests::crash::pg::{Cut, PgFaultConfig, run};

fn env<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runners_killed_cut_off_and_a_database_restart_lose_nothing() {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let Ok(url) = std::env::var("SLUICE_TEST_PG_URL") else {
        assert!(
            !ci,
            "SLUICE_TEST_PG_URL is not set: run scripts/pg.sh start; eval \"$(scripts/pg.sh env)\""
        );
        eprintln!("SLUICE_TEST_PG_URL is not set: skipping (scripts/pg.sh start)");
        return;
    };
    let seed = env("SLUICE_PG_FAULT_SEED").unwrap_or_else(rand::random);
    let defaults = PgFaultConfig::default();
    let report = run(PgFaultConfig {
        url,
        kills: env("SLUICE_PG_FAULT_KILLS").unwrap_or(defaults.kills),
        seed,
        cut: if ci { Cut::Required } else { Cut::IfAvailable },
        ..defaults
    })
    .await;
    println!("multi-runner fault run, seed {seed}:\n{report}");
    assert!(
        report.base.violations.is_empty(),
        "broken promises (seed {seed}):\n{report}"
    );
    assert!(
        report.base.messages > 0,
        "nothing was acknowledged:\n{report}"
    );
}
