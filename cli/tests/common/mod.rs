//! Helpers for the tests that drive the `vigil` binary against the dev services: processes that
//! die with the test, a minimal HTTP client, unique tenants, tokens, and reading streams.

#![allow(dead_code)] // Each test binary uses a different part.

pub mod engine;
pub mod replay;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const SECRET: &str = "e2e-secret-e2e-secret-e2e-secret-e2e";
pub const ISSUER: &str = "https://idp.test";

/// A child process killed (SIGKILL) when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    /// Sends SIGTERM and waits up to `within` for the process to exit; returns its status.
    pub fn terminate(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(s)) = self.0.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

/// The `vigil` binary.
pub fn vigil() -> Command {
    Command::new(env!("CARGO_BIN_EXE_vigil"))
}

pub fn nats_url() -> String {
    vigil_bus::dev::setting("VIGIL_NATS_URL").unwrap()
}

/// A tenant id no other test (or earlier run) uses.
pub fn unique_tenant(prefix: &str) -> String {
    vigil_bus::dev::unique_tenant(prefix).as_str().to_owned()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A fresh directory under the temp dir.
pub fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vigil-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// One HTTP/1.1 request; returns status and body.
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    try_http(port, method, path, headers, body).unwrap()
}

/// [`http`], with connection failures (a server that is down or dies mid-request) as errors.
pub fn try_http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes())?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let status = resp
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("no HTTP status line"))?;
    let body = resp.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    Ok((status, body))
}

/// Posts NDJSON events with a bearer token to the ingest API.
pub fn post_events(port: u16, token: &str, body: &str) -> (u16, String) {
    try_post_events(port, token, body).unwrap()
}

/// [`post_events`], with connection failures as errors.
pub fn try_post_events(port: u16, token: &str, body: &str) -> std::io::Result<(u16, String)> {
    let auth = format!("Bearer {token}");
    try_http(
        port,
        "POST",
        "/v1/ingest/events",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/x-ndjson"),
        ],
        body,
    )
}

/// The output of a command that must have succeeded (else its stderr is the panic message).
pub fn succeeded(out: std::process::Output) -> std::process::Output {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Writes an ingest config for `tenants` and starts `vigil ingest`; returns once it is ready.
pub fn start_ingest(dir: &Path, port: u16, tenants: &[&str]) -> Proc {
    start_ingest_with(dir, port, tenants, "")
}

/// [`start_ingest`] with `extra` TOML appended to the config (e.g. a `[limits]` table).
pub fn start_ingest_with(dir: &Path, port: u16, tenants: &[&str], extra: &str) -> Proc {
    let nats = nats_url();
    let mut config = format!(
        r#"listen = "127.0.0.1:{port}"
nats_url = "{nats}"
[jwt]
issuer = "{ISSUER}"
audience = "vigil"
[[jwt.keys]]
alg = "HS256"
secret_env = "E2E_JWT_SECRET"
[streams]
raw = {{ max_age = "1d", max_bytes = 268435456 }}
normalized = {{ max_age = "2d", max_bytes = 268435456 }}
alerts = {{ max_age = "3d", max_bytes = 268435456 }}
dlq = {{ max_age = "4d", max_bytes = 268435456 }}
"#
    );
    for t in tenants {
        config.push_str(&format!("[[tenants]]\nid = \"{t}\"\n"));
    }
    config.push_str(extra);
    let path = dir.join("api.toml");
    std::fs::write(&path, config).unwrap();
    let server = Proc(
        vigil()
            .args(["ingest", "--config"])
            .arg(&path)
            .env("E2E_JWT_SECRET", SECRET)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if TcpStream::connect(("127.0.0.1", port)).is_ok()
            && http(port, "GET", "/readyz", &[], "").0 == 200
        {
            return server;
        }
        assert!(
            Instant::now() < deadline,
            "vigil ingest did not become ready"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A dev token for `tenant`, minted by `vigil dev-token`.
pub fn token(tenant: &str) -> String {
    let out = vigil()
        .args([
            "dev-token",
            "--secret-env",
            "E2E_JWT_SECRET",
            "--tenant",
            tenant,
            "--issuer",
            ISSUER,
        ])
        .env("E2E_JWT_SECRET", SECRET)
        .output()
        .unwrap();
    String::from_utf8(succeeded(out).stdout)
        .unwrap()
        .trim()
        .to_owned()
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Starts `vigil normalize` with durable consumer `consumer` for `tenants`.
pub fn start_normalizer(consumer: &str, tenants: &[&str]) -> Proc {
    let mut c = vigil();
    c.args(["normalize", "--nats", &nats_url(), "--consumer", consumer]);
    for t in tenants {
        c.args(["--tenant", t]);
    }
    Proc(c.stderr(Stdio::null()).spawn().unwrap())
}

/// Deletes a test's durable consumer from `stream`.
pub fn delete_consumer(stream: &str, name: &str) {
    runtime().block_on(async {
        let js = vigil_bus::connect(&nats_url(), Duration::from_secs(5))
            .await
            .unwrap();
        js.get_stream(stream)
            .await
            .unwrap()
            .delete_consumer(name)
            .await
            .unwrap();
    });
}

/// The stream sequence below which a durable consumer of `stream` has acknowledged everything.
pub fn ack_floor(stream: &str, name: &str) -> u64 {
    runtime().block_on(async {
        let js = vigil_bus::connect(&nats_url(), Duration::from_secs(5))
            .await
            .unwrap();
        let stream = js.get_stream(stream).await.unwrap();
        let mut consumer: async_nats::jetstream::consumer::PullConsumer =
            stream.get_consumer(name).await.unwrap();
        consumer.info().await.unwrap().ack_floor.stream_sequence
    })
}

/// The reject reasons of every message on `dlq.events.{tenant}`, counted.
pub fn dlq_reasons(tenant: &str) -> std::collections::BTreeMap<String, usize> {
    runtime().block_on(async {
        let js = vigil_bus::connect(&nats_url(), Duration::from_secs(5))
            .await
            .unwrap();
        let t = vigil_model::TenantId::parse(tenant).unwrap();
        let kind = vigil_bus::Subject::DlqEvents;
        let mut out = std::collections::BTreeMap::new();
        for m in vigil_bus::dev::read_subject(&js, kind.stream(), kind.for_tenant(&t))
            .await
            .unwrap()
        {
            let reason = m
                .headers
                .as_ref()
                .and_then(|h| h.get("Vigil-Reject-Reason"))
                .map_or("(none)".to_owned(), |v| v.as_str().to_owned());
            *out.entry(reason).or_default() += 1;
        }
        out
    })
}

/// How many messages `{kind}.{tenant}` holds (from the stream's subject counts).
pub fn count(kind: vigil_bus::Subject, tenant: &str) -> usize {
    runtime().block_on(async {
        let js = vigil_bus::connect(&nats_url(), Duration::from_secs(5))
            .await
            .unwrap();
        let t = vigil_model::TenantId::parse(tenant).unwrap();
        let subject = kind.for_tenant(&t);
        let stream = js.get_stream(kind.stream()).await.unwrap();
        let info = stream.info_with_subjects(subject.clone()).await.unwrap();
        let mut n = 0;
        futures::pin_mut!(info);
        while let Some(Ok((s, c))) = futures::StreamExt::next(&mut info).await {
            if s == subject {
                n += c;
            }
        }
        n
    })
}

/// Every message body on `{kind}.{tenant}` in its stream.
pub fn read(kind: vigil_bus::Subject, tenant: &str) -> Vec<serde_json::Value> {
    runtime().block_on(async {
        let js = vigil_bus::connect(&nats_url(), Duration::from_secs(5))
            .await
            .unwrap();
        let t = vigil_model::TenantId::parse(tenant).unwrap();
        vigil_bus::dev::read_subject(&js, kind.stream(), kind.for_tenant(&t))
            .await
            .unwrap()
            .iter()
            .map(|m| serde_json::from_slice(&m.payload).unwrap_or(serde_json::Value::Null))
            .collect()
    })
}

/// The dev OpenSearch node's URL.
pub fn opensearch_url() -> String {
    vigil_bus::dev::setting("VIGIL_OPENSEARCH_URL").unwrap()
}

/// The documents of `alerts-{tenant}` after a refresh, by `_id`; empty while the index does
/// not exist.
pub fn opensearch_alerts(tenant: &str) -> std::collections::BTreeMap<String, serde_json::Value> {
    opensearch_documents(&format!("alerts-{tenant}"))
}

/// The documents of `index` after a refresh, by `_id`; empty while it does not exist.
pub fn opensearch_documents(index: &str) -> std::collections::BTreeMap<String, serde_json::Value> {
    let client =
        vigil_sinks::opensearch::Client::new(&opensearch_url(), Duration::from_secs(30)).unwrap();
    runtime()
        .block_on(client.documents(index))
        .unwrap()
        .unwrap_or_default()
}

/// Deletes `alerts-{tenant}` (the dev node keeps what tests leave behind).
pub fn delete_opensearch_alerts(tenant: &str) {
    delete_opensearch_index(&format!("alerts-{tenant}"));
}

/// Deletes `index`.
pub fn delete_opensearch_index(index: &str) {
    let client =
        vigil_sinks::opensearch::Client::new(&opensearch_url(), Duration::from_secs(30)).unwrap();
    runtime().block_on(async {
        let _ = client
            .json(hyper::Method::DELETE, &format!("/{index}"), None)
            .await;
    });
}

/// The dev Postgres server (`VIGIL_PG_URL`).
pub fn pg_server() -> String {
    vigil_bus::dev::setting("VIGIL_PG_URL").unwrap()
}

/// Migrates the case store with `vigil migrate`, as an operator does; returns the URL the
/// application (engine, API) connects with.
pub fn migrate_cases() -> String {
    let server = pg_server();
    succeeded(
        vigil()
            .args(["migrate", "--database-url"])
            .arg(vigil_cases::dev::admin_url(&server))
            .output()
            .unwrap(),
    );
    vigil_cases::dev::app_url(&server)
}

/// The `[cases]` section of an API config, on the migrated dev database.
pub fn api_cases_section() -> String {
    format!("[cases]\ndatabase_url = \"{}\"\n", migrate_cases())
}

/// The tenant's cases, newest first, each with the ids of its alerts.
pub fn cases_of(tenant: &str) -> Vec<(vigil_cases::Case, Vec<String>)> {
    let tenant: vigil_model::TenantId = tenant.parse().unwrap();
    runtime().block_on(async {
        let store = vigil_cases::Store::connect(&vigil_cases::dev::app_url(&pg_server()), 1)
            .await
            .unwrap();
        let filter = vigil_cases::CaseFilter {
            limit: Some(500),
            ..Default::default()
        };
        let mut out = Vec::new();
        for c in store.cases(&tenant, &filter).await.unwrap() {
            let detail = store.case(&tenant, c.number).await.unwrap().unwrap();
            out.push((c, detail.alerts.into_iter().map(|a| a.id).collect()));
        }
        out
    })
}
