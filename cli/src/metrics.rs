//! `/metrics` and `/healthz` of `vigil run --config` (`[engine] metrics_listen`): the engine's
//! per-rule and per-tenant metrics, the stream source's counters and the alert sinks'.

use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use axum::Router;
use axum::routing::get;
use vigil_engine::EngineMetrics;
use vigil_sources::JetStreamStats;

/// Serves on `addr` from a thread of its own until the process exits.
pub fn serve(addr: SocketAddr, engine: Arc<EngineMetrics>, probes: Vec<Probe>) -> Result<()> {
    let listener = std::net::TcpListener::bind(addr)
        .with_context(|| format!("failed to listen on {addr} for metrics"))?;
    listener.set_nonblocking(true)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("failed to start the metrics server")?;
    std::thread::Builder::new()
        .name("vigil-metrics".into())
        .spawn(move || {
            rt.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                    return;
                };
                let app = Router::new()
                    .route("/healthz", get(|| async { "ok" }))
                    .route(
                        "/metrics",
                        get(move || {
                            let engine = Arc::clone(&engine);
                            let probes = probes.clone();
                            async move { render(&engine, &probes) }
                        }),
                    );
                if let Err(e) = axum::serve(listener, app).await {
                    tracing::error!(error = %e, "metrics server failed");
                }
            });
        })
        .context("failed to start the metrics server")?;
    Ok(())
}

/// One sample: metric name, type, help, labels (`{k="v"}` or empty) and value.
#[derive(Debug)]
pub struct Sample {
    pub name: &'static str,
    pub kind: &'static str,
    pub help: &'static str,
    pub labels: String,
    pub value: u64,
}

/// Reads the current samples of a component (a source, a sink).
pub type Probe = Arc<dyn Fn() -> Vec<Sample> + Send + Sync>;

/// The stream source's counters.
pub fn source_probe(source: Arc<Mutex<JetStreamStats>>) -> Probe {
    Arc::new(move || {
        let s = source.lock().map(|s| s.clone()).unwrap_or_default();
        [
            (
                "vigil_source_messages_total",
                "counter",
                "Messages handed to the engine.",
                s.delivered,
            ),
            (
                "vigil_source_redelivered_total",
                "counter",
                "Messages delivered again and skipped (already read).",
                s.redelivered,
            ),
            (
                "vigil_source_unattributed_total",
                "counter",
                "Raw messages on a subject without a valid tenant, skipped.",
                s.unattributed,
            ),
            (
                "vigil_source_position",
                "gauge",
                "Stream sequence of the last message read.",
                s.position,
            ),
            (
                "vigil_source_acked_position",
                "gauge",
                "Stream sequence acknowledged (the committed checkpoint).",
                s.acked,
            ),
        ]
        .into_iter()
        .map(|(name, kind, help, value)| Sample {
            name,
            kind,
            help,
            labels: String::new(),
            value,
        })
        .collect()
    })
}

/// The engine's metrics, then every probe's samples, each metric's HELP and TYPE once.
fn render(engine: &EngineMetrics, probes: &[Probe]) -> String {
    let mut out = engine.render();
    let samples: Vec<Sample> = probes.iter().flat_map(|p| p()).collect();
    let mut seen = Vec::new();
    for s in &samples {
        if seen.contains(&s.name) {
            continue;
        }
        seen.push(s.name);
        let _ = writeln!(
            out,
            "# HELP {} {}\n# TYPE {} {}",
            s.name, s.help, s.name, s.kind
        );
        for t in samples.iter().filter(|t| t.name == s.name) {
            let _ = writeln!(out, "{}{} {}", t.name, t.labels, t.value);
        }
    }
    out
}
