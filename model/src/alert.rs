//! The alert record and its deterministic id.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize, Serializer};
use sha2::{Digest, Sha256};

use crate::severity::Severity;
use crate::tenant::TenantId;

/// An alert as Vigil emits it (schema: `docs/schema/alert.schema.json`).
///
/// Timestamps are epoch milliseconds in memory and RFC 3339 strings on the wire.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Alert {
    /// Deterministic id, see [`alert_id`].
    pub id: String,
    /// Version of the alert schema.
    pub schema_version: u32,
    /// The tenant whose events raised the alert.
    pub tenant_id: TenantId,
    /// Id of the rule that fired.
    pub rule_id: String,
    /// Version of the rule that fired.
    pub rule_version: u32,
    /// The rule's title template, rendered with the group values.
    pub title: String,
    /// The rule's severity.
    pub severity: Severity,
    /// Risk score, 0–100 (the rule's `risk_score`, or one derived from its severity); rules
    /// over alerts sum it per entity.
    #[serde(default)]
    pub risk_score: u32,
    /// The rule's tags (MITRE ATT&CK ids and free tags).
    pub tags: Vec<String>,
    /// The rule's description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Group-by field path → canonical string value, keys sorted.
    pub group: BTreeMap<String, String>,
    /// The window at the moment of firing.
    pub window: AlertWindow,
    /// The aggregate at the moment of firing (1 for single-event rules).
    #[serde(serialize_with = "ser_number")]
    pub value: f64,
    /// Event time of the triggering event.
    #[serde(rename = "@timestamp", with = "crate::time::rfc3339")]
    pub timestamp: i64,
    /// Processing time at which the engine raised the alert.
    #[serde(with = "crate::time::rfc3339")]
    pub detected_at: i64,
    /// `event.id` of contributing events, oldest first, capped.
    pub events: Vec<String>,
    /// Number of events in the window at the moment of firing.
    pub event_count: u64,
}

/// The span of events an alert covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertWindow {
    /// Time of the earliest event in the window at the moment of firing.
    #[serde(with = "crate::time::rfc3339")]
    pub start: i64,
    /// Time of the triggering event; the id's window anchor.
    #[serde(with = "crate::time::rfc3339")]
    pub end: i64,
}

/// The alert id: the first 128 bits of SHA-256, hex-encoded, over a length-prefixed encoding of
/// the tenant, the rule id, the rule version, the group (path and value pairs in field-path
/// order) and the window anchor in epoch milliseconds.
///
/// `group` must be sorted by path; it is the caller's canonical `group` map.
pub fn alert_id<'a>(
    tenant: &str,
    rule_id: &str,
    rule_version: u32,
    group: impl ExactSizeIterator<Item = (&'a str, &'a str)>,
    anchor_ms: i64,
) -> String {
    let mut h = Sha256::new();
    let mut put = |b: &[u8]| {
        h.update((b.len() as u64).to_be_bytes());
        h.update(b);
    };
    put(b"vigil.alert.v1");
    put(tenant.as_bytes());
    put(rule_id.as_bytes());
    put(&u64::from(rule_version).to_be_bytes());
    put(&(group.len() as u64).to_be_bytes());
    for (path, value) in group {
        put(path.as_bytes());
        put(value.as_bytes());
    }
    put(&anchor_ms.to_be_bytes());
    let digest = h.finalize();
    let mut out = String::with_capacity(32);
    for b in &digest[..16] {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 15)]));
    }
    out
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn ser_number<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    // Counts are integers; print them without a fraction so that `value` reads as `10`.
    if v.fract() == 0.0 && v.abs() < 9_007_199_254_740_992.0 {
        s.serialize_i64(*v as i64)
    } else {
        s.serialize_f64(*v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(tenant: &str, group: &[(&str, &str)], anchor: i64) -> String {
        alert_id(
            tenant,
            "brute_force_login",
            1,
            group.iter().copied(),
            anchor,
        )
    }

    #[test]
    fn id_is_stable_across_versions_of_the_code() {
        // A pinned vector, computed independently (Python hashlib over the same encoding): if this
        // changes, every stored alert id changes with it.
        assert_eq!(
            id("acme", &[("user.name", "alice")], 1_796_032_800_123),
            "533ffd887132f62a1dbb02bb63f636fe"
        );
    }

    #[test]
    fn id_separates_every_component() {
        let base = id("acme", &[("user.name", "alice")], 1);
        assert_ne!(base, id("acmf", &[("user.name", "alice")], 1));
        assert_ne!(base, id("acme", &[("user.name", "alicf")], 1));
        assert_ne!(base, id("acme", &[("user.name", "alice")], 2));
        assert_ne!(
            base,
            alert_id(
                "acme",
                "brute_force_login",
                2,
                [("user.name", "alice")].into_iter(),
                1
            )
        );
        // Length prefixes keep concatenations apart.
        assert_ne!(id("acme", &[("a", "bc")], 1), id("acme", &[("ab", "c")], 1));
        assert_ne!(id("ac", &[("me", "x")], 1), id("acme", &[("", "x")], 1));
    }

    #[test]
    fn alert_json_round_trips() {
        let a = Alert {
            id: id("acme", &[("user.name", "alice")], 1_000),
            schema_version: 1,
            tenant_id: TenantId::parse("acme").unwrap(),
            rule_id: "brute_force_login".into(),
            rule_version: 1,
            title: "Brute force against alice".into(),
            severity: Severity::High,
            risk_score: 73,
            tags: vec!["attack.t1110".into()],
            description: None,
            group: [("user.name".to_string(), "alice".to_string())].into(),
            window: AlertWindow {
                start: 0,
                end: 1_000,
            },
            value: 10.0,
            timestamp: 1_000,
            detected_at: 2_000,
            events: vec!["e1".into()],
            event_count: 10,
        };
        let json = serde_json::to_string(&a).unwrap();
        assert!(json.contains("\"value\":10,"), "{json}");
        assert!(
            json.contains("\"@timestamp\":\"1970-01-01T00:00:01.000Z\""),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<Alert>(&json).unwrap(), a);
    }
}
