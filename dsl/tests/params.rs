//! Per-tenant parameters: a parameter set compiles its rule once more for one tenant, the
//! defaults' plan keeps running (with the same identity) for every other tenant.

use vigil_dsl::{RuleKind, RulePlan, RuleSet, SourceFile, TenantScope};

const RULE: &str = r#"
rule bf {
    param threshold = 10
    param window = 5m
    param admins = list(admins)
    title "Brute force against {user.name}"
    description "{$threshold} failures within {$window}"
    severity high
    match event.outcome == "failure" and user.name not in list($admins)
    when count >= $threshold by user.name within $window
}

exception acme.kiosk {
    rule bf
    tenant acme
    owner "soc@acme.example"
    expires 2099-01-01
    reason "kiosk"
    match user.name == "kiosk"
}
"#;

fn compile(params: &[&str]) -> RuleSet {
    let mut files = vec![
        SourceFile::new("bf.rule", RULE),
        SourceFile::new("admins.list", "kind strings\nroot\nadministrator\n"),
    ];
    for (i, p) in params.iter().enumerate() {
        files.push(SourceFile::new(format!("{i}.params"), *p));
    }
    match vigil_dsl::compile(&files) {
        Ok((set, _)) => set,
        Err(e) => panic!("{e}"),
    }
}

fn window(p: &RulePlan) -> (f64, u64) {
    match &p.kind {
        RuleKind::Aggregate(a) => (
            a.threshold
                .to_string()
                .trim_start_matches(">= ")
                .parse()
                .unwrap(),
            a.window_ms,
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_parameter_set_adds_a_plan_for_its_tenant_and_keeps_the_defaults_identity() {
    let plain = compile(&[]);
    assert_eq!(plain.rules.len(), 1);
    assert_eq!(plain.rules[0].tenants, TenantScope::All);
    assert_eq!(window(&plain.rules[0]), (10.0, 300_000));

    let tuned = compile(&[
        "params acme.bf { rule bf tenant acme threshold = 20 window = 10m }",
        "params globex.bf { rule bf tenant globex threshold = 10 }",
    ]);
    let [defaults, acme, globex] = &tuned.rules[..] else {
        panic!("{:?}", tuned.rules.len())
    };
    // The defaults run for everyone else, unchanged: same plan, so the same state.
    assert_eq!(
        defaults.tenants,
        TenantScope::AllBut(vec!["acme".into(), "globex".into()])
    );
    assert_eq!(defaults.plan_hash, plain.rules[0].plan_hash);
    assert!(defaults.tenants.admits("initech") && !defaults.tenants.admits("acme"));
    // Each tenant's plan has its values, its own identity (even with the defaults' values),
    // the rule's id and version, and the rule's exceptions.
    assert_eq!(acme.tenants, TenantScope::Only("acme".into()));
    assert_eq!(window(acme), (20.0, 600_000));
    assert_eq!(
        acme.description.as_ref().unwrap().source(),
        "20 failures within 10m"
    );
    assert_eq!(window(globex), (10.0, 300_000));
    assert_ne!(globex.plan_hash, defaults.plan_hash);
    assert_ne!(acme.plan_hash, globex.plan_hash);
    for p in [defaults, acme, globex] {
        assert_eq!((p.id.as_str(), p.version), ("bf", 1));
        assert_eq!(p.exceptions.len(), 1, "{}", p.plan_hash);
    }
    assert!(
        acme.params_origin
            .as_deref()
            .unwrap()
            .starts_with("acme.bf (0.params:1)")
    );
    let shown: Vec<String> = acme
        .params
        .iter()
        .map(|(n, v)| format!("{n} = {v}"))
        .collect();
    assert_eq!(
        shown,
        ["threshold = 20", "window = 10m", "admins = list(admins)"]
    );
}

#[test]
fn parameter_sets_are_checked_against_their_rule() {
    let bad = |params: &str| {
        let files = [
            SourceFile::new("bf.rule", RULE),
            SourceFile::new("admins.list", "kind strings\nroot\n"),
            SourceFile::new("t.params", params),
        ];
        vigil_dsl::compile(&files).unwrap_err().to_string()
    };
    let e = bad("params x { rule bf tenant acme admins = list(nope) }");
    assert!(
        e.contains("unknown list `nope`") || e.contains("no list `nope`"),
        "{e}"
    );
    assert!(
        e.contains("with tenant acme's parameters, set `x` at t.params:1"),
        "{e}"
    );
    let e = bad("params x { rule bf tenant acme threshold = \"ten\" }");
    assert!(e.contains("`threshold` is a number, not a string"), "{e}");
    let e = bad("params x { rule bf tenant acme windw = 1m }");
    assert!(
        e.contains("rule `bf` has no parameter `windw`") && e.contains("did you mean `window`?"),
        "{e}"
    );
    let e = bad("params x { rule bf tenant acme }\nparams y { rule bf tenant acme threshold = 3 }");
    assert!(
        e.contains("tenant `acme` already has parameters for `bf`"),
        "{e}"
    );
    let e = bad("params x { tenant acme threshold = 3 }");
    assert!(e.contains("parameter set `x` has no `rule`"), "{e}");
}
