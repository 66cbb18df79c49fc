//! The normalize service: `RAW` → `NORMALIZED` and `DLQ`.
//!
//! Delivery contract: a durable pull consumer (`normalizer`, explicit acks) fetches raw events in
//! batches; every event is normalized or rejected; the normalized events are published to
//! `normalized.events.{tenant}` with `Nats-Msg-Id` = `{tenant}:{event.id}`, the rejects to
//! `dlq.events.{tenant}` with their original bytes as the body, the reason in headers and
//! `Nats-Msg-Id` = `raw:{stream sequence}`. Only when JetStream has acknowledged every publish of
//! the batch are the raw messages acknowledged. A crash anywhere in between leaves them unacked;
//! they are redelivered after `ack_wait` and republished with the same ids, which JetStream
//! deduplicates — nothing lost, nothing doubled. The tenant comes from the raw subject, which
//! ingest built from the verified token.

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use vigil_bus::{Outgoing, Publisher, Subject};
use vigil_model::TenantId;
use vigil_model::time::{now_millis, parse_rfc3339};

use crate::{Normalized, Options, RawEvent, Reject, SourceType};

/// How the service consumes and publishes.
#[derive(Clone, Debug)]
pub struct ServiceConfig {
    /// Durable consumer name on `RAW`.
    pub consumer: String,
    /// Messages per fetch.
    pub batch: usize,
    /// Unacknowledged messages the server lets this consumer hold; bounds memory and the
    /// replay after a crash.
    pub max_ack_pending: i64,
    /// How long a fetched message may stay unacknowledged before the server redelivers it.
    pub ack_wait: Duration,
    /// Seconds to wait for each publish acknowledgement.
    pub publish_timeout: Duration,
    /// Only these tenants' raw subjects (empty: every tenant). Lets normalizers be sharded by
    /// tenant.
    pub tenants: Vec<TenantId>,
    /// Normalization options.
    pub options: Options,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            consumer: "normalizer".to_owned(),
            batch: 1_000,
            max_ack_pending: 20_000,
            ack_wait: Duration::from_secs(30),
            publish_timeout: Duration::from_secs(10),
            tenants: Vec::new(),
            options: Options::default(),
        }
    }
}

/// What the service did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceStats {
    /// Raw messages handled (each acknowledged after its output was stored).
    pub consumed: u64,
    /// Events published to `NORMALIZED`.
    pub normalized: u64,
    /// Events sent to the DLQ, by reason.
    pub rejected: BTreeMap<&'static str, u64>,
    /// Normalized events JetStream already had (a replay after a crash).
    pub duplicates: u64,
}

/// Why the service stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// A JetStream call failed.
    #[error("normalizer failed to {action}: {message}")]
    Bus {
        /// What was attempted.
        action: &'static str,
        /// Why it failed.
        message: String,
    },
}

fn bus(action: &'static str) -> impl Fn(&dyn std::fmt::Display) -> ServiceError {
    move |e| ServiceError::Bus {
        action,
        message: e.to_string(),
    }
}

/// The durable consumer on `RAW`, created if missing.
pub async fn consumer(
    js: &jetstream::Context,
    config: &ServiceConfig,
) -> Result<consumer::PullConsumer, ServiceError> {
    let stream = js
        .get_stream("RAW")
        .await
        .map_err(|e| bus("open stream RAW")(&e))?;
    stream
        .get_or_create_consumer(
            &config.consumer,
            consumer::pull::Config {
                durable_name: Some(config.consumer.clone()),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: config.ack_wait,
                max_ack_pending: config.max_ack_pending,
                filter_subject: if config.tenants.is_empty() {
                    Subject::RawEvents.all_tenants()
                } else {
                    String::new()
                },
                filter_subjects: config
                    .tenants
                    .iter()
                    .map(|t| Subject::RawEvents.for_tenant(t))
                    .collect(),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| bus("create the normalizer consumer")(&e))
}

/// Runs until `stop` resolves (or, with `until_idle`, until a fetch comes back empty).
pub async fn run(
    js: &jetstream::Context,
    config: &ServiceConfig,
    until_idle: bool,
    stop: impl Future<Output = ()>,
) -> Result<ServiceStats, ServiceError> {
    let consumer = consumer(js, config).await?;
    let publisher = Publisher::new(js.clone(), config.publish_timeout);
    let mut stats = ServiceStats::default();
    tokio::pin!(stop);
    loop {
        let messages = tokio::select! {
            _ = &mut stop => return Ok(stats),
            b = vigil_bus::fetch_batch(&consumer, config.batch, until_idle) => {
                b.map_err(|e| bus("read RAW")(&e))?
            }
        };
        if messages.is_empty() {
            if until_idle {
                return Ok(stats);
            }
            continue;
        }
        let mut out = Vec::with_capacity(messages.len());
        let mut normalized = 0;
        for m in &messages {
            let (o, reason) = process(m, config);
            match reason {
                None => normalized += 1,
                Some(r) => *stats.rejected.entry(r).or_default() += 1,
            }
            out.extend(o);
        }
        let published = match publisher.publish_all(out).await {
            Ok(p) => p,
            // Nothing of this batch is acknowledged: the server redelivers it after
            // `ack_wait`, and what was already stored dedupes. Back off and go on.
            Err(e) if !until_idle => {
                tracing::warn!(error = %e, "failed to publish a normalized batch; it will be redelivered");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            Err(e) => return Err(bus("publish normalized events")(&e)),
        };
        // Everything of the batch is stored: now, and only now, the raw messages may go.
        for m in &messages {
            m.ack().await.map_err(|e| bus("acknowledge RAW")(&e))?;
        }
        stats.consumed += messages.len() as u64;
        stats.normalized += normalized;
        stats.duplicates += published.duplicates as u64;
    }
}

/// Normalizes one raw message into its output message (normalized or DLQ) and the reject
/// reason, if any. A message whose subject names no valid tenant cannot be attributed to anyone:
/// it is acknowledged and logged, never published.
fn process(
    m: &jetstream::Message,
    config: &ServiceConfig,
) -> (Option<Outgoing>, Option<&'static str>) {
    let seq = m.info().map(|i| i.stream_sequence).unwrap_or(0);
    let Some(tenant) = Subject::RawEvents.tenant_of(&m.subject) else {
        tracing::error!(subject = %m.subject, seq, "raw message on a subject without a valid tenant; dropped");
        return (None, Some("invalid_subject"));
    };
    let meta = RawMeta::from_headers(m.headers.as_ref());
    let result = meta.normalize(&tenant, &m.payload, &config.options);
    let source_name = meta.source_type;
    match result {
        Ok(n) => (
            Some(Outgoing {
                subject: Subject::NormalizedEvents.for_tenant(&tenant),
                msg_id: vigil_bus::msg_id(&tenant, &n.event_id),
                payload: serde_json::to_vec(&n.event)
                    .expect("a JSON value serializes")
                    .into(),
                headers: vec![("Vigil-Source-Type", source_name)],
            }),
            None,
        ),
        Err(r) => (
            Some(Outgoing {
                subject: Subject::DlqEvents.for_tenant(&tenant),
                msg_id: vigil_bus::raw_reject_msg_id(seq),
                payload: m.payload.clone(),
                headers: vec![
                    ("Vigil-Reject-Reason", r.reason.to_owned()),
                    ("Vigil-Reject-Message", r.message.replace(['\r', '\n'], " ")),
                    ("Vigil-Source-Type", source_name),
                    ("Vigil-Raw-Sequence", seq.to_string()),
                ],
            }),
            Some(r.reason),
        ),
    }
}

/// What ingest recorded about a raw message, in its headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawMeta {
    /// `Vigil-Source-Type`; `ecs` when absent.
    pub source_type: String,
    /// `Vigil-Ingested-At`; the current time when absent or unreadable.
    pub ingested_at: i64,
    /// `Vigil-Event-Id`, the id ingest assigned.
    pub event_id: Option<String>,
}

impl RawMeta {
    /// Reads the headers of a raw message.
    pub fn from_headers(headers: Option<&async_nats::HeaderMap>) -> RawMeta {
        let header = |name: &str| {
            headers
                .and_then(|h| h.get(name))
                .map(|v| v.as_str().to_owned())
        };
        RawMeta {
            source_type: header("Vigil-Source-Type").unwrap_or_else(|| "ecs".to_owned()),
            ingested_at: header("Vigil-Ingested-At")
                .and_then(|t| parse_rfc3339(&t))
                .unwrap_or_else(now_millis),
            event_id: header("Vigil-Event-Id"),
        }
    }

    /// Normalizes `payload`, a raw message of `tenant` with these headers.
    pub fn normalize(
        &self,
        tenant: &TenantId,
        payload: &[u8],
        options: &Options,
    ) -> Result<Normalized, Reject> {
        crate::normalize_named(
            &self.source_type,
            &RawEvent {
                tenant,
                source_type: SourceType::Ecs,
                payload,
                event_id: self.event_id.as_deref(),
                ingested_at: self.ingested_at,
            },
            options,
        )
    }
}
