//! `/metrics` and `/healthz` of `vigil run --config` (`[engine] metrics_listen`): the engine's
//! per-rule and per-tenant metrics, and the stream source's counters.

use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use axum::Router;
use axum::routing::get;
use vigil_engine::EngineMetrics;
use vigil_sources::JetStreamStats;

/// Serves on `addr` from a thread of its own until the process exits.
pub fn serve(
    addr: SocketAddr,
    engine: Arc<EngineMetrics>,
    source: Option<Arc<Mutex<JetStreamStats>>>,
) -> Result<()> {
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
                            let source = source.clone();
                            async move { render(&engine, source.as_deref()) }
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

fn render(engine: &EngineMetrics, source: Option<&Mutex<JetStreamStats>>) -> String {
    let mut out = engine.render();
    if let Some(s) = source {
        let s = s.lock().map(|s| s.clone()).unwrap_or_default();
        for (name, kind, help, v) in [
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
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
            );
        }
    }
    out
}
