//! Alert and reject sinks for Vigil's embedded mode: JSON lines to a file or stdout, and a
//! capture sink for tests.
//!
//! Writes are buffered; [`vigil_engine::AlertSink::flush`] makes them durable, and the engine
//! calls it before a run returns. All sinks are shared by every worker thread and serialize
//! writes internally, so lines never interleave.

pub mod capture;
pub mod jsonl;

pub use capture::{CaptureRejects, CaptureSink};
pub use jsonl::{JsonlAlerts, JsonlRejects};
