//! Per-key window state: exact sliding windows, epoch-aligned tumbling and hopping windows, and
//! session windows, over counts, distinct counts, sums, minima, maxima and averages, with
//! suppression after firing. Pure logic, no timely.
//!
//! Events must be added in event-time order per key (ties broken by `event.id`); the
//! [`crate::keyed_windows`] operator guarantees that by buffering until the watermark passes.
//!
//! Semantics (`SEMANTICS.md`, "Windows and firing"; `docs/rules.md`, "Windows"):
//! - sliding: at event time `t` the window holds the key's events in `(t − W, t]`; the rule fires
//!   when the aggregate meets the threshold — exact for every aggregate (sums are kept in fixed
//!   point, thousandths, so adding and removing a value never drifts; minima and maxima with a
//!   monotonic queue);
//! - tumbling: windows are `[kW, (k+1)W)` since the Unix epoch; fires as soon as the threshold is
//!   met within the current window, at most once per window;
//! - hopping (size W, slide S, W a multiple of S): windows `[kS, kS + W)` for every `k`, so each
//!   event lies in `W / S` of them; each fires at most once, as soon as its threshold is met. An
//!   event that completes several windows at once raises one firing, for the earliest of them;
//!   all of them count as fired;
//! - session (gap G, longest span M): an event joins the key's current session when it is less
//!   than G after the session's previous event and less than M after its first; otherwise it
//!   starts a new one. Fires as soon as the threshold is met within the session, at most once
//!   per session;
//! - first seen (TTL T): fires on the key's first event and on every event at least T after the
//!   key's previous one; the state is the previous event alone;
//! - after firing at `t` the key is suppressed for events before `t + suppression`; then it
//!   re-arms and fires as soon as the condition holds again over the normal window;
//! - `value` is the aggregate at the moment of firing, `start` the earliest event in the window,
//!   `end` the triggering event's time.

use std::collections::{HashMap, VecDeque};

use serde::{Deserialize, Serialize};
use vigil_model::Threshold;

use crate::event_id::EventId;
use crate::keyed_windows::HashedKeys;
use crate::state::Outcome;

/// How a rule windows its events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowKind {
    /// Every event fires; no state.
    Single,
    /// Exact sliding window of [`WindowSpec::window_ms`].
    Sliding,
    /// Tumbling window of [`WindowSpec::window_ms`], aligned to the epoch.
    Tumbling,
    /// Hopping windows of [`WindowSpec::window_ms`] starting every `slide_ms`, aligned to the
    /// epoch; `window_ms` is a multiple of `slide_ms`, at most [`MAX_HOPS`] times it.
    Hopping {
        /// Distance between window starts, ms.
        slide_ms: i64,
    },
    /// Sessions that close after a gap of [`WindowSpec::window_ms`] or a span of `max_ms`.
    Session {
        /// Longest session, ms.
        max_ms: i64,
    },
    /// Fires on a key's first event and on its first after a gap of at least
    /// [`WindowSpec::window_ms`] (the TTL); keeps only the latest event.
    FirstSeen,
}

/// Most hopping windows one event may lie in (window size over slide).
pub const MAX_HOPS: i64 = 100;

/// What a window aggregates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AggFn {
    /// Number of events.
    Count,
    /// Number of distinct values (of the hit's distinct value).
    Distinct,
    /// Sum of the hit's number.
    Sum,
    /// Least number.
    Min,
    /// Greatest number.
    Max,
    /// Mean of the numbers.
    Avg,
}

/// The window parameters of one rule.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WindowSpec {
    /// Window kind.
    pub kind: WindowKind,
    /// The aggregate.
    pub agg: AggFn,
    /// Window length (the gap, for sessions), ms.
    pub window_ms: i64,
    /// Fires when the aggregate is within this.
    pub threshold: Threshold,
    /// Quiet period after firing, ms.
    pub suppress_ms: i64,
    /// Most contributing event ids an alert lists.
    pub max_refs: usize,
}

/// What a window reports when it fires.
#[derive(Clone, Debug, PartialEq)]
pub struct Fired {
    /// The aggregate.
    pub value: f64,
    /// Earliest event time in the window.
    pub start: i64,
    /// Contributing event ids, oldest first.
    pub events: Vec<String>,
    /// Events in the window.
    pub event_count: u64,
}

/// Sums are kept in thousandths so that adding and later removing a value is exact.
fn fixed(v: f64) -> i128 {
    (v * 1000.0).round() as i128
}

fn unfixed(s: i128) -> f64 {
    s as f64 / 1000.0
}

/// State of one (tenant, rule, group) key, laid out so that a quiet key (a few events in its
/// window, the common case) costs one small allocation.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WindowState {
    /// The most recent events in the window (at most `max_refs`), oldest first, with their ids
    /// for the alert's references.
    recent: VecDeque<(i64, EventId)>,
    /// Everything a busy, distinct, numeric or hopping key needs beyond `recent`.
    extra: Option<Box<Extra>>,
    /// Start of the current tumbling window or session; unused otherwise.
    bucket_start: i64,
    /// Events before this time cannot fire.
    suppressed_until: i64,
    /// Fired in the current tumbling window or session.
    fired_in_bucket: bool,
    /// A firing of the current tumbling window or session was suppressed (counted once).
    held_in_bucket: bool,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Extra {
    /// Events in the window older than `recent`, run-length encoded by timestamp (a tumbling
    /// window or session, which evicts nothing, folds them into one entry: the earliest time
    /// and the count).
    older: VecDeque<(i64, u32)>,
    /// Number of events in `older`.
    older_count: u64,
    /// Distinct values (128-bit hashes) in the window with their latest time.
    distinct: HashMap<u128, i64, HashedKeys>,
    /// Arrival order of distinct values, to evict them (sliding windows only).
    distinct_order: VecDeque<(i64, u128)>,
    /// Sums, minima, maxima and averages.
    numeric: Option<Box<Numeric>>,
    /// Hopping windows.
    hops: Option<Box<Hops>>,
}

/// The numbers of a sliding, tumbling or session window.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Numeric {
    /// Sliding sum and average: every value in the window, oldest first.
    values: VecDeque<(i64, f64)>,
    /// Sum of the window's values, in thousandths.
    sum: i128,
    /// Minimum or maximum: the front is the current extreme. Sliding windows keep every value
    /// that may become the extreme once older ones leave (a monotonic queue); tumbling windows
    /// and sessions keep one.
    extremes: VecDeque<(i64, f64)>,
}

/// Hopping windows as panes of one slide each: a window is the run of panes from its start.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Hops {
    /// Panes holding events, oldest first, none older than the oldest window still open.
    panes: VecDeque<Pane>,
    /// For distinct counts: the pane of each value's latest occurrence.
    latest: HashMap<u128, i64, HashedKeys>,
    /// (pane, value) in arrival order, to evict `latest`.
    order: VecDeque<(i64, u128)>,
    /// Bit `i` set: the window starting at pane `base − i` has fired.
    fired: u128,
    /// Bit `i` set: a firing of the window starting at pane `base − i` was suppressed (it is
    /// counted once; the window may still fire once the suppression ends).
    held: u128,
    /// The newest pane index.
    base: i64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Pane {
    idx: i64,
    first_ts: i64,
    count: u64,
    sum: i128,
    min: f64,
    max: f64,
    /// Distinct values whose latest occurrence is in this pane.
    distinct: u64,
}

/// A running aggregate over panes.
struct Acc {
    count: u64,
    sum: i128,
    min: f64,
    max: f64,
    distinct: u64,
}

impl Acc {
    fn new() -> Self {
        Acc {
            count: 0,
            sum: 0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            distinct: 0,
        }
    }

    fn merge(&mut self, p: &Pane) {
        self.count += p.count;
        self.sum += p.sum;
        self.min = self.min.min(p.min);
        self.max = self.max.max(p.max);
        self.distinct += p.distinct;
    }

    fn value(&self, agg: AggFn) -> f64 {
        match agg {
            AggFn::Count => self.count as f64,
            AggFn::Distinct => self.distinct as f64,
            AggFn::Sum => unfixed(self.sum),
            AggFn::Avg => unfixed(self.sum) / self.count as f64,
            AggFn::Min => self.min,
            AggFn::Max => self.max,
        }
    }
}

impl Hops {
    /// Moves to pane `p`: shifts the fired bits and drops panes before `oldest`.
    fn advance(&mut self, p: i64, oldest: i64) {
        if self.panes.is_empty() {
            self.fired = 0;
            self.held = 0;
        } else if p > self.base {
            let d = p - self.base;
            self.fired = if d >= 128 { 0 } else { self.fired << d };
            self.held = if d >= 128 { 0 } else { self.held << d };
        }
        self.base = p;
        while self.panes.front().is_some_and(|q| q.idx < oldest) {
            self.panes.pop_front();
        }
        while let Some(&(q, h)) = self.order.front() {
            if q >= oldest {
                break;
            }
            self.order.pop_front();
            if self.latest.get(&h) == Some(&q) {
                self.latest.remove(&h);
            }
        }
    }

    fn add(&mut self, p: i64, ts: i64, distinct: Option<u128>, number: Option<f64>) {
        if self.panes.back().is_none_or(|q| q.idx != p) {
            self.panes.push_back(Pane {
                idx: p,
                first_ts: ts,
                count: 0,
                sum: 0,
                min: f64::INFINITY,
                max: f64::NEG_INFINITY,
                distinct: 0,
            });
        }
        if let Some(h) = distinct {
            match self.latest.insert(h, p) {
                Some(q) if q == p => {}
                prev => {
                    if let Some(q) = prev
                        && let Some(old) = self.panes.iter_mut().find(|x| x.idx == q)
                    {
                        old.distinct -= 1;
                    }
                    self.order.push_back((p, h));
                    if let Some(pane) = self.panes.back_mut() {
                        pane.distinct += 1;
                    }
                }
            }
        }
        if let Some(pane) = self.panes.back_mut() {
            pane.count += 1;
            if let Some(v) = number {
                pane.sum += fixed(v);
                pane.min = pane.min.min(v);
                pane.max = pane.max.max(v);
            }
        }
    }

    fn heap_bytes(&self) -> usize {
        size_of::<Hops>()
            + self.panes.capacity() * size_of::<Pane>()
            + self.latest.capacity() * (size_of::<(u128, i64)>() + 1)
            + self.order.capacity() * size_of::<(i64, u128)>()
    }
}

impl Default for WindowState {
    fn default() -> Self {
        WindowState {
            recent: VecDeque::new(),
            extra: None,
            bucket_start: i64::MIN,
            suppressed_until: i64::MIN,
            fired_in_bucket: false,
            held_in_bucket: false,
        }
    }
}

impl WindowState {
    /// Adds an event at `ts` (with its id, the hash of its distinct value for distinct counts,
    /// and its number for sums, minima, maxima and averages) and reports whether the rule fires
    /// on it, or would but for its suppression.
    pub fn add(
        &mut self,
        spec: &WindowSpec,
        ts: i64,
        id: EventId,
        distinct: Option<u128>,
        number: Option<f64>,
    ) -> Outcome<Fired> {
        match spec.kind {
            WindowKind::Single => {
                return Outcome::Fired(Fired {
                    value: 1.0,
                    start: ts,
                    events: vec![id.to_string()],
                    event_count: 1,
                });
            }
            WindowKind::Hopping { slide_ms } => {
                return self.add_hopping(spec, slide_ms.max(1), ts, id, distinct, number);
            }
            WindowKind::FirstSeen => return self.add_first_seen(spec, ts, id),
            WindowKind::Sliding => self.evict_before(ts.saturating_sub(spec.window_ms)),
            WindowKind::Tumbling => {
                let start = ts - ts.rem_euclid(spec.window_ms.max(1));
                if start != self.bucket_start {
                    self.reset(start);
                }
            }
            WindowKind::Session { max_ms } => {
                let joins = self.recent.back().is_some_and(|&(last, _)| {
                    ts < last.saturating_add(spec.window_ms)
                        && ts < self.bucket_start.saturating_add(max_ms)
                });
                if !joins {
                    self.reset(ts);
                }
            }
        }
        if self.fired_in_bucket {
            // The tumbling window or session has fired and fires no more (that is the window,
            // not suppression): of its events only a session's latest matters (the next one
            // joins it or starts another, and the key expires after it). The aggregate was
            // dropped when it fired.
            if matches!(spec.kind, WindowKind::Session { .. }) {
                self.push_recent(spec, ts, id, false);
            }
            return Outcome::Quiet;
        }
        self.push_recent(spec, ts, id, true);
        if spec.agg == AggFn::Distinct
            && let Some(h) = distinct
        {
            let x = self.extra.get_or_insert_with(Box::default);
            x.distinct.insert(h, ts);
            // Only a sliding window evicts values one by one, in arrival order; a tumbling
            // window or session drops them all when the next one starts.
            if spec.kind == WindowKind::Sliding {
                x.distinct_order.push_back((ts, h));
            }
        }
        if let Some(v) = number {
            self.add_number(spec, ts, v);
        }
        let value = self.value(spec);
        if !spec.threshold.holds(value) {
            return Outcome::Quiet;
        }
        if ts < self.suppressed_until {
            // A sliding window would fire on every such event; a tumbling window or session
            // once.
            let bucket = matches!(spec.kind, WindowKind::Tumbling | WindowKind::Session { .. });
            if bucket && std::mem::replace(&mut self.held_in_bucket, true) {
                return Outcome::Quiet;
            }
            return Outcome::Suppressed;
        }
        self.suppressed_until = ts.saturating_add(spec.suppress_ms);
        self.fired_in_bucket =
            matches!(spec.kind, WindowKind::Tumbling | WindowKind::Session { .. });
        let start = self
            .extra
            .as_ref()
            .and_then(|x| x.older.front().map(|o| o.0))
            .or_else(|| self.recent.front().map(|r| r.0))
            .unwrap_or(ts);
        let fired = Fired {
            value,
            start,
            events: self.recent.iter().map(|(_, id)| id.to_string()).collect(),
            event_count: self.event_count(),
        };
        if self.fired_in_bucket {
            // Nothing reads the aggregate again before the next window or session resets it.
            self.extra = None;
        }
        Outcome::Fired(fired)
    }

    /// A first-seen key: new when it was never seen or not within the TTL before `ts`.
    fn add_first_seen(&mut self, spec: &WindowSpec, ts: i64, id: EventId) -> Outcome<Fired> {
        let new = self
            .recent
            .back()
            .is_none_or(|&(last, _)| ts >= last.saturating_add(spec.window_ms));
        self.recent.clear();
        self.recent.push_back((ts, id));
        if !new {
            return Outcome::Quiet;
        }
        if ts < self.suppressed_until {
            return Outcome::Suppressed;
        }
        self.suppressed_until = ts.saturating_add(spec.suppress_ms);
        Outcome::Fired(Fired {
            value: 1.0,
            start: ts,
            events: self.recent.iter().map(|(_, id)| id.to_string()).collect(),
            event_count: 1,
        })
    }

    /// Starts a new tumbling window or session at `start`.
    fn reset(&mut self, start: i64) {
        self.recent.clear();
        self.extra = None;
        self.bucket_start = start;
        self.fired_in_bucket = false;
        self.held_in_bucket = false;
    }

    /// Appends an event to `recent`; the oldest beyond `max_refs` moves to `older` when `keep`
    /// (it still counts), or is dropped.
    fn push_recent(&mut self, spec: &WindowSpec, ts: i64, id: EventId, keep: bool) {
        let len = self.recent.len();
        if len == self.recent.capacity() && len < spec.max_refs {
            // Grow from one slot by doubling, up to `max_refs`: most keys hold one or two
            // events, and the default growth to four slots would double a quiet key's state;
            // growing one slot at a time moved a busy key's events on every push.
            self.recent.reserve_exact(len.clamp(1, spec.max_refs - len));
        }
        self.recent.push_back((ts, id));
        if self.recent.len() > spec.max_refs.max(1)
            && let Some((old_ts, _)) = self.recent.pop_front()
            && keep
        {
            let x = self.extra.get_or_insert_with(Box::default);
            // Only a sliding window evicts by time; a tumbling window or session counts its
            // older events in one entry under the earliest time.
            let fold = spec.kind != WindowKind::Sliding;
            match x.older.back_mut() {
                Some((t, n)) if (fold || *t == old_ts) && *n < u32::MAX => *n += 1,
                _ => x.older.push_back((old_ts, 1)),
            }
            x.older_count += 1;
        }
    }

    fn add_number(&mut self, spec: &WindowSpec, ts: i64, v: f64) {
        let x = self.extra.get_or_insert_with(Box::default);
        let n = x.numeric.get_or_insert_with(Box::default);
        let sliding = spec.kind == WindowKind::Sliding;
        match spec.agg {
            AggFn::Sum | AggFn::Avg => {
                n.sum += fixed(v);
                if sliding {
                    n.values.push_back((ts, v));
                }
            }
            AggFn::Min | AggFn::Max => {
                // `v` displaces every kept value it beats (or ties, being newer).
                let beats = |kept: f64| {
                    if spec.agg == AggFn::Min {
                        v <= kept
                    } else {
                        v >= kept
                    }
                };
                if sliding {
                    while n.extremes.back().is_some_and(|&(_, k)| beats(k)) {
                        n.extremes.pop_back();
                    }
                    n.extremes.push_back((ts, v));
                } else if n.extremes.front().is_none_or(|&(_, k)| beats(k)) {
                    n.extremes.clear();
                    n.extremes.push_back((ts, v));
                }
            }
            AggFn::Count | AggFn::Distinct => {}
        }
    }

    /// The aggregate over the current window.
    fn value(&self, spec: &WindowSpec) -> f64 {
        let x = self.extra.as_deref();
        let numeric = x.and_then(|x| x.numeric.as_deref());
        match spec.agg {
            AggFn::Count => self.event_count() as f64,
            AggFn::Distinct => x.map_or(0, |x| x.distinct.len()) as f64,
            AggFn::Sum => numeric.map_or(0.0, |n| unfixed(n.sum)),
            AggFn::Avg => numeric.map_or(f64::NAN, |n| unfixed(n.sum)) / self.event_count() as f64,
            AggFn::Min | AggFn::Max => numeric
                .and_then(|n| n.extremes.front())
                .map_or(f64::NAN, |e| e.1),
        }
    }

    fn add_hopping(
        &mut self,
        spec: &WindowSpec,
        slide: i64,
        ts: i64,
        id: EventId,
        distinct: Option<u128>,
        number: Option<f64>,
    ) -> Outcome<Fired> {
        let hops = (spec.window_ms / slide).clamp(1, MAX_HOPS);
        let p = ts.div_euclid(slide);
        let oldest = p - hops + 1;
        let first_open = oldest.saturating_mul(slide);
        while self.recent.front().is_some_and(|r| r.0 < first_open) {
            self.recent.pop_front();
        }
        self.push_recent(spec, ts, id, false);
        let x = self.extra.get_or_insert_with(Box::default);
        let h = x.hops.get_or_insert_with(Box::default);
        h.advance(p, oldest);
        h.add(p, ts, distinct, number);
        // Suppressed, a window that would fire is marked held, not fired: it may fire once the
        // suppression ends.
        let suppressed = ts < self.suppressed_until;
        let mut held = false;
        // Walk the panes newest first: the windows starting after the next older pane and at
        // or before this one hold exactly the panes from this one on.
        let mut acc = Acc::new();
        let mut best: Option<(f64, i64, u64)> = None;
        for (j, pane) in h.panes.iter().enumerate().rev() {
            acc.merge(pane);
            let value = acc.value(spec.agg);
            if !spec.threshold.holds(value) {
                continue;
            }
            let from = match j {
                0 => oldest,
                _ => h.panes[j - 1].idx + 1,
            }
            .max(oldest);
            for k in from..=pane.idx {
                let bit = 1u128 << (p - k);
                if suppressed {
                    held |= h.fired & bit == 0 && h.held & bit == 0;
                    h.held |= bit;
                } else if h.fired & bit == 0 {
                    h.fired |= bit;
                    best = Some((value, pane.first_ts, acc.count));
                }
            }
        }
        if held {
            return Outcome::Suppressed;
        }
        let Some((value, start, event_count)) = best else {
            return Outcome::Quiet;
        };
        self.suppressed_until = ts.saturating_add(spec.suppress_ms);
        Outcome::Fired(Fired {
            value,
            start,
            events: self
                .recent
                .iter()
                .filter(|(t, _)| *t >= start)
                .map(|(_, id)| id.to_string())
                .collect(),
            event_count,
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
            if let Some(n) = x.numeric.as_deref_mut() {
                while let Some(&(t, v)) = n.values.front() {
                    if t > bound {
                        break;
                    }
                    n.values.pop_front();
                    n.sum -= fixed(v);
                }
                while n.extremes.front().is_some_and(|e| e.0 <= bound) {
                    n.extremes.pop_front();
                }
            }
        }
        while self.recent.front().is_some_and(|r| r.0 <= bound) {
            self.recent.pop_front();
        }
    }

    /// Whether the state can be dropped at watermark `wm` without changing any future result:
    /// no event at or after `wm` can share a window with the events it holds, and it is not
    /// suppressed beyond `wm`.
    pub fn expired(&self, spec: &WindowSpec, wm: i64) -> bool {
        self.expiry(spec) <= wm
    }

    /// The watermark from which the state, if no event arrives, is expired: the end of the
    /// last window its events can share with a later event (a sliding window's last event
    /// plus its width, a tumbling bucket's or hopping pane's end, a session's or first-seen
    /// entry's gap), or the end of its quiet period if that is later. `Keys::sweep` files
    /// keys under it.
    pub fn expiry(&self, spec: &WindowSpec) -> i64 {
        let last = self.recent.back().map_or(i64::MIN, |r| r.0);
        let ends = match spec.kind {
            WindowKind::Single => i64::MIN,
            WindowKind::Tumbling => self.bucket_start.saturating_add(spec.window_ms),
            WindowKind::Sliding | WindowKind::Session { .. } | WindowKind::FirstSeen => {
                last.saturating_add(spec.window_ms)
            }
            WindowKind::Hopping { slide_ms } => self
                .extra
                .as_ref()
                .and_then(|x| x.hops.as_ref())
                .and_then(|h| h.panes.back())
                .map_or(i64::MIN, |p| {
                    p.idx
                        .saturating_mul(slide_ms)
                        .saturating_add(spec.window_ms)
                }),
        };
        ends.max(self.suppressed_until)
    }

    /// Reads the memory the next event will touch ([`KeyState::warm`](crate::KeyState::warm)):
    /// both ends of the recent events and of the older ones, the numbers, the latest pane, and
    /// the slot of the event's distinct value.
    pub fn warm(&self, distinct: Option<u128>) -> i64 {
        let ends = |q: &VecDeque<(i64, EventId)>| {
            q.front().map_or(0, |e| e.0) ^ q.back().map_or(0, |e| e.0)
        };
        let Some(x) = self.extra.as_deref() else {
            return ends(&self.recent);
        };
        let numbers = x.numeric.as_deref().map_or(0, |n| {
            n.values.back().map_or(0, |e| e.0)
                ^ n.extremes.front().map_or(0, |e| e.0)
                ^ n.extremes.back().map_or(0, |e| e.0)
        });
        ends(&self.recent)
            ^ x.older.front().map_or(0, |e| e.0)
            ^ x.distinct_order.back().map_or(0, |e| e.0)
            ^ numbers
            ^ x.hops
                .as_deref()
                .and_then(|h| h.panes.back())
                .map_or(0, |p| p.idx)
            ^ distinct
                .and_then(|d| x.distinct.get(&d).copied())
                .unwrap_or(0)
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
                + x.numeric.as_ref().map_or(0, |n| {
                    size_of::<Numeric>()
                        + (n.values.capacity() + n.extremes.capacity()) * size_of::<(i64, f64)>()
                })
                + x.hops.as_ref().map_or(0, |h| h.heap_bytes())
        });
        recent + extra
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Lcg;

    const MIN: i64 = 60_000;

    fn spec(kind: WindowKind, min: u64, window_ms: i64) -> WindowSpec {
        WindowSpec {
            kind,
            agg: AggFn::Count,
            window_ms,
            threshold: Threshold::at_least(min as f64),
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
                s.add(spec, t, EventId::new(&format!("e{i:03}")), None, None)
                    .fired()
                    .map(|f| (t, f))
            })
            .collect()
    }

    /// Random (time, value, distinct) events in time order, with ties.
    fn events(seed: u64, n: usize) -> Vec<(i64, f64, u128)> {
        let mut r = Lcg(seed);
        let mut t = 0;
        (0..n)
            .map(|_| {
                t += r.next(40_000) as i64 * (r.next(4) as i64).min(1);
                let v = r.next(2_000) as f64 / 8.0 - 50.0;
                (t, v, u128::from(r.next(7) as u8))
            })
            .collect()
    }

    fn aggregate(agg: AggFn, window: &[(i64, f64, u128)]) -> f64 {
        let values = window.iter().map(|e| e.1);
        match agg {
            AggFn::Count => window.len() as f64,
            AggFn::Distinct => {
                let mut d: Vec<u128> = window.iter().map(|e| e.2).collect();
                d.sort_unstable();
                d.dedup();
                d.len() as f64
            }
            AggFn::Sum => window.iter().map(|e| fixed(e.1)).sum::<i128>() as f64 / 1000.0,
            AggFn::Avg => {
                window.iter().map(|e| fixed(e.1)).sum::<i128>() as f64
                    / 1000.0
                    / window.len() as f64
            }
            AggFn::Min => values.fold(f64::INFINITY, f64::min),
            AggFn::Max => values.fold(f64::NEG_INFINITY, f64::max),
        }
    }

    fn outcome(
        s: &mut WindowState,
        spec: &WindowSpec,
        i: usize,
        e: (i64, f64, u128),
    ) -> Outcome<Fired> {
        let distinct = (spec.agg == AggFn::Distinct).then_some(e.2);
        let number =
            matches!(spec.agg, AggFn::Sum | AggFn::Min | AggFn::Max | AggFn::Avg).then_some(e.1);
        s.add(
            spec,
            e.0,
            EventId::new(&format!("e{i:04}")),
            distinct,
            number,
        )
    }

    fn feed(
        s: &mut WindowState,
        spec: &WindowSpec,
        i: usize,
        e: (i64, f64, u128),
    ) -> Option<Fired> {
        outcome(s, spec, i, e).fired()
    }

    const AGGS: [AggFn; 6] = [
        AggFn::Count,
        AggFn::Distinct,
        AggFn::Sum,
        AggFn::Min,
        AggFn::Max,
        AggFn::Avg,
    ];

    #[test]
    fn sliding_aggregates_equal_a_brute_force_recount_after_every_event() {
        for agg in AGGS {
            for seed in 1..=5 {
                let spec = WindowSpec {
                    kind: WindowKind::Sliding,
                    agg,
                    window_ms: 5 * MIN,
                    threshold: Threshold::default(),
                    suppress_ms: 0,
                    max_refs: 3,
                };
                let evs = events(seed, 600);
                let mut s = WindowState::default();
                for (i, &e) in evs.iter().enumerate() {
                    let f = feed(&mut s, &spec, i, e).expect("an open threshold fires on all");
                    let window: Vec<_> = evs[..=i]
                        .iter()
                        .copied()
                        .filter(|x| x.0 > e.0 - 5 * MIN)
                        .collect();
                    let want = aggregate(agg, &window);
                    assert!(
                        (f.value - want).abs() < 1e-9,
                        "{agg:?} seed {seed} event {i}: {} != {want}",
                        f.value
                    );
                    assert_eq!(f.event_count, window.len() as u64);
                    assert_eq!(f.start, window[0].0);
                }
            }
        }
    }

    #[test]
    fn state_restored_from_its_encoding_continues_exactly() {
        // Every window kind and aggregate: encode the state halfway (as a checkpoint does),
        // decode it, and the rest of the stream fires exactly as without the interruption.
        let kinds = [
            WindowKind::Sliding,
            WindowKind::Tumbling,
            WindowKind::Hopping { slide_ms: MIN },
            WindowKind::Session { max_ms: 20 * MIN },
        ];
        for kind in kinds {
            for agg in AGGS {
                let spec = WindowSpec {
                    kind,
                    agg,
                    window_ms: 5 * MIN,
                    threshold: match agg {
                        AggFn::Count | AggFn::Distinct => Threshold::at_least(4.0),
                        AggFn::Sum => Threshold::at_least(300.0),
                        AggFn::Max => Threshold::at_least(150.0),
                        AggFn::Avg => Threshold::at_least(60.0),
                        AggFn::Min => Threshold {
                            lo: None,
                            hi: Some(vigil_model::Bound {
                                value: -40.0,
                                inclusive: true,
                            }),
                        },
                    },
                    suppress_ms: MIN,
                    max_refs: 3,
                };
                let evs = events(7, 400);
                let (mut a, mut b) = (WindowState::default(), WindowState::default());
                let mut fired_after = 0;
                for (i, &e) in evs.iter().enumerate() {
                    if i == 200 {
                        let bytes = postcard::to_allocvec(&b).unwrap();
                        b = postcard::from_bytes(&bytes).unwrap();
                    }
                    let fa = feed(&mut a, &spec, i, e);
                    let fb = feed(&mut b, &spec, i, e);
                    assert_eq!(fa, fb, "{kind:?} {agg:?} event {i}");
                    fired_after += usize::from(fa.is_some() && i >= 200);
                }
                assert!(
                    fired_after > 0,
                    "{kind:?} {agg:?}: nothing fired after the restore"
                );
            }
        }
    }

    #[test]
    fn sliding_sum_does_not_drift() {
        // 0.1 a million times in and out of the window: the sum returns to exactly 0.1 × 10.
        let spec = WindowSpec {
            kind: WindowKind::Sliding,
            agg: AggFn::Sum,
            window_ms: 10,
            threshold: Threshold::default(),
            suppress_ms: 0,
            max_refs: 1,
        };
        let mut s = WindowState::default();
        let mut last = 0.0;
        for t in 0..1_000_000 {
            last = s
                .add(&spec, t, EventId::new("x"), None, Some(0.1))
                .fired()
                .unwrap()
                .value;
        }
        assert_eq!(last, 1.0);
    }

    /// Hopping windows by brute force: at each event, every window containing it is recounted
    /// over the events so far; the earliest newly qualifying window is reported.
    fn hopping_oracle(
        spec: &WindowSpec,
        slide: i64,
        evs: &[(i64, f64, u128)],
    ) -> Vec<(usize, f64, i64)> {
        let hops = spec.window_ms / slide;
        let mut fired: Vec<i64> = Vec::new();
        let mut out = Vec::new();
        for (i, e) in evs.iter().enumerate() {
            let p = e.0.div_euclid(slide);
            let mut best = None;
            for k in (p - hops + 1..=p).rev() {
                let (lo, hi) = (k * slide, k * slide + spec.window_ms);
                let window: Vec<_> = evs[..=i]
                    .iter()
                    .copied()
                    .filter(|x| x.0 >= lo && x.0 < hi)
                    .collect();
                let v = aggregate(spec.agg, &window);
                if spec.threshold.holds(v) && !fired.contains(&k) {
                    fired.push(k);
                    best = Some((i, v, window[0].0));
                }
            }
            out.extend(best);
        }
        out
    }

    #[test]
    fn hopping_windows_equal_a_brute_force_recount() {
        let thresholds = [
            (AggFn::Count, Threshold::at_least(6.0)),
            (AggFn::Distinct, Threshold::at_least(4.0)),
            (AggFn::Sum, Threshold::at_least(400.0)),
            (
                AggFn::Avg,
                Threshold {
                    lo: None,
                    hi: Some(vigil_model::Bound {
                        value: -20.0,
                        inclusive: false,
                    }),
                },
            ),
            (AggFn::Max, Threshold::at_least(195.0)),
            (
                AggFn::Min,
                Threshold {
                    lo: None,
                    hi: Some(vigil_model::Bound {
                        value: -49.0,
                        inclusive: true,
                    }),
                },
            ),
        ];
        for (agg, threshold) in thresholds {
            for seed in 1..=5 {
                let slide = 2 * MIN;
                let spec = WindowSpec {
                    kind: WindowKind::Hopping { slide_ms: slide },
                    agg,
                    window_ms: 10 * MIN,
                    threshold,
                    suppress_ms: 0,
                    max_refs: 10,
                };
                let evs = events(seed, 500);
                let want = hopping_oracle(&spec, slide, &evs);
                assert!(
                    !want.is_empty(),
                    "{agg:?} seed {seed}: the test fires nothing"
                );
                let mut s = WindowState::default();
                let got: Vec<(usize, f64, i64)> = evs
                    .iter()
                    .enumerate()
                    .filter_map(|(i, &e)| feed(&mut s, &spec, i, e).map(|f| (i, f.value, f.start)))
                    .collect();
                assert_eq!(got.len(), want.len(), "{agg:?} seed {seed}");
                for (g, w) in got.iter().zip(&want) {
                    assert!(
                        g.0 == w.0 && (g.1 - w.1).abs() < 1e-9 && g.2 == w.2,
                        "{agg:?} seed {seed}: {g:?} != {w:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn hopping_fires_once_per_window_and_again_in_the_next_hop() {
        // Two events in 10 minutes, windows every 5 minutes: each event lies in two windows.
        let s = WindowSpec {
            suppress_ms: 0,
            ..spec(WindowKind::Hopping { slide_ms: 5 * MIN }, 2, 10 * MIN)
        };
        let fired = run(&s, &[4 * MIN, 6 * MIN, 8 * MIN, 12 * MIN, 16 * MIN]);
        // 6m completes [0, 10m) (4m, 6m); 8m completes [5m, 15m) (6m, 8m); 12m lies in
        // [5m, 15m), already fired, and [10m, 20m), which 16m completes (12m, 16m).
        let at: Vec<(i64, i64, f64)> = fired.iter().map(|(t, f)| (*t, f.start, f.value)).collect();
        assert_eq!(
            at,
            [
                (6 * MIN, 4 * MIN, 2.0),
                (8 * MIN, 6 * MIN, 2.0),
                (16 * MIN, 12 * MIN, 2.0)
            ]
        );
    }

    #[test]
    fn sessions_close_after_the_gap_or_the_longest_span() {
        let s = WindowSpec {
            suppress_ms: 0,
            ..spec(WindowKind::Session { max_ms: 60 * MIN }, 3, 10 * MIN)
        };
        // Three events 9 minutes apart form one session; a gap of exactly 10 minutes opens a
        // new one.
        let fired = run(&s, &[0, 9 * MIN, 18 * MIN, 28 * MIN, 29 * MIN, 30 * MIN]);
        let at: Vec<(i64, i64, u64)> = fired
            .iter()
            .map(|(t, f)| (*t, f.start, f.event_count))
            .collect();
        assert_eq!(at, [(18 * MIN, 0, 3), (30 * MIN, 28 * MIN, 3)]);
        // Once per session, however long it lasts.
        let times: Vec<i64> = (0..50).map(|i| i * MIN).collect();
        assert_eq!(run(&s, &times).len(), 1);
        // The longest span closes a session that never pauses: one every 60 minutes.
        let times: Vec<i64> = (0..150).map(|i| i * MIN).collect();
        let starts: Vec<i64> = run(&s, &times).iter().map(|(_, f)| f.start).collect();
        assert_eq!(starts, [0, 60 * MIN, 120 * MIN]);
    }

    #[test]
    fn a_fired_session_or_tumbling_window_keeps_no_aggregate_until_the_next_one() {
        let session = WindowSpec {
            agg: AggFn::Distinct,
            suppress_ms: 0,
            ..spec(WindowKind::Session { max_ms: 60 * MIN }, 3, 10 * MIN)
        };
        let tumbling = WindowSpec {
            kind: WindowKind::Tumbling,
            window_ms: 60 * MIN,
            ..session
        };
        for s in [session, tumbling] {
            let mut st = WindowState::default();
            let mut fired = Vec::new();
            // Distinct values 0, 1, 2 fire at 2m; 200 more values within the same session
            // (every event joins it) or window (`[0, 60m)`) change nothing and keep nothing.
            // A new session or window (at 71m) counts afresh: 3 distinct values again.
            let mut times: Vec<i64> = (0..203).map(|i| i * MIN / 4).collect();
            times.extend([71 * MIN, 72 * MIN, 73 * MIN]);
            for (i, &t) in times.iter().enumerate() {
                let v = (i % 203) as u128;
                if let Some(f) = st
                    .add(&s, t, EventId::new(&format!("e{i:03}")), Some(v), None)
                    .fired()
                {
                    fired.push((t, f.value, f.start, f.event_count, f.events.len()));
                }
                if t < 71 * MIN {
                    assert!(
                        i < 2 || st.extra.is_none(),
                        "{:?} keeps its aggregate",
                        s.kind
                    );
                }
            }
            assert_eq!(
                fired,
                [(MIN / 2, 3.0, 0, 3, 3), (73 * MIN, 3.0, 71 * MIN, 3, 3)],
                "{:?}",
                s.kind
            );
        }
        // The fired session still ends a gap after its latest event.
        let mut st = WindowState::default();
        for i in 0..50 {
            st.add(&session, i * MIN, EventId::new("e"), Some(i as u128), None);
        }
        assert!(st.recent.len() <= 10);
        assert!(!st.expired(&session, 59 * MIN - 1));
        assert!(st.expired(&session, 59 * MIN));
    }

    #[test]
    fn first_seen_fires_on_a_key_unseen_for_the_ttl_and_keeps_one_event() {
        let s = WindowSpec {
            suppress_ms: 0,
            ..spec(WindowKind::FirstSeen, 1, 10 * MIN)
        };
        // Seen every 9 minutes the key stays known; a gap of exactly the TTL makes it new.
        let fired = run(&s, &[0, 0, 9 * MIN, 18 * MIN, 28 * MIN, 29 * MIN, 60 * MIN]);
        let at: Vec<(i64, i64, u64)> = fired
            .iter()
            .map(|(t, f)| (*t, f.start, f.event_count))
            .collect();
        assert_eq!(
            at,
            [(0, 0, 1), (28 * MIN, 28 * MIN, 1), (60 * MIN, 60 * MIN, 1)]
        );
        // Against the definition (new when the gap to the previous event is at least the TTL),
        // over random times.
        let mut r = Lcg(7);
        let mut times: Vec<i64> = (0..2_000)
            .map(|_| r.next(2_000 * MIN as u64) as i64)
            .collect();
        times.sort_unstable();
        let want: Vec<i64> = times
            .iter()
            .enumerate()
            .filter(|&(i, &t)| i == 0 || t - times[i - 1] >= 10 * MIN)
            .map(|(_, &t)| t)
            .collect();
        let got: Vec<i64> = run(&s, &times).iter().map(|(t, _)| *t).collect();
        assert_eq!(got, want);
        // A suppression after an alert holds back new sightings until it ends (20m, 90m).
        let quiet = WindowSpec {
            suppress_ms: 60 * MIN,
            ..s
        };
        let fired = run(&quiet, &[0, 20 * MIN, 61 * MIN, 90 * MIN]);
        let at: Vec<i64> = fired.iter().map(|(t, _)| *t).collect();
        assert_eq!(at, [0, 61 * MIN]);
        // The state is the latest event alone, dropped a TTL after it.
        let mut st = WindowState::default();
        for t in 0..100 {
            st.add(&s, t * MIN, EventId::new("e"), None, None);
        }
        assert_eq!(st.recent.len(), 1);
        assert!(st.extra.is_none());
        assert!(!st.expired(&s, 109 * MIN - 1));
        assert!(st.expired(&s, 109 * MIN));
    }

    #[test]
    fn session_and_hopping_state_expires_when_no_future_event_can_join() {
        let session = WindowSpec {
            suppress_ms: 0,
            ..spec(WindowKind::Session { max_ms: 60 * MIN }, 5, 10 * MIN)
        };
        let mut st = WindowState::default();
        st.add(&session, 0, EventId::new("a"), None, None);
        st.add(&session, 3 * MIN, EventId::new("b"), None, None);
        assert!(!st.expired(&session, 13 * MIN - 1));
        assert!(st.expired(&session, 13 * MIN));
        let hopping = WindowSpec {
            suppress_ms: 0,
            ..spec(WindowKind::Hopping { slide_ms: 5 * MIN }, 5, 10 * MIN)
        };
        let mut st = WindowState::default();
        st.add(&hopping, 6 * MIN, EventId::new("a"), None, None);
        // The last window holding 6m is [5m, 15m).
        assert!(!st.expired(&hopping, 15 * MIN - 1));
        assert!(st.expired(&hopping, 15 * MIN));
    }

    #[test]
    fn ranges_fire_only_inside_them() {
        // Between 3 and 4 events in 5 minutes: fires at the third, and a count that jumps past
        // the range within the suppression period does not fire again.
        let s = WindowSpec {
            threshold: Threshold {
                lo: Some(vigil_model::Bound {
                    value: 3.0,
                    inclusive: true,
                }),
                hi: Some(vigil_model::Bound {
                    value: 4.0,
                    inclusive: true,
                }),
            },
            suppress_ms: 0,
            ..spec(WindowKind::Sliding, 0, 5 * MIN)
        };
        let fired = run(&s, &[0, 1, 2, 3, 4, 5]);
        assert_eq!(fired.iter().map(|f| f.0).collect::<Vec<_>>(), [2, 3]);
    }

    #[test]
    fn sliding_exactly_n_fires_and_n_minus_one_does_not() {
        let s = spec(WindowKind::Sliding, 10, 5 * MIN);
        let ten: Vec<i64> = (0..10).map(|i| i * 1_000).collect();
        let fired = run(&s, &ten);
        assert_eq!(fired.len(), 1);
        let (t, f) = &fired[0];
        assert_eq!((*t, f.value, f.start, f.event_count), (9_000, 10.0, 0, 10));
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
    fn tumbling_numeric_aggregates_restart_with_each_window() {
        let s = WindowSpec {
            agg: AggFn::Max,
            threshold: Threshold::at_least(100.0),
            suppress_ms: 0,
            ..spec(WindowKind::Tumbling, 0, 5 * MIN)
        };
        let mut st = WindowState::default();
        let mut fire = |t: i64, v: f64| {
            st.add(&s, t, EventId::new("x"), None, Some(v))
                .fired()
                .map(|f| f.value)
        };
        assert_eq!(fire(0, 150.0), Some(150.0));
        assert_eq!(fire(1, 200.0), None, "once per window");
        assert_eq!(fire(5 * MIN, 50.0), None, "the old maximum is gone");
        assert_eq!(fire(5 * MIN + 1, 120.0), Some(120.0));
    }

    #[test]
    fn tumbling_windows_and_sessions_count_their_older_events_in_one_entry() {
        let tumbling = spec(WindowKind::Tumbling, 40, 60 * MIN);
        let session = spec(WindowKind::Session { max_ms: 60 * MIN }, 40, 10 * MIN);
        for s in [tumbling, session] {
            let mut st = WindowState::default();
            for i in 0..39 {
                let t = 5 * MIN + i * 1_000;
                assert!(
                    st.add(&s, t, EventId::new("e"), None, None)
                        .fired()
                        .is_none()
                );
            }
            // 29 older events at as many times, in one entry.
            assert_eq!(st.extra.as_ref().map(|x| x.older.len()), Some(1));
            let f = st.add(&s, 6 * MIN, EventId::new("e"), None, None).fired();
            let f = f.expect("the 40th event fires");
            assert_eq!((f.value, f.start, f.event_count), (40.0, 5 * MIN, 40));
        }
        // A sliding window keeps them by time, to evict them.
        let mut st = WindowState::default();
        let sliding = spec(WindowKind::Sliding, 40, 60 * MIN);
        for i in 0..39 {
            st.add(&sliding, i * 1_000, EventId::new("e"), None, None);
        }
        assert_eq!(st.extra.as_ref().map(|x| x.older.len()), Some(29));
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
        assert_eq!(fired[1].1.value, 300.0);
        assert_eq!(fired[1].1.start, 10_000);
        assert_eq!(fired[1].1.events.len(), 10);
    }

    /// (fired, suppressed) counts of feeding `times` to a fresh state.
    fn outcomes(spec: &WindowSpec, times: &[i64]) -> (usize, usize) {
        let mut st = WindowState::default();
        let (mut fired, mut suppressed) = (0, 0);
        for (i, &t) in times.iter().enumerate() {
            match st.add(
                spec,
                t,
                EventId::new(&format!("e{i}")),
                Some(i as u128 % 3),
                None,
            ) {
                Outcome::Fired(_) => fired += 1,
                Outcome::Suppressed => suppressed += 1,
                Outcome::Quiet => {}
            }
        }
        (fired, suppressed)
    }

    #[test]
    fn matches_held_back_by_suppression_are_reported_and_nothing_else_is() {
        // Sliding: one event a second for 20 minutes, count >= 10, 5 minutes of suppression:
        // 4 alerts (see above); every other event from the 10th on would have fired.
        let sliding = spec(WindowKind::Sliding, 10, 5 * MIN);
        let times: Vec<i64> = (0..1_200).map(|i| i * 1_000).collect();
        assert_eq!(outcomes(&sliding, &times), (4, 1_191 - 4));
        // Without suppression every one of them fires.
        let eager = WindowSpec {
            suppress_ms: 0,
            ..sliding
        };
        assert_eq!(outcomes(&eager, &times), (1_191, 0));
        // A tumbling window fires once per window: the rest of that window is not suppression.
        let tumbling = WindowSpec {
            suppress_ms: 0,
            ..spec(WindowKind::Tumbling, 10, 5 * MIN)
        };
        assert_eq!(outcomes(&tumbling, &times), (4, 0));
        // With suppression longer than the window, the next windows' firings are held back.
        let long = WindowSpec {
            suppress_ms: 12 * MIN,
            ..tumbling
        };
        // Windows at 0, 5, 10 and 15 minutes: fires at 9 s; the windows at 5 and 10 minutes
        // would have fired (once each), and the one at 10 minutes still does at 12m 9s, when
        // the suppression ends; it then holds back the one at 15 minutes.
        assert_eq!(outcomes(&long, &times), (2, 3));
        // Hopping (2 minutes every minute, count >= 3, 2 minutes of suppression): the first
        // burst fires the windows at -1m and 0 with one alert; the second would have fired the
        // window at 1m (once, however many of its events pass the threshold).
        let hopping = spec(WindowKind::Hopping { slide_ms: MIN }, 3, 2 * MIN);
        let bursts = [0, 1, 2, 3, 4, MIN, MIN + 1, MIN + 2, MIN + 3, MIN + 4];
        assert_eq!(outcomes(&hopping, &bursts), (1, 1));
        // First seen: a key new again while suppressed.
        let first = WindowSpec {
            suppress_ms: 10 * MIN,
            ..spec(WindowKind::FirstSeen, 1, MIN)
        };
        assert_eq!(outcomes(&first, &[0, 2 * MIN, 4 * MIN, 11 * MIN]), (2, 2));
        // Distinct counts below the threshold never report anything.
        let distinct = WindowSpec {
            agg: AggFn::Distinct,
            ..spec(WindowKind::Sliding, 4, 5 * MIN)
        };
        assert_eq!(outcomes(&distinct, &times), (0, 0));
    }

    #[test]
    fn distinct_counts_values_in_window() {
        let s = WindowSpec {
            agg: AggFn::Distinct,
            ..spec(WindowKind::Sliding, 3, 10 * MIN)
        };
        let at = |n: f64| WindowSpec {
            threshold: Threshold::at_least(n),
            ..s
        };
        let mut st = WindowState::default();
        assert!(
            st.add(&s, 0, EventId::new("a"), Some(1), None)
                .fired()
                .is_none()
        );
        assert!(
            st.add(&s, 1, EventId::new("b"), Some(1), None)
                .fired()
                .is_none()
        );
        assert!(
            st.add(&s, 2, EventId::new("c"), Some(2), None)
                .fired()
                .is_none()
        );
        let f = st
            .add(&s, 3, EventId::new("d"), Some(3), None)
            .fired()
            .unwrap();
        assert_eq!((f.value, f.event_count, f.start), (3.0, 4, 0));
        // Value 1 was last seen at 1: at 10m + 1 it has left the window; 2 and 3 remain.
        let mut st2 = WindowState::default();
        for (t, v) in [(0, 1), (1, 1), (2, 2), (3, 3)] {
            st2.add(&at(99.0), t, EventId::new("x"), Some(v), None);
        }
        let later = 10 * MIN + 1;
        assert!(
            st2.add(&at(4.0), later, EventId::new("y"), Some(4), None)
                .fired()
                .is_none()
        );
        // The same moment again: 2, 3 and 4 are in the window.
        assert!(
            st2.add(&at(3.0), later, EventId::new("z"), Some(4), None)
                .fired()
                .is_some()
        );
    }

    #[test]
    fn expiry_is_invisible() {
        let s = spec(WindowKind::Sliding, 2, 5 * MIN);
        let mut st = WindowState::default();
        assert!(
            st.add(&s, 0, EventId::new("a"), None, None)
                .fired()
                .is_none()
        );
        assert!(!st.expired(&s, 5 * MIN - 1));
        assert!(st.expired(&s, 5 * MIN));
        let f = st.add(&s, 1, EventId::new("b"), None, None).fired();
        assert!(f.is_some());
        // Suppressed until 5m + 1: not expired before that.
        assert!(!st.expired(&s, 5 * MIN));
        assert!(st.expired(&s, 5 * MIN + 1));
    }

    #[test]
    fn an_expired_state_behaves_like_a_fresh_one_for_every_kind() {
        // The sweep drops a key once it is expired at the watermark. For that to be invisible,
        // the state must answer every later event (at or after the watermark) exactly as a
        // fresh state would: same outcomes, same firings (values, starts, event ids).
        let kinds = [
            WindowKind::Single,
            WindowKind::Sliding,
            WindowKind::Tumbling,
            WindowKind::Hopping { slide_ms: MIN },
            WindowKind::Session { max_ms: 30 * MIN },
            WindowKind::FirstSeen,
        ];
        let mut fired = 0;
        for (k, kind) in kinds.into_iter().enumerate() {
            for agg in AGGS {
                for suppress_ms in [0, 2 * MIN, 10 * MIN] {
                    let spec = WindowSpec {
                        agg,
                        threshold: Threshold::at_least(3.0),
                        suppress_ms,
                        ..spec(kind, 3, 5 * MIN)
                    };
                    let mut st = WindowState::default();
                    for (i, e) in events(k as u64 * 31 + 7, 150).into_iter().enumerate() {
                        feed(&mut st, &spec, i, e);
                        // The earliest watermark at which the sweep drops the key, and a later one.
                        let first = st.expiry(&spec).max(e.0);
                        for wm in [first, first + 3 * MIN] {
                            assert!(st.expired(&spec, wm), "{kind:?} {agg:?} event {i}");
                            let later = events(i as u64 + 1, 10);
                            let shift = wm - later[0].0;
                            let (mut kept, mut fresh) = (st.clone(), WindowState::default());
                            for (j, (t, v, d)) in later.into_iter().enumerate() {
                                let e = (t + shift, v, d);
                                let o = outcome(&mut fresh, &spec, 1_000 + j, e);
                                fired += usize::from(matches!(o, Outcome::Fired(_)));
                                assert_eq!(
                                    outcome(&mut kept, &spec, 1_000 + j, e),
                                    o,
                                    "{kind:?} {agg:?} suppress {suppress_ms}: after event {i}, \
                                     wm {wm}, later event {j} at {}",
                                    e.0
                                );
                            }
                        }
                    }
                }
            }
        }
        // The continuations do fire, so the comparison covers firings and not just silence.
        assert!(fired > 1_000, "{fired}");
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
