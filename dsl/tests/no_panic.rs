//! The parser and checker never panic: every prefix of every corpus file, and many seeded random
//! mutations of them, must come back as rules or diagnostics (rendering included).

use std::fs;
use std::path::Path;

fn corpus() -> Vec<String> {
    let mut out = Vec::new();
    for dir in ["valid", "invalid"] {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/corpus")
            .join(dir);
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|e| e == "rule") {
                out.push(fs::read_to_string(p).unwrap());
            }
        }
    }
    out
}

fn exercise(text: &str) {
    let src = vigil_dsl::SourceFile::new("fuzz.rule", text);
    if let Err(e) = vigil_dsl::compile(&[src]) {
        assert!(e.error_count() > 0);
        let _ = e.to_string();
    }
}

#[test]
fn every_prefix() {
    for text in corpus() {
        for (i, _) in text.char_indices() {
            exercise(&text[..i]);
        }
    }
}

#[test]
fn seeded_mutations() {
    const ALPHABET: &[&str] = &[
        "{",
        "}",
        "(",
        ")",
        "[",
        "]",
        "\"",
        "'",
        "/",
        "\\",
        "~",
        "=",
        "!",
        "<",
        ">",
        ",",
        ".",
        "\n",
        " ",
        "rule",
        "when",
        "count",
        "by",
        "within",
        "not",
        "and",
        "or",
        "in",
        "exists",
        "5m",
        "0",
        "-1",
        "é",
        "\u{0}",
        "{{",
        "}}",
        "ms",
        "99999999999999999999999",
        "@",
    ];
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for text in corpus() {
        for _ in 0..300 {
            let mut s: Vec<char> = text.chars().collect();
            for _ in 0..(1 + next() % 4) {
                let at = (next() as usize) % (s.len() + 1);
                match next() % 3 {
                    0 if at < s.len() => {
                        s.remove(at);
                    }
                    1 => {
                        let tok = ALPHABET[(next() as usize) % ALPHABET.len()];
                        for (k, c) in tok.chars().enumerate() {
                            s.insert(at + k, c);
                        }
                    }
                    _ if at < s.len() => {
                        let end = (at + (next() as usize) % 40).min(s.len());
                        s.drain(at..end);
                    }
                    _ => {}
                }
            }
            exercise(&s.into_iter().collect::<String>());
        }
    }
}
