//! What a reload costs: reading and checking a configuration (`config::load`: files, AST, typed
//! model) plus building one shard's proxy state from it (`ShardProxy::new`: router, balancers,
//! TLS, access logs), which the main thread does once to check the configuration and each shard
//! does once to take it. Seed 001 (a small real-world WebSocket configuration) beside a generated
//! configuration with 10,000 locations. Nothing here runs per message: a reload touches no tunnel.

use std::fmt::Write;

use criterion::{criterion_group, criterion_main, Criterion};
use ringproxy::config::{self, LoadOptions};
use ringproxy::proxy::ShardProxy;

fn write_prefix(dir: &std::path::Path, name: &str, text: &str) -> LoadOptions {
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    std::fs::write(dir.join(name), text).unwrap();
    LoadOptions {
        file: dir.join(name),
        prefix: dir.to_path_buf(),
        params: None,
    }
}

fn many_locations(n: usize) -> String {
    let mut s = String::from(
        "events {}\nhttp {\n upstream backend { server 127.0.0.1:9001; server 127.0.0.1:9002; }\n server {\n  listen 127.0.0.1:8080;\n",
    );
    for i in 0..n {
        let _ = writeln!(
            s,
            "  location /room{i}/ {{ proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection upgrade; }}"
        );
    }
    s.push_str(" }\n}\n");
    s
}

fn bench(c: &mut Criterion) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let seed =
        std::fs::read_to_string(root.join("tests/data/seed-configs/001-chat-map.conf")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("seed 001", write_prefix(dir.path(), "seed.conf", &seed)),
        (
            "10,000 locations",
            write_prefix(dir.path(), "big.conf", &many_locations(10_000)),
        ),
    ];
    for (name, opts) in &cases {
        c.bench_function(&format!("reload check: load + shard state, {name}"), |b| {
            b.iter(|| {
                let loaded = config::load(opts).unwrap();
                ShardProxy::new(&std::sync::Arc::new(loaded.config)).unwrap()
            })
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
