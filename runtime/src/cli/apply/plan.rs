//! The plan of `sluice apply`: what to do to each handler and schedule so the
//! server matches the manifest. Pure: computed from the manifest's entries
//! (handlers with their modules' digests), the server's handlers, schedules
//! and default policy.
//!
//! Order is the order of execution: handlers created or updated first (a
//! schedule's topic exists once a handler subscribes to it), then schedules
//! created or updated, then schedules removed, then handlers removed.

use serde::Serialize;
use serde_json::Value;

use super::manifest::{HandlerSpec, ScheduleEntrySpec};
use crate::api::dto::HandlerView;
use crate::api::schedules::ScheduleView;
use crate::policy::HandlerPolicy;

/// What happens to one handler or schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Not on the server: registered (created).
    Create,
    /// Its module, policy or spec differs: registered again (a handler's
    /// version +1) or replaced (a schedule keeps its cursor and history).
    Update,
    /// Already as the manifest says: not written again (a handler's version,
    /// a schedule's revision and update time do not move).
    Unchanged,
    /// On the server, not in the manifest, and `--prune` given: removed (a
    /// handler with its deliveries; a schedule with its occurrence records).
    Remove,
}

impl Action {
    /// As the plan prints it.
    pub fn word(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Unchanged => "unchanged",
            Action::Remove => "remove",
        }
    }
}

/// What a step is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A `[[handler]]`.
    Handler,
    /// A `[[schedule]]`.
    Schedule,
}

impl Kind {
    /// As the plan prints it.
    pub fn word(self) -> &'static str {
        match self {
            Kind::Handler => "handler",
            Kind::Schedule => "schedule",
        }
    }
}

/// One line of the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    /// What.
    pub action: Action,
    /// To what kind of entry.
    pub kind: Kind,
    /// The handler's name or the schedule's id.
    pub name: String,
    /// Its topic (the manifest's; the server's for a removal).
    pub topic: String,
    /// For an update, what differs: `module`, `policy.<field>` (handlers);
    /// the spec's fields (`cron`, `jitter_ms`, ...) or `paused` (schedules).
    pub changes: Vec<String>,
}

/// A manifest handler with the sha256 (hex) of its module.
pub type Wanted<'a> = (&'a HandlerSpec, String);

/// What the server has.
#[derive(Debug, Clone, Copy)]
pub struct OnServer<'a> {
    /// `GET /v1/handlers`.
    pub handlers: &'a [HandlerView],
    /// `GET /v1/schedules`.
    pub schedules: &'a [ScheduleView],
    /// `GET /v1/defaults`: the policy an absent field takes.
    pub defaults: &'a HandlerPolicy,
}

/// The steps, in the order of execution (module doc). `Err` names an entry
/// that cannot be planned: a handler moving topic, a policy that does not fit
/// over the server's defaults.
pub fn plan(
    handlers: &[Wanted<'_>],
    schedules: &[ScheduleEntrySpec],
    server: OnServer<'_>,
    prune: bool,
) -> Result<Vec<Step>, String> {
    let mut steps = Vec::new();
    for (spec, sha256) in handlers {
        let existing = server.handlers.iter().find(|h| h.name == spec.name);
        let (action, changes) = match existing {
            None => (Action::Create, Vec::new()),
            Some(h) if h.topic != spec.topic => {
                return Err(format!(
                    "handler {:?}: topic: it is subscribed to {:?} on the server, the manifest says {:?}; \
                     a handler cannot change topic: remove it first (`sluice handlers remove {}`)",
                    spec.name, h.topic, spec.topic, spec.name
                ));
            }
            Some(h) => {
                let policy = spec
                    .policy_over(server.defaults)
                    .map_err(|e| format!("handler {:?}: policy: {e}", spec.name))?;
                let changes = handler_differences(sha256, &policy, h);
                (update_or_unchanged(&changes), changes)
            }
        };
        steps.push(Step {
            action,
            kind: Kind::Handler,
            name: spec.name.clone(),
            topic: spec.topic.clone(),
            changes,
        });
    }
    for want in schedules {
        let (action, changes) = match server.schedules.iter().find(|s| s.id == want.id) {
            None => (Action::Create, Vec::new()),
            Some(have) => {
                let changes = schedule_differences(want, have)?;
                (update_or_unchanged(&changes), changes)
            }
        };
        steps.push(Step {
            action,
            kind: Kind::Schedule,
            name: want.id.clone(),
            topic: want.spec.topic.clone(),
            changes,
        });
    }
    if prune {
        for s in server.schedules {
            if !schedules.iter().any(|want| want.id == s.id) {
                steps.push(removal(Kind::Schedule, &s.id, &s.topic));
            }
        }
        for h in server.handlers {
            if !handlers.iter().any(|(spec, _)| spec.name == h.name) {
                steps.push(removal(Kind::Handler, &h.name, &h.topic));
            }
        }
    }
    Ok(steps)
}

fn update_or_unchanged(changes: &[String]) -> Action {
    if changes.is_empty() {
        Action::Unchanged
    } else {
        Action::Update
    }
}

fn removal(kind: Kind, name: &str, topic: &str) -> Step {
    Step {
        action: Action::Remove,
        kind,
        name: name.to_string(),
        topic: topic.to_string(),
        changes: Vec::new(),
    }
}

/// What differs between the wanted handler and the server's.
fn handler_differences(sha256: &str, policy: &HandlerPolicy, h: &HandlerView) -> Vec<String> {
    let mut changes = Vec::new();
    if h.module_sha256 != sha256 {
        changes.push("module".to_string());
    }
    changes.extend(fields_differing(policy, &h.policy, "policy."));
    changes
}

/// What differs between the wanted schedule and the server's: the spec's
/// fields (an absent one means its default on both sides), and `paused` when
/// the manifest says.
fn schedule_differences(
    want: &ScheduleEntrySpec,
    have: &ScheduleView,
) -> Result<Vec<String>, String> {
    let spec = have.spec().map_err(|e| {
        format!(
            "schedule {:?}: the server's copy does not read back: {e}",
            have.id
        )
    })?;
    let mut changes = fields_differing(&want.spec, &spec, "");
    if want.paused.is_some_and(|p| p != have.paused) {
        changes.push("paused".to_string());
    }
    Ok(changes)
}

/// The top-level fields of `want` whose JSON differs from `have`'s, each
/// with `prefix` before it.
fn fields_differing<T: Serialize>(want: &T, have: &T, prefix: &str) -> Vec<String> {
    let (Ok(Value::Object(want)), Ok(Value::Object(have))) =
        (serde_json::to_value(want), serde_json::to_value(have))
    else {
        unreachable!("policies and schedule specs serialize to objects")
    };
    want.iter()
        .filter(|(field, value)| have.get(*field) != Some(value))
        .map(|(field, _)| format!("{prefix}{field}"))
        .collect()
}

#[cfg(test)]
mod tests;
