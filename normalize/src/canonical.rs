//! Entity canonicalization, applied to every parser's output (`SEMANTICS.md`: "Entities are
//! canonical before any rule sees them"). Group keys and alert ids are computed from these
//! values, so changing a rule here is a breaking change (bump `schema_version`).
//!
//! - **IPs** (every `format: ip` field of the schema; applied by the schema check through
//!   [`canonical_ip`]): parsed with [`std::net::IpAddr`] and written in its text form, with
//!   IPv4-mapped IPv6 as plain IPv4 and an IPv6 zone (`%eth0`) dropped.
//! - **Accounts** (`user.name` with `user.domain`, `user.target.name` with
//!   `user.target.domain`): `DOMAIN\user` and UPN-style `user@dns.domain` are split into name and
//!   domain; the domain is only written when the event has none. A name is left alone when it
//!   has more than one `\` or `@`, or when the part after `@` is not a DNS name with a dot (so
//!   `root@10.0.0.1` stays as it is).
//! - **Case**: for case-insensitive sources the account names and domains above are lowercased
//!   (after splitting), as are the entries of `related.user`.
//! - **Related**: `related.user` gets every user name field and `related.ip` every IP field,
//!   appended after the values already there, without duplicates.

use std::net::IpAddr;

use serde_json::{Map, Value};

use crate::json;

/// The canonical text form of an IP address, or `None` if `s` is not one.
pub(crate) fn canonical_ip(s: &str) -> Option<String> {
    let addr = match s.split_once('%') {
        // A zone only qualifies an IPv6 address (`fe80::1%eth0`).
        Some((addr, zone)) if addr.contains(':') && !zone.is_empty() => addr,
        Some(_) => return None,
        None => s,
    };
    let ip: IpAddr = addr.parse().ok()?;
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    Some(ip.to_string())
}

/// Account fields split and lowercased: (name, domain).
const ACCOUNTS: [(&str, &str); 2] = [
    ("user.name", "user.domain"),
    ("user.target.name", "user.target.domain"),
];

/// Fields whose values go into `related.user`.
const USER_FIELDS: [&str; 5] = [
    "user.name",
    "user.target.name",
    "user.changes.name",
    "client.user.name",
    "process.user.name",
];

/// Fields whose values go into `related.ip` (every IP field of the schema but `related.ip`).
pub(crate) const IP_FIELDS: [&str; 7] = [
    "source.ip",
    "source.nat.ip",
    "destination.ip",
    "destination.nat.ip",
    "client.ip",
    "server.ip",
    "host.ip",
];

/// Canonicalizes the accounts of a schema-conformant event and fills `related`.
pub(crate) fn canonicalize(event: &mut Map<String, Value>, case_insensitive: bool) {
    for (name_path, domain_path) in ACCOUNTS {
        canonical_account(event, name_path, domain_path, case_insensitive);
    }
    let mut users = Vec::new();
    let mut ips = Vec::new();
    if let Some(Value::Array(existing)) = json::get_in(event, "related.user") {
        users.extend(existing.iter().filter_map(Value::as_str).map(|s| {
            if case_insensitive {
                s.to_lowercase()
            } else {
                s.to_owned()
            }
        }));
    }
    users.extend(
        USER_FIELDS
            .iter()
            .filter_map(|p| json::get_str_in(event, p))
            .map(str::to_owned),
    );
    if let Some(Value::Array(existing)) = json::get_in(event, "related.ip") {
        ips.extend(existing.iter().filter_map(Value::as_str).map(str::to_owned));
    }
    for p in IP_FIELDS {
        match json::get_in(event, p) {
            Some(Value::String(s)) => ips.push(s.clone()),
            Some(Value::Array(items)) => {
                ips.extend(items.iter().filter_map(Value::as_str).map(str::to_owned))
            }
            _ => {}
        }
    }
    dedup(&mut users);
    dedup(&mut ips);
    if !users.is_empty() {
        json::set(event, "related.user", users);
    }
    if !ips.is_empty() {
        json::set(event, "related.ip", ips);
    }
}

/// Drops empty and repeated entries, keeping the first of each (the lists are a handful of
/// entries: a scan beats hashing).
fn dedup(v: &mut Vec<String>) {
    let mut kept: Vec<String> = Vec::with_capacity(v.len());
    for s in v.drain(..) {
        if !s.is_empty() && !kept.contains(&s) {
            kept.push(s);
        }
    }
    *v = kept;
}

fn canonical_account(
    event: &mut Map<String, Value>,
    name_path: &str,
    domain_path: &str,
    case_insensitive: bool,
) {
    let name = json::get_str_in(event, name_path).map(str::to_owned);
    let has_domain = json::get_str_in(event, domain_path).is_some();
    let Some(name) = name else {
        if case_insensitive {
            lowercase_at(event, domain_path);
        }
        return;
    };
    let (mut user, domain) = split_account(&name);
    if let Some(domain) = domain
        && !has_domain
    {
        json::set(event, domain_path, domain);
    }
    if case_insensitive {
        user = user.to_lowercase();
        lowercase_at(event, domain_path);
    }
    if user != name {
        json::set(event, name_path, user);
    }
}

fn lowercase_at(event: &mut Map<String, Value>, path: &str) {
    let mut cur = &mut *event;
    let mut parts = path.split('.').peekable();
    while let Some(key) = parts.next() {
        if parts.peek().is_none() {
            if let Some(Value::String(s)) = cur.get_mut(key) {
                *s = s.to_lowercase();
            }
            return;
        }
        match cur.get_mut(key) {
            Some(Value::Object(m)) => cur = m,
            _ => return,
        }
    }
}

/// Splits `DOMAIN\user` and `user@dns.domain`: (user, domain). Anything else is returned as
/// it is, without a domain.
pub(crate) fn split_account(name: &str) -> (String, Option<String>) {
    if let Some((domain, user)) = name.split_once('\\') {
        if !user.is_empty() && !user.contains('\\') && !user.contains('@') {
            let domain = (!domain.is_empty()).then(|| domain.to_owned());
            return (user.to_owned(), domain);
        }
        return (name.to_owned(), None);
    }
    if let Some((user, domain)) = name.split_once('@')
        && !user.is_empty()
        && is_dns_name(domain)
    {
        return (user.to_owned(), Some(domain.to_owned()));
    }
    (name.to_owned(), None)
}

/// A DNS name with at least two labels whose last label is not all digits (so not an IPv4).
fn is_dns_name(s: &str) -> bool {
    let labels: Vec<&str> = s.split('.').collect();
    labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        && labels
            .last()
            .is_some_and(|l| l.bytes().any(|b| b.is_ascii_alphabetic()))
}

/// Whether the accounts of an ECS event are case-insensitive: `event.module` (or the first
/// dotted part of `event.dataset`) is one of [`CASE_INSENSITIVE_MODULES`] (compared
/// ignoring case), or `event.provider` starts with `Microsoft-Windows` (ignoring case).
pub(crate) fn ecs_case_insensitive(event: &Value) -> bool {
    let module_matches = |m: &str| {
        CASE_INSENSITIVE_MODULES
            .iter()
            .any(|c| c.eq_ignore_ascii_case(m))
    };
    json::get_str(event, "event.module").is_some_and(module_matches)
        || json::get_str(event, "event.dataset")
            .and_then(|d| d.split('.').next())
            .is_some_and(module_matches)
        || json::get_str(event, "event.provider").is_some_and(|p| {
            p.get(..17)
                .is_some_and(|h| h.eq_ignore_ascii_case("Microsoft-Windows"))
        })
}

/// `event.module` values of sources whose accounts are case-insensitive (Windows, AD, Entra).
pub(crate) const CASE_INSENSITIVE_MODULES: [&str; 6] = [
    "windows",
    "security",
    "azure",
    "entra",
    "ad",
    "active_directory",
];

/// Whether a vendor or product name names Microsoft (case-insensitive sources in OCSF/UDM).
pub(crate) fn is_microsoft(name: &str) -> bool {
    name.to_ascii_lowercase().contains("microsoft")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn canon(v: Value, ci: bool) -> Value {
        let Value::Object(mut m) = v else { panic!() };
        canonicalize(&mut m, ci);
        Value::Object(m)
    }

    #[test]
    fn ips() {
        for (input, want) in [
            ("1.2.3.4", Some("1.2.3.4")),
            ("::ffff:1.2.3.4", Some("1.2.3.4")),
            ("::FFFF:10.0.0.5", Some("10.0.0.5")),
            ("2001:DB8::1", Some("2001:db8::1")),
            (
                "2001:0db8:0000:0000:0000:0000:0000:0001",
                Some("2001:db8::1"),
            ),
            ("fe80::1%eth0", Some("fe80::1")),
            ("::1", Some("::1")),
            ("::", Some("::")),
            ("1.2.3.4%eth0", None),
            ("fe80::1%", None),
            ("010.0.0.1", None),
            ("1.2.3", None),
            ("[::1]", None),
            (" 1.2.3.4", None),
            ("-", None),
            ("", None),
            ("ec2.amazonaws.com", None),
        ] {
            assert_eq!(canonical_ip(input).as_deref(), want, "{input}");
        }
    }

    #[test]
    fn ip_fields_are_the_schema_ip_fields() {
        let mut from_schema: Vec<String> = crate::schema::leaves()
            .into_iter()
            .filter(|(_, t, _)| *t == crate::schema::Scalar::Ip)
            .map(|(p, _, _)| p)
            .filter(|p| p != "related.ip")
            .collect();
        from_schema.sort();
        let mut ours: Vec<String> = IP_FIELDS.iter().map(|s| s.to_string()).collect();
        ours.sort();
        assert_eq!(ours, from_schema);
    }

    #[test]
    fn splits_accounts() {
        for (input, user, domain) in [
            ("CORP\\alice", "alice", Some("CORP")),
            ("\\alice", "alice", None),
            ("alice@corp.example.com", "alice", Some("corp.example.com")),
            ("alice@corp", "alice@corp", None),
            ("root@10.0.0.1", "root@10.0.0.1", None),
            ("a@b@c.com", "a@b@c.com", None),
            ("@corp.com", "@corp.com", None),
            ("CORP\\", "CORP\\", None),
            ("A\\B\\C", "A\\B\\C", None),
            ("CORP\\a@b.com", "CORP\\a@b.com", None),
            ("alice@-bad.com", "alice@-bad.com", None),
            ("alice", "alice", None),
            ("DC01$", "DC01$", None),
        ] {
            let (u, d) = split_account(input);
            assert_eq!((u.as_str(), d.as_deref()), (user, domain), "{input}");
        }
    }

    #[test]
    fn canonicalizes_windows_accounts() {
        let v = json!({
            "user": {"name": "CORP\\Alice", "target": {"name": "Bob@Corp.Example.com"}},
            "source": {"ip": "10.0.0.1"},
            "host": {"ip": ["10.0.0.2", "10.0.0.1"]},
        });
        assert_eq!(
            canon(v, true),
            json!({
                "user": {
                    "name": "alice", "domain": "corp",
                    "target": {"name": "bob", "domain": "corp.example.com"},
                },
                "source": {"ip": "10.0.0.1"},
                "host": {"ip": ["10.0.0.2", "10.0.0.1"]},
                "related": {"user": ["alice", "bob"], "ip": ["10.0.0.1", "10.0.0.2"]},
            })
        );
    }

    #[test]
    fn keeps_case_and_existing_domain() {
        let v = json!({
            "user": {"name": "Alice@corp.example.com", "domain": "CORP"},
            "related": {"user": ["Alice@corp.example.com"], "ip": ["192.0.2.1"]},
            "destination": {"ip": "192.0.2.1"},
        });
        assert_eq!(
            canon(v, false),
            json!({
                "user": {"name": "Alice", "domain": "CORP"},
                "destination": {"ip": "192.0.2.1"},
                "related": {"user": ["Alice@corp.example.com", "Alice"], "ip": ["192.0.2.1"]},
            })
        );
    }

    #[test]
    fn lowercases_domain_without_name() {
        let v = json!({"user": {"domain": "CORP"}});
        assert_eq!(canon(v, true), json!({"user": {"domain": "corp"}}));
    }

    #[test]
    fn is_idempotent() {
        let v = json!({
            "user": {"name": "CORP\\Alice", "target": {"name": "x@y.org"}},
            "client": {"user": {"name": "c"}},
            "source": {"ip": "10.0.0.1"},
        });
        let once = canon(v, true);
        assert_eq!(canon(once.clone(), true), once);
    }

    #[test]
    fn ecs_case_rule() {
        for (v, want) in [
            (json!({"event": {"module": "Windows"}}), true),
            (json!({"event": {"module": "entra"}}), true),
            (json!({"event": {"module": "okta"}}), false),
            (json!({"event": {"dataset": "azure.signinlogs"}}), true),
            (json!({"event": {"dataset": "windows.security"}}), true),
            (json!({"event": {"dataset": "system.auth"}}), false),
            (
                json!({"event": {"provider": "Microsoft-Windows-Security-Auditing"}}),
                true,
            ),
            (json!({"event": {"provider": "sshd"}}), false),
            (json!({}), false),
        ] {
            assert_eq!(ecs_case_insensitive(&v), want, "{v}");
        }
        assert!(is_microsoft("Microsoft Corporation"));
        assert!(!is_microsoft("Okta"));
    }
}
