//! Alerts to the case store in Postgres (ADR 0008): each alert stored once and linked to its
//! case, through [`vigil_cases::Store::record_alerts`].
//!
//! - **Batching and backpressure** as for OpenSearch ([`crate::background`]): a bounded
//!   queue, batches by count and time, `flush` before every checkpoint returns only when every
//!   alert written before it is committed (or dead-lettered), so the input is never
//!   acknowledged ahead of the case store.
//! - **One transaction per tenant per batch.** Connection failures and aborted transactions
//!   (deadlock, serialization, shutdown) retry with backoff and jitter, for as long as it
//!   takes: Postgres down stalls the engine, it loses nothing. Replays are harmless: the store
//!   is idempotent by alert id.
//! - **Data errors** (a value Postgres cannot hold, such as NUL in text): the batch is retried
//!   alert by alert, and the alerts refused on their own go to `dlq.alerts.{tenant}` with the
//!   SQLSTATE and message, so one bad alert never blocks the others.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use vigil_bus::{Publisher, Subject};
use vigil_cases::{Grouping, Recorded, Store};
use vigil_engine::{AlertSink, SinkError};
use vigil_model::{Alert, TenantId};

use crate::background::{
    Background, Batch, Limits, dead_letter, jitter, lock, runtime, sink_error,
};

/// How the sink writes; the `[postgres]` section of a pipeline file (every key optional).
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PostgresConfig {
    /// The case store as the application role, e.g. `postgres://vigil_app@127.0.0.1:5433/vigil`.
    pub url: String,
    /// Connections in the pool.
    pub connections: usize,
    /// Alerts per transaction at most.
    pub batch_alerts: usize,
    /// How long the first alert of a batch waits for more.
    #[serde(with = "vigil_model::duration::text")]
    pub flush_interval: Duration,
    /// Alerts queued before `write` blocks.
    pub max_buffered: usize,
    /// Longest wait between retries.
    #[serde(with = "vigil_model::duration::text")]
    pub max_backoff: Duration,
}

impl Default for PostgresConfig {
    /// The dev services' database, 2 connections, 500 alerts or 200 ms per transaction,
    /// 10,000 queued, backoff up to 30 s.
    fn default() -> Self {
        PostgresConfig {
            url: "postgres://vigil_app@127.0.0.1:5433/vigil".to_owned(),
            connections: 2,
            batch_alerts: 500,
            flush_interval: Duration::from_millis(200),
            max_buffered: 10_000,
            max_backoff: Duration::from_secs(30),
        }
    }
}

/// What the sink did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PostgresStats {
    /// Alerts stored, cases opened and updated, duplicates.
    pub recorded: Recorded,
    /// Alerts refused (a data error) and sent to the dead-letter subject.
    pub dead_lettered: u64,
    /// Transactions retried.
    pub retries: u64,
    /// Transactions committed.
    pub transactions: u64,
}

/// The case store sink. `write` and `flush` are called from the engine's worker threads.
pub struct PostgresCases {
    queue: Background<Alert>,
    stats: Arc<Mutex<PostgresStats>>,
}

impl std::fmt::Debug for PostgresCases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresCases").finish_non_exhaustive()
    }
}

fn sink_err(e: impl std::fmt::Display) -> SinkError {
    sink_error("postgres", e)
}

impl PostgresCases {
    /// Connects the pool and checks the schema (an error if Postgres does not answer or is
    /// not migrated: the service fails at start, visibly), then starts the writer. Alerts
    /// are grouped into cases by `grouping`; refused ones go to `dlq.alerts.{tenant}` on the
    /// NATS server at `nats_url`, each publish acknowledged within `publish_timeout`.
    pub fn connect(
        config: PostgresConfig,
        grouping: Grouping,
        nats_url: &str,
        publish_timeout: Duration,
    ) -> Result<Self, SinkError> {
        let rt = runtime("postgres")?;
        let store = rt
            .block_on(Store::connect(&config.url, config.connections))
            .map_err(sink_err)?;
        let js = rt
            .block_on(vigil_bus::connect(nats_url, Duration::from_secs(10)))
            .map_err(sink_err)?;
        let stats = Arc::<Mutex<PostgresStats>>::default();
        let writer = Writer {
            store,
            grouping,
            dead_letters: Publisher::new(js, publish_timeout),
            max_backoff: config.max_backoff,
            stats: Arc::clone(&stats),
        };
        let limits = Limits {
            items: config.batch_alerts,
            bytes: usize::MAX,
            interval: config.flush_interval,
            queue: config.max_buffered,
        };
        Ok(PostgresCases {
            queue: Background::start("postgres", rt, writer, limits),
            stats,
        })
    }

    /// The sink's counters.
    pub fn stats(&self) -> PostgresStats {
        lock(&self.stats).clone()
    }
}

impl AlertSink for PostgresCases {
    fn write(&self, alerts: &[Alert]) -> Result<(), SinkError> {
        for a in alerts {
            // Blocks while the queue is full: Postgres is slow or down.
            self.queue.send(a.clone())?;
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), SinkError> {
        self.queue.flush()
    }
}

/// Owns the pool: groups by tenant, commits, retries, dead-letters.
struct Writer {
    store: Store,
    grouping: Grouping,
    dead_letters: Publisher,
    max_backoff: Duration,
    stats: Arc<Mutex<PostgresStats>>,
}

/// Why one alert could not be stored: its SQLSTATE and the database's message.
type Refusal = (String, String);

impl Writer {
    /// Records `alerts` (one tenant's) in one transaction, retrying transient failures; the
    /// refusal if the database refused the data.
    async fn record(&self, tenant: &TenantId, alerts: &[Alert]) -> Result<(), Refusal> {
        let mut backoff = Duration::from_millis(100);
        let mut attempt = 0u32;
        loop {
            attempt = attempt.saturating_add(1);
            match self
                .store
                .record_alerts(tenant, alerts, &self.grouping, "engine")
                .await
            {
                Ok(r) => {
                    let mut st = lock(&self.stats);
                    st.recorded += r;
                    st.transactions += 1;
                    return Ok(());
                }
                Err(e) if e.is_data_error() => {
                    let code = e.code().map_or("", |c| c.code()).to_owned();
                    return Err((code, e.to_string()));
                }
                Err(e) => {
                    lock(&self.stats).retries += 1;
                    tracing::warn!(error = %e, %tenant, alerts = alerts.len(), attempt, "case store write failed; retrying");
                    tokio::time::sleep(jitter(backoff, attempt)).await;
                    backoff = (backoff * 2).min(self.max_backoff);
                }
            }
        }
    }

    /// Publishes `alert` to its tenant's dead-letter subject, retrying until JetStream has it.
    async fn dead_letter(&self, alert: &Alert, (code, message): Refusal) {
        tracing::error!(id = %alert.id, tenant = %alert.tenant_id, code, message, "the case store refused an alert; sent to the dead-letter subject");
        let body = serde_json::to_vec(alert).unwrap_or_default();
        let mut backoff = Duration::from_millis(100);
        let mut attempt = 0u32;
        loop {
            attempt = attempt.saturating_add(1);
            let msg = dead_letter(
                Subject::DlqAlerts,
                &alert.tenant_id,
                &format!("postgres-alerts:{}", alert.id),
                body.clone().into(),
                "postgres",
                format!("sqlstate_{code}"),
                &message,
            );
            match self.dead_letters.publish_all(vec![msg]).await {
                Ok(_) => {
                    lock(&self.stats).dead_lettered += 1;
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "dead-lettering a refused alert failed; retrying");
                    tokio::time::sleep(jitter(backoff, attempt)).await;
                    backoff = (backoff * 2).min(self.max_backoff);
                }
            }
        }
    }
}

impl Batch for Writer {
    type Item = Alert;

    fn size(_: &Alert) -> usize {
        1
    }

    async fn write_all(&mut self, batch: &mut Vec<Alert>) {
        let mut by_tenant: BTreeMap<TenantId, Vec<Alert>> = BTreeMap::new();
        for a in batch.drain(..) {
            by_tenant.entry(a.tenant_id.clone()).or_default().push(a);
        }
        for (tenant, alerts) in by_tenant {
            if self.record(&tenant, &alerts).await.is_ok() {
                continue;
            }
            // Some alert of the batch is refused: find it, write the others.
            for a in &alerts {
                if let Err(refusal) = self.record(&tenant, std::slice::from_ref(a)).await {
                    self.dead_letter(a, refusal).await;
                }
            }
        }
    }
}
