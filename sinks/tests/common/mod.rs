//! Helpers of the OpenSearch sink tests: the dev node, alerts, reading indexes back.

#![allow(dead_code)] // Each test binary uses a part.

use std::collections::BTreeMap;
use std::time::Duration;

use hyper::Method;
use serde_json::Value;
use vigil_model::{Alert, AlertWindow, Severity, TenantId, alert_id};
use vigil_sinks::opensearch::Client;
use vigil_sinks::{OpenSearchAlerts, OpenSearchConfig};

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

pub fn url() -> String {
    vigil_bus::dev::setting("VIGIL_OPENSEARCH_URL").unwrap()
}

pub fn unique_tenant(prefix: &str) -> TenantId {
    vigil_bus::dev::unique_tenant(prefix)
}

/// A sink on the dev node, dead letters to the dev NATS.
pub fn sink(batch_docs: usize) -> OpenSearchAlerts {
    sink_with(|c| c.batch_docs = batch_docs)
}

/// A sink on the dev node (no replicas, 200 ms batches) changed by `f`; dead letters go to
/// the dev NATS.
pub fn sink_with(f: impl FnOnce(&mut OpenSearchConfig)) -> OpenSearchAlerts {
    // The DLQ stream exists (with the dev limits) before anything is dead-lettered.
    rt().block_on(vigil_bus::dev::jetstream()).unwrap();
    let mut config = OpenSearchConfig::new(url());
    config.replicas = 0;
    config.flush_interval = Duration::from_millis(200);
    f(&mut config);
    let nats = vigil_bus::dev::setting("VIGIL_NATS_URL").unwrap();
    OpenSearchAlerts::connect(config, &nats, Duration::from_secs(10)).unwrap()
}

/// Alert `i` of `tenant`: a brute force of user `u{i}`.
pub fn alert(tenant: &TenantId, i: u64, timestamp: i64) -> Alert {
    let group = BTreeMap::from([("user.name".to_owned(), format!("u{i}"))]);
    Alert {
        id: alert_id(
            tenant.as_str(),
            "brute_force_login",
            1,
            group.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            timestamp,
        ),
        schema_version: 1,
        tenant_id: tenant.clone(),
        rule_id: "brute_force_login".into(),
        rule_version: 1,
        title: format!("Brute force against u{i}"),
        severity: Severity::High,
        tags: vec!["attack.t1110".into()],
        description: Some("Ten failed logins within five minutes".into()),
        group,
        window: AlertWindow {
            start: timestamp - 60_000,
            end: timestamp,
        },
        value: 10.0,
        timestamp,
        detected_at: timestamp + 1_500,
        events: vec![format!("e{i}-1"), format!("e{i}-2")],
        event_count: 10,
    }
}

/// The documents of `index` after a refresh, by `_id`.
pub fn documents(client: &Client, index: &str) -> BTreeMap<String, Value> {
    rt().block_on(client.documents(index)).unwrap().unwrap()
}

pub fn delete_index(client: &Client, index: &str) {
    rt().block_on(async {
        let _ = client
            .json(Method::DELETE, &format!("/{index}"), None)
            .await;
    });
}
