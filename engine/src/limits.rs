//! Tenant fairness (`SEMANTICS.md`, "State is always bounded"): caps per tenant on live window
//! keys and on alerts per rule and minute. Past a cap the tenant's excess is shed, counted, and
//! reported once per period as a health alert; other tenants are not affected.

use std::collections::{BTreeMap, HashMap, HashSet};

use vigil_operators::{Firing, Health, KeyCaps};

/// Default cap on a tenant's live window keys, per stage of the dataflow.
pub const DEFAULT_KEYS_PER_TENANT: u64 = 1_000_000;
/// Default cap on the alerts one rule raises for one tenant in a minute of event time.
pub const DEFAULT_ALERTS_PER_MINUTE: u64 = 10_000;
/// Length of an alert-rate period: one minute of event time.
pub const ALERT_PERIOD_MS: i64 = 60_000;

/// The caps of every tenant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantLimits {
    /// Most live window keys a tenant may hold in one stage (split evenly over the workers:
    /// keys spread over them by hash).
    pub keys: u64,
    /// Most alerts one rule may raise for a tenant in one minute of event time.
    pub alerts_per_minute: u64,
    /// Tenants with caps of their own.
    pub tenants: BTreeMap<String, TenantCaps>,
}

/// One tenant's caps; `None` keeps the default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TenantCaps {
    /// Live window keys per stage.
    pub keys: Option<u64>,
    /// Alerts per rule and minute.
    pub alerts_per_minute: Option<u64>,
}

impl Default for TenantLimits {
    fn default() -> Self {
        TenantLimits {
            keys: DEFAULT_KEYS_PER_TENANT,
            alerts_per_minute: DEFAULT_ALERTS_PER_MINUTE,
            tenants: BTreeMap::new(),
        }
    }
}

impl TenantLimits {
    /// The key caps of one worker out of `workers`: each tenant's cap divided evenly, rounded
    /// up.
    pub(crate) fn key_caps(&self, workers: usize) -> KeyCaps {
        let share = |cap: u64| cap.div_ceil(workers.max(1) as u64);
        KeyCaps {
            default: share(self.keys),
            tenants: self
                .tenants
                .iter()
                .filter_map(|(t, c)| Some((t.clone(), share(c.keys?))))
                .collect(),
        }
    }

    fn alerts_per_minute(&self, tenant: &str) -> u64 {
        self.tenants
            .get(tenant)
            .and_then(|c| c.alerts_per_minute)
            .unwrap_or(self.alerts_per_minute)
    }
}

/// What the alert stage does with a firing.
#[derive(Debug, PartialEq)]
pub(crate) enum Admit {
    /// Raise it.
    Alert,
    /// Raise this health event (the firing was one, or the firing is shed and the health event
    /// is the first of its period).
    Health(Firing),
    /// Drop it: a detection past the cap (its health event raised already), or a health event
    /// raised already.
    Drop,
}

/// The alert-rate caps and the health events raised, of the alert stage of one worker (which
/// sees every firing of its (tenant, rule) pairs).
#[derive(Debug)]
pub(crate) struct AlertGate {
    limits: TenantLimits,
    /// Alerts admitted per (rule, tenant, minute).
    counts: HashMap<(u32, String, i64), u64>,
    /// Health events raised, per (rule, tenant, kind, period).
    raised: HashSet<(u32, String, bool, i64)>,
    /// The latest minute seen, to forget old counts.
    newest: i64,
}

impl AlertGate {
    pub(crate) fn new(limits: TenantLimits) -> Self {
        AlertGate {
            limits,
            counts: HashMap::new(),
            raised: HashSet::new(),
            newest: i64::MIN,
        }
    }

    /// Decides on one firing (detections are counted against their minute, by `end`).
    pub(crate) fn admit(&mut self, f: &Firing) -> Admit {
        if let Some(h) = f.health {
            let key = (
                f.rule,
                f.tenant.clone(),
                matches!(h, Health::KeyCap { .. }),
                f.end,
            );
            return if self.raised.insert(key) {
                Admit::Health(f.clone())
            } else {
                Admit::Drop
            };
        }
        let minute = f.end - f.end.rem_euclid(ALERT_PERIOD_MS);
        self.forget(minute);
        let cap = self.limits.alerts_per_minute(&f.tenant);
        let n = self
            .counts
            .entry((f.rule, f.tenant.clone(), minute))
            .or_default();
        if *n < cap {
            *n += 1;
            return Admit::Alert;
        }
        let health = Firing::health(f.rule, &f.tenant, Health::AlertRate { cap }, minute);
        if self
            .raised
            .insert((f.rule, f.tenant.clone(), false, minute))
        {
            Admit::Health(health)
        } else {
            Admit::Drop
        }
    }

    /// Drops the counts and raised events of periods more than an hour behind `minute`
    /// (firings come in event-time order per tenant, within the lateness for single-event
    /// rules); at most every few thousand entries.
    fn forget(&mut self, minute: i64) {
        self.newest = self.newest.max(minute);
        if self.counts.len() + self.raised.len() < 4096 {
            return;
        }
        let bound = self.newest.saturating_sub(60 * ALERT_PERIOD_MS);
        self.counts.retain(|k, _| k.2 >= bound);
        let hour = vigil_operators::keyed_windows::KEY_CAP_PERIOD_MS;
        self.raised.retain(|k| k.3 >= bound.saturating_sub(hour));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A detection of `rule` for `tenant` at `end`.
    fn firing(rule: u32, tenant: &str, end: i64) -> Firing {
        let mut f = Firing::health(rule, tenant, Health::KeyCap { cap: 0 }, end);
        f.health = None;
        f
    }

    #[test]
    fn alerts_past_the_cap_of_a_minute_are_shed_with_one_health_event_per_minute() {
        let mut limits = TenantLimits {
            alerts_per_minute: 3,
            ..TenantLimits::default()
        };
        limits.tenants.insert(
            "big".into(),
            TenantCaps {
                alerts_per_minute: Some(5),
                keys: None,
            },
        );
        let mut gate = AlertGate::new(limits);
        let mut outcome = |rule, tenant: &str, end| match gate.admit(&firing(rule, tenant, end)) {
            Admit::Alert => "alert".to_owned(),
            Admit::Health(h) => format!("health {:?} at {}", h.health, h.end),
            Admit::Drop => "drop".to_owned(),
        };
        let acme: Vec<String> = (0..5).map(|i| outcome(0, "acme", 60_000 + i)).collect();
        assert_eq!(
            acme,
            [
                "alert",
                "alert",
                "alert",
                "health Some(AlertRate { cap: 3 }) at 60000",
                "drop"
            ]
        );
        // Another rule, another tenant (with its own cap), the next minute: counted apart.
        assert_eq!(outcome(1, "acme", 60_010), "alert");
        for i in 0..5 {
            assert_eq!(outcome(0, "big", 60_000 + i), "alert");
        }
        assert!(outcome(0, "big", 60_100).starts_with("health Some(AlertRate { cap: 5 })"));
        assert_eq!(outcome(0, "acme", 120_000), "alert");
    }

    #[test]
    fn a_health_event_is_raised_once_per_rule_tenant_and_period() {
        let mut gate = AlertGate::new(TenantLimits::default());
        let h = Firing::health(2, "acme", Health::KeyCap { cap: 10 }, 3_600_000);
        assert!(matches!(gate.admit(&h), Admit::Health(_)));
        assert_eq!(gate.admit(&h), Admit::Drop);
        let other = Firing::health(2, "globex", Health::KeyCap { cap: 10 }, 3_600_000);
        assert!(matches!(gate.admit(&other), Admit::Health(_)));
    }

    #[test]
    fn key_caps_are_shared_out_over_the_workers() {
        let mut limits = TenantLimits {
            keys: 10,
            ..TenantLimits::default()
        };
        limits.tenants.insert(
            "acme".into(),
            TenantCaps {
                keys: Some(3),
                alerts_per_minute: None,
            },
        );
        let caps = limits.key_caps(4);
        assert_eq!((caps.of("globex"), caps.of("acme")), (3, 1));
    }
}
