//! Vigil's detection engine: compiles a [`vigil_dsl::RuleSet`] into a timely dataflow and runs
//! it over a source, writing alerts and rejects to sinks.
//!
//! The dataflow per worker (see `docs/ARCHITECTURE.md` and ADR 0001):
//!
//! ```text
//! reader thread ─chunks (round robin, bounded channels)─► Source ──hits──► exchange(tenant, rule, group)
//!                                                           │  └─summaries─► broadcast ─┐   │
//!                                                           └─parsed chunks─► Lateness ◄─┤   ▼
//!                                                                                        └► KeyedWindows ─► alerts sink
//! ```
//!
//! Delivery: embedded mode reads files and stdin, so there is nothing to acknowledge; every
//! alert is written before `run` returns, and the sinks are flushed. Backpressure: each worker's
//! chunk channel holds a few chunks; a reader blocks when it is full.
//!
//! The engine does no IO of its own: sources and sinks are plugged in through [`io`].

pub mod checkpoint;
mod decode;
mod filter;
pub mod io;
mod limits;
mod metrics;
mod quiet;
mod rules;
mod source;
mod stats;

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::Capability;
use timely::dataflow::operators::Concatenate;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::vec::{Broadcast, Filter};
use timely::scheduling::SyncActivator;
use vigil_model::TenantId;
use vigil_model::time::{format_rfc3339_millis, now_millis};
use vigil_operators::keyed_windows::{WindowStats, WindowStatsHandle};
use vigil_operators::watermark::WatermarkTracker;
use vigil_operators::{
    EventId, Firing, Hit, HitVecs, KeyedWindows, Lateness, SmallStr, WindowsConfig, WindowsSnapshot,
};

use crate::checkpoint::{Coordinator, ProgressHandle, RuleRef, ToCoordinator};
pub use checkpoint::{CheckpointConfig, CheckpointError};
pub use metrics::EngineMetrics;

pub use io::{
    AlertSink, ChunkSink, EventSource, Normalizer, Record, Reject, RejectReason, RejectSink,
    SinkError, SourceError,
};
pub use limits::{
    ALERT_PERIOD_MS, DEFAULT_ALERTS_PER_MINUTE, DEFAULT_KEYS_PER_TENANT, TenantCaps, TenantLimits,
};
pub use rules::{Compiled, MAX_EVENT_REFS};
pub use stats::RunStats;

use crate::decode::Decoded;
use crate::filter::Memo;
use crate::quiet::{QuietEntry, QuietGate};
use crate::rules::{ALERT_SOURCE, HitBase, Matched};
use crate::source::{Chunk, SourceCtx};
use crate::stats::WorkerStats;

/// Default allowed lateness: 10 s.
pub const DEFAULT_LATENESS_MS: u64 = 10_000;

/// How a run is set up.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Timely worker threads.
    pub workers: usize,
    /// Allowed out-of-orderness of the source, ms.
    pub lateness_ms: u64,
    /// Tenant of events without `tenant_id`; events with a different one are rejected.
    pub default_tenant: Option<TenantId>,
    /// Chunks buffered per worker before the reader blocks.
    pub channel_chunks: usize,
    /// Where checkpoints are kept; `None` for runs that end with their input (files).
    pub checkpoint: Option<CheckpointConfig>,
    /// Live metrics, published by every worker about once a second.
    pub metrics: Option<Arc<EngineMetrics>>,
    /// Caps per tenant on live keys and on alerts per rule and minute.
    pub limits: TenantLimits,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            workers: 1,
            lateness_ms: DEFAULT_LATENESS_MS,
            default_tenant: None,
            channel_chunks: 4,
            checkpoint: None,
            metrics: None,
            limits: TenantLimits::default(),
        }
    }
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The source failed.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// A sink failed.
    #[error("{0}")]
    Sink(String),
    /// Timely could not start or a worker failed.
    #[error("engine worker failed: {0}")]
    Worker(String),
    /// Bad configuration.
    #[error("invalid engine configuration: {0}")]
    Config(String),
    /// A checkpoint could not be read.
    #[error(transparent)]
    Restore(#[from] CheckpointError),
    /// A checkpoint could not be committed.
    #[error("checkpoint failed: {0}")]
    Checkpoint(String),
}

/// A worker's counters for `/metrics`.
fn snapshot(st: &WorkerStats, win: &WindowStats) -> metrics::WorkerSnapshot {
    metrics::WorkerSnapshot {
        events: st.events_by_tenant.clone(),
        rejected: st.rejected.clone(),
        late: win.late.iter().map(|(k, v)| (k.clone(), *v)).collect(),
        alerts: st.alerts.clone(),
        excepted: st.excepted.clone(),
        shed_keys: win.shed.iter().map(|(k, v)| (k.clone(), *v)).collect(),
        shed_alerts: st.shed_alerts.clone(),
        suppressed: {
            let mut all = st.suppressed.clone();
            for (k, v) in &win.suppressed {
                *all.entry(k.clone()).or_default() += v;
            }
            all
        },
        keys: win.live.iter().map(|(k, v)| (k.clone(), *v)).collect(),
        watermarks: win.watermarks.iter().cloned().collect(),
    }
}

/// Sends every snapshot part of this worker whose alerts are all in the sink to the
/// coordinator, in barrier order.
fn hand_over(
    parts: &RefCell<Parts>,
    alerts_done: u64,
    stages: usize,
    worker: usize,
    tx: &Sender<ToCoordinator>,
) {
    let mut parts = parts.borrow_mut();
    while let Some(entry) = parts.first_entry() {
        let epoch = *entry.key();
        if epoch >= alerts_done || !entry.get().complete(stages) {
            return;
        }
        let part = entry.remove();
        let _ = tx.send(ToCoordinator::Part {
            epoch,
            worker,
            windows: part.windows.into_iter().flatten().collect(),
            quiet: part.quiet.into_iter().flatten().flatten().collect(),
            lateness: part.lateness.unwrap_or_default(),
        });
    }
}

/// A worker's window counters over all its stages.
fn merged(stats: &[WindowStatsHandle]) -> WindowStats {
    let mut all = WindowStats::default();
    for s in stats {
        all.absorb(&s.borrow());
    }
    all
}

/// The part of a worker's restored state that the stage of `level` holds.
fn stage_part(all: &WindowsSnapshot, rules: &Compiled, level: u32) -> WindowsSnapshot {
    WindowsSnapshot {
        tracker: all.tracker.clone(),
        keys: all
            .keys
            .iter()
            .filter(|k| rules.level(k.rule) == level)
            .cloned()
            .collect(),
        pending: all
            .pending
            .iter()
            .filter(|h| rules.level(h.rule) == level)
            .cloned()
            .collect(),
    }
}

/// The sinks of a run.
#[derive(Clone)]
pub struct Sinks {
    /// Where alerts go.
    pub alerts: Arc<dyn AlertSink>,
    /// Where rejected lines (including late events) go, if anywhere.
    pub rejects: Option<Arc<dyn RejectSink>>,
}

impl std::fmt::Debug for Sinks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sinks")
            .field("rejects", &self.rejects.is_some())
            .finish()
    }
}

struct Dispatch {
    senders: Vec<SyncSender<Chunk>>,
    activators: Vec<SyncActivator>,
    seq: u64,
    stopped: bool,
    coordinator: Option<Sender<ToCoordinator>>,
    progress: ProgressHandle,
    restored: Option<u64>,
    abort: Arc<AtomicBool>,
    /// Whether the source brought a normalizer; without one its records are refused.
    normalizes: bool,
}

impl Dispatch {
    fn dispatch(
        &mut self,
        data: Vec<u8>,
        records: Vec<Record>,
        offset: u64,
        wall_ms: Option<i64>,
        barrier: bool,
    ) -> bool {
        if self.stopped {
            return false;
        }
        let w = (self.seq % self.senders.len() as u64) as usize;
        let chunk = Chunk {
            seq: self.seq,
            source: 0,
            offset,
            data,
            records,
            wall_ms,
            barrier,
        };
        if self.senders[w].send(chunk).is_err() {
            self.stopped = true;
            return false;
        }
        let _ = self.activators[w].activate();
        self.seq += 1;
        true
    }
}

impl ChunkSink for Dispatch {
    fn send(&mut self, data: Vec<u8>, offset: u64, wall_ms: Option<i64>) -> bool {
        self.dispatch(data, Vec::new(), offset, wall_ms, false)
    }

    fn send_records(&mut self, records: Vec<Record>, wall_ms: Option<i64>) -> bool {
        // Only a source that names its normalizer may send records: the workers normalize
        // them with it.
        self.normalizes && self.dispatch(Vec::new(), records, 0, wall_ms, false)
    }

    fn checkpoint(&mut self, position: u64) -> bool {
        // Without a store there is nothing to do: sources that need checkpoints are refused
        // before the run starts.
        let Some(tx) = &self.coordinator else {
            return true;
        };
        if self.progress.lock().failed.is_some() {
            self.stopped = true;
            return false;
        }
        let epoch = self.seq;
        if tx.send(ToCoordinator::Barrier { epoch, position }).is_err() {
            self.stopped = true;
            return false;
        }
        self.dispatch(Vec::new(), Vec::new(), 0, None, true)
    }

    fn committed(&self) -> Option<u64> {
        self.progress.lock().committed
    }

    fn restored(&self) -> Option<u64> {
        self.restored
    }

    fn stop(&mut self) {
        self.abort.store(true, Ordering::SeqCst);
        self.stopped = true;
        for a in &self.activators {
            let _ = a.activate();
        }
    }
}

/// A worker's snapshot parts at one barrier.
#[derive(Debug, Default)]
struct Part {
    /// The encoded window state, by stage.
    windows: Vec<Option<Vec<u8>>>,
    /// The alert stage's quiet periods (suppression across groups), by stage.
    quiet: Vec<Option<Vec<QuietEntry>>>,
    /// The encoded lateness tracker.
    lateness: Option<Vec<u8>>,
}

impl Part {
    /// Sets stage `level`'s part in `parts` (one slot per stage).
    fn stage<T>(parts: &mut Vec<Option<T>>, stages: usize, level: usize, part: T) {
        parts.resize_with(stages, || None);
        parts[level] = Some(part);
    }

    /// Whether every stage's parts and the tracker are in.
    fn complete(&self, stages: usize) -> bool {
        fn full<T>(parts: &[Option<T>], stages: usize) -> bool {
            parts.len() == stages && parts.iter().all(Option::is_some)
        }
        full(&self.windows, stages) && full(&self.quiet, stages) && self.lateness.is_some()
    }
}

/// Snapshot parts by barrier epoch.
type Parts = BTreeMap<u64, Part>;

/// Runs `rules` over `source` until the input ends, then flushes every window — or, when the
/// source stops the engine ([`ChunkSink::stop`]), until then, without flushing.
///
/// With a checkpoint store the run first restores the newest checkpoint (the source resumes
/// after its position) and commits a checkpoint at every barrier the source asks for.
pub fn run(
    config: &EngineConfig,
    rules: Arc<Compiled>,
    source: Box<dyn EventSource>,
    sinks: Sinks,
) -> Result<RunStats, EngineError> {
    if config.workers == 0 {
        return Err(EngineError::Config("workers must be at least 1".into()));
    }
    if source.needs_checkpoints() && config.checkpoint.is_none() {
        return Err(EngineError::Config(format!(
            "source `{}` acknowledges input only behind checkpoints: configure a state directory",
            source.name()
        )));
    }
    let started = Instant::now();
    let workers = config.workers;
    let source_name: Arc<str> = source.name().into();
    let normalizer = source.normalizer();
    let normalizes = normalizer.is_some();

    // Restore.
    let mut restored = None;
    if let Some(ck) = &config.checkpoint
        && let Some((c, path)) = checkpoint::load(&ck.dir, &source_name)?
    {
        restored = Some(c.restore(&path, &rules, workers)?);
    }
    let restored_position = restored.as_ref().map(|r| r.position);
    let restored_dropped = restored.as_ref().map_or(0, |r| r.dropped);
    let next_number = restored.as_ref().map_or(1, |r| r.number + 1);
    let (restored_windows, restored_quiet, restored_lateness) = match restored {
        Some(r) => (
            r.windows.into_iter().map(Some).collect(),
            r.quiet.into_iter().map(Some).collect(),
            r.lateness,
        ),
        None => (
            (0..workers).map(|_| None).collect::<Vec<_>>(),
            (0..workers).map(|_| None).collect::<Vec<_>>(),
            None,
        ),
    };
    let restored_windows: Arc<Vec<Mutex<Option<WindowsSnapshot>>>> =
        Arc::new(restored_windows.into_iter().map(Mutex::new).collect());
    let restored_quiet: Arc<Vec<Mutex<Option<Vec<QuietEntry>>>>> =
        Arc::new(restored_quiet.into_iter().map(Mutex::new).collect());

    // Checkpoint coordinator.
    let progress = ProgressHandle::default();
    // The restored checkpoint is committed already.
    progress.lock().committed = restored_position;
    let (coordinator_tx, coordinator) = match &config.checkpoint {
        Some(ck) => {
            let (tx, rx) = std::sync::mpsc::channel();
            let c = Coordinator {
                dir: ck.dir.clone(),
                source: source_name.to_string(),
                rules: (0..rules.len() as u32)
                    .map(|i| RuleRef {
                        id: rules.rule_id(i).to_owned(),
                        identity: rules.identity(i),
                    })
                    .collect(),
                workers,
                next_number,
                sinks: sinks.clone(),
                progress: progress.clone(),
            };
            let handle = std::thread::Builder::new()
                .name("vigil-checkpoint".into())
                .spawn(move || c.run(rx))
                .map_err(|e| {
                    EngineError::Worker(format!("failed to start the checkpoint thread: {e}"))
                })?;
            (Some(tx), Some(handle))
        }
        None => (None, None),
    };

    let (mut senders, mut receivers) = (Vec::new(), Vec::new());
    for _ in 0..workers {
        let (tx, rx) = sync_channel::<Chunk>(config.channel_chunks.max(1));
        senders.push(tx);
        receivers.push(Mutex::new(Some(rx)));
    }
    let receivers: Arc<Vec<Mutex<Option<Receiver<Chunk>>>>> = Arc::new(receivers);
    let (act_tx, act_rx) = std::sync::mpsc::channel::<(usize, SyncActivator)>();
    let act_tx = Mutex::new(act_tx);
    let abort = Arc::new(AtomicBool::new(false));

    let reader_coordinator = coordinator_tx.clone();
    let reader_progress = progress.clone();
    let reader_abort = Arc::clone(&abort);
    let reader = std::thread::Builder::new()
        .name("vigil-reader".into())
        .spawn(move || -> Result<(), SourceError> {
            let mut slots: Vec<Option<SyncActivator>> = (0..workers).map(|_| None).collect();
            for _ in 0..workers {
                match act_rx.recv() {
                    Ok((i, a)) => slots[i] = Some(a),
                    Err(_) => return Ok(()),
                }
            }
            let activators: Vec<SyncActivator> = slots.into_iter().flatten().collect();
            let mut dispatch = Dispatch {
                senders,
                activators,
                seq: 0,
                stopped: false,
                coordinator: reader_coordinator,
                progress: reader_progress,
                restored: restored_position,
                abort: reader_abort,
                normalizes,
            };
            let result = source.run(&mut dispatch);
            let Dispatch {
                senders,
                activators,
                ..
            } = dispatch;
            drop(senders);
            for a in &activators {
                let _ = a.activate();
            }
            result
        })
        .map_err(|e| EngineError::Worker(format!("failed to start the reader thread: {e}")))?;

    let timely_config = if workers == 1 {
        timely::Config::thread()
    } else {
        timely::Config::process(workers)
    };
    let lateness = config.lateness_ms;
    let limits = config.limits.clone();
    let default_tenant = config.default_tenant.clone();
    let worker_rules = Arc::clone(&rules);
    let stages = rules.stages() as usize;
    let worker_sinks = sinks.clone();
    let worker_coordinator = Mutex::new(coordinator_tx);
    if let Some(m) = &config.metrics {
        m.start(
            (0..rules.len() as u32)
                .map(|i| rules.rule_id(i).to_owned())
                .collect(),
            workers,
            progress.clone(),
        );
    }
    let worker_metrics = config.metrics.clone();
    let guards = timely::execute(timely_config, move |worker| {
        let index = worker.index();
        let rx = receivers[index]
            .lock()
            .ok()
            .and_then(|mut r| r.take())
            .unwrap_or_else(|| sync_channel(1).1);
        let coordinator = worker_coordinator
            .lock()
            .ok()
            .and_then(|c| c.clone());
        let restore = restored_windows[index].lock().ok().and_then(|mut r| r.take());
        let restore_quiet = restored_quiet[index]
            .lock()
            .ok()
            .and_then(|mut r| r.take())
            .unwrap_or_default();
        let stats = Rc::new(RefCell::new(WorkerStats::default()));
        let window_stats: Vec<WindowStatsHandle> = (0..stages).map(|_| Rc::default()).collect();
        let parts: Rc<RefCell<Parts>> = Rc::default();
        let alerts_done: Vec<Rc<Cell<u64>>> =
            (0..stages).map(|_| Rc::new(Cell::new(0))).collect();
        let rules = Arc::clone(&worker_rules);
        let sinks = worker_sinks.clone();
        let abort = Arc::clone(&abort);
        let metrics = worker_metrics.clone();
        let hit_vecs = HitVecs::default();
        let mut late_tracker = WatermarkTracker::new(lateness, vec![lateness]);
        if let Some(t) = restored_lateness.clone() {
            late_tracker.restore(t);
        }
        let address = worker.dataflow::<u64, _, _>(|scope| {
            let ctx = SourceCtx {
                rules: Arc::clone(&rules),
                default_tenant: default_tenant.clone(),
                source_name: Arc::clone(&source_name),
                rejects: sinks.rejects.clone(),
                normalizer: normalizer.clone(),
                stats: Rc::clone(&stats),
                abort: Arc::clone(&abort),
                hit_vecs: hit_vecs.clone(),
            };
            let (hits, chunks, summaries, address) = source::source(scope, rx, ctx);
            let summaries = summaries.broadcast();
            let late_sink = sinks.rejects.clone();
            let late_stats = Rc::clone(&stats);
            let done_stats = Rc::clone(&stats);
            let late_name = Arc::clone(&source_name);
            let late_parts = Rc::clone(&parts);
            chunks.lateness(
                summaries.clone(),
                late_tracker,
                move |c: &source::ParsedChunk, i| {
                    let Some(sink) = &late_sink else { return };
                    let (line, offset, ts) = c.line(i);
                    let r = Reject {
                        reason: RejectReason::Late,
                        detail: format!(
                            "event time {} is older than the watermark of its tenant (allowed lateness {})",
                            format_rfc3339_millis(ts),
                            vigil_model::duration::format_duration(lateness)
                        ),
                        source: &late_name,
                        tenant: Some(c.tenant(i)),
                        offset,
                        line,
                        record: None,
                    };
                    if let Err(e) = sink.write(&r) {
                        late_stats.borrow_mut().sink_error(e);
                    }
                },
                move |_c, late| done_stats.borrow_mut().late += late,
                Box::new(move |e, bytes| {
                    late_parts.borrow_mut().entry(e).or_default().lateness = Some(bytes);
                }),
            );
            // Stage 0 runs the rules over events; stage k the rules over alerts of level k,
            // fed by the alerts of every earlier stage.
            let mut alert_hits = Vec::new();
            let mut event_hits = Some(hits);
            for level in 0..stages {
                let stage_hits = match event_hits.take() {
                    Some(h) => h,
                    None => {
                        let level_rules = Arc::clone(&rules);
                        scope
                            .concatenate(alert_hits.clone())
                            .filter(move |h: &Hit| level_rules.level(h.rule) as usize == level)
                    }
                };
                let windows_parts = Rc::clone(&parts);
                let windows = WindowsConfig {
                    specs: rules.specs.clone(),
                    default_lateness_ms: lateness,
                    lateness_ms: vec![lateness],
                    stats: Rc::clone(&window_stats[level]),
                    restore: restore
                        .as_ref()
                        .map(|r| stage_part(r, &rules, level as u32)),
                    on_checkpoint: Box::new(move |e, bytes| {
                        let mut parts = windows_parts.borrow_mut();
                        let windows = &mut parts.entry(e).or_default().windows;
                        Part::stage(windows, stages, level, bytes);
                    }),
                    key_caps: limits.key_caps(workers),
                    hit_vecs: hit_vecs.clone(),
                };
                let firings = stage_hits.keyed_windows(summaries.clone(), windows);
                let quiet = restore_quiet
                    .iter()
                    .filter(|q| rules.level(q.rule) as usize == level)
                    .cloned()
                    .collect();
                alert_hits.push(alerts(
                    firings,
                    AlertStage {
                        level,
                        stages,
                        gate: limits::AlertGate::new(limits.clone()),
                        quiet: QuietGate::restore(quiet),
                        rules: Arc::clone(&rules),
                        stats: Rc::clone(&stats),
                        sink: Arc::clone(&sinks.alerts),
                        done: Rc::clone(&alerts_done[level]),
                        parts: Rc::clone(&parts),
                    },
                ));
            }
            address
        });
        if let Ok(tx) = act_tx.lock() {
            let _ = tx.send((index, worker.sync_activator_for(address.to_vec())));
        }
        // With metrics, wake at least twice a second to publish them.
        let park = metrics.as_ref().map(|_| Duration::from_millis(500));
        let mut published = Instant::now();
        while !abort.load(Ordering::SeqCst) && worker.step_or_park(park) {
            if let Some(tx) = &coordinator {
                let done = alerts_done.iter().map(|d| d.get()).min().unwrap_or(0);
                hand_over(&parts, done, stages, index, tx);
            }
            if let Some(m) = &metrics
                && published.elapsed() >= Duration::from_secs(1)
            {
                m.publish(index, snapshot(&stats.borrow(), &merged(&window_stats)));
                published = Instant::now();
            }
        }
        if let Some(m) = &metrics {
            m.publish(index, snapshot(&stats.borrow(), &merged(&window_stats)));
        }
        if abort.load(Ordering::SeqCst) {
            // Stopped, not ended: drop the dataflow instead of letting timely drain it.
            for id in worker.installed_dataflows() {
                worker.drop_dataflow(id);
            }
        }
        let stats = stats.take();
        let windows = merged(&window_stats);
        (stats, windows)
    })
    .map_err(EngineError::Worker)?;

    let mut total = RunStats::default();
    let mut sink_errors = Vec::new();
    for result in guards.join() {
        let (w, win) = result.map_err(EngineError::Worker)?;
        total.lines += w.lines;
        total.events += w.events;
        total.late += w.late;
        for (r, n) in w.rejected {
            *total.rejected.entry(r).or_default() += n;
        }
        for ((rule, _), n) in w.alerts {
            *total
                .alerts
                .entry(rules.rule_id(rule).to_owned())
                .or_default() += n;
        }
        // Per (rule index, tenant) on the worker; per (rule id, tenant) in the run.
        let by_id = |into: &mut BTreeMap<(String, String), u64>,
                     from: &mut dyn Iterator<Item = ((u32, String), u64)>| {
            for ((rule, tenant), n) in from {
                *into
                    .entry((rules.rule_id(rule).to_owned(), tenant))
                    .or_default() += n;
            }
        };
        by_id(&mut total.excepted, &mut w.excepted.into_iter());
        by_id(&mut total.late_by_rule, &mut win.late.into_iter());
        by_id(&mut total.shed_keys, &mut win.shed.into_iter());
        by_id(&mut total.shed_alerts, &mut w.shed_alerts.into_iter());
        by_id(&mut total.suppressed, &mut win.suppressed.into_iter());
        by_id(&mut total.suppressed, &mut w.suppressed.into_iter());
        total.health_alerts += w.health_alerts;
        for (rule, &(n, b)) in win.peak_by_rule.iter().enumerate() {
            if n > 0 {
                let e = total
                    .state_by_rule
                    .entry(rules.rule_id(rule as u32).to_owned())
                    .or_default();
                e.0 += n;
                e.1 += b;
            }
        }
        total.peak_keys += win.peak_keys;
        total.peak_state_bytes += win.peak_bytes;
        sink_errors.extend(w.sink_errors);
    }
    match reader.join() {
        Ok(r) => r?,
        Err(_) => return Err(EngineError::Worker("the reader thread panicked".into())),
    }
    if let Some(c) = coordinator
        && c.join().is_err()
    {
        return Err(EngineError::Worker("the checkpoint thread panicked".into()));
    }
    {
        let p = progress.lock();
        if let Some(e) = &p.failed {
            return Err(EngineError::Checkpoint(e.clone()));
        }
        total.checkpoints = p.written;
        total.checkpoint_bytes = p.bytes;
        total.checkpoint_slowest = p.slowest;
    }
    total.restored_from = restored_position;
    total.restored_dropped = restored_dropped;
    if let Err(e) = sinks.alerts.flush() {
        sink_errors.push(e.to_string());
    }
    if let Some(r) = &sinks.rejects
        && let Err(e) = r.flush()
    {
        sink_errors.push(e.to_string());
    }
    if let Some(first) = sink_errors.into_iter().next() {
        return Err(EngineError::Sink(first));
    }
    total.elapsed = started.elapsed();
    Ok(total)
}

/// What the alert operator of one stage works with.
struct AlertStage {
    /// The stage: 0 over events, k over alerts of level k − 1.
    level: usize,
    stages: usize,
    /// The alert-rate caps.
    gate: limits::AlertGate,
    /// Suppression across groups.
    quiet: QuietGate,
    rules: Arc<Compiled>,
    stats: Rc<RefCell<WorkerStats>>,
    sink: Arc<dyn AlertSink>,
    /// Set to the epoch before which every alert of the stage is in the sink.
    done: Rc<Cell<u64>>,
    /// Where the quiet periods at each barrier go.
    parts: Rc<RefCell<Parts>>,
}

/// The alerts operator of one stage: gathers the firings of each (tenant, rule) on one worker
/// and, once every worker's firings of an epoch are in, applies them in a fixed order (by rule
/// and tenant, in event time, then event id): drops those a suppression across groups holds
/// back (`quiet`), sheds those past the tenant's alert rate (`gate`), turns firings into alerts
/// (and health events into health alerts) and writes them to the alert sink. It records in
/// `done` the epoch before which every alert of the stage is in the sink, puts its quiet
/// periods at each barrier into the checkpoint parts, and emits, for the rules over alerts that
/// read them, the hits the alerts make — at the epoch that raised them, so that the next stage
/// applies them under the same watermark.
fn alerts<'s>(firings: StreamVec<'s, u64, Firing>, stage: AlertStage) -> StreamVec<'s, u64, Hit> {
    let AlertStage {
        level,
        stages,
        mut gate,
        mut quiet,
        rules,
        stats,
        sink,
        done,
        parts,
    } = stage;
    let by_rule_and_tenant = Exchange::new(|f: &Firing| quiet::alert_route(f.rule, &f.tenant));
    firings.unary_frontier(by_rule_and_tenant, "Alerts", move |_cap, _info| {
        let mut memo = Memo::default();
        let mut hits = Vec::new();
        // Firings by epoch, until every worker's are in.
        let mut stash: BTreeMap<u64, (Capability<u64>, Vec<Firing>)> = BTreeMap::new();
        move |(input, frontier), output| {
            input.for_each(|cap, data| {
                // Firings travel at the epoch that raised them (`keyed_windows`).
                let Some(epoch) = cap.least().copied() else {
                    return;
                };
                match stash.entry(epoch) {
                    std::collections::btree_map::Entry::Occupied(mut e) => {
                        e.get_mut().1.append(data)
                    }
                    std::collections::btree_map::Entry::Vacant(e) => {
                        if let Some(c) = cap.retain_least(0) {
                            e.insert((c, std::mem::take(data)));
                        }
                    }
                }
            });
            let complete = |e: u64| !frontier.less_equal(&e);
            // Barriers the local window stage has passed whose quiet periods are still owed.
            let mut owed: Vec<u64> = parts
                .borrow()
                .iter()
                .take_while(|(e, _)| complete(**e))
                .filter(|(_, p)| {
                    p.windows.get(level).is_some_and(Option::is_some)
                        && p.quiet.get(level).is_none_or(Option::is_none)
                })
                .map(|(e, _)| *e)
                .collect();
            owed.reverse();
            let mut batch = Vec::new();
            loop {
                let next = stash
                    .first_key_value()
                    .map(|(&e, _)| e)
                    .filter(|&e| complete(e));
                match (next, owed.last().copied()) {
                    // Every firing up to a barrier is applied before its quiet periods are kept.
                    (Some(e), b) if b.is_none_or(|b| e <= b) => {
                        let Some((cap, mut fs)) = stash.remove(&e) else {
                            break;
                        };
                        fs.sort_by(|a, b| order(a).cmp(&order(b)));
                        let mut st = stats.borrow_mut();
                        let mut apply = Apply {
                            gate: &mut gate,
                            quiet: &mut quiet,
                            rules: &rules,
                            st: &mut st,
                            memo: &mut memo,
                            hits: &mut hits,
                            batch: &mut batch,
                            epoch: e,
                            now: now_millis(),
                        };
                        for f in fs {
                            apply.firing(f);
                        }
                        if !hits.is_empty() {
                            output.session(&cap).give_iterator(hits.drain(..));
                        }
                    }
                    (_, Some(b)) => {
                        owed.pop();
                        let entries = quiet.entries();
                        let mut parts = parts.borrow_mut();
                        let part = &mut parts.entry(b).or_default().quiet;
                        Part::stage(part, stages, level, entries);
                    }
                    (_, None) => break,
                }
            }
            if !batch.is_empty()
                && let Err(e) = sink.write(&batch)
            {
                stats.borrow_mut().sink_error(e);
            }
            // Every alert of the epochs before this frontier is in the sink: the epochs held
            // back are at or after it.
            done.set(
                frontier
                    .frontier()
                    .iter()
                    .min()
                    .copied()
                    .unwrap_or(u64::MAX),
            );
        }
    })
}

/// The order the alert stage applies an epoch's firings in: by rule and tenant, in event time,
/// then by triggering event id (the rest only breaks ties between health events).
fn order(f: &Firing) -> (u32, &str, i64, &str, bool, &[String], i64) {
    (
        f.rule,
        &f.tenant,
        f.end,
        &f.event_id,
        f.health.is_some(),
        &f.group,
        f.start,
    )
}

/// Applies one epoch's firings of the alert stage, one at a time in the stage's order.
struct Apply<'a> {
    gate: &'a mut limits::AlertGate,
    quiet: &'a mut QuietGate,
    rules: &'a Compiled,
    st: &'a mut WorkerStats,
    memo: &'a mut Memo,
    hits: &'a mut Vec<Hit>,
    batch: &'a mut Vec<vigil_model::Alert>,
    epoch: u64,
    now: i64,
}

impl Apply<'_> {
    fn firing(&mut self, f: Firing) {
        let (rules, st) = (self.rules, &mut *self.st);
        if f.health.is_none()
            && let Some(q) = rules.quiet(f.rule)
            && !self.quiet.admit(q, &f)
        {
            *st.suppressed.entry((f.rule, f.tenant)).or_default() += 1;
            return;
        }
        let admit = self.gate.admit(&f);
        // A detection not raised was shed past the tenant's alert rate.
        if f.health.is_none() && admit != limits::Admit::Alert {
            *st.shed_alerts
                .entry((f.rule, f.tenant.clone()))
                .or_default() += 1;
        }
        match admit {
            limits::Admit::Alert => {}
            limits::Admit::Health(h) => {
                st.health_alerts += 1;
                self.batch.push(rules.health_alert(&h, self.now));
                return;
            }
            limits::Admit::Drop => return,
        }
        *st.alerts.entry((f.rule, f.tenant.clone())).or_default() += 1;
        let rule = f.rule;
        let readers = rules.readers(rule);
        if readers.is_empty() {
            self.batch.push(rules.alert(f, self.now));
            return;
        }
        let title_values = f.title_values.clone();
        let alert = rules.alert(f, self.now);
        let line = rules.alert_event(rule, &alert, &title_values);
        let mut d = Decoded::default();
        if d.decode(&rules.trie, &line).is_ok() {
            self.memo.reset(&rules.filters);
            let tenant = SmallStr::from(alert.tenant_id.as_str());
            let at = HitBase {
                epoch: self.epoch,
                source: ALERT_SOURCE,
                ts: alert.timestamp,
                prior_max: i64::MIN,
                tenant: alert.tenant_id.as_str(),
                hit_tenant: &tenant,
            };
            let mut id = || EventId::new(&alert.id);
            for &r in readers {
                let m = rules.matches(r, &d, self.memo, &at, &mut id, self.hits);
                if let Matched::Excepted = m {
                    *st.excepted.entry((r, at.tenant.to_string())).or_default() += 1;
                }
            }
        }
        self.batch.push(alert);
    }
}
