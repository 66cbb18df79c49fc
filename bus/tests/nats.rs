//! Against the real NATS started by `scripts/services.sh` (URL from `VIGIL_NATS_URL` or
//! `var/services.env`): streams are created, left alone and migrated by code; publishes are
//! acknowledged and deduplicated by `Nats-Msg-Id`; tenants' subjects stay apart.

use std::time::Duration;

use async_nats::jetstream;
use vigil_bus::{Outgoing, Publisher, StreamChange, StreamsConfig, Subject, ensure_streams};
use vigil_model::TenantId;

async fn js() -> jetstream::Context {
    vigil_bus::connect(
        &vigil_bus::dev::setting("VIGIL_NATS_URL").unwrap(),
        Duration::from_secs(5),
    )
    .await
    .expect("NATS must be running: `make services-up`")
}

/// A tenant id unique to this test run, so runs against a long-lived server do not interfere.
fn tenant(name: &str) -> TenantId {
    vigil_bus::dev::unique_tenant(name)
}

fn test_config() -> StreamsConfig {
    vigil_bus::dev::small_streams()
}

// Stream tests share the four stream names, so they run one at a time.
static STREAMS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test]
async fn streams_are_created_kept_and_migrated() {
    let _guard = STREAMS.lock().await;
    let js = js().await;
    let config = test_config();
    let first = ensure_streams(&js, &config).await.unwrap();
    let names: Vec<&str> = first.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["RAW", "NORMALIZED", "ALERTS", "DLQ"]);
    // Running again changes nothing.
    let again = ensure_streams(&js, &config).await.unwrap();
    assert!(
        again.iter().all(|(_, c)| *c == StreamChange::Unchanged),
        "{again:?}"
    );
    // A changed limit is migrated in place.
    let mut changed = config.clone();
    changed.alerts.max_age = Duration::from_secs(86_400);
    changed.duplicate_window = Duration::from_secs(300);
    let migrated = ensure_streams(&js, &changed).await.unwrap();
    for (name, change) in &migrated {
        match name.as_str() {
            "ALERTS" => assert_eq!(
                *change,
                StreamChange::Updated(vec!["max_age", "duplicate_window"])
            ),
            _ => assert_eq!(*change, StreamChange::Updated(vec!["duplicate_window"])),
        }
    }
    let info = js.get_stream("ALERTS").await.unwrap().cached_info().clone();
    assert_eq!(info.config.max_age, Duration::from_secs(86_400));
    assert_eq!(info.config.storage, jetstream::stream::StorageType::File);
    assert_eq!(info.config.subjects, ["alerts.*"]);
    // And back, leaving the server as the defaults describe it.
    ensure_streams(&js, &config).await.unwrap();
    let dlq = js.get_stream("DLQ").await.unwrap().cached_info().clone();
    let mut subjects = dlq.config.subjects.clone();
    subjects.sort();
    assert_eq!(subjects, ["dlq.alerts.*", "dlq.events.*"]);
}

#[tokio::test]
async fn a_storage_change_is_refused_with_a_clear_error() {
    let _guard = STREAMS.lock().await;
    let js = js().await;
    ensure_streams(&js, &test_config()).await.unwrap();
    // Simulate a stream someone created by hand with memory storage.
    js.delete_stream("DLQ").await.unwrap();
    let mut by_hand = test_config().definitions().pop().unwrap();
    by_hand.storage = jetstream::stream::StorageType::Memory;
    js.create_stream(by_hand).await.unwrap();
    let e = ensure_streams(&js, &test_config())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("failed to migrate stream DLQ: storage is Memory"),
        "{e}"
    );
    js.delete_stream("DLQ").await.unwrap();
    let fixed = ensure_streams(&js, &test_config()).await.unwrap();
    assert!(
        fixed.contains(&("DLQ".to_owned(), StreamChange::Created)),
        "{fixed:?}"
    );
}

#[tokio::test]
async fn publishes_are_acknowledged_deduplicated_and_kept_per_tenant() {
    let js = {
        let _guard = STREAMS.lock().await;
        let js = js().await;
        ensure_streams(&js, &test_config()).await.unwrap();
        js
    };
    let (a, b) = (tenant("acme"), tenant("globex"));
    let publisher = Publisher::new(js.clone(), Duration::from_secs(5));
    let batch = |t: &TenantId, n: usize| -> Vec<Outgoing> {
        (0..n)
            .map(|i| Outgoing {
                subject: Subject::RawEvents.for_tenant(t),
                msg_id: format!("{t}-{i}"),
                payload: format!(r#"{{"n":{i}}}"#).into(),
                headers: vec![("Vigil-Source-Type", "ecs".to_owned())],
            })
            .collect()
    };
    let first = publisher.publish_all(batch(&a, 500)).await.unwrap();
    assert_eq!((first.stored, first.duplicates), (500, 0));
    // A client retry with the same ids stores nothing new.
    let retry = publisher.publish_all(batch(&a, 500)).await.unwrap();
    assert_eq!((retry.stored, retry.duplicates), (0, 500));
    publisher.publish_all(batch(&b, 7)).await.unwrap();

    // A consumer filtered on one tenant's subject sees exactly that tenant's messages.
    for (t, n) in [(&a, 500), (&b, 7)] {
        let msgs = vigil_bus::dev::read_subject(&js, "RAW", Subject::RawEvents.for_tenant(t))
            .await
            .unwrap();
        assert_eq!(msgs.len(), n, "{t}");
        for m in &msgs {
            assert_eq!(Subject::RawEvents.tenant_of(&m.subject), Some(t.clone()));
            let headers = m.headers.as_ref().unwrap();
            assert_eq!(
                headers.get("Vigil-Source-Type").map(|v| v.as_str()),
                Some("ecs")
            );
        }
    }
}

#[tokio::test]
async fn publishing_to_a_subject_without_a_stream_fails_instead_of_hanging() {
    let js = js().await;
    let publisher = Publisher::new(js, Duration::from_secs(2));
    let e = publisher
        .publish_all(vec![Outgoing {
            subject: "no.stream.here".into(),
            msg_id: "x".into(),
            payload: "{}".into(),
            headers: Vec::new(),
        }])
        .await
        .unwrap_err();
    assert_eq!((e.failed, e.total), (1, 1));
}
