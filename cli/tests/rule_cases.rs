//! The rule test cases (`rules/**/NAME.tests/*.json` and `cli/tests/semantics/`) run through the
//! `vigil test` binary, exactly as a detection engineer runs them; and the harness itself fails
//! when a case is wrong.

use std::path::Path;
use std::process::Command;

fn vigil() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vigil"));
    c.current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."));
    c
}

#[test]
fn shipped_rule_cases_pass() {
    let out = vigil().args(["test", "rules"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains(" passed, 0 failed"), "{err}");
    assert!(!err.contains("FAILED"), "{err}");
}

#[test]
fn window_semantics_cases_pass() {
    let out = vigil()
        .args(["test", "cli/tests/semantics"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("4 passed, 0 failed"), "{err}");
}

#[test]
fn a_wrong_expectation_fails_with_a_readable_diff() {
    let dir = std::env::temp_dir().join(format!("vigil-cases-{}", std::process::id()));
    let tests = dir.join("r.tests");
    std::fs::create_dir_all(&tests).unwrap();
    std::fs::write(
        dir.join("r.rule"),
        "rule t.one { title \"x\" severity low match user.name == \"a\" }\n",
    )
    .unwrap();
    std::fs::write(
        tests.join("wrong.json"),
        r#"{"description": "expects two alerts where one fires",
            "input": [{"@timestamp": "2026-11-30T10:00:00Z", "tenant_id": "acme", "user": {"name": "a"}, "event": {"id": "e1"}}],
            "expect": [{"group": {"event.id": "e1"}}, {"group": {"event.id": "e2"}}],
            "rejects": {"late": 1}}"#,
    )
    .unwrap();
    let out = vigil().arg("test").arg(&dir).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("FAILED"), "{err}");
    assert!(
        err.contains(r#"missing alert matching {"group":{"event.id":"e2"}}"#),
        "{err}"
    );
    assert!(
        err.contains(r#"rejects: expected {"late": 1}, got {}"#),
        "{err}"
    );
    assert!(err.contains("0 passed, 1 failed"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
