//! Alert sink throughput on this machine (issue 5): alerts/s into OpenSearch (`alerts-{tenant}`,
//! bulk `create`) and through alert → case grouping into Postgres, each first as new alerts
//! and then as a replay of the same alerts (every one a duplicate). Sinks are driven as the
//! engine drives them: `write` from a worker thread, `flush` at the end. Run against the dev
//! services (`make services-up`):
//!
//! ```sh
//! cargo run --release -p vigil-bench --bin vigil-sinks -- --alerts 50000
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use vigil_engine::AlertSink;
use vigil_model::{Alert, TenantId};
use vigil_sinks::{OpenSearchAlerts, OpenSearchConfig, PostgresCases, PostgresConfig};

#[derive(Parser, Debug)]
#[command(about = "Alerts/s into OpenSearch and through case grouping into Postgres")]
struct Args {
    /// Alerts per run.
    #[arg(long, default_value_t = 50_000)]
    alerts: usize,
    /// Tenants the alerts are spread over.
    #[arg(long, default_value_t = 2)]
    tenants: usize,
    /// Distinct users per tenant (one open case each).
    #[arg(long, default_value_t = 1_000)]
    users: usize,
    /// Alerts per bulk request / per transaction.
    #[arg(long, default_value_t = 500)]
    batch: usize,
    /// Alerts per `write` call (an engine worker's output between flushes).
    #[arg(long, default_value_t = 1_000)]
    chunk: usize,
}

fn alerts(args: &Args, tenants: &[TenantId]) -> Vec<Alert> {
    let t0 = 1_796_032_800_000i64;
    (0..args.alerts)
        .map(|i| {
            let tenant = &tenants[i % tenants.len()];
            let user = format!("user{}", (i / tenants.len()) % args.users);
            let mut a =
                vigil_cases::dev::alert(tenant, "brute_force_login", &user, t0 + i as i64 * 10);
            a.title = format!("Brute force against {user}");
            a.description =
                Some("At least 10 failed logins for one user within any 5 minutes.".into());
            a.tags.push("attack.credential_access".into());
            a.events = (0..10).map(|e| format!("evt-{i}-{e}")).collect();
            a
        })
        .collect()
}

/// Writes `alerts` from one thread in chunks and flushes; alerts/s.
fn drive(sink: &Arc<dyn AlertSink>, alerts: &[Alert], chunk: usize) -> Result<f64> {
    let start = Instant::now();
    for c in alerts.chunks(chunk.max(1)) {
        sink.write(c)?;
    }
    sink.flush()?;
    Ok(alerts.len() as f64 / start.elapsed().as_secs_f64())
}

fn main() -> Result<()> {
    let args = Args::parse();
    let setting = |k: &str| vigil_bus::dev::setting(k).map_err(anyhow::Error::msg);
    let nats = setting("VIGIL_NATS_URL")?;
    let pg = setting("VIGIL_PG_URL")?;
    let os = setting("VIGIL_OPENSEARCH_URL")?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(vigil_bus::dev::jetstream())
        .map_err(anyhow::Error::msg)?;
    rt.block_on(vigil_cases::migrate(&vigil_cases::dev::admin_url(&pg)))
        .context("migrating the case store")?;
    let tenants: Vec<TenantId> = (0..args.tenants)
        .map(|i| vigil_bus::dev::unique_tenant(&format!("bench{i}")))
        .collect();
    let alerts = alerts(&args, &tenants);

    let mut opensearch = OpenSearchConfig::new(&os);
    opensearch.replicas = 0;
    opensearch.batch_docs = args.batch;
    let opensearch: Arc<dyn AlertSink> = Arc::new(OpenSearchAlerts::connect(
        opensearch,
        &nats,
        Duration::from_secs(10),
    )?);
    let postgres = PostgresConfig {
        url: vigil_cases::dev::app_url(&pg),
        batch_alerts: args.batch,
        ..PostgresConfig::default()
    };
    let postgres: Arc<dyn AlertSink> = Arc::new(PostgresCases::connect(
        postgres,
        vigil_cases::Grouping::default(),
        &nats,
        Duration::from_secs(10),
    )?);

    println!(
        "{} alerts, {} tenants, {} users per tenant, batches of {}",
        args.alerts, args.tenants, args.users, args.batch
    );
    println!("| sink | new alerts/s | replayed alerts/s (all duplicates) |");
    println!("| --- | ---: | ---: |");
    for (name, sink) in [
        ("OpenSearch `alerts-{tenant}`", &opensearch),
        ("Postgres cases (grouping)", &postgres),
    ] {
        let new = drive(sink, &alerts, args.chunk)?;
        let replay = drive(sink, &alerts, args.chunk)?;
        println!("| {name} | {new:.0} | {replay:.0} |");
    }
    // The benchmark's indexes go; its case rows stay (tenant-scoped, and the case store keeps
    // no per-tenant delete).
    let client = vigil_sinks::opensearch::Client::new(&os, Duration::from_secs(30))
        .map_err(anyhow::Error::msg)?;
    for t in &tenants {
        let index = vigil_sinks::opensearch::alerts_index(t);
        rt.block_on(client.send(hyper::Method::DELETE, &format!("/{index}"), None))?;
    }
    Ok(())
}
