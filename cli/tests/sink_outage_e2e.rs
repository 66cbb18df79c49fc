//! OpenSearch and Postgres both killed (SIGKILL) in the middle of a live 100,000-event run
//! and started again 30 s later: the engine neither crashes nor acknowledges input while its
//! alerts cannot be stored, and in the end every alert is in ALERTS, OpenSearch and Postgres
//! exactly once, equal to an uninterrupted run's. Its own test binary, so that no other test
//! meets the outage.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::engine::{Route, pipeline_with, rules_dir, start_engine, wait_for};
use common::read;
use common::replay::{by_id, normalized_messages, publish, reference_alerts, replay};
use vigil_bus::Subject;

#[test]
fn both_alert_stores_down_for_30_s_lose_and_double_nothing() {
    let dir = common::temp_dir("sink-outage");
    let tenants: Vec<String> = (0..2)
        .map(|i| common::unique_tenant(&format!("so{i}")))
        .collect();
    let events = replay(&tenants, 100_000);
    let want = reference_alerts(&dir, &rules_dir(), "5s", &events);
    assert!(want.len() >= 100, "{}", want.len());

    let consumer = format!("outage_{}", std::process::id());
    let refs: Vec<&str> = tenants.iter().map(String::as_str).collect();
    pipeline_with(&dir, &consumer, &refs, "5s", "500ms", "", Route::TwoHops);
    let mut engine = start_engine(&dir);
    // A live run: the events arrive over about 20 s, and keep arriving during the outage.
    let messages = normalized_messages(&events);
    let publisher = std::thread::spawn(move || {
        for chunk in messages.chunks(2_500) {
            publish(chunk.to_vec());
            std::thread::sleep(Duration::from_millis(500));
        }
    });
    let count = || -> usize { tenants.iter().map(|t| read(Subject::Alerts, t).len()).sum() };
    wait_for(Duration::from_secs(60), "the first alerts", || {
        (count() > 0).then_some(())
    });

    vigil_bus::dev::kill_service("VIGIL_OPENSEARCH_PIDFILE").unwrap();
    vigil_bus::dev::kill_service("VIGIL_PG_PIDFILE").unwrap();
    assert!(
        !publisher.is_finished(),
        "the events were all published before the outage"
    );
    // Within a few seconds both sinks hold alerts they cannot store, every checkpoint waits
    // for them, and the consumer's acknowledgements stop.
    std::thread::sleep(Duration::from_secs(5));
    let floor = common::ack_floor("NORMALIZED", &consumer);
    std::thread::sleep(Duration::from_secs(25));
    assert_eq!(
        common::ack_floor("NORMALIZED", &consumer),
        floor,
        "input acknowledged while its alerts could not be stored"
    );
    assert!(
        engine.0.try_wait().unwrap().is_none(),
        "the engine exited during the outage; logs in {}",
        dir.display()
    );
    // The alerts raised meanwhile wait in the sinks' bounded queues (and are in ALERTS):
    // held in memory, covered by no checkpoint, so a crash now would replay them.
    let during = count();

    vigil_bus::dev::services_up().unwrap();
    publisher.join().unwrap();
    wait_for(Duration::from_secs(180), "every alert in ALERTS", || {
        (count() >= want.len()).then_some(())
    });
    let indexed = wait_for(Duration::from_secs(60), "every alert in OpenSearch", || {
        let docs = by_id(
            tenants
                .iter()
                .flat_map(|t| common::opensearch_alerts(t).into_values()),
        );
        (docs.len() >= want.len()).then_some(docs)
    });
    let linked = wait_for(Duration::from_secs(60), "every alert in Postgres", || {
        let mut linked = BTreeMap::new();
        for t in &tenants {
            for (case, alerts) in common::cases_of(t) {
                assert_eq!(case.alert_count as usize, alerts.len());
                for id in alerts {
                    assert!(
                        linked.insert(id, t.clone()).is_none(),
                        "an alert on two cases"
                    );
                }
            }
        }
        (linked.len() >= want.len()).then_some(linked)
    });
    let status = engine.terminate(Duration::from_secs(20));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");

    let stored: Vec<serde_json::Value> = tenants
        .iter()
        .flat_map(|t| read(Subject::Alerts, t))
        .collect();
    let got = by_id(stored.iter().cloned());
    assert_eq!(stored.len(), got.len(), "ALERTS holds an alert twice");
    assert_eq!(got, want, "ALERTS");
    assert_eq!(indexed, want, "OpenSearch");
    assert_eq!(
        linked.keys().collect::<BTreeSet<_>>(),
        want.keys().collect::<BTreeSet<_>>(),
        "Postgres"
    );
    eprintln!(
        "{} alerts; {during} in ALERTS when the stores came back; acknowledgements held at sequence {floor}",
        want.len()
    );
    for t in &tenants {
        common::delete_opensearch_alerts(t);
    }
    common::delete_consumer("NORMALIZED", &consumer);
    let _ = std::fs::remove_dir_all(&dir);
}
