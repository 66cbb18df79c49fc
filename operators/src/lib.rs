//! Timely operators for Vigil's detection dataflow, one per file, plus the pure state machines
//! they drive.
//!
//! Time in these dataflows is the *epoch*: the sequence number of an input chunk (a batch of
//! lines), not event time. Event time travels in the records, and watermarks are computed per
//! (source, tenant) from per-epoch summaries that every worker receives ([`watermark`]), so one
//! tenant's clock never makes another tenant's events late. Operators act on epoch `e` once the
//! frontier has passed it, which makes every decision (late or not, fire or not) independent of
//! the number of workers and of scheduling.
//!
//! - [`watermark`]: per-(source, tenant) watermarks, lateness and idleness.
//! - [`window`]: per-key window state for single-event, sliding, tumbling, hopping and session
//!   rules.
//! - [`sequence`]: per-key state of sequence rules (ordered steps, `until`, absence).
//! - [`state`]: what a rule computes per key, and the state it keeps: one of the two above.
//! - [`keyed_windows`]: the operator that applies hits to key state in event-time order, and
//!   fires the deadlines of absent steps as watermarks pass them.
//! - [`lateness`]: the operator that classifies every event as on time or late.
//! - [`snapshot`]: operator state at checkpoint barriers, and its restore.

pub mod compact;
pub mod event_id;
pub mod keyed_windows;
pub mod lateness;
pub mod records;
pub mod sequence;
pub mod snapshot;
pub mod state;
pub mod tenants;
pub mod watermark;
pub mod window;

/// A small deterministic generator for the tests, so that randomized comparisons need no
/// dependency.
#[cfg(test)]
pub(crate) struct Lcg(pub(crate) u64);

#[cfg(test)]
impl Lcg {
    /// The next number below `n`.
    pub(crate) fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

pub use compact::{Group, GroupBuilder, GroupIter, SmallStr};
pub use event_id::EventId;
pub use keyed_windows::{HitVecs, KeyCaps, KeyedWindows, WindowsConfig};
pub use lateness::Lateness;
pub use records::{EpochSummary, Firing, Health, Hit, Measure};
pub use sequence::{SequenceSpec, SequenceState};
pub use snapshot::WindowsSnapshot;
pub use state::{KeyState, Outcome, RuleSpec};
pub use tenants::TenantIndex;
pub use watermark::WatermarkTracker;
pub use window::{WindowSpec, WindowState};
