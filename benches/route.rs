//! Per-request routing cost: location matching, server selection and URI normalisation.
//!
//! Location matching runs over one server with 50 locations (10 `=`, 20 prefixes, 5 `^~`,
//! 15 regexes, two of them nested) for representative URIs: an exact hit, a long prefix that
//! then tries every regex and falls back to the prefix (the worst common case), a `^~` hit that
//! skips the regexes, a regex hit with captures, a nested regex, a WebSocket path. Server
//! selection picks among 20 server blocks on one address by exact name, leading wildcard,
//! trailing wildcard, regex (the last of them) and the default (everything missed), plus the
//! uppercase Host that needs lowercasing. Normalisation compares the clean path (borrowed, no
//! allocation) with paths that need decoding and dot-segment work. The config is built once
//! through the real parser and builder, as a shard would have it.

use std::hint::black_box;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use criterion::{criterion_group, criterion_main, Criterion};
use ringproxy::config::build::{build, BuildOptions};
use ringproxy::config::model::HttpConf;
use ringproxy::config::parser::parse_str;
use ringproxy::route::{uri, Found, Router};

fn http(text: &str) -> HttpConf {
    let src = format!("events {{}}\nhttp {{\n{text}\n}}\n");
    let ast = parse_str("/bench.conf", &src, Path::new("/")).expect("parse");
    let opts = BuildOptions {
        prefix: PathBuf::from("/tmp"),
        conf_dir: PathBuf::from("/"),
        is_root: false,
    };
    build(&ast, &opts).expect("build").0.http.expect("http")
}

/// One server, 50 locations.
fn locations_conf() -> String {
    let mut s = String::from("server { listen 127.0.0.1:8080;\n");
    for i in 0..10 {
        s += &format!("location = /health/{i} {{ return 200 e{i}; }}\n");
    }
    for i in 0..18 {
        s += &format!("location /api/v{i}/ {{ return 200 p{i}; }}\n");
    }
    s += "location / { return 200 root; }\n";
    s += "location /ws/ { return 200 ws; }\n";
    for i in 0..5 {
        s += &format!("location ^~ /static{i}/ {{ return 200 s{i}; }}\n");
    }
    for i in 0..12 {
        s += &format!("location ~ ^/re{i}/(\\d+)/(?<name>[a-z]+)$ {{ return 200 r{i}; }}\n");
    }
    s += "location ~* \\.(png|jpg|gif)$ { return 200 img; }\n";
    s += "location ~ ^/app/ { return 200 app; location ~ \\.php$ { return 200 php; } }\n";
    s += "}\n";
    s
}

fn servers_conf() -> String {
    let mut s = String::new();
    for i in 0..5 {
        s += &format!("server {{ listen 127.0.0.1:80; server_name site{i}.example.com; }}\n");
    }
    for i in 0..5 {
        s += &format!("server {{ listen 127.0.0.1:80; server_name *.wild{i}.example.net; }}\n");
    }
    for i in 0..5 {
        s += &format!("server {{ listen 127.0.0.1:80; server_name www.trail{i}.*; }}\n");
    }
    for i in 0..5 {
        s += &format!(
            "server {{ listen 127.0.0.1:80; server_name ~^(?<user>[a-z]+)\\.rx{i}\\.test$; }}\n"
        );
    }
    s
}

fn locations(c: &mut Criterion) {
    let conf = http(&locations_conf());
    let router = Router::new(&conf);
    let mut group = c.benchmark_group("location");
    for (label, uri) in [
        ("exact", "/health/7"),
        ("prefix_after_all_regexes", "/api/v17/users/42/profile"),
        ("caret_tilde", "/static4/js/app.js"),
        ("regex_captures", "/re11/42/bob"),
        ("regex_nested", "/app/index.php"),
        ("websocket", "/ws/chat"),
    ] {
        assert!(
            matches!(router.find_location(0, uri), Found::Location(..)),
            "{uri}"
        );
        group.bench_function(label, |b| {
            b.iter(|| black_box(router.find_location(0, black_box(uri))))
        });
    }
    group.finish();
}

fn servers(c: &mut Criterion) {
    let conf = http(&servers_conf());
    let router = Router::new(&conf);
    let local: SocketAddr = "127.0.0.1:80".parse().unwrap();
    let mut group = c.benchmark_group("server");
    for (label, host) in [
        ("exact", "site4.example.com"),
        ("exact_uppercase", "Site4.Example.COM:80"),
        ("leading_wildcard", "a.b.wild4.example.net"),
        ("trailing_wildcard", "www.trail4.org"),
        ("regex_last", "bob.rx4.test"),
        ("default", "nothing.example.org"),
    ] {
        group.bench_function(label, |b| {
            b.iter(|| black_box(router.server_for(local, black_box(Some(host)))))
        });
    }
    group.finish();
}

fn normalize(c: &mut Criterion) {
    let mut group = c.benchmark_group("normalize");
    let mut buf = String::new();
    for (label, path) in [
        ("clean", "/api/v1/users/42/profile"),
        ("escaped", "/api/v1/users/%34%32/pro%66ile"),
        ("dots_and_slashes", "/api//v1/./users/x/../42/profile"),
    ] {
        group.bench_function(label, |b| {
            b.iter(|| {
                black_box(uri::normalize_into(black_box(path), true, &mut buf).map(|s| s.len()))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, locations, servers, normalize);
criterion_main!(benches);
