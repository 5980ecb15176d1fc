//! Parsing and evaluation; the planner is exercised through the store
//! conformance cases (`store/conformance/schedules.rs`, `schedule_dst.rs`).

use super::*;

fn utc(s: &str) -> Timestamp {
    Timestamp::parse_rfc3339(s).unwrap()
}

#[test]
fn five_and_six_fields_and_nicknames_parse() {
    for ok in [
        "* * * * *",
        "*/15 9-17 * * MON-FRI",
        "30 */10 * * * *",
        "@daily",
        "0 0 1 1 *",
    ] {
        Cron::parse(ok, "UTC").unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
}

#[test]
fn bad_expressions_are_clear_errors() {
    for (bad, says) in [
        ("", "fields"),
        ("* * * *", "4 fields"),
        ("* * * * * * *", "7 fields"),
        ("60 * * * *", "cron"),
        ("0 0 1--100000000 * *", "cron"),
        ("0 0 1-100000000 * *", "cron"),
        ("0 0 30 2 *", "never matches"),
    ] {
        let e = Cron::parse(bad, "UTC").unwrap_err().to_string();
        assert!(e.starts_with("cron: ") && e.contains(says), "{bad:?}: {e}");
    }
    let long = "1,".repeat(150) + "1 * * * *";
    let e = Cron::parse(&long, "UTC").unwrap_err().to_string();
    assert!(e.contains("longer than 200 bytes"), "{e}");
}

#[test]
fn time_zones_come_from_the_compiled_in_database() {
    Cron::parse("* * * * *", "Europe/London").unwrap();
    Cron::parse("* * * * *", "America/New_York").unwrap();
    for bad in ["", "Mars/Olympus", "../../etc/passwd", &"A".repeat(100)] {
        let e = Cron::parse("* * * * *", bad).unwrap_err();
        assert!(
            matches!(e, ScheduleError::UnknownTimeZone(_)),
            "{bad:?}: {e}"
        );
        assert!(e.to_string().starts_with("timezone: "));
    }
}

#[test]
fn the_next_occurrence_is_strictly_after_and_shown_with_the_offset() {
    let c = Cron::parse("0 9 * * *", "Europe/London").unwrap();
    let t = utc("2027-07-01T08:00:00Z");
    assert_eq!(
        c.next_after(t).unwrap(),
        Some(Timestamp(t.0 + 86_400_000)),
        "strictly after"
    );
    let nine = c.next_after(utc("2027-06-30T08:00:00Z")).unwrap().unwrap();
    assert_eq!(nine, t, "09:00 BST is 08:00 UTC");
    assert_eq!(c.local(nine), "2027-07-01T09:00:00+01:00");
    let five = c.upcoming(t, 5).unwrap();
    assert_eq!(five.len(), 5);
    assert!(five.windows(2).all(|w| w[1].0 - w[0].0 == 86_400_000));
    // At the end of time: no occurrence, or an error naming the time; never a panic.
    assert!(!matches!(c.next_after(Timestamp::MAX), Ok(Some(_))));
}
