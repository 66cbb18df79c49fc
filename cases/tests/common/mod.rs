//! Helpers of the case store tests: the dev Postgres (started by `scripts/services.sh`), the
//! schema migrated, the store as the application role, and alerts.

#![allow(dead_code)]

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
    let mut a = vigil_cases::dev::alert(tenant, rule, user, ts);
    a.severity = severity;
    a
}

/// A filter for up to 500 cases, the most a page holds.
pub fn all_cases() -> vigil_cases::CaseFilter {
    vigil_cases::CaseFilter {
        limit: Some(500),
        ..Default::default()
    }
}
