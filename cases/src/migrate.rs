//! Schema migrations: SQL files compiled into the binary, applied in order, each in its own
//! transaction, under an advisory lock so that several processes migrating at once apply
//! each file once. A file that changed after it was applied is an error, not a silent skip.

use sha2::{Digest, Sha256};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};

use crate::{Error, Result};

/// Every migration: version, name, SQL.
pub const MIGRATIONS: &[(i32, &str, &str)] = &[(
    1,
    "case_store",
    include_str!("../migrations/0001_case_store.sql"),
)];

/// The schema version this build reads and writes.
pub const SCHEMA_VERSION: i32 = MIGRATIONS[MIGRATIONS.len() - 1].0;

/// Any key will do, as long as every Vigil process uses the same one.
const LOCK_KEY: i64 = 0x5649_4749_4c5f_4d31; // "VIGIL_M1"

/// Brings the database at `url` to [`SCHEMA_VERSION`], creating the database itself when it
/// does not exist. `url` names a role that may create schemas and roles (the owner; in
/// development the `postgres` superuser). Returns the versions applied now.
pub async fn migrate(url: &str) -> Result<Vec<i32>> {
    let config: tokio_postgres::Config = url
        .parse()
        .map_err(|e| Error::Invalid(format!("invalid database URL: {e}")))?;
    let client = match connect(&config).await {
        Ok(c) => c,
        Err(e) if e.code() == Some(&SqlState::INVALID_CATALOG_NAME) => {
            create_database(&config).await?;
            connect(&config).await?
        }
        Err(e) => return Err(e.into()),
    };
    client
        .query_one("SELECT pg_advisory_lock($1)", &[&LOCK_KEY])
        .await?;
    let applied = apply(&client).await;
    client
        .query_one("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY])
        .await?;
    applied
}

async fn connect(config: &tokio_postgres::Config) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "migration connection ended");
        }
    });
    Ok(client)
}

/// Creates the database `config` names, connecting to the `postgres` database to do it.
async fn create_database(config: &tokio_postgres::Config) -> Result<()> {
    let name = config.get_dbname().unwrap_or("postgres").to_owned();
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(Error::Invalid(format!(
            "database {name:?} does not exist, and Vigil only creates databases named with a-z, 0-9 and _"
        )));
    }
    let mut admin = config.clone();
    admin.dbname("postgres");
    let client = connect(&admin).await?;
    match client
        .batch_execute(&format!("CREATE DATABASE \"{name}\""))
        .await
    {
        // Another process created it first (a race shows as a unique violation).
        Err(e)
            if e.code() == Some(&SqlState::DUPLICATE_DATABASE)
                || e.code() == Some(&SqlState::UNIQUE_VIOLATION) =>
        {
            Ok(())
        }
        r => r.map_err(Error::from),
    }
}

fn checksum(sql: &str) -> String {
    Sha256::digest(sql.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

async fn apply(client: &Client) -> Result<Vec<i32>> {
    client
        .batch_execute(
            "SET client_min_messages = warning;
             CREATE SCHEMA IF NOT EXISTS vigil;
             CREATE TABLE IF NOT EXISTS vigil.schema_migrations (
                 version    integer PRIMARY KEY,
                 name       text NOT NULL,
                 checksum   text NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now()
             );",
        )
        .await?;
    let rows = client
        .query(
            "SELECT version, checksum FROM vigil.schema_migrations ORDER BY version",
            &[],
        )
        .await?;
    let done: Vec<(i32, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    if let Some((v, _)) = done.iter().find(|(v, _)| *v > SCHEMA_VERSION) {
        return Err(Error::Schema(format!(
            "the database is at schema version {v}, newer than this build's {SCHEMA_VERSION}"
        )));
    }
    let mut applied = Vec::new();
    for &(version, name, sql) in MIGRATIONS {
        let sum = checksum(sql);
        if let Some((_, have)) = done.iter().find(|(v, _)| *v == version) {
            if *have != sum {
                return Err(Error::Schema(format!(
                    "migration {version} ({name}) changed after it was applied (checksum {have}, now {sum})"
                )));
            }
            continue;
        }
        let run = async {
            client.batch_execute("BEGIN").await?;
            client.batch_execute(sql).await?;
            client
                .execute(
                    "INSERT INTO vigil.schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    &[&version, &name, &sum],
                )
                .await?;
            client.batch_execute("COMMIT").await
        };
        if let Err(e) = run.await {
            let _ = client.batch_execute("ROLLBACK").await;
            return Err(Error::Schema(format!(
                "migration {version} ({name}) failed: {}",
                e.as_db_error()
                    .map_or_else(|| e.to_string(), |d| d.message().to_owned())
            )));
        }
        tracing::info!(version, name, "applied migration");
        applied.push(version);
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_consecutive_from_one() {
        for (i, (v, _, _)) in MIGRATIONS.iter().enumerate() {
            assert_eq!(*v as usize, i + 1);
        }
        assert_eq!(SCHEMA_VERSION as usize, MIGRATIONS.len());
    }
}
