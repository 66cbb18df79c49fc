//! End to end: the `vigil` binary on the example file and on bad rules, as a user runs it.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn vigil() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vigil"));
    c.current_dir(root());
    c
}

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vigil-e2e-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn quickstart_prints_the_example_attacks() {
    let out = vigil()
        .args(["run", "--rules", "rules", "--input", "examples/auth.jsonl"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let alerts: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut rules: Vec<&str> = alerts
        .iter()
        .map(|a| a["rule_id"].as_str().unwrap())
        .collect();
    rules.sort();
    assert_eq!(
        rules,
        [
            "brute_force_login",
            "encoded_powershell",
            "password_spray",
            "root_login_from_public_ip"
        ]
    );
    for a in &alerts {
        assert_eq!(a["id"].as_str().unwrap().len(), 32);
        assert_eq!(a["schema_version"], 1);
        assert!(a["detected_at"].is_string());
    }
    let bf = alerts
        .iter()
        .find(|a| a["rule_id"] == "brute_force_login")
        .unwrap();
    assert_eq!(bf["tenant_id"], "acme");
    assert!(bf["value"].as_u64().unwrap() >= 10);
    assert!(
        err.contains("vigil: read 604 lines: 603 events, 1 rejected (invalid_json 1), 1 late"),
        "{err}"
    );
    assert!(err.contains("vigil: 4 alerts"), "{err}");
    // The brute force's 11th failure and the spray's later users would each have alerted
    // again but for the rules' suppression.
    assert!(
        err.contains(
            "vigil: matches suppressed per rule/tenant: brute_force_login/acme 1, \
             password_spray/globex 14"
        ),
        "{err}"
    );
    assert!(err.contains("events/s: "), "{err}");
}

#[test]
fn output_and_rejects_files_and_deterministic_ids() {
    let dir = temp("files");
    let mut ids = Vec::new();
    for workers in ["1", "3"] {
        let alerts = dir.join(format!("alerts-{workers}.jsonl"));
        let rejects = dir.join(format!("rejects-{workers}.jsonl"));
        let out = vigil()
            .args([
                "run",
                "-r",
                "rules/auth",
                "rules/windows",
                "rules/lists",
                "-i",
                "examples/auth.jsonl",
                "-w",
                workers,
            ])
            .arg("--output")
            .arg(&alerts)
            .arg("--rejects")
            .arg(&rejects)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.stdout.is_empty());
        let mut these: Vec<String> = std::fs::read_to_string(&alerts)
            .unwrap()
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["id"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        these.sort();
        ids.push(these);
        let rejected: Vec<Value> = std::fs::read_to_string(&rejects)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let reasons: Vec<&str> = rejected
            .iter()
            .map(|r| r["reason"].as_str().unwrap())
            .collect();
        assert_eq!(reasons.len(), 2);
        assert!(
            reasons.contains(&"invalid_json") && reasons.contains(&"late"),
            "{reasons:?}"
        );
        for r in &rejected {
            assert_eq!(r["source"], "examples/auth.jsonl");
            assert!(r["line"].as_str().unwrap().starts_with('{'));
            assert!(!r["error"].as_str().unwrap().contains('\n'));
        }
    }
    assert_eq!(ids[0].len(), 4);
    assert_eq!(ids[0], ids[1]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn stdin_input_works() {
    use std::io::Write;
    let mut child = vigil()
        .args([
            "run", "--rules", "rules", "--input", "-", "--tenant", "acme",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        let mut stdin = child.stdin.take().unwrap();
        for i in 0..10 {
            writeln!(
                stdin,
                r#"{{"@timestamp":"2026-11-30T10:00:{i:02}Z","user":{{"name":"eve"}},"event":{{"id":"s{i}","category":["authentication"],"outcome":"failure"}}}}"#
            )
            .unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let alert: Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(alert["tenant_id"], "acme");
    assert_eq!(alert["group"]["user.name"], "eve");
}

#[test]
fn check_reports_every_error_with_position_and_caret() {
    let dir = temp("check");
    let bad = dir.join("bad.rule");
    std::fs::write(
        &bad,
        "rule a {\n  title \"t\"\n  severity high\n  match user.nmae == \"x\"\n}\n\nrule b {\n  title \"t\"\n  severity hgih\n  match user.name ==\n}\n",
    )
    .unwrap();
    let out = vigil().arg("check").arg(&bad).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let path = bad.display().to_string();
    assert!(
        err.contains(&format!("{path}:4:9: error: unknown field `user.nmae`")),
        "{err}"
    );
    assert!(err.contains("4 |   match user.nmae == \"x\"\n  |         ^^^^^^^^^\n  = hint: did you mean `user.name`?"), "{err}");
    assert!(
        err.contains(&format!(
            "{path}:11:1: error: expected a string, a number, a boolean or a parameter `$NAME`, found `}}`"
        )),
        "{err}"
    );
    assert!(err.contains("error: 2 errors in 1 file"), "{err}");
    // `run` refuses the same rules without reading any input.
    let out = vigil()
        .args(["run", "--input", "examples/auth.jsonl", "--rules"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn fmt_lays_out_rule_files_and_check_mode_changes_nothing() {
    let dir = temp("fmt");
    let messy = "# keep me\nrule a { title \"t\"  severity high # trailing\n match user.name == \"x\"\n   and source.ip exists }\n";
    let tidy = "# keep me\nrule a {\n    title    \"t\"\n    severity high # trailing\n    match user.name == \"x\"\n      and source.ip exists\n}\n";
    std::fs::write(dir.join("a.rule"), messy).unwrap();
    std::fs::create_dir_all(dir.join("a.tests")).unwrap();
    std::fs::write(dir.join("a.tests/t.params"), "params p { rule a tenant t }").unwrap();
    std::fs::write(dir.join("ok.rule"), tidy.replace("rule a", "rule b")).unwrap();
    std::fs::write(dir.join("x.list"), "not rule language {\n").unwrap();

    let out = vigil().args(["fmt", "--check"]).arg(&dir).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let a = dir.join("a.rule").display().to_string();
    assert!(err.contains(&format!("{a}:2: not formatted")), "{err}");
    assert!(err.contains("2 of 3 files not formatted"), "{err}");
    assert_eq!(std::fs::read_to_string(dir.join("a.rule")).unwrap(), messy);

    let out = vigil().arg("fmt").arg(&dir).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("2 of 3 files reformatted"), "{err}");
    assert_eq!(std::fs::read_to_string(dir.join("a.rule")).unwrap(), tidy);
    assert_eq!(
        std::fs::read_to_string(dir.join("a.tests/t.params")).unwrap(),
        "params p {\n    rule   a\n    tenant t\n}\n"
    );
    let out = vigil().args(["fmt", "--check"]).arg(&dir).output().unwrap();
    assert!(out.status.success());

    // A file with a syntax error is reported with its position and left as it is.
    std::fs::write(dir.join("bad.rule"), "rule c {\n  match a ==\n}\n").unwrap();
    let out = vigil().arg("fmt").arg(&dir).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("{}:3:1: error:", dir.join("bad.rule").display())),
        "{err}"
    );
    assert!(
        err.contains("1 with syntax errors left as they are"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("bad.rule")).unwrap(),
        "rule c {\n  match a ==\n}\n"
    );

    // `-`: standard input to standard output, for editors.
    let mut child = vigil()
        .args(["fmt", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(messy.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), tidy);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn check_summarizes_valid_rules() {
    let out = vigil().args(["check", "rules"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(err.trim(), "25 rules and 3 lists in 28 files: ok");
}

#[test]
fn exceptions_load_beside_the_rules_and_explain_shows_the_plan() {
    let dir = temp("exceptions");
    let exceptions = dir.join("acme.exceptions");
    std::fs::write(
        &exceptions,
        r#"exception acme.mjohnson_test {
    rule    brute_force_login
    tenant  acme
    owner   "soc@acme.example"
    expires 2099-01-01
    reason  "penetration test of the login page"
    match   user.name == "mjohnson"
}
"#,
    )
    .unwrap();
    let out = vigil()
        .args(["check", "rules"])
        .arg(&exceptions)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.trim(),
        "25 rules, 3 lists and 1 exception in 29 files: ok"
    );
    // The quickstart's brute force against mjohnson is allowed; the rest still fires, and the
    // summary counts what the exception took.
    let out = vigil()
        .args(["run", "--rules", "rules", "--rules"])
        .arg(&exceptions)
        .args(["--input", "examples/auth.jsonl"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("\"brute_force_login\""), "{stdout}");
    assert!(stdout.contains("\"password_spray\""), "{stdout}");
    assert!(
        err.contains(
            "vigil: events allowed by exceptions per rule/tenant: brute_force_login/acme 11"
        ),
        "{err}"
    );
    let out = vigil()
        .args([
            "explain",
            "brute_force_login",
            "--rules",
            "rules",
            "--rules",
        ])
        .arg(&exceptions)
        .output()
        .unwrap();
    let plan = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{plan}");
    for line in [
        "rule brute_force_login v1 (rules/auth/brute_force_login.rule:",
        "  kind      aggregation: count >= 10",
        "  window    sliding 5m (exact)",
        "  key       tenant_id, user.name",
        "  exception acme.mjohnson_test (tenant acme, until 2099-01-01, owner soc@acme.example): user.name == \"mjohnson\"",
    ] {
        assert!(plan.contains(line), "{line:?} not in\n{plan}");
    }
    assert_explains(
        "root_account_use",
        &[
            "  kind      single event, suppressed: the first match per key alerts",
            "  suppress  1h after each alert",
            "  key       tenant_id, cloud.account.id, event.action",
        ],
    );
    assert_explains(
        "success_after_failures",
        &[
            "  suppress  1h after each alert, for every group with the alert's user.name",
            "  key       tenant_id, source.ip, user.name",
            "-> exchange by (tenant, rule) -> suppression across groups (each epoch in event-time order) -> alert",
            "  quiet     per tenant_id, user.name in the alert stage: the end of its quiet period, forgotten once the tenant's alerts pass it",
        ],
    );
    assert_explains(
        "logon_from_new_country",
        &[
            "  kind      first seen: a key's first event alerts, and its first after 30d unseen",
            "  key       tenant_id, source.geo.country_iso_code, user.name",
            "  state     per key the time it was last seen; dropped 30d after it (the TTL)",
        ],
    );
    let out = vigil()
        .args(["explain", "no_such_rule", "--rules", "rules"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no rule `no_such_rule`"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `vigil explain RULE --rules rules` prints each of `lines`.
fn assert_explains(rule: &str, lines: &[&str]) {
    let out = vigil()
        .args(["explain", rule, "--rules", "rules"])
        .output()
        .unwrap();
    let plan = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{plan}");
    for line in lines {
        assert!(plan.contains(line), "{line:?} not in\n{plan}");
    }
}

#[test]
fn usage_errors_are_clear() {
    let out = vigil()
        .args(["run", "--rules", "rules", "--input", "/nonexistent.jsonl"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("failed to open input /nonexistent.jsonl")
    );
    let out = vigil()
        .args([
            "run",
            "--rules",
            "rules",
            "--input",
            "x",
            "--tenant",
            "Bad.Tenant",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid tenant id `Bad.Tenant`"));
    let out = vigil()
        .args([
            "run",
            "--rules",
            "rules",
            "--input",
            "x",
            "--lateness",
            "10",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = vigil().args(["check", "examples"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no rule files found in examples"));
    let out = vigil().arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for cmd in ["run", "check", "test"] {
        assert!(help.contains(cmd), "{help}");
    }
}

#[test]
fn a_running_engine_reloads_a_changed_list_and_keeps_it_when_the_new_file_is_bad() {
    use std::io::{BufRead, BufReader, Write};
    use std::sync::mpsc;
    use std::time::Duration;
    let dir = temp("lists");
    std::fs::write(
        dir.join("watched.rule"),
        "rule watched_user { title \"{user.name}\" severity low match user.name in list(watched) }\n",
    )
    .unwrap();
    let list = dir.join("watched.list");
    std::fs::write(&list, "kind strings\nalice\n").unwrap();
    let mut child = vigil()
        .args(["run", "--rules"])
        .arg(&dir)
        .args(["--input", "-", "--tenant", "acme"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let lines = |r: Box<dyn std::io::Read + Send>| {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(r).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        rx
    };
    let alerts = lines(Box::new(child.stdout.take().unwrap()));
    let logs = lines(Box::new(child.stderr.take().unwrap()));
    let wait = |rx: &mpsc::Receiver<String>, want: &str| {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(l) if l.contains(want) => return l,
                Ok(_) => {}
                Err(e) => panic!("no line with {want:?}: {e}"),
            }
        }
    };
    let mut stdin = child.stdin.take().unwrap();
    let mut send = |i: u32, user: &str| {
        writeln!(
            stdin,
            r#"{{"@timestamp":"2026-11-30T10:00:{i:02}Z","user":{{"name":"{user}"}},"event":{{"id":"e{i}"}}}}"#
        )
        .unwrap();
        stdin.flush().unwrap();
    };
    send(1, "alice");
    wait(&alerts, r#""event.id":"e1""#);
    std::fs::write(&list, "# alice left\nkind strings\nbob\n").unwrap();
    wait(&logs, "vigil: list watched reloaded from");
    send(2, "alice");
    send(3, "bob");
    wait(&alerts, r#""event.id":"e3""#);
    std::fs::write(&list, "kind cidrs\n10.0.0.0/8\n").unwrap();
    wait(
        &logs,
        "vigil: list watched not reloaded: it keeps its 1 entries",
    );
    send(4, "bob");
    wait(&alerts, r#""event.id":"e4""#);
    drop(stdin);
    assert!(child.wait().unwrap().success());
    // e2 (alice, after the reload) raised nothing.
    assert!(alerts.try_iter().all(|l| !l.contains(r#""event.id":"e2""#)));
    std::fs::remove_dir_all(&dir).unwrap();
}
