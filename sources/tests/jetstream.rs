//! The JetStream source against the dev NATS, driven by a stand-in for the engine: messages not
//! acknowledged within `ack_wait` (no checkpoint committed) are redelivered by the server and
//! skipped by the source, and the acknowledgement follows the committed checkpoint.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vigil_bus::{Outgoing, Publisher, Subject};
use vigil_engine::{ChunkSink, EventSource};
use vigil_model::TenantId;
use vigil_sources::{JetStreamConfig, JetStreamSource};

/// Collects lines; commits the newest requested checkpoint only once `release` is set.
#[derive(Default)]
struct Engine {
    lines: Arc<Mutex<Vec<String>>>,
    requested: Option<u64>,
    release: Arc<AtomicBool>,
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
    fn checkpoint(&mut self, position: u64) -> bool {
        self.requested = Some(position);
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

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn unacknowledged_messages_come_back_and_are_skipped_and_acks_follow_checkpoints() {
    let url = vigil_bus::dev::setting("VIGIL_NATS_URL").unwrap();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let tenant = TenantId::parse(&format!(
        "src_{}_{}",
        std::process::id(),
        nanos % 1_000_000_000
    ))
    .unwrap();
    let consumer = format!("src_{}", std::process::id());
    rt().block_on(async {
        let js = vigil_bus::dev::jetstream().await.unwrap();
        let batch = (0..50)
            .map(|i| Outgoing {
                subject: Subject::NormalizedEvents.for_tenant(&tenant),
                msg_id: vigil_bus::msg_id(&tenant, &format!("e{i}")),
                payload: format!(r#"{{"event":{{"id":"e{i}"}}}}"#)
                    .into_bytes()
                    .into(),
                headers: Vec::new(),
            })
            .collect();
        Publisher::new(js, Duration::from_secs(5))
            .publish_all(batch)
            .await
            .unwrap();
    });

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
