//! Alerts to the `ALERTS` stream, late and rejected events to the `DLQ` stream.
//!
//! `write` publishes at once (alerts reach the stream within milliseconds of firing) and keeps
//! the acknowledgement futures; `flush` — called by the engine before it commits a checkpoint —
//! waits for every acknowledgement and republishes what failed, with backoff, until JetStream
//! has stored it. So a checkpoint never covers an alert that is not stored, and an outage of
//! NATS stalls the engine instead of losing alerts. Every message carries `Nats-Msg-Id`
//! (`{tenant}:{alert id}` for alerts), so republishing — and replay after a crash — stores each
//! alert once within the stream's duplicate window; beyond it, consumers dedupe by alert id.
//!
//! Subjects: `alerts.{tenant}`; `dlq.events.{tenant}` for late events and for rejects that name
//! a valid tenant, `dlq.events._unattributed` (not a valid tenant id, so no tenant can own it)
//! for lines without one.

use std::sync::Mutex;
use std::time::Duration;

use async_nats::jetstream::{self, context::PublishAckFuture, message::PublishMessage};
use vigil_bus::{Outgoing, Subject};
use vigil_engine::{AlertSink, Reject, RejectSink, SinkError};
use vigil_model::{Alert, TenantId};

/// DLQ subject token for rejects that name no valid tenant.
pub const UNATTRIBUTED: &str = "_unattributed";

/// Publishes to JetStream from the engine's worker threads.
pub struct JetStreamOut {
    name: &'static str,
    rt: tokio::runtime::Runtime,
    js: jetstream::Context,
    ack_timeout: Duration,
    inflight: Mutex<Vec<(Outgoing, PublishAckFuture)>>,
    failed: Mutex<Vec<Outgoing>>,
}

impl std::fmt::Debug for JetStreamOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStreamOut")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

fn err(sink: &str, e: impl std::fmt::Display) -> SinkError {
    SinkError {
        sink: sink.to_owned(),
        source: std::io::Error::other(e.to_string()),
    }
}

impl JetStreamOut {
    /// Connects to `url` (a runtime of its own serves the connection).
    pub fn connect(
        name: &'static str,
        url: &str,
        ack_timeout: Duration,
    ) -> Result<Self, SinkError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("vigil-publish")
            .enable_all()
            .build()
            .map_err(|e| err(name, e))?;
        let js = rt
            .block_on(vigil_bus::connect(url, Duration::from_secs(10)))
            .map_err(|e| err(name, e))?;
        Ok(JetStreamOut {
            name,
            rt,
            js,
            ack_timeout,
            inflight: Mutex::default(),
            failed: Mutex::default(),
        })
    }

    fn publish(&self, batch: Vec<Outgoing>) {
        let js = self.js.clone();
        let sent = self.rt.block_on(async move {
            let mut sent = Vec::with_capacity(batch.len());
            let mut failed = Vec::new();
            for m in batch {
                let mut p = PublishMessage::build()
                    .payload(m.payload.clone())
                    .message_id(&m.msg_id);
                for (k, v) in &m.headers {
                    p = p.header(*k, v.as_str());
                }
                match js.send_publish(m.subject.clone(), p).await {
                    Ok(ack) => sent.push((m, ack)),
                    Err(_) => failed.push(m),
                }
            }
            (sent, failed)
        });
        lock(&self.inflight).extend(sent.0);
        lock(&self.failed).extend(sent.1);
    }

    /// Waits until JetStream stored everything published so far, republishing failures with
    /// backoff (a stalled checkpoint is the backpressure of an outage).
    fn flush_all(&self) -> Result<(), SinkError> {
        let mut backoff = Duration::from_millis(200);
        loop {
            let inflight = std::mem::take(&mut *lock(&self.inflight));
            let timeout = self.ack_timeout;
            let failed = self.rt.block_on(async move {
                let mut failed = Vec::new();
                for (m, ack) in inflight {
                    match tokio::time::timeout(timeout, ack).await {
                        Ok(Ok(_)) => {}
                        _ => failed.push(m),
                    }
                }
                failed
            });
            lock(&self.failed).extend(failed);
            let retry = std::mem::take(&mut *lock(&self.failed));
            if retry.is_empty() {
                return Ok(());
            }
            tracing::warn!(
                sink = self.name,
                messages = retry.len(),
                "JetStream did not store every message; republishing"
            );
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(Duration::from_secs(10));
            self.publish(retry);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Alerts to `alerts.{tenant}`.
#[derive(Debug)]
pub struct JetStreamAlerts(pub JetStreamOut);

impl AlertSink for JetStreamAlerts {
    fn write(&self, alerts: &[Alert]) -> Result<(), SinkError> {
        let mut batch = Vec::with_capacity(alerts.len());
        for a in alerts {
            let payload = serde_json::to_vec(a).map_err(|e| err(self.0.name, e))?;
            batch.push(Outgoing {
                subject: Subject::Alerts.for_tenant(&a.tenant_id),
                msg_id: vigil_bus::msg_id(&a.tenant_id, &a.id),
                payload: payload.into(),
                headers: vec![("Vigil-Rule-Id", a.rule_id.clone())],
            });
        }
        self.0.publish(batch);
        Ok(())
    }

    fn flush(&self) -> Result<(), SinkError> {
        self.0.flush_all()
    }
}

/// Late and rejected events to `dlq.events.{tenant}`, with the reason in headers and the event
/// as read in the body.
#[derive(Debug)]
pub struct JetStreamRejects(pub JetStreamOut);

impl RejectSink for JetStreamRejects {
    fn write(&self, r: &Reject<'_>) -> Result<(), SinkError> {
        let (subject, token) = dlq_subject(r.tenant);
        let mut headers = vec![
            ("Vigil-Reject-Reason", r.reason.as_str().to_owned()),
            ("Vigil-Reject-Message", r.detail.replace(['\r', '\n'], " ")),
            ("Vigil-Source", r.source.to_owned()),
        ];
        // Replays after a crash reject the same line again: dedupe it. A raw record that
        // failed normalization has the id `vigil normalize` gives it, so that one copy is
        // stored when both normalize the same RAW message.
        let msg_id = match r.record {
            Some(seq) => {
                headers.push(("Vigil-Raw-Sequence", seq.to_string()));
                vigil_bus::raw_reject_msg_id(seq)
            }
            None => {
                let digest = xxhash_rust::xxh3::xxh3_128(r.line);
                format!("{token}:engine:{}:{digest:032x}", r.reason)
            }
        };
        self.0.publish(vec![Outgoing {
            subject,
            msg_id,
            payload: r.line.to_vec().into(),
            headers,
        }]);
        Ok(())
    }

    fn flush(&self) -> Result<(), SinkError> {
        self.0.flush_all()
    }
}

/// The DLQ subject of a reject and its tenant token: the tenant's own subject when the reject
/// names a valid tenant, else `dlq.events._unattributed` — never a subject built from an
/// unvalidated string.
fn dlq_subject(tenant: Option<&str>) -> (String, String) {
    match tenant.and_then(|t| TenantId::parse(t).ok()) {
        Some(t) => (Subject::DlqEvents.for_tenant(&t), t.as_str().to_owned()),
        None => (
            format!("{}.{UNATTRIBUTED}", Subject::DlqEvents.prefix()),
            UNATTRIBUTED.to_owned(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_never_address_a_subject_built_from_their_input() {
        assert_eq!(
            dlq_subject(Some("acme")),
            ("dlq.events.acme".to_owned(), "acme".to_owned())
        );
        for attack in [
            "*",
            ">",
            "a.b",
            "..",
            "acme.>",
            "acme *",
            "ACME",
            "",
            "a\nb",
            "_unattributed",
        ] {
            let (subject, token) = dlq_subject(Some(attack));
            assert_eq!(subject, "dlq.events._unattributed", "{attack:?}");
            assert_eq!(token, UNATTRIBUTED);
        }
        assert_eq!(dlq_subject(None).0, "dlq.events._unattributed");
    }
}
