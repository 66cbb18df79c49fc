//! Live engine metrics in the Prometheus text format: per tenant and per (rule, tenant), from
//! snapshots each worker publishes about once a second.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

use vigil_model::time::now_millis;

use crate::checkpoint::ProgressHandle;
use crate::io::RejectReason;

/// One worker's counters at one moment.
#[derive(Clone, Debug, Default)]
pub(crate) struct WorkerSnapshot {
    pub(crate) events: BTreeMap<String, u64>,
    pub(crate) rejected: BTreeMap<RejectReason, u64>,
    pub(crate) late: BTreeMap<(u32, String), u64>,
    pub(crate) alerts: BTreeMap<(u32, String), u64>,
    pub(crate) excepted: BTreeMap<(u32, String), u64>,
    pub(crate) shed_keys: BTreeMap<(u32, String), u64>,
    pub(crate) shed_alerts: BTreeMap<(u32, String), u64>,
    pub(crate) suppressed: BTreeMap<(u32, String), u64>,
    pub(crate) keys: BTreeMap<(u32, String), usize>,
    pub(crate) watermarks: BTreeMap<String, i64>,
}

#[derive(Debug, Default)]
struct Inner {
    rules: Vec<String>,
    workers: Vec<WorkerSnapshot>,
    progress: Option<ProgressHandle>,
}

/// Shared between a running engine and whatever serves `/metrics`.
#[derive(Debug, Default)]
pub struct EngineMetrics(Mutex<Inner>);

impl EngineMetrics {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn start(&self, rules: Vec<String>, workers: usize, progress: ProgressHandle) {
        let mut inner = self.lock();
        inner.rules = rules;
        inner.workers = vec![WorkerSnapshot::default(); workers];
        inner.progress = Some(progress);
    }

    pub(crate) fn publish(&self, worker: usize, snapshot: WorkerSnapshot) {
        if let Some(slot) = self.lock().workers.get_mut(worker) {
            *slot = snapshot;
        }
    }

    /// The metrics as Prometheus text.
    pub fn render(&self) -> String {
        let inner = self.lock();
        let rule = |r: u32| inner.rules.get(r as usize).map_or("?", String::as_str);
        let mut events: BTreeMap<&str, u64> = BTreeMap::new();
        let mut rejected: BTreeMap<RejectReason, u64> = BTreeMap::new();
        let mut late: BTreeMap<(&str, &str), u64> = BTreeMap::new();
        let mut alerts: BTreeMap<(&str, &str), u64> = BTreeMap::new();
        let mut excepted: BTreeMap<(&str, &str), u64> = BTreeMap::new();
        let mut suppressed: BTreeMap<(&str, &str), u64> = BTreeMap::new();
        let mut shed: BTreeMap<(&str, &str, &str), u64> = BTreeMap::new();
        let mut keys: BTreeMap<(&str, &str), usize> = BTreeMap::new();
        let mut watermarks: BTreeMap<&str, i64> = BTreeMap::new();
        for w in &inner.workers {
            for (t, n) in &w.events {
                *events.entry(t).or_default() += n;
            }
            for (r, n) in &w.rejected {
                *rejected.entry(*r).or_default() += n;
            }
            for ((r, t), n) in &w.late {
                *late.entry((rule(*r), t)).or_default() += n;
            }
            for ((r, t), n) in &w.alerts {
                *alerts.entry((rule(*r), t)).or_default() += n;
            }
            for (into, from) in [
                (&mut excepted, &w.excepted),
                (&mut suppressed, &w.suppressed),
            ] {
                for ((r, t), n) in from {
                    *into.entry((rule(*r), t)).or_default() += n;
                }
            }
            for (reason, counts) in [("key_cap", &w.shed_keys), ("alert_rate", &w.shed_alerts)] {
                for ((r, t), n) in counts {
                    *shed.entry((rule(*r), t, reason)).or_default() += n;
                }
            }
            for ((r, t), n) in &w.keys {
                *keys.entry((rule(*r), t)).or_default() += n;
            }
            for (t, wm) in &w.watermarks {
                let e = watermarks.entry(t).or_insert(i64::MIN);
                *e = (*e).max(*wm);
            }
        }
        let rt = |(r, t): &(&str, &str)| format!("rule=\"{r}\",tenant=\"{t}\"");
        let mut out = String::new();
        family(
            &mut out,
            "vigil_engine_events_total counter Valid events read, per tenant.",
            events
                .iter()
                .map(|(t, v)| (format!("tenant=\"{t}\""), v.to_string())),
        );
        family(
            &mut out,
            "vigil_engine_rejected_total counter Input lines rejected, per reason.",
            rejected
                .iter()
                .map(|(r, v)| (format!("reason=\"{r}\""), v.to_string())),
        );
        family(
            &mut out,
            "vigil_engine_late_events_total counter Events older than their tenant's watermark, per rule whose filter they matched.",
            late.iter().map(|(k, v)| (rt(k), v.to_string())),
        );
        family(
            &mut out,
            "vigil_engine_alerts_total counter Alerts raised.",
            alerts.iter().map(|(k, v)| (rt(k), v.to_string())),
        );
        family(
            &mut out,
            "vigil_engine_excepted_events_total counter Events a rule's filter took that one of its exceptions allowed.",
            excepted.iter().map(|(k, v)| (rt(k), v.to_string())),
        );
        family(
            &mut out,
            "vigil_engine_suppressed_total counter Matches that would have raised an alert but for their key's suppression (`suppress for`).",
            suppressed.iter().map(|(k, v)| (rt(k), v.to_string())),
        );
        family(
            &mut out,
            "vigil_engine_shed_total counter Hits (key_cap: they would have opened a window key past the tenant's cap) and alerts (alert_rate: past the tenant's alerts per rule and minute) dropped.",
            shed.iter().map(|((r, t, why), v)| {
                (
                    format!("rule=\"{r}\",tenant=\"{t}\",reason=\"{why}\""),
                    v.to_string(),
                )
            }),
        );
        family(
            &mut out,
            "vigil_engine_state_keys gauge Live window keys (as of the latest eviction sweep).",
            keys.iter().map(|(k, v)| (rt(k), v.to_string())),
        );
        let now = now_millis();
        family(
            &mut out,
            "vigil_engine_watermark_lag_seconds gauge Wall clock minus the tenant's event-time watermark.",
            watermarks
                .iter()
                .filter(|(_, wm)| **wm > i64::MIN && **wm < i64::MAX)
                .map(|(t, wm)| {
                    let lag = now.saturating_sub(*wm) as f64 / 1000.0;
                    (format!("tenant=\"{t}\""), format!("{lag:.3}"))
                }),
        );
        if let Some(p) = &inner.progress {
            let p = p.lock();
            let one = |v: u64| std::iter::once((String::new(), v.to_string()));
            family(
                &mut out,
                "vigil_engine_checkpoints_total counter Checkpoints committed.",
                one(p.written),
            );
            family(
                &mut out,
                "vigil_engine_checkpoint_position gauge Source position of the newest committed checkpoint.",
                one(p.committed.unwrap_or(0)),
            );
            family(
                &mut out,
                "vigil_engine_checkpoint_bytes gauge Size of the newest checkpoint.",
                one(p.bytes),
            );
        }
        out
    }
}

/// Writes one metric family: `spec` is "name type help"; samples are (labels, value).
fn family(out: &mut String, spec: &str, samples: impl Iterator<Item = (String, String)>) {
    let mut parts = spec.splitn(3, ' ');
    let (name, kind, help) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (labels, value) in samples {
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {value}");
        } else {
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_rule_and_tenant_counters_sum_over_workers() {
        let m = EngineMetrics::default();
        {
            let mut inner = m.lock();
            inner.rules = vec!["brute_force_login".into(), "password_spray".into()];
            let worker = |pairs: &[(u32, &str, u64)]| WorkerSnapshot {
                suppressed: pairs
                    .iter()
                    .map(|&(r, t, n)| ((r, t.to_owned()), n))
                    .collect(),
                ..WorkerSnapshot::default()
            };
            inner.workers = vec![
                worker(&[(0, "acme", 2), (1, "globex", 5)]),
                worker(&[(0, "acme", 1), (0, "globex", 4)]),
            ];
        }
        let text = m.render();
        for line in [
            "# TYPE vigil_engine_suppressed_total counter",
            "vigil_engine_suppressed_total{rule=\"brute_force_login\",tenant=\"acme\"} 3",
            "vigil_engine_suppressed_total{rule=\"brute_force_login\",tenant=\"globex\"} 4",
            "vigil_engine_suppressed_total{rule=\"password_spray\",tenant=\"globex\"} 5",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
        assert_eq!(text.matches("vigil_engine_suppressed_total{").count(), 3);
    }
}
