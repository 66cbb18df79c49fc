//! Batched fetches for the pipeline services that consume a stream (normalizer, indexer).

use std::time::Duration;

use async_nats::jetstream::{Message, consumer::PullConsumer};
use futures::StreamExt;

/// One fetch of up to `max` messages. A service draining a backlog (`until_idle`) waits at
/// most 500 ms for them, so that an empty answer means "caught up"; a live one waits 5 s.
pub async fn fetch_batch(
    consumer: &PullConsumer,
    max: usize,
    until_idle: bool,
) -> Result<Vec<Message>, String> {
    let mut batch = consumer
        .fetch()
        .max_messages(max)
        .expires(Duration::from_millis(if until_idle { 500 } else { 5_000 }))
        .messages()
        .await
        .map_err(|e| format!("fetch: {e}"))?;
    let mut messages = Vec::new();
    while let Some(m) = batch.next().await {
        messages.push(m.map_err(|e| format!("receive: {e}"))?);
    }
    Ok(messages)
}
