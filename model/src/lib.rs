//! Shared types of Vigil, kept small and dependency-light: tenant ids, severities, event time,
//! durations, alert ids and the alert record itself.
//!
//! Everything here is part of a contract in `SEMANTICS.md`: changing the tenant id grammar, the
//! alert id encoding or the canonical timestamp format is a breaking change.

pub mod alert;
pub mod duration;
pub mod severity;
pub mod tenant;
pub mod threshold;
pub mod time;

pub use alert::{Alert, AlertWindow, alert_id};
pub use duration::{DurationError, parse_duration};
pub use severity::Severity;
pub use tenant::{InvalidTenant, TenantId, is_valid_tenant};
pub use threshold::{Bound, Threshold};

/// Version of the canonical event and alert schemas written into every event and alert.
pub const SCHEMA_VERSION: u32 = 1;
