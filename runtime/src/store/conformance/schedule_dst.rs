//! Daylight-saving time at real transitions (Europe/London and
//! America/New_York, 2027), driven through time by the manual clock and the
//! ticker, as classic cron behaves: a fixed time inside a spring-forward gap
//! fires once, right after the gap; inside a fall-back repeat it fires once
//! (the first pass); an expression with a wildcard hour keeps elapsed-time
//! behaviour (one an hour, 23 or 25 that day).

use std::time::Duration;

use super::helpers::handler;
use super::schedules::{create, every, fired, tick_now};
use super::{Ctx, Harness};
use crate::clock::Timestamp;
use crate::store::{CatchUp, Overlap, Store};

fn utc(s: &str) -> Timestamp {
    Timestamp::parse_rfc3339(s).expect("a test time")
}

/// Creates one schedule per `(id, cron, tz)` at `from`, ticks every ten
/// minutes for `hours`, and returns each schedule's fired times, in UTC.
async fn drive<H: Harness>(
    cx: &Ctx<H>,
    from: &str,
    hours: u64,
    schedules: &[(&str, &str, &str)],
) -> Vec<Vec<String>> {
    cx.clock().set(utc(from));
    handler(cx.store(), "h", "t").await;
    for (id, cron, tz) in schedules {
        let mut spec = every(id, cron);
        spec.timezone = tz.to_string();
        spec.catch_up = CatchUp::All;
        spec.overlap = Overlap::Allow;
        create(cx.store(), spec).await;
    }
    let step = Duration::from_secs(600);
    for _ in 0..hours * 6 {
        cx.advance(step);
        tick_now(cx.store(), cx.now()).await;
    }
    let mut out = Vec::new();
    for (id, _, _) in schedules {
        let times = fired(cx.store(), id).await;
        out.push(times.into_iter().map(|(t, _)| t.to_rfc3339()).collect());
    }
    out
}

/// 01:30 in London and 02:30 in New York do not exist on the spring-forward
/// day: each fires once, at the first instant after the gap (02:00 BST,
/// 03:00 EDT), and at its usual time the days around it.
pub async fn a_fixed_time_in_a_spring_forward_gap_fires_once_after_the_gap<H: Harness>(cx: Ctx<H>) {
    let got = drive(
        &cx,
        "2027-03-12T12:00:00Z",
        17 * 24,
        &[
            ("london", "30 1 * * *", "Europe/London"),
            ("new-york", "30 2 * * *", "America/New_York"),
        ],
    )
    .await;
    let london: Vec<_> = got[0]
        .iter()
        .filter(|t| t.as_str() >= "2027-03-27")
        .cloned()
        .collect();
    assert_eq!(
        london[..3],
        [
            "2027-03-27T01:30:00.000Z", // 01:30 GMT
            "2027-03-28T01:00:00.000Z", // 02:00 BST, right after the gap
            "2027-03-29T00:30:00.000Z", // 01:30 BST
        ]
    );
    assert_eq!(
        got[1][..3],
        [
            "2027-03-13T07:30:00.000Z", // 02:30 EST
            "2027-03-14T07:00:00.000Z", // 03:00 EDT, right after the gap
            "2027-03-15T06:30:00.000Z", // 02:30 EDT
        ]
    );
}

/// 01:30 happens twice on the fall-back day in both zones: it fires once,
/// on the first pass (BST, EDT), and at its usual time the days around it.
pub async fn a_fixed_time_in_a_fall_back_repeat_fires_once<H: Harness>(cx: Ctx<H>) {
    let got = drive(
        &cx,
        "2027-10-29T12:00:00Z",
        11 * 24,
        &[
            ("london", "30 1 * * *", "Europe/London"),
            ("new-york", "30 1 * * *", "America/New_York"),
        ],
    )
    .await;
    assert_eq!(
        got[0][..3],
        [
            "2027-10-30T00:30:00.000Z", // 01:30 BST
            "2027-10-31T00:30:00.000Z", // 01:30 BST, the first pass only
            "2027-11-01T01:30:00.000Z", // 01:30 GMT
        ]
    );
    let new_york: Vec<_> = got[1]
        .iter()
        .filter(|t| t.as_str() >= "2027-11-06")
        .cloned()
        .collect();
    assert_eq!(
        new_york[..3],
        [
            "2027-11-06T05:30:00.000Z", // 01:30 EDT
            "2027-11-07T05:30:00.000Z", // 01:30 EDT, the first pass only
            "2027-11-08T06:30:00.000Z", // 01:30 EST
        ]
    );
}

/// `30 * * * *` in New York fires every hour of elapsed time through both
/// transitions: 23 times on the spring-forward day, 25 on the fall-back day.
pub async fn wildcard_hours_keep_elapsed_time_through_both_transitions<H: Harness>(cx: Ctx<H>) {
    let hourly = [("hourly", "30 * * * *", "America/New_York")];
    let spring = drive(&cx, "2027-03-14T05:00:00Z", 24, &hourly)
        .await
        .remove(0);
    let day: Vec<_> = spring
        .iter()
        .filter(|t| t.as_str() < "2027-03-15T04:00")
        .collect();
    assert_eq!(day.len(), 23, "{day:?}");
    assert_elapsed_hours(&spring);
    cx.store().remove_schedule("hourly").await.unwrap();
    let fall = drive(&cx, "2027-11-07T04:00:00Z", 26, &hourly)
        .await
        .remove(0);
    let day: Vec<_> = fall
        .iter()
        .filter(|t| t.as_str() < "2027-11-08T05:00")
        .collect();
    assert_eq!(day.len(), 25, "{day:?}");
    assert!(
        fall.contains(&"2027-11-07T05:30:00.000Z".to_string()),
        "01:30 EDT"
    );
    assert!(
        fall.contains(&"2027-11-07T06:30:00.000Z".to_string()),
        "01:30 EST"
    );
    assert_elapsed_hours(&fall);
}

fn assert_elapsed_hours(times: &[String]) {
    for pair in times.windows(2) {
        let (a, b) = (utc(&pair[0]), utc(&pair[1]));
        assert_eq!(b.0 - a.0, 3_600_000, "{} then {}", pair[0], pair[1]);
    }
}

/// This file's cases, for [`store_conformance_tests!`](crate::store_conformance_tests).
#[doc(hidden)]
#[macro_export]
macro_rules! __store_conformance_schedule_dst {
    ($($with:tt)*) => {
        $crate::__store_conformance_group! { $($with)* schedule_dst:
            a_fixed_time_in_a_spring_forward_gap_fires_once_after_the_gap,
            a_fixed_time_in_a_fall_back_repeat_fires_once,
            wildcard_hours_keep_elapsed_time_through_both_transitions,
        }
    };
}
