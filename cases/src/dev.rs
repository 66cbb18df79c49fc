//! For development and tests: the case store on a dev server (`scripts/services.sh`), whose
//! URL names the superuser and the maintenance database (`VIGIL_PG_URL`).

use std::collections::BTreeMap;

use vigil_model::{Alert, AlertWindow, Severity, TenantId, alert_id};

use crate::{Result, Store, migrate};

fn with(server_url: &str, user: Option<&str>) -> String {
    let config: tokio_postgres::Config = server_url.parse().expect("a valid postgres URL");
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        _ => "127.0.0.1".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = user.or(config.get_user()).unwrap_or("postgres");
    format!("postgres://{user}@{host}:{port}/vigil")
}

/// The `vigil` database on that server, as its owner (for [`migrate`]).
pub fn admin_url(server_url: &str) -> String {
    with(server_url, None)
}

/// The `vigil` database on that server, as the application role.
pub fn app_url(server_url: &str) -> String {
    with(server_url, Some("vigil_app"))
}

/// Migrates the `vigil` database on that server and connects to it as the application role.
pub async fn store(server_url: &str, max_connections: usize) -> Result<Store> {
    migrate(&admin_url(server_url)).await?;
    Store::connect(&app_url(server_url), max_connections).await
}

/// An alert of `rule` against user `user` at event time `ts` (ms), grouped by `user.name`,
/// with its real id: title `{rule} for {user}`, severity high, ten events in a minute. Tests
/// and benchmarks change the fields they care about.
pub fn alert(tenant: &TenantId, rule: &str, user: &str, ts: i64) -> Alert {
    let group = BTreeMap::from([("user.name".to_owned(), user.to_owned())]);
    Alert {
        id: alert_id(
            tenant.as_str(),
            rule,
            1,
            group.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            ts,
        ),
        schema_version: 1,
        tenant_id: tenant.clone(),
        rule_id: rule.to_owned(),
        rule_version: 1,
        title: format!("{rule} for {user}"),
        severity: Severity::High,
        risk_score: 73,
        tags: vec!["attack.t1110".to_owned()],
        description: None,
        group,
        window: AlertWindow {
            start: ts - 60_000,
            end: ts,
        },
        value: 10.0,
        timestamp: ts,
        detected_at: ts + 1_500,
        events: vec![format!("{user}-{ts}")],
        event_count: 10,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn urls_keep_the_server_and_change_database_and_role() {
        let url = "postgres://postgres@127.0.0.1:5433/postgres";
        assert_eq!(
            super::admin_url(url),
            "postgres://postgres@127.0.0.1:5433/vigil"
        );
        assert_eq!(
            super::app_url(url),
            "postgres://vigil_app@127.0.0.1:5433/vigil"
        );
    }
}
