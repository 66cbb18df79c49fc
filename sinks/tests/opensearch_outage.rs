//! The OpenSearch alert sink through an outage of the dev node: the node is killed with SIGKILL
//! while alerts flow and started again by `scripts/services.sh` 10 s later. Its own test binary,
//! so that no other test meets the outage.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{alert, delete_index, documents, sink_with, unique_tenant, url};
use vigil_engine::AlertSink;
use vigil_sinks::opensearch::{Client, alerts_index};

fn node_pid() -> i32 {
    let file = vigil_bus::dev::setting("VIGIL_OPENSEARCH_PIDFILE").unwrap();
    std::fs::read_to_string(&file)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn services_up() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/services.sh");
    let out = std::process::Command::new("bash")
        .args([script, "up"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "services.sh up: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

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
    let written = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (sink, alerts, written) = (Arc::clone(&sink), alerts.clone(), Arc::clone(&written));
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
    // SIGKILL the node mid-stream.
    let pid = node_pid();
    assert!(
        std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
    let killed = Instant::now();
    std::thread::sleep(Duration::from_secs(10));
    // Backpressure: the writer is blocked with at most the queue (plus the batch in flight)
    // beyond what OpenSearch had acknowledged; nothing was dropped to make room.
    let stalled = written.load(Ordering::SeqCst);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        written.load(Ordering::SeqCst),
        stalled,
        "the writer kept going while OpenSearch was down"
    );
    assert!(stalled < alerts.len(), "the run ended before the outage");
    assert!(!writer.is_finished());
    let during = sink.stats();
    assert!(during.retries > 0, "{during:?}");

    services_up();
    eprintln!("OpenSearch back after {:?}", killed.elapsed());
    writer.join().unwrap();
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
