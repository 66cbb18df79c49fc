//! Capture sinks: keep alerts and rejects in memory, for tests (registered components, not
//! mocks: the engine writes to them exactly as to a file).

use std::sync::Mutex;

use vigil_engine::{AlertSink, Reject, RejectReason, RejectSink, SinkError};
use vigil_model::Alert;

/// Keeps every alert.
#[derive(Debug, Default)]
pub struct CaptureSink(Mutex<Vec<Alert>>);

impl CaptureSink {
    /// The alerts so far, sorted by id (alert order across workers is not defined).
    pub fn alerts(&self) -> Vec<Alert> {
        let mut v = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }
}

impl AlertSink for CaptureSink {
    fn write(&self, alerts: &[Alert]) -> Result<(), SinkError> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(alerts);
        Ok(())
    }

    fn flush(&self) -> Result<(), SinkError> {
        Ok(())
    }
}

/// Keeps every reject as (reason, offset, line).
#[derive(Debug, Default)]
pub struct CaptureRejects(Mutex<Vec<(RejectReason, u64, String)>>);

impl CaptureRejects {
    /// The rejects so far, sorted by offset.
    pub fn rejects(&self) -> Vec<(RejectReason, u64, String)> {
        let mut v = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        v.sort_by_key(|r| r.1);
        v
    }
}

impl RejectSink for CaptureRejects {
    fn write(&self, r: &Reject<'_>) -> Result<(), SinkError> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((
                r.reason,
                r.offset,
                String::from_utf8_lossy(r.line).into_owned(),
            ));
        Ok(())
    }

    fn flush(&self) -> Result<(), SinkError> {
        Ok(())
    }
}
