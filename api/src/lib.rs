//! Vigil's HTTP API — the only crate that knows HTTP wire types.
//!
//! Routes:
//! - `POST /v1/ingest/events` — see [`ingest`] for the contract; source type from
//!   `?source_type=` or `X-Vigil-Source-Type` (default `ecs`);
//! - `/v1/cases…` — the case API, see [`cases`];
//! - `GET /healthz` — the process is up;
//! - `GET /readyz` — NATS is connected (503 otherwise);
//! - `GET /metrics` — Prometheus text format;
//! - `GET /openapi.json` — the API reference, `docs/api/openapi.json`.

pub mod auth;
pub mod cases;
pub mod config;
pub mod error;
pub mod ingest;
pub mod limits;
pub mod metrics;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use serde::Deserialize;
use vigil_bus::Publisher;

pub use config::ApiConfig;
use error::ApiError;
use ingest::IngestResult;

/// Shared state of the server.
pub struct AppState {
    /// Token verification and the tenant registry.
    pub verifier: auth::Verifier,
    /// Publishes to JetStream.
    pub publisher: Publisher,
    /// The NATS client, for readiness.
    pub client: async_nats::Client,
    /// Per-tenant rate limits.
    pub limiter: limits::RateLimiter,
    /// Metrics.
    pub metrics: metrics::Metrics,
    /// Request limits.
    pub limits: config::Limits,
    /// The case store, when configured.
    pub cases: Option<vigil_cases::Store>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").finish_non_exhaustive()
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// A key could not be loaded.
    #[error(transparent)]
    Key(#[from] auth::KeyError),
    /// NATS could not be reached or the streams not set up.
    #[error(transparent)]
    Bus(#[from] vigil_bus::BusError),
    /// The case store could not be reached, or its schema is not this build's.
    #[error("case store: {0}")]
    Cases(#[from] vigil_cases::Error),
    /// The listen address could not be bound.
    #[error("failed to listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl AppState {
    /// Validates the config, loads keys, connects to NATS and sets up the streams.
    pub async fn start(config: &ApiConfig) -> Result<Arc<AppState>, StartError> {
        config.validate()?;
        let verifier = auth::Verifier::new(&config.jwt, &config.tenants)?;
        let js = vigil_bus::connect(&config.nats_url, Duration::from_secs(5)).await?;
        for (stream, change) in vigil_bus::ensure_streams(&js, &config.streams).await? {
            tracing::info!(stream = %stream, change = ?change, "stream ready");
        }
        let cases = match &config.cases {
            Some(c) => Some(vigil_cases::Store::connect(&c.database_url, c.connections).await?),
            None => None,
        };
        Ok(Arc::new(AppState {
            verifier,
            publisher: Publisher::new(
                js.clone(),
                Duration::from_secs(config.limits.publish_timeout_secs),
            ),
            client: js.client(),
            limiter: limits::RateLimiter::default(),
            metrics: metrics::Metrics::default(),
            limits: config.limits.clone(),
            cases,
        }))
    }
}

/// The API's routes.
pub fn router(state: Arc<AppState>) -> Router {
    let body_limit = state.limits.max_body_bytes;
    Router::new()
        .route("/v1/ingest/events", post(ingest_events))
        .route("/v1/cases", get(cases::list))
        .route(
            "/v1/cases/{number}",
            get(cases::get_one).patch(cases::patch),
        )
        .route("/v1/cases/{number}/comments", post(cases::comment))
        .route("/v1/cases/{number}/audit", get(cases::audit))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

/// Serves the API until the process is stopped.
pub async fn serve(config: ApiConfig) -> Result<(), StartError> {
    let state = AppState::start(&config).await?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| StartError::Listen {
            addr: config.listen,
            source,
        })?;
    tracing::info!(addr = %config.listen, "listening");
    axum::serve(listener, router(state))
        .await
        .map_err(|source| StartError::Listen {
            addr: config.listen,
            source,
        })
}

async fn ready(State(state): State<Arc<AppState>>) -> Response {
    match state.client.connection_state() {
        async_nats::connection::State::Connected => (StatusCode::OK, "ready").into_response(),
        other => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("nats is {other:?}"),
        )
            .into_response(),
    }
}

/// The OpenAPI document of this API.
pub const OPENAPI_JSON: &str = include_str!("../../docs/api/openapi.json");

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON).into_response()
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
struct IngestQuery {
    source_type: Option<String>,
}

async fn ingest_events(
    State(state): State<Arc<AppState>>,
    Query(q): Query<IngestQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = handle_ingest(&state, q, &headers, body).await;
    let status = match &result {
        Ok((s, _)) => *s,
        Err(e) => e.status(),
    };
    state.metrics.add(
        "vigil_ingest_requests_total",
        &[("status", status.as_str())],
        1,
    );
    match result {
        Ok((status, body)) => (status, axum::Json(body)).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn handle_ingest(
    state: &AppState,
    q: IngestQuery,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, IngestResult), ApiError> {
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let principal = state.verifier.verify(auth)?;
    if !principal.role.may_ingest() {
        return Err(ApiError::Forbidden(format!(
            "role {:?} may not send events",
            principal.role
        )));
    }
    let tenant = principal.tenant;
    let source_name = q
        .source_type
        .or_else(|| {
            headers
                .get("x-vigil-source-type")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "ecs".to_owned());
    let source = ingest::parse_source_type(&source_name)?;
    let ndjson = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.starts_with("application/x-ndjson") || ct.starts_with("application/jsonl")
        });
    let idempotency_key = headers.get("idempotency-key").and_then(|v| v.to_str().ok());
    let body = ingest::decode_body(headers, body, &state.limits)?;
    let prepared = ingest::prepare(
        &tenant,
        source,
        &body,
        ndjson,
        idempotency_key,
        &state.limits,
    )?;
    let entry = state
        .verifier
        .tenant(&tenant)
        .ok_or_else(|| ApiError::Forbidden(format!("tenant `{tenant}` is not registered")))?;
    let n = u32::try_from(prepared.received).unwrap_or(u32::MAX);
    if n > entry.burst {
        return Err(ApiError::TooLarge(format!(
            "request holds {n} events, more than the tenant's burst of {}",
            entry.burst
        )));
    }
    state
        .limiter
        .take(&tenant, n, entry.events_per_sec, entry.burst)
        .map_err(ApiError::RateLimited)?;
    let t = tenant.as_str();
    state.metrics.add(
        "vigil_ingest_events_received_total",
        &[("tenant", t)],
        prepared.received as u64,
    );
    for e in &prepared.errors {
        state.metrics.add(
            "vigil_ingest_events_rejected_total",
            &[("tenant", t), ("reason", e.reason)],
            1,
        );
        tracing::debug!(tenant = %t, index = e.index, reason = e.reason, error = %e.message, "rejected event");
    }
    let started = Instant::now();
    let sent = prepared.messages.len();
    let published = state
        .publisher
        .publish_all(prepared.messages)
        .await
        .map_err(|e| {
            tracing::warn!(tenant = %t, error = %e, "publish failed");
            ApiError::Unavailable(e.to_string())
        })?;
    state.metrics.observe_publish(started.elapsed());
    state.metrics.add(
        "vigil_ingest_events_accepted_total",
        &[("tenant", t)],
        sent as u64,
    );
    state.metrics.add(
        "vigil_ingest_events_duplicate_total",
        &[("tenant", t)],
        published.duplicates as u64,
    );
    let result = IngestResult {
        received: prepared.received,
        accepted: sent,
        duplicates: published.duplicates,
        rejected: prepared.errors.len(),
        errors: prepared.errors,
    };
    let status = if result.rejected == 0 {
        StatusCode::ACCEPTED
    } else {
        StatusCode::BAD_REQUEST
    };
    Ok((status, result))
}
