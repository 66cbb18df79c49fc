//! The API's one error type and its mapping to HTTP statuses. Bodies are
//! `{"error": "<code>", "message": "<what was attempted and why it failed>"}`.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No or bad credentials (401).
    #[error("{0}")]
    Unauthorized(String),
    /// Valid credentials that may not do this (403).
    #[error("{0}")]
    Forbidden(String),
    /// The request as a whole is malformed (400).
    #[error("{0}")]
    BadRequest(String),
    /// The body is over a limit (413).
    #[error("{0}")]
    TooLarge(String),
    /// The tenant is over its rate limit; retry after this many seconds (429).
    #[error("tenant is over its ingest rate; retry after {0} s")]
    RateLimited(u64),
    /// NATS is unavailable (503).
    #[error("{0}")]
    Unavailable(String),
    /// No such resource in the caller's tenant (404).
    #[error("{0}")]
    NotFound(String),
    /// The resource changed since the caller read it (409).
    #[error("{0}")]
    Conflict(String),
    /// Well-formed, but not a valid change (422).
    #[error("{0}")]
    Invalid(String),
}

impl ApiError {
    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        self.status_and_code().0
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::RateLimited(_) => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let mut resp = (
            status,
            Json(json!({"error": code, "message": self.to_string()})),
        )
            .into_response();
        match &self {
            ApiError::RateLimited(secs) => {
                if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                    resp.headers_mut().insert(header::RETRY_AFTER, v);
                }
            }
            ApiError::Unauthorized(_) => {
                resp.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ApiError::Unavailable(_) => {
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            _ => {}
        }
        resp
    }
}
