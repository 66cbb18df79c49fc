//! `vigil ingest` as an operator runs it: a TOML config, the binary listening on a real socket,
//! a client posting events over HTTP with a bearer token, the events stored in NATS, then
//! `vigil normalize` turning them into canonical events.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SECRET: &str = "e2e-secret-e2e-secret-e2e-secret-e2e";

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp.split(' ').nth(1).unwrap().parse().unwrap();
    let body = resp.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    (status, body)
}

#[test]
fn vigil_ingest_serves_authenticated_events_into_nats() {
    let nats = vigil_bus::dev::setting("VIGIL_NATS_URL").unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let tenant = format!("e2e_{}_{nanos}", std::process::id());
    let dir = std::env::temp_dir().join(format!("vigil-ingest-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("api.toml");
    std::fs::write(
        &config,
        format!(
            r#"listen = "127.0.0.1:{port}"
nats_url = "{nats}"
[jwt]
issuer = "https://idp.test"
audience = "vigil"
[[jwt.keys]]
alg = "HS256"
secret_env = "E2E_JWT_SECRET"
[[tenants]]
id = "{tenant}"
[streams]
raw = {{ max_age = "1d", max_bytes = 268435456 }}
normalized = {{ max_age = "2d", max_bytes = 268435456 }}
alerts = {{ max_age = "3d", max_bytes = 268435456 }}
dlq = {{ max_age = "4d", max_bytes = 268435456 }}
"#
        ),
    )
    .unwrap();
    let _server = Server(
        Command::new(env!("CARGO_BIN_EXE_vigil"))
            .args(["ingest", "--config"])
            .arg(&config)
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
            break;
        }
        assert!(
            Instant::now() < deadline,
            "vigil ingest did not become ready"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args([
            "dev-token",
            "--secret-env",
            "E2E_JWT_SECRET",
            "--tenant",
            &tenant,
            "--issuer",
            "https://idp.test",
        ])
        .env("E2E_JWT_SECRET", SECRET)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let now = vigil_model::time::format_rfc3339_millis(vigil_model::time::now_millis());
    let body: String = (0..10)
        .map(|i| format!("{{\"@timestamp\":\"{now}\",\"user\":{{\"name\":\"alice\"}},\"event\":{{\"id\":\"e2e-{i}\",\"outcome\":\"failure\"}}}}\n"))
        .collect();
    let auth = format!("Bearer {token}");
    let (status, resp) = http(
        port,
        "POST",
        "/v1/ingest/events",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/x-ndjson"),
        ],
        &body,
    );
    assert_eq!(status, 202, "{resp}");
    let v: serde_json::Value = serde_json::from_str(&resp).unwrap();
    assert_eq!(
        (v["accepted"].as_u64(), v["rejected"].as_u64()),
        (Some(10), Some(0))
    );
    let (status, _) = http(
        port,
        "POST",
        "/v1/ingest/events",
        &[("Content-Type", "application/json")],
        &body,
    );
    assert_eq!(status, 401);
    let (status, metrics) = http(port, "GET", "/metrics", &[], "");
    assert_eq!(status, 200);
    assert!(
        metrics.contains(&format!(
            "vigil_ingest_events_accepted_total{{tenant=\"{tenant}\"}} 10"
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains("vigil_ingest_publish_seconds_count 1"),
        "{metrics}"
    );

    // The normalizer turns the stored raw events into canonical events of the same tenant.
    let consumer = format!("e2e_{}", std::process::id());
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args([
            "normalize",
            "--until-idle",
            "--nats",
            &nats,
            "--consumer",
            &consumer,
            "--tenant",
            &tenant,
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("vigil normalize: 10 consumed, 10 normalized"),
        "{err}"
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let normalized = rt.block_on(async {
        let js = vigil_bus::connect(&nats, Duration::from_secs(5))
            .await
            .unwrap();
        let t = vigil_model::TenantId::parse(&tenant).unwrap();
        let msgs = vigil_bus::dev::read_subject(
            &js,
            "NORMALIZED",
            vigil_bus::Subject::NormalizedEvents.for_tenant(&t),
        )
        .await
        .unwrap();
        js.get_stream("RAW")
            .await
            .unwrap()
            .delete_consumer(&consumer)
            .await
            .unwrap();
        msgs
    });
    assert_eq!(normalized.len(), 10);
    let e: serde_json::Value = serde_json::from_slice(&normalized[0].payload).unwrap();
    assert_eq!(e["tenant_id"], tenant.as_str());
    assert!(e["event"]["id"].as_str().unwrap().starts_with("e2e-"));
    assert!(e["event"]["ingested"].is_string());
    let _ = std::fs::remove_dir_all(dir);
}
