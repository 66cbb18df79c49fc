//! Finding and compiling rule files.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use std::sync::Arc;
use std::time::Duration;

use vigil_dsl::{ListHandle, Lists, RuleSet, SourceFile};

/// The outcome of loading rules.
pub enum Loaded {
    /// Every rule compiled; `warnings` is rendered text (possibly empty).
    Ok { rules: RuleSet, warnings: String },
    /// Rendered diagnostics and a closing count line.
    Failed(String),
}

/// Loads every rule file under `paths` (files, or directories searched recursively for
/// `*.rule`, `*.exceptions`, `*.params` and `*.list`, but not in `*.tests` folders), in sorted
/// order.
pub fn rules(paths: &[PathBuf]) -> Result<Loaded> {
    let mut files = Vec::new();
    for p in paths {
        collect(p, false, &mut files)?;
    }
    if files.is_empty() {
        anyhow::bail!(
            "no rule files found in {}: rule files end in `.rule` (exceptions in `.exceptions`, tenants' parameters in `.params`, lists in `.list`)",
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let mut sources = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("failed to read rule file {}", f.display()))?;
        sources.push(SourceFile::new(f.display().to_string(), text));
    }
    Ok(match vigil_dsl::compile(&sources) {
        Ok((rules, warnings)) => Loaded::Ok {
            rules,
            warnings: warnings.iter().map(ToString::to_string).collect(),
        },
        Err(e) => {
            let n = e.error_count();
            Loaded::Failed(format!(
                "{e}error: {n} error{} in {} file{}\n",
                if n == 1 { "" } else { "s" },
                e.files.iter().filter(|f| f.has_errors()).count(),
                if e.files.len() == 1 { "" } else { "s" }
            ))
        }
    })
}

/// Every rule-language file under `paths` (`*.rule`, `*.exceptions`, `*.params`, those in
/// `*.tests` folders included), sorted: what `vigil fmt` formats.
pub fn rule_language_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for p in paths {
        collect(p, true, &mut files)?;
    }
    files.retain(|f| f.extension().is_none_or(|x| x != "list"));
    Ok(files)
}

/// Adds the files under `p` to `out`; `tests`: descend into `*.tests` folders too.
fn collect(p: &Path, tests: bool, out: &mut Vec<PathBuf>) -> Result<()> {
    let meta = std::fs::metadata(p)
        .with_context(|| format!("failed to read rules from {}", p.display()))?;
    if meta.is_file() {
        out.push(p.to_path_buf());
        return Ok(());
    }
    for e in sorted_dir(p)? {
        // A rule's `NAME.tests/` folder holds its cases and their fixtures (say, a parameter
        // set a case loads with `with_rules`): never content of its own.
        if !tests && e.is_dir() && e.extension().is_some_and(|x| x == "tests") {
            continue;
        }
        if e.is_dir() {
            collect(&e, tests, out)?;
        } else if e.extension().is_some_and(|x| {
            ["rule", "exceptions", "params", "list"].contains(&x.to_str().unwrap_or_default())
        }) {
            out.push(e);
        }
    }
    Ok(())
}

/// Every `*.list` file under `paths`, sorted: the lists a test case loads with its rules.
pub fn list_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for p in paths {
        collect(p, false, &mut files)?;
    }
    files.retain(|f| f.extension().is_some_and(|x| x == "list"));
    Ok(files)
}

/// Reloads each list when its file changes (size or modification time, checked every
/// `every`), for as long as the process runs. A file that fails to parse leaves the list as
/// it was; both outcomes are logged.
pub fn watch_lists(lists: &Lists, every: Duration) {
    if lists.iter().next().is_none() {
        return;
    }
    let stamp = |path: &str| {
        std::fs::metadata(path)
            .ok()
            .map(|m| (m.len(), m.modified().ok()))
    };
    let mut watched: Vec<_> = lists
        .iter()
        .map(|l| (Arc::clone(l), stamp(l.path())))
        .collect();
    let spawned = std::thread::Builder::new()
        .name("vigil-lists".into())
        .spawn(move || {
            loop {
                std::thread::sleep(every);
                for (list, seen) in &mut watched {
                    let now = stamp(list.path());
                    if now == *seen {
                        continue;
                    }
                    *seen = now;
                    reload(list);
                }
            }
        });
    if let Err(e) = spawned {
        eprintln!("vigil: lists will not reload: {e}");
    }
}

fn reload(list: &ListHandle) {
    let path = list.path();
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!(
                "vigil: list {} not reloaded: failed to read {path}: {e}",
                list.name()
            );
            return;
        }
    };
    match list.reload(&text) {
        Ok(n) => eprintln!(
            "vigil: list {} reloaded from {path}: {n} entries",
            list.name()
        ),
        Err(diags) => {
            for d in diags {
                eprint!("{}", d.render(path, &text));
            }
            eprintln!(
                "vigil: list {} not reloaded: it keeps its {} entries",
                list.name(),
                list.len()
            );
        }
    }
}

/// The entries of a directory, sorted, so that rule sets and test runs load in a stable order.
pub fn sorted_dir(p: &Path) -> Result<Vec<PathBuf>> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(p)
        .with_context(|| format!("failed to list directory {}", p.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    Ok(entries)
}
