//! The OpenSearch alert sink against the dev node (`make services-up`): tenant indexes from the
//! template, idempotent concurrent delivery (fanned out with the Postgres case store, as an
//! engine does), refused documents to the dead-letter subject.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use common::{
    alert, case_store, delete_index, documents, pg_sink_with, rt, sink, unique_tenant, url,
};
use hyper::Method;
use serde_json::{Value, json};
use vigil_bus::Subject;
use vigil_cases::{CaseFilter, Grouping};
use vigil_engine::AlertSink;
use vigil_model::Alert;
use vigil_sinks::FanOut;
use vigil_sinks::opensearch::{Client, alerts_index};

#[test]
fn the_same_alerts_from_four_threads_three_times_are_stored_once_in_opensearch_and_postgres() {
    let client = Client::new(&url(), Duration::from_secs(30)).unwrap();
    let (a, b) = (unique_tenant("osa"), unique_tenant("osb"));
    let t0 = 1_796_032_800_000i64;
    // 1,000 alerts: 500 per tenant.
    let alerts: Vec<Alert> = (0..1_000u64)
        .map(|i| alert(if i % 2 == 0 { &a } else { &b }, i, t0 + i as i64))
        .collect();
    // Every alert delivered 3 times, in a shuffled order, split over four writer threads on
    // two fan-outs to OpenSearch and Postgres (two engine processes).
    let mut deliveries: Vec<Alert> = (0..3).flat_map(|_| alerts.iter().cloned()).collect();
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for i in (1..deliveries.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        deliveries.swap(i, (x % (i as u64 + 1)) as usize);
    }
    let total_writes = deliveries.len();
    let sinks = [Arc::new(sink(100)), Arc::new(sink(250))];
    // One case per tenant for every 100 alerts: the cap and the open slot are contended by
    // both processes.
    let grouping: Grouping = toml::from_str("by = []\nmax_alerts = 100").unwrap();
    let cases = [
        Arc::new(pg_sink_with(grouping.clone(), |c| c.batch_alerts = 64)),
        Arc::new(pg_sink_with(grouping, |c| c.batch_alerts = 200)),
    ];
    let fanouts: Vec<Arc<dyn AlertSink>> = (0..2)
        .map(|k| {
            let both: Vec<Arc<dyn AlertSink>> = vec![sinks[k].clone(), cases[k].clone()];
            FanOut::alerts(both)
        })
        .collect();
    let threads: Vec<_> = deliveries
        .chunks(total_writes.div_ceil(4))
        .enumerate()
        .map(|(k, part)| {
            let sink = Arc::clone(&fanouts[k % 2]);
            let part = part.to_vec();
            std::thread::spawn(move || {
                for chunk in part.chunks(50) {
                    sink.write(chunk).unwrap();
                }
                sink.flush().unwrap();
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }

    let stats: Vec<_> = sinks.iter().map(|s| s.stats()).collect();
    let created: u64 = stats.iter().map(|s| s.created).sum();
    let duplicates: u64 = stats.iter().map(|s| s.duplicates).sum();
    assert_eq!(created, 1_000, "{stats:?}");
    assert_eq!(created + duplicates, total_writes as u64, "{stats:?}");
    assert!(stats.iter().all(|s| s.dead_lettered == 0), "{stats:?}");
    let pg: Vec<_> = cases.iter().map(|s| s.stats()).collect();
    let stored: u64 = pg.iter().map(|s| s.recorded.stored).sum();
    let pg_duplicates: u64 = pg.iter().map(|s| s.recorded.duplicates).sum();
    assert_eq!(stored, 1_000, "{pg:?}");
    assert_eq!(stored + pg_duplicates, total_writes as u64, "{pg:?}");
    assert_eq!(
        pg.iter().map(|s| s.recorded.cases_opened).sum::<u64>(),
        10,
        "{pg:?}"
    );

    // Each tenant's cases: five of 100 alerts, numbered 1 to 5, every alert on exactly one,
    // none of the other tenant's.
    let store = case_store();
    for t in [&a, &b] {
        let (list, linked) = rt().block_on(async {
            let list = store.cases(t, &CaseFilter::default()).await.unwrap();
            let mut linked = BTreeSet::new();
            for c in &list {
                let detail = store.case(t, c.number).await.unwrap().unwrap();
                assert_eq!(detail.alerts.len(), 100, "case {} of {t}", c.number);
                for al in detail.alerts {
                    assert!(linked.insert(al.id), "an alert on two cases");
                }
            }
            (list, linked)
        });
        let numbers: Vec<i64> = list.iter().map(|c| c.number).collect();
        assert_eq!(numbers, [5, 4, 3, 2, 1], "{t}");
        assert!(list.iter().all(|c| c.alert_count == 100));
        let want: BTreeSet<String> = alerts
            .iter()
            .filter(|al| &al.tenant_id == t)
            .map(|al| al.id.clone())
            .collect();
        assert_eq!(linked, want, "{t}");
    }

    // Each tenant's index holds exactly its own 500 alerts, with their content.
    for (t, parity) in [(&a, 0u64), (&b, 1u64)] {
        let docs = documents(&client, &alerts_index(t));
        let want: BTreeSet<String> = alerts
            .iter()
            .enumerate()
            .filter(|(i, _)| *i as u64 % 2 == parity)
            .map(|(_, al)| al.id.clone())
            .collect();
        assert_eq!(docs.keys().cloned().collect::<BTreeSet<_>>(), want, "{t}");
        assert!(docs.values().all(|d| d["tenant_id"] == t.as_str()));
        let first = alerts.iter().find(|al| &al.tenant_id == t).unwrap();
        assert_eq!(
            docs[&first.id],
            serde_json::to_value(first).unwrap(),
            "stored as written"
        );
    }
    // The template's mappings: strict, and `group` searchable as a flat object.
    rt().block_on(async {
        let (_, m) = client
            .json(
                Method::GET,
                &format!("/{}/_mapping", alerts_index(&a)),
                None,
            )
            .await
            .unwrap();
        let props = &m[alerts_index(&a)]["mappings"];
        assert_eq!(props["dynamic"], "strict");
        assert_eq!(props["properties"]["group"]["type"], "flat_object");
        assert_eq!(props["properties"]["@timestamp"]["type"], "date");
        let (_, hits) = client
            .json(
                Method::POST,
                &format!("/{}/_search", alerts_index(&a)),
                Some(&json!({"query": {"term": {"group.user.name": "u42"}}})),
            )
            .await
            .unwrap();
        assert_eq!(hits["hits"]["total"]["value"], 1, "{hits}");
    });
    delete_index(&client, &alerts_index(&a));
    delete_index(&client, &alerts_index(&b));
}

#[test]
fn refused_alerts_go_to_the_dead_letter_subject_and_the_rest_of_the_batch_is_stored() {
    let client = Client::new(&url(), Duration::from_secs(30)).unwrap();
    let t = unique_tenant("osdl");
    let t0 = 1_796_032_800_000i64;
    // Year 10000 does not fit the `date` mapping: OpenSearch refuses those documents (400),
    // in the same bulk request as the good ones.
    let far = 253_402_300_800_000i64;
    let alerts: Vec<Alert> = (0..20u64)
        .map(|i| {
            alert(
                &t,
                i,
                if i % 5 == 0 {
                    far + i as i64
                } else {
                    t0 + i as i64
                },
            )
        })
        .collect();
    let s = sink(500);
    s.write(&alerts).unwrap();
    s.flush().unwrap();
    let stats = s.stats();
    assert_eq!((stats.created, stats.dead_lettered), (16, 4), "{stats:?}");
    assert_eq!(
        stats.requests, 1,
        "one bulk request held both kinds: {stats:?}"
    );

    let docs = documents(&client, &alerts_index(&t));
    let good: BTreeSet<String> = alerts
        .iter()
        .filter(|a| a.timestamp < far)
        .map(|a| a.id.clone())
        .collect();
    assert_eq!(docs.keys().cloned().collect::<BTreeSet<_>>(), good);
    let dead = common::dead_letters(Subject::DlqAlerts, &t);
    let mut refused = BTreeSet::new();
    for m in &dead {
        let h = m.headers.as_ref().unwrap();
        assert_eq!(
            h.get("Vigil-Reject-Reason").unwrap().as_str(),
            "mapper_parsing_exception"
        );
        assert!(
            h.get("Vigil-Reject-Message")
                .unwrap()
                .as_str()
                .contains("of type [date]"),
            "{:?}",
            h.get("Vigil-Reject-Message")
        );
        let doc: Value = serde_json::from_slice(&m.payload).unwrap();
        refused.insert(doc["id"].as_str().unwrap().to_owned());
    }
    let want: BTreeSet<String> = alerts
        .iter()
        .filter(|a| a.timestamp >= far)
        .map(|a| a.id.clone())
        .collect();
    assert_eq!(refused, want);
    delete_index(&client, &alerts_index(&t));
}

#[test]
fn hostile_field_values_are_stored_as_plain_data() {
    let client = Client::new(&url(), Duration::from_secs(30)).unwrap();
    let t = unique_tenant("osinj");
    let t0 = 1_796_032_800_000i64;
    let evil = [
        "../../_all/_delete_by_query",
        "*",
        "a,b",
        "\"}\n{\"delete\":{\"_index\":\"alerts-acme\",\"_id\":\"x\"}}",
        "' OR '1'='1",
        "alerts-*",
    ];
    let alerts: Vec<Alert> = evil
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let mut a = alert(&t, i as u64, t0 + i as i64);
            a.title = (*v).to_owned();
            a.group.insert("user.name".to_owned(), (*v).to_owned());
            a
        })
        .collect();
    let s = sink(500);
    s.write(&alerts).unwrap();
    s.flush().unwrap();
    assert_eq!((s.stats().created, s.stats().dead_lettered), (6, 0));
    // Each document exactly as written, in this tenant's index only; the bulk body's framing
    // could not be broken out of.
    let docs = documents(&client, &alerts_index(&t));
    assert_eq!(docs.len(), evil.len());
    for a in &alerts {
        assert_eq!(docs[&a.id], serde_json::to_value(a).unwrap());
    }
    delete_index(&client, &alerts_index(&t));
}

#[test]
fn an_index_created_by_an_older_version_gains_the_new_fields() {
    // An alerts index whose strict mapping predates `risk_score` (as created before it was
    // added): the sink adds the field to the live index, and the alerts are stored, not
    // refused as unknown fields.
    let client = Client::new(&url(), Duration::from_secs(30)).unwrap();
    let t = unique_tenant("osold");
    let index = alerts_index(&t);
    let mut old = vigil_sinks::opensearch::alerts_template(0)["template"].clone();
    old["mappings"]["properties"]
        .as_object_mut()
        .unwrap()
        .remove("risk_score");
    // Only the highest-priority template matching a name applies: one for this index alone
    // keeps the current `alerts-*` template from adding the field at creation.
    let pinned = format!("/_index_template/vigil-test-{index}");
    let body = json!({"index_patterns": [index], "priority": 1000, "template": old});
    let (status, answer) = rt()
        .block_on(client.json(Method::PUT, &pinned, Some(&body)))
        .unwrap();
    assert!(status.is_success(), "{answer}");
    let (status, answer) = rt()
        .block_on(client.json(Method::PUT, &format!("/{index}"), Some(&json!({}))))
        .unwrap();
    assert!(status.is_success(), "{answer}");
    rt().block_on(client.json(Method::DELETE, &pinned, None))
        .unwrap();
    let (_, mapping) = rt()
        .block_on(client.json(Method::GET, &format!("/{index}/_mapping"), None))
        .unwrap();
    let props = &mapping[index.as_str()]["mappings"]["properties"];
    assert!(
        props["severity"].is_object() && props["risk_score"].is_null(),
        "{mapping}"
    );
    let t0 = 1_796_032_800_000i64;
    let alerts: Vec<Alert> = (0..3).map(|i| alert(&t, i, t0 + i as i64)).collect();
    let s = sink(500);
    s.write(&alerts).unwrap();
    s.flush().unwrap();
    assert_eq!((s.stats().created, s.stats().dead_lettered), (3, 0));
    let docs = documents(&client, &index);
    assert_eq!(docs.len(), 3);
    assert!(docs.values().all(|d| d["risk_score"] == 73));
    delete_index(&client, &index);
}
