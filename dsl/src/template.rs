//! Title templates: `"Brute force against {user.name}"`. `{{` and `}}` are literal braces.

use crate::ast::Span;
use crate::diag::Diagnostic;

/// A parsed template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Lit(String),
    Field(String),
}

impl Template {
    /// Parses `text`; `span` is the string literal's span, used for diagnostics.
    pub fn parse(text: &str, span: Span) -> Result<Template, Diagnostic> {
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    lit.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    lit.push('}');
                }
                '{' => {
                    let mut name = String::new();
                    let mut closed = false;
                    for c in chars.by_ref() {
                        if c == '}' {
                            closed = true;
                            break;
                        }
                        name.push(c);
                    }
                    let name = name.trim().to_owned();
                    if !closed || name.is_empty() {
                        return Err(Diagnostic::error(
                            span,
                            "unclosed or empty `{…}` placeholder in template",
                        )
                        .with_hint(
                            "write `{field.path}` for a value, `{{` and `}}` for literal braces",
                        ));
                    }
                    if !lit.is_empty() {
                        parts.push(Part::Lit(std::mem::take(&mut lit)));
                    }
                    parts.push(Part::Field(name));
                }
                '}' => {
                    return Err(Diagnostic::error(span, "unmatched `}` in template")
                        .with_hint("write `}}` for a literal brace"));
                }
                c => lit.push(c),
            }
        }
        if !lit.is_empty() {
            parts.push(Part::Lit(lit));
        }
        Ok(Template { parts })
    }

    /// The field paths the template references, in order.
    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Field(f) => Some(f.as_str()),
            Part::Lit(_) => None,
        })
    }

    /// Renders the template; a field without a value renders as `-`.
    pub fn render<'a>(&self, mut value: impl FnMut(&str) -> Option<&'a str>) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Lit(s) => out.push_str(s),
                Part::Field(f) => out.push_str(value(f).unwrap_or("-")),
            }
        }
        out
    }

    /// The template as written (with braces escaped), for plan hashes and `explain`.
    pub fn source(&self) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Lit(s) => out.push_str(&s.replace('{', "{{").replace('}', "}}")),
                Part::Field(f) => {
                    out.push('{');
                    out.push_str(f);
                    out.push('}');
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_fields_and_escapes() {
        let t = Template::parse("Brute force against {user.name} {{x}}", Span::default()).unwrap();
        assert_eq!(t.fields().collect::<Vec<_>>(), ["user.name"]);
        assert_eq!(
            t.render(|f| (f == "user.name").then_some("alice")),
            "Brute force against alice {x}"
        );
        assert_eq!(t.render(|_| None), "Brute force against - {x}");
        assert_eq!(t.source(), "Brute force against {user.name} {{x}}");
    }

    #[test]
    fn rejects_broken_placeholders() {
        for bad in ["a {user.name", "a {}", "a } b"] {
            assert!(Template::parse(bad, Span::default()).is_err(), "{bad}");
        }
    }
}
