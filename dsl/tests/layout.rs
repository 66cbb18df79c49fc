//! `vigil fmt` changes only the layout: over the shipped rules, the corpus and random rules
//! written with random whitespace and comments, the formatted text parses to the same syntax
//! tree, keeps every comment, and formatting it again changes nothing. The shipped rules are
//! formatted.

use std::fs;
use std::path::{Path, PathBuf};

fn check_round_trip(name: &str, text: &str) -> String {
    match vigil_dsl::check_round_trip(text) {
        Ok(Some(out)) => out,
        Ok(None) => panic!("{name} does not parse"),
        Err(e) => panic!("{name}: {e}"),
    }
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files(&p, out);
        } else if p
            .extension()
            .is_some_and(|x| x == "rule" || x == "params" || x == "exceptions")
        {
            out.push(p);
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn shipped_rules_are_formatted() {
    let mut found = Vec::new();
    files(&root().join("rules"), &mut found);
    assert!(found.len() >= 25);
    for f in found {
        let text = fs::read_to_string(&f).unwrap();
        let out = check_round_trip(&f.display().to_string(), &text);
        assert!(
            out == text,
            "{} is not formatted: run `vigil fmt rules`\n{out}",
            f.display()
        );
    }
}

#[test]
fn the_corpus_round_trips() {
    let mut found = Vec::new();
    files(&root().join("dsl/tests/corpus"), &mut found);
    let mut formatted = 0;
    for f in found {
        let text = fs::read_to_string(&f).unwrap();
        if vigil_dsl::format(&text).is_ok() {
            let out = check_round_trip(&f.display().to_string(), &text);
            // Only whitespace and a list's trailing comma may change.
            let squeeze = |s: &str| s.split_whitespace().collect::<String>().replace(",]", "]");
            assert_eq!(squeeze(&out), squeeze(&text));
            formatted += 1;
        }
    }
    assert!(formatted >= 10, "{formatted}");
}

/// A small seeded generator (xorshift), so that a failure names its seed.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len())]
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

const FIELDS: &[&str] = &[
    "user.name",
    "source.ip",
    "event.action",
    "host.name",
    "a.b_c",
];

fn comparison(g: &mut Gen) -> Vec<String> {
    let f = g.pick(FIELDS).to_owned();
    let rest: Vec<&str> = match g.below(12) {
        0 => vec!["==", "\"x y\""],
        1 => vec!["!=", "-1.5"],
        2 => vec!["=~", "'Admin'"],
        3 => vec!["in", "[", "\"a\"", ",", "\"b\\\"\"", ",", "]"],
        4 => vec!["not", "in~", "list", "(", "admins", ")"],
        5 => vec!["cidr", "\"10.0.0.0/8\""],
        6 => vec!["matches", "/a\\/b#c/i"],
        7 => vec!["contains~", "\"#not a comment\""],
        8 => vec!["exists"],
        9 => vec![">=", "$limit"],
        10 => vec!["cidr", "[", "\"::1/128\"", "]"],
        _ => vec!["<", "3"],
    };
    std::iter::once(f)
        .chain(rest.into_iter().map(str::to_owned))
        .collect()
}

fn expr(g: &mut Gen, depth: usize) -> Vec<String> {
    if depth == 0 || g.chance(35) {
        return comparison(g);
    }
    match g.below(4) {
        0 => {
            let mut v = vec!["not".to_owned()];
            v.extend(expr(g, depth - 1));
            v
        }
        1 => {
            let mut v = vec!["(".to_owned()];
            v.extend(expr(g, depth - 1));
            v.push(")".to_owned());
            v
        }
        _ => {
            let mut v = expr(g, depth - 1);
            for _ in 0..=g.below(3) {
                v.push(g.pick(&["and", "or"]).to_owned());
                v.extend(expr(g, depth - 1));
            }
            v
        }
    }
}

/// The tokens of `s`, split at spaces outside quotes.
fn words(s: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut quote = None;
    for c in s.chars() {
        match (c, quote) {
            (' ', None) => out.push(String::new()),
            ('"' | '\'', None) => quote = Some(c),
            (q, Some(open)) if q == open => quote = None,
            _ => {}
        }
        if c != ' ' || quote.is_some() {
            out.last_mut().unwrap().push(c);
        }
    }
    out.retain(|w| !w.is_empty());
    out
}

fn rule(g: &mut Gen, n: usize) -> Vec<String> {
    let mut t = words(&format!("rule r{n} {{"));
    let mut clauses: Vec<Vec<String>> = Vec::new();
    let meta = [
        "version 3",
        "title \"Hits on {user.name}\"",
        "severity high",
        "author \"me\"",
        "references [ \"https://x\" , ]",
        "false_positives [ \"a\" ]",
        "risk_score $score",
        "tags [ attack.t1110 , risk ]",
        "tags solo",
        "description 'd'",
        "param limit = 10",
        "param window = 5m",
        "param names = list ( admins )",
    ];
    for _ in 0..g.below(6) {
        clauses.push(words(g.pick(&meta)));
    }
    if g.chance(30) {
        let mut c = words("severity critical if");
        c.extend(expr(g, 2));
        clauses.push(c);
    }
    let mut m = vec!["match".to_owned()];
    m.extend(expr(g, 3));
    clauses.push(m);
    match g.below(4) {
        0 => clauses.push(words(g.pick(&[
            "when count >= 10 by user.name , source.ip within 5m",
            "when distinct count of host.name between 2 and $limit by user.name within tumbling 1h",
            "when sum of a.b_c > 1 within hopping 1h every 10m",
            "when count >= 1 within session 5m max 1h",
            "when first seen source.ip , host.name by user.name within 30d",
        ]))),
        1 => {
            let mut c = words("sequence by user.name within 10m {");
            for (i, name) in ["first", "second_step"].iter().enumerate() {
                let absent = i == 1 && g.chance(30);
                if absent {
                    c.push("not".to_owned());
                }
                c.extend([name.to_string(), ":".to_owned()]);
                c.extend(expr(g, 2));
                if !absent && g.chance(30) {
                    c.extend(words("runs 5"));
                }
            }
            if g.chance(40) {
                c.extend(words("until :"));
                c.extend(expr(g, 1));
            }
            c.push("}".to_owned());
            clauses.push(c);
        }
        _ => {}
    }
    if g.chance(40) {
        clauses.push(words(
            g.pick(&["suppress for 1h by user.name", "suppress 10m"]),
        ));
    }
    if g.chance(20) {
        clauses.push(words("from alerts of a , b.c"));
    }
    // Clause order is the author's: the formatter must keep it.
    for _ in 0..g.below(3) {
        let (i, j) = (g.below(clauses.len()), g.below(clauses.len()));
        clauses.swap(i, j);
    }
    t.extend(clauses.into_iter().flatten());
    t.push("}".to_owned());
    t
}

fn item(g: &mut Gen, n: usize) -> Vec<String> {
    match g.below(6) {
        0 => {
            let mut t = words(&format!(
                "exception e{n} {{ rule r0 tenant acme owner \"o\" expires 2027-01-31 reason 'r' match"
            ));
            t.extend(expr(g, 2));
            t.push("}".to_owned());
            t
        }
        1 => words(&format!(
            "params p{n} {{ rule r0 tenant acme limit = 20 window = 10m names = list ( x ) }}"
        )),
        _ => rule(g, n),
    }
}

/// Random rule files: random items, each token followed by random whitespace or a comment
/// (each comment numbered, so that losing or doubling one shows).
fn random_file(g: &mut Gen) -> (String, usize) {
    let mut text = String::new();
    let mut comments = 0;
    for n in 0..=g.below(3) {
        for tok in item(g, n) {
            text.push_str(&tok);
            match g.below(20) {
                0 => text.push('\n'),
                1 => text.push_str("\n\n\n"),
                2 => text.push('\t'),
                3 => {
                    comments += 1;
                    text.push_str(&format!(" # c{comments} ,{{ \"\n"));
                }
                4 => {
                    comments += 1;
                    text.push_str(&format!("\n  // c{comments} }}\n"));
                }
                _ => text.push_str(g.pick(&[" ", "  ", " \n   "])),
            }
        }
        text.push('\n');
    }
    (text, comments)
}

#[test]
fn random_rules_round_trip_with_every_comment() {
    for seed in 1..=1000u64 {
        let mut g = Gen(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let (text, comments) = random_file(&mut g);
        let out = check_round_trip(&format!("seed {seed}"), &text);
        for c in 1..=comments {
            let marker = format!("c{c} ");
            assert_eq!(
                out.matches(&marker).count(),
                1,
                "seed {seed}: comment {c} lost or doubled:\n{text}\n---\n{out}"
            );
        }
        assert!(
            out.lines()
                .filter(|l| !l.starts_with('#') && !l.starts_with("//"))
                .all(|l| !l.starts_with(' ')
                    || !l.trim_start().starts_with("rule ")
                    || l.starts_with("    ")),
            "seed {seed}"
        );
    }
}
