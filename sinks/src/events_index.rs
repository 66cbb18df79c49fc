//! Normalized events to OpenSearch, `events-{tenant}`, so that an analyst can open the events an
//! alert references (`Alert::events` holds their `event.id`s, which are the documents' `_id`s).
//!
//! Off the engine's hot path: its own durable consumer on `NORMALIZED` (`vigil index-events`).
//! Each fetched batch is bulk-`create`d with the same writer as the alert sink (per-item
//! retries, refused documents to `dlq.events.{tenant}`), and only then acknowledged — one
//! `AckAll` for the batch. A crash before the ack redelivers the batch; its documents exist
//! already (409), so nothing is indexed twice. The tenant is the subject's, never the
//! payload's.
//!
//! Mappings (`vigil-events` template for `events-*`) come from the canonical schema
//! (`docs/schema/event.schema.json`): every field it lists gets its type; `labels` is a
//! `flat_object`; fields it does not list stay in `_source` unindexed (`dynamic: false`), so
//! one source's odd field can neither explode the mapping nor conflict with another's.

use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use serde_json::{Map, Value, json};
use vigil_bus::{Publisher, Subject};
use vigil_model::TenantId;
use vigil_normalize::schema::{Field, Scalar};

use crate::opensearch::{
    Client, ClientError, DeadLetters, Doc, OpenSearchConfig, OpenSearchStats, Writer,
};

/// The index of a tenant's events.
pub fn events_index(tenant: &TenantId) -> String {
    format!("events-{}", tenant.as_str())
}

/// The index template of every `events-*` index, from the canonical schema.
pub fn events_template(replicas: u32) -> Value {
    let mut properties = Map::new();
    for (path, field) in vigil_normalize::schema::fields() {
        let mapping = match field {
            Field::StringMap => json!({"type": "flat_object"}),
            Field::Leaf { ty, .. } => match ty {
                Scalar::Keyword => json!({"type": "keyword", "ignore_above": 1024}),
                Scalar::Ip => json!({"type": "ip"}),
                Scalar::Date | Scalar::DateOrMillis => {
                    json!({"type": "date", "format": "strict_date_optional_time||epoch_millis"})
                }
                Scalar::Integer => json!({"type": "long"}),
                Scalar::Number => json!({"type": "double"}),
                Scalar::Boolean => json!({"type": "boolean"}),
            },
        };
        insert_path(&mut properties, &path, mapping);
    }
    json!({
        "index_patterns": ["events-*"],
        "priority": 100,
        "template": {
            "settings": {
                "number_of_shards": 1,
                "number_of_replicas": replicas,
                "refresh_interval": "5s"
            },
            "mappings": {"dynamic": false, "properties": properties}
        }
    })
}

/// Puts `mapping` at a dotted path of nested `properties`.
fn insert_path(properties: &mut Map<String, Value>, path: &str, mapping: Value) {
    match path.split_once('.') {
        None => {
            properties.insert(path.to_owned(), mapping);
        }
        Some((first, rest)) => {
            let node = properties
                .entry(first)
                .or_insert_with(|| json!({"properties": {}}));
            if let Some(children) = node["properties"].as_object_mut() {
                insert_path(children, rest, mapping);
            }
        }
    }
}

/// How the indexer consumes and writes.
#[derive(Clone, Debug)]
pub struct EventsIndexConfig {
    /// Durable consumer name on `NORMALIZED`; indexers sharing a name share the work.
    pub consumer: String,
    /// Only these tenants (empty: every tenant).
    pub tenants: Vec<TenantId>,
    /// Messages per fetch (and per bulk request at most).
    pub batch: usize,
    /// How long a fetched batch may stay unacknowledged before the server redelivers it.
    pub ack_wait: Duration,
    /// Where and how to write.
    pub opensearch: OpenSearchConfig,
    /// Timeout of each dead-letter publish.
    pub publish_timeout: Duration,
}

impl EventsIndexConfig {
    /// The defaults: consumer `events-indexer`, every tenant, 1,000 per fetch, 2 min ack wait.
    pub fn new(opensearch: OpenSearchConfig) -> Self {
        EventsIndexConfig {
            consumer: "events-indexer".to_owned(),
            tenants: Vec::new(),
            batch: 1_000,
            ack_wait: Duration::from_secs(120),
            opensearch,
            publish_timeout: Duration::from_secs(10),
        }
    }
}

/// What the indexer did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventsIndexStats {
    /// Messages acknowledged (each indexed, already there, or dead-lettered).
    pub consumed: u64,
    /// The writer's counters.
    pub writer: OpenSearchStats,
}

/// Why the indexer stopped.
#[derive(Debug, thiserror::Error)]
pub enum EventsIndexError {
    /// A JetStream call failed.
    #[error("events indexer failed to {action}: {message}")]
    Bus {
        /// What was attempted.
        action: &'static str,
        /// Why it failed.
        message: String,
    },
    /// OpenSearch refused the template.
    #[error(transparent)]
    OpenSearch(#[from] ClientError),
}

fn bus(action: &'static str, e: impl std::fmt::Display) -> EventsIndexError {
    EventsIndexError::Bus {
        action,
        message: e.to_string(),
    }
}

/// Runs until `stop` resolves (or, with `until_idle`, until a fetch comes back empty).
pub async fn run(
    js: &jetstream::Context,
    config: &EventsIndexConfig,
    until_idle: bool,
    stop: impl Future<Output = ()>,
) -> Result<EventsIndexStats, EventsIndexError> {
    let client = Client::new(&config.opensearch.url, config.opensearch.request_timeout)
        .map_err(|e| bus("configure OpenSearch", e))?;
    client
        .put_template("vigil-events", &events_template(config.opensearch.replicas))
        .await?;
    let stream = js
        .get_stream(Subject::NormalizedEvents.stream())
        .await
        .map_err(|e| bus("open stream NORMALIZED", e))?;
    let kind = Subject::NormalizedEvents;
    let consumer = stream
        .get_or_create_consumer(
            &config.consumer,
            consumer::pull::Config {
                durable_name: Some(config.consumer.clone()),
                ack_policy: consumer::AckPolicy::All,
                ack_wait: config.ack_wait,
                max_ack_pending: (config.batch as i64) * 4,
                filter_subject: if config.tenants.is_empty() {
                    kind.all_tenants()
                } else {
                    String::new()
                },
                filter_subjects: config.tenants.iter().map(|t| kind.for_tenant(t)).collect(),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| bus("create the indexer consumer", e))?;
    let mut writer = Writer::new(
        client,
        config.opensearch.clone(),
        Publisher::new(js.clone(), config.publish_timeout),
        DeadLetters::Events,
    );
    let stats_handle = writer.stats_handle();
    let mut consumed = 0u64;
    tokio::pin!(stop);
    loop {
        let messages = tokio::select! {
            _ = &mut stop => break,
            b = vigil_bus::fetch_batch(&consumer, config.batch, until_idle) => {
                b.map_err(|e| bus("read NORMALIZED", e))?
            }
        };
        let n = messages.len() as u64;
        let mut docs: Vec<Doc> = messages.iter().filter_map(doc).collect();
        let Some(last) = messages.last() else {
            if until_idle {
                break;
            }
            continue;
        };
        // Stored (or dead-lettered) first, acknowledged after.
        writer.send_all(&mut docs).await;
        last.double_ack()
            .await
            .map_err(|e| bus("acknowledge NORMALIZED", e))?;
        consumed += n;
    }
    let writer = stats_handle.lock().map(|s| s.clone()).unwrap_or_default();
    Ok(EventsIndexStats { consumed, writer })
}

/// The document of a normalized event: `_id` = `event.id`, source = the payload as stored. A
/// message without a tenant subject or an id is skipped and logged (the normalizer never
/// publishes one).
fn doc(m: &jetstream::Message) -> Option<Doc> {
    let Some(tenant) = Subject::NormalizedEvents.tenant_of(&m.subject) else {
        tracing::error!(subject = %m.subject, "normalized event on a subject without a valid tenant; skipped");
        return None;
    };
    #[derive(serde::Deserialize)]
    struct Ids {
        event: Option<EventIds>,
    }
    #[derive(serde::Deserialize)]
    struct EventIds {
        id: Option<String>,
    }
    let id = serde_json::from_slice::<Ids>(&m.payload)
        .ok()
        .and_then(|i| i.event?.id)
        .filter(|id| !id.is_empty());
    let Some(id) = id else {
        tracing::error!(subject = %m.subject, "normalized event without event.id; skipped");
        return None;
    };
    Some(Doc {
        index: events_index(&tenant),
        tenant,
        id,
        body: m.payload.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_types_every_schema_field() {
        let t = events_template(0);
        let p = &t["template"]["mappings"]["properties"];
        assert_eq!(p["source"]["properties"]["ip"]["type"], "ip");
        assert_eq!(p["source"]["properties"]["port"]["type"], "long");
        assert_eq!(p["@timestamp"]["type"], "date");
        assert_eq!(p["event"]["properties"]["id"]["type"], "keyword");
        assert_eq!(p["labels"]["type"], "flat_object");
        assert_eq!(t["template"]["mappings"]["dynamic"], false);
        let leaves = vigil_normalize::schema::fields().len();
        fn count(v: &Value) -> usize {
            v.as_object().map_or(0, |m| {
                m.values()
                    .map(|n| match n.get("properties") {
                        Some(c) => count(c),
                        None => 1,
                    })
                    .sum()
            })
        }
        assert_eq!(count(p), leaves, "one mapping per schema field");
    }
}
