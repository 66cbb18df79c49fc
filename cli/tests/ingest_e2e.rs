//! `vigil ingest` as an operator runs it: a TOML config, the binary listening on a real socket,
//! a client posting events over HTTP with a bearer token, the events stored in NATS, then
//! `vigil normalize` turning them into canonical events.

mod common;

use std::process::Command;

use common::{http, start_ingest, token};

#[test]
fn vigil_ingest_serves_authenticated_events_into_nats() {
    let nats = common::nats_url();
    let port = common::free_port();
    let tenant = common::unique_tenant("e2e");
    let dir = common::temp_dir("ingest-e2e");
    let _server = start_ingest(&dir, port, &[&tenant]);
    let token = token(&tenant);
    let now = vigil_model::time::format_rfc3339_millis(vigil_model::time::now_millis());
    let body: String = (0..10)
        .map(|i| format!("{{\"@timestamp\":\"{now}\",\"user\":{{\"name\":\"alice\"}},\"event\":{{\"id\":\"e2e-{i}\",\"outcome\":\"failure\"}}}}\n"))
        .collect();
    let (status, resp) = common::post_events(port, &token, &body);
    assert_eq!(status, 202, "{resp}");
    let v: serde_json::Value = serde_json::from_str(&resp).unwrap();
    assert_eq!(
        (v["accepted"].as_u64(), v["rejected"].as_u64()),
        (Some(10), Some(0))
    );
    let (status, _) = http(
        port,
        "POST",
        "/v1/ingest/events",
        &[("Content-Type", "application/json")],
        &body,
    );
    assert_eq!(status, 401);
    let (status, metrics) = http(port, "GET", "/metrics", &[], "");
    assert_eq!(status, 200);
    assert!(
        metrics.contains(&format!(
            "vigil_ingest_events_accepted_total{{tenant=\"{tenant}\"}} 10"
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains("vigil_ingest_publish_seconds_count 1"),
        "{metrics}"
    );

    // The normalizer turns the stored raw events into canonical events of the same tenant.
    let consumer = format!("e2e_{}", std::process::id());
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args([
            "normalize",
            "--until-idle",
            "--nats",
            &nats,
            "--consumer",
            &consumer,
            "--tenant",
            &tenant,
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("vigil normalize: 10 consumed, 10 normalized"),
        "{err}"
    );
    let normalized = common::read(vigil_bus::Subject::NormalizedEvents, &tenant);
    common::delete_consumer("RAW", &consumer);
    assert_eq!(normalized.len(), 10);
    let e = &normalized[0];
    assert_eq!(e["tenant_id"], tenant.as_str());
    assert!(e["event"]["id"].as_str().unwrap().starts_with("e2e-"));
    assert!(e["event"]["ingested"].is_string());
    let _ = std::fs::remove_dir_all(dir);
}
