//! Proxy directives through a running ringproxy (one shard) against scripted backends:
//! `proxy_next_upstream_timeout` stops trying further peers once its time is spent, and
//! `proxy_ignore_client_abort off` (nginx's default) closes the upstream connection when the
//! client goes away (before the response head or while its body streams), `on` lets the
//! upstream request finish; header
//! lines with invalid names are dropped or passed as nginx does (`ignore_invalid_headers`,
//! `underscores_in_headers`); `rewrite_log on` writes nginx's notices.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{black_hole, Proxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const T: Duration = Duration::from_secs(20);

fn proxy(servers: &[SocketAddr], location: &str) -> Proxy {
    proxy_with(servers, "", location)
}

/// `proxy` with directives at the server level too.
fn proxy_with(servers: &[SocketAddr], server: &str, location: &str) -> Proxy {
    let port = common::free_port();
    let servers: String = servers
        .iter()
        .map(|a| format!("        server {a};\n"))
        .collect();
    let conf = format!(
        "worker_processes 1;\nerror_log logs/error.log info;\nevents {{}}\nhttp {{\n    upstream b {{\n{servers}    }}\n    server {{\n        listen 127.0.0.1:{port};\n        {server}\n        location / {{\n            proxy_pass http://b;\n            {location}\n        }}\n    }}\n}}\n"
    );
    Proxy::start(&conf, port, "", &[])
}

// effect: proxy_next_upstream_timeout
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_next_upstream_timeout_stops_the_retries() {
    let holes = [black_hole(), black_hole(), black_hole()];
    let addrs: Vec<SocketAddr> = holes.iter().map(|h| h.0).collect();
    // Each connect times out after 2s. The first try ends 1s inside the 3s budget (the margin
    // for a late timer), so a second try starts; it ends past the budget: no third try.
    let p = proxy(
        &addrs,
        "proxy_connect_timeout 2s; proxy_next_upstream_timeout 3s;",
    );
    let mut s = TcpStream::connect(("127.0.0.1", p.port)).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(T, s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    assert!(
        out.starts_with(b"HTTP/1.1 504"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    let tries = p
        .stderr()
        .matches("upstream timed out (110: Connection timed out) while connecting to upstream")
        .count();
    assert_eq!(tries, 2, "{}", p.stderr());
}

async fn read_until_head_end(s: &mut TcpStream) {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut b).await.unwrap(), 1);
        head.push(b[0]);
    }
}

// effect: proxy_ignore_client_abort
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_abort_closes_the_upstream_connection_unless_ignored() {
    // The client leaves while the response head is awaited, then while the body streams.
    for (ignore, in_body) in [(false, false), (true, false), (false, true), (true, true)] {
        // A backend that reads the request and holds the connection (after part of a body).
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let flag = if ignore { "on" } else { "off" };
        let p = proxy(
            &[addr],
            &format!("proxy_ignore_client_abort {flag}; proxy_read_timeout 30s;"),
        );
        let mut c = TcpStream::connect(("127.0.0.1", p.port)).await.unwrap();
        c.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .unwrap();
        let (mut up, _) = tokio::time::timeout(T, l.accept()).await.unwrap().unwrap();
        read_until_head_end(&mut up).await;
        if in_body {
            up.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
                .await
                .unwrap();
            let mut seen = Vec::new();
            let mut chunk = [0u8; 256];
            while !String::from_utf8_lossy(&seen).contains("first") {
                let n = tokio::time::timeout(T, c.read(&mut chunk))
                    .await
                    .unwrap()
                    .unwrap();
                assert!(n > 0, "the proxy closed the client");
                seen.extend_from_slice(&chunk[..n]);
            }
        }
        drop(c);
        let mut b = [0u8; 1];
        if ignore {
            // The upstream request goes on: nothing from the proxy for a while, then the
            // response is taken (and dropped, the client is gone).
            let r = tokio::time::timeout(Duration::from_millis(1500), up.read(&mut b)).await;
            assert!(
                r.is_err(),
                "the proxy closed the upstream connection: {r:?}"
            );
            let end: &[u8] = if in_body {
                b"0\r\n\r\n"
            } else {
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
            };
            up.write_all(end).await.unwrap();
        } else {
            // A FIN, as nginx's close(): the proxy sent the whole request and the backend sent
            // nothing the proxy left unread, so nothing makes the close a reset.
            let n = tokio::time::timeout(T, up.read(&mut b))
                .await
                .expect("the proxy closes the upstream connection")
                .expect("an end of stream, not a reset");
            assert_eq!(n, 0, "end of stream from the proxy");
            let log = p.stderr();
            assert!(
                log.contains("client prematurely closed connection"),
                "{log}"
            );
        }
    }
}

/// A backend that answers every request with its head as the body.
async fn head_echo() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut b = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if s.read(&mut b).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(b[0]);
                }
                let mut out = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", head.len())
                    .into_bytes();
                out.extend_from_slice(&head);
                let _ = s.write_all(&out).await;
            });
        }
    });
    addr
}

// effect: underscores_in_headers ignore_invalid_headers
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_header_names_reach_the_backend_as_with_nginx() {
    let backend = head_echo().await;
    let raw = b"GET / HTTP/1.1\r\nHost: a\r\nX_Under: 1\r\nX@At: 2\r\nX.Dot: 4\r\nX-ok: 5\r\nConnection: close\r\n\r\n";
    // What nginx 1.22.1 forwarded for `raw` per server setting, seen in a run made by hand (no
    // script repeats it): ringproxy's expectation.
    let cases: [(&str, &[&str], &[&str]); 2] = [
        ("", &["X-ok: 5"], &["X_Under", "X@At", "X.Dot"]),
        (
            "underscores_in_headers on;",
            &["X_Under: 1", "X-ok: 5"],
            &["X@At", "X.Dot"],
        ),
    ];
    for (setting, present, absent) in cases {
        let p = proxy_with(&[backend], setting, "");
        let r = common::roundtrip(p.port, raw).await;
        assert!(r.starts_with("HTTP/1.1 200"), "{setting}: {r}");
        for h in present {
            assert!(
                r.contains(&format!("\r\n{h}\r\n")),
                "{setting}: {h} missing: {r}"
            );
        }
        for h in absent {
            assert!(
                !r.contains(&format!("\r\n{h}:")),
                "{setting}: {h} forwarded: {r}"
            );
        }
    }
    // ignore_invalid_headers off: nginx forwards every line; ringproxy too for names that are
    // HTTP tokens, and refuses the others (X@At) with 400.
    let p = proxy_with(&[backend], "ignore_invalid_headers off;", "");
    let tokens =
        b"GET / HTTP/1.1\r\nHost: a\r\nX_Under: 1\r\nX.Dot: 4\r\nConnection: close\r\n\r\n";
    let r = common::roundtrip(p.port, tokens).await;
    assert!(r.contains("\r\nX_Under: 1\r\nX.Dot: 4\r\n"), "{r}");
    assert!(common::roundtrip(p.port, raw)
        .await
        .starts_with("HTTP/1.1 400"));
}

// effect: rewrite_log
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewrite_log_writes_nginx_notices() {
    let backend = head_echo().await;
    let rewrites = "rewrite ^/old(.*)$ /new$1 last;\n        location /new { rewrite ^/new/(.*)$ /final/$1?x=1 break; proxy_pass http://b; }";
    let p = proxy_with(
        &[backend],
        &format!("rewrite_log on;\n        {rewrites}"),
        "",
    );
    let r = common::roundtrip(
        p.port,
        b"GET /old/abc?q=2 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(
        r.contains("\r\n\r\nGET /final/abc?x=1&q=2 HTTP/1.0\r\n"),
        "{r}"
    );
    common::roundtrip(
        p.port,
        b"GET /zzz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    .await;
    // nginx 1.22.1's lines for the same configuration and requests (after "PID#TID: *N "), as
    // seen in a run made by hand:
    let context =
        ", client: 127.0.0.1, server: , request: \"GET /old/abc?q=2 HTTP/1.1\", host: \"a\"";
    let want = [
        format!("\"^/old(.*)$\" matches \"/old/abc\"{context}"),
        format!("rewritten data: \"/new/abc\", args: \"q=2\"{context}"),
        format!("\"^/new/(.*)$\" matches \"/new/abc\"{context}"),
        format!("rewritten data: \"/final/abc\", args: \"x=1&q=2\"{context}"),
        "\"^/old(.*)$\" does not match \"/zzz\", client: 127.0.0.1, server: , request: \"GET /zzz HTTP/1.1\", host: \"a\"".to_string(),
    ];
    let log = p.stderr();
    let got: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("[notice]") && l.contains(": *"))
        .map(|l| l.split_once(": *").unwrap().1)
        .map(|l| l.split_once(' ').unwrap().1)
        .collect();
    assert_eq!(got, want, "{log}");
    // Off (the default): no such lines.
    let p = proxy_with(&[backend], rewrites, "");
    common::roundtrip(
        p.port,
        b"GET /old/abc HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(!p.stderr().contains("matches"), "{}", p.stderr());
}
