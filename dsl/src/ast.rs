//! The syntax tree of a rule file, with a byte span on everything a diagnostic may point at.

/// A byte range in the source text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Span {
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
}

impl Span {
    /// A span from `start` to `end`.
    pub fn new(start: usize, end: usize) -> Self {
        Span { start, end }
    }
}

/// A value with the span it came from.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Spanned<T> {
    /// The value.
    pub value: T,
    /// Where it was written.
    pub span: Span,
}

/// Every rule of one file.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct RuleFile {
    /// The rules in file order.
    pub rules: Vec<RuleAst>,
    /// The exceptions in file order.
    pub exceptions: Vec<ExceptionAst>,
    /// The parameter sets in file order.
    pub params: Vec<ParamsAst>,
    /// Where a `$NAME` could not be used (unknown, or of the wrong type): the checker's errors
    /// at the same place are its consequences, not news.
    pub failed_params: Vec<Span>,
}

/// A parameter's value, as declared or set.
#[derive(Clone, Debug, PartialEq)]
pub enum ParamValue {
    /// A duration, ms.
    Duration(u64),
    /// A number.
    Number(f64),
    /// A string.
    Str(String),
    /// A boolean.
    Bool(bool),
    /// `list(NAME)`: a named list.
    List(String),
}

impl ParamValue {
    /// The value's type, as named in diagnostics.
    pub fn type_name(&self) -> &'static str {
        match self {
            ParamValue::Duration(_) => "a duration",
            ParamValue::Number(_) => "a number",
            ParamValue::Str(_) => "a string",
            ParamValue::Bool(_) => "a boolean",
            ParamValue::List(_) => "a list",
        }
    }
}

impl std::fmt::Display for ParamValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParamValue::Duration(ms) => f.write_str(&vigil_model::duration::format_duration(*ms)),
            ParamValue::Number(n) => write!(f, "{n}"),
            ParamValue::Str(s) => write!(f, "{s:?}"),
            ParamValue::Bool(b) => write!(f, "{b}"),
            ParamValue::List(l) => write!(f, "list({l})"),
        }
    }
}

/// `NAME = VALUE`, in a rule (`param NAME = VALUE`: the default) or a parameter set.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamAst {
    /// The parameter's name.
    pub name: Spanned<String>,
    /// Its value.
    pub value: Spanned<ParamValue>,
}

/// One `params ID { rule RULE tenant T NAME = VALUE … }` block: a tenant's values for a rule's
/// parameters, kept apart from the rule.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct ParamsAst {
    /// The set's id.
    pub id: Spanned<String>,
    /// `rule RULE`: the rule whose parameters it sets.
    pub rule: Option<Spanned<String>>,
    /// `tenant T`: the tenant they apply to.
    pub tenant: Option<Spanned<String>>,
    /// The values, in order.
    pub values: Vec<ParamAst>,
    /// Spans of clauses given more than once, with the clause keyword.
    pub duplicates: Vec<(&'static str, Span)>,
    /// The whole block.
    pub span: Span,
}

/// One `exception id { … }` block, as written.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct ExceptionAst {
    /// The exception's id.
    pub id: Spanned<String>,
    /// `rule RULE`: the rule it applies to.
    pub rule: Option<Spanned<String>>,
    /// `tenant T`: the tenant it applies to.
    pub tenant: Option<Spanned<String>>,
    /// `owner "…"`: who answers for it.
    pub owner: Option<Spanned<String>>,
    /// `expires YYYY-MM-DD`, as written.
    pub expires: Option<Spanned<String>>,
    /// `reason "…"`: why the events are expected.
    pub reason: Option<Spanned<String>>,
    /// `match EXPR`: the events it allows.
    pub match_expr: Option<Expr>,
    /// Spans of clauses given more than once, with the clause keyword.
    pub duplicates: Vec<(&'static str, Span)>,
    /// The whole block.
    pub span: Span,
}

/// One `rule id { … }` block, as written. Clauses that were written twice are kept in
/// `duplicates` so that the checker can point at them.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct RuleAst {
    /// The rule id.
    pub id: Spanned<String>,
    /// `version N`.
    pub version: Option<Spanned<u64>>,
    /// `title "…"`.
    pub title: Option<Spanned<String>>,
    /// `severity NAME`.
    pub severity: Option<Spanned<String>>,
    /// `severity NAME if EXPR`, in order: the first that holds sets the alert's severity.
    pub severity_if: Vec<(Spanned<String>, Expr)>,
    /// `author "…"`.
    pub author: Option<Spanned<String>>,
    /// `references ["…", …]`.
    pub references: Vec<Spanned<String>>,
    /// `false_positives ["…", …]`.
    pub false_positives: Vec<Spanned<String>>,
    /// `risk_score N`.
    pub risk_score: Option<Spanned<u64>>,
    /// `tags [...]`.
    pub tags: Vec<Spanned<String>>,
    /// `description "…"`.
    pub description: Option<Spanned<String>>,
    /// `match EXPR`.
    pub match_expr: Option<Expr>,
    /// `when AGG THRESHOLD [by FIELDS] within WINDOW`.
    pub when: Option<When>,
    /// `sequence [by FIELDS] within DURATION { … }`.
    pub sequence: Option<Sequence>,
    /// `suppress [for] DURATION [by FIELDS]`: the duration.
    pub suppress: Option<Spanned<u64>>,
    /// The `by` fields of `suppress`.
    pub suppress_by: Vec<Spanned<String>>,
    /// `from alerts [of RULE, …]`.
    pub from_alerts: Option<FromAlerts>,
    /// `param NAME = VALUE`: the rule's parameters with their defaults.
    pub params: Vec<ParamAst>,
    /// The parameters `$NAME` used, as (name, the values used: a tenant's or the default).
    pub param_values: Vec<(String, ParamValue)>,
    /// Spans of clauses given more than once, with the clause keyword.
    pub duplicates: Vec<(&'static str, Span)>,
    /// The whole rule.
    pub span: Span,
}

/// A boolean match expression.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    /// All must hold.
    And(Vec<Expr>),
    /// Any must hold.
    Or(Vec<Expr>),
    /// Negation.
    Not(Box<Expr>),
    /// A test on one field.
    Cmp(Comparison),
}

/// `FIELD OP OPERAND`.
#[derive(Clone, Debug, PartialEq)]
pub struct Comparison {
    /// The field path.
    pub field: Spanned<String>,
    /// The operator.
    pub op: Spanned<CmpOp>,
    /// The right-hand side.
    pub operand: Operand,
    /// The whole comparison.
    pub span: Span,
}

/// Comparison operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `=~` (equal ignoring case)
    EqCi,
    /// `!~` (not equal ignoring case)
    NeCi,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `in [..]`, or `in~` ignoring case; `negated` for `not in`.
    In {
        /// Ignore case.
        ci: bool,
        /// `not in`.
        negated: bool,
    },
    /// `contains`, `contains~`.
    Contains {
        /// Ignore case.
        ci: bool,
    },
    /// `startswith`, `startswith~`.
    StartsWith {
        /// Ignore case.
        ci: bool,
    },
    /// `endswith`, `endswith~`.
    EndsWith {
        /// Ignore case.
        ci: bool,
    },
    /// `matches /re/`.
    Matches,
    /// `cidr "net"` or `cidr [..]`.
    Cidr,
    /// `exists`.
    Exists,
}

impl CmpOp {
    /// The operator as written.
    pub fn as_str(self) -> &'static str {
        match self {
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
            CmpOp::EqCi => "=~",
            CmpOp::NeCi => "!~",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
            CmpOp::In {
                ci: false,
                negated: false,
            } => "in",
            CmpOp::In {
                ci: true,
                negated: false,
            } => "in~",
            CmpOp::In {
                ci: false,
                negated: true,
            } => "not in",
            CmpOp::In {
                ci: true,
                negated: true,
            } => "not in~",
            CmpOp::Contains { ci: false } => "contains",
            CmpOp::Contains { ci: true } => "contains~",
            CmpOp::StartsWith { ci: false } => "startswith",
            CmpOp::StartsWith { ci: true } => "startswith~",
            CmpOp::EndsWith { ci: false } => "endswith",
            CmpOp::EndsWith { ci: true } => "endswith~",
            CmpOp::Matches => "matches",
            CmpOp::Cidr => "cidr",
            CmpOp::Exists => "exists",
        }
    }
}

/// The right-hand side of a comparison.
#[derive(Clone, Debug, PartialEq)]
pub enum Operand {
    /// `exists` has none.
    None,
    /// One literal.
    Literal(Spanned<Literal>),
    /// `[a, b, …]`.
    List(Vec<Spanned<Literal>>),
    /// `list(NAME)`: a named list.
    ListRef(Spanned<String>),
    /// `/re/` or `/re/i`.
    Regex {
        /// The pattern between the slashes, with `\/` unescaped.
        pattern: Spanned<String>,
        /// `/…/i`.
        ci: bool,
    },
}

/// A literal value.
#[derive(Clone, Debug, PartialEq)]
pub enum Literal {
    /// A string.
    Str(String),
    /// A number.
    Num(f64),
    /// `true` or `false`.
    Bool(bool),
}

impl Literal {
    /// The literal's type, as named in diagnostics.
    pub fn type_name(&self) -> &'static str {
        match self {
            Literal::Str(_) => "string",
            Literal::Num(_) => "number",
            Literal::Bool(_) => "boolean",
        }
    }
}

/// `when AGG CONDITION [by FIELDS] within WINDOW`, or `when first seen FIELDS [by FIELDS]
/// within TTL` (no condition written).
#[derive(Clone, Debug, PartialEq)]
pub struct When {
    /// What is aggregated.
    pub aggregate: Aggregate,
    /// `>= N`, `< N`, `between A and B`, ….
    pub threshold: Spanned<Condition>,
    /// `by a, b`.
    pub group_by: Vec<Spanned<String>>,
    /// Window kind, `sliding` when not written.
    pub window_kind: WindowDecl,
    /// Window length (the gap, for sessions) in milliseconds.
    pub window: Spanned<u64>,
    /// The whole clause.
    pub span: Span,
}

/// The aggregate of a `when` clause.
#[derive(Clone, Debug, PartialEq)]
pub enum Aggregate {
    /// `count`.
    Count,
    /// `distinct count of FIELD`.
    DistinctCount(Spanned<String>),
    /// `sum of FIELD`, `min of FIELD`, `max of FIELD`, `avg of FIELD`.
    Numeric(NumericAgg, Spanned<String>),
    /// `first seen FIELD, …`: the values not seen (with the group) within the TTL.
    FirstSeen(Vec<Spanned<String>>),
}

/// Aggregates over a numeric field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NumericAgg {
    /// `sum of`.
    Sum,
    /// `min of`.
    Min,
    /// `max of`.
    Max,
    /// `avg of`.
    Avg,
}

impl NumericAgg {
    /// The aggregate as written.
    pub fn as_str(self) -> &'static str {
        match self {
            NumericAgg::Sum => "sum",
            NumericAgg::Min => "min",
            NumericAgg::Max => "max",
            NumericAgg::Avg => "avg",
        }
    }
}

/// The condition on an aggregate, as written.
#[derive(Clone, Debug, PartialEq)]
pub enum Condition {
    /// `OP N`.
    Cmp(String, f64),
    /// `between A and B` (both inclusive).
    Between(f64, f64),
}

/// Window kinds, as written.
#[derive(Clone, Debug, PartialEq)]
pub enum WindowDecl {
    /// Exact sliding window `(t − W, t]`.
    Sliding,
    /// Windows aligned to multiples of W since the epoch.
    Tumbling,
    /// `hopping W every S`: windows of W starting at every multiple of S.
    Hopping {
        /// The slide S.
        slide: Spanned<u64>,
    },
    /// `session GAP [max SPAN]`.
    Session {
        /// The longest span, when written.
        max: Option<Spanned<u64>>,
    },
    /// The TTL of `when first seen …`: how long a value stays known after it was last seen.
    FirstSeen {
        /// Whether `within TTL` was written (the window is the TTL).
        written: bool,
    },
}

/// `sequence [by FIELDS] [within DURATION] { STEP… }`.
#[derive(Clone, Debug, PartialEq)]
pub struct Sequence {
    /// `by a, b`.
    pub group_by: Vec<Spanned<String>>,
    /// The span the whole match must fit in, in milliseconds (required; optional in the
    /// grammar so that the checker can explain why).
    pub within: Option<Spanned<u64>>,
    /// The steps in order, absent ones included.
    pub steps: Vec<Step>,
    /// `until: EXPR` clauses (one allowed), with their spans.
    pub until: Vec<(Expr, Span)>,
    /// The `sequence` keyword.
    pub keyword: Span,
}

/// One step of a sequence.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    /// The step's name.
    pub name: Spanned<String>,
    /// Which events it takes.
    pub expr: Expr,
    /// `runs N`: the step repeats N times.
    pub runs: Option<Spanned<u64>>,
    /// `not NAME: …`: the step must not happen.
    pub absent: bool,
    /// The whole step.
    pub span: Span,
}

/// `from alerts [of RULE, …]`: the rule reads alerts instead of events.
#[derive(Clone, Debug, PartialEq)]
pub struct FromAlerts {
    /// The rules whose alerts it reads (none named: every rule over events).
    pub rules: Vec<Spanned<String>>,
    /// The clause.
    pub span: Span,
}
