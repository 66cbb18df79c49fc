//! OCSF: the Authentication class (`class_uid` 3002) of the Identity & Access Management
//! category. Other classes are `unsupported_event`.

use serde_json::{Map, Value};

use super::{FAILURE, Parsed, SUCCESS, UNKNOWN, rfc3339_time};
use crate::json::{self, copy, number_millis, set};
use crate::{Reject, canonical};

/// OCSF Authentication.
const AUTHENTICATION: i64 = 3002;

/// `activity_id` → (`event.action`, `event.type`).
const ACTIVITIES: [(i64, &str, &str); 8] = [
    (0, "unknown", "info"),
    (1, "logon", "start"),
    (2, "logoff", "end"),
    (3, "authentication_ticket", "info"),
    (4, "service_ticket_request", "info"),
    (5, "service_ticket_renew", "info"),
    (6, "preauth", "info"),
    (99, "other", "info"),
];

/// Parses one OCSF event.
pub(crate) fn parse(r: &Value) -> Result<Parsed, Reject> {
    match r.get("class_uid").and_then(json::loose_int) {
        Some(AUTHENTICATION) => {}
        Some(other) => {
            return Err(Reject::new(
                "unsupported_event",
                format!("OCSF class_uid {other} is not mapped (only Authentication, 3002)"),
            ));
        }
        None => {
            return Err(Reject::new(
                "unsupported_event",
                "record has no OCSF class_uid",
            ));
        }
    }
    let timestamp = match json::present(r, "time") {
        Some(v) => number_millis(v).ok_or_else(|| {
            Reject::new(
                "invalid_timestamp",
                format!("OCSF time {v} is not epoch milliseconds"),
            )
        })?,
        None if json::present(r, "time_dt").is_some() => rfc3339_time(r, "time_dt")?,
        None => return Err(Reject::new("missing_timestamp", "record has no OCSF time")),
    };

    let mut e = Map::new();
    let (action, ty) = activity(r);
    set(&mut e, "event.category", vec!["authentication"]);
    set(&mut e, "event.type", vec![ty]);
    set(&mut e, "event.action", action);
    set(&mut e, "event.outcome", outcome(r));
    set(&mut e, "event.dataset", "ocsf.authentication");
    copy(&mut e, "event.id", r, "metadata.uid");
    copy(&mut e, "event.severity", r, "severity_id");
    copy(&mut e, "event.reason", r, "status_detail");
    copy(&mut e, "message", r, "message");
    copy(&mut e, "user.name", r, "user.name");
    copy(&mut e, "user.domain", r, "user.domain");
    copy(&mut e, "user.id", r, "user.uid");
    copy(&mut e, "user.email", r, "user.email_addr");
    copy(&mut e, "user.full_name", r, "user.full_name");
    copy(&mut e, "source.ip", r, "src_endpoint.ip");
    copy(&mut e, "source.port", r, "src_endpoint.port");
    copy(&mut e, "source.domain", r, "src_endpoint.hostname");
    copy(&mut e, "host.name", r, "dst_endpoint.hostname");
    copy(&mut e, "destination.ip", r, "dst_endpoint.ip");
    copy(&mut e, "destination.port", r, "dst_endpoint.port");
    copy(&mut e, "service.name", r, "service.name");
    copy(&mut e, "observer.product", r, "metadata.product.name");
    copy(&mut e, "observer.vendor", r, "metadata.product.vendor_name");

    let case_insensitive = ["metadata.product.vendor_name", "metadata.product.name"]
        .iter()
        .filter_map(|p| json::get_str(r, p))
        .any(canonical::is_microsoft);
    Ok(Parsed::new(e, timestamp, case_insensitive))
}

/// OCSF `metadata.uid`.
pub(crate) fn source_id(r: &Value) -> Option<String> {
    json::get_str(r, "metadata.uid").map(str::to_owned)
}

fn activity(r: &Value) -> (String, &'static str) {
    let id = r.get("activity_id").and_then(json::loose_int);
    if let Some(&(_, action, ty)) = ACTIVITIES.iter().find(|(i, _, _)| Some(*i) == id) {
        return (action.to_owned(), ty);
    }
    match json::get_str(r, "activity_name") {
        Some(name) => (name.to_lowercase().replace(' ', "_"), "info"),
        None => ("unknown".to_owned(), "info"),
    }
}

/// `status_id` 1 Success, 2 Failure; else the `status` text; else unknown.
fn outcome(r: &Value) -> &'static str {
    match r.get("status_id").and_then(json::loose_int) {
        Some(1) => return SUCCESS,
        Some(2) => return FAILURE,
        _ => {}
    }
    match json::get_str(r, "status") {
        Some(s) if s.eq_ignore_ascii_case("success") => SUCCESS,
        Some(s) if s.eq_ignore_ascii_case("failure") => FAILURE,
        _ => UNKNOWN,
    }
}
