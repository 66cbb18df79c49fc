//! Stream and subject names (`SEMANTICS.md`, Names). Per-tenant subjects are built only from a
//! validated [`TenantId`], whose grammar has no `.`, `*` or `>`, so a tenant can never address
//! another tenant's subject or a wildcard.

use vigil_model::TenantId;

/// The kinds of per-tenant subject, each stored in one stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Subject {
    /// `raw.events.{tenant}` in `RAW`: events as ingested.
    RawEvents,
    /// `normalized.events.{tenant}` in `NORMALIZED`: canonical events.
    NormalizedEvents,
    /// `alerts.{tenant}` in `ALERTS`.
    Alerts,
    /// `dlq.events.{tenant}` in `DLQ`: events that failed ingest checks or normalization.
    DlqEvents,
    /// `dlq.alerts.{tenant}` in `DLQ`: alerts a sink could not take.
    DlqAlerts,
}

impl Subject {
    /// Every subject kind.
    pub const ALL: [Subject; 5] = [
        Subject::RawEvents,
        Subject::NormalizedEvents,
        Subject::Alerts,
        Subject::DlqEvents,
        Subject::DlqAlerts,
    ];

    /// The subject prefix, before the tenant token.
    pub fn prefix(self) -> &'static str {
        match self {
            Subject::RawEvents => "raw.events",
            Subject::NormalizedEvents => "normalized.events",
            Subject::Alerts => "alerts",
            Subject::DlqEvents => "dlq.events",
            Subject::DlqAlerts => "dlq.alerts",
        }
    }

    /// The stream that stores this subject.
    pub fn stream(self) -> &'static str {
        match self {
            Subject::RawEvents => "RAW",
            Subject::NormalizedEvents => "NORMALIZED",
            Subject::Alerts => "ALERTS",
            Subject::DlqEvents | Subject::DlqAlerts => "DLQ",
        }
    }

    /// The subject of one tenant.
    pub fn for_tenant(self, tenant: &TenantId) -> String {
        format!("{}.{}", self.prefix(), tenant.as_str())
    }

    /// The stream's filter for every tenant (`raw.events.*`). Used only in stream definitions
    /// and engine-wide consumers, never to address one tenant.
    pub fn all_tenants(self) -> String {
        format!("{}.*", self.prefix())
    }

    /// The tenant a subject of this kind belongs to, if it is one.
    pub fn tenant_of(self, subject: &str) -> Option<TenantId> {
        let rest = subject.strip_prefix(self.prefix())?.strip_prefix('.')?;
        TenantId::parse(rest).ok()
    }
}

/// The `Nats-Msg-Id` of a tenant's message. JetStream deduplicates by message id across the
/// whole stream, whatever the subject, so an unscoped event id chosen by one tenant could make
/// another tenant's event with the same id look like a duplicate and be dropped. Scoping the
/// id by tenant keeps deduplication inside the tenant.
pub fn msg_id(tenant: &TenantId, id: &str) -> String {
    format!("{}:{id}", tenant.as_str())
}

/// The `Nats-Msg-Id` of the DLQ message for the raw message at stream sequence `seq` of `RAW`
/// that failed normalization. The same in every process that normalizes it (`vigil normalize`
/// and an engine reading `RAW`), so the DLQ stores one copy. Sequences are unique in `RAW`,
/// so no tenant scope is needed.
pub fn raw_reject_msg_id(seq: u64) -> String {
    format!("raw:{seq}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_per_tenant() {
        let acme = TenantId::parse("acme").unwrap();
        assert_eq!(Subject::RawEvents.for_tenant(&acme), "raw.events.acme");
        assert_eq!(
            Subject::NormalizedEvents.for_tenant(&acme),
            "normalized.events.acme"
        );
        assert_eq!(Subject::Alerts.for_tenant(&acme), "alerts.acme");
        assert_eq!(Subject::DlqEvents.for_tenant(&acme), "dlq.events.acme");
        assert_eq!(Subject::DlqAlerts.stream(), "DLQ");
        assert_eq!(Subject::RawEvents.all_tenants(), "raw.events.*");
    }

    #[test]
    fn message_ids_are_scoped_by_tenant() {
        let (a, b) = (
            TenantId::parse("acme").unwrap(),
            TenantId::parse("globex").unwrap(),
        );
        assert_eq!(msg_id(&a, "e1"), "acme:e1");
        assert_ne!(msg_id(&a, "e1"), msg_id(&b, "e1"));
    }

    #[test]
    fn tenant_of_round_trips_and_refuses_attack_payloads() {
        let acme = TenantId::parse("acme").unwrap();
        for s in Subject::ALL {
            assert_eq!(s.tenant_of(&s.for_tenant(&acme)), Some(acme.clone()));
        }
        for bad in [
            "raw.events.*",
            "raw.events.>",
            "raw.events.acme.x",
            "raw.events.",
            "raw.events",
            "raw.eventsacme",
            "raw.events.a,b",
            "raw.events.../..",
            "normalized.events.acme",
            "raw.events.ACME",
        ] {
            assert_eq!(Subject::RawEvents.tenant_of(bad), None, "{bad}");
        }
    }
}
