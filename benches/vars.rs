//! Variable and `map` evaluation per request: the `$connection_upgrade` map on a Chrome
//! WebSocket handshake (the WebSocket seed configs' hot path), `$proxy_add_x_forwarded_for`
//! (joins the client's X-Forwarded-For lines and formats the address), and a three-regex `map`
//! that falls through to its last regex. Each iteration builds a fresh `RequestVars`, as a
//! request does, so per-request map caching is included, not amortised.

use std::borrow::Cow;
use std::hint::black_box;
use std::time::SystemTime;

use criterion::{criterion_group, criterion_main, Criterion};
use ringproxy::config::template::Template;
use ringproxy::http::request::{parse_request, HeadLimits, Parsed};
use ringproxy::http::vars::{ConnFacts, RequestVars};

const HANDSHAKE: &[u8] = b"GET /chat/room?id=7 HTTP/1.1\r\nHost: ws.example.com\r\nConnection: Upgrade\r\n\
Pragma: no-cache\r\nCache-Control: no-cache\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) \
AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36\r\nUpgrade: websocket\r\n\
Origin: http://ws.example.com\r\nSec-WebSocket-Version: 13\r\nAccept-Encoding: gzip, deflate, br, zstd\r\n\
Accept-Language: en-US,en;q=0.9\r\nX-Forwarded-For: 203.0.113.7\r\nX-Forwarded-For: 198.51.100.2\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n";

const CONF: &str = r#"events {} http {
    map $http_upgrade $connection_upgrade { default upgrade; '' close; }
    map $http_user_agent $ua_class { ~*bot bot; ~*curl tool; ~Chrome/(\d+) "chrome$1"; default other; }
    server { listen 8080; }
}"#;

fn bench(c: &mut Criterion) {
    let dir = std::env::temp_dir();
    let cfg = ringproxy::config::load_str("bench.conf", CONF, &dir).unwrap();
    let maps = &cfg.http.as_ref().unwrap().maps;
    let conn = ConnFacts {
        remote: "192.0.2.1:5555".parse().unwrap(),
        local: "127.0.0.1:8080".parse().unwrap(),
        tls: None,
        server_name: "",
        connection: 1,
        requests: 1,
        hostname: "bench",
        pid: 1,
        underscores_in_headers: false,
        proxy_protocol: None,
    };
    let mut storage = [httparse::EMPTY_HEADER; 32];
    let Ok(Parsed::Complete(head, _)) =
        parse_request(HANDSHAKE, &mut storage, &HeadLimits::default())
    else {
        panic!("handshake parses");
    };
    let start = SystemTime::now();
    let mut run = |name: &str, t: &str| {
        let t = Template::parse(t).unwrap();
        let mut out = Vec::with_capacity(128);
        c.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                let mut v =
                    RequestVars::new(&head, &conn, maps, Cow::Borrowed("/chat/room"), start);
                v.render(black_box(&t), &mut out);
                black_box(&out);
            })
        });
    };
    run("vars/connection_upgrade_map", "$connection_upgrade");
    run(
        "vars/proxy_add_x_forwarded_for",
        "$proxy_add_x_forwarded_for",
    );
    run("vars/regex_map_third_match", "$ua_class");
    run("vars/http_upgrade", "$http_upgrade");
}

criterion_group!(benches, bench);
criterion_main!(benches);
