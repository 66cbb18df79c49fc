//! Acknowledged publishing: many publishes in flight, one answer when all are stored.

use std::time::Duration;

use async_nats::jetstream::{self, message::PublishMessage};
use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt};

/// One message to publish.
#[derive(Clone, Debug)]
pub struct Outgoing {
    /// Subject (from [`crate::Subject::for_tenant`]).
    pub subject: String,
    /// `Nats-Msg-Id`, from [`crate::msg_id`] (tenant-scoped), so retries dedupe.
    pub msg_id: String,
    /// The message body.
    pub payload: Bytes,
    /// Extra headers (`Vigil-Source-Type`, …).
    pub headers: Vec<(&'static str, String)>,
}

/// Why a batch was not fully stored.
#[derive(Debug, thiserror::Error)]
#[error("failed to publish {failed} of {total} messages to JetStream: {first}")]
pub struct PublishError {
    /// Messages not acknowledged.
    pub failed: usize,
    /// Messages in the batch.
    pub total: usize,
    /// The first failure.
    pub first: String,
}

/// The outcome of a batch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Published {
    /// Newly stored messages.
    pub stored: usize,
    /// Messages JetStream already had (same `Nats-Msg-Id` within the duplicate window).
    pub duplicates: usize,
}

/// Publishes batches with bounded acks in flight.
#[derive(Clone, Debug)]
pub struct Publisher {
    js: jetstream::Context,
    ack_timeout: Duration,
}

impl Publisher {
    /// A publisher on `js`; each ack must arrive within `ack_timeout`.
    pub fn new(js: jetstream::Context, ack_timeout: Duration) -> Self {
        Publisher { js, ack_timeout }
    }

    /// Publishes every message and waits for every acknowledgement. Returns an error if any
    /// message was not stored; messages that were stored stay stored (a retry with the same
    /// ids dedupes them).
    pub async fn publish_all(&self, batch: Vec<Outgoing>) -> Result<Published, PublishError> {
        let total = batch.len();
        let mut acks = FuturesUnordered::new();
        let mut errors: Vec<String> = Vec::new();
        for m in batch {
            let mut publish = PublishMessage::build()
                .payload(m.payload)
                .message_id(&m.msg_id);
            for (name, value) in m.headers {
                publish = publish.header(name, value.as_str());
            }
            match self.js.send_publish(m.subject, publish).await {
                Ok(ack) => acks.push(tokio::time::timeout(self.ack_timeout, ack.into_future())),
                Err(e) => errors.push(e.to_string()),
            }
        }
        let mut out = Published::default();
        while let Some(r) = acks.next().await {
            match r {
                Ok(Ok(ack)) if ack.duplicate => out.duplicates += 1,
                Ok(Ok(_)) => out.stored += 1,
                Ok(Err(e)) => errors.push(e.to_string()),
                Err(_) => errors.push(format!("no acknowledgement within {:?}", self.ack_timeout)),
            }
        }
        match errors.first() {
            None => Ok(out),
            Some(first) => Err(PublishError {
                failed: errors.len(),
                total,
                first: first.clone(),
            }),
        }
    }
}
