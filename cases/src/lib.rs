//! The case store: alerts, cases, comments and an append-only audit log in PostgreSQL
//! (ADR 0008).
//!
//! - **Tenant isolation is the database's job.** Every table carries `tenant_id` and has
//!   row-level security enabled and *forced*; the application connects as `vigil_app`, which
//!   owns nothing and has no `BYPASSRLS`. Each transaction starts with
//!   `set_config('vigil.tenant', $1, true)` — local to the transaction, so a pooled
//!   connection never carries a tenant into the next use. A query without a tenant sees no
//!   rows and can write none.
//! - **Migrations** are part of the code ([`migrate`]), run by `vigil migrate` as the
//!   database owner; the application checks the schema version when it connects.
//! - **Alerts → cases** ([`Store::record_alerts`]): alerts are stored once per tenant and id
//!   (`ON CONFLICT DO NOTHING`) and each new one is linked to the open case of its grouping
//!   slot (rule + entity values, a time window, a cap), or opens one; see [`grouping`].
//! - **Cases** move `new → in_progress ⇄ on_hold → closed` with optimistic concurrency on
//!   `version` ([`Store::update_case`]); closing needs a resolution and an impact, and a
//!   closed case never takes alerts again.

pub mod case;
pub mod dev;
pub mod grouping;
mod migrate;
mod record;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;
use vigil_model::TenantId;

pub use case::{Case, CaseChange, CaseDetail, CaseFilter, Comment, Impact, Resolution, Status};
pub use grouping::{Grouping, GroupingPolicy};
pub use migrate::{MIGRATIONS, SCHEMA_VERSION, migrate};
pub use record::Recorded;

/// A failure of the store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database refused or failed a statement.
    #[error("postgres: {}", describe(.0))]
    Db(#[from] tokio_postgres::Error),
    /// No connection could be had from the pool.
    #[error("postgres pool: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    /// The request itself is wrong (a transition that does not exist, a missing field).
    #[error("{0}")]
    Invalid(String),
    /// The case does not exist (in this tenant).
    #[error("case {0} not found")]
    NotFound(i64),
    /// The case changed since the caller read it.
    #[error("case {number} is at version {current}, not {expected}")]
    Conflict {
        /// The case.
        number: i64,
        /// The version the caller expected.
        expected: i64,
        /// The version it is at.
        current: i64,
    },
    /// The database schema is not the one this build needs.
    #[error("{0}")]
    Schema(String),
}

/// A database error with what the server said (`db error` alone says nothing).
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => match d.detail() {
            Some(detail) => format!("{} ({}): {detail}", d.message(), d.code().code()),
            None => format!("{} ({})", d.message(), d.code().code()),
        },
        None => e.to_string(),
    }
}

impl Error {
    /// The SQLSTATE of a database error.
    pub fn code(&self) -> Option<&tokio_postgres::error::SqlState> {
        match self {
            Error::Db(e) => e.code(),
            Error::Pool(deadpool_postgres::PoolError::Backend(e)) => e.code(),
            _ => None,
        }
    }

    /// Whether trying again may succeed: the connection failed, or the database aborted the
    /// transaction (serialization failure, deadlock, shutdown).
    pub fn is_transient(&self) -> bool {
        use tokio_postgres::error::SqlState;
        match self {
            Error::Pool(_) => true,
            Error::Db(e) => match e.code() {
                None => true,
                Some(c) => {
                    *c == SqlState::T_R_SERIALIZATION_FAILURE
                        || *c == SqlState::T_R_DEADLOCK_DETECTED
                        || *c == SqlState::ADMIN_SHUTDOWN
                        || *c == SqlState::CRASH_SHUTDOWN
                        || *c == SqlState::CANNOT_CONNECT_NOW
                        || *c == SqlState::TOO_MANY_CONNECTIONS
                        || c.code().starts_with("08")
                }
            },
            _ => false,
        }
    }

    /// Whether the data was refused (a value Postgres cannot store or a constraint): the same
    /// request will fail again.
    pub fn is_data_error(&self) -> bool {
        self.code()
            .is_some_and(|c| c.code().starts_with("22") || c.code().starts_with("23"))
    }
}

/// The result of a store call.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The case store: a pool of connections as the application role.
#[derive(Clone, Debug)]
pub struct Store {
    pool: Pool,
}

impl Store {
    /// Connects to `url` (`postgres://vigil_app@host:port/vigil`) with up to `max_connections`
    /// and checks that the schema is at [`SCHEMA_VERSION`].
    pub async fn connect(url: &str, max_connections: usize) -> Result<Store> {
        let config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| Error::Invalid(format!("invalid database URL: {e}")))?;
        Store::with_config(config, max_connections).await
    }

    /// Like [`Store::connect`], from a parsed configuration.
    pub async fn with_config(
        mut config: tokio_postgres::Config,
        max_connections: usize,
    ) -> Result<Store> {
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        config.application_name("vigil");
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(max_connections.max(1))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .create_timeout(Some(Duration::from_secs(10)))
            .wait_timeout(Some(Duration::from_secs(30)))
            .build()
            .map_err(|e| Error::Invalid(format!("connection pool: {e}")))?;
        let store = Store { pool };
        let conn = store.pool.get().await?;
        let version: Option<i32> = conn
            .query_one("SELECT max(version) FROM vigil.schema_migrations", &[])
            .await
            .map_err(|e| {
                Error::Schema(format!(
                    "the case store schema is missing or unreadable ({e}); run `vigil migrate`"
                ))
            })?
            .get(0);
        match version {
            Some(v) if v == SCHEMA_VERSION => Ok(store),
            v => Err(Error::Schema(format!(
                "the case store schema is at version {}, this build needs {SCHEMA_VERSION}; run `vigil migrate`",
                v.unwrap_or(0)
            ))),
        }
    }

    /// A connection with a transaction open for `tenant`: every statement in it sees and
    /// writes that tenant's rows only.
    pub(crate) async fn begin(&self, tenant: &TenantId) -> Result<TenantConn> {
        let conn = self.pool.get().await?;
        conn.batch_execute("BEGIN").await?;
        let set = conn
            .execute(
                "SELECT set_config('vigil.tenant', $1, true)",
                &[&tenant.as_str()],
            )
            .await;
        if let Err(e) = set {
            let _ = conn.batch_execute("ROLLBACK").await;
            return Err(e.into());
        }
        Ok(TenantConn {
            conn: Some(conn),
            tenant: tenant.clone(),
        })
    }

    /// The pool's state (for metrics).
    pub fn pool_status(&self) -> deadpool_postgres::Status {
        self.pool.status()
    }
}

/// A pooled connection inside a transaction scoped to one tenant. Dropping it without
/// [`TenantConn::commit`] rolls back: the connection is not returned to the pool mid-transaction.
pub(crate) struct TenantConn {
    conn: Option<deadpool_postgres::Object>,
    tenant: TenantId,
}

impl TenantConn {
    pub(crate) fn client(&self) -> &deadpool_postgres::Object {
        self.conn.as_ref().expect("connection present until commit")
    }

    pub(crate) fn tenant(&self) -> &str {
        self.tenant.as_str()
    }

    pub(crate) async fn commit(mut self) -> Result<()> {
        let conn = self.conn.take().expect("connection present until commit");
        conn.batch_execute("COMMIT").await?;
        Ok(())
    }
}

impl Drop for TenantConn {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            // A transaction left open (an error, a cancelled future): the connection may hold
            // a tenant and locks, so it never goes back to the pool.
            let _ = deadpool_postgres::Object::take(conn);
        }
    }
}

/// Epoch milliseconds as a timestamp.
pub(crate) fn time(ms: i64) -> SystemTime {
    if ms >= 0 {
        UNIX_EPOCH + Duration::from_millis(ms as u64)
    } else {
        UNIX_EPOCH - Duration::from_millis(ms.unsigned_abs())
    }
}

/// A timestamp as epoch milliseconds.
pub(crate) fn millis(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    }
}
