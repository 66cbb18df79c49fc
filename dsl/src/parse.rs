//! The pest parser and the conversion of its pairs into the syntax tree.
//!
//! Syntax errors are reported for every rule of a file, not just the first: when the whole file
//! does not parse, it is split at lines that start a rule and each piece is parsed on its own.
//! The parser never panics, whatever the input (see `tests/no_panic.rs`: every prefix of the
//! corpus and seeded random mutations of it).

use pest::Parser as _;
use pest::error::InputLocation;
use pest::iterators::Pair;

use crate::ast::*;
use crate::diag::Diagnostic;

#[derive(pest_derive::Parser)]
#[grammar = "grammar.pest"]
pub(crate) struct RuleParser;

/// Parses a rule file. Returns the rules that parsed and every syntax error.
pub fn parse(source: &str) -> (RuleFile, Vec<Diagnostic>) {
    parse_with(source, None)
}

/// A tenant's values for one rule's parameters: the rule's id and the values.
pub(crate) type Overrides<'a> = Option<(&'a str, &'a [ParamAst])>;

/// [`parse`], with `overrides` in place of the named rule's defaults.
pub(crate) fn parse_with(source: &str, overrides: Overrides<'_>) -> (RuleFile, Vec<Diagnostic>) {
    let mut cx = Cx {
        diags: Vec::new(),
        overrides,
        params: Vec::new(),
        used: Vec::new(),
        failed: Vec::new(),
    };
    let file = match RuleParser::parse(Rule::file, source) {
        Ok(mut pairs) => {
            let mut file = RuleFile::default();
            if let Some(top) = pairs.next() {
                for pair in top.into_inner() {
                    add_item(&mut file, pair, 0, &mut cx);
                }
            }
            file
        }
        Err(whole) => {
            let file = parse_segments(source, &mut cx);
            if cx.diags.is_empty() {
                // The pieces parsed on their own although the whole did not: report the
                // whole-file error rather than pretending the file is fine.
                cx.diags.push(convert_error(&whole, source, 0));
            }
            file
        }
    };
    let mut file = file;
    file.failed_params = cx.failed;
    (file, cx.diags)
}

/// What the builders share: the diagnostics so far and the parameters of the rule being built.
struct Cx<'a> {
    diags: Vec<Diagnostic>,
    overrides: Overrides<'a>,
    /// The rule's parameters with the values in force (a tenant's, or the defaults).
    params: Vec<ParamAst>,
    /// The parameters used so far, with their values.
    used: Vec<(String, ParamValue)>,
    /// Where a parameter could not be used.
    failed: Vec<Span>,
}

impl Cx<'_> {
    /// Replaces each `{$NAME}` of a declared parameter in a title or description with its
    /// value.
    fn expand(&mut self, text: &mut String) {
        for p in &self.params {
            let placeholder = format!("{{${}}}", p.name.value);
            if text.contains(&placeholder) {
                let value = match &p.value.value {
                    ParamValue::Str(v) => v.clone(),
                    other => other.to_string(),
                };
                *text = text.replace(&placeholder, &value);
                if !self.used.iter().any(|(n, _)| n == &p.name.value) {
                    self.used
                        .push((p.name.value.clone(), p.value.value.clone()));
                }
            }
        }
    }

    /// The value of the parameter `$NAME` at `p` (a `param_ref`), when it is declared and of
    /// type `want` (a [`ParamValue::type_name`]); otherwise reports why and returns `None`.
    fn param(&mut self, p: &Pair<'_, Rule>, base: usize, want: &[&str]) -> Option<ParamValue> {
        let span = span_of(p, base);
        let name = p.as_str().trim_start_matches('$');
        let Some(decl) = self.params.iter().find(|d| d.name.value == name) else {
            self.failed.push(span);
            let d = Diagnostic::error(span, format!("unknown parameter `${name}`"));
            let d = match crate::diag::did_you_mean(
                name,
                self.params.iter().map(|d| d.name.value.as_str()),
            ) {
                Some(m) => d.with_hint(format!("did you mean `${m}`?")),
                None => d.with_hint(format!("declare it in the rule: `param {name} = …`")),
            };
            self.diags.push(d);
            return None;
        };
        let value = decl.value.value.clone();
        if !self.used.iter().any(|(n, _)| n == name) {
            self.used.push((name.to_owned(), value.clone()));
        }
        if !want.contains(&value.type_name()) {
            let wanted = match want.split_last() {
                Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
                _ => want.join(""),
            };
            self.failed.push(span);
            self.diags.push(Diagnostic::error(
                span,
                format!(
                    "`${name}` is {} ({value}); {wanted} is needed here",
                    value.type_name()
                ),
            ));
            return None;
        }
        Some(value)
    }
}

fn parse_segments(source: &str, cx: &mut Cx<'_>) -> RuleFile {
    let mut starts = Vec::new();
    let mut offset = 0;
    // Items start at the beginning of a line (an indented `rule R` is a clause of an exception
    // or a parameter set).
    for line in source.split_inclusive('\n') {
        let starts_item = ["rule", "exception", "params"].iter().any(|k| {
            line.strip_prefix(k)
                .is_some_and(|rest| rest.starts_with([' ', '\t']))
        });
        if starts_item {
            starts.push(offset);
        }
        offset += line.len();
    }
    let first = starts.first().copied().unwrap_or(source.len());
    if let Some(d) = junk_before_first_rule(&source[..first]) {
        cx.diags.push(d);
    }
    let mut file = RuleFile::default();
    for (i, &start) in starts.iter().enumerate() {
        let end = starts.get(i + 1).copied().unwrap_or(source.len());
        let piece = &source[start..end];
        match RuleParser::parse(Rule::segment, piece) {
            Ok(mut pairs) => {
                if let Some(item) = pairs.next().and_then(|p| p.into_inner().next()) {
                    add_item(&mut file, item, start, cx);
                }
            }
            Err(e) => cx.diags.push(convert_error(&e, piece, start)),
        }
    }
    file
}

fn junk_before_first_rule(prefix: &str) -> Option<Diagnostic> {
    let mut offset = 0;
    for line in prefix.split_inclusive('\n') {
        let trimmed = line.trim_start();
        let content = trimmed.trim_end();
        if !(content.is_empty() || content.starts_with('#') || content.starts_with("//")) {
            let at = offset + (line.len() - trimmed.len());
            let word_len = content.find(char::is_whitespace).unwrap_or(content.len());
            return Some(Diagnostic::error(
                Span::new(at, at + word_len),
                format!(
                    "expected `rule`, `exception` or `params`, found `{}`",
                    &content[..word_len]
                ),
            ));
        }
        offset += line.len();
    }
    None
}

fn convert_error(e: &pest::error::Error<Rule>, piece: &str, base: usize) -> Diagnostic {
    let pos = match e.location {
        InputLocation::Pos(p) => p,
        InputLocation::Span((s, _)) => s,
    };
    let found = describe_found(&piece[pos.min(piece.len())..]);
    let message = match &e.variant {
        pest::error::ErrorVariant::ParsingError { positives, .. } => {
            let mut wanted: Vec<&str> = Vec::new();
            for r in positives {
                let d = describe(*r);
                if !wanted.contains(&d) {
                    wanted.push(d);
                }
            }
            // A parameter may stand for most values: name it last, after what is usually meant.
            let param = describe(Rule::param_ref);
            if let Some(i) = wanted.iter().position(|w| *w == param) {
                let p = wanted.remove(i);
                wanted.push(p);
            }
            match wanted.len() {
                0 => format!("unexpected {found}"),
                1 => format!("expected {}, found {found}", wanted[0]),
                _ => {
                    let last = wanted.pop().unwrap_or_default();
                    format!("expected {} or {last}, found {found}", wanted.join(", "))
                }
            }
        }
        pest::error::ErrorVariant::CustomError { message } => message.clone(),
    };
    let len = found_len(&piece[pos.min(piece.len())..]);
    Diagnostic::error(Span::new(base + pos, base + pos + len), message)
}

fn found_len(rest: &str) -> usize {
    match rest.chars().next() {
        None => 0,
        Some(c) if c.is_alphanumeric() || c == '_' => rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.'))
            .unwrap_or(rest.len()),
        Some(c) => c.len_utf8(),
    }
}

fn describe_found(rest: &str) -> String {
    match rest.chars().next() {
        None => "end of file".to_owned(),
        Some('\n') | Some('\r') => "end of line".to_owned(),
        Some(_) => format!("`{}`", &rest[..found_len(rest)]),
    }
}

fn describe(r: Rule) -> &'static str {
    match r {
        Rule::rule | Rule::k_rule => "`rule`",
        Rule::exception | Rule::k_exception => "`exception`",
        Rule::for_rule_clause
        | Rule::tenant_clause
        | Rule::owner_clause
        | Rule::expires_clause
        | Rule::reason_clause
        | Rule::k_tenant
        | Rule::k_owner
        | Rule::k_expires
        | Rule::k_reason => {
            "an exception clause (`rule`, `tenant`, `owner`, `expires`, `reason`, `match`) or `}`"
        }
        Rule::date => "a date such as `2027-03-31`",
        Rule::rule_id => "a rule id",
        Rule::k_version
        | Rule::k_title
        | Rule::k_severity
        | Rule::k_tags
        | Rule::k_description
        | Rule::k_match
        | Rule::k_when
        | Rule::k_sequence
        | Rule::k_suppress
        | Rule::k_from
        | Rule::k_author
        | Rule::k_references
        | Rule::k_false_positives
        | Rule::k_risk_score
        | Rule::param_clause
        | Rule::k_param => {
            "a clause (`title`, `severity`, `tags`, `description`, `version`, `author`, `references`, `false_positives`, `risk_score`, `match`, `when`, `sequence`, `suppress`, `from`, `param`) or `}`"
        }
        Rule::k_if => "`if`",
        Rule::string_list => "a list of strings `[\"…\", …]`",
        Rule::step | Rule::absent_step | Rule::until_step | Rule::step_name | Rule::k_until => {
            "a step (`NAME: EXPR`, `not NAME: EXPR`, `until: EXPR`) or `}`"
        }
        Rule::runs | Rule::k_runs => "`runs N`",
        Rule::EOI => "end of file",
        Rule::expr | Rule::and_expr | Rule::not_expr | Rule::negation | Rule::comparison => {
            "an expression"
        }
        Rule::field | Rule::field_seg => "a field name",
        Rule::cmp_op
        | Rule::in_op
        | Rule::text_op
        | Rule::k_exists
        | Rule::k_cidr
        | Rule::k_matches
        | Rule::not_kw
        | Rule::in_pred
        | Rule::cidr_pred
        | Rule::matches_pred
        | Rule::text_pred
        | Rule::cmp_pred
        | Rule::exists_pred => {
            "an operator (`==`, `!=`, `<`, `in`, `contains`, `startswith`, `endswith`, `matches`, `cidr`, `exists`)"
        }
        Rule::k_and | Rule::k_or => "`and`, `or`",
        Rule::string | Rule::dq_string | Rule::sq_string => "a string",
        Rule::number | Rule::integer => "a number",
        Rule::boolean => "a boolean",
        Rule::list => "a list `[…]`",
        Rule::list_ref | Rule::k_list => "a named list `list(NAME)`",
        Rule::regex => "a regex `/…/`",
        Rule::duration => "a duration such as `5m`",
        Rule::param_ref => "a parameter `$NAME`",
        Rule::param_name => "a parameter name",
        Rule::param_value => "a value (a duration, number, string, boolean or `list(NAME)`)",
        Rule::params | Rule::k_params => "`params`",
        Rule::param_set => "`NAME = VALUE`",
        Rule::ident => "a name",
        Rule::tag | Rule::tag_list => "a tag or a list of tags",
        Rule::aggregate
        | Rule::count
        | Rule::k_count
        | Rule::distinct_count
        | Rule::k_distinct
        | Rule::numeric_agg
        | Rule::agg_fn => {
            "an aggregate (`count`, `distinct count of F`, `sum of F`, `min of F`, `max of F`, `avg of F`)"
        }
        Rule::k_of => "`of`",
        Rule::first_seen | Rule::k_first | Rule::k_seen => "`first seen FIELD`",
        Rule::threshold | Rule::between | Rule::k_between => {
            "a threshold such as `>= 10` or `between 10 and 100`"
        }
        Rule::group_by | Rule::k_by => "`by`",
        Rule::k_within => "`within`",
        Rule::window
        | Rule::window_kind
        | Rule::k_sliding
        | Rule::k_tumbling
        | Rule::hopping
        | Rule::k_hopping
        | Rule::session
        | Rule::k_session => {
            "a window (`5m`, `sliding 5m`, `tumbling 1h`, `hopping 1h every 10m`, `session 30m`)"
        }
        Rule::k_every => "`every`",
        Rule::k_max => "`max`",
        Rule::k_for => "`for`",
        Rule::k_alerts => "`alerts`",
        Rule::k_not => "`not`",
        _ => "more input",
    }
}

/// A pair's text with its span.
fn text_of(p: &Pair<'_, Rule>, base: usize) -> Spanned<String> {
    Spanned {
        value: p.as_str().to_owned(),
        span: span_of(p, base),
    }
}

fn span_of(p: &Pair<'_, Rule>, base: usize) -> Span {
    let s = p.as_span();
    Span::new(base + s.start(), base + s.end())
}

fn add_item(file: &mut RuleFile, pair: Pair<'_, Rule>, base: usize, cx: &mut Cx<'_>) {
    match pair.as_rule() {
        Rule::rule => file.rules.push(build_rule(pair, base, cx)),
        Rule::exception => file.exceptions.push(build_exception(pair, base, cx)),
        Rule::params => file.params.push(build_params(pair, base, cx)),
        _ => {}
    }
}

fn build_exception(pair: Pair<'_, Rule>, base: usize, cx: &mut Cx<'_>) -> ExceptionAst {
    let mut x = ExceptionAst {
        span: span_of(&pair, base),
        ..ExceptionAst::default()
    };
    for p in pair.into_inner() {
        let span = span_of(&p, base);
        let kind = p.as_rule();
        if kind == Rule::rule_id {
            x.id = Spanned {
                value: p.as_str().to_owned(),
                span,
            };
            continue;
        }
        let Some(v) = p.into_inner().find(|q| !is_keyword(q.as_rule())) else {
            continue;
        };
        let text = |v: &Pair<'_, Rule>, cx: &mut Cx<'_>| match v.as_rule() {
            Rule::string => build_string(v, base, cx),
            _ => Spanned {
                value: v.as_str().to_owned(),
                span: span_of(v, base),
            },
        };
        let dups = &mut x.duplicates;
        match kind {
            Rule::for_rule_clause => set_once(&mut x.rule, text(&v, cx), "rule", span, dups),
            Rule::tenant_clause => set_once(&mut x.tenant, text(&v, cx), "tenant", span, dups),
            Rule::owner_clause => set_once(&mut x.owner, text(&v, cx), "owner", span, dups),
            Rule::expires_clause => {
                set_once(&mut x.expires, text(&v, cx), "expires", span, dups);
            }
            Rule::reason_clause => set_once(&mut x.reason, text(&v, cx), "reason", span, dups),
            Rule::match_clause => {
                let e = build_expr(v, base, cx);
                set_once(&mut x.match_expr, e, "match", span, dups);
            }
            _ => {}
        }
    }
    x
}

fn build_rule(pair: Pair<'_, Rule>, base: usize, cx: &mut Cx<'_>) -> RuleAst {
    let mut r = RuleAst {
        span: span_of(&pair, base),
        ..RuleAst::default()
    };
    // Parameters first, so that every clause sees them, whatever the order; a tenant's values
    // replace the defaults.
    r.params = pair
        .clone()
        .into_inner()
        .filter(|p| p.as_rule() == Rule::param_clause)
        .map(|p| build_param(p, base, cx))
        .collect();
    check_unique_params(&r.params, "declared", cx);
    let id = pair
        .clone()
        .into_inner()
        .find(|p| p.as_rule() == Rule::rule_id)
        .map(|p| p.as_str());
    cx.params = r.params.clone();
    if let Some((rule, values)) = cx.overrides
        && Some(rule) == id
    {
        for v in values {
            if let Some(d) = cx.params.iter_mut().find(|d| d.name.value == v.name.value) {
                d.value = v.value.clone();
            }
        }
    }
    cx.used.clear();
    for p in pair.into_inner() {
        let span = span_of(&p, base);
        let kind = p.as_rule();
        let text = p.as_str();
        let mut inner = p.into_inner().filter(|q| !is_keyword(q.as_rule()));
        let mut first = || inner.next();
        match kind {
            Rule::rule_id => {
                r.id = Spanned {
                    value: text.to_owned(),
                    span,
                }
            }
            Rule::version_clause => {
                let Some(n) = first() else { continue };
                let nspan = span_of(&n, base);
                let value = n.as_str().parse::<u64>().unwrap_or_else(|_| {
                    cx.diags
                        .push(Diagnostic::error(nspan, "version is too large"));
                    1
                });
                set_once(
                    &mut r.version,
                    Spanned { value, span: nspan },
                    "version",
                    span,
                    &mut r.duplicates,
                );
            }
            Rule::title_clause => {
                let Some(s) = first() else { continue };
                let mut v = build_string(&s, base, cx);
                cx.expand(&mut v.value);
                set_once(&mut r.title, v, "title", span, &mut r.duplicates);
            }
            Rule::description_clause => {
                let Some(s) = first() else { continue };
                let mut v = build_string(&s, base, cx);
                cx.expand(&mut v.value);
                set_once(
                    &mut r.description,
                    v,
                    "description",
                    span,
                    &mut r.duplicates,
                );
            }
            Rule::severity_clause => {
                let Some(s) = first() else { continue };
                let v = text_of(&s, base);
                match first() {
                    Some(e) => {
                        let e = build_expr(e, base, cx);
                        r.severity_if.push((v, e));
                    }
                    None => set_once(&mut r.severity, v, "severity", span, &mut r.duplicates),
                }
            }
            Rule::author_clause => {
                let Some(s) = first() else { continue };
                let v = build_string(&s, base, cx);
                set_once(&mut r.author, v, "author", span, &mut r.duplicates);
            }
            Rule::references_clause | Rule::false_positives_clause => {
                let Some(list) = first() else { continue };
                let items: Vec<Spanned<String>> = list
                    .into_inner()
                    .map(|q| build_string(&q, base, cx))
                    .collect();
                let (slot, name) = if kind == Rule::references_clause {
                    (&mut r.references, "references")
                } else {
                    (&mut r.false_positives, "false_positives")
                };
                if slot.is_empty() {
                    *slot = items;
                } else {
                    r.duplicates.push((name, span));
                }
            }
            Rule::risk_clause => {
                let Some(n) = first() else { continue };
                let value = match n.as_rule() {
                    Rule::param_ref => match cx.param(&n, base, &["a number"]) {
                        Some(ParamValue::Number(v)) if v >= 0.0 && v.fract() == 0.0 => v as u64,
                        _ => u64::MAX,
                    },
                    _ => n.as_str().parse().unwrap_or(u64::MAX),
                };
                let v = Spanned {
                    value,
                    span: span_of(&n, base),
                };
                set_once(&mut r.risk_score, v, "risk_score", span, &mut r.duplicates);
            }
            Rule::tags_clause => {
                if !r.tags.is_empty() {
                    r.duplicates.push(("tags", span));
                    continue;
                }
                let Some(t) = first() else { continue };
                let tags: Vec<Pair<'_, Rule>> = if t.as_rule() == Rule::tag_list {
                    t.into_inner().collect()
                } else {
                    vec![t]
                };
                r.tags = tags.into_iter().map(|t| text_of(&t, base)).collect();
            }
            Rule::match_clause => {
                let Some(e) = first() else { continue };
                let e = build_expr(e, base, cx);
                set_once(&mut r.match_expr, e, "match", span, &mut r.duplicates);
            }
            Rule::when_clause => {
                let w = build_when(inner.collect(), span, base, cx);
                set_once(&mut r.when, w, "when", span, &mut r.duplicates);
            }
            Rule::sequence_clause => {
                let q = build_sequence(inner.collect(), span, base, cx);
                set_once(&mut r.sequence, q, "sequence", span, &mut r.duplicates);
            }
            Rule::from_clause => {
                let rules = inner
                    .filter(|q| q.as_rule() == Rule::rule_id)
                    .map(|q| text_of(&q, base))
                    .collect();
                let f = FromAlerts { rules, span };
                set_once(&mut r.from_alerts, f, "from", span, &mut r.duplicates);
            }
            Rule::suppress_clause => {
                let Some(d) = first() else { continue };
                let v = build_duration(&d, base, cx);
                if let Some(by) = first() {
                    r.suppress_by = build_group_by(by, base);
                }
                set_once(&mut r.suppress, v, "suppress", span, &mut r.duplicates);
            }
            _ => {}
        }
    }
    for (i, p) in r.params.iter().enumerate() {
        let first = !r.params[..i].iter().any(|q| q.name.value == p.name.value);
        if first && !cx.used.iter().any(|(n, _)| n == &p.name.value) {
            cx.diags.push(
                Diagnostic::warning(
                    p.name.span,
                    format!("parameter `{}` is never used", p.name.value),
                )
                .with_hint(format!("use it as `${}`, or drop it", p.name.value)),
            );
        }
    }
    r.param_values = std::mem::take(&mut cx.used);
    cx.params.clear();
    r
}

fn set_once<T>(
    slot: &mut Option<T>,
    value: T,
    name: &'static str,
    span: Span,
    dups: &mut Vec<(&'static str, Span)>,
) {
    if slot.is_some() {
        dups.push((name, span));
    } else {
        *slot = Some(value);
    }
}

fn is_keyword(r: Rule) -> bool {
    matches!(
        r,
        Rule::k_rule
            | Rule::k_version
            | Rule::k_title
            | Rule::k_severity
            | Rule::k_tags
            | Rule::k_description
            | Rule::k_match
            | Rule::k_when
            | Rule::k_sequence
            | Rule::k_exception
            | Rule::k_if
            | Rule::k_author
            | Rule::k_references
            | Rule::k_false_positives
            | Rule::k_risk_score
            | Rule::k_tenant
            | Rule::k_owner
            | Rule::k_expires
            | Rule::k_reason
            | Rule::k_until
            | Rule::k_runs
            | Rule::k_suppress
            | Rule::k_from
            | Rule::k_alerts
            | Rule::k_for
            | Rule::k_within
            | Rule::k_by
            | Rule::k_of
            | Rule::k_distinct
            | Rule::k_and
            | Rule::k_or
    )
}

fn build_string(p: &Pair<'_, Rule>, base: usize, cx: &mut Cx<'_>) -> Spanned<String> {
    let span = span_of(p, base);
    let raw = p.as_str();
    let value = if let Some(body) = raw.strip_prefix('\'') {
        body.strip_suffix('\'').unwrap_or(body).to_owned()
    } else {
        let body = raw
            .strip_prefix('"')
            .and_then(|b| b.strip_suffix('"'))
            .unwrap_or(raw);
        unescape(body, span.start + 1, cx)
    };
    Spanned { value, span }
}

fn unescape(body: &str, at: usize, cx: &mut Cx<'_>) -> String {
    let mut out = String::with_capacity(body.len());
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let Some((j, e)) = chars.next() else { break };
        match e {
            '"' => out.push('"'),
            '\\' => out.push('\\'),
            '/' => out.push('/'),
            'n' => out.push('\n'),
            't' => out.push('\t'),
            'r' => out.push('\r'),
            'u' => {
                let hex: String = chars.by_ref().take(4).map(|(_, h)| h).collect();
                match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                    Some(ch) if hex.len() == 4 => out.push(ch),
                    _ => cx.diags.push(Diagnostic::error(
                        Span::new(at + i, at + j + 1 + hex.len()),
                        "invalid unicode escape: expected `\\u` and four hex digits",
                    )),
                }
            }
            other => cx.diags.push(
                Diagnostic::error(
                    Span::new(at + i, at + j + other.len_utf8()),
                    format!("unknown escape `\\{other}`"),
                )
                .with_hint("write `\\\\` for a backslash, or use a single-quoted raw string such as 'C:\\Windows'"),
            ),
        }
    }
    out
}

fn build_group_by(p: Pair<'_, Rule>, base: usize) -> Vec<Spanned<String>> {
    p.into_inner()
        .filter(|q| q.as_rule() == Rule::field)
        .map(|f| text_of(&f, base))
        .collect()
}

fn build_sequence(
    parts: Vec<Pair<'_, Rule>>,
    span: Span,
    base: usize,
    cx: &mut Cx<'_>,
) -> Sequence {
    let mut q = Sequence {
        group_by: Vec::new(),
        within: None,
        steps: Vec::new(),
        until: Vec::new(),
        keyword: Span::new(span.start, span.start + "sequence".len()),
    };
    for p in parts {
        let span = span_of(&p, base);
        match p.as_rule() {
            Rule::group_by => q.group_by = build_group_by(p, base),
            Rule::duration | Rule::param_ref => q.within = Some(build_duration(&p, base, cx)),
            Rule::until_step => {
                if let Some(e) = p.into_inner().find(|x| x.as_rule() == Rule::expr) {
                    q.until.push((build_expr(e, base, cx), span));
                }
            }
            Rule::step | Rule::absent_step => {
                let absent = p.as_rule() == Rule::absent_step;
                let mut name = Spanned::default();
                let mut expr = Expr::And(Vec::new());
                let mut runs = None;
                for x in p.into_inner() {
                    match x.as_rule() {
                        Rule::step_name => {
                            name = text_of(&x, base);
                        }
                        Rule::expr => expr = build_expr(x, base, cx),
                        Rule::runs => {
                            if let Some(n) = x.into_inner().find(|y| y.as_rule() == Rule::integer) {
                                runs = Some(Spanned {
                                    value: n.as_str().parse().unwrap_or(u64::MAX),
                                    span: span_of(&n, base),
                                });
                            }
                        }
                        _ => {}
                    }
                }
                q.steps.push(Step {
                    name,
                    expr,
                    runs,
                    absent,
                    span,
                });
            }
            _ => {}
        }
    }
    q
}

fn build_duration(p: &Pair<'_, Rule>, base: usize, cx: &mut Cx<'_>) -> Spanned<u64> {
    let span = span_of(p, base);
    if p.as_rule() == Rule::param_ref {
        let value = match cx.param(p, base, &["a duration"]) {
            Some(ParamValue::Duration(ms)) => ms,
            _ => 0,
        };
        return Spanned { value, span };
    }
    let value = vigil_model::parse_duration(p.as_str()).unwrap_or_else(|e| {
        cx.diags.push(Diagnostic::error(span, e.to_string()));
        0
    });
    Spanned { value, span }
}

fn build_literal(p: &Pair<'_, Rule>, base: usize, cx: &mut Cx<'_>) -> Spanned<Literal> {
    let span = span_of(p, base);
    let value = match p.as_rule() {
        Rule::string => Literal::Str(build_string(p, base, cx).value),
        Rule::boolean => Literal::Bool(p.as_str() == "true"),
        Rule::param_ref => match cx.param(p, base, &["a string", "a number", "a boolean"]) {
            Some(ParamValue::Str(v)) => Literal::Str(v),
            Some(ParamValue::Bool(v)) => Literal::Bool(v),
            Some(ParamValue::Number(v)) => Literal::Num(v),
            _ => Literal::Num(f64::NAN),
        },
        _ => Literal::Num(p.as_str().parse().unwrap_or(f64::NAN)),
    };
    Spanned { value, span }
}

/// A number, or a parameter `$NAME` holding one (NaN when missing: the checker reports it).
fn build_number(p: Option<Pair<'_, Rule>>, base: usize, cx: &mut Cx<'_>) -> f64 {
    match p {
        Some(q) if q.as_rule() == Rule::param_ref => match cx.param(&q, base, &["a number"]) {
            Some(ParamValue::Number(v)) => v,
            _ => f64::NAN,
        },
        Some(q) => q.as_str().parse().unwrap_or(f64::NAN),
        None => f64::NAN,
    }
}

/// A `param_value`: a duration, number, string, boolean or `list(NAME)`.
fn build_param_value(p: Pair<'_, Rule>, base: usize, cx: &mut Cx<'_>) -> Spanned<ParamValue> {
    let span = span_of(&p, base);
    let value = match p.into_inner().next() {
        Some(v) if v.as_rule() == Rule::duration => {
            ParamValue::Duration(build_duration(&v, base, cx).value)
        }
        Some(v) if v.as_rule() == Rule::string => ParamValue::Str(build_string(&v, base, cx).value),
        Some(v) if v.as_rule() == Rule::boolean => ParamValue::Bool(v.as_str() == "true"),
        Some(v) if v.as_rule() == Rule::list_ref => {
            match v.into_inner().find(|n| n.as_rule() != Rule::k_list) {
                Some(n) if n.as_rule() == Rule::rule_id => ParamValue::List(n.as_str().to_owned()),
                other => {
                    let at = other.map_or(span, |n| span_of(&n, base));
                    cx.diags.push(Diagnostic::error(
                        at,
                        "a parameter's value is written out: it cannot name another parameter",
                    ));
                    ParamValue::List(String::new())
                }
            }
        }
        Some(v) => ParamValue::Number(v.as_str().parse().unwrap_or(f64::NAN)),
        None => ParamValue::Number(f64::NAN),
    };
    Spanned { value, span }
}

/// `NAME = VALUE`, a declaration's or a set's.
fn build_param(p: Pair<'_, Rule>, base: usize, cx: &mut Cx<'_>) -> ParamAst {
    let mut name = Spanned::default();
    let mut value = Spanned {
        value: ParamValue::Number(f64::NAN),
        span: span_of(&p, base),
    };
    for q in p.into_inner() {
        match q.as_rule() {
            Rule::param_name => {
                name = text_of(&q, base);
            }
            Rule::param_value => value = build_param_value(q, base, cx),
            _ => {}
        }
    }
    ParamAst { name, value }
}

/// Reports a parameter named twice in `params`, after the first.
fn check_unique_params(params: &[ParamAst], what: &str, cx: &mut Cx<'_>) {
    for (i, p) in params.iter().enumerate() {
        if params[..i].iter().any(|q| q.name.value == p.name.value) {
            cx.diags.push(Diagnostic::error(
                p.name.span,
                format!("parameter `{}` is {what} twice", p.name.value),
            ));
        }
    }
}

fn build_params(pair: Pair<'_, Rule>, base: usize, cx: &mut Cx<'_>) -> ParamsAst {
    let mut x = ParamsAst {
        span: span_of(&pair, base),
        ..ParamsAst::default()
    };
    for p in pair.into_inner() {
        let span = span_of(&p, base);
        let kind = p.as_rule();
        let named = |p: &Pair<'_, Rule>| {
            p.clone()
                .into_inner()
                .find(|q| q.as_rule() == Rule::rule_id)
                .map(|q| text_of(&q, base))
        };
        match kind {
            Rule::rule_id => {
                x.id = Spanned {
                    value: p.as_str().to_owned(),
                    span,
                };
            }
            Rule::for_rule_clause | Rule::tenant_clause => {
                let Some(v) = named(&p) else { continue };
                let (slot, name) = if kind == Rule::for_rule_clause {
                    (&mut x.rule, "rule")
                } else {
                    (&mut x.tenant, "tenant")
                };
                set_once(slot, v, name, span, &mut x.duplicates);
            }
            Rule::param_set => x.values.push(build_param(p, base, cx)),
            _ => {}
        }
    }
    check_unique_params(&x.values, "set", cx);
    x
}

fn build_expr(p: Pair<'_, Rule>, base: usize, cx: &mut Cx<'_>) -> Expr {
    match p.as_rule() {
        Rule::expr | Rule::and_expr => {
            let is_or = p.as_rule() == Rule::expr;
            let mut parts: Vec<Expr> = p
                .into_inner()
                .filter(|q| !is_keyword(q.as_rule()))
                .map(|q| build_expr(q, base, cx))
                .collect();
            if parts.len() == 1 {
                parts.pop().unwrap_or(Expr::And(Vec::new()))
            } else if is_or {
                Expr::Or(parts)
            } else {
                Expr::And(parts)
            }
        }
        Rule::not_expr => match p.into_inner().next() {
            Some(q) => build_expr(q, base, cx),
            None => Expr::And(Vec::new()),
        },
        Rule::negation => {
            let inner = p
                .into_inner()
                .find(|q| q.as_rule() != Rule::k_not)
                .map(|q| build_expr(q, base, cx))
                .unwrap_or(Expr::And(Vec::new()));
            Expr::Not(Box::new(inner))
        }
        Rule::comparison => Expr::Cmp(build_comparison(p, base, cx)),
        _ => Expr::And(Vec::new()),
    }
}

fn build_comparison(p: Pair<'_, Rule>, base: usize, cx: &mut Cx<'_>) -> Comparison {
    let span = span_of(&p, base);
    let mut inner = p.into_inner();
    let field = inner
        .next()
        .map(|f| text_of(&f, base))
        .unwrap_or_else(|| Spanned {
            value: String::new(),
            span,
        });
    let Some(pred) = inner.next() else {
        return Comparison {
            field,
            op: Spanned {
                value: CmpOp::Exists,
                span,
            },
            operand: Operand::None,
            span,
        };
    };
    let pred_span = span_of(&pred, base);
    let kind = pred.as_rule();
    let parts: Vec<Pair<'_, Rule>> = pred.into_inner().collect();
    let op_span = parts.first().map_or(pred_span, |q| span_of(q, base));
    let (op, operand) = match kind {
        Rule::exists_pred => (CmpOp::Exists, Operand::None),
        Rule::in_pred => {
            let negated = parts.iter().any(|q| q.as_rule() == Rule::not_kw);
            let ci = parts
                .iter()
                .any(|q| q.as_rule() == Rule::in_op && q.as_str().ends_with('~'));
            let named = parts
                .iter()
                .find(|q| q.as_rule() == Rule::list_ref)
                .and_then(|q| {
                    q.clone()
                        .into_inner()
                        .find(|n| matches!(n.as_rule(), Rule::rule_id | Rule::param_ref))
                });
            let operand = match named {
                Some(n) if n.as_rule() == Rule::param_ref => {
                    let value = match cx.param(&n, base, &["a list"]) {
                        Some(ParamValue::List(l)) => l,
                        _ => String::new(),
                    };
                    Operand::ListRef(Spanned {
                        value,
                        span: span_of(&n, base),
                    })
                }
                Some(n) => Operand::ListRef(text_of(&n, base)),
                None => Operand::List(
                    parts
                        .iter()
                        .find(|q| q.as_rule() == Rule::list)
                        .map(|l| build_list(l, base, cx))
                        .unwrap_or_default(),
                ),
            };
            (CmpOp::In { ci, negated }, operand)
        }
        Rule::cidr_pred => {
            let operand = match parts.iter().find(|q| q.as_rule() != Rule::k_cidr) {
                Some(q) if q.as_rule() == Rule::list => Operand::List(build_list(q, base, cx)),
                Some(q) => Operand::Literal(build_literal(q, base, cx)),
                None => Operand::None,
            };
            (CmpOp::Cidr, operand)
        }
        Rule::matches_pred => {
            let operand = match parts.iter().find(|q| q.as_rule() == Rule::regex) {
                Some(q) => {
                    let raw = q.as_str();
                    let ci = raw.ends_with('i');
                    let body = raw.trim_end_matches('i');
                    let body = body
                        .strip_prefix('/')
                        .and_then(|b| b.strip_suffix('/'))
                        .unwrap_or(body);
                    Operand::Regex {
                        pattern: Spanned {
                            value: body.replace("\\/", "/"),
                            span: span_of(q, base),
                        },
                        ci,
                    }
                }
                None => Operand::None,
            };
            (CmpOp::Matches, operand)
        }
        Rule::text_pred => {
            let op_text = parts.first().map_or("", |q| q.as_str());
            let ci = op_text.ends_with('~');
            let op = if op_text.starts_with("contains") {
                CmpOp::Contains { ci }
            } else if op_text.starts_with("startswith") {
                CmpOp::StartsWith { ci }
            } else {
                CmpOp::EndsWith { ci }
            };
            let operand = parts.get(1).map_or(Operand::None, |q| {
                Operand::Literal(build_literal(q, base, cx))
            });
            (op, operand)
        }
        _ => {
            let op = match parts.first().map_or("", |q| q.as_str()) {
                "==" => CmpOp::Eq,
                "!=" => CmpOp::Ne,
                "=~" => CmpOp::EqCi,
                "!~" => CmpOp::NeCi,
                "<" => CmpOp::Lt,
                "<=" => CmpOp::Le,
                ">" => CmpOp::Gt,
                _ => CmpOp::Ge,
            };
            let operand = parts.get(1).map_or(Operand::None, |q| {
                Operand::Literal(build_literal(q, base, cx))
            });
            (op, operand)
        }
    };
    Comparison {
        field,
        op: Spanned {
            value: op,
            span: op_span,
        },
        operand,
        span,
    }
}

fn build_list(p: &Pair<'_, Rule>, base: usize, cx: &mut Cx<'_>) -> Vec<Spanned<Literal>> {
    p.clone()
        .into_inner()
        .map(|q| build_literal(&q, base, cx))
        .collect()
}

fn build_when(parts: Vec<Pair<'_, Rule>>, span: Span, base: usize, cx: &mut Cx<'_>) -> When {
    let mut w = When {
        aggregate: Aggregate::Count,
        threshold: Spanned {
            value: Condition::Cmp(">=".to_owned(), 1.0),
            span,
        },
        group_by: Vec::new(),
        window_kind: WindowDecl::Sliding,
        window: Spanned { value: 0, span },
        span,
    };
    for p in parts {
        match p.as_rule() {
            Rule::aggregate => {
                let Some(a) = p.into_inner().next() else {
                    continue;
                };
                let kind = a.as_rule();
                let mut fn_name = "";
                for q in a.into_inner() {
                    match q.as_rule() {
                        Rule::agg_fn => fn_name = q.as_str(),
                        Rule::field => {
                            let f = text_of(&q, base);
                            w.aggregate = match (kind, fn_name) {
                                (Rule::distinct_count, _) => Aggregate::DistinctCount(f),
                                (_, "sum") => Aggregate::Numeric(NumericAgg::Sum, f),
                                (_, "min") => Aggregate::Numeric(NumericAgg::Min, f),
                                (_, "max") => Aggregate::Numeric(NumericAgg::Max, f),
                                _ => Aggregate::Numeric(NumericAgg::Avg, f),
                            };
                        }
                        _ => {}
                    }
                }
            }
            Rule::threshold => {
                let tspan = span_of(&p, base);
                let mut it = p.into_inner();
                let op = it.next().map_or(">=", |q| q.as_str()).to_owned();
                w.threshold = Spanned {
                    value: Condition::Cmp(op, build_number(it.next(), base, cx)),
                    span: tspan,
                };
            }
            Rule::between => {
                let tspan = span_of(&p, base);
                let mut it = p
                    .into_inner()
                    .filter(|q| matches!(q.as_rule(), Rule::number | Rule::param_ref));
                let lo = build_number(it.next(), base, cx);
                w.threshold = Spanned {
                    value: Condition::Between(lo, build_number(it.next(), base, cx)),
                    span: tspan,
                };
            }
            Rule::first_seen => {
                let fields = p
                    .into_inner()
                    .filter(|q| q.as_rule() == Rule::field)
                    .map(|q| text_of(&q, base))
                    .collect();
                w.aggregate = Aggregate::FirstSeen(fields);
                w.window_kind = WindowDecl::FirstSeen { written: false };
            }
            Rule::duration | Rule::param_ref => {
                w.window = build_duration(&p, base, cx);
                w.window_kind = WindowDecl::FirstSeen { written: true };
            }
            Rule::group_by => w.group_by = build_group_by(p, base),
            Rule::window => {
                for q in p.into_inner() {
                    match q.as_rule() {
                        Rule::window_kind if q.as_str() == "tumbling" => {
                            w.window_kind = WindowDecl::Tumbling;
                        }
                        Rule::duration | Rule::param_ref => w.window = build_duration(&q, base, cx),
                        Rule::hopping | Rule::session => {
                            let hopping = q.as_rule() == Rule::hopping;
                            let mut ds = q
                                .into_inner()
                                .filter(|d| matches!(d.as_rule(), Rule::duration | Rule::param_ref))
                                .map(|d| build_duration(&d, base, cx));
                            if let Some(d) = ds.next() {
                                w.window = d;
                            }
                            let second = ds.next();
                            w.window_kind = match (hopping, second) {
                                (true, Some(slide)) => WindowDecl::Hopping { slide },
                                (true, None) => WindowDecl::Hopping {
                                    slide: w.window.clone(),
                                },
                                (false, max) => WindowDecl::Session { max },
                            };
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    w
}
