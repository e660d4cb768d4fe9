//! The seed configurations, unchanged but for ports, in front of the test echo backend
//! (tests/common/echo.rs): WebSocket echo of small, 64 KiB and 1 MiB messages, ping/pong and
//! the close handshake, a pipelined first frame, plain GET/POST (length and chunked) through
//! the same locations, and the headers the backend receives.

mod common;

use std::time::Duration;

use common::{big, Echo, Proxy};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

const T: Duration = Duration::from_secs(20);

async fn ws_session(url: &str) {
    let (mut ws, resp) = tokio::time::timeout(T, tokio_tungstenite::connect_async(url))
        .await
        .expect("handshake in time")
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    assert_eq!(resp.status(), 101);
    let messages = [
        Message::text("hello through ringproxy"),
        Message::binary(big(64 * 1024)),
        Message::binary(big(1024 * 1024)),
    ];
    common::echo_each(&mut ws, messages, url).await;
    ws.send(Message::Ping(b"p1".to_vec().into())).await.unwrap();
    let pong = tokio::time::timeout(T, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(pong, Message::Pong(b"p1".to_vec().into()));
    ws.close(None).await.unwrap();
    // The backend's close frame comes back (or the stream ends).
    match tokio::time::timeout(T, ws.next())
        .await
        .expect("close in time")
    {
        Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {}
        Some(Ok(other)) => panic!("unexpected {other:?}"),
    }
}

/// Sends one raw HTTP request and reads the whole response (the proxy closes or the length
/// says so): enough for tests that read a single response.
async fn http(port: u16, raw: &[u8]) -> String {
    http_until(port, raw, false).await
}

/// Like `http`, but with `to_close` reads until the proxy closes (several responses).
async fn http_until(port: u16, raw: &[u8], to_close: bool) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(raw).await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        // A response that ends with the close ends with a FIN: a reset could destroy its tail.
        let n = tokio::time::timeout(T, s.read(&mut buf))
            .await
            .expect("response in time")
            .expect("an end of stream, not a reset");
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&out);
        if to_close {
            continue;
        }
        if let Some(end) = text.find("\r\n\r\n") {
            let head = &text[..end];
            if let Some(len) = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
            {
                if out.len() >= end + 4 + len.trim().parse::<usize>().unwrap() {
                    break;
                }
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn start_seed(name: &str) -> (Echo, Echo, Proxy) {
    let (a, b) = (Echo::start(), Echo::start());
    let port = common::free_port();
    let conf = common::seed(name, port, a.addr, b.addr);
    let proxy = Proxy::start(&conf, port, "", &[]);
    (a, b, proxy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_echo_through_every_plain_seed() {
    for (name, path) in [
        ("000-websocket-location.conf", "/websocket"),
        ("001-chat-map.conf", "/chat/room1"),
        ("002-cluster.conf", "/"),
        ("004-hash-consistent.conf", "/socket"),
    ] {
        let (_a, _b, proxy) = start_seed(name);
        ws_session(&format!("ws://127.0.0.1:{}{path}", proxy.port)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_first_frame_is_held_until_the_101() {
    let (_a, _b, proxy) = start_seed("000-websocket-location.conf");
    let mut s = TcpStream::connect(("127.0.0.1", proxy.port)).await.unwrap();
    // Handshake and a masked text frame "hi" in one write.
    let mut req = b"GET /websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".to_vec();
    let mask = [1u8, 2, 3, 4];
    req.extend_from_slice(&[0x81, 0x82]);
    req.extend_from_slice(&mask);
    req.extend(b"hi".iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    s.write_all(&req).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.ends_with(b"\x81\x02hi") {
        let n = tokio::time::timeout(T, s.read(&mut buf))
            .await
            .expect("in time")
            .unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{text}"
    );
    assert!(
        text.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_requests_through_the_websocket_locations() {
    let (_a, _b, proxy) = start_seed("001-chat-map.conf");
    let p = proxy.port;
    let r = http(
        p,
        b"GET /chat/x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
    let r = http(
        p,
        b"POST /chat/x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
    let r = http(p, b"POST /chat/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n").await;
    assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
    // Two requests on one keep-alive connection (HTTP/1.1 default).
    let r = http_until(p, b"GET /chat/a HTTP/1.1\r\nHost: a\r\n\r\nGET /chat/b HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", true).await;
    assert_eq!(r.matches("HTTP/1.1 200 OK\r\n").count(), 2, "{r}");
    // Outside every location: 404 from ringproxy itself.
    let r = http(p, b"GET /other HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert!(r.starts_with("HTTP/1.1 404 Not Found\r\n"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_receives_the_configured_headers() {
    let (_a, _b, proxy) = start_seed("000-websocket-location.conf");
    let r = http(proxy.port, b"GET /websocket/headers HTTP/1.1\r\nHost: example.com:8080\r\nX-Forwarded-For: 10.0.0.1\r\nConnection: keep-alive, X-Drop\r\nX-Drop: secret\r\nKeep-Alive: 300\r\nUser-Agent: t\r\n\r\n").await;
    let body = &r[r.find("\r\n\r\n").unwrap() + 4..];
    // What nginx 1.22.1 sent for this location in a run made by hand with the same request: the
    // proxy_set_header lines in order, then the client's headers minus hop-by-hop ones; nginx
    // also forwards X-Drop, which the client's Connection header names: ringproxy drops it
    // (RFC 9110 7.6.1), a deliberate difference listed in the README.
    let want = "GET /websocket/headers HTTP/1.1\r\nHost: example.com\r\nX-Real-IP: 127.0.0.1\r\nX-Forwarded-For: 10.0.0.1, 127.0.0.1\r\nConnection: upgrade\r\nUser-Agent: t\r\n\r\n";
    assert_eq!(body, want, "full response: {r}");
}

/// Seed 003: a whole nginx.conf with `include conf.d/*.conf`, a single-page app served from
/// `html/` with `try_files $uri $uri/ /index.html =404`, `/api` rewritten (`rewrite ... break`)
/// to the backend, and the `/capture` WebSocket with `keepalive_timeout 0`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_003_serves_the_app_the_api_and_the_websocket() {
    let echo = Echo::start();
    let port = common::free_port();
    let dir = common::seed_003_prefix(port, echo.addr);
    let index = std::fs::read(dir.path().join("html/index.html")).unwrap();
    let proxy = Proxy::start_in(dir, port, "", &[]);
    let p = proxy.port;

    // The app: / and any unknown path fall back to index.html, with nginx's type and length.
    for path in ["/", "/index.html", "/some/client/route"] {
        let r = http(
            p,
            format!("GET {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await;
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{path}: {r}");
        assert!(r.contains("Content-Type: text/html\r\n"), "{path}: {r}");
        assert!(
            r.contains(&format!("Content-Length: {}\r\n", index.len())),
            "{path}: {r}"
        );
        assert!(r.ends_with(std::str::from_utf8(&index).unwrap()), "{path}");
    }
    // /api/x reaches the backend as /x (rewrite ... break), with the configured headers.
    let r = http(
        p,
        b"GET /api/v1/headers HTTP/1.1\r\nHost: app.local\r\nConnection: close\r\n\r\n",
    )
    .await;
    let body = &r[r.find("\r\n\r\n").unwrap() + 4..];
    assert!(body.starts_with("GET /v1/headers HTTP/1.0\r\nHost: app.local\r\nX-Real-IP: 127.0.0.1\r\nX-Forwarded-For: 127.0.0.1\r\n"), "{body}");
    // The WebSocket location.
    ws_session(&format!("ws://127.0.0.1:{p}/capture")).await;
}

/// The default access log (`logs/access.log`, `combined`, as nginx) gets one line per request;
/// a WebSocket is logged with status 101 when its tunnel opens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_written_to_the_access_log() {
    let (_a, _b, proxy) = start_seed("001-chat-map.conf");
    let r = http(
        proxy.port,
        b"GET /chat/x?y=1 HTTP/1.1\r\nHost: a\r\nUser-Agent: curl/8\r\nConnection: close\r\n\r\n",
    )
    .await;
    let len = r[r.find("\r\n\r\n").unwrap() + 4..].len();
    ws_session(&format!("ws://127.0.0.1:{}/chat/room", proxy.port)).await;
    let log = std::fs::read_to_string(proxy.dir.path().join("logs/access.log")).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 2, "{log}");
    assert!(lines[0].starts_with("127.0.0.1 - - ["), "{log}");
    assert!(
        lines[0].ends_with(&format!(
            "] \"GET /chat/x?y=1 HTTP/1.1\" 200 {len} \"-\" \"curl/8\""
        )),
        "{log}"
    );
    assert!(
        lines[1].contains("] \"GET /chat/room HTTP/1.1\" 101 0 \"-\" "),
        "{log}"
    );
}

/// A backend that answers every request with its own name and closes.
async fn named_backend(name: &'static str) -> std::net::SocketAddr {
    common::scripted_backend(move |_, _| {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{name}",
            name.len()
        )
        .into_bytes()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistent_hash_picks_the_same_peer_for_a_client_on_every_shard() {
    // Seed 004 hashes $remote_addr: clients on 16 loopback addresses, 8 connections each. With
    // two shards, SO_REUSEPORT spreads each client's connections over both (by source port):
    // every shard must pick the same backend for the same client.
    let (a, b) = (named_backend("A").await, named_backend("B").await);
    let port = common::free_port();
    let conf = common::seed("004-hash-consistent.conf", port, a, b);
    let proxy = Proxy::start(&conf, port, "worker_processes 2;", &[]);
    let mut picks = std::collections::BTreeMap::new();
    for host in 2..18u8 {
        let ip = std::net::Ipv4Addr::new(127, 0, 0, host);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..8 {
            let sock = tokio::net::TcpSocket::new_v4().unwrap();
            sock.bind((ip, 0).into()).unwrap();
            let mut s = tokio::time::timeout(T, sock.connect(([127, 0, 0, 1], proxy.port).into()))
                .await
                .expect("connect in time")
                .unwrap();
            s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .await
                .unwrap();
            let mut out = Vec::new();
            tokio::time::timeout(T, s.read_to_end(&mut out))
                .await
                .expect("response in time")
                .unwrap();
            let text = String::from_utf8_lossy(&out).into_owned();
            assert!(text.starts_with("HTTP/1.1 200"), "{ip}: {text}");
            seen.insert(text.rsplit("\r\n\r\n").next().unwrap().to_string());
        }
        assert_eq!(seen.len(), 1, "{ip} reached {seen:?}");
        picks.insert(ip, seen.into_iter().next().unwrap());
    }
    let backends: std::collections::BTreeSet<_> = picks.values().collect();
    assert_eq!(
        backends.len(),
        2,
        "16 clients all hashed to one peer: {picks:?}"
    );
}
