//! The case API: analysts list, read and work their tenant's cases. The tenant is always the
//! token's; a case number names a case within it, so another tenant's case is simply not
//! found. Auditors read; every other role may also change cases and comment.
//!
//! - `GET /v1/cases?status=&assignee=&before=&limit=` — newest first;
//! - `GET /v1/cases/{number}` — the case, its alerts and comments;
//! - `PATCH /v1/cases/{number}` — `{"version": N, ...changes}`: 409 if the case is no longer
//!   at version N, 422 for a transition that does not exist or a close without outcome;
//! - `POST /v1/cases/{number}/comments` — `{"body": "..."}`;
//! - `GET /v1/cases/{number}/audit` — who did what, oldest first.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use vigil_cases::{CaseChange, CaseFilter, Store};

use crate::AppState;
use crate::auth::Principal;
use crate::error::ApiError;

/// The caller and the store, or why not.
fn caller<'a>(
    state: &'a AppState,
    headers: &HeaderMap,
    write: bool,
) -> Result<(Principal, &'a Store), ApiError> {
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let principal = state.verifier.verify(auth)?;
    if write && !principal.role.may_work_cases() {
        return Err(ApiError::Forbidden(format!(
            "role {:?} may read cases, not change them",
            principal.role
        )));
    }
    let store = state
        .cases
        .as_ref()
        .ok_or_else(|| ApiError::Unavailable("the case store is not configured".to_owned()))?;
    Ok((principal, store))
}

fn store_error(e: vigil_cases::Error) -> ApiError {
    match e {
        vigil_cases::Error::NotFound(n) => ApiError::NotFound(format!("case {n} not found")),
        e @ vigil_cases::Error::Conflict { .. } => ApiError::Conflict(e.to_string()),
        vigil_cases::Error::Invalid(m) => ApiError::Invalid(m),
        e => {
            tracing::error!(error = %e, "case store request failed");
            ApiError::Unavailable("the case store is unavailable".to_owned())
        }
    }
}

/// `GET /v1/cases`.
#[derive(Debug, Serialize)]
struct CaseList {
    cases: Vec<vigil_cases::Case>,
}

/// `GET /v1/cases/{number}/audit`.
#[derive(Debug, Serialize)]
struct AuditList {
    entries: Vec<vigil_cases::case::AuditEntry>,
}

/// A JSON body, or 400 naming `what` it should have been.
fn parse<T: serde::de::DeserializeOwned>(body: &[u8], what: &str) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("invalid {what}: {e}")))
}

fn respond<T: Serialize>(r: Result<(StatusCode, T), ApiError>) -> Response {
    match r {
        Ok((status, body)) => (status, Json(body)).into_response(),
        Err(e) => e.into_response(),
    }
}

pub(crate) async fn list(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(filter): Query<CaseFilter>,
) -> Response {
    respond(
        async {
            let (p, store) = caller(&state, &headers, false)?;
            let cases = store.cases(&p.tenant, &filter).await.map_err(store_error)?;
            Ok((StatusCode::OK, CaseList { cases }))
        }
        .await,
    )
}

pub(crate) async fn get_one(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(number): Path<i64>,
) -> Response {
    respond(
        async {
            let (p, store) = caller(&state, &headers, false)?;
            store
                .case(&p.tenant, number)
                .await
                .map_err(store_error)?
                .map(|c| (StatusCode::OK, c))
                .ok_or_else(|| ApiError::NotFound(format!("case {number} not found")))
        }
        .await,
    )
}

/// A PATCH body: the version read, and the change.
#[derive(Debug, Deserialize)]
pub(crate) struct Patch {
    version: i64,
    #[serde(flatten)]
    change: CaseChange,
}

pub(crate) async fn patch(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(number): Path<i64>,
    body: axum::body::Bytes,
) -> Response {
    respond(
        async {
            let (p, store) = caller(&state, &headers, true)?;
            let patch: Patch = parse(&body, "case change")?;
            let case = store
                .update_case(&p.tenant, number, patch.version, &patch.change, &p.subject)
                .await
                .map_err(store_error)?;
            Ok((StatusCode::OK, case))
        }
        .await,
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewComment {
    body: String,
}

pub(crate) async fn comment(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(number): Path<i64>,
    body: axum::body::Bytes,
) -> Response {
    respond(
        async {
            let (p, store) = caller(&state, &headers, true)?;
            let c: NewComment = parse(&body, "comment")?;
            let comment = store
                .add_comment(&p.tenant, number, &c.body, &p.subject)
                .await
                .map_err(store_error)?;
            Ok((StatusCode::CREATED, comment))
        }
        .await,
    )
}

pub(crate) async fn audit(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(number): Path<i64>,
) -> Response {
    respond(
        async {
            let (p, store) = caller(&state, &headers, false)?;
            let entries = store
                .audit_log(&p.tenant, number)
                .await
                .map_err(store_error)?;
            Ok((StatusCode::OK, AuditList { entries }))
        }
        .await,
    )
}
