//! `vigil`: run detection rules over events, and check rules.
//!
//! Embedded mode wires the same decode stage and the same dataflow as the service path to a file
//! or stdin source and JSON-lines sinks, in one process with no services.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use vigil_engine::{
    AlertSink, EngineConfig, EventSource, RejectReason, RejectSink, RunStats, Sinks,
};
use vigil_model::TenantId;
use vigil_sinks::{JsonlAlerts, JsonlRejects};
use vigil_sources::{FileSource, StdinSource};

mod cases;
mod load;
mod metrics;
mod pipeline;

#[derive(Parser, Debug)]
#[command(
    name = "vigil",
    version,
    about = "Vigil: streaming detection rules over security events"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run rules over JSON-lines events and write alerts as JSON lines.
    Run(RunArgs),
    /// Check rule files: print every error, exit 1 if any rule is invalid.
    Check(CheckArgs),
    /// Print the compiled plan of rules: filter, key, window or steps, operators, state bounds.
    Explain(ExplainArgs),
    /// Lay out rule files in the canonical style (only whitespace changes; comments stay);
    /// `--check` changes nothing and exits 1 if a file is not formatted.
    Fmt(FmtArgs),
    /// Run the test cases beside rule files (`NAME.tests/*.json` next to `NAME.rule`); exit 1
    /// if any fails.
    Test(CheckArgs),
    /// Serve the ingest API: authenticated events over HTTP into NATS JetStream.
    Ingest(IngestArgs),
    /// Normalize raw events: RAW → NORMALIZED (canonical events) and DLQ (rejects, with reasons).
    Normalize(NormalizeArgs),
    /// Index normalized events into OpenSearch: NORMALIZED → `events-{tenant}`.
    IndexEvents(IndexEventsArgs),
    /// Create or upgrade the case store schema in Postgres (as the database owner).
    Migrate(MigrateArgs),
    /// Mint an HS256 token for local development and tests (never for production).
    DevToken(DevTokenArgs),
}

#[derive(Args, Debug)]
struct MigrateArgs {
    /// The database, as a role that may create schemas and roles; created if missing.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5433/vigil")]
    database_url: String,
}

#[derive(Args, Debug)]
struct IndexEventsArgs {
    /// NATS server URL.
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    nats: String,
    /// OpenSearch URL.
    #[arg(long, default_value = "http://127.0.0.1:9200")]
    opensearch: String,
    /// Replicas of each `events-{tenant}` index (0 on a single node).
    #[arg(long, default_value_t = 1)]
    replicas: u32,
    /// Durable consumer name on NORMALIZED; indexers sharing a name share the work.
    #[arg(long, default_value = "events-indexer")]
    consumer: String,
    /// Only these tenants (repeatable; default every tenant).
    #[arg(long = "tenant", value_name = "ID")]
    tenants: Vec<TenantId>,
    /// Messages per fetch and per bulk request.
    #[arg(long, default_value_t = 1_000)]
    batch: usize,
    /// Stop when NORMALIZED has nothing left for this consumer, instead of waiting for more.
    #[arg(long)]
    until_idle: bool,
}

#[derive(Args, Debug)]
struct NormalizeArgs {
    /// NATS server URL.
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    nats: String,
    /// Durable consumer name on RAW; normalizers sharing a name share the work.
    #[arg(long, default_value = "normalizer")]
    consumer: String,
    /// Only these tenants (repeatable; default every tenant).
    #[arg(long = "tenant", value_name = "ID")]
    tenants: Vec<TenantId>,
    /// Messages per fetch.
    #[arg(long, default_value_t = 1_000)]
    batch: usize,
    /// Events more than this far ahead of their ingest time are rejected (future_timestamp).
    #[arg(long, default_value = "5m", value_parser = parse_duration, value_name = "DUR")]
    max_clock_skew: u64,
    /// Stop when RAW has nothing left for this consumer, instead of waiting for more.
    #[arg(long)]
    until_idle: bool,
}

#[derive(Args, Debug)]
struct DevTokenArgs {
    /// Environment variable holding the shared secret (as in the server's `secret_env`).
    #[arg(long, default_value = "VIGIL_DEV_JWT_SECRET")]
    secret_env: String,
    /// The tenant the token is for.
    #[arg(long)]
    tenant: TenantId,
    /// platform_admin, tenant_admin, soc_analyst or auditor.
    #[arg(long, default_value = "tenant_admin")]
    role: String,
    /// `iss` claim.
    #[arg(long, default_value = "https://idp.vigil.local")]
    issuer: String,
    /// `aud` claim.
    #[arg(long, default_value = "vigil")]
    audience: String,
    /// Lifetime.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    ttl: u64,
}

#[derive(Args, Debug)]
struct IngestArgs {
    /// The server's TOML configuration (see examples/api.toml).
    #[arg(long, short = 'c', value_name = "FILE")]
    config: PathBuf,
    /// Check the configuration and exit, without starting or connecting to anything.
    #[arg(long)]
    check: bool,
}

#[derive(Args, Debug)]
struct RunArgs {
    /// A pipeline file (source, rules, engine, sinks; see examples/pipeline.toml) instead of
    /// the flags below.
    #[arg(long, short = 'c', value_name = "FILE", conflicts_with_all = ["rules", "input", "output", "workers", "lateness", "tenant", "rejects", "max_keys_per_tenant", "max_alerts_per_minute"])]
    config: Option<PathBuf>,
    /// Rule files, or directories searched recursively for `*.rule` files.
    #[arg(long = "rules", short = 'r', required_unless_present = "config", num_args = 1.., value_name = "PATH")]
    rules: Vec<PathBuf>,
    /// Events, one JSON object per line; `-` reads stdin (live: idle tenants advance with the
    /// wall clock).
    #[arg(
        long,
        short = 'i',
        value_name = "FILE|-",
        required_unless_present = "config"
    )]
    input: Option<PathBuf>,
    /// Where alerts go, one JSON object per line; `-` is stdout.
    #[arg(long, short = 'o', default_value = "-", value_name = "FILE|-")]
    output: PathBuf,
    /// Worker threads.
    #[arg(long, short = 'w', default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    workers: u16,
    /// Allowed out-of-orderness of event time: events older than the largest time seen for
    /// their tenant minus this are late.
    #[arg(long, default_value = "10s", value_parser = parse_duration, value_name = "DUR")]
    lateness: u64,
    /// Tenant of events without `tenant_id`; events naming another tenant are rejected.
    #[arg(long, value_name = "ID")]
    tenant: Option<TenantId>,
    /// Where rejected lines go (with their reason, including late events), one JSON object per
    /// line.
    #[arg(long, value_name = "FILE")]
    rejects: Option<PathBuf>,
    /// Most live window keys one tenant may hold (per stage, shared over the workers); past
    /// it, events that would open a new key are shed, counted and reported as a health alert.
    #[arg(long, default_value_t = vigil_engine::DEFAULT_KEYS_PER_TENANT, value_name = "N")]
    max_keys_per_tenant: u64,
    /// Most alerts one rule may raise for one tenant per minute of event time; the rest are
    /// shed, counted and reported as a health alert.
    #[arg(long, default_value_t = vigil_engine::DEFAULT_ALERTS_PER_MINUTE, value_name = "N")]
    max_alerts_per_minute: u64,
}

#[derive(Args, Debug)]
struct ExplainArgs {
    /// Rule ids to explain; all rules when none is given.
    #[arg(value_name = "RULE")]
    ids: Vec<String>,
    /// Rule files, or directories searched recursively for `*.rule` and `*.exceptions` files.
    #[arg(short, long, required = true, value_name = "PATH")]
    rules: Vec<PathBuf>,
}

#[derive(Args, Debug)]
struct FmtArgs {
    /// Rule files, or directories searched recursively for `*.rule`, `*.exceptions` and
    /// `*.params` files; `-` formats standard input to standard output.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// Write nothing; list the files that are not formatted, with their first differing line,
    /// and exit 1 if there are any.
    #[arg(long)]
    check: bool,
}

#[derive(Args, Debug)]
struct CheckArgs {
    /// Rule files, or directories searched recursively for `*.rule` files.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
}

fn parse_duration(s: &str) -> Result<u64, String> {
    vigil_model::parse_duration(s).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run(args),
        Command::Check(args) => check(args),
        Command::Explain(args) => explain(args),
        Command::Fmt(args) => fmt(args),
        Command::Test(args) => test(args),
        Command::Ingest(args) => ingest(args),
        Command::Normalize(args) => normalize(args),
        Command::IndexEvents(args) => index_events(args),
        Command::Migrate(args) => migrate(args),
        Command::DevToken(args) => dev_token(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn check(args: CheckArgs) -> Result<ExitCode> {
    match load::rules(&args.paths)? {
        load::Loaded::Ok { rules, warnings } => {
            eprint!("{warnings}");
            // A tenant's parameters make one more plan of the rule: count rules by their
            // defaults' plan.
            let (variants, defaults): (Vec<_>, Vec<_>) = rules
                .rules
                .iter()
                .partition(|r| matches!(r.tenants, vigil_dsl::TenantScope::Only(_)));
            let exceptions: usize = defaults.iter().map(|r| r.exceptions.len()).sum();
            let lists = rules.lists.iter().count();
            let plural =
                |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
            let mut counted = vec![plural(defaults.len(), "rule")];
            if lists > 0 {
                counted.push(plural(lists, "list"));
            }
            if exceptions > 0 {
                counted.push(plural(exceptions, "exception"));
            }
            if !variants.is_empty() {
                counted.push(plural(variants.len(), "parameter set"));
            }
            let last = counted.pop().unwrap_or_default();
            let counted = if counted.is_empty() {
                last
            } else {
                format!("{} and {last}", counted.join(", "))
            };
            eprintln!("{counted} in {} files: ok", rules.files);
            Ok(ExitCode::SUCCESS)
        }
        load::Loaded::Failed(text) => {
            eprint!("{text}");
            Ok(ExitCode::FAILURE)
        }
    }
}

fn fmt(args: FmtArgs) -> Result<ExitCode> {
    use std::io::{Read as _, Write as _};

    use vigil_dsl::FileDiagnostics;
    if args.paths.iter().any(|p| p.as_os_str() == "-") {
        anyhow::ensure!(
            args.paths.len() == 1,
            "`-` (standard input) cannot be mixed with paths"
        );
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("failed to read standard input")?;
        return match vigil_dsl::format(&text) {
            Ok(out) if args.check && out != text => Ok(ExitCode::FAILURE),
            Ok(_) if args.check => Ok(ExitCode::SUCCESS),
            Ok(out) => {
                std::io::stdout().write_all(out.as_bytes())?;
                Ok(ExitCode::SUCCESS)
            }
            Err(diagnostics) => {
                let path = "<stdin>".to_owned();
                eprint!(
                    "{}",
                    FileDiagnostics {
                        path,
                        text,
                        diagnostics
                    }
                );
                Ok(ExitCode::FAILURE)
            }
        };
    }
    let files = load::rule_language_files(&args.paths)?;
    let (mut changed, mut failed) = (0, 0);
    for f in &files {
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("failed to read rule file {}", f.display()))?;
        let out = match vigil_dsl::format(&text) {
            Ok(out) => out,
            Err(diagnostics) => {
                let path = f.display().to_string();
                eprint!(
                    "{}",
                    FileDiagnostics {
                        path,
                        text,
                        diagnostics
                    }
                );
                failed += 1;
                continue;
            }
        };
        if out == text {
            continue;
        }
        changed += 1;
        if args.check {
            let line = text
                .lines()
                .zip(out.lines())
                .position(|(a, b)| a != b)
                .unwrap_or_else(|| text.lines().count().min(out.lines().count()));
            eprintln!(
                "{}:{}: not formatted\n  is:        {}\n  formatted: {}",
                f.display(),
                line + 1,
                text.lines().nth(line).unwrap_or_default(),
                out.lines().nth(line).unwrap_or_default()
            );
        } else {
            // Write beside and rename, so that an interrupted run never leaves half a file.
            let tmp = f.with_extension("fmt-tmp");
            std::fs::write(&tmp, &out)
                .with_context(|| format!("failed to write {}", tmp.display()))?;
            std::fs::rename(&tmp, f)
                .with_context(|| format!("failed to replace {}", f.display()))?;
            eprintln!("formatted {}", f.display());
        }
    }
    let verb = if args.check {
        "not formatted"
    } else {
        "reformatted"
    };
    eprintln!(
        "{changed} of {} files {verb}{}",
        files.len(),
        if failed > 0 {
            format!(", {failed} with syntax errors left as they are")
        } else {
            String::new()
        }
    );
    Ok(if failed > 0 || (args.check && changed > 0) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn explain(args: ExplainArgs) -> Result<ExitCode> {
    let rules = match load::rules(&args.rules)? {
        load::Loaded::Ok { rules, .. } => rules,
        load::Loaded::Failed(text) => {
            eprint!("{text}");
            return Ok(ExitCode::FAILURE);
        }
    };
    for id in &args.ids {
        if !rules.rules.iter().any(|r| &r.id == id) {
            eprintln!("error: no rule `{id}` in {} files", rules.files);
            return Ok(ExitCode::FAILURE);
        }
    }
    let plans: Vec<String> = rules
        .rules
        .iter()
        .filter(|r| args.ids.is_empty() || args.ids.contains(&r.id))
        .map(|r| r.explain(&rules.fields))
        .collect();
    print!("{}", plans.join("\n"));
    Ok(ExitCode::SUCCESS)
}

fn dev_token(args: DevTokenArgs) -> Result<ExitCode> {
    let secret = std::env::var(&args.secret_env)
        .with_context(|| format!("environment variable {} is not set", args.secret_env))?;
    let exp =
        vigil_model::time::now_millis() / 1000 + i64::try_from(args.ttl / 1000).unwrap_or(i64::MAX);
    let claims = serde_json::json!({
        "sub": "vigil-dev-token", "iss": args.issuer, "aud": args.audience, "exp": exp,
        "tenant_id": args.tenant.as_str(), "role": args.role,
    });
    let key =
        jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()).context("invalid secret")?;
    let token = jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key)
        .context("failed to sign token")?;
    println!("{token}");
    Ok(ExitCode::SUCCESS)
}

fn init_logs() {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("failed to start the async runtime")
}

fn normalize(args: NormalizeArgs) -> Result<ExitCode> {
    init_logs();
    let config = vigil_normalize::service::ServiceConfig {
        consumer: args.consumer,
        batch: args.batch,
        tenants: args.tenants,
        options: vigil_normalize::Options {
            max_clock_skew_ms: i64::try_from(args.max_clock_skew).unwrap_or(i64::MAX),
        },
        ..Default::default()
    };
    let stats = runtime()?.block_on(async {
        let js = vigil_bus::connect(&args.nats, Duration::from_secs(5)).await?;
        let stop = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        anyhow::Ok(vigil_normalize::service::run(&js, &config, args.until_idle, stop).await?)
    })?;
    let rejected: Vec<String> = stats
        .rejected
        .iter()
        .map(|(r, n)| format!("{r} {n}"))
        .collect();
    eprintln!(
        "vigil normalize: {} consumed, {} normalized ({} already stored), {} rejected{}",
        stats.consumed,
        stats.normalized,
        stats.duplicates,
        stats.rejected.values().sum::<u64>(),
        if rejected.is_empty() {
            String::new()
        } else {
            format!(" ({})", rejected.join(", "))
        }
    );
    Ok(ExitCode::SUCCESS)
}

fn migrate(args: MigrateArgs) -> Result<ExitCode> {
    init_logs();
    let applied = runtime()?
        .block_on(vigil_cases::migrate(&args.database_url))
        .context("migration failed")?;
    if applied.is_empty() {
        eprintln!(
            "case store schema is at version {}: nothing to do",
            vigil_cases::SCHEMA_VERSION
        );
    } else {
        eprintln!(
            "applied migrations {applied:?}; case store schema is at version {}",
            vigil_cases::SCHEMA_VERSION
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn index_events(args: IndexEventsArgs) -> Result<ExitCode> {
    init_logs();
    let mut opensearch = vigil_sinks::OpenSearchConfig::new(args.opensearch);
    opensearch.replicas = args.replicas;
    opensearch.batch_docs = args.batch.max(1);
    let mut config = vigil_sinks::events_index::EventsIndexConfig::new(opensearch);
    config.consumer = args.consumer;
    config.tenants = args.tenants;
    config.batch = args.batch.max(1);
    let stats = runtime()?.block_on(async {
        let js = vigil_bus::connect(&args.nats, Duration::from_secs(5)).await?;
        let stop = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        anyhow::Ok(vigil_sinks::events_index::run(&js, &config, args.until_idle, stop).await?)
    })?;
    eprintln!(
        "vigil index-events: {} consumed, {} indexed, {} already there, {} dead-lettered",
        stats.consumed, stats.writer.created, stats.writer.duplicates, stats.writer.dead_lettered
    );
    Ok(ExitCode::SUCCESS)
}

fn ingest(args: IngestArgs) -> Result<ExitCode> {
    let text = std::fs::read_to_string(&args.config)
        .with_context(|| format!("failed to read {}", args.config.display()))?;
    let config: vigil_api::ApiConfig = toml::from_str(&text)
        .with_context(|| format!("invalid configuration {}", args.config.display()))?;
    config.validate()?;
    if args.check {
        eprintln!("{}: ok", args.config.display());
        return Ok(ExitCode::SUCCESS);
    }
    init_logs();
    runtime()?.block_on(vigil_api::serve(config))?;
    Ok(ExitCode::SUCCESS)
}

fn test(args: CheckArgs) -> Result<ExitCode> {
    let cases = cases::discover(&args.paths)?;
    if cases.is_empty() {
        anyhow::bail!("no test cases found: cases live in `NAME.tests/*.json` beside `NAME.rule`");
    }
    let (mut passed, mut failed) = (0, 0);
    let mut current: Option<(Vec<PathBuf>, vigil_dsl::RuleSet)> = None;
    // Every list under the paths is loaded with each case's rules.
    let lists = load::list_files(&args.paths)?;
    for (rule_file, case) in cases {
        let case_file = cases::read_case(&case)?;
        let mut files = cases::rule_files(&rule_file, &case_file);
        files.extend(lists.iter().cloned());
        if current.as_ref().is_none_or(|(p, _)| p != &files) {
            match load::rules(&files)? {
                load::Loaded::Ok { rules, .. } => current = Some((files, rules)),
                load::Loaded::Failed(text) => {
                    eprint!("{text}");
                    failed += 1;
                    current = None;
                    continue;
                }
            }
        }
        let Some((_, rules)) = &current else { continue };
        let outcome = cases::run_case(rules, &case, case_file)?;
        if outcome.failures.is_empty() {
            passed += 1;
            eprintln!("ok      {}", outcome.path.display());
        } else {
            failed += 1;
            eprintln!(
                "FAILED  {} ({})",
                outcome.path.display(),
                outcome.description
            );
            for f in &outcome.failures {
                eprintln!("        {}", f.replace('\n', "\n        "));
            }
        }
    }
    eprintln!("{passed} passed, {failed} failed");
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Loads rules, printing warnings, or prints the errors and returns `None`.
/// How often a running engine checks its list files for changes.
const LIST_RELOAD_EVERY: Duration = Duration::from_secs(2);

fn load_rules(paths: &[PathBuf]) -> Result<Option<Arc<vigil_engine::Compiled>>> {
    Ok(match load::rules(paths)? {
        load::Loaded::Ok { rules, warnings } => {
            eprint!("{warnings}");
            load::watch_lists(&rules.lists, LIST_RELOAD_EVERY);
            Some(Arc::new(vigil_engine::Compiled::new(&rules)))
        }
        load::Loaded::Failed(text) => {
            eprint!("{text}");
            None
        }
    })
}

/// `vigil run --config`: the pipeline file's source, rules, engine and sinks.
fn run_pipeline(path: &Path) -> Result<ExitCode> {
    init_logs();
    // A panicking worker would leave the others waiting forever: exit instead, and let the
    // supervisor restart the engine from its newest checkpoint.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        eprintln!(
            "vigil: a worker panicked; exiting (the next run resumes from the newest checkpoint)"
        );
        std::process::exit(70);
    }));
    let (pipeline, base) = pipeline::Pipeline::load(path)?;
    let built = pipeline.build(&base)?;
    let Some(compiled) = load_rules(&built.rules)? else {
        return Ok(ExitCode::FAILURE);
    };
    if let Some(stop) = &built.stop {
        stop_on_signal(Arc::clone(stop))?;
    }
    if let (Some(addr), Some(m)) = (built.metrics_listen, &built.engine.metrics) {
        let mut probes = built.sink_probes.clone();
        if let Some(js) = &built.jetstream_stats {
            probes.insert(0, metrics::source_probe(Arc::clone(js)));
        }
        metrics::serve(addr, Arc::clone(m), probes)?;
    }
    eprintln!(
        "vigil: {} rules, {} workers, lateness {}, reading {}{}",
        compiled.len(),
        built.engine.workers,
        vigil_model::duration::format_duration(built.engine.lateness_ms),
        built.describe,
        built
            .engine
            .checkpoint
            .as_ref()
            .map(|c| format!(", checkpoints in {}", c.dir.display()))
            .unwrap_or_default()
    );
    let sinks = Sinks {
        alerts: built.alerts,
        rejects: built.rejects,
    };
    let stats =
        vigil_engine::run(&built.engine, compiled, built.source, sinks).context("run failed")?;
    eprint!("{}", summary(&stats));
    if let Some(js) = &built.jetstream_stats {
        let js = js.lock().map(|s| s.clone()).unwrap_or_default();
        eprintln!(
            "vigil: stream: started at sequence {}, read through {}, acknowledged through {}, {} messages, {} redelivered and skipped, {} without a tenant skipped, {} checkpoints asked",
            js.started_at,
            js.position,
            js.acked,
            js.delivered,
            js.redelivered,
            js.unattributed,
            js.checkpoints
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Sets `stop` on SIGTERM or SIGINT (the source then checkpoints and stops the engine).
fn stop_on_signal(stop: Arc<std::sync::atomic::AtomicBool>) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("failed to start the signal handler")?;
    std::thread::Builder::new()
        .name("vigil-signals".into())
        .spawn(move || {
            rt.block_on(async {
                let Ok(mut term) =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                else {
                    return;
                };
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
                eprintln!("vigil: stopping: taking a last checkpoint");
                stop.store(true, std::sync::atomic::Ordering::SeqCst);
            });
        })
        .context("failed to start the signal handler")?;
    Ok(())
}

fn run(args: RunArgs) -> Result<ExitCode> {
    if let Some(config) = &args.config {
        return run_pipeline(config);
    }
    let Some(input) = args.input else {
        anyhow::bail!("--input is required without --config");
    };
    let Some(compiled) = load_rules(&args.rules)? else {
        return Ok(ExitCode::FAILURE);
    };
    let source: Box<dyn EventSource> = if input.as_os_str() == "-" {
        Box::new(StdinSource)
    } else {
        if !input.is_file() {
            anyhow::bail!("failed to open input {}: not a file", input.display());
        }
        Box::new(FileSource::new(&input))
    };
    let alerts: Arc<dyn AlertSink> = Arc::new(JsonlAlerts::create(&args.output)?);
    let rejects: Option<Arc<dyn RejectSink>> = match &args.rejects {
        Some(p) => Some(Arc::new(JsonlRejects::create(p)?)),
        None => None,
    };
    let config = EngineConfig {
        workers: usize::from(args.workers),
        lateness_ms: args.lateness,
        default_tenant: args.tenant,
        limits: vigil_engine::TenantLimits {
            keys: args.max_keys_per_tenant,
            alerts_per_minute: args.max_alerts_per_minute,
            ..vigil_engine::TenantLimits::default()
        },
        ..EngineConfig::default()
    };
    eprintln!(
        "vigil: {} rules, {} workers, lateness {}, reading {}",
        compiled.len(),
        config.workers,
        vigil_model::duration::format_duration(config.lateness_ms),
        display(&input)
    );
    let stats = vigil_engine::run(&config, compiled, source, Sinks { alerts, rejects })
        .context("run failed")?;
    eprint!("{}", summary(&stats));
    Ok(ExitCode::SUCCESS)
}

fn display(p: &Path) -> String {
    if p.as_os_str() == "-" {
        "stdin".to_owned()
    } else {
        p.display().to_string()
    }
}

/// The end-of-run summary. The `events/s:` and `state:` lines are read by `benches/run.sh`.
fn summary(s: &RunStats) -> String {
    let mut out = String::new();
    let rejected: Vec<String> = RejectReason::ALL
        .iter()
        .filter_map(|r| s.rejected.get(r).map(|n| format!("{r} {n}")))
        .collect();
    out.push_str(&format!(
        "vigil: read {} lines: {} events, {} rejected{}, {} late\n",
        s.lines,
        s.events,
        s.rejected_total(),
        if rejected.is_empty() {
            String::new()
        } else {
            format!(" ({})", rejected.join(", "))
        },
        s.late
    ));
    let alerts: Vec<String> = s.alerts.iter().map(|(r, n)| format!("{r} {n}")).collect();
    out.push_str(&format!(
        "vigil: {} alerts{}\n",
        s.alerts_total(),
        if alerts.is_empty() {
            String::new()
        } else {
            format!(": {}", alerts.join(", "))
        }
    ));
    for (what, counts) in [
        ("events allowed by exceptions", &s.excepted),
        ("late events", &s.late_by_rule),
        ("events shed past the live-key cap", &s.shed_keys),
        ("alerts shed past the alert-rate cap", &s.shed_alerts),
        ("matches suppressed", &s.suppressed),
    ] {
        if !counts.is_empty() {
            let per: Vec<String> = counts
                .iter()
                .map(|((r, t), n)| format!("{r}/{t} {n}"))
                .collect();
            out.push_str(&format!(
                "vigil: {what} per rule/tenant: {}\n",
                per.join(", ")
            ));
        }
    }
    if s.health_alerts > 0 {
        out.push_str(&format!(
            "vigil: {} health alerts (tenant caps reached)\n",
            s.health_alerts
        ));
    }
    out.push_str(&format!(
        "vigil: {:.3} s\nevents/s: {:.1}\nstate: keys={} bytes={} bytes_per_key={:.1}\n",
        s.elapsed.as_secs_f64(),
        s.lines_per_second(),
        s.peak_keys,
        s.peak_state_bytes,
        s.bytes_per_key()
    ));
    for (rule, (keys, bytes)) in &s.state_by_rule {
        out.push_str(&format!(
            "state[{rule}]: keys={keys} bytes={bytes} bytes_per_key={:.1}\n",
            *bytes as f64 / (*keys).max(1) as f64
        ));
    }
    out
}
