//! Table-driven fixture tests: every file under `tests/fixtures/<source type>/` is one record;
//! a success case compares the whole output with `<name>.expected.json`, a reject case the
//! reason and message. Every output is also fed back through the ECS parser, which validates
//! it against the canonical schema and must give the same event back (canonicalization is
//! idempotent).
//!
//! `VIGIL_BLESS=1 cargo test -p vigil-normalize --test parsers` rewrites the expected files;
//! review the diff before keeping it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;
use vigil_model::TenantId;
use vigil_model::time::parse_rfc3339;
use vigil_normalize::{
    Normalized, Options, RawEvent, Reject, SourceType, normalize, source_event_id,
};

use SourceType::{CloudTrail, Ecs, Ocsf, Sshd, Udm, WindowsSecurity};

/// Ingest time of every case unless it says otherwise.
const INGESTED: &str = "2026-11-30T10:05:00.000Z";
/// The id ingest assigned, unless a case says otherwise.
const INGEST_ID: &str = "0193a1b2-0000-7000-8000-000000000001";

#[derive(Clone, Copy, Debug)]
enum Expect {
    /// Output equals `<name>.expected.json`.
    Event,
    /// Rejected with this reason and message.
    Reject(&'static str, &'static str),
}

#[derive(Clone, Copy, Debug)]
struct Case {
    source: SourceType,
    /// File name under `tests/fixtures/<source type>/`.
    file: &'static str,
    expect: Expect,
    ingested_at: &'static str,
    event_id: Option<&'static str>,
}

const fn ok(source: SourceType, file: &'static str) -> Case {
    Case {
        source,
        file,
        expect: Expect::Event,
        ingested_at: INGESTED,
        event_id: Some(INGEST_ID),
    }
}

const fn rej(
    source: SourceType,
    file: &'static str,
    reason: &'static str,
    msg: &'static str,
) -> Case {
    Case {
        source,
        file,
        expect: Expect::Reject(reason, msg),
        ingested_at: INGESTED,
        event_id: Some(INGEST_ID),
    }
}

impl Case {
    const fn ingested(mut self, at: &'static str) -> Case {
        self.ingested_at = at;
        self
    }
    const fn no_ingest_id(mut self) -> Case {
        self.event_id = None;
        self
    }
}

const CASES: &[Case] = &[
    // ECS
    ok(Ecs, "windows_logon_failure.json"),
    ok(Ecs, "linux_ssh_accepted.json"),
    ok(Ecs, "okta_upn.json"),
    ok(Ecs, "entra_signin.json"),
    rej(
        Ecs,
        "tenant_mismatch.json",
        "tenant_mismatch",
        "payload tenant_id \"globex\" differs from the tenant `acme`",
    ),
    rej(
        Ecs,
        "missing_timestamp.json",
        "missing_timestamp",
        "event has no @timestamp",
    ),
    rej(
        Ecs,
        "invalid_timestamp.json",
        "invalid_timestamp",
        "@timestamp is neither RFC 3339 nor epoch milliseconds",
    ),
    rej(
        Ecs,
        "future_timestamp.json",
        "future_timestamp",
        "@timestamp 2026-11-30T10:10:00.001Z is more than 300000 ms after ingest time 2026-11-30T10:05:00.000Z",
    ),
    rej(
        Ecs,
        "port_string.json",
        "schema_violation",
        "source.port: expected integer, found string",
    ),
    rej(
        Ecs,
        "bad_ip.json",
        "schema_violation",
        "source.ip: `203.0.113.300` is not an IP address",
    ),
    rej(
        Ecs,
        "flat_conflict.json",
        "schema_violation",
        "`user.name` is given twice (as a flat dotted key and nested) with different values",
    ),
    rej(
        Ecs,
        "not_object.json",
        "invalid_json",
        "payload is a JSON array, not an object",
    ),
    rej(
        Ecs,
        "truncated.json",
        "invalid_json",
        "payload is not JSON: EOF while parsing an object at line 2 column 0",
    ),
    rej(Ecs, "no_id.json", "schema_violation", "event has no id").no_ingest_id(),
    // OCSF
    ok(Ocsf, "logon_failure_windows.json"),
    ok(Ocsf, "logon_success_okta.json"),
    ok(Ocsf, "logoff_time_dt.json"),
    rej(
        Ocsf,
        "network_activity.json",
        "unsupported_event",
        "OCSF class_uid 4001 is not mapped (only Authentication, 3002)",
    ),
    rej(
        Ocsf,
        "time_string.json",
        "invalid_timestamp",
        "OCSF time \"1796032800123\" is not epoch milliseconds",
    ),
    rej(
        Ocsf,
        "missing_time.json",
        "missing_timestamp",
        "record has no OCSF time",
    ),
    rej(
        Ocsf,
        "port_string.json",
        "schema_violation",
        "source.port: expected integer, found string",
    ),
    // UDM
    ok(Udm, "login_blocked_azure.json"),
    ok(Udm, "login_allow_okta.json"),
    ok(Udm, "login_proto_timestamp.json"),
    rej(
        Udm,
        "process_launch.json",
        "unsupported_event",
        "UDM event_type `PROCESS_LAUNCH` is not mapped (only USER_LOGIN)",
    ),
    rej(
        Udm,
        "bad_timestamp.json",
        "invalid_timestamp",
        "metadata.event_timestamp `2026-11-30 10:00` is not an RFC 3339 timestamp",
    ),
    rej(
        Udm,
        "missing_timestamp.json",
        "missing_timestamp",
        "record has no metadata.event_timestamp",
    ),
    rej(
        Udm,
        "bad_ip.json",
        "schema_violation",
        "source.ip: `laptop.example.com` is not an IP address",
    ),
    // sshd
    ok(Sshd, "failed_invalid_user_rfc3164.log"),
    ok(Sshd, "failed_password_rfc5424.log"),
    ok(Sshd, "accepted_publickey_iso.log"),
    ok(Sshd, "accepted_bare.log"),
    ok(Sshd, "invalid_user.log"),
    ok(Sshd, "closed_preauth.log"),
    ok(Sshd, "disconnected_preauth.log"),
    ok(Sshd, "december_in_january.log").ingested("2027-01-01T00:00:30.000Z"),
    ok(Sshd, "empty_user.log"),
    ok(Sshd, "usedns_hostname.log"),
    rej(
        Sshd,
        "not_sshd.log",
        "unsupported_event",
        "syslog program `sudo` is not sshd",
    ),
    rej(
        Sshd,
        "no_pattern.log",
        "unsupported_event",
        "sshd message matches no pattern",
    ),
    rej(
        Sshd,
        "bad_date.log",
        "invalid_timestamp",
        "syslog timestamp `Feb 30 10:00:08` is not a valid time",
    ),
    rej(
        Sshd,
        "future_rfc5424.log",
        "future_timestamp",
        "@timestamp 2026-11-30T10:30:00.000Z is more than 300000 ms after ingest time 2026-11-30T10:05:00.000Z",
    ),
    rej(
        Sshd,
        "not_utf8.log",
        "invalid_json",
        "sshd line is not UTF-8",
    ),
    rej(
        Sshd,
        "accepted_bare.log",
        "schema_violation",
        "event has no id",
    )
    .no_ingest_id(),
    // Windows
    ok(WindowsSecurity, "4625_network_failure.json"),
    ok(WindowsSecurity, "4624_remote_interactive.json"),
    ok(WindowsSecurity, "4624_local_upn.json"),
    ok(WindowsSecurity, "4648_explicit_credentials.json").no_ingest_id(),
    rej(
        WindowsSecurity,
        "4688_process_creation.json",
        "unsupported_event",
        "Windows event id 4688 is not mapped (only 4624, 4625, 4648)",
    ),
    rej(
        WindowsSecurity,
        "sysmon_provider.json",
        "unsupported_event",
        "Windows provider `Microsoft-Windows-Sysmon` is not mapped (only Microsoft-Windows-Security-Auditing)",
    ),
    rej(
        WindowsSecurity,
        "missing_time.json",
        "missing_timestamp",
        "record has no TimeCreated.#attributes.SystemTime",
    ),
    rej(
        WindowsSecurity,
        "bad_ip.json",
        "schema_violation",
        "source.ip: `fe80::zz` is not an IP address",
    ),
    // CloudTrail
    ok(CloudTrail, "console_login_success_mfa.json"),
    ok(CloudTrail, "console_login_failure.json"),
    ok(CloudTrail, "root_console_login.json"),
    ok(CloudTrail, "iam_create_user_assumed_role.json"),
    ok(CloudTrail, "s3_access_denied.json"),
    ok(CloudTrail, "ec2_service_call.json"),
    ok(CloudTrail, "kms_describe_internal.json"),
    rej(
        CloudTrail,
        "records_envelope.json",
        "unsupported_event",
        "payload is a CloudTrail {\"Records\": [...]} envelope; ingest must send one record per message",
    ),
    rej(
        CloudTrail,
        "bad_event_time.json",
        "invalid_timestamp",
        "eventTime must be an RFC 3339 string, found integer",
    ),
    rej(
        CloudTrail,
        "region_not_string.json",
        "schema_violation",
        "cloud.region: expected string, found array",
    ),
];

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn acme() -> TenantId {
    TenantId::parse("acme").unwrap()
}

fn run(case: &Case, payload: &[u8]) -> Result<Normalized, Reject> {
    let tenant = acme();
    let raw = RawEvent {
        tenant: &tenant,
        source_type: case.source,
        payload,
        event_id: case.event_id,
        ingested_at: parse_rfc3339(case.ingested_at).unwrap(),
    };
    normalize(&raw, &Options::default())
}

fn expected_path(case: &Case) -> PathBuf {
    let stem = case.file.rsplit_once('.').map_or(case.file, |(s, _)| s);
    fixtures()
        .join(case.source.name())
        .join(format!("{stem}.expected.json"))
}

/// Feeds an output back through the ECS parser: it must pass the schema check and come back
/// unchanged but for `labels.source_type`.
fn round_trip(case: &Case, out: &Normalized) -> Result<(), String> {
    let tenant = acme();
    let payload = serde_json::to_vec(&out.event).unwrap();
    let raw = RawEvent {
        tenant: &tenant,
        source_type: Ecs,
        payload: &payload,
        event_id: None,
        ingested_at: parse_rfc3339(case.ingested_at).unwrap(),
    };
    let again =
        normalize(&raw, &Options::default()).map_err(|r| format!("re-normalized as ECS: {r}"))?;
    let mut want = out.event.clone();
    want["labels"]["source_type"] = "ecs".into();
    if again.event != want || again.event_id != out.event_id || again.timestamp != out.timestamp {
        return Err(format!(
            "re-normalized as ECS differs:\n{}",
            serde_json::to_string_pretty(&again.event).unwrap()
        ));
    }
    Ok(())
}

#[test]
fn fixtures_normalize_as_expected() {
    let bless = std::env::var_os("VIGIL_BLESS").is_some();
    let mut failures = Vec::new();
    for case in CASES {
        let path = fixtures().join(case.source.name()).join(case.file);
        let payload = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let payload = if case.source.is_line_based() {
            // One line per fixture; the newline ends the file, not the event.
            payload.strip_suffix(b"\n").unwrap_or(&payload).to_vec()
        } else {
            payload
        };
        let label = format!("{}/{}", case.source.name(), case.file);
        match (case.expect, run(case, &payload)) {
            (Expect::Event, Ok(out)) => {
                if let Err(e) = round_trip(case, &out) {
                    failures.push(format!("{label}: {e}"));
                }
                assert_eq!(out.event["event"]["id"], Value::from(out.event_id.clone()));
                let exp_path = expected_path(case);
                if bless {
                    let text = serde_json::to_string_pretty(&out.event).unwrap() + "\n";
                    std::fs::write(&exp_path, text).unwrap();
                    continue;
                }
                let want: Value = match std::fs::read(&exp_path) {
                    Ok(b) => serde_json::from_slice(&b).unwrap(),
                    Err(e) => {
                        failures.push(format!("{label}: {}: {e}", exp_path.display()));
                        continue;
                    }
                };
                if out.event != want {
                    failures.push(format!(
                        "{label}: output differs from {}:\n{}",
                        exp_path.display(),
                        serde_json::to_string_pretty(&out.event).unwrap()
                    ));
                }
            }
            (Expect::Event, Err(r)) => failures.push(format!("{label}: rejected: {r}")),
            (Expect::Reject(reason, message), Err(r)) => {
                if r.reason != reason || r.message != message {
                    failures.push(format!(
                        "{label}: want {reason}: {message}\n  got {}: {}",
                        r.reason, r.message
                    ));
                }
            }
            (Expect::Reject(reason, _), Ok(out)) => failures.push(format!(
                "{label}: want {reason}, got an event:\n{}",
                serde_json::to_string_pretty(&out.event).unwrap()
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn every_fixture_has_a_case_and_every_reason_is_covered() {
    let mut on_disk = BTreeSet::new();
    for (name, _) in SourceType::ALL {
        for entry in std::fs::read_dir(fixtures().join(name)).unwrap() {
            let file = entry.unwrap().file_name().into_string().unwrap();
            on_disk.insert(format!("{name}/{file}"));
        }
    }
    let mut covered = BTreeSet::new();
    for case in CASES {
        covered.insert(format!("{}/{}", case.source.name(), case.file));
        if matches!(case.expect, Expect::Event) {
            let exp = expected_path(case);
            let file = exp.file_name().unwrap().to_str().unwrap();
            covered.insert(format!("{}/{file}", case.source.name()));
        }
    }
    let orphans: Vec<_> = on_disk.difference(&covered).collect();
    assert!(orphans.is_empty(), "fixtures without a case: {orphans:?}");

    let reasons: BTreeSet<&str> = CASES
        .iter()
        .filter_map(|c| match c.expect {
            Expect::Reject(r, _) => Some(r),
            Expect::Event => None,
        })
        .collect();
    let all = [
        "future_timestamp",
        "invalid_json",
        "invalid_timestamp",
        "missing_timestamp",
        "schema_violation",
        "tenant_mismatch",
        "unsupported_event",
    ];
    assert_eq!(reasons, all.into_iter().collect());
    for (name, source) in SourceType::ALL {
        assert!(
            CASES
                .iter()
                .any(|c| c.source == source && matches!(c.expect, Expect::Event)),
            "{name} has no success case"
        );
        assert!(
            CASES
                .iter()
                .any(|c| c.source == source && matches!(c.expect, Expect::Reject(..))),
            "{name} has no reject case"
        );
    }
}

#[test]
fn source_types_round_trip_by_name() {
    for (name, t) in SourceType::ALL {
        assert_eq!(SourceType::parse(name), Some(t));
        assert_eq!(t.name(), name);
        assert_eq!(t.is_line_based(), t == Sshd);
    }
    assert_eq!(SourceType::parse("Windows"), None);
    assert_eq!(SourceType::parse("syslog"), None);
}

#[test]
fn source_event_ids() {
    let read = |t: SourceType, f: &str| -> Value {
        serde_json::from_slice(&std::fs::read(fixtures().join(t.name()).join(f)).unwrap()).unwrap()
    };
    for (t, f, want) in [
        (
            Ecs,
            "windows_logon_failure.json",
            Some("a3f1c2d4-5b6e-4f70-8a91-b2c3d4e5f601"),
        ),
        (Ecs, "no_id.json", None),
        (Ocsf, "logon_failure_windows.json", Some("ocsf-7d2a9c1e")),
        (Ocsf, "logoff_time_dt.json", None),
        (
            Udm,
            "login_blocked_azure.json",
            Some("AAAAAHd2X1NBbXBsZUlkMDAwMQ=="),
        ),
        (Udm, "login_proto_timestamp.json", None),
        (
            WindowsSecurity,
            "4625_network_failure.json",
            Some("DC01.corp.example.com:1849302"),
        ),
        (
            WindowsSecurity,
            "4624_remote_interactive.json",
            Some("APP07.corp.example.com:1849290"),
        ),
        (
            CloudTrail,
            "console_login_success_mfa.json",
            Some("3fcfb85b-d4d1-4b8b-8f3c-8a5d2f6e7a10"),
        ),
    ] {
        assert_eq!(source_event_id(t, &read(t, f)).as_deref(), want, "{f}");
    }
    assert_eq!(
        source_event_id(Ecs, &serde_json::json!({"event.id": "flat"})).as_deref(),
        Some("flat")
    );
    assert_eq!(
        source_event_id(Sshd, &serde_json::json!({"event": {"id": "x"}})),
        None
    );
}

#[test]
fn clock_skew_is_configurable() {
    let tenant = acme();
    let line = b"<38>1 2026-11-30T10:30:00.000Z web-1 sshd 2220 - - Failed password for root from 198.51.100.9 port 40023 ssh2";
    let raw = RawEvent {
        tenant: &tenant,
        source_type: Sshd,
        payload: line,
        event_id: Some(INGEST_ID),
        ingested_at: parse_rfc3339(INGESTED).unwrap(),
    };
    assert_eq!(Options::default().max_clock_skew_ms, 300_000);
    assert_eq!(
        normalize(&raw, &Options::default()).unwrap_err().reason,
        "future_timestamp"
    );
    let replay = Options {
        max_clock_skew_ms: i64::MAX,
    };
    let out = normalize(&raw, &replay).unwrap();
    assert_eq!(
        out.timestamp,
        parse_rfc3339("2026-11-30T10:30:00Z").unwrap()
    );
    // Exactly at the bound is accepted.
    let bound = Options {
        max_clock_skew_ms: 25 * 60_000,
    };
    assert!(normalize(&raw, &bound).is_ok());
    let under = Options {
        max_clock_skew_ms: 25 * 60_000 - 1,
    };
    assert!(normalize(&raw, &under).is_err());
}

#[test]
fn tenant_is_checked_for_every_json_source() {
    let tenant = acme();
    for (t, payload) in [
        (
            Ocsf,
            r#"{"class_uid":3002,"time":1796032800000,"tenant_id":"globex"}"#,
        ),
        (
            CloudTrail,
            r#"{"tenant_id":5,"eventSource":"s3.amazonaws.com","eventName":"GetObject","eventTime":"2026-11-30T10:00:00Z"}"#,
        ),
    ] {
        let raw = RawEvent {
            tenant: &tenant,
            source_type: t,
            payload: payload.as_bytes(),
            event_id: Some(INGEST_ID),
            ingested_at: parse_rfc3339(INGESTED).unwrap(),
        };
        assert_eq!(
            normalize(&raw, &Options::default()).unwrap_err().reason,
            "tenant_mismatch"
        );
    }
    let raw = RawEvent {
        tenant: &tenant,
        source_type: Ecs,
        payload: br#"{"@timestamp":"2026-11-30T10:00:00Z","tenant_id":"acme","event":{"id":"x"}}"#,
        event_id: None,
        ingested_at: parse_rfc3339(INGESTED).unwrap(),
    };
    let out = normalize(&raw, &Options::default()).unwrap();
    assert_eq!(out.event["tenant_id"], "acme");
    assert_eq!(out.event["event"]["kind"], "event");
    assert_eq!(out.event["schema_version"], 1);
}

#[test]
fn reject_displays_reason_and_message() {
    let r = Reject {
        reason: "invalid_json",
        message: "payload is not JSON".into(),
    };
    assert_eq!(r.to_string(), "invalid_json: payload is not JSON");
}
