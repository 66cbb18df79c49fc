//! The events indexer (NORMALIZED → `events-{tenant}`) against the dev NATS and OpenSearch.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{delete_index, documents, rt, unique_tenant, url};
use vigil_bus::{Outgoing, Publisher, Subject};
use vigil_model::TenantId;
use vigil_sinks::OpenSearchConfig;
use vigil_sinks::events_index::{self, EventsIndexConfig, events_index};
use vigil_sinks::opensearch::Client;

fn event(t: &TenantId, id: &str, ip: &str) -> Outgoing {
    Outgoing {
        subject: Subject::NormalizedEvents.for_tenant(t),
        msg_id: vigil_bus::msg_id(t, id),
        payload: format!(
            r#"{{"@timestamp":"2026-11-30T10:00:00.000Z","tenant_id":"{t}","schema_version":1,"event":{{"id":"{id}","outcome":"failure"}},"source":{{"ip":"{ip}","port":22}},"labels":{{"site":"lon"}},"vendor_extra":{{"x":1}}}}"#
        )
        .into_bytes()
        .into(),
        headers: Vec::new(),
    }
}

fn index(consumer: &str, tenants: &[&TenantId]) -> events_index::EventsIndexStats {
    let mut os = OpenSearchConfig::new(url());
    os.replicas = 0;
    let mut config = EventsIndexConfig::new(os);
    config.consumer = consumer.to_owned();
    config.tenants = tenants.iter().map(|t| (*t).clone()).collect();
    config.batch = 100;
    rt().block_on(async {
        let js = vigil_bus::dev::jetstream().await.unwrap();
        events_index::run(&js, &config, true, std::future::pending())
            .await
            .unwrap()
    })
}

fn delete_consumer(name: &str) {
    rt().block_on(async {
        let js = vigil_bus::dev::jetstream().await.unwrap();
        let s = js.get_stream("NORMALIZED").await.unwrap();
        s.delete_consumer(name).await.unwrap();
    });
}

#[test]
fn events_land_in_their_tenant_index_once_and_unfit_ones_in_the_dlq() {
    let client = Client::new(&url(), Duration::from_secs(30)).unwrap();
    let (a, b) = (unique_tenant("eva"), unique_tenant("evb"));
    let mut batch: Vec<Outgoing> = (0..250)
        .map(|i| event(&a, &format!("a{i}"), "10.0.0.1"))
        .collect();
    batch.extend((0..50).map(|i| event(&b, &format!("b{i}"), "10.0.0.2")));
    // Valid JSON, but not an IP for the `ip` mapping: refused by OpenSearch.
    batch.push(event(&a, "a-bad", "999.1.1.1"));
    rt().block_on(async {
        let js = vigil_bus::dev::jetstream().await.unwrap();
        Publisher::new(js, Duration::from_secs(10))
            .publish_all(batch)
            .await
            .unwrap();
    });
    let consumer = format!("evix_{}", std::process::id());
    let stats = index(&consumer, &[&a, &b]);
    assert_eq!(stats.consumed, 301, "{stats:?}");
    assert_eq!(
        (stats.writer.created, stats.writer.dead_lettered),
        (300, 1),
        "{stats:?}"
    );

    let docs_a = documents(&client, &events_index(&a));
    let docs_b = documents(&client, &events_index(&b));
    let want_a: BTreeSet<String> = (0..250).map(|i| format!("a{i}")).collect();
    assert_eq!(docs_a.keys().cloned().collect::<BTreeSet<_>>(), want_a);
    assert_eq!(docs_b.len(), 50);
    assert!(docs_b.values().all(|d| d["tenant_id"] == b.as_str()));
    // Fields the schema does not list are kept in the source, unindexed.
    assert_eq!(docs_a["a7"]["vendor_extra"]["x"], 1);
    let dlq = common::dead_letters(Subject::DlqEvents, &a);
    assert_eq!(dlq.len(), 1);
    let h = dlq[0].headers.as_ref().unwrap();
    assert_eq!(
        h.get("Vigil-Reject-Reason").unwrap().as_str(),
        "mapper_parsing_exception"
    );
    assert!(String::from_utf8_lossy(&dlq[0].payload).contains("a-bad"));

    // A second indexer reading everything again (a crash before the acks, or a rebuild)
    // stores nothing twice.
    delete_consumer(&consumer);
    let again = index(&consumer, &[&a, &b]);
    assert_eq!(
        (
            again.consumed,
            again.writer.created,
            again.writer.duplicates
        ),
        (301, 0, 300),
        "{again:?}"
    );
    assert_eq!(documents(&client, &events_index(&a)).len(), 250);
    delete_consumer(&consumer);
    delete_index(&client, &events_index(&a));
    delete_index(&client, &events_index(&b));
}
