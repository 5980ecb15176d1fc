//! The sled backend (placeholder until the implementation lands).
use std::path::Path;
use std::sync::Arc;

use super::{StoreConfig, StoreResult};
use crate::clock::Clock;

/// The embedded store on sled 0.34.
#[derive(Debug)]
pub struct SledStore;

impl SledStore {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path, config: StoreConfig, clock: Arc<dyn Clock>) -> StoreResult<SledStore> {
        let _ = (dir, config, clock);
        unimplemented!()
    }
}
