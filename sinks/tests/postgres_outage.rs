//! The case store sink through an outage of Postgres: the postmaster is killed with SIGKILL
//! while alerts flow and started again by `scripts/services.sh` 10 s later. Its own test
//! binary, so that no other test meets the outage.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use common::{alert, case_store, pg_sink_with, rt, unique_tenant, write_through_an_outage};
use vigil_cases::CaseFilter;

#[test]
fn an_outage_blocks_the_writer_and_loses_nothing() {
    let tenant = unique_tenant("pgout");
    let t0 = 1_796_032_800_000i64;
    let sink = Arc::new(pg_sink_with(
        toml::from_str("by = []\nmax_alerts = 1000").unwrap(),
        |c| {
            c.batch_alerts = 50;
            c.max_buffered = 200;
            c.max_backoff = Duration::from_secs(1);
        },
    ));
    let alerts: Vec<_> = (0..3_000u64)
        .map(|i| alert(&tenant, i, t0 + i as i64))
        .collect();
    let during = Arc::clone(&sink);
    write_through_an_outage(sink.clone(), &alerts, "VIGIL_PG_PIDFILE", move || {
        during.stats().retries > 0
    });
    let stats = sink.stats();
    // A transaction whose commit the kill cut off may have committed unseen (its retry then
    // meets duplicates), so the sink's count is at most the total; the database is the
    // exact check below.
    assert!(stats.recorded.stored <= alerts.len() as u64, "{stats:?}");
    assert_eq!(stats.dead_lettered, 0);
    let store = case_store();
    let (cases, linked) = rt().block_on(async {
        let cases = store.cases(&tenant, &CaseFilter::default()).await.unwrap();
        let mut linked = BTreeSet::new();
        for c in &cases {
            for a in store.case(&tenant, c.number).await.unwrap().unwrap().alerts {
                assert!(linked.insert(a.id));
            }
        }
        (cases, linked)
    });
    // Every alert stored and linked exactly once.
    assert_eq!(cases.iter().map(|c| c.alert_count).sum::<i32>(), 3_000);
    assert_eq!(cases.len(), 3);
    let want: BTreeSet<String> = alerts.iter().map(|a| a.id.clone()).collect();
    assert_eq!(linked, want);
}
