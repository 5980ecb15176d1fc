//! The conformance suite every [`Store`] backend runs.
//!
//! Each public function in [`cases`] exercises one verb or guarantee of the
//! [`Store`] contract (see the module docs of [`crate::store`] and issue #2)
//! against any backend. A backend plugs in through the small [`Harness`] trait
//! (open the store at a fixed place, so that a [`Ctx::restart`] drops it and opens
//! it again at the same place) and gets one `#[test]` per case from
//! [`store_conformance_tests!`](crate::store_conformance_tests):
//!
//! ```ignore
//! struct EmbeddedHarness(tempfile::TempDir);
//! impl Harness for EmbeddedHarness {
//!     type Store = EmbeddedStore;
//!     fn open(&mut self, config: StoreConfig, clock: SharedClock) -> StoreResult<EmbeddedStore> {
//!         EmbeddedStore::open(self.0.path(), config, clock)
//!     }
//! }
//! sluice::store_conformance_tests!(EmbeddedHarness(tempfile::tempdir().unwrap()));
//! ```
//!
//! Time comes from a [`ManualClock`] standing at [`T0`]; no case sleeps. Where the
//! contract leaves a value open (backoff jitter, whether a released lease waits a
//! backoff) the cases check bounds, not one value.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::{
    AttemptReport, DeadFilter, DeliveryId, DeliveryState, DeliveryStatus, Enqueued, HandlerRecord,
    HandlerSpec, Lease, Leased, MessageId, NewMessage, OutboxMessage, Store, StoreConfig,
    StoreError, StoreResult,
};
use crate::clock::{Clock, ManualClock, SharedClock, Timestamp};
use crate::outcome::Outcome;
use crate::policy::{Disposition, HandlerPolicy, JITTER};
pub use crate::worker::maintenance::rescue::rescue_expired;

/// Where every case's clock starts: 2027-01-15, far from the epoch so that
/// "before" and "after" are never clamped at zero.
pub const T0: Timestamp = Timestamp(1_800_000_000_000);

/// Opens a backend at one fixed place. `open` is called once at the start of a
/// case and again on every [`Ctx::restart`], always after the previous store was
/// dropped; it must find everything the previous store acknowledged.
pub trait Harness: Send + 'static {
    /// The backend under test.
    type Store: Store;
    /// Opens (or creates, the first time) the store at this harness's place.
    fn open(&mut self, config: StoreConfig, clock: SharedClock) -> StoreResult<Self::Store>;
}

/// One case's world: the harness, the open store and the clock.
pub struct Ctx<H: Harness> {
    harness: H,
    store: Option<Arc<H::Store>>,
    clock: ManualClock,
    config: StoreConfig,
}

impl<H: Harness> Ctx<H> {
    /// Opens the store with `config` and a manual clock at [`T0`].
    pub fn open(mut harness: H, config: StoreConfig) -> Ctx<H> {
        let clock = ManualClock::new(T0);
        let store = harness
            .open(config.clone(), Arc::new(clock.clone()))
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

    /// Drops the store and opens it again at the same place with the same config:
    /// what a process restart does.
    pub fn restart(&mut self) {
        let config = self.config.clone();
        self.reopen_with(config);
    }

    /// Drops the store and opens it again at the same place with `config`.
    pub fn reopen_with(&mut self, config: StoreConfig) {
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
        let cx = Ctx::open(harness, StoreConfig::default());
        case(cx).await;
    });
}

/// Expands to one `#[test]` per conformance case for the harness built by `$make`
/// (an expression evaluated afresh for every case).
#[macro_export]
macro_rules! store_conformance_tests {
    ($make:expr) => {
        $crate::store_conformance_tests!(@cases $make;
            put_handler_registers_and_lists,
            reregistering_keeps_deliveries,
            unknown_handler_is_refused,
            invalid_names_are_refused,
            invalid_policy_is_refused,
            unknown_topic_is_refused,
            topic_stays_known_after_its_handler_is_removed,
            oversized_payload_is_refused,
            too_many_headers_is_invalid_input,
            enqueue_fans_out_to_every_handler,
            enqueue_batch_returns_ordered_v7_ids,
            idempotency_key_deduplicates_within_window,
            idempotency_key_is_per_topic,
            idempotency_window_is_pruned,
            lease_returns_oldest_first_up_to_max,
            concurrent_leases_never_hand_out_twice,
            paused_handler_leases_nothing,
            extend_moves_expiry,
            complete_records_success,
            stale_or_forged_lease_is_lost,
            fail_with_retry_waits_then_redelivers,
            fail_with_dead_goes_to_dlq,
            policy_backoff_sequence_reaches_dlq,
            dead_letters_filter_and_page,
            replay_dead_resets_attempts_keeps_history,
            purge_dead_removes_deliveries,
            replay_since_redelivers_retained_messages,
            delayed_message_is_scheduled_until_due,
            promote_due_respects_limit,
            rescue_expired_retries_with_backoff,
            rescue_expired_dead_letters_last_attempt,
            outbox_commits_with_success,
            outbox_is_not_duplicated_after_rescue,
            outbox_failure_commits_nothing,
            ordering_key_one_in_flight_in_enqueue_order,
            retrying_head_blocks_only_its_key,
            dead_head_unblocks_next,
            ordering_is_per_handler,
            replayed_keyed_delivery_keeps_one_in_flight,
            queue_full_refuses_whole_batch,
            prune_removes_old_dead_and_done_messages,
            remove_handler_drops_its_deliveries,
            stats_count_every_state,
            ready_signal_wakes_on_enqueue,
            handlers_signal_wakes_on_handler_changes,
            group_commit_shares_flushes,
            acknowledged_state_survives_restart,
            leases_are_released_on_open,
            ordering_survives_restart,
        );
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                $crate::store::conformance::run($make, $crate::store::conformance::cases::$case);
            }
        )*
    };
}

// ---------------------------------------------------------------------------
// Helpers shared by the cases (public so a backend's own tests can use them).
// ---------------------------------------------------------------------------

/// A tiny valid wasm module (an empty module with a custom section naming `tag`),
/// so that different tags have different sha256s.
pub fn module(tag: u8) -> Bytes {
    Bytes::from(vec![0x00, b'a', b's', b'm', 1, 0, 0, 0, 0, 2, 1, tag])
}

/// Hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The policy the cases use: the defaults (5 retries, 1 s backoff, 30 s timeout,
/// 75 s lease) with a fixed concurrency.
pub fn policy() -> HandlerPolicy {
    HandlerPolicy {
        concurrency: 4,
        ..HandlerPolicy::default()
    }
}

/// Registers handler `name` on `topic` with [`policy`] and module 0.
pub async fn handler(s: &dyn Store, name: &str, topic: &str) -> HandlerRecord {
    handler_with(s, name, topic, policy()).await
}

/// Registers handler `name` on `topic` with `policy`.
pub async fn handler_with(
    s: &dyn Store,
    name: &str,
    topic: &str,
    policy: HandlerPolicy,
) -> HandlerRecord {
    s.put_handler(
        HandlerSpec {
            name: name.into(),
            topic: topic.into(),
            policy,
        },
        module(0),
    )
    .await
    .unwrap_or_else(|e| panic!("put_handler {name} on {topic}: {e}"))
}

/// A plain message.
pub fn msg(topic: &str, payload: &str) -> NewMessage {
    NewMessage {
        topic: topic.into(),
        payload: Bytes::copy_from_slice(payload.as_bytes()),
        ..NewMessage::default()
    }
}

/// A message with an ordering key.
pub fn keyed(topic: &str, payload: &str, key: &str) -> NewMessage {
    NewMessage {
        ordering_key: Some(key.into()),
        ..msg(topic, payload)
    }
}

/// Enqueues one message, expecting a fresh id.
pub async fn enqueue1(s: &dyn Store, m: NewMessage) -> MessageId {
    let r = s.enqueue(vec![m]).await.expect("enqueue");
    assert_eq!(r.len(), 1, "one answer per message");
    assert!(!r[0].duplicate, "fresh message reported as duplicate");
    r[0].id
}

/// An attempt report with `outcome`.
pub fn report(outcome: Outcome) -> AttemptReport {
    AttemptReport {
        outcome,
        duration_ms: 7,
        module_sha256: sha256_hex(&module(0)),
        stdout: Bytes::from_static(b"out"),
        stdout_truncated: false,
        stderr: Bytes::from_static(b"err"),
        stderr_truncated: false,
        peak_memory_bytes: 65536,
        fuel_used: None,
    }
}

/// A successful attempt report.
pub fn ok() -> AttemptReport {
    report(Outcome::Ok)
}

/// A failed attempt report (exit 3).
pub fn failed() -> AttemptReport {
    report(Outcome::Exit { code: 3 })
}

/// The delivery of message `id` for `handler`.
pub async fn delivery_of(s: &dyn Store, id: MessageId, handler: &str) -> DeliveryStatus {
    let st = s.message(id).await.expect("message");
    let mut found: Vec<_> = st
        .deliveries
        .into_iter()
        .filter(|d| d.handler == handler)
        .collect();
    assert!(
        !found.is_empty(),
        "message {id} has no delivery for {handler}"
    );
    found.pop().expect("one delivery")
}

/// Leases everything ready for `handler` (up to 10,000).
pub async fn lease_all(s: &dyn Store, handler: &str) -> Vec<Leased> {
    s.lease(handler, 10_000).await.expect("lease")
}

/// Payloads of leased deliveries, as strings, in lease order.
pub fn payloads(leased: &[Leased]) -> Vec<String> {
    leased
        .iter()
        .map(|l| String::from_utf8_lossy(&l.message.payload).into_owned())
        .collect()
}

/// The count of `state` for `handler` in [`Store::stats`].
pub async fn count(s: &dyn Store, handler: &str, state: DeliveryState) -> u64 {
    let stats = s.stats().await.expect("stats");
    let h = stats
        .handlers
        .iter()
        .find(|h| h.handler == handler)
        .unwrap_or_else(|| panic!("stats lists no handler {handler}"));
    h.counts.get(&state).copied().unwrap_or(0)
}

/// The open deliveries of `topic` per [`Store::stats`] (0 when absent).
pub async fn depth(s: &dyn Store, topic: &str) -> u64 {
    let stats = s.stats().await.expect("stats");
    stats.topic_depth.get(topic).copied().unwrap_or(0)
}

fn assert_lease_lost<T: std::fmt::Debug>(r: StoreResult<T>, id: DeliveryId, what: &str) {
    match r {
        Err(StoreError::LeaseLost(d)) => assert_eq!(d, id, "{what}: LeaseLost names the delivery"),
        other => panic!("{what}: expected LeaseLost({id}), got {other:?}"),
    }
}

fn retry_in(cx_now: Timestamp, d: Duration) -> Disposition {
    Disposition::Retry { at: cx_now.plus(d) }
}

fn dead(reason: &str) -> Disposition {
    Disposition::Dead {
        reason: reason.into(),
    }
}

/// Checks that `next_at` lies within the jittered backoff for retry `retry` of
/// `policy`, counted from `from`.
pub fn assert_backoff(policy: &HandlerPolicy, retry: u32, from: Timestamp, next_at: Timestamp) {
    let base = policy
        .backoff_ms
        .saturating_mul(1u64 << retry.saturating_sub(1).min(40))
        .min(policy.backoff_max_ms) as f64;
    let lo = from.plus(Duration::from_millis((base * (1.0 - JITTER)).floor() as u64));
    let hi = from.plus(Duration::from_millis((base * (1.0 + JITTER)).ceil() as u64));
    assert!(
        next_at >= lo && next_at <= hi,
        "retry {retry}: next_at {} not within backoff [{}, {}]",
        next_at.0,
        lo.0,
        hi.0
    );
}

/// The cases, one per verb or guarantee. Each takes a fresh [`Ctx`].
pub mod cases {
    use super::*;

    // ---- handlers and modules ----

    /// `put_handler` stores handler and module; `handler`, `handlers` and `module`
    /// read them back; re-registration bumps the version and keeps `created_at`.
    pub async fn put_handler_registers_and_lists<H: Harness>(cx: Ctx<H>) {
        let s = cx.store();
        let b = handler(s, "billing", "orders").await;
        assert_eq!(b.name, "billing");
        assert_eq!(b.topic, "orders");
        assert_eq!(b.version, 1);
        assert!(!b.paused);
        assert_eq!(b.created_at, T0);
        assert_eq!(b.module_sha256, sha256_hex(&module(0)));
        assert_eq!(b.policy, policy());
        handler(s, "audit", "orders").await;
        assert_eq!(s.handler("billing").await.unwrap(), b);
        let names: Vec<_> = s
            .handlers()
            .await
            .unwrap()
            .into_iter()
            .map(|h| h.name)
            .collect();
        assert_eq!(names, ["audit", "billing"], "handlers are listed by name");
        assert_eq!(s.module(&b.module_sha256).await.unwrap(), module(0));

        cx.advance(Duration::from_secs(5));
        let p = HandlerPolicy {
            retries: 2,
            ..policy()
        };
        let b2 = s
            .put_handler(
                HandlerSpec {
                    name: "billing".into(),
                    topic: "orders".into(),
                    policy: p.clone(),
                },
                module(1),
            )
            .await
            .unwrap();
        assert_eq!(b2.version, 2, "re-registration bumps the version");
        assert_eq!(b2.created_at, T0, "created_at kept");
        assert_eq!(b2.updated_at, cx.now());
        assert_eq!(b2.module_sha256, sha256_hex(&module(1)));
        assert_eq!(b2.policy, p);
        assert_eq!(s.module(&b2.module_sha256).await.unwrap(), module(1));
    }

    /// Replacing a handler's module keeps its deliveries; later leases see the new policy.
    pub async fn reregistering_keeps_deliveries<H: Harness>(cx: Ctx<H>) {
        let s = cx.store();
        handler(s, "h", "t").await;
        let id = enqueue1(s, msg("t", "one")).await;
        let p = HandlerPolicy {
            retries: 1,
            ..policy()
        };
        s.put_handler(
            HandlerSpec {
                name: "h".into(),
                topic: "t".into(),
                policy: p,
            },
            module(9),
        )
        .await
        .unwrap();
        let l = lease_all(s, "h").await;
        assert_eq!(l.len(), 1, "the delivery survived re-registration");
        assert_eq!(l[0].message.id, id);
        assert_eq!(
            l[0].max_attempts, 2,
            "max_attempts comes from the policy at lease time"
        );
    }

    /// Verbs naming a handler that does not exist get `UnknownHandler`; an unknown
    /// module sha gets `UnknownModule`.
    pub async fn unknown_handler_is_refused<H: Harness>(cx: Ctx<H>) {
        let s = cx.store();
        fn unknown<T: std::fmt::Debug>(r: StoreResult<T>, verb: &str) {
            match r {
                Err(e @ StoreError::UnknownHandler(_)) => {
                    assert!(
                        e.to_string().contains("ghost"),
                        "{verb}: message names it: {e}"
                    );
                }
                other => panic!("{verb}: expected UnknownHandler(\"ghost\"), got {other:?}"),
            }
        }
        unknown(s.handler("ghost").await, "handler");
        unknown(s.set_paused("ghost", true).await, "set_paused");
        unknown(s.remove_handler("ghost").await, "remove_handler");
        unknown(s.lease("ghost", 1).await, "lease");
        unknown(s.replay_since("ghost", T0).await, "replay_since");
        match s.module(&sha256_hex(b"nothing")).await {
            Err(StoreError::UnknownModule(_)) => {}
            other => panic!("module: expected UnknownModule, got {other:?}"),
        }
        match s.message(uuid::Uuid::now_v7()).await {
            Err(StoreError::UnknownMessage(_)) => {}
            other => panic!("message: expected UnknownMessage, got {other:?}"),
        }
        match s.delivery(uuid::Uuid::now_v7()).await {
            Err(StoreError::UnknownDelivery(_)) => {}
            other => panic!("delivery: expected UnknownDelivery, got {other:?}"),
        }
    }

    /// Names breaking `[a-z0-9][a-z0-9._-]{0,127}` and bad keys get `InvalidName`
    /// naming what was wrong; nothing is created.
    pub async fn invalid_names_are_refused<H: Harness>(cx: Ctx<H>) {
        let s = cx.store();
        let bad_handler = s
            .put_handler(
                HandlerSpec {
                    name: "Bad Name".into(),
                    topic: "t".into(),
                    policy: policy(),
                },
                module(0),
            )
            .await;
        match bad_handler {
            Err(StoreError::InvalidName(e)) => {
                assert_eq!(e.what, "handler");
                assert!(e.to_string().contains("Bad Name"), "{e}");
            }
            other => panic!("expected InvalidName(handler), got {other:?}"),
        }
        let bad_topic = s
            .put_handler(
                HandlerSpec {
                    name: "h".into(),
                    topic: "Orders/EU".into(),
                    policy: policy(),
                },
                module(0),
            )
            .await;
        match bad_topic {
            Err(StoreError::InvalidName(e)) => assert_eq!(e.what, "topic"),
            other => panic!("expected InvalidName(topic), got {other:?}"),
        }
        assert!(s.handlers().await.unwrap().is_empty(), "nothing registered");

        handler(s, "h", "t").await;
        match s.enqueue(vec![msg("no such/topic", "x")]).await {
            Err(StoreError::InvalidName(e)) => assert_eq!(e.what, "topic"),
            other => panic!("enqueue to a bad topic name: expected InvalidName, got {other:?}"),
        }
        for (m, what) in [
            (keyed("t", "x", ""), "ordering key"),
            (
                NewMessage {
                    idempotency_key: Some("k".repeat(300)),
                    ..msg("t", "x")
                },
                "idempotency",
            ),
        ] {
            match s.enqueue(vec![msg("t", "fine"), m]).await {
                Err(StoreError::InvalidName(e)) => {
                    assert!(e.what.contains(what), "expected {what}, got {:?}", e.what);
                }
                other => panic!("bad {what}: expected InvalidName, got {other:?}"),
            }
        }
        assert_eq!(depth(s, "t").await, 0, "a refused batch creates nothing");
    }

    /// A policy out of bounds gets `InvalidPolicy` naming the field.
    pub async fn invalid_policy_is_refused<H: Harness>(cx: Ctx<H>) {
        let s = cx.store();
        let r = s
            .put_handler(
                HandlerSpec {
                    name: "h".into(),
                    topic: "t".into(),
                    policy: HandlerPolicy {
                        timeout_ms: 0,
                        ..policy()
                    },
                },
                module(0),
            )
            .await;
        match r {
            Err(StoreError::InvalidPolicy(e)) => assert_eq!(e.field, "timeout"),
            other => panic!("expected InvalidPolicy(timeout), got {other:?}"),
        }
    }

    /// Enqueue to a valid topic no handler was ever registered on gets
    /// `UnknownTopic`, and the whole batch is refused.
    pub async fn unknown_topic_is_refused<H: Harness>(cx: Ctx<H>) {
        let s = cx.store();
        handler(s, "h", "known").await;
        match s
            .enqueue(vec![msg("known", "a"), msg("nowhere", "b")])
            .await
        {
            Err(e @ StoreError::UnknownTopic(_)) => {
                assert!(matches!(&e, StoreError::UnknownTopic(t) if t == "nowhere"));
                assert!(e.to_string().contains("nowhere"), "{e}");
            }
            other => panic!("expected UnknownTopic(\"nowhere\"), got {other:?}"),
        }
        assert_eq!(depth(s, "known").await, 0, "batch is atomic");
        assert!(lease_all(s, "h").await.is_empty());
    }

    /// A topic that once had a handler stays known: enqueue succeeds with no deliveries.
    pub async fn topic_stays_known_after_its_handler_is_removed<H: Harness>(cx: Ctx<H>) {
        let s = cx.store();
        handler(s, "h", "t").await;
        s.remove_handler("h").await.unwrap();
        let id = enqueue1(s, msg("t", "x")).await;
        let st = s.message(id).await.unwrap();
        assert!(st.deliveries.is_empty(), "no handler, no delivery");
    }

    /// A payload over `max_payload_bytes` gets `PayloadTooLarge` with size and
    /// maximum; exactly the maximum is accepted.
    pub async fn oversized_payload_is_refused<H: Harness>(mut cx: Ctx<H>) {
        cx.reopen_with(StoreConfig {
            max_payload_bytes: 1024,
            ..StoreConfig::default()
        });
        let s = cx.store();
        handler(s, "h", "t").await;
        let big = NewMessage {
            payload: Bytes::from(vec![7u8; 1025]),
            ..msg("t", "")
        };
        match s.enqueue(vec![msg("t", "small"), big]).await {
            Err(e @ StoreError::PayloadTooLarge { .. }) => {
                assert!(
                    matches!(
                        e,
                        StoreError::PayloadTooLarge {
                            size: 1025,
                            max: 1024
                        }
                    ),
                    "{e:?}"
                );
                assert!(e.to_string().contains("1025"), "{e}");
            }
            other => panic!("expected PayloadTooLarge, got {other:?}"),
        }
        assert_eq!(depth(s, "t").await, 0, "batch is atomic");
        let exact = NewMessage {
            payload: Bytes::from(vec![7u8; 1024]),
            ..msg("t", "")
        };
        let id = enqueue1(s, exact).await;
        assert_eq!(s.message(id).await.unwrap().message.payload.len(), 1024);
    }

    /// More headers than `max_headers` get `InvalidInput`.
    pub async fn too_many_headers_is_invalid_input<H: Harness>(cx: Ctx<H>) {
        let s = cx.store();
        handler(s, "h", "t").await;
        let mut m = msg("t", "x");
        for i in 0..65 {
            m.headers.insert(format!("h{i}"), "v".into());
        }
        match s.enqueue(vec![m]).await {
            Err(StoreError::InvalidInput(_)) => {}
            other => panic!("65 headers: expected InvalidInput, got {other:?}"),
        }
    }

    // ---- enqueue ----

    /// One delivery per handler subscribed at enqueue, all ready, with the message
    /// stored as given; a handler registered later gets none of the old messages.
    pub async fn enqueue_fans_out_to_every_handler<H: Harness>(cx: Ctx<H>) {
        let s = cx.store();
        handler(s, "a", "orders").await;
        handler(s, "b", "orders").await;
        handler(s, "c", "other").await;
        let mut m = keyed("orders", "hello", "user-1");
        m.headers.insert("trace".into(), "abc".into());
        let id = enqueue1(s, m.clone()).await;
        let st = s.message(id).await.unwrap();
        assert_eq!(st.message.id, id);
        assert_eq!(st.message.topic, "orders");
        assert_eq!(st.message.payload, m.payload);
        assert_eq!(st.message.headers, m.headers);
        assert_eq!(st.message.ordering_key.as_deref(), Some("user-1"));
        assert_eq!(st.message.enqueued_at, cx.now());
        assert_eq!(st.message.not_before, None);
        assert!(
            st.message.idempotency_key == id.to_string()
                || st.message.idempotency_key == id.simple().to_string(),
            "default idempotency key is the message id, got {:?}",
            st.message.idempotency_key
        );
        let mut hs: Vec<_> = st.deliveries.iter().map(|d| d.handler.as_str()).collect();
        hs.sort_unstable();
        assert_eq!(hs, ["a", "b"], "one delivery per subscribed handler");
        for d in &st.deliveries {
            assert_eq!(d.state, DeliveryState::Ready);
            assert_eq!(d.message_id, id);
            assert!(d.attempts.is_empty());
            assert_eq!(d.created_at, cx.now());
            assert_eq!(&s.delivery(d.id).await.unwrap(), d);
        }
        assert_eq!(depth(s, "orders").await, 2);
        assert_eq!(depth(s, "other").await, 0);

        handler(s, "late", "orders").await;
        assert_eq!(s.message(id).await.unwrap().deliveries.len(), 2);
        assert!(
            lease_all(s, "late").await.is_empty(),
            "late handler gets nothing old"
        );
        assert!(
            lease_all(s, "c").await.is_empty(),
            "other topic gets nothing"
        );
    }

    /// A batch answers one id per message, in order; ids are distinct UUID v7
    /// carrying the enqueue time, so ids of different milliseconds sort by
    /// enqueue time; an empty batch is a no-op.
    pub async fn enqueue_batch_returns_ordered_v7_ids<H: Harness>(cx: Ctx<H>) {
        let s = cx.store();
        handler(s, "h", "t").await;
        assert!(s.enqueue(vec![]).await.unwrap().is_empty());
        let batch: Vec<_> = (0..50).map(|i| msg("t", &format!("m{i}"))).collect();
        let r = s.enqueue(batch).await.unwrap();
        assert_eq!(r.len(), 50);
        let distinct: BTreeSet<_> = r.iter().map(|e| e.id).collect();
        assert_eq!(distinct.len(), 50, "ids are distinct");
        for (i, e) in r.iter().enumerate() {
            let st = s.message(e.id).await.unwrap();
            assert_eq!(
                st.message.payload,
                format!("m{i}").as_bytes(),
                "answers in batch order"
            );
            let (secs, nanos) = e.id.get_timestamp().expect("v7 has a time").to_unix();
            assert_eq!(
                secs * 1000 + u64::from(nanos) / 1_000_000,
                T0.0,
                "id carries enqueue time"
            );
        }
        for e in &r {
            assert_eq!(e.id.get_version_num(), 7, "ids are UUID v7");
            assert!(!e.duplicate);
        }
        cx.advance(Duration::from_millis(1));
        let later = enqueue1(s, msg("t", "later")).await;
        assert!(later > r[49].id, "ids increase across batches");
        let leased = lease_all(s, "h").await;
        assert_eq!(leased.len(), 51);
        for (i, l) in leased.iter().take(50).enumerate() {
            assert_eq!(l.message.id, r[i].id, "leased in enqueue order");
            assert_eq!(l.message.payload, format!("m{i}").as_bytes());
        }
    }

    /// A second enqueue with the same key returns the original id with
    /// `duplicate: true` and creates nothing, within a batch, across batches and
    /// after a restart.
    pub async fn idempotency_key_deduplicates_within_window<H: Harness>(mut cx: Ctx<H>) {
        let s = cx.store();
        handler(s, "h", "t").await;
        let with_key = |p: &str, k: &str| NewMessage {
            idempotency_key: Some(k.into()),
            ..msg("t", p)
        };
        let first = enqueue1(s, with_key("one", "order-1")).await;
        assert_eq!(
            s.message(first).await.unwrap().message.idempotency_key,
            "order-1"
        );
        cx.advance(Duration::from_secs(3600));
        let again = s.enqueue(vec![with_key("two", "order-1")]).await.unwrap();
        assert_eq!(
            again,
            vec![Enqueued {
                id: first,
                duplicate: true
            }]
        );
        assert_eq!(depth(s, "t").await, 1, "a duplicate creates nothing");

        let r = s
            .enqueue(vec![with_key("a", "order-2"), with_key("b", "order-2")])
            .await
            .unwrap();
        assert!(!r[0].duplicate);
        assert_eq!(
            r[1],
            Enqueued {
                id: r[0].id,
                duplicate: true
            },
            "a key repeated within one batch is a duplicate of its first use"
        );
        assert_eq!(depth(s, "t").await, 2);

        cx.restart();
        let s = cx.store();
        let r = s.enqueue(vec![with_key("three", "order-1")]).await.unwrap();
        assert_eq!(
            r[0],
            Enqueued {
                id: first,
                duplicate: true
            },
            "the key survives a restart"
        );
        let payload = s.message(first).await.unwrap().message.payload;
        assert_eq!(payload, "one", "the original message is unchanged");
    }

    /// The same key on two topics makes two messages.
    pub async fn idempotency_key_is_per_topic<H: Harness>(cx: Ctx<H>) {
        let s = cx.store();
        handler(s, "h1", "t1").await;
        handler(s, "h2", "t2").await;
        let k = |t: &str| NewMessage {
            idempotency_key: Some("same".into()),
            ..msg(t, "x")
        };
        let a = enqueue1(s, k("t1")).await;
        let b = enqueue1(s, k("t2")).await;
        assert_ne!(a, b);
    }

    /// Past the window, `prune` drops the key and the same key makes a new message.
    pub async fn idempotency_window_is_pruned<H: Harness>(mut cx: Ctx<H>) {
        cx.reopen_with(StoreConfig {
            idempotency_window: Duration::from_secs(3600),
            ..StoreConfig::default()
        });
        let s = cx.store();
        handler(s, "h", "t").await;
        let k = NewMessage {
            idempotency_key: Some("k".into()),
            ..msg("t", "x")
        };
        let first = enqueue1(s, k.clone()).await;
        cx.advance(Duration::from_secs(3599));
        let r = s.prune(1000).await.unwrap();
        assert_eq!(r.idempotency_keys, 0, "inside the window nothing is pruned");
        assert!(s.enqueue(vec![k.clone()]).await.unwrap()[0].duplicate);
        cx.advance(Duration::from_secs(2));
        let r = s.prune(1000).await.unwrap();
        assert_eq!(
            r.idempotency_keys, 1,
            "past the window the key is pruned: {r:?}"
        );
        let second = s.enqueue(vec![k]).await.unwrap();
        assert!(
            !second[0].duplicate,
            "after the window the key is new again"
        );
        assert_ne!(second[0].id, first);
    }

    // ---- lease, extend, complete, fail ----

    /// `lease` hands out up to `max` ready deliveries, oldest first, each with a
    /// unique token, the policy's lease, attempt 1, and a started attempt record.
    pub async fn lease_returns_oldest_first_up_to_max<H: Harness>(cx: Ctx<H>) {
        let s = cx.store();
        handler(s, "h", "t").await;
        let mut ids = Vec::new();
        for i in 0..5 {
            ids.push(enqueue1(s, msg("t", &format!("m{i}"))).await);
            cx.advance(Duration::from_millis(10));
        }
        assert!(
            s.lease("h", 0).await.unwrap().is_empty(),
            "max 0 leases nothing"
        );
        let first = s.lease("h", 3).await.unwrap();
        assert_eq!(payloads(&first), ["m0", "m1", "m2"], "oldest first");
        let now = cx.now();
        for l in &first {
            assert_eq!(l.handler, "h");
            assert_eq!(l.attempt, 1);
            assert_eq!(l.max_attempts, 6);
            assert_eq!(l.lease.expires_at, now.plus(Duration::from_secs(75)));
            let d = s.delivery(l.lease.delivery_id).await.unwrap();
            assert_eq!(d.state, DeliveryState::Leased);
            assert_eq!(d.lease_expires_at, Some(l.lease.expires_at));
            assert_eq!(d.attempts.len(), 1);
            let a = &d.attempts[0];
            assert_eq!((a.number, a.round), (1, 0));
            assert_eq!(a.started_at, now);
            assert_eq!(a.finished_at, None);
            assert_eq!(a.report, None);
        }
        let rest = s.lease("h", 10).await.unwrap();
        assert_eq!(payloads(&rest), ["m3", "m4"]);
        assert!(s.lease("h", 10).await.unwrap().is_empty(), "nothing left");
        let tokens: BTreeSet<_> = first.iter().chain(&rest).map(|l| l.lease.token).collect();
        assert_eq!(tokens.len(), 5, "tokens are unique per lease");
        assert_eq!(count(s, "h", DeliveryState::Leased).await, 5);
        assert_eq!(count(s, "h", DeliveryState::Ready).await, 0);
    }

    /// Four tasks leasing at once never get the same delivery.
    pub async fn concurrent_leases_never_hand_out_twice<H: Harness>(cx: Ctx<H>) {
        let s = cx.store();
        handler(s, "h", "t").await;
        let batch: Vec<_> = (0..400).map(|i| msg("t", &i.to_string())).collect();
        s.enqueue(batch).await.unwrap();
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let s = cx.shared();
            tasks.push(tokio::spawn(async move {
                let mut got = Vec::new();
                loop {
                    let l = s.lease("h", 7).await.unwrap();
                    if l.is_empty() {
                        return got;
                    }
                    got.extend(l.into_iter().map(|l| l.lease.delivery_id));
                }
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        let distinct: BTreeSet<_> = all.iter().collect();
        assert_eq!(all.len(), 400, "every delivery leased");
        assert_eq!(distinct.len(), 400, "no delivery leased twice");
    }

    /// A paused handler leases nothing while its deliveries keep arriving; other
    /// handlers on the topic are unaffected; pause survives a restart.
    pub async fn paused_handler_leases_nothing<H: Harness>(mut cx: Ctx<H>) {
        let s = cx.store();
        handler(s, "p", "t").await;
        handler(s, "q", "t").await;
        let r = s.set_paused("p", true).await.unwrap();
        assert!(r.paused);
        let id = enqueue1(s, msg("t", "x")).await;
        assert!(lease_all(s, "p").await.is_empty(), "paused leases nothing");
        assert_eq!(lease_all(s, "q").await.len(), 1, "other handler unaffected");
        assert_eq!(delivery_of(s, id, "p").await.state, DeliveryState::Ready);
        let st = s.stats().await.unwrap();
        assert!(st.handlers.iter().any(|h| h.handler == "p" && h.paused));
        cx.restart();
        let s = cx.store();
        assert!(s.handler("p").await.unwrap().paused, "pause is durable");
        assert!(lease_all(s, "p").await.is_empty());
        assert!(!s.set_paused("p", false).await.unwrap().paused);
        assert_eq!(lease_all(s, "p").await.len(), 1, "resumed handler leases");
    }

    /// `extend` moves the expiry to now + lease; the extended lease is not rescued
    /// at the old expiry and still completes; a stale lease cannot be extended.
    pub async fn extend_moves_expiry<H: Harness>(cx: Ctx<H>) {
        let s = cx.store();
        handler(s, "h", "t").await;
        enqueue1(s, msg("t", "x")).await;
        let l = lease_all(s, "h").await.remove(0);
        cx.advance(Duration::from_secs(60));
        let e = s.extend(&l.lease).await.unwrap();
        assert_eq!(e.delivery_id, l.lease.delivery_id);
        assert_eq!(e.expires_at, cx.now().plus(Duration::from_secs(75)));
        let d = s.delivery(e.delivery_id).await.unwrap();
        assert_eq!(d.lease_expires_at, Some(e.expires_at));
        cx.advance(Duration::from_secs(30));
        assert_eq!(
            rescue_expired(s, cx.clock(), 100).await.unwrap(),
            0,
            "extended lease is alive"
        );
        s.complete(&e, ok(), vec![]).await.unwrap();
        assert_lease_lost(s.extend(&e).await, e.delivery_id, "extend after complete");
    }

    /// `complete` records the attempt's report and finishes the delivery; the lease
    /// is then stale for every verb.
    pub async fn complete_records_success<H: Harness>(cx: Ctx<H>) {
        let s = cx.store();
        handler(s, "h", "t").await;
        let id = enqueue1(s, msg("t", "x")).await;
        let l = lease_all(s, "h").await.remove(0);
        cx.advance(Duration::from_secs(2));
        s.complete(&l.lease, ok(), vec![]).await.unwrap();
        let d = delivery_of(s, id, "h").await;
        assert_eq!(d.state, DeliveryState::Succeeded);
        assert_eq!(d.lease_expires_at, None);
        assert_eq!(d.attempts.len(), 1);
        assert_eq!(d.attempts[0].finished_at, Some(cx.now()));
        assert_eq!(d.attempts[0].report, Some(ok()));
        assert_eq!(count(s, "h", DeliveryState::Succeeded).await, 1);
        assert_eq!(depth(s, "t").await, 0, "a succeeded delivery is not open");
        let lid = l.lease.delivery_id;
        assert_lease_lost(
            s.complete(&l.lease, ok(), vec![]).await,
            lid,
            "second complete",
        );
        assert_lease_lost(
            s.fail(&l.lease, failed(), dead("x")).await,
            lid,
            "fail after complete",
        );
        assert_eq!(
            delivery_of(s, id, "h").await,
            d,
            "refused verbs change nothing"
        );
    }

    /// A lease with a wrong token, or one whose delivery was re-leased, gets
    /// `LeaseLost` and changes nothing; the current lease still works.
    pub async fn stale_or_forged_lease_is_lost<H: Harness>(cx: Ctx<H>) {
        let s = cx.store();
        handler(s, "h", "t").await;
        enqueue1(s, msg("t", "x")).await;
        let l = lease_all(s, "h").await.remove(0);
        let id = l.lease.delivery_id;
        let forged = Lease {
            token: l.lease.token.wrapping_add(1),
            ..l.lease.clone()
        };
        assert_lease_lost(
            s.complete(&forged, ok(), vec![]).await,
            id,
            "forged complete",
        );
        assert_lease_lost(
            s.fail(&forged, failed(), dead("x")).await,
            id,
            "forged fail",
        );
        assert_lease_lost(s.extend(&forged).await, id, "forged extend");
        assert_eq!(s.delivery(id).await.unwrap().state, DeliveryState::Leased);

        // Expire, rescue and re-lease: the first lease is now stale.
        cx.advance(Duration::from_secs(76));
        assert_eq!(rescue_expired(s, cx.clock(), 10).await.unwrap(), 1);
        cx.advance(Duration::from_secs(2));
        s.promote_due(10).await.unwrap();
        let l2 = lease_all(s, "h").await.remove(0);
        assert_eq!(l2.lease.delivery_id, id);
        assert_ne!(
            l2.lease.token, l.lease.token,
            "a new lease gets a new token"
        );
        assert_lease_lost(
            s.complete(&l.lease, ok(), vec![]).await,
            id,
            "stale complete",
        );
        s.complete(&l2.lease, ok(), vec![]).await.unwrap();
    }

    /// `fail` with `Retry{at}` parks the delivery as retrying until `at`; after
    /// `promote_due` it leases again as attempt 2, with both attempts recorded.
    pub async fn fail_with_retry_waits_then_redelivers<H: Harness>(cx: Ctx<H>) {
        let s = cx.store();
        handler(s, "h", "t").await;
        let id = enqueue1(s, msg("t", "x")).await;
        let l = lease_all(s, "h").await.remove(0);
        let at = cx.now().plus(Duration::from_secs(2));
        s.fail(&l.lease, failed(), Disposition::Retry { at })
            .await
            .unwrap();
        let d = delivery_of(s, id, "h").await;
        assert_eq!(d.state, DeliveryState::Retrying);
        assert_eq!(d.next_at, Some(at));
        assert_eq!(d.attempts[0].report, Some(failed()));
        assert_eq!(d.attempts[0].finished_at, Some(cx.now()));
        assert_eq!(s.next_due().await.unwrap(), Some(at));
        assert_eq!(depth(s, "t").await, 1, "retrying is open");
        assert!(lease_all(s, "h").await.is_empty(), "retrying is not leased");
        cx.advance(Duration::from_millis(1999));
        assert_eq!(s.promote_due(10).await.unwrap(), 0, "not yet due");
        cx.advance(Duration::from_millis(1));
        assert_eq!(s.promote_due(10).await.unwrap(), 1);
        assert_eq!(delivery_of(s, id, "h").await.state, DeliveryState::Ready);
        assert_eq!(s.next_due().await.unwrap(), None);
        let l2 = lease_all(s, "h").await.remove(0);
        assert_eq!(l2.attempt, 2);
        assert_lease_lost(
            s.complete(&l.lease, ok(), vec![]).await,
            l.lease.delivery_id,
            "old",
        );
        s.complete(&l2.lease, ok(), vec![]).await.unwrap();
        let d = delivery_of(s, id, "h").await;
        assert_eq!(d.state, DeliveryState::Succeeded);
        let nums: Vec<_> = d.attempts.iter().map(|a| (a.number, a.round)).collect();
        assert_eq!(nums, [(1, 0), (2, 0)]);
    }

    /// `fail` with `Dead` puts the delivery in the handler's DLQ with its reason.
    pub async fn fail_with_dead_goes_to_dlq<H: Harness>(cx: Ctx<H>) {
        let s = cx.store();
        handler(s, "h", "t").await;
        let id = enqueue1(s, msg("t", "x")).await;
        let l = lease_all(s, "h").await.remove(0);
        cx.advance(Duration::from_secs(1));
        s.fail(&l.lease, report(Outcome::Rejected), dead("rejected"))
            .await
            .unwrap();
        let d = delivery_of(s, id, "h").await;
        assert_eq!(d.state, DeliveryState::Dead);
        assert_eq!(d.dead_reason.as_deref(), Some("rejected"));
        assert_eq!(d.dead_at, Some(cx.now()));
        assert_eq!(d.attempts.len(), 1);
        assert_eq!(d.attempts[0].report, Some(report(Outcome::Rejected)));
        assert_eq!(count(s, "h", DeliveryState::Dead).await, 1);
        assert_eq!(depth(s, "t").await, 0, "dead is not open");
        let dlq = s
            .dead_letters(&DeadFilter::default(), None, 10)
            .await
            .unwrap();
        assert_eq!(dlq, vec![d]);
        assert!(lease_all(s, "h").await.is_empty());
    }

    /// Driving failures with `HandlerPolicy::after_failure` (as the worker does):
    /// 5 retries with jittered 1, 2, 4, 8, 16 s backoff, then the DLQ with the
    /// whole history.
    pub async fn policy_backoff_sequence_reaches_dlq<H: Harness>(cx: Ctx<H>) {
        let s = cx.store();
        let p = handler(s, "h", "t").await.policy;
        let id = enqueue1(s, msg("t", "poison")).await;
        let mut rng = rand::rng();
        for attempt in 1..=6u32 {
            let l = lease_all(s, "h").await;
            assert_eq!(l.len(), 1, "attempt {attempt} leased");
            assert_eq!(l[0].attempt, attempt);
            let disp = p.after_failure(attempt, "exit 3", cx.now(), &mut rng);
            s.fail(&l[0].lease, failed(), disp.clone()).await.unwrap();
            let d = delivery_of(s, id, "h").await;
            match disp {
                Disposition::Retry { at } => {
                    assert_backoff(&p, attempt, cx.now(), at);
                    assert_eq!(d.state, DeliveryState::Retrying);
                    assert_eq!(d.next_at, Some(at));
                    cx.clock().set(at);
                    assert_eq!(s.promote_due(10).await.unwrap(), 1);
                }
                Disposition::Dead { reason } => {
                    assert_eq!(attempt, 6);
                    assert!(reason.contains("6 of 6"), "{reason}");
                    assert_eq!(d.state, DeliveryState::Dead);
                    assert_eq!(d.dead_reason, Some(reason));
                    assert_eq!(d.attempts.len(), 6, "the whole history is kept");
                }
            }
        }
    }

    /// `dead_letters` filters by handler, outcome kind and time and pages with
    /// `after`, oldest death first.
    pub async fn dead_letters_filter_and_page<H: Harness>(cx: Ctx<H>) {
        let s = cx.store();
        handler(s, "a", "t").await;
        handler(s, "b", "t").await;
        for i in 0..5 {
            enqueue1(s, msg("t", &i.to_string())).await;
        }
        let mut deaths = Vec::new(); // (handler, delivery, dead_at)
        for round in 0..5 {
            for h in ["a", "b"] {
                let l = s.lease(h, 1).await.unwrap().remove(0);
                let r = if round % 2 == 0 {
                    failed()
                } else {
                    report(Outcome::Rejected)
                };
                s.fail(&l.lease, r, dead("d")).await.unwrap();
                deaths.push((h, l.lease.delivery_id, cx.now()));
                cx.advance(Duration::from_secs(1));
            }
        }
        let all = s
            .dead_letters(&DeadFilter::default(), None, 100)
            .await
            .unwrap();
        let ids: Vec<_> = all.iter().map(|d| d.id).collect();
        let want: Vec<_> = deaths.iter().map(|d| d.1).collect();
        assert_eq!(ids, want, "oldest death first");

        let only_a = DeadFilter {
            handler: Some("a".into()),
            ..DeadFilter::default()
        };
        let a = s.dead_letters(&only_a, None, 100).await.unwrap();
        assert_eq!(a.len(), 5);
        assert!(a.iter().all(|d| d.handler == "a"));

        let rejected = DeadFilter {
            outcome: Some("rejected".into()),
            ..DeadFilter::default()
        };
        assert_eq!(s.dead_letters(&rejected, None, 100).await.unwrap().len(), 4);

        let window = DeadFilter {
            since: Some(deaths[2].2),
            until: Some(deaths[6].2),
            ..DeadFilter::default()
        };
        let w: Vec<_> = s
            .dead_letters(&window, None, 100)
            .await
            .unwrap()
            .iter()
            .map(|d| d.id)
            .collect();
        assert_eq!(w, want[2..6], "since inclusive, until exclusive");

        let mut paged = Vec::new();
        let mut after = None;
        loop {
            let page = s
                .dead_letters(&DeadFilter::default(), after, 3)
                .await
                .unwrap();
            if page.is_empty() {
                break;
            }
            assert!(page.len() <= 3);
            after = page.last().map(|d| d.id);
            paged.extend(page.into_iter().map(|d| d.id));
        }
        assert_eq!(paged, want, "paging with `after` walks the whole DLQ once");
    }

    /// Replaying a dead delivery makes it ready with attempts counted afresh
    /// (attempt 1, round 1) while its history is kept.
    pub async fn replay_dead_resets_attempts_keeps_history<H: Harness>(cx: Ctx<H>) {
        let s = cx.store();
        let p = HandlerPolicy {
            retries: 1,
            ..policy()
        };
        handler_with(s, "h", "t", p).await;
        let id = enqueue1(s, msg("t", "x")).await;
        let l = lease_all(s, "h").await.remove(0);
        let did = l.lease.delivery_id;
        match s.replay_dead(did).await {
            Err(StoreError::NotDead(d)) => assert_eq!(d, did),
            other => panic!("replay of a leased delivery: expected NotDead, got {other:?}"),
        }
        s.fail(&l.lease, failed(), retry_in(cx.now(), Duration::ZERO))
            .await
            .unwrap();
        s.promote_due(10).await.unwrap();
        let l = lease_all(s, "h").await.remove(0);
        assert_eq!(l.attempt, 2);
        s.fail(&l.lease, failed(), dead("attempts exhausted"))
            .await
            .unwrap();
        cx.advance(Duration::from_secs(10));
        s.replay_dead(did).await.unwrap();
        let d = delivery_of(s, id, "h").await;
        assert_eq!(d.id, did, "replay keeps the delivery");
        assert_eq!(d.state, DeliveryState::Ready);
        assert_eq!(d.dead_reason, None);
        assert_eq!(d.dead_at, None);
        assert_eq!(d.attempts.len(), 2, "history kept");
        assert_eq!(count(s, "h", DeliveryState::Dead).await, 0);
        assert!(
            s.dead_letters(&DeadFilter::default(), None, 10)
                .await
                .unwrap()
                .is_empty()
        );
        let l = lease_all(s, "h").await.remove(0);
        assert_eq!(l.attempt, 1, "attempts reset by replay");
        assert_eq!(l.max_attempts, 2);
        s.complete(&l.lease, ok(), vec![]).await.unwrap();
        let d = delivery_of(s, id, "h").await;
        let nums: Vec<_> = d.attempts.iter().map(|a| (a.number, a.round)).collect();
        assert_eq!(nums, [(1, 0), (2, 0), (1, 1)]);
        match s.replay_dead(uuid::Uuid::now_v7()).await {
            Err(StoreError::UnknownDelivery(_)) => {}
            other => panic!("replay of unknown delivery: expected UnknownDelivery, got {other:?}"),
        }
    }

    /// `purge_dead_one` and `purge_dead` remove dead deliveries (and only those).
    pub async fn purge_dead_removes_deliveries<H: Harness>(cx: Ctx<H>) {
        let s = cx.store();
        handler(s, "a", "t").await;
        handler(s, "b", "t").await;
        for i in 0..3 {
            enqueue1(s, msg("t", &i.to_string())).await;
        }
        let mut dead_a = Vec::new();
        for h in ["a", "b"] {
            for l in s.lease(h, 2).await.unwrap() {
                if h == "a" {
                    dead_a.push(l.lease.delivery_id);
                }
                s.fail(&l.lease, failed(), dead("x")).await.unwrap();
            }
        }
        let open = lease_all(s, "a").await.remove(0).lease.delivery_id;
        match s.purge_dead_one(open).await {
            Err(StoreError::NotDead(d)) => assert_eq!(d, open),
            other => panic!("purge of a leased delivery: expected NotDead, got {other:?}"),
        }
        s.purge_dead_one(dead_a[0]).await.unwrap();
        match s.delivery(dead_a[0]).await {
            Err(StoreError::UnknownDelivery(_)) => {}
            other => panic!("purged delivery: expected UnknownDelivery, got {other:?}"),
        }
        let only_b = DeadFilter {
            handler: Some("b".into()),
            ..DeadFilter::default()
        };
        assert_eq!(s.purge_dead(&only_b).await.unwrap(), 2);
        let left: Vec<_> = s
            .dead_letters(&DeadFilter::default(), None, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|d| d.id)
            .collect();
        assert_eq!(left, [dead_a[1]]);
        assert_eq!(count(s, "a", DeliveryState::Dead).await, 1);
        assert_eq!(count(s, "b", DeliveryState::Dead).await, 0);
        assert_eq!(s.delivery(open).await.unwrap().state, DeliveryState::Leased);
    }

    /// `replay_since` gives every retained message of the topic enqueued at or
    /// after `since` a new delivery for that handler only.
    pub async fn replay_since_redelivers_retained_messages<H: Harness>(cx: Ctx<H>) {
        let s = cx.store();
        handler(s, "h", "t").await;
        handler(s, "other", "t").await;
        let mut ids = Vec::new();
        for i in 0..3 {
            ids.push(enqueue1(s, msg("t", &format!("m{i}"))).await);
            cx.advance(Duration::from_secs(10));
        }
        for l in lease_all(s, "h").await {
            s.complete(&l.lease, ok(), vec![]).await.unwrap();
        }
        let other_before = lease_all(s, "other").await.len();
        assert_eq!(other_before, 3);
        assert_eq!(
            s.replay_since("h", T0.plus(Duration::from_secs(10)))
                .await
                .unwrap(),
            2
        );
        let again = lease_all(s, "h").await;
        assert_eq!(payloads(&again), ["m1", "m2"], "replayed in enqueue order");
        for l in &again {
            assert_eq!(l.attempt, 1);
        }
        assert!(
            lease_all(s, "other").await.is_empty(),
            "other handler untouched"
        );
        let st = s.message(ids[1]).await.unwrap();
        let for_h = st.deliveries.iter().filter(|d| d.handler == "h").count();
        assert_eq!(for_h, 2, "a new delivery next to the succeeded one");
        assert_eq!(s.message(ids[0]).await.unwrap().deliveries.len(), 2);
    }

    // ---- upkeep ----

    /// A message with `not_before` is scheduled until then; `promote_due` makes it
    /// ready; `next_due` tells when. A `not_before` in the past is ready at once.
    pub async fn delayed_message_is_scheduled_until_due<H: Harness>(cx: Ctx<H>) {
        let s = cx.store();
        handler(s, "h", "t").await;
        let at = cx.now().plus(Duration::from_secs(10));
        let id = enqueue1(
            s,
            NewMessage {
                not_before: Some(at),
                ..msg("t", "later")
            },
        )
        .await;
        assert_eq!(s.message(id).await.unwrap().message.not_before, Some(at));
        let d = delivery_of(s, id, "h").await;
        assert_eq!(d.state, DeliveryState::Scheduled);
        assert_eq!(d.next_at, Some(at));
        assert_eq!(s.next_due().await.unwrap(), Some(at));
        assert_eq!(depth(s, "t").await, 1, "scheduled is open");
        assert!(lease_all(s, "h").await.is_empty());
        cx.advance(Duration::from_millis(9_999));
        assert_eq!(s.promote_due(10).await.unwrap(), 0);
        assert!(lease_all(s, "h").await.is_empty());
        cx.advance(Duration::from_millis(1));
        assert_eq!(s.promote_due(10).await.unwrap(), 1);
        assert_eq!(payloads(&lease_all(s, "h").await), ["later"]);

        let past = enqueue1(
            s,
            NewMessage {
                not_before: Some(T0),
                ..msg("t", "past")
            },
        )
        .await;
        assert_eq!(delivery_of(s, past, "h").await.state, DeliveryState::Ready);
    }

    /// `promote_due` promotes at most `limit` per call, earliest first.
    pub async fn promote_due_respects_limit<H: Harness>(cx: Ctx<H>) {
        let s = cx.store();
        handler(s, "h", "t").await;
        for i in 0..5u64 {
            enqueue1(
                s,
                NewMessage {
                    not_before: Some(cx.now().plus(Duration::from_secs(5 - i))),
                    ..msg("t", &format!("d{}", 5 - i))
                },
            )
            .await;
        }
        assert_eq!(
            s.next_due().await.unwrap(),
            Some(cx.now().plus(Duration::from_secs(1)))
        );
        cx.advance(Duration::from_secs(5));
        assert_eq!(s.promote_due(2).await.unwrap(), 2);
        let first = lease_all(s, "h").await;
        let mut got = payloads(&first);
        got.sort();
        assert_eq!(got, ["d1", "d2"], "earliest due first");
        assert_eq!(s.promote_due(10).await.unwrap(), 3);
        assert_eq!(s.promote_due(10).await.unwrap(), 0);
        assert_eq!(lease_all(s, "h").await.len(), 3);
    }

    /// An expired lease is rescued: the attempt is recorded as interrupted, the
    /// delivery retried after the policy's backoff, and the old lease is stale.
    pub async fn rescue_expired_retries_with_backoff<H: Harness>(cx: Ctx<H>) {
        let s = cx.store();
        let p = handler(s, "h", "t").await.policy;
        let id = enqueue1(s, msg("t", "x")).await;
        let l = lease_all(s, "h").await.remove(0);
        cx.advance(Duration::from_secs(74));
        assert_eq!(
            rescue_expired(s, cx.clock(), 10).await.unwrap(),
            0,
            "lease still alive"
        );
        cx.advance(Duration::from_secs(1));
        assert_eq!(
            rescue_expired(s, cx.clock(), 10).await.unwrap(),
            1,
            "lease expired at 75 s"
        );
        assert_eq!(
            rescue_expired(s, cx.clock(), 10).await.unwrap(),
            0,
            "rescued once"
        );
        let d = delivery_of(s, id, "h").await;
        assert_eq!(d.state, DeliveryState::Retrying);
        let next = d.next_at.expect("retrying has next_at");
        assert_backoff(&p, 1, cx.now(), next);
        let a = &d.attempts[0];
        assert_eq!(a.finished_at, Some(cx.now()));
        let outcome = &a
            .report
            .as_ref()
            .expect("rescued attempt has a report")
            .outcome;
        assert!(
            matches!(outcome, Outcome::Interrupted { .. }),
            "rescued attempt is interrupted, got {outcome:?}"
        );
        assert_lease_lost(
            s.complete(&l.lease, ok(), vec![]).await,
            d.id,
            "rescued lease",
        );
        cx.clock().set(next);
        assert_eq!(s.promote_due(10).await.unwrap(), 1);
        let l2 = lease_all(s, "h").await.remove(0);
        assert_eq!(l2.attempt, 2, "the interrupted attempt counts");
    }

    /// A lease expiring on the last allowed attempt sends the delivery to the DLQ.
    pub async fn rescue_expired_dead_letters_last_attempt<H: Harness>(cx: Ctx<H>) {
        let s = cx.store();
        let p = HandlerPolicy {
            retries: 0,
            lease_ms: Some(30_000),
            ..policy()
        };
        handler_with(s, "h", "t", p).await;
        let id = enqueue1(s, msg("t", "x")).await;
        lease_all(s, "h").await;
        cx.advance(Duration::from_secs(30));
        assert_eq!(rescue_expired(s, cx.clock(), 10).await.unwrap(), 1);
        let d = delivery_of(s, id, "h").await;
        assert_eq!(d.state, DeliveryState::Dead);
        let reason = d.dead_reason.unwrap_or_default();
        assert!(
            reason.contains("1 of 1"),
            "reason from after_failure: {reason}"
        );
    }

    // ---- outbox ----

    /// `complete` commits its outbox with the success: each message lands on its
    /// topic (with ordering key and delay) with a distinct derived idempotency key.
    pub async fn outbox_commits_with_success<H: Harness>(cx: Ctx<H>) {
        let s = cx.store();
        handler(s, "up", "in").await;
        handler(s, "down", "out").await;
        let parent = enqueue1(s, msg("in", "parent")).await;
        let l = lease_all(s, "up").await.remove(0);
        let outbox = vec![
            OutboxMessage {
                topic: "out".into(),
                payload: Bytes::from_static(b"o1"),
                ordering_key: None,
                delay: None,
            },
            OutboxMessage {
                topic: "out".into(),
                payload: Bytes::from_static(b"o2"),
                ordering_key: Some("k".into()),
                delay: None,
            },
            OutboxMessage {
                topic: "out".into(),
                payload: Bytes::from_static(b"o3"),
                ordering_key: None,
                delay: Some(Duration::from_secs(5)),
            },
        ];
        s.complete(&l.lease, ok(), outbox).await.unwrap();
        assert_eq!(
            delivery_of(s, parent, "up").await.state,
            DeliveryState::Succeeded
        );
        let now_ready = lease_all(s, "down").await;
        assert_eq!(payloads(&now_ready), ["o1", "o2"]);
        assert_eq!(now_ready[1].message.ordering_key.as_deref(), Some("k"));
        let keys: BTreeSet<_> = now_ready
            .iter()
            .map(|l| l.message.idempotency_key.clone())
            .collect();
        assert_eq!(keys.len(), 2, "derived keys are distinct");
        assert_eq!(count(s, "down", DeliveryState::Scheduled).await, 1);
        cx.advance(Duration::from_secs(5));
        s.promote_due(10).await.unwrap();
        assert_eq!(payloads(&lease_all(s, "down").await), ["o3"]);
    }

    /// Issue #2's outbox test: lease, let the lease expire, rescue, re-lease,
    /// complete with the same outbox: downstream has each message once. The stale
    /// lease's complete creates nothing.
    pub async fn outbox_is_not_duplicated_after_rescue<H: Harness>(cx: Ctx<H>) {
        let s = cx.store();
        handler(s, "up", "in").await;
        handler(s, "down", "out").await;
        enqueue1(s, msg("in", "parent")).await;
        let outbox: Vec<_> = (0..3)
            .map(|i| OutboxMessage {
                topic: "out".into(),
                payload: Bytes::from(format!("o{i}")),
                ordering_key: None,
                delay: None,
            })
            .collect();
        let first = lease_all(s, "up").await.remove(0);
        cx.advance(Duration::from_secs(76));
        assert_eq!(rescue_expired(s, cx.clock(), 10).await.unwrap(), 1);
        cx.advance(Duration::from_secs(2));
        assert_eq!(s.promote_due(10).await.unwrap(), 1);
        let second = lease_all(s, "up").await.remove(0);
        assert_eq!(second.attempt, 2);

        let lid = first.lease.delivery_id;
        let stale = s.complete(&first.lease, ok(), outbox.clone()).await;
        assert_lease_lost(stale, lid, "stale complete with outbox");
        assert_eq!(
            depth(s, "out").await,
            0,
            "a stale complete publishes nothing"
        );

        s.complete(&second.lease, ok(), outbox.clone())
            .await
            .unwrap();
        assert_eq!(depth(s, "out").await, 3);

        // The attempt re-runs after a replay and publishes the same outbox again.
        let again = s.replay_since("up", T0).await.unwrap();
        assert_eq!(again, 1);
        let third = lease_all(s, "up").await.remove(0);
        s.complete(&third.lease, ok(), outbox).await.unwrap();
        let down = lease_all(s, "down").await;
        let mut got = payloads(&down);
        got.sort();
        assert_eq!(
            got,
            ["o0", "o1", "o2"],
            "each outbox message exactly once downstream"
        );
    }

    /// An outbox that cannot be committed (here: an invalid topic name) fails the
    /// completion as a whole: nothing is published, the attempt is not recorded
    /// as a success, and the lease stays valid.
    pub async fn outbox_failure_commits_nothing<H: Harness>(cx: Ctx<H>) {
        let s = cx.store();
        handler(s, "up", "in").await;
        handler(s, "down", "out").await;
        let id = enqueue1(s, msg("in", "parent")).await;
        let l = lease_all(s, "up").await.remove(0);
        let good = OutboxMessage {
            topic: "out".into(),
            payload: Bytes::from_static(b"ok"),
            ordering_key: None,
            delay: None,
        };
        let bad = OutboxMessage {
            topic: "Not A Topic".into(),
            ..good.clone()
        };
        match s.complete(&l.lease, ok(), vec![good.clone(), bad]).await {
            Err(StoreError::InvalidName(e)) => assert_eq!(e.what, "topic"),
            other => panic!("expected InvalidName(topic), got {other:?}"),
        }
        assert_eq!(depth(s, "out").await, 0, "nothing published");
        let d = delivery_of(s, id, "up").await;
        assert_eq!(d.state, DeliveryState::Leased);
        assert_eq!(d.attempts[0].report, None, "no outcome recorded");
        s.complete(&l.lease, ok(), vec![good]).await.unwrap();
        assert_eq!(depth(s, "out").await, 1);
    }

    // ---- per-key ordering ----

    /// Per handler, one delivery per ordering key is in flight, in enqueue order;
    /// the others are blocked; unkeyed and other keys run in parallel.
    pub async fn ordering_key_one_in_flight_in_enqueue_order<H: Harness>(cx: Ctx<H>) {
        let s = cx.store();
        handler(s, "h", "t").await;
        let batch = vec![
            keyed("t", "k1", "k"),
            keyed("t", "k2", "k"),
            msg("t", "u1"),
            keyed("t", "j1", "j"),
            keyed("t", "k3", "k"),
            msg("t", "u2"),
        ];
        let ids: Vec<_> = s
            .enqueue(batch)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(
            delivery_of(s, ids[1], "h").await.state,
            DeliveryState::Blocked
        );
        assert_eq!(
            delivery_of(s, ids[4], "h").await.state,
            DeliveryState::Blocked
        );
        assert_eq!(count(s, "h", DeliveryState::Blocked).await, 2);
        assert_eq!(count(s, "h", DeliveryState::Ready).await, 4);
        let l = lease_all(s, "h").await;
        assert_eq!(payloads(&l), ["k1", "u1", "j1", "u2"]);
        assert!(lease_all(s, "h").await.is_empty(), "k2 waits for k1");
        s.complete(&l[0].lease, ok(), vec![]).await.unwrap();
        assert_eq!(
            delivery_of(s, ids[1], "h").await.state,
            DeliveryState::Ready
        );
        let l2 = lease_all(s, "h").await;
        assert_eq!(payloads(&l2), ["k2"]);
        s.complete(&l2[0].lease, ok(), vec![]).await.unwrap();
        assert_eq!(payloads(&lease_all(s, "h").await), ["k3"]);
    }

    /// A retrying head blocks its key across the retry, and only its key.
    pub async fn retrying_head_blocks_only_its_key<H: Harness>(cx: Ctx<H>) {
        let s = cx.store();
        handler(s, "h", "t").await;
        s.enqueue(vec![keyed("t", "k1", "k"), keyed("t", "k2", "k")])
            .await
            .unwrap();
        let l = lease_all(s, "h").await;
        assert_eq!(payloads(&l), ["k1"]);
        s.fail(
            &l[0].lease,
            failed(),
            retry_in(cx.now(), Duration::from_secs(1)),
        )
        .await
        .unwrap();
        s.enqueue(vec![keyed("t", "j1", "j"), msg("t", "u1")])
            .await
            .unwrap();
        assert_eq!(
            payloads(&lease_all(s, "h").await),
            ["j1", "u1"],
            "k2 stays blocked behind the retrying k1"
        );
        cx.advance(Duration::from_secs(1));
        s.promote_due(10).await.unwrap();
        let l = lease_all(s, "h").await;
        assert_eq!(payloads(&l), ["k1"], "the head retries before k2");
        assert_eq!(l[0].attempt, 2);
        s.complete(&l[0].lease, ok(), vec![]).await.unwrap();
        assert_eq!(payloads(&lease_all(s, "h").await), ["k2"]);
    }

    /// A head that dies unblocks the next message of its key.
    pub async fn dead_head_unblocks_next<H: Harness>(cx: Ctx<H>) {
        let s = cx.store();
        handler(s, "h", "t").await;
        s.enqueue(vec![keyed("t", "k1", "k"), keyed("t", "k2", "k")])
            .await
            .unwrap();
        let l = lease_all(s, "h").await;
        s.fail(&l[0].lease, failed(), dead("poison")).await.unwrap();
        assert_eq!(payloads(&lease_all(s, "h").await), ["k2"]);
    }

    /// Ordering is per handler: one handler's in-flight key does not block another's.
    pub async fn ordering_is_per_handler<H: Harness>(cx: Ctx<H>) {
        let s = cx.store();
        handler(s, "a", "t").await;
        handler(s, "b", "t").await;
        s.enqueue(vec![keyed("t", "k1", "k"), keyed("t", "k2", "k")])
            .await
            .unwrap();
        let a = lease_all(s, "a").await;
        assert_eq!(payloads(&a), ["k1"]);
        let b = lease_all(s, "b").await;
        assert_eq!(payloads(&b), ["k1"]);
        s.complete(&b[0].lease, ok(), vec![]).await.unwrap();
        assert_eq!(payloads(&lease_all(s, "b").await), ["k2"]);
        assert!(lease_all(s, "a").await.is_empty());
    }

    /// Replaying a dead keyed delivery while its key has another in flight never
    /// puts two of that key in flight.
    pub async fn replayed_keyed_delivery_keeps_one_in_flight<H: Harness>(cx: Ctx<H>) {
        let s = cx.store();
        handler(s, "h", "t").await;
        s.enqueue(vec![keyed("t", "k1", "k"), keyed("t", "k2", "k")])
            .await
            .unwrap();
        let l = lease_all(s, "h").await;
        let dead_id = l[0].lease.delivery_id;
        s.fail(&l[0].lease, failed(), dead("x")).await.unwrap();
        let k2 = lease_all(s, "h").await;
        assert_eq!(payloads(&k2), ["k2"]);
        s.replay_dead(dead_id).await.unwrap();
        assert!(
            lease_all(s, "h").await.is_empty(),
            "replayed k1 must wait while k2 is in flight"
        );
        let st = s.delivery(dead_id).await.unwrap().state;
        assert!(
            matches!(st, DeliveryState::Blocked),
            "replayed k1 is blocked, got {st:?}"
        );
        s.complete(&k2[0].lease, ok(), vec![]).await.unwrap();
        assert_eq!(payloads(&lease_all(s, "h").await), ["k1"]);
    }

    // ---- backpressure ----

    /// At `max_topic_depth` open deliveries an enqueue gets `QueueFull` and
    /// nothing of its batch is created; room made by completions is usable again.
    pub async fn queue_full_refuses_whole_batch<H: Harness>(mut cx: Ctx<H>) {
        cx.reopen_with(StoreConfig {
            max_topic_depth: 3,
            ..StoreConfig::default()
        });
        let s = cx.store();
        handler(s, "h", "t").await;
        handler(s, "other", "u").await;
        s.enqueue(vec![msg("t", "1"), msg("t", "2"), msg("t", "3")])
            .await
            .unwrap();
        assert_eq!(depth(s, "t").await, 3);
        match s.enqueue(vec![msg("u", "fine"), msg("t", "4")]).await {
            Err(e @ StoreError::QueueFull { .. }) => {
                match &e {
                    StoreError::QueueFull { topic, depth, max } => {
                        assert_eq!((topic.as_str(), *depth, *max), ("t", 3, 3));
                    }
                    _ => unreachable!(),
                }
                assert!(e.to_string().contains("retry later"), "{e}");
            }
            other => panic!("expected QueueFull, got {other:?}"),
        }
        assert_eq!(depth(s, "t").await, 3, "nothing dropped, nothing added");
        assert_eq!(depth(s, "u").await, 0, "the batch is atomic");
        let l = s.lease("h", 1).await.unwrap().remove(0);
        s.complete(&l.lease, ok(), vec![]).await.unwrap();
        enqueue1(s, msg("t", "4")).await;
        assert_eq!(depth(s, "t").await, 3);
    }

    // ---- prune ----

    /// `prune` removes dead deliveries past `dlq_retention` and finished messages
    /// past `message_retention`; open messages are never pruned.
    pub async fn prune_removes_old_dead_and_done_messages<H: Harness>(mut cx: Ctx<H>) {
        cx.reopen_with(StoreConfig {
            dlq_retention: Duration::from_secs(3600),
            message_retention: Duration::from_secs(7200),
            ..StoreConfig::default()
        });
        let s = cx.store();
        handler(s, "h", "t").await;
        let dead_msg = enqueue1(s, msg("t", "dead")).await;
        let done_msg = enqueue1(s, msg("t", "done")).await;
        let open_msg = enqueue1(s, msg("t", "open")).await;
        let l = s.lease("h", 2).await.unwrap();
        let dead_delivery = l[0].lease.delivery_id;
        s.fail(&l[0].lease, failed(), dead("x")).await.unwrap();
        s.complete(&l[1].lease, ok(), vec![]).await.unwrap();

        cx.advance(Duration::from_secs(3599));
        assert_eq!(s.prune(1000).await.unwrap().dead, 0, "inside DLQ retention");
        cx.advance(Duration::from_secs(2));
        let r = s.prune(1000).await.unwrap();
        assert_eq!(r.dead, 1, "{r:?}");
        match s.delivery(dead_delivery).await {
            Err(StoreError::UnknownDelivery(_)) => {}
            other => panic!("pruned dead delivery: expected UnknownDelivery, got {other:?}"),
        }
        assert_eq!(count(s, "h", DeliveryState::Dead).await, 0);

        cx.advance(Duration::from_secs(7200));
        let r = s.prune(1000).await.unwrap();
        assert!(
            r.messages >= 1,
            "finished message past retention pruned: {r:?}"
        );
        match s.message(done_msg).await {
            Err(StoreError::UnknownMessage(_)) => {}
            other => panic!("pruned message: expected UnknownMessage, got {other:?}"),
        }
        let _ = dead_msg;
        let st = s
            .message(open_msg)
            .await
            .expect("open message is never pruned");
        assert_eq!(st.deliveries[0].state, DeliveryState::Ready);
        assert_eq!(payloads(&lease_all(s, "h").await), ["open"]);
    }

    // ---- handlers and stats ----

    /// `remove_handler` removes the handler with its deliveries and says how many.
    pub async fn remove_handler_drops_its_deliveries<H: Harness>(cx: Ctx<H>) {
        let s = cx.store();
        handler(s, "gone", "t").await;
        handler(s, "kept", "t").await;
        let ids = s
            .enqueue(vec![msg("t", "1"), msg("t", "2"), msg("t", "3")])
            .await
            .unwrap();
        let l = s.lease("gone", 1).await.unwrap().remove(0);
        s.fail(&l.lease, failed(), dead("x")).await.unwrap();
        assert_eq!(s.remove_handler("gone").await.unwrap(), 3);
        assert!(matches!(
            s.handler("gone").await,
            Err(StoreError::UnknownHandler(_))
        ));
        let st = s.message(ids[0].id).await.unwrap();
        assert!(st.deliveries.iter().all(|d| d.handler == "kept"));
        assert_eq!(depth(s, "t").await, 3);
        assert!(
            s.dead_letters(&DeadFilter::default(), None, 10)
                .await
                .unwrap()
                .is_empty()
        );
        let stats = s.stats().await.unwrap();
        assert!(stats.handlers.iter().all(|h| h.handler != "gone"));
    }

    /// `stats` counts every state (all seven keys present), topic depth and the
    /// consumer lag (when the oldest ready delivery became ready).
    pub async fn stats_count_every_state<H: Harness>(cx: Ctx<H>) {
        let s = cx.store();
        handler(s, "h", "t").await;
        let st = s.stats().await.unwrap();
        let h = &st.handlers[0];
        assert_eq!(h.counts.len(), 7, "every state present: {:?}", h.counts);
        assert!(h.counts.values().all(|&c| c == 0));
        assert_eq!(h.oldest_ready_at, None);

        let oldest = cx.now();
        s.enqueue((0..6).map(|i| msg("t", &i.to_string())).collect())
            .await
            .unwrap();
        cx.advance(Duration::from_secs(1));
        s.enqueue(vec![
            keyed("t", "k1", "k"),
            keyed("t", "k2", "k"),
            NewMessage {
                not_before: Some(cx.now().plus(Duration::from_secs(60))),
                ..msg("t", "later")
            },
        ])
        .await
        .unwrap();
        let l = s.lease("h", 4).await.unwrap();
        s.complete(&l[0].lease, ok(), vec![]).await.unwrap();
        s.fail(&l[1].lease, failed(), dead("x")).await.unwrap();
        s.fail(
            &l[2].lease,
            failed(),
            retry_in(cx.now(), Duration::from_secs(9)),
        )
        .await
        .unwrap();
        let st = s.stats().await.unwrap();
        let h = &st.handlers[0];
        let want: BTreeMap<_, _> = [
            (DeliveryState::Scheduled, 1),
            (DeliveryState::Blocked, 1),
            (DeliveryState::Ready, 3),
            (DeliveryState::Leased, 1),
            (DeliveryState::Retrying, 1),
            (DeliveryState::Succeeded, 1),
            (DeliveryState::Dead, 1),
        ]
        .into_iter()
        .collect();
        assert_eq!(h.counts, want);
        assert_eq!(h.oldest_ready_at, Some(oldest));
        assert_eq!(st.topic_depth.get("t"), Some(&7));
        assert_eq!(h.topic, "t");
    }

    /// The handlers signal changes with every handler change, not with traffic.
    pub async fn handlers_signal_wakes_on_handler_changes<H: Harness>(cx: Ctx<H>) {
        let s = cx.store();
        let mut rx = s.handlers_signal();
        rx.borrow_and_update();
        handler(s, "h", "t").await;
        assert!(rx.has_changed().unwrap(), "registration signals");
        rx.borrow_and_update();
        enqueue1(s, msg("t", "x")).await;
        assert!(!rx.has_changed().unwrap(), "an enqueue does not");
        s.set_paused("h", true).await.unwrap();
        assert!(rx.has_changed().unwrap(), "a pause signals");
        rx.borrow_and_update();
        s.remove_handler("h").await.unwrap();
        assert!(rx.has_changed().unwrap(), "a removal signals");
    }

    /// The ready signal changes when a delivery becomes ready.
    pub async fn ready_signal_wakes_on_enqueue<H: Harness>(cx: Ctx<H>) {
        let s = cx.store();
        handler(s, "h", "t").await;
        let mut rx = s.ready_signal();
        rx.borrow_and_update();
        enqueue1(s, msg("t", "x")).await;
        assert!(rx.has_changed().unwrap(), "enqueue signals");
        rx.borrow_and_update();
        let l = lease_all(s, "h").await.remove(0);
        s.fail(
            &l.lease,
            failed(),
            retry_in(cx.now(), Duration::from_secs(1)),
        )
        .await
        .unwrap();
        rx.borrow_and_update();
        cx.advance(Duration::from_secs(1));
        s.promote_due(10).await.unwrap();
        assert!(rx.has_changed().unwrap(), "promotion signals");
    }

    /// Concurrent single-message enqueues share flushes: 256 at once need far
    /// fewer than 256 flushes, and every one of them is acknowledged.
    pub async fn group_commit_shares_flushes<H: Harness>(cx: Ctx<H>) {
        let s = cx.store();
        handler(s, "h", "t").await;
        let before = s.stats().await.unwrap().flushes;
        let n = 256;
        let barrier = Arc::new(tokio::sync::Barrier::new(n));
        let mut tasks = Vec::new();
        for i in 0..n {
            let s = cx.shared();
            let barrier = Arc::clone(&barrier);
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                s.enqueue(vec![msg("t", &i.to_string())]).await.unwrap()[0].id
            }));
        }
        let mut ids = BTreeSet::new();
        for t in tasks {
            ids.insert(t.await.unwrap());
        }
        assert_eq!(ids.len(), n);
        let flushes = s.stats().await.unwrap().flushes - before;
        assert!(flushes >= 1, "durable enqueues must flush");
        assert!(
            flushes <= n as u64 / 2,
            "{n} concurrent enqueues took {flushes} flushes: no group commit"
        );
        assert_eq!(depth(s, "t").await, n as u64);
    }

    // ---- restart ----

    /// Everything acknowledged survives a restart: handlers, modules, messages,
    /// every delivery's state and history, DLQ, counts.
    pub async fn acknowledged_state_survives_restart<H: Harness>(mut cx: Ctx<H>) {
        let s = cx.store();
        handler(s, "h", "t").await;
        handler(s, "p", "t").await;
        s.set_paused("p", true).await.unwrap();
        let mut ids = Vec::new();
        for i in 0..8 {
            ids.push(enqueue1(s, keyed("t", &format!("m{i}"), &format!("k{}", i % 6))).await);
        }
        ids.push(
            enqueue1(
                s,
                NewMessage {
                    not_before: Some(cx.now().plus(Duration::from_secs(30))),
                    idempotency_key: Some("idem".into()),
                    ..msg("t", "delayed")
                },
            )
            .await,
        );
        let l = s.lease("h", 3).await.unwrap();
        s.complete(&l[0].lease, ok(), vec![]).await.unwrap();
        s.fail(&l[1].lease, failed(), dead("x")).await.unwrap();
        s.fail(
            &l[2].lease,
            failed(),
            retry_in(cx.now(), Duration::from_secs(5)),
        )
        .await
        .unwrap();
        let mut before = Vec::new();
        for id in &ids {
            before.push(s.message(*id).await.unwrap());
        }
        let stats_before = s.stats().await.unwrap();
        let handlers_before = s.handlers().await.unwrap();
        cx.restart();
        let s = cx.store();
        for (id, b) in ids.iter().zip(&before) {
            let mut a = s.message(*id).await.unwrap();
            let mut b = b.clone();
            a.deliveries.sort_by_key(|d| d.id);
            b.deliveries.sort_by_key(|d| d.id);
            assert_eq!(a, b, "message {id} unchanged by restart");
        }
        let stats_after = s.stats().await.unwrap();
        assert_eq!(stats_after.handlers, stats_before.handlers);
        assert_eq!(stats_after.topic_depth, stats_before.topic_depth);
        assert_eq!(s.handlers().await.unwrap(), handlers_before);
        assert_eq!(s.module(&sha256_hex(&module(0))).await.unwrap(), module(0));
        let dup = s
            .enqueue(vec![NewMessage {
                idempotency_key: Some("idem".into()),
                ..msg("t", "again")
            }])
            .await
            .unwrap();
        assert!(dup[0].duplicate);
        assert_eq!(
            s.next_due().await.unwrap(),
            Some(T0.plus(Duration::from_secs(5)))
        );
    }

    /// On open, leases held by the previous process are released at once: the
    /// attempt is recorded as interrupted and counts; the old lease is stale; the
    /// delivery is ready again (at most after the policy's first backoff).
    pub async fn leases_are_released_on_open<H: Harness>(mut cx: Ctx<H>) {
        let s = cx.store();
        let p = handler(s, "h", "t").await.policy;
        let id = enqueue1(s, msg("t", "x")).await;
        let l = lease_all(s, "h").await.remove(0);
        cx.advance(Duration::from_secs(1));
        cx.restart();
        let s = cx.store();
        let d = delivery_of(s, id, "h").await;
        assert_ne!(
            d.state,
            DeliveryState::Leased,
            "released on open, not at expiry"
        );
        assert!(
            matches!(d.state, DeliveryState::Ready | DeliveryState::Retrying),
            "released delivery is ready or retrying, got {:?}",
            d.state
        );
        assert_eq!(d.lease_expires_at, None);
        assert_eq!(d.attempts.len(), 1);
        let a = &d.attempts[0];
        assert!(a.finished_at.is_some());
        let outcome = &a
            .report
            .as_ref()
            .expect("interrupted attempt has a report")
            .outcome;
        assert!(
            matches!(outcome, Outcome::Interrupted { .. }),
            "got {outcome:?}"
        );
        if d.state == DeliveryState::Retrying {
            assert_backoff(&p, 1, cx.now(), d.next_at.expect("retrying has next_at"));
        }
        assert_lease_lost(
            s.complete(&l.lease, ok(), vec![]).await,
            d.id,
            "pre-restart lease",
        );
        cx.advance(Duration::from_secs(2));
        s.promote_due(10).await.unwrap();
        let l2 = lease_all(s, "h").await;
        assert_eq!(l2.len(), 1);
        assert_eq!(l2[0].attempt, 2, "the interrupted attempt counts");
    }

    /// Blocked deliveries stay blocked across a restart and run in order.
    pub async fn ordering_survives_restart<H: Harness>(mut cx: Ctx<H>) {
        let s = cx.store();
        handler(s, "h", "t").await;
        s.enqueue((1..=3).map(|i| keyed("t", &format!("k{i}"), "k")).collect())
            .await
            .unwrap();
        assert_eq!(payloads(&lease_all(s, "h").await), ["k1"]);
        cx.restart();
        let s = cx.store();
        cx.advance(Duration::from_secs(2));
        s.promote_due(10).await.unwrap();
        let l = lease_all(s, "h").await;
        assert_eq!(payloads(&l), ["k1"], "released head runs first again");
        assert_eq!(count(s, "h", DeliveryState::Blocked).await, 2);
        s.complete(&l[0].lease, ok(), vec![]).await.unwrap();
        cx.restart();
        let s = cx.store();
        assert_eq!(payloads(&lease_all(s, "h").await), ["k2"]);
    }
}
