//! Vigil's event bus on NATS JetStream: the stream and subject names of `SEMANTICS.md`, stream
//! setup and migration from typed config, and acknowledged publishing.
//!
//! Delivery contract: [`publish::Publisher::publish_all`] returns only when JetStream has
//! acknowledged every message (stored to the stream's file storage), so callers answer their
//! own clients after that and never before. Every message carries `Nats-Msg-Id` (scoped by
//! tenant, [`msg_id`]), so a retried publish inside the stream's duplicate window is stored
//! once, and one tenant's ids can never suppress another's events.

pub mod dev;
mod fetch;
pub mod names;
pub mod publish;
pub mod streams;

use std::time::Duration;

pub use fetch::fetch_batch;
pub use names::{Subject, msg_id, raw_reject_msg_id};
pub use publish::{Outgoing, PublishError, Published, Publisher};
pub use streams::{Retention, StreamChange, StreamsConfig, ensure_streams};

/// Why talking to NATS failed.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// Could not connect.
    #[error("failed to connect to NATS at {url}: {source}")]
    Connect {
        /// The server URL.
        url: String,
        /// The client's error.
        #[source]
        source: async_nats::ConnectError,
    },
    /// A JetStream API call failed.
    #[error("failed to {action} stream {stream}: {message}")]
    Stream {
        /// What was attempted.
        action: &'static str,
        /// Which stream.
        stream: String,
        /// The server's or client's message.
        message: String,
    },
}

/// Connects to NATS and opens a JetStream context. Fails within `timeout` when no server
/// answers, rather than retrying forever.
pub async fn connect(
    url: &str,
    timeout: Duration,
) -> Result<async_nats::jetstream::Context, BusError> {
    let client = async_nats::ConnectOptions::new()
        .connection_timeout(timeout)
        .name("vigil")
        .connect(url)
        .await
        .map_err(|source| BusError::Connect {
            url: url.to_owned(),
            source,
        })?;
    Ok(async_nats::jetstream::new(client))
}
