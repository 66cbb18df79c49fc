//! The JetStream wall on this machine, for ADR 0004: publish and consume throughput of the same
//! events stored one per message or in batches of B per message (NDJSON), on a file-backed
//! stream like the production ones. Run by hand against the dev NATS:
//!
//! ```sh
//! cargo run --release -p vigil-bench --bin vigil-jetstream -- --events 200000 --batch 100
//! ```

use std::time::Duration;

use anyhow::Result;
use clap::Parser;

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

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = Args::parse();
    let url = vigil_bench::nats_url(args.nats.as_deref())?;
    let js = vigil_bus::connect(&url, Duration::from_secs(5)).await?;
    println!("| layout | publish events/s | consume events/s |");
    println!("| --- | ---: | ---: |");
    for per in [1, args.batch] {
        let (p, c) = vigil_bench::wall::run(&js, args.events, args.in_flight, per).await?;
        println!("| {per} event(s) per message | {p:.0} | {c:.0} |");
    }
    Ok(())
}
