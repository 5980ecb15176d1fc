//! `[[schedule]]` entries: the body of `PUT /v1/schedules/{id}` with the
//! CLI's units (durations as `"30s"`), checked by the same code the server
//! runs (`ScheduleRequest::into_spec`, `ScheduleSpec::check`), so a bad cron
//! expression or time zone is named before anything is sent.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::api::schedules::{ScheduleRequest, payload_fields};
use crate::store::{CatchUp, Overlap, ScheduleSpec};
use crate::units::parse_duration;

/// One `[[schedule]]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ScheduleEntry {
    pub(super) id: Option<String>,
    cron: Option<String>,
    timezone: Option<String>,
    topic: Option<String>,
    payload: Option<String>,
    payload_base64: Option<String>,
    payload_file: Option<PathBuf>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    ordering_key: Option<String>,
    catch_up: Option<CatchUp>,
    max_catch_up: Option<u32>,
    catch_up_window: Option<String>,
    overlap: Option<Overlap>,
    start: Option<toml::Value>,
    end: Option<toml::Value>,
    jitter: Option<String>,
    paused: Option<bool>,
}

/// One schedule as the manifest wants it.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleEntrySpec {
    /// Id.
    pub id: String,
    /// The body of `PUT /v1/schedules/{id}`: only the fields given, the
    /// server fills in the rest with its defaults.
    pub request: ScheduleRequest,
    /// What `request` makes: the spec, defaults filled in (compared with the
    /// server's).
    pub spec: ScheduleSpec,
    /// `paused = true|false`; absent: whatever the server has (a pause by
    /// `sluice schedules pause` is left alone).
    pub paused: Option<bool>,
}

/// Checks one entry; an error names the field as the manifest spells it.
pub(super) fn check(
    s: ScheduleEntry,
    dir: &Path,
) -> Result<ScheduleEntrySpec, (&'static str, String)> {
    let id = s.id.ok_or(("id", "missing".to_string()))?;
    let cron = s.cron.ok_or((
        "cron",
        "missing: e.g. \"0 3 * * *\" (5 fields, or 6 with seconds first)".to_string(),
    ))?;
    let topic = s.topic.ok_or(("topic", "missing".to_string()))?;
    let given = [
        s.payload.is_some(),
        s.payload_base64.is_some(),
        s.payload_file.is_some(),
    ];
    if given.iter().filter(|g| **g).count() > 1 {
        return Err((
            "payload",
            "give one of payload, payload_base64 and payload_file".into(),
        ));
    }
    let (payload, payload_base64) = match s.payload_file {
        Some(file) => {
            let path = dir.join(file);
            let bytes = std::fs::read(&path).map_err(|e| {
                (
                    "payload_file",
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            payload_fields(bytes)
        }
        None => (s.payload, s.payload_base64),
    };
    let millis = |field: &'static str, text: Option<String>| {
        text.map(|t| parse_duration(&t).map(|d| d.as_millis() as u64))
            .transpose()
            .map_err(|e| (field, e))
    };
    let request = ScheduleRequest {
        cron,
        timezone: s.timezone,
        topic,
        payload,
        payload_base64,
        headers: s.headers,
        ordering_key: s.ordering_key,
        catch_up: s.catch_up,
        max_catch_up: s.max_catch_up,
        catch_up_window_ms: millis("catch_up_window", s.catch_up_window)?,
        overlap: s.overlap,
        start: time("start", s.start)?,
        end: time("end", s.end)?,
        jitter_ms: millis("jitter", s.jitter)?,
    };
    let spec = request
        .clone()
        .into_spec_with_field(&id)
        .map_err(|(field, e)| named(field, &e.to_string()))?;
    // The server's bounds on the payload and the header count are its
    // configuration: it checks those; everything else is fixed and checked here.
    spec.check(usize::MAX, usize::MAX)
        .map_err(|e| named(e.field, &e.error.to_string()))?;
    Ok(ScheduleEntrySpec {
        id,
        request,
        spec,
        paused: s.paused,
    })
}

/// `start = 2027-01-01T09:00:00Z` (a TOML date-time) or the same as a string.
fn time(
    field: &'static str,
    v: Option<toml::Value>,
) -> Result<Option<String>, (&'static str, String)> {
    match v {
        None => Ok(None),
        Some(toml::Value::String(s)) => Ok(Some(s)),
        Some(toml::Value::Datetime(d)) => Ok(Some(d.to_string())),
        Some(other) => Err((
            field,
            format!(
                "expected an RFC 3339 time such as 2027-01-01T09:00:00Z, not {}",
                other.type_str()
            ),
        )),
    }
}

/// A spec field's error in the manifest's terms: its key (`jitter` for
/// `jitter_ms`) and the reason without the prefixes the API adds.
fn named(field: &'static str, message: &str) -> (&'static str, String) {
    let key = match field {
        "catch_up_window_ms" => "catch_up_window",
        "jitter_ms" => "jitter",
        other => other,
    };
    let reason = message.strip_prefix("invalid input: ").unwrap_or(message);
    let reason = reason
        .strip_prefix(field)
        .and_then(|r| r.strip_prefix(": "))
        .unwrap_or(reason);
    (key, reason.to_string())
}
