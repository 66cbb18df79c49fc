//! Per-key window state: exact sliding windows and epoch-aligned tumbling windows over counts
//! and distinct counts, with suppression after firing. Pure logic, no timely.
//!
//! Events must be added in event-time order per key (ties broken by `event.id`); the
//! [`crate::keyed_windows`] operator guarantees that by buffering until the watermark passes.
//!
//! Semantics (`SEMANTICS.md`, "Windows and firing"):
//! - sliding: at event time `t` the window holds the key's events in `(t − W, t]`; the rule fires
//!   when the aggregate meets the threshold;
//! - tumbling: windows are `[kW, (k+1)W)` since the Unix epoch; fires as soon as the threshold is
//!   met within the current window, at most once per window;
//! - after firing at `t` the key is suppressed for events before `t + suppression`; then it
//!   re-arms and fires as soon as the condition holds again over the normal window;
//! - `value` is the aggregate at the moment of firing, `start` the earliest event in the window,
//!   `end` the triggering event's time.

use std::collections::{HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::event_id::EventId;

/// How a rule aggregates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowKind {
    /// Every event fires; no state.
    Single,
    /// Exact sliding window.
    Sliding,
    /// Tumbling window aligned to the epoch.
    Tumbling,
}

/// The window parameters of one rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowSpec {
    /// Window kind.
    pub kind: WindowKind,
    /// Distinct count (of [`crate::Hit::distinct`]) instead of count.
    pub distinct: bool,
    /// Window length, ms.
    pub window_ms: i64,
    /// Fires when the aggregate is at least this.
    pub min: u64,
    /// Quiet period after firing, ms.
    pub suppress_ms: i64,
    /// Most contributing event ids an alert lists.
    pub max_refs: usize,
}

/// What a window reports when it fires.
#[derive(Clone, Debug, PartialEq)]
pub struct Fired {
    /// The aggregate.
    pub value: u64,
    /// Earliest event time in the window.
    pub start: i64,
    /// Contributing event ids, oldest first.
    pub events: Vec<String>,
    /// Events in the window.
    pub event_count: u64,
}

/// State of one (tenant, rule, group) key, laid out so that a quiet key (a few events in its
/// window, the common case) costs one small allocation.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WindowState {
    /// The most recent events in the window (at most `max_refs`), oldest first, with their ids
    /// for the alert's references.
    recent: VecDeque<(i64, EventId)>,
    /// Everything a busy or distinct-count key needs beyond `recent`.
    extra: Option<Box<Extra>>,
    /// Start of the current tumbling window; unused for sliding windows.
    tumble_start: i64,
    /// Events before this time cannot fire.
    suppressed_until: i64,
    /// Fired in the current tumbling window.
    fired_in_tumble: bool,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Extra {
    /// Events in the window older than `recent`, run-length encoded by timestamp.
    older: VecDeque<(i64, u32)>,
    /// Number of events in `older`.
    older_count: u64,
    /// Distinct values (128-bit hashes) in the window with their latest time.
    distinct: HashMap<u128, i64>,
    /// Arrival order of distinct values, to evict them.
    distinct_order: VecDeque<(i64, u128)>,
}

impl Default for WindowState {
    fn default() -> Self {
        WindowState {
            recent: VecDeque::new(),
            extra: None,
            tumble_start: i64::MIN,
            suppressed_until: i64::MIN,
            fired_in_tumble: false,
        }
    }
}

impl WindowState {
    /// Adds an event at `ts` (with its id and, for distinct counts, the value's hash) and
    /// reports a firing if the rule fires on it.
    pub fn add(
        &mut self,
        spec: &WindowSpec,
        ts: i64,
        id: EventId,
        distinct: Option<u128>,
    ) -> Option<Fired> {
        match spec.kind {
            WindowKind::Single => {
                return Some(Fired {
                    value: 1,
                    start: ts,
                    events: vec![id.to_string()],
                    event_count: 1,
                });
            }
            WindowKind::Sliding => self.evict_before(ts.saturating_sub(spec.window_ms)),
            WindowKind::Tumbling => {
                let start = ts - ts.rem_euclid(spec.window_ms.max(1));
                if start != self.tumble_start {
                    self.recent.clear();
                    self.extra = None;
                    self.tumble_start = start;
                    self.fired_in_tumble = false;
                }
            }
        }
        if self.recent.len() == self.recent.capacity() && self.recent.len() < spec.max_refs {
            // Grow one slot at a time: most keys hold one or two events, and the default
            // growth to four slots would double a quiet key's state.
            self.recent.reserve_exact(1);
        }
        self.recent.push_back((ts, id));
        if self.recent.len() > spec.max_refs.max(1)
            && let Some((old_ts, _)) = self.recent.pop_front()
        {
            let x = self.extra.get_or_insert_with(Box::default);
            match x.older.back_mut() {
                Some((t, n)) if *t == old_ts && *n < u32::MAX => *n += 1,
                _ => x.older.push_back((old_ts, 1)),
            }
            x.older_count += 1;
        }
        if spec.distinct
            && let Some(h) = distinct
        {
            let x = self.extra.get_or_insert_with(Box::default);
            x.distinct.insert(h, ts);
            x.distinct_order.push_back((ts, h));
        }
        let value = if spec.distinct {
            self.extra.as_ref().map_or(0, |x| x.distinct.len() as u64)
        } else {
            self.event_count()
        };
        let armed = ts >= self.suppressed_until && !self.fired_in_tumble;
        if !armed || value < spec.min {
            return None;
        }
        self.suppressed_until = ts.saturating_add(spec.suppress_ms);
        self.fired_in_tumble = spec.kind == WindowKind::Tumbling;
        let start = self
            .extra
            .as_ref()
            .and_then(|x| x.older.front().map(|o| o.0))
            .or_else(|| self.recent.front().map(|r| r.0))
            .unwrap_or(ts);
        Some(Fired {
            value,
            start,
            events: self.recent.iter().map(|(_, id)| id.to_string()).collect(),
            event_count: self.event_count(),
        })
    }

    fn event_count(&self) -> u64 {
        self.extra.as_ref().map_or(0, |x| x.older_count) + self.recent.len() as u64
    }

    /// Drops events at or before `bound` (they left the window `(t − W, t]`).
    fn evict_before(&mut self, bound: i64) {
        if let Some(x) = self.extra.as_deref_mut() {
            while let Some(&(t, n)) = x.older.front() {
                if t > bound {
                    break;
                }
                x.older.pop_front();
                x.older_count -= u64::from(n);
            }
            while let Some(&(t, h)) = x.distinct_order.front() {
                if t > bound {
                    break;
                }
                x.distinct_order.pop_front();
                if x.distinct.get(&h) == Some(&t) {
                    x.distinct.remove(&h);
                }
            }
        }
        while self.recent.front().is_some_and(|r| r.0 <= bound) {
            self.recent.pop_front();
        }
    }

    /// Whether the state can be dropped at watermark `wm` without changing any future result:
    /// every event it holds is out of the window of any event at or after `wm`, and it is not
    /// suppressed beyond `wm`.
    pub fn expired(&self, spec: &WindowSpec, wm: i64) -> bool {
        if self.suppressed_until > wm {
            return false;
        }
        match spec.kind {
            WindowKind::Single => true,
            WindowKind::Sliding => self
                .recent
                .back()
                .is_none_or(|&(t, _)| t <= wm.saturating_sub(spec.window_ms)),
            WindowKind::Tumbling => self.tumble_start.saturating_add(spec.window_ms) <= wm,
        }
    }

    /// Bytes of heap memory the state holds (capacities, not lengths).
    pub fn heap_bytes(&self) -> usize {
        let recent = self.recent.capacity() * size_of::<(i64, EventId)>()
            + self
                .recent
                .iter()
                .map(|(_, id)| id.heap_bytes())
                .sum::<usize>();
        let extra = self.extra.as_ref().map_or(0, |x| {
            size_of::<Extra>()
                + x.older.capacity() * size_of::<(i64, u32)>()
                + x.distinct.capacity() * (size_of::<(u128, i64)>() + 1)
                + x.distinct_order.capacity() * size_of::<(i64, u128)>()
        });
        recent + extra
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    fn spec(kind: WindowKind, min: u64, window_ms: i64) -> WindowSpec {
        WindowSpec {
            kind,
            distinct: false,
            window_ms,
            min,
            suppress_ms: window_ms,
            max_refs: 10,
        }
    }

    fn run(spec: &WindowSpec, times: &[i64]) -> Vec<(i64, Fired)> {
        let mut s = WindowState::default();
        times
            .iter()
            .enumerate()
            .filter_map(|(i, &t)| {
                s.add(spec, t, EventId::new(&format!("e{i:03}")), None)
                    .map(|f| (t, f))
            })
            .collect()
    }

    #[test]
    fn sliding_exactly_n_fires_and_n_minus_one_does_not() {
        let s = spec(WindowKind::Sliding, 10, 5 * MIN);
        let ten: Vec<i64> = (0..10).map(|i| i * 1_000).collect();
        let fired = run(&s, &ten);
        assert_eq!(fired.len(), 1);
        let (t, f) = &fired[0];
        assert_eq!((*t, f.value, f.start, f.event_count), (9_000, 10, 0, 10));
        assert_eq!(f.events.len(), 10);
        assert_eq!(f.events[0], "e000");
        assert!(run(&s, &ten[..9]).is_empty());
    }

    #[test]
    fn sliding_window_is_half_open() {
        let s = spec(WindowKind::Sliding, 10, 5 * MIN);
        // Ten events spanning exactly W: the first is out of (t − W, t].
        let mut times: Vec<i64> = (0..9).map(|i| i * 1_000).collect();
        times.push(5 * MIN);
        assert!(run(&s, &times).is_empty());
        // Just under W: fires.
        *times.last_mut().unwrap() = 5 * MIN - 1;
        assert_eq!(run(&s, &times).len(), 1);
        // Just over W: does not.
        *times.last_mut().unwrap() = 5 * MIN + 1;
        assert!(run(&s, &times).is_empty());
    }

    #[test]
    fn sliding_catches_a_burst_across_a_tumbling_boundary() {
        // Five events before and five after the 5-minute boundary, all within 10 s.
        let times: Vec<i64> = (0..10).map(|i| 5 * MIN - 5_000 + i * 1_000).collect();
        assert_eq!(
            run(&spec(WindowKind::Sliding, 10, 5 * MIN), &times).len(),
            1
        );
        assert!(run(&spec(WindowKind::Tumbling, 10, 5 * MIN), &times).is_empty());
    }

    #[test]
    fn tumbling_fires_once_per_window() {
        let s = WindowSpec {
            suppress_ms: 0,
            ..spec(WindowKind::Tumbling, 3, 5 * MIN)
        };
        let times = [0, 1, 2, 3, 4, 5 * MIN, 5 * MIN + 1, 5 * MIN + 2];
        let fired = run(&s, &times);
        assert_eq!(
            fired.iter().map(|f| f.0).collect::<Vec<_>>(),
            [2, 5 * MIN + 2]
        );
        assert_eq!(fired[1].1.start, 5 * MIN);
    }

    #[test]
    fn sustained_attack_fires_once_per_suppression_period() {
        let s = spec(WindowKind::Sliding, 10, 5 * MIN);
        // One failure per second for 20 minutes.
        let times: Vec<i64> = (0..1_200).map(|i| i * 1_000).collect();
        let fired = run(&s, &times);
        assert_eq!(
            fired.iter().map(|f| f.0).collect::<Vec<_>>(),
            [9_000, 309_000, 609_000, 909_000]
        );
        // After re-arming, the value is the full window: (t − 5m, t] holds 300 events.
        assert_eq!(fired[1].1.value, 300);
        assert_eq!(fired[1].1.start, 10_000);
        assert_eq!(fired[1].1.events.len(), 10);
    }

    #[test]
    fn distinct_counts_values_in_window() {
        let s = WindowSpec {
            distinct: true,
            ..spec(WindowKind::Sliding, 3, 10 * MIN)
        };
        let mut st = WindowState::default();
        assert!(st.add(&s, 0, EventId::new("a"), Some(1)).is_none());
        assert!(st.add(&s, 1, EventId::new("b"), Some(1)).is_none());
        assert!(st.add(&s, 2, EventId::new("c"), Some(2)).is_none());
        let f = st.add(&s, 3, EventId::new("d"), Some(3)).unwrap();
        assert_eq!((f.value, f.event_count, f.start), (3, 4, 0));
        // Value 1 was last seen at 1: at 10m + 1 it has left the window; 2 and 3 remain.
        let mut st2 = WindowState::default();
        for (t, v) in [(0, 1), (1, 1), (2, 2), (3, 3)] {
            st2.add(&WindowSpec { min: 99, ..s }, t, EventId::new("x"), Some(v));
        }
        assert!(
            st2.add(
                &WindowSpec { min: 4, ..s },
                10 * MIN + 1,
                EventId::new("y"),
                Some(4)
            )
            .is_none()
        );
        // The same moment again: 2, 3 and 4 are in the window.
        assert!(
            st2.add(
                &WindowSpec { min: 3, ..s },
                10 * MIN + 1,
                EventId::new("z"),
                Some(4)
            )
            .is_some()
        );
    }

    #[test]
    fn expiry_is_invisible() {
        let s = spec(WindowKind::Sliding, 2, 5 * MIN);
        let mut st = WindowState::default();
        assert!(st.add(&s, 0, EventId::new("a"), None).is_none());
        assert!(!st.expired(&s, 5 * MIN - 1));
        assert!(st.expired(&s, 5 * MIN));
        let f = st.add(&s, 1, EventId::new("b"), None);
        assert!(f.is_some());
        // Suppressed until 5m + 1: not expired before that.
        assert!(!st.expired(&s, 5 * MIN));
        assert!(st.expired(&s, 5 * MIN + 1));
    }

    #[test]
    fn state_for_a_quiet_key_is_small() {
        let s = spec(WindowKind::Sliding, 10, 5 * MIN);
        let mut st = WindowState::default();
        st.add(
            &s,
            0,
            EventId::new("0190f6b2-7c1e-7a3b-9f00-0123456789ab"),
            None,
        );
        assert_eq!(st.heap_bytes(), 32);
        assert!(
            size_of::<WindowState>() <= 64,
            "{}",
            size_of::<WindowState>()
        );
    }
}
