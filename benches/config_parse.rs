//! Configuration loading cost: lexing alone, parsing to the AST (with `include mime.types`), and
//! the whole load (AST + typed model + checks) of the reference configuration
//! `config/ringproxy.conf`, and of seed 001 (a small real-world WebSocket config). Reload time
//! is dominated by the full load, so this is the number to watch.

use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};
use ringproxy::config::{self, build, lexer::Lexer, parser};

fn lex_all(src: &[u8]) -> usize {
    let mut lx = Lexer::new(src);
    let mut n = 0;
    loop {
        match lx.next_statement() {
            Ok(st) if st.end == config::lexer::End::Eof => return n,
            Ok(st) => n += st.words.len(),
            Err(_) => return n,
        }
    }
}

fn bench(c: &mut Criterion) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let reference = std::fs::read_to_string(dir.join("ringproxy.conf")).unwrap();
    let seed = "events {}\nhttp {\n    map $http_upgrade $connection_upgrade {\n        default upgrade;\n        ''      close;\n    }\n    keepalive_timeout 75s;\n    upstream backend {\n        server 127.0.0.1:9001;\n    }\n    server {\n        listen 8080;\n        location /chat/ {\n            proxy_pass http://backend;\n            proxy_http_version 1.1;\n            proxy_set_header Upgrade $http_upgrade;\n            proxy_set_header Connection $connection_upgrade;\n        }\n    }\n}\n";
    let opts = build::BuildOptions {
        prefix: dir.parent().unwrap().to_path_buf(),
        conf_dir: dir.clone(),
        is_root: false,
    };
    let name = dir.join("ringproxy.conf");
    let name = name.to_str().unwrap();

    c.bench_function("lex reference", |b| {
        b.iter(|| lex_all(reference.as_bytes()))
    });
    c.bench_function("parse reference (AST + include)", |b| {
        b.iter(|| parser::parse_str(name, &reference, &dir).unwrap())
    });
    c.bench_function("load reference (AST + model)", |b| {
        b.iter(|| {
            let ast = parser::parse_str(name, &reference, &dir).unwrap();
            build::build(&ast, &opts).unwrap()
        })
    });
    c.bench_function("load seed 001", |b| {
        b.iter(|| {
            let ast = parser::parse_str("/seed.conf", seed, &dir).unwrap();
            build::build(&ast, &opts).unwrap()
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
