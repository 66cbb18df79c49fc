//! Named lists: `NAME.list` files of strings, networks or regexes that rules test with
//! `FIELD in list(NAME)`, reloadable while rules run.
//!
//! ```text
//! # Threat-intel blocklist, refreshed hourly by the feed job.
//! kind cidrs
//! 203.0.113.0/24
//! 198.51.100.7
//! ```
//!
//! The first line that is not blank or a `#` comment declares the kind (`kind strings`,
//! `kind cidrs`, `kind regexes`); every further such line is one entry, trimmed. A rule holds a
//! [`ListHandle`]: [`ListHandle::reload`] swaps its contents in place, so running rules see
//! the new entries at their next event, and a rule's identity (and window state) does not
//! depend on a list's contents.

use std::collections::HashSet;
use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};

use crate::ast::Span;
use crate::diag::Diagnostic;
use crate::plan::Cidr;

/// What a list holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListKind {
    /// Strings, compared whole (`in~` ignores case).
    Strings,
    /// Networks and addresses: an IP value is in the list when one contains it.
    Cidrs,
    /// Regular expressions: a value is in the list when one matches (unanchored).
    Regexes,
}

impl ListKind {
    /// The name in `kind NAME`.
    pub fn as_str(self) -> &'static str {
        match self {
            ListKind::Strings => "strings",
            ListKind::Cidrs => "cidrs",
            ListKind::Regexes => "regexes",
        }
    }
}

/// A list's entries, compiled for lookups.
#[derive(Debug)]
enum Entries {
    Strings {
        exact: HashSet<String>,
        lower: HashSet<String>,
    },
    Cidrs(Vec<Cidr>),
    Regexes(regex::RegexSet),
}

impl Entries {
    fn len(&self) -> usize {
        match self {
            Entries::Strings { exact, .. } => exact.len(),
            Entries::Cidrs(c) => c.len(),
            Entries::Regexes(r) => r.len(),
        }
    }
}

/// A named list shared by the rules that test it; its contents can be swapped.
pub struct ListHandle {
    name: String,
    path: String,
    kind: ListKind,
    entries: RwLock<Arc<Entries>>,
}

impl fmt::Debug for ListHandle {
    // The name identifies the test (filters intern tests by their debug form); the contents
    // may change.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "list({})", self.name)
    }
}

impl ListHandle {
    /// Parses a list file; the name is the file's stem.
    pub fn parse(path: &str, text: &str) -> Result<ListHandle, Vec<Diagnostic>> {
        let stem = std::path::Path::new(path)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let (kind, entries) = parse_entries(text, None)?;
        Ok(ListHandle {
            name: stem,
            path: path.to_owned(),
            kind,
            entries: RwLock::new(Arc::new(entries)),
        })
    }

    /// The list's name (its file's stem).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The file it was read from.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// What it holds.
    pub fn kind(&self) -> ListKind {
        self.kind
    }

    /// Number of entries now.
    pub fn len(&self) -> usize {
        self.current().len()
    }

    /// Whether the list is empty now.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Replaces the entries with those of `text` (the list file's new contents), returning
    /// their number; on an error the old entries stay. The kind may not change: rules were
    /// checked against it.
    pub fn reload(&self, text: &str) -> Result<usize, Vec<Diagnostic>> {
        let (_, entries) = parse_entries(text, Some(self.kind))?;
        let n = entries.len();
        *self
            .entries
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(entries);
        Ok(n)
    }

    fn current(&self) -> Arc<Entries> {
        Arc::clone(
            &self
                .entries
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// Whether the string value `v` is in the list (`ci`: ignoring case, for string lists).
    pub fn contains(&self, v: &str, ci: bool) -> bool {
        let entries = self
            .entries
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match &**entries {
            Entries::Strings { exact, .. } if !ci => exact.contains(v),
            Entries::Strings { lower, .. } => lower.contains(&v.to_lowercase()),
            Entries::Cidrs(nets) => v
                .parse::<IpAddr>()
                .is_ok_and(|ip| nets.iter().any(|n| n.contains(ip))),
            Entries::Regexes(set) => set.is_match(v),
        }
    }
}

/// Parses a list file's text; with `expect`, the kind it must declare.
fn parse_entries(
    text: &str,
    expect: Option<ListKind>,
) -> Result<(ListKind, Entries), Vec<Diagnostic>> {
    let mut diags = Vec::new();
    let mut kind: Option<ListKind> = None;
    let mut items: Vec<(&str, Span)> = Vec::new();
    let mut offset = 0;
    for raw in text.split_inclusive('\n') {
        let line_start = offset;
        offset += raw.len();
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let start = line_start + (raw.len() - raw.trim_start().len());
        let span = Span::new(start, start + trimmed.len());
        if kind.is_none() {
            let declared = trimmed.strip_prefix("kind").map(str::trim);
            kind = match declared {
                Some("strings") => Some(ListKind::Strings),
                Some("cidrs") => Some(ListKind::Cidrs),
                Some("regexes") => Some(ListKind::Regexes),
                _ => {
                    diags.push(
                        Diagnostic::error(span, "a list file starts with its kind").with_hint(
                            "write `kind strings`, `kind cidrs` or `kind regexes` first",
                        ),
                    );
                    return Err(diags);
                }
            };
            if let (Some(want), Some(got)) = (expect, kind)
                && want != got
            {
                diags.push(Diagnostic::error(
                    span,
                    format!(
                        "the list was loaded as `kind {}`: its kind cannot change while rules use it",
                        want.as_str()
                    ),
                ));
                return Err(diags);
            }
            continue;
        }
        items.push((trimmed, span));
    }
    let Some(kind) = kind else {
        diags.push(
            Diagnostic::error(Span::new(0, 0), "the list file declares no kind")
                .with_hint("write `kind strings`, `kind cidrs` or `kind regexes` first"),
        );
        return Err(diags);
    };
    let entries = match kind {
        ListKind::Strings => Entries::Strings {
            lower: items.iter().map(|(s, _)| s.to_lowercase()).collect(),
            exact: items.iter().map(|(s, _)| (*s).to_owned()).collect(),
        },
        ListKind::Cidrs => {
            let mut nets = Vec::new();
            for (s, span) in &items {
                match Cidr::parse(s) {
                    Some(n) => nets.push(n),
                    None => diags.push(
                        Diagnostic::error(*span, format!("`{s}` is not an address or a network"))
                            .with_hint("write `10.0.0.0/8`, `2001:db8::/32` or a single address"),
                    ),
                }
            }
            Entries::Cidrs(nets)
        }
        ListKind::Regexes => {
            for (s, span) in &items {
                if let Err(e) = regex::RegexBuilder::new(s).size_limit(1 << 20).build() {
                    diags.push(Diagnostic::error(*span, format!("invalid regex: {e}")));
                }
            }
            match regex::RegexSetBuilder::new(items.iter().map(|(s, _)| *s))
                .size_limit(1 << 24)
                .build()
            {
                Ok(set) => Entries::Regexes(set),
                Err(e) => {
                    if diags.is_empty() {
                        diags.push(Diagnostic::error(
                            Span::new(0, 0),
                            format!("the regexes are too large together: {e}"),
                        ));
                    }
                    return Err(diags);
                }
            }
        }
    };
    if diags.is_empty() {
        Ok((kind, entries))
    } else {
        Err(diags)
    }
}

/// The lists of a rule set, by name.
#[derive(Clone, Debug, Default)]
pub struct Lists(pub(crate) Vec<Arc<ListHandle>>);

impl Lists {
    /// Every list, in load order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<ListHandle>> {
        self.0.iter()
    }

    /// The list named `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<ListHandle>> {
        self.0.iter().find(|l| l.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(text: &str) -> ListHandle {
        ListHandle::parse("x/admins.list", text).unwrap()
    }

    #[test]
    fn strings_cidrs_and_regexes() {
        let s = list("# admins\nkind strings\n\n  Administrator \nroot\n");
        assert_eq!(
            (s.name(), s.kind(), s.len()),
            ("admins", ListKind::Strings, 2)
        );
        assert!(s.contains("Administrator", false));
        assert!(!s.contains("administrator", false));
        assert!(s.contains("ADMINISTRATOR", true));
        assert!(!s.contains("admin", true));
        let c = list("kind cidrs\n10.0.0.0/8\n2001:db8::/32\n192.0.2.7\n");
        assert!(c.contains("10.1.2.3", false));
        assert!(c.contains("2001:db8::1", false));
        assert!(c.contains("192.0.2.7", false));
        assert!(!c.contains("192.0.2.8", false));
        assert!(!c.contains("not an ip", false));
        let r = list("kind regexes\n(?i)invoke-mimikatz\n^certutil.*-urlcache\n");
        assert!(r.contains("powershell Invoke-Mimikatz -x", false));
        assert!(r.contains("certutil.exe -urlcache -f http://x", false));
        assert!(!r.contains("a certutil -urlcache", false));
        assert!(list("kind regexes\n").is_empty());
    }

    #[test]
    fn errors_point_at_the_line() {
        let text = "kind cidrs\n10.0.0.0/8\n  10.0.0/8\n300.1.1.1\n";
        let e = ListHandle::parse("nets.list", text).unwrap_err();
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].line_col(text), (3, 3));
        assert!(
            e[0].message.contains("`10.0.0/8` is not an address"),
            "{:?}",
            e[0]
        );
        let e = ListHandle::parse("r.list", "kind regexes\na(b\n").unwrap_err();
        assert!(e[0].message.starts_with("invalid regex"), "{:?}", e[0]);
        let e = ListHandle::parse("r.list", "10.0.0.0/8\n").unwrap_err();
        assert_eq!(e[0].message, "a list file starts with its kind");
        let e = ListHandle::parse("r.list", "# nothing\n").unwrap_err();
        assert_eq!(e[0].message, "the list file declares no kind");
    }

    #[test]
    fn reload_swaps_entries_and_keeps_them_on_error() {
        let l = list("kind strings\nalice\n");
        assert!(l.contains("alice", false));
        assert_eq!(l.reload("kind strings\nbob\ncarol\n").unwrap(), 2);
        assert!(!l.contains("alice", false));
        assert!(l.contains("carol", false));
        assert!(l.reload("kind cidrs\n10.0.0.0/8\n").is_err());
        assert!(l.reload("bob\n").is_err());
        assert!(
            l.contains("bob", false),
            "a failed reload keeps the entries"
        );
    }
}
