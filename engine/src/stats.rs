//! Run counters. Accounting is exact: `lines = rejected + events` and
//! `events = processed + late`.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::io::{RejectReason, SinkError};

/// One worker's counters.
#[derive(Debug, Default)]
pub(crate) struct WorkerStats {
    pub(crate) lines: u64,
    pub(crate) events: u64,
    pub(crate) late: u64,
    pub(crate) rejected: BTreeMap<RejectReason, u64>,
    /// Valid events per tenant.
    pub(crate) events_by_tenant: BTreeMap<String, u64>,
    /// Alerts per (rule index, tenant).
    pub(crate) alerts: BTreeMap<(u32, String), u64>,
    /// Events a rule's filter took but one of its exceptions allowed, per (rule index, tenant).
    pub(crate) excepted: BTreeMap<(u32, String), u64>,
    /// Alerts shed past the tenant's alert rate, per (rule index, tenant).
    pub(crate) shed_alerts: BTreeMap<(u32, String), u64>,
    /// Firings a suppression across groups held back, per (rule index, tenant).
    pub(crate) suppressed: BTreeMap<(u32, String), u64>,
    /// Health alerts raised.
    pub(crate) health_alerts: u64,
    pub(crate) sink_errors: Vec<String>,
}

impl WorkerStats {
    pub(crate) fn reject(&mut self, reason: RejectReason) {
        *self.rejected.entry(reason).or_default() += 1;
    }

    pub(crate) fn sink_error(&mut self, e: SinkError) {
        if self.sink_errors.len() < 8 {
            self.sink_errors.push(e.to_string());
        }
    }
}

/// What a run did, summed over workers.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct RunStats {
    /// Non-blank input lines.
    pub lines: u64,
    /// Lines that were valid events.
    pub events: u64,
    /// Valid events older than their watermark (not added to any window).
    pub late: u64,
    /// Rejected lines by reason (`late` not included).
    pub rejected: BTreeMap<RejectReason, u64>,
    /// Late events per (rule id, tenant) among those that matched the rule's filter.
    pub late_by_rule: BTreeMap<(String, String), u64>,
    /// Alerts per rule id.
    pub alerts: BTreeMap<String, u64>,
    /// Events allowed by an exception per (rule id, tenant): the rule's filter took them, an
    /// exception of the rule for the tenant did too, so the rule did not see them.
    pub excepted: BTreeMap<(String, String), u64>,
    /// Hits dropped per (rule id, tenant) because they would have opened a window key past the
    /// tenant's cap.
    pub shed_keys: BTreeMap<(String, String), u64>,
    /// Alerts dropped per (rule id, tenant) past the tenant's alerts per rule and minute.
    pub shed_alerts: BTreeMap<(String, String), u64>,
    /// Matches per (rule id, tenant) that would have raised an alert but for their key's
    /// suppression, or a suppression across groups.
    pub suppressed: BTreeMap<(String, String), u64>,
    /// Health alerts raised (one per rule, tenant and period a cap was reached in).
    pub health_alerts: u64,
    /// Most live window keys at once (summed over workers).
    pub peak_keys: usize,
    /// Window state bytes at the peak (summed over workers).
    pub peak_state_bytes: usize,
    /// Live keys and state bytes per rule id at each worker's peak (summed over workers).
    pub state_by_rule: BTreeMap<String, (usize, usize)>,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// Checkpoints committed.
    pub checkpoints: u64,
    /// Size of the last checkpoint, bytes.
    pub checkpoint_bytes: u64,
    /// The longest checkpoint commit (sink flushes and the file write).
    pub checkpoint_slowest: Duration,
    /// Position of the checkpoint the run restored, if any.
    pub restored_from: Option<u64>,
    /// Restored keys and buffered hits dropped because their rule is gone or changed.
    pub restored_dropped: usize,
}

impl RunStats {
    /// Events that reached the rules (not late).
    pub fn processed(&self) -> u64 {
        self.events - self.late
    }

    /// All rejected lines, excluding late events.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }

    /// All alerts.
    pub fn alerts_total(&self) -> u64 {
        self.alerts.values().sum()
    }

    /// Input lines per second of wall time.
    pub fn lines_per_second(&self) -> f64 {
        self.lines as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Window state bytes per live key at the peak.
    pub fn bytes_per_key(&self) -> f64 {
        if self.peak_keys == 0 {
            0.0
        } else {
            self.peak_state_bytes as f64 / self.peak_keys as f64
        }
    }
}
