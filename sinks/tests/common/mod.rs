//! Helpers of the OpenSearch sink tests: the dev node, alerts, reading indexes back.

#![allow(dead_code)] // Each test binary uses a part.

use std::collections::BTreeMap;
use std::time::Duration;

use hyper::Method;
use serde_json::Value;
use vigil_cases::Grouping;
use vigil_model::{Alert, TenantId};
use vigil_sinks::opensearch::Client;
use vigil_sinks::{OpenSearchAlerts, OpenSearchConfig, PostgresCases, PostgresConfig};

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

/// The dev Postgres server (`VIGIL_PG_URL`).
pub fn pg_server() -> String {
    vigil_bus::dev::setting("VIGIL_PG_URL").unwrap()
}

/// A case store sink on the dev Postgres (migrated), 100 ms batches, grouped by `grouping`,
/// changed by `f`; dead letters go to the dev NATS.
pub fn pg_sink_with(grouping: Grouping, f: impl FnOnce(&mut PostgresConfig)) -> PostgresCases {
    let server = pg_server();
    rt().block_on(async {
        vigil_bus::dev::jetstream().await.unwrap();
        vigil_cases::migrate(&vigil_cases::dev::admin_url(&server))
            .await
            .unwrap();
    });
    let mut config = PostgresConfig {
        url: vigil_cases::dev::app_url(&server),
        flush_interval: Duration::from_millis(100),
        ..PostgresConfig::default()
    };
    f(&mut config);
    let nats = vigil_bus::dev::setting("VIGIL_NATS_URL").unwrap();
    PostgresCases::connect(config, grouping, &nats, Duration::from_secs(10)).unwrap()
}

/// The case store as the application role, for reading back.
pub fn case_store() -> vigil_cases::Store {
    rt().block_on(vigil_cases::dev::store(&pg_server(), 2))
        .unwrap()
}

/// Alert `i` of `tenant`: a brute force of user `u{i}`.
pub fn alert(tenant: &TenantId, i: u64, timestamp: i64) -> Alert {
    let mut a = vigil_cases::dev::alert(tenant, "brute_force_login", &format!("u{i}"), timestamp);
    a.title = format!("Brute force against u{i}");
    a.description = Some("Ten failed logins within five minutes".into());
    a.events = vec![format!("e{i}-1"), format!("e{i}-2")];
    a
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

/// Every dead letter on `kind`'s subject of `tenant`.
pub fn dead_letters(
    kind: vigil_bus::Subject,
    tenant: &TenantId,
) -> Vec<async_nats::jetstream::Message> {
    rt().block_on(async {
        let js = vigil_bus::dev::jetstream().await.unwrap();
        vigil_bus::dev::read_subject(&js, kind.stream(), kind.for_tenant(tenant))
            .await
            .unwrap()
    })
}

/// Writes `alerts` to `sink` from a thread, 20 at a time, and SIGKILLs the service whose pid
/// file the setting `pidfile` names once 600 are written; 10 s later checks that the writer
/// is blocked (backpressure: nothing dropped to make room) and that `retried` says the sink
/// is retrying, starts the service again, and returns when the writer has flushed.
pub fn write_through_an_outage(
    sink: std::sync::Arc<dyn vigil_engine::AlertSink>,
    alerts: &[Alert],
    pidfile: &str,
    retried: impl Fn() -> bool,
) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let written = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (alerts, written) = (alerts.to_vec(), Arc::clone(&written));
        std::thread::spawn(move || {
            for chunk in alerts.chunks(20) {
                sink.write(chunk).unwrap();
                written.fetch_add(chunk.len(), Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(5));
            }
            sink.flush().unwrap();
        })
    };
    while written.load(Ordering::SeqCst) < 600 {
        std::thread::sleep(Duration::from_millis(10));
    }
    vigil_bus::dev::kill_service(pidfile).unwrap();
    let killed = std::time::Instant::now();
    std::thread::sleep(Duration::from_secs(10));
    let stalled = written.load(Ordering::SeqCst);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        written.load(Ordering::SeqCst),
        stalled,
        "the writer kept going while the service was down"
    );
    assert!(stalled < alerts.len(), "the run ended before the outage");
    assert!(!writer.is_finished());
    assert!(retried(), "the sink is not retrying");
    vigil_bus::dev::services_up().unwrap();
    eprintln!("{pidfile}: back after {:?}", killed.elapsed());
    writer.join().unwrap();
}
