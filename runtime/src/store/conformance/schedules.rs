//! Schedules: firing (an idempotent enqueue in the same batch as the
//! cursor), each catch-up and overlap policy, pause, trigger, start and end,
//! a firing whose key was already used, a stale tick, restarts, and two
//! instances ticking at once. Ticks go through the ticker's own
//! [`tick`](crate::worker::maintenance::schedules::tick) on the manual clock.

use std::time::Duration;

use super::helpers::*;
use super::{Ctx, Harness};
use crate::clock::Timestamp;
use crate::metrics::Metrics;
use crate::store::{
    CatchUp, DeliveryQuery, MessageId, MissReason, NewMessage, Occurrence, OccurrenceKind, Overlap,
    ScheduleSpec, Store, StoreError,
};
use crate::worker::maintenance::schedules::{TickReport, tick, trigger};

const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);

/// A tick of every schedule at the store's clock.
pub(super) async fn tick_now(s: &dyn Store, now: Timestamp) -> TickReport {
    tick(s, now, &Metrics::default()).await.expect("tick")
}

/// Schedule `id` on topic `t` with `cron` and every other default.
pub(super) fn every(id: &str, cron: &str) -> ScheduleSpec {
    ScheduleSpec::new(id, cron, "t")
}

/// Creates `spec` (handler `h` on `t` must exist).
pub(super) async fn create(s: &dyn Store, spec: ScheduleSpec) {
    s.put_schedule(spec).await.expect("put schedule");
}

/// The occurrence records of `id`, oldest first.
pub(super) async fn occurrences(s: &dyn Store, id: &str) -> Vec<Occurrence> {
    let mut o = s.schedule_occurrences(id, 1000).await.expect("occurrences");
    o.reverse();
    o
}

/// When each fired occurrence of `id` was due, oldest first, with its message.
pub(super) async fn fired(s: &dyn Store, id: &str) -> Vec<(Timestamp, MessageId)> {
    occurrences(s, id)
        .await
        .into_iter()
        .filter(|o| o.kind == OccurrenceKind::Fired)
        .map(|o| {
            (
                o.scheduled_for,
                o.message_id.expect("a fired occurrence has its message"),
            )
        })
        .collect()
}

/// Deliveries of handler `h`, every state.
pub(super) async fn deliveries_of_h(s: &dyn Store) -> usize {
    let q = DeliveryQuery {
        handler: Some("h".into()),
        ..DeliveryQuery::default()
    };
    s.query_deliveries(&q, None, 10_000)
        .await
        .expect("query")
        .deliveries
        .len()
}

/// Leases and completes every ready delivery of `h`.
pub(super) async fn finish_all(s: &dyn Store) {
    for l in lease_all(s, "h").await {
        s.complete(&l.lease, ok(), vec![]).await.expect("complete");
    }
}

fn at(t: Timestamp, d: Duration) -> Timestamp {
    t.plus(d)
}

/// One occurrence every minute fires once per minute: a message keyed
/// `sched:<id>:<scheduled-for>` with the schedule's payload, headers and
/// ordering key; a second tick at the same time fires nothing; the cursor
/// survives a restart. Create is an upsert that keeps the cursor.
pub async fn a_schedule_fires_each_occurrence_once<H: Harness>(mut cx: Ctx<H>) {
    handler(cx.store(), "h", "t").await;
    let t0 = cx.now();
    let mut spec = every("tick", "* * * * *");
    spec.payload = bytes::Bytes::from_static(b"{\"job\":1}");
    spec.headers.insert("x-team".into(), "ops".into());
    spec.ordering_key = Some("k".into());
    spec.jitter_ms = 20_000;
    let created = cx.store().put_schedule(spec.clone()).await.unwrap();
    assert_eq!(created.cursor, t0);
    assert_eq!(
        tick_now(cx.store(), cx.now()).await.fired,
        0,
        "nothing due yet"
    );
    cx.advance(MINUTE);
    assert_eq!(tick_now(cx.store(), cx.now()).await.fired, 1);
    assert_eq!(
        tick_now(cx.store(), cx.now()).await.fired,
        0,
        "same time, nothing new"
    );
    let f = fired(cx.store(), "tick").await;
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].0, at(t0, MINUTE));
    let m = cx.store().message(f[0].1).await.unwrap().message;
    assert_eq!(
        m.idempotency_key,
        format!("sched:tick:{}", at(t0, MINUTE).to_rfc3339())
    );
    assert_eq!(&m.payload[..], b"{\"job\":1}");
    assert_eq!(m.ordering_key.as_deref(), Some("k"));
    assert_eq!(m.headers["x-team"], "ops");
    assert_eq!(m.headers["sluice-schedule"], "tick");
    assert_eq!(
        m.headers["sluice-scheduled-for"],
        at(t0, MINUTE).to_rfc3339()
    );
    let nb = m.not_before.expect("jitter delays the message");
    assert!(
        nb >= at(t0, MINUTE) && nb <= at(t0, MINUTE + Duration::from_secs(20)),
        "{nb}"
    );

    cx.restart().await;
    assert_eq!(
        tick_now(cx.store(), cx.now()).await.fired,
        0,
        "the cursor is durable"
    );
    let again = cx.store().put_schedule(spec).await.unwrap();
    assert_eq!(again.cursor, at(t0, MINUTE), "upsert keeps the cursor");
    assert_eq!(again.created_at, t0);
    assert!(again.revision > created.revision);
    cx.advance(MINUTE);
    cx.store().promote_due(10).await.unwrap();
    finish_all(cx.store()).await;
    tick_now(cx.store(), cx.now()).await;
    assert_eq!(deliveries_of_h(cx.store()).await, 2);
    let listed = cx.store().schedules().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].fired, 2);
}

/// Every field is checked, each error naming it; a hostile range is an
/// error, not an allocation; the topic must exist.
pub async fn schedules_are_validated<H: Harness>(cx: Ctx<H>) {
    let s = cx.store();
    handler(s, "h", "t").await;
    let refused = |spec: ScheduleSpec, field: &'static str| async move {
        match s.put_schedule(spec).await {
            Err(e) => assert!(e.to_string().contains(field), "{field}: {e}"),
            Ok(r) => panic!("{field}: accepted {r:?}"),
        }
    };
    refused(every("a", "61 * * * *"), "cron").await;
    refused(every("a", "0 0 1--100000000 * *"), "cron").await;
    refused(every("a", "* * * *"), "cron").await;
    refused(every("a", "0 0 30 2 *"), "never matches").await;
    refused(every("a", &"1,".repeat(200)), "cron").await;
    let mut tz = every("a", "* * * * *");
    tz.timezone = "Mars/Olympus".into();
    refused(tz, "timezone").await;
    let mut cap = every("a", "* * * * *");
    cap.max_catch_up = 0;
    refused(cap, "max_catch_up").await;
    let mut jitter = every("a", "* * * * *");
    jitter.jitter_ms = 10 * 3_600_000;
    refused(jitter, "jitter_ms").await;
    let mut ends = every("a", "* * * * *");
    ends.start = Some(cx.now());
    ends.end = Some(Timestamp(cx.now().0 - 1));
    refused(ends, "end").await;
    let mut header = every("a", "* * * * *");
    header.headers.insert("sluice-schedule".into(), "x".into());
    refused(header, "set by sluice").await;
    refused(every("Bad Id", "* * * * *"), "schedule id").await;
    assert!(matches!(
        s.put_schedule(ScheduleSpec::new("a", "* * * * *", "nowhere"))
            .await,
        Err(StoreError::UnknownTopic(_))
    ));
    assert!(matches!(
        s.schedule("a").await,
        Err(StoreError::UnknownSchedule(_))
    ));
    assert!(
        s.schedules().await.unwrap().is_empty(),
        "nothing was stored"
    );
    // Six fields: seconds first.
    create(s, every("secs", "*/10 * * * * *")).await;
}

/// `skip`: after three hours down, an hourly schedule fires none of the
/// three missed occurrences and records them as one run.
pub async fn catch_up_skip_fires_none_of_the_missed<H: Harness>(cx: Ctx<H>) {
    let s = cx.store();
    handler(s, "h", "t").await;
    let mut spec = every("hourly", "0 * * * *");
    spec.catch_up = CatchUp::Skip;
    create(s, spec).await;
    cx.advance(3 * HOUR + 30 * MINUTE);
    let r = tick_now(s, cx.now()).await;
    assert_eq!((r.fired, r.missed), (0, 3));
    let o = occurrences(s, "hourly").await;
    assert_eq!(o.len(), 1, "{o:?}");
    assert_eq!(
        (o[0].kind, o[0].reason, o[0].count),
        (OccurrenceKind::Missed, Some(MissReason::CatchUp), 3)
    );
    assert_eq!(o[0].scheduled_for, at(T0, HOUR));
    assert_eq!(o[0].last, Some(at(T0, 3 * HOUR)));
    let rec = s.schedule("hourly").await.unwrap();
    assert_eq!(rec.missed["catch_up"], 3);
    assert_eq!(rec.cursor, at(T0, 3 * HOUR));
    assert_eq!(deliveries_of_h(s).await, 0);
}

/// `latest` (the default): the most recent missed occurrence fires once,
/// the older ones are missed.
pub async fn catch_up_latest_fires_the_most_recent_once<H: Harness>(cx: Ctx<H>) {
    let s = cx.store();
    handler(s, "h", "t").await;
    create(s, every("hourly", "0 * * * *")).await;
    cx.advance(3 * HOUR + 30 * MINUTE);
    let r = tick_now(s, cx.now()).await;
    assert_eq!((r.fired, r.missed), (1, 2));
    let f = fired(s, "hourly").await;
    assert_eq!(
        f.iter().map(|f| f.0).collect::<Vec<_>>(),
        [at(T0, 3 * HOUR)]
    );
    assert_eq!(s.schedule("hourly").await.unwrap().missed["catch_up"], 2);
    assert_eq!(tick_now(s, cx.now()).await.fired, 0, "once");
}

/// `all`: every missed occurrence fires, up to `max_catch_up` (the most
/// recent ones; older ones are missed as `catch_up_cap`) and within the
/// catch-up window (older ones are missed as `catch_up_window`).
pub async fn catch_up_all_fires_up_to_the_cap_within_the_window<H: Harness>(cx: Ctx<H>) {
    let s = cx.store();
    handler(s, "h", "t").await;
    let mut capped = every("capped", "* * * * *");
    capped.catch_up = CatchUp::All;
    capped.max_catch_up = 5;
    capped.overlap = Overlap::Allow;
    create(s, capped).await;
    let mut windowed = every("windowed", "* * * * *");
    windowed.catch_up = CatchUp::All;
    windowed.catch_up_window_ms = 5 * 60_000;
    windowed.overlap = Overlap::Allow;
    create(s, windowed).await;
    // Down from 08:00:00 to 08:10:30: 08:10 is on time, 08:01 ..= 08:09 late.
    cx.advance(10 * MINUTE + Duration::from_secs(30));
    tick_now(s, cx.now()).await;
    let minutes = |f: Vec<(Timestamp, MessageId)>| {
        f.into_iter()
            .map(|(t, _)| (t.0 - T0.0) / 60_000)
            .collect::<Vec<_>>()
    };
    assert_eq!(minutes(fired(s, "capped").await), [5, 6, 7, 8, 9, 10]);
    assert_eq!(
        s.schedule("capped").await.unwrap().missed["catch_up_cap"],
        4
    );
    // The window starts at 08:05:30.
    assert_eq!(minutes(fired(s, "windowed").await), [6, 7, 8, 9, 10]);
    assert_eq!(
        s.schedule("windowed").await.unwrap().missed["catch_up_window"],
        5
    );
    assert_eq!(deliveries_of_h(s).await, 11);
}

/// `skip` (the default overlap): while the previous occurrence's delivery
/// is open, the next is missed (`overlap`); once it is done, the next fires.
pub async fn overlap_skip_misses_while_the_previous_runs<H: Harness>(cx: Ctx<H>) {
    let s = cx.store();
    handler(s, "h", "t").await;
    create(s, every("m", "* * * * *")).await;
    cx.advance(MINUTE);
    assert_eq!(tick_now(s, cx.now()).await.fired, 1);
    let running = lease_all(s, "h").await;
    cx.advance(MINUTE);
    let r = tick_now(s, cx.now()).await;
    assert_eq!((r.fired, r.missed), (0, 1));
    s.complete(&running[0].lease, ok(), vec![]).await.unwrap();
    cx.advance(MINUTE);
    assert_eq!(tick_now(s, cx.now()).await.fired, 1);
    let o = occurrences(s, "m").await;
    let kinds: Vec<_> = o.iter().map(|o| (o.kind, o.reason)).collect();
    assert_eq!(
        kinds,
        [
            (OccurrenceKind::Fired, None),
            (OccurrenceKind::Missed, Some(MissReason::Overlap)),
            (OccurrenceKind::Fired, None)
        ]
    );
    assert_eq!(o[1].scheduled_for, at(T0, 2 * MINUTE));
}

/// `allow`: occurrences fire whatever the previous one is doing.
pub async fn overlap_allow_fires_beside_the_previous<H: Harness>(cx: Ctx<H>) {
    let s = cx.store();
    handler(s, "h", "t").await;
    let mut spec = every("m", "* * * * *");
    spec.overlap = Overlap::Allow;
    create(s, spec).await;
    for _ in 0..3 {
        cx.advance(MINUTE);
        assert_eq!(tick_now(s, cx.now()).await.fired, 1);
    }
    assert_eq!(deliveries_of_h(s).await, 3);
}

/// `buffer_one`: the first occurrence during a run is kept and fires (with
/// its own key) once the run is done; a second one meanwhile is missed.
pub async fn overlap_buffer_one_fires_once_the_previous_is_done<H: Harness>(mut cx: Ctx<H>) {
    handler(cx.store(), "h", "t").await;
    let mut spec = every("m", "* * * * *");
    spec.overlap = Overlap::BufferOne;
    create(cx.store(), spec).await;
    cx.advance(MINUTE);
    tick_now(cx.store(), cx.now()).await;
    cx.advance(MINUTE);
    tick_now(cx.store(), cx.now()).await;
    assert_eq!(
        cx.store().schedule("m").await.unwrap().buffered,
        Some(at(T0, 2 * MINUTE))
    );
    cx.advance(MINUTE);
    let r = tick_now(cx.store(), cx.now()).await;
    assert_eq!((r.fired, r.missed), (0, 1), "one is buffered already");
    cx.restart().await;
    finish_all(cx.store()).await;
    let r = tick_now(cx.store(), cx.now()).await;
    assert_eq!(r.fired, 1, "the buffered one fires once the run is done");
    let f = fired(cx.store(), "m").await;
    assert_eq!(
        f.iter().map(|f| f.0).collect::<Vec<_>>(),
        [at(T0, MINUTE), at(T0, 2 * MINUTE)]
    );
    let m = cx.store().message(f[1].1).await.unwrap().message;
    assert_eq!(
        m.idempotency_key,
        format!("sched:m:{}", at(T0, 2 * MINUTE).to_rfc3339())
    );
    assert_eq!(cx.store().schedule("m").await.unwrap().buffered, None);
}

/// Paused, a schedule fires nothing and counts every occurrence it passes
/// as missed (`paused`); resumed, it fires the next one.
pub async fn a_paused_schedule_fires_nothing_and_counts_what_it_missed<H: Harness>(cx: Ctx<H>) {
    let s = cx.store();
    handler(s, "h", "t").await;
    create(s, every("m", "* * * * *")).await;
    assert!(s.set_schedule_paused("m", true).await.unwrap().paused);
    cx.advance(3 * MINUTE);
    let r = tick_now(s, cx.now()).await;
    assert_eq!((r.fired, r.missed), (0, 3));
    assert_eq!(s.schedule("m").await.unwrap().missed["paused"], 3);
    assert!(!s.set_schedule_paused("m", false).await.unwrap().paused);
    cx.advance(MINUTE);
    assert_eq!(tick_now(s, cx.now()).await.fired, 1);
    assert!(matches!(
        s.set_schedule_paused("nope", true).await,
        Err(StoreError::UnknownSchedule(_))
    ));
}

/// A trigger enqueues now with its own key and leaves the cursor; the
/// schedule's own occurrences fire as before. Removing a schedule keeps
/// the messages it enqueued.
pub async fn trigger_fires_now_and_leaves_the_cursor<H: Harness>(cx: Ctx<H>) {
    let s = cx.store();
    handler(s, "h", "t").await;
    let mut spec = every("m", "0 * * * *");
    spec.overlap = Overlap::Allow;
    create(s, spec).await;
    cx.advance(MINUTE);
    let o = trigger(s, "m", cx.now()).await.unwrap();
    assert_eq!(o.kind, OccurrenceKind::Triggered);
    let m = s.message(o.message_id.unwrap()).await.unwrap().message;
    assert_eq!(
        m.idempotency_key,
        format!("sched:m:trigger:{}", cx.now().to_rfc3339())
    );
    let rec = s.schedule("m").await.unwrap();
    assert_eq!(rec.cursor, T0, "a trigger does not move the cursor");
    assert_eq!(rec.fired, 0);
    cx.advance(HOUR);
    assert_eq!(tick_now(s, cx.now()).await.fired, 1);
    assert_eq!(deliveries_of_h(s).await, 2);
    assert!(matches!(
        trigger(s, "nope", cx.now()).await,
        Err(StoreError::UnknownSchedule(_))
    ));
    s.remove_schedule("m").await.unwrap();
    assert!(matches!(
        s.schedule("m").await,
        Err(StoreError::UnknownSchedule(_))
    ));
    assert!(matches!(
        s.schedule_occurrences("m", 10).await,
        Err(StoreError::UnknownSchedule(_))
    ));
    assert_eq!(deliveries_of_h(s).await, 2, "its messages stay");
}

/// `start` and `end` bound the occurrences.
pub async fn start_and_end_bound_the_occurrences<H: Harness>(cx: Ctx<H>) {
    let s = cx.store();
    handler(s, "h", "t").await;
    let mut spec = every("m", "* * * * *");
    spec.overlap = Overlap::Allow;
    spec.start = Some(at(T0, 2 * MINUTE));
    spec.end = Some(at(T0, 4 * MINUTE));
    create(s, spec).await;
    for _ in 0..6 {
        cx.advance(MINUTE);
        tick_now(s, cx.now()).await;
    }
    let f = fired(s, "m").await;
    assert_eq!(
        f.iter().map(|f| f.0).collect::<Vec<_>>(),
        [at(T0, 2 * MINUTE), at(T0, 3 * MINUTE), at(T0, 4 * MINUTE)]
    );
}

/// What a crash between an enqueue and its cursor would leave (impossible
/// here: they are one batch) is harmless anyway: an occurrence whose key is
/// already used fires as a duplicate that creates nothing, naming the
/// original message. A tick planned before another tick applied (or before
/// a restart) is refused and writes nothing.
pub async fn a_firing_whose_key_was_used_creates_nothing<H: Harness>(mut cx: Ctx<H>) {
    handler(cx.store(), "h", "t").await;
    create(cx.store(), every("m", "* * * * *")).await;
    let due = at(T0, MINUTE);
    let original = enqueue1(
        cx.store(),
        NewMessage {
            idempotency_key: Some(format!("sched:m:{}", due.to_rfc3339())),
            ..msg("t", "fired before the crash")
        },
    )
    .await;
    cx.restart().await;
    cx.advance(MINUTE);
    let stale = crate::schedule::plan(&cx.store().schedule("m").await.unwrap(), cx.now(), true)
        .unwrap()
        .advance
        .unwrap();
    let r = tick_now(cx.store(), cx.now()).await;
    assert_eq!((r.fired, r.duplicates), (0, 1));
    let o = occurrences(cx.store(), "m").await;
    assert_eq!(o[0].message_id, Some(original));
    assert!(o[0].duplicate);
    assert_eq!(deliveries_of_h(cx.store()).await, 1);
    cx.restart().await;
    assert!(matches!(
        cx.store().advance_schedule(stale).await,
        Err(StoreError::ScheduleConflict(_))
    ));
    assert_eq!(tick_now(cx.store(), cx.now()).await, TickReport::default());
    assert_eq!(occurrences(cx.store(), "m").await.len(), 1);
    assert_eq!(deliveries_of_h(cx.store()).await, 1);
}

/// Two instances (two runners on one place) ticking at once, again and
/// again, enqueue each occurrence of each schedule exactly once.
pub async fn two_instances_ticking_at_once_fire_each_occurrence_once<H: Harness>(mut cx: Ctx<H>) {
    let b = cx.peer().await;
    handler(cx.store(), "h", "t").await;
    for id in ["s1", "s2", "s3"] {
        let mut spec = every(id, "* * * * *");
        spec.overlap = Overlap::Allow;
        create(cx.store(), spec).await;
    }
    for _ in 0..5 {
        cx.advance(MINUTE);
        let now = cx.now();
        let mut tasks = Vec::new();
        for i in 0..4 {
            let s: std::sync::Arc<H::Store> = if i % 2 == 0 { cx.shared() } else { b.clone() };
            tasks.push(tokio::spawn(async move {
                tick(&*s, now, &Metrics::default()).await
            }));
        }
        for t in tasks {
            t.await.unwrap().expect("a tick beside another succeeds");
        }
    }
    for id in ["s1", "s2", "s3"] {
        let f = fired(cx.store(), id).await;
        let times: Vec<_> = f.iter().map(|f| (f.0.0 - T0.0) / 60_000).collect();
        assert_eq!(times, [1, 2, 3, 4, 5], "{id}");
    }
    assert_eq!(
        deliveries_of_h(cx.store()).await,
        15,
        "each occurrence once"
    );
}

/// This file's cases, for [`store_conformance_tests!`](crate::store_conformance_tests).
#[doc(hidden)]
#[macro_export]
macro_rules! __store_conformance_schedules {
    ($($with:tt)*) => {
        $crate::__store_conformance_group! { $($with)* schedules:
            a_schedule_fires_each_occurrence_once,
            schedules_are_validated,
            catch_up_skip_fires_none_of_the_missed,
            catch_up_latest_fires_the_most_recent_once,
            catch_up_all_fires_up_to_the_cap_within_the_window,
            overlap_skip_misses_while_the_previous_runs,
            overlap_allow_fires_beside_the_previous,
            overlap_buffer_one_fires_once_the_previous_is_done,
            a_paused_schedule_fires_nothing_and_counts_what_it_missed,
            trigger_fires_now_and_leaves_the_cursor,
            start_and_end_bound_the_occurrences,
            a_firing_whose_key_was_used_creates_nothing,
            two_instances_ticking_at_once_fire_each_occurrence_once,
        }
    };
}
