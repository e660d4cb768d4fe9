//! Arbitrary bytes through the configuration lexer, parser and model builder: any input must
//! give a configuration or an error, never a panic. `include` is resolved against an empty
//! directory so the fuzzer cannot reach real files.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringproxy::config::{build, lexer::Lexer, parser};

fuzz_target!(|data: &[u8]| {
    let mut lx = Lexer::new(data);
    for _ in 0..data.len() + 1 {
        match lx.next_statement() {
            Ok(st) if st.end == ringproxy::config::lexer::End::Eof => break,
            Ok(_) => {}
            Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(data);
    let empty = std::path::Path::new("/nonexistent-ringproxy-fuzz");
    if let Ok(ast) = parser::parse_str("/fuzz.conf", &text, empty) {
        let opts = build::BuildOptions {
            prefix: empty.to_path_buf(),
            conf_dir: empty.to_path_buf(),
            is_root: false,
        };
        let _ = build::build(&ast, &opts);
    }
});
