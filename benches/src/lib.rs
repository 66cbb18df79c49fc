//! Shared pieces of the benchmark binaries.

/// `given`, else the dev services' `VIGIL_NATS_URL`.
pub fn nats_url(given: Option<&str>) -> anyhow::Result<String> {
    match given {
        Some(u) => Ok(u.to_owned()),
        None => vigil_bus::dev::setting("VIGIL_NATS_URL").map_err(anyhow::Error::msg),
    }
}

pub mod wall {
    //! The JetStream wall: publish and consume throughput of events stored one per message or
    //! in batches per message, on a file-backed stream like the production ones.

    use std::time::{Duration, Instant};

    use anyhow::{Context, Result};
    use async_nats::jetstream::{self, consumer, stream};
    use bytes::Bytes;
    use futures::StreamExt;
    use futures::stream::FuturesUnordered;

    /// Event `i` of the benchmark stream for `tenant`: a canonical failed logon (~350 bytes),
    /// one per millisecond of event time, 5,000 users.
    pub fn event(tenant: &str, i: usize) -> String {
        format!(
            r#"{{"@timestamp":"2026-11-30T10:{:02}:{:02}.{:03}Z","tenant_id":"{tenant}","schema_version":1,"event":{{"id":"0190f6b2-7c1e-7a3b-9f00-{i:012x}","category":["authentication"],"action":"logon","outcome":"failure"}},"user":{{"name":"user{}"}},"source":{{"ip":"10.1.{}.{}","port":51234}},"host":{{"name":"dc-1"}},"message":"4625 logon failed"}}"#,
            (i / 60_000) % 60,
            (i / 1_000) % 60,
            i % 1_000,
            i % 5_000,
            i % 250,
            i % 200
        )
    }

    /// Publishes `events` events (`in_flight` acks outstanding at most), `per_message` per
    /// message, to a fresh stream, then consumes them with batched pulls; returns (publish
    /// events/s, consume events/s).
    pub async fn run(
        js: &jetstream::Context,
        events: usize,
        in_flight: usize,
        per_message: usize,
    ) -> Result<(f64, f64)> {
        let name = format!("BENCH_{}_{per_message}", std::process::id());
        let subject = format!("bench.{}.{per_message}", std::process::id());
        let _ = js.delete_stream(&name).await;
        let s = js
            .create_stream(stream::Config {
                name: name.clone(),
                subjects: vec![subject.clone()],
                storage: stream::StorageType::File,
                max_bytes: 1 << 30,
                ..Default::default()
            })
            .await
            .context("create stream")?;
        let payloads: Vec<Bytes> = (0..events)
            .collect::<Vec<_>>()
            .chunks(per_message)
            .map(|c| {
                let mut body = String::new();
                for &i in c {
                    body.push_str(&event("acme", i));
                    body.push('\n');
                }
                Bytes::from(body)
            })
            .collect();
        let started = Instant::now();
        let mut acks = FuturesUnordered::new();
        for (n, p) in payloads.iter().enumerate() {
            let publish = jetstream::message::PublishMessage::build()
                .payload(p.clone())
                .message_id(n.to_string());
            acks.push(
                js.send_publish(subject.clone(), publish)
                    .await?
                    .into_future(),
            );
            while acks.len() >= in_flight {
                acks.next().await.context("ack")??;
            }
        }
        while let Some(a) = acks.next().await {
            a?;
        }
        let publish_eps = events as f64 / started.elapsed().as_secs_f64();
        let c = s
            .create_consumer(consumer::pull::Config {
                ack_policy: consumer::AckPolicy::All,
                ..Default::default()
            })
            .await?;
        let started = Instant::now();
        let mut got = 0usize;
        while got < payloads.len() {
            let mut batch = c
                .fetch()
                .max_messages(1_000)
                .expires(Duration::from_secs(2))
                .messages()
                .await?;
            let mut last = None;
            while let Some(m) = batch.next().await {
                let m = m.map_err(|e| anyhow::anyhow!("{e}"))?;
                got += 1;
                last = Some(m);
            }
            if let Some(m) = last {
                m.ack().await.map_err(|e| anyhow::anyhow!("{e}"))?;
            }
        }
        let consume_eps = events as f64 / started.elapsed().as_secs_f64();
        js.delete_stream(&name).await?;
        Ok((publish_eps, consume_eps))
    }
}
