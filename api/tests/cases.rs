//! The case API against the dev Postgres: two tenants with a case numbered 1 each, and every
//! caller sees only its own; auditors read but cannot change; stale versions, impossible
//! transitions and closes without an outcome are refused with their own statuses.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};
use tower::ServiceExt;
use vigil_api::config::{ApiConfig, CasesConfig, JwtConfig, KeyAlg, KeyConfig, TenantEntry};
use vigil_api::{AppState, router};
use vigil_cases::Grouping;
use vigil_model::time::now_millis;
use vigil_model::{Alert, TenantId};

const SECRET: &str = "case-api-test-secret-long-enough-for-hs256-0123456789";

fn tenant_entry(id: &TenantId) -> TenantEntry {
    toml::from_str(&format!("id = \"{id}\"")).unwrap()
}

async fn state(a: &TenantId, b: &TenantId) -> Arc<AppState> {
    let pg = vigil_bus::dev::setting("VIGIL_PG_URL").unwrap();
    vigil_cases::migrate(&vigil_cases::dev::admin_url(&pg))
        .await
        .unwrap();
    let secret_file = std::env::temp_dir().join(format!("{a}.secret"));
    std::fs::write(&secret_file, SECRET).unwrap();
    let config = ApiConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        nats_url: vigil_bus::dev::setting("VIGIL_NATS_URL").unwrap(),
        streams: vigil_bus::dev::small_streams(),
        jwt: JwtConfig {
            issuer: "https://idp.test".into(),
            audience: "vigil".into(),
            keys: vec![KeyConfig {
                kid: None,
                alg: KeyAlg::HS256,
                secret_env: None,
                secret_file: Some(secret_file),
                public_key_pem: None,
            }],
            leeway_secs: 5,
        },
        tenants: vec![tenant_entry(a), tenant_entry(b)],
        limits: Default::default(),
        cases: Some(CasesConfig {
            database_url: vigil_cases::dev::app_url(&pg),
            connections: 2,
        }),
    };
    AppState::start(&config).await.unwrap()
}

fn token(tenant: &TenantId, role: &str, sub: &str) -> String {
    let claims = json!({"sub": sub, "iss": "https://idp.test", "aud": "vigil",
                        "exp": now_millis() / 1000 + 600, "tenant_id": tenant.as_str(), "role": role});
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()).unwrap(),
    )
    .unwrap()
}

async fn call(
    state: &Arc<AppState>,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let body = match body {
        Some(b) => Body::from(b.to_string()),
        None => Body::empty(),
    };
    let resp = router(Arc::clone(state))
        .oneshot(req.body(body).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 16 << 20)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn alert(t: &TenantId, user: &str) -> Alert {
    let mut a = vigil_cases::dev::alert(t, "brute_force_login", user, 1_764_547_200_000);
    a.title = format!("Brute force against {user}");
    a
}

#[tokio::test]
async fn each_tenant_works_its_own_cases_within_its_role() {
    let (a, b) = (
        vigil_bus::dev::unique_tenant("caseapi_a"),
        vigil_bus::dev::unique_tenant("caseapi_b"),
    );
    let state = state(&a, &b).await;
    let store = state.cases.clone().unwrap();
    store
        .record_alerts(&a, &[alert(&a, "alice")], &Grouping::default(), "engine")
        .await
        .unwrap();
    store
        .record_alerts(&b, &[alert(&b, "bob")], &Grouping::default(), "engine")
        .await
        .unwrap();
    let (analyst_a, analyst_b) = (
        token(&a, "soc_analyst", "ana@a"),
        token(&b, "soc_analyst", "bo@b"),
    );
    let auditor_a = token(&a, "auditor", "audrey@a");

    // Each tenant sees its case 1, and only it.
    let (s, v) = call(&state, "GET", "/v1/cases", Some(&analyst_a), None).await;
    assert_eq!(s, StatusCode::OK);
    let titles: Vec<&str> = v["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["Brute force against alice"]);
    let (s, v) = call(&state, "GET", "/v1/cases/1", Some(&analyst_b), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["title"], "Brute force against bob");
    assert_eq!(v["alerts"][0]["id"], alert(&b, "bob").id);
    let (s, v) = call(&state, "GET", "/v1/cases/2", Some(&analyst_a), None).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let (s, _) = call(&state, "GET", "/v1/cases", None, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    // Auditors read, and may not change.
    let (s, _) = call(&state, "GET", "/v1/cases/1", Some(&auditor_a), None).await;
    assert_eq!(s, StatusCode::OK);
    let take = json!({"version": 1, "status": "in_progress", "assignee": "ana@a"});
    let (s, _) = call(
        &state,
        "PATCH",
        "/v1/cases/1",
        Some(&auditor_a),
        Some(take.clone()),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = call(
        &state,
        "POST",
        "/v1/cases/1/comments",
        Some(&auditor_a),
        Some(json!({"body": "x"})),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    // The analyst takes the case; a second writer with the old version gets 409.
    let (s, v) = call(
        &state,
        "PATCH",
        "/v1/cases/1",
        Some(&analyst_a),
        Some(take.clone()),
    )
    .await;
    assert_eq!(
        (s, v["status"].as_str(), v["version"].as_i64()),
        (StatusCode::OK, Some("in_progress"), Some(2))
    );
    let (s, v) = call(&state, "PATCH", "/v1/cases/1", Some(&analyst_a), Some(take)).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::CONFLICT, Some("conflict"))
    );
    let (s, _) = call(
        &state,
        "PATCH",
        "/v1/cases/1",
        Some(&analyst_a),
        Some(json!({"version": 2, "status": "closed"})),
    )
    .await;
    assert_eq!(
        s,
        StatusCode::UNPROCESSABLE_ENTITY,
        "closing needs resolution and impact"
    );
    let (s, _) = call(
        &state,
        "PATCH",
        "/v1/cases/1",
        Some(&analyst_a),
        Some(json!({"version": 2, "status": "reopened"})),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = call(
        &state,
        "PATCH",
        "/v1/cases/1",
        Some(&analyst_a),
        Some(json!({"status": "on_hold"})),
    )
    .await;
    assert_eq!(
        s,
        StatusCode::BAD_REQUEST,
        "a change names the version it read"
    );

    let (s, c) = call(
        &state,
        "POST",
        "/v1/cases/1/comments",
        Some(&analyst_a),
        Some(json!({"body": "password reset done"})),
    )
    .await;
    assert_eq!(
        (s, c["created_by"].as_str()),
        (StatusCode::CREATED, Some("ana@a"))
    );
    let close =
        json!({"version": 2, "status": "closed", "resolution": "true_positive", "impact": "low"});
    let (s, v) = call(
        &state,
        "PATCH",
        "/v1/cases/1",
        Some(&analyst_a),
        Some(close),
    )
    .await;
    assert_eq!(
        (s, v["accepts_alerts"].as_bool()),
        (StatusCode::OK, Some(false))
    );

    // B's case is untouched, and B cannot touch A's (its own number 1 is its own case).
    let (_, v) = call(&state, "GET", "/v1/cases/1", Some(&analyst_b), None).await;
    assert_eq!(
        (
            v["status"].as_str(),
            v["version"].as_i64(),
            v["comments"].as_array().map(Vec::len)
        ),
        (Some("new"), Some(1), Some(0))
    );

    let (s, v) = call(&state, "GET", "/v1/cases/1/audit", Some(&auditor_a), None).await;
    assert_eq!(s, StatusCode::OK);
    let actions: Vec<(&str, &str)> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["actor"].as_str().unwrap(), e["action"].as_str().unwrap()))
        .collect();
    assert_eq!(
        actions,
        [
            ("engine", "case.opened"),
            ("engine", "case.alerts_added"),
            ("ana@a", "case.updated"),
            ("ana@a", "comment.added"),
            ("ana@a", "case.updated")
        ]
    );
    let (_, v) = call(
        &state,
        "GET",
        "/v1/cases?status=closed",
        Some(&analyst_a),
        None,
    )
    .await;
    assert_eq!(v["cases"].as_array().unwrap().len(), 1);
    let (_, v) = call(
        &state,
        "GET",
        "/v1/cases?status=closed",
        Some(&analyst_b),
        None,
    )
    .await;
    assert_eq!(v["cases"].as_array().unwrap().len(), 0);
}
