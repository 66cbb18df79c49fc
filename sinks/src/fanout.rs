//! One sink writing to several: every alert (or reject) goes to each, in order; `flush` flushes
//! each, so a checkpoint waits for all of them.

use std::sync::Arc;

use vigil_engine::{AlertSink, Reject, RejectSink, SinkError};
use vigil_model::Alert;

/// Writes to every sink it holds.
pub struct FanOut<S: ?Sized>(Vec<Arc<S>>);

impl<S: ?Sized> std::fmt::Debug for FanOut<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FanOut({} sinks)", self.0.len())
    }
}

impl FanOut<dyn AlertSink> {
    /// The alert sinks as one (the sink itself when there is only one).
    pub fn alerts(mut sinks: Vec<Arc<dyn AlertSink>>) -> Arc<dyn AlertSink> {
        if sinks.len() == 1 {
            return sinks.remove(0);
        }
        Arc::new(FanOut(sinks))
    }
}

impl FanOut<dyn RejectSink> {
    /// The reject sinks as one (the sink itself when there is only one).
    pub fn rejects(mut sinks: Vec<Arc<dyn RejectSink>>) -> Arc<dyn RejectSink> {
        if sinks.len() == 1 {
            return sinks.remove(0);
        }
        Arc::new(FanOut(sinks))
    }
}

impl AlertSink for FanOut<dyn AlertSink> {
    fn write(&self, alerts: &[Alert]) -> Result<(), SinkError> {
        self.0.iter().try_for_each(|s| s.write(alerts))
    }
    fn flush(&self) -> Result<(), SinkError> {
        self.0.iter().try_for_each(|s| s.flush())
    }
}

impl RejectSink for FanOut<dyn RejectSink> {
    fn write(&self, reject: &Reject<'_>) -> Result<(), SinkError> {
        self.0.iter().try_for_each(|s| s.write(reject))
    }
    fn flush(&self) -> Result<(), SinkError> {
        self.0.iter().try_for_each(|s| s.flush())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CaptureSink;

    #[test]
    fn every_sink_gets_every_alert() {
        let (a, b) = (
            Arc::new(CaptureSink::default()),
            Arc::new(CaptureSink::default()),
        );
        let both = FanOut::alerts(vec![a.clone(), b.clone()]);
        let alert: Alert = serde_json::from_value(serde_json::json!({
            "id": "0123456789abcdef0123456789abcdef", "schema_version": 1, "tenant_id": "acme",
            "rule_id": "r", "rule_version": 1, "title": "t", "severity": "low", "tags": [],
            "group": {}, "window": {"start": "2026-01-01T00:00:00Z", "end": "2026-01-01T00:00:00Z"},
            "value": 1, "@timestamp": "2026-01-01T00:00:00Z",
            "detected_at": "2026-01-01T00:00:00Z", "events": [], "event_count": 1
        }))
        .unwrap();
        both.write(std::slice::from_ref(&alert)).unwrap();
        both.flush().unwrap();
        assert_eq!(a.alerts(), std::slice::from_ref(&alert));
        assert_eq!(b.alerts(), [alert]);
    }
}
