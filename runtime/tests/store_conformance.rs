//! The shared store conformance suite ([`sluice::store::conformance`], feature
//! `testkit`) run against
//! the sled backend: one test per case, each in a fresh temporary directory.
//!
//! Run: `cargo test -p sluice --test store_conformance`.

use sluice::clock::SharedClock;
use sluice::store::conformance::Harness;
use sluice::store::{SledStore, StoreConfig, StoreResult};

/// A sled store in a temporary directory that lives as long as the case.
struct SledHarness {
    dir: tempfile::TempDir,
}

impl SledHarness {
    fn new() -> SledHarness {
        SledHarness {
            dir: tempfile::tempdir().expect("temporary directory"),
        }
    }
}

impl Harness for SledHarness {
    type Store = SledStore;

    fn open(&mut self, config: StoreConfig, clock: SharedClock) -> StoreResult<SledStore> {
        SledStore::open(self.dir.path(), config, clock)
    }
}

sluice::store_conformance_tests!(SledHarness::new());
