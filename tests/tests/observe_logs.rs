//! The JSON log format end to end (issue #7): an attempt's guest log line
//! carries the `attempt` span (message id, handler, attempt number), and a
//! dead-letter is one WARN line whose fields parse as one JSON object each.
//!
//! One test in its own binary: it installs the process-wide subscriber
//! (`sluice serve --log-format json` uses the same `fmt().json()` layer).

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use sluice::policy::HandlerPolicy;
use sluice::store::DeliveryState;
use sluice_tests::{Harness, repo_root};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn fixture(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    let wat = repo_root().join(format!("runtime/tests/fixtures/{name}.wat"));
    let path = dir.path().join(format!("{name}.wasm"));
    std::fs::write(&path, wat::parse_file(&wat).unwrap()).unwrap();
    path
}

fn object(line: &str) -> serde_json::Map<String, Value> {
    match serde_json::from_str(line) {
        Ok(Value::Object(m)) => m,
        other => panic!("not a JSON object ({other:?}): {line}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_the_attempt_span_and_one_warning_per_dead_letter() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            .json()
            .with_env_filter("info")
            .with_writer(move || writer.clone())
            .finish(),
    )
    .unwrap();

    let h = Harness::start().await;
    let dir = tempfile::tempdir().unwrap();
    h.register(
        "audit",
        "orders",
        &fixture(&dir, "publish_then_trap"),
        HandlerPolicy {
            retries: 0,
            ..HandlerPolicy::default()
        },
    )
    .await;
    let id = h.enqueue("orders", "{}").await;
    let status = h.settle(id).await;
    assert_eq!(status.deliveries[0].state, DeliveryState::Dead);
    let delivery = status.deliveries[0].id.to_string();
    h.stop().await;

    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<_> = text.lines().map(object).collect();

    // The guest's log line, inside the attempt span.
    let guest = lines
        .iter()
        .find(|l| l["target"] == "sluice::guest")
        .unwrap_or_else(|| panic!("no guest line in:\n{text}"));
    assert_eq!(guest["fields"]["message"], "about to fail");
    assert_eq!(guest["span"]["name"], "attempt");
    assert_eq!(guest["span"]["message"], id.to_string());
    assert_eq!(guest["span"]["handler"], "audit");
    assert_eq!(guest["span"]["attempt"], 1);

    // Exactly one dead-letter warning, naming the delivery, message and reason;
    // its message text is not overwritten by a field of the same name.
    let dead: Vec<_> = lines
        .iter()
        .filter(|l| l["fields"]["message"] == "delivery dead-lettered")
        .collect();
    assert_eq!(dead.len(), 1, "{text}");
    let f = &dead[0]["fields"];
    assert_eq!(dead[0]["level"], "WARN");
    assert_eq!(f["delivery"], delivery.as_str());
    assert_eq!(f["message_id"], id.to_string());
    assert_eq!(f["handler"], "audit");
    assert!(
        f["reason"]
            .as_str()
            .unwrap()
            .starts_with("attempts exhausted (1 of 1): trap unreachable"),
        "{f}"
    );
    let raw = text
        .lines()
        .find(|l| l.contains("delivery dead-lettered"))
        .unwrap();
    assert_eq!(raw.matches("\"message\":").count(), 1, "{raw}");
}
