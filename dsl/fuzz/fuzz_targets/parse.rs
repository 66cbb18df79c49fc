//! Any bytes: compiling never panics and an error always renders; a file that parses keeps the
//! formatter's promises (`vigil_dsl::check_round_trip`).

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let src = vigil_dsl::SourceFile::new("fuzz.rule", text);
    if let Err(e) = vigil_dsl::compile(&[src]) {
        assert!(e.error_count() > 0);
        let _ = e.to_string();
    }
    if let Err(e) = vigil_dsl::check_round_trip(text) {
        panic!("{e}");
    }
});
