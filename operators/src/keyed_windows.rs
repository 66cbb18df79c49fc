//! `keyed_windows`: applies [`Hit`]s to per-key state (windows and sequences, [`crate::state`])
//! in event-time order and emits a [`Firing`] whenever a rule fires.
//!
//! Hits arrive exchanged by [`Hit::key`], a stable hash of (tenant, rule, group), so each key
//! lives on exactly one worker; epoch summaries arrive broadcast, so every worker tracks every
//! watermark. When the frontier passes epoch `e`, the operator:
//! 1. decides for each hit of `e` whether it is late (counted per rule and tenant, never added
//!    to a window); single-event rules fire right away for hits on time;
//! 2. applies the summary of `e` to the watermarks;
//! 3. feeds, per tenant, the buffered hits below the tenant's watermark to their keys in
//!    `(event time, event.id)` order;
//! 4. fires, per tenant, the sequences waiting for an absent step whose deadline the watermark
//!    has reached (a timer per waiting key, rebuilt from the key states on restore).
//!
//! The result depends only on the input, not on the number of workers or on scheduling. At the
//! end of input every watermark becomes +∞ and every window flushes.
//!
//! At a checkpoint barrier (a summary with `checkpoint` set) the operator encodes its state right
//! after that epoch ([`crate::snapshot`]) and hands it to `on_checkpoint`; it starts from a
//! restored snapshot when given one.
//!
//! ```
//! use timely::dataflow::operators::{ToStream, Inspect, vec::Broadcast};
//! use vigil_operators::{EpochSummary, EventId, Hit, KeyedWindows, Measure, RuleSpec,
//!                       WindowSpec, WindowsConfig};
//! use vigil_operators::window::{AggFn, WindowKind};
//!
//! let spec = WindowSpec { kind: WindowKind::Sliding, agg: AggFn::Count, window_ms: 300_000,
//!                         threshold: vigil_model::Threshold::at_least(2.0),
//!                         suppress_ms: 300_000, max_refs: 10 };
//! let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
//! let sink = seen.clone();
//! timely::example(move |scope| {
//!     let hit = |ts: i64, id: &str| Hit { epoch: 0, key: [7, 7], rule: 0, source: 0, ts,
//!         prior_max: i64::MIN, tenant: "acme".into(), event_id: EventId::new(id),
//!         group: ["alice"].into_iter().collect(), measure: Measure::None, steps: 0,
//!         title_values: vec![] };
//!     let hits = vec![hit(1_000, "a"), hit(2_000, "b")].to_stream(scope);
//!     let summaries = vec![EpochSummary { epoch: 0, source: 0,
//!         tenants: vec![("acme".into(), 2_000)], wall_ms: None, checkpoint: false }]
//!         .to_stream(scope).broadcast();
//!     hits.keyed_windows(summaries, WindowsConfig::new(vec![RuleSpec::Window(spec)], 10_000))
//!         .inspect(move |f| sink.lock().unwrap().push((f.end, f.value)));
//! });
//! assert_eq!(*seen.lock().unwrap(), [(2_000, 2.0)]);
//! ```

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::rc::Rc;

use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::{Stream, StreamVec};
use timely::progress::frontier::MutableAntichain;

use crate::compact::{Group, SmallStr};
use crate::event_id::EventId;
use crate::records::{EpochSummary, Firing, Health, Hit};
use crate::sequence::SeqFired;
use crate::snapshot::{self, KeyEntryRef, WindowsSnapshot, WindowsSnapshotRef};
use crate::state::{KeyState, Outcome, RuleSpec};
use crate::tenants::TenantIndex;
use crate::watermark::{LateCheck, WatermarkTracker};

/// Counters of one worker's `keyed_windows` operator.
#[derive(Clone, Debug, Default)]
pub struct WindowStats {
    /// Late hits per (rule index, tenant).
    pub late: HashMap<(u32, String), u64>,
    /// Live keys now.
    pub keys: usize,
    /// Most live keys seen at a sweep, measured when the count grew by an eighth over the
    /// previous measurement (so within an eighth of the true peak).
    pub peak_keys: usize,
    /// State bytes (map entries, expiry files and heap) when `peak_keys` was reached; past
    /// 1,024 keys of a rule, its heap is extrapolated from one key in 16.
    pub peak_bytes: usize,
    /// Keys and bytes per rule index when `peak_keys` was reached.
    pub peak_by_rule: Vec<(usize, usize)>,
    /// Live keys per (rule index, tenant) after the latest eviction sweep.
    pub live: HashMap<(u32, String), usize>,
    /// Each tenant's watermark after the latest eviction sweep.
    pub watermarks: Vec<(String, i64)>,
    /// Hits dropped per (rule index, tenant) because they would have opened a key past the
    /// tenant's cap.
    pub shed: HashMap<(u32, String), u64>,
    /// Matches per (rule index, tenant) that would have fired but for the key's suppression.
    pub suppressed: HashMap<(u32, String), u64>,
}

impl WindowStats {
    fn count_suppressed(&mut self, rule: u32, tenant: &str) {
        *self
            .suppressed
            .entry((rule, tenant.to_owned()))
            .or_default() += 1;
    }

    /// Adds the counters of another `keyed_windows` operator of the same worker (a later
    /// stage): its keys and state count on top, its watermarks are the same.
    pub fn absorb(&mut self, other: &WindowStats) {
        for (k, v) in &other.late {
            *self.late.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &other.live {
            *self.live.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &other.shed {
            *self.shed.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &other.suppressed {
            *self.suppressed.entry(k.clone()).or_default() += v;
        }
        self.keys += other.keys;
        self.peak_keys += other.peak_keys;
        self.peak_bytes += other.peak_bytes;
        if self.peak_by_rule.len() < other.peak_by_rule.len() {
            self.peak_by_rule.resize(other.peak_by_rule.len(), (0, 0));
        }
        for (mine, theirs) in self.peak_by_rule.iter_mut().zip(&other.peak_by_rule) {
            mine.0 += theirs.0;
            mine.1 += theirs.1;
        }
        if self.watermarks.is_empty() {
            self.watermarks.clone_from(&other.watermarks);
        }
    }
}

/// Shared handle to a worker's [`WindowStats`].
pub type WindowStatsHandle = Rc<RefCell<WindowStats>>;

/// Called with a barrier epoch and the encoded state after it.
pub type OnCheckpoint = Box<dyn FnMut(u64, Vec<u8>)>;

/// How a `keyed_windows` operator is set up.
pub struct WindowsConfig {
    /// Rule specs, indexed by [`Hit::rule`].
    pub specs: Vec<RuleSpec>,
    /// Allowed lateness of sources not in `lateness_ms`.
    pub default_lateness_ms: u64,
    /// Allowed lateness per source.
    pub lateness_ms: Vec<u64>,
    /// Where the operator reports its counters.
    pub stats: WindowStatsHandle,
    /// This worker's part of a restored snapshot.
    pub restore: Option<WindowsSnapshot>,
    /// Receives the encoded state at every checkpoint barrier.
    pub on_checkpoint: OnCheckpoint,
    /// The most live keys a tenant may hold in this operator (on this worker).
    pub key_caps: KeyCaps,
    /// Where applied epochs' hit vectors go back to, for the worker's source to fill again.
    pub hit_vecs: HitVecs,
}

/// Emptied hit vectors, shared by one worker's source and its `keyed_windows` operators: a
/// chunk's hits travel in one vector from the source through the exchange (whole, on one
/// worker) into the window state, where they wait in place, and the emptied vector comes back
/// here. Nothing copies the hits on the way, and no vector grows from empty per chunk.
#[derive(Clone, Debug, Default)]
pub struct HitVecs(Rc<RefCell<Kept>>);

#[derive(Debug, Default)]
struct Kept {
    vecs: Vec<Vec<Hit>>,
    /// The most hits a vector has been noted holding ([`HitVecs::note`]).
    largest: usize,
}

/// The most vectors [`HitVecs`] keeps.
const KEPT_VECS: usize = 8;

impl HitVecs {
    /// An empty vector with room for the most hits a vector has been noted holding, in the
    /// allocation of one handed back if there is one: growing it by doubling would copy every
    /// hit once more.
    pub fn take(&self) -> Vec<Hit> {
        let mut kept = self.0.borrow_mut();
        let mut hits = kept.vecs.pop().unwrap_or_default();
        hits.reserve(kept.largest);
        hits
    }

    /// A vector was filled with `n` hits.
    pub fn note(&self, n: usize) {
        let mut kept = self.0.borrow_mut();
        kept.largest = kept.largest.max(n);
    }

    /// Keeps the allocation of `hits` (dropping the hits) for a later [`HitVecs::take`].
    pub fn give(&self, mut hits: Vec<Hit>) {
        hits.clear();
        let mut kept = self.0.borrow_mut();
        if kept.vecs.len() < KEPT_VECS && hits.capacity() > 0 {
            kept.vecs.push(hits);
        }
    }
}

/// Caps on live keys per tenant, in one `keyed_windows` operator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyCaps {
    /// The cap of tenants not in `tenants`.
    pub default: u64,
    /// Tenants with their own cap.
    pub tenants: HashMap<String, u64>,
}

impl Default for KeyCaps {
    fn default() -> Self {
        KeyCaps {
            default: u64::MAX,
            tenants: HashMap::new(),
        }
    }
}

impl KeyCaps {
    /// The cap of `tenant`.
    pub fn of(&self, tenant: &str) -> u64 {
        self.tenants.get(tenant).copied().unwrap_or(self.default)
    }
}

/// Length of the period a live-key health event reports on: one per rule, tenant and hour of
/// event time.
pub const KEY_CAP_PERIOD_MS: i64 = 3_600_000;

impl WindowsConfig {
    /// `specs` with one lateness for every source, fresh state, no checkpoints.
    pub fn new(specs: Vec<RuleSpec>, lateness_ms: u64) -> Self {
        WindowsConfig {
            specs,
            default_lateness_ms: lateness_ms,
            lateness_ms: Vec::new(),
            stats: WindowStatsHandle::default(),
            restore: None,
            on_checkpoint: Box::new(|_, _| {}),
            key_caps: KeyCaps::default(),
            hit_vecs: HitVecs::default(),
        }
    }
}

impl std::fmt::Debug for WindowsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WindowsConfig")
            .field("specs", &self.specs)
            .field("default_lateness_ms", &self.default_lateness_ms)
            .field("lateness_ms", &self.lateness_ms)
            .field("restore", &self.restore.as_ref().map(|r| r.keys.len()))
            .finish_non_exhaustive()
    }
}

/// Extension trait for the `keyed_windows` operator.
pub trait KeyedWindows<'scope> {
    /// Runs the window state machines of `config.specs` (indexed by [`Hit::rule`]) over the
    /// hits, with watermarks from the broadcast `summaries`.
    fn keyed_windows(
        self,
        summaries: StreamVec<'scope, u64, EpochSummary>,
        config: WindowsConfig,
    ) -> StreamVec<'scope, u64, Firing>;
}

/// Key of one window: a 128-bit hash of (tenant, rule, group values). The full values travel in
/// each hit; state holds only the hash, which keeps a quiet key's state small. (Two `u64`s
/// rather than a `u128` keep the map slot 8-byte aligned.)
type KeyHash = [u64; 2];

/// Keys are already uniform hashes: hash them by folding their words together.
#[derive(Default)]
pub(crate) struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // `[u64; 2]` hashes as its 16 raw bytes: fold them in a word at a time.
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 ^= u64::from_le_bytes(word);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 ^= v;
    }
}

type KeyMap = HashMap<KeyHash, Key, HashedKeys>;

/// The hasher of maps whose keys are uniform hashes already.
pub(crate) type HashedKeys = BuildHasherDefault<PassThrough>;

struct Key {
    state: KeyState,
    rule: u32,
    tenant: u32,
}

#[derive(Default)]
struct Epoch {
    hits: Vec<Hit>,
    summaries: Vec<EpochSummary>,
}

/// Hits a drain loads ahead of applying them ([`Keys::drain`]).
const RUN: usize = 16;

/// How many epochs pass between reports of the live keys and the state size (every tenant
/// is swept then too; a tenant whose watermark moves is swept every epoch).
const REPORT_EVERY: u64 = 64;

impl<'scope> KeyedWindows<'scope> for Stream<'scope, u64, Vec<Hit>> {
    fn keyed_windows(
        self,
        summaries: StreamVec<'scope, u64, EpochSummary>,
        config: WindowsConfig,
    ) -> StreamVec<'scope, u64, Firing> {
        let WindowsConfig {
            specs,
            default_lateness_ms,
            lateness_ms,
            stats,
            restore,
            mut on_checkpoint,
            key_caps,
            hit_vecs,
        } = config;
        self.binary_frontier(
            summaries,
            Exchange::new(|h: &Hit| h.key[0]),
            Pipeline,
            "KeyedWindows",
            move |cap, _info| {
                let mut cap = Some(cap);
                let mut stash: BTreeMap<u64, Epoch> = BTreeMap::new();
                let mut tracker = WatermarkTracker::new(default_lateness_ms, lateness_ms);
                let mut state = Keys {
                    caps: key_caps,
                    batches: Batches {
                        vecs: hit_vecs,
                        ..Batches::default()
                    },
                    ..Keys::default()
                };
                if let Some(snap) = restore {
                    state.restore(snap, &mut tracker, &specs);
                    stats.borrow_mut().keys = state.keys.len();
                }
                let mut epochs_done = 0u64;
                let mut last_sweep_wall = i64::MIN;
                move |(hits_in, hits_frontier), (sum_in, sum_frontier), output| {
                    hits_in.for_each(|_, data| {
                        // A batch holds one epoch's hits (the common case): they are appended
                        // together, with one lookup of their epoch. An epoch's first batch
                        // becomes its vector as it is.
                        while let Some(e) = data.first().map(|h| h.epoch) {
                            let epoch = stash.entry(e).or_default();
                            let n = data.iter().take_while(|h| h.epoch == e).count();
                            if n == data.len() && epoch.hits.is_empty() {
                                // An empty epoch vector was never allocated.
                                epoch.hits = std::mem::take(data);
                            } else {
                                if epoch.hits.is_empty() {
                                    epoch.hits = state.batches.vecs.take();
                                }
                                epoch.hits.extend(data.drain(..n));
                            }
                        }
                    });
                    sum_in.for_each(|_, data| {
                        for s in data.drain(..) {
                            stash.entry(s.epoch).or_default().summaries.push(s);
                        }
                    });
                    let Some(c) = cap.as_mut() else { return };
                    let done = |e: u64, f: &MutableAntichain<u64>| !f.less_equal(&e);
                    while let Some(entry) = stash.first_entry() {
                        let e = *entry.key();
                        if !(done(e, hits_frontier) && done(e, sum_frontier)) {
                            break;
                        }
                        // Firings of epoch `e` carry time `e`, so that a downstream stage (rules
                        // over alerts) sees them with the epoch whose watermark raised them.
                        let at = c.delayed(&e);
                        let mut session = output.session(&at);
                        let mut fired = |f: Firing| session.give(f);
                        let mut epoch = entry.remove();
                        let mut st = stats.borrow_mut();
                        // Tenants whose watermark may have moved in this epoch, by index.
                        let mut touched = state.buffer_epoch(
                            std::mem::take(&mut epoch.hits),
                            &tracker,
                            &specs,
                            &mut st,
                            &mut fired,
                        );
                        let mut barrier = false;
                        let mut wall = None;
                        for s in &epoch.summaries {
                            barrier |= s.checkpoint;
                            wall = wall.max(s.wall_ms);
                            tracker.apply(s);
                            for (t, _) in &s.tenants {
                                let (ti, _) = state.tenant(t);
                                if !touched.contains(&ti) {
                                    touched.push(ti);
                                }
                            }
                            if s.wall_ms.is_some() {
                                // Idleness may have moved any tenant of this source.
                                for ti in state.waiting_tenants() {
                                    if !touched.contains(&ti) {
                                        touched.push(ti);
                                    }
                                }
                            }
                        }
                        for ti in state.by_name(touched) {
                            let wm = tracker.watermark(state.tenants.name(ti));
                            state.drain(ti, wm, &specs, &mut st, &mut fired);
                            state.sweep(ti, wm, &specs);
                        }
                        if barrier {
                            on_checkpoint(e, state.encode(&tracker));
                        }
                        epochs_done += 1;
                        // Live input sweeps at least once a second of wall clock too, so that
                        // the live-key metrics stay fresh while input trickles.
                        let live_due =
                            wall.is_some_and(|w| w.saturating_sub(last_sweep_wall) >= 1_000);
                        if live_due {
                            last_sweep_wall = wall.unwrap_or(last_sweep_wall);
                        }
                        if epochs_done.is_multiple_of(REPORT_EVERY) || live_due {
                            // State peaks just before a sweep: measure it first.
                            state.note_size(&mut st);
                            state.report(&tracker, &specs, &mut st);
                        }
                    }
                    if hits_frontier.is_empty() && sum_frontier.is_empty() {
                        // What the end of the input fires goes out at the last time, on every
                        // worker alike (the capability's own time depends on when each worker
                        // saw the frontiers close): downstream, it orders after every epoch.
                        let at = c.delayed(&u64::MAX);
                        let mut session = output.session(&at);
                        let mut fired = |f: Firing| session.give(f);
                        tracker.finish();
                        let waiting = state.waiting_tenants().collect();
                        let mut st = stats.borrow_mut();
                        for ti in state.by_name(waiting) {
                            state.drain(ti, i64::MAX, &specs, &mut st, &mut fired);
                        }
                        state.note_size(&mut st);
                        state.keys.clear();
                        st.keys = 0;
                        drop(session);
                        cap = None;
                        return;
                    }
                    // Downgrade to the least epoch not yet processed.
                    let next = hits_frontier
                        .frontier()
                        .iter()
                        .chain(sum_frontier.frontier().iter())
                        .min()
                        .copied();
                    let next = stash.keys().next().copied().into_iter().chain(next).min();
                    if let Some(n) = next
                        && n > *c.time()
                    {
                        c.downgrade(&n);
                    }
                }
            },
        )
    }
}

/// The hit vectors of processed epochs, kept until every hit they buffered has been applied,
/// so that a hit is moved once (from the input into its epoch's vector) and read in place.
#[derive(Default)]
struct Batches {
    /// By batch index: the hits, and how many of them still wait.
    batches: Vec<(Vec<Hit>, u32)>,
    /// Indexes of emptied batches.
    free: Vec<u32>,
    /// Emptied vectors, for the next epochs (and the source) to fill.
    vecs: HitVecs,
}

/// Where a buffered hit is: (batch, index in it).
type Slot = (u32, u32);

/// Consecutive buffered hits of one event: (batch, index of the first, count). They wait as one
/// entry of a [`Queue`]: a typical event has several stateful hits, all applied at its place in
/// the order.
type Run = (u32, u32, u32);

/// The slots of a run, in order.
fn slots((b, first, n): Run) -> impl Iterator<Item = Slot> {
    (first..first + n).map(move |i| (b, i))
}

impl Batches {
    /// Keeps `hits` of which `waiting` are buffered; an empty batch is recycled at once.
    fn add(&mut self, hits: Vec<Hit>, waiting: u32) -> u32 {
        self.vecs.note(hits.len());
        if waiting == 0 {
            self.vecs.give(hits);
            return u32::MAX;
        }
        match self.free.pop() {
            Some(b) => {
                self.batches[b as usize] = (hits, waiting);
                b
            }
            None => {
                self.batches.push((hits, waiting));
                (self.batches.len() - 1) as u32
            }
        }
    }

    fn get(&self, (b, i): Slot) -> &Hit {
        &self.batches[b as usize].0[i as usize]
    }

    /// The hit at `slot` was applied; its batch is emptied once none waits.
    fn done(&mut self, (b, _): Slot) {
        let (hits, waiting) = &mut self.batches[b as usize];
        *waiting -= 1;
        if *waiting == 0 {
            let hits = std::mem::take(hits);
            self.vecs.give(hits);
            self.free.push(b);
        }
    }
}

/// One tenant's hits waiting for its watermark, taken out in `(event time, event.id, arrival)`
/// order: small keys over the runs of [`Batches`] slots, so that a hit is never moved while it
/// waits (a B-tree of whole hits shifted them on every removal), and the hits of one event are
/// sorted once.
///
/// `keys[head..]` is sorted; arrivals collect in `fresh` and are sorted in at the next take.
/// They come nearly in time order, so only the short overlap between the sorted keys' tail and
/// the arrivals is merged (a binary heap paid a logarithmic sift per hit instead, and sorting
/// everything that waits on every take re-merged each hit once per epoch).
#[derive(Default)]
struct Queue {
    keys: Vec<QueueKey>,
    head: usize,
    fresh: Vec<QueueKey>,
}

/// (event time, event id, arrival, run).
type QueueKey = (i64, EventId, u64, Run);

/// What fills a [`Queue`] slot whose key moved out.
fn vacant() -> QueueKey {
    (0, EventId::Hex([0, 0]), 0, (0, 0, 0))
}

impl Queue {
    fn push(&mut self, (ts, id, seq): (i64, EventId, u64), run: Run) {
        self.fresh.push((ts, id, seq, run));
    }

    /// Sorts the arrivals into the keys.
    fn settle(&mut self) {
        if self.fresh.is_empty() {
            return;
        }
        self.fresh.sort_unstable();
        // Where the arrivals start among the waiting keys; everything before stays put.
        let at = self.head + self.keys[self.head..].partition_point(|k| *k < self.fresh[0]);
        if at == self.keys.len() {
            self.keys.append(&mut self.fresh);
            return;
        }
        // Merges the overlap in place, from the back: the largest of the tail's last key and
        // the last arrival moves to the last free slot (keys are unique: they hold the arrival).
        let mut i = self.keys.len();
        self.keys.resize_with(i + self.fresh.len(), vacant);
        let mut k = self.keys.len();
        while let Some(y) = self.fresh.pop() {
            while i > at && self.keys[i - 1] > y {
                i -= 1;
                k -= 1;
                self.keys.swap(i, k);
            }
            k -= 1;
            self.keys[k] = y;
        }
    }

    /// The earliest run of hits, if it is before `wm`.
    fn pop_before(&mut self, wm: i64) -> Option<(EventId, Run)> {
        self.settle();
        if self.keys.get(self.head)?.0 >= wm {
            return None;
        }
        let (_, id, _, run) = std::mem::replace(&mut self.keys[self.head], vacant());
        self.head += 1;
        if self.head == self.keys.len() {
            self.keys.clear();
            self.head = 0;
        } else if self.head >= 1024 && self.head * 2 >= self.keys.len() {
            self.keys.drain(..self.head);
            self.head = 0;
        }
        Some((id, run))
    }

    fn is_empty(&self) -> bool {
        self.head == self.keys.len() && self.fresh.is_empty()
    }

    /// The slots of the hits in the order they come out.
    fn in_order(&self) -> impl Iterator<Item = Slot> + use<> {
        let mut keys: Vec<_> = self.keys[self.head..]
            .iter()
            .chain(&self.fresh)
            .cloned()
            .collect();
        keys.sort_unstable();
        keys.into_iter().flat_map(|(_, _, _, run)| slots(run))
    }
}

/// One worker's keys, the hits waiting for their tenant's watermark, and the deadlines of
/// sequences waiting for an absent step.
#[derive(Default)]
struct Keys {
    keys: KeyMap,
    /// The hits that wait, in their epochs' vectors.
    batches: Batches,
    tenants: TenantIndex,
    /// By tenant index.
    waiting: Vec<Waiting>,
    /// Arrival order of buffered hits with equal (time, id).
    seq: u64,
    /// The key count state bytes were last measured at.
    measured_keys: usize,
    /// Caps on live keys per tenant.
    caps: KeyCaps,
    /// Live keys (expired ones included until a sweep drops them).
    live: Live,
    /// (tenant index, rule, period) of the live-key health events raised.
    reported: HashSet<(u32, u32, i64)>,
}

/// What waits for one tenant's watermark.
#[derive(Default)]
struct Waiting {
    /// Hits not yet applied.
    pending: Queue,
    /// (deadline, key) of every sequence key waiting for an absent step. Entries may be stale
    /// (the wait was cancelled); the key's own state decides.
    timers: BTreeSet<(i64, KeyHash)>,
    /// Every live key of the tenant, by the bucket ([`expiry_bucket`]) of the watermark at
    /// which it may first have expired ([`KeyState::expiry`]): a sweep visits the keys due,
    /// drops the expired ones and files the others again under their new expiry. A key has
    /// one entry (two when the cap check dropped it and it opened again: the second finds
    /// the key gone once it expires).
    expiry: BTreeMap<i64, Vec<KeyHash>>,
}

/// Width of the [`Waiting::expiry`] buckets, ms of event time: a key is dropped at most this
/// much later than it expires.
const EXPIRY_BUCKET_MS: i64 = 1_000;

/// The bucket of a key that may expire at `t`: due once the watermark reaches its start.
fn expiry_bucket(t: i64) -> i64 {
    t.saturating_add(EXPIRY_BUCKET_MS - 1)
        .div_euclid(EXPIRY_BUCKET_MS)
}

/// Files `key`, which may expire at `t`, for a later sweep.
fn file_expiry(expiry: &mut BTreeMap<i64, Vec<KeyHash>>, t: i64, key: KeyHash) {
    expiry.entry(expiry_bucket(t)).or_default().push(key);
}

/// Live keys by tenant and by (rule, tenant), kept up to date as keys open and are dropped.
#[derive(Default)]
struct Live {
    by_tenant: Vec<u64>,
    /// By rule index, then tenant index.
    by_rule: Vec<Vec<u64>>,
}

impl Live {
    fn tenant(&self, tenant: u32) -> u64 {
        self.by_tenant.get(tenant as usize).copied().unwrap_or(0)
    }

    fn open(&mut self, rule: u32, tenant: u32) {
        let (r, t) = (rule as usize, tenant as usize);
        if self.by_tenant.len() <= t {
            self.by_tenant.resize(t + 1, 0);
        }
        self.by_tenant[t] += 1;
        if self.by_rule.len() <= r {
            self.by_rule.resize_with(r + 1, Vec::new);
        }
        let by = &mut self.by_rule[r];
        if by.len() <= t {
            by.resize(t + 1, 0);
        }
        by[t] += 1;
    }

    /// A key counted by [`Live::open`] was dropped.
    fn drop_key(&mut self, rule: u32, tenant: u32) {
        self.by_tenant[tenant as usize] -= 1;
        self.by_rule[rule as usize][tenant as usize] -= 1;
    }
}

impl Keys {
    /// The index of `tenant` and what waits for it.
    fn tenant(&mut self, tenant: &str) -> (u32, &mut Waiting) {
        let i = self.tenants.index(tenant);
        (i, self.waiting_of(i))
    }

    /// Tenants with hits or deadlines waiting, by index.
    fn waiting_tenants(&self) -> impl Iterator<Item = u32> + use<'_> {
        self.waiting
            .iter()
            .enumerate()
            .filter(|(_, w)| !(w.pending.is_empty() && w.timers.is_empty()))
            .map(|(i, _)| i as u32)
    }

    /// Tenant indexes in the order of the tenants' ids, the order they are drained in.
    fn by_name(&self, mut tenants: Vec<u32>) -> Vec<u32> {
        tenants.sort_by(|&a, &b| self.tenants.name(a).cmp(self.tenants.name(b)));
        tenants
    }

    fn restore(
        &mut self,
        snap: WindowsSnapshot,
        tracker: &mut WatermarkTracker,
        specs: &[RuleSpec],
    ) {
        if let Some(t) = snap.tracker {
            tracker.restore(t);
        }
        for k in snap.keys {
            let (tenant, _) = self.tenant(&k.tenant);
            self.live.open(k.rule, tenant);
            let waiting = &mut self.waiting[tenant as usize];
            if let (KeyState::Sequence(s), Some(RuleSpec::Sequence(q))) =
                (&k.state, specs.get(k.rule as usize))
                && let Some(d) = s.deadline(q)
            {
                waiting.timers.insert((d, k.key));
            }
            let expiry = specs
                .get(k.rule as usize)
                .map_or(i64::MIN, |spec| k.state.expiry(spec));
            file_expiry(&mut waiting.expiry, expiry, k.key);
            self.keys.insert(
                k.key,
                Key {
                    state: k.state,
                    rule: k.rule,
                    tenant,
                },
            );
        }
        let pending: Vec<u32> = snap
            .pending
            .iter()
            .map(|h| self.tenant(&h.tenant).0)
            .collect();
        let b = self.batches.add(snap.pending, pending.len() as u32);
        for (i, tenant) in pending.into_iter().enumerate() {
            self.buffer(tenant, (b, i as u32, 1));
        }
    }

    /// Drops the keys of `tenant` that its watermark `wm` has expired, among those filed as
    /// due by `wm`; files the others again.
    fn sweep(&mut self, tenant: u32, wm: i64, specs: &[RuleSpec]) {
        let Some(waiting) = self.waiting.get_mut(tenant as usize) else {
            return;
        };
        let due = wm.div_euclid(EXPIRY_BUCKET_MS);
        while let Some(entry) = waiting.expiry.first_entry() {
            if *entry.key() > due {
                break;
            }
            for k in entry.remove() {
                // Gone already (dropped at the cap), or another tenant's (a hash collision).
                let Some(key) = self.keys.get(&k).filter(|key| key.tenant == tenant) else {
                    continue;
                };
                let spec = &specs[key.rule as usize];
                if key.state.expired(spec, wm) {
                    self.live.drop_key(key.rule, tenant);
                    self.keys.remove(&k);
                } else {
                    // Filed past `wm`, so the loop ends.
                    let next = key.state.expiry(spec).max(wm.saturating_add(1));
                    file_expiry(&mut waiting.expiry, next, k);
                }
            }
        }
    }

    /// Takes the hits of an epoch whose frontier has passed: counts the late ones, fires the
    /// single-event ones on time, and buffers the others until their tenant's watermark passes
    /// them. Returns the tenants of the buffered hits, by index.
    fn buffer_epoch(
        &mut self,
        mut hits: Vec<Hit>,
        tracker: &WatermarkTracker,
        specs: &[RuleSpec],
        st: &mut WindowStats,
        fired: &mut impl FnMut(Firing),
    ) -> Vec<u32> {
        let mut touched: Vec<u32> = Vec::new();
        // Per (source, tenant) of the epoch: the tenant's index and the lateness bound as of the
        // epoch before. Tenants compare as bytes (a lookup by name reads the tenant as a `str`,
        // checking its UTF-8 per hit).
        let mut checks: Vec<(u16, SmallStr, u32, LateCheck)> = Vec::new();
        // (tenant index, first, count) of the runs of hits to buffer: consecutive hits of one
        // event. The hits to buffer move to the front of `hits`, in order.
        let mut runs: Vec<(u32, u32, u32)> = Vec::new();
        let mut kept = 0;
        for i in 0..hits.len() {
            let h = &mut hits[i];
            let (ti, check) = match checks
                .iter()
                .find(|(s, t, _, _)| *s == h.source && *t == h.tenant)
            {
                Some(&(_, _, ti, c)) => (ti, c),
                None => {
                    let ti = self.tenants.index(&h.tenant);
                    let c = tracker.late_check(h.source, &h.tenant);
                    checks.push((h.source, h.tenant.clone(), ti, c));
                    (ti, c)
                }
            };
            if check.is_late(h.ts, h.prior_max) {
                *st.late.entry((h.rule, h.tenant.to_string())).or_default() += 1;
            } else if specs[h.rule as usize].is_single() {
                fired(single_firing(h));
            } else {
                if !touched.contains(&ti) {
                    touched.push(ti);
                }
                // Moves a hit only past the ones that left (late or single-event).
                if kept != i {
                    hits.swap(kept, i);
                }
                let (h, last) = (&hits[kept], runs.last_mut());
                match last {
                    Some((t, first, n))
                        if *t == ti
                            && hits[*first as usize].ts == h.ts
                            && hits[*first as usize].event_id == h.event_id =>
                    {
                        *n += 1;
                    }
                    _ => runs.push((ti, kept as u32, 1)),
                }
                kept += 1;
            }
        }
        hits.truncate(kept);
        let b = self.batches.add(hits, kept as u32);
        for (ti, first, n) in runs {
            self.buffer(ti, (b, first, n));
        }
        touched
    }

    /// Buffers `run`, hits of one event of the tenant at index `tenant`, until its watermark
    /// passes them.
    fn buffer(&mut self, tenant: u32, run: Run) {
        self.seq += 1;
        let h = self.batches.get((run.0, run.1));
        let k = (h.ts, h.event_id.clone(), self.seq);
        self.waiting_of(tenant).pending.push(k, run);
    }

    /// What waits for the tenant at index `tenant`.
    fn waiting_of(&mut self, tenant: u32) -> &mut Waiting {
        if self.waiting.len() <= tenant as usize {
            self.waiting
                .resize_with(tenant as usize + 1, Waiting::default);
        }
        &mut self.waiting[tenant as usize]
    }

    /// Applies the tenant's buffered hits below `wm` in `(time, id)` order, then fires the
    /// deadlines `wm` has reached.
    fn drain(
        &mut self,
        tenant_idx: u32,
        wm: i64,
        specs: &[RuleSpec],
        st: &mut WindowStats,
        fired: &mut impl FnMut(Firing),
    ) {
        let tenant = &self.tenants.name(tenant_idx).to_owned();
        let mut at = Drain {
            tenant,
            index: tenant_idx,
            cap: self.caps.of(tenant),
            wm,
            swept: false,
        };
        // `next` is taken out of the queue one run ahead, and its hits read, so that their
        // cache misses (a hit was written seconds of event time ago) overlap the run applied.
        let (mut run, mut next) = (Vec::with_capacity(RUN), Vec::with_capacity(RUN));
        loop {
            let pending = &mut self.waiting[tenant_idx as usize].pending;
            while next.len() < RUN
                && let Some((id, hits)) = pending.pop_before(wm)
            {
                next.extend(slots(hits).map(|slot| (id.clone(), slot)));
            }
            for (_, slot) in &next {
                std::hint::black_box(self.batches.get(*slot).key);
            }
            if run.is_empty() && next.is_empty() {
                break;
            }
            // Load the run's key states before applying its hits in order: the loads of this
            // short loop are independent, so their cache misses overlap rather than queue one
            // after another (the key table and the states are far larger than the caches).
            // Nothing here changes state.
            for (_, slot) in &run {
                let h = self.batches.get(*slot);
                let distinct = h.measure.distinct_hash();
                std::hint::black_box(self.keys.get(&h.key).map(|k| k.state.warm(distinct)));
            }
            for (id, slot) in run.drain(..) {
                self.apply((slot, id), &mut at, specs, st, fired);
                self.batches.done(slot);
            }
            std::mem::swap(&mut run, &mut next);
        }
        let timers = &mut self.waiting[tenant_idx as usize].timers;
        while let Some(&(d, k)) = timers.first() {
            if d > wm {
                break;
            }
            timers.pop_first();
            let Some(key) = self.keys.get_mut(&k) else {
                continue;
            };
            if let (KeyState::Sequence(state), RuleSpec::Sequence(q)) =
                (&mut key.state, &specs[key.rule as usize])
            {
                match state.on_watermark(q, wm) {
                    Outcome::Fired(f) => fired(seq_firing(key.rule, tenant, state.group(), f)),
                    Outcome::Suppressed => st.count_suppressed(key.rule, tenant),
                    Outcome::Quiet => {}
                }
            }
        }
    }

    /// Applies the buffered hit at `slot` (event id `id`) to its key.
    fn apply(
        &mut self,
        (slot, id): (Slot, EventId),
        at: &mut Drain<'_>,
        specs: &[RuleSpec],
        st: &mut WindowStats,
        fired: &mut impl FnMut(Firing),
    ) {
        let Drain {
            tenant,
            index: tenant_idx,
            cap,
            wm,
            ref mut swept,
        } = *at;
        let h = self.batches.get(slot);
        let spec = &specs[h.rule as usize];
        // A sequence's hit that cannot start a match changes nothing but an existing key.
        if let RuleSpec::Sequence(q) = spec
            && !q.starts(h.steps)
            && !self.keys.contains_key(&h.key)
        {
            return;
        }
        // Below its cap (the common case) a tenant's hit costs no extra lookup; at the cap, one
        // that would open a key is shed.
        let at_cap = self.live.tenant(tenant_idx) >= cap;
        if at_cap
            && !self.keys.contains_key(&h.key)
            && !may_open(
                &mut self.keys,
                &mut self.live,
                tenant_idx,
                cap,
                wm,
                specs,
                swept,
            )
        {
            *st.shed.entry((h.rule, h.tenant.to_string())).or_default() += 1;
            let period = h.ts - h.ts.rem_euclid(KEY_CAP_PERIOD_MS);
            if self.reported.insert((tenant_idx, h.rule, period)) {
                fired(Firing::health(
                    h.rule,
                    tenant,
                    Health::KeyCap { cap },
                    period,
                ));
            }
            return;
        }
        let waiting = &mut self.waiting[tenant_idx as usize];
        let mut opened = false;
        let key = self.keys.entry(h.key).or_insert_with(|| {
            opened = true;
            Key {
                state: KeyState::new(spec, &h.group),
                rule: h.rule,
                tenant: tenant_idx,
            }
        });
        if opened {
            self.live.open(h.rule, tenant_idx);
        }
        match (&mut key.state, spec) {
            (KeyState::Window(state), RuleSpec::Window(w)) => {
                match state.add(w, h.ts, id, h.measure.distinct_hash(), h.measure.number()) {
                    Outcome::Fired(f) => fired(Firing {
                        rule: h.rule,
                        tenant: h.tenant.to_string(),
                        group: h.group.to_strings(),
                        event_id: h.event_id.to_string(),
                        title_values: h.title_values.clone(),
                        value: f.value,
                        start: f.start,
                        end: h.ts,
                        events: f.events,
                        event_count: f.event_count,
                        health: None,
                    }),
                    Outcome::Suppressed => st.count_suppressed(h.rule, &h.tenant),
                    Outcome::Quiet => {}
                }
            }
            (KeyState::Sequence(state), RuleSpec::Sequence(q)) => {
                match state.add(q, h.ts, id, h.steps) {
                    Outcome::Fired(f) => {
                        fired(seq_firing(h.rule, &h.tenant, state.group(), f));
                    }
                    Outcome::Suppressed => st.count_suppressed(h.rule, &h.tenant),
                    Outcome::Quiet => {}
                }
                if let Some(d) = state.deadline(q) {
                    waiting.timers.insert((d, h.key));
                }
            }
            // A key restored under a rule of another kind starts afresh next sweep.
            _ => {}
        }
        if opened {
            file_expiry(&mut waiting.expiry, key.state.expiry(spec), h.key);
        }
    }

    fn encode(&self, tracker: &WatermarkTracker) -> Vec<u8> {
        let names = self.tenants.names();
        snapshot::encode(&WindowsSnapshotRef {
            tracker: Some(tracker),
            keys: self
                .keys
                .iter()
                .map(|(k, v)| KeyEntryRef {
                    key: *k,
                    rule: v.rule,
                    tenant: &names[v.tenant as usize],
                    state: &v.state,
                })
                .collect(),
            pending: self
                .waiting
                .iter()
                .flat_map(|w| w.pending.in_order())
                .map(|slot| self.batches.get(slot))
                .collect(),
        })
    }

    /// Sweeps every tenant, and records the live keys per (rule, tenant) and the watermarks.
    fn report(&mut self, tracker: &WatermarkTracker, specs: &[RuleSpec], st: &mut WindowStats) {
        let wms: Vec<i64> = (0..self.tenants.names().len())
            .map(|t| tracker.watermark(self.tenants.name(t as u32)))
            .collect();
        for (t, &wm) in wms.iter().enumerate() {
            self.sweep(t as u32, wm, specs);
        }
        // Health events are raised once per period: forget the periods well behind.
        let oldest = wms.iter().copied().min().unwrap_or(i64::MIN);
        self.reported
            .retain(|&(_, _, p)| p.saturating_add(2 * KEY_CAP_PERIOD_MS) > oldest);
        let names = self.tenants.names();
        st.live = self
            .live
            .by_rule
            .iter()
            .enumerate()
            .flat_map(|(r, by_tenant)| {
                by_tenant
                    .iter()
                    .enumerate()
                    .filter(|&(_, &n)| n > 0)
                    .map(move |(t, &n)| ((r as u32, names[t].clone()), n as usize))
            })
            .collect();
        st.watermarks = tracker
            .tenants()
            .map(|t| (t.to_owned(), tracker.watermark(t)))
            .collect();
    }

    fn note_size(&mut self, st: &mut WindowStats) {
        let keys = &self.keys;
        st.keys = keys.len();
        // Measuring visits every key's heap: do it when the key count has grown by an eighth
        // since the last measurement, so the reported peak is within an eighth of the true one.
        if keys.len() <= self.measured_keys + self.measured_keys / 8 {
            return;
        }
        self.measured_keys = keys.len();
        st.peak_keys = keys.len();
        // Each map slot holds the key hash and the `Key`, plus one control byte, and each key
        // is filed for expiry; the table's spare capacity and the files are shared out evenly
        // over the live keys.
        let slot = size_of::<(KeyHash, Key)>() + 1;
        let filed: usize = self
            .waiting
            .iter()
            .flat_map(|w| w.expiry.values())
            .map(|v| v.capacity() * size_of::<KeyHash>())
            .sum();
        let table = keys.capacity() * slot + filed;
        // Per rule: (keys, keys measured, heap bytes of those). Past the first
        // `MEASURE_ALL` keys of a rule one in `MEASURE_ONE_IN` is measured (map order is
        // unrelated to a key's content) and the rule's heap extrapolated from them.
        let mut by_rule: Vec<(usize, usize, usize)> = Vec::new();
        for k in keys.values() {
            let r = k.rule as usize;
            if by_rule.len() <= r {
                by_rule.resize(r + 1, (0, 0, 0));
            }
            let (n, measured, bytes) = &mut by_rule[r];
            if *n < MEASURE_ALL || n.is_multiple_of(MEASURE_ONE_IN) {
                *measured += 1;
                *bytes += k.state.heap_bytes();
            }
            *n += 1;
        }
        let by_rule: Vec<(usize, usize)> = by_rule
            .into_iter()
            .map(|(n, measured, bytes)| {
                let heap = (bytes * n).checked_div(measured).unwrap_or(0);
                (n, heap + table * n / keys.len())
            })
            .collect();
        st.peak_bytes = by_rule.iter().map(|r| r.1).sum();
        st.peak_by_rule = by_rule;
    }
}

/// The tenant a drain applies hits of, and its bounds.
struct Drain<'a> {
    tenant: &'a str,
    /// The tenant's index.
    index: u32,
    /// Its cap on live keys.
    cap: u64,
    /// Its watermark.
    wm: i64,
    /// Whether its expired keys were dropped in this drain ([`may_open`]).
    swept: bool,
}

/// Whether `tenant`, at its cap, may open one more key at watermark `wm` after dropping its
/// expired keys (once per drain, `swept`: a scan of every key).
fn may_open(
    keys: &mut KeyMap,
    live: &mut Live,
    tenant: u32,
    cap: u64,
    wm: i64,
    specs: &[RuleSpec],
    swept: &mut bool,
) -> bool {
    if !*swept {
        *swept = true;
        // Every expired key counts here, not only those filed as due: a sequence that an
        // `until` cleared expires before its filed time.
        keys.retain(|_, k| {
            let keep = k.tenant != tenant || !k.state.expired(&specs[k.rule as usize], wm);
            if !keep {
                live.drop_key(k.rule, tenant);
            }
            keep
        });
    }
    live.tenant(tenant) < cap
}

/// A rule's first keys whose heap [`Keys::note_size`] measures one by one.
const MEASURE_ALL: usize = 1024;
/// Past [`MEASURE_ALL`], one key in this many is measured.
const MEASURE_ONE_IN: usize = 16;

/// The firing of a single-event rule's hit (whose title values it takes).
fn single_firing(h: &mut Hit) -> Firing {
    Firing {
        rule: h.rule,
        tenant: h.tenant.to_string(),
        group: Vec::new(),
        events: vec![h.event_id.to_string()],
        event_id: h.event_id.to_string(),
        title_values: std::mem::take(&mut h.title_values),
        value: 1.0,
        start: h.ts,
        end: h.ts,
        event_count: 1,
        health: None,
    }
}

/// The firing of a sequence: its value is the number of events matched.
fn seq_firing(rule: u32, tenant: &str, group: &Group, f: SeqFired) -> Firing {
    Firing {
        rule,
        tenant: tenant.to_owned(),
        group: group.to_strings(),
        event_id: f.events.last().cloned().unwrap_or_default(),
        title_values: Vec::new(),
        value: f.event_count as f64,
        start: f.start,
        end: f.end,
        events: f.events,
        event_count: f.event_count,
        health: None,
    }
}

#[cfg(test)]
mod tests {
    use timely::dataflow::operators::vec::{Broadcast, Input};
    use timely::dataflow::operators::{Inspect, Probe};

    use super::*;
    use crate::records::Measure;
    use crate::window::{AggFn, WindowKind, WindowSpec};

    const MIN: i64 = 60_000;

    fn hit(epoch: u64, rule: u32, tenant: &str, key: u64, ts: i64) -> Hit {
        Hit {
            epoch,
            key: [key, rule as u64],
            rule,
            source: 0,
            ts,
            prior_max: i64::MIN,
            tenant: tenant.into(),
            event_id: EventId::new(&format!("e{epoch}-{key}")),
            group: [format!("g{key}")].into_iter().collect(),
            measure: Measure::None,
            steps: 0,
            title_values: vec![],
        }
    }

    #[test]
    fn expired_keys_are_dropped_as_the_watermark_passes_and_counted_per_rule_and_tenant() {
        // Rule 0: a sliding minute; rule 1: a tumbling 10 minutes. Neither fires.
        let window = |kind, window_ms| {
            RuleSpec::Window(WindowSpec {
                kind,
                agg: AggFn::Count,
                window_ms,
                threshold: vigil_model::Threshold::at_least(1e9),
                suppress_ms: 0,
                max_refs: 10,
            })
        };
        let specs = vec![
            window(WindowKind::Sliding, MIN),
            window(WindowKind::Tumbling, 10 * MIN),
        ];
        let epochs = REPORT_EVERY;
        let live = timely::execute_directly(move |worker| {
            let stats = WindowStatsHandle::default();
            let config = WindowsConfig {
                stats: Rc::clone(&stats),
                ..WindowsConfig::new(specs, 0)
            };
            let (mut hits, mut sums, probe) = worker.dataflow::<u64, _, _>(|scope| {
                let (hits_in, hits) = scope.new_input::<Hit>();
                let (sums_in, sums) = scope.new_input::<EpochSummary>();
                let probe = hits
                    .keyed_windows(sums.broadcast(), config)
                    .inspect(|f| panic!("nothing fires: {f:?}"))
                    .probe()
                    .0;
                (hits_in, sums_in, probe)
            });
            // Epoch e: 20 new keys per rule and tenant, a minute of event time after e − 1's.
            for e in 0..epochs {
                let at = e as i64 * MIN;
                for (t, tenant) in ["acme", "globex"].into_iter().enumerate() {
                    for k in 0..20 {
                        for rule in 0..2 {
                            let key = e * 100 + t as u64 * 20 + k;
                            hits.send(hit(e, rule, tenant, key, at + k as i64 * 10));
                        }
                    }
                    sums.send(EpochSummary {
                        epoch: e,
                        source: 0,
                        tenants: vec![(tenant.into(), at + 190)],
                        wall_ms: None,
                        checkpoint: false,
                    });
                }
                hits.advance_to(e + 1);
                sums.advance_to(e + 1);
                worker.step_while(|| probe.less_than(&(e + 1)));
            }
            stats.borrow().live.clone()
        });
        // Reported after the last epoch, before the end of input flushes everything. The
        // watermark is the last epoch's largest time, so its last hit still waits (19 keys
        // opened). Of the 64 × 20 keys each (rule, tenant) opened, the sliding minute keeps
        // those and the ones of the epoch before whose expiry bucket is not due yet (19); the
        // tumbling windows keep the current ten minutes' (epochs 60..=63: 3 × 20 + 19).
        for tenant in ["acme", "globex"] {
            assert_eq!(live[&(0, tenant.to_owned())], 38, "{tenant}");
            assert_eq!(live[&(1, tenant.to_owned())], 79, "{tenant}");
        }
        assert_eq!(live.len(), 4);
    }

    #[test]
    fn hit_vectors_keep_at_most_eight_allocations() {
        let vecs = HitVecs::default();
        assert!(vecs.take().capacity() == 0, "empty at first");
        vecs.give(Vec::new());
        assert!(
            vecs.0.borrow().vecs.is_empty(),
            "no allocation, nothing kept"
        );
        for _ in 0..10 {
            vecs.give(vec![hit(0, 0, "acme", 1, 0)]);
        }
        assert_eq!(vecs.0.borrow().vecs.len(), KEPT_VECS);
        let v = vecs.take();
        assert!(
            v.is_empty() && v.capacity() >= 1,
            "cleared, allocation kept"
        );
        vecs.note(100);
        assert!(
            vecs.take().capacity() >= 100,
            "room for the most hits noted"
        );
    }

    #[test]
    fn an_epoch_waits_in_the_vector_its_hits_came_in_and_hands_it_back() {
        let spec = RuleSpec::Window(WindowSpec {
            kind: WindowKind::Sliding,
            agg: AggFn::Count,
            window_ms: MIN,
            threshold: vigil_model::Threshold::at_least(1e9),
            suppress_ms: 0,
            max_refs: 10,
        });
        let (sent, back) = timely::execute_directly(move |worker| {
            let vecs = HitVecs::default();
            let config = WindowsConfig {
                hit_vecs: vecs.clone(),
                ..WindowsConfig::new(vec![spec], 0)
            };
            let (mut hits, mut sums, probe) = worker.dataflow::<u64, _, _>(|scope| {
                let (hits_in, hits) = scope.new_input::<Hit>();
                let (sums_in, sums) = scope.new_input::<EpochSummary>();
                let probe = hits.keyed_windows(sums.broadcast(), config).probe().0;
                (hits_in, sums_in, probe)
            });
            let mut batch: Vec<Hit> = (0..10).map(|k| hit(0, 0, "acme", k, k as i64)).collect();
            let sent = batch.as_ptr() as usize;
            hits.send_batch(&mut batch);
            for (e, max) in [(0, 9), (1, MIN)] {
                sums.send(EpochSummary {
                    epoch: e,
                    source: 0,
                    tenants: vec![("acme".into(), max)],
                    wall_ms: None,
                    checkpoint: false,
                });
                hits.advance_to(e + 1);
                sums.advance_to(e + 1);
                worker.step_while(|| probe.less_than(&(e + 1)));
            }
            // Epoch 1's watermark (a minute) has passed every hit of epoch 0.
            let back = vecs
                .0
                .borrow()
                .vecs
                .iter()
                .map(|v| v.as_ptr() as usize)
                .collect::<Vec<_>>();
            (sent, back)
        });
        assert!(back.contains(&sent), "{sent:#x} not among {back:x?}");
    }

    #[test]
    fn the_queue_gives_runs_in_time_id_and_arrival_order_however_they_arrive() {
        // Batches of arrivals, each nearly in time order and overlapping the ones waiting,
        // taken out up to a rising watermark; an ordered set is the oracle.
        let mut rng = crate::Lcg(0x2545_f491_4f6c_dd1d);
        let mut next = |n| rng.next(n);
        let (mut queue, mut oracle) = (Queue::default(), BTreeSet::new());
        let (mut seq, mut taken, mut expected) = (0u64, Vec::new(), Vec::new());
        for round in 0..200i64 {
            for _ in 0..next(40) {
                seq += 1;
                let ts = round * 10 + next(30) as i64 - 10;
                let id = EventId::new(&format!("e{}", next(5)));
                let run = (round as u32, seq as u32, 1 + next(3) as u32);
                queue.push((ts, id.clone(), seq), run);
                oracle.insert((ts, id, seq, run));
            }
            let wm = round * 10 - next(15) as i64;
            while let Some(r) = queue.pop_before(wm) {
                taken.push(r);
            }
            while let Some(first) = oracle.first().filter(|k| k.0 < wm).cloned() {
                oracle.remove(&first);
                expected.push((first.1, first.3));
            }
            assert_eq!(queue.is_empty(), oracle.is_empty(), "round {round}");
        }
        assert!(expected.len() > 1000);
        assert_eq!(taken, expected);
    }
}
