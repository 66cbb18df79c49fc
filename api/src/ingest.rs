//! `POST /v1/ingest/events`: authenticated, validated, published to `raw.events.{tenant}`.
//!
//! Contract (`SEMANTICS.md`, Events and Delivery):
//! - The tenant comes from the token. A body `tenant_id` equal to it is accepted, a missing one
//!   is filled in, a different one is rejected (`tenant_mismatch`).
//! - Every stored event has an `event.id`: the client's, or a UUIDv7 assigned here before it is
//!   stored — or, with an `Idempotency-Key`, an id derived from the tenant, the key and the
//!   event's position, so that a retried request yields the same ids.
//! - Each event is published with `Nats-Msg-Id` = `{tenant}:{event id}`; the response (202, or 400 when some
//!   events were rejected) is sent only after JetStream acknowledged every publish. If NATS
//!   fails mid-request the answer is 503 and a retry stores each event once.
//! - `sent = accepted + rejected`: every event of a request is either acknowledged or listed in
//!   `errors` with its index and reason.

use std::io::Read;

use axum::http::HeaderMap;
use bytes::Bytes;
use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use vigil_bus::{Outgoing, Subject};
use vigil_model::TenantId;
use vigil_model::time::{epoch_millis, format_rfc3339_millis, now_millis, parse_rfc3339};

use crate::config::Limits;
use crate::error::ApiError;

pub use vigil_normalize::SourceType;

/// Looks a source type up by name, with an error that lists the valid ones.
pub fn parse_source_type(s: &str) -> Result<SourceType, ApiError> {
    SourceType::parse(s).ok_or_else(|| {
        let names: Vec<&str> = SourceType::ALL.iter().map(|(n, _)| *n).collect();
        ApiError::BadRequest(format!(
            "unknown source type `{s}`: available source types are {}",
            names.join(", ")
        ))
    })
}

/// Why one event of a request was rejected.
#[derive(Clone, Debug, Serialize)]
pub struct EventError {
    /// Position of the event in the request (0-based).
    pub index: usize,
    /// Reason code.
    pub reason: &'static str,
    /// Details.
    pub message: String,
}

/// The response body.
#[derive(Clone, Debug, Default, Serialize)]
pub struct IngestResult {
    /// Events in the request.
    pub received: usize,
    /// Events stored (new or already stored by an earlier identical publish).
    pub accepted: usize,
    /// Of the accepted, those JetStream already had (a retry).
    pub duplicates: usize,
    /// Events refused.
    pub rejected: usize,
    /// One entry per refused event.
    pub errors: Vec<EventError>,
}

/// A request body split into events and checked, ready to publish.
#[derive(Debug)]
pub struct Prepared {
    /// Messages to publish.
    pub messages: Vec<Outgoing>,
    /// Rejected events.
    pub errors: Vec<EventError>,
    /// Events in the body.
    pub received: usize,
}

/// Decompresses the body if it is gzip-encoded, enforcing the decompressed-size limit.
pub fn decode_body(headers: &HeaderMap, body: Bytes, limits: &Limits) -> Result<Bytes, ApiError> {
    let encoding = headers
        .get(axum::http::header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .unwrap_or("identity");
    match encoding {
        "identity" | "" => Ok(body),
        "gzip" => {
            let mut out = Vec::new();
            let limit = limits.max_decompressed_bytes as u64;
            flate2::read::GzDecoder::new(&body[..])
                .take(limit + 1)
                .read_to_end(&mut out)
                .map_err(|e| {
                    ApiError::BadRequest(format!("failed to decompress gzip body: {e}"))
                })?;
            if out.len() as u64 > limit {
                return Err(ApiError::TooLarge(format!(
                    "decompressed body exceeds {} bytes",
                    limits.max_decompressed_bytes
                )));
            }
            Ok(out.into())
        }
        other => Err(ApiError::BadRequest(format!(
            "unsupported Content-Encoding `{other}`: use gzip or none"
        ))),
    }
}

/// Splits a JSON body into events: one object, an array, or NDJSON (one object per line).
fn split_json(body: &[u8], ndjson: bool) -> Result<Vec<Result<Value, String>>, ApiError> {
    let text =
        std::str::from_utf8(body).map_err(|_| ApiError::BadRequest("body is not UTF-8".into()))?;
    let trimmed = text.trim_start();
    if !ndjson {
        match serde_json::from_str::<Value>(text) {
            Ok(Value::Array(items)) => return Ok(items.into_iter().map(Ok).collect()),
            Ok(v @ Value::Object(_)) => return Ok(vec![Ok(v)]),
            Ok(_) => {
                return Err(ApiError::BadRequest(
                    "body must be a JSON object, an array of objects, or NDJSON".into(),
                ));
            }
            // Several lines that each parse: NDJSON sent without its content type.
            Err(_) if trimmed.starts_with('{') && text.contains('\n') => {}
            Err(e) => return Err(ApiError::BadRequest(format!("body is not JSON: {e}"))),
        }
    }
    Ok(text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str::<Value>(l).map_err(|e| e.to_string()))
        .collect())
}

/// The id of an event without one: UUIDv7, or with an idempotency key a UUIDv8 derived from
/// (tenant, key, index).
fn assign_id(tenant: &TenantId, idempotency_key: Option<&str>, index: usize) -> String {
    match idempotency_key {
        None => uuid::Uuid::now_v7().to_string(),
        Some(key) => {
            let mut h = Sha256::new();
            for part in [tenant.as_str().as_bytes(), key.as_bytes()] {
                h.update((part.len() as u64).to_be_bytes());
                h.update(part);
            }
            h.update((index as u64).to_be_bytes());
            let digest = h.finalize();
            let mut bytes = [0u8; 16];
            bytes.copy_from_slice(&digest[..16]);
            uuid::Uuid::new_v8(bytes).to_string()
        }
    }
}

/// Reads, checks and prepares every event of a request for `tenant`.
pub fn prepare(
    tenant: &TenantId,
    source: SourceType,
    body: &[u8],
    ndjson: bool,
    idempotency_key: Option<&str>,
    limits: &Limits,
) -> Result<Prepared, ApiError> {
    let ingested_at = now_millis();
    let subject = Subject::RawEvents.for_tenant(tenant);
    let headers = |extra: Option<(&'static str, String)>| {
        let mut h = vec![
            ("Vigil-Source-Type", source.name().to_owned()),
            ("Vigil-Ingested-At", format_rfc3339_millis(ingested_at)),
        ];
        h.extend(extra);
        h
    };
    let mut messages = Vec::new();
    let mut errors = Vec::new();
    let mut reject = |index: usize, reason: &'static str, message: String| {
        errors.push(EventError {
            index,
            reason,
            message,
        });
    };
    let received;
    if source.is_line_based() {
        {
            let text = std::str::from_utf8(body)
                .map_err(|_| ApiError::BadRequest("body is not UTF-8".into()))?;
            let lines: Vec<&str> = text
                .lines()
                .map(|l| l.trim_end_matches('\r'))
                .filter(|l| !l.trim().is_empty())
                .collect();
            check_count(lines.len(), limits)?;
            received = lines.len();
            for (i, line) in lines.into_iter().enumerate() {
                if line.len() > limits.max_event_bytes {
                    reject(
                        i,
                        "oversize",
                        format!("line is over {} bytes", limits.max_event_bytes),
                    );
                    continue;
                }
                let id = assign_id(tenant, idempotency_key, i);
                messages.push(Outgoing {
                    subject: subject.clone(),
                    msg_id: vigil_bus::msg_id(tenant, &id),
                    payload: Bytes::copy_from_slice(line.as_bytes()),
                    headers: headers(Some(("Vigil-Event-Id", id))),
                });
            }
        }
    } else {
        {
            let events = split_json(body, ndjson)?;
            check_count(events.len(), limits)?;
            received = events.len();
            let skew_ms =
                i64::try_from(limits.max_clock_skew_secs.saturating_mul(1_000)).unwrap_or(i64::MAX);
            for (i, ev) in events.into_iter().enumerate() {
                let mut obj = match ev {
                    Ok(Value::Object(o)) => o,
                    Ok(_) => {
                        reject(i, "invalid_json", "event is not a JSON object".into());
                        continue;
                    }
                    Err(e) => {
                        reject(i, "invalid_json", e);
                        continue;
                    }
                };
                // Canonical events are checked here in full; other formats keep their own shape
                // (the normalizer maps and checks them) and only their tenant is checked.
                let checked = if source == SourceType::Ecs {
                    check_event(&mut obj, tenant, ingested_at, skew_ms)
                } else {
                    check_tenant(&obj, tenant)
                };
                if let Err((reason, message)) = checked {
                    reject(i, reason, message);
                    continue;
                }
                let value = Value::Object(obj);
                let (id, extra) = match vigil_normalize::source_event_id(source, &value) {
                    Some(id) => (id, None),
                    None => {
                        let id = assign_id(tenant, idempotency_key, i);
                        (id.clone(), Some(("Vigil-Event-Id", id)))
                    }
                };
                let mut value = value;
                if source == SourceType::Ecs
                    && let (Some((_, id)), Some(obj)) = (&extra, value.as_object_mut())
                {
                    set_event_id(obj, id);
                }
                let payload = value.to_string();
                if payload.len() > limits.max_event_bytes {
                    reject(
                        i,
                        "oversize",
                        format!("event is over {} bytes", limits.max_event_bytes),
                    );
                    continue;
                }
                messages.push(Outgoing {
                    subject: subject.clone(),
                    msg_id: vigil_bus::msg_id(tenant, &id),
                    payload: payload.into(),
                    headers: headers(extra),
                });
            }
        }
    }
    Ok(Prepared {
        messages,
        errors,
        received,
    })
}

fn check_count(n: usize, limits: &Limits) -> Result<(), ApiError> {
    if n > limits.max_events {
        return Err(ApiError::TooLarge(format!(
            "request holds {n} events; the limit is {}",
            limits.max_events
        )));
    }
    Ok(())
}

/// A `tenant_id` in the body must be the token's.
fn check_tenant(obj: &Map<String, Value>, tenant: &TenantId) -> Result<(), (&'static str, String)> {
    match obj.get("tenant_id") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(t)) if t == tenant.as_str() => Ok(()),
        Some(other) => Err((
            "tenant_mismatch",
            format!("event tenant_id {other} differs from the token's tenant `{tenant}`"),
        )),
    }
}

/// Tenant and timestamp checks of one canonical event; fills a missing `tenant_id`.
fn check_event(
    obj: &mut Map<String, Value>,
    tenant: &TenantId,
    now: i64,
    skew_ms: i64,
) -> Result<(), (&'static str, String)> {
    check_tenant(obj, tenant)?;
    obj.entry("tenant_id")
        .and_modify(|v| {
            if v.is_null() {
                *v = Value::String(tenant.to_string());
            }
        })
        .or_insert_with(|| Value::String(tenant.to_string()));
    let ts = match obj.get("@timestamp") {
        None | Some(Value::Null) => {
            return Err(("missing_timestamp", "event has no @timestamp".into()));
        }
        Some(Value::String(s)) => parse_rfc3339(s),
        Some(Value::Number(n)) => n.as_f64().and_then(epoch_millis),
        Some(_) => None,
    };
    let Some(ts) = ts else {
        return Err((
            "invalid_timestamp",
            "@timestamp is neither RFC 3339 nor epoch milliseconds".into(),
        ));
    };
    if ts > now.saturating_add(skew_ms) {
        return Err((
            "future_timestamp",
            format!(
                "@timestamp {} is more than {} s ahead of the server clock",
                format_rfc3339_millis(ts),
                skew_ms / 1_000
            ),
        ));
    }
    Ok(())
}

fn set_event_id(obj: &mut Map<String, Value>, id: &str) {
    let event = obj
        .entry("event")
        .or_insert_with(|| Value::Object(Map::new()));
    match event.as_object_mut() {
        Some(e) => {
            e.insert("id".into(), Value::String(id.to_owned()));
        }
        // `event` is not an object: keep the caller's value and use the flat key.
        None => {
            obj.insert("event.id".into(), Value::String(id.to_owned()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acme() -> TenantId {
        TenantId::parse("acme").unwrap()
    }

    /// The event id inside a tenant-scoped message id.
    fn id_of(m: &Outgoing) -> &str {
        m.msg_id
            .strip_prefix("acme:")
            .expect("message ids are scoped by tenant")
    }

    fn ts_now() -> String {
        format_rfc3339_millis(now_millis())
    }

    #[test]
    fn json_bodies_in_every_shape() {
        let one = format!(r#"{{"@timestamp":"{}","user":{{"name":"a"}}}}"#, ts_now());
        let arr = format!("[{one},{one}]");
        let nd = format!("{one}\n{one}\n\n{one}\n");
        let l = Limits::default();
        assert_eq!(
            prepare(&acme(), SourceType::Ecs, one.as_bytes(), false, None, &l)
                .unwrap()
                .messages
                .len(),
            1
        );
        assert_eq!(
            prepare(&acme(), SourceType::Ecs, arr.as_bytes(), false, None, &l)
                .unwrap()
                .messages
                .len(),
            2
        );
        assert_eq!(
            prepare(&acme(), SourceType::Ecs, nd.as_bytes(), false, None, &l)
                .unwrap()
                .messages
                .len(),
            3
        );
        assert_eq!(
            prepare(&acme(), SourceType::Ecs, nd.as_bytes(), true, None, &l)
                .unwrap()
                .messages
                .len(),
            3
        );
        assert!(prepare(&acme(), SourceType::Ecs, b"42", false, None, &l).is_err());
        assert!(prepare(&acme(), SourceType::Ecs, b"not json", false, None, &l).is_err());
    }

    #[test]
    fn tenant_is_filled_in_or_must_match() {
        let l = Limits::default();
        let body = format!(
            "{{\"@timestamp\":\"{t}\"}}\n{{\"@timestamp\":\"{t}\",\"tenant_id\":\"acme\"}}\n{{\"@timestamp\":\"{t}\",\"tenant_id\":\"globex\"}}\n{{\"@timestamp\":\"{t}\",\"tenant_id\":7}}\n",
            t = ts_now()
        );
        let p = prepare(&acme(), SourceType::Ecs, body.as_bytes(), true, None, &l).unwrap();
        assert_eq!(p.messages.len(), 2);
        for m in &p.messages {
            let v: Value = serde_json::from_slice(&m.payload).unwrap();
            assert_eq!(v["tenant_id"], "acme");
            assert_eq!(m.subject, "raw.events.acme");
            assert_eq!(v["event"]["id"], id_of(m));
        }
        let reasons: Vec<(usize, &str)> = p.errors.iter().map(|e| (e.index, e.reason)).collect();
        assert_eq!(reasons, [(2, "tenant_mismatch"), (3, "tenant_mismatch")]);
    }

    #[test]
    fn ids_are_kept_assigned_or_derived_from_the_idempotency_key() {
        let l = Limits::default();
        let body = format!(
            "{{\"@timestamp\":\"{t}\",\"event\":{{\"id\":\"mine\"}}}}\n{{\"@timestamp\":\"{t}\"}}\n",
            t = ts_now()
        );
        let a = prepare(&acme(), SourceType::Ecs, body.as_bytes(), true, None, &l).unwrap();
        assert_eq!(id_of(&a.messages[0]), "mine");
        let v7 = uuid::Uuid::parse_str(id_of(&a.messages[1])).unwrap();
        assert_eq!(v7.get_version_num(), 7);
        let k1 = prepare(
            &acme(),
            SourceType::Ecs,
            body.as_bytes(),
            true,
            Some("req-1"),
            &l,
        )
        .unwrap();
        let k2 = prepare(
            &acme(),
            SourceType::Ecs,
            body.as_bytes(),
            true,
            Some("req-1"),
            &l,
        )
        .unwrap();
        let k3 = prepare(
            &acme(),
            SourceType::Ecs,
            body.as_bytes(),
            true,
            Some("req-2"),
            &l,
        )
        .unwrap();
        assert_eq!(id_of(&k1.messages[1]), id_of(&k2.messages[1]));
        assert_ne!(id_of(&k1.messages[1]), id_of(&k3.messages[1]));
        assert_eq!(
            uuid::Uuid::parse_str(id_of(&k1.messages[1]))
                .unwrap()
                .get_version_num(),
            8
        );
    }

    #[test]
    fn timestamps_are_checked() {
        let l = Limits::default();
        let future = format_rfc3339_millis(now_millis() + 3_600_000);
        let near = format_rfc3339_millis(now_millis() + 60_000);
        let body = format!(
            "{{\"@timestamp\":\"{future}\"}}\n{{\"@timestamp\":\"{near}\"}}\n{{}}\n{{\"@timestamp\":\"yesterday\"}}\n{{\"@timestamp\":1796032800000}}\n"
        );
        let p = prepare(&acme(), SourceType::Ecs, body.as_bytes(), true, None, &l).unwrap();
        let reasons: Vec<(usize, &str)> = p.errors.iter().map(|e| (e.index, e.reason)).collect();
        assert_eq!(
            reasons,
            [
                (0, "future_timestamp"),
                (2, "missing_timestamp"),
                (3, "invalid_timestamp")
            ]
        );
        assert_eq!(p.messages.len(), 2);
    }

    #[test]
    fn sshd_lines_get_ids_in_a_header() {
        let l = Limits::default();
        let body = b"Nov 30 10:00:00 host sshd[1]: Failed password for root from 203.0.113.5 port 22 ssh2\n\n second line\n";
        let p = prepare(&acme(), SourceType::Sshd, body, false, None, &l).unwrap();
        assert_eq!(p.received, 2);
        let id = p.messages[0]
            .headers
            .iter()
            .find(|(k, _)| *k == "Vigil-Event-Id")
            .unwrap();
        assert_eq!(id.1, id_of(&p.messages[0]));
        assert!(
            p.messages[0]
                .headers
                .iter()
                .any(|(k, v)| *k == "Vigil-Source-Type" && v == "sshd")
        );
    }

    #[test]
    fn limits_are_enforced() {
        let l = Limits {
            max_events: 2,
            max_event_bytes: 100,
            ..Limits::default()
        };
        let t = ts_now();
        let three = format!(
            "{{\"@timestamp\":\"{t}\"}}\n{{\"@timestamp\":\"{t}\"}}\n{{\"@timestamp\":\"{t}\"}}\n"
        );
        assert!(matches!(
            prepare(&acme(), SourceType::Ecs, three.as_bytes(), true, None, &l),
            Err(ApiError::TooLarge(_))
        ));
        let big = format!(
            "{{\"@timestamp\":\"{t}\",\"message\":\"{}\"}}",
            "x".repeat(200)
        );
        let p = prepare(&acme(), SourceType::Ecs, big.as_bytes(), false, None, &l).unwrap();
        assert_eq!(p.errors[0].reason, "oversize");
        assert!(
            parse_source_type("cloudtrial")
                .unwrap_err()
                .to_string()
                .contains("available source types are ecs, ocsf, udm, sshd, windows, cloudtrail")
        );
    }

    #[test]
    fn other_json_formats_keep_their_shape_and_their_own_ids() {
        let l = Limits::default();
        let with_id = r#"{"eventVersion":"1.08","eventTime":"2026-11-30T10:00:00Z","eventID":"ct-1","eventName":"ConsoleLogin"}"#;
        let without = r#"{"eventVersion":"1.08","eventTime":"2026-11-30T10:00:00Z","eventName":"ConsoleLogin"}"#;
        let other_tenant = r#"{"eventID":"ct-2","tenant_id":"globex"}"#;
        let body = format!("{with_id}\n{without}\n{other_tenant}\n");
        let p = prepare(
            &acme(),
            SourceType::CloudTrail,
            body.as_bytes(),
            true,
            None,
            &l,
        )
        .unwrap();
        assert_eq!(p.messages.len(), 2);
        assert_eq!(id_of(&p.messages[0]), "ct-1");
        let stored: Value = serde_json::from_slice(&p.messages[0].payload).unwrap();
        assert_eq!(
            stored,
            serde_json::from_str::<Value>(with_id).unwrap(),
            "stored as sent"
        );
        assert!(
            !p.messages[0]
                .headers
                .iter()
                .any(|(k, _)| *k == "Vigil-Event-Id")
        );
        let assigned = p.messages[1]
            .headers
            .iter()
            .find(|(k, _)| *k == "Vigil-Event-Id")
            .unwrap();
        assert_eq!(assigned.1, id_of(&p.messages[1]));
        assert_eq!(p.errors[0].reason, "tenant_mismatch");
    }
}
