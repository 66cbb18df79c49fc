//! Vigil's normalizer: one source record in, one canonical event out (or a reject).
//!
//! Contract (`SEMANTICS.md`, Events and Time; field reference in `docs/normalization.md`):
//! - **Pure.** [`normalize`] reads only its arguments and the mapping files embedded at build
//!   time (`normalize/mappings/*.toml`, `docs/schema/event.schema.json`). No IO, no clock, no
//!   async: the same input always yields the same output, so replays agree.
//! - **Output.** A nested JSON object in the canonical schema with `@timestamp` (RFC 3339,
//!   milliseconds, UTC), `tenant_id`, `schema_version`, `event.id`, `event.ingested`,
//!   `event.kind` and `labels.source_type` always set; every field the schema lists has the
//!   schema's JSON type; unknown fields of ECS input are kept as they are.
//! - **Canonical entities.** IPs are in canonical text form, `DOMAIN\user` and `user@domain`
//!   are split, account names of case-insensitive sources are lowercased, and `related.user` /
//!   `related.ip` are filled — before any rule sees the event (see the `canonical` module).
//! - **Identity.** `event.id` is the source's own id when the format has one
//!   ([`source_event_id`]), else the id ingest assigned ([`RawEvent::event_id`]); an event
//!   with neither is rejected.
//! - **Rejects** carry a stable reason code (see [`Reject`]); the caller routes them to the DLQ.
//!   Checks run in this order: decoding (`invalid_json`), tenant (`tenant_mismatch`), record kind
//!   (`unsupported_event`), time (`missing_timestamp`, `invalid_timestamp`,
//!   `future_timestamp`), types and identity (`schema_violation`).
//!
//! [`service`] runs it as the pipeline stage `RAW` → `NORMALIZED` / `DLQ` over NATS JetStream.

mod canonical;
mod json;
mod parsers;
pub mod schema;
pub mod service;

use serde_json::Value;
use vigil_model::time::format_rfc3339_millis;
use vigil_model::{SCHEMA_VERSION, TenantId};

/// The formats the normalizer reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SourceType {
    /// Canonical ECS-style JSON events (the schema's own format).
    Ecs,
    /// OCSF events; only the Authentication class (`class_uid` 3002) is mapped.
    Ocsf,
    /// Google SecOps UDM events; only `metadata.event_type` `USER_LOGIN` is mapped.
    Udm,
    /// OpenSSH auth log lines, with or without a syslog header; one event per line.
    Sshd,
    /// Windows Security log events as `evtx_dump` JSON (4624, 4625, 4648).
    WindowsSecurity,
    /// AWS CloudTrail records, one record per payload (not the `{"Records": [...]}` envelope).
    CloudTrail,
}

impl SourceType {
    /// Every source type with its name, as used in subjects, headers and configuration.
    pub const ALL: [(&'static str, SourceType); 6] = [
        ("ecs", SourceType::Ecs),
        ("ocsf", SourceType::Ocsf),
        ("udm", SourceType::Udm),
        ("sshd", SourceType::Sshd),
        ("windows", SourceType::WindowsSecurity),
        ("cloudtrail", SourceType::CloudTrail),
    ];

    /// Looks a source type up by its exact name.
    pub fn parse(name: &str) -> Option<SourceType> {
        SourceType::ALL
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, t)| *t)
    }

    /// The source type's name (the inverse of [`SourceType::parse`]).
    pub fn name(self) -> &'static str {
        match self {
            SourceType::Ecs => "ecs",
            SourceType::Ocsf => "ocsf",
            SourceType::Udm => "udm",
            SourceType::Sshd => "sshd",
            SourceType::WindowsSecurity => "windows",
            SourceType::CloudTrail => "cloudtrail",
        }
    }

    /// Whether a request body of this type is text lines, one event each (only
    /// [`SourceType::Sshd`]); every other type is JSON, one object per event.
    pub fn is_line_based(self) -> bool {
        matches!(self, SourceType::Sshd)
    }
}

/// One record as ingest stored it, with the context ingest knew.
#[derive(Clone, Copy, Debug)]
pub struct RawEvent<'a> {
    /// The tenant, taken from the subject (authenticated upstream).
    pub tenant: &'a TenantId,
    /// How to read [`RawEvent::payload`].
    pub source_type: SourceType,
    /// One JSON object, or one text line for [`SourceType::Sshd`].
    pub payload: &'a [u8],
    /// The id ingest assigned (message header); used when the source has no id of its own.
    pub event_id: Option<&'a str>,
    /// When ingest received the record, in epoch milliseconds.
    pub ingested_at: i64,
}

/// Normalizer settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// How far `@timestamp` may lie after [`RawEvent::ingested_at`] before the event is
    /// rejected as `future_timestamp`, in milliseconds. `i64::MAX` disables the check (file
    /// replay).
    pub max_clock_skew_ms: i64,
}

impl Default for Options {
    /// Five minutes of clock skew, as `SEMANTICS.md` specifies.
    fn default() -> Self {
        Options {
            max_clock_skew_ms: 300_000,
        }
    }
}

/// A canonical event.
#[derive(Clone, Debug, PartialEq)]
pub struct Normalized {
    /// `event.id` of [`Normalized::event`].
    pub event_id: String,
    /// `@timestamp` of [`Normalized::event`], in epoch milliseconds.
    pub timestamp: i64,
    /// The event: a JSON object in the canonical schema.
    pub event: Value,
}

/// Why a record was not normalized.
///
/// Reason codes (stable; dashboards and the DLQ use them):
/// - `invalid_json`: the payload is not one JSON object (for `sshd`: not UTF-8 text).
/// - `unsupported_event`: a valid record of a kind that is not mapped (a Windows event id other
///   than 4624/4625/4648, an OCSF class other than Authentication 3002, a UDM `event_type`
///   other than `USER_LOGIN`, an sshd line that matches no pattern or comes from another
///   program, a CloudTrail `Records` envelope).
/// - `missing_timestamp`: the record has no event time.
/// - `invalid_timestamp`: the event time is not in the format the source defines.
/// - `future_timestamp`: the event time is more than [`Options::max_clock_skew_ms`] after
///   [`RawEvent::ingested_at`].
/// - `tenant_mismatch`: the payload's `tenant_id` is present and differs from
///   [`RawEvent::tenant`].
/// - `schema_violation`: a field the canonical schema lists has the wrong JSON type (e.g.
///   `source.port` a string), an IP field is not an IP, flat and nested keys conflict, or the
///   event has no id.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{reason}: {message}")]
pub struct Reject {
    /// The reason code, one of those listed above.
    pub reason: &'static str,
    /// Human-readable details.
    pub message: String,
}

impl Reject {
    pub(crate) fn new(reason: &'static str, message: impl Into<String>) -> Reject {
        debug_assert!(
            REJECT_REASONS.contains(&reason),
            "`{reason}` is not listed in REJECT_REASONS"
        );
        Reject {
            reason,
            message: message.into(),
        }
    }
}

/// Normalizes one record to a canonical event.
pub fn normalize(raw: &RawEvent<'_>, opts: &Options) -> Result<Normalized, Reject> {
    let parsed = parsers::parse(raw)?;
    let mut event = parsed.event;
    if parsed.timestamp > raw.ingested_at.saturating_add(opts.max_clock_skew_ms) {
        return Err(Reject::new(
            "future_timestamp",
            format!(
                "@timestamp {} is more than {} ms after ingest time {}",
                format_rfc3339_millis(parsed.timestamp),
                opts.max_clock_skew_ms,
                format_rfc3339_millis(raw.ingested_at)
            ),
        ));
    }
    schema::conform(&mut event)?;
    let event_id = match json::get_str(&event, "event.id") {
        Some(id) => id.to_owned(),
        None => match raw.event_id.filter(|id| !id.is_empty()) {
            Some(id) => id.to_owned(),
            None => return Err(Reject::new("schema_violation", "event has no id")),
        },
    };
    let obj = json::object_mut(&mut event);
    obj.insert(
        "@timestamp".into(),
        format_rfc3339_millis(parsed.timestamp).into(),
    );
    obj.insert("tenant_id".into(), raw.tenant.as_str().into());
    obj.insert("schema_version".into(), SCHEMA_VERSION.into());
    let ev = json::child_object(obj, "event");
    ev.insert("id".into(), event_id.clone().into());
    ev.insert(
        "ingested".into(),
        format_rfc3339_millis(raw.ingested_at).into(),
    );
    if !matches!(ev.get("kind"), Some(Value::String(_))) {
        ev.insert("kind".into(), "event".into());
    }
    json::child_object(obj, "labels").insert("source_type".into(), raw.source_type.name().into());
    canonical::canonicalize(obj, parsed.case_insensitive);
    Ok(Normalized {
        event_id,
        timestamp: parsed.timestamp,
        event,
    })
}

/// Normalizes a record whose source type is given by name (a message header): like
/// [`normalize`] with `raw.source_type` replaced by the type named `source_type`, or an
/// `unsupported_event` reject when no type has that name.
pub fn normalize_named(
    source_type: &str,
    raw: &RawEvent<'_>,
    opts: &Options,
) -> Result<Normalized, Reject> {
    match SourceType::parse(source_type) {
        Some(source_type) => normalize(
            &RawEvent {
                source_type,
                ..*raw
            },
            opts,
        ),
        None => Err(Reject::new(
            "unsupported_event",
            format!("unknown source type `{source_type}`"),
        )),
    }
}

/// The reason codes of [`Reject`], every one.
pub const REJECT_REASONS: [&str; 7] = [
    "invalid_json",
    "tenant_mismatch",
    "unsupported_event",
    "missing_timestamp",
    "invalid_timestamp",
    "future_timestamp",
    "schema_violation",
];

/// The source's own event id inside a JSON payload, if the format has one (ECS `event.id`,
/// OCSF `metadata.uid`, UDM `metadata.id`, CloudTrail `eventID`, Windows
/// `"{Computer}:{EventRecordID}"`); used by ingest to set `Nats-Msg-Id`. Always `None` for
/// sshd, whose lines carry no id.
pub fn source_event_id(source_type: SourceType, event: &Value) -> Option<String> {
    parsers::source_event_id(source_type, event)
}
