//! Records that cross exchanges. All are serializable so that the same dataflow runs across
//! processes (`Config::Cluster`); none holds worker-local ids.

use serde::{Deserialize, Serialize};

use crate::compact::{Group, SmallStr};
use crate::event_id::EventId;

/// One event matched by one rule's filter, on its way to that rule's window state.
///
/// Laid out for the buffer that holds hits until their tenant's watermark passes them (tens
/// of thousands wait at 2,000 events/s and 10 s of lateness, far more than the caches): the
/// first 64 bytes hold everything applying a hit to its key reads, and hits start on a cache
/// line, so applying one misses the cache once. The other fields are read when the hit is
/// buffered (still in cache) and when it opens a key or fires.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[repr(C, align(64))]
pub struct Hit {
    /// The window key: 128-bit xxh3 of (tenant, rule identity, group values), length-prefixed.
    /// Identical in every process and across restarts of one rule version (the rule identity
    /// hashes its id, version and plan hash, not its index); `key[0]` routes the hit to its
    /// worker, so a restored key and new hits for it meet on one worker.
    pub key: [u64; 2],
    /// Event time, epoch milliseconds.
    pub ts: i64,
    /// For a sequence rule: bit `i` set when the event matches step `i`.
    pub steps: u64,
    /// What a distinct count or a numeric aggregate reads from the event.
    pub measure: Measure,
    /// Index of the rule in the loaded rule set (sorted by rule id, identical in every process).
    pub rule: u32,
    /// Input source the event came from.
    pub source: u16,
    /// The chunk the event was read in.
    pub epoch: u64,
    /// Largest event time of the same (source, tenant) earlier in the same chunk, or `i64::MIN`.
    pub prior_max: i64,
    /// Tenant id (validated).
    pub tenant: SmallStr,
    /// `event.id` (from the event, or derived from its position and content), in the compact
    /// form window state keeps.
    pub event_id: EventId,
    /// Canonical values of the rule's group-by fields, in field-path order.
    pub group: Group,
    /// Values for a single-event rule's title placeholders, in template order.
    pub title_values: Vec<Option<String>>,
}

// Applying a hit reads its first cache line only.
const _: () = assert!(std::mem::offset_of!(Hit, source) + 2 <= 64);
const _: () = assert!(size_of::<Hit>() == 192);

/// What a hit carries for its rule's aggregate, beyond the event's time and id.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Measure {
    /// Nothing: counts, sequences and single-event rules.
    None,
    /// xxh3-128 of the canonical value of the `distinct count of` field (as two words, which
    /// keeps the hit 8-byte aligned inside): windows count the hashes.
    Distinct([u64; 2]),
    /// The number a `sum`, `min`, `max` or `avg of` aggregates.
    Number(f64),
}

impl Measure {
    /// A distinct value's hash.
    pub fn distinct(h: u128) -> Measure {
        Measure::Distinct([(h >> 64) as u64, h as u64])
    }

    /// The distinct value's hash, if this is one.
    pub fn distinct_hash(self) -> Option<u128> {
        match self {
            Measure::Distinct([hi, lo]) => Some(u128::from(hi) << 64 | u128::from(lo)),
            _ => None,
        }
    }

    /// The number, if this is one.
    pub fn number(self) -> Option<f64> {
        match self {
            Measure::Number(n) => Some(n),
            _ => None,
        }
    }
}

/// What one chunk (epoch) contributed to event time: the largest event time per tenant, and the
/// wall-clock time the chunk was read at (live sources only, for idleness).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EpochSummary {
    /// The epoch (chunk sequence number).
    pub epoch: u64,
    /// Input source.
    pub source: u16,
    /// Largest event time per tenant in the chunk.
    pub tenants: Vec<(String, i64)>,
    /// Wall clock at read time, epoch ms; `None` for replayed input (files, and a stream's
    /// backlog).
    pub wall_ms: Option<i64>,
    /// A checkpoint barrier: every stateful operator snapshots its state right after this
    /// epoch (an empty chunk the engine inserts; see `vigil_engine` checkpoints).
    pub checkpoint: bool,
}

/// A rule fired for one group.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Firing {
    /// Index of the rule.
    pub rule: u32,
    /// Tenant id.
    pub tenant: String,
    /// Group values in field-path order (empty for single-event rules).
    pub group: Vec<String>,
    /// The triggering event's id.
    pub event_id: String,
    /// Title values, for single-event rules.
    pub title_values: Vec<Option<String>>,
    /// The aggregate at the moment of firing.
    pub value: f64,
    /// Earliest event time in the window at the moment of firing.
    pub start: i64,
    /// The triggering event's time (the window anchor).
    pub end: i64,
    /// Contributing event ids, oldest first, capped.
    pub events: Vec<String>,
    /// Events in the window at the moment of firing.
    pub event_count: u64,
    /// A health event about the rule in this tenant instead of a detection.
    pub health: Option<Health>,
}

/// Why a tenant's input was shed: the health events the engine raises as alerts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Health {
    /// The tenant holds its cap of live keys (on this worker): hits that would open a new key
    /// are dropped.
    KeyCap {
        /// The tenant's cap on this worker.
        cap: u64,
    },
    /// The rule raised its cap of alerts for the tenant in one minute of event time: the rest
    /// of that minute's are dropped.
    AlertRate {
        /// Alerts per rule, tenant and minute.
        cap: u64,
    },
}

impl Firing {
    /// The health event `health` for `rule` in `tenant`, anchored at `at` (the start of the
    /// period it reports on: one per rule, tenant and period).
    pub fn health(rule: u32, tenant: &str, health: Health, at: i64) -> Firing {
        let cap = match health {
            Health::KeyCap { cap } | Health::AlertRate { cap } => cap,
        };
        Firing {
            rule,
            tenant: tenant.to_owned(),
            group: Vec::new(),
            event_id: String::new(),
            title_values: Vec::new(),
            value: cap as f64,
            start: at,
            end: at,
            events: Vec::new(),
            event_count: 0,
            health: Some(health),
        }
    }
}
