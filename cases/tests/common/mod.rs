//! Helpers of the case store tests: the dev Postgres (started by `scripts/services.sh`), the
//! schema migrated, the store as the application role, and alerts.

#![allow(dead_code)]

use std::collections::BTreeMap;

use tokio_postgres::{Client, NoTls};
use vigil_cases::Store;
use vigil_model::{Alert, Severity, TenantId};

fn server() -> String {
    vigil_bus::dev::setting("VIGIL_PG_URL").expect("dev services are up")
}

/// The dev server's `vigil` database, as its superuser (the migrating owner).
pub fn admin_url() -> String {
    vigil_cases::dev::admin_url(&server())
}

/// The same database as the application role.
pub fn app_url() -> String {
    vigil_cases::dev::app_url(&server())
}

/// Parsed.
pub fn admin_config() -> tokio_postgres::Config {
    admin_url().parse().unwrap()
}

/// Parsed.
pub fn app_config() -> tokio_postgres::Config {
    app_url().parse().unwrap()
}

/// Migrates the dev database and connects the store as the application role.
pub async fn store(max_connections: usize) -> Store {
    vigil_cases::dev::store(&server(), max_connections)
        .await
        .unwrap()
}

/// A plain connection with `config`.
pub async fn connect(config: &tokio_postgres::Config) -> Client {
    let (client, conn) = config.connect(NoTls).await.unwrap();
    tokio::spawn(conn);
    client
}

/// A tenant no other test uses.
pub fn tenant(prefix: &str) -> TenantId {
    vigil_bus::dev::unique_tenant(prefix)
}

/// An alert of `rule` for `user` at event time `ts` (ms), with its real id.
pub fn alert(tenant: &TenantId, rule: &str, user: &str, ts: i64, severity: Severity) -> Alert {
    let group: BTreeMap<String, String> = [("user.name".to_owned(), user.to_owned())].into();
    let id = vigil_model::alert::alert_id(
        tenant.as_str(),
        rule,
        1,
        group.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        ts,
    );
    Alert {
        id,
        schema_version: 1,
        tenant_id: tenant.clone(),
        rule_id: rule.to_owned(),
        rule_version: 1,
        title: format!("{rule} for {user}"),
        severity,
        tags: vec!["attack.t1110".to_owned()],
        description: None,
        group,
        window: vigil_model::AlertWindow {
            start: ts - 1000,
            end: ts,
        },
        value: 10.0,
        timestamp: ts,
        detected_at: ts + 5,
        events: vec![format!("ev-{ts}")],
        event_count: 10,
    }
}

/// A filter for up to 500 cases, the most a page holds.
pub fn all_cases() -> vigil_cases::CaseFilter {
    vigil_cases::CaseFilter {
        limit: Some(500),
        ..Default::default()
    }
}
