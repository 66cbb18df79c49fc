//! Suppression across groups (`docs/rules.md`, Suppression): an aggregation or sequence whose
//! `suppress for D by F` names some of its group-by fields raises, after an alert with values
//! `v` of `F` at event time `t`, no alert for any of its groups with those values before
//! `t + D`.
//!
//! The groups sharing `v` live on different workers (window keys are spread by the whole
//! group), so this is applied in the alert stage, where every firing of a (rule, tenant) meets
//! on one worker ([`alert_route`]). The stage applies each epoch's firings once every worker's
//! are in, sorted by (rule, tenant, end, triggering event id): event-time order, as for
//! single-event suppression, and a fixed one, so the alerts are the same for any number of
//! workers and any restart. Across epochs the order is event time too: a
//! window or sequence fires only once its tenant's watermark passes the event (or deadline),
//! so a tenant's firings of a later epoch end at or after the watermark that released the
//! earlier ones.
//!
//! State: per (rule, tenant, values) the end of the quiet period, forgotten once the tenant's
//! firings have passed it; checkpointed with the window state at every barrier.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use vigil_dsl::RulePlan;
use vigil_operators::Firing;

/// The worker-routing hash of the alert stage: every firing of one (rule, tenant) goes to the
/// same worker (`alert_route % workers`, as timely's exchange routes).
pub(crate) fn alert_route(rule: u32, tenant: &str) -> u64 {
    let mut x = xxhash_rust::xxh3::Xxh3::new();
    x.update(&rule.to_le_bytes());
    x.update(tenant.as_bytes());
    x.digest()
}

/// A rule's suppression across groups, as the alert stage applies it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Quiet {
    /// The quiet period, ms.
    pub(crate) ms: i64,
    /// Positions of the suppression fields in the firing's group values.
    pub(crate) fields: Vec<usize>,
}

impl Quiet {
    /// The suppression across groups `plan` declares, if any.
    pub(crate) fn of(plan: &RulePlan) -> Option<Quiet> {
        let across = plan.suppress_across.as_ref()?;
        let group = plan.kind.group_by().unwrap_or_default();
        Some(Quiet {
            ms: i64::try_from(across.ms).unwrap_or(i64::MAX),
            fields: across
                .by
                .iter()
                .filter_map(|f| group.iter().position(|g| g == f))
                .collect(),
        })
    }
}

/// One quiet period, as a checkpoint keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct QuietEntry {
    pub(crate) rule: u32,
    pub(crate) tenant: String,
    /// The values of the suppression fields, in field-path order.
    pub(crate) values: Vec<String>,
    /// Event time (ms) from which the values may alert again.
    pub(crate) until: i64,
}

/// The quiet periods of the (rule, tenant) pairs one worker's alert stage sees.
#[derive(Debug, Default)]
pub(crate) struct QuietGate {
    until: HashMap<(u32, String, Vec<String>), i64>,
    /// Per tenant, the latest end of a firing applied: every later firing ends at or after it,
    /// so a quiet period that ends by then can be forgotten.
    newest: HashMap<String, i64>,
    /// Entries right after the last time they were pruned.
    kept: usize,
}

impl QuietGate {
    /// A gate holding the quiet periods of a checkpoint.
    pub(crate) fn restore(entries: Vec<QuietEntry>) -> QuietGate {
        // A tenant's newest end is unknown until its next firing: nothing of it is pruned.
        let until: HashMap<_, _> = entries
            .into_iter()
            .map(|e| ((e.rule, e.tenant, e.values), e.until))
            .collect();
        QuietGate {
            kept: until.len(),
            until,
            newest: HashMap::new(),
        }
    }

    /// Whether firing `f` of a rule suppressed across groups by `q` raises an alert: not while
    /// an earlier alert of the rule and tenant with the same values is quiet. An alert opens
    /// the values' quiet period.
    pub(crate) fn admit(&mut self, q: &Quiet, f: &Firing) -> bool {
        match self.newest.get_mut(&f.tenant) {
            Some(n) => *n = (*n).max(f.end),
            None => {
                self.newest.insert(f.tenant.clone(), f.end);
            }
        }
        let values = q
            .fields
            .iter()
            .map(|&i| f.group.get(i).cloned().unwrap_or_default())
            .collect();
        let key = (f.rule, f.tenant.clone(), values);
        if self.until.get(&key).is_some_and(|&u| f.end < u) {
            return false;
        }
        self.until.insert(key, f.end.saturating_add(q.ms));
        self.prune();
        true
    }

    /// Forgets the quiet periods every tenant's firings have passed, once the map has doubled
    /// since the last time (amortized constant time per alert).
    fn prune(&mut self) {
        if self.until.len() <= 2 * self.kept + 64 {
            return;
        }
        let newest = &self.newest;
        self.until
            .retain(|(_, t, _), u| newest.get(t).is_none_or(|&n| *u > n));
        self.kept = self.until.len();
    }

    /// The quiet periods in force, for a checkpoint (sorted, so that equal states encode
    /// equally).
    pub(crate) fn entries(&self) -> Vec<QuietEntry> {
        let mut out: Vec<QuietEntry> = self
            .until
            .iter()
            .map(|((rule, tenant, values), &until)| QuietEntry {
                rule: *rule,
                tenant: tenant.clone(),
                values: values.clone(),
                until,
            })
            .collect();
        out.sort_by(|a, b| (a.rule, &a.tenant, &a.values).cmp(&(b.rule, &b.tenant, &b.values)));
        out
    }

    /// Quiet periods held.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.until.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    fn firing(rule: u32, tenant: &str, group: &[&str], end: i64) -> Firing {
        Firing {
            rule,
            tenant: tenant.into(),
            group: group.iter().map(|g| (*g).to_owned()).collect(),
            event_id: format!("e{end}"),
            title_values: Vec::new(),
            value: 1.0,
            start: end,
            end,
            events: Vec::new(),
            event_count: 1,
            health: None,
        }
    }

    /// Group (source.ip, user.name), suppressed by source.ip (position 0) for 10 minutes.
    fn by_source() -> Quiet {
        Quiet {
            ms: 10 * MIN,
            fields: vec![0],
        }
    }

    #[test]
    fn groups_sharing_the_values_are_quiet_until_the_period_ends() {
        let q = by_source();
        let mut g = QuietGate::default();
        assert!(g.admit(&q, &firing(0, "acme", &["10.0.0.1", "alice"], 0)));
        // Another user from the same source: quiet.
        assert!(!g.admit(&q, &firing(0, "acme", &["10.0.0.1", "bob"], 5 * MIN)));
        // Another source: its own period.
        assert!(g.admit(&q, &firing(0, "acme", &["10.0.0.2", "bob"], 5 * MIN)));
        // The same source in another tenant, or for another rule: not quiet.
        assert!(g.admit(&q, &firing(0, "globex", &["10.0.0.1", "bob"], 5 * MIN)));
        assert!(g.admit(&q, &firing(1, "acme", &["10.0.0.1", "bob"], 5 * MIN)));
        // The period is half open: at exactly 10 minutes the source alerts again, and a
        // discarded firing did not extend it.
        assert!(!g.admit(&q, &firing(0, "acme", &["10.0.0.1", "carol"], 10 * MIN - 1)));
        assert!(g.admit(&q, &firing(0, "acme", &["10.0.0.1", "carol"], 10 * MIN)));
        assert!(!g.admit(&q, &firing(0, "acme", &["10.0.0.1", "alice"], 20 * MIN - 1)));
    }

    #[test]
    fn a_restored_gate_continues_exactly() {
        let q = by_source();
        let mut g = QuietGate::default();
        g.admit(&q, &firing(0, "acme", &["10.0.0.1", "alice"], 0));
        g.admit(&q, &firing(0, "globex", &["10.0.0.9", "alice"], 3 * MIN));
        let entries = g.entries();
        assert_eq!(entries.len(), 2);
        let mut r = QuietGate::restore(entries.clone());
        assert_eq!(r.entries(), entries);
        for (f, admitted) in [
            (firing(0, "acme", &["10.0.0.1", "bob"], 9 * MIN), false),
            (firing(0, "globex", &["10.0.0.9", "bob"], 12 * MIN), false),
            (firing(0, "globex", &["10.0.0.9", "bob"], 13 * MIN), true),
        ] {
            assert_eq!(r.admit(&q, &f), admitted, "{f:?}");
            assert_eq!(g.admit(&q, &f), admitted, "{f:?}");
        }
    }

    #[test]
    fn quiet_periods_the_tenant_has_passed_are_forgotten() {
        let q = Quiet {
            ms: MIN,
            fields: vec![0],
        };
        let mut g = QuietGate::default();
        // A thousand sources one second apart, each quiet for a minute: only the last minute's
        // are worth keeping, and the map stays within a small multiple of them.
        for i in 0..1_000 {
            let ip = format!("10.0.{}.{}", i / 256, i % 256);
            assert!(g.admit(&q, &firing(0, "acme", &[&ip, "u"], i * 1_000)));
            assert!(g.len() <= 2 * 61 + 64 + 1, "{} at {i}", g.len());
        }
        // A quiet tenant's periods are kept while another tenant's firings move on.
        g.admit(&q, &firing(0, "globex", &["10.9.9.9", "u"], 0));
        for i in 1_000..1_500 {
            let ip = format!("10.1.{}.{}", i / 256, i % 256);
            g.admit(&q, &firing(0, "acme", &[&ip, "u"], i * 1_000));
        }
        assert!(!g.admit(&q, &firing(0, "globex", &["10.9.9.9", "v"], MIN - 1)));
    }
}
