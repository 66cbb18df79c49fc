//! The ingest API against the real NATS of `scripts/services.sh`: authentication (forged tokens
//! of every kind refused), tenant isolation, per-event rejects with exact accounting, gzip and
//! size limits, idempotent retries, per-tenant rate limits, and 503 when NATS is down.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};
use tower::ServiceExt;
use vigil_api::config::{ApiConfig, JwtConfig, KeyAlg, KeyConfig, Limits, TenantEntry};
use vigil_api::{AppState, router};
use vigil_model::TenantId;
use vigil_model::time::{format_rfc3339_millis, now_millis};

const SECRET: &str = "test-secret-that-is-long-enough-for-hs256-0123456789";

fn keys_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/keys")
}

/// A name no other test uses (see `vigil_bus::dev::unique_tenant`).
fn unique(name: &str) -> String {
    vigil_bus::dev::unique_tenant(name).to_string()
}

struct Fixture {
    state: Arc<AppState>,
    a: TenantId,
    b: TenantId,
    js: jetstream::Context,
}

fn config(nats_url: String, a: &TenantId, b: &TenantId, limits: Limits) -> ApiConfig {
    let secret_file = std::env::temp_dir().join(format!("{}.secret", unique("hs")));
    std::fs::write(&secret_file, SECRET).unwrap();
    ApiConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        nats_url,
        streams: vigil_bus::dev::small_streams(),
        jwt: JwtConfig {
            issuer: "https://idp.test".into(),
            audience: "vigil".into(),
            keys: vec![
                KeyConfig {
                    kid: None,
                    alg: KeyAlg::HS256,
                    secret_env: None,
                    secret_file: Some(secret_file),
                    public_key_pem: None,
                },
                KeyConfig {
                    kid: Some("rsa-1".into()),
                    alg: KeyAlg::RS256,
                    secret_env: None,
                    secret_file: None,
                    public_key_pem: Some(keys_dir().join("rsa_public.pem")),
                },
                KeyConfig {
                    kid: None,
                    alg: KeyAlg::ES256,
                    secret_env: None,
                    secret_file: None,
                    public_key_pem: Some(keys_dir().join("ec_public.pem")),
                },
            ],
            leeway_secs: 0,
        },
        tenants: vec![
            TenantEntry {
                id: a.clone(),
                active: true,
                events_per_sec: 100.0,
                burst: 2_000,
            },
            TenantEntry {
                id: b.clone(),
                active: true,
                events_per_sec: 100_000.0,
                burst: 100_000,
            },
            TenantEntry {
                id: TenantId::parse("dormant").unwrap(),
                active: false,
                events_per_sec: 1.0,
                burst: 1,
            },
        ],
        limits,
        cases: None,
    }
}

async fn fixture_with(limits: Limits) -> Fixture {
    let url = vigil_bus::dev::setting("VIGIL_NATS_URL").unwrap();
    let (a, b) = (
        TenantId::parse(&unique("acme")).unwrap(),
        TenantId::parse(&unique("globex")).unwrap(),
    );
    let state = AppState::start(&config(url.clone(), &a, &b, limits))
        .await
        .expect("start (is NATS up? `make services-up`)");
    let js = vigil_bus::connect(&url, Duration::from_secs(5))
        .await
        .unwrap();
    Fixture { state, a, b, js }
}

async fn fixture() -> Fixture {
    fixture_with(Limits::default()).await
}

fn token(alg: Algorithm, claims: Value, kid: Option<&str>) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    let key = match alg {
        Algorithm::HS256 => EncodingKey::from_secret(SECRET.as_bytes()).unwrap(),
        Algorithm::RS256 => {
            EncodingKey::from_rsa_pem(&std::fs::read(keys_dir().join("rsa_private.pem")).unwrap())
                .unwrap()
        }
        Algorithm::ES256 => {
            EncodingKey::from_ec_pem(&std::fs::read(keys_dir().join("ec_private.pem")).unwrap())
                .unwrap()
        }
        other => panic!("{other:?}"),
    };
    encode(&header, &claims, &key).unwrap()
}

fn claims(tenant: &str, role: &str) -> Value {
    json!({"sub": "shipper-1", "iss": "https://idp.test", "aud": "vigil", "exp": now_millis() / 1000 + 600,
           "tenant_id": tenant, "role": role})
}

fn good(t: &TenantId) -> String {
    token(Algorithm::HS256, claims(t.as_str(), "tenant_admin"), None)
}

async fn post(
    state: &Arc<AppState>,
    token: Option<&str>,
    body: impl Into<Body>,
    headers: &[(&str, &str)],
) -> (StatusCode, Value, axum::http::HeaderMap) {
    let mut req = Request::post("/v1/ingest/events").header("content-type", "application/json");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = router(Arc::clone(state))
        .oneshot(req.body(body.into()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = axum::body::to_bytes(resp.into_body(), 64 << 20)
        .await
        .unwrap();
    let v = serde_json::from_slice(&bytes)
        .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, v, headers)
}

/// Every message stored for one tenant's raw subject.
async fn stored(js: &jetstream::Context, t: &TenantId) -> Vec<Value> {
    let msgs = vigil_bus::dev::read_subject(js, "RAW", vigil_bus::Subject::RawEvents.for_tenant(t))
        .await
        .unwrap();
    msgs.iter()
        .map(|m| {
            serde_json::from_slice(&m.payload).unwrap_or(Value::String(
                String::from_utf8_lossy(&m.payload).into_owned(),
            ))
        })
        .collect()
}

fn failures(user: &str, n: usize) -> Vec<Value> {
    let t0 = now_millis() - 60_000;
    (0..n)
        .map(|i| {
            json!({"@timestamp": format_rfc3339_millis(t0 + i as i64 * 10), "user": {"name": user},
                        "event": {"category": ["authentication"], "outcome": "failure"}})
        })
        .collect()
}

#[tokio::test]
async fn bursts_from_two_tenants_land_in_their_own_subjects() {
    let f = fixture().await;
    let (s, v, _) = post(
        &f.state,
        Some(&good(&f.a)),
        Value::Array(failures("alice", 12)).to_string(),
        &[],
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert_eq!(
        (
            v["received"].as_u64(),
            v["accepted"].as_u64(),
            v["rejected"].as_u64()
        ),
        (Some(12), Some(12), Some(0))
    );
    let nd: String = failures("alice", 11)
        .iter()
        .map(|e| format!("{e}\n"))
        .collect();
    let (s, v, _) = post(
        &f.state,
        Some(&good(&f.b)),
        nd,
        &[("content-type", "application/x-ndjson")],
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let (a, b) = (stored(&f.js, &f.a).await, stored(&f.js, &f.b).await);
    assert_eq!((a.len(), b.len()), (12, 11));
    for (t, evs) in [(&f.a, &a), (&f.b, &b)] {
        for e in evs {
            assert_eq!(e["tenant_id"], t.as_str());
            assert_eq!(
                uuid::Uuid::parse_str(e["event"]["id"].as_str().unwrap())
                    .unwrap()
                    .get_version_num(),
                7
            );
        }
    }
}

#[tokio::test]
async fn forged_and_wrong_tokens_are_refused() {
    let f = fixture().await;
    let body = Value::Array(failures("x", 1)).to_string();
    let a = f.a.as_str();
    let now = now_millis() / 1000;
    let b64 = |s: &str| {
        const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let bytes = s.as_bytes();
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |acc, (i, &c)| acc | (u32::from(c) << (16 - 8 * i)));
            for i in 0..=chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out
    };
    let alg_none = format!(
        "{}.{}.",
        b64(r#"{"alg":"none","typ":"JWT"}"#),
        b64(&claims(a, "tenant_admin").to_string())
    );
    // HS/RS confusion: an HS256 token whose "secret" is the RSA public key.
    let public_pem = std::fs::read(keys_dir().join("rsa_public.pem")).unwrap();
    let confused = encode(
        &Header::new(Algorithm::HS256),
        &claims(a, "tenant_admin"),
        &EncodingKey::from_secret(&public_pem).unwrap(),
    )
    .unwrap();
    let mut expired = claims(a, "tenant_admin");
    expired["exp"] = json!(now - 60);
    let mut wrong_aud = claims(a, "tenant_admin");
    wrong_aud["aud"] = json!("someone-else");
    let mut wrong_iss = claims(a, "tenant_admin");
    wrong_iss["iss"] = json!("https://evil.test");
    let mut no_exp = claims(a, "tenant_admin");
    no_exp.as_object_mut().unwrap().remove("exp");
    let cases: Vec<(&str, Option<String>, StatusCode)> = vec![
        ("no token", None, StatusCode::UNAUTHORIZED),
        (
            "garbage",
            Some("not.a.jwt".into()),
            StatusCode::UNAUTHORIZED,
        ),
        ("alg none", Some(alg_none), StatusCode::UNAUTHORIZED),
        ("hs/rs confusion", Some(confused), StatusCode::UNAUTHORIZED),
        (
            "expired",
            Some(token(Algorithm::HS256, expired, None)),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "no exp",
            Some(token(Algorithm::HS256, no_exp, None)),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "wrong audience",
            Some(token(Algorithm::HS256, wrong_aud, None)),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "wrong issuer",
            Some(token(Algorithm::ES256, wrong_iss, None)),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "rs256 wrong kid",
            Some(token(
                Algorithm::RS256,
                claims(a, "tenant_admin"),
                Some("rsa-2"),
            )),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "unregistered tenant",
            Some(good(&TenantId::parse("nobody").unwrap())),
            StatusCode::FORBIDDEN,
        ),
        (
            "inactive tenant",
            Some(good(&TenantId::parse("dormant").unwrap())),
            StatusCode::FORBIDDEN,
        ),
        (
            "auditor",
            Some(token(Algorithm::HS256, claims(a, "auditor"), None)),
            StatusCode::FORBIDDEN,
        ),
        (
            "unknown role",
            Some(token(Algorithm::HS256, claims(a, "root"), None)),
            StatusCode::FORBIDDEN,
        ),
    ];
    for (name, tok, want) in cases {
        let (s, v, _) = post(&f.state, tok.as_deref(), body.clone(), &[]).await;
        assert_eq!(s, want, "{name}: {v}");
    }
    for attack in ["*", ">", ".", "..", "acme.x", "../..", "a,b", "ACME", ""] {
        let tok = token(Algorithm::HS256, claims(attack, "tenant_admin"), None);
        let (s, v, _) = post(&f.state, Some(&tok), body.clone(), &[]).await;
        assert!(
            s == StatusCode::UNAUTHORIZED || s == StatusCode::FORBIDDEN,
            "tenant {attack:?}: {s} {v}"
        );
    }
    // The three algorithms each work with their own key.
    for (alg, kid) in [
        (Algorithm::HS256, None),
        (Algorithm::RS256, Some("rsa-1")),
        (Algorithm::ES256, None),
    ] {
        let (s, v, _) = post(
            &f.state,
            Some(&token(alg, claims(a, "platform_admin"), kid)),
            body.clone(),
            &[],
        )
        .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{alg:?}: {v}");
    }
    assert_eq!(
        stored(&f.js, &f.a).await.len(),
        3,
        "nothing from refused requests was stored"
    );
}

#[tokio::test]
async fn bad_events_are_listed_and_the_good_ones_stored() {
    let f = fixture().await;
    let now = now_millis();
    let other = f.b.as_str();
    let mut lines: Vec<String> = failures("bob", 95).iter().map(Value::to_string).collect();
    lines.insert(3, "not json".into());
    lines.insert(
        10,
        json!({"@timestamp": format_rfc3339_millis(now), "tenant_id": other}).to_string(),
    );
    lines.insert(
        20,
        json!({"@timestamp": format_rfc3339_millis(now + 3_600_000)}).to_string(),
    );
    lines.insert(30, json!({"@timestamp": "last tuesday"}).to_string());
    lines.insert(40, "[1,2]".into());
    let body = lines.join("\n");
    let (s, v, _) = post(
        &f.state,
        Some(&good(&f.a)),
        body,
        &[("content-type", "application/x-ndjson")],
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["received"], 100);
    assert_eq!(v["accepted"], 95);
    assert_eq!(v["rejected"], 5);
    let errors: Vec<(u64, &str)> = v["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["index"].as_u64().unwrap(), e["reason"].as_str().unwrap()))
        .collect();
    assert_eq!(
        errors,
        [
            (3, "invalid_json"),
            (10, "tenant_mismatch"),
            (20, "future_timestamp"),
            (30, "invalid_timestamp"),
            (40, "invalid_json")
        ]
    );
    assert_eq!(stored(&f.js, &f.a).await.len(), 95);
    assert!(
        stored(&f.js, &f.b).await.is_empty(),
        "a mismatched tenant_id never reaches the other tenant"
    );
    let metrics = f.state.metrics.render();
    assert!(
        metrics.contains(&format!(
            "vigil_ingest_events_rejected_total{{tenant=\"{}\",reason=\"tenant_mismatch\"}} 1",
            f.a
        )),
        "{metrics}"
    );
}

#[tokio::test]
async fn gzip_size_limits_and_idempotent_retries() {
    use std::io::Write;
    let f = fixture_with(Limits {
        max_body_bytes: 64 << 10,
        max_decompressed_bytes: 256 << 10,
        ..Limits::default()
    })
    .await;
    let body = Value::Array(failures("carol", 200)).to_string();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(body.as_bytes()).unwrap();
    let gz = gz.finish().unwrap();
    let (s, v, _) = post(
        &f.state,
        Some(&good(&f.a)),
        gz,
        &[("content-encoding", "gzip"), ("idempotency-key", "req-42")],
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["duplicates"], 0);
    // The same request again (a client retry): every event is a duplicate, nothing new stored.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(body.as_bytes()).unwrap();
    let (s, v, _) = post(
        &f.state,
        Some(&good(&f.a)),
        gz.finish().unwrap(),
        &[("content-encoding", "gzip"), ("idempotency-key", "req-42")],
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["duplicates"], 200);
    assert_eq!(stored(&f.js, &f.a).await.len(), 200);
    // Over the body limit, and a small gzip bomb over the decompressed limit.
    let (s, _, _) = post(&f.state, Some(&good(&f.a)), vec![b' '; 100 << 10], &[]).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    let mut bomb = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    bomb.write_all(&vec![b' '; 1 << 20]).unwrap();
    let (s, v, _) = post(
        &f.state,
        Some(&good(&f.a)),
        bomb.finish().unwrap(),
        &[("content-encoding", "gzip")],
    )
    .await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    assert_eq!(stored(&f.js, &f.a).await.len(), 200);
}

#[tokio::test]
async fn sshd_lines_are_stored_raw_with_ids() {
    let f = fixture().await;
    let body = "Nov 30 10:00:00 bastion sshd[811]: Failed password for invalid user admin from 203.0.113.9 port 50522 ssh2\nNov 30 10:00:01 bastion sshd[811]: Accepted publickey for deploy from 10.0.0.5 port 40000 ssh2\n";
    let (s, v, _) = post(
        &f.state,
        Some(&good(&f.a)),
        body,
        &[
            ("content-type", "text/plain"),
            ("x-vigil-source-type", "sshd"),
        ],
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let got = stored(&f.js, &f.a).await;
    assert_eq!(got.len(), 2);
    assert!(
        got[0]
            .as_str()
            .unwrap()
            .contains("Failed password for invalid user admin")
    );
    let (s, v, _) = post(
        &f.state,
        Some(&good(&f.a)),
        body,
        &[("x-vigil-source-type", "cloudtrial")],
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("available source types are ecs, ocsf, udm, sshd, windows, cloudtrail"),
        "{v}"
    );
}

#[tokio::test]
async fn a_flooding_tenant_is_limited_and_the_other_is_not() {
    let f = fixture().await;
    // Tenant a: 100 events/s, burst 2,000. Tenant b: 100,000/s.
    let batch = Value::Array(failures("dave", 500)).to_string();
    let mut limited = None;
    for i in 0..10 {
        let (s, _, h) = post(&f.state, Some(&good(&f.a)), batch.clone(), &[]).await;
        if s == StatusCode::TOO_MANY_REQUESTS {
            limited = Some((
                i,
                h.get("retry-after")
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .parse::<u64>()
                    .unwrap(),
            ));
            break;
        }
        assert_eq!(s, StatusCode::ACCEPTED);
    }
    let (after, retry) = limited.expect("tenant a was never limited");
    assert_eq!(after, 4, "four batches of 500 fit the burst of 2,000");
    assert!((1..=6).contains(&retry), "{retry}");
    for _ in 0..10 {
        let (s, v, _) = post(&f.state, Some(&good(&f.b)), batch.clone(), &[]).await;
        assert_eq!(
            s,
            StatusCode::ACCEPTED,
            "tenant b must not be slowed by tenant a: {v}"
        );
    }
    let (s, _, _) = post(
        &f.state,
        Some(&good(&f.a)),
        Value::Array(failures("x", 2_001)).to_string(),
        &[],
    )
    .await;
    assert_eq!(
        s,
        StatusCode::PAYLOAD_TOO_LARGE,
        "more events than the burst can never pass"
    );
}

#[tokio::test]
async fn nats_down_gives_503_and_readiness_fails() {
    // A private NATS server, so that stopping it does not disturb other tests.
    let bin = vigil_bus::dev::setting("VIGIL_NATS_BIN").unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dir = std::env::temp_dir().join(unique("nats"));
    let mut server = std::process::Command::new(bin)
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(&dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("nats://127.0.0.1:{port}");
    let mut started = None;
    for _ in 0..50 {
        let (a, b) = (
            TenantId::parse("acme").unwrap(),
            TenantId::parse("globex").unwrap(),
        );
        if let Ok(s) = AppState::start(&config(
            url.clone(),
            &a,
            &b,
            Limits {
                publish_timeout_secs: 2,
                ..Limits::default()
            },
        ))
        .await
        {
            started = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let state = started.expect("private nats-server did not start");
    let acme = TenantId::parse("acme").unwrap();
    let body = Value::Array(failures("erin", 3)).to_string();
    let (s, v, _) = post(&state, Some(&good(&acme)), body.clone(), &[]).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let ready = router(Arc::clone(&state))
        .oneshot(Request::get("/readyz").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    server.kill().unwrap();
    server.wait().unwrap();
    let (s, v, h) = post(&state, Some(&good(&acme)), body, &[]).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert!(h.get("retry-after").is_some());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let ready = router(Arc::clone(&state))
        .oneshot(Request::get("/readyz").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn the_openapi_document_lists_every_route_and_status() {
    let f = fixture().await;
    let resp = router(Arc::clone(&f.state))
        .oneshot(Request::get("/openapi.json").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let doc: Value = serde_json::from_slice(
        &axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap(),
    )
    .unwrap();
    for (path, method, uri) in [
        ("/v1/ingest/events", "post", "/v1/ingest/events"),
        ("/healthz", "get", "/healthz"),
        ("/readyz", "get", "/readyz"),
        ("/metrics", "get", "/metrics"),
        ("/openapi.json", "get", "/openapi.json"),
        ("/v1/cases", "get", "/v1/cases"),
        ("/v1/cases/{number}", "get", "/v1/cases/1"),
        ("/v1/cases/{number}", "patch", "/v1/cases/1"),
        (
            "/v1/cases/{number}/comments",
            "post",
            "/v1/cases/1/comments",
        ),
        ("/v1/cases/{number}/audit", "get", "/v1/cases/1/audit"),
    ] {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} is not documented"
        );
        let probe = Request::builder()
            .method(method.to_uppercase().as_str())
            .uri(uri)
            .body(Body::empty())
            .unwrap();
        let status = router(Arc::clone(&f.state))
            .oneshot(probe)
            .await
            .unwrap()
            .status();
        assert_ne!(
            status,
            StatusCode::NOT_FOUND,
            "{method} {path} is documented but not routed"
        );
    }
    let patch = &doc["paths"]["/v1/cases/{number}"]["patch"]["responses"];
    for code in ["200", "400", "401", "403", "404", "409", "422", "503"] {
        assert!(
            patch[code].is_object(),
            "PATCH status {code} is not documented"
        );
    }
    let ingest = &doc["paths"]["/v1/ingest/events"]["post"]["responses"];
    for code in ["202", "400", "401", "403", "413", "429", "503"] {
        assert!(ingest[code].is_object(), "status {code} is not documented");
    }
    let reasons = &doc["components"]["schemas"]["IngestResult"]["properties"]["errors"]["items"]["properties"]
        ["reason"]["enum"];
    for r in [
        "invalid_json",
        "tenant_mismatch",
        "missing_timestamp",
        "invalid_timestamp",
        "future_timestamp",
        "oversize",
    ] {
        assert!(
            reasons.as_array().unwrap().iter().any(|v| v == r),
            "reason {r} is not documented"
        );
    }
}

#[tokio::test]
async fn the_same_event_id_in_two_tenants_is_two_events() {
    // JetStream deduplicates by message id across a whole stream; ids are scoped by tenant so
    // that one tenant cannot suppress another's events by reusing their ids.
    let f = fixture().await;
    let ev =
        json!([{"@timestamp": format_rfc3339_millis(now_millis()), "event": {"id": "shared-id"}}])
            .to_string();
    let (s, v, _) = post(&f.state, Some(&good(&f.a)), ev.clone(), &[]).await;
    assert_eq!(
        (s, v["duplicates"].as_u64()),
        (StatusCode::ACCEPTED, Some(0)),
        "{v}"
    );
    let (s, v, _) = post(&f.state, Some(&good(&f.b)), ev, &[]).await;
    assert_eq!(
        (s, v["duplicates"].as_u64()),
        (StatusCode::ACCEPTED, Some(0)),
        "{v}"
    );
    assert_eq!(stored(&f.js, &f.a).await.len(), 1);
    assert_eq!(stored(&f.js, &f.b).await.len(), 1);
}
