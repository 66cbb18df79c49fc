//! `vigil run --config pipeline.toml`: one file describes the engine's source, rules, engine
//! settings and sinks (see `examples/pipeline.toml` and the README). Relative paths are relative
//! to the file's directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use vigil_bus::StreamsConfig;
use vigil_cases::Grouping;

use crate::metrics::{Probe, Sample};
use vigil_engine::{AlertSink, CheckpointConfig, EngineConfig, EventSource, RejectSink};
use vigil_model::TenantId;
use vigil_sinks::{
    FanOut, JetStreamAlerts, JetStreamOut, JetStreamRejects, JsonlAlerts, JsonlRejects,
    OpenSearchAlerts, OpenSearchConfig, PostgresCases, PostgresConfig,
};
use vigil_sources::{FileSource, Input, JetStreamConfig, JetStreamSource, Start, StdinSource};

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pipeline {
    /// Rule files or directories.
    pub rules: Vec<PathBuf>,
    #[serde(default)]
    engine: EngineSection,
    source: SourceSection,
    #[serde(default)]
    sinks: SinksSection,
    #[serde(default)]
    nats: NatsSection,
    /// Where the `"opensearch"` alert sink writes.
    #[serde(default)]
    opensearch: OpenSearchConfig,
    /// Where the `"postgres"` alert sink (the case store) writes.
    #[serde(default)]
    postgres: PostgresConfig,
    /// How the `"postgres"` sink groups alerts into cases.
    #[serde(default)]
    cases: Grouping,
    /// When present, the engine creates or migrates the streams at start (as ingest does).
    streams: Option<StreamsConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct EngineSection {
    workers: usize,
    #[serde(with = "vigil_model::duration::text")]
    lateness: Duration,
    tenant: Option<TenantId>,
    /// Where checkpoints are kept; required for a JetStream source.
    state_dir: Option<PathBuf>,
    /// Serve Prometheus `/metrics` (and `/healthz`) here, e.g. `127.0.0.1:9464`.
    metrics_listen: Option<std::net::SocketAddr>,
    /// Most live window keys per tenant and stage.
    max_keys_per_tenant: u64,
    /// Most alerts per rule, tenant and minute of event time.
    max_alerts_per_minute: u64,
    /// Tenants with their own caps: `[engine.tenant_limits.acme]`.
    tenant_limits: BTreeMap<TenantId, TenantLimitsSection>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantLimitsSection {
    max_keys: Option<u64>,
    max_alerts_per_minute: Option<u64>,
}

impl Default for EngineSection {
    fn default() -> Self {
        EngineSection {
            workers: 1,
            lateness: Duration::from_millis(vigil_engine::DEFAULT_LATENESS_MS),
            tenant: None,
            state_dir: None,
            metrics_listen: None,
            max_keys_per_tenant: vigil_engine::DEFAULT_KEYS_PER_TENANT,
            max_alerts_per_minute: vigil_engine::DEFAULT_ALERTS_PER_MINUTE,
            tenant_limits: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct NatsSection {
    url: String,
    #[serde(with = "vigil_model::duration::text")]
    publish_timeout: Duration,
}

impl Default for NatsSection {
    fn default() -> Self {
        NatsSection {
            url: "nats://127.0.0.1:4222".to_owned(),
            publish_timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum SourceSection {
    /// A JSON-lines file, read once; windows flush at its end.
    File { path: PathBuf },
    /// JSON lines on stdin, live.
    Stdin,
    /// The durable consumer on `NORMALIZED`.
    Jetstream(JetStreamSection),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct JetStreamSection {
    /// `NORMALIZED` (events from `vigil normalize`) or `RAW` (normalized on the workers).
    stream: String,
    /// For `RAW`: how far an event's time may lie after its ingest time.
    #[serde(with = "vigil_model::duration::text")]
    max_clock_skew: Duration,
    consumer: String,
    tenants: Vec<TenantId>,
    batch: usize,
    max_ack_pending: i64,
    #[serde(with = "vigil_model::duration::text")]
    ack_wait: Duration,
    #[serde(with = "vigil_model::duration::text")]
    checkpoint_interval: Duration,
    start: StartSetting,
    #[serde(with = "optional_duration")]
    stop_when_idle: Option<Duration>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum StartSetting {
    All,
    New,
}

impl Default for JetStreamSection {
    fn default() -> Self {
        let d = JetStreamConfig::new("");
        JetStreamSection {
            stream: d.input.subject().stream().to_owned(),
            max_clock_skew: Duration::from_millis(
                vigil_normalize::Options::default().max_clock_skew_ms as u64,
            ),
            consumer: d.consumer,
            tenants: d.tenants,
            batch: d.batch,
            max_ack_pending: d.max_ack_pending,
            ack_wait: d.ack_wait,
            checkpoint_interval: d.checkpoint_interval,
            start: StartSetting::All,
            stop_when_idle: None,
        }
    }
}

mod optional_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let s = Option::<String>::deserialize(d)?;
        s.map(|s| {
            vigil_model::parse_duration(&s)
                .map(Duration::from_millis)
                .map_err(serde::de::Error::custom)
        })
        .transpose()
    }
}

/// Where alerts and rejects go: `"jetstream"` (the `ALERTS` / `DLQ` stream), for alerts
/// `"opensearch"` (`alerts-{tenant}`, configured in `[opensearch]`), `"postgres"` (the case
/// store, configured in `[postgres]` and grouped into cases by `[cases]`), or a JSON-lines path
/// (`"-"` is stdout). Several may be listed.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct SinksSection {
    alerts: Vec<String>,
    rejects: Vec<String>,
}

impl Default for SinksSection {
    fn default() -> Self {
        SinksSection {
            alerts: vec!["-".to_owned()],
            rejects: Vec::new(),
        }
    }
}

const JETSTREAM: &str = "jetstream";
const OPENSEARCH: &str = "opensearch";
const POSTGRES: &str = "postgres";

/// A pipeline ready to run.
pub struct Built {
    pub rules: Vec<PathBuf>,
    pub engine: EngineConfig,
    pub source: Box<dyn EventSource>,
    pub describe: String,
    pub alerts: Arc<dyn AlertSink>,
    pub rejects: Option<Arc<dyn RejectSink>>,
    /// Set on SIGTERM/SIGINT, for sources that stop cleanly.
    pub stop: Option<Arc<AtomicBool>>,
    pub jetstream_stats: Option<Arc<std::sync::Mutex<vigil_sources::JetStreamStats>>>,
    /// The alert sinks' counters, for `/metrics`.
    pub sink_probes: Vec<Probe>,
    /// Where to serve metrics.
    pub metrics_listen: Option<std::net::SocketAddr>,
}

impl Pipeline {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<(Pipeline, PathBuf)> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("failed to read {}", path.display()))?;
        let p: Pipeline = toml::from_str(&text)
            .with_context(|| format!("invalid pipeline {}", path.display()))?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Ok((p, base))
    }

    /// Connects sinks and builds the source.
    pub fn build(self, base: &Path) -> Result<Built> {
        let at = |p: &Path| {
            if p.is_absolute() || p.as_os_str() == "-" {
                p.to_path_buf()
            } else {
                base.join(p)
            }
        };
        if self.engine.workers == 0 || self.engine.workers > 256 {
            bail!("engine.workers must be between 1 and 256");
        }
        if let Some(streams) = &self.streams {
            let url = self.nats.url.clone();
            let streams = streams.clone();
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async {
                let js = vigil_bus::connect(&url, Duration::from_secs(10)).await?;
                vigil_bus::ensure_streams(&js, &streams).await?;
                anyhow::Ok(())
            })
            .context("failed to set up the streams")?;
        }
        let mut stop = None;
        let mut jetstream_stats = None;
        let (source, describe): (Box<dyn EventSource>, String) = match self.source {
            SourceSection::File { path } => {
                let path = at(&path);
                if !path.is_file() {
                    bail!("failed to open input {}: not a file", path.display());
                }
                let d = path.display().to_string();
                (Box::new(FileSource::new(&path)), d)
            }
            SourceSection::Stdin => (Box::new(StdinSource), "stdin".to_owned()),
            SourceSection::Jetstream(j) => {
                let input = input(&j.stream, j.max_clock_skew)?;
                let config = JetStreamConfig {
                    url: self.nats.url.clone(),
                    input,
                    consumer: j.consumer,
                    tenants: j.tenants,
                    batch: j.batch,
                    max_ack_pending: j.max_ack_pending,
                    ack_wait: j.ack_wait,
                    checkpoint_interval: j.checkpoint_interval,
                    start: match j.start {
                        StartSetting::All => Start::All,
                        StartSetting::New => Start::New,
                    },
                    stop_when_idle: j.stop_when_idle,
                };
                config.validate().map_err(anyhow::Error::msg)?;
                if self.engine.state_dir.is_none() {
                    bail!(
                        "a jetstream source needs engine.state_dir: messages are acknowledged only behind checkpoints"
                    );
                }
                let d = format!(
                    "{} (consumer {}) at {}",
                    config.input.subject().stream(),
                    config.consumer,
                    config.url
                );
                let s = JetStreamSource::new(config);
                stop = Some(s.stop_handle());
                jetstream_stats = Some(s.stats_handle());
                (Box::new(s), d)
            }
        };
        let out = |name: &'static str| {
            JetStreamOut::connect(name, &self.nats.url, self.nats.publish_timeout)
                .with_context(|| format!("failed to connect the {name} sink"))
        };
        let mut alerts: Vec<Arc<dyn AlertSink>> = Vec::new();
        let mut sink_probes: Vec<Probe> = Vec::new();
        for a in &self.sinks.alerts {
            if a == JETSTREAM {
                alerts.push(Arc::new(JetStreamAlerts(out("ALERTS")?)));
            } else if a == OPENSEARCH {
                let sink = Arc::new(opensearch_sink(&self.opensearch, &self.nats)?);
                let probe = Arc::clone(&sink);
                sink_probes.push(Arc::new(move || {
                    let s = probe.stats();
                    sink_samples(
                        OPENSEARCH,
                        [s.created, s.duplicates, s.dead_lettered, s.retries],
                        &[],
                    )
                }));
                alerts.push(sink);
            } else if a == POSTGRES {
                let sink = PostgresCases::connect(
                    self.postgres.clone(),
                    self.cases.clone(),
                    &self.nats.url,
                    self.nats.publish_timeout,
                )
                .with_context(|| {
                    format!(
                        "failed to connect the postgres sink to {}",
                        self.postgres.url
                    )
                })?;
                let sink = Arc::new(sink);
                let probe = Arc::clone(&sink);
                sink_probes.push(Arc::new(move || {
                    let s = probe.stats();
                    let r = s.recorded;
                    sink_samples(
                        POSTGRES,
                        [r.stored, r.duplicates, s.dead_lettered, s.retries],
                        &[
                            (
                                "vigil_cases_opened_total",
                                "Cases opened by alerts.",
                                r.cases_opened,
                            ),
                            (
                                "vigil_cases_updated_total",
                                "Existing cases that took alerts (per transaction).",
                                r.cases_updated,
                            ),
                        ],
                    )
                }));
                alerts.push(sink);
            } else {
                alerts.push(Arc::new(JsonlAlerts::append(&at(Path::new(a)))?));
            }
        }
        let mut rejects: Vec<Arc<dyn RejectSink>> = Vec::new();
        for r in &self.sinks.rejects {
            if r == JETSTREAM {
                rejects.push(Arc::new(JetStreamRejects(out("DLQ")?)));
            } else {
                rejects.push(Arc::new(JsonlRejects::append(&at(Path::new(r)))?));
            }
        }
        if alerts.is_empty() {
            bail!("sinks.alerts is empty: alerts would go nowhere");
        }
        let engine = EngineConfig {
            metrics: self
                .engine
                .metrics_listen
                .map(|_| Arc::new(vigil_engine::EngineMetrics::default())),
            workers: self.engine.workers,
            lateness_ms: u64::try_from(self.engine.lateness.as_millis()).unwrap_or(u64::MAX),
            default_tenant: self.engine.tenant,
            checkpoint: self
                .engine
                .state_dir
                .map(|d| CheckpointConfig { dir: at(&d) }),
            limits: vigil_engine::TenantLimits {
                keys: self.engine.max_keys_per_tenant,
                alerts_per_minute: self.engine.max_alerts_per_minute,
                tenants: self
                    .engine
                    .tenant_limits
                    .into_iter()
                    .map(|(t, l)| {
                        let caps = vigil_engine::TenantCaps {
                            keys: l.max_keys,
                            alerts_per_minute: l.max_alerts_per_minute,
                        };
                        (t.to_string(), caps)
                    })
                    .collect(),
            },
            ..EngineConfig::default()
        };
        Ok(Built {
            rules: self.rules.iter().map(|r| at(r)).collect(),
            engine,
            source,
            describe,
            alerts: FanOut::alerts(alerts),
            rejects: if rejects.is_empty() {
                None
            } else {
                Some(FanOut::rejects(rejects))
            },
            stop,
            jetstream_stats,
            sink_probes,
            metrics_listen: self.engine.metrics_listen,
        })
    }
}

/// The samples every store sink has, labelled with its name: `[written, duplicates,
/// dead-lettered, retries]`, then `extra` counters of its own.
fn sink_samples(
    sink: &str,
    counts: [u64; 4],
    extra: &[(&'static str, &'static str, u64)],
) -> Vec<Sample> {
    let labels = format!("{{sink=\"{sink}\"}}");
    let common = [
        (
            "vigil_sink_alerts_written_total",
            "Alerts the sink stored (new).",
        ),
        (
            "vigil_sink_alerts_duplicate_total",
            "Alerts the store already had (replays).",
        ),
        (
            "vigil_sink_alerts_dead_lettered_total",
            "Alerts refused for good, sent to dlq.alerts.{tenant}.",
        ),
        (
            "vigil_sink_retries_total",
            "Requests or transactions retried (the store slow or down).",
        ),
    ];
    let mut out: Vec<Sample> = common
        .into_iter()
        .zip(counts)
        .map(|((name, help), value)| Sample {
            name,
            kind: "counter",
            help,
            labels: labels.clone(),
            value,
        })
        .collect();
    out.extend(extra.iter().map(|&(name, help, value)| Sample {
        name,
        kind: "counter",
        help,
        labels: String::new(),
        value,
    }));
    out
}

/// The OpenSearch alert sink, with refused alerts dead-lettered to `dlq.alerts.{tenant}`
/// through `nats`.
fn opensearch_sink(config: &OpenSearchConfig, nats: &NatsSection) -> Result<OpenSearchAlerts> {
    OpenSearchAlerts::connect(config.clone(), &nats.url, nats.publish_timeout)
        .with_context(|| format!("failed to connect the opensearch sink to {}", config.url))
}

/// The stream a JetStream source reads, from its name.
fn input(stream: &str, max_clock_skew: Duration) -> Result<Input> {
    Ok(match stream {
        "NORMALIZED" => Input::Normalized,
        "RAW" => Input::Raw(vigil_normalize::Options {
            max_clock_skew_ms: i64::try_from(max_clock_skew.as_millis()).unwrap_or(i64::MAX),
        }),
        other => bail!("source.stream must be \"NORMALIZED\" or \"RAW\", not {other:?}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_pipeline_reads_raw() {
        let path = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../examples/pipeline.toml"
        ));
        let (p, _) = Pipeline::load(path).unwrap();
        assert_eq!(p.sinks.alerts, ["jetstream", OPENSEARCH, POSTGRES, "-"]);
        assert_eq!(p.postgres.url, "postgres://vigil_app@127.0.0.1:5433/vigil");
        assert_eq!(p.cases.default.window, Duration::from_secs(24 * 3600));
        let spray = p.cases.policy("password_spray");
        assert_eq!(
            (spray.by.as_deref(), spray.max_alerts),
            (Some(&["source.ip".to_owned()][..]), 200)
        );
        assert_eq!(p.opensearch.replicas, 0);
        assert_eq!(p.opensearch.flush_interval, Duration::from_secs(1));
        let SourceSection::Jetstream(j) = p.source else {
            panic!("the example reads JetStream")
        };
        assert_eq!(
            input(&j.stream, j.max_clock_skew).unwrap(),
            Input::Raw(vigil_normalize::Options {
                max_clock_skew_ms: 300_000
            })
        );
    }

    #[test]
    fn streams_are_named_exactly() {
        let skew = Duration::from_secs(60);
        assert_eq!(input("NORMALIZED", skew).unwrap(), Input::Normalized);
        let e = input("raw", skew).unwrap_err().to_string();
        assert_eq!(
            e,
            r#"source.stream must be "NORMALIZED" or "RAW", not "raw""#
        );
        // Left out, a JetStream source reads NORMALIZED.
        let d = JetStreamSection::default();
        assert_eq!(
            input(&d.stream, d.max_clock_skew).unwrap(),
            Input::Normalized
        );
    }
}
