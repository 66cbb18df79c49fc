//! Diagnostics in the shape of rustc's: `path:line:col: error: message`, the source line, a caret
//! under the span and an optional hint.

use std::fmt::Write as _;

use crate::ast::Span;

/// How bad a diagnostic is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// The rule set is still loadable.
    Warning,
    /// The file is rejected.
    Error,
}

/// One problem found in a rule file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or warning.
    pub level: Level,
    /// Lowercase, no trailing period.
    pub message: String,
    /// Where in the file.
    pub span: Span,
    /// A suggestion such as ``did you mean `user.name`?``.
    pub hint: Option<String>,
}

impl Diagnostic {
    /// An error at `span`.
    pub fn error(span: Span, message: impl Into<String>) -> Self {
        Diagnostic {
            level: Level::Error,
            message: message.into(),
            span,
            hint: None,
        }
    }

    /// A warning at `span`.
    pub fn warning(span: Span, message: impl Into<String>) -> Self {
        Diagnostic {
            level: Level::Warning,
            message: message.into(),
            span,
            hint: None,
        }
    }

    /// Adds a hint.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// 1-based line and column (in characters) of the span's start.
    pub fn line_col(&self, source: &str) -> (usize, usize) {
        line_col(source, self.span.start)
    }

    /// Renders the diagnostic against its source text.
    pub fn render(&self, path: &str, source: &str) -> String {
        let start = self.span.start.min(source.len());
        let (line, col) = line_col(source, start);
        let line_start = source[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = source[start..]
            .find('\n')
            .map_or(source.len(), |i| start + i);
        let text = source[line_start..line_end].trim_end_matches('\r');
        let level = match self.level {
            Level::Error => "error",
            Level::Warning => "warning",
        };
        let mut out = format!("{path}:{line}:{col}: {level}: {}\n", self.message);
        let gutter = line.to_string();
        let pad = " ".repeat(gutter.len());
        let _ = writeln!(out, "{pad} |");
        let _ = writeln!(out, "{gutter} | {text}");
        let end = self.span.end.clamp(start, line_end);
        let width = source[start..end].chars().count().max(1);
        let indent: String = source[line_start..start]
            .chars()
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        let _ = writeln!(out, "{pad} | {indent}{}", "^".repeat(width));
        if let Some(hint) = &self.hint {
            let _ = writeln!(out, "{pad} = hint: {hint}");
        }
        out
    }
}

fn line_col(source: &str, at: usize) -> (usize, usize) {
    let at = at.min(source.len());
    let before = &source[..at];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// Optimal-string-alignment distance (Levenshtein plus adjacent transpositions), for
/// did-you-mean hints: `hihg` is one edit from `high`.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let w = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * w];
    for i in 0..=a.len() {
        d[i * w] = i;
    }
    for (j, cell) in d.iter_mut().enumerate().take(w) {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[(i - 1) * w + j] + 1)
                .min(d[i * w + j - 1] + 1)
                .min(d[(i - 1) * w + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[(i - 2) * w + j - 2] + 1);
            }
            d[i * w + j] = v;
        }
    }
    d[a.len() * w + b.len()]
}

/// The closest candidate within a distance that scales with the word's length.
pub(crate) fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).clamp(1, 3);
    candidates
        .into_iter()
        .map(|c| (edit_distance(word, c), c))
        .filter(|&(d, _)| d <= limit)
        .min()
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_with_caret_under_span() {
        let src = "rule x {\n  match user.nmae == \"a\"\n}\n";
        let start = src.find("user.nmae").unwrap();
        let d = Diagnostic::error(Span::new(start, start + 9), "unknown field `user.nmae`")
            .with_hint("did you mean `user.name`?");
        assert_eq!(
            d.render("r.rule", src),
            "r.rule:2:9: error: unknown field `user.nmae`\n  |\n2 |   match user.nmae == \"a\"\n  |         ^^^^^^^^^\n  = hint: did you mean `user.name`?\n"
        );
    }

    #[test]
    fn caret_at_end_of_input() {
        let src = "rule x {";
        let d = Diagnostic::error(Span::new(8, 8), "unexpected end of file");
        assert!(d.render("f", src).starts_with("f:1:9: error"));
        assert!(d.render("f", src).contains("|         ^\n"));
    }

    #[test]
    fn suggestions() {
        assert_eq!(
            did_you_mean("user.nmae", ["user.name", "user.id"]),
            Some("user.name")
        );
        assert_eq!(did_you_mean("hgh", ["high", "low"]), Some("high"));
        assert_eq!(did_you_mean("zzzzzz", ["high", "low"]), None);
    }
}
