//! Alerts to OpenSearch: one index per tenant, `alerts-{tenant}`, written with bulk `create`
//! and `_id` = alert id (ADR 0007).
//!
//! - **Mappings** come from the index template `vigil-alerts` (pattern `alerts-*`), installed at
//!   connect: explicit types for every alert field, `dynamic: strict`, `group` as
//!   `flat_object` (`SEMANTICS.md`). Indexes are created explicitly, the first time a tenant's
//!   alert is written (the dev node, like a production one, refuses to auto-create indexes).
//! - **Idempotent**: a `create` of an id that exists answers 409, which counts as stored — a
//!   replay after a crash, or two engines writing the same alert, store one document.
//! - **Per-item errors**: 429 and 5xx items are retried, with exponential backoff and jitter;
//!   any other refusal (a mapping error, 400) goes to the dead-letter subject
//!   `dlq.alerts.{tenant}` with the error type and reason in headers and the document as body,
//!   and counts as handled. Transport failures and whole-request 429/5xx retry the batch.
//! - **Batching and memory**: alerts wait in a bounded queue (`max_buffered`); a batch is sent
//!   when it holds `batch_docs` alerts or `batch_bytes`, or `flush_interval` after its first
//!   alert. While OpenSearch is slow or down the queue fills and `write` blocks the engine's
//!   worker — backpressure, not loss — and `flush`, which the engine calls before every
//!   checkpoint, returns only when every alert written before it is stored or dead-lettered,
//!   so no checkpoint (and no acknowledgement of the input) covers an alert OpenSearch lacks.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use vigil_bus::{Outgoing, Publisher, Subject};
use vigil_engine::{AlertSink, SinkError};

use crate::background::{
    Background, Batch, Limits, dead_letter, jitter, lock, runtime, sink_error,
};
use vigil_model::{Alert, TenantId};

/// The index of a tenant's alerts.
pub fn alerts_index(tenant: &TenantId) -> String {
    format!("alerts-{}", tenant.as_str())
}

/// How the sink writes; the `[opensearch]` section of a pipeline file (every key optional).
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OpenSearchConfig {
    /// Base URL, e.g. `http://127.0.0.1:9200`.
    pub url: String,
    /// Alerts per bulk request at most.
    pub batch_docs: usize,
    /// Bytes per bulk request at most (a larger single alert is sent alone).
    pub batch_bytes: usize,
    /// How long the first alert of a batch waits for more.
    #[serde(with = "vigil_model::duration::text")]
    pub flush_interval: Duration,
    /// Alerts queued before `write` blocks.
    pub max_buffered: usize,
    /// Timeout of one HTTP request.
    #[serde(with = "vigil_model::duration::text")]
    pub request_timeout: Duration,
    /// Longest wait between retries.
    #[serde(with = "vigil_model::duration::text")]
    pub max_backoff: Duration,
    /// Replicas of each alerts index (0 on a single dev node).
    pub replicas: u32,
}

impl Default for OpenSearchConfig {
    /// The defaults of [`OpenSearchConfig::new`] for a node on `127.0.0.1:9200`.
    fn default() -> Self {
        OpenSearchConfig::new("http://127.0.0.1:9200")
    }
}

impl OpenSearchConfig {
    /// The defaults for `url`: 500 alerts or 5 MiB per bulk, 1 s, 10,000 queued, 30 s
    /// requests, backoff up to 30 s, 1 replica.
    pub fn new(url: impl Into<String>) -> Self {
        OpenSearchConfig {
            url: url.into(),
            batch_docs: 500,
            batch_bytes: 5 << 20,
            flush_interval: Duration::from_secs(1),
            max_buffered: 10_000,
            request_timeout: Duration::from_secs(30),
            max_backoff: Duration::from_secs(30),
            replicas: 1,
        }
    }
}

/// What the sink did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpenSearchStats {
    /// Documents created.
    pub created: u64,
    /// Alerts OpenSearch already had (409).
    pub duplicates: u64,
    /// Alerts refused (not 429/5xx) and sent to the dead-letter subject.
    pub dead_lettered: u64,
    /// Items or requests retried.
    pub retries: u64,
    /// Bulk requests sent.
    pub requests: u64,
}

/// A small HTTP/1.1 client for OpenSearch's REST API (ADR 0007: why not the `opensearch` crate).
#[derive(Clone, Debug)]
pub struct Client {
    base: String,
    http: HyperClient<HttpConnector, Full<Bytes>>,
    timeout: Duration,
}

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
#[error("{method} {path}: {message}")]
pub struct ClientError {
    method: Method,
    path: String,
    message: String,
}

impl ClientError {
    /// OpenSearch answered `path` with the error `status` and `answer`.
    fn refused(method: Method, path: String, status: StatusCode, answer: &Value) -> ClientError {
        ClientError {
            method,
            path,
            message: format!("{status}: {answer}"),
        }
    }
}

impl Client {
    /// A client for the node at `url` (`http://host:port`).
    pub fn new(url: &str, timeout: Duration) -> Result<Client, String> {
        let base = url.trim_end_matches('/').to_owned();
        if !base.starts_with("http://") {
            return Err(format!(
                "OpenSearch URL {url:?} must start with http:// (TLS is terminated in front of the node)"
            ));
        }
        base.parse::<hyper::Uri>()
            .map_err(|e| format!("invalid OpenSearch URL {url:?}: {e}"))?;
        let http = HyperClient::builder(TokioExecutor::new()).build_http();
        Ok(Client {
            base,
            http,
            timeout,
        })
    }

    /// Sends a request; the body is JSON, or NDJSON for `_bulk`.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        let fail = |message: String| ClientError {
            method: method.clone(),
            path: path.to_owned(),
            message,
        };
        let content_type = if path.ends_with("_bulk") {
            "application/x-ndjson"
        } else {
            "application/json"
        };
        let req = Request::builder()
            .method(method.clone())
            .uri(format!("{}{path}", self.base))
            .header("content-type", content_type)
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|e| fail(e.to_string()))?;
        let answer = async {
            let resp = self
                .http
                .request(req)
                .await
                .map_err(|e| fail(e.to_string()))?;
            let status = resp.status();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| fail(e.to_string()))?
                .to_bytes();
            Ok((status, body))
        };
        tokio::time::timeout(self.timeout, answer)
            .await
            .map_err(|_| fail(format!("no answer within {:?}", self.timeout)))?
    }

    /// Sends a JSON request and parses the JSON answer (`null` for an empty one).
    pub async fn json(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Value), ClientError> {
        let body = body.map(|b| Bytes::from(b.to_string()));
        let (status, bytes) = self.send(method.clone(), path, body).await?;
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).map_err(|e| ClientError {
                method,
                path: path.to_owned(),
                message: format!("answer is not JSON ({status}): {e}"),
            })?
        };
        Ok((status, value))
    }
}

impl Client {
    /// Installs (or replaces) the index template `name`.
    pub async fn put_template(&self, name: &str, template: &Value) -> Result<(), ClientError> {
        let path = format!("/_index_template/{name}");
        let (status, answer) = self.json(Method::PUT, &path, Some(template)).await?;
        if status.is_success() {
            Ok(())
        } else {
            Err(ClientError::refused(Method::PUT, path, status, &answer))
        }
    }

    /// Every document of `index` (up to 10,000) after a refresh, by `_id`; `None` when the
    /// index does not exist. For tests and operators' checks, not for the write path.
    pub async fn documents(
        &self,
        index: &str,
    ) -> Result<Option<BTreeMap<String, Value>>, ClientError> {
        let (status, _) = self
            .json(Method::POST, &format!("/{index}/_refresh"), None)
            .await?;
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let path = format!("/{index}/_search");
        let query = json!({"size": 10_000, "query": {"match_all": {}}});
        let (status, answer) = self.json(Method::POST, &path, Some(&query)).await?;
        if !status.is_success() {
            return Err(ClientError::refused(Method::POST, path, status, &answer));
        }
        let hits = answer["hits"]["hits"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        Ok(Some(
            hits.iter()
                .filter_map(|h| Some((h["_id"].as_str()?.to_owned(), h["_source"].clone())))
                .collect(),
        ))
    }
}

/// The index template of every `alerts-*` index.
pub fn alerts_template(replicas: u32) -> Value {
    let date = json!({"type": "date", "format": "strict_date_optional_time||epoch_millis"});
    json!({
        "index_patterns": ["alerts-*"],
        "priority": 100,
        "template": {
            "settings": {
                "number_of_shards": 1,
                "number_of_replicas": replicas,
                "refresh_interval": "1s"
            },
            "mappings": {
                "dynamic": "strict",
                "properties": {
                    "id": {"type": "keyword"},
                    "schema_version": {"type": "integer"},
                    "tenant_id": {"type": "keyword"},
                    "rule_id": {"type": "keyword"},
                    "rule_version": {"type": "integer"},
                    "title": {"type": "text", "fields": {"keyword": {"type": "keyword", "ignore_above": 512}}},
                    "severity": {"type": "keyword"},
                    "risk_score": {"type": "integer"},
                    "tags": {"type": "keyword"},
                    "description": {"type": "text"},
                    "group": {"type": "flat_object"},
                    "window": {"properties": {"start": date, "end": date}},
                    "value": {"type": "double"},
                    "@timestamp": date,
                    "detected_at": date,
                    "events": {"type": "keyword"},
                    "event_count": {"type": "long"}
                }
            }
        }
    })
}

/// One document on its way: its tenant, index, id and source.
#[derive(Debug)]
pub(crate) struct Doc {
    pub(crate) tenant: TenantId,
    pub(crate) index: String,
    pub(crate) id: String,
    pub(crate) body: Bytes,
}

/// The alert sink. `write` and `flush` are called from the engine's worker threads.
pub struct OpenSearchAlerts {
    queue: Background<Doc>,
    stats: Arc<Mutex<OpenSearchStats>>,
}

impl std::fmt::Debug for OpenSearchAlerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenSearchAlerts").finish_non_exhaustive()
    }
}

fn sink_err(e: impl std::fmt::Display) -> SinkError {
    sink_error("opensearch", e)
}

impl OpenSearchAlerts {
    /// Installs the index template (an error if OpenSearch does not answer: the service
    /// fails at start, visibly) and starts the writer. Refused documents go to
    /// `dlq.alerts.{tenant}` on the NATS server at `nats_url`, each publish acknowledged
    /// within `publish_timeout`.
    pub fn connect(
        config: OpenSearchConfig,
        nats_url: &str,
        publish_timeout: Duration,
    ) -> Result<Self, SinkError> {
        let rt = runtime("opensearch")?;
        let client = Client::new(&config.url, config.request_timeout).map_err(sink_err)?;
        // The connection lives on this sink's runtime, like the writer that uses it.
        let js = rt
            .block_on(vigil_bus::connect(nats_url, Duration::from_secs(10)))
            .map_err(sink_err)?;
        let template = alerts_template(config.replicas);
        rt.block_on(client.put_template("vigil-alerts", &template))
            .map_err(sink_err)?;
        let limits = Limits {
            items: config.batch_docs,
            bytes: config.batch_bytes,
            interval: config.flush_interval,
            queue: config.max_buffered,
        };
        let writer = Writer::new(
            client,
            config,
            Publisher::new(js, publish_timeout),
            DeadLetters::Alerts,
        );
        let stats = writer.stats_handle();
        Ok(OpenSearchAlerts {
            queue: Background::start("opensearch", rt, writer, limits),
            stats,
        })
    }

    /// The sink's counters.
    pub fn stats(&self) -> OpenSearchStats {
        lock(&self.stats).clone()
    }
}

impl AlertSink for OpenSearchAlerts {
    fn write(&self, alerts: &[Alert]) -> Result<(), SinkError> {
        for a in alerts {
            let body = serde_json::to_vec(a).map_err(sink_err)?;
            let doc = Doc {
                index: alerts_index(&a.tenant_id),
                tenant: a.tenant_id.clone(),
                id: a.id.clone(),
                body: body.into(),
            };
            // Blocks while the queue is full: OpenSearch is slow or down.
            self.queue.send(doc)?;
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), SinkError> {
        self.queue.flush()
    }
}

/// Where a writer's refused documents go.
#[derive(Clone, Copy, Debug)]
pub(crate) enum DeadLetters {
    /// `dlq.alerts.{tenant}`.
    Alerts,
    /// `dlq.events.{tenant}`.
    Events,
}

impl DeadLetters {
    fn subject(self) -> Subject {
        match self {
            DeadLetters::Alerts => Subject::DlqAlerts,
            DeadLetters::Events => Subject::DlqEvents,
        }
    }

    /// The dead letter's key: alerts and events share the `DLQ` stream, whose deduplication
    /// is stream-wide, so the kind is part of it.
    fn key(self, d: &Doc) -> String {
        let kind = match self {
            DeadLetters::Alerts => "opensearch-alerts",
            DeadLetters::Events => "opensearch-events",
        };
        format!("{kind}:{}", d.id)
    }
}

/// Owns the connection: batches, sends, retries, dead-letters.
pub(crate) struct Writer {
    client: Client,
    config: OpenSearchConfig,
    dead_letters: Publisher,
    kind: DeadLetters,
    indexes: HashSet<String>,
    stats: Arc<Mutex<OpenSearchStats>>,
}

/// What became of one item of a bulk request.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Created,
    Duplicate,
    Retry,
    /// Refused for good: error type and reason.
    Refused(String, String),
    /// The index is gone (deleted behind the sink's back): create it again, then retry.
    NoIndex,
}

impl Writer {
    pub(crate) fn new(
        client: Client,
        config: OpenSearchConfig,
        dead_letters: Publisher,
        kind: DeadLetters,
    ) -> Writer {
        Writer {
            client,
            config,
            dead_letters,
            kind,
            indexes: HashSet::new(),
            stats: Arc::default(),
        }
    }

    pub(crate) fn stats_handle(&self) -> Arc<Mutex<OpenSearchStats>> {
        Arc::clone(&self.stats)
    }

    /// Sends `batch` until every document is stored or dead-lettered; empties it.
    pub(crate) async fn send_all(&mut self, batch: &mut Vec<Doc>) {
        let mut backoff = Duration::from_millis(100);
        let mut attempt = 0u32;
        while !batch.is_empty() {
            if attempt > 0 {
                lock(&self.stats).retries += batch.len() as u64;
                tokio::time::sleep(jitter(backoff, attempt)).await;
                backoff = (backoff * 2).min(self.config.max_backoff);
            }
            attempt += 1;
            if let Err(e) = self.ensure_indexes(batch).await {
                tracing::warn!(error = %e, alerts = batch.len(), "OpenSearch: cannot create an alerts index; retrying");
                continue;
            }
            let outcomes = match self.bulk(batch).await {
                Ok(o) => o,
                Err(e) => {
                    tracing::warn!(error = %e, alerts = batch.len(), "OpenSearch bulk request failed; retrying");
                    continue;
                }
            };
            let mut refused = Vec::new();
            let mut retry = Vec::new();
            {
                let mut st = lock(&self.stats);
                for (doc, outcome) in batch.drain(..).zip(outcomes) {
                    match outcome {
                        Outcome::Created => st.created += 1,
                        Outcome::Duplicate => st.duplicates += 1,
                        Outcome::Retry => retry.push(doc),
                        Outcome::NoIndex => {
                            self.indexes.remove(&doc.index);
                            retry.push(doc);
                        }
                        Outcome::Refused(kind, reason) => refused.push((doc, kind, reason)),
                    }
                }
            }
            if !refused.is_empty() {
                self.dead_letter(refused, &mut retry).await;
            }
            *batch = retry;
        }
    }

    /// Creates every index of `batch` not seen before (from its template).
    async fn ensure_indexes(&mut self, batch: &[Doc]) -> Result<(), ClientError> {
        for d in batch {
            if self.indexes.contains(&d.index) {
                continue;
            }
            let index = d.index.clone();
            let path = format!("/{index}");
            let (status, answer) = self
                .client
                .json(Method::PUT, &path, Some(&json!({})))
                .await?;
            let exists = answer["error"]["type"] == "resource_already_exists_exception";
            if !status.is_success() && !exists {
                return Err(ClientError::refused(Method::PUT, path, status, &answer));
            }
            if exists && index.starts_with("alerts-") {
                // An index created by an older version lacks the fields added since (its
                // mapping is strict): add them. Adding a field is allowed on a live index, and
                // repeating one already there is a no-op.
                let path = format!("/{index}/_mapping");
                let properties = &alerts_template(0)["template"]["mappings"]["properties"];
                let (status, answer) = self
                    .client
                    .json(
                        Method::PUT,
                        &path,
                        Some(&json!({ "properties": properties })),
                    )
                    .await?;
                if !status.is_success() {
                    return Err(ClientError::refused(Method::PUT, path, status, &answer));
                }
            }
            self.indexes.insert(index);
        }
        Ok(())
    }

    /// One bulk request; the outcome of every item, in order.
    async fn bulk(&self, batch: &[Doc]) -> Result<Vec<Outcome>, ClientError> {
        let mut body = Vec::with_capacity(batch.iter().map(|d| d.body.len() + 120).sum());
        for d in batch {
            let action = json!({"create": {"_index": d.index, "_id": d.id}});
            serde_json::to_writer(&mut body, &action).expect("JSON serializes");
            body.push(b'\n');
            body.extend_from_slice(&d.body);
            body.push(b'\n');
        }
        lock(&self.stats).requests += 1;
        let (status, answer) = self
            .client
            .send(Method::POST, "/_bulk", Some(body.into()))
            .await?;
        let fail = |message: String| ClientError {
            method: Method::POST,
            path: "/_bulk".to_owned(),
            message,
        };
        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            return Err(fail(format!("{status}")));
        }
        let answer: Value = serde_json::from_slice(&answer)
            .map_err(|e| fail(format!("answer is not JSON ({status}): {e}")))?;
        if !status.is_success() {
            return Err(fail(format!("{status}: {answer}")));
        }
        let items = answer["items"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        if items.len() != batch.len() {
            return Err(fail(format!(
                "{} items answered for {} sent",
                items.len(),
                batch.len()
            )));
        }
        Ok(items.iter().map(|i| outcome(&i["create"])).collect())
    }

    /// Publishes refused documents to their tenant's dead-letter subject; what JetStream did
    /// not store goes back into `retry` (it is dead-lettered on the next round: refusals are
    /// stable).
    async fn dead_letter(&self, refused: Vec<(Doc, String, String)>, retry: &mut Vec<Doc>) {
        let messages: Vec<Outgoing> = refused
            .iter()
            .map(|(d, kind, reason)| {
                dead_letter(
                    self.kind.subject(),
                    &d.tenant,
                    &self.kind.key(d),
                    d.body.clone(),
                    "opensearch",
                    kind.clone(),
                    reason,
                )
            })
            .collect();
        for (d, kind, reason) in &refused {
            tracing::error!(id = %d.id, index = %d.index, kind, reason, "OpenSearch refused a document; sent to the dead-letter subject");
        }
        match self.dead_letters.publish_all(messages).await {
            Ok(_) => lock(&self.stats).dead_lettered += refused.len() as u64,
            Err(e) => {
                tracing::warn!(error = %e, "dead-lettering refused alerts failed; retrying");
                retry.extend(refused.into_iter().map(|(d, _, _)| d));
            }
        }
    }
}

/// The outcome of one bulk item (`items[i].create`).
fn outcome(item: &Value) -> Outcome {
    let status = item["status"].as_u64().unwrap_or(0);
    match status {
        200 | 201 => Outcome::Created,
        409 => Outcome::Duplicate,
        429 | 500..=599 | 0 => Outcome::Retry,
        404 if item["error"]["type"] == "index_not_found_exception" => Outcome::NoIndex,
        _ => Outcome::Refused(
            item["error"]["type"]
                .as_str()
                .unwrap_or("refused")
                .to_owned(),
            item["error"]["reason"]
                .as_str()
                .map_or_else(|| format!("status {status}"), str::to_owned),
        ),
    }
}

impl Batch for Writer {
    type Item = Doc;

    fn size(doc: &Doc) -> usize {
        doc.body.len()
    }

    async fn write_all(&mut self, batch: &mut Vec<Doc>) {
        self.send_all(batch).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bulk_items_are_classified() {
        assert_eq!(outcome(&json!({"status": 201})), Outcome::Created);
        assert_eq!(
            outcome(
                &json!({"status": 409, "error": {"type": "version_conflict_engine_exception"}})
            ),
            Outcome::Duplicate
        );
        assert_eq!(outcome(&json!({"status": 429})), Outcome::Retry);
        assert_eq!(outcome(&json!({"status": 503})), Outcome::Retry);
        assert_eq!(
            outcome(&json!({"status": 404, "error": {"type": "index_not_found_exception"}})),
            Outcome::NoIndex
        );
        assert_eq!(
            outcome(
                &json!({"status": 400, "error": {"type": "mapper_parsing_exception", "reason": "failed to parse field [x]"}})
            ),
            Outcome::Refused(
                "mapper_parsing_exception".into(),
                "failed to parse field [x]".into()
            )
        );
    }

    #[test]
    fn urls_must_be_plain_http() {
        assert!(Client::new("http://127.0.0.1:9200/", Duration::from_secs(1)).is_ok());
        assert!(Client::new("https://x:9200", Duration::from_secs(1)).is_err());
        assert!(Client::new("127.0.0.1:9200", Duration::from_secs(1)).is_err());
    }
}
