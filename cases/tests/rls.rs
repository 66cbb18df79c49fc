//! Tenant isolation in the database itself: the catalog says every tenant table forces
//! row-level security and the application role cannot bypass it; as that role, tenant A can
//! neither read nor change tenant B's rows in any table, by any statement; a pool shared by
//! interleaved tenants never returns a row of the wrong tenant.

mod common;

use std::collections::BTreeSet;

use common::{admin_config, alert, app_config, connect, store, tenant};
use tokio_postgres::Client;
use vigil_cases::Grouping;
use vigil_model::{Severity, TenantId};

const T0: i64 = 1_764_547_200_000;

/// Every table of the schema but the migration bookkeeping.
const TENANT_TABLES: [&str; 7] = [
    "tenants",
    "alerts",
    "cases",
    "case_slots",
    "case_alerts",
    "case_comments",
    "audit_log",
];

/// A case with an alert, a comment and audit entries for `t`.
async fn populate(store: &vigil_cases::Store, t: &TenantId) {
    let g = Grouping::default();
    store
        .record_alerts(
            t,
            &[alert(t, "rls_rule", "alice", T0, Severity::High)],
            &g,
            "engine",
        )
        .await
        .unwrap();
    store.add_comment(t, 1, "a note", "ana").await.unwrap();
}

/// Opens a transaction on `client` for `tenant` (or none).
async fn begin(client: &Client, tenant: Option<&TenantId>) {
    client.batch_execute("BEGIN").await.unwrap();
    if let Some(t) = tenant {
        client
            .execute(
                "SELECT set_config('vigil.tenant', $1, true)",
                &[&t.as_str()],
            )
            .await
            .unwrap();
    }
}

/// The SQLSTATE of a failed statement.
fn state(e: tokio_postgres::Error) -> String {
    e.code()
        .map_or_else(|| e.to_string(), |c| c.code().to_owned())
}

/// `sql` run as the app role inside a transaction for `tenant` (or none): rows affected, or
/// the SQLSTATE it failed with. Always rolled back.
async fn as_app(client: &Client, tenant: Option<&TenantId>, sql: &str) -> Result<u64, String> {
    begin(client, tenant).await;
    let r = client.execute(sql, &[]).await.map_err(state);
    client.batch_execute("ROLLBACK").await.unwrap();
    r
}

/// An UPDATE or DELETE run as the app role for `tenant`: the tenants of the rows it changed,
/// or the SQLSTATE it failed with. Always rolled back.
async fn changed_as_app(
    client: &Client,
    tenant: &TenantId,
    sql: &str,
) -> Result<Vec<String>, String> {
    begin(client, Some(tenant)).await;
    let r = client
        .query(&format!("{sql} RETURNING tenant_id"), &[])
        .await
        .map(|rows| rows.iter().map(|r| r.get(0)).collect())
        .map_err(state);
    client.batch_execute("ROLLBACK").await.unwrap();
    r
}

/// How many rows of tenant `of` in `table` the app role sees as `tenant` (or none).
async fn count_as_app(
    client: &Client,
    tenant: Option<&TenantId>,
    table: &str,
    of: &TenantId,
) -> i64 {
    begin(client, tenant).await;
    let n = client
        .query_one(
            &format!("SELECT count(*) FROM vigil.{table} WHERE tenant_id = $1"),
            &[&of.as_str()],
        )
        .await
        .unwrap()
        .get(0);
    client.batch_execute("ROLLBACK").await.unwrap();
    n
}

#[tokio::test]
async fn the_catalog_forces_row_level_security_on_every_tenant_table() {
    let _ = store(1).await;
    let admin = connect(&admin_config()).await;
    let rows = admin
        .query(
            "SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity,
                    pg_get_userbyid(c.relowner),
                    EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped),
                    (SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid)
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = 'vigil' AND c.relkind = 'r' ORDER BY c.relname",
            &[],
        )
        .await
        .unwrap();
    let mut tenant_tables = BTreeSet::new();
    for r in &rows {
        let name: String = r.get(0);
        if name == "schema_migrations" {
            continue;
        }
        let (rls, forced, owner, has_tenant, policies): (bool, bool, String, bool, i64) =
            (r.get(1), r.get(2), r.get(3), r.get(4), r.get(5));
        assert!(has_tenant, "{name} has no tenant_id");
        assert!(
            rls && forced,
            "{name}: row-level security enabled {rls}, forced {forced}"
        );
        assert_eq!(policies, 1, "{name} has {policies} policies");
        assert_ne!(
            owner, "vigil_app",
            "{name} is owned by the application role"
        );
        tenant_tables.insert(name);
    }
    assert_eq!(
        tenant_tables,
        TENANT_TABLES.iter().map(|s| s.to_string()).collect()
    );
    let role = admin
        .query_one(
            "SELECT rolsuper, rolbypassrls, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = 'vigil_app'",
            &[],
        )
        .await
        .unwrap();
    let flags: (bool, bool, bool, bool) = (role.get(0), role.get(1), role.get(2), role.get(3));
    assert_eq!(
        flags,
        (false, false, false, false),
        "vigil_app: super, bypassrls, createrole, createdb"
    );
    // The app can neither switch row-level security off nor query around it.
    let app = connect(&app_config()).await;
    let r = as_app(
        &app,
        None,
        "ALTER TABLE vigil.cases DISABLE ROW LEVEL SECURITY",
    )
    .await;
    assert_eq!(r, Err("42501".to_owned()), "not the owner");
    app.batch_execute("SET row_security = off").await.unwrap();
    let r = as_app(&app, None, "SELECT 1 FROM vigil.cases").await;
    assert_eq!(
        r,
        Err("42501".to_owned()),
        "row_security = off raises instead of bypassing"
    );
}

#[tokio::test]
async fn tenant_a_cannot_read_or_change_tenant_b_rows_in_any_table() {
    let store = store(2).await;
    let (a, b) = (tenant("rls_a"), tenant("rls_b"));
    populate(&store, &a).await;
    populate(&store, &b).await;
    let admin = connect(&admin_config()).await;
    let app = connect(&app_config()).await;
    let bq = b.as_str();
    for table in TENANT_TABLES {
        // B's rows exist (the superuser sees them), so the checks below can fail.
        let n: i64 = admin
            .query_one(
                &format!("SELECT count(*) FROM vigil.{table} WHERE tenant_id = $1"),
                &[&bq],
            )
            .await
            .unwrap()
            .get(0);
        assert!(n > 0, "{table} has no row of tenant B");
        assert_eq!(
            count_as_app(&app, Some(&b), table, &b).await,
            n,
            "{table}: B sees its rows"
        );

        // SELECT: as A, and with no tenant at all, none of B's rows.
        assert_eq!(
            count_as_app(&app, Some(&a), table, &b).await,
            0,
            "{table}: A reads B"
        );
        assert_eq!(
            count_as_app(&app, None, table, &b).await,
            0,
            "{table}: no tenant reads B"
        );

        // UPDATE and DELETE: zero rows, or refused outright (privilege, append-only).
        for sql in [
            format!("UPDATE vigil.{table} SET tenant_id = tenant_id WHERE tenant_id = '{bq}'"),
            format!(
                "UPDATE vigil.{table} SET tenant_id = '{}' WHERE tenant_id = '{bq}'",
                a.as_str()
            ),
            format!("DELETE FROM vigil.{table} WHERE tenant_id = '{bq}'"),
            format!("DELETE FROM vigil.{table}"),
        ] {
            if let Ok(changed) = changed_as_app(&app, &a, &sql).await {
                assert!(
                    !changed.iter().any(|t| t == bq),
                    "{sql}: changed rows of B as A"
                );
            }
            if table == "case_comments" && sql.starts_with("DELETE") {
                // The statement itself works for the rows' own tenant: RLS, not a missing
                // privilege, is what stopped A.
                assert!(
                    changed_as_app(&app, &b, &sql)
                        .await
                        .unwrap()
                        .iter()
                        .any(|t| t == bq)
                );
            }
        }
        // A's rows cannot be moved to B either.
        let steal = format!(
            "UPDATE vigil.{table} SET tenant_id = '{bq}' WHERE tenant_id = '{}'",
            a.as_str()
        );
        assert!(as_app(&app, Some(&a), &steal).await.is_err(), "{steal}");
    }
    // INSERT: a row for B, written as A, is refused by the policy's check (42501).
    let inserts = [
        format!("INSERT INTO vigil.tenants (tenant_id, created_by) VALUES ('{bq}x', 'x')"),
        format!(
            "INSERT INTO vigil.alerts (tenant_id, alert_id, rule_id, rule_version, title, severity, group_values, event_time, detected_at, body)
             VALUES ('{bq}', '00000000000000000000000000000001', 'r', 1, 't', 'low', '{{}}', now(), now(), '{{}}')"
        ),
        format!(
            "INSERT INTO vigil.cases (tenant_id, number, title, severity, rule_id, grouping_key, group_until, first_alert_at, last_alert_at, created_by)
             VALUES ('{bq}', 999, 't', 'low', 'r', 'k', now(), now(), now(), 'x')"
        ),
        format!("INSERT INTO vigil.case_alerts (tenant_id, alert_id, case_number) SELECT tenant_id, alert_id, 1 FROM vigil.alerts WHERE tenant_id = '{}'", a.as_str()),
        format!("INSERT INTO vigil.case_slots (tenant_id, grouping_key, case_number) VALUES ('{bq}', 'k2', 1)"),
        format!("INSERT INTO vigil.case_comments (tenant_id, case_number, body, created_by) VALUES ('{bq}', 1, 'x', 'x')"),
        format!("INSERT INTO vigil.audit_log (tenant_id, actor, action) VALUES ('{bq}', 'x', 'x')"),
    ];
    for sql in &inserts {
        let r = as_app(&app, Some(&a), sql).await;
        // case_alerts selects A's alert and A's case 1, already linked: the conflict is the
        // point only where the row is B's; here it is A's own row, refused as a duplicate.
        assert!(r.is_err(), "{sql}: {r:?}");
        if !sql.contains("case_alerts") {
            assert_eq!(r, Err("42501".to_owned()), "{sql}");
        }
    }
    // The same inserts with no tenant set are refused too.
    let r = as_app(&app, None, &inserts[inserts.len() - 1]).await;
    assert_eq!(r, Err("42501".to_owned()));
    // The audit log is append-only even for its tenant.
    let r = as_app(
        &app,
        Some(&b),
        &format!("UPDATE vigil.audit_log SET actor = 'x' WHERE tenant_id = '{bq}'"),
    )
    .await;
    assert!(r.is_err());
    let r = admin
        .batch_execute(&format!(
            "DELETE FROM vigil.audit_log WHERE tenant_id = '{bq}'"
        ))
        .await;
    assert!(r.is_err(), "the owner cannot delete audit entries either");
}

#[tokio::test]
async fn a_pool_shared_by_interleaved_tenants_returns_only_their_rows() {
    // Two connections for eight tasks of three tenants: every connection serves every tenant
    // many times over.
    let store = store(2).await;
    let tenants: Vec<TenantId> = (0..3).map(|i| tenant(&format!("soak{i}"))).collect();
    let tasks: Vec<_> = (0..8)
        .map(|n| {
            let (store, tenants) = (store.clone(), tenants.clone());
            tokio::spawn(async move {
                let g = Grouping::default();
                for i in 0..40 {
                    let t = &tenants[(n + i) % 3];
                    let rule = format!("soak_{}", t.as_str());
                    let a = alert(t, &rule, &format!("u{n}_{i}"), T0 + i as i64, Severity::Low);
                    loop {
                        match store
                            .record_alerts(t, std::slice::from_ref(&a), &g, "engine")
                            .await
                        {
                            Ok(_) => break,
                            Err(e) if e.is_transient() => continue,
                            Err(e) => panic!("{e}"),
                        }
                    }
                    let cases = store.cases(t, &common::all_cases()).await.unwrap();
                    assert!(!cases.is_empty());
                    for c in &cases {
                        assert_eq!(c.rule_id, rule, "tenant {t} got a case of another tenant");
                    }
                }
            })
        })
        .collect();
    for t in futures::future::join_all(tasks).await {
        t.unwrap();
    }
    let mut total = 0;
    for t in &tenants {
        let cases = store.cases(t, &common::all_cases()).await.unwrap();
        total += cases.len();
        let numbers: BTreeSet<i64> = cases.iter().map(|c| c.number).collect();
        assert_eq!(numbers, (1..=cases.len() as i64).collect());
    }
    assert_eq!(total, 8 * 40);
}
