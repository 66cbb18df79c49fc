//! The OpenSearch alert sink through an outage of the dev node: the node is killed with SIGKILL
//! while alerts flow and started again by `scripts/services.sh` 10 s later. Its own test binary,
//! so that no other test meets the outage.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use common::{
    alert, delete_index, documents, sink_with, unique_tenant, url, write_through_an_outage,
};
use vigil_sinks::opensearch::{Client, alerts_index};

#[test]
fn an_outage_blocks_the_writer_and_loses_nothing() {
    let client = Client::new(&url(), Duration::from_secs(30)).unwrap();
    let tenant = unique_tenant("osout");
    let t0 = 1_796_032_800_000i64;
    let sink = Arc::new(sink_with(|c| {
        c.batch_docs = 50;
        c.max_buffered = 200;
        c.request_timeout = Duration::from_secs(2);
        c.max_backoff = Duration::from_secs(1);
    }));
    let alerts: Vec<_> = (0..3_000u64)
        .map(|i| alert(&tenant, i, t0 + i as i64))
        .collect();
    let during = Arc::clone(&sink);
    write_through_an_outage(
        sink.clone(),
        &alerts,
        "VIGIL_OPENSEARCH_PIDFILE",
        move || during.stats().retries > 0,
    );
    let stats = sink.stats();
    let docs = documents(&client, &alerts_index(&tenant));
    let want: BTreeSet<String> = alerts.iter().map(|a| a.id.clone()).collect();
    assert_eq!(
        docs.keys().cloned().collect::<BTreeSet<_>>(),
        want,
        "{stats:?}"
    );
    // Every alert stored once: created now, or created before the kill and met again as a
    // duplicate when its unanswered batch was retried.
    assert_eq!(
        stats.created as usize,
        alerts.len() - stats.duplicates as usize
    );
    assert_eq!(stats.dead_lettered, 0);
    delete_index(&client, &alerts_index(&tenant));
}
