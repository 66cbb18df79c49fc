//! Semantic checks and lowering: from the syntax tree to [`RulePlan`]s, with every problem
//! reported as a diagnostic that points at the offending text.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use vigil_model::{Bound, Severity, Threshold};

use crate::ast::*;
use crate::diag::{Diagnostic, did_you_mean};
use crate::lists::{ListKind, Lists};
use crate::plan::*;
use crate::schema::{FieldInfo, FieldType, Schema};
use crate::template::Template;

/// The text of a clause that was given, or empty.
fn text_of(s: &Option<Spanned<String>>) -> String {
    s.as_ref().map(|s| s.value.clone()).unwrap_or_default()
}

/// Longest window or suppression a rule may declare: state must stay bounded.
pub const MAX_WINDOW_MS: u64 = 30 * 86_400_000;
/// Most group-by fields a rule may declare.
pub const MAX_GROUP_FIELDS: usize = 8;
/// Most slides a hopping window may span.
pub const MAX_HOPS: u64 = 100;
/// Most stages (steps, counting `runs`) a sequence may have.
pub const MAX_STAGES: u64 = 100;
/// Most steps a sequence may name.
pub const MAX_STEPS: usize = 32;
/// Longest first-seen TTL: the state of a key is one timestamp.
pub const MAX_FIRST_SEEN_MS: u64 = 90 * 86_400_000;
/// Longest session when a rule does not say (`session GAP max SPAN`).
pub const DEFAULT_SESSION_MAX_MS: u64 = 86_400_000;

const TACTICS: &[&str] = &[
    "reconnaissance",
    "resource_development",
    "initial_access",
    "execution",
    "persistence",
    "privilege_escalation",
    "defense_evasion",
    "credential_access",
    "discovery",
    "lateral_movement",
    "collection",
    "command_and_control",
    "exfiltration",
    "impact",
];

/// Compiled automata above this many bytes are warned about: every event a rule looks at pays
/// for a regex's size.
const REGEX_WARN_BYTES: usize = 64 << 10;

/// What `vigil check` warns about in a regex that compiles: patterns that cost more than they
/// need to. (Rust regexes run in linear time, so there is no catastrophic backtracking to warn
/// about; size and needless work remain.)
fn regex_warnings(pattern: &str, ci: bool) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let body = pattern.strip_prefix('^').unwrap_or(pattern);
    if !pattern.starts_with('^') && (body.starts_with(".*") || body.starts_with(".+")) {
        out.push((
            "a leading `.*` adds nothing to an unanchored match".to_owned(),
            "matches are found anywhere in the value already: drop it".to_owned(),
        ));
    }
    let plain = !pattern.is_empty()
        && pattern
            .chars()
            .all(|c| c.is_alphanumeric() || " _-:@,'\"=<>%!#&~`;".contains(c));
    if plain {
        let op = if ci { "contains~" } else { "contains" };
        out.push((
            "this regex is a plain substring".to_owned(),
            format!("`{op} \"{pattern}\"` is faster and says the same"),
        ));
    }
    let small = regex::RegexBuilder::new(pattern)
        .case_insensitive(ci)
        .size_limit(REGEX_WARN_BYTES)
        .build();
    if small.is_err() {
        out.push((
            format!("this regex compiles to more than {} KiB", REGEX_WARN_BYTES >> 10),
            "every event the rule looks at pays for it: large counted repetitions (`{1000}`) and Unicode classes (`\\w` matches any script) grow it; use bounded ASCII classes (`[a-z0-9]`) or `contains`".to_owned(),
        ));
    }
    out
}

/// Rule and exception ids: lowercase letters, digits, `_` and `.`.
fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.')
}

/// Interns field paths to ids shared by every rule of a rule set.
#[derive(Debug, Default)]
pub(crate) struct Fields {
    ids: HashMap<String, FieldId>,
    pub(crate) paths: Vec<String>,
}

impl Fields {
    fn intern(&mut self, path: &str) -> FieldId {
        if let Some(&id) = self.ids.get(path) {
            return id;
        }
        let id = FieldId(u16::try_from(self.paths.len()).unwrap_or(u16::MAX));
        self.paths.push(path.to_owned());
        self.ids.insert(path.to_owned(), id);
        id
    }
}

pub(crate) struct Checker<'a> {
    pub(crate) schema: &'a Schema,
    pub(crate) lists: &'a Lists,
    pub(crate) fields: &'a mut Fields,
    pub(crate) diags: Vec<Diagnostic>,
}

impl Checker<'_> {
    fn err(&mut self, span: Span, msg: impl Into<String>) {
        self.diags.push(Diagnostic::error(span, msg));
    }

    /// Reports that `what` (an exception, a parameter set) lacks its `clause` (`slot` empty),
    /// with an example.
    fn need(
        &mut self,
        head: Span,
        what: &str,
        slot: &Option<Spanned<String>>,
        clause: &str,
        example: &str,
    ) {
        if slot.is_none() {
            self.diags.push(
                Diagnostic::error(head, format!("{what} has no `{clause}`"))
                    .with_hint(format!("add `{example}`")),
            );
        }
    }

    /// Reports an invalid tenant id in an exception's or a parameter set's `tenant` clause.
    fn tenant(&mut self, tenant: &Option<Spanned<String>>) {
        if let Some(t) = tenant
            && !vigil_model::is_valid_tenant(&t.value)
        {
            self.err(t.span, format!("invalid tenant id `{}`", t.value));
        }
    }

    /// Checks a parameter set against the rule it names: the rule and tenant are given and
    /// exist, and every value names one of the rule's parameters with the default's type.
    /// Returns the rule and the tenant when it has no errors.
    pub(crate) fn params(
        &mut self,
        x: &ParamsAst,
        rules: &HashMap<&str, &RuleAst>,
    ) -> Option<(String, String)> {
        let before = self.diags.len();
        self.header("parameter set", &x.id, &x.duplicates);
        let head = Span::new(x.span.start, x.span.start + "params".len());
        let what = format!("parameter set `{}`", x.id.value);
        self.need(head, &what, &x.rule, "rule", "rule brute_force_login");
        self.need(head, &what, &x.tenant, "tenant", "tenant acme");
        self.tenant(&x.tenant);
        let rule = x
            .rule
            .as_ref()
            .and_then(|r| match rules.get(r.value.as_str()) {
                Some(ast) => Some(*ast),
                None => {
                    let mut d = Diagnostic::error(
                        r.span,
                        format!("no rule `{}` to set parameters of", r.value),
                    );
                    if let Some(m) = did_you_mean(&r.value, rules.keys().copied()) {
                        d = d.with_hint(format!("did you mean `{m}`?"));
                    }
                    self.diags.push(d);
                    None
                }
            });
        if let Some(rule) = rule {
            if x.values.is_empty() {
                self.diags.push(
                    Diagnostic::warning(
                        head,
                        format!("parameter set `{}` sets nothing", x.id.value),
                    )
                    .with_hint("add `NAME = VALUE` lines, or remove it"),
                );
            }
            for v in &x.values {
                let Some(decl) = rule.params.iter().find(|d| d.name.value == v.name.value) else {
                    let names = rule.params.iter().map(|d| d.name.value.as_str());
                    let hint = match did_you_mean(&v.name.value, names.clone()) {
                        Some(m) => format!("did you mean `{m}`?"),
                        None if rule.params.is_empty() => {
                            format!("`{}` declares no parameters", rule.id.value)
                        }
                        None => format!("it declares {}", names.collect::<Vec<_>>().join(", ")),
                    };
                    self.diags.push(
                        Diagnostic::error(
                            v.name.span,
                            format!(
                                "rule `{}` has no parameter `{}`",
                                rule.id.value, v.name.value
                            ),
                        )
                        .with_hint(hint),
                    );
                    continue;
                };
                let (want, got) = (decl.value.value.type_name(), v.value.value.type_name());
                if want != got {
                    self.diags.push(
                        Diagnostic::error(
                            v.value.span,
                            format!("`{}` is {want}, not {got}", v.name.value),
                        )
                        .with_hint(format!("its default is {}", decl.value.value)),
                    );
                }
            }
        }
        if self.errors_since(before) {
            return None;
        }
        Some((text_of(&x.rule), text_of(&x.tenant)))
    }

    /// Checks one exception against the rules by id; returns the rule's id and the compiled
    /// exception when it has no errors. An expired exception is a warning.
    pub(crate) fn exception(
        &mut self,
        x: &ExceptionAst,
        rule_ids: &[&str],
        origin: String,
        today_ms: i64,
    ) -> Option<(String, ExceptionPlan)> {
        let before = self.diags.len();
        self.header("exception", &x.id, &x.duplicates);
        let head = Span::new(x.span.start, x.span.start + "exception".len());
        let what = format!("exception `{}`", x.id.value);
        let mut need = |slot: &Option<Spanned<String>>, clause: &str, example: &str| {
            self.need(head, &what, slot, clause, example);
        };
        need(&x.rule, "rule", "rule brute_force_login");
        need(&x.tenant, "tenant", "tenant acme");
        need(&x.owner, "owner", "owner \"soc@example.com\"");
        need(&x.expires, "expires", "expires 2027-03-31");
        need(
            &x.reason,
            "reason",
            "reason \"why these events are expected\"",
        );
        if let Some(r) = &x.rule
            && !rule_ids.contains(&r.value.as_str())
        {
            let mut d = Diagnostic::error(r.span, format!("no rule `{}` to except from", r.value));
            if let Some(m) = did_you_mean(&r.value, rule_ids.iter().copied()) {
                d = d.with_hint(format!("did you mean `{m}`?"));
            }
            self.diags.push(d);
        }
        self.tenant(&x.tenant);
        for s in [&x.owner, &x.reason].into_iter().flatten() {
            if s.value.trim().is_empty() {
                self.err(s.span, "must not be empty");
            }
        }
        let expires_ms = x.expires.as_ref().and_then(|e| {
            let ms = vigil_model::time::parse_rfc3339(&format!("{}T00:00:00Z", e.value));
            match ms {
                None => self.err(e.span, format!("`{}` is not a date", e.value)),
                Some(ms) if ms <= today_ms => self.diags.push(
                    Diagnostic::warning(e.span, format!("exception `{}` has expired", x.id.value))
                        .with_hint("it applies to events before this date only: renew it with a later date, or remove it"),
                ),
                Some(_) => {}
            }
            ms
        });
        let predicate = match &x.match_expr {
            None => {
                self.diags.push(
                    Diagnostic::error(head, format!("exception `{}` has no `match`", x.id.value))
                        .with_hint("add `match EXPR` for the events to allow"),
                );
                Predicate::Const(false)
            }
            Some(e) => self.expr(e),
        };
        if self.errors_since(before) {
            return None;
        }
        Some((
            text_of(&x.rule),
            ExceptionPlan {
                id: x.id.value.clone(),
                tenant: text_of(&x.tenant),
                owner: text_of(&x.owner),
                reason: text_of(&x.reason),
                expires_ms: expires_ms.unwrap_or(i64::MIN),
                expires: text_of(&x.expires),
                predicate,
                origin,
            },
        ))
    }

    /// Checks one rule; returns its plan when it has no errors.
    pub(crate) fn rule(&mut self, r: &RuleAst, origin: String) -> Option<RulePlan> {
        let before = self.diags.len();
        self.header("rule", &r.id, &r.duplicates);
        let version = match &r.version {
            None => 1,
            Some(v) if v.value >= 1 && v.value <= u64::from(u32::MAX) => v.value as u32,
            Some(v) => {
                self.err(v.span, "version must be between 1 and 4294967295");
                1
            }
        };
        let severity = match &r.severity {
            None => {
                self.missing(r, "severity", "severity high");
                Severity::Medium
            }
            Some(s) => self.severity(s),
        };
        let severity_if: Vec<(Severity, Predicate, Span)> = r
            .severity_if
            .iter()
            .map(|(s, e)| (self.severity(s), self.expr(e), s.span))
            .collect();
        let risk_score = match &r.risk_score {
            None => match severity {
                Severity::Informational => 0,
                Severity::Low => 21,
                Severity::Medium => 47,
                Severity::High => 73,
                Severity::Critical => 99,
            },
            Some(n) if n.value <= 100 => n.value as u32,
            Some(n) => {
                self.err(n.span, "a risk score is between 0 and 100");
                0
            }
        };
        for u in &r.references {
            if !(u.value.starts_with("https://") || u.value.starts_with("http://")) {
                self.err(u.span, "a reference is an http(s) URL");
            }
        }
        for t in r.author.iter().chain(&r.false_positives) {
            if t.value.trim().is_empty() {
                self.err(t.span, "must not be empty");
            }
        }
        for t in &r.tags {
            self.tag(t);
        }
        let title = match &r.title {
            None => {
                self.missing(r, "title", "title \"What happened\"");
                None
            }
            Some(t) => match Template::parse(&t.value, t.span) {
                Ok(tpl) => Some((tpl, t.span)),
                Err(d) => {
                    self.diags.push(d);
                    None
                }
            },
        };
        let filter = match (&r.match_expr, &r.sequence) {
            (None, None) => {
                self.missing(r, "match", "match event.category == \"authentication\"");
                Predicate::Const(false)
            }
            // A sequence's steps say which events it takes; `match` is an optional filter
            // common to all of them.
            (None, Some(_)) => Predicate::Const(true),
            (Some(e), _) => self.expr(e),
        };
        let mut suppress_across = None;
        let kind = match (&r.when, &r.sequence) {
            (None, None) => RuleKind::Single(r.suppress.as_ref().map(|s| Suppression {
                ms: self.suppression(Some(s), 0),
                by: self.group_by(&r.suppress_by, s.span, "suppress by"),
            })),
            (Some(w), None) => {
                let mut kind = self.when(w, r.suppress.as_ref());
                suppress_across = self.suppress_across(&r.suppress_by, &mut kind);
                kind
            }
            (None, Some(q)) => {
                let mut kind = self.sequence(q, r.suppress.as_ref());
                suppress_across = self.suppress_across(&r.suppress_by, &mut kind);
                kind
            }
            (Some(_), Some(q)) => {
                self.err(
                    q.keyword,
                    "a rule is either an aggregation (`when`) or a sequence, not both",
                );
                RuleKind::Single(None)
            }
        };
        let description = match &r.description {
            None => None,
            Some(t) => match Template::parse(&t.value, t.span) {
                Ok(tpl) => Some((tpl, t.span)),
                Err(d) => {
                    self.diags.push(d);
                    None
                }
            },
        };
        let mut alert_fields = Vec::new();
        for (tpl, span, what) in [(&title, "title"), (&description, "description")]
            .into_iter()
            .filter_map(|(t, what)| t.as_ref().map(|(tpl, span)| (tpl, *span, what)))
        {
            for f in tpl.fields() {
                let shown = format!("{what} placeholder `{{{f}}}`");
                self.alert_field(f, span, &kind, &shown, &mut alert_fields);
            }
        }
        for (_, p, span) in &severity_if {
            for id in p.fields() {
                let f = self.fields.paths[usize::from(id.0)].clone();
                let shown = format!("severity condition field `{f}`");
                self.alert_field(&f, *span, &kind, &shown, &mut alert_fields);
            }
        }
        if self.errors_since(before) {
            return None;
        }
        let (title, _) = title?;
        let mut plan = RulePlan {
            id: r.id.value.clone(),
            version,
            title,
            severity,
            severity_if: severity_if.into_iter().map(|(s, p, _)| (s, p)).collect(),
            risk_score,
            tags: r.tags.iter().map(|t| t.value.clone()).collect(),
            description: description.map(|(d, _)| d),
            author: r.author.as_ref().map(|a| a.value.clone()),
            references: r.references.iter().map(|u| u.value.clone()).collect(),
            false_positives: r.false_positives.iter().map(|f| f.value.clone()).collect(),
            filter,
            kind,
            suppress_across,
            alert_fields,
            input: match &r.from_alerts {
                None => RuleInput::Events,
                Some(f) => RuleInput::Alerts(f.rules.iter().map(|r| r.value.clone()).collect()),
            },
            level: 0,
            origin,
            exceptions: Vec::new(),
            tenants: TenantScope::All,
            params: r.param_values.clone(),
            params_origin: None,
            plan_hash: String::new(),
        };
        plan.compute_hash(&self.fields.paths);
        Some(plan)
    }

    /// Checks the id of a rule or an exception, and reports clauses given twice.
    fn header(&mut self, what: &str, id: &Spanned<String>, duplicates: &[(&'static str, Span)]) {
        if !valid_id(&id.value) {
            self.err(
                id.span,
                format!(
                    "invalid {what} id `{}`: use lowercase letters, digits, `_` and `.`",
                    id.value
                ),
            );
        }
        for (name, span) in duplicates {
            self.err(*span, format!("`{name}` is given more than once"));
        }
    }

    /// Whether an error was reported after the first `before` diagnostics.
    fn errors_since(&self, before: usize) -> bool {
        self.diags[before..]
            .iter()
            .any(|d| d.level == crate::diag::Level::Error)
    }

    fn missing(&mut self, r: &RuleAst, clause: &str, example: &str) {
        self.diags.push(
            Diagnostic::error(
                r.id.span,
                format!("rule `{}` has no `{clause}`", r.id.value),
            )
            .with_hint(format!("add a line such as `{example}`")),
        );
    }

    fn tag(&mut self, t: &Spanned<String>) {
        let v = &t.value;
        let Some(rest) = v.strip_prefix("attack.") else {
            if v.to_ascii_lowercase().starts_with("attack.") {
                self.diags.push(
                    Diagnostic::error(t.span, format!("ATT&CK tags are lowercase: `{v}`"))
                        .with_hint(format!("write `{}`", v.to_ascii_lowercase())),
                );
            }
            return;
        };
        let technique = rest.strip_prefix('t').is_some_and(|n| {
            let (main, sub) = n.split_once('.').unwrap_or((n, ""));
            main.len() == 4
                && main.bytes().all(|b| b.is_ascii_digit())
                && (sub.is_empty() || (sub.len() == 3 && sub.bytes().all(|b| b.is_ascii_digit())))
        });
        if !technique && !TACTICS.contains(&rest) {
            let mut d = Diagnostic::error(
                t.span,
                format!(
                    "`{v}` is neither an ATT&CK technique (`attack.t1110`, `attack.t1110.003`) nor a tactic"
                ),
            );
            if let Some(m) = did_you_mean(rest, TACTICS.iter().copied()) {
                d = d.with_hint(format!("did you mean `attack.{m}`?"));
            } else if rest.starts_with('T') {
                d = d.with_hint(format!(
                    "ATT&CK tags are lowercase: `attack.{}`",
                    rest.to_ascii_lowercase()
                ));
            }
            self.diags.push(d);
        }
    }

    /// `FIELD in list(NAME)`: the list must exist and hold what the field's values are.
    fn list_test(
        &mut self,
        c: &Comparison,
        ty: FieldType,
        name: &Spanned<String>,
        ci: bool,
    ) -> Option<Test> {
        let Some(list) = self.lists.get(&name.value) else {
            let mut d = Diagnostic::error(name.span, format!("no list `{}`", name.value));
            d = match did_you_mean(&name.value, self.lists.iter().map(|l| l.name())) {
                Some(m) => d.with_hint(format!("did you mean `{m}`?")),
                None => d.with_hint("lists are `NAME.list` files loaded with the rules"),
            };
            self.diags.push(d);
            return None;
        };
        let fits = match list.kind() {
            ListKind::Strings => ty.is_textual(),
            ListKind::Cidrs => ty == FieldType::Ip,
            ListKind::Regexes => ty == FieldType::Keyword,
        };
        if !fits {
            self.type_err(
                c,
                ty,
                match list.kind() {
                    ListKind::Strings => "strings (a `kind strings` list)",
                    ListKind::Cidrs => "IP addresses (a `kind cidrs` list)",
                    ListKind::Regexes => "strings (a `kind regexes` list)",
                },
            );
            return None;
        }
        if ci && list.kind() != ListKind::Strings {
            self.diags.push(
                Diagnostic::error(
                    c.span,
                    format!(
                        "`in~` ignores case in string lists; `{}` is a `kind {}` list",
                        list.name(),
                        list.kind().as_str()
                    ),
                )
                .with_hint(if list.kind() == ListKind::Regexes {
                    "write `in` and start the patterns with `(?i)`"
                } else {
                    "write `in`"
                }),
            );
            return None;
        }
        Some(Test::InList(Arc::clone(list), ci))
    }

    fn field_info(&mut self, path: &str, span: Span) -> Option<FieldInfo> {
        if let Some(info) = self.schema.field(path) {
            return Some(info);
        }
        let mut d = Diagnostic::error(span, format!("unknown field `{path}`"));
        if let Some(m) = did_you_mean(path, self.schema.paths()) {
            d = d.with_hint(format!("did you mean `{m}`?"));
        } else {
            d = d.with_hint("fields come from the canonical schema (docs/schema/event.schema.json); custom fields go under `labels.`");
        }
        self.diags.push(d);
        None
    }

    fn scalar_field(&mut self, f: &Spanned<String>, what: &str) -> Option<FieldId> {
        let info = self.field_info(&f.value, f.span)?;
        if info.array {
            self.err(
                f.span,
                format!("cannot {what} the array field `{}`", f.value),
            );
            return None;
        }
        Some(self.fields.intern(&f.value))
    }

    fn severity(&mut self, s: &Spanned<String>) -> Severity {
        Severity::parse(&s.value).unwrap_or_else(|| {
            let names = Severity::ALL.map(Severity::as_str);
            let mut d = Diagnostic::error(s.span, format!("unknown severity `{}`", s.value));
            d = match did_you_mean(&s.value, names) {
                Some(m) => d.with_hint(format!("did you mean `{m}`?")),
                None => d.with_hint(format!("expected one of {}", names.join(", "))),
            };
            self.diags.push(d);
            Severity::Medium
        })
    }

    /// A field an alert renders (`shown` names it in messages): one of the group-by fields of
    /// a stateful rule; a scalar event field of a single-event rule, added to `out`.
    fn alert_field(
        &mut self,
        f: &str,
        span: Span,
        kind: &RuleKind,
        shown: &str,
        out: &mut Vec<FieldId>,
    ) {
        match kind.group_by() {
            Some(group_by) => {
                if !group_by
                    .iter()
                    .any(|&g| self.fields.paths[usize::from(g.0)] == f)
                {
                    let by: Vec<&str> = group_by
                        .iter()
                        .map(|&g| self.fields.paths[usize::from(g.0)].as_str())
                        .collect();
                    let d = Diagnostic::error(
                        span,
                        format!("{shown} is not a group-by field of this rule"),
                    );
                    self.diags.push(if by.is_empty() {
                        d.with_hint(
                            "an alert of an aggregation or a sequence can only show its `by` fields",
                        )
                    } else {
                        d.with_hint(format!("use one of: {}", by.join(", ")))
                    });
                }
            }
            None => {
                if let Some(info) = self.field_info(f, span) {
                    if info.array {
                        self.err(span, format!("{shown} is an array field"));
                    } else {
                        let id = self.fields.intern(f);
                        if !out.contains(&id) {
                            out.push(id);
                        }
                    }
                }
            }
        }
    }

    fn numeric_field(&mut self, f: &Spanned<String>, agg: NumericAgg) -> Option<FieldId> {
        let info = self.field_info(&f.value, f.span)?;
        if !info.ty.is_numeric() {
            self.err(
                f.span,
                format!(
                    "`{} of` needs a numeric field; `{}` is a {} field",
                    agg.as_str(),
                    f.value,
                    info.ty.name()
                ),
            );
            return None;
        }
        self.scalar_field(f, &format!("take the {} of", agg.as_str()))
    }

    fn when(&mut self, w: &When, suppress: Option<&Spanned<u64>>) -> RuleKind {
        let agg = match &w.aggregate {
            Aggregate::FirstSeen(seen) => return self.first_seen(w, seen, suppress),
            Aggregate::Count => AggKind::Count,
            Aggregate::DistinctCount(f) => match self.scalar_field(f, "count distinct values of") {
                Some(id) => AggKind::DistinctCount(id),
                None => AggKind::Count,
            },
            Aggregate::Numeric(op, f) => match (self.numeric_field(f, *op), op) {
                (None, _) => AggKind::Count,
                (Some(id), NumericAgg::Sum) => AggKind::Sum(id),
                (Some(id), NumericAgg::Min) => AggKind::Min(id),
                (Some(id), NumericAgg::Max) => AggKind::Max(id),
                (Some(id), NumericAgg::Avg) => AggKind::Avg(id),
            },
        };
        let counting = !matches!(w.aggregate, Aggregate::Numeric(..));
        let threshold = self.threshold(&w.threshold, counting);
        let group_by = self.group_by(&w.group_by, w.span, "group by");
        if w.window.value == 0 {
            self.err(w.window.span, "the window must be longer than zero");
        } else if w.window.value > MAX_WINDOW_MS {
            self.err(
                w.window.span,
                "windows longer than 30d are not supported: state must stay bounded",
            );
        }
        let window = self.window_kind(w);
        // Sliding windows stay quiet for one window length after firing. The other kinds fire
        // at most once per window or session by construction, and the next one may fire as
        // soon as its own threshold is met, so a default suppression would add nothing.
        let default_suppress = match window {
            WindowKind::Sliding => w.window.value,
            _ => 0,
        };
        let suppress_ms = self.suppression(suppress, default_suppress);
        RuleKind::Aggregate(AggregatePlan {
            agg,
            threshold,
            group_by,
            window,
            window_ms: w.window.value,
            suppress_ms,
        })
    }

    /// `when first seen FIELDS [by KEYS] within TTL`: a count of at least one per tenant, keys
    /// and values, whose state is the time the combination was last seen, dropped after the TTL.
    fn first_seen(
        &mut self,
        w: &When,
        seen: &[Spanned<String>],
        suppress: Option<&Spanned<u64>>,
    ) -> RuleKind {
        let key: Vec<Spanned<String>> = w.group_by.iter().chain(seen).cloned().collect();
        let group_by = self.group_by(&key, w.span, "group by");
        if w.window_kind == (WindowDecl::FirstSeen { written: false }) {
            self.diags.push(
                Diagnostic::error(w.span, "first-seen state needs a TTL: add `within DURATION`")
                    .with_hint("e.g. `within 30d`: a value not seen for that long is new again, and its state is dropped"),
            );
        } else if w.window.value == 0 {
            self.err(w.window.span, "the TTL must be longer than zero");
        } else if w.window.value > MAX_FIRST_SEEN_MS {
            self.err(
                w.window.span,
                "first-seen TTLs longer than 90d are not supported: state must stay bounded",
            );
        }
        RuleKind::Aggregate(AggregatePlan {
            agg: AggKind::Count,
            threshold: Threshold::at_least(1.0),
            group_by,
            window: WindowKind::FirstSeen,
            window_ms: w.window.value,
            suppress_ms: self.suppression(suppress, 0),
        })
    }

    /// The key fields of `by` (`what` names the clause in messages), sorted by path.
    fn group_by(&mut self, fields: &[Spanned<String>], span: Span, what: &str) -> Vec<FieldId> {
        let mut group_by: Vec<(String, FieldId)> = Vec::new();
        for g in fields {
            if group_by.iter().any(|(p, _)| p == &g.value) {
                self.err(g.span, format!("cannot {what} `{}` twice", g.value));
            } else if let Some(id) = self.scalar_field(g, what) {
                group_by.push((g.value.clone(), id));
            }
        }
        if fields.len() > MAX_GROUP_FIELDS {
            self.err(
                span,
                format!("at most {MAX_GROUP_FIELDS} fields are allowed in `by`"),
            );
        }
        group_by.sort();
        group_by.into_iter().map(|(_, id)| id).collect()
    }

    /// `suppress … by FIELDS` on an aggregation or a sequence. Its group-by fields (or no
    /// `by`): each group is quiet on its own, in its window state. Some of them: the quiet
    /// period applies across the groups sharing those fields' values, at the alert stage (see
    /// [`RulePlan::suppress_across`]), and the groups' own state keeps none. Any other field is
    /// an error: the alert stage sees only the group's values.
    fn suppress_across(
        &mut self,
        by: &[Spanned<String>],
        kind: &mut RuleKind,
    ) -> Option<Suppression> {
        let first = by.first()?;
        let span = Span::new(
            first.span.start,
            by.last().map_or(first.span.end, |l| l.span.end),
        );
        let named = self.group_by(by, span, "suppress by");
        let group = kind.group_by().unwrap_or_default();
        let paths = &self.fields.paths;
        if let Some(f) = by
            .iter()
            .find(|f| !group.iter().any(|&g| paths[usize::from(g.0)] == f.value))
        {
            let shown: Vec<&str> = group
                .iter()
                .map(|&g| paths[usize::from(g.0)].as_str())
                .collect();
            let hint = if shown.is_empty() {
                "this rule has no group-by fields: drop `by`".to_owned()
            } else {
                format!(
                    "name some of its group-by fields ({}), or drop `by` to suppress per group",
                    shown.join(", ")
                )
            };
            self.diags.push(
                Diagnostic::error(
                    f.span,
                    format!(
                        "`{}` is not a group-by field: an aggregation or sequence is suppressed by \
                         some or all of its group-by fields",
                        f.value
                    ),
                )
                .with_hint(hint),
            );
            return None;
        }
        if named.len() == group.len() {
            // The group itself: its window state keeps the quiet period.
            return None;
        }
        let ms = match kind {
            RuleKind::Aggregate(a) => std::mem::take(&mut a.suppress_ms),
            RuleKind::Sequence(q) => std::mem::take(&mut q.suppress_ms),
            RuleKind::Single(_) => return None,
        };
        Some(Suppression { ms, by: named })
    }

    fn suppression(&mut self, suppress: Option<&Spanned<u64>>, default: u64) -> u64 {
        match suppress {
            None => default,
            Some(s) if s.value > MAX_WINDOW_MS => {
                self.err(s.span, "suppression longer than 30d is not supported");
                default
            }
            Some(s) => s.value,
        }
    }

    fn sequence(&mut self, q: &Sequence, suppress: Option<&Spanned<u64>>) -> RuleKind {
        let group_by = self.group_by(&q.group_by, q.keyword, "group by");
        let span_ms = match &q.within {
            None => {
                self.diags.push(
                    Diagnostic::error(q.keyword, "a sequence needs `within DURATION`")
                        .with_hint("partial matches are kept until they can no longer complete: without a span they would be kept forever"),
                );
                0
            }
            Some(d) if d.value == 0 => {
                self.err(d.span, "the span must be longer than zero");
                0
            }
            Some(d) if d.value > MAX_WINDOW_MS => {
                self.err(
                    d.span,
                    "spans longer than 30d are not supported: state must stay bounded",
                );
                0
            }
            Some(d) => d.value,
        };
        let mut steps: Vec<StepPlan> = Vec::new();
        let mut absent: Option<StepPlan> = None;
        let mut names: Vec<&str> = Vec::new();
        let mut stages = 0u64;
        for (i, st) in q.steps.iter().enumerate() {
            if names.contains(&st.name.value.as_str()) {
                self.err(
                    st.name.span,
                    format!("step `{}` is named twice", st.name.value),
                );
            }
            names.push(&st.name.value);
            let predicate = self.expr(&st.expr);
            let runs = match &st.runs {
                None => 1,
                Some(r) if r.value == 0 || r.value > MAX_STAGES => {
                    self.err(r.span, format!("`runs` takes 1 to {MAX_STAGES}"));
                    1
                }
                Some(r) => r.value as u32,
            };
            let step = StepPlan {
                name: st.name.value.clone(),
                predicate,
                runs,
            };
            if !st.absent {
                stages += u64::from(runs);
                steps.push(step);
                continue;
            }
            if let Some(r) = &st.runs {
                self.err(r.span, "an absent step cannot repeat");
            }
            if i + 1 != q.steps.len() {
                self.diags.push(
                    Diagnostic::error(st.span, "only the last step of a sequence may be absent")
                        .with_hint("the rule fires when the span ends without the absent step: it has to come last"),
                );
            }
            absent = Some(step);
        }
        match steps.first() {
            None => self.err(
                q.keyword,
                "a sequence needs at least one step that must happen",
            ),
            Some(first) if steps.len() == 1 && first.runs == 1 && absent.is_none() => {
                self.diags.push(
                    Diagnostic::error(q.keyword, "a sequence of one step is a single-event rule")
                        .with_hint(
                            "write the step as `match`, or add the steps that must follow it",
                        ),
                );
            }
            Some(_) => {}
        }
        if stages > MAX_STAGES {
            self.err(
                q.keyword,
                format!("a sequence may have at most {MAX_STAGES} stages (steps, counting `runs`)"),
            );
        }
        if steps.len() > MAX_STEPS {
            self.err(
                q.keyword,
                format!("a sequence may have at most {MAX_STEPS} steps"),
            );
        }
        let mut until = None;
        for (i, (e, span)) in q.until.iter().enumerate() {
            if i > 0 {
                self.err(
                    *span,
                    "a sequence has one `until`: combine the conditions with `or`",
                );
            } else {
                until = Some(self.expr(e));
            }
        }
        let suppress_ms = self.suppression(suppress, 0);
        RuleKind::Sequence(SequencePlan {
            steps,
            absent,
            until,
            group_by,
            span_ms,
            suppress_ms,
        })
    }

    /// The condition of a `when` clause; counts must name a level to reach, in whole events.
    fn threshold(&mut self, c: &Spanned<Condition>, counting: bool) -> Threshold {
        let bound = |value: f64, inclusive: bool| Some(Bound { value, inclusive });
        let t = match &c.value {
            Condition::Cmp(op, n) => {
                let n = *n;
                match op.as_str() {
                    ">=" => Threshold {
                        lo: bound(n, true),
                        hi: None,
                    },
                    ">" => Threshold {
                        lo: bound(n, false),
                        hi: None,
                    },
                    "<=" => Threshold {
                        lo: None,
                        hi: bound(n, true),
                    },
                    "<" => Threshold {
                        lo: None,
                        hi: bound(n, false),
                    },
                    "==" => Threshold {
                        lo: bound(n, true),
                        hi: bound(n, true),
                    },
                    _ => {
                        self.diags.push(
                            Diagnostic::error(c.span, format!("a threshold cannot use `{op}`"))
                                .with_hint("write `>=`, `>`, `<=`, `<`, `==` or `between A and B`"),
                        );
                        return Threshold::at_least(1.0);
                    }
                }
            }
            Condition::Between(a, b) => {
                if a > b {
                    self.err(c.span, format!("the range is empty: {a} is above {b}"));
                }
                Threshold {
                    lo: bound(*a, true),
                    hi: bound(*b, true),
                }
            }
        };
        let values = [t.lo, t.hi];
        if values.iter().flatten().any(|b| !b.value.is_finite()) {
            self.err(c.span, "the threshold must be a finite number");
        } else if counting {
            let whole = values
                .iter()
                .flatten()
                .all(|b| b.value.fract() == 0.0 && b.value >= 0.0);
            if !whole {
                self.err(c.span, "a count threshold must be a whole number");
            } else {
                match t.lo {
                    None => self.diags.push(
                        Diagnostic::error(c.span, "a count cannot fire on staying below a level")
                            .with_hint("a rule fires as events arrive, when the count reaches a level: write `>= N`, `> N` or `between N and M`"),
                    ),
                    Some(l) if l.value == 0.0 && l.inclusive => self.err(
                        c.span,
                        "a count of zero or more holds for every event; use `>= 1` or more",
                    ),
                    Some(_) => {}
                }
            }
        }
        t
    }

    /// The window kind, with hopping and session windows checked for bounded state.
    fn window_kind(&mut self, w: &When) -> WindowKind {
        match &w.window_kind {
            WindowDecl::Sliding => WindowKind::Sliding,
            WindowDecl::Tumbling => WindowKind::Tumbling,
            WindowDecl::Hopping { slide } => {
                let size = w.window.value;
                if slide.value == 0 {
                    self.err(slide.span, "the slide must be longer than zero");
                } else if !size.is_multiple_of(slide.value) {
                    self.err(
                        slide.span,
                        "a hopping window's size must be a whole number of slides",
                    );
                } else if size / slide.value > MAX_HOPS {
                    self.diags.push(
                        Diagnostic::error(
                            slide.span,
                            format!("a hopping window may span at most {MAX_HOPS} slides"),
                        )
                        .with_hint("state and work grow with every slide a window spans: use a longer slide, or an exact sliding window"),
                    );
                }
                WindowKind::Hopping {
                    slide_ms: slide.value.max(1),
                }
            }
            WindowDecl::FirstSeen { .. } => WindowKind::FirstSeen,
            WindowDecl::Session { max } => {
                let max_ms = max.as_ref().map_or(DEFAULT_SESSION_MAX_MS, |m| m.value);
                if let Some(m) = max {
                    if m.value < w.window.value {
                        self.err(m.span, "a session's longest span must be at least its gap");
                    } else if m.value > MAX_WINDOW_MS {
                        self.err(
                            m.span,
                            "sessions longer than 30d are not supported: state must stay bounded",
                        );
                    }
                }
                WindowKind::Session { max_ms }
            }
        }
    }

    fn expr(&mut self, e: &Expr) -> Predicate {
        match e {
            Expr::And(es) => Predicate::And(es.iter().map(|e| self.expr(e)).collect()),
            Expr::Or(es) => Predicate::Or(es.iter().map(|e| self.expr(e)).collect()),
            Expr::Not(e) => Predicate::Not(Box::new(self.expr(e))),
            Expr::Cmp(c) => self.comparison(c).unwrap_or(Predicate::Const(false)),
        }
    }

    fn comparison(&mut self, c: &Comparison) -> Option<Predicate> {
        let info = self.field_info(&c.field.value, c.field.span)?;
        let id = self.fields.intern(&c.field.value);
        let op = c.op.value;
        let field = &c.field.value;
        let ty = info.ty;
        let test = |t: Test| Some(Predicate::Test(id, t));
        let not = |p: Option<Predicate>| p.map(|p| Predicate::Not(Box::new(p)));
        match (op, &c.operand) {
            (CmpOp::Exists, _) => test(Test::Exists),
            (CmpOp::Eq | CmpOp::Ne, Operand::Literal(lit)) => {
                let t = self.eq_test(field, ty, lit)?;
                if op == CmpOp::Ne {
                    not(test(t))
                } else {
                    test(t)
                }
            }
            (CmpOp::EqCi | CmpOp::NeCi, Operand::Literal(lit)) => {
                let s = self.text_literal(field, ty, op, lit)?;
                let t = test(Test::EqStrCi(s.to_lowercase()));
                if op == CmpOp::NeCi { not(t) } else { t }
            }
            (CmpOp::Lt | CmpOp::Le | CmpOp::Gt | CmpOp::Ge, Operand::Literal(lit)) => {
                let Literal::Num(n) = lit.value else {
                    self.err(
                        lit.span,
                        format!(
                            "`{}` compares numbers, found a {}",
                            op.as_str(),
                            lit.value.type_name()
                        ),
                    );
                    return None;
                };
                if !ty.is_numeric() {
                    self.type_err(c, ty, "numbers");
                    return None;
                }
                let nop = match op {
                    CmpOp::Lt => NumOp::Lt,
                    CmpOp::Le => NumOp::Le,
                    CmpOp::Gt => NumOp::Gt,
                    _ => NumOp::Ge,
                };
                test(Test::Cmp(nop, n))
            }
            (CmpOp::In { ci, negated }, Operand::ListRef(name)) => {
                let t = self.list_test(c, ty, name, ci)?;
                if negated { not(test(t)) } else { test(t) }
            }
            (CmpOp::In { ci, negated }, Operand::List(items)) => {
                if items.is_empty() {
                    self.err(c.span, "`in` needs at least one value");
                    return None;
                }
                let t = if ci {
                    let mut out = Vec::new();
                    for lit in items {
                        out.push(self.text_literal(field, ty, op, lit)?.to_lowercase());
                    }
                    Test::InStrCi(out)
                } else {
                    let mut strs = Vec::new();
                    let mut nums = Vec::new();
                    for lit in items {
                        match self.eq_test(field, ty, lit)? {
                            Test::EqStr(s) => strs.push(s),
                            Test::EqNum(n) => nums.push(n),
                            _ => {
                                self.err(lit.span, "`in` lists hold strings or numbers");
                                return None;
                            }
                        }
                    }
                    if nums.is_empty() {
                        Test::InStr(strs)
                    } else {
                        Test::InNum(nums)
                    }
                };
                if negated { not(test(t)) } else { test(t) }
            }
            (
                CmpOp::Contains { ci } | CmpOp::StartsWith { ci } | CmpOp::EndsWith { ci },
                Operand::Literal(lit),
            ) => {
                let s = self.text_literal(field, ty, op, lit)?;
                if ty != FieldType::Keyword {
                    self.type_err(c, ty, "strings");
                    return None;
                }
                let (s, lower) = (s.to_owned(), s.to_lowercase());
                test(match (op, ci) {
                    (CmpOp::Contains { .. }, false) => Test::Contains(s),
                    (CmpOp::Contains { .. }, true) => Test::ContainsCi(lower),
                    (CmpOp::StartsWith { .. }, false) => Test::StartsWith(s),
                    (CmpOp::StartsWith { .. }, true) => Test::StartsWithCi(lower),
                    (_, false) => Test::EndsWith(s),
                    (_, true) => Test::EndsWithCi(lower),
                })
            }
            (CmpOp::Matches, Operand::Regex { pattern, ci }) => {
                if ty != FieldType::Keyword {
                    self.type_err(c, ty, "strings");
                    return None;
                }
                match regex::RegexBuilder::new(&pattern.value)
                    .case_insensitive(*ci)
                    .size_limit(1 << 20)
                    .build()
                {
                    Ok(re) => {
                        for (message, hint) in regex_warnings(&pattern.value, *ci) {
                            self.diags
                                .push(Diagnostic::warning(pattern.span, message).with_hint(hint));
                        }
                        test(Test::Matches(re, *ci))
                    }
                    Err(e) => {
                        let msg = e.to_string();
                        let last = msg
                            .lines()
                            .last()
                            .unwrap_or("invalid regex")
                            .trim()
                            .to_owned();
                        self.err(
                            pattern.span,
                            format!("invalid regex: {}", last.trim_start_matches("error: ")),
                        );
                        None
                    }
                }
            }
            (CmpOp::Cidr, operand) => {
                if ty != FieldType::Ip {
                    self.type_err(c, ty, "IP addresses");
                    return None;
                }
                let lits: Vec<&Spanned<Literal>> = match operand {
                    Operand::Literal(l) => vec![l],
                    Operand::List(ls) if !ls.is_empty() => ls.iter().collect(),
                    _ => {
                        self.err(c.span, "`cidr` needs a network such as \"10.0.0.0/8\"");
                        return None;
                    }
                };
                let mut nets = Vec::new();
                for l in lits {
                    match &l.value {
                        Literal::Str(s) => match Cidr::parse(s) {
                            Some(n) => nets.push(n),
                            None => self.err(
                                l.span,
                                format!("invalid network `{s}`: expected such as \"10.0.0.0/8\""),
                            ),
                        },
                        other => self.err(
                            l.span,
                            format!("`cidr` needs a string, found a {}", other.type_name()),
                        ),
                    }
                }
                (nets.len() == lits_len(operand)).then(|| Predicate::Test(id, Test::Cidr(nets)))
            }
            _ => {
                self.err(
                    c.span,
                    format!("`{}` cannot take this operand", op.as_str()),
                );
                None
            }
        }
    }

    fn type_err(&mut self, c: &Comparison, ty: FieldType, wants: &str) {
        self.err(
            c.op.span,
            format!(
                "`{}` works on {wants}, but `{}` is a {} field",
                c.op.value.as_str(),
                c.field.value,
                ty.name()
            ),
        );
    }

    fn text_literal<'l>(
        &mut self,
        field: &str,
        ty: FieldType,
        op: CmpOp,
        lit: &'l Spanned<Literal>,
    ) -> Option<&'l str> {
        match &lit.value {
            Literal::Str(s) if ty.is_textual() => Some(s),
            Literal::Str(_) => {
                self.err(
                    lit.span,
                    format!(
                        "`{}` compares strings, but `{field}` is a {} field",
                        op.as_str(),
                        ty.name()
                    ),
                );
                None
            }
            other => {
                self.err(
                    lit.span,
                    format!(
                        "`{}` needs a string, found a {}",
                        op.as_str(),
                        other.type_name()
                    ),
                );
                None
            }
        }
    }

    fn eq_test(&mut self, field: &str, ty: FieldType, lit: &Spanned<Literal>) -> Option<Test> {
        match (&lit.value, ty) {
            (Literal::Str(s), FieldType::Ip) => match s.parse::<IpAddr>() {
                // Events carry IPs in canonical text form (the normalizer's job), so compare the
                // literal's canonical form.
                Ok(ip) => Some(Test::EqStr(ip.to_string())),
                Err(_) => {
                    self.diags.push(
                        Diagnostic::error(lit.span, format!("`{s}` is not an IP address"))
                            .with_hint("for networks use `cidr \"10.0.0.0/8\"`"),
                    );
                    None
                }
            },
            (Literal::Str(s), t) if t.is_textual() => Some(Test::EqStr(s.clone())),
            (Literal::Num(n), t) if t.is_numeric() => {
                if t == FieldType::Integer && n.fract() != 0.0 {
                    self.err(
                        lit.span,
                        format!("`{field}` is an integer field; `{n}` is not a whole number"),
                    );
                    return None;
                }
                Some(Test::EqNum(*n))
            }
            (Literal::Bool(b), FieldType::Boolean) => Some(Test::EqBool(*b)),
            (v, t) => {
                self.err(
                    lit.span,
                    format!(
                        "cannot compare the {} field `{field}` with a {}",
                        t.name(),
                        v.type_name()
                    ),
                );
                None
            }
        }
    }
}

fn lits_len(o: &Operand) -> usize {
    match o {
        Operand::List(l) => l.len(),
        Operand::ListRef(_) => 1,
        _ => 1,
    }
}
