//! Alerts into the store and onto cases, one transaction per batch of one tenant.

use std::collections::{BTreeMap, HashSet};
use std::time::SystemTime;

use serde_json::json;
use vigil_model::{Alert, Severity, TenantId};

use crate::grouping::Grouping;
use crate::{Error, Result, Store, TenantConn, millis, time};

/// What recording a batch did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recorded {
    /// Alerts stored (new).
    pub stored: u64,
    /// Alerts the store already had (a replay, another engine), or twice in the batch.
    pub duplicates: u64,
    /// Cases opened.
    pub cases_opened: u64,
    /// Existing cases that took alerts.
    pub cases_updated: u64,
}

impl std::ops::AddAssign for Recorded {
    fn add_assign(&mut self, o: Recorded) {
        self.stored += o.stored;
        self.duplicates += o.duplicates;
        self.cases_opened += o.cases_opened;
        self.cases_updated += o.cases_updated;
    }
}

/// A case of one grouping key while a batch is applied.
#[derive(Debug)]
struct Slot {
    number: i64,
    /// In the database before this batch.
    existing: bool,
    /// Open before this batch.
    was_open: bool,
    open: bool,
    count: i32,
    until: i64,
    severity: Severity,
    first: i64,
    last: i64,
    previous: Option<i64>,
    /// Alert ids this batch added.
    added: Vec<String>,
    /// For a new case (empty for existing ones): its title, tags and rule, from its first
    /// alert.
    title: String,
    tags: Vec<String>,
    rule_id: String,
    key: String,
}

impl Store {
    /// Stores `alerts` (all of `tenant`) and links each new one to its case, opening cases as
    /// [`Grouping`] says. Idempotent: an alert already stored is counted as a duplicate and
    /// changes nothing, so a replay, or two engines writing the same alert at once, leave one
    /// alert row and one link. One transaction: all or nothing.
    ///
    /// Concurrent writers of one tenant serialize on the tenant's row (`FOR NO KEY UPDATE`,
    /// held for the transaction), which also makes case numbers gapless and the open-slot
    /// check race-free; the unique index on open slots backs it up. The lock does not block
    /// the foreign-key checks of analysts' changes (`FOR KEY SHARE`), and the cases a batch
    /// touches are locked row by row, so a case an analyst closes meanwhile is seen closed:
    /// writers and analysts never deadlock.
    pub async fn record_alerts(
        &self,
        tenant: &TenantId,
        alerts: &[Alert],
        grouping: &Grouping,
        actor: &str,
    ) -> Result<Recorded> {
        if let Some(a) = alerts.iter().find(|a| a.tenant_id != *tenant) {
            return Err(Error::Invalid(format!(
                "alert {} belongs to tenant {}, not {tenant}",
                a.id, a.tenant_id
            )));
        }
        let mut seen = HashSet::new();
        let unique: Vec<&Alert> = alerts.iter().filter(|a| seen.insert(&a.id)).collect();
        let mut recorded = Recorded {
            duplicates: (alerts.len() - unique.len()) as u64,
            ..Recorded::default()
        };
        if unique.is_empty() {
            return Ok(recorded);
        }
        let tx = self.begin(tenant).await?;
        let c = tx.client();
        c.execute(
            "INSERT INTO vigil.tenants (tenant_id, created_by) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            &[&tx.tenant(), &actor],
        )
        .await?;
        let next: i64 = c
            .query_one(
                "SELECT next_case_number FROM vigil.tenants WHERE tenant_id = $1 FOR NO KEY UPDATE",
                &[&tx.tenant()],
            )
            .await?
            .get(0);
        let stored = insert_alerts(&tx, &unique).await?;
        recorded.stored = stored.len() as u64;
        recorded.duplicates += (unique.len() - stored.len()) as u64;

        let mut by_key: BTreeMap<String, Vec<&Alert>> = BTreeMap::new();
        for a in unique.into_iter().filter(|a| stored.contains(&a.id)) {
            by_key.entry(grouping.key(a)).or_default().push(a);
        }
        let keys: Vec<&str> = by_key.keys().map(String::as_str).collect();
        let mut latest = latest_cases(&tx, &keys).await?;
        let mut next_number = next;
        let mut slots = Vec::new();
        for (key, mut alerts) in by_key {
            alerts.sort_by(|a, b| (a.timestamp, &a.id).cmp(&(b.timestamp, &b.id)));
            let policy = grouping.policy(&alerts[0].rule_id);
            let window = i64::try_from(policy.window.as_millis()).unwrap_or(i64::MAX);
            let max = i32::try_from(policy.max_alerts.max(1)).unwrap_or(i32::MAX);
            let mut cur = latest.remove(&key);
            for a in alerts {
                let joins = cur
                    .as_ref()
                    .is_some_and(|s| s.open && s.count < max && a.timestamp < s.until);
                if !joins {
                    let previous = cur.as_ref().map(|s| s.number);
                    if let Some(mut s) = cur.take() {
                        s.open = false;
                        slots.push(s);
                    }
                    cur = Some(Slot {
                        number: next_number,
                        existing: false,
                        was_open: false,
                        open: true,
                        count: 0,
                        until: a.timestamp.saturating_add(window),
                        severity: a.severity,
                        first: a.timestamp,
                        last: a.timestamp,
                        previous,
                        added: Vec::new(),
                        title: a.title.clone(),
                        tags: a.tags.clone(),
                        rule_id: a.rule_id.clone(),
                        key: key.clone(),
                    });
                    next_number += 1;
                }
                let s = cur.as_mut().expect("a slot was just ensured");
                s.count += 1;
                s.severity = s.severity.max(a.severity);
                s.first = s.first.min(a.timestamp);
                s.last = s.last.max(a.timestamp);
                s.added.push(a.id.clone());
            }
            slots.extend(cur);
        }
        // Existing slots first: a slot closing frees the unique open-slot index for the new one.
        slots.sort_by_key(|s| (!s.existing, s.number));
        let mut links: (Vec<&str>, Vec<i64>) = Default::default();
        let mut audit: (Vec<&str>, Vec<i64>, Vec<serde_json::Value>) = Default::default();
        let changed: Vec<&Slot> = slots
            .iter()
            .filter(|s| s.existing && (!s.added.is_empty() || s.open != s.was_open))
            .collect();
        update_slots(&tx, &changed).await?;
        let opened: Vec<&Slot> = slots.iter().filter(|s| !s.existing).collect();
        insert_cases(&tx, &opened, actor).await?;
        for s in &slots {
            if s.existing {
                recorded.cases_updated += u64::from(!s.added.is_empty());
            } else {
                recorded.cases_opened += 1;
                audit.0.push("case.opened");
                audit.1.push(s.number);
                audit.2.push(json!({
                    "rule_id": s.rule_id, "grouping_key": s.key, "previous_case": s.previous
                }));
            }
            if !s.added.is_empty() {
                audit.0.push("case.alerts_added");
                audit.1.push(s.number);
                audit.2.push(json!({"alerts": s.added}));
            }
            for id in &s.added {
                links.0.push(id);
                links.1.push(s.number);
            }
        }
        c.execute(
            "INSERT INTO vigil.case_alerts (tenant_id, alert_id, case_number)
             SELECT $1, * FROM unnest($2::text[], $3::int8[])",
            &[&tx.tenant(), &links.0, &links.1],
        )
        .await?;
        c.execute(
            "INSERT INTO vigil.audit_log (tenant_id, actor, action, case_number, details)
             SELECT $1, $2, * FROM unnest($3::text[], $4::int8[], $5::jsonb[])",
            &[&tx.tenant(), &actor, &audit.0, &audit.1, &audit.2],
        )
        .await?;
        if next_number != next {
            c.execute(
                "UPDATE vigil.tenants SET next_case_number = $2, updated_at = now() WHERE tenant_id = $1",
                &[&tx.tenant(), &next_number],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(recorded)
    }
}

/// Inserts the alerts; returns the ids that were new.
async fn insert_alerts(tx: &TenantConn, alerts: &[&Alert]) -> Result<HashSet<String>> {
    let n = alerts.len();
    let mut cols = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for a in alerts {
        cols.0.push(a.id.as_str());
        cols.1.push(a.rule_id.as_str());
        cols.2.push(i64::from(a.rule_version));
        cols.3.push(a.title.as_str());
        cols.4.push(a.severity.as_str());
        let body = serde_json::to_value(a).map_err(|e| Error::Invalid(e.to_string()))?;
        cols.5.push(body["group"].clone());
        cols.6.push(time(a.timestamp));
        cols.7.push(time(a.detected_at));
        cols.8.push(body);
    }
    let rows = tx
        .client()
        .query(
            "INSERT INTO vigil.alerts (tenant_id, alert_id, rule_id, rule_version, title, severity,
                                       group_values, event_time, detected_at, body)
             SELECT $1, * FROM unnest($2::text[], $3::text[], $4::int8[], $5::text[], $6::text[],
                                      $7::jsonb[], $8::timestamptz[], $9::timestamptz[], $10::jsonb[])
             ON CONFLICT DO NOTHING
             RETURNING alert_id",
            &[
                &tx.tenant(),
                &cols.0,
                &cols.1,
                &cols.2,
                &cols.3,
                &cols.4,
                &cols.5,
                &cols.6,
                &cols.7,
                &cols.8,
            ],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// The newest case of each of `keys` (from `case_slots`), locked: its open slot if it has
/// one (only the newest case of a key can be open). Locked rows are re-read if an analyst changed them meanwhile
/// (a case closed under us is seen closed).
async fn latest_cases(tx: &TenantConn, keys: &[&str]) -> Result<BTreeMap<String, Slot>> {
    let rows = tx
        .client()
        .query(
            // Primary-key probes, one per key (the locking subqueries keep the planner from
            // turning them into scans of the tenant's slots or cases).
            "SELECT k.key, c.number, c.grouping_open, c.alert_count, c.group_until, c.severity,
                    c.first_alert_at, c.last_alert_at
             FROM unnest($2::text[]) AS k(key)
             CROSS JOIN LATERAL (
                 SELECT case_number FROM vigil.case_slots
                 WHERE tenant_id = $1 AND grouping_key = k.key FOR UPDATE) s
             CROSS JOIN LATERAL (
                 SELECT * FROM vigil.cases
                 WHERE tenant_id = $1 AND number = s.case_number FOR UPDATE) c",
            &[&tx.tenant(), &keys],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let key: String = r.get(0);
            let slot = Slot {
                number: r.get(1),
                existing: true,
                was_open: r.get(2),
                open: r.get(2),
                count: r.get(3),
                until: millis(r.get::<_, SystemTime>(4)),
                severity: Severity::parse(r.get(5)).unwrap_or(Severity::Informational),
                first: millis(r.get::<_, SystemTime>(6)),
                last: millis(r.get::<_, SystemTime>(7)),
                previous: None,
                added: Vec::new(),
                title: String::new(),
                tags: Vec::new(),
                rule_id: String::new(),
                key: key.clone(),
            };
            (key, slot)
        })
        .collect())
}

/// Writes the new counts, times, severities and slot states of existing cases.
async fn update_slots(tx: &TenantConn, slots: &[&Slot]) -> Result<()> {
    if slots.is_empty() {
        return Ok(());
    }
    let numbers: Vec<i64> = slots.iter().map(|s| s.number).collect();
    let counts: Vec<i32> = slots.iter().map(|s| s.count).collect();
    let severities: Vec<&str> = slots.iter().map(|s| s.severity.as_str()).collect();
    let firsts: Vec<SystemTime> = slots.iter().map(|s| time(s.first)).collect();
    let lasts: Vec<SystemTime> = slots.iter().map(|s| time(s.last)).collect();
    let open: Vec<bool> = slots.iter().map(|s| s.open).collect();
    tx.client()
        .execute(
            "UPDATE vigil.cases c
             SET alert_count = u.count, severity = u.severity, first_alert_at = u.first,
                 last_alert_at = u.last, grouping_open = u.open, updated_at = now(),
                 version = c.version + 1
             FROM unnest($2::int8[], $3::int4[], $4::text[], $5::timestamptz[],
                         $6::timestamptz[], $7::bool[]) AS u(number, count, severity, first, last, open)
             WHERE c.tenant_id = $1 AND c.number = u.number",
            &[&tx.tenant(), &numbers, &counts, &severities, &firsts, &lasts, &open],
        )
        .await?;
    Ok(())
}

/// Inserts new cases, in number order.
async fn insert_cases(tx: &TenantConn, slots: &[&Slot], actor: &str) -> Result<()> {
    if slots.is_empty() {
        return Ok(());
    }
    let numbers: Vec<i64> = slots.iter().map(|s| s.number).collect();
    let titles: Vec<&str> = slots.iter().map(|s| s.title.as_str()).collect();
    let severities: Vec<&str> = slots.iter().map(|s| s.severity.as_str()).collect();
    // Arrays of arrays must be rectangular in Postgres: tags travel as JSON.
    let tags: Vec<serde_json::Value> = slots.iter().map(|s| json!(s.tags)).collect();
    let rules: Vec<&str> = slots.iter().map(|s| s.rule_id.as_str()).collect();
    let keys: Vec<&str> = slots.iter().map(|s| s.key.as_str()).collect();
    let open: Vec<bool> = slots.iter().map(|s| s.open).collect();
    let until: Vec<SystemTime> = slots.iter().map(|s| time(s.until)).collect();
    let counts: Vec<i32> = slots.iter().map(|s| s.count).collect();
    let firsts: Vec<SystemTime> = slots.iter().map(|s| time(s.first)).collect();
    let lasts: Vec<SystemTime> = slots.iter().map(|s| time(s.last)).collect();
    let previous: Vec<Option<i64>> = slots.iter().map(|s| s.previous).collect();
    tx.client()
        .execute(
            "INSERT INTO vigil.cases (tenant_id, number, title, severity, tags, rule_id, grouping_key,
                                      grouping_open, group_until, alert_count, first_alert_at,
                                      last_alert_at, previous_case, created_by)
             SELECT $1, n.number, n.title, n.severity,
                    ARRAY(SELECT jsonb_array_elements_text(n.tags)), n.rule_id, n.key, n.open,
                    n.until, n.count, n.first, n.last, n.previous, $14
             FROM unnest($2::int8[], $3::text[], $4::text[], $5::jsonb[], $6::text[], $7::text[],
                         $8::bool[], $9::timestamptz[], $10::int4[], $11::timestamptz[],
                         $12::timestamptz[], $13::int8[])
                  AS n(number, title, severity, tags, rule_id, key, open, until, count, first, last, previous)
             ORDER BY n.number",
            &[
                &tx.tenant(),
                &numbers,
                &titles,
                &severities,
                &tags,
                &rules,
                &keys,
                &open,
                &until,
                &counts,
                &firsts,
                &lasts,
                &previous,
                &actor,
            ],
        )
        .await?;
    // The newest case of each key (the last of a key in number order wins).
    tx.client()
        .execute(
            "INSERT INTO vigil.case_slots (tenant_id, grouping_key, case_number)
             SELECT DISTINCT ON (key) $1, key, number
             FROM unnest($2::text[], $3::int8[]) AS n(key, number)
             ORDER BY key, number DESC
             ON CONFLICT (tenant_id, grouping_key) DO UPDATE SET case_number = EXCLUDED.case_number",
            &[&tx.tenant(), &keys, &numbers],
        )
        .await?;
    Ok(())
}
