//! Building the upstream request head (`proxy::request::build_request`): a realistic Chrome
//! WebSocket handshake through seed 000's `location /websocket` (Host, X-Real-IP,
//! X-Forwarded-For, Upgrade, Connection set; HTTP/1.1) and a plain GET through a default
//! `proxy_pass` location (nginx's defaults only). Includes creating the request's variables,
//! as every request does; the head is parsed once outside the loop.

use std::borrow::Cow;
use std::hint::black_box;
use std::time::SystemTime;

use criterion::{criterion_group, criterion_main, Criterion};
use ringproxy::http::request::{parse_request, HeadLimits, Parsed};
use ringproxy::http::vars::{ConnFacts, RequestVars};
use ringproxy::proxy::request::{build_request, UpstreamBody};

const HANDSHAKE: &[u8] = b"GET /websocket?room=1 HTTP/1.1\r\nHost: ws.example.com\r\nConnection: Upgrade\r\n\
Pragma: no-cache\r\nCache-Control: no-cache\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) \
AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36\r\nUpgrade: websocket\r\n\
Origin: http://ws.example.com\r\nSec-WebSocket-Version: 13\r\nAccept-Encoding: gzip, deflate, br, zstd\r\n\
Accept-Language: en-US,en;q=0.9\r\nCookie: session=abc123; theme=dark\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n";

const GET: &[u8] =
    b"GET /api/items?page=2 HTTP/1.1\r\nHost: ws.example.com\r\nUser-Agent: curl/7.88.1\r\n\
Accept: */*\r\nAccept-Encoding: gzip\r\n\r\n";

const CONF: &str = r#"events {} http {
    upstream backend { server 127.0.0.1:9001; }
    server { listen 8080;
        location /websocket {
            proxy_pass http://backend;
            proxy_set_header       Host $host;
            proxy_set_header  X-Real-IP  $remote_addr;
            proxy_set_header  X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
        }
        location /api { proxy_pass http://backend; }
    }
}"#;

fn bench(c: &mut Criterion) {
    let dir = std::env::temp_dir();
    let cfg = ringproxy::config::load_str("bench.conf", CONF, &dir).unwrap();
    let http = cfg.http.as_ref().unwrap();
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
    let start = SystemTime::now();
    for (name, req, loc_index, uri) in [
        (
            "header_rewrite/chrome_ws_seed000",
            HANDSHAKE,
            0,
            "/websocket",
        ),
        ("header_rewrite/plain_get_defaults", GET, 1, "/api/items"),
    ] {
        let loc = &http.servers[0].locations[loc_index];
        let pass = loc.conf.proxy_pass.as_ref().unwrap();
        let mut storage = [httparse::EMPTY_HEADER; 32];
        let Ok(Parsed::Complete(head, _)) =
            parse_request(req, &mut storage, &HeadLimits::default())
        else {
            panic!("request parses");
        };
        let mut out = Vec::with_capacity(1024);
        c.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                let mut v = RequestVars::new(&head, &conn, &http.maps, Cow::Borrowed(uri), start);
                build_request(
                    &mut v,
                    &loc.conf,
                    pass,
                    &loc.matcher,
                    UpstreamBody::None,
                    &mut out,
                )
                .unwrap();
                black_box(&out);
            })
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
