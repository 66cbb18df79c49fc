//! The JetStream source against the dev NATS, driven by a stand-in for the engine: messages not
//! acknowledged within `ack_wait` (no checkpoint committed) are redelivered by the server and
//! skipped by the source, and the acknowledgement follows the committed checkpoint.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vigil_bus::{Outgoing, Publisher, Subject};
use vigil_engine::{ChunkSink, EventSource, Record, RejectReason};
use vigil_model::TenantId;
use vigil_sources::{Input, JetStreamConfig, JetStreamSource};

/// Collects lines and records; commits the newest requested checkpoint only once `release`
/// is set.
#[derive(Default)]
struct Engine {
    lines: Arc<Mutex<Vec<String>>>,
    records: Arc<Mutex<Vec<Record>>>,
    requested: Option<u64>,
    release: Arc<AtomicBool>,
    /// Checkpoints asked for while none could commit.
    asked_unreleased: Arc<std::sync::atomic::AtomicUsize>,
}

impl ChunkSink for Engine {
    fn send(&mut self, data: Vec<u8>, _offset: u64, _wall_ms: Option<i64>) -> bool {
        let text = String::from_utf8(data).unwrap();
        self.lines
            .lock()
            .unwrap()
            .extend(text.lines().map(str::to_owned));
        true
    }
    fn send_records(&mut self, records: Vec<Record>, _wall_ms: Option<i64>) -> bool {
        self.records.lock().unwrap().extend(records);
        true
    }
    fn checkpoint(&mut self, position: u64) -> bool {
        self.requested = Some(position);
        if !self.release.load(Ordering::SeqCst) {
            self.asked_unreleased.fetch_add(1, Ordering::SeqCst);
        }
        true
    }
    fn committed(&self) -> Option<u64> {
        if self.release.load(Ordering::SeqCst) {
            self.requested
        } else {
            None
        }
    }
}

/// Publishes `batch` to the dev NATS (with the dev stream limits), every message acknowledged.
fn publish(batch: Vec<Outgoing>) {
    rt().block_on(async {
        let js = vigil_bus::dev::jetstream().await.unwrap();
        Publisher::new(js, Duration::from_secs(5))
            .publish_all(batch)
            .await
            .unwrap();
    });
}

/// `n` canonical events of `tenant` in NORMALIZED, each only an id: `{prefix}0`, `{prefix}1`, ...
fn id_events(tenant: &TenantId, prefix: &str, n: usize) -> Vec<Outgoing> {
    (0..n)
        .map(|i| Outgoing {
            subject: Subject::NormalizedEvents.for_tenant(tenant),
            msg_id: vigil_bus::msg_id(tenant, &format!("{prefix}{i}")),
            payload: format!(r#"{{"event":{{"id":"{prefix}{i}"}}}}"#)
                .into_bytes()
                .into(),
            headers: Vec::new(),
        })
        .collect()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn raw_messages_become_records_that_the_source_normalizer_turns_into_events() {
    let url = vigil_bus::dev::setting("VIGIL_NATS_URL").unwrap();
    let (a, b) = (
        vigil_bus::dev::unique_tenant("rawa"),
        vigil_bus::dev::unique_tenant("rawb"),
    );
    let ecs = r#"{"@timestamp":"2026-11-30T10:00:00Z","event":{"outcome":"failure"},"user":{"name":"ACME\\Alice"}}"#;
    let sshd = "Nov 30 10:00:01 bastion sshd[4242]: Failed password for invalid user admin from 198.51.100.7 port 50022 ssh2";
    let message =
        |t: &TenantId, id: &str, payload: &str, headers: Vec<(&'static str, String)>| Outgoing {
            subject: Subject::RawEvents.for_tenant(t),
            msg_id: vigil_bus::msg_id(t, id),
            payload: payload.as_bytes().to_vec().into(),
            headers,
        };
    publish(vec![
        message(
            &a,
            "a1",
            ecs,
            vec![
                ("Vigil-Source-Type", "ecs".into()),
                ("Vigil-Ingested-At", "2026-11-30T10:00:05.000Z".into()),
                ("Vigil-Event-Id", "ingest-a1".into()),
            ],
        ),
        message(
            &b,
            "b1",
            sshd,
            vec![
                ("Vigil-Source-Type", "sshd".into()),
                ("Vigil-Ingested-At", "2026-11-30T10:00:05.000Z".into()),
                ("Vigil-Event-Id", "ingest-b1".into()),
            ],
        ),
        message(&a, "a2", "not json", Vec::new()),
    ]);
    let mut config = JetStreamConfig::new(url.clone());
    config.input = Input::Raw(vigil_normalize::Options::default());
    config.consumer = format!("raw_{}", std::process::id());
    config.tenants = vec![a.clone(), b.clone()];
    config.checkpoint_interval = Duration::from_millis(250);
    config.stop_when_idle = Some(Duration::from_millis(500));
    config.validate().unwrap();
    let source = JetStreamSource::new(config.clone());
    let normalizer = source
        .normalizer()
        .expect("a RAW source brings its normalizer");
    let mut engine = Engine::default();
    engine.release.store(true, Ordering::SeqCst);
    let records = Arc::clone(&engine.records);
    Box::new(source).run(&mut engine).unwrap();

    let records = records.lock().unwrap().clone();
    assert_eq!(records.len(), 3, "{records:?}");
    assert!(engine.lines.lock().unwrap().is_empty());
    let (r1, r2, r3) = (&records[0], &records[1], &records[2]);
    assert!(r1.position < r2.position && r2.position < r3.position);
    // The tenant comes from the subject, the rest from ingest's headers.
    assert_eq!(
        (&r1.tenant, r1.source_type.as_str(), r1.event_id.as_deref()),
        (&a, "ecs", Some("ingest-a1"))
    );
    assert_eq!(r1.ingested_at, 1_796_032_805_000);
    assert_eq!(&r1.payload[..], ecs.as_bytes());
    assert_eq!((&r2.tenant, r2.source_type.as_str()), (&b, "sshd"));
    // Without headers: ECS, ingested now, no ingest id.
    assert_eq!(
        (&r3.tenant, r3.source_type.as_str(), &r3.event_id),
        (&a, "ecs", &None)
    );

    let mut out = Vec::new();
    normalizer.normalize(r1, &mut out).unwrap();
    let event: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(event["tenant_id"], a.as_str());
    assert_eq!(event["event"]["id"], "ingest-a1");
    assert_eq!(event["user"]["name"], "Alice");
    assert_eq!(event["user"]["domain"], "ACME");
    assert!(!out.contains(&b'\n'));
    out.clear();
    normalizer.normalize(r2, &mut out).unwrap();
    let event: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(event["tenant_id"], b.as_str());
    assert_eq!(event["source"]["ip"], "198.51.100.7");
    out.clear();
    let (reason, detail) = normalizer.normalize(r3, &mut out).unwrap_err();
    assert_eq!(reason, RejectReason::InvalidJson, "{detail}");

    rt().block_on(async {
        let js = vigil_bus::connect(&url, Duration::from_secs(5))
            .await
            .unwrap();
        let stream = js.get_stream("RAW").await.unwrap();
        let info = stream.consumer_info(&config.consumer).await.unwrap();
        assert_eq!(
            info.ack_floor.stream_sequence, r3.position,
            "acknowledged through the last checkpoint"
        );
        stream.delete_consumer(&config.consumer).await.unwrap();
    });
}

#[test]
fn unacknowledged_messages_come_back_and_are_skipped_and_acks_follow_checkpoints() {
    let url = vigil_bus::dev::setting("VIGIL_NATS_URL").unwrap();
    let tenant = vigil_bus::dev::unique_tenant("src");
    let consumer = format!("src_{}", std::process::id());
    publish(id_events(&tenant, "e", 50));

    let mut config = JetStreamConfig::new(url.clone());
    config.consumer = consumer.clone();
    config.tenants = vec![tenant.clone()];
    config.checkpoint_interval = Duration::from_millis(250);
    config.ack_wait = Duration::from_secs(1);
    config.max_ack_pending = 10_000;
    config.validate().unwrap();
    let source = JetStreamSource::new(config);
    let stats = source.stats_handle();
    let stop = source.stop_handle();
    let mut engine = Engine::default();
    let lines = Arc::clone(&engine.lines);
    let release = Arc::clone(&engine.release);
    let run = std::thread::spawn(move || Box::new(source).run(&mut engine));

    // Nothing is committed, so nothing is acknowledged: after ack_wait the server delivers the
    // 50 messages again, and the source skips them.
    let deadline = Instant::now() + Duration::from_secs(20);
    while stats.lock().unwrap().redelivered < 50 {
        assert!(
            Instant::now() < deadline,
            "no redelivery: {:?}",
            stats.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(stats.lock().unwrap().acked, 0);
    release.store(true, Ordering::SeqCst);
    stop.store(true, Ordering::SeqCst);
    run.join().unwrap().unwrap();

    let lines = lines.lock().unwrap().clone();
    let want: Vec<String> = (0..50)
        .map(|i| format!(r#"{{"event":{{"id":"e{i}"}}}}"#))
        .collect();
    assert_eq!(lines, want, "every message handed over once, in order");
    let st = stats.lock().unwrap().clone();
    assert_eq!(st.delivered, 50);
    assert_eq!(
        st.acked, st.position,
        "the ack follows the committed checkpoint"
    );
    let floor = rt().block_on(async {
        let js = vigil_bus::connect(&url, Duration::from_secs(5))
            .await
            .unwrap();
        let stream = js.get_stream("NORMALIZED").await.unwrap();
        let info = stream.consumer_info(&consumer).await.unwrap();
        let floor = info.ack_floor.stream_sequence;
        stream.delete_consumer(&consumer).await.unwrap();
        floor
    });
    assert_eq!(
        floor, st.position,
        "the server's ack floor is the checkpoint"
    );
}

#[test]
fn early_checkpoints_come_once_per_half_of_max_ack_pending() {
    // The dev stream holds other tests' messages, so this tenant's first sequence is far from
    // 0: the ack limit counts delivered messages, not the sequence span.
    let url = vigil_bus::dev::setting("VIGIL_NATS_URL").unwrap();
    let tenant = vigil_bus::dev::unique_tenant("cadence");
    publish(id_events(&tenant, "c", 3_000));
    let mut config = JetStreamConfig::new(url);
    config.consumer = format!("cadence_{}", std::process::id());
    config.tenants = vec![tenant];
    config.batch = 100;
    config.max_ack_pending = 2_000;
    config.checkpoint_interval = Duration::from_secs(60);
    config.ack_wait = Duration::from_secs(240);
    config.validate().unwrap();
    let source = JetStreamSource::new(config.clone());
    let (stats, stop) = (source.stats_handle(), source.stop_handle());
    let engine = Engine::default();
    let (release, asked) = (
        Arc::clone(&engine.release),
        Arc::clone(&engine.asked_unreleased),
    );
    let run = std::thread::spawn(move || {
        let mut engine = engine;
        Box::new(source).run(&mut engine)
    });
    // No checkpoint commits: the server stops delivering at max_ack_pending (2,000).
    let deadline = Instant::now() + Duration::from_secs(20);
    while stats.lock().unwrap().delivered < 2_000 {
        assert!(Instant::now() < deadline, "{:?}", stats.lock().unwrap());
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    // One early checkpoint per 1,000 (half the limit) delivered — not one per fetch while
    // the first waits to commit, and not one per fetch because sequences start high.
    assert_eq!(
        asked.load(Ordering::SeqCst),
        2,
        "{:?}",
        stats.lock().unwrap()
    );
    assert_eq!(stats.lock().unwrap().delivered, 2_000);
    // Once checkpoints commit, the acks let the rest through.
    release.store(true, Ordering::SeqCst);
    while stats.lock().unwrap().delivered < 3_000 {
        assert!(Instant::now() < deadline, "{:?}", stats.lock().unwrap());
        std::thread::sleep(Duration::from_millis(20));
    }
    release.store(true, Ordering::SeqCst);
    stop.store(true, Ordering::SeqCst);
    run.join().unwrap().unwrap();
    rt().block_on(async {
        let js = vigil_bus::dev::jetstream().await.unwrap();
        let s = js.get_stream("NORMALIZED").await.unwrap();
        s.delete_consumer(&config.consumer).await.unwrap();
    });
}
