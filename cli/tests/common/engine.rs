//! The engine as a service for the end-to-end tests: a pipeline file on the dev services
//! (JetStream in, ALERTS, OpenSearch, Postgres and a JSON-lines file out), the engine process,
//! and polling.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use super::Proc;

pub fn rules_dir() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/../rules").to_owned()
}

/// The two ways from `RAW` to the engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// `vigil normalize` publishes to `NORMALIZED`, which the engine reads.
    TwoHops,
    /// The engine reads `RAW` and normalizes on its workers.
    OneHop,
}

impl Route {
    /// The stream the engine reads.
    pub fn stream(self) -> &'static str {
        match self {
            Route::TwoHops => "NORMALIZED",
            Route::OneHop => "RAW",
        }
    }
}

/// Writes a pipeline file: JetStream source on `NORMALIZED` for `tenants`, alerts to ALERTS
/// and a JSONL file, rejects to the DLQ.
pub fn pipeline(dir: &Path, consumer: &str, tenants: &[&str], lateness: &str, interval: &str) {
    pipeline_with(
        dir,
        consumer,
        tenants,
        lateness,
        interval,
        "",
        Route::TwoHops,
    );
}

/// [`pipeline`] with `engine` appended to the `[engine]` table, reading the stream of `route`.
pub fn pipeline_with(
    dir: &Path,
    consumer: &str,
    tenants: &[&str],
    lateness: &str,
    interval: &str,
    engine: &str,
    route: Route,
) {
    let tenants: Vec<String> = tenants.iter().map(|t| format!("\"{t}\"")).collect();
    std::fs::write(
        dir.join("pipeline.toml"),
        format!(
            r#"rules = ["{rules}"]
[nats]
url = "{nats}"
[engine]
workers = 2
lateness = "{lateness}"
state_dir = "state"
{engine}
[source]
kind = "jetstream"
stream = "{stream}"
consumer = "{consumer}"
tenants = [{tenants}]
checkpoint_interval = "{interval}"
ack_wait = "30s"
[sinks]
alerts = ["jetstream", "opensearch", "postgres", "alerts.jsonl"]
rejects = ["jetstream"]
[opensearch]
url = "{opensearch}"
replicas = 0
flush_interval = "200ms"
[postgres]
url = "{postgres}"
flush_interval = "100ms"
[cases]
window = "1h"
"#,
            rules = rules_dir(),
            nats = super::nats_url(),
            tenants = tenants.join(", "),
            stream = route.stream(),
            opensearch = super::opensearch_url(),
            postgres = super::migrate_cases(),
        ),
    )
    .unwrap();
}

pub fn start_engine(dir: &Path) -> Proc {
    Proc(
        super::vigil()
            .args(["run", "--config"])
            .arg(dir.join("pipeline.toml"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join(format!("engine-{}.log", nanos()))).unwrap())
            .spawn()
            .unwrap(),
    )
}

pub fn nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// Polls `f` until it returns `Some`, or panics with `what` after `within`.
pub fn wait_for<T>(within: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}
