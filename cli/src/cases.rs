//! Rule test cases: data files beside each rule, run through the same compiled dataflow as
//! production, with the alerts compared order-insensitively.
//!
//! A rule file `brute_force_login.rule` may have a folder `brute_force_login.tests/` of cases,
//! one JSON file each:
//!
//! ```json
//! {
//!   "description": "ten failures within five minutes fire once",
//!   "lateness": "10s",
//!   "tenant": "acme",
//!   "with_rules": [],
//!   "input": [
//!     {"@timestamp": "2026-11-30T10:00:00Z", "tenant_id": "acme", "event": {"id": "a"}},
//!     "not json: a raw line",
//!     {"repeat": 10, "start": "2026-11-30T10:00:00Z", "every": "10s", "id_prefix": "f",
//!      "event": {"tenant_id": "acme", "event": {"outcome": "failure"}}}
//!   ],
//!   "expect": [{"rule_id": "brute_force_login", "group": {"user.name": "alice"}, "value": 10}],
//!   "rejects": {"late": 1}
//! }
//! ```
//!
//! `input` entries are events (objects), raw lines (strings, for malformed input) or `repeat`
//! blocks that expand into `repeat` copies of `event` with `@timestamp` = `start + i × every`
//! and, with `id_prefix`, `event.id` = `{id_prefix}{i}`. Each `expect` entry must match exactly
//! one alert on every field it names; every alert must be matched. `rejects` gives the exact
//! count per reason (none when not given). Every case runs with 1, 2 and 4 workers and with several chunk
//! sizes, and all runs must agree: results may not depend on parallelism or batching.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use serde_json::{Map, Value};
use vigil_dsl::RuleSet;
use vigil_engine::{Compiled, EngineConfig, Sinks};
use vigil_model::time::{format_rfc3339_millis, parse_rfc3339};
use vigil_sinks::{CaptureRejects, CaptureSink};
use vigil_sources::MemorySource;

/// One test case file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// What the case shows.
    pub description: String,
    /// Allowed lateness (default `10s`).
    #[serde(default)]
    pub lateness: Option<String>,
    /// Default tenant, as `--tenant`.
    #[serde(default)]
    pub tenant: Option<String>,
    /// More rule files the case runs with, relative to the rule's file: the rules a rule over
    /// alerts reads. Their alerts are expected like the rule's own.
    #[serde(default)]
    pub with_rules: Vec<String>,
    /// Input lines.
    pub input: Vec<Value>,
    /// Expected alerts (partial objects).
    pub expect: Vec<Map<String, Value>>,
    /// Expected reject counts by reason; none when not given, so that input a case did not
    /// mean to reject (say, events out of order by more than the lateness) cannot pass
    /// silently.
    #[serde(default)]
    pub rejects: BTreeMap<String, u64>,
}

/// The result of one case.
#[derive(Debug)]
pub struct Outcome {
    /// The case file.
    pub path: PathBuf,
    /// The case's description.
    pub description: String,
    /// Empty when the case passed; otherwise what differed.
    pub failures: Vec<String>,
}

/// Worker counts and chunk sizes every case runs with.
const WORKERS: [usize; 3] = [1, 2, 4];
const CHUNK_LINES: [usize; 3] = [1, 3, 1000];

/// Finds every `*.tests/*.json` case under `paths` with the rule file it belongs to.
pub fn discover(paths: &[PathBuf]) -> Result<Vec<(PathBuf, PathBuf)>> {
    let mut out = Vec::new();
    for p in paths {
        walk(p, &mut out)?;
    }
    out.sort();
    Ok(out)
}

fn walk(p: &Path, out: &mut Vec<(PathBuf, PathBuf)>) -> Result<()> {
    if p.is_file() {
        if p.extension().is_some_and(|e| e == "rule") {
            let dir = p.with_extension("tests");
            if dir.is_dir() {
                for case in json_files(&dir)? {
                    out.push((p.to_path_buf(), case));
                }
            }
        }
        return Ok(());
    }
    for e in crate::load::sorted_dir(p)? {
        if !(e.is_dir() && e.extension().is_some_and(|x| x == "tests")) {
            walk(&e, out)?;
        }
    }
    Ok(())
}

fn json_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v = crate::load::sorted_dir(dir)?;
    v.retain(|p| p.extension().is_some_and(|e| e == "json"));
    Ok(v)
}

/// The rule files a case runs with: `rule_file` and the case's `with_rules`.
pub fn rule_files(rule_file: &Path, case: &Case) -> Vec<PathBuf> {
    let dir = rule_file.parent().unwrap_or(Path::new("."));
    std::iter::once(rule_file.to_path_buf())
        .chain(case.with_rules.iter().map(|r| dir.join(r)))
        .collect()
}

/// Reads one test case file.
pub fn read_case(case_path: &Path) -> Result<Case> {
    let text = std::fs::read_to_string(case_path)
        .with_context(|| format!("failed to read {}", case_path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("invalid test case {}", case_path.display()))
}

/// Runs one case (read from `case_path`) against `rules`.
pub fn run_case(rules: &RuleSet, case_path: &Path, case: Case) -> Result<Outcome> {
    let lines =
        expand(&case.input).with_context(|| format!("invalid input in {}", case_path.display()))?;
    let lateness_ms = match &case.lateness {
        Some(d) => vigil_model::parse_duration(d)
            .with_context(|| format!("invalid lateness in {}", case_path.display()))?,
        None => vigil_engine::DEFAULT_LATENESS_MS,
    };
    let default_tenant = match &case.tenant {
        Some(t) => Some(vigil_model::TenantId::parse(t)?),
        None => None,
    };
    let compiled = Arc::new(Compiled::new(rules));
    let mut failures = Vec::new();
    let mut reference: Option<(String, Vec<Value>)> = None;
    for workers in WORKERS {
        for chunk in CHUNK_LINES {
            let alerts = Arc::new(CaptureSink::default());
            let rejects = Arc::new(CaptureRejects::default());
            let config = EngineConfig {
                workers,
                lateness_ms,
                default_tenant: default_tenant.clone(),
                ..EngineConfig::default()
            };
            let source = Box::new(MemorySource::from_lines(
                case_path.display().to_string(),
                &lines,
                chunk,
            ));
            vigil_engine::run(
                &config,
                Arc::clone(&compiled),
                source,
                Sinks {
                    alerts: alerts.clone(),
                    rejects: Some(rejects.clone()),
                },
            )?;
            let got: Vec<Value> = alerts
                .alerts()
                .into_iter()
                .map(|a| {
                    let mut v = serde_json::to_value(a).unwrap_or(Value::Null);
                    if let Some(o) = v.as_object_mut() {
                        o.remove("detected_at");
                    }
                    v
                })
                .collect();
            let label = format!("workers={workers} chunk_lines={chunk}");
            match &reference {
                None => {
                    failures.extend(compare(&case.expect, &got));
                    let mut have: BTreeMap<String, u64> = BTreeMap::new();
                    for (reason, _, _) in rejects.rejects() {
                        *have.entry(reason.as_str().to_owned()).or_default() += 1;
                    }
                    if have != case.rejects {
                        failures.push(format!(
                            "rejects: expected {:?}, got {have:?}",
                            case.rejects
                        ));
                    }
                    reference = Some((label, got));
                }
                Some((ref_label, want)) => {
                    if want != &got {
                        failures.push(format!(
                            "{label} produced different alerts than {ref_label}:\n  {}\nvs\n  {}",
                            show(&got),
                            show(want)
                        ));
                    }
                }
            }
        }
    }
    Ok(Outcome {
        path: case_path.to_path_buf(),
        description: case.description,
        failures,
    })
}

fn show(v: &[Value]) -> String {
    v.iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join("\n  ")
}

/// Matches expected partial alerts to actual alerts one to one.
fn compare(expect: &[Map<String, Value>], got: &[Value]) -> Vec<String> {
    let mut used = vec![false; got.len()];
    let mut failures = Vec::new();
    for e in expect {
        let found = got
            .iter()
            .enumerate()
            .position(|(i, g)| !used[i] && e.iter().all(|(k, v)| g.get(k) == Some(v)));
        match found {
            Some(i) => used[i] = true,
            None => failures.push(format!(
                "missing alert matching {}",
                Value::Object(e.clone())
            )),
        }
    }
    for (i, g) in got.iter().enumerate() {
        if !used[i] {
            failures.push(format!("unexpected alert {g}"));
        }
    }
    failures
}

/// Expands `repeat` blocks and serializes the input to lines.
fn expand(input: &[Value]) -> Result<Vec<String>> {
    let mut lines = Vec::new();
    for item in input {
        match item {
            Value::String(raw) => lines.push(raw.clone()),
            Value::Object(o) if o.contains_key("repeat") => {
                let n = o
                    .get("repeat")
                    .and_then(Value::as_u64)
                    .context("`repeat` must be a count")?;
                let start = o
                    .get("start")
                    .and_then(Value::as_str)
                    .and_then(parse_rfc3339)
                    .context("`repeat` needs an RFC 3339 `start`")?;
                let every = match o.get("every").and_then(Value::as_str) {
                    Some(d) => vigil_model::parse_duration(d)? as i64,
                    None => 0,
                };
                let template = o
                    .get("event")
                    .and_then(Value::as_object)
                    .context("`repeat` needs an `event` object")?;
                let prefix = o.get("id_prefix").and_then(Value::as_str);
                for i in 0..n {
                    let mut ev = template.clone();
                    ev.insert(
                        "@timestamp".into(),
                        Value::String(format_rfc3339_millis(start + i as i64 * every)),
                    );
                    if let Some(p) = prefix {
                        let event = ev
                            .entry("event")
                            .or_insert_with(|| Value::Object(Map::new()));
                        if let Some(event) = event.as_object_mut() {
                            event.insert("id".into(), Value::String(format!("{p}{i:04}")));
                        }
                    }
                    lines.push(Value::Object(ev).to_string());
                }
            }
            Value::Object(_) => lines.push(item.to_string()),
            other => bail!("input entries are objects, strings or repeat blocks, found {other}"),
        }
    }
    Ok(lines)
}
