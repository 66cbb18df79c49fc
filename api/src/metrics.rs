//! Prometheus metrics in the text exposition format: counters by label set and one latency
//! histogram, kept in memory and rendered on `GET /metrics`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

/// Publish-latency histogram buckets, seconds.
const BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

#[derive(Debug, Default)]
struct Inner {
    counters: BTreeMap<(&'static str, String), u64>,
    latency: [u64; BUCKETS.len() + 1],
    latency_sum: f64,
    latency_count: u64,
}

/// The API's metrics.
#[derive(Debug, Default)]
pub struct Metrics(Mutex<Inner>);

fn labels(pairs: &[(&str, &str)]) -> String {
    let body: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect();
    body.join(",")
}

impl Metrics {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds `n` to a counter.
    pub fn add(&self, name: &'static str, pairs: &[(&str, &str)], n: u64) {
        if n > 0 {
            *self
                .lock()
                .counters
                .entry((name, labels(pairs)))
                .or_default() += n;
        }
    }

    /// Records one publish round trip.
    pub fn observe_publish(&self, d: Duration) {
        let s = d.as_secs_f64();
        let mut m = self.lock();
        let i = BUCKETS
            .iter()
            .position(|&b| s <= b)
            .unwrap_or(BUCKETS.len());
        m.latency[i] += 1;
        m.latency_sum += s;
        m.latency_count += 1;
    }

    /// The value of a counter (for tests and readiness details).
    pub fn get(&self, name: &'static str, pairs: &[(&str, &str)]) -> u64 {
        self.lock()
            .counters
            .get(&(name, labels(pairs)))
            .copied()
            .unwrap_or(0)
    }

    /// Renders every metric.
    pub fn render(&self) -> String {
        let m = self.lock();
        let mut out = String::new();
        let mut last = "";
        for ((name, l), v) in &m.counters {
            if *name != last {
                let _ = writeln!(out, "# TYPE {name} counter");
                last = name;
            }
            let _ = writeln!(out, "{name}{{{l}}} {v}");
        }
        let name = "vigil_ingest_publish_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Time from first publish to the last JetStream ack of a request."
        );
        let _ = writeln!(out, "# TYPE {name} histogram");
        let mut cum = 0;
        for (i, b) in BUCKETS.iter().enumerate() {
            cum += m.latency[i];
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cum}");
        }
        cum += m.latency[BUCKETS.len()];
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cum}");
        let _ = writeln!(out, "{name}_sum {}", m.latency_sum);
        let _ = writeln!(out, "{name}_count {}", m.latency_count);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histogram() {
        let m = Metrics::default();
        m.add(
            "vigil_ingest_events_rejected_total",
            &[("tenant", "acme"), ("reason", "tenant_mismatch")],
            2,
        );
        m.add(
            "vigil_ingest_events_rejected_total",
            &[("tenant", "acme"), ("reason", "tenant_mismatch")],
            1,
        );
        m.observe_publish(Duration::from_millis(3));
        let text = m.render();
        assert!(
            text.contains(
                "vigil_ingest_events_rejected_total{tenant=\"acme\",reason=\"tenant_mismatch\"} 3\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("vigil_ingest_publish_seconds_bucket{le=\"0.005\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("vigil_ingest_publish_seconds_bucket{le=\"0.0025\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("vigil_ingest_publish_seconds_count 1\n"),
            "{text}"
        );
    }
}
