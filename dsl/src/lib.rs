//! Vigil's rule language: grammar (pest), syntax tree, diagnostics, type checking against the
//! canonical schema, and lowering to a [`RuleSet`] plan that the engine executes.
//!
//! This crate knows nothing of timely, files or the network: callers hand it source text and get
//! back either a rule set or diagnostics that render as
//! `path:line:col: error: message` with the source line and a caret.
//!
//! ```
//! let src = vigil_dsl::SourceFile::new("r.rule", r#"
//! rule brute_force_login {
//!     title    "Brute force against {user.name}"
//!     severity high
//!     match    event.category == "authentication" and event.outcome == "failure"
//!     when     count >= 10 by user.name within 5m
//! }"#);
//! let (rules, warnings) = vigil_dsl::compile(&[src]).unwrap();
//! assert_eq!(rules.rules[0].id, "brute_force_login");
//! assert!(warnings.is_empty());
//! ```

pub mod ast;
mod check;
pub mod diag;
mod layout;
pub mod lists;
mod parse;
pub mod plan;
pub mod schema;
pub mod template;

use std::collections::HashMap;
use std::fmt;

pub use diag::{Diagnostic, Level};
pub use layout::{check_round_trip, format};
pub use lists::{ListHandle, ListKind, Lists};
pub use parse::parse;
pub use plan::*;
pub use schema::{FieldInfo, FieldType, Schema};

/// A rule file's path (for messages) and text.
#[derive(Clone, Debug)]
pub struct SourceFile {
    /// Path as the user should see it.
    pub path: String,
    /// The file's text.
    pub text: String,
}

impl SourceFile {
    /// A source file from a path and its text.
    pub fn new(path: impl Into<String>, text: impl Into<String>) -> Self {
        SourceFile {
            path: path.into(),
            text: text.into(),
        }
    }
}

/// The diagnostics of one file.
#[derive(Clone, Debug)]
pub struct FileDiagnostics {
    /// The file's path.
    pub path: String,
    /// The file's text, for rendering.
    pub text: String,
    /// Every problem, in source order.
    pub diagnostics: Vec<Diagnostic>,
}

impl FileDiagnostics {
    /// Whether any diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(|d| d.level == Level::Error)
    }
}

impl fmt::Display for FileDiagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.diagnostics {
            f.write_str(&d.render(&self.path, &self.text))?;
        }
        Ok(())
    }
}

/// Rule files that did not compile: every file's diagnostics (warnings included).
#[derive(Clone, Debug)]
pub struct CompileError {
    /// Files with at least one diagnostic.
    pub files: Vec<FileDiagnostics>,
}

impl CompileError {
    /// Number of errors over all files.
    pub fn error_count(&self) -> usize {
        self.files
            .iter()
            .flat_map(|f| &f.diagnostics)
            .filter(|d| d.level == Level::Error)
            .count()
    }
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for file in &self.files {
            write!(f, "{file}")?;
        }
        Ok(())
    }
}

impl std::error::Error for CompileError {}

/// Compiles rule files against the canonical schema.
///
/// On success returns the rule set and the files that had warnings; on failure every file's
/// diagnostics, all errors of each file at once.
pub fn compile(files: &[SourceFile]) -> Result<(RuleSet, Vec<FileDiagnostics>), CompileError> {
    compile_with(files, Schema::canonical())
}

/// A list's name: its file's stem, a plain identifier.
fn valid_list_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Records where `id` is defined, or, when it was defined before, the error that says where.
fn first_definition(
    seen: &mut HashMap<String, String>,
    what: &str,
    id: &ast::Spanned<String>,
    origin: &str,
) -> Option<Diagnostic> {
    if let Some(first) = seen.get(&id.value) {
        return Some(
            Diagnostic::error(id.span, format!("duplicate {what} id `{}`", id.value))
                .with_hint(format!("first defined at {first}")),
        );
    }
    seen.insert(id.value.clone(), origin.to_owned());
    None
}

/// Checks the rules each `from alerts of …` names, rejects cycles, and sets every rule's level:
/// 0 over events, one above the highest rule read over alerts.
fn resolve_inputs(
    parsed: &[(ast::RuleFile, Vec<Diagnostic>)],
    ids: &[&str],
    rules: &mut [RulePlan],
    diags: &mut [Vec<Diagnostic>],
) {
    // Where each rule's `from` clause is: (file, span).
    let mut from: HashMap<&str, (usize, ast::Span)> = HashMap::new();
    for (fi, (ast, _)) in parsed.iter().enumerate() {
        for r in &ast.rules {
            let Some(f) = &r.from_alerts else { continue };
            from.insert(&r.id.value, (fi, f.span));
            for named in &f.rules {
                let d = if named.value == r.id.value {
                    Diagnostic::error(named.span, "a rule cannot read its own alerts")
                } else if !ids.contains(&named.value.as_str()) {
                    let d = Diagnostic::error(named.span, format!("no rule `{}`", named.value));
                    match diag::did_you_mean(&named.value, ids.iter().copied()) {
                        Some(m) => d.with_hint(format!("did you mean `{m}`?")),
                        None => d,
                    }
                } else {
                    continue;
                };
                diags[fi].push(d);
            }
        }
    }
    let index: HashMap<String, usize> = rules
        .iter()
        .enumerate()
        .map(|(i, r)| (r.id.clone(), i))
        .collect();
    let reads: Vec<Vec<usize>> = rules
        .iter()
        .map(|r| match &r.input {
            RuleInput::Events => Vec::new(),
            RuleInput::Alerts(of) => of.iter().filter_map(|n| index.get(n).copied()).collect(),
        })
        .collect();
    // Depth-first, with the path kept to name a cycle.
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done(u32),
    }
    fn visit(
        i: usize,
        reads: &[Vec<usize>],
        rules: &[RulePlan],
        marks: &mut [Mark],
        path: &mut Vec<usize>,
    ) -> Result<u32, Vec<usize>> {
        match marks[i] {
            Mark::Done(l) => return Ok(l),
            Mark::Open => {
                let at = path.iter().position(|&p| p == i).unwrap_or(0);
                return Err(path[at..].to_vec());
            }
            Mark::New => {}
        }
        marks[i] = Mark::Open;
        path.push(i);
        let mut level = u32::from(rules[i].input != RuleInput::Events);
        for &j in &reads[i] {
            level = level.max(visit(j, reads, rules, marks, path)? + 1);
        }
        path.pop();
        marks[i] = Mark::Done(level);
        Ok(level)
    }
    let mut marks = vec![Mark::New; rules.len()];
    for i in 0..rules.len() {
        let mut path = Vec::new();
        match visit(i, &reads, rules, &mut marks, &mut path) {
            Ok(level) => rules[i].level = level,
            Err(cycle) => {
                let names: Vec<&str> = cycle.iter().map(|&c| rules[c].id.as_str()).collect();
                let first = names[0];
                if let Some(&(fi, span)) = from.get(first) {
                    diags[fi].push(
                        Diagnostic::error(
                            span,
                            format!("`{first}` reads its own alerts through a cycle"),
                        )
                        .with_hint(format!(
                            "{} -> {first}: rules over alerts must form no cycle",
                            names.join(" -> ")
                        )),
                    );
                }
                // Every rule on the path stays unresolved (the compile fails).
                for c in path {
                    marks[c] = Mark::Done(0);
                }
            }
        }
    }
}

/// Where a rule, exception or parameter set starts, as `path:line`.
fn origin(file: &SourceFile, span: ast::Span) -> String {
    let (line, _) = Diagnostic::error(span, "").line_col(&file.text);
    format!("{}:{line}", file.path)
}

/// Checks every parameter set (`params ID { rule R tenant T … }`) and compiles its rule again
/// with the tenant's values: one more [`RulePlan`] with the rule's id, for that tenant only,
/// while the defaults' plan runs for every other tenant. Errors the values cause are reported
/// in the rule's file, naming the set.
fn tenant_variants(
    files: &[SourceFile],
    parsed: &[(ast::RuleFile, Vec<Diagnostic>)],
    schema: &Schema,
    lists: &Lists,
    fields: &mut check::Fields,
    rules: &mut Vec<RulePlan>,
    diags: &mut [Vec<Diagnostic>],
) {
    // The first definition of each rule, with its file.
    let mut asts: HashMap<&str, (usize, &ast::RuleAst)> = HashMap::new();
    for (fi, (file, _)) in parsed.iter().enumerate() {
        for r in &file.rules {
            asts.entry(r.id.value.as_str()).or_insert((fi, r));
        }
    }
    let by_id: HashMap<&str, &ast::RuleAst> = asts.iter().map(|(k, (_, r))| (*k, *r)).collect();
    let mut set_ids: HashMap<String, String> = HashMap::new();
    let mut scoped: HashMap<(String, String), String> = HashMap::new();
    let mut variants = Vec::new();
    for (pfi, (file, (ast, _))) in files.iter().zip(parsed).enumerate() {
        for x in &ast.params {
            let at = origin(file, x.span);
            let mut checker = check::Checker {
                schema,
                lists,
                fields,
                diags: Vec::new(),
            };
            let valid = match first_definition(&mut set_ids, "parameter set", &x.id, &at) {
                Some(d) => {
                    checker.diags.push(d);
                    None
                }
                None => checker.params(x, &by_id),
            };
            diags[pfi].append(&mut checker.diags);
            let Some((rule, tenant)) = valid else {
                continue;
            };
            if let Some(first) = scoped.get(&(rule.clone(), tenant.clone())) {
                let span = x.tenant.as_ref().map_or(x.span, |t| t.span);
                diags[pfi].push(
                    Diagnostic::error(
                        span,
                        format!("tenant `{tenant}` already has parameters for `{rule}`"),
                    )
                    .with_hint(format!("first set at {first}")),
                );
                continue;
            }
            scoped.insert((rule.clone(), tenant.clone()), at.clone());
            // A rule that did not compile with its defaults has its errors reported already.
            let Some(base) = rules.iter_mut().find(|r| r.id == rule) else {
                continue;
            };
            match &mut base.tenants {
                TenantScope::AllBut(others) => others.push(tenant.clone()),
                scope => *scope = TenantScope::AllBut(vec![tenant.clone()]),
            }
            let base_origin = base.origin.clone();
            let (rfi, _) = asts[rule.as_str()];
            let (file, mut found) = parse::parse_with(&files[rfi].text, Some((&rule, &x.values)));
            let mut checker = check::Checker {
                schema,
                lists,
                fields,
                diags: Vec::new(),
            };
            let Some(r) = file.rules.iter().find(|r| r.id.value == rule) else {
                continue;
            };
            let plan = checker.rule(r, base_origin);
            found.append(&mut checker.diags);
            // Only the rule's errors: the defaults' compile reported the rest.
            let (start, end) = (r.span.start, r.span.end);
            for mut d in found
                .into_iter()
                .filter(|d| d.level == Level::Error && d.span.start >= start && d.span.end <= end)
            {
                d.message = format!(
                    "{} (with tenant {tenant}'s parameters, set `{}` at {at})",
                    d.message, x.id.value
                );
                diags[rfi].push(d);
            }
            if let Some(mut plan) = plan {
                plan.tenants = TenantScope::Only(tenant);
                plan.params_origin = Some(format!("{} ({at})", x.id.value));
                plan.compute_hash(&fields.paths);
                variants.push(plan);
            }
        }
    }
    for r in rules.iter_mut() {
        if let TenantScope::AllBut(others) = &mut r.tenants {
            others.sort();
        }
    }
    rules.extend(variants);
}

/// [`compile`] against a given schema.
pub fn compile_with(
    files: &[SourceFile],
    schema: &Schema,
) -> Result<(RuleSet, Vec<FileDiagnostics>), CompileError> {
    compile_at(files, schema, vigil_model::time::now_millis())
}

/// [`compile_with`] on a given day (epoch ms), for the expiry of exceptions.
pub fn compile_at(
    files: &[SourceFile],
    schema: &Schema,
    today_ms: i64,
) -> Result<(RuleSet, Vec<FileDiagnostics>), CompileError> {
    let mut fields = check::Fields::default();
    let mut rules: Vec<RulePlan> = Vec::new();
    let mut seen: HashMap<String, String> = HashMap::new();
    // Lists first (`*.list`), which rules of any file may name.
    let mut lists = Lists::default();
    let mut list_diags: Vec<Vec<Diagnostic>> = vec![Vec::new(); files.len()];
    for (f, diags) in files.iter().zip(&mut list_diags) {
        if !f.path.ends_with(".list") {
            continue;
        }
        match ListHandle::parse(&f.path, &f.text) {
            Ok(l) if !valid_list_name(l.name()) => diags.push(Diagnostic::error(
                ast::Span::new(0, 0),
                format!(
                    "invalid list name `{}`: name the file with lowercase letters, digits and `_`",
                    l.name()
                ),
            )),
            Ok(l) => match lists.get(l.name()) {
                Some(first) => diags.push(
                    Diagnostic::error(
                        ast::Span::new(0, 0),
                        format!("duplicate list `{}`", l.name()),
                    )
                    .with_hint(format!("first loaded from {}", first.path())),
                ),
                None => lists.0.push(std::sync::Arc::new(l)),
            },
            Err(mut e) => diags.append(&mut e),
        }
    }
    let parsed: Vec<(ast::RuleFile, Vec<Diagnostic>)> = files
        .iter()
        .zip(list_diags)
        .map(|(f, d)| {
            if f.path.ends_with(".list") {
                (ast::RuleFile::default(), d)
            } else {
                parse(&f.text)
            }
        })
        .collect();
    let mut diags: Vec<Vec<Diagnostic>> = Vec::new();
    // Rules first, then exceptions, which may name a rule of any file.
    for (file, (ast, parse_diags)) in files.iter().zip(&parsed) {
        let mut checker = check::Checker {
            schema,
            lists: &lists,
            fields: &mut fields,
            diags: parse_diags.clone(),
        };
        for r in &ast.rules {
            let origin = origin(file, r.span);
            if let Some(d) = first_definition(&mut seen, "rule", &r.id, &origin) {
                checker.diags.push(d);
                continue;
            }
            if let Some(plan) = checker.rule(r, origin) {
                rules.push(plan);
            }
        }
        diags.push(checker.diags);
    }
    tenant_variants(
        files,
        &parsed,
        schema,
        &lists,
        &mut fields,
        &mut rules,
        &mut diags,
    );
    let ids: Vec<String> = seen.keys().cloned().collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    let mut exception_ids: HashMap<String, String> = HashMap::new();
    for ((file, (ast, _)), file_diags) in files.iter().zip(&parsed).zip(&mut diags) {
        let mut checker = check::Checker {
            schema,
            lists: &lists,
            fields: &mut fields,
            diags: Vec::new(),
        };
        for x in &ast.exceptions {
            let origin = origin(file, x.span);
            if let Some(d) = first_definition(&mut exception_ids, "exception", &x.id, &origin) {
                checker.diags.push(d);
                continue;
            }
            if let Some((rule, plan)) = checker.exception(x, &ids, origin, today_ms) {
                // The rule's defaults and every tenant's variant.
                for r in rules.iter_mut().filter(|r| r.id == rule) {
                    r.exceptions.push(plan.clone());
                }
            }
        }
        file_diags.append(&mut checker.diags);
    }
    resolve_inputs(&parsed, &ids, &mut rules, &mut diags);
    let mut reports = Vec::new();
    for ((file, mut diags), (ast, _)) in files.iter().zip(diags).zip(&parsed) {
        diags.sort_by_key(|d| (d.span.start, d.span.end));
        // Where a parameter could not be used, its error (the parser's, found first) stands
        // for what the checker found there after it.
        let mut reported: Vec<ast::Span> = Vec::new();
        diags.retain(|d| {
            if d.level != Level::Error || !ast.failed_params.contains(&d.span) {
                return true;
            }
            let first = !reported.contains(&d.span);
            reported.push(d.span);
            first
        });
        if !diags.is_empty() {
            reports.push(FileDiagnostics {
                path: file.path.clone(),
                text: file.text.clone(),
                diagnostics: diags,
            });
        }
    }
    if reports.iter().any(FileDiagnostics::has_errors) {
        return Err(CompileError { files: reports });
    }
    rules.sort_by(|a, b| a.id.cmp(&b.id));
    Ok((
        RuleSet {
            rules,
            lists,
            fields: fields.paths,
            files: files.len(),
        },
        reports,
    ))
}
