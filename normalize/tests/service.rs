//! The normalize service against the real NATS of `scripts/services.sh`: raw events of two
//! tenants in, canonical events in each tenant's `normalized.events` subject, rejects in its
//! `dlq.events` subject with the reason and the original bytes; a second run republishes
//! nothing; raw messages are acknowledged only after their output is stored.

use std::time::Duration;

use async_nats::jetstream;
use serde_json::{Value, json};
use vigil_bus::{Outgoing, Publisher, Subject};
use vigil_model::TenantId;
use vigil_model::time::{format_rfc3339_millis, now_millis};
use vigil_normalize::service::{ServiceConfig, run};

/// A tenant id unique to this test run, so runs against a long-lived server do not interfere.
fn unique(name: &str) -> TenantId {
    vigil_bus::dev::unique_tenant(name)
}

async fn js() -> jetstream::Context {
    vigil_bus::dev::jetstream().await.unwrap()
}

fn raw(tenant: &TenantId, source: &str, id: &str, payload: String) -> Outgoing {
    Outgoing {
        subject: Subject::RawEvents.for_tenant(tenant),
        msg_id: id.to_owned(),
        payload: payload.into(),
        headers: vec![
            ("Vigil-Source-Type", source.to_owned()),
            ("Vigil-Ingested-At", format_rfc3339_millis(now_millis())),
            ("Vigil-Event-Id", id.to_owned()),
        ],
    }
}

async fn read_all(
    js: &jetstream::Context,
    stream: &str,
    subject: String,
) -> Vec<jetstream::Message> {
    vigil_bus::dev::read_subject(js, stream, subject)
        .await
        .unwrap()
}

#[tokio::test]
async fn raw_events_become_canonical_events_or_dlq_entries_per_tenant() {
    let js = js().await;
    let (a, b) = (unique("acme"), unique("globex"));
    let consumer = format!("normalizer_{a}");
    let ts = format_rfc3339_millis(now_millis() - 5_000);
    let mut batch = Vec::new();
    for i in 0..20 {
        let ev = json!({"@timestamp": ts, "tenant_id": a.as_str(), "event": {"id": format!("{a}-{i}"), "module": "windows", "category": ["authentication"], "outcome": "failure"}, "user": {"name": "CORP\\Alice"}, "source": {"ip": "::ffff:10.0.0.1"}});
        batch.push(raw(&a, "ecs", &format!("{a}-{i}"), ev.to_string()));
    }
    batch.push(raw(
        &a,
        "ecs",
        &format!("{a}-bad-json"),
        "{not json".to_owned(),
    ));
    batch.push(raw(
        &a,
        "ecs",
        &format!("{a}-bad-port"),
        json!({"@timestamp": ts, "event": {"id": "p"}, "source": {"port": "22"}}).to_string(),
    ));
    batch.push(raw(
        &b,
        "sshd",
        &format!("{b}-1"),
        "Failed password for invalid user admin from 203.0.113.9 port 50522 ssh2".to_owned(),
    ));
    batch.push(raw(
        &b,
        "sshd",
        &format!("{b}-2"),
        "this is not an sshd line".to_owned(),
    ));
    batch.push(raw(
        &b,
        "ecs",
        &format!("{b}-x"),
        json!({"@timestamp": ts, "tenant_id": a.as_str(), "event": {"id": "x"}}).to_string(),
    ));
    Publisher::new(js.clone(), Duration::from_secs(5))
        .publish_all(batch)
        .await
        .unwrap();

    let config = ServiceConfig {
        consumer: consumer.clone(),
        batch: 7,
        tenants: vec![a.clone(), b.clone()],
        ..ServiceConfig::default()
    };
    let stats = run(&js, &config, true, std::future::pending())
        .await
        .unwrap();
    assert_eq!(stats.consumed, 25, "{stats:?}");
    assert_eq!(stats.normalized, 21, "{stats:?}");

    let na = read_all(&js, "NORMALIZED", Subject::NormalizedEvents.for_tenant(&a)).await;
    assert_eq!(na.len(), 20);
    let e: Value = serde_json::from_slice(&na[0].payload).unwrap();
    assert_eq!(e["tenant_id"], a.as_str());
    assert_eq!(
        e["user"]["name"], "alice",
        "domain split off and lowercased (a Windows account)"
    );
    assert_eq!(e["user"]["domain"], "corp");
    assert_eq!(
        e["source"]["ip"], "10.0.0.1",
        "IPv4-mapped address canonicalized"
    );
    assert_eq!(e["schema_version"], 1);
    let nb = read_all(&js, "NORMALIZED", Subject::NormalizedEvents.for_tenant(&b)).await;
    assert_eq!(nb.len(), 1);
    let s: Value = serde_json::from_slice(&nb[0].payload).unwrap();
    assert_eq!(
        (
            s["user"]["name"].as_str(),
            s["source"]["ip"].as_str(),
            s["event"]["outcome"].as_str()
        ),
        (Some("admin"), Some("203.0.113.9"), Some("failure"))
    );

    let reasons = |msgs: &[jetstream::Message]| -> Vec<String> {
        let mut r: Vec<String> = msgs
            .iter()
            .map(|m| {
                m.headers
                    .as_ref()
                    .unwrap()
                    .get("Vigil-Reject-Reason")
                    .unwrap()
                    .to_string()
            })
            .collect();
        r.sort();
        r
    };
    let da = read_all(&js, "DLQ", Subject::DlqEvents.for_tenant(&a)).await;
    assert_eq!(reasons(&da), ["invalid_json", "schema_violation"]);
    assert!(
        da.iter().any(|m| &m.payload[..] == b"{not json"),
        "the original bytes are kept"
    );
    let db = read_all(&js, "DLQ", Subject::DlqEvents.for_tenant(&b)).await;
    assert_eq!(reasons(&db), ["tenant_mismatch", "unsupported_event"]);

    // Everything was acknowledged: a second run finds nothing to do.
    let again = run(&js, &config, true, std::future::pending())
        .await
        .unwrap();
    assert_eq!(again.consumed, 0, "{again:?}");
    js.get_stream("RAW")
        .await
        .unwrap()
        .delete_consumer(&consumer)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_replay_of_unacknowledged_input_stores_nothing_twice() {
    let js = js().await;
    let t = unique("replay");
    let ts = format_rfc3339_millis(now_millis() - 5_000);
    let batch: Vec<Outgoing> = (0..50)
        .map(|i| {
            raw(
                &t,
                "ecs",
                &format!("{t}-{i}"),
                json!({"@timestamp": ts, "event": {"id": format!("{t}-{i}")}}).to_string(),
            )
        })
        .collect();
    Publisher::new(js.clone(), Duration::from_secs(5))
        .publish_all(batch)
        .await
        .unwrap();
    // Two independent consumers over the same raw events stand for a normalizer that crashed
    // after publishing and before acknowledging: the second pass republishes every event.
    for n in 0..2 {
        let config = ServiceConfig {
            consumer: format!("replay_{n}_{t}"),
            tenants: vec![t.clone()],
            ..ServiceConfig::default()
        };
        let stats = run(&js, &config, true, std::future::pending())
            .await
            .unwrap();
        assert_eq!(stats.consumed, 50);
        js.get_stream("RAW")
            .await
            .unwrap()
            .delete_consumer(&config.consumer)
            .await
            .unwrap();
        if n == 1 {
            assert_eq!(
                stats.duplicates, 50,
                "the replay was deduplicated by event id: {stats:?}"
            );
        }
    }
    assert_eq!(
        read_all(&js, "NORMALIZED", Subject::NormalizedEvents.for_tenant(&t))
            .await
            .len(),
        50
    );
}
