//! The parser and checker corpus: every `valid/*.rule` must compile without diagnostics, and
//! every `invalid/*.rule` must produce exactly the rendered diagnostics in the `.expected` file
//! beside it (positions, messages, carets and hints). Every file compiles with the lists in
//! `lists/`. `VIGIL_BLESS=1 cargo test -p vigil-dsl`
//! rewrites the expectations; review the diff before committing.

use std::fs;
use std::path::Path;

fn rule_files(dir: &str) -> Vec<std::path::PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(dir);
    let mut files: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rule"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no corpus files in {}", dir.display());
    files
}

fn source(path: &Path) -> vigil_dsl::SourceFile {
    let name = format!("{}", path.file_name().unwrap().to_string_lossy());
    vigil_dsl::SourceFile::new(name, fs::read_to_string(path).unwrap())
}

/// One corpus file with the corpus lists (`tests/corpus/lists/*.list`), which every file may
/// name.
fn with_lists(path: &Path) -> Vec<vigil_dsl::SourceFile> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/lists");
    let mut files: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut out: Vec<_> = files.iter().map(|p| source(p)).collect();
    out.push(source(path));
    out
}

#[test]
fn valid_corpus_compiles_cleanly() {
    for path in rule_files("valid") {
        match vigil_dsl::compile(&with_lists(&path)) {
            Ok((rules, warnings)) => {
                assert!(!rules.rules.is_empty(), "{}", path.display());
                assert!(warnings.is_empty(), "{}: {:?}", path.display(), warnings);
            }
            Err(e) => panic!("{} should compile:\n{e}", path.display()),
        }
    }
}

#[test]
fn invalid_corpus_matches_expected_diagnostics() {
    let bless = std::env::var_os("VIGIL_BLESS").is_some();
    let mut failures = Vec::new();
    for path in rule_files("invalid") {
        let rendered = match vigil_dsl::compile(&with_lists(&path)) {
            Ok(_) => format!("{} unexpectedly compiled", path.display()),
            Err(e) => e.to_string(),
        };
        let expected_path = path.with_extension("expected");
        if bless {
            fs::write(&expected_path, &rendered).unwrap();
            continue;
        }
        let expected = fs::read_to_string(&expected_path).unwrap_or_default();
        if expected != rendered {
            failures.push(format!(
                "{}:\n--- expected\n{expected}\n--- actual\n{rendered}",
                path.display()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
