//! The JetStream wall on this machine, for ADR 0004: publish and consume throughput of the same
//! events stored one per message or in batches of B per message (NDJSON), on a file-backed
//! stream like the production ones. Run by hand against the dev NATS:
//!
//! ```sh
//! cargo run --release -p vigil-bench --bin vigil-jetstream -- --events 200000 --batch 100
//! ```

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use async_nats::jetstream::{self, consumer, stream};
use bytes::Bytes;
use clap::Parser;
use futures::StreamExt;
use futures::stream::FuturesUnordered;

#[derive(Parser, Debug)]
#[command(about = "JetStream publish/consume throughput: one event per message vs batches")]
struct Args {
    /// NATS URL (default: the dev services' VIGIL_NATS_URL).
    #[arg(long)]
    nats: Option<String>,
    /// Events per run.
    #[arg(long, default_value_t = 200_000)]
    events: usize,
    /// Events per message in the batched run.
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Publishes awaiting an ack at once.
    #[arg(long, default_value_t = 1_024)]
    in_flight: usize,
}

fn event(i: usize) -> String {
    format!(
        r#"{{"@timestamp":"2026-11-30T10:{:02}:{:02}.{:03}Z","tenant_id":"acme","schema_version":1,"event":{{"id":"0190f6b2-7c1e-7a3b-9f00-{i:012x}","category":["authentication"],"action":"logon","outcome":"failure"}},"user":{{"name":"user{}"}},"source":{{"ip":"10.1.{}.{}","port":51234}},"host":{{"name":"dc-1"}},"message":"4625 logon failed"}}"#,
        (i / 60_000) % 60,
        (i / 1_000) % 60,
        i % 1_000,
        i % 5_000,
        i % 250,
        i % 200
    )
}

async fn run(js: &jetstream::Context, args: &Args, per_message: usize) -> Result<(f64, f64)> {
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
    let payloads: Vec<Bytes> = (0..args.events)
        .collect::<Vec<_>>()
        .chunks(per_message)
        .map(|c| {
            let mut body = String::new();
            for &i in c {
                body.push_str(&event(i));
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
        while acks.len() >= args.in_flight {
            acks.next().await.context("ack")??;
        }
    }
    while let Some(a) = acks.next().await {
        a?;
    }
    let publish_eps = args.events as f64 / started.elapsed().as_secs_f64();
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
    let consume_eps = args.events as f64 / started.elapsed().as_secs_f64();
    js.delete_stream(&name).await?;
    Ok((publish_eps, consume_eps))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = Args::parse();
    let url = match &args.nats {
        Some(u) => u.clone(),
        None => vigil_bus::dev::setting("VIGIL_NATS_URL").map_err(anyhow::Error::msg)?,
    };
    let js = vigil_bus::connect(&url, Duration::from_secs(5)).await?;
    println!("| layout | publish events/s | consume events/s |");
    println!("| --- | ---: | ---: |");
    for per in [1, args.batch] {
        let (p, c) = run(&js, &args, per).await?;
        println!("| {per} event(s) per message | {p:.0} | {c:.0} |");
    }
    Ok(())
}
