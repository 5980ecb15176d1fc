//! `sluice.toml`: the handlers of a project as code.
//!
//! ```toml
//! [[handler]]
//! name = "resize"                       # [a-z0-9][a-z0-9._-]{0,127}
//! topic = "images"
//! module = "target/resize.wasm"         # relative to this file
//! build = "cargo build --release"       # optional: run (sh -c, in this file's directory) first
//! timeout = "30s"                       # every policy field is optional: absent ones
//! lease = "75s"                         #   take the server's defaults
//! retries = 5
//! backoff = "1s"
//! backoff_max = "1h"
//! memory = "64MiB"                      # or bytes, 67108864
//! fuel = 1000000
//! concurrency = 4
//! env = { MODE = "fast" }
//! egress = { allow = ["https://api.example.com"] }   # the API's egress policy
//!
//! [[schedule]]                          # the body of PUT /v1/schedules/{id}
//! id = "nightly"                        # [a-z0-9][a-z0-9._-]{0,127}
//! cron = "0 3 * * *"                    # 5 fields, or 6 with seconds first
//! topic = "images"
//! timezone = "Europe/London"            # every other field is optional: absent
//! payload = '{"all":true}'              #   ones take the server's defaults
//! headers = { source = "cron" }         # (payload_base64 or payload_file instead)
//! ordering_key = "nightly"
//! catch_up = "latest"                   # skip | latest | all
//! max_catch_up = 100
//! catch_up_window = "24h"
//! overlap = "skip"                      # allow | skip | buffer_one
//! start = 2027-01-01T00:00:00Z          # or a string; end too
//! jitter = "30s"
//! paused = false                        # absent: left as the server has it
//! ```
//!
//! Each kind of entry is an array of tables (`[[handler]]`, `[[schedule]]`).
//! A manifest is read whole and checked before anything is built or sent: the
//! first problem is one [`ManifestError`] naming the file, the entry and the
//! field.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Map, Value};
use thiserror::Error;

use crate::cli::PolicyArgs;
use crate::names::{validate_handler, validate_topic};
use crate::policy::HandlerPolicy;
use crate::units::{parse_duration, parse_size};

mod schedule;

pub use schedule::ScheduleEntrySpec;

/// A manifest that cannot be used.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// The file could not be read.
    #[error("cannot read manifest {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not valid TOML, or a key of the wrong type or unknown.
    #[error("{}: {entry}: {field}: {message}", path.display())]
    Field {
        /// The file.
        path: PathBuf,
        /// `handler "resize"`, `schedule "nightly"`, `handler #2` (1-based)
        /// when it has no name yet, or `manifest`.
        entry: String,
        /// The key, e.g. `timeout`.
        field: String,
        /// What is wrong with it.
        message: String,
    },
}

/// The file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    handler: Vec<HandlerEntry>,
    #[serde(default)]
    schedule: Vec<schedule::ScheduleEntry>,
}

/// One `[[handler]]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HandlerEntry {
    name: Option<String>,
    topic: Option<String>,
    module: Option<PathBuf>,
    build: Option<String>,
    timeout: Option<String>,
    lease: Option<String>,
    retries: Option<u32>,
    backoff: Option<String>,
    backoff_max: Option<String>,
    memory: Option<toml::Value>,
    fuel: Option<u64>,
    concurrency: Option<u32>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    /// The API's egress policy object as a table (`allow`, `allow_addresses`, limits).
    egress: Option<toml::Table>,
}

/// A checked manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// The file it was read from.
    pub path: PathBuf,
    /// Its handlers, in file order; names are unique.
    pub handlers: Vec<HandlerSpec>,
    /// Its schedules, in file order; ids are unique.
    pub schedules: Vec<ScheduleEntrySpec>,
}

/// One handler as the manifest wants it.
#[derive(Debug, Clone, PartialEq)]
pub struct HandlerSpec {
    /// Name.
    pub name: String,
    /// Topic.
    pub topic: String,
    /// The module, resolved against the manifest's directory.
    pub module: PathBuf,
    /// Shell command that produces `module`, run in the manifest's directory.
    pub build: Option<String>,
    /// The policy fields given, as the API's JSON (`timeout_ms`, ...); the
    /// server fills in the rest with its defaults.
    pub policy: Map<String, Value>,
}

impl HandlerSpec {
    /// The policy it asks for: `defaults` (the server's) with its fields over them.
    pub fn policy_over(&self, defaults: &HandlerPolicy) -> Result<HandlerPolicy, String> {
        let mut object = match serde_json::to_value(defaults) {
            Ok(Value::Object(o)) => o,
            _ => unreachable!("a policy serializes to an object"),
        };
        object.extend(self.policy.clone());
        serde_json::from_value(Value::Object(object)).map_err(|e| e.to_string())
    }
}

impl Manifest {
    /// Reads and checks the manifest at `path`.
    pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Read {
            path: path.to_owned(),
            source,
        })?;
        Manifest::parse(&text, path)
    }

    /// Checks the manifest `text`, read from `path` (which errors name, and
    /// module paths are relative to).
    pub fn parse(text: &str, path: &Path) -> Result<Manifest, ManifestError> {
        let fail = |entry: String, field: &str, message: String| ManifestError::Field {
            path: path.to_owned(),
            entry,
            field: field.to_string(),
            message,
        };
        let deserializer = toml::de::Deserializer::parse(text).map_err(|e| {
            let line = e
                .span()
                .map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1);
            let at = line.map(|l| format!(" (line {l})")).unwrap_or_default();
            fail(
                "manifest".into(),
                "(syntax)",
                format!("malformed TOML: {}{at}", e.message().trim_end()),
            )
        })?;
        let file: File = serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let (entry, field) = locate(e.path(), text);
            let inner = e.into_inner();
            let mut message = inner.message().to_string();
            if let Some(span) = inner.span() {
                let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                message = format!("{message} (line {line})");
            }
            fail(entry, &field, message)
        })?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut seen = BTreeSet::new();
        let mut handlers = Vec::new();
        for (i, h) in file.handler.into_iter().enumerate() {
            let entry = match &h.name {
                Some(name) => format!("handler {name:?}"),
                None => format!("handler #{}", i + 1),
            };
            let spec =
                check(h, dir).map_err(|(field, message)| fail(entry.clone(), field, message))?;
            if !seen.insert(spec.name.clone()) {
                return Err(fail(
                    entry,
                    "name",
                    "named twice: each handler is one entry".into(),
                ));
            }
            handlers.push(spec);
        }
        let mut schedules = Vec::new();
        for (i, s) in file.schedule.into_iter().enumerate() {
            let entry = match &s.id {
                Some(id) => format!("schedule {id:?}"),
                None => format!("schedule #{}", i + 1),
            };
            let spec = schedule::check(s, dir)
                .map_err(|(field, message)| fail(entry.clone(), field, message))?;
            if schedules
                .iter()
                .any(|s: &ScheduleEntrySpec| s.id == spec.id)
            {
                return Err(fail(
                    entry,
                    "id",
                    "named twice: each schedule is one entry".into(),
                ));
            }
            schedules.push(spec);
        }
        Ok(Manifest {
            path: path.to_owned(),
            handlers,
            schedules,
        })
    }
}

/// Checks one entry; an error names the field.
fn check(h: HandlerEntry, dir: &Path) -> Result<HandlerSpec, (&'static str, String)> {
    let name = h.name.ok_or(("name", "missing".to_string()))?;
    validate_handler(&name).map_err(|e| ("name", e.to_string()))?;
    let topic = h.topic.ok_or(("topic", "missing".to_string()))?;
    validate_topic(&topic).map_err(|e| ("topic", e.to_string()))?;
    let module = h.module.ok_or((
        "module",
        "missing: the path of the .wasm file (which `build`, if given, produces)".to_string(),
    ))?;
    if h.build.as_deref().is_some_and(|b| b.trim().is_empty()) {
        return Err(("build", "empty: give a command or leave it out".into()));
    }
    let duration = |field: &'static str, text: Option<String>| {
        text.map(|t| parse_duration(&t))
            .transpose()
            .map_err(|e| (field, e))
    };
    let policy = PolicyArgs {
        timeout: duration("timeout", h.timeout)?,
        lease: duration("lease", h.lease)?,
        memory: memory(h.memory)?,
        fuel: h.fuel,
        retries: h.retries,
        backoff: duration("backoff", h.backoff)?,
        backoff_max: duration("backoff_max", h.backoff_max)?,
        concurrency: h.concurrency,
        env: h.env.into_iter().collect(),
        egress: Default::default(),
    }
    .to_json();
    let mut policy = policy;
    if let Some(egress) = h.egress {
        let value = serde_json::to_value(egress).map_err(|e| ("egress", e.to_string()))?;
        policy.insert("egress".into(), value);
    }
    let spec = HandlerSpec {
        name,
        topic,
        module: dir.join(module),
        build: h.build,
        policy,
    };
    // The bounds, checked here against the built-in defaults so a bad value
    // is named before anything is built or sent; the server checks again.
    // The policy's field names are the manifest's keys.
    let merged = spec
        .policy_over(&HandlerPolicy::default())
        .map_err(|e| ("policy", e))?;
    merged.validate().map_err(|e| (e.field, e.reason))?;
    Ok(spec)
}

/// `memory = "64MiB"` or `memory = 67108864`.
fn memory(v: Option<toml::Value>) -> Result<Option<u64>, (&'static str, String)> {
    let bytes = match v {
        None => return Ok(None),
        Some(toml::Value::String(s)) => parse_size(&s).map_err(|e| ("memory", e))?,
        Some(toml::Value::Integer(n)) => {
            u64::try_from(n).map_err(|_| ("memory", format!("{n} is negative")))?
        }
        Some(other) => {
            return Err((
                "memory",
                format!(
                    "expected a size such as \"64MiB\" or a number of bytes, not {}",
                    other.type_str()
                ),
            ));
        }
    };
    Ok(Some(bytes))
}

/// The entry and field a deserialization error is at: `handler[1].timeout`
/// becomes (`handler "resize"`, `timeout`), the name (a schedule's `id`) read
/// from the raw TOML.
fn locate(path: &serde_path_to_error::Path, text: &str) -> (String, String) {
    use serde_path_to_error::Segment;
    let segments: Vec<&Segment> = path.iter().collect();
    match segments.as_slice() {
        [Segment::Map { key }, Segment::Seq { index }, rest @ ..]
            if key == "handler" || key == "schedule" =>
        {
            let name_key = if key == "handler" { "name" } else { "id" };
            let name = toml::from_str::<toml::Table>(text).ok().and_then(|t| {
                t.get(key.as_str())?
                    .as_array()?
                    .get(*index)?
                    .get(name_key)?
                    .as_str()
                    .map(str::to_string)
            });
            let entry = match name {
                Some(n) => format!("{key} {n:?}"),
                None => format!("{key} #{}", index + 1),
            };
            let field = rest
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join(".");
            (
                entry,
                if field.is_empty() {
                    "(entry)".into()
                } else {
                    field
                },
            )
        }
        _ => ("manifest".into(), path.to_string()),
    }
}

#[cfg(test)]
mod tests;
