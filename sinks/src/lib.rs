//! Alert and reject sinks: JSON lines to a file or stdout, NATS JetStream (`ALERTS` and `DLQ`,
//! the service path), OpenSearch (`alerts-{tenant}`), the case store in Postgres, and a capture
//! sink for tests.
//!
//! Writes are buffered; [`vigil_engine::AlertSink::flush`] makes them durable, and the engine
//! calls it before a run returns. All sinks are shared by every worker thread and serialize
//! writes internally, so lines never interleave.

mod background;
pub mod capture;
pub mod events_index;
pub mod fanout;
pub mod jetstream;
pub mod jsonl;
pub mod opensearch;
pub mod postgres;

pub use capture::{CaptureRejects, CaptureSink};
pub use fanout::FanOut;
pub use jetstream::{JetStreamAlerts, JetStreamOut, JetStreamRejects};
pub use jsonl::{JsonlAlerts, JsonlRejects};
pub use opensearch::{OpenSearchAlerts, OpenSearchConfig, OpenSearchStats};
pub use postgres::{PostgresCases, PostgresConfig, PostgresStats};
