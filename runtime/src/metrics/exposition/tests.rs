use std::collections::BTreeMap;
use std::time::Duration;

use super::*;
use crate::store::{DeliveryState, HandlerStats};

/// Stats with one handler of every state and one topic.
fn stats() -> Stats {
    let counts: BTreeMap<DeliveryState, u64> = DeliveryState::ALL
        .into_iter()
        .enumerate()
        .map(|(i, s)| (s, i as u64))
        .collect();
    Stats {
        handlers: vec![HandlerStats {
            handler: "h".into(),
            topic: "t".into(),
            paused: true,
            counts,
            oldest_ready_at: Some(Timestamp(1_000)),
        }],
        topic_depth: [("t".to_string(), 7)].into(),
        durable_commits: 3,
        durable_ops: 9,
        commit_batches: vec![(1, 0), (2, 1), (4, 2), (u64::MAX, 0)],
    }
}

fn metrics() -> Metrics {
    let m = Metrics::default();
    m.enqueued(2, 1);
    m.queue_full();
    m.lease_expired(1);
    m.modules_collected(2);
    m.attempt("h", "ok", 1, Duration::from_millis(2));
    m.attempt("h", "exit", 2, Duration::from_millis(200));
    m.settled("h", Some(Duration::from_millis(3)), false);
    m.schedule_missed("nightly", "overlap", 2);
    m.egress(
        "h",
        &[crate::sandbox::EgressRecord {
            method: "GET".into(),
            origin: "https://api.example:443".into(),
            status: Some(200),
            request_bytes: 0,
            response_bytes: 10,
            duration_ms: 1,
            outcome: crate::sandbox::EgressOutcome::Ok,
            detail: String::new(),
        }],
    );
    m
}

fn both() -> [(Format, String); 2] {
    let m = metrics();
    [Format::Classic, Format::OpenMetrics].map(|f| (f, render(stats(), &m, Timestamp(2_500), f)))
}

/// Every series `docs/observability.md` promises, with its type and labels,
/// is exposed in both formats (and nothing it does not list).
#[test]
fn every_documented_series_is_exposed_with_its_labels() {
    let doc = include_str!("../../../../docs/observability.md");
    let table = doc
        .split("## `/metrics`")
        .nth(1)
        .expect("observability.md has a /metrics section");
    let mut documented = BTreeMap::new();
    for row in table.lines().filter(|l| l.starts_with("| `sluice_")) {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let name = cells[1].trim_matches('`').to_string();
        let kind = cells[2].to_string();
        let labels: Vec<String> = cells[3]
            .split(',')
            .map(|l| l.trim().trim_matches('`').to_string())
            .filter(|l| !l.is_empty() && l != "le")
            .collect();
        documented.insert(name, (kind, labels));
    }
    assert!(documented.len() >= 17, "{documented:?}");
    for (format, text) in both() {
        let mut exposed = BTreeSet::new();
        for (name, (kind, labels)) in &documented {
            let family = match (format, kind.as_str()) {
                (Format::OpenMetrics, "counter") => name.strip_suffix("_total").unwrap(),
                _ => name.as_str(),
            };
            assert!(
                text.contains(&format!("# TYPE {family} {kind}\n")),
                "{format:?}: no `# TYPE {family} {kind}`:\n{text}"
            );
            let sample = if kind == "histogram" {
                format!("{name}_count")
            } else {
                name.clone()
            };
            let line = text
                .lines()
                .find(|l| {
                    l.starts_with(&format!("{sample}{{")) || l.starts_with(&format!("{sample} "))
                })
                .unwrap_or_else(|| panic!("{format:?}: no sample of {sample}:\n{text}"));
            let keys: Vec<String> = line
                .split_once('{')
                .map(|(_, rest)| {
                    rest.split('}')
                        .next()
                        .unwrap()
                        .split(',')
                        .map(|kv| kv.split('=').next().unwrap().to_string())
                        .collect()
                })
                .unwrap_or_default();
            assert_eq!(&keys, labels, "{format:?}: labels of {line}");
            exposed.insert(family.to_string());
        }
        let families: BTreeSet<String> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .map(|l| l.split(' ').next().unwrap().to_string())
            .collect();
        assert_eq!(families, exposed, "{format:?}: undocumented families");
    }
}

#[test]
fn values_and_histograms() {
    let [(_, classic), (_, open)] = both();
    for text in [&classic, &open] {
        for line in [
            "sluice_messages_enqueued_total 2",
            "sluice_enqueue_duplicates_total 1",
            "sluice_enqueue_queue_full_total 1",
            "sluice_lease_expiries_total 1",
            "sluice_modules_collected_total 2",
            "sluice_store_flushes_total 3",
            "sluice_attempts_total{handler=\"h\",outcome=\"exit\"} 1",
            "sluice_attempts_total{handler=\"h\",outcome=\"trap\"} 0",
            "sluice_redeliveries_total{handler=\"h\"} 1",
            "sluice_deliveries_completed_total{handler=\"h\"} 1",
            "sluice_attempt_duration_seconds_bucket{le=\"0.001\",handler=\"h\"} 0",
            "sluice_attempt_duration_seconds_bucket{le=\"0.0025\",handler=\"h\"} 1",
            "sluice_attempt_duration_seconds_bucket{le=\"+Inf\",handler=\"h\"} 2",
            "sluice_attempt_duration_seconds_count{handler=\"h\"} 2",
            "sluice_group_commit_batch_size_bucket{le=\"1.0\"} 0",
            "sluice_group_commit_batch_size_bucket{le=\"4.0\"} 3",
            "sluice_group_commit_batch_size_bucket{le=\"+Inf\"} 3",
            "sluice_group_commit_batch_size_sum 9.0",
            "sluice_group_commit_batch_size_count 3",
            "sluice_deliveries{handler=\"h\",state=\"blocked\"} 1",
            "sluice_handler_paused{handler=\"h\"} 1",
            "sluice_topic_depth{topic=\"t\"} 7",
            "sluice_oldest_ready_age_seconds{handler=\"h\"} 1.5",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
    }
    assert!(open.ends_with("# EOF\n"), "{open}");
    assert!(!classic.contains("# EOF"), "{classic}");
}

#[test]
fn a_missing_inf_bucket_is_added() {
    let mut s = stats();
    s.commit_batches = vec![(8, 2)];
    let text = render(s, &Metrics::default(), Timestamp(0), Format::Classic);
    assert!(
        text.contains("sluice_group_commit_batch_size_bucket{le=\"+Inf\"} 2\n"),
        "{text}"
    );
}

/// prometheus-client writes label values as they are: safe because every
/// label value is a validated name (handler, topic) or a fixed word (state,
/// outcome), none of which can hold a quote, a backslash or a newline.
#[test]
fn label_values_cannot_need_escaping() {
    for bad in ["a\"b", "a\\b", "a\nb"] {
        assert!(crate::names::validate_handler(bad).is_err(), "{bad:?}");
        assert!(crate::names::validate_topic(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn the_accept_header_picks_the_format() {
    assert_eq!(
        Format::from_accept(Some(
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
        )),
        Format::OpenMetrics
    );
    assert_eq!(Format::from_accept(Some("*/*")), Format::Classic);
    assert_eq!(Format::from_accept(None), Format::Classic);
}
