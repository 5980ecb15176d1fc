//! Issue #7 through the `sluice` binary: every DLQ tool against a served API
//! (random loopback port), and `sluice run`'s rendering of each way a module
//! can fail. Output is piped here, so it must be plain even without `NO_COLOR`.

mod common;
use common::{api_state, fails, json, kill_next, ok, serve, sluice, text, trap};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;

use sluice::outcome::Outcome;
use sluice::store::{NewMessage, Store, StoreConfig};

const NOOP: &str = r#"(module (memory (export "memory") 1) (func (export "_start")))"#;

/// A sandbox fixture compiled into `dir`.
fn fixture(dir: &Path, name: &str) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/{name}.wat"));
    let path = dir.join(format!("{name}.wasm"));
    std::fs::write(&path, wat::parse_file(&src).unwrap()).unwrap();
    path
}

struct Server {
    url: String,
    store: Arc<dyn Store>,
    rt: tokio::runtime::Runtime,
    dir: tempfile::TempDir,
}

impl Server {
    fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Runtime::new().unwrap();
        let (store, state) = api_state(&dir.path().join("data"), StoreConfig::default(), None);
        let url = serve(&rt, state);
        Server {
            url,
            store,
            rt,
            dir,
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        let mut all = args.to_vec();
        all.extend(["--url", &self.url]);
        sluice(&all)
    }

    fn register(&self, name: &str, topic: &str) {
        let wasm = self.dir.path().join("noop.wasm");
        std::fs::write(&wasm, wat::parse_str(NOOP).unwrap()).unwrap();
        ok(&self.run(&[
            "register",
            name,
            "--topic",
            topic,
            "--module",
            wasm.to_str().unwrap(),
            "--retries",
            "0",
        ]));
    }

    fn enqueue(&self, topic: &str, n: usize) -> Vec<String> {
        let batch = (0..n)
            .map(|i| NewMessage {
                topic: topic.into(),
                payload: Bytes::from(format!("{i}")),
                ..Default::default()
            })
            .collect();
        let done = self.rt.block_on(self.store.enqueue(batch)).unwrap();
        done.iter().map(|e| e.id.to_string()).collect()
    }

    fn kill(&self, handler: &str, outcome: Outcome) {
        self.rt.block_on(kill_next(&self.store, handler, outcome));
    }

    /// The ids of the dead deliveries matching `filter` (extra `dlq list` args).
    fn dead(&self, filter: &[&str]) -> Vec<String> {
        let mut args = vec!["dlq", "list", "--json"];
        args.extend(filter);
        let page = json(&self.run(&args));
        page["dead"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["id"].as_str().unwrap().to_string())
            .collect()
    }

    fn delivery(&self, message: &str) -> Value {
        json(&self.run(&["status", message, "--json"]))["deliveries"][0].clone()
    }
}

#[test]
fn dlq_list_filters_pages_and_shows() {
    let s = Server::start();
    s.register("a", "alpha");
    s.register("b", "beta");
    s.enqueue("alpha", 5);
    s.enqueue("beta", 2);
    for _ in 0..3 {
        s.kill("a", Outcome::Exit { code: 3 });
    }
    for _ in 0..2 {
        s.kill("a", trap());
    }
    for _ in 0..2 {
        s.kill("b", Outcome::Timeout { limit_ms: 200 });
    }

    // Filters: handler, outcome kind, time range.
    assert_eq!(s.dead(&[]).len(), 7);
    assert_eq!(s.dead(&["--handler", "a"]).len(), 5);
    assert_eq!(s.dead(&["--handler", "a", "--outcome", "trap"]).len(), 2);
    assert_eq!(s.dead(&["--outcome", "timeout"]).len(), 2);
    assert_eq!(s.dead(&["--outcome", "memory"]).len(), 0);
    assert_eq!(s.dead(&["--since", "2000-01-01T00:00:00Z"]).len(), 7);
    assert_eq!(s.dead(&["--since", "2999-01-01T00:00:00Z"]).len(), 0);
    assert_eq!(s.dead(&["--until", "2000-01-01T00:00:00Z"]).len(), 0);
    assert_eq!(
        s.dead(&["--handler", "b", "--until", "2999-01-01T00:00:00Z"])
            .len(),
        2
    );
    let err = fails(&s.run(&["dlq", "list", "--outcome", "meltdown"]));
    assert!(err.contains("meltdown"), "{err}");

    // Paging: a full page names the cursor; the next page continues after it.
    let all = s.dead(&[]);
    let page = ok(&s.run(&["dlq", "list", "--limit", "4"]));
    let lines: Vec<&str> = page.lines().collect();
    assert!(lines[0].starts_with("DELIVERY"), "{page}");
    assert_eq!(lines.len(), 1 + 4 + 1, "{page}");
    let cursor = lines[5].strip_prefix("more: --cursor ").expect(&page);
    assert_eq!(cursor, all[3]);
    let rest = s.dead(&["--cursor", cursor]);
    assert_eq!(rest, all[4..]);

    // A row reads: delivery, handler, death, attempts, last outcome, reason.
    let trap_row = page
        .lines()
        .find(|l| l.contains("trap unreachable"))
        .expect(&page);
    assert!(trap_row.contains("  a  "), "{trap_row}");
    assert!(
        trap_row.ends_with("attempts exhausted (1 of 1): trap unreachable: wasm trap: wasm `unreachable` instruction executed"),
        "{trap_row}"
    );

    // show: the delivery, why it died, and its attempt in full.
    let id = &s.dead(&["--outcome", "trap"])[0];
    let shown = ok(&s.run(&["dlq", "show", id]));
    assert!(
        shown.starts_with(&format!("delivery {id}  handler a  dead\n")),
        "{shown}"
    );
    assert!(shown.contains("  dead since "), "{shown}");
    assert!(
        shown.contains("  attempt 1  trap unreachable: wasm trap: wasm `unreachable` instruction executed  7 ms  started "),
        "{shown}"
    );
    assert!(
        shown.contains("    module cdcdcdcdcdcd  peak memory 128 KiB\n"),
        "{shown}"
    );
    assert!(
        shown.contains("    backtrace:\n      0: a!explode\n      1: a!handle\n      2: _start\n"),
        "{shown}"
    );
    assert!(
        shown.contains("    stderr:\n      it went wrong\n"),
        "{shown}"
    );
    let doc = json(&s.run(&["dlq", "show", id, "--json"]));
    assert_eq!(doc["id"], id.as_str());
    assert_eq!(doc["state"], "dead");
    assert_eq!(doc["attempts"][0]["outcome"]["kind"], "trap");
    assert_eq!(
        doc["attempts"][0]["outcome"]["backtrace"],
        "0: a!explode\n1: a!handle\n2: _start"
    );
    assert_eq!(doc["attempts"][0]["peak_memory_bytes"], 131072);
}

#[test]
fn dlq_replay_one_all_and_at_a_rate_keep_history() {
    let s = Server::start();
    s.register("a", "alpha");
    let messages = s.enqueue("alpha", 6);
    for _ in 0..6 {
        s.kill("a", Outcome::Exit { code: 3 });
    }

    // One: back to ready, with its first life's attempt kept.
    let first = s.delivery(&messages[0]);
    let id = first["id"].as_str().unwrap();
    assert_eq!(
        ok(&s.run(&["dlq", "replay", id])),
        format!("replayed {id}\n")
    );
    let d = s.delivery(&messages[0]);
    assert_eq!(d["state"], "ready");
    assert_eq!(d["attempts"].as_array().unwrap().len(), 1, "history kept");
    assert_eq!(d["dead_reason"], Value::Null);
    let err = fails(&s.run(&["dlq", "replay", id]));
    assert!(err.contains("is not dead"), "{err}");
    // Fresh attempts: the next one is number 1 of round 1.
    s.kill("a", trap());
    let d = s.delivery(&messages[0]);
    let attempts = d["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2);
    assert_eq!(
        (&attempts[1]["number"], &attempts[1]["round"]),
        (&1.into(), &1.into())
    );
    let human = ok(&s.run(&["attempts", id]));
    assert!(human.contains("attempt 1  exit 3"), "{human}");
    assert!(
        human.contains("attempt 1 (replay 1)  trap unreachable"),
        "{human}"
    );

    // A filtered set at a rate: only the exits (5 of the 6), one by one; the
    // progress line is for terminals, so stderr stays empty here.
    let out = s.run(&[
        "dlq",
        "replay",
        "--handler",
        "a",
        "--all",
        "--outcome",
        "exit",
        "--rate",
        "200/s",
        "--json",
    ]);
    let n: Value = serde_json::from_str(&ok(&out)).unwrap();
    assert_eq!(
        (n["count"].as_u64(), n["skipped"].as_u64()),
        (Some(5), Some(0))
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(s.dead(&["--handler", "a"]).len(), 1, "the trap stays dead");
    for m in &messages[1..] {
        assert_eq!(s.delivery(m)["state"], "ready");
    }

    // All the rest, on the server in one request.
    for _ in 0..5 {
        s.kill("a", Outcome::Exit { code: 3 });
    }
    let out = ok(&s.run(&["dlq", "replay", "--handler", "a", "--all"]));
    assert_eq!(out, "replayed 6 (skipped 0)\n");
    assert!(s.dead(&[]).is_empty());
    for m in &messages {
        assert_eq!(s.delivery(m)["state"], "ready");
    }
    // Nothing matches: nothing to do, at a rate too.
    let out = ok(&s.run(&["dlq", "replay", "--handler", "a", "--all", "--rate", "5"]));
    assert_eq!(out, "replayed 0 (skipped 0)\n");
}

#[test]
fn dlq_purge_asks_first_and_replay_from_a_time_redelivers() {
    let s = Server::start();
    s.register("a", "alpha");
    s.register("b", "beta");
    let alpha = s.enqueue("alpha", 3);
    s.enqueue("beta", 2);
    for _ in 0..3 {
        s.kill(
            "a",
            Outcome::MemoryLimit {
                limit_bytes: 1 << 20,
            },
        );
    }
    for _ in 0..2 {
        s.kill("b", Outcome::Exit { code: 1 });
    }

    // Without --yes and without a terminal to ask on: refused, nothing purged.
    let id = s.delivery(&alpha[0])["id"].as_str().unwrap().to_string();
    let err = fails(&s.run(&["dlq", "purge", &id]));
    assert!(err.contains("--yes"), "{err}");
    let err = fails(&s.run(&["dlq", "purge", "--handler", "b", "--all"]));
    assert!(err.contains("--yes"), "{err}");
    assert_eq!(s.dead(&[]).len(), 5);

    // One, then every match of a filter.
    assert_eq!(ok(&s.run(&["dlq", "purge", &id, "--yes"])), "purged 1\n");
    let err = fails(&s.run(&["dlq", "show", &id]));
    assert!(err.contains("unknown delivery"), "{err}");
    assert_eq!(
        ok(&s.run(&[
            "dlq",
            "purge",
            "--handler",
            "b",
            "--all",
            "-y",
            "--outcome",
            "exit"
        ])),
        "purged 2\n"
    );
    assert_eq!(s.dead(&[]).len(), 2, "a's other two are left");
    assert_eq!(s.dead(&["--handler", "a", "--outcome", "memory"]).len(), 2);

    // Replay from a time: every retained message of a's topic, to a only.
    let out = ok(&s.run(&[
        "replay",
        "--handler",
        "a",
        "--since",
        "2000-01-01T00:00:00Z",
    ]));
    assert_eq!(
        out,
        "re-delivering 3 messages to a (enqueued since 2000-01-01T00:00:00Z)\n"
    );
    let stats = json(&s.run(&["stats", "--json"]));
    let a = &stats["handlers"][0];
    assert_eq!(a["handler"], "a");
    assert_eq!(a["ready"], 3);
    assert_eq!(a["dlq"], 2);
    assert_eq!(stats["handlers"][1]["ready"], 0, "b gets nothing");
    let human = ok(&s.run(&["stats"]));
    assert!(
        human.starts_with("HANDLER  TOPIC  STATUS  DLQ  READY  LAG"),
        "{human}"
    );
    assert!(human.contains("\ndlq 2  ready 3  oldest ready "), "{human}");
}

#[test]
fn run_renders_each_way_a_module_fails() {
    let dir = tempfile::tempdir().unwrap();
    let run = |fixture_name: &str, extra: &[&str]| {
        let m = fixture(dir.path(), fixture_name);
        let mut args = vec!["run", m.to_str().unwrap()];
        args.extend(extra);
        sluice(&args)
    };
    // (fixture, options, exit status, summary line prefix, JSON kind)
    let cases: [(&str, &[&str], i32, &str, &str); 6] = [
        ("exit_3", &[], 3, "attempt 1  exit 3  ", "exit"),
        (
            "exit_65",
            &[],
            65,
            "attempt 1  rejected (exit 65)  ",
            "rejected",
        ),
        (
            "unreachable",
            &[],
            1,
            "attempt 1  trap unreachable: ",
            "trap",
        ),
        (
            "infinite_loop",
            &["--timeout", "200ms"],
            1,
            "attempt 1  timeout after 200 ms  ",
            "timeout",
        ),
        (
            "memory_grow_bomb",
            &["--memory", "2MiB"],
            1,
            "attempt 1  memory limit of 2097152 bytes exceeded  ",
            "memory",
        ),
        (
            "infinite_loop",
            &["--fuel", "100000"],
            1,
            "attempt 1  fuel exhausted (100000)  ",
            "fuel",
        ),
    ];
    for (name, extra, code, summary, kind) in cases {
        let out = run(name, extra);
        assert_eq!(out.status.code(), Some(code), "{name}: {}", text(&out));
        let human = text(&out);
        assert!(!human.contains('\x1b'), "{name}: piped output is plain");
        assert!(human.starts_with(summary), "{name}: {human}");
        let details = human.lines().nth(1).unwrap();
        assert!(
            details.starts_with("  module ") && details.contains("  peak memory "),
            "{name}: {human}"
        );
        let mut json_args = extra.to_vec();
        json_args.push("--json");
        let v: Value = serde_json::from_slice(&run(name, &json_args).stdout).unwrap();
        assert_eq!(v["attempt"]["outcome"]["kind"], kind, "{name}: {v}");
        assert_eq!(v["attempt"]["module_sha256"].as_str().unwrap().len(), 64);
        if kind == "fuel" {
            assert!(details.ends_with("  fuel 100000"), "{human}");
            assert_eq!(v["attempt"]["fuel_used"], 100_000);
        }
        if kind == "trap" {
            let bt = v["attempt"]["outcome"]["backtrace"].as_str().unwrap();
            assert!(bt.contains("explode"), "{bt}");
            assert!(human.contains("\n  backtrace:\n    "), "{human}");
            assert!(human.contains("explode"), "{human}");
        }
    }
}
