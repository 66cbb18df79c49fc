//! Windows Security log events in `evtx_dump` JSON (`{"Event": {"System": ..., "EventData":
//! ...}}`; a record without the `Event` wrapper is read too). The mapped event ids and the
//! lookup tables live in `normalize/mappings/windows.toml`. Windows accounts are
//! case-insensitive, so names and domains are lowercased.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::{Parsed, rfc3339_time};
use crate::Reject;
use crate::json::{self, loose_int, set};

/// `normalize/mappings/windows.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Mapping {
    provider: String,
    events: BTreeMap<String, EventMapping>,
    logon_types: BTreeMap<String, String>,
    failure_reasons: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventMapping {
    /// Documentation only.
    #[serde(rename = "description")]
    _description: String,
    action: String,
    outcome: String,
    #[serde(rename = "type")]
    ty: Vec<String>,
    user: String,
    target_user: Option<String>,
}

fn mapping() -> &'static Mapping {
    static MAPPING: OnceLock<Mapping> = OnceLock::new();
    MAPPING.get_or_init(|| {
        // Covered by a unit test; a failure here means the build shipped a broken file.
        toml::from_str(include_str!("../../mappings/windows.toml"))
            .unwrap_or_else(|e| panic!("mappings/windows.toml: {e}"))
    })
}

/// `Event`, or the record itself when it has no wrapper.
fn event(r: &Value) -> &Value {
    r.get("Event").filter(|e| e.is_object()).unwrap_or(r)
}

/// `System.EventID`, a number or `{"#text": ...}` (when the event has qualifiers).
fn event_id(sys: &Value) -> Option<i64> {
    match sys.get("EventID")? {
        Value::Object(o) => o.get("#text").and_then(loose_int),
        v => loose_int(v),
    }
}

/// Parses one Windows Security event.
pub(crate) fn parse(r: &Value) -> Result<Parsed, Reject> {
    let m = mapping();
    let ev = event(r);
    let Some(sys) = ev.get("System").filter(|s| s.is_object()) else {
        return Err(Reject::new(
            "unsupported_event",
            "record has no Event.System (not evtx_dump JSON)",
        ));
    };
    let Some(id) = event_id(sys) else {
        return Err(Reject::new(
            "unsupported_event",
            "record has no Event.System.EventID",
        ));
    };
    let provider = json::get_str(sys, "Provider.#attributes.Name");
    if let Some(p) = provider
        && p != m.provider
    {
        return Err(Reject::new(
            "unsupported_event",
            format!("Windows provider `{p}` is not mapped (only {})", m.provider),
        ));
    }
    let Some(spec) = m.events.get(&id.to_string()) else {
        let ids: Vec<&str> = m.events.keys().map(String::as_str).collect();
        return Err(Reject::new(
            "unsupported_event",
            format!(
                "Windows event id {id} is not mapped (only {})",
                ids.join(", ")
            ),
        ));
    };
    let timestamp = rfc3339_time(sys, "TimeCreated.#attributes.SystemTime")?;
    let data = event_data(ev);
    let field = |name: &str| -> Option<&Value> {
        data.get(name)
            .filter(|v| !v.is_null() && !matches!(v.as_str(), Some("" | "-")))
    };

    let mut e = Map::new();
    set(&mut e, "event.category", vec!["authentication"]);
    set(&mut e, "event.type", spec.ty.clone());
    set(&mut e, "event.action", spec.action.as_str());
    set(&mut e, "event.outcome", spec.outcome.as_str());
    set(&mut e, "event.code", id.to_string());
    set(&mut e, "event.module", "windows");
    set(&mut e, "event.dataset", "windows.security");
    if let Some(p) = provider {
        set(&mut e, "event.provider", p);
        set(&mut e, "winlog.provider_name", p);
    }
    set(&mut e, "winlog.event_id", id);
    json::copy(&mut e, "winlog.channel", sys, "Channel");
    json::copy(&mut e, "winlog.computer_name", sys, "Computer");
    json::copy(&mut e, "host.name", sys, "Computer");
    if let Some(sid) = source_id(r) {
        set(&mut e, "event.id", sid);
    }

    let account = |e: &mut Map<String, Value>, prefix: &str, to: &str| {
        for (suffix, field_name) in [
            ("UserName", "name"),
            ("DomainName", "domain"),
            ("UserSid", "id"),
        ] {
            if let Some(v) = field(&format!("{prefix}{suffix}")) {
                // S-1-0-0 is the NULL SID: no account.
                if suffix == "UserSid" && v.as_str() == Some("S-1-0-0") {
                    continue;
                }
                set(e, &format!("{to}.{field_name}"), v.clone());
            }
        }
    };
    account(&mut e, &spec.user, "user");
    if let Some(t) = &spec.target_user {
        account(&mut e, t, "user.target");
    }

    if let Some(ip) = field("IpAddress") {
        set(&mut e, "source.ip", ip.clone());
    }
    if let Some(port) = field("IpPort") {
        match loose_int(port) {
            Some(0) => {}
            Some(p) => set(&mut e, "source.port", p),
            None => set(&mut e, "source.port", port.clone()),
        }
    }
    if let Some(ws) = field("WorkstationName") {
        set(&mut e, "source.domain", ws.clone());
    }
    if let Some(server) = field("TargetServerName") {
        set(&mut e, "destination.domain", server.clone());
    }
    if let Some(lt) = field("LogonType").and_then(loose_int) {
        let name = m
            .logon_types
            .get(&lt.to_string())
            .cloned()
            .unwrap_or_else(|| lt.to_string());
        set(&mut e, "winlog.logon.type", name);
    }
    if let Some(id) = field("TargetLogonId") {
        set(&mut e, "winlog.logon.id", id.clone());
    }
    if let Some(Value::String(exe)) = field("ProcessName") {
        set(&mut e, "process.executable", exe.as_str());
        let name = exe.rsplit(['\\', '/']).next().unwrap_or(exe);
        if !name.is_empty() {
            set(&mut e, "process.name", name);
        }
    }
    // ProcessId 0x0: no process (network logons).
    if let Some(pid) = field("ProcessId")
        .and_then(hex_or_decimal)
        .filter(|p| *p != 0)
    {
        set(&mut e, "process.pid", pid);
    }
    let status = ["SubStatus", "Status"]
        .iter()
        .filter_map(|k| field(k).and_then(Value::as_str))
        .find(|s| hex_or_decimal(&Value::from(*s)) != Some(0));
    if let Some(code) = status {
        set(&mut e, "error.code", code);
        if let Some(reason) = m.failure_reasons.get(&normalize_status(code)) {
            set(&mut e, "event.reason", reason.as_str());
        }
    }
    if !data.is_empty() {
        set(&mut e, "winlog.event_data", Value::Object(data.clone()));
    }
    Ok(Parsed::new(e, timestamp, true))
}

/// `"{Computer}:{EventRecordID}"`.
pub(crate) fn source_id(r: &Value) -> Option<String> {
    let sys = event(r).get("System")?;
    let computer = json::get_str(sys, "Computer")?;
    let record = sys.get("EventRecordID").and_then(loose_int)?;
    Some(format!("{computer}:{record}"))
}

/// `EventData` as a flat object; the `{"Data": [{"#attributes": {"Name": ...}, "#text": ...}]}`
/// form is flattened.
fn event_data(ev: &Value) -> Map<String, Value> {
    let Some(Value::Object(d)) = ev.get("EventData") else {
        return Map::new();
    };
    match d.get("Data") {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|item| {
                let name = json::get_str(item, "#attributes.Name")?;
                Some((
                    name.to_owned(),
                    item.get("#text").cloned().unwrap_or(Value::Null),
                ))
            })
            .collect(),
        _ => d.clone(),
    }
}

/// `0x1f4` or `500`.
fn hex_or_decimal(v: &Value) -> Option<i64> {
    match v {
        Value::String(s) => match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
            Some(hex) => i64::from_str_radix(hex, 16).ok(),
            None => s.parse().ok(),
        },
        v => loose_int(v),
    }
}

/// `0xc000006a` → `0xC000006A`.
fn normalize_status(code: &str) -> String {
    match code.get(..2) {
        Some("0x" | "0X") => format!("0x{}", code[2..].to_ascii_uppercase()),
        _ => code.to_ascii_uppercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapping_loads() {
        let m = mapping();
        assert_eq!(m.events.len(), 3);
        assert_eq!(m.logon_types["10"], "RemoteInteractive");
        assert!(m.failure_reasons.keys().all(|k| *k == normalize_status(k)));
    }

    #[test]
    fn numbers() {
        assert_eq!(hex_or_decimal(&Value::from("0x1f4")), Some(500));
        assert_eq!(hex_or_decimal(&Value::from("0x0")), Some(0));
        assert_eq!(hex_or_decimal(&Value::from("500")), Some(500));
        assert_eq!(hex_or_decimal(&Value::from("zz")), None);
        assert_eq!(normalize_status("0xc000006a"), "0xC000006A");
    }
}
