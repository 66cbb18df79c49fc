//! Google SecOps UDM: events with `metadata.event_type` `USER_LOGIN`. Other event types are
//! `unsupported_event`.

use serde_json::{Map, Value};

use super::{FAILURE, Parsed, SUCCESS, UNKNOWN, rfc3339_time};
use crate::json::{self, copy, set};
use crate::{Reject, canonical};

/// Parses one UDM event.
pub(crate) fn parse(r: &Value) -> Result<Parsed, Reject> {
    match json::get_str(r, "metadata.event_type") {
        Some("USER_LOGIN") => {}
        Some(other) => {
            return Err(Reject::new(
                "unsupported_event",
                format!("UDM event_type `{other}` is not mapped (only USER_LOGIN)"),
            ));
        }
        None => {
            return Err(Reject::new(
                "unsupported_event",
                "record has no UDM metadata.event_type",
            ));
        }
    }
    let timestamp = match json::get(r, "metadata.event_timestamp") {
        // Protobuf JSON may also write a Timestamp as {"seconds": ..., "nanos": ...}.
        Some(Value::Object(ts)) => proto_timestamp(ts).ok_or_else(|| {
            Reject::new(
                "invalid_timestamp",
                "metadata.event_timestamp is not a valid {seconds, nanos} timestamp",
            )
        })?,
        _ => rfc3339_time(r, "metadata.event_timestamp")?,
    };

    let mut e = Map::new();
    set(&mut e, "event.category", vec!["authentication"]);
    set(&mut e, "event.type", vec!["start"]);
    set(&mut e, "event.action", "logon");
    set(&mut e, "event.outcome", outcome(r));
    set(&mut e, "event.dataset", "udm.user_login");
    copy(&mut e, "event.id", r, "metadata.id");
    copy(&mut e, "event.code", r, "metadata.product_event_type");
    copy(&mut e, "message", r, "metadata.description");
    copy(&mut e, "observer.product", r, "metadata.product_name");
    copy(&mut e, "observer.vendor", r, "metadata.vendor_name");
    copy(&mut e, "user.name", r, "target.user.userid");
    copy(&mut e, "user.full_name", r, "target.user.user_display_name");
    if let Some(v) = first(r, "target.user.email_addresses") {
        set(&mut e, "user.email", v.clone());
    }
    if let Some(v) = first(r, "principal.ip") {
        set(&mut e, "source.ip", v.clone());
    }
    copy(&mut e, "source.port", r, "principal.port");
    if let Some(v) = first(r, "target.ip") {
        set(&mut e, "destination.ip", v.clone());
    }
    copy(&mut e, "destination.port", r, "target.port");
    match json::present(r, "target.hostname") {
        Some(_) => copy(&mut e, "host.name", r, "target.hostname"),
        None => copy(&mut e, "host.name", r, "principal.hostname"),
    }
    if let Some(reason) = results(r).find_map(|sr| json::present(sr, "summary")) {
        set(&mut e, "event.reason", reason.clone());
    }

    let case_insensitive = ["metadata.product_name", "metadata.vendor_name"]
        .iter()
        .filter_map(|p| json::get_str(r, p))
        .any(canonical::is_microsoft);
    Ok(Parsed::new(e, timestamp, case_insensitive))
}

/// UDM `metadata.id`.
pub(crate) fn source_id(r: &Value) -> Option<String> {
    json::get_str(r, "metadata.id").map(str::to_owned)
}

/// The first element of a repeated field (or the value itself if the source wrote a single
/// one), unless absent, `null` or empty.
fn first<'a>(r: &'a Value, path: &str) -> Option<&'a Value> {
    match json::present(r, path)? {
        Value::Array(items) => items.first().filter(|v| !v.is_null()),
        v => Some(v),
    }
    .filter(|v| v.as_str() != Some(""))
}

fn results(r: &Value) -> impl Iterator<Item = &Value> {
    let items: &[Value] = match r.get("security_result") {
        Some(Value::Array(items)) => items,
        Some(v @ Value::Object(_)) => std::slice::from_ref(v),
        _ => &[],
    };
    items.iter()
}

/// Any `BLOCK`/`FAIL` action → failure; else any `ALLOW*` → success; else unknown.
fn outcome(r: &Value) -> &'static str {
    let actions: Vec<&str> = results(r)
        .flat_map(|sr| match sr.get("action") {
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
            Some(Value::String(s)) => vec![s.as_str()],
            _ => Vec::new(),
        })
        .collect();
    if actions
        .iter()
        .any(|a| a.contains("BLOCK") || a.contains("FAIL"))
    {
        FAILURE
    } else if actions.iter().any(|a| a.contains("ALLOW")) {
        SUCCESS
    } else {
        UNKNOWN
    }
}

fn proto_timestamp(ts: &Map<String, Value>) -> Option<i64> {
    let seconds = ts.get("seconds").and_then(json::loose_int)?;
    let nanos = match ts.get("nanos") {
        None => 0,
        Some(v) => json::loose_int(v).filter(|n| (0..1_000_000_000).contains(n))?,
    };
    seconds.checked_mul(1_000)?.checked_add(nanos / 1_000_000)
}
