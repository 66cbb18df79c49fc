//! Evaluation semantics of compiled match expressions: arrays match on any element, absent
//! fields fail every test but `!=`/`not`, strings compare case-sensitively unless the operator
//! says otherwise, and types never coerce.

use vigil_dsl::{EventView, FieldId, RuleSet, SourceFile, ValueRef};

/// An event as (path, values) pairs.
struct Ev<'a> {
    set: &'a RuleSet,
    fields: Vec<(&'a str, Vec<ValueRef<'a>>)>,
}

impl EventView for Ev<'_> {
    fn any_value(&self, field: FieldId, f: &mut dyn FnMut(ValueRef<'_>) -> bool) -> bool {
        let path = self.set.path(field);
        self.fields
            .iter()
            .filter(|(p, _)| *p == path)
            .flat_map(|(_, vs)| vs.iter())
            .any(|v| f(*v))
    }
}

fn rule(expr: &str) -> RuleSet {
    let src = format!("rule t {{ title \"t\" severity low match {expr} }}");
    match vigil_dsl::compile(&[SourceFile::new("t.rule", src)]) {
        Ok((set, _)) => set,
        Err(e) => panic!("{expr}: {e}"),
    }
}

fn matches(expr: &str, fields: Vec<(&str, Vec<ValueRef<'_>>)>) -> bool {
    let set = rule(expr);
    let ev = Ev { set: &set, fields };
    set.rules[0].filter.eval(&ev)
}

use ValueRef::{Bool, Num, Str};

#[test]
fn arrays_match_on_any_element() {
    let cat = || vec![("event.category", vec![Str("iam"), Str("authentication")])];
    assert!(matches(r#"event.category == "authentication""#, cat()));
    assert!(matches(r#"event.category in ["network", "iam"]"#, cat()));
    assert!(!matches(r#"event.category == "process""#, cat()));
    // `!=` is the negation of `==`: no element may equal the value.
    assert!(!matches(r#"event.category != "iam""#, cat()));
    assert!(matches(r#"event.category != "process""#, cat()));
}

#[test]
fn absent_fields() {
    let none = Vec::new;
    assert!(!matches(r#"user.name == "a""#, none()));
    assert!(!matches(r#"user.name contains "a""#, none()));
    assert!(!matches("user.name exists", none()));
    assert!(matches(r#"user.name != "a""#, none()));
    assert!(matches(r#"user.name not in ["a"]"#, none()));
    assert!(matches("not user.name exists", none()));
    // `null` is present.
    assert!(matches(
        "user.name exists",
        vec![("user.name", vec![ValueRef::Null])]
    ));
}

#[test]
fn case_sensitivity_is_explicit() {
    let name = || vec![("process.name", vec![Str("PowerShell.exe")])];
    assert!(!matches(r#"process.name == "powershell.exe""#, name()));
    assert!(matches(r#"process.name =~ "powershell.exe""#, name()));
    assert!(!matches(r#"process.name !~ "POWERSHELL.EXE""#, name()));
    assert!(matches(
        r#"process.name in~ ["cmd.exe", "POWERSHELL.exe"]"#,
        name()
    ));
    assert!(!matches(r#"process.name startswith "power""#, name()));
    assert!(matches(r#"process.name startswith~ "power""#, name()));
    assert!(matches(r#"process.name endswith~ ".EXE""#, name()));
    assert!(matches(r#"process.name contains~ "SHELL""#, name()));
    assert!(matches(r#"process.name matches /^power/i"#, name()));
    assert!(!matches(r#"process.name matches /^power/"#, name()));
}

#[test]
fn numbers_booleans_and_no_coercion() {
    let port = |v| vec![("source.port", vec![v])];
    assert!(matches("source.port == 22", port(Num(22.0))));
    assert!(!matches("source.port == 22", port(Str("22"))));
    assert!(matches(
        "source.port >= 1024 and source.port < 2048",
        port(Num(1024.0))
    ));
    assert!(!matches("source.port > 1024", port(Num(1024.0))));
    assert!(matches("source.port in [22, 2222]", port(Num(2222.0))));
    let trusted = |v| vec![("process.code_signature.trusted", vec![v])];
    assert!(matches(
        "process.code_signature.trusted == false",
        trusted(Bool(false))
    ));
    assert!(!matches(
        "process.code_signature.trusted == false",
        trusted(Str("false"))
    ));
}

#[test]
fn ip_equality_uses_canonical_form_and_cidr_parses_values() {
    let ip = |v| vec![("source.ip", vec![Str(v)])];
    // The literal is canonicalized; event values are canonical already (the normalizer's job).
    assert!(matches(
        r#"source.ip == "2001:DB8:0:0::1""#,
        ip("2001:db8::1")
    ));
    assert!(matches(r#"source.ip cidr "10.0.0.0/8""#, ip("10.200.3.4")));
    assert!(!matches(r#"source.ip cidr "10.0.0.0/8""#, ip("not an ip")));
    assert!(matches(
        r#"not source.ip cidr ["10.0.0.0/8", "192.168.0.0/16"]"#,
        ip("8.8.8.8")
    ));
}

#[test]
fn precedence_not_and_or() {
    let f = || vec![("user.name", vec![Str("a")]), ("host.name", vec![Str("h")])];
    // `or` binds loosest: a or (b and c).
    assert!(matches(
        r#"user.name == "a" or host.name == "x" and host.name == "y""#,
        f()
    ));
    assert!(!matches(
        r#"(user.name == "a" or host.name == "x") and host.name == "y""#,
        f()
    ));
    assert!(!matches(
        r#"not user.name == "a" and host.name == "h""#,
        f()
    ));
    assert!(matches(
        r#"not (user.name == "b" and host.name == "h")"#,
        f()
    ));
}

#[test]
fn the_plan_hash_changes_with_everything_the_rule_does() {
    // A rule is "unchanged" (keeps its window state) only when its plan hash is equal: every
    // change of meaning must change it, including regex flags.
    let hash = |expr: &str| rule(expr).rules[0].plan_hash.clone();
    let base = hash("process.command_line matches /-enc/");
    assert_ne!(base, hash("process.command_line matches /-enc/i"));
    assert_ne!(base, hash("process.command_line matches /-e/"));
    assert_ne!(base, hash("process.name matches /-enc/"));
    assert_eq!(base, hash("process.command_line   matches  /-enc/"));
    let seq = |body: &str| {
        let src = format!(
            "rule s {{ title \"t\" severity low sequence by user.name within 5m {{ {body} }} }}"
        );
        vigil_dsl::compile(&[SourceFile::new("s.rule", src)])
            .unwrap()
            .0
            .rules[0]
            .plan_hash
            .clone()
    };
    let a = seq("a: event.outcome == \"failure\" b: event.outcome == \"success\"");
    assert_ne!(
        a,
        seq("a: event.outcome == \"failure\" runs 2 b: event.outcome == \"success\"")
    );
    assert_ne!(
        a,
        seq("a: event.outcome == \"failure\" not b: event.outcome == \"success\"")
    );
    assert_ne!(
        a,
        seq("b: event.outcome == \"failure\" a: event.outcome == \"success\"")
    );
}
