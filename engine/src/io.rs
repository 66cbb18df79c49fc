//! The engine's plug points: sources hand it chunks of JSON lines, sinks take alerts and
//! rejects. The engine does no IO of its own; `vigil-sources` and `vigil-sinks` implement these
//! traits for files, stdin, stdout and memory.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use vigil_model::{Alert, TenantId};

/// Why an input line was not processed. Every reject is counted and, when a rejects sink is
/// configured, written there with the line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RejectReason {
    /// Not JSON, or not a JSON object.
    InvalidJson,
    /// No `tenant_id` in the event and no default tenant.
    MissingTenant,
    /// `tenant_id` does not match `^[a-z0-9][a-z0-9_]{0,62}$`.
    InvalidTenant,
    /// `tenant_id` differs from the tenant the input belongs to (`--tenant`).
    TenantMismatch,
    /// No `@timestamp`.
    MissingTimestamp,
    /// `@timestamp` is neither RFC 3339 nor integral epoch milliseconds.
    InvalidTimestamp,
    /// Older than the watermark of its (source, tenant).
    Late,
    /// A valid record of a kind the normalizer does not map (raw input only).
    UnsupportedEvent,
    /// `@timestamp` too far after the ingest time (raw input only).
    FutureTimestamp,
    /// A field of the canonical schema with the wrong type, or no event id (raw input only).
    SchemaViolation,
}

impl RejectReason {
    /// Every reason, in reporting order.
    pub const ALL: [RejectReason; 10] = [
        RejectReason::InvalidJson,
        RejectReason::MissingTenant,
        RejectReason::InvalidTenant,
        RejectReason::TenantMismatch,
        RejectReason::MissingTimestamp,
        RejectReason::InvalidTimestamp,
        RejectReason::Late,
        RejectReason::UnsupportedEvent,
        RejectReason::FutureTimestamp,
        RejectReason::SchemaViolation,
    ];

    /// The reason code as written to rejects and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::InvalidJson => "invalid_json",
            RejectReason::MissingTenant => "missing_tenant",
            RejectReason::InvalidTenant => "invalid_tenant",
            RejectReason::TenantMismatch => "tenant_mismatch",
            RejectReason::MissingTimestamp => "missing_timestamp",
            RejectReason::InvalidTimestamp => "invalid_timestamp",
            RejectReason::Late => "late",
            RejectReason::UnsupportedEvent => "unsupported_event",
            RejectReason::FutureTimestamp => "future_timestamp",
            RejectReason::SchemaViolation => "schema_violation",
        }
    }

    /// The reason with code `code` ([`RejectReason::as_str`]'s inverse).
    pub fn from_code(code: &str) -> Option<RejectReason> {
        RejectReason::ALL.into_iter().find(|r| r.as_str() == code)
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One rejected line.
#[derive(Clone, Debug)]
pub struct Reject<'a> {
    /// Why.
    pub reason: RejectReason,
    /// Details, such as the JSON error.
    pub detail: String,
    /// Name of the source (a path, `-` for stdin).
    pub source: &'a str,
    /// The event's tenant, when the line got far enough to name a valid one.
    pub tenant: Option<&'a str>,
    /// Byte offset of the line in the source; for a [`Record`], its position (stream
    /// sequence).
    pub offset: u64,
    /// The line as read.
    pub line: &'a [u8],
    /// For a [`Record`] that failed normalization: its position. Such a reject is the same
    /// whichever process normalized the record (`vigil normalize` reports it too), so sinks
    /// can identify it by the position alone.
    pub record: Option<u64>,
}

/// A failure to write to a sink.
#[derive(Debug, thiserror::Error)]
#[error("failed to write to {sink}: {source}")]
pub struct SinkError {
    /// Which sink.
    pub sink: String,
    /// The IO error.
    #[source]
    pub source: std::io::Error,
}

/// Where alerts go. Shared by every worker thread; implementations serialize internally.
pub trait AlertSink: Send + Sync {
    /// Writes a batch of alerts.
    fn write(&self, alerts: &[Alert]) -> Result<(), SinkError>;
    /// Makes everything written so far durable (flushes buffers).
    fn flush(&self) -> Result<(), SinkError>;
}

/// Where rejected lines go.
pub trait RejectSink: Send + Sync {
    /// Writes one reject.
    fn write(&self, reject: &Reject<'_>) -> Result<(), SinkError>;
    /// Flushes buffers.
    fn flush(&self) -> Result<(), SinkError>;
}

/// One raw record of a source whose input the engine normalizes on its workers (`RAW`): the
/// payload as the producer stored it and the context the producer recorded.
#[derive(Clone, Debug)]
pub struct Record {
    /// The tenant, from an authenticated source (the subject ingest built from the token).
    pub tenant: TenantId,
    /// The record's format, by name (`ecs`, `sshd`, ...), as the [`Normalizer`] knows them.
    pub source_type: String,
    /// When the record was ingested, epoch milliseconds.
    pub ingested_at: i64,
    /// The id ingest assigned, for formats without an id of their own.
    pub event_id: Option<String>,
    /// The record's bytes.
    pub payload: Bytes,
    /// Where the record is in the source (stream sequence); rejects report it.
    pub position: u64,
}

/// Turns [`Record`]s into canonical events on the engine's workers. Pure: the same record
/// always yields the same event (replays after a restore must agree with the first run).
pub trait Normalizer: Send + Sync {
    /// Appends the canonical event for `record` to `out` as one line of JSON (without the
    /// newline), or says why the record is rejected.
    fn normalize(&self, record: &Record, out: &mut Vec<u8>) -> Result<(), (RejectReason, String)>;
}

/// The end of the channel into the engine, given to a source.
pub trait ChunkSink {
    /// Hands over `data`: whole lines (each ending in `\n`, except possibly the input's last),
    /// starting at byte `offset` of the source. `wall_ms` is the wall clock at read time for live
    /// sources (it drives idleness), `None` for replayed input. Blocks while the engine is busy
    /// (backpressure); returns false when the engine has stopped and the source should stop.
    fn send(&mut self, data: Vec<u8>, offset: u64, wall_ms: Option<i64>) -> bool;

    /// Hands over raw records, to be normalized by the source's [`EventSource::normalizer`] on
    /// the workers; otherwise like [`ChunkSink::send`]. A sink that takes no records refuses
    /// them (returns false: the source stops).
    fn send_records(&mut self, records: Vec<Record>, wall_ms: Option<i64>) -> bool {
        let _ = (records, wall_ms);
        false
    }

    /// Asks for a checkpoint right after everything sent so far, which ends at `position` of
    /// the source (for a stream: the sequence of the last message sent). Returns false when
    /// the engine has stopped or a checkpoint failed; the source should stop.
    fn checkpoint(&mut self, position: u64) -> bool {
        let _ = position;
        true
    }

    /// The position of the newest durable checkpoint: everything up to it may be acknowledged.
    fn committed(&self) -> Option<u64> {
        None
    }

    /// The position of the checkpoint the engine restored: the source resumes right after it.
    fn restored(&self) -> Option<u64> {
        None
    }

    /// Stops the engine without ending the input: windows are not flushed (the input goes on
    /// in the stream, and the next run resumes from the newest checkpoint).
    fn stop(&mut self) {}
}

/// Why a source stopped early.
#[derive(Debug, thiserror::Error)]
#[error("failed to read {source_name}: {error}")]
pub struct SourceError {
    /// The source's name.
    pub source_name: String,
    /// The IO error.
    #[source]
    pub error: std::io::Error,
}

/// A source of JSON lines. `run` is called once, on a thread of its own.
pub trait EventSource: Send {
    /// The name used in rejects and messages (a path, `-` for stdin).
    fn name(&self) -> &str;
    /// Reads everything, handing chunks to `out`, until the input ends or `out` refuses.
    fn run(self: Box<Self>, out: &mut dyn ChunkSink) -> Result<(), SourceError>;
    /// Whether the source acknowledges input only behind checkpoints (a stream); the engine
    /// then requires a checkpoint store.
    fn needs_checkpoints(&self) -> bool {
        false
    }
    /// How the engine turns this source's [`Record`]s into events; required by sources that
    /// call [`ChunkSink::send_records`].
    fn normalizer(&self) -> Option<Arc<dyn Normalizer>> {
        None
    }
}
