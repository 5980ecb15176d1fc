//! Human output: aligned tables, attempts, deliveries and stats. Colour only
//! when stdout is a terminal (and `NO_COLOR` is unset); plain when piped.
//!
//! [`attempt`] is the one rendering of an attempt, used by `status`, `attempts`,
//! `dlq show` and `run`.

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::time::Duration;

use crate::api::dto::{
    AttemptView, DeadLettersView, DeliveryView, HandlerView, MessageView, StatsView,
};
use crate::outcome::Outcome;
use crate::sandbox::config::fmt_bytes;
use crate::sandbox::{EgressOutcome, EgressRecord};

/// How much of stdout/stderr an attempt shows by default.
pub const EXCERPT_BYTES: usize = 2048;

/// A colour of the palette.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Color {
    /// Success.
    Green,
    /// Failure.
    Red,
    /// Waiting or running.
    Yellow,
    /// Secondary text.
    Dim,
    /// Headings.
    Bold,
}

/// Whether to colour, decided once per command.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    color: bool,
}

impl Style {
    /// Colour when stdout is a terminal and `NO_COLOR` is not set (see [`Style::decide`]).
    pub fn detect() -> Style {
        Style::decide(
            std::io::stdout().is_terminal(),
            std::env::var_os("NO_COLOR").as_deref(),
        )
    }

    /// The decision behind [`Style::detect`]: colour only on a terminal, and not
    /// when `NO_COLOR` is set to a non-empty value (<https://no-color.org>: an
    /// empty `NO_COLOR` counts as unset). Piped output is always plain.
    pub fn decide(is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> Style {
        Style {
            color: is_terminal && no_color.is_none_or(|v| v.is_empty()),
        }
    }

    /// Whether this style colours.
    pub fn is_colored(&self) -> bool {
        self.color
    }

    /// Never colour.
    pub fn plain() -> Style {
        Style { color: false }
    }

    /// `text` in `color` (unchanged when plain).
    pub fn paint(&self, color: Color, text: &str) -> String {
        if !self.color {
            return text.to_string();
        }
        let code = match color {
            Color::Green => "32",
            Color::Red => "31",
            Color::Yellow => "33",
            Color::Dim => "2",
            Color::Bold => "1",
        };
        format!("\x1b[{code}m{text}\x1b[0m")
    }
}

/// The colour of a delivery state.
pub fn state_color(state: &str) -> Option<Color> {
    match state {
        "succeeded" => Some(Color::Green),
        "dead" => Some(Color::Red),
        "retrying" | "leased" => Some(Color::Yellow),
        _ => None,
    }
}

/// The colour of an outcome.
pub fn outcome_color(outcome: Option<&Outcome>) -> Color {
    match outcome {
        Some(Outcome::Ok) => Color::Green,
        None => Color::Yellow,
        Some(_) => Color::Red,
    }
}

/// An aligned table: columns as wide as their widest cell, two spaces apart.
#[derive(Debug, Default)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<(String, Option<Color>)>>,
}

impl Table {
    /// A table with these column titles.
    pub fn new(header: &[&str]) -> Table {
        Table {
            header: header.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row of plain cells.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows
            .push(cells.into_iter().map(|c| (c, None)).collect());
    }

    /// Adds a row whose cells may be coloured.
    pub fn row_colored(&mut self, cells: Vec<(String, Option<Color>)>) {
        self.rows.push(cells);
    }

    /// The table as text, one line per row.
    pub fn render(&self, style: &Style) -> String {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, (cell, _)) in row.iter().enumerate() {
                if i < widths.len() {
                    widths[i] = widths[i].max(cell.chars().count());
                }
            }
        }
        let mut out = String::new();
        let line = |out: &mut String, cells: Vec<(String, Option<Color>)>| {
            let last = cells.len().saturating_sub(1);
            for (i, (cell, color)) in cells.into_iter().enumerate() {
                let pad = if i == last {
                    0
                } else {
                    widths[i].saturating_sub(cell.chars().count()) + 2
                };
                match color {
                    Some(c) => out.push_str(&style.paint(c, &cell)),
                    None => out.push_str(&cell),
                }
                out.extend(std::iter::repeat_n(' ', pad));
            }
            out.push('\n');
        };
        let header = self
            .header
            .iter()
            .map(|h| (h.clone(), Some(Color::Bold)))
            .collect();
        line(&mut out, header);
        for row in &self.rows {
            line(&mut out, row.clone());
        }
        out
    }
}

/// `12 ms`, `1.5 s`, `4m 3s`.
pub fn millis(ms: u64) -> String {
    match ms {
        0..1000 => format!("{ms} ms"),
        1000..60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        _ => humantime::format_duration(Duration::from_secs(ms / 1000)).to_string(),
    }
}

/// One attempt: a summary line, then the trap's message and backtrace, stdout
/// and stderr (each cut to `excerpt` bytes when given), indented by two spaces.
pub fn attempt(a: &AttemptView, style: &Style, excerpt: Option<usize>) -> String {
    let mut out = String::new();
    let summary = match &a.outcome {
        Some(o) => o.summary(),
        None => "running".to_string(),
    };
    let round = if a.round > 0 {
        format!(" (replay {})", a.round)
    } else {
        String::new()
    };
    let _ = write!(
        out,
        "attempt {}{round}  {}",
        a.number,
        style.paint(outcome_color(a.outcome.as_ref()), &summary)
    );
    if let Some(ms) = a.duration_ms {
        let _ = write!(out, "  {}", millis(ms));
    }
    let _ = writeln!(
        out,
        "  {}",
        style.paint(Color::Dim, &format!("started {}", a.started_at))
    );
    let details = details(a);
    if !details.is_empty() {
        let _ = writeln!(out, "  {}", style.paint(Color::Dim, &details));
    }
    for r in &a.egress {
        let _ = writeln!(out, "  {}", egress_line(r, style));
    }
    if let Some(Outcome::Trap { backtrace, .. }) = &a.outcome
        && !backtrace.trim().is_empty()
    {
        let _ = writeln!(out, "  backtrace:");
        for line in backtrace.trim_end().lines() {
            let _ = writeln!(out, "    {line}");
        }
    }
    for (name, text, truncated) in [
        ("stdout", &a.stdout, a.stdout_truncated),
        ("stderr", &a.stderr, a.stderr_truncated),
    ] {
        if text.is_empty() {
            continue;
        }
        let _ = writeln!(out, "  {name}:");
        let (shown, cut) = match excerpt {
            Some(max) if text.len() > max => (&text[..floor_char_boundary(text, max)], true),
            _ => (text.as_str(), false),
        };
        for line in shown.trim_end_matches('\n').lines() {
            let _ = writeln!(out, "    {line}");
        }
        if cut {
            let more = text.len() - shown.len();
            let _ = writeln!(
                out,
                "    {}",
                style.paint(
                    Color::Dim,
                    &format!("… {more} more bytes (--json shows all)")
                )
            );
        }
        if truncated {
            let _ = writeln!(
                out,
                "    {}",
                style.paint(Color::Dim, "… truncated by the capture cap")
            );
        }
    }
    out
}

/// The attempt's resources: `module 3f2a9c0e11d4  peak memory 1.1 MiB  fuel
/// 12345` (what is known of them; empty while it runs).
fn details(a: &AttemptView) -> String {
    let mut parts = Vec::new();
    if let Some(sha) = &a.module_sha256 {
        parts.push(format!("module {}", &sha[..sha.len().min(12)]));
    }
    if let Some(bytes) = a.peak_memory_bytes {
        parts.push(format!("peak memory {}", fmt_bytes(bytes)));
    }
    if let Some(fuel) = a.fuel_used {
        parts.push(format!("fuel {fuel}"));
    }
    parts.join("  ")
}

/// One outbound request: `http POST https://api.example.com:443 → 201  12 B
/// out  3 B in  40 ms`, or its outcome and why.
fn egress_line(r: &EgressRecord, style: &Style) -> String {
    let status = r.status.map_or(String::new(), |s| format!(" → {s}"));
    let mut line = format!(
        "http {} {}{status}  {} out  {} in  {}",
        r.method,
        r.origin,
        fmt_bytes(r.request_bytes),
        fmt_bytes(r.response_bytes),
        millis(r.duration_ms)
    );
    if r.outcome != EgressOutcome::Ok {
        let why = if r.detail.is_empty() {
            r.outcome.as_str().to_owned()
        } else {
            format!("{}: {}", r.outcome.as_str(), r.detail)
        };
        line.push_str("  ");
        line.push_str(&style.paint(Color::Red, &why));
    }
    line
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// A delivery: a heading line, where it stands, then its attempts.
pub fn delivery(d: &DeliveryView, style: &Style) -> String {
    let mut out = String::new();
    let state = style.paint(state_color(&d.state).unwrap_or(Color::Bold), &d.state);
    let _ = writeln!(out, "delivery {}  handler {}  {state}", d.id, d.handler);
    if let Some(at) = &d.next_at {
        let _ = writeln!(out, "  next attempt not before {at}");
    }
    if let Some(at) = &d.lease_expires_at {
        let _ = writeln!(out, "  leased until {at}");
    }
    if let Some(reason) = &d.dead_reason {
        let since = d.dead_at.as_deref().unwrap_or("?");
        let _ = writeln!(
            out,
            "  dead since {since}: {}",
            style.paint(Color::Red, reason)
        );
    }
    if d.attempts.is_empty() {
        let _ = writeln!(out, "  {}", style.paint(Color::Dim, "no attempts yet"));
    }
    for a in &d.attempts {
        for line in attempt(a, style, Some(EXCERPT_BYTES)).lines() {
            let _ = writeln!(out, "  {line}");
        }
    }
    out
}

/// `sluice status`: the message, a table of its deliveries, then each delivery
/// with its attempts.
pub fn message(m: &MessageView, style: &Style) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "message   {}", m.id);
    let _ = writeln!(out, "topic     {}", m.topic);
    let _ = writeln!(out, "enqueued  {}", m.enqueued_at);
    if let Some(nb) = &m.not_before {
        let _ = writeln!(out, "not before {nb}");
    }
    if let Some(k) = &m.ordering_key {
        let _ = writeln!(out, "ordering  {k}");
    }
    let _ = writeln!(out, "payload   {}", fmt_bytes(m.payload_bytes as u64));
    for (k, v) in &m.headers {
        let _ = writeln!(out, "header    {k}: {v}");
    }
    out.push('\n');
    let mut table = Table::new(&["HANDLER", "STATE", "ATTEMPTS", "LAST OUTCOME", "DELIVERY"]);
    for d in &m.deliveries {
        table.row_colored(vec![
            (d.handler.clone(), None),
            (d.state.clone(), state_color(&d.state)),
            (d.attempts.len().to_string(), None),
            (last_outcome(d), None),
            (d.id.to_string(), None),
        ]);
    }
    out.push_str(&table.render(style));
    for d in m.deliveries.iter().filter(|d| !d.attempts.is_empty()) {
        out.push('\n');
        out.push_str(&delivery(d, style));
    }
    out
}

/// The last attempt's outcome summary, `-` if none.
fn last_outcome(d: &DeliveryView) -> String {
    match d.attempts.last() {
        None => "-".into(),
        Some(a) => a
            .outcome
            .as_ref()
            .map_or("running".into(), Outcome::summary),
    }
}

/// `sluice handlers list`.
pub fn handlers(list: &[HandlerView], style: &Style) -> String {
    let mut table = Table::new(&[
        "NAME",
        "TOPIC",
        "STATUS",
        "TIMEOUT",
        "MEMORY",
        "RETRIES",
        "CONCURRENCY",
        "VERSION",
        "MODULE",
    ]);
    for h in list {
        table.row_colored(vec![
            (h.name.clone(), None),
            (h.topic.clone(), None),
            match (h.paused, &h.paused_reason) {
                (true, Some(_)) => ("unrunnable".into(), Some(Color::Red)),
                (true, None) => ("paused".into(), Some(Color::Yellow)),
                (false, _) => ("active".into(), None),
            },
            (millis(h.policy.timeout_ms), None),
            (fmt_bytes(h.policy.memory_bytes), None),
            (h.policy.retries.to_string(), None),
            (h.policy.concurrency.to_string(), None),
            (h.version.to_string(), None),
            (h.module_sha256.chars().take(12).collect(), None),
        ]);
    }
    table.render(style)
}

/// `sluice handlers show`.
pub fn handler(h: &HandlerView, style: &Style) -> String {
    let p = &h.policy;
    let mut rows = vec![
        ("name", h.name.clone()),
        ("topic", h.topic.clone()),
        (
            "status",
            match (h.paused, &h.paused_reason) {
                (true, Some(reason)) => format!(
                    "paused by the runner, {reason} (no attempt spent; register it again or resume it)"
                ),
                (true, None) => "paused".into(),
                (false, _) => "active".into(),
            },
        ),
        ("module", h.module_sha256.clone()),
        ("version", h.version.to_string()),
        ("created", h.created_at.clone()),
        ("updated", h.updated_at.clone()),
        ("timeout", millis(p.timeout_ms)),
        ("lease", millis(p.lease().as_millis() as u64)),
        ("memory", fmt_bytes(p.memory_bytes)),
        ("fuel", p.fuel.map_or("unmetered".into(), |f| f.to_string())),
        ("retries", p.retries.to_string()),
        (
            "backoff",
            format!(
                "{} doubling, at most {}",
                millis(p.backoff_ms),
                millis(p.backoff_max_ms)
            ),
        ),
        ("concurrency", p.concurrency.to_string()),
    ];
    for (k, v) in &p.env {
        rows.push(("env", format!("{k}={v}")));
    }
    let mut out = String::new();
    for (k, v) in rows {
        let _ = writeln!(
            out,
            "{}  {v}",
            style.paint(Color::Bold, &format!("{k:<11}"))
        );
    }
    out
}

/// `sluice dlq list`.
pub fn dead_letters(page: &DeadLettersView, style: &Style) -> String {
    let mut table = Table::new(&[
        "DELIVERY",
        "HANDLER",
        "DEAD SINCE",
        "ATTEMPTS",
        "LAST OUTCOME",
        "REASON",
    ]);
    for d in &page.dead {
        table.row(vec![
            d.id.to_string(),
            d.handler.clone(),
            d.dead_at.clone().unwrap_or_default(),
            d.attempts.len().to_string(),
            last_outcome(d),
            d.dead_reason.clone().unwrap_or_default(),
        ]);
    }
    let mut out = table.render(style);
    if let Some(cursor) = page.next_cursor {
        let _ = writeln!(
            out,
            "{}",
            style.paint(Color::Dim, &format!("more: --cursor {cursor}"))
        );
    }
    out
}

/// `sluice stats`: the three signals per handler first (DLQ size, ready
/// backlog and its lag, open depth), then the other state counts; then the
/// totals and the depth per topic.
pub fn stats(s: &StatsView, style: &Style) -> String {
    let mut table = Table::new(&[
        "HANDLER",
        "TOPIC",
        "STATUS",
        "DLQ",
        "READY",
        "LAG",
        "OPEN",
        "SCHEDULED",
        "LEASED",
        "RETRYING",
        "SUCCEEDED",
    ]);
    for h in &s.handlers {
        let count = |state: &str| h.counts.get(state).copied().unwrap_or(0);
        let open: u64 = ["scheduled", "ready", "leased", "retrying"]
            .into_iter()
            .map(count)
            .sum();
        table.row_colored(vec![
            (h.handler.clone(), None),
            (h.topic.clone(), None),
            if h.paused {
                ("paused".into(), Some(Color::Yellow))
            } else {
                ("active".into(), None)
            },
            (h.dlq.to_string(), (h.dlq > 0).then_some(Color::Red)),
            (h.ready.to_string(), None),
            (h.oldest_ready_age_ms.map_or("-".into(), millis), None),
            (open.to_string(), None),
            (count("scheduled").to_string(), None),
            (count("leased").to_string(), None),
            (count("retrying").to_string(), None),
            (count("succeeded").to_string(), None),
        ]);
    }
    let mut out = table.render(style);
    let dlq = format!("dlq {}", s.dlq);
    let _ = writeln!(
        out,
        "\n{}  ready {}  oldest ready {}  flushes {}",
        if s.dlq > 0 {
            style.paint(Color::Red, &dlq)
        } else {
            dlq
        },
        s.ready,
        s.oldest_ready_age_ms.map_or("-".into(), millis),
        s.flushes
    );
    for (topic, depth) in &s.topics {
        let _ = writeln!(out, "topic {topic}: {depth} undelivered");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt_view(outcome: Option<Outcome>) -> AttemptView {
        AttemptView {
            number: 2,
            round: 0,
            started_at: "2026-01-01T00:00:00.000Z".into(),
            finished_at: None,
            outcome,
            stdout: String::new(),
            stdout_truncated: false,
            stderr: "line one\nline two\n".into(),
            stderr_truncated: true,
            duration_ms: Some(1500),
            module_sha256: None,
            peak_memory_bytes: None,
            fuel_used: None,
            egress: Vec::new(),
        }
    }

    #[test]
    fn outbound_requests_are_one_line_each() {
        let mut a = attempt_view(Some(Outcome::Exit { code: 75 }));
        a.egress = vec![EgressRecord {
            method: "POST".into(),
            origin: "http://localhost:8080".into(),
            status: None,
            request_bytes: 0,
            response_bytes: 0,
            duration_ms: 2,
            outcome: EgressOutcome::DeniedAddress,
            detail: "localhost resolves to 127.0.0.1, loopback (127.0.0.0/8), which the policy does not allow".into(),
        }];
        let text = attempt(&a, &Style::plain(), None);
        assert!(
            text.contains("  http POST http://localhost:8080  0 bytes out  0 bytes in  2 ms  denied_address: localhost resolves to 127.0.0.1"),
            "{text}"
        );
    }

    #[test]
    fn a_trap_shows_message_backtrace_and_output() {
        let a = attempt_view(Some(Outcome::Trap {
            trap: "unreachable".into(),
            message: "wasm trap: unreachable".into(),
            backtrace: "0: handler!boom\n1: _start".into(),
        }));
        let text = attempt(&a, &Style::plain(), Some(EXCERPT_BYTES));
        assert!(
            text.starts_with("attempt 2  trap unreachable: wasm trap: unreachable  1.5 s"),
            "{text}"
        );
        assert!(
            text.contains("  backtrace:\n    0: handler!boom\n    1: _start\n"),
            "{text}"
        );
        assert!(
            text.contains("  stderr:\n    line one\n    line two\n"),
            "{text}"
        );
        assert!(text.contains("truncated by the capture cap"), "{text}");
        assert!(!text.contains("stdout"), "{text}");
        assert!(!text.contains('\x1b'), "plain has no escapes");
    }

    #[test]
    fn excerpts_cut_long_output() {
        let mut a = attempt_view(Some(Outcome::Ok));
        a.stdout = "é".repeat(100);
        let text = attempt(&a, &Style::plain(), Some(11));
        assert!(text.contains("    ééééé\n"), "{text}");
        assert!(text.contains("190 more bytes"), "{text}");
    }

    #[test]
    fn tables_align_on_the_widest_cell() {
        let mut t = Table::new(&["A", "LONGER"]);
        t.row(vec!["wide cell".into(), "x".into()]);
        assert_eq!(
            t.render(&Style::plain()),
            "A          LONGER\nwide cell  x\n"
        );
    }

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        use std::ffi::OsStr;
        assert!(Style::decide(true, None).is_colored());
        assert!(!Style::decide(false, None).is_colored(), "piped: plain");
        assert!(!Style::decide(true, Some(OsStr::new("1"))).is_colored());
        assert!(!Style::decide(false, Some(OsStr::new("1"))).is_colored());
        // no-color.org: an empty NO_COLOR is as if unset.
        assert!(Style::decide(true, Some(OsStr::new(""))).is_colored());
        let red = Style::decide(true, None).paint(Color::Red, "dead");
        assert_eq!(red, "\x1b[31mdead\x1b[0m");
        assert_eq!(Style::decide(false, None).paint(Color::Red, "dead"), "dead");
    }

    #[test]
    fn an_attempt_shows_its_module_memory_and_fuel() {
        let mut a = attempt_view(Some(Outcome::FuelExhausted { limit: 1000 }));
        a.module_sha256 = Some("ab".repeat(32));
        a.peak_memory_bytes = Some(2 << 20);
        a.fuel_used = Some(1000);
        let text = attempt(&a, &Style::plain(), None);
        let second = text.lines().nth(1).unwrap();
        assert_eq!(
            second, "  module abababababab  peak memory 2 MiB  fuel 1000",
            "{text}"
        );
        // Unmetered and still running: only what is known.
        a.fuel_used = None;
        assert!(
            attempt(&a, &Style::plain(), None)
                .contains("  module abababababab  peak memory 2 MiB\n")
        );
        let running = attempt(&attempt_view(None), &Style::plain(), None);
        assert!(running.starts_with("attempt 2  running"), "{running}");
        assert_eq!(details(&attempt_view(None)), "");
    }

    #[test]
    fn colour_marks_failures_red_and_success_green() {
        let colored = Style::decide(true, None);
        let failed = attempt(
            &attempt_view(Some(Outcome::Exit { code: 3 })),
            &colored,
            None,
        );
        assert!(failed.contains("\x1b[31mexit 3\x1b[0m"), "{failed:?}");
        let ok = attempt(&attempt_view(Some(Outcome::Ok)), &colored, None);
        assert!(ok.contains("\x1b[32mok\x1b[0m"), "{ok:?}");
    }

    #[test]
    fn stats_lead_with_the_three_signals() {
        let view: StatsView = serde_json::from_value(serde_json::json!({
            "handlers": [{
                "handler": "resize", "topic": "images", "paused": true,
                "counts": {"scheduled": 1, "ready": 3, "leased": 1, "retrying": 2,
                           "succeeded": 10, "dead": 4},
                "ready": 3, "dlq": 4,
                "oldest_ready_at": "2026-01-01T00:00:00.000Z", "oldest_ready_age_ms": 1500
            }],
            "topics": {"images": 7},
            "dlq": 4, "ready": 3, "oldest_ready_age_ms": 1500, "flushes": 9
        }))
        .unwrap();
        let text = stats(&view, &Style::plain());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "HANDLER  TOPIC   STATUS  DLQ  READY  LAG    OPEN  SCHEDULED  LEASED  RETRYING  SUCCEEDED"
        );
        assert_eq!(
            lines[1],
            "resize   images  paused  4    3      1.5 s  7     1          1       2         10"
        );
        assert!(
            text.contains("dlq 4  ready 3  oldest ready 1.5 s  flushes 9\n"),
            "{text}"
        );
        assert!(text.contains("topic images: 7 undelivered\n"), "{text}");
    }

    #[test]
    fn a_handler_the_runner_paused_shows_why() {
        let mut h: HandlerView = serde_json::from_value(serde_json::json!({
            "name": "resize", "topic": "images", "module_sha256": "ab".repeat(32),
            "policy": {}, "paused": true,
            "paused_reason": "its configuration cannot run: invalid limits: memory limit 64 MiB > the runner's ceiling 32 MiB",
            "created_at": "2026-01-01T00:00:00.000Z", "updated_at": "2026-01-01T00:00:00.000Z",
            "version": 2
        }))
        .unwrap();
        let list = handlers(std::slice::from_ref(&h), &Style::plain());
        assert!(
            list.lines().nth(1).unwrap().contains(" unrunnable "),
            "{list}"
        );
        let one = handler(&h, &Style::plain());
        assert!(
            one.contains("paused by the runner, its configuration cannot run: invalid limits: memory limit 64 MiB"),
            "{one}"
        );
        h.paused_reason = None;
        assert!(
            handlers(&[h], &Style::plain())
                .lines()
                .nth(1)
                .unwrap()
                .contains(" paused ")
        );
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(millis(12), "12 ms");
        assert_eq!(millis(1500), "1.5 s");
        assert_eq!(millis(243_000), "4m 3s");
    }
}
