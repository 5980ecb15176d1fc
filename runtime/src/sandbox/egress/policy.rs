//! A handler's egress policy: which origins it may call, which otherwise
//! forbidden address ranges it may reach, and its per-attempt limits.
//!
//! Deny by default: an empty [`EgressPolicy::allow`] refuses every request.
//! An origin on the list is still refused when its name resolves only to a
//! private, loopback, link-local or metadata address ([`forbidden_range`]),
//! unless [`EgressPolicy::allow_addresses`] names a range holding it. The
//! check is on the address the client then connects to (client.rs), so a
//! second resolution (DNS rebinding) can never reach an unchecked address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// Default of [`EgressPolicy::max_requests`]: 50 per attempt.
pub const DEFAULT_MAX_REQUESTS: u32 = 50;
/// Default of [`EgressPolicy::max_request_bytes`]: 8 MiB per attempt.
pub const DEFAULT_MAX_REQUEST_BYTES: u64 = 8 << 20;
/// Default of [`EgressPolicy::max_response_bytes`]: 16 MiB per attempt.
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 16 << 20;
/// Default of [`EgressPolicy::max_connections`]: 16 per handler.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 16;
/// Bound of [`EgressPolicy::max_requests`].
pub const MAX_REQUESTS: u32 = 10_000;
/// Bound of the byte limits: 1 GiB.
pub const MAX_BYTES: u64 = 1 << 30;
/// Bound of [`EgressPolicy::max_connections`].
pub const MAX_CONNECTIONS: u32 = 1024;
/// Most entries of [`EgressPolicy::allow`] and of
/// [`EgressPolicy::allow_addresses`] each.
pub const MAX_RULES: usize = 256;

/// Outbound HTTP(S) of one handler. Stored with the handler policy (JSON on
/// both backends); every field has a default, so policies written before
/// egress existed read back as "no egress".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EgressPolicy {
    /// Origins the handler may call: `https://api.example.com`,
    /// `https://*.example.org:8443` (`*.` matches one or more labels, not the
    /// name itself), `https://*` (any host on port 443), `http://…` only
    /// when listed so. No path. Default: none (every request refused).
    pub allow: Vec<String>,
    /// Address ranges (`10.1.0.0/16`, `127.0.0.1`, `::1/128`) that may be
    /// reached although they are private, loopback, link-local or metadata
    /// addresses. Default: none.
    pub allow_addresses: Vec<String>,
    /// Requests per attempt. Default 50, at most 10,000.
    pub max_requests: u32,
    /// Request body bytes per attempt, all requests together. Default 8 MiB,
    /// at most 1 GiB.
    pub max_request_bytes: u64,
    /// Response body bytes per attempt, all responses together; a body is
    /// cut with an error at the limit. Default 16 MiB, at most 1 GiB.
    pub max_response_bytes: u64,
    /// Connections open at once for this handler, all its attempts together;
    /// a request past it waits (within its attempt's timeout). Default 16,
    /// at most 1024.
    pub max_connections: u32,
}

impl Default for EgressPolicy {
    fn default() -> Self {
        EgressPolicy {
            allow: Vec::new(),
            allow_addresses: Vec::new(),
            max_requests: DEFAULT_MAX_REQUESTS,
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

/// An egress setting out of bounds: the field (`egress.allow`, …) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field}: {reason}")]
pub struct EgressPolicyError {
    /// `egress.allow`, `egress.allow_addresses`, `egress.max_requests`, …
    pub field: &'static str,
    /// What is wrong, naming the entry.
    pub reason: String,
}

impl EgressPolicy {
    /// Checks every entry and bound, naming the first that breaks one.
    pub fn validate(&self) -> Result<(), EgressPolicyError> {
        self.rules().map(|_| ())
    }

    /// The parsed rules, or the first entry or bound that is wrong.
    pub fn rules(&self) -> Result<Rules, EgressPolicyError> {
        let bad = |field, reason: String| Err(EgressPolicyError { field, reason });
        for (field, n) in [
            ("egress.allow", self.allow.len()),
            ("egress.allow_addresses", self.allow_addresses.len()),
        ] {
            if n > MAX_RULES {
                return bad(field, format!("{n} entries, at most {MAX_RULES}"));
            }
        }
        if self.max_requests > MAX_REQUESTS {
            return bad(
                "egress.max_requests",
                format!("{} is more than {MAX_REQUESTS}", self.max_requests),
            );
        }
        for (field, n) in [
            ("egress.max_request_bytes", self.max_request_bytes),
            ("egress.max_response_bytes", self.max_response_bytes),
        ] {
            if n > MAX_BYTES {
                return bad(field, format!("{n} bytes is more than 1 GiB"));
            }
        }
        if self.max_connections == 0 || self.max_connections > MAX_CONNECTIONS {
            return bad(
                "egress.max_connections",
                format!(
                    "{} is outside 1 ..= {MAX_CONNECTIONS}",
                    self.max_connections
                ),
            );
        }
        let origins = self
            .allow
            .iter()
            .map(|s| {
                OriginPattern::parse(s).map_err(|reason| EgressPolicyError {
                    field: "egress.allow",
                    reason: format!("{s:?}: {reason}"),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let addresses = self
            .allow_addresses
            .iter()
            .map(|s| {
                parse_range(s).map_err(|reason| EgressPolicyError {
                    field: "egress.allow_addresses",
                    reason: format!("{s:?}: {reason}"),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Rules {
            origins,
            addresses,
            policy: self.clone(),
        })
    }
}

/// A validated [`EgressPolicy`], ready to check requests against.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    origins: Vec<OriginPattern>,
    addresses: Vec<IpNet>,
    /// The policy the rules came from (its limits).
    pub policy: EgressPolicy,
}

impl Rules {
    /// Whether `origin` matches an entry of the allow-list.
    pub fn allows_origin(&self, origin: &Origin) -> bool {
        self.origins.iter().any(|p| p.matches(origin))
    }

    /// `Ok` if `ip` may be connected to: a public address, or one inside an
    /// allowed range; else the forbidden range's name.
    pub fn check_address(&self, ip: IpAddr) -> Result<(), &'static str> {
        let ip = canonical(ip);
        match forbidden_range(ip) {
            None => Ok(()),
            Some(_) if self.addresses.iter().any(|n| n.contains(&ip)) => Ok(()),
            Some(name) => Err(name),
        }
    }
}

/// `http` or `https`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    /// Plain HTTP, only when the allow-list says `http://`.
    Http,
    /// HTTP over TLS.
    Https,
}

impl Scheme {
    fn parse(s: &str) -> Option<Scheme> {
        match s.to_ascii_lowercase().as_str() {
            "http" => Some(Scheme::Http),
            "https" => Some(Scheme::Https),
            _ => None,
        }
    }

    /// 80 or 443.
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }

    /// `http` or `https`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// Where a request goes: scheme, host (lowercase; an IPv6 literal without
/// brackets) and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// `http` or `https`.
    pub scheme: Scheme,
    /// The name or address literal, lowercase.
    pub host: String,
    /// The port, explicit or the scheme's default.
    pub port: u16,
}

impl Origin {
    /// The origin of an absolute URL's scheme and authority.
    pub fn of(scheme: &str, host: &str, port: Option<u16>) -> Result<Origin, String> {
        let scheme = Scheme::parse(scheme)
            .ok_or_else(|| format!("scheme {scheme:?} is not http or https"))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        if host.is_empty() {
            return Err("no host".into());
        }
        Ok(Origin {
            scheme,
            port: port.unwrap_or(scheme.default_port()),
            host,
        })
    }

    /// The host as an address, if it is a literal.
    pub fn ip(&self) -> Option<IpAddr> {
        IpAddr::from_str(&self.host).ok()
    }
}

impl std::fmt::Display for Origin {
    /// `https://api.example.com:443`: always with the port, as recorded.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(
                f,
                "{}://[{}]:{}",
                self.scheme.as_str(),
                self.host,
                self.port
            )
        } else {
            write!(f, "{}://{}:{}", self.scheme.as_str(), self.host, self.port)
        }
    }
}

/// How an allow-list entry's host matches.
#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    /// Exactly this name or address literal.
    Exact(String),
    /// `*.suffix`: any name ending in `.suffix` (one or more labels more).
    Subdomains(String),
    /// `*`: any host.
    Any,
}

/// One parsed entry of [`EgressPolicy::allow`].
#[derive(Debug, Clone, PartialEq, Eq)]
struct OriginPattern {
    scheme: Scheme,
    host: HostPattern,
    port: u16,
}

impl OriginPattern {
    fn parse(s: &str) -> Result<OriginPattern, String> {
        let (scheme, rest) = s
            .split_once("://")
            .ok_or("expected scheme://host[:port], e.g. https://api.example.com")?;
        let scheme = Scheme::parse(scheme)
            .ok_or_else(|| format!("scheme {scheme:?} is not http or https"))?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#', '@']) {
            return Err("an origin has no path, query, fragment or user".into());
        }
        let (host, port) = split_host_port(rest)?;
        let port = port.unwrap_or(scheme.default_port());
        let host = host.to_ascii_lowercase();
        let host = if host == "*" {
            HostPattern::Any
        } else if let Some(suffix) = host.strip_prefix("*.") {
            check_name(suffix)?;
            HostPattern::Subdomains(suffix.to_owned())
        } else if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            Ipv6Addr::from_str(v6).map_err(|_| format!("{v6:?} is not an IPv6 address"))?;
            HostPattern::Exact(v6.to_owned())
        } else {
            if host.contains('*') {
                return Err("a wildcard is only `*` or a leading `*.`".into());
            }
            if Ipv4Addr::from_str(&host).is_err() {
                check_name(&host)?;
            }
            HostPattern::Exact(host)
        };
        Ok(OriginPattern { scheme, host, port })
    }

    fn matches(&self, o: &Origin) -> bool {
        self.scheme == o.scheme
            && self.port == o.port
            && match &self.host {
                HostPattern::Any => true,
                HostPattern::Exact(h) => *h == o.host,
                HostPattern::Subdomains(suffix) => o
                    .host
                    .strip_suffix(suffix.as_str())
                    .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
            }
    }
}

/// `host` and the port of `host[:port]` (`[v6]:port` for IPv6).
fn split_host_port(s: &str) -> Result<(&str, Option<u16>), String> {
    let (host, port) = if s.starts_with('[') {
        match s.find(']') {
            Some(end) => (&s[..=end], s[end + 1..].strip_prefix(':')),
            None => return Err("unclosed [ in an IPv6 host".into()),
        }
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    if host.is_empty() {
        return Err("no host".into());
    }
    let port = match port {
        None => None,
        Some(p) => Some(
            p.parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("port {p:?} is not 1 ..= 65535"))?,
        ),
    };
    Ok((host, port))
}

/// A DNS name: dot-separated labels of letters, digits and `-`.
fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if ok {
        Ok(())
    } else {
        Err(format!("{name:?} is not a host name"))
    }
}

/// `10.0.0.0/8`, `::1/128`, or a bare address (a range of one).
fn parse_range(s: &str) -> Result<IpNet, String> {
    if let Ok(net) = IpNet::from_str(s) {
        return Ok(net.trunc());
    }
    IpAddr::from_str(s)
        .map(IpNet::from)
        .map_err(|_| "expected an address or a CIDR range, e.g. 10.0.0.0/8".into())
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The name of the non-public range `ip` lies in, if any: what is refused
/// unless [`EgressPolicy::allow_addresses`] names it.
pub fn forbidden_range(ip: IpAddr) -> Option<&'static str> {
    match canonical(ip) {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            Some(match (a, b, c) {
                (0, ..) => "this network (0.0.0.0/8)",
                (10, ..) => "private (10.0.0.0/8)",
                (100, 64..=127, _) => "shared address space (100.64.0.0/10)",
                (127, ..) => "loopback (127.0.0.0/8)",
                (169, 254, _) => "link-local and metadata (169.254.0.0/16)",
                (172, 16..=31, _) => "private (172.16.0.0/12)",
                (192, 0, 0) => "IETF protocol assignments (192.0.0.0/24)",
                (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "documentation",
                (192, 168, _) => "private (192.168.0.0/16)",
                (198, 18..=19, _) => "benchmarking (198.18.0.0/15)",
                (224..=239, ..) => "multicast (224.0.0.0/4)",
                (240..=255, ..) => "reserved (240.0.0.0/4)",
                _ => return None,
            })
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            Some(if v6.is_unspecified() {
                "unspecified (::)"
            } else if v6.is_loopback() {
                "loopback (::1)"
            } else if s[0] & 0xfe00 == 0xfc00 {
                "unique local (fc00::/7)"
            } else if s[0] & 0xffc0 == 0xfe80 {
                "link-local (fe80::/10)"
            } else if s[0] & 0xff00 == 0xff00 {
                "multicast (ff00::/8)"
            } else if s[0] == 0x2001 && s[1] == 0x0db8 {
                "documentation (2001:db8::/32)"
            } else if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0]
                || s[0] == 0x2002
                || s[..4] == [0x100, 0, 0, 0]
            {
                // NAT64 and 6to4 embed an IPv4 address that may be private;
                // 100::/64 discards.
                "translated or discard (64:ff9b::/96, 2002::/16, 100::/64)"
            } else if s[..6] == [0; 6] {
                "IPv4-compatible (::/96)"
            } else {
                return None;
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(url_scheme: &str, host: &str, port: Option<u16>) -> Origin {
        Origin::of(url_scheme, host, port).unwrap()
    }

    fn rules(allow: &[&str], addresses: &[&str]) -> Rules {
        EgressPolicy {
            allow: allow.iter().map(|s| s.to_string()).collect(),
            allow_addresses: addresses.iter().map(|s| s.to_string()).collect(),
            ..EgressPolicy::default()
        }
        .rules()
        .unwrap()
    }

    #[test]
    fn deny_by_default() {
        let r = EgressPolicy::default().rules().unwrap();
        assert!(!r.allows_origin(&origin("https", "api.example.com", None)));
    }

    #[test]
    fn origins_match_scheme_host_and_port() {
        let r = rules(
            &[
                "https://api.example.com",
                "https://*.example.org:8443",
                "http://plain.example.net/",
            ],
            &[],
        );
        assert!(r.allows_origin(&origin("https", "API.example.com", None)));
        assert!(r.allows_origin(&origin("https", "api.example.com", Some(443))));
        assert!(
            !r.allows_origin(&origin("http", "api.example.com", None)),
            "http only when listed"
        );
        assert!(!r.allows_origin(&origin("https", "api.example.com", Some(8443))));
        assert!(!r.allows_origin(&origin("https", "evil-api.example.com", None)));
        assert!(r.allows_origin(&origin("https", "a.b.example.org", Some(8443))));
        assert!(
            !r.allows_origin(&origin("https", "example.org", Some(8443))),
            "not the apex"
        );
        assert!(!r.allows_origin(&origin("https", "badexample.org", Some(8443))));
        assert!(r.allows_origin(&origin("http", "plain.example.net", None)));
        let any = rules(&["https://*"], &[]);
        assert!(any.allows_origin(&origin("https", "x.y", None)));
        assert!(!any.allows_origin(&origin("http", "x.y", None)));
        let v6 = rules(&["http://[::1]:8080", "http://127.0.0.1:9"], &[]);
        assert!(v6.allows_origin(&origin("http", "[::1]", Some(8080))));
        assert!(v6.allows_origin(&origin("http", "127.0.0.1", Some(9))));
    }

    #[test]
    fn bad_entries_name_the_field_and_the_entry() {
        for (allow, addr, field, needle) in [
            ("ftp://x.example", "", "egress.allow", "scheme"),
            ("api.example.com", "", "egress.allow", "scheme://host"),
            ("https://api.example.com/v1", "", "egress.allow", "no path"),
            ("https://a*.example.com", "", "egress.allow", "wildcard"),
            ("https://api.example.com:0", "", "egress.allow", "port"),
            ("https://api.example.com:99999", "", "egress.allow", "port"),
            ("https://exa mple.com", "", "egress.allow", "host name"),
            ("https://[::1", "", "egress.allow", "unclosed"),
            (
                "https://ok.example",
                "10.0.0.0/33",
                "egress.allow_addresses",
                "CIDR",
            ),
            (
                "https://ok.example",
                "localhost",
                "egress.allow_addresses",
                "CIDR",
            ),
        ] {
            let p = EgressPolicy {
                allow: vec![allow.into()],
                allow_addresses: if addr.is_empty() {
                    vec![]
                } else {
                    vec![addr.into()]
                },
                ..EgressPolicy::default()
            };
            let e = p.validate().unwrap_err();
            assert_eq!(e.field, field, "{allow} {addr}: {e}");
            assert!(e.reason.contains(needle), "{allow} {addr}: {e}");
            let entry = if addr.is_empty() { allow } else { addr };
            assert!(e.reason.contains(entry), "{e}");
        }
        let p = EgressPolicy {
            max_connections: 0,
            ..EgressPolicy::default()
        };
        assert_eq!(p.validate().unwrap_err().field, "egress.max_connections");
        let p = EgressPolicy {
            max_response_bytes: MAX_BYTES + 1,
            ..EgressPolicy::default()
        };
        assert_eq!(p.validate().unwrap_err().field, "egress.max_response_bytes");
    }

    #[test]
    fn private_loopback_link_local_and_metadata_are_refused_unless_named() {
        let r = rules(&[], &["127.0.0.1/32", "10.1.0.0/16", "fd00::1"]);
        for (ip, ok) in [
            ("93.184.215.14", true),
            ("2606:2800:21f:cb07:6820:80da:af6b:8b2c", true),
            ("127.0.0.1", true),
            ("127.0.0.2", false),
            ("10.1.2.3", true),
            ("10.2.0.1", false),
            ("172.16.0.1", false),
            ("172.32.0.1", true),
            ("192.168.1.1", false),
            ("169.254.169.254", false),
            ("100.100.100.200", false),
            ("0.0.0.0", false),
            ("::1", false),
            ("::", false),
            ("::ffff:127.0.0.1", true),
            ("::ffff:169.254.169.254", false),
            ("64:ff9b::a9fe:a9fe", false),
            ("fd00::1", true),
            ("fd00::2", false),
            ("fe80::1", false),
            ("fd00:ec2::254", false),
            ("ff02::1", false),
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(
                r.check_address(ip).is_ok(),
                ok,
                "{ip}: {:?}",
                r.check_address(ip)
            );
        }
        assert_eq!(
            rules(&[], &[]).check_address("127.0.0.1".parse().unwrap()),
            Err("loopback (127.0.0.0/8)")
        );
    }

    #[test]
    fn old_policies_read_back_with_defaults() {
        let p: EgressPolicy = serde_json::from_str("{}").unwrap();
        assert_eq!(p, EgressPolicy::default());
        let p: EgressPolicy = serde_json::from_str(r#"{"allow":["https://a.example"]}"#).unwrap();
        assert_eq!(p.max_requests, DEFAULT_MAX_REQUESTS);
        assert!(serde_json::from_str::<EgressPolicy>(r#"{"alow":[]}"#).is_err());
    }

    #[test]
    fn origins_display_with_their_port() {
        assert_eq!(
            origin("https", "A.example", None).to_string(),
            "https://a.example:443"
        );
        assert_eq!(
            origin("http", "[::1]", Some(8)).to_string(),
            "http://[::1]:8"
        );
    }
}
