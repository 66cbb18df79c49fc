//! The compiled rule set: what the engine executes. Field references are interned to
//! [`FieldId`]s into [`RuleSet::fields`]; everything is validated, so evaluation cannot fail.

use std::fmt::{self, Write as _};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use vigil_model::{Severity, Threshold};

use crate::lists::ListHandle;
use crate::template::Template;

/// Index into [`RuleSet::fields`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FieldId(pub u16);

/// Every compiled rule, sorted by id, and the fields they reference.
#[derive(Clone, Debug, Default)]
pub struct RuleSet {
    /// The rules, sorted by id (ids are unique).
    pub rules: Vec<RulePlan>,
    /// Dotted paths of every field any rule reads, indexed by [`FieldId`].
    pub fields: Vec<String>,
    /// The named lists the rules were checked against (`*.list` files); reload them in place.
    pub lists: crate::lists::Lists,
    /// Number of files the rules came from.
    pub files: usize,
}

impl RuleSet {
    /// The path of a field id.
    pub fn path(&self, f: FieldId) -> &str {
        &self.fields[usize::from(f.0)]
    }
}

/// One compiled rule.
#[derive(Clone, Debug)]
pub struct RulePlan {
    /// Rule id.
    pub id: String,
    /// Rule version (≥ 1).
    pub version: u32,
    /// Title template.
    pub title: Template,
    /// Severity when no `severity … if` condition holds.
    pub severity: Severity,
    /// `severity NAME if EXPR`, in order: the first whose condition holds on the alert's fields
    /// sets its severity.
    pub severity_if: Vec<(Severity, Predicate)>,
    /// Risk score of the alert, 0–100 (default from the severity: 21, 47, 73, 99).
    pub risk_score: u32,
    /// Tags.
    pub tags: Vec<String>,
    /// Description template.
    pub description: Option<Template>,
    /// Who wrote the rule.
    pub author: Option<String>,
    /// Links to what the rule detects.
    pub references: Vec<String>,
    /// Known benign causes, for the analyst.
    pub false_positives: Vec<String>,
    /// Which events the rule looks at.
    pub filter: Predicate,
    /// Single-event or aggregation.
    pub kind: RuleKind,
    /// For an aggregation or sequence whose `suppress … by` names some but not all of its
    /// group-by fields: after an alert, the rule raises no alert for any group with the same
    /// values of those fields until event time reaches alert time + the quiet period. Applied
    /// where every alert of the rule and tenant meets, in event-time order; the groups' own
    /// window state then keeps no quiet period (`suppress_ms` is 0).
    pub suppress_across: Option<Suppression>,
    /// Fields the alert renders (title, description, severity conditions), for single-event
    /// rules; stateful rules render from their group.
    pub alert_fields: Vec<FieldId>,
    /// What the rule reads: events, or alerts of other rules.
    pub input: RuleInput,
    /// 0 for a rule over events; a rule over alerts is one above the highest rule it reads.
    pub level: u32,
    /// Where the rule was defined, as `path:line`.
    pub origin: String,
    /// Allow-list entries for this rule (not part of the plan hash: adding or removing one
    /// keeps the rule's identity and its window state).
    pub exceptions: Vec<ExceptionPlan>,
    /// The tenants the rule runs for: all of them, all but those with their own parameters,
    /// or one tenant with its parameters.
    pub tenants: TenantScope,
    /// The parameters the rule uses with the values in force (the defaults, or one tenant's).
    pub params: Vec<(String, crate::ast::ParamValue)>,
    /// For a tenant's variant, the parameter set it comes from, as `ID (path:line)`.
    pub params_origin: Option<String>,
    /// Hash of the compiled plan (hex): a rule is unchanged when id, version and this are equal.
    pub plan_hash: String,
}

/// The tenants a rule runs for. A rule with parameter sets compiles once per set (for that
/// tenant) and once with its defaults (for every other tenant); each is a [`RulePlan`] with
/// the rule's id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum TenantScope {
    /// Every tenant.
    #[default]
    All,
    /// Every tenant but these (sorted), which have their own parameters.
    AllBut(Vec<String>),
    /// This tenant only, with its parameters.
    Only(String),
}

impl TenantScope {
    /// Whether the rule runs for `tenant` (asked for every rule an event visits).
    #[inline]
    pub fn admits(&self, tenant: &str) -> bool {
        match self {
            TenantScope::All => true,
            TenantScope::AllBut(others) => {
                others.binary_search_by(|t| t.as_str().cmp(tenant)).is_err()
            }
            TenantScope::Only(t) => t == tenant,
        }
    }
}

/// What a rule reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RuleInput {
    /// Events (the default).
    Events,
    /// `from alerts [of RULE, …]`: the alerts of the named rules, or of every rule over events
    /// when none is named, each as an event (`docs/rules.md`, Rules over alerts).
    Alerts(Vec<String>),
}

impl RuleInput {
    /// Whether a rule with this input reads the alerts of `rule` at `level`.
    pub fn reads(&self, rule: &str, level: u32) -> bool {
        match self {
            RuleInput::Events => false,
            RuleInput::Alerts(of) if of.is_empty() => level == 0,
            RuleInput::Alerts(of) => of.iter().any(|r| r == rule),
        }
    }
}

/// An exception, compiled: events of `tenant` matching `predicate` with an event time before
/// `expires_ms` are not seen by the rule.
#[derive(Clone, Debug)]
pub struct ExceptionPlan {
    /// The exception's id.
    pub id: String,
    /// The tenant it applies to.
    pub tenant: String,
    /// Who answers for it.
    pub owner: String,
    /// Why the events are expected.
    pub reason: String,
    /// Event time (epoch ms) from which it no longer applies: 00:00 UTC of its expiry date.
    pub expires_ms: i64,
    /// The expiry date as written.
    pub expires: String,
    /// The events it allows.
    pub predicate: Predicate,
    /// Where it was defined, as `path:line`.
    pub origin: String,
}

impl ExceptionPlan {
    /// Whether the exception takes an event of `tenant` at `ts`.
    pub fn applies<E: EventView + ?Sized>(&self, tenant: &str, ts: i64, e: &E) -> bool {
        self.tenant == tenant && ts < self.expires_ms && self.predicate.eval(e)
    }
}

/// What a rule does with the events that match its filter.
#[derive(Clone, Debug)]
pub enum RuleKind {
    /// Every matching event raises an alert, unless the rule declares a suppression.
    Single(Option<Suppression>),
    /// Matching events are aggregated per group over a window.
    Aggregate(AggregatePlan),
    /// Ordered steps per group within a span.
    Sequence(SequencePlan),
}

/// `suppress for DUR [by FIELDS]` on a single-event rule: after an alert for a key (the tenant
/// and the values of the fields), further matches of the key are dropped until event time
/// reaches alert time + `ms`.
#[derive(Clone, Debug)]
pub struct Suppression {
    /// The quiet period, ms.
    pub ms: u64,
    /// The key fields, sorted by path (none: one key per tenant).
    pub by: Vec<FieldId>,
}

impl RuleKind {
    /// The group-by fields, for stateful rules.
    pub fn group_by(&self) -> Option<&[FieldId]> {
        match self {
            RuleKind::Single(_) => None,
            RuleKind::Aggregate(a) => Some(&a.group_by),
            RuleKind::Sequence(q) => Some(&q.group_by),
        }
    }
}

/// `sequence by FIELDS within SPAN { … }`, compiled.
#[derive(Clone, Debug)]
pub struct SequencePlan {
    /// The steps that must happen, in order.
    pub steps: Vec<StepPlan>,
    /// The step that must not follow them within the span, if any.
    pub absent: Option<StepPlan>,
    /// Events that cancel every partial match of their group.
    pub until: Option<Predicate>,
    /// Group-by fields, sorted by path.
    pub group_by: Vec<FieldId>,
    /// The whole match fits within this (first to last event, exclusive), ms.
    pub span_ms: u64,
    /// After firing, a group's matches are discarded until event time reaches alert time + this
    /// (default 0).
    pub suppress_ms: u64,
}

/// One step of a sequence.
#[derive(Clone, Debug)]
pub struct StepPlan {
    /// Its name in the rule.
    pub name: String,
    /// Which events it takes (the rule's `match`, if any, applies too).
    pub predicate: Predicate,
    /// How many events in a row it takes (`runs N`; 1 when not written).
    pub runs: u32,
}

/// `when AGG CONDITION by FIELDS within WINDOW`, compiled.
#[derive(Clone, Debug)]
pub struct AggregatePlan {
    /// What is aggregated.
    pub agg: AggKind,
    /// Fires when the aggregate is within this.
    pub threshold: Threshold,
    /// Group-by fields, sorted by path (the order of the alert's `group` and of its id).
    pub group_by: Vec<FieldId>,
    /// Window kind.
    pub window: WindowKind,
    /// Window length in milliseconds (the gap, for sessions).
    pub window_ms: u64,
    /// After firing, a group stays quiet until event time reaches alert time + this (default:
    /// the window length for sliding windows, 0 for the others, which fire at most once per
    /// window or session anyway).
    pub suppress_ms: u64,
}

/// Aggregates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AggKind {
    /// Number of events.
    Count,
    /// Number of distinct values of a field.
    DistinctCount(FieldId),
    /// Sum of a numeric field.
    Sum(FieldId),
    /// Least value of a numeric field.
    Min(FieldId),
    /// Greatest value of a numeric field.
    Max(FieldId),
    /// Mean of a numeric field.
    Avg(FieldId),
}

impl AggKind {
    /// The field aggregated, if any.
    pub fn field(self) -> Option<FieldId> {
        match self {
            AggKind::Count => None,
            AggKind::DistinctCount(f)
            | AggKind::Sum(f)
            | AggKind::Min(f)
            | AggKind::Max(f)
            | AggKind::Avg(f) => Some(f),
        }
    }

    /// The aggregate as written, without its field.
    pub fn name(self) -> &'static str {
        match self {
            AggKind::Count => "count",
            AggKind::DistinctCount(_) => "distinct count",
            AggKind::Sum(_) => "sum",
            AggKind::Min(_) => "min",
            AggKind::Max(_) => "max",
            AggKind::Avg(_) => "avg",
        }
    }
}

/// Window kinds, compiled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowKind {
    /// Exact sliding window `(t − W, t]`.
    Sliding,
    /// Windows `[kW, (k+1)W)` since the epoch.
    Tumbling,
    /// Windows `[kS, kS + W)` for every `k`; W is a multiple of S.
    Hopping {
        /// The slide S, ms.
        slide_ms: u64,
    },
    /// Sessions closed by a gap of W or a span of `max_ms`.
    Session {
        /// Longest session, ms.
        max_ms: u64,
    },
    /// `first seen`: fires on a group's first event, and again on the first after a gap of at
    /// least W (the TTL) since its previous one.
    FirstSeen,
}

/// A compiled boolean expression.
#[derive(Clone, Debug)]
pub enum Predicate {
    /// Always this.
    Const(bool),
    /// All hold.
    And(Vec<Predicate>),
    /// Any holds.
    Or(Vec<Predicate>),
    /// Negation.
    Not(Box<Predicate>),
    /// A test on one field: true when any of the field's values passes (arrays match on any
    /// element); false when the field is absent.
    Test(FieldId, Test),
}

/// A test on one value.
#[derive(Clone, Debug)]
pub enum Test {
    /// The field is present (with any value, including `null`).
    Exists,
    /// Equal to a string.
    EqStr(String),
    /// Equal to a string, ignoring case (stored lowercase).
    EqStrCi(String),
    /// Equal to a number.
    EqNum(f64),
    /// Equal to a boolean.
    EqBool(bool),
    /// Numeric comparison.
    Cmp(NumOp, f64),
    /// One of these strings.
    InStr(Vec<String>),
    /// One of these strings, ignoring case (stored lowercase).
    InStrCi(Vec<String>),
    /// One of these numbers.
    InNum(Vec<f64>),
    /// Substring.
    Contains(String),
    /// Substring, ignoring case (stored lowercase).
    ContainsCi(String),
    /// Prefix.
    StartsWith(String),
    /// Prefix, ignoring case (stored lowercase).
    StartsWithCi(String),
    /// Suffix.
    EndsWith(String),
    /// Suffix, ignoring case (stored lowercase).
    EndsWithCi(String),
    /// Regular expression (unanchored, like `grep`); ignoring case when set (`/…/i`).
    Matches(regex::Regex, bool),
    /// The value is an IP address inside one of these networks.
    Cidr(Vec<Cidr>),
    /// In a named list (`in~`: ignoring case, for string lists).
    InList(Arc<ListHandle>, bool),
}

/// Numeric comparison operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NumOp {
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

/// An IP network such as `10.0.0.0/8`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `a.b.c.d/n`, `x::/n`, or a bare address (a /32 or /128).
    pub fn parse(s: &str) -> Option<Cidr> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a.parse::<IpAddr>().ok()?, p.parse::<u8>().ok()?),
            None => {
                let a = s.parse::<IpAddr>().ok()?;
                (a, if a.is_ipv4() { 32 } else { 128 })
            }
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(Cidr { addr, prefix })
    }

    /// Whether `ip` is inside the network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            (IpAddr::V4(_), IpAddr::V6(ip)) => ip
                .to_ipv4_mapped()
                .is_some_and(|v4| self.contains(IpAddr::V4(v4))),
            (IpAddr::V6(_), IpAddr::V4(_)) => false,
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// One value of a field in an event.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ValueRef<'a> {
    /// A string.
    Str(&'a str),
    /// A number.
    Num(f64),
    /// A boolean.
    Bool(bool),
    /// JSON `null`.
    Null,
}

/// Read access to the fields of one decoded event.
pub trait EventView {
    /// Calls `f` on each value of `field` (one for scalars, each element for arrays) until it
    /// returns true; returns whether it did. Returns false when the field is absent.
    fn any_value(&self, field: FieldId, f: &mut dyn FnMut(ValueRef<'_>) -> bool) -> bool;

    /// Whether the field is present at all.
    fn has(&self, field: FieldId) -> bool {
        self.any_value(field, &mut |_| true)
    }

    /// Whether test `t` holds for `field`: for one of its values, or for `exists` whether it
    /// is present. A view may answer without the callback of [`EventView::any_value`].
    fn passes(&self, field: FieldId, t: &Test) -> bool {
        match t {
            Test::Exists => self.has(field),
            t => self.any_value(field, &mut |v| t.test(v)),
        }
    }
}

impl Predicate {
    /// Evaluates the predicate on an event.
    pub fn eval<E: EventView + ?Sized>(&self, e: &E) -> bool {
        match self {
            Predicate::Const(b) => *b,
            Predicate::And(ps) => ps.iter().all(|p| p.eval(e)),
            Predicate::Or(ps) => ps.iter().any(|p| p.eval(e)),
            Predicate::Not(p) => !p.eval(e),
            Predicate::Test(f, t) => e.passes(*f, t),
        }
    }

    /// Every field the predicate reads, without repeats.
    pub fn fields(&self) -> Vec<FieldId> {
        fn walk(p: &Predicate, out: &mut Vec<FieldId>) {
            match p {
                Predicate::Const(_) => {}
                Predicate::And(ps) | Predicate::Or(ps) => ps.iter().for_each(|p| walk(p, out)),
                Predicate::Not(p) => walk(p, out),
                Predicate::Test(f, _) => {
                    if !out.contains(f) {
                        out.push(*f);
                    }
                }
            }
        }
        let mut out = Vec::new();
        walk(self, &mut out);
        out
    }

    /// Renders the predicate with field paths, as `vigil explain` shows it.
    pub fn display<'a>(&'a self, fields: &'a [String]) -> impl fmt::Display + 'a {
        PredDisplay(self, fields)
    }
}

impl Test {
    /// Tests one value.
    pub fn test(&self, v: ValueRef<'_>) -> bool {
        match (self, v) {
            (Test::Exists, _) => true,
            (Test::EqStr(s), ValueRef::Str(v)) => v == s,
            (Test::EqStrCi(s), ValueRef::Str(v)) => eq_ci(v, s),
            (Test::EqNum(n), ValueRef::Num(v)) => v == *n,
            (Test::EqBool(b), ValueRef::Bool(v)) => v == *b,
            (Test::Cmp(op, n), ValueRef::Num(v)) => match op {
                NumOp::Lt => v < *n,
                NumOp::Le => v <= *n,
                NumOp::Gt => v > *n,
                NumOp::Ge => v >= *n,
            },
            (Test::InStr(list), ValueRef::Str(v)) => list.iter().any(|s| s == v),
            (Test::InStrCi(list), ValueRef::Str(v)) => list.iter().any(|s| eq_ci(v, s)),
            (Test::InNum(list), ValueRef::Num(v)) => list.contains(&v),
            (Test::Contains(s), ValueRef::Str(v)) => v.contains(s.as_str()),
            (Test::ContainsCi(s), ValueRef::Str(v)) => contains_ci(v, s),
            (Test::StartsWith(s), ValueRef::Str(v)) => v.starts_with(s.as_str()),
            (Test::StartsWithCi(s), ValueRef::Str(v)) => affix_ci(v, s, true),
            (Test::EndsWith(s), ValueRef::Str(v)) => v.ends_with(s.as_str()),
            (Test::EndsWithCi(s), ValueRef::Str(v)) => affix_ci(v, s, false),
            (Test::Matches(re, _), ValueRef::Str(v)) => re.is_match(v),
            (Test::Cidr(nets), ValueRef::Str(v)) => {
                parse_ip(v).is_some_and(|ip| nets.iter().any(|n| n.contains(ip)))
            }
            (Test::InList(list, ci), ValueRef::Str(v)) => list.contains(v, *ci),
            _ => false,
        }
    }
}

/// `v` equals `lower` (already lowercase) ignoring case; allocation-free for ASCII.
fn eq_ci(v: &str, lower: &str) -> bool {
    if v.is_ascii() && lower.is_ascii() {
        v.eq_ignore_ascii_case(lower)
    } else {
        v.to_lowercase() == lower
    }
}

/// `v` contains `lower` (already lowercase) ignoring case; allocation-free for ASCII, where a
/// position is compared further only when it starts with the needle's first byte. (A memchr
/// for the first byte costs more than it saves on the short values events carry.)
fn contains_ci(v: &str, lower: &str) -> bool {
    if v.is_ascii() && lower.is_ascii() {
        let (v, n) = (v.as_bytes(), lower.as_bytes());
        let Some((&first, rest)) = n.split_first() else {
            return true;
        };
        let Some(last) = v.len().checked_sub(n.len()) else {
            return false;
        };
        v[..=last].iter().enumerate().any(|(i, c)| {
            c.to_ascii_lowercase() == first && v[i + 1..i + n.len()].eq_ignore_ascii_case(rest)
        })
    } else {
        v.to_lowercase().contains(lower)
    }
}

/// An address as `str::parse::<IpAddr>` reads it, with dotted IPv4 (the common case, tested
/// against CIDRs on every network event) read by hand rather than by the general parser.
pub fn parse_ip(s: &str) -> Option<IpAddr> {
    match parse_v4(s.as_bytes()) {
        Some(ip) => Some(IpAddr::V4(ip)),
        None => s.parse().ok(),
    }
}

/// Four decimal octets of 0 to 255 without leading zeros, as `Ipv4Addr`'s parser accepts, in
/// one pass over the bytes.
fn parse_v4(b: &[u8]) -> Option<Ipv4Addr> {
    if !(7..=15).contains(&b.len()) {
        return None;
    }
    let mut octets = [0u8; 4];
    let (mut n, mut v, mut digits) = (0, 0u16, 0);
    for &c in b {
        match c {
            b'0'..=b'9' => {
                // A fourth digit, or a digit after a leading zero.
                if digits == 3 || (digits == 1 && v == 0) {
                    return None;
                }
                v = v * 10 + u16::from(c - b'0');
                digits += 1;
            }
            b'.' if digits > 0 && n < 3 => {
                octets[n] = u8::try_from(v).ok()?;
                (n, v, digits) = (n + 1, 0, 0);
            }
            _ => return None,
        }
    }
    if digits == 0 || n != 3 {
        return None;
    }
    octets[3] = u8::try_from(v).ok()?;
    Some(Ipv4Addr::from(octets))
}

/// `v` starts (or ends) with `lower` ignoring case; allocation-free for ASCII.
fn affix_ci(v: &str, lower: &str, prefix: bool) -> bool {
    if v.is_ascii() && lower.is_ascii() {
        let (v, n) = (v.as_bytes(), lower.as_bytes());
        let Some(rest) = v.len().checked_sub(n.len()) else {
            return false;
        };
        let part = if prefix { &v[..n.len()] } else { &v[rest..] };
        part.eq_ignore_ascii_case(n)
    } else {
        // Lowercasing may change byte lengths outside ASCII, so compare whole strings.
        let v = v.to_lowercase();
        if prefix {
            v.starts_with(lower)
        } else {
            v.ends_with(lower)
        }
    }
}

struct PredDisplay<'a>(&'a Predicate, &'a [String]);

impl fmt::Display for PredDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fields = self.1;
        let join = |f: &mut fmt::Formatter<'_>, ps: &[Predicate], sep: &str| -> fmt::Result {
            f.write_char('(')?;
            for (i, p) in ps.iter().enumerate() {
                if i > 0 {
                    f.write_str(sep)?;
                }
                write!(f, "{}", PredDisplay(p, fields))?;
            }
            f.write_char(')')
        };
        match self.0 {
            Predicate::Const(b) => write!(f, "{b}"),
            Predicate::And(ps) => join(f, ps, " and "),
            Predicate::Or(ps) => join(f, ps, " or "),
            Predicate::Not(p) => write!(f, "not {}", PredDisplay(p, fields)),
            Predicate::Test(id, t) => {
                let path = fields.get(usize::from(id.0)).map_or("?", String::as_str);
                write!(f, "{path} ")?;
                match t {
                    Test::Exists => f.write_str("exists"),
                    Test::EqStr(s) => write!(f, "== {s:?}"),
                    Test::EqStrCi(s) => write!(f, "=~ {s:?}"),
                    Test::EqNum(n) => write!(f, "== {n}"),
                    Test::EqBool(b) => write!(f, "== {b}"),
                    Test::Cmp(op, n) => {
                        let op = match op {
                            NumOp::Lt => "<",
                            NumOp::Le => "<=",
                            NumOp::Gt => ">",
                            NumOp::Ge => ">=",
                        };
                        write!(f, "{op} {n}")
                    }
                    Test::InStr(l) => write!(f, "in {l:?}"),
                    Test::InStrCi(l) => write!(f, "in~ {l:?}"),
                    Test::InNum(l) => write!(f, "in {l:?}"),
                    Test::Contains(s) => write!(f, "contains {s:?}"),
                    Test::ContainsCi(s) => write!(f, "contains~ {s:?}"),
                    Test::StartsWith(s) => write!(f, "startswith {s:?}"),
                    Test::StartsWithCi(s) => write!(f, "startswith~ {s:?}"),
                    Test::EndsWith(s) => write!(f, "endswith {s:?}"),
                    Test::EndsWithCi(s) => write!(f, "endswith~ {s:?}"),
                    Test::Matches(re, ci) => {
                        write!(f, "matches /{}/{}", re.as_str(), if *ci { "i" } else { "" })
                    }
                    Test::Cidr(nets) => {
                        let nets: Vec<String> = nets.iter().map(ToString::to_string).collect();
                        write!(f, "cidr {nets:?}")
                    }
                    // The name only: the plan hash renders filters, and a list's contents
                    // are data, not part of a rule's identity.
                    Test::InList(list, ci) => {
                        write!(f, "in{} list({})", if *ci { "~" } else { "" }, list.name())
                    }
                }
            }
        }
    }
}

impl RulePlan {
    /// The compiled plan as `vigil explain` prints it: what the rule reads, how it is keyed and
    /// partitioned, which operators it runs through, and what bounds its state.
    pub fn explain(&self, fields: &[String]) -> String {
        let path = |f: FieldId| fields.get(usize::from(f.0)).map_or("?", String::as_str);
        let dur = |ms: u64| vigil_model::duration::format_duration(ms);
        let quiet = |ms: u64| match (ms, &self.suppress_across) {
            (_, Some(x)) => {
                let by: Vec<&str> = x.by.iter().map(|&f| path(f)).collect();
                format!(
                    "{} after each alert, for every group with the alert's {}",
                    dur(x.ms),
                    by.join(", ")
                )
            }
            (0, None) => "none".to_owned(),
            (ms, None) => format!("{} after each alert", dur(ms)),
        };
        let mut out = String::new();
        let _ = writeln!(
            out,
            "rule {} v{} ({})  plan {}",
            self.id, self.version, self.origin, self.plan_hash
        );
        let _ = writeln!(
            out,
            "  severity  {}, risk {}",
            self.severity, self.risk_score
        );
        for (sev, p) in &self.severity_if {
            let _ = writeln!(out, "  severity  {sev} if {}", p.display(fields));
        }
        if let Some(a) = &self.author {
            let _ = writeln!(out, "  author    {a}");
        }
        for r in &self.references {
            let _ = writeln!(out, "  reference {r}");
        }
        for fp in &self.false_positives {
            let _ = writeln!(out, "  benign    {fp}");
        }
        match &self.tenants {
            TenantScope::All => {}
            TenantScope::AllBut(others) => {
                let _ = writeln!(
                    out,
                    "  tenants   every tenant but {} (their own parameters)",
                    others.join(", ")
                );
            }
            TenantScope::Only(t) => {
                let _ = writeln!(
                    out,
                    "  tenants   {t} only, with parameter set {}",
                    self.params_origin.as_deref().unwrap_or("?")
                );
            }
        }
        if !self.params.is_empty() {
            let values: Vec<String> = self
                .params
                .iter()
                .map(|(n, v)| format!("{n} = {v}"))
                .collect();
            let _ = writeln!(out, "  params    {}", values.join(", "));
        }
        if let RuleInput::Alerts(of) = &self.input {
            let of = if of.is_empty() {
                "every rule over events".to_owned()
            } else {
                of.join(", ")
            };
            let _ = writeln!(
                out,
                "  input     alerts of {of}, as events (stage {} of the dataflow)",
                self.level
            );
        }
        let _ = writeln!(out, "  filter    {}", self.filter.display(fields));
        let key = |by: &[FieldId]| {
            let mut k = vec!["tenant_id".to_owned()];
            k.extend(by.iter().map(|&f| path(f).to_owned()));
            k.join(", ")
        };
        let pipeline = "source (decode the referenced fields once, evaluate the filter)";
        let across = if self.suppress_across.is_some() {
            "exchange by (tenant, rule) -> suppression across groups (each epoch in event-time order) -> "
        } else {
            ""
        };
        match &self.kind {
            RuleKind::Single(None) => {
                let _ = writeln!(out, "  kind      single event: every on-time match alerts");
                let _ = writeln!(out, "  key       tenant_id, event.id (the alert id)");
                let _ = writeln!(
                    out,
                    "  operators {pipeline} -> lateness check -> alert (no state)"
                );
                let _ = writeln!(out, "  state     none");
            }
            RuleKind::Single(Some(s)) => {
                let _ = writeln!(
                    out,
                    "  kind      single event, suppressed: the first match per key alerts"
                );
                let _ = writeln!(out, "  suppress  {}", quiet(s.ms));
                let _ = writeln!(out, "  key       {}", key(&s.by));
                let _ = writeln!(
                    out,
                    "  operators {pipeline} -> exchange by key -> lateness check -> event-time \
                     order (waits for the watermark) -> suppression -> alert"
                );
                let _ = writeln!(
                    out,
                    "  state     per key: the end of its quiet period, dropped when the \
                     watermark passes it"
                );
            }
            RuleKind::Aggregate(a) => {
                let agg = match a.agg.field() {
                    None => a.agg.name().to_owned(),
                    Some(f) => format!("{} of {}", a.agg.name(), path(f)),
                };
                let window = match a.window {
                    WindowKind::Sliding => format!("sliding {} (exact)", dur(a.window_ms)),
                    WindowKind::Tumbling => format!("tumbling {}", dur(a.window_ms)),
                    WindowKind::Hopping { slide_ms } => format!(
                        "hopping {} every {} ({} panes an event)",
                        dur(a.window_ms),
                        dur(slide_ms),
                        a.window_ms / slide_ms.max(1)
                    ),
                    WindowKind::Session { max_ms } => {
                        format!("session, gap {}, at most {}", dur(a.window_ms), dur(max_ms))
                    }
                    WindowKind::FirstSeen => format!(
                        "TTL {}: a key stays known that long after its last event",
                        dur(a.window_ms)
                    ),
                };
                if a.window == WindowKind::FirstSeen {
                    let _ = writeln!(
                        out,
                        "  kind      first seen: a key's first event alerts, and its first after {} unseen",
                        dur(a.window_ms)
                    );
                } else {
                    let _ = writeln!(out, "  kind      aggregation: {agg} {}", a.threshold);
                }
                let _ = writeln!(out, "  window    {window}");
                let _ = writeln!(out, "  suppress  {}", quiet(a.suppress_ms));
                let _ = writeln!(out, "  key       {}", key(&a.group_by));
                let _ = writeln!(
                    out,
                    "  operators {pipeline} -> exchange by xxh3(tenant, rule, key) -> keyed_windows (event-time order, watermark per tenant) -> {across}alert"
                );
                let bound = match a.window {
                    WindowKind::Sliding => format!(
                        "the events of the last {} per key (numbers for sums, a monotonic queue for min/max, values for distinct counts); dropped once the watermark passes the newest + {}",
                        dur(a.window_ms),
                        dur(a.window_ms)
                    ),
                    WindowKind::Tumbling => format!(
                        "one window's aggregate per key; dropped at the window's end ({})",
                        dur(a.window_ms)
                    ),
                    WindowKind::Hopping { slide_ms } => format!(
                        "at most {} panes per key; dropped once the last window holding the newest pane ends",
                        a.window_ms / slide_ms.max(1)
                    ),
                    WindowKind::Session { max_ms } => format!(
                        "one session's aggregate per key; dropped {} after its last event, sessions at most {}",
                        dur(a.window_ms),
                        dur(max_ms)
                    ),
                    WindowKind::FirstSeen => format!(
                        "per key the time it was last seen; dropped {} after it (the TTL)",
                        dur(a.window_ms)
                    ),
                };
                let _ = writeln!(out, "  state     {bound}");
                self.explain_quiet(&mut out, &path);
            }
            RuleKind::Sequence(q) => {
                let stages: u32 = q.steps.iter().map(|s| s.runs).sum();
                let _ = writeln!(
                    out,
                    "  kind      sequence within {} ({stages} stage{})",
                    dur(q.span_ms),
                    if stages == 1 { "" } else { "s" }
                );
                for (i, st) in q.steps.iter().enumerate() {
                    let runs = if st.runs > 1 {
                        format!(" runs {}", st.runs)
                    } else {
                        String::new()
                    };
                    let _ = writeln!(
                        out,
                        "  step {}    {}{runs}: {}",
                        i + 1,
                        st.name,
                        st.predicate.display(fields)
                    );
                }
                if let Some(st) = &q.absent {
                    let _ = writeln!(
                        out,
                        "  absent    {}: {} (fires {} after the first step when it does not come)",
                        st.name,
                        st.predicate.display(fields),
                        dur(q.span_ms)
                    );
                }
                if let Some(u) = &q.until {
                    let _ = writeln!(out, "  until     {}", u.display(fields));
                }
                let _ = writeln!(out, "  suppress  {}", quiet(q.suppress_ms));
                let _ = writeln!(out, "  key       {}", key(&q.group_by));
                let _ = writeln!(
                    out,
                    "  operators {pipeline}, evaluate every step -> exchange by xxh3(tenant, rule, key) -> keyed_windows (event-time order; deadline timers per tenant) -> {across}alert"
                );
                let _ = writeln!(
                    out,
                    "  state     at most one partial match per stage per key ({stages}); dropped once the watermark passes its first event + {}",
                    dur(q.span_ms)
                );
                self.explain_quiet(&mut out, &path);
            }
        }
        for x in &self.exceptions {
            let _ = writeln!(
                out,
                "  exception {} (tenant {}, until {}, owner {}): {}",
                x.id,
                x.tenant,
                x.expires,
                x.owner,
                x.predicate.display(fields)
            );
        }
        out
    }

    /// The state of a suppression across groups, for [`RulePlan::explain`].
    fn explain_quiet<'f>(&self, out: &mut String, path: &impl Fn(FieldId) -> &'f str) {
        let Some(x) = &self.suppress_across else {
            return;
        };
        let mut key = vec!["tenant_id"];
        key.extend(x.by.iter().map(|&f| path(f)));
        let _ = writeln!(
            out,
            "  quiet     per {} in the alert stage: the end of its quiet period, forgotten once the tenant's alerts pass it",
            key.join(", ")
        );
    }

    /// Computes the plan hash from everything that changes what the rule does.
    pub(crate) fn compute_hash(&mut self, fields: &[String]) {
        let mut canon = String::new();
        let _ = write!(
            canon,
            "title={}\nseverity={}\ntags={:?}\ndescription={:?}\nfilter={}\nrisk={}\n",
            self.title.source(),
            self.severity,
            self.tags,
            self.description.as_ref().map(Template::source),
            self.filter.display(fields),
            self.risk_score
        );
        for (sev, p) in &self.severity_if {
            let _ = writeln!(canon, "severity {sev} if {}", p.display(fields));
        }
        if let RuleInput::Alerts(of) = &self.input {
            let _ = writeln!(canon, "from alerts of {of:?}");
        }
        // A tenant's variant is its own rule (its own state) even when its values equal the
        // defaults. The defaults' plan leaves the scope out: giving one tenant parameters
        // keeps every other tenant's state.
        if let TenantScope::Only(t) = &self.tenants {
            let _ = writeln!(canon, "tenant={t}");
        }
        if let RuleKind::Single(Some(s)) = &self.kind {
            let by: Vec<&str> =
                s.by.iter()
                    .map(|&f| fields[usize::from(f.0)].as_str())
                    .collect();
            let _ = writeln!(canon, "single suppress={} by={by:?}", s.ms);
        }
        if let Some(x) = &self.suppress_across {
            let by: Vec<&str> =
                x.by.iter()
                    .map(|&f| fields[usize::from(f.0)].as_str())
                    .collect();
            let _ = writeln!(canon, "suppress across={} by={by:?}", x.ms);
        }
        if let RuleKind::Aggregate(a) = &self.kind {
            let path = |f: FieldId| fields[usize::from(f.0)].as_str();
            let agg = match a.agg.field() {
                None => a.agg.name().to_owned(),
                Some(f) => format!("{} of {}", a.agg.name(), path(f)),
            };
            let by: Vec<&str> = a.group_by.iter().map(|&f| path(f)).collect();
            let _ = writeln!(
                canon,
                "agg={agg} threshold={} by={by:?} window={:?} {} suppress={}",
                a.threshold, a.window, a.window_ms, a.suppress_ms
            );
        }
        if let RuleKind::Sequence(q) = &self.kind {
            let path = |f: FieldId| fields[usize::from(f.0)].as_str();
            let by: Vec<&str> = q.group_by.iter().map(|&f| path(f)).collect();
            let _ = writeln!(
                canon,
                "sequence by={by:?} span={} suppress={}",
                q.span_ms, q.suppress_ms
            );
            for step in &q.steps {
                let _ = writeln!(
                    canon,
                    "step {} runs={}: {}",
                    step.name,
                    step.runs,
                    step.predicate.display(fields)
                );
            }
            if let Some(step) = &q.absent {
                let _ = writeln!(
                    canon,
                    "absent {}: {}",
                    step.name,
                    step.predicate.display(fields)
                );
            }
            if let Some(p) = &q.until {
                let _ = writeln!(canon, "until: {}", p.display(fields));
            }
        }
        let digest = Sha256::digest(canon.as_bytes());
        self.plan_hash = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_membership() {
        let n = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(n.contains("10.1.2.3".parse().unwrap()));
        assert!(!n.contains("11.0.0.1".parse().unwrap()));
        assert!(n.contains("::ffff:10.0.0.1".parse().unwrap()));
        let all = Cidr::parse("0.0.0.0/0").unwrap();
        assert!(all.contains("1.2.3.4".parse().unwrap()));
        let v6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(v6.contains("2001:db8::1".parse().unwrap()));
        assert!(!v6.contains("2001:db9::1".parse().unwrap()));
        assert!(Cidr::parse("10.0.0.0/33").is_none());
        assert!(Cidr::parse("10.0.0/8").is_none());
        assert_eq!(Cidr::parse("1.2.3.4").unwrap().to_string(), "1.2.3.4/32");
    }

    #[test]
    fn case_insensitive_tests() {
        assert!(Test::EqStrCi("powershell.exe".into()).test(ValueRef::Str("PowerShell.EXE")));
        assert!(
            Test::ContainsCi("-enc".into()).test(ValueRef::Str("powershell -EncodedCommand x"))
        );
        assert!(Test::StartsWithCi("c:\\windows".into()).test(ValueRef::Str("C:\\Windows\\x")));
        assert!(
            Test::EndsWithCi("\\certutil.exe".into()).test(ValueRef::Str("C:\\X\\CertUtil.exe"))
        );
        assert!(!Test::EndsWithCi("longer than value".into()).test(ValueRef::Str("short")));
        assert!(Test::EqStrCi("émile".into()).test(ValueRef::Str("ÉMILE")));
        assert!(!Test::EqStr("a".into()).test(ValueRef::Num(1.0)));
    }

    #[test]
    fn case_insensitive_substrings_agree_with_a_scan_of_every_position() {
        let scan = |v: &str, n: &str| {
            let v = v.to_ascii_lowercase();
            v.contains(n)
        };
        let hays = [
            "",
            "a",
            "A",
            "aa",
            "xAbAbC",
            "-EncodedCommand",
            "ab-ENC",
            "enc",
            "zzz-en",
        ];
        let needles = [
            "", "a", "ab", "abc", "bab", "-enc", "enc", "-en", "zzz-en", "x",
        ];
        for v in hays {
            for n in needles {
                assert_eq!(contains_ci(v, n), scan(v, n), "{v:?} contains~ {n:?}");
            }
        }
        // Outside ASCII, the value is lowercased in full.
        assert!(contains_ci("DER ÉMILE", "émile"));
        assert!(!contains_ci("emile", "émile"));
    }

    #[test]
    fn addresses_parse_exactly_as_the_standard_parser_reads_them() {
        let mut cases: Vec<String> = [
            "",
            ".",
            "1.2.3.4",
            "0.0.0.0",
            "255.255.255.255",
            "256.1.1.1",
            "1.2.3",
            "1.2.3.4.5",
            "01.2.3.4",
            "1.2.3.04",
            "1.2.3.0",
            "1..3.4",
            "1.2.3.4.",
            ".1.2.3.4",
            "+1.2.3.4",
            "1.2.3.-4",
            "1.2.3.4 ",
            " 1.2.3.4",
            "1.2.3.1000",
            "1.2.3.a",
            "::1",
            "2001:db8::1",
            "::ffff:10.0.0.1",
            "1.2.3.4:80",
            "١.٢.٣.٤",
            "1.2.3.00",
            "00.1.2.3",
            "1.2.3.256",
            "12.34.56.789",
            "255.255.255.2555",
            "1.2.3.4..",
            "1.2..3.4",
        ]
        .map(String::from)
        .to_vec();
        // Every octet of 0 to 300 in each position, and two-digit forms with a leading zero.
        for i in 0..=300 {
            cases.push(format!("{i}.1.2.3"));
            cases.push(format!("1.{i}.2.3"));
            cases.push(format!("1.2.3.{i}"));
            cases.push(format!("1.2.3.{i:02}"));
        }
        for c in &cases {
            assert_eq!(parse_ip(c), c.parse::<IpAddr>().ok(), "{c:?}");
        }
    }
}
