//! The engine's plug points: sources hand it chunks of JSON lines, sinks take alerts and
//! rejects. The engine does no IO of its own; `vigil-sources` and `vigil-sinks` implement these
//! traits for files, stdin, stdout and memory.

use std::fmt;

use vigil_model::Alert;

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
}

impl RejectReason {
    /// Every reason, in reporting order.
    pub const ALL: [RejectReason; 7] = [
        RejectReason::InvalidJson,
        RejectReason::MissingTenant,
        RejectReason::InvalidTenant,
        RejectReason::TenantMismatch,
        RejectReason::MissingTimestamp,
        RejectReason::InvalidTimestamp,
        RejectReason::Late,
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
        }
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
    /// Byte offset of the line in the source.
    pub offset: u64,
    /// The line as read.
    pub line: &'a [u8],
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

/// The end of the channel into the engine, given to a source.
pub trait ChunkSink {
    /// Hands over `data`: whole lines (each ending in `\n`, except possibly the input's last),
    /// starting at byte `offset` of the source. `wall_ms` is the wall clock at read time for live
    /// sources (it drives idleness), `None` for replayed input. Blocks while the engine is busy
    /// (backpressure); returns false when the engine has stopped and the source should stop.
    fn send(&mut self, data: Vec<u8>, offset: u64, wall_ms: Option<i64>) -> bool;

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
}
