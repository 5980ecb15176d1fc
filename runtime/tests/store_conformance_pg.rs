//! The shared store conformance suite ([`sluice::store::conformance`], feature
//! `testkit`) run against the PostgreSQL backend: the same cases as the
//! embedded store's, one test per case, each in a schema of its own on the
//! server named by `SLUICE_TEST_PG_URL` (`scripts/pg.sh start` runs a private
//! one; `make test` does that itself).
//!
//! Without `SLUICE_TEST_PG_URL`, each case fails when `CI=true` (a CI run
//! must not pass without the database) and is skipped with a message
//! otherwise.
//!
//! Run: `eval "$(scripts/pg.sh env)"; cargo test -p sluice --test store_conformance_pg`.

use std::time::Duration;

use sluice::clock::SharedClock;
use sluice::store::conformance::Harness;
use sluice::store::{PgOptions, PgStore, PgTime, StoreConfig, StoreResult};

/// A PostgreSQL store in a fresh schema that lives as long as the case; a
/// restart opens the same schema under the same runner id.
struct PgHarness {
    url: String,
    schema: String,
}

impl PgHarness {
    /// `None` (after saying why) when no test database is configured outside CI.
    fn new() -> Option<PgHarness> {
        let url = match std::env::var("SLUICE_TEST_PG_URL") {
            Ok(url) if !url.is_empty() => url,
            _ => {
                assert!(
                    std::env::var("CI").as_deref() != Ok("true"),
                    "SLUICE_TEST_PG_URL is not set: CI must run the PostgreSQL suites \
                     (scripts/test.sh starts a server with scripts/pg.sh)"
                );
                eprintln!(
                    "SKIPPED: SLUICE_TEST_PG_URL is not set; run `scripts/pg.sh start` and \
                     `eval \"$(scripts/pg.sh env)\"` to run the PostgreSQL conformance suite"
                );
                return None;
            }
        };
        let schema = format!("t_{}", uuid::Uuid::now_v7().simple());
        Some(PgHarness { url, schema })
    }

    /// Options for runner `runner_id` on this harness's schema, time from
    /// `clock`. The polling fallback is an hour, so a case sees a wake across
    /// instances only if the notification carried it.
    fn options(&self, runner_id: &str, clock: SharedClock) -> PgOptions {
        PgOptions {
            url: self.url.clone(),
            schema: self.schema.clone(),
            pool_size: 8,
            runner_id: runner_id.into(),
            time: PgTime::Injected(clock),
            poll_fallback: Duration::from_secs(3600),
        }
    }
}

impl Harness for PgHarness {
    type Store = PgStore;

    async fn open(&mut self, config: StoreConfig, clock: SharedClock) -> StoreResult<PgStore> {
        PgStore::open(self.options("runner-a", clock), config).await
    }

    /// A second runner on the same schema.
    async fn open_peer(
        &mut self,
        config: StoreConfig,
        clock: SharedClock,
        _first: &PgStore,
    ) -> StoreResult<PgStore> {
        PgStore::open(self.options("runner-b", clock), config).await
    }

    const SHARED_ACROSS_PROCESSES: bool = true;
}

sluice::store_conformance_tests!(match PgHarness::new() {
    Some(h) => h,
    None => return,
});
