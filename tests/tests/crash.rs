//! The reduced crash run of CI: the real `sluice serve`, SIGKILLed at 50
//! random moments under a mixed workload, then the whole history checked (see
//! `sluice_tests::crash`). `SLUICE_CRASH_KILLS` changes the number of kills;
//! the long run is `scripts/crash.sh` (docs/crash-testing.md).

use sluice_tests::crash::{CrashConfig, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_loses_nothing_acknowledged() {
    let kills = std::env::var("SLUICE_CRASH_KILLS")
        .ok()
        .and_then(|k| k.parse().ok())
        .unwrap_or(50);
    let seed = std::env::var("SLUICE_CRASH_SEED")
        .ok()
        .and_then(|k| k.parse().ok())
        .unwrap_or_else(rand::random);
    let report = run(CrashConfig {
        kills,
        seed,
        ..CrashConfig::default()
    })
    .await;
    println!("crash run, seed {seed}:\n{report}");
    assert!(
        report.violations.is_empty(),
        "broken promises (seed {seed}):\n{report}"
    );
    assert_eq!(report.kills, kills);
    assert!(report.messages > 0 && report.interrupted <= report.attempts.values().sum());
}
