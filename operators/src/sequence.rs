//! Per-key sequence state: ordered steps within a span, steps that repeat (`runs`), a step that
//! cancels (`until`), and a trailing absent step (`A not followed by B within D`). Pure logic,
//! no timely; events arrive in `(event time, event.id)` order per key, as for windows.
//!
//! Semantics (`docs/rules.md`, "Sequences"):
//! - the steps are expanded into *stages* (a step with `runs N` is N stages); a match is one
//!   event per stage, in order, all within the span: `last − first < span`;
//! - one event may serve several partial matches (at different stages), never two stages of one;
//! - per stage the key keeps one partial match, the one that started latest: it can complete
//!   whenever an older one could, and expires later, so nothing that could match is lost;
//! - a complete match fires once and the key starts over: every partial match is discarded, so
//!   the events of one alert never count towards another (non-overlapping matches);
//! - an event matching `until` discards every partial match of the key and is used no further;
//! - with an absent last step, a match of the other steps waits for the deadline
//!   `first + span`: an event matching the absent step before it cancels the wait; when the
//!   watermark (or a later event of the key) reaches the deadline, the rule fires, with the
//!   deadline as its time. Of several waiting matches the oldest is kept: it fires first, and
//!   one absent event cancels them all alike;
//! - after firing at `t` the key is suppressed until `t + suppression`: matches completing
//!   before then are discarded without an alert.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::compact::Group;
use crate::event_id::EventId;
use crate::state::Outcome;

/// Most stages (steps, counting each `runs`) one sequence may have.
pub const MAX_STAGES: usize = 100;

/// The parameters of one sequence rule. Steps are numbered by bit in [`crate::Hit::steps`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SequenceSpec {
    /// For each stage, the bit of the step it needs.
    pub stages: Vec<u8>,
    /// Bit of the absent last step, if any.
    pub absent: Option<u8>,
    /// Bit of the `until` step, if any.
    pub until: Option<u8>,
    /// The whole match must fit within this, ms.
    pub span_ms: i64,
    /// Quiet period after firing, ms.
    pub suppress_ms: i64,
    /// Most contributing event ids an alert lists (the latest are kept).
    pub max_refs: usize,
}

/// A complete match (or an expired wait, for an absent step).
#[derive(Clone, Debug, PartialEq)]
pub struct SeqFired {
    /// Time of the first matched event.
    pub start: i64,
    /// Time of the completing event, or the deadline for an absent step.
    pub end: i64,
    /// Matched event ids, oldest first, the latest `max_refs`.
    pub events: Vec<String>,
    /// Events matched.
    pub event_count: u64,
}

/// State of one (tenant, rule, group) key of a sequence rule.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SequenceState {
    /// `partials[s]`: the partial match that has matched stages `0..=s` (one allocation,
    /// sized to the stages).
    partials: Box<[Option<Partial>]>,
    /// Matches completing before this time do not fire.
    suppressed_until: i64,
    /// The key's group values, for alerts fired by a deadline rather than by a hit.
    group: Group,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Partial {
    start: i64,
    count: u32,
    events: Refs,
}

/// A partial match's event ids, the latest `max_refs`, oldest first: inline while there is one
/// (most partial matches never get past their first event). Encoded as a list, as the
/// `VecDeque` it replaced was.
#[derive(Clone, Debug)]
enum Refs {
    One(EventId),
    Many(VecDeque<EventId>),
}

impl Refs {
    /// Appends `id`, dropping the oldest beyond `max`.
    fn push(&mut self, id: EventId, max: usize) {
        let max = max.max(1);
        match self {
            Refs::One(first) if max == 1 => *first = id,
            Refs::One(first) => {
                let first = std::mem::replace(first, EventId::Hex([0, 0]));
                *self = Refs::Many(VecDeque::from([first, id]));
            }
            Refs::Many(events) => {
                if events.len() >= max {
                    events.pop_front();
                }
                events.push_back(id);
            }
        }
    }

    fn iter(&self) -> impl Iterator<Item = &EventId> {
        let (one, many) = match self {
            Refs::One(id) => (Some(id), None),
            Refs::Many(events) => (None, Some(events.iter())),
        };
        one.into_iter().chain(many.into_iter().flatten())
    }

    fn heap_bytes(&self) -> usize {
        match self {
            Refs::One(id) => id.heap_bytes(),
            Refs::Many(events) => {
                events.capacity() * size_of::<EventId>()
                    + events.iter().map(EventId::heap_bytes).sum::<usize>()
            }
        }
    }
}

impl Serialize for Refs {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Refs::One(id) => s.collect_seq([id]),
            Refs::Many(events) => events.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Refs {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut events = VecDeque::<EventId>::deserialize(d)?;
        Ok(
            if events.len() == 1
                && let Some(id) = events.pop_front()
            {
                Refs::One(id)
            } else {
                Refs::Many(events)
            },
        )
    }
}

impl Partial {
    fn fired(self, end: i64) -> SeqFired {
        SeqFired {
            start: self.start,
            end,
            events: self.events.iter().map(ToString::to_string).collect(),
            event_count: u64::from(self.count),
        }
    }
}

impl SequenceSpec {
    /// Whether an event matching the steps in `mask` can start a match. One that cannot leaves
    /// a fresh state as it was (there is no partial match to advance, cancel or end), so it
    /// opens no key.
    pub fn starts(&self, mask: u64) -> bool {
        self.stages.first().is_some_and(|&b| has(mask, b))
    }

    /// Index of the stage that waits for the deadline, for a sequence with an absent step.
    fn waiting_stage(&self) -> Option<usize> {
        self.absent.map(|_| self.stages.len() - 1)
    }
}

fn has(mask: u64, bit: u8) -> bool {
    mask & (1 << bit) != 0
}

impl SequenceState {
    /// Fresh state for the key with these group values.
    pub fn new(group: Group) -> Self {
        SequenceState {
            partials: Box::default(),
            suppressed_until: i64::MIN,
            group,
        }
    }

    /// The key's group values.
    pub fn group(&self) -> &Group {
        &self.group
    }

    /// Applies an event at `ts` that matches the steps in `mask` (bit per step); reports the
    /// match it completes, or the wait it ends (a sequence has one or the other), fired or
    /// suppressed.
    pub fn add(
        &mut self,
        spec: &SequenceSpec,
        ts: i64,
        id: EventId,
        mask: u64,
    ) -> Outcome<SeqFired> {
        let n = spec.stages.len();
        if n == 0 {
            return Outcome::Quiet;
        }
        if self.partials.len() != n {
            self.partials = vec![None; n].into_boxed_slice();
        }
        // A wait whose deadline this event has reached ended before it.
        let ended = self.on_watermark(spec, ts);
        // Partial matches this event is too late for can never complete.
        let waiting = spec.waiting_stage();
        for (s, p) in self.partials.iter_mut().enumerate() {
            if Some(s) != waiting
                && p.as_ref()
                    .is_some_and(|p| p.start.saturating_add(spec.span_ms) <= ts)
            {
                *p = None;
            }
        }
        if spec.until.is_some_and(|b| has(mask, b)) {
            self.clear();
            return ended;
        }
        if let (Some(b), Some(w)) = (spec.absent, waiting)
            && has(mask, b)
        {
            self.partials[w] = None;
        }
        // Advance, the most advanced first, so that no match uses this event twice.
        for s in (0..n - 1).rev() {
            if !has(mask, spec.stages[s + 1]) {
                continue;
            }
            if let Some(mut p) = self.partials[s].take() {
                p.count += 1;
                p.events.push(id.clone(), spec.max_refs);
                self.place(spec, s + 1, p);
            }
        }
        if has(mask, spec.stages[0]) {
            self.place(
                spec,
                0,
                Partial {
                    start: ts,
                    count: 1,
                    events: Refs::One(id),
                },
            );
        }
        if waiting.is_none()
            && let Some(p) = self.partials[n - 1].take()
        {
            self.clear();
            if ts < self.suppressed_until {
                return Outcome::Suppressed;
            }
            self.suppressed_until = ts.saturating_add(spec.suppress_ms);
            return Outcome::Fired(p.fired(ts));
        }
        ended
    }

    /// Puts `p` at stage `s`, keeping the partial that started latest (the earliest, for the
    /// waiting stage).
    fn place(&mut self, spec: &SequenceSpec, s: usize, p: Partial) {
        let slot = &mut self.partials[s];
        let replace = match slot {
            None => true,
            Some(old) if spec.waiting_stage() == Some(s) => p.start < old.start,
            Some(old) => p.start > old.start,
        };
        if replace {
            *slot = Some(p);
        }
    }

    fn clear(&mut self) {
        for p in &mut self.partials {
            *p = None;
        }
    }

    /// The deadline of the waiting match, if one waits.
    pub fn deadline(&self, spec: &SequenceSpec) -> Option<i64> {
        let w = spec.waiting_stage()?;
        self.partials
            .get(w)?
            .as_ref()
            .map(|p| p.start.saturating_add(spec.span_ms))
    }

    /// Ends the wait of an absent step once `wm` (every event before it applied) reaches its
    /// deadline: the rule fires, and the key starts over.
    pub fn on_watermark(&mut self, spec: &SequenceSpec, wm: i64) -> Outcome<SeqFired> {
        let Some(deadline) = self.deadline(spec).filter(|&d| d <= wm) else {
            return Outcome::Quiet;
        };
        let Some(p) = spec.waiting_stage().and_then(|w| self.partials[w].take()) else {
            return Outcome::Quiet;
        };
        self.clear();
        if deadline < self.suppressed_until {
            return Outcome::Suppressed;
        }
        self.suppressed_until = deadline.saturating_add(spec.suppress_ms);
        Outcome::Fired(p.fired(deadline))
    }

    /// Whether the state can be dropped at watermark `wm`: no partial match can complete or
    /// wait for a deadline, and the key is not suppressed beyond `wm`.
    pub fn expired(&self, spec: &SequenceSpec, wm: i64) -> bool {
        self.deadline(spec).is_none() && self.expiry(spec) <= wm
    }

    /// The watermark from which the state, if no event arrives and no match waits for a
    /// deadline, is expired: the end of its last partial match's span or of its quiet period,
    /// whichever is later. `Keys::sweep` files keys under it.
    pub fn expiry(&self, spec: &SequenceSpec) -> i64 {
        self.partials
            .iter()
            .flatten()
            .map(|p| p.start.saturating_add(spec.span_ms))
            .fold(self.suppressed_until, i64::max)
    }

    /// Reads the memory the next event will touch ([`KeyState::warm`](crate::KeyState::warm)).
    pub fn warm(&self) -> i64 {
        self.partials
            .iter()
            .flatten()
            .map(|p| p.start ^ p.events.iter().last().map_or(0, |e| e.heap_bytes() as i64))
            .fold(self.suppressed_until, |a, b| a ^ b)
    }

    /// Bytes of heap memory the state holds.
    pub fn heap_bytes(&self) -> usize {
        self.group.heap_bytes()
            + self.partials.len() * size_of::<Option<Partial>>()
            + self
                .partials
                .iter()
                .flatten()
                .map(|p| p.events.heap_bytes())
                .sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_refs_keep_the_latest_and_encode_as_a_list() {
        let id = |i: u32| EventId::new(&format!("e{i:02}"));
        for max in [1, 2, 3] {
            let mut refs = Refs::One(id(0));
            let mut plain = VecDeque::from([id(0)]);
            for i in 1..6 {
                refs.push(id(i), max);
                if plain.len() >= max {
                    plain.pop_front();
                }
                plain.push_back(id(i));
                assert!(refs.iter().eq(plain.iter()), "max {max}, after {i}");
                let bytes = postcard::to_allocvec(&refs).unwrap();
                assert_eq!(bytes, postcard::to_allocvec(&plain).unwrap());
                let back: Refs = postcard::from_bytes(&bytes).unwrap();
                assert!(back.iter().eq(plain.iter()));
            }
        }
        let one: Refs =
            postcard::from_bytes(&postcard::to_allocvec(&vec![id(7)]).unwrap()).unwrap();
        assert!(matches!(one, Refs::One(_)));
        assert_eq!(
            size_of::<crate::KeyState>(),
            size_of::<crate::WindowState>(),
            "a sequence's state, held inline, must not grow every key's slot"
        );
    }

    const MIN: i64 = 60_000;
    const FAIL: u64 = 1;
    const OK: u64 = 2;
    const RESET: u64 = 4;

    /// Ten failures then a success within 10 minutes, cancelled by a password reset.
    fn failures_then_success() -> SequenceSpec {
        let mut stages = vec![0u8; 10];
        stages.push(1);
        SequenceSpec {
            stages,
            absent: None,
            until: Some(2),
            span_ms: 10 * MIN,
            suppress_ms: 0,
            max_refs: 20,
        }
    }

    fn run(spec: &SequenceSpec, events: &[(i64, u64)], wm: i64) -> Vec<SeqFired> {
        let mut s = SequenceState::new(["alice"].into_iter().collect());
        let mut out = Vec::new();
        for (i, &(t, mask)) in events.iter().enumerate() {
            out.extend(
                s.add(spec, t, EventId::new(&format!("e{i:02}")), mask)
                    .fired(),
            );
        }
        out.extend(s.on_watermark(spec, wm).fired());
        out
    }

    #[test]
    fn an_event_that_cannot_start_a_match_leaves_a_fresh_state_expired() {
        // The window operator opens no key for such an event: for that to be invisible, a fresh
        // state must take it quietly and stay expired (which behaves like a fresh state, by the
        // test below).
        let a_then_b_until_c = SequenceSpec {
            stages: vec![0, 1],
            absent: None,
            until: Some(2),
            span_ms: 2 * MIN,
            suppress_ms: 0,
            max_refs: 5,
        };
        let mut skipped = 0;
        for spec in [failures_then_success(), not_followed(), a_then_b_until_c] {
            for mask in 0..16u64 {
                let mut s = SequenceState::new(["alice"].into_iter().collect());
                let o = s.add(&spec, 5 * MIN, EventId::new("e"), mask);
                if spec.starts(mask) {
                    continue;
                }
                skipped += 1;
                assert!(matches!(o, Outcome::Quiet), "{mask:b}");
                assert_eq!(s.deadline(&spec), None);
                assert!(s.expired(&spec, i64::MIN), "{mask:b}");
            }
        }
        assert!(skipped >= 3 * 8, "{skipped}");
    }

    #[test]
    fn an_expired_state_behaves_like_a_fresh_one() {
        // The sweep drops a key once it is expired at the watermark. For that to be invisible,
        // the state must answer every later event and watermark (at or after the one it was
        // dropped at) exactly as a fresh state would: same outcomes, same firings.
        let mut rng = crate::Lcg(0x9e37_79b9_7f4a_7c15);
        let mut next = |n| rng.next(n);
        let a_then_b = SequenceSpec {
            stages: vec![0, 1],
            absent: None,
            until: Some(2),
            span_ms: 2 * MIN,
            suppress_ms: 3 * MIN,
            max_refs: 5,
        };
        let suppressed_absence = SequenceSpec {
            suppress_ms: 4 * MIN,
            ..not_followed()
        };
        let (mut checked, mut fired) = (0, 0);
        for spec in [
            failures_then_success(),
            not_followed(),
            a_then_b,
            suppressed_absence,
        ] {
            let mut s = SequenceState::new(["alice"].into_iter().collect());
            let (mut t, mut wm) = (0, i64::MIN);
            for i in 0..600 {
                t += next(40_000) as i64;
                s.add(&spec, t, EventId::new(&format!("e{i}")), next(8));
                if next(3) == 0 {
                    wm = wm.max(t - next(6 * MIN as u64) as i64);
                    s.on_watermark(&spec, wm);
                }
                if s.deadline(&spec).is_some() {
                    continue;
                }
                let first = s.expiry(&spec).max(t);
                for drop_at in [first, first + 2 * MIN] {
                    assert!(s.expired(&spec, drop_at), "event {i} at {t}");
                    let (mut kept, mut fresh) = (
                        s.clone(),
                        SequenceState::new(["alice"].into_iter().collect()),
                    );
                    let (mut u, mut w) = (drop_at, drop_at);
                    for j in 0..40 {
                        let id = EventId::new(&format!("later{j}"));
                        // Mostly the first steps, densely, so that the continuations match.
                        let mask = [1, 1, 1, 2, 3, 4, 1, 2][next(8) as usize];
                        let o = fresh.add(&spec, u, id.clone(), mask);
                        fired += usize::from(matches!(o, Outcome::Fired(_)));
                        assert_eq!(
                            kept.add(&spec, u, id, mask),
                            o,
                            "event {i}, drop at {drop_at}, later {j}"
                        );
                        if next(4) == 0 {
                            w = w.max(u - next(MIN as u64) as i64);
                            let o = fresh.on_watermark(&spec, w);
                            fired += usize::from(matches!(o, Outcome::Fired(_)));
                            assert_eq!(
                                kept.on_watermark(&spec, w),
                                o,
                                "event {i}, drop at {drop_at}, wm {w}"
                            );
                        }
                        u += next(20_000) as i64;
                    }
                    checked += 1;
                }
            }
        }
        // Many states were checked, and their continuations fire.
        assert!(checked > 500 && fired > 500, "{checked} {fired}");
    }

    #[test]
    fn matches_discarded_by_suppression_are_reported() {
        // A then B, 1 minute of suppression: A B A B fires once and holds back the second.
        let spec = SequenceSpec {
            stages: vec![0, 1],
            absent: None,
            until: None,
            span_ms: 10 * MIN,
            suppress_ms: MIN,
            max_refs: 10,
        };
        let mut s = SequenceState::new(["alice"].into_iter().collect());
        let outcomes: Vec<&str> = [(0, FAIL), (1, OK), (2, FAIL), (3, OK), (MIN + 4, FAIL)]
            .into_iter()
            .enumerate()
            .map(
                |(i, (t, m))| match s.add(&spec, t, EventId::new(&format!("e{i}")), m) {
                    Outcome::Fired(_) => "fired",
                    Outcome::Suppressed => "suppressed",
                    Outcome::Quiet => "quiet",
                },
            )
            .collect();
        assert_eq!(outcomes, ["quiet", "fired", "quiet", "suppressed", "quiet"]);
        // A not followed by B: the second wait ends inside the first alert's suppression.
        let absent = SequenceSpec {
            suppress_ms: 10 * MIN,
            ..not_followed()
        };
        let mut s = SequenceState::new(["alice"].into_iter().collect());
        assert_eq!(s.add(&absent, 0, EventId::new("a"), FAIL), Outcome::Quiet);
        assert!(matches!(
            s.on_watermark(&absent, 5 * MIN),
            Outcome::Fired(_)
        ));
        assert_eq!(
            s.add(&absent, 6 * MIN, EventId::new("b"), FAIL),
            Outcome::Quiet
        );
        assert_eq!(s.on_watermark(&absent, 11 * MIN), Outcome::Suppressed);
        assert_eq!(s.on_watermark(&absent, 12 * MIN), Outcome::Quiet);
    }

    #[test]
    fn ten_failures_then_a_success_fire_once() {
        let spec = failures_then_success();
        let mut evs: Vec<(i64, u64)> = (0..12).map(|i| (i * 1_000, FAIL)).collect();
        evs.push((20_000, OK));
        evs.push((21_000, OK));
        let fired = run(&spec, &evs, i64::MAX);
        assert_eq!(fired.len(), 1, "{fired:?}");
        // The latest ten failures and the success.
        assert_eq!(
            (fired[0].start, fired[0].end, fired[0].event_count),
            (2_000, 20_000, 11)
        );
        assert_eq!(fired[0].events.first().map(String::as_str), Some("e02"));
        assert_eq!(fired[0].events.last().map(String::as_str), Some("e12"));
        // Nine failures do not.
        let nine: Vec<(i64, u64)> = (0..9)
            .map(|i| (i * 1_000, FAIL))
            .chain([(20_000, OK)])
            .collect();
        assert!(run(&spec, &nine, i64::MAX).is_empty());
    }

    #[test]
    fn the_whole_match_fits_within_the_span() {
        let spec = failures_then_success();
        // Ten failures a minute apart, then a success: first to last is exactly 10 minutes.
        let mut evs: Vec<(i64, u64)> = (0..10).map(|i| (i * MIN, FAIL)).collect();
        evs.push((10 * MIN, OK));
        assert!(run(&spec, &evs, i64::MAX).is_empty());
        // Just under 10 minutes: fires. The last failure must come before the success in time order.
        let evs: Vec<(i64, u64)> = (0..10)
            .map(|i| (i * (MIN - 1), FAIL))
            .chain([(10 * MIN - 1, OK)])
            .collect();
        assert_eq!(run(&spec, &evs, i64::MAX).len(), 1);
    }

    #[test]
    fn until_cancels_the_partial_matches() {
        let spec = failures_then_success();
        let mut evs: Vec<(i64, u64)> = (0..10).map(|i| (i * 1_000, FAIL)).collect();
        evs.push((10_000, RESET));
        evs.push((11_000, OK));
        assert!(run(&spec, &evs, i64::MAX).is_empty());
        // Failures after the reset count afresh.
        let mut evs2 = evs.clone();
        evs2.extend((0..10).map(|i| (12_000 + i * 1_000, FAIL)));
        evs2.push((30_000, OK));
        let fired = run(&spec, &evs2, i64::MAX);
        assert_eq!(fired.len(), 1);
        assert_eq!(fired[0].start, 12_000);
    }

    #[test]
    fn matches_do_not_overlap_and_suppression_discards() {
        let spec = SequenceSpec {
            stages: vec![0, 1],
            absent: None,
            until: None,
            span_ms: 10 * MIN,
            suppress_ms: 0,
            max_refs: 10,
        };
        // A A B B: the first B completes (A2, B1) and the key starts over; B2 has no A.
        let evs = [(0, FAIL), (1, FAIL), (2, OK), (3, OK)];
        let fired = run(&spec, &evs, i64::MAX);
        assert_eq!(fired.len(), 1);
        assert_eq!((fired[0].start, fired[0].end), (1, 2));
        // A B A B: two alerts.
        let evs = [(0, FAIL), (1, OK), (2, FAIL), (3, OK)];
        assert_eq!(run(&spec, &evs, i64::MAX).len(), 2);
        // With 1 minute of suppression the second is discarded.
        let quiet = SequenceSpec {
            suppress_ms: MIN,
            ..spec
        };
        assert_eq!(run(&quiet, &evs, i64::MAX).len(), 1);
    }

    #[test]
    fn one_event_serves_two_steps_only_across_matches() {
        // Steps A then A (runs 2) with an event matching both stages: two events are needed.
        let spec = SequenceSpec {
            stages: vec![0, 0],
            absent: None,
            until: None,
            span_ms: MIN,
            suppress_ms: 0,
            max_refs: 10,
        };
        assert!(run(&spec, &[(0, FAIL)], i64::MAX).is_empty());
        assert_eq!(run(&spec, &[(0, FAIL), (0, FAIL)], i64::MAX).len(), 1);
    }

    fn not_followed() -> SequenceSpec {
        // A not followed by B within 5 minutes.
        SequenceSpec {
            stages: vec![0],
            absent: Some(1),
            until: None,
            span_ms: 5 * MIN,
            suppress_ms: 0,
            max_refs: 10,
        }
    }

    #[test]
    fn absence_fires_when_the_watermark_passes_the_deadline() {
        let spec = not_followed();
        let mut s = SequenceState::new(Group::default());
        assert!(s.add(&spec, 0, EventId::new("a"), FAIL).fired().is_none());
        assert_eq!(s.deadline(&spec), Some(5 * MIN));
        assert!(
            s.on_watermark(&spec, 5 * MIN - 1).fired().is_none(),
            "not before the deadline"
        );
        assert!(
            !s.expired(&spec, 10 * MIN),
            "a waiting match is never dropped"
        );
        let f = s.on_watermark(&spec, 5 * MIN).fired().unwrap();
        assert_eq!((f.start, f.end, f.event_count), (0, 5 * MIN, 1));
        assert!(s.expired(&spec, 5 * MIN));
    }

    #[test]
    fn the_absent_event_cancels_within_the_span_only() {
        let spec = not_followed();
        // B 4m59.999s after A: cancelled.
        assert!(run(&spec, &[(0, FAIL), (5 * MIN - 1, OK)], i64::MAX).is_empty());
        // B exactly at the deadline is too late: the wait ended, and fired, before it.
        let fired = run(&spec, &[(0, FAIL), (5 * MIN, OK)], i64::MAX);
        assert_eq!(fired.len(), 1);
        assert_eq!(fired[0].end, 5 * MIN);
        // Two As then no B: the older fires (at its deadline) and the key starts over.
        let fired = run(&spec, &[(0, FAIL), (MIN, FAIL)], i64::MAX);
        assert_eq!(fired.len(), 1);
        assert_eq!(fired[0].start, 0);
        // A B A: the second A waits anew and fires at its own deadline.
        let fired = run(&spec, &[(0, FAIL), (MIN, OK), (2 * MIN, FAIL)], i64::MAX);
        assert_eq!(fired.len(), 1);
        assert_eq!((fired[0].start, fired[0].end), (2 * MIN, 7 * MIN));
    }

    #[test]
    fn partial_matches_expire_with_the_span() {
        let spec = failures_then_success();
        let mut s = SequenceState::new(Group::default());
        assert!(s.add(&spec, 0, EventId::new("a"), FAIL).fired().is_none());
        assert!(!s.expired(&spec, 10 * MIN - 1));
        assert!(s.expired(&spec, 10 * MIN));
    }
}
