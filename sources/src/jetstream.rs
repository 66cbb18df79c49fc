//! The engine's stream source: a durable pull consumer on `NORMALIZED` (ADR 0004, ADR 0005).
//!
//! Messages (one canonical event each) are fetched in batches on a tokio runtime of the source's
//! own thread and handed to the engine as chunks of lines; the engine's bounded channels block
//! the hand-over when the workers are busy, so no more is fetched — backpressure reaches NATS,
//! where at most `max_ack_pending` messages wait unacknowledged.
//!
//! Delivery (`SEMANTICS.md`, Delivery): a message is acknowledged once a committed checkpoint
//! covers it. The source asks for a checkpoint every `checkpoint_interval`, and early when half
//! of `max_ack_pending` is unacknowledged (so the server never stops delivering for want of
//! acks); it acknowledges with `AckPolicy::All` — one ack per checkpoint for everything up to
//! the checkpoint's stream sequence. On start the consumer is recreated to deliver from the
//! sequence after the restored checkpoint, so a restart never waits for `ack_wait` to pass.
//! A message delivered again (the server redelivers what was not acknowledged within
//! `ack_wait`) has a stream sequence the source has already passed: it is skipped and counted.
//!
//! Time: a chunk read while the consumer still has a backlog carries no wall clock (replayed
//! input, deterministic); once the consumer is caught up, chunks and idle ticks carry the wall
//! clock, so a (tenant, source) silent for longer than its lateness advances (`SEMANTICS.md`,
//! Idleness). An outage of the engine is not silence: restored watermarks count silence from
//! the first live tick after the restart.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer};
use futures::StreamExt;
use vigil_bus::Subject;
use vigil_engine::{ChunkSink, EventSource, Normalizer, Record, RejectReason, SourceError};
use vigil_model::TenantId;
use vigil_model::time::now_millis;
use vigil_normalize::service::RawMeta;

/// Where a consumer without a checkpoint starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// Everything the stream holds.
    All,
    /// Only messages published from now on.
    New,
}

/// Which stream the source reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Input {
    /// `NORMALIZED`: canonical events, as `vigil normalize` publishes them.
    Normalized,
    /// `RAW`: records as ingest stored them, normalized on the engine's workers with these
    /// options — one trip through the broker instead of two (ADR 0006).
    Raw(vigil_normalize::Options),
}

impl Input {
    /// The subjects of the stream.
    pub fn subject(self) -> Subject {
        match self {
            Input::Normalized => Subject::NormalizedEvents,
            Input::Raw(_) => Subject::RawEvents,
        }
    }
}

/// How the source consumes.
#[derive(Clone, Debug)]
pub struct JetStreamConfig {
    /// NATS server URL.
    pub url: String,
    /// What to read.
    pub input: Input,
    /// Durable consumer name; one per engine process.
    pub consumer: String,
    /// Only these tenants (empty: every tenant).
    pub tenants: Vec<TenantId>,
    /// Messages per fetch (and at most per chunk).
    pub batch: usize,
    /// Unacknowledged messages the server lets the consumer hold.
    pub max_ack_pending: i64,
    /// How long a delivered message may stay unacknowledged before the server redelivers it.
    /// Must exceed the checkpoint interval by a wide margin.
    pub ack_wait: Duration,
    /// Time between checkpoints while input flows.
    pub checkpoint_interval: Duration,
    /// Where a consumer without a checkpoint starts.
    pub start: Start,
    /// Stop (after a last checkpoint, without flushing windows) once caught up and idle for
    /// this long. For benchmarks and tests; services run until stopped.
    pub stop_when_idle: Option<Duration>,
}

impl JetStreamConfig {
    /// The defaults for `url`: `NORMALIZED`, consumer `engine`, 1,000 per fetch, 500,000
    /// unacknowledged, 2 min ack wait, a checkpoint every 5 s.
    pub fn new(url: impl Into<String>) -> Self {
        JetStreamConfig {
            url: url.into(),
            input: Input::Normalized,
            consumer: "engine".to_owned(),
            tenants: Vec::new(),
            batch: 1_000,
            // At least 2 × rate × checkpoint_interval, so that checkpoints follow the interval
            // rather than the ack limit up to 50,000 events/s per engine process; each one
            // encodes the whole window state.
            max_ack_pending: 500_000,
            ack_wait: Duration::from_secs(120),
            checkpoint_interval: Duration::from_secs(5),
            start: Start::All,
            stop_when_idle: None,
        }
    }

    /// Checks the settings against each other.
    pub fn validate(&self) -> Result<(), String> {
        if self.batch == 0 || self.max_ack_pending < 2 * self.batch as i64 {
            return Err(format!(
                "max_ack_pending ({}) must be at least twice the batch ({})",
                self.max_ack_pending, self.batch
            ));
        }
        if self.checkpoint_interval.is_zero() || self.ack_wait < 4 * self.checkpoint_interval {
            return Err(format!(
                "ack_wait ({:?}) must be at least 4 checkpoint intervals ({:?}): messages are acknowledged only behind checkpoints",
                self.ack_wait, self.checkpoint_interval
            ));
        }
        Ok(())
    }
}

/// What the source did; shared so that a service can export it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JetStreamStats {
    /// Messages handed to the engine.
    pub delivered: u64,
    /// Messages delivered again that the engine had already read (skipped).
    pub redelivered: u64,
    /// Stream sequence of the newest acknowledgement.
    pub acked: u64,
    /// Stream sequence of the last message handed over.
    pub position: u64,
    /// Checkpoints asked for.
    pub checkpoints: u64,
    /// Raw messages on a subject without a valid tenant: logged and skipped (they cannot be
    /// attributed to anyone, so not even the DLQ may hold them under a tenant).
    pub unattributed: u64,
    /// Where this run started reading (stream sequence).
    pub started_at: u64,
}

/// A durable pull consumer as an engine source.
#[derive(Debug)]
pub struct JetStreamSource {
    config: JetStreamConfig,
    name: String,
    stop: Arc<AtomicBool>,
    stats: Arc<Mutex<JetStreamStats>>,
}

impl JetStreamSource {
    /// A source with `config`.
    pub fn new(config: JetStreamConfig) -> Self {
        let name = format!(
            "jetstream:{}/{}",
            config.input.subject().stream(),
            config.consumer
        );
        JetStreamSource {
            config,
            name,
            stop: Arc::default(),
            stats: Arc::default(),
        }
    }

    /// Set it to stop the source: it takes a last checkpoint and stops the engine without
    /// flushing windows (SIGTERM).
    pub fn stop_handle(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.stop)
    }

    /// The source's counters.
    pub fn stats_handle(&self) -> Arc<Mutex<JetStreamStats>> {
        Arc::clone(&self.stats)
    }
}

fn failed(name: &str, what: &str, e: &dyn std::fmt::Display) -> SourceError {
    SourceError {
        source_name: name.to_owned(),
        error: std::io::Error::other(format!("{what}: {e}")),
    }
}

impl EventSource for JetStreamSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn needs_checkpoints(&self) -> bool {
        true
    }

    fn normalizer(&self) -> Option<Arc<dyn Normalizer>> {
        match self.config.input {
            Input::Normalized => None,
            Input::Raw(options) => Some(Arc::new(RawNormalizer(options))),
        }
    }

    fn run(self: Box<Self>, out: &mut dyn ChunkSink) -> Result<(), SourceError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| failed(&self.name, "failed to start a runtime", &e))?;
        rt.block_on(self.consume(out))
    }
}

/// Time between idle ticks while caught up.
const IDLE_TICK: Duration = Duration::from_millis(500);
/// How long a fetch waits for a full batch.
const FETCH_WAIT: Duration = Duration::from_millis(100);
/// How long a stopping source waits for its last checkpoint.
const LAST_CHECKPOINT_WAIT: Duration = Duration::from_secs(60);

impl JetStreamSource {
    async fn consume(&self, out: &mut dyn ChunkSink) -> Result<(), SourceError> {
        let c = &self.config;
        let name = self.name.as_str();
        let js = vigil_bus::connect(&c.url, Duration::from_secs(10))
            .await
            .map_err(|e| failed(name, "failed to connect", &e))?;
        let consumer = self.open(&js, out.restored()).await?;
        let mut offset = 0u64;
        let mut position = out.restored().unwrap_or(0);
        let mut unacked: VecDeque<Held> = VecDeque::new();
        let mut acked = position;
        let mut barrier = position;
        let mut last_barrier = Instant::now();
        let mut last_tick = Instant::now();
        let mut idle_since: Option<Instant> = None;
        let mut unattributed = 0u64;
        loop {
            let stopping = self.stop.load(Ordering::SeqCst)
                || c.stop_when_idle
                    .zip(idle_since)
                    .is_some_and(|(d, since)| since.elapsed() >= d);
            if stopping {
                self.finish(out, position, barrier, &mut unacked).await;
                return Ok(());
            }
            let mut batch = match consumer
                .batch()
                .max_messages(c.batch)
                .expires(FETCH_WAIT)
                .messages()
                .await
            {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(error = %e, "fetch from {} failed; retrying", c.input.subject().stream());
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            let mut data = Vec::new();
            let mut records = Vec::new();
            let mut caught_up = true;
            let mut last: Option<jetstream::Message> = None;
            let mut skipped = 0u64;
            let mut taken = 0u64;
            while let Some(m) = batch.next().await {
                let m = match m {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(error = %e, "receive from {} failed", c.input.subject().stream());
                        break;
                    }
                };
                let Ok(info) = m.info() else { continue };
                let (seq, pending) = (info.stream_sequence, info.pending);
                caught_up = pending == 0;
                if seq <= position {
                    skipped += 1;
                    continue;
                }
                position = seq;
                taken += 1;
                match c.input {
                    // One event per message; a newline inside would split it, and is only
                    // valid JSON whitespace anyway.
                    Input::Normalized => {
                        data.extend(m.payload.iter().map(|&b| if b == b'\n' { b' ' } else { b }));
                        data.push(b'\n');
                    }
                    Input::Raw(_) => match record(&m, seq) {
                        Some(r) => records.push(r),
                        None => unattributed += 1,
                    },
                }
                last = Some(m);
            }
            let wall = caught_up.then(now_millis);
            if !data.is_empty() || !records.is_empty() {
                let len = data.len() as u64;
                let sent = if records.is_empty() {
                    out.send(data, offset, wall)
                } else {
                    out.send_records(records, wall)
                };
                if !sent {
                    return Ok(());
                }
                offset += len;
                idle_since = None;
                last_tick = Instant::now();
            } else if caught_up {
                idle_since.get_or_insert_with(Instant::now);
                if last_tick.elapsed() >= IDLE_TICK {
                    if !out.send(Vec::new(), offset, wall) {
                        return Ok(());
                    }
                    last_tick = Instant::now();
                }
            }
            if let Some(m) = last {
                unacked.push_back(Held {
                    position,
                    messages: taken,
                    last: m,
                });
            }
            {
                let mut st = self.lock_stats();
                st.delivered += taken;
                st.redelivered += skipped;
                st.unattributed += std::mem::take(&mut unattributed);
                st.position = position;
            }
            // Checkpoint when due, or early when acks run short.
            // Delivered since the last checkpoint asked for, in messages (what the server counts
            // against max_ack_pending; not stream sequences, which other subjects interleave).
            // Counting from the last one asked, not the last one committed, keeps a slow commit
            // from turning every fetch into another checkpoint.
            let outstanding: u64 = unacked
                .iter()
                .filter(|h| h.position > barrier)
                .map(|h| h.messages)
                .sum();
            if position > barrier
                && (last_barrier.elapsed() >= c.checkpoint_interval
                    || outstanding as i64 >= c.max_ack_pending / 2)
            {
                if !out.checkpoint(position) {
                    return Ok(());
                }
                barrier = position;
                last_barrier = Instant::now();
                self.lock_stats().checkpoints += 1;
            }
            if let Some(done) = out.committed()
                && done > acked
            {
                ack_through(done, &mut unacked, name).await;
                acked = done;
                self.lock_stats().acked = done;
            }
        }
    }

    fn lock_stats(&self) -> std::sync::MutexGuard<'_, JetStreamStats> {
        self.stats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Recreates the durable consumer at the right place: after the restored checkpoint, else
    /// after the old consumer's ack floor, else per `start`.
    async fn open(
        &self,
        js: &jetstream::Context,
        restored: Option<u64>,
    ) -> Result<consumer::PullConsumer, SourceError> {
        let c = &self.config;
        let name = self.name.as_str();
        let kind = c.input.subject();
        let mut stream = js.get_stream(kind.stream()).await.map_err(|e| {
            failed(
                name,
                &format!("failed to open stream {}", kind.stream()),
                &e,
            )
        })?;
        let first = stream
            .info()
            .await
            .map_err(|e| failed(name, "failed to read the stream's state", &e))?
            .state
            .first_sequence;
        let previous = stream
            .consumer_info(&c.consumer)
            .await
            .ok()
            .map(|i| i.ack_floor.stream_sequence);
        let from = match (restored, previous) {
            (Some(p), _) => Some(p + 1),
            (None, Some(floor)) if floor > 0 => {
                tracing::warn!(
                    consumer = %c.consumer,
                    floor,
                    "no checkpoint in the state directory: resuming after the consumer's ack floor with empty window state"
                );
                Some(floor + 1)
            }
            _ => None,
        };
        if let Some(from) = from
            && from < first
        {
            return Err(failed(
                name,
                "cannot resume",
                &format!(
                    "stream {} no longer holds sequence {from} (its first is {first}): retention dropped events the engine had not checkpointed; raise the stream's max_age/max_bytes, or start over with an empty state directory",
                    kind.stream()
                ),
            ));
        }
        if previous.is_some() {
            stream
                .delete_consumer(&c.consumer)
                .await
                .map_err(|e| failed(name, "failed to reset the consumer", &e))?;
        }
        let deliver_policy = match (from, c.start) {
            (Some(start_sequence), _) => {
                consumer::DeliverPolicy::ByStartSequence { start_sequence }
            }
            (None, Start::All) => consumer::DeliverPolicy::All,
            (None, Start::New) => consumer::DeliverPolicy::New,
        };
        self.lock_stats().started_at = from.unwrap_or(first);
        let all = c.tenants.is_empty();
        stream
            .create_consumer(consumer::pull::Config {
                durable_name: Some(c.consumer.clone()),
                deliver_policy,
                ack_policy: consumer::AckPolicy::All,
                ack_wait: c.ack_wait,
                max_ack_pending: c.max_ack_pending,
                filter_subject: if all {
                    kind.all_tenants()
                } else {
                    String::new()
                },
                filter_subjects: c.tenants.iter().map(|t| kind.for_tenant(t)).collect(),
                ..Default::default()
            })
            .await
            .map_err(|e| failed(name, "failed to create the consumer", &e))
    }

    /// A last checkpoint (if anything is new), its acknowledgement, then the engine stops
    /// without flushing.
    async fn finish(
        &self,
        out: &mut dyn ChunkSink,
        position: u64,
        barrier: u64,
        unacked: &mut VecDeque<Held>,
    ) {
        if position > barrier && !out.checkpoint(position) {
            return;
        }
        let deadline = Instant::now() + LAST_CHECKPOINT_WAIT;
        while out.committed() < Some(position) && position > 0 {
            if Instant::now() > deadline {
                tracing::warn!(
                    "the last checkpoint did not commit in time; the next run replays from the one before"
                );
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if let Some(done) = out.committed() {
            ack_through(done, unacked, &self.name).await;
            self.lock_stats().acked = done;
        }
        out.stop();
    }
}

/// A fetched batch awaiting its checkpoint: where it ends, how many messages it handed over,
/// and its last message (the one to acknowledge, with `AckPolicy::All`).
#[derive(Debug)]
struct Held {
    position: u64,
    messages: u64,
    last: jetstream::Message,
}

/// Acknowledges (AckAll) the newest held message at or below `done`.
async fn ack_through(done: u64, unacked: &mut VecDeque<Held>, name: &str) {
    let mut newest = None;
    while unacked.front().is_some_and(|h| h.position <= done) {
        newest = unacked.pop_front();
    }
    if let Some(Held { last: m, .. }) = newest {
        // One ack per checkpoint, so waiting for the server's confirmation is cheap, and a
        // stopping source does not drop its last ack with the connection. A lost ack costs
        // a redelivery, which the sequence check skips; it is not an error.
        if let Err(e) = m.double_ack().await {
            tracing::warn!(error = %e, source = name, "acknowledgement failed");
        }
    }
}

/// The engine's record for a raw message: the tenant from its subject (which ingest built from
/// the verified token), the rest from its headers. `None` for a subject without a valid tenant.
fn record(m: &jetstream::Message, position: u64) -> Option<Record> {
    let Some(tenant) = Subject::RawEvents.tenant_of(&m.subject) else {
        tracing::error!(subject = %m.subject, position, "raw message on a subject without a valid tenant; skipped");
        return None;
    };
    let meta = RawMeta::from_headers(m.headers.as_ref());
    Some(Record {
        tenant,
        source_type: meta.source_type,
        ingested_at: meta.ingested_at,
        event_id: meta.event_id,
        payload: m.payload.clone(),
        position,
    })
}

/// [`vigil_normalize`] as the engine's [`Normalizer`] for `RAW`.
#[derive(Debug)]
struct RawNormalizer(vigil_normalize::Options);

impl Normalizer for RawNormalizer {
    fn normalize(&self, r: &Record, out: &mut Vec<u8>) -> Result<(), (RejectReason, String)> {
        let raw = vigil_normalize::RawEvent {
            tenant: &r.tenant,
            source_type: vigil_normalize::SourceType::Ecs,
            payload: &r.payload,
            event_id: r.event_id.as_deref(),
            ingested_at: r.ingested_at,
        };
        match vigil_normalize::normalize_named(&r.source_type, &raw, &self.0) {
            Ok(n) => {
                serde_json::to_writer(out, &n.event).expect("a JSON value serializes");
                Ok(())
            }
            Err(e) => Err((reason(e.reason), e.message)),
        }
    }
}

/// The engine's reason for a normalizer's reason code (the same codes, tested below).
fn reason(code: &str) -> RejectReason {
    RejectReason::from_code(code).unwrap_or(RejectReason::SchemaViolation)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_normalizer_reason_is_an_engine_reason() {
        for code in vigil_normalize::REJECT_REASONS {
            assert_eq!(
                RejectReason::from_code(code).map(RejectReason::as_str),
                Some(code),
                "the engine has no reason `{code}`"
            );
        }
    }
}
