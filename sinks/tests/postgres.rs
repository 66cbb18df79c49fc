//! The case store sink against the dev Postgres: alerts Postgres cannot hold go to the
//! dead-letter subject with the SQLSTATE, and the rest of the batch is stored.

mod common;

use std::collections::BTreeSet;

use common::{alert, case_store, pg_sink_with, rt, unique_tenant};
use vigil_bus::Subject;
use vigil_cases::CaseFilter;
use vigil_engine::AlertSink;
use vigil_model::Alert;

#[test]
fn refused_alerts_go_to_the_dead_letter_subject_and_the_rest_is_stored() {
    let t = unique_tenant("pgdl");
    let t0 = 1_796_032_800_000i64;
    // NUL cannot be stored in Postgres text: every fifth alert is refused.
    let alerts: Vec<Alert> = (0..20u64)
        .map(|i| {
            let mut a = alert(&t, i, t0 + i as i64);
            if i % 5 == 0 {
                a.title = format!("Brute force against u{i}\u{0}");
            }
            a
        })
        .collect();
    let sink = pg_sink_with(toml::from_str("by = []").unwrap(), |c| c.batch_alerts = 500);
    sink.write(&alerts).unwrap();
    sink.flush().unwrap();
    let stats = sink.stats();
    assert_eq!(
        (stats.recorded.stored, stats.dead_lettered),
        (16, 4),
        "{stats:?}"
    );

    let store = case_store();
    let cases = rt()
        .block_on(store.cases(&t, &CaseFilter::default()))
        .unwrap();
    assert_eq!(cases.len(), 1);
    assert_eq!(cases[0].alert_count, 16);

    let dead = common::dead_letters(Subject::DlqAlerts, &t);
    let mut refused = BTreeSet::new();
    for m in &dead {
        let h = m.headers.as_ref().unwrap();
        assert_eq!(h.get("Vigil-Sink").unwrap().as_str(), "postgres");
        let reason = h.get("Vigil-Reject-Reason").unwrap().as_str();
        assert!(reason.starts_with("sqlstate_22"), "{reason}");
        assert!(!h.get("Vigil-Reject-Message").unwrap().as_str().is_empty());
        let doc: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
        refused.insert(doc["id"].as_str().unwrap().to_owned());
    }
    let want: BTreeSet<String> = alerts
        .iter()
        .filter(|a| a.title.contains('\0'))
        .map(|a| a.id.clone())
        .collect();
    assert_eq!(refused, want);

    // Written again (a replay): nothing new, nothing dead-lettered twice.
    sink.write(&alerts).unwrap();
    sink.flush().unwrap();
    let again = sink.stats();
    assert_eq!(again.recorded.stored, 16);
    assert_eq!(again.recorded.duplicates, 16);
    let dead_again = common::dead_letters(Subject::DlqAlerts, &t);
    assert_eq!(
        dead_again.len(),
        4,
        "the DLQ deduplicates a replayed refusal"
    );
}
