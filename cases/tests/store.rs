//! The case store against the dev Postgres: grouping, idempotency under concurrent
//! redelivery, the case lifecycle, and hostile values stored as plain data.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::{alert, store, tenant};
use vigil_cases::{
    CaseChange, CaseFilter, Error, Grouping, GroupingPolicy, Impact, Resolution, Status,
};
use vigil_model::Severity::*;

const T0: i64 = 1_764_547_200_000; // 2025-12-01T00:00:00Z
const MIN: i64 = 60_000;

fn grouping(window: Duration, max_alerts: u32) -> Grouping {
    Grouping {
        default: GroupingPolicy {
            by: None,
            window,
            max_alerts,
        },
        rules: BTreeMap::new(),
    }
}

#[tokio::test]
async fn alerts_group_by_key_within_a_window_and_a_cap() {
    let store = store(2).await;
    let t = tenant("cases_group");
    let g = grouping(Duration::from_secs(3600), 3);
    // alice: three alerts in the first hour (one case), a fourth past the cap (case 2),
    // then one past case 2's window (case 3). bob: one case.
    let batch1 = vec![
        alert(&t, "brute", "alice", T0, Low),
        alert(&t, "brute", "alice", T0 + 10 * MIN, High),
        alert(&t, "brute", "bob", T0 + 5 * MIN, Medium),
    ];
    let r = store
        .record_alerts(&t, &batch1, &g, "engine")
        .await
        .unwrap();
    assert_eq!(
        (r.stored, r.duplicates, r.cases_opened, r.cases_updated),
        (3, 0, 2, 0)
    );
    let batch2 = vec![
        alert(&t, "brute", "alice", T0 + 20 * MIN, Low),
        alert(&t, "brute", "alice", T0 + 30 * MIN, Low),
        alert(&t, "brute", "alice", T0 + 95 * MIN, Critical),
    ];
    let r = store
        .record_alerts(&t, &batch2, &g, "engine")
        .await
        .unwrap();
    assert_eq!((r.stored, r.cases_opened, r.cases_updated), (3, 2, 1));

    let cases = store.cases(&t, &CaseFilter::default()).await.unwrap();
    let summary: Vec<_> = cases
        .iter()
        .map(|c| {
            (
                c.number,
                c.title.as_str(),
                c.alert_count,
                c.severity,
                c.accepts_alerts,
                c.previous_case,
            )
        })
        .collect();
    // Numbers follow key order inside a batch (alice's before bob's), newest first.
    assert_eq!(
        summary,
        [
            (4, "brute for alice", 1, Critical, true, Some(3)),
            (3, "brute for alice", 1, Low, false, Some(1)),
            (2, "brute for bob", 1, Medium, true, None),
            (1, "brute for alice", 3, High, false, None),
        ]
    );
    let first = store.case(&t, 1).await.unwrap().unwrap();
    let times: Vec<i64> = first.alerts.iter().map(|a| a.timestamp).collect();
    assert_eq!(times, [T0, T0 + 10 * MIN, T0 + 20 * MIN]);
    assert_eq!(first.case.first_alert_at, T0);
    assert_eq!(first.case.last_alert_at, T0 + 20 * MIN);

    // A closed case takes no alerts: the next alice alert opens case 5, linked to 4.
    let c4 = &cases[0];
    let closing = CaseChange {
        status: Some(Status::Closed),
        resolution: Some(Resolution::TruePositive),
        impact: Some(Impact::Low),
        ..CaseChange::default()
    };
    let closed = store
        .update_case(&t, 4, c4.version, &closing, "ana")
        .await
        .unwrap();
    assert!(!closed.accepts_alerts && closed.closed_at.is_some());
    let r = store
        .record_alerts(
            &t,
            &[alert(&t, "brute", "alice", T0 + 96 * MIN, Low)],
            &g,
            "engine",
        )
        .await
        .unwrap();
    assert_eq!((r.stored, r.cases_opened), (1, 1));
    let c5 = store.case(&t, 5).await.unwrap().unwrap().case;
    assert_eq!(
        (c5.previous_case, c5.alert_count, c5.status),
        (Some(4), 1, Status::New)
    );
    let c4_after = store.case(&t, 4).await.unwrap().unwrap().case;
    assert_eq!(c4_after, closed, "the closed case did not change");
}

#[tokio::test]
async fn per_rule_policies_choose_the_entity_fields() {
    let store = store(2).await;
    let t = tenant("cases_policy");
    let g: Grouping = toml::from_str(
        r#"
        [rules.spray]
        by = []
        "#,
    )
    .unwrap();
    let alerts = [
        alert(&t, "spray", "alice", T0, Low),
        alert(&t, "spray", "bob", T0 + 1, Low),
        alert(&t, "brute", "alice", T0, Low),
        alert(&t, "brute", "bob", T0 + 1, Low),
    ];
    let r = store
        .record_alerts(&t, &alerts, &g, "engine")
        .await
        .unwrap();
    // spray: one case for every user; brute: one per user.
    assert_eq!((r.stored, r.cases_opened), (4, 3));
    let counts: BTreeSet<(String, i32)> = store
        .cases(&t, &CaseFilter::default())
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.title, c.alert_count))
        .collect();
    assert_eq!(
        counts,
        [
            ("brute for alice".to_owned(), 1),
            ("brute for bob".to_owned(), 1),
            ("spray for alice".to_owned(), 2)
        ]
        .into()
    );
}

#[tokio::test]
async fn the_same_thousand_alerts_three_times_from_four_tasks() {
    let store = store(4).await;
    let t = tenant("cases_idem");
    let g = grouping(Duration::from_secs(24 * 3600), 10_000);
    // 50 users × 20 alerts.
    let alerts: Vec<_> = (0..1000)
        .map(|i| {
            alert(
                &t,
                "brute",
                &format!("user{}", i % 50),
                T0 + i as i64 * 1000,
                Low,
            )
        })
        .collect();
    // Three deliveries of every alert, spread over four tasks, each in its own order and
    // batch size.
    let mut deliveries: Vec<Vec<_>> = vec![Vec::new(); 4];
    for round in 0..3 {
        for (i, a) in alerts.iter().enumerate() {
            deliveries[(i * 7 + round) % 4].push(a.clone());
        }
    }
    let tasks: Vec<_> = deliveries
        .into_iter()
        .enumerate()
        .map(|(n, mut mine)| {
            let (store, t, g) = (store.clone(), t.clone(), g.clone());
            if n % 2 == 1 {
                mine.reverse();
            }
            tokio::spawn(async move {
                let mut total = vigil_cases::Recorded::default();
                for chunk in mine.chunks(37 + n * 20) {
                    loop {
                        match store.record_alerts(&t, chunk, &g, "engine").await {
                            Ok(r) => {
                                total += r;
                                break;
                            }
                            Err(e) if e.is_transient() => continue,
                            Err(e) => panic!("{e}"),
                        }
                    }
                }
                total
            })
        })
        .collect();
    let mut total = vigil_cases::Recorded::default();
    for r in futures::future::join_all(tasks).await {
        total += r.unwrap();
    }
    assert_eq!(
        (total.stored, total.duplicates, total.cases_opened),
        (1000, 2000, 50)
    );

    let cases = store.cases(&t, &common::all_cases()).await.unwrap();
    let numbers: BTreeSet<i64> = cases.iter().map(|c| c.number).collect();
    assert_eq!(numbers, (1..=50).collect(), "case numbers are gapless");
    let mut linked = BTreeMap::new();
    for c in &cases {
        assert_eq!(c.alert_count, 20, "case {}", c.number);
        let detail = store.case(&t, c.number).await.unwrap().unwrap();
        assert_eq!(detail.alerts.len(), 20);
        for a in detail.alerts {
            assert_eq!(
                a.title, c.title,
                "an alert of another user on case {}",
                c.number
            );
            assert!(
                linked.insert(a.id, c.number).is_none(),
                "an alert on two cases"
            );
        }
    }
    let ids: BTreeSet<&String> = alerts.iter().map(|a| &a.id).collect();
    assert_eq!(linked.keys().collect::<BTreeSet<_>>(), ids);
}

#[tokio::test]
async fn the_case_lifecycle_is_checked_versioned_and_audited() {
    let store = store(2).await;
    let t = tenant("cases_life");
    let g = Grouping::default();
    store
        .record_alerts(&t, &[alert(&t, "brute", "carol", T0, Medium)], &g, "engine")
        .await
        .unwrap();
    let c = store.case(&t, 1).await.unwrap().unwrap().case;
    assert_eq!(
        (c.status, c.version, c.created_by.as_str()),
        (Status::New, 1, "engine")
    );

    let take = CaseChange {
        status: Some(Status::InProgress),
        assignee: Some(Some("ana".to_owned())),
        tags: Some(vec!["vip".to_owned()]),
        ..CaseChange::default()
    };
    let c = store.update_case(&t, 1, 1, &take, "ana").await.unwrap();
    assert_eq!(
        (c.status, c.version, c.assignee.as_deref()),
        (Status::InProgress, 2, Some("ana"))
    );

    // A stale version is a conflict, and changes nothing.
    let hold = CaseChange {
        status: Some(Status::OnHold),
        ..CaseChange::default()
    };
    match store.update_case(&t, 1, 1, &hold, "bo").await {
        Err(Error::Conflict {
            expected: 1,
            current: 2,
            ..
        }) => {}
        other => panic!("expected a conflict, got {other:?}"),
    }
    // Transitions that do not exist, and closing without an outcome, are refused.
    let back = CaseChange {
        status: Some(Status::New),
        ..CaseChange::default()
    };
    assert!(matches!(
        store.update_case(&t, 1, 2, &back, "ana").await,
        Err(Error::Invalid(_))
    ));
    let bare_close = CaseChange {
        status: Some(Status::Closed),
        resolution: Some(Resolution::FalsePositive),
        ..CaseChange::default()
    };
    assert!(matches!(
        store.update_case(&t, 1, 2, &bare_close, "ana").await,
        Err(Error::Invalid(_))
    ));
    let early_outcome = CaseChange {
        impact: Some(Impact::None),
        ..CaseChange::default()
    };
    assert!(matches!(
        store.update_case(&t, 1, 2, &early_outcome, "ana").await,
        Err(Error::Invalid(_))
    ));
    assert!(matches!(
        store.update_case(&t, 99, 1, &hold, "ana").await,
        Err(Error::NotFound(99))
    ));

    let comment = store
        .add_comment(&t, 1, "looked at the source IP; a known scanner", "ana")
        .await
        .unwrap();
    let close = CaseChange {
        status: Some(Status::Closed),
        resolution: Some(Resolution::FalsePositive),
        impact: Some(Impact::None),
        assignee: Some(None),
        ..CaseChange::default()
    };
    let c = store.update_case(&t, 1, 2, &close, "ana").await.unwrap();
    assert_eq!(
        (c.status, c.resolution, c.impact, c.assignee, c.version),
        (
            Status::Closed,
            Some(Resolution::FalsePositive),
            Some(Impact::None),
            None,
            3
        )
    );
    // Closed is final.
    let reopen = CaseChange {
        status: Some(Status::InProgress),
        ..CaseChange::default()
    };
    assert!(matches!(
        store.update_case(&t, 1, 3, &reopen, "ana").await,
        Err(Error::Invalid(_))
    ));
    assert!(
        store
            .delete_comment(&t, 1, comment.id, "ana")
            .await
            .unwrap()
    );
    assert!(
        !store
            .delete_comment(&t, 1, comment.id, "ana")
            .await
            .unwrap()
    );

    let detail = store.case(&t, 1).await.unwrap().unwrap();
    assert!(detail.comments.is_empty());
    let log = store.audit_log(&t, 1).await.unwrap();
    let actions: Vec<(&str, &str)> = log
        .iter()
        .map(|e| (e.actor.as_str(), e.action.as_str()))
        .collect();
    assert_eq!(
        actions,
        [
            ("engine", "case.opened"),
            ("engine", "case.alerts_added"),
            ("ana", "case.updated"),
            ("ana", "comment.added"),
            ("ana", "case.updated"),
            ("ana", "comment.deleted"),
        ]
    );
    assert_eq!(
        log[2].details["status"],
        serde_json::json!({"from": "new", "to": "in_progress"})
    );
    assert_eq!(
        log[4].details["assignee"],
        serde_json::json!({"from": "ana", "to": null})
    );
    let filtered = store
        .cases(
            &t,
            &CaseFilter {
                status: Some(Status::Closed),
                ..CaseFilter::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(filtered.len(), 1);
    assert!(
        store
            .cases(
                &t,
                &CaseFilter {
                    status: Some(Status::New),
                    ..CaseFilter::default()
                }
            )
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn hostile_values_are_plain_data_and_unstorable_ones_are_refused() {
    let store = store(2).await;
    let t = tenant("cases_inject");
    let g = Grouping::default();
    let evil = [
        "'; DROP TABLE vigil.cases; --",
        "../../etc/passwd",
        "*",
        "a,b",
        "\"quoted\"",
        "$1",
        "\\x00",
    ];
    let alerts: Vec<_> = evil
        .iter()
        .enumerate()
        .map(|(i, v)| alert(&t, v, v, T0 + i as i64, Low))
        .collect();
    let r = store
        .record_alerts(&t, &alerts, &g, "engine")
        .await
        .unwrap();
    assert_eq!(
        (r.stored, r.cases_opened),
        (evil.len() as u64, evil.len() as u64)
    );
    let titles: BTreeSet<String> = store
        .cases(&t, &CaseFilter::default())
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.rule_id)
        .collect();
    assert_eq!(titles, evil.iter().map(|s| s.to_string()).collect());
    let c = store
        .add_comment(&t, 1, "'); DELETE FROM vigil.audit_log; --", "ana")
        .await
        .unwrap();
    assert_eq!(store.case(&t, 1).await.unwrap().unwrap().comments, [c]);

    // Postgres cannot store NUL in text: the batch is refused as a data error (the sink
    // dead-letters that alert and writes the rest), and nothing of it is stored.
    let nul = alert(&t, "brute", "nul\u{0}user", T0, Low);
    let good = alert(&t, "brute", "fine", T0, Low);
    let e = store
        .record_alerts(&t, &[good.clone(), nul], &g, "engine")
        .await
        .unwrap_err();
    assert!(e.is_data_error() && !e.is_transient(), "{e}");
    let r = store
        .record_alerts(&t, &[good], &g, "engine")
        .await
        .unwrap();
    assert_eq!(r.stored, 1);

    // Another tenant's alert in the batch is refused before anything is written.
    let other = tenant("cases_other");
    let mixed = [
        alert(&t, "brute", "x", T0, Low),
        alert(&other, "brute", "x", T0, Low),
    ];
    assert!(matches!(
        store.record_alerts(&t, &mixed, &g, "engine").await,
        Err(Error::Invalid(_))
    ));
}

#[tokio::test]
async fn migrations_are_idempotent_and_checked() {
    let store = store(1).await;
    drop(store);
    // Applied already: nothing to do, from several processes at once.
    let url = common::admin_url();
    let runs = futures::future::join_all((0..3).map(|_| vigil_cases::migrate(&url))).await;
    for r in runs {
        assert_eq!(r.unwrap(), Vec::<i32>::new());
    }
    // The application role cannot migrate (it creates nothing).
    let app = common::app_url();
    assert!(vigil_cases::migrate(&app).await.is_err());
}

#[tokio::test]
async fn analysts_closing_cases_while_alerts_arrive_never_reopen_them() {
    let store = store(4).await;
    let t = tenant("cases_race");
    let g = Grouping::default();
    let users: Vec<String> = (0..20).map(|u| format!("u{u}")).collect();
    let first: Vec<_> = users
        .iter()
        .map(|u| alert(&t, "brute", u, T0, Low))
        .collect();
    store.record_alerts(&t, &first, &g, "engine").await.unwrap();
    // One task closes every case (re-reading after a conflict) while another keeps adding
    // alerts for the same users.
    let closer = {
        let (store, t) = (store.clone(), t.clone());
        tokio::spawn(async move {
            let close = CaseChange {
                status: Some(Status::Closed),
                resolution: Some(Resolution::FalsePositive),
                impact: Some(Impact::None),
                ..CaseChange::default()
            };
            for number in 1..=20 {
                loop {
                    let c = store.case(&t, number).await.unwrap().unwrap().case;
                    match store
                        .update_case(&t, number, c.version, &close, "ana")
                        .await
                    {
                        Ok(_) => break,
                        Err(Error::Conflict { .. }) => continue,
                        Err(e) => panic!("{e}"),
                    }
                }
            }
        })
    };
    let writer = {
        let (store, t, users) = (store.clone(), t.clone(), users.clone());
        tokio::spawn(async move {
            for round in 1..=30 {
                let batch: Vec<_> = users
                    .iter()
                    .map(|u| alert(&t, "brute", u, T0 + round * MIN, Low))
                    .collect();
                store.record_alerts(&t, &batch, &g, "engine").await.unwrap();
            }
        })
    };
    closer.await.unwrap();
    writer.await.unwrap();
    let cases = store.cases(&t, &common::all_cases()).await.unwrap();
    let mut linked = BTreeSet::new();
    for c in &cases {
        let detail = store.case(&t, c.number).await.unwrap().unwrap();
        assert_eq!(
            detail.alerts.len(),
            c.alert_count as usize,
            "case {}",
            c.number
        );
        if c.status == Status::Closed {
            assert!(!c.accepts_alerts);
        }
        for a in detail.alerts {
            assert!(linked.insert(a.id));
        }
    }
    assert_eq!(linked.len(), 20 * 31, "every alert on exactly one case");
    // Every user's first case is closed; the alerts after its close went to a follow-up
    // case that links back to it.
    for number in 1..=20 {
        let c = cases.iter().find(|c| c.number == number).unwrap();
        assert_eq!(c.status, Status::Closed);
    }
    for c in cases.iter().filter(|c| c.number > 20) {
        let prev = c.previous_case.expect("a follow-up case links back");
        assert!(prev <= 20 || cases.iter().any(|p| p.number == prev));
    }
}
