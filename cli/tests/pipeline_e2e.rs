//! The service path as an operator runs it, against the dev NATS: `vigil ingest`, `vigil
//! normalize` and `vigil run --config pipeline.toml` as separate processes, events posted over
//! HTTP, alerts read back from the `ALERTS` stream; and the engine killed with SIGKILL during a
//! replay, restarted from its checkpoints, ending with exactly the alerts of an uninterrupted
//! run.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::engine::{Route, pipeline, pipeline_with, rules_dir, start_engine, wait_for};
use common::replay::{by_id, event_id, publish, publish_normalized, reference_alerts, replay};
use common::{Proc, post_events, read, token, vigil};
use vigil_bus::Subject;

#[test]
fn brute_force_over_http_alerts_each_tenant_alone_after_the_idle_timeout() {
    brute_force_over_http(Route::TwoHops);
}

#[test]
fn brute_force_over_http_with_the_engine_normalizing_raw_events() {
    brute_force_over_http(Route::OneHop);
}

/// Two tenants' bursts posted over HTTP, then silence; each tenant gets its own alert (by live
/// idleness), a bad event lands in its DLQ with its reason, the metrics count per tenant and
/// rule, and SIGTERM exits cleanly.
fn brute_force_over_http(route: Route) {
    let dir = common::temp_dir(&format!("pipeline-e2e-{}", route as u8));
    let port = common::free_port();
    let tag = format!("{}_{}", route as u8, std::process::id());
    let (a, b) = (
        common::unique_tenant(&format!("pa{}", route as u8)),
        common::unique_tenant(&format!("pb{}", route as u8)),
    );
    let _ingest = common::start_ingest_with(&dir, port, &[&a, &b], &common::api_cases_section());
    // With the engine on RAW, the normalizer still feeds NORMALIZED (for search), off the
    // detection path: both reject the bad event, and the DLQ must hold it once.
    let normalizer_name = format!("n_{tag}");
    let _normalizer = common::start_normalizer(&normalizer_name, &[&a, &b]);
    // And the events indexer, so that analysts can open the events an alert references.
    let indexer_name = format!("ix_{tag}");
    let _indexer = Proc(
        vigil()
            .args(["index-events", "--nats", &common::nats_url()])
            .args(["--opensearch", &common::opensearch_url(), "--replicas", "0"])
            .args(["--consumer", &indexer_name, "--tenant", &a, "--tenant", &b])
            .stderr(std::fs::File::create(dir.join("indexer.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    let engine_name = format!("e_{tag}");
    let metrics_port = common::free_port();
    pipeline_with(
        &dir,
        &engine_name,
        &[&a, &b],
        "2s",
        "1s",
        &format!("metrics_listen = \"127.0.0.1:{metrics_port}\""),
        route,
    );
    let mut engine = start_engine(&dir);

    // Ten failed logins for one user per tenant, then silence: nothing later moves event time,
    // so only live idleness can fire the window. Each body also holds an event that passes
    // ingest's checks but not the canonical schema (a port that is not a number).
    let now = vigil_model::time::now_millis();
    for (tenant, user) in [(&a, "alice"), (&b, "bob")] {
        let mut body: String = (0..10)
            .map(|i| {
                let ts = vigil_model::time::format_rfc3339_millis(now - 20_000 + i * 1_000);
                format!(
                    "{{\"@timestamp\":\"{ts}\",\"event\":{{\"id\":\"{user}-{i}\",\"category\":[\"authentication\"],\"outcome\":\"failure\"}},\"user\":{{\"name\":\"{user}\"}},\"source\":{{\"ip\":\"203.0.113.{i}\"}}}}\n"
                )
            })
            .collect();
        let ts = vigil_model::time::format_rfc3339_millis(now - 20_000);
        body.push_str(&format!(
            "{{\"@timestamp\":\"{ts}\",\"event\":{{\"id\":\"{user}-bad\"}},\"source\":{{\"port\":\"ssh\"}}}}\n"
        ));
        let (status, resp) = post_events(port, &token(tenant), &body);
        assert_eq!(status, 202, "{resp}");
    }
    for (tenant, user) in [(&a, "alice"), (&b, "bob")] {
        let alerts = wait_for(Duration::from_secs(30), "an alert per tenant", || {
            let v = read(Subject::Alerts, tenant);
            (!v.is_empty()).then_some(v)
        });
        assert_eq!(alerts.len(), 1, "{alerts:?}");
        let alert = &alerts[0];
        assert_eq!(alert["tenant_id"], tenant.as_str());
        assert_eq!(alert["rule_id"], "brute_force_login");
        assert_eq!(alert["group"]["user.name"], user);
        assert_eq!(alert["event_count"], 10);
    }
    // The same alert, and only its tenant's, in each tenant's OpenSearch index.
    for tenant in [&a, &b] {
        let stored = read(Subject::Alerts, tenant);
        let docs = wait_for(Duration::from_secs(10), "the alert in OpenSearch", || {
            let d = common::opensearch_alerts(tenant);
            (!d.is_empty()).then_some(d)
        });
        assert_eq!(docs.len(), 1, "{docs:?}");
        assert_eq!(docs[stored[0]["id"].as_str().unwrap()], stored[0]);
        // Every event the alert references is in the tenant's events index, and nothing
        // else: the bad event went to the DLQ, the other tenant's to its own index.
        let referenced: BTreeSet<String> = stored[0]["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e.as_str().unwrap().to_owned())
            .collect();
        assert_eq!(referenced.len(), 10);
        let events = wait_for(Duration::from_secs(20), "the events in OpenSearch", || {
            let d = common::opensearch_documents(&format!("events-{tenant}"));
            (d.len() >= 10).then_some(d)
        });
        assert_eq!(
            events.keys().cloned().collect::<BTreeSet<_>>(),
            referenced,
            "{tenant}"
        );
        assert!(events.values().all(|e| e["tenant_id"] == tenant.as_str()));
    }
    // The case, in Postgres, through the case API: each tenant sees its own case holding
    // its alert, and nothing of the other's.
    for (tenant, user) in [(&a, "alice"), (&b, "bob")] {
        let stored = read(Subject::Alerts, tenant);
        let auth = format!("Bearer {}", token(tenant));
        let case = wait_for(Duration::from_secs(10), "the case", || {
            let (status, body) =
                common::http(port, "GET", "/v1/cases", &[("authorization", &auth)], "");
            assert_eq!(status, 200, "{body}");
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            let cases = v["cases"].as_array().unwrap().clone();
            (!cases.is_empty()).then_some(cases)
        });
        assert_eq!(case.len(), 1, "{case:?}");
        assert_eq!(case[0]["number"], 1);
        assert_eq!(case[0]["rule_id"], "brute_force_login");
        assert_eq!(case[0]["alert_count"], 1);
        assert!(
            case[0]["title"].as_str().unwrap().contains(user),
            "{case:?}"
        );
        let (status, body) =
            common::http(port, "GET", "/v1/cases/1", &[("authorization", &auth)], "");
        assert_eq!(status, 200, "{body}");
        let detail: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(detail["alerts"][0]["id"], stored[0]["id"]);
        let direct = common::cases_of(tenant);
        assert_eq!(direct.len(), 1);
        assert_eq!(direct[0].1, [stored[0]["id"].as_str().unwrap()]);
    }

    // Per-tenant and per-rule metrics.
    let expected: Vec<String> = [&a, &b]
        .iter()
        .flat_map(|t| {
            [
                format!("vigil_engine_events_total{{tenant=\"{t}\"}} 10"),
                format!("vigil_engine_alerts_total{{rule=\"brute_force_login\",tenant=\"{t}\"}} 1"),
                format!("vigil_engine_state_keys{{rule=\"brute_force_login\",tenant=\"{t}\"}} 1"),
                format!("vigil_engine_watermark_lag_seconds{{tenant=\"{t}\"}} "),
            ]
        })
        .chain([
            "vigil_sink_alerts_written_total{sink=\"opensearch\"} 2".to_owned(),
            "vigil_sink_alerts_written_total{sink=\"postgres\"} 2".to_owned(),
            "vigil_sink_alerts_dead_lettered_total{sink=\"postgres\"} 0".to_owned(),
            "vigil_cases_opened_total 2".to_owned(),
        ])
        .collect();
    let mut last = String::new();
    let found = (0..50).find_map(|_| {
        std::thread::sleep(Duration::from_millis(200));
        let (_, m) = common::try_http(metrics_port, "GET", "/metrics", &[], "").ok()?;
        let all = expected.iter().all(|l| m.contains(l.as_str()));
        last = m;
        all.then_some(())
    });
    assert!(found.is_some(), "expected {expected:#?} in\n{last}");
    let metrics = last;
    assert!(
        metrics.contains(match route {
            Route::TwoHops => "vigil_source_messages_total 20",
            Route::OneHop => "vigil_source_messages_total 22",
        }),
        "{metrics}"
    );
    assert!(
        !metrics.contains("vigil_engine_checkpoints_total 0"),
        "{metrics}"
    );

    if route == Route::OneHop {
        assert!(
            metrics.contains("vigil_engine_rejected_total{reason=\"schema_violation\"} 2"),
            "{metrics}"
        );
    }
    for tenant in [&a, &b] {
        let reasons = wait_for(Duration::from_secs(10), "the DLQ", || {
            let r = common::dlq_reasons(tenant);
            (!r.is_empty()).then_some(r)
        });
        assert_eq!(
            reasons,
            BTreeMap::from([("schema_violation".to_owned(), 1)]),
            "{tenant}"
        );
    }

    // SIGTERM: a last checkpoint, then a clean exit, without flushing anything early.
    let status = engine.terminate(Duration::from_secs(20));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    let jsonl = std::fs::read_to_string(dir.join("alerts.jsonl")).unwrap();
    assert_eq!(jsonl.lines().count(), 2, "{jsonl}");
    common::delete_consumer("RAW", &normalizer_name);
    common::delete_consumer(route.stream(), &engine_name);
    common::delete_consumer("NORMALIZED", &indexer_name);
    for t in [&a, &b] {
        common::delete_opensearch_alerts(t);
        common::delete_opensearch_index(&format!("events-{t}"));
    }
}

#[test]
fn killing_the_engine_during_a_replay_loses_and_doubles_nothing() {
    kill_the_engine_during_a_replay(Route::TwoHops);
}

#[test]
fn killing_the_engine_normalizing_raw_events_loses_and_doubles_nothing() {
    kill_the_engine_during_a_replay(Route::OneHop);
}

/// Raw messages for [`replay`]'s events, as ingest stores them (the ingest time an hour after
/// the first event, so no event is in the future).
fn publish_raw(events: &[(String, String)]) {
    let ingested = vigil_model::time::format_rfc3339_millis(1_796_032_800_000 + 3_600_000);
    publish(events.iter().map(|(tenant, line)| {
        let t = vigil_model::TenantId::parse(tenant).unwrap();
        vigil_bus::Outgoing {
            subject: Subject::RawEvents.for_tenant(&t),
            msg_id: vigil_bus::msg_id(&t, event_id(line)),
            payload: line.clone().into_bytes().into(),
            headers: vec![
                ("Vigil-Source-Type", "ecs".to_owned()),
                ("Vigil-Ingested-At", ingested.clone()),
            ],
        }
    }));
}

/// Five SIGKILLs of the engine at random points of a 200,000-event replay of three tenants,
/// then a run to the end: the alerts equal an uninterrupted run's, each stored once.
fn kill_the_engine_during_a_replay(route: Route) {
    let dir = common::temp_dir(&format!("pipeline-crash-{}", route as u8));
    let tenants: Vec<String> = (0..3)
        .map(|i| common::unique_tenant(&format!("k{i}r{}", route as u8)))
        .collect();
    let events = replay(&tenants, 200_000);
    let ids: BTreeSet<&str> = events.iter().map(|(_, l)| event_id(l)).collect();
    assert_eq!(ids.len(), events.len());

    // The uninterrupted run: embedded mode over the same events.
    let want = reference_alerts(&dir, &rules_dir(), "5s", &events);
    assert!(want.len() >= 100, "{}", want.len());

    match route {
        Route::TwoHops => publish_normalized(&events),
        Route::OneHop => publish_raw(&events),
    }
    let consumer = format!("crash_{}_{}", route as u8, std::process::id());
    let refs: Vec<&str> = tenants.iter().map(String::as_str).collect();
    pipeline_with(&dir, &consumer, &refs, "5s", "250ms", "", route);

    // Kill -9 at random points while the replay is under way, five times; then let the last
    // engine finish (the final windows fire once the stream has been idle for the lateness).
    let count = || -> usize { tenants.iter().map(|t| read(Subject::Alerts, t).len()).sum() };
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut kills = 0;
    while kills < 5 {
        let mut engine = start_engine(&dir);
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        std::thread::sleep(Duration::from_millis(300 + rng % 500));
        let _ = engine.0.kill(); // SIGKILL
        let _ = engine.0.wait();
        assert!(
            count() < want.len(),
            "the replay finished before the kill #{}; logs in {}",
            kills + 1,
            dir.display()
        );
        kills += 1;
    }
    let mut engine = start_engine(&dir);
    wait_for(Duration::from_secs(120), "every alert", || {
        (count() >= want.len()).then_some(())
    });
    std::thread::sleep(Duration::from_secs(1));
    assert!(engine.terminate(Duration::from_secs(20)).is_some());

    let stored: Vec<serde_json::Value> = tenants
        .iter()
        .flat_map(|t| read(Subject::Alerts, t))
        .collect();
    let got = by_id(stored.iter().cloned());
    assert_eq!(
        stored.len(),
        got.len(),
        "ALERTS holds an alert twice (the duplicate window dedupes replays)"
    );
    let missing: Vec<&String> = want.keys().filter(|k| !got.contains_key(*k)).collect();
    let extra: Vec<&String> = got.keys().filter(|k| !want.contains_key(*k)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{} missing, {} extra after {kills} kills; logs in {}",
        missing.len(),
        extra.len(),
        dir.display()
    );
    assert_eq!(got, want);
    // The JSON-lines sink is appended to across restarts: it holds every alert, and the
    // alerts the restarts raised again, with the same ids and contents.
    let jsonl = std::fs::read_to_string(dir.join("alerts.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let replayed = lines.len() - want.len();
    assert_eq!(by_id(lines), want);
    // OpenSearch holds every alert once, as the uninterrupted run raised it (`create` with
    // `_id` = alert id: the replays' writes were duplicates).
    let indexed = by_id(
        tenants
            .iter()
            .flat_map(|t| common::opensearch_alerts(t).into_values()),
    );
    assert_eq!(indexed, want, "OpenSearch");
    // Postgres holds every alert once, each on exactly one case of its own tenant.
    let mut linked = BTreeMap::new();
    for t in &tenants {
        for (case, alerts) in common::cases_of(t) {
            assert_eq!(
                case.alert_count as usize,
                alerts.len(),
                "case {} of {t}",
                case.number
            );
            for id in alerts {
                assert!(
                    linked.insert(id, t.clone()).is_none(),
                    "an alert on two cases"
                );
            }
        }
    }
    assert_eq!(
        linked.keys().collect::<BTreeSet<_>>(),
        want.keys().collect::<BTreeSet<_>>(),
        "Postgres"
    );
    for t in &tenants {
        common::delete_opensearch_alerts(t);
    }
    eprintln!("{kills} kills; {replayed} alerts raised again by restarts, deduplicated by ALERTS");
    common::delete_consumer(route.stream(), &consumer);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_input_is_counted_exactly_and_every_reject_keeps_its_reason() {
    let dir = common::temp_dir("pipeline-accounting");
    let port = common::free_port();
    let (t, other) = (common::unique_tenant("acct"), common::unique_tenant("acco"));
    let _ingest = common::start_ingest_with(
        &dir,
        port,
        &[&t, &other],
        "[limits]\nmax_event_bytes = 4096\n",
    );
    let normalizer_name = format!("na_{}", std::process::id());
    let _normalizer = common::start_normalizer(&normalizer_name, &[&t]);
    let engine_name = format!("ea_{}", std::process::id());
    pipeline(&dir, &engine_name, &[&t], "5s", "1s");
    let mut engine = start_engine(&dir);

    // 10,000 lines, 5% bad: each bad kind at fixed positions, good events 50 ms apart ending
    // two minutes ago, late ones an hour older than their neighbours.
    let now = vigil_model::time::now_millis();
    let base = now - 10 * 60_000;
    let ts = |ms: i64| vigil_model::time::format_rfc3339_millis(ms);
    let mut want: BTreeMap<&str, usize> = BTreeMap::new();
    let mut lines = Vec::new();
    for i in 0..10_000i64 {
        let good_ts = base + i * 50;
        let event = |ts: String, extra: &str| {
            format!(
                r#"{{"@timestamp":"{ts}","event":{{"id":"acct-{i}","category":["authentication"],"outcome":"success"}},"user":{{"name":"u{}"}}{extra}}}"#,
                i % 97
            )
        };
        let (line, kind) = match i % 100 {
            10 => ("{\"@timestamp\": \"not closed".to_owned(), "invalid_json"),
            20 => (
                event(ts(good_ts), &format!(r#","tenant_id":"{other}""#)),
                "tenant_mismatch",
            ),
            30 if i % 200 == 30 => (event("yesterday".into(), ""), "invalid_timestamp"),
            30 => (event(ts(now + 3_600_000), ""), "future_timestamp"),
            40 if i % 200 == 40 => (
                event(
                    ts(good_ts),
                    &format!(r#","message":"{}""#, "x".repeat(5_000)),
                ),
                "oversize",
            ),
            40 => (
                event(ts(good_ts), r#","source":{"port":"not a number"}"#),
                "schema_violation",
            ),
            60 => (event(ts(good_ts - 3_600_000), ""), "late"),
            _ => (event(ts(good_ts), ""), "ok"),
        };
        *want.entry(kind).or_default() += 1;
        lines.push(line);
    }
    let bad: usize = want
        .iter()
        .filter(|(k, _)| **k != "ok")
        .map(|(_, n)| n)
        .sum();
    assert_eq!(bad, 500);

    let token = token(&t);
    let (mut accepted, mut at_ingest) = (0usize, BTreeMap::<String, usize>::new());
    for batch in lines.chunks(1_000) {
        let body = batch.join("\n") + "\n";
        let (status, resp) = post_events(port, &token, &body);
        assert!(status == 202 || status == 400, "{status} {resp}");
        let v: serde_json::Value = serde_json::from_str(&resp).unwrap();
        accepted += v["accepted"].as_u64().unwrap() as usize;
        for e in v["errors"].as_array().into_iter().flatten() {
            *at_ingest
                .entry(e["reason"].as_str().unwrap().to_owned())
                .or_default() += 1;
        }
    }
    let rejected_at_ingest: usize = at_ingest.values().sum();
    // sent = accepted + rejected at ingest
    assert_eq!(accepted + rejected_at_ingest, 10_000, "{at_ingest:?}");
    for kind in [
        "invalid_json",
        "tenant_mismatch",
        "invalid_timestamp",
        "future_timestamp",
        "oversize",
    ] {
        assert_eq!(at_ingest.get(kind), want.get(kind), "{kind}: {at_ingest:?}");
    }

    // accepted = normalized + rejected at normalize (DLQ); normalized = processed + late.
    let normalized = wait_for(Duration::from_secs(60), "the normalizer", || {
        let n = read(Subject::NormalizedEvents, &t).len();
        let dlq = common::dlq_reasons(&t);
        (n + dlq.get("schema_violation").copied().unwrap_or(0) == accepted).then_some(n)
    });
    wait_for(
        Duration::from_secs(60),
        "the late events in the DLQ",
        || (common::dlq_reasons(&t).get("late") == want.get("late")).then_some(()),
    );
    std::thread::sleep(Duration::from_secs(2));
    let status = engine.terminate(Duration::from_secs(20));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    let dlq = common::dlq_reasons(&t);
    assert_eq!(
        dlq,
        BTreeMap::from([
            ("late".to_owned(), want["late"]),
            ("schema_violation".to_owned(), want["schema_violation"]),
        ]),
        "the DLQ holds exactly the normalizer's and the engine's rejects"
    );
    assert_eq!(accepted, normalized + want["schema_violation"]);
    let log = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| {
            let p = e.unwrap().path();
            p.file_name()?.to_str()?.starts_with("engine-").then_some(p)
        })
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect::<String>();
    let summary = format!(
        "read {normalized} lines: {normalized} events, 0 rejected, {} late",
        want["late"]
    );
    assert!(log.contains(&summary), "{summary} not in {log}");
    assert_eq!(normalized - want["late"], want["ok"]);
    common::delete_consumer("RAW", &normalizer_name);
    common::delete_consumer("NORMALIZED", &engine_name);
    common::delete_opensearch_alerts(&t);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every `event.id` stored on `{kind}.{tenant}`, with how often.
fn stored_ids(kind: Subject, tenant: &str) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for e in read(kind, tenant) {
        *out.entry(e["event"]["id"].as_str().unwrap_or("?").to_owned())
            .or_default() += 1;
    }
    out
}

/// SIGKILLs a process five times at random points of a long run, restarting it each time;
/// `done` says when the run is complete.
fn kill_five_times(mut start: impl FnMut() -> Proc, mut done: impl FnMut() -> bool, what: &str) {
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    for kill in 1..=5 {
        let mut p = start();
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        std::thread::sleep(Duration::from_millis(500 + rng % 700));
        let _ = p.0.kill();
        let _ = p.0.wait();
        assert!(!done(), "the {what} finished before kill #{kill}");
    }
    let _last = start();
    wait_for(Duration::from_secs(180), what, || done().then_some(()));
}

#[test]
fn killing_the_normalizer_loses_and_doubles_nothing() {
    let tenant = common::unique_tenant("kn");
    let t = vigil_model::TenantId::parse(&tenant).unwrap();
    let n = 200_000;
    let now = vigil_model::time::now_millis();
    publish((0..n).map(|i| vigil_bus::Outgoing {
        subject: Subject::RawEvents.for_tenant(&t),
        msg_id: vigil_bus::msg_id(&t, &format!("kn-{i}")),
        payload: format!(
            r#"{{"@timestamp":{},"tenant_id":"{tenant}","event":{{"id":"kn-{i}","outcome":"success"}},"user":{{"name":"u{}"}}}}"#,
            now - 60_000 + i as i64 / 10,
            i % 50
        )
        .into_bytes()
        .into(),
        headers: vec![("Vigil-Source-Type", "ecs".to_owned())],
    }));
    let consumer = format!("kn_{}", std::process::id());
    let start = || common::start_normalizer(&consumer, &[&tenant]);
    let count = || common::count(Subject::NormalizedEvents, &tenant);
    kill_five_times(start, || count() >= n, "normalizer");
    let ids = stored_ids(Subject::NormalizedEvents, &tenant);
    assert_eq!(ids.len(), n, "every raw event normalized");
    assert!(ids.values().all(|&c| c == 1), "none stored twice");
    common::delete_consumer("RAW", &consumer);
}

#[test]
fn killing_the_ingest_server_loses_and_doubles_nothing() {
    let dir = common::temp_dir("ingest-crash");
    let port = common::free_port();
    let tenant = common::unique_tenant("ki");
    let token = token(&tenant);
    let n = 200_000;
    let batches: Vec<String> = (0..n)
        .collect::<Vec<_>>()
        .chunks(2_000)
        .map(|c| {
            let now = vigil_model::time::now_millis();
            c.iter()
                .map(|i| {
                    format!(
                        "{{\"@timestamp\":{},\"event\":{{\"id\":\"ki-{i}\",\"outcome\":\"success\"}},\"user\":{{\"name\":\"u{}\"}}}}\n",
                        now - 60_000,
                        i % 50
                    )
                })
                .collect()
        })
        .collect();
    // A client that retries every batch until it is answered 202 (events carry ids, so a
    // retry of a batch that was partly stored dedupes).
    let client = std::thread::spawn(move || {
        let mut retries = 0;
        for body in &batches {
            loop {
                match common::try_post_events(port, &token, body) {
                    Ok((202, _)) => break,
                    Ok((status, resp)) if status != 503 => panic!("{status}: {resp}"),
                    _ => {
                        retries += 1;
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
            }
        }
        retries
    });
    let count = || common::count(Subject::RawEvents, &tenant);
    kill_five_times(
        || {
            // The last `[[tenants]]` table is this tenant's: lift its rate limit.
            common::start_ingest_with(
                &dir,
                port,
                &[&tenant],
                "events_per_sec = 1000000.0\nburst = 1000000\n",
            )
        },
        || client.is_finished(),
        "ingest client",
    );
    let retries = client.join().unwrap();
    // Each kill lands while the client runs (`kill_five_times` checks), but under load a
    // restart may complete between two of its requests: it sees at least one, not every one.
    assert!(retries >= 1, "the client saw the kills ({retries} retries)");
    assert_eq!(count(), n);
    let ids = stored_ids(Subject::RawEvents, &tenant);
    assert_eq!(ids.len(), n, "every event stored");
    assert!(ids.values().all(|&c| c == 1), "none stored twice");
    let _ = std::fs::remove_dir_all(&dir);
}
