//! Per-(source, tenant) event-time watermarks with bounded out-of-orderness and idleness.
//!
//! The watermark of a (source, tenant) is the largest event time seen for that pair minus the
//! source's allowed lateness. A tenant's watermark is the minimum over the sources it has been
//! seen on. An event is *late* when its time is below the watermark of its (source, tenant) as
//! it stood just before the event, counting every earlier line of the input: the chunk
//! summaries give the maxima of earlier chunks, and [`crate::Hit::prior_max`] the maximum of
//! earlier lines in the same chunk. That makes lateness exactly what a single sequential reader
//! would decide, whatever the number of workers.
//!
//! Idleness (live sources only): when a (source, tenant) has been silent for longer than its
//! lateness, its watermark advances with the wall clock carried by later chunks of that source,
//! so that a burst followed by silence still fires. This is the one documented source of
//! nondeterminism.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::records::EpochSummary;

#[derive(Clone, Debug, Serialize, Deserialize)]
struct SourceClock {
    source: u16,
    /// Largest event time seen.
    max: i64,
    /// Idleness advance: `max + silence` once the silence exceeds the lateness.
    idle_max: i64,
    /// Wall-clock time of the last chunk that carried this tenant, for live sources.
    last_wall: Option<i64>,
}

impl SourceClock {
    fn effective_max(&self) -> i64 {
        self.max.max(self.idle_max)
    }
}

/// The lateness bound of one (source, tenant) as of the epochs applied so far.
#[derive(Clone, Copy, Debug)]
pub struct LateCheck {
    seen: i64,
    lateness: i64,
}

impl LateCheck {
    /// Whether an event at `ts` is late, given the largest event time of its (source, tenant)
    /// earlier in its own chunk (`i64::MIN` if none).
    pub fn is_late(self, ts: i64, prior_max: i64) -> bool {
        let m = self.seen.max(prior_max);
        m != i64::MIN && ts < m.saturating_sub(self.lateness)
    }
}

/// Tracks watermarks for every (source, tenant) from the epoch summaries, applied in epoch order.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WatermarkTracker {
    lateness: Vec<i64>,
    default_lateness: i64,
    clocks: HashMap<String, Vec<SourceClock>>,
    finished: bool,
}

impl WatermarkTracker {
    /// A tracker where source `i` allows `lateness_ms[i]` of out-of-orderness and any other
    /// source `default_ms`.
    pub fn new(default_ms: u64, lateness_ms: Vec<u64>) -> Self {
        let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        WatermarkTracker {
            lateness: lateness_ms.into_iter().map(clamp).collect(),
            default_lateness: clamp(default_ms),
            clocks: HashMap::new(),
            finished: false,
        }
    }

    fn lateness(&self, source: u16) -> i64 {
        self.lateness
            .get(usize::from(source))
            .copied()
            .unwrap_or(self.default_lateness)
    }

    fn clock(&self, source: u16, tenant: &str) -> Option<&SourceClock> {
        self.clocks
            .get(tenant)
            .and_then(|cs| cs.iter().find(|c| c.source == source))
    }

    /// Whether an event at `ts` is late, given the largest event time of its (source, tenant)
    /// earlier in its own chunk (`i64::MIN` if none). Call before applying the event's chunk.
    pub fn is_late(&self, source: u16, tenant: &str, ts: i64, prior_max: i64) -> bool {
        self.late_check(source, tenant).is_late(ts, prior_max)
    }

    /// What [`is_late`](Self::is_late) decides by for (source, tenant), until the next
    /// [`apply`](Self::apply): for the hits of one epoch, one lookup per (source, tenant).
    pub fn late_check(&self, source: u16, tenant: &str) -> LateCheck {
        LateCheck {
            seen: self
                .clock(source, tenant)
                .map_or(i64::MIN, SourceClock::effective_max),
            lateness: self.lateness(source),
        }
    }

    /// Applies one epoch's summary. Summaries must be applied in epoch order.
    pub fn apply(&mut self, s: &EpochSummary) {
        for (tenant, max) in &s.tenants {
            let clocks = match self.clocks.get_mut(tenant.as_str()) {
                Some(c) => c,
                None => self.clocks.entry(tenant.clone()).or_default(),
            };
            match clocks.iter_mut().find(|c| c.source == s.source) {
                Some(c) => {
                    c.max = c.max.max(*max);
                    c.last_wall = s.wall_ms;
                }
                None => clocks.push(SourceClock {
                    source: s.source,
                    max: *max,
                    idle_max: i64::MIN,
                    last_wall: s.wall_ms,
                }),
            }
        }
        if let Some(wall) = s.wall_ms {
            let lateness = self.lateness(s.source);
            for c in self.clocks.values_mut().flatten() {
                if c.source != s.source {
                    continue;
                }
                match c.last_wall {
                    Some(last) => {
                        let silence = wall.saturating_sub(last);
                        if silence > lateness {
                            c.idle_max = c.idle_max.max(c.max.saturating_add(silence));
                        }
                    }
                    // Last seen in replayed input (a backlog, or before a restore): the
                    // silence starts now that the source is live.
                    None => c.last_wall = Some(wall),
                }
            }
        }
    }

    /// Takes the clocks of a restored tracker (this tracker keeps its own lateness settings,
    /// which come from the current configuration). Wall-clock times are dropped: the time the
    /// engine was down is not silence of the sources, whose events were waiting in the stream.
    pub fn restore(&mut self, from: WatermarkTracker) {
        self.clocks = from.clocks;
        for c in self.clocks.values_mut().flatten() {
            c.last_wall = None;
        }
    }

    /// Marks the end of all input: every watermark becomes +∞.
    pub fn finish(&mut self) {
        self.finished = true;
    }

    /// The tenant's watermark: events strictly below it are final. `i64::MIN` for a tenant
    /// never seen, `i64::MAX` after [`finish`](Self::finish).
    pub fn watermark(&self, tenant: &str) -> i64 {
        if self.finished {
            return i64::MAX;
        }
        self.clocks.get(tenant).map_or(i64::MIN, |cs| {
            cs.iter()
                .map(|c| c.effective_max().saturating_sub(self.lateness(c.source)))
                .min()
                .unwrap_or(i64::MIN)
        })
    }

    /// Every tenant seen so far.
    pub fn tenants(&self) -> impl Iterator<Item = &str> {
        self.clocks.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(epoch: u64, tenants: &[(&str, i64)], wall: Option<i64>) -> EpochSummary {
        EpochSummary {
            epoch,
            source: 0,
            tenants: tenants.iter().map(|(t, m)| (t.to_string(), *m)).collect(),
            wall_ms: wall,
            checkpoint: false,
        }
    }

    #[test]
    fn lateness_is_relative_to_the_largest_earlier_time() {
        let mut w = WatermarkTracker::new(10_000, vec![]);
        assert!(!w.is_late(0, "acme", 0, i64::MIN));
        w.apply(&summary(0, &[("acme", 100_000)], None));
        assert!(
            !w.is_late(0, "acme", 90_000, i64::MIN),
            "exactly at the bound is on time"
        );
        assert!(w.is_late(0, "acme", 89_999, i64::MIN));
        // Within a chunk, the prior max of the same chunk counts too.
        assert!(w.is_late(0, "acme", 100_000, 200_000));
        assert_eq!(w.watermark("acme"), 90_000);
        assert_eq!(w.watermark("nobody"), i64::MIN);
        w.finish();
        assert_eq!(w.watermark("acme"), i64::MAX);
    }

    #[test]
    fn tenants_do_not_share_clocks() {
        let mut w = WatermarkTracker::new(10_000, vec![]);
        w.apply(&summary(0, &[("fast", 10_000_000), ("slow", 1_000)], None));
        assert!(!w.is_late(0, "slow", 0, i64::MIN));
        assert!(w.is_late(0, "fast", 0, i64::MIN));
        assert_eq!(w.watermark("slow"), -9_000);
    }

    #[test]
    fn per_source_lateness_and_minimum_over_sources() {
        let mut w = WatermarkTracker::new(10_000, vec![10_000, 600_000]);
        w.apply(&summary(0, &[("acme", 1_000_000)], None));
        w.apply(&EpochSummary {
            epoch: 1,
            source: 1,
            tenants: vec![("acme".into(), 1_000_000)],
            wall_ms: None,
            checkpoint: false,
        });
        assert_eq!(w.watermark("acme"), 400_000);
        assert!(!w.is_late(1, "acme", 500_000, i64::MIN));
        assert!(w.is_late(0, "acme", 500_000, i64::MIN));
    }

    #[test]
    fn idle_live_source_advances_with_wall_clock() {
        let mut w = WatermarkTracker::new(10_000, vec![]);
        w.apply(&summary(0, &[("acme", 50_000)], Some(1_000)));
        assert_eq!(w.watermark("acme"), 40_000);
        // Silent for less than the lateness: nothing moves.
        w.apply(&summary(1, &[], Some(11_000)));
        assert_eq!(w.watermark("acme"), 40_000);
        // Silent for longer: the watermark passes the last event.
        w.apply(&summary(2, &[], Some(11_001)));
        assert_eq!(w.watermark("acme"), 50_001);
        w.apply(&summary(3, &[], Some(21_000)));
        assert_eq!(w.watermark("acme"), 60_000);
        // Replayed input (no wall clock) never idles.
        let mut r = WatermarkTracker::new(10_000, vec![]);
        r.apply(&summary(0, &[("acme", 50_000)], None));
        r.apply(&summary(1, &[], None));
        assert_eq!(r.watermark("acme"), 40_000);
    }

    #[test]
    fn silence_counts_from_going_live_and_not_across_a_restore() {
        let mut w = WatermarkTracker::new(10_000, vec![]);
        // A backlog replayed without wall clock, then live ticks.
        w.apply(&summary(0, &[("acme", 50_000)], None));
        w.apply(&summary(1, &[], Some(1_000_000)));
        assert_eq!(
            w.watermark("acme"),
            40_000,
            "the first live tick starts the silence"
        );
        w.apply(&summary(2, &[], Some(1_010_001)));
        assert_eq!(w.watermark("acme"), 50_001);
        // Restored after an outage of an hour: the outage is not silence, so the backlog that
        // waited in the stream meanwhile is on time.
        let mut r = WatermarkTracker::new(10_000, vec![]);
        r.restore(w.clone());
        r.apply(&summary(0, &[], Some(4_600_000)));
        assert_eq!(r.watermark("acme"), 50_001);
        assert!(!r.is_late(0, "acme", 50_001, i64::MIN));
        assert!(r.is_late(0, "acme", 50_000, i64::MIN));
    }
}
