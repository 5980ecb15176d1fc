//! The egress flags shared by `sluice register` and `sluice run`, so a
//! handler can be tried locally under the policy it will be registered with.

use clap::Args;
use serde_json::{Map, Value, json};

use crate::sandbox::EgressPolicy;
use crate::units::parse_size;

/// Outbound HTTP(S) of the handler (docs/egress.md); nothing is allowed
/// unless listed.
#[derive(Debug, Clone, Default, Args)]
pub struct EgressArgs {
    /// An origin the handler may call, e.g. https://api.example.com or
    /// https://*.example.org:8443 (repeatable; http:// only when listed so).
    #[arg(long = "allow-origin", value_name = "ORIGIN")]
    allow: Vec<String>,
    /// An address range the handler may reach although it is private,
    /// loopback, link-local or metadata, e.g. 10.1.0.0/16 (repeatable).
    #[arg(long = "allow-address", value_name = "CIDR")]
    allow_addresses: Vec<String>,
    /// Outbound requests per attempt [default: 50].
    #[arg(long, value_name = "N")]
    egress_max_requests: Option<u32>,
    /// Request body bytes per attempt, e.g. 8MiB [default: 8MiB].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    egress_max_request_bytes: Option<u64>,
    /// Response body bytes per attempt, e.g. 16MiB [default: 16MiB].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    egress_max_response_bytes: Option<u64>,
    /// Connections open at once for the handler [default: 16].
    #[arg(long, value_name = "N")]
    egress_max_connections: Option<u32>,
}

impl EgressArgs {
    /// The `egress` object of a policy with only the fields given (the
    /// server fills in the rest), or `None` when no flag was given.
    pub fn json(&self) -> Option<Value> {
        let mut m = Map::new();
        if !self.allow.is_empty() {
            m.insert("allow".into(), json!(self.allow));
        }
        if !self.allow_addresses.is_empty() {
            m.insert("allow_addresses".into(), json!(self.allow_addresses));
        }
        let numbers = [
            ("max_requests", self.egress_max_requests.map(u64::from)),
            ("max_request_bytes", self.egress_max_request_bytes),
            ("max_response_bytes", self.egress_max_response_bytes),
            (
                "max_connections",
                self.egress_max_connections.map(u64::from),
            ),
        ];
        for (k, v) in numbers {
            if let Some(v) = v {
                m.insert(k.into(), json!(v));
            }
        }
        (!m.is_empty()).then_some(Value::Object(m))
    }

    /// The policy these flags give over the defaults, validated.
    pub fn policy(&self) -> anyhow::Result<EgressPolicy> {
        let policy = match self.json() {
            None => EgressPolicy::default(),
            Some(v) => serde_json::from_value(v)?,
        };
        policy.validate()?;
        Ok(policy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_become_the_policy() {
        let a = EgressArgs {
            allow: vec!["https://api.example.com".into()],
            egress_max_requests: Some(3),
            ..EgressArgs::default()
        };
        assert_eq!(
            a.json().unwrap(),
            json!({"allow": ["https://api.example.com"], "max_requests": 3})
        );
        let p = a.policy().unwrap();
        assert_eq!(p.max_requests, 3);
        assert_eq!(p.max_connections, EgressPolicy::default().max_connections);
        assert!(EgressArgs::default().json().is_none());
        let bad = EgressArgs {
            allow: vec!["api.example.com".into()],
            ..EgressArgs::default()
        };
        assert!(
            bad.policy()
                .unwrap_err()
                .to_string()
                .contains("egress.allow")
        );
    }
}
