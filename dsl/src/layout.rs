//! The canonical layout of a rule-language file (`vigil fmt`).
//!
//! The formatter works on the concrete parse tree, so it keeps everything an author wrote:
//! every token as written (strings, regexes, numbers, `$NAME`s, optional keywords), every
//! comment, and single blank lines between clauses. It changes only whitespace:
//!
//! - items at column 0, one blank line between them; clauses one per line, indented 4;
//! - a rule's metadata keywords (`version` … `description`, `param`) padded to one column (12
//!   at most, as `description` needs); an exception's or parameter set's clauses padded to its
//!   longest keyword; sequence step names padded to the longest;
//! - a list of references or false positives that the author broke over lines, or that would
//!   pass 100 columns, takes one line per string;
//! - a chain of `and`s or `or`s stays on one line unless the author broke it or it would pass
//!   100 columns; then every operator starts a line, 2 deeper than the line the chain started
//!   on (nested parenthesized chains alike);
//! - a comment on a line of its own stays on its own line before the code that followed it (the
//!   clause, when that code joined a clause's line); a comment after code ends the line that
//!   code is on.
//!
//! The output parses to the same syntax tree as the input (tested over the shipped rules, the
//! corpus and random rules), and formatting it again changes nothing.

use pest::Parser as _;
use pest::iterators::Pair;

use crate::diag::Diagnostic;
use crate::parse::{Rule, RuleParser};

/// Lines longer than this break their `and`/`or` chains.
const WIDTH: usize = 100;
/// One level of indentation.
const INDENT: usize = 4;
/// The widest column a rule's metadata keywords are padded to (`description` and one space).
const RULE_ALIGN: usize = 12;

/// Formats one rule-language file. A file that does not parse is left to the caller, with its
/// syntax errors.
pub fn format(source: &str) -> Result<String, Vec<Diagnostic>> {
    let top = match RuleParser::parse(Rule::file, source) {
        Ok(mut pairs) => pairs.next(),
        Err(_) => return Err(crate::parse::parse(source).1),
    };
    let mut p = Printer {
        src: source,
        lines: Vec::new(),
    };
    let mut comments = Vec::new();
    if let Some(top) = top {
        comments = find_comments(source, &top);
        for item in top.into_inner() {
            match item.as_rule() {
                Rule::rule | Rule::exception | Rule::params => block(&mut p, item),
                _ => {}
            }
        }
    }
    Ok(p.finish(&comments))
}

/// The properties `format` promises, checked on one text (by the property tests and the
/// fuzz target): a file that parses formats to text that parses to the same syntax tree and
/// diagnostics (positions aside), and formatting that text changes nothing. Returns the
/// formatted text, or `None` when `text` does not parse.
#[doc(hidden)]
pub fn check_round_trip(text: &str) -> Result<Option<String>, String> {
    let Ok(out) = format(text) else {
        return Ok(None);
    };
    let tree = |t: &str| {
        let (file, diags) = crate::parse::parse(t);
        let messages: Vec<&str> = diags.iter().map(|d| d.message.as_str()).collect();
        strip_spans(&format!("{file:?} {messages:?}"))
    };
    if tree(&out) != tree(text) {
        return Err(format!("the syntax tree changed:\n{text}\n---\n{out}"));
    }
    match format(&out) {
        Ok(again) if again == out => Ok(Some(out)),
        Ok(again) => Err(format!(
            "a second pass changed the text:\n{out}\n---\n{again}"
        )),
        Err(e) => Err(format!("the formatted text does not parse: {e:?}\n{out}")),
    }
}

/// `Span { start: N, end: M }` → `Span`, in a syntax tree's debug text.
fn strip_spans(debug: &str) -> String {
    let mut out = String::with_capacity(debug.len());
    let mut rest = debug;
    while let Some(i) = rest.find("Span { start: ") {
        out.push_str(&rest[..i]);
        out.push_str("Span");
        rest = &rest[i..];
        rest = rest.find('}').map_or("", |j| &rest[j + 1..]);
    }
    out.push_str(rest);
    out
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Code,
    /// Ends with the `{` or `[` that opens a block.
    Open,
    /// The `}` or `]` that closes a block inside an item.
    Close,
    /// An item's `}`.
    ItemEnd,
    Comment,
}

struct Line {
    indent: usize,
    text: String,
    /// Source offsets of the first and past the last thing on the line.
    start: usize,
    end: usize,
    kind: Kind,
}

struct Printer<'s> {
    src: &'s str,
    lines: Vec<Line>,
}

struct Comment {
    start: usize,
    end: usize,
    own_line: bool,
}

impl Printer<'_> {
    fn line(&mut self, indent: usize, start: usize, kind: Kind) {
        self.lines.push(Line {
            indent,
            text: String::new(),
            start,
            end: start,
            kind,
        });
    }

    fn put(&mut self, text: &str, end: usize) {
        if let Some(l) = self.lines.last_mut() {
            l.text.push_str(text);
            l.end = l.end.max(end);
        }
    }

    fn tok(&mut self, p: &Pair<'_, Rule>) {
        self.put(p.as_str(), end(p));
    }

    fn text(&mut self, text: &str) {
        self.put(text, 0);
    }

    /// Ends the line with the bracket that opens a block.
    fn open(&mut self, bracket: &str) {
        self.text(bracket);
        if let Some(l) = self.lines.last_mut() {
            l.kind = Kind::Open;
        }
    }

    fn col(&self) -> usize {
        self.lines
            .last()
            .map_or(0, |l| l.indent + l.text.chars().count())
    }

    fn finish(mut self, comments: &[Comment]) -> String {
        let src = self.src;
        for c in comments.iter().filter(|c| !c.own_line) {
            if let Some(l) = self.lines.iter_mut().rev().find(|l| l.start < c.start) {
                l.text.push(' ');
                l.text.push_str(src[c.start..c.end].trim_end());
                l.end = l.end.max(c.end);
            }
        }
        for c in comments.iter().filter(|c| c.own_line) {
            // Before the line holding the code that followed the comment: the next line, or
            // the line the comment sat inside of when its clause was joined onto one line.
            let at = match self.lines.iter().rposition(|l| l.start < c.start) {
                Some(h) if self.lines[h].end > c.start => h,
                Some(h) => h + 1,
                None => 0,
            };
            let at = (at < self.lines.len()).then_some(at);
            let indent = at.map_or(0, |i| {
                let l = &self.lines[i];
                match l.kind {
                    Kind::Close | Kind::ItemEnd => l.indent + INDENT,
                    _ => l.indent,
                }
            });
            let line = Line {
                indent,
                text: src[c.start..c.end].trim_end().to_owned(),
                start: c.start,
                end: c.end,
                kind: Kind::Comment,
            };
            self.lines.insert(at.unwrap_or(self.lines.len()), line);
        }
        let mut out = String::new();
        for (i, l) in self.lines.iter().enumerate() {
            if let Some(a) = i.checked_sub(1).map(|j| &self.lines[j]) {
                let blank = match (a.kind, l.kind) {
                    (Kind::ItemEnd, _) => true,
                    (Kind::Open, _) | (_, Kind::Close | Kind::ItemEnd) => false,
                    _ => a.end <= l.start && has_blank_line(&src[a.end..l.start]),
                };
                if blank {
                    out.push('\n');
                }
            }
            out.extend(std::iter::repeat_n(' ', l.indent));
            out.push_str(l.text.trim_end());
            out.push('\n');
        }
        out
    }
}

/// Whether text between two lines holds an empty line.
fn has_blank_line(gap: &str) -> bool {
    let parts: Vec<&str> = gap.split('\n').collect();
    parts.len() > 2
        && parts[1..parts.len() - 1]
            .iter()
            .any(|s| s.trim().is_empty())
}

/// The comments of a parsed file. Between the parse tree's tokens there is only whitespace,
/// the grammar's punctuation and comments, so a `#` or `//` there starts one.
fn find_comments(src: &str, top: &Pair<'_, Rule>) -> Vec<Comment> {
    let mut leaves = Vec::new();
    let mut stack = vec![top.clone()];
    while let Some(p) = stack.pop() {
        let mut inner = p.clone().into_inner().peekable();
        if inner.peek().is_none() {
            leaves.push((p.as_span().start(), p.as_span().end()));
        }
        stack.extend(inner);
    }
    leaves.sort_unstable();
    leaves.push((src.len(), src.len()));
    let bytes = src.as_bytes();
    let mut out = Vec::new();
    let mut at = 0;
    for (start, end) in leaves {
        let mut i = at;
        while i < start {
            if bytes[i] == b'#' || (bytes[i] == b'/' && bytes.get(i + 1) == Some(&b'/')) {
                let end = src[i..start].find('\n').map_or(start, |n| i + n);
                let line_start = src[..i].rfind('\n').map_or(0, |n| n + 1);
                out.push(Comment {
                    start: i,
                    end,
                    own_line: src[line_start..i].trim().is_empty(),
                });
                i = end;
            } else {
                i += 1;
            }
        }
        at = at.max(end);
    }
    out
}

/// Where a pair's last token ends: a pair's own span may take in the whitespace and comments
/// that an unmatched repetition at its end skipped.
fn end(p: &Pair<'_, Rule>) -> usize {
    let mut last = p.clone();
    while let Some(q) = last.clone().into_inner().last() {
        last = q;
    }
    last.as_span().end()
}

fn children<'i>(p: &Pair<'i, Rule>) -> Vec<Pair<'i, Rule>> {
    p.clone().into_inner().collect()
}

/// A whole `rule`, `exception` or `params` item.
fn block(p: &mut Printer<'_>, item: Pair<'_, Rule>) {
    let kids = children(&item);
    let [kw, id, clauses @ ..] = kids.as_slice() else {
        return;
    };
    p.line(0, kw.as_span().start(), Kind::Open);
    p.tok(kw);
    p.text(" ");
    p.tok(id);
    p.text(" {");
    let is_rule = item.as_rule() == Rule::rule;
    let keyword = |c: &Pair<'_, Rule>| c.clone().into_inner().next().map(|k| k.as_str().len());
    let aligned = clauses
        .iter()
        .filter(|c| !is_rule || is_metadata(c.as_rule()))
        .filter_map(keyword)
        .max()
        .map_or(0, |n| n + 1);
    let aligned = if is_rule {
        aligned.min(RULE_ALIGN)
    } else {
        aligned
    };
    for c in clauses {
        let width = if !is_rule || is_metadata(c.as_rule()) {
            aligned
        } else {
            0
        };
        clause(p, c, INDENT, width);
    }
    p.line(0, item.as_span().end().saturating_sub(1), Kind::ItemEnd);
    p.text("}");
}

fn is_metadata(r: Rule) -> bool {
    matches!(
        r,
        Rule::version_clause
            | Rule::title_clause
            | Rule::severity_clause
            | Rule::author_clause
            | Rule::references_clause
            | Rule::false_positives_clause
            | Rule::risk_clause
            | Rule::tags_clause
            | Rule::description_clause
            | Rule::param_clause
    )
}

/// The clause's keyword (or, in a parameter set, the parameter's name), padded to `width`.
fn keyword(p: &mut Printer<'_>, kw: &Pair<'_, Rule>, width: usize) {
    p.tok(kw);
    let pad = width.saturating_sub(kw.as_str().len()).max(1);
    p.text(&" ".repeat(pad));
}

fn clause(p: &mut Printer<'_>, c: &Pair<'_, Rule>, indent: usize, width: usize) {
    let kids = children(c);
    let Some((kw, rest)) = kids.split_first() else {
        return;
    };
    p.line(indent, c.as_span().start(), Kind::Code);
    keyword(p, kw, width);
    match (c.as_rule(), rest) {
        (Rule::match_clause, [e]) => chain(p, e, indent),
        (Rule::severity_clause, [level, k_if, e]) => {
            p.tok(level);
            p.text(" ");
            p.tok(k_if);
            p.text(" ");
            chain(p, e, indent);
        }
        (Rule::sequence_clause, _) => sequence(p, c, rest, indent),
        (Rule::references_clause | Rule::false_positives_clause, [list])
            if p.src[list.as_span().start()..end(list)].contains('\n')
                || p.col() + flat(list).chars().count() > WIDTH =>
        {
            // A long list of strings: one per line, as the author may have written it.
            p.open("[");
            for s in list.clone().into_inner() {
                p.line(indent + INDENT, s.as_span().start(), Kind::Code);
                p.tok(&s);
                p.text(",");
            }
            p.line(indent, end(list), Kind::Close);
            p.text("]");
        }
        (Rule::param_clause, [name, value]) => {
            p.tok(name);
            p.text(" = ");
            p.put(&flat(value), end(value));
        }
        (Rule::param_set, [value]) => {
            p.text("= ");
            p.put(&flat(value), end(value));
        }
        _ => p.put(&join(rest), end(c)),
    }
}

fn sequence<'i>(p: &mut Printer<'_>, c: &Pair<'i, Rule>, rest: &[Pair<'i, Rule>], indent: usize) {
    let is_step = |q: &Pair<'_, Rule>| {
        matches!(
            q.as_rule(),
            Rule::step | Rule::absent_step | Rule::until_step
        )
    };
    let (head, steps): (Vec<_>, Vec<_>) = rest.iter().cloned().partition(|q| !is_step(q));
    if !head.is_empty() {
        p.text(&join(&head));
        p.text(" ");
    }
    p.open("{");
    let label = |s: &Pair<'i, Rule>| -> (String, Vec<Pair<'i, Rule>>) {
        let kids = children(s);
        match (s.as_rule(), kids.as_slice()) {
            (Rule::step, [name, rest @ ..]) => (format!("{}:", name.as_str()), rest.to_vec()),
            (Rule::absent_step, [_, name, rest @ ..]) => {
                (format!("not {}:", name.as_str()), rest.to_vec())
            }
            (_, [until, rest @ ..]) => (format!("{}:", until.as_str()), rest.to_vec()),
            _ => (String::new(), Vec::new()),
        }
    };
    let labelled: Vec<_> = steps.iter().map(|s| (s, label(s))).collect();
    let width = labelled
        .iter()
        .map(|(_, (l, _))| l.len())
        .max()
        .unwrap_or(0)
        + 1;
    for (s, (name, rest)) in labelled {
        p.line(indent + INDENT, s.as_span().start(), Kind::Code);
        p.put(&format!("{name:width$}"), 0);
        for q in &rest {
            if q.as_rule() == Rule::expr {
                chain(p, q, indent + INDENT);
            } else {
                p.text(" ");
                p.put(&flat(q), end(q));
            }
        }
    }
    p.line(indent, c.as_span().end().saturating_sub(1), Kind::Close);
    p.text("}");
}

/// An `expr` or `and_expr` chain starting on a line indented `indent`.
fn chain(p: &mut Printer<'_>, e: &Pair<'_, Rule>, indent: usize) {
    let kids = children(e);
    let Some((first, rest)) = kids.split_first() else {
        return;
    };
    let src = p.src;
    let broken = kids
        .windows(2)
        .any(|w| src[end(&w[0])..w[1].as_span().start()].contains('\n'))
        || (!rest.is_empty() && p.col() + flat(e).chars().count() > WIDTH);
    term(p, first, indent);
    let inner = if broken { indent + 2 } else { indent };
    for pair in rest.chunks(2) {
        let [op, t] = pair else { continue };
        if broken {
            p.line(inner, op.as_span().start(), Kind::Code);
        } else {
            p.text(" ");
        }
        p.tok(op);
        p.text(" ");
        term(p, t, inner);
    }
}

fn term(p: &mut Printer<'_>, t: &Pair<'_, Rule>, indent: usize) {
    match t.as_rule() {
        Rule::expr | Rule::and_expr => chain(p, t, indent),
        Rule::not_expr => {
            for q in t.clone().into_inner() {
                if q.as_rule() == Rule::expr {
                    p.text("(");
                    chain(p, &q, indent);
                    p.put(")", t.as_span().end());
                } else {
                    term(p, &q, indent);
                }
            }
        }
        Rule::negation => {
            for (i, q) in t.clone().into_inner().enumerate() {
                if i > 0 {
                    p.text(" ");
                }
                term(p, &q, indent);
            }
        }
        _ => p.put(&flat(t), end(t)),
    }
}

/// A pair on one line.
fn flat(p: &Pair<'_, Rule>) -> String {
    let kids = children(p);
    match p.as_rule() {
        Rule::not_expr => kids
            .iter()
            .map(|q| match q.as_rule() {
                Rule::expr => format!("({})", flat(q)),
                _ => flat(q),
            })
            .collect(),
        Rule::string_list | Rule::tag_list | Rule::list => {
            let items: Vec<String> = kids.iter().map(flat).collect();
            format!("[{}]", items.join(", "))
        }
        Rule::list_ref => match kids.last() {
            Some(name) => format!("list({})", name.as_str()),
            None => String::new(),
        },
        Rule::param_clause | Rule::param_set => {
            let parts: Vec<String> = kids
                .iter()
                .map(|q| match q.as_rule() {
                    Rule::param_value => format!("= {}", flat(q)),
                    _ => flat(q),
                })
                .collect();
            parts.join(" ")
        }
        _ if kids.is_empty() => p.as_str().to_owned(),
        _ => join(&kids),
    }
}

/// Pairs on one line: a space between them, a comma between the fields of `by a, b` and the
/// rules of `of a, b`.
fn join(kids: &[Pair<'_, Rule>]) -> String {
    let listed = |q: &Pair<'_, Rule>| matches!(q.as_rule(), Rule::field | Rule::rule_id);
    let mut out = String::new();
    for (i, q) in kids.iter().enumerate() {
        if i > 0 {
            out.push_str(if listed(&kids[i - 1]) && listed(q) {
                ", "
            } else {
                " "
            });
        }
        out.push_str(&flat(q));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::format;

    fn fmt(s: &str) -> String {
        format(s).unwrap_or_else(|d| panic!("{d:?}"))
    }

    #[test]
    fn lays_out_a_rule_in_the_house_style() {
        let src = "# lead\nrule  r {version 1 title \"T\"\n  description \"D\"\n\n\
                   match a == 1 and b == 2 when count >= 5 by x ,y within 5m }\n\
                   rule s { false_positives [\"x\",] tags [a,b,] }";
        assert_eq!(
            fmt(src),
            "# lead\nrule r {\n    version     1\n    title       \"T\"\n    description \"D\"\n\n    \
             match a == 1 and b == 2\n    when count >= 5 by x, y within 5m\n}\n\nrule s {\n    \
             false_positives [\"x\"]\n    tags        [a, b]\n}\n"
        );
    }

    #[test]
    fn keeps_the_authors_breaks_and_breaks_long_chains() {
        let src = "rule r {\n match a == 1\n and (b == 2\n or c == 3) and not (d exists)\n}\n";
        assert_eq!(
            fmt(src),
            "rule r {\n    match a == 1\n      and (b == 2\n        or c == 3)\n      and not (d exists)\n}\n"
        );
        let long = format!(
            "rule r {{ match {} }}",
            (0..8)
                .map(|i| format!("field_{i} == \"value {i}\""))
                .collect::<Vec<_>>()
                .join(" or ")
        );
        let out = fmt(&long);
        assert_eq!(
            out.lines().filter(|l| l.starts_with("      or ")).count(),
            7
        );
        assert_eq!(fmt(&out), out);
    }

    #[test]
    fn aligns_steps_exceptions_and_parameter_sets() {
        let src = "rule r { sequence by u within 10m { a: x == 1 runs 5\n not longer: y == 2 } }\n\
                   exception e { rule r tenant acme owner \"o\" expires 2027-01-01 reason \"r\" match u == \"a\" }\n\
                   params p { rule r tenant acme threshold = 5 w = 1m }";
        assert_eq!(
            fmt(src),
            "rule r {\n    sequence by u within 10m {\n        a:          x == 1 runs 5\n        \
             not longer: y == 2\n    }\n}\n\nexception e {\n    rule    r\n    tenant  acme\n    \
             owner   \"o\"\n    expires 2027-01-01\n    reason  \"r\"\n    match   u == \"a\"\n}\n\n\
             params p {\n    rule      r\n    tenant    acme\n    threshold = 5\n    w         = 1m\n}\n"
        );
    }

    #[test]
    fn keeps_every_comment() {
        let src = "// top\n\n\nrule r { # after brace\n  title \"x\" # trailing\n\n\n  # own line\n  \
                   match a == 1 // and this\n  # before the end\n}\n# tail\n";
        assert_eq!(
            fmt(src),
            "// top\n\nrule r { # after brace\n    title \"x\" # trailing\n\n    # own line\n    \
             match a == 1 // and this\n    # before the end\n}\n\n# tail\n"
        );
    }

    #[test]
    fn a_comment_inside_a_joined_clause_goes_before_the_clause() {
        let src = "rule r {\n  when count >= 5\n  # why five\n  by x within 5m\n  suppress 1h\n}\n";
        assert_eq!(
            fmt(src),
            "rule r {\n    # why five\n    when count >= 5 by x within 5m\n    suppress 1h\n}\n"
        );
    }

    #[test]
    fn a_file_that_does_not_parse_is_an_error() {
        let errors = format("rule r { match a == }").unwrap_err();
        assert!(!errors.is_empty());
        assert_eq!(format("").unwrap(), "");
    }
}
