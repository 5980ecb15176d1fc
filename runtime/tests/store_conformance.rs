//! The shared store conformance suite ([`sluice::store::conformance`], feature
//! `testkit`) run against
//! the sled backend: one test per case, each in a fresh temporary directory.
//!
//! Run: `cargo test -p sluice --test store_conformance`.

use sluice::clock::SharedClock;
use sluice::store::conformance::Harness;
use sluice::store::{EmbeddedStore, StoreConfig, StoreResult};

/// A sled store in a temporary directory that lives as long as the case.
struct EmbeddedHarness {
    dir: tempfile::TempDir,
}

impl EmbeddedHarness {
    fn new() -> EmbeddedHarness {
        EmbeddedHarness {
            dir: tempfile::tempdir().expect("temporary directory"),
        }
    }
}

impl Harness for EmbeddedHarness {
    type Store = EmbeddedStore;

    async fn open(
        &mut self,
        config: StoreConfig,
        clock: SharedClock,
    ) -> StoreResult<EmbeddedStore> {
        EmbeddedStore::open(self.dir.path(), config, clock)
    }

    /// The embedded store's files belong to one process: a second instance
    /// is a second handle on the open store.
    async fn open_peer(
        &mut self,
        _config: StoreConfig,
        _clock: SharedClock,
        first: &EmbeddedStore,
    ) -> StoreResult<EmbeddedStore> {
        Ok(first.clone())
    }

    const SHARED_ACROSS_PROCESSES: bool = false;
}

sluice::store_conformance_tests!(EmbeddedHarness::new());
