//! Cases as analysts work them: read, filter, change status and fields with optimistic
//! concurrency, comment; every change lands in the audit log in the same transaction.

use std::time::SystemTime;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Value, json};
use tokio_postgres::Row;
use vigil_model::{Severity, TenantId};

use crate::{Error, Result, Store, TenantConn, millis};

macro_rules! text_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vm])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            /// The name stored in the database and used by the API.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            /// The value named `s`.
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($text => Some($name::$variant),)+ _ => None }
            }
        }
    };
}

text_enum! {
    /// Where a case stands.
    Status {
        /// Opened by an alert, nobody on it yet.
        New = "new",
        /// Someone works it.
        InProgress = "in_progress",
        /// Waiting (for the customer, for data).
        OnHold = "on_hold",
        /// Done, with a resolution and an impact; takes no alerts again.
        Closed = "closed",
    }
}

text_enum! {
    /// What a closed case turned out to be.
    Resolution {
        /// A real attack.
        TruePositive = "true_positive",
        /// Real activity, authorized (a pentest, an admin).
        BenignPositive = "benign_positive",
        /// The rule was wrong.
        FalsePositive = "false_positive",
        /// Another case covers it.
        Duplicate = "duplicate",
    }
}

text_enum! {
    /// How much harm a closed case did.
    Impact {
        /// None.
        None = "none",
        /// Low.
        Low = "low",
        /// Medium.
        Medium = "medium",
        /// High.
        High = "high",
        /// Critical.
        Critical = "critical",
    }
}

impl Status {
    /// Whether a case may move from `self` to `next`: forward from `new`, back and forth
    /// between `in_progress` and `on_hold`, to `closed` from anywhere open, never out of
    /// `closed`.
    pub fn can_become(self, next: Status) -> bool {
        use Status::*;
        matches!(
            (self, next),
            (New, InProgress | OnHold | Closed)
                | (InProgress, OnHold | Closed)
                | (OnHold, InProgress | Closed)
        )
    }
}

/// A case.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Case {
    /// The tenant's case number (1, 2, ...).
    pub number: i64,
    /// Title (from the first alert unless changed).
    pub title: String,
    /// The highest severity of its alerts unless changed.
    pub severity: Severity,
    /// Status.
    pub status: Status,
    /// Set when closed.
    pub resolution: Option<Resolution>,
    /// Set when closed.
    pub impact: Option<Impact>,
    /// Who works it.
    pub assignee: Option<String>,
    /// Tags (the rule's, then the analysts').
    pub tags: Vec<String>,
    /// The rule whose alerts it groups.
    pub rule_id: String,
    /// Whether new alerts of its grouping key still join it.
    pub accepts_alerts: bool,
    /// Alerts linked.
    pub alert_count: i32,
    /// Event time of its earliest alert.
    #[serde(with = "vigil_model::time::rfc3339")]
    pub first_alert_at: i64,
    /// Event time of its latest alert.
    #[serde(with = "vigil_model::time::rfc3339")]
    pub last_alert_at: i64,
    /// The case of the same grouping key before this one (closed, full, or past its window).
    pub previous_case: Option<i64>,
    /// Raised by every change; a change names the version it read.
    pub version: i64,
    /// When created.
    #[serde(with = "vigil_model::time::rfc3339")]
    pub created_at: i64,
    /// When last changed.
    #[serde(with = "vigil_model::time::rfc3339")]
    pub updated_at: i64,
    /// Who created it (the engine for cases opened by alerts).
    pub created_by: String,
    /// When closed.
    #[serde(with = "vigil_model::time::rfc3339::option")]
    pub closed_at: Option<i64>,
}

const CASE_COLUMNS: &str = "number, title, severity, status, resolution, impact, assignee, tags, \
     rule_id, grouping_open, alert_count, first_alert_at, last_alert_at, previous_case, version, \
     created_at, updated_at, created_by, closed_at";

fn ms(row: &Row, i: usize) -> i64 {
    millis(row.get::<_, SystemTime>(i))
}

impl Case {
    fn from_row(r: &Row) -> Case {
        Case {
            number: r.get(0),
            title: r.get(1),
            severity: Severity::parse(r.get(2)).unwrap_or(Severity::Informational),
            status: Status::parse(r.get(3)).unwrap_or(Status::New),
            resolution: r.get::<_, Option<&str>>(4).and_then(Resolution::parse),
            impact: r.get::<_, Option<&str>>(5).and_then(Impact::parse),
            assignee: r.get(6),
            tags: r.get(7),
            rule_id: r.get(8),
            accepts_alerts: r.get(9),
            alert_count: r.get(10),
            first_alert_at: ms(r, 11),
            last_alert_at: ms(r, 12),
            previous_case: r.get(13),
            version: r.get(14),
            created_at: ms(r, 15),
            updated_at: ms(r, 16),
            created_by: r.get(17),
            closed_at: r.get::<_, Option<SystemTime>>(18).map(millis),
        }
    }
}

/// An alert on a case, as the case lists it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CaseAlert {
    /// The alert id (the `_id` in `alerts-{tenant}`).
    pub id: String,
    /// The rule.
    pub rule_id: String,
    /// Title.
    pub title: String,
    /// Severity.
    pub severity: Severity,
    /// Event time.
    #[serde(rename = "@timestamp", with = "vigil_model::time::rfc3339")]
    pub timestamp: i64,
}

/// A comment.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Comment {
    /// Id (per tenant).
    pub id: i64,
    /// Text.
    pub body: String,
    /// Author.
    pub created_by: String,
    /// When written.
    #[serde(with = "vigil_model::time::rfc3339")]
    pub created_at: i64,
}

/// One audit log entry.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AuditEntry {
    /// Order within the tenant.
    pub seq: i64,
    /// When.
    #[serde(with = "vigil_model::time::rfc3339")]
    pub at: i64,
    /// Who (a user, or the engine).
    pub actor: String,
    /// What (`case.opened`, `case.alerts_added`, `case.updated`, `comment.added`, ...).
    pub action: String,
    /// The case concerned.
    pub case_number: Option<i64>,
    /// The change.
    pub details: Value,
}

/// A case with its alerts and comments.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CaseDetail {
    /// The case.
    #[serde(flatten)]
    pub case: Case,
    /// Its alerts, oldest first (up to 1,000).
    pub alerts: Vec<CaseAlert>,
    /// Its comments, oldest first.
    pub comments: Vec<Comment>,
}

/// Which cases to list, newest first.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseFilter {
    /// Only cases in this status.
    pub status: Option<Status>,
    /// Only cases of this assignee.
    pub assignee: Option<String>,
    /// Only cases numbered below this (the previous page's last number).
    pub before: Option<i64>,
    /// At most this many (default 50, at most 500).
    pub limit: Option<i64>,
}

/// A change to a case; absent fields stay as they are. `assignee: null` unassigns.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseChange {
    /// New title.
    pub title: Option<String>,
    /// New severity.
    pub severity: Option<Severity>,
    /// New status (see [`Status::can_become`]).
    pub status: Option<Status>,
    /// With `status: closed`: required.
    pub resolution: Option<Resolution>,
    /// With `status: closed`: required.
    pub impact: Option<Impact>,
    /// New assignee, or `null` to unassign.
    #[serde(default, deserialize_with = "present")]
    pub assignee: Option<Option<String>>,
    /// New tags (the whole list).
    pub tags: Option<Vec<String>>,
}

/// A field that is present (maybe `null`) is `Some`.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

impl CaseChange {
    /// Checks the change against `case` and returns the fields it changes, old and new.
    fn diff(&self, case: &Case) -> Result<Vec<(&'static str, Value, Value)>> {
        if case.status == Status::Closed {
            return Err(Error::Invalid(format!(
                "case {} is closed; closed cases do not change (comment on it, or open a new one)",
                case.number
            )));
        }
        let closing = self.status == Some(Status::Closed);
        if let Some(next) = self.status
            && next != case.status
            && !case.status.can_become(next)
        {
            return Err(Error::Invalid(format!(
                "case {} cannot go from {} to {}",
                case.number,
                case.status.as_str(),
                next.as_str()
            )));
        }
        if closing && (self.resolution.is_none() || self.impact.is_none()) {
            return Err(Error::Invalid(
                "closing a case needs a resolution and an impact".to_owned(),
            ));
        }
        if !closing && (self.resolution.is_some() || self.impact.is_some()) {
            return Err(Error::Invalid(
                "resolution and impact are set when closing (status: closed)".to_owned(),
            ));
        }
        if let Some(t) = &self.title
            && (t.trim().is_empty() || t.len() > 1024)
        {
            return Err(Error::Invalid(
                "a title has 1 to 1024 bytes and is not blank".to_owned(),
            ));
        }
        if let Some(tags) = &self.tags
            && (tags.len() > 64 || tags.iter().any(|t| t.is_empty() || t.len() > 128))
        {
            return Err(Error::Invalid(
                "at most 64 tags of 1 to 128 bytes".to_owned(),
            ));
        }
        if let Some(Some(a)) = &self.assignee
            && (a.is_empty() || a.len() > 256)
        {
            return Err(Error::Invalid("an assignee has 1 to 256 bytes".to_owned()));
        }
        let mut diff = Vec::new();
        let mut field = |name, old: Value, new: Value| {
            if old != new {
                diff.push((name, old, new));
            }
        };
        if let Some(t) = &self.title {
            field("title", json!(case.title), json!(t));
        }
        if let Some(s) = self.severity {
            field("severity", json!(case.severity), json!(s));
        }
        if let Some(s) = self.status {
            field("status", json!(case.status), json!(s));
        }
        if let Some(r) = self.resolution {
            field("resolution", Value::Null, json!(r));
        }
        if let Some(i) = self.impact {
            field("impact", Value::Null, json!(i));
        }
        if let Some(a) = &self.assignee {
            field("assignee", json!(case.assignee), json!(a));
        }
        if let Some(t) = &self.tags {
            field("tags", json!(case.tags), json!(t));
        }
        Ok(diff)
    }
}

/// Writes one audit entry in the transaction `tx`.
async fn audit(
    tx: &TenantConn,
    actor: &str,
    action: &str,
    case: Option<i64>,
    details: Value,
) -> Result<()> {
    tx.client()
        .execute(
            "INSERT INTO vigil.audit_log (tenant_id, actor, action, case_number, details)
             VALUES ($1, $2, $3, $4, $5)",
            &[&tx.tenant(), &actor, &action, &case, &details],
        )
        .await?;
    Ok(())
}

impl Store {
    /// The tenant's cases, newest first.
    pub async fn cases(&self, tenant: &TenantId, filter: &CaseFilter) -> Result<Vec<Case>> {
        let limit = filter.limit.unwrap_or(50).clamp(1, 500);
        let tx = self.begin(tenant).await?;
        let rows = tx
            .client()
            .query(
                &format!(
                    "SELECT {CASE_COLUMNS} FROM vigil.cases
                     WHERE tenant_id = $1
                       AND ($2::text IS NULL OR status = $2)
                       AND ($3::text IS NULL OR assignee = $3)
                       AND ($4::int8 IS NULL OR number < $4)
                     ORDER BY number DESC LIMIT $5"
                ),
                &[
                    &tx.tenant(),
                    &filter.status.map(Status::as_str),
                    &filter.assignee,
                    &filter.before,
                    &limit,
                ],
            )
            .await?;
        tx.commit().await?;
        Ok(rows.iter().map(Case::from_row).collect())
    }

    /// One case with its alerts and comments; `None` if the tenant has no such case.
    pub async fn case(&self, tenant: &TenantId, number: i64) -> Result<Option<CaseDetail>> {
        let tx = self.begin(tenant).await?;
        let Some(case) = load(&tx, number, false).await? else {
            return Ok(None);
        };
        let c = tx.client();
        let alerts = c
            .query(
                "SELECT a.alert_id, a.rule_id, a.title, a.severity, a.event_time
                 FROM vigil.case_alerts l
                 JOIN vigil.alerts a ON a.tenant_id = l.tenant_id AND a.alert_id = l.alert_id
                 WHERE l.tenant_id = $1 AND l.case_number = $2
                 ORDER BY a.event_time, a.alert_id LIMIT 1000",
                &[&tx.tenant(), &number],
            )
            .await?
            .iter()
            .map(|r| CaseAlert {
                id: r.get(0),
                rule_id: r.get(1),
                title: r.get(2),
                severity: Severity::parse(r.get(3)).unwrap_or(Severity::Informational),
                timestamp: ms(r, 4),
            })
            .collect();
        let comments = c
            .query(
                "SELECT comment_id, body, created_by, created_at FROM vigil.case_comments
                 WHERE tenant_id = $1 AND case_number = $2 ORDER BY comment_id",
                &[&tx.tenant(), &number],
            )
            .await?
            .iter()
            .map(|r| Comment {
                id: r.get(0),
                body: r.get(1),
                created_by: r.get(2),
                created_at: ms(r, 3),
            })
            .collect();
        tx.commit().await?;
        Ok(Some(CaseDetail {
            case,
            alerts,
            comments,
        }))
    }

    /// Applies `change` to case `number` if it is still at `version`; returns the case as
    /// changed. A change that changes nothing leaves the case (and its version) alone.
    pub async fn update_case(
        &self,
        tenant: &TenantId,
        number: i64,
        version: i64,
        change: &CaseChange,
        actor: &str,
    ) -> Result<Case> {
        let tx = self.begin(tenant).await?;
        let case = load(&tx, number, true)
            .await?
            .ok_or(Error::NotFound(number))?;
        if case.version != version {
            return Err(Error::Conflict {
                number,
                expected: version,
                current: case.version,
            });
        }
        let diff = change.diff(&case)?;
        if diff.is_empty() {
            return Ok(case);
        }
        let assignee = change.assignee.as_ref().map(Option::as_deref);
        let row = tx
            .client()
            .query_one(
                &format!(
                    "UPDATE vigil.cases SET
                         title = coalesce($3, title),
                         severity = coalesce($4, severity),
                         status = coalesce($5, status),
                         resolution = coalesce($6, resolution),
                         impact = coalesce($7, impact),
                         assignee = CASE WHEN $8 THEN $9 ELSE assignee END,
                         tags = coalesce($10, tags),
                         grouping_open = grouping_open AND coalesce($5, status) <> 'closed',
                         closed_at = CASE WHEN coalesce($5, status) = 'closed' THEN now() END,
                         version = version + 1,
                         updated_at = now()
                     WHERE tenant_id = $1 AND number = $2
                     RETURNING {CASE_COLUMNS}"
                ),
                &[
                    &tx.tenant(),
                    &number,
                    &change.title,
                    &change.severity.map(Severity::as_str),
                    &change.status.map(Status::as_str),
                    &change.resolution.map(Resolution::as_str),
                    &change.impact.map(Impact::as_str),
                    &assignee.is_some(),
                    &assignee.flatten(),
                    &change.tags,
                ],
            )
            .await?;
        let changes: serde_json::Map<String, Value> = diff
            .into_iter()
            .map(|(f, old, new)| (f.to_owned(), json!({"from": old, "to": new})))
            .collect();
        audit(
            &tx,
            actor,
            "case.updated",
            Some(number),
            Value::Object(changes),
        )
        .await?;
        tx.commit().await?;
        Ok(Case::from_row(&row))
    }

    /// Adds a comment to case `number`.
    pub async fn add_comment(
        &self,
        tenant: &TenantId,
        number: i64,
        body: &str,
        actor: &str,
    ) -> Result<Comment> {
        if body.trim().is_empty() || body.len() > 65536 {
            return Err(Error::Invalid(
                "a comment has 1 to 65,536 bytes and is not blank".to_owned(),
            ));
        }
        let tx = self.begin(tenant).await?;
        load(&tx, number, false)
            .await?
            .ok_or(Error::NotFound(number))?;
        let r = tx
            .client()
            .query_one(
                "INSERT INTO vigil.case_comments (tenant_id, case_number, body, created_by)
                 VALUES ($1, $2, $3, $4) RETURNING comment_id, created_at",
                &[&tx.tenant(), &number, &body, &actor],
            )
            .await?;
        let comment = Comment {
            id: r.get(0),
            body: body.to_owned(),
            created_by: actor.to_owned(),
            created_at: ms(&r, 1),
        };
        audit(
            &tx,
            actor,
            "comment.added",
            Some(number),
            json!({"comment": comment.id}),
        )
        .await?;
        tx.commit().await?;
        Ok(comment)
    }

    /// Deletes comment `id` of case `number` (the audit log keeps that it existed and who
    /// deleted it). `false` if there is no such comment.
    pub async fn delete_comment(
        &self,
        tenant: &TenantId,
        number: i64,
        id: i64,
        actor: &str,
    ) -> Result<bool> {
        let tx = self.begin(tenant).await?;
        let deleted = tx
            .client()
            .execute(
                "DELETE FROM vigil.case_comments WHERE tenant_id = $1 AND case_number = $2 AND comment_id = $3",
                &[&tx.tenant(), &number, &id],
            )
            .await?;
        if deleted == 0 {
            return Ok(false);
        }
        audit(
            &tx,
            actor,
            "comment.deleted",
            Some(number),
            json!({"comment": id}),
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// The audit log of case `number`, oldest first.
    pub async fn audit_log(&self, tenant: &TenantId, number: i64) -> Result<Vec<AuditEntry>> {
        let tx = self.begin(tenant).await?;
        let rows = tx
            .client()
            .query(
                "SELECT seq, at, actor, action, case_number, details FROM vigil.audit_log
                 WHERE tenant_id = $1 AND case_number = $2 ORDER BY seq",
                &[&tx.tenant(), &number],
            )
            .await?;
        tx.commit().await?;
        Ok(rows
            .iter()
            .map(|r| AuditEntry {
                seq: r.get(0),
                at: ms(r, 1),
                actor: r.get(2),
                action: r.get(3),
                case_number: r.get(4),
                details: r.get(5),
            })
            .collect())
    }
}

/// Case `number` of the transaction's tenant, locked for update when `lock`.
async fn load(tx: &TenantConn, number: i64, lock: bool) -> Result<Option<Case>> {
    let sql = format!(
        "SELECT {CASE_COLUMNS} FROM vigil.cases WHERE tenant_id = $1 AND number = $2{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    let row = tx
        .client()
        .query_opt(&sql, &[&tx.tenant(), &number])
        .await?;
    Ok(row.as_ref().map(Case::from_row))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitions() {
        use Status::*;
        assert!(New.can_become(InProgress));
        assert!(InProgress.can_become(OnHold) && OnHold.can_become(InProgress));
        assert!(OnHold.can_become(Closed) && New.can_become(Closed));
        assert!(!Closed.can_become(InProgress) && !Closed.can_become(New));
        assert!(!InProgress.can_become(New));
        for s in [New, InProgress, OnHold, Closed] {
            assert_eq!(Status::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_value(s).unwrap(), json!(s.as_str()));
        }
    }

    #[test]
    fn changes_parse_null_assignee_as_unassign() {
        let c: CaseChange = serde_json::from_str(r#"{"assignee": null}"#).unwrap();
        assert_eq!(c.assignee, Some(None));
        let c: CaseChange = serde_json::from_str(r#"{"title": "x"}"#).unwrap();
        assert_eq!(c.assignee, None);
        assert!(serde_json::from_str::<CaseChange>(r#"{"number": 3}"#).is_err());
    }
}
