//! One parser per source type. Each turns a payload into a [`Parsed`] event that holds the
//! mapped fields (nested objects, the source id in `event.id` when there is one) and the event
//! time; `normalize` then applies the checks and fields every event shares.
//!
//! Adding a parser: a module here with `parse(...) -> Result<Parsed, Reject>` and a
//! `source_id`, a variant of `SourceType`, an arm in [`parse`] and [`source_event_id`],
//! fixtures under `tests/fixtures/<name>/` and cases in `tests/parsers.rs`.

pub(crate) mod cloudtrail;
pub(crate) mod ecs;
pub(crate) mod ocsf;
pub(crate) mod sshd;
pub(crate) mod udm;
pub(crate) mod windows;

use serde_json::{Map, Value};
use vigil_model::TenantId;
use vigil_model::time::parse_rfc3339;

use crate::{RawEvent, Reject, SourceType, json};

/// A parser's output, before the shared fields and checks.
#[derive(Debug)]
pub(crate) struct Parsed {
    /// The mapped event (an object).
    pub event: Value,
    /// Event time, epoch milliseconds.
    pub timestamp: i64,
    /// Whether account names are case-insensitive (lowercased by canonicalization).
    pub case_insensitive: bool,
}

impl Parsed {
    pub(crate) fn new(event: Map<String, Value>, timestamp: i64, case_insensitive: bool) -> Self {
        Parsed {
            event: Value::Object(event),
            timestamp,
            case_insensitive,
        }
    }
}

/// Runs the parser of `raw.source_type`.
pub(crate) fn parse(raw: &RawEvent<'_>) -> Result<Parsed, Reject> {
    if raw.source_type == SourceType::Sshd {
        let line = std::str::from_utf8(raw.payload)
            .map_err(|_| Reject::new("invalid_json", "sshd line is not UTF-8"))?;
        return sshd::parse(line, raw.ingested_at);
    }
    let record = decode_json(raw.payload)?;
    check_tenant(&record, raw.tenant)?;
    match raw.source_type {
        SourceType::Ecs => ecs::parse(record),
        SourceType::Ocsf => ocsf::parse(&record),
        SourceType::Udm => udm::parse(&record),
        SourceType::WindowsSecurity => windows::parse(&record),
        SourceType::CloudTrail => cloudtrail::parse(&record),
        SourceType::Sshd => unreachable!("handled above"),
    }
}

/// The source's own id of a JSON record.
pub(crate) fn source_event_id(source_type: SourceType, record: &Value) -> Option<String> {
    match source_type {
        SourceType::Ecs => ecs::source_id(record),
        SourceType::Ocsf => ocsf::source_id(record),
        SourceType::Udm => udm::source_id(record),
        SourceType::WindowsSecurity => windows::source_id(record),
        SourceType::CloudTrail => cloudtrail::source_id(record),
        SourceType::Sshd => None,
    }
}

fn decode_json(payload: &[u8]) -> Result<Value, Reject> {
    match serde_json::from_slice::<Value>(payload) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(other) => Err(Reject::new(
            "invalid_json",
            format!(
                "payload is a JSON {}, not an object",
                json::type_name(&other)
            ),
        )),
        Err(e) => Err(Reject::new(
            "invalid_json",
            format!("payload is not JSON: {e}"),
        )),
    }
}

/// A top-level `tenant_id` must equal the authenticated tenant; a missing or `null` one is
/// filled in later.
fn check_tenant(record: &Value, tenant: &TenantId) -> Result<(), Reject> {
    match record.get("tenant_id") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(t)) if t == tenant.as_str() => Ok(()),
        Some(other) => Err(Reject::new(
            "tenant_mismatch",
            format!("payload tenant_id {other} differs from the tenant `{tenant}`"),
        )),
    }
}

/// Event time from an RFC 3339 string field: missing, invalid or epoch milliseconds.
pub(crate) fn rfc3339_time(record: &Value, path: &str) -> Result<i64, Reject> {
    match json::present(record, path) {
        None => Err(Reject::new(
            "missing_timestamp",
            format!("record has no {path}"),
        )),
        Some(Value::String(s)) => parse_rfc3339(s).ok_or_else(|| {
            Reject::new(
                "invalid_timestamp",
                format!("{path} `{s}` is not an RFC 3339 timestamp"),
            )
        }),
        Some(other) => Err(Reject::new(
            "invalid_timestamp",
            format!(
                "{path} must be an RFC 3339 string, found {}",
                json::type_name(other)
            ),
        )),
    }
}

/// `event.outcome` values.
pub(crate) const SUCCESS: &str = "success";
/// `event.outcome` values.
pub(crate) const FAILURE: &str = "failure";
/// `event.outcome` values.
pub(crate) const UNKNOWN: &str = "unknown";
