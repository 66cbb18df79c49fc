//! For development and tests: the case store on a dev server (`scripts/services.sh`), whose
//! URL names the superuser and the maintenance database (`VIGIL_PG_URL`).

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
