//! Which alerts share a case.
//!
//! An alert's **grouping key** is its rule id and the values of the policy's entity fields
//! (`by`, a subset of the alert's `group`; all of them by default). The first alert of a key
//! opens a case; later alerts of the same key join it while the case is open (not closed),
//! their event time is within `window` of the case's first alert, and the case holds fewer
//! than `max_alerts`. Otherwise the slot closes and a new case opens that links back to the
//! previous one (`previous_case`). A closed case never takes alerts again.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use vigil_model::Alert;

/// How one rule's alerts group; the `[cases]` section of a pipeline file, or one rule's
/// entry in `[cases.rules]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GroupingPolicy {
    /// Entity fields (paths in the alert's `group`) that must be equal; `None` = all of them.
    pub by: Option<Vec<String>>,
    /// How long after a case's first alert (event time) later alerts still join it.
    #[serde(with = "vigil_model::duration::text")]
    pub window: Duration,
    /// Alerts per case at most; the next one opens a new case.
    pub max_alerts: u32,
}

impl Default for GroupingPolicy {
    /// All group fields, 24 hours, 1,000 alerts.
    fn default() -> Self {
        GroupingPolicy {
            by: None,
            window: Duration::from_secs(24 * 3600),
            max_alerts: 1000,
        }
    }
}

/// The policy of every rule: a default and per-rule overrides.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grouping {
    /// The policy of rules without their own.
    #[serde(flatten)]
    pub default: GroupingPolicy,
    /// Rule id → policy.
    #[serde(default)]
    pub rules: BTreeMap<String, GroupingPolicy>,
}

impl Grouping {
    /// The policy of `rule_id`.
    pub fn policy(&self, rule_id: &str) -> &GroupingPolicy {
        self.rules.get(rule_id).unwrap_or(&self.default)
    }

    /// The grouping key of `alert`: a JSON array of the rule id and the `[field, value]` pairs
    /// of the policy's fields in field order (a field the alert lacks has value `null`).
    /// Unambiguous whatever the values contain.
    pub fn key(&self, alert: &Alert) -> String {
        let policy = self.policy(&alert.rule_id);
        let pairs: Vec<(&str, Option<&str>)> = match &policy.by {
            None => alert
                .group
                .iter()
                .map(|(k, v)| (k.as_str(), Some(v.as_str())))
                .collect(),
            Some(fields) => {
                let mut fields: Vec<&str> = fields.iter().map(String::as_str).collect();
                fields.sort_unstable();
                fields.dedup();
                fields
                    .into_iter()
                    .map(|f| (f, alert.group.get(f).map(String::as_str)))
                    .collect()
            }
        };
        serde_json::to_string(&(&alert.rule_id, pairs)).expect("strings serialize")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(rule: &str, group: &[(&str, &str)]) -> Alert {
        serde_json::from_value(serde_json::json!({
            "id": "0123456789abcdef0123456789abcdef", "schema_version": 1, "tenant_id": "acme",
            "rule_id": rule, "rule_version": 1, "title": "t", "severity": "low", "tags": [],
            "group": group.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>(),
            "window": {"start": "2026-01-01T00:00:00Z", "end": "2026-01-01T00:00:00Z"},
            "value": 1, "@timestamp": "2026-01-01T00:00:00Z",
            "detected_at": "2026-01-01T00:00:00Z", "events": [], "event_count": 1
        }))
        .unwrap()
    }

    #[test]
    fn keys_use_the_policy_fields_only() {
        let grouping: Grouping = toml::from_str(
            r#"
            window = "1h"
            [rules.brute]
            by = ["user.name"]
            max_alerts = 5
            window = "10m"
            "#,
        )
        .unwrap();
        assert_eq!(grouping.default.window, Duration::from_secs(3600));
        assert_eq!(grouping.policy("brute").max_alerts, 5);
        assert_eq!(grouping.policy("other").max_alerts, 1000);
        let a = alert(
            "brute",
            &[("source.ip", "10.0.0.1"), ("user.name", "alice")],
        );
        let b = alert(
            "brute",
            &[("source.ip", "10.0.0.2"), ("user.name", "alice")],
        );
        assert_eq!(grouping.key(&a), grouping.key(&b));
        assert_eq!(grouping.key(&a), r#"["brute",[["user.name","alice"]]]"#);
        let c = alert(
            "other",
            &[("source.ip", "10.0.0.1"), ("user.name", "alice")],
        );
        let d = alert(
            "other",
            &[("source.ip", "10.0.0.2"), ("user.name", "alice")],
        );
        assert_ne!(grouping.key(&c), grouping.key(&d));
    }

    #[test]
    fn keys_are_unambiguous() {
        let g = Grouping::default();
        let a = alert("r", &[("a", "x\",[\"b"), ("c", "y")]);
        let b = alert("r", &[("a", "x"), ("b", "\"c\",\"y")]);
        assert_ne!(g.key(&a), g.key(&b));
        let missing: Grouping = toml::from_str("by = [\"user.name\"]").unwrap();
        assert_eq!(
            missing.key(&alert("r", &[])),
            r#"["r",[["user.name",null]]]"#
        );
        assert_ne!(
            missing.key(&alert("r", &[])),
            missing.key(&alert("r", &[("user.name", "")]))
        );
    }
}
