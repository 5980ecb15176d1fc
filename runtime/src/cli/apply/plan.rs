//! The plan of `sluice apply`: what to do to each handler so the server
//! matches the manifest. Pure: computed from the manifest's handlers (with
//! their modules' digests), the server's handlers and its default policy.

use serde::Serialize;
use serde_json::Value;

use super::manifest::HandlerSpec;
use crate::api::dto::HandlerView;
use crate::policy::HandlerPolicy;

/// What happens to one handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Not on the server: registered.
    Create,
    /// Its module or policy differs: registered again (version bumped).
    Update,
    /// Already as the manifest says: not registered again (version unchanged).
    Unchanged,
    /// On the server, not in the manifest, and `--prune` given: removed with
    /// its deliveries.
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

/// One line of the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    /// What.
    pub action: Action,
    /// The handler.
    pub handler: String,
    /// Its topic (the manifest's; the server's for a removal).
    pub topic: String,
    /// For an update, what differs: `module`, `policy.<field>`.
    pub changes: Vec<String>,
}

/// A manifest handler with the sha256 (hex) of its module.
pub type Wanted<'a> = (&'a HandlerSpec, String);

/// The steps, manifest order first, then removals by name. `Err` names a
/// handler whose policy fields do not fit over the server's defaults.
pub fn plan(
    wanted: &[Wanted<'_>],
    server: &[HandlerView],
    defaults: &HandlerPolicy,
    prune: bool,
) -> Result<Vec<Step>, String> {
    let mut steps = Vec::new();
    for (spec, sha256) in wanted {
        let existing = server.iter().find(|h| h.name == spec.name);
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
                    .policy_over(defaults)
                    .map_err(|e| format!("handler {:?}: policy: {e}", spec.name))?;
                let changes = differences(sha256, &policy, h);
                if changes.is_empty() {
                    (Action::Unchanged, changes)
                } else {
                    (Action::Update, changes)
                }
            }
        };
        steps.push(Step {
            action,
            handler: spec.name.clone(),
            topic: spec.topic.clone(),
            changes,
        });
    }
    if prune {
        for h in server {
            if !wanted.iter().any(|(spec, _)| spec.name == h.name) {
                steps.push(Step {
                    action: Action::Remove,
                    handler: h.name.clone(),
                    topic: h.topic.clone(),
                    changes: Vec::new(),
                });
            }
        }
    }
    Ok(steps)
}

/// What differs between the wanted handler and the server's.
fn differences(sha256: &str, policy: &HandlerPolicy, h: &HandlerView) -> Vec<String> {
    let mut changes = Vec::new();
    if h.module_sha256 != sha256 {
        changes.push("module".to_string());
    }
    let (Ok(Value::Object(want)), Ok(Value::Object(have))) = (
        serde_json::to_value(policy),
        serde_json::to_value(&h.policy),
    ) else {
        unreachable!("a policy serializes to an object")
    };
    for (field, value) in &want {
        if have.get(field) != Some(value) {
            changes.push(format!("policy.{field}"));
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use serde_json::json;

    use super::*;

    fn spec(name: &str, policy: Value) -> HandlerSpec {
        let Value::Object(policy) = policy else {
            panic!()
        };
        HandlerSpec {
            name: name.into(),
            topic: "t".into(),
            module: PathBuf::from("m.wasm"),
            build: None,
            policy,
        }
    }

    fn server(name: &str, sha: &str, policy: HandlerPolicy) -> HandlerView {
        HandlerView {
            name: name.into(),
            topic: "t".into(),
            module_sha256: sha.into(),
            policy,
            paused: false,
            created_at: String::new(),
            updated_at: String::new(),
            version: 1,
        }
    }

    #[test]
    fn create_update_unchanged_remove() {
        let defaults = HandlerPolicy {
            concurrency: 7,
            ..HandlerPolicy::default()
        };
        let retries3 = HandlerPolicy {
            retries: 3,
            ..defaults.clone()
        };
        let (a, b, c, d) = (
            spec("a", json!({})),
            spec("b", json!({"retries": 3})),
            spec("c", json!({"retries": 3})),
            spec("d", json!({})),
        );
        let wanted = [
            (&a, "aa".to_string()),
            (&b, "bb".to_string()),
            (&c, "cc".to_string()),
            (&d, "dd".to_string()),
        ];
        let on_server = [
            server("b", "bb", retries3),
            server("c", "old", defaults.clone()),
            // An absent field means the server's default: d is unchanged.
            server("d", "dd", defaults.clone()),
            server("old", "ee", defaults.clone()),
        ];
        let steps = plan(&wanted, &on_server, &defaults, true).unwrap();
        let summary: Vec<(Action, &str, Vec<String>)> = steps
            .iter()
            .map(|s| (s.action, s.handler.as_str(), s.changes.clone()))
            .collect();
        assert_eq!(
            summary,
            [
                (Action::Create, "a", vec![]),
                (Action::Unchanged, "b", vec![]),
                (
                    Action::Update,
                    "c",
                    vec!["module".to_string(), "policy.retries".to_string()]
                ),
                (Action::Unchanged, "d", vec![]),
                (Action::Remove, "old", vec![]),
            ]
        );
        // Without --prune nothing is removed.
        let steps = plan(&wanted, &on_server, &defaults, false).unwrap();
        assert!(steps.iter().all(|s| s.action != Action::Remove));
        // A topic change is refused, naming the handler and the field.
        let mut moved = server("d", "dd", defaults.clone());
        moved.topic = "elsewhere".into();
        let err = plan(&wanted[3..], &[moved], &defaults, false).unwrap_err();
        assert!(err.starts_with("handler \"d\": topic:"), "{err}");
    }
}
