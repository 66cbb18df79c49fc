//! The service path against the JetStream wall, in one run on one machine (`benches/pipeline.sh`):
//!
//! 1. the wall: publish and batched-pull consume of the same events, one per message;
//! 2. throughput, both routes: N raw events stored in `RAW`, then the engine on `RAW`, or
//!    `vigil normalize` and the engine on `NORMALIZED`, started together; events/s in steady
//!    state (the middle 80% of the messages the engine's source handed over, from its
//!    `/metrics`) and from the start until the engine counted all N. Steps 1 and 2 run in
//!    rounds (`--rounds`), each ratio against its own round's wall, and medians are reported;
//! 3. latency: both running, events published live at a fixed rate with `@timestamp` = publish
//!    time and a brute force every 100 events, then background traffic alone for the lateness
//!    and a second (so alerts are released by event time, as in steady state, not by idleness);
//!    for each alert, arrival on `alerts.{tenant}` minus the triggering event's time, as
//!    p50 / p99 / max, per rule, and the same for the normalize stage alone.
//!
//! Prints a Markdown table; ratios within the run are what mean anything on a noisy VM.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use clap::Parser;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use vigil_bus::Subject;
use vigil_model::TenantId;

#[derive(Parser, Debug)]
#[command(
    about = "RAW -> alerts throughput and publish -> alert latency beside the JetStream wall"
)]
struct Args {
    /// The `vigil` binary.
    #[arg(long, default_value = "target/release/vigil")]
    vigil: PathBuf,
    /// The rules to run.
    #[arg(long, default_value = "rules")]
    rules: PathBuf,
    /// Where configs, state and logs go.
    #[arg(long, default_value = "var/bench/pipeline")]
    dir: PathBuf,
    /// NATS URL (default: the dev services' VIGIL_NATS_URL).
    #[arg(long)]
    nats: Option<String>,
    /// Events for the wall and the throughput run.
    #[arg(long, default_value_t = 300_000)]
    events: usize,
    /// Rounds of (wall, one hop, two hops); medians are reported.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Engine worker threads.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Live rate of the latency run, events/s.
    #[arg(long, default_value_t = 10_000)]
    rate: usize,
    /// Length of the latency run.
    #[arg(long, default_value_t = 15)]
    seconds: u64,
    /// The engine source's `max_ack_pending` (default: the engine's).
    #[arg(long)]
    max_ack_pending: Option<i64>,
    /// The engine source's `checkpoint_interval` (default: the engine's).
    #[arg(long)]
    checkpoint_interval: Option<String>,
    /// `nats-server`'s pid file, to report its CPU time per event (skipped when absent).
    #[arg(long, default_value = "var/nats/nats.pid")]
    nats_pid_file: Option<PathBuf>,
    /// Allowed lateness in the latency run.
    #[arg(long, default_value = "2s")]
    lateness: String,
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The two ways from `RAW` to alerts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    /// `vigil normalize` (RAW → NORMALIZED), then the engine on `NORMALIZED`.
    TwoHops,
    /// The engine on `RAW`, normalizing on its workers.
    OneHop,
}

impl Route {
    fn label(self) -> &'static str {
        match self {
            Route::TwoHops => "RAW → vigil normalize → NORMALIZED → engine",
            Route::OneHop => "RAW → engine normalizing on its workers",
        }
    }
}

/// Starts the engine (`vigil run --config`) for `tenant`, and for [`Route::TwoHops`] `vigil
/// normalize` before it.
fn start(
    args: &Args,
    url: &str,
    tenant: &str,
    lateness: &str,
    tag: &str,
    route: Route,
) -> Result<(Option<Proc>, Proc, u16)> {
    let dir = args.dir.join(tag);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let port = free_port()?;
    let rules = std::fs::canonicalize(&args.rules)?;
    std::fs::write(
        dir.join("pipeline.toml"),
        format!(
            r#"rules = ["{rules}"]
[nats]
url = "{url}"
[engine]
workers = {workers}
lateness = "{lateness}"
state_dir = "state"
metrics_listen = "127.0.0.1:{port}"
[source]
kind = "jetstream"
stream = "{stream}"
consumer = "{tag}"
tenants = ["{tenant}"]
{tuning}[sinks]
alerts = ["jetstream"]
rejects = ["jetstream"]
"#,
            rules = rules.display(),
            workers = args.workers,
            tuning = args
                .max_ack_pending
                .map(|n| format!("max_ack_pending = {n}\n"))
                .into_iter()
                .chain(
                    args.checkpoint_interval
                        .as_ref()
                        .map(|d| format!("checkpoint_interval = \"{d}\"\n"))
                )
                .collect::<String>(),
            stream = match route {
                Route::TwoHops => "NORMALIZED",
                Route::OneHop => "RAW",
            },
        ),
    )?;
    let log = |name: &str| std::fs::File::create(dir.join(name));
    let normalizer = match route {
        Route::OneHop => None,
        Route::TwoHops => Some(Proc(
            Command::new(&args.vigil)
                .args([
                    "normalize",
                    "--nats",
                    url,
                    "--consumer",
                    tag,
                    "--tenant",
                    tenant,
                ])
                .stderr(log("normalize.log")?)
                .spawn()
                .context("start vigil normalize")?,
        )),
    };
    let engine = Proc(
        Command::new(&args.vigil)
            .args(["run", "--config"])
            .arg(dir.join("pipeline.toml"))
            .stdout(Stdio::null())
            .stderr(log("engine.log")?)
            .spawn()
            .context("start vigil run")?,
    );
    Ok((normalizer, engine, port))
}

/// The engine's `/metrics` value of `metric`, summed over its label sets (0 without samples);
/// `None` while the endpoint does not answer.
fn metric(port: u16, metric: &str) -> Option<f64> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    if !text.starts_with("HTTP/1.1 200") {
        return None;
    }
    let mut total = 0.0;
    for line in text.lines() {
        if line.starts_with(metric) && !line.starts_with('#') {
            let v: f64 = line.rsplit(' ').next()?.parse().ok()?;
            total += v;
        }
    }
    Some(total)
}

fn raw(t: &TenantId, i: usize, payload: String) -> (String, String, Bytes) {
    (
        Subject::RawEvents.for_tenant(t),
        vigil_bus::msg_id(t, &format!("bench-{i}")),
        Bytes::from(payload),
    )
}

/// Publishes with at most 1,024 acks outstanding.
async fn publish(
    js: &async_nats::jetstream::Context,
    messages: Vec<(String, String, Bytes)>,
) -> Result<()> {
    let mut acks = FuturesUnordered::new();
    for (subject, id, payload) in messages {
        let p = async_nats::jetstream::message::PublishMessage::build()
            .payload(payload)
            .message_id(&id)
            .header("Vigil-Source-Type", "ecs");
        acks.push(js.send_publish(subject, p).await?.into_future());
        while acks.len() >= 1_024 {
            acks.next().await.context("ack")??;
        }
    }
    while let Some(a) = acks.next().await {
        a?;
    }
    Ok(())
}

/// CPU cost of normalizing the benchmark's events (as the engine does on a worker: normalize,
/// then serialize the canonical event), in µs per event.
fn normalize_alone(events: usize) -> Result<f64> {
    let tenant = TenantId::parse("bench")?;
    let payloads: Vec<String> = (0..events)
        .map(|i| vigil_bench::wall::event("bench", i))
        .collect();
    let options = vigil_normalize::Options::default();
    let mut out = Vec::with_capacity(1 << 20);
    let started = Instant::now();
    for p in &payloads {
        let raw = vigil_normalize::RawEvent {
            tenant: &tenant,
            source_type: vigil_normalize::SourceType::Ecs,
            payload: p.as_bytes(),
            event_id: None,
            ingested_at: vigil_model::time::now_millis(),
        };
        let n = vigil_normalize::normalize(&raw, &options).map_err(anyhow::Error::msg)?;
        out.clear();
        serde_json::to_writer(&mut out, &n.event)?;
    }
    Ok(started.elapsed().as_secs_f64() * 1e6 / events as f64)
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// One throughput run of a route.
struct Throughput {
    /// Events/s while the engine is busy: the middle 80% of the events (from the 10% to the
    /// 90% mark of the messages its source handed over), so neither start-up nor the drain of
    /// the last batches weighs on it. With the engine's input channels full (backpressure),
    /// hand-over is processing.
    steady: f64,
    /// Events/s from the processes' start until the engine's `/metrics` counted every event
    /// (its workers publish counts about once a second, so this is late by up to a second).
    cold: f64,
    alerts: f64,
    /// CPU time per event of the Vigil processes (engine, and normalizer for two hops) and of
    /// `nats-server`, µs, from the processes' start until every event was counted.
    cpu: (f64, Option<f64>),
}

/// CPU seconds (user + system) `pid` has used, from `/proc` (in clock ticks of 1/100 s, Linux's
/// `USER_HZ`).
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

async fn throughput(
    args: &Args,
    js: &async_nats::jetstream::Context,
    url: &str,
    route: Route,
    round: usize,
) -> Result<Throughput> {
    let tenant = format!("bench_t{}_{}_{round}", std::process::id(), route as u8);
    let t = TenantId::parse(&tenant)?;
    let messages = (0..args.events)
        .map(|i| raw(&t, i, vigil_bench::wall::event(&tenant, i)))
        .collect();
    publish(js, messages).await?;
    let nats_pid = args.nats_pid_file.as_ref().and_then(|f| {
        std::fs::read_to_string(f)
            .ok()
            .and_then(|p| p.trim().parse::<u32>().ok())
    });
    let nats_before = nats_pid.and_then(cpu_seconds);
    let started = Instant::now();
    let (normalizer, engine, port) = start(args, url, &tenant, "10s", &tenant, route)?;
    let deadline = started + Duration::from_secs(600);
    let (low, high) = (args.events / 10, args.events - args.events / 10);
    let (mut from, mut to) = (None, None);
    loop {
        let handed = metric(port, "vigil_source_messages_total").unwrap_or(0.0) as usize;
        let now = Instant::now();
        if from.is_none() && handed >= low {
            from = Some((now, handed));
        }
        if to.is_none() && handed >= high {
            to = Some((now, handed));
        }
        let done = metric(port, "vigil_engine_events_total").unwrap_or(0.0);
        if done as usize >= args.events {
            break;
        }
        if now > deadline {
            bail!(
                "the engine processed {done} of {} events in 10 minutes",
                args.events
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cold = args.events as f64 / started.elapsed().as_secs_f64();
    let per_event = |secs: f64| secs * 1e6 / args.events as f64;
    let vigil_cpu = [Some(&engine), normalizer.as_ref()]
        .into_iter()
        .flatten()
        .filter_map(|p| cpu_seconds(p.0.id()))
        .sum::<f64>();
    let nats_cpu = nats_pid
        .and_then(cpu_seconds)
        .zip(nats_before)
        .map(|(after, before)| per_event(after - before));
    let steady = match (from, to) {
        (Some((t0, n0)), Some((t1, n1))) if t1 > t0 => (n1 - n0) as f64 / (t1 - t0).as_secs_f64(),
        _ => bail!("the run was too short to sample: raise --events"),
    };
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let alerts = metric(port, "vigil_engine_alerts_total").unwrap_or(0.0);
    drop((normalizer, engine));
    clean_up(js, &tenant, &t).await?;
    Ok(Throughput {
        steady,
        cold,
        alerts,
        cpu: (per_event(vigil_cpu), nats_cpu),
    })
}

/// Deletes a finished run's durable consumers (named `tag`) and purges its tenant's messages,
/// so that every run meets the server in the same state: durable consumers and retained
/// messages of earlier runs would otherwise pile up in `nats-server`'s heap (1.5 GB after one
/// invocation) and its garbage collector's work.
async fn clean_up(js: &async_nats::jetstream::Context, tag: &str, t: &TenantId) -> Result<()> {
    for subject in [
        Subject::RawEvents,
        Subject::NormalizedEvents,
        Subject::Alerts,
    ] {
        let s = js.get_stream(subject.stream()).await?;
        if s.consumer_info(tag).await.is_ok() {
            s.delete_consumer(tag).await?;
        }
        s.purge().filter(subject.for_tenant(t)).await?;
    }
    Ok(())
}

/// One round: the wall, then each route.
struct Round {
    publish: f64,
    consume: f64,
    runs: Vec<Throughput>,
}

impl Round {
    fn wall(&self) -> f64 {
        self.publish.min(self.consume)
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Latencies by rule, and of the normalize stage.
async fn latency(
    args: &Args,
    js: &async_nats::jetstream::Context,
    url: &str,
    route: Route,
) -> Result<(BTreeMap<String, Vec<i64>>, BTreeMap<String, Vec<i64>>)> {
    let tenant = format!("bench_l{}_{}", std::process::id(), route as u8);
    let t = TenantId::parse(&tenant)?;
    let client = async_nats::connect(url).await?;
    let alerts = client.subscribe(Subject::Alerts.for_tenant(&t)).await?;
    let (normalizer, engine, port) = start(args, url, &tenant, &args.lateness, &tenant, route)?;
    while metric(port, "vigil_engine_events_total").is_none() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let normalized = client
        .subscribe(Subject::NormalizedEvents.for_tenant(&t))
        .await?;
    // Arrival minus event time: of each alert's triggering event (per rule), and of every
    // normalized event (the first stage), to tell where the time goes.
    let (alert_lat, alert_task) = collect(alerts, |v| {
        let rule = v["rule_id"].as_str()?.to_owned();
        Some((rule, v["window"]["end"].as_str()?.to_owned()))
    });
    let (norm_lat, norm_task) = collect(normalized, |v| {
        Some((
            "normalized".to_owned(),
            v["@timestamp"].as_str()?.to_owned(),
        ))
    });
    let tick = Duration::from_millis(50);
    let per_tick = (args.rate / 20).max(1);
    let lateness_ms = vigil_model::parse_duration(&args.lateness).map_err(anyhow::Error::msg)?;
    // Bursts for `seconds`, then background traffic alone for the lateness and a second more,
    // so that every burst's alert is released by event time (steady state), not by idleness.
    let burst_ticks = args.seconds * 20;
    let ticks = burst_ticks + (lateness_ms + 1_000) / 50;
    let started = Instant::now();
    let mut i = 0usize;
    for k in 0..ticks {
        let bursts = k < burst_ticks;
        let now = vigil_model::time::now_millis();
        let ts = vigil_model::time::format_rfc3339_millis(now);
        let batch = (0..per_tick)
            .map(|_| {
                let n = i;
                i += 1;
                // Every 100 events hold 10 failures of one user: one brute force each.
                let (user, outcome) = if bursts && n.is_multiple_of(10) {
                    (format!("victim{}", n / 100), "failure")
                } else {
                    (format!("user{}", n % 997), "success")
                };
                raw(
                    &t,
                    n,
                    format!(
                        r#"{{"@timestamp":"{ts}","event":{{"id":"lat-{n}","category":["authentication"],"outcome":"{outcome}"}},"user":{{"name":"{user}"}},"source":{{"ip":"10.9.{}.{}"}}}}"#,
                        n % 200,
                        n % 250
                    ),
                )
            })
            .collect();
        publish(js, batch).await?;
        let next = started + tick * (k as u32 + 1);
        tokio::time::sleep_until(next.into()).await;
    }
    tokio::time::sleep(Duration::from_millis(lateness_ms + 3_000)).await;
    alert_task.abort();
    norm_task.abort();
    drop(client);
    drop((normalizer, engine));
    clean_up(js, &tenant, &t).await?;
    let sorted = |l: &Latencies| {
        let mut m = l.lock().map(|s| s.clone()).unwrap_or_default();
        for v in m.values_mut() {
            v.sort_unstable();
        }
        m
    };
    Ok((sorted(&alert_lat), sorted(&norm_lat)))
}

/// Latencies (ms) by label.
type Latencies = std::sync::Arc<std::sync::Mutex<BTreeMap<String, Vec<i64>>>>;

/// Records arrival time minus the time `field` extracts (with its label), for every message
/// of `sub`.
fn collect(
    mut sub: async_nats::Subscriber,
    field: impl Fn(&serde_json::Value) -> Option<(String, String)> + Send + 'static,
) -> (Latencies, tokio::task::JoinHandle<()>) {
    let seen = Latencies::default();
    let into = std::sync::Arc::clone(&seen);
    let task = tokio::spawn(async move {
        while let Some(m) = sub.next().await {
            let now = vigil_model::time::now_millis();
            let v: serde_json::Value = serde_json::from_slice(&m.payload).unwrap_or_default();
            if let Some((label, t)) = field(&v)
                && let Some(t) = vigil_model::time::parse_rfc3339(&t)
                && let Ok(mut s) = into.lock()
            {
                s.entry(label).or_default().push(now - t);
            }
        }
    });
    (seen, task)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = Args::parse();
    let url = vigil_bench::nats_url(args.nats.as_deref())?;
    if !Path::new(&args.vigil).exists() {
        bail!(
            "{} not found: build it with cargo build --release -p vigil-cli",
            args.vigil.display()
        );
    }
    let js = vigil_bus::connect(&url, Duration::from_secs(5)).await?;
    vigil_bus::ensure_streams(&js, &vigil_bus::dev::small_streams()).await?;
    // Rounds of (wall, one hop, two hops) back to back: each ratio is against the wall of its
    // own round, and the medians are reported (the VM's speed drifts by 2x within minutes).
    let routes = [Route::OneHop, Route::TwoHops];
    let mut rounds = Vec::new();
    println!(
        "| round | publish, 1 event/message (the wall) | batched pull consume | {} | {} |",
        routes[0].label(),
        routes[1].label()
    );
    println!("| --- | ---: | ---: | ---: | ---: |");
    for round in 0..args.rounds.max(1) {
        let (publish, consume) = vigil_bench::wall::run(&js, args.events, 1_024, 1).await?;
        let mut r = Round {
            publish,
            consume,
            runs: Vec::new(),
        };
        for route in routes {
            r.runs
                .push(throughput(&args, &js, &url, route, round).await?);
        }
        let wall = r.wall();
        let cell = |r: &Throughput| {
            format!(
                "{:.0} ev/s (**{:.2}**); from start {:.0} ev/s ({:.2}); CPU µs/event: Vigil {:.1}, NATS {}",
                r.steady,
                r.steady / wall,
                r.cold,
                r.cold / wall,
                r.cpu.0,
                r.cpu.1.map_or("-".to_owned(), |c| format!("{c:.1}"))
            )
        };
        println!(
            "| {} | {publish:.0} ev/s | {consume:.0} ev/s | {} | {} |",
            round + 1,
            cell(&r.runs[0]),
            cell(&r.runs[1])
        );
        rounds.push(r);
    }
    println!();
    let med = |f: &dyn Fn(&Round) -> f64| median(rounds.iter().map(f).collect());
    let publish_eps = med(&|r| r.publish);
    let consume_eps = med(&|r| r.consume);
    let wall = med(&|r| r.wall());
    // The service path crosses JetStream twice (RAW, then NORMALIZED): the same work done
    // back to back, publish + consume + publish + consume.
    let two_hops = 1.0 / (2.0 / publish_eps + 2.0 / consume_eps);
    let normalize_us = normalize_alone(args.events)?;
    let expected = args.rate as u64 * args.seconds / 100;
    let n = rounds.len();
    println!(
        "| measure (median of {n} rounds; ratios against each round's own wall) | value | vs wall |"
    );
    println!("| --- | ---: | ---: |");
    println!("| JetStream publish, 1 event/message | {publish_eps:.0} events/s | |");
    println!("| JetStream batched pull consume | {consume_eps:.0} events/s | |");
    println!("| wall (the slower of the two) | {wall:.0} events/s | 1.00 |");
    println!(
        "| two hops back to back (publish, consume, publish, consume) | {two_hops:.0} events/s | {:.2} |",
        two_hops / wall
    );
    println!(
        "| `vigil_normalize::normalize` + serialization alone, one thread, in memory | {normalize_us:.2} µs/event ({:.0} events/s) | |",
        1e6 / normalize_us
    );
    for (i, route) in routes.iter().enumerate() {
        let alerts = med(&|r| r.runs[i].alerts);
        let steady = med(&|r| r.runs[i].steady);
        let ratio = med(&|r| r.runs[i].steady / r.wall());
        let cold = med(&|r| r.runs[i].cold);
        let cold_ratio = med(&|r| r.runs[i].cold / r.wall());
        println!(
            "| {} ({} workers), {} events, {alerts:.0} alerts: steady (10% to 90% of the events) | {steady:.0} events/s | **{ratio:.2}** |",
            route.label(),
            args.workers,
            args.events,
        );
        println!(
            "| the same from the processes' start to the last event counted | {cold:.0} events/s | {cold_ratio:.2} |"
        );
        let vigil_cpu = med(&|r| r.runs[i].cpu.0);
        let nats_cpu = match rounds.iter().all(|r| r.runs[i].cpu.1.is_some()) {
            true => format!(
                ", nats-server {:.1} µs",
                med(&|r| r.runs[i].cpu.1.unwrap_or(0.0))
            ),
            false => String::new(),
        };
        println!(
            "| CPU per event over that time: Vigil processes {vigil_cpu:.1} µs{nats_cpu} | | |"
        );
    }
    for route in [Route::OneHop, Route::TwoHops] {
        let (by_rule, stages) = latency(&args, &js, &url, route).await?;
        let mut lat: Vec<i64> = by_rule.values().flatten().copied().collect();
        lat.sort_unstable();
        println!(
            "| {}: publish → alert at {} events/s, lateness {}, {} alerts ({expected} brute forces sent) | p50 {} ms, p99 {} ms, max {} ms | |",
            route.label(),
            args.rate,
            args.lateness,
            lat.len(),
            percentile(&lat, 0.5),
            percentile(&lat, 0.99),
            lat.last().copied().unwrap_or(0)
        );
        for (label, l) in by_rule.iter().chain(&stages) {
            println!(
                "| of which {label}, {} | p50 {} ms, p99 {} ms, max {} ms | |",
                l.len(),
                percentile(l, 0.5),
                percentile(l, 0.99),
                l.last().copied().unwrap_or(0)
            );
        }
    }
    Ok(())
}
