//! The conformance suite every [`Store`] backend runs: a test kit, compiled only
//! for sluice's own tests and with feature `testkit`, never into the release
//! library.
//!
//! # Plugging a backend in
//! A backend implements the small [`Harness`] trait (open the store at a fixed
//! place, so that a [`Ctx::restart`] drops it and opens it again at the same
//! place) and invokes [`store_conformance_tests!`](crate::store_conformance_tests)
//! once in an integration test, which expands to one `#[test]` per case, named
//! after the case:
//!
//! ```ignore
//! struct EmbeddedHarness(tempfile::TempDir);
//! impl Harness for EmbeddedHarness {
//!     type Store = EmbeddedStore;
//!     async fn open(&mut self, config: StoreConfig, clock: SharedClock) -> StoreResult<EmbeddedStore> {
//!         EmbeddedStore::open(self.0.path(), config, clock)
//!     }
//! }
//! sluice::store_conformance_tests!(EmbeddedHarness(tempfile::tempdir().unwrap()));
//! ```
//!
//! Each case is an `async fn(Ctx<H>)`: [`run`] gives it a fresh [`Ctx`] (the
//! harness, the open store and a [`ManualClock`] at
//! [`T0`](helpers::T0)) on a multi-threaded tokio runtime. No case sleeps. Where
//! the contract leaves a value open (backoff jitter, whether a released lease
//! waits a backoff) the cases check bounds, not one value.
//!
//! # The cases, one file per verb group
//! | file | verbs and guarantees |
//! | --- | --- |
//! | [`handlers`] | `put_handler`, `handler(s)`, `module`, `remove_handler`, name and policy checks, `stats` |
//! | [`enqueue`] | enqueue: fan-out, batches, validation, idempotency keys, backpressure |
//! | [`lease`] | lease, extend, complete, fail, fencing of stale leases, the policy's backoff |
//! | [`dlq`] | dead letters: listing, replay, purge, `replay_since` |
//! | [`query`] | `query_deliveries`: by state per handler, ids, keys, topic, outcome, time; paging |
//! | [`upkeep`] | promote due, rescue expired, prune |
//! | [`modules`] | module garbage collection by prune: removed, re-registered and shared handlers' modules, retained history, the grace, restarts, a registration racing two instances |
//! | [`outbox`] | the transactional outbox |
//! | [`ordering`] | per-key ordering |
//! | [`restart`] | durability across restart, leases released on open, group commit, signals |
//! | [`schedules`] | schedules: firing with the cursor, catch-up and overlap policies, pause, trigger, start/end, used keys, stale ticks, two instances ticking at once |
//! | [`schedule_dst`] | schedules at real daylight-saving transitions (London, New York) |
//! | [`instances`] | two instances on one place: wakes across instances, no double lease, a restart releases only its own leases |
//! | [`helpers`] | what the cases share, also used by the model, crash and integration tests |
//!
//! Each group file owns its part of the case list: it ends with a hidden macro
//! naming its cases, right below them, so a new case is one function and one
//! name in one file. A unit test checks that every `pub async fn` of a group
//! file is in its list.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::{Store, StoreConfig, StoreResult};
use crate::clock::{Clock, ManualClock, SharedClock, Timestamp};

pub mod dlq;
pub mod enqueue;
pub mod fate;
pub mod handlers;
pub mod helpers;
pub mod instances;
pub mod lease;
pub mod modules;
pub mod ordering;
pub mod outbox;
pub mod query;
pub mod restart;
pub mod schedule_dst;
pub mod schedules;
pub mod upkeep;

/// Opens a backend at one fixed place. `open` is called once at the start of a
/// case and again on every [`Ctx::restart`], always after the previous store was
/// dropped; it must find everything the previous store acknowledged.
pub trait Harness: Send + 'static {
    /// The backend under test.
    type Store: Store;
    /// Opens (or creates, the first time) the store at this harness's place.
    /// Async: a networked backend connects.
    fn open(
        &mut self,
        config: StoreConfig,
        clock: SharedClock,
    ) -> impl Future<Output = StoreResult<Self::Store>> + Send;

    /// Opens a second instance at the same place, as a second runner (its own
    /// runner id) would, beside `first`, the open first instance. A backend
    /// whose place belongs to one process (the embedded store: its files are
    /// locked by the process) returns a handle sharing `first`: its "second
    /// instance" is a second user of the one store in that process.
    fn open_peer(
        &mut self,
        config: StoreConfig,
        clock: SharedClock,
        first: &Self::Store,
    ) -> impl Future<Output = StoreResult<Self::Store>> + Send;

    /// Whether separate processes can share this place, so one instance can
    /// restart while another stays open. Only then can "a restart releases
    /// only its own leases" be tested: where one process owns the store, a
    /// restart ends every instance and releasing all leases is right.
    const SHARED_ACROSS_PROCESSES: bool;
}

/// One case's world: the harness, the open store and the clock.
pub struct Ctx<H: Harness> {
    harness: H,
    store: Option<Arc<H::Store>>,
    clock: ManualClock,
    config: StoreConfig,
}

impl<H: Harness> Ctx<H> {
    /// Opens the store with `config` and a manual clock at [`T0`](helpers::T0).
    pub async fn open(mut harness: H, config: StoreConfig) -> Ctx<H> {
        let clock = helpers::manual_clock();
        let store = harness
            .open(config.clone(), Arc::new(clock.clone()))
            .await
            .expect("open the store");
        Ctx {
            harness,
            store: Some(Arc::new(store)),
            clock,
            config,
        }
    }

    /// The open store.
    pub fn store(&self) -> &H::Store {
        self.store.as_deref().expect("store is open")
    }

    /// The open store, to share with spawned tasks (drop the clones before a restart).
    pub fn shared(&self) -> Arc<H::Store> {
        Arc::clone(self.store.as_ref().expect("store is open"))
    }

    /// The clock the store reads.
    pub fn clock(&self) -> &ManualClock {
        &self.clock
    }

    /// The current time.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Moves time forward.
    pub fn advance(&self, d: Duration) {
        self.clock.advance(d);
    }

    /// A second instance of the store at the same place ([`Harness::open_peer`]).
    pub async fn peer(&mut self) -> Arc<H::Store> {
        let first = self.store.as_ref().expect("store is open");
        let peer = self
            .harness
            .open_peer(self.config.clone(), Arc::new(self.clock.clone()), first)
            .await
            .expect("open a second instance");
        Arc::new(peer)
    }

    /// Drops the store and opens it again at the same place with the same config:
    /// what a process restart does.
    pub async fn restart(&mut self) {
        let config = self.config.clone();
        self.reopen_with(config).await;
    }

    /// Drops the store and opens it again at the same place with `config`.
    pub async fn reopen_with(&mut self, config: StoreConfig) {
        let store = self.store.take().expect("store is open");
        assert_eq!(
            Arc::strong_count(&store),
            1,
            "restart while the store is still shared with a task"
        );
        drop(store);
        let store = self
            .harness
            .open(config.clone(), Arc::new(self.clock.clone()))
            .await
            .expect("reopen the store");
        self.store = Some(Arc::new(store));
        self.config = config;
    }
}

/// Runs one case on a fresh multi-threaded tokio runtime with the default config.
pub fn run<H, F, Fut>(harness: H, case: F)
where
    H: Harness,
    F: FnOnce(Ctx<H>) -> Fut,
    Fut: Future<Output = ()>,
{
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async move {
        let cx = Ctx::open(harness, StoreConfig::default()).await;
        case(cx).await;
    });
}

/// Expands to one `#[test]` per conformance case for the harness built by `$make`
/// (an expression evaluated afresh for every case). Each test is named after its
/// case, so `cargo test <case>` runs one.
#[macro_export]
macro_rules! store_conformance_tests {
    ($make:expr) => {
        $crate::__store_conformance_groups! { [$make] }
    };
}

/// Every group's case list, applied to `[$make]` (tests) or `[@names $v]` (see
/// [`__store_conformance_group!`](crate::__store_conformance_group)). The one
/// list of groups; the cases are listed in the group files.
#[doc(hidden)]
#[macro_export]
macro_rules! __store_conformance_groups {
    ($($with:tt)*) => {
        $crate::__store_conformance_handlers! { $($with)* }
        $crate::__store_conformance_enqueue! { $($with)* }
        $crate::__store_conformance_lease! { $($with)* }
        $crate::__store_conformance_dlq! { $($with)* }
        $crate::__store_conformance_upkeep! { $($with)* }
        $crate::__store_conformance_modules! { $($with)* }
        $crate::__store_conformance_outbox! { $($with)* }
        $crate::__store_conformance_ordering! { $($with)* }
        $crate::__store_conformance_restart! { $($with)* }
        $crate::__store_conformance_fate! { $($with)* }
        $crate::__store_conformance_query! { $($with)* }
        $crate::__store_conformance_instances! { $($with)* }
        $crate::__store_conformance_schedules! { $($with)* }
        $crate::__store_conformance_schedule_dst! { $($with)* }
    };
}

/// What a group's case list expands to: with `[$make]`, one `#[test]` per case
/// running it on the harness `$make`; with `[@names $v]`, statements inserting
/// `(group, case)` into the set named `$v` (for the unit test below; a name
/// listed twice is already a compile error, two `#[test]`s of one name).
#[doc(hidden)]
#[macro_export]
macro_rules! __store_conformance_group {
    ([@names $v:ident] $group:ident: $($case:ident),* $(,)?) => {
        $( $v.insert((stringify!($group).to_string(), stringify!($case).to_string())); )*
    };
    ([$make:expr] $group:ident: $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                $crate::store::conformance::run($make, $crate::store::conformance::$group::$case);
            }
        )*
    };
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    /// Every `pub async fn` of a group file is a case in that group's list,
    /// and every listed case is one: a case cannot be written and forgotten.
    #[test]
    fn every_case_is_in_its_groups_list() {
        let mut listed = BTreeSet::new();
        crate::__store_conformance_groups! { [@names listed] }

        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/store/conformance");
        let mut written = BTreeSet::new();
        for entry in std::fs::read_dir(dir).expect("the kit's directory") {
            let path = entry.expect("directory entry").path();
            let group = path.file_stem().unwrap().to_string_lossy().into_owned();
            if group == "mod" || group == "helpers" {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("a group file");
            for line in text.lines() {
                if let Some(rest) = line.strip_prefix("pub async fn ") {
                    let case: String = rest
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    written.insert((group.clone(), case));
                }
            }
        }
        assert_eq!(written, listed, "cases written vs listed (group, case)");
    }
}
