//! What one rule computes per key ([`RuleSpec`]) and the state it keeps ([`KeyState`]):
//! windowed aggregates ([`crate::window`]) or sequences ([`crate::sequence`]).

use serde::{Deserialize, Serialize};

use crate::compact::Group;
use crate::sequence::{SequenceSpec, SequenceState};
use crate::window::{WindowKind, WindowSpec, WindowState};

/// The parameters of one rule, indexed by [`crate::Hit::rule`].
#[derive(Clone, Debug, PartialEq)]
pub enum RuleSpec {
    /// A windowed aggregate, or a single-event rule.
    Window(WindowSpec),
    /// Ordered steps by key.
    Sequence(SequenceSpec),
}

impl RuleSpec {
    /// Whether every on-time hit fires by itself, with no state.
    pub fn is_single(&self) -> bool {
        matches!(self, RuleSpec::Window(w) if w.kind == WindowKind::Single)
    }
}

/// What applying one event (or a watermark) to a key's state did.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome<F> {
    /// Nothing to report.
    Quiet,
    /// The rule fires.
    Fired(F),
    /// The rule would fire, but the key is suppressed: the match is discarded, and counted.
    Suppressed,
}

impl<F> Outcome<F> {
    /// The firing, if the rule fired.
    pub fn fired(self) -> Option<F> {
        match self {
            Outcome::Fired(f) => Some(f),
            Outcome::Quiet | Outcome::Suppressed => None,
        }
    }
}

/// The state of one (tenant, rule, group) key.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum KeyState {
    /// Of a windowed aggregate.
    Window(WindowState),
    /// Of a sequence.
    Sequence(SequenceState),
}

impl KeyState {
    /// Fresh state for a key of `spec` with these group values.
    pub fn new(spec: &RuleSpec, group: &Group) -> Self {
        match spec {
            RuleSpec::Window(_) => KeyState::Window(WindowState::default()),
            RuleSpec::Sequence(_) => KeyState::Sequence(SequenceState::new(group.clone())),
        }
    }

    /// Whether the state can be dropped at watermark `wm` without changing any future result.
    pub fn expired(&self, spec: &RuleSpec, wm: i64) -> bool {
        match (self, spec) {
            (KeyState::Window(s), RuleSpec::Window(w)) => s.expired(w, wm),
            (KeyState::Sequence(s), RuleSpec::Sequence(q)) => s.expired(q, wm),
            // A key restored under a rule of another kind cannot be used.
            _ => true,
        }
    }

    /// A time before which [`KeyState::expired`] cannot hold if no event arrives (a key
    /// restored under a rule of another kind: at once).
    pub fn expiry(&self, spec: &RuleSpec) -> i64 {
        match (self, spec) {
            (KeyState::Window(s), RuleSpec::Window(w)) => s.expiry(w),
            (KeyState::Sequence(s), RuleSpec::Sequence(q)) => s.expiry(q),
            _ => i64::MIN,
        }
    }

    /// Reads the memory the next event (with this distinct value, if it has one) will touch, so
    /// that it is in cache when that event is applied: the value is meaningless.
    pub fn warm(&self, distinct: Option<u128>) -> i64 {
        match self {
            KeyState::Window(s) => s.warm(distinct),
            KeyState::Sequence(s) => s.warm(),
        }
    }

    /// Bytes of heap memory the state holds.
    pub fn heap_bytes(&self) -> usize {
        match self {
            KeyState::Window(s) => s.heap_bytes(),
            KeyState::Sequence(s) => s.heap_bytes(),
        }
    }
}
