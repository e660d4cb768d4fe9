//! Proxy and upstream directives through a running ringproxy (one shard) against scripted
//! backends, each against what nginx 1.22 did in runs made by hand: `upstream` balancing, `proxy_pass` URIs,
//! timeouts while connecting and sending, `proxy_buffer_size`, the next-upstream limits,
//! `proxy_pass_request_body off`, upgrades (`proxy_allow_upgrade`), the tunnel's forwarding
//! path (`proxy_splice`) and `keepalive_time` for upstream connections.

mod common;
mod directive_kit;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::read_head;
use directive_kit::{read_to_end_within, send, wait_for, Backend, T};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const GET_CLOSE: &[u8] = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";

/// The whole answer to `raw` on a new connection (until the proxy closes).
async fn answer(port: u16, raw: &[u8]) -> String {
    let mut s = send(port, raw).await;
    let (got, end) = read_to_end_within(&mut s, T).await;
    assert!(end.is_some(), "no end within {T:?}");
    String::from_utf8_lossy(&got).into_owned()
}

/// A backend answering every request with its head as the body.
async fn head_echo() -> Backend {
    Backend::start(|mut s| async move {
        if let Some(head) = read_head(&mut s).await {
            let r = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{head}",
                head.len()
            );
            let _ = s.write_all(r.as_bytes()).await;
        }
    })
    .await
}

// effect: upstream
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_block_balances_its_servers_by_weight() {
    let (a, b) = (
        directive_kit::answering("a").await,
        directive_kit::answering("b").await,
    );
    let upstream = format!(
        "upstream pool {{ server {} weight=2; server {}; }}",
        a.addr, b.addr
    );
    let p = directive_kit::start(&upstream, "location / { proxy_pass http://pool; }");
    let mut order = String::new();
    for _ in 0..6 {
        let r = answer(p.port, GET_CLOSE).await;
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        order.push_str(&r[r.len() - 1..]);
    }
    // nginx's smooth weighted round robin for weights 2 and 1.
    assert_eq!(order, "abaaba");
}

// effect: proxy_pass
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_pass_sends_the_request_to_its_target_with_the_uri_as_nginx() {
    let b = head_echo().await;
    let server = format!(
        "location /a/ {{ proxy_pass http://{0}/x/; }}\n        location / {{ proxy_pass http://{0}; }}",
        b.addr
    );
    let p = directive_kit::start("", &server);
    // With a URI part, it replaces the location's prefix; without, the client's URI goes as is.
    let r = answer(
        p.port,
        b"GET /a/y?q=1 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(r.contains("\r\n\r\nGET /x/y?q=1 HTTP/1.0\r\n"), "{r}");
    let r = answer(
        p.port,
        b"GET /b/%7E?q HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(r.contains("\r\n\r\nGET /b/%7E?q HTTP/1.0\r\n"), "{r}");
    assert!(r.contains(&format!("\r\nHost: {}\r\n", b.addr)), "{r}");
    assert_eq!(b.accepted(), 2);
}

// A URI part with variables (`http://backend$request_uri`, as Forgejo's and Nextcloud's
// published configurations write it) is sent as it renders: the location's prefix is not
// replaced and no arguments are added; it is allowed in regex locations, as in nginx.
// effect: proxy_pass
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_uri_part_with_variables_is_sent_as_it_renders() {
    let b = head_echo().await;
    let server = format!(
        "location /git/ {{ rewrite ^ $request_uri; rewrite ^/git(/.*) $1 break; proxy_pass http://{0}$uri; }}\n        \
         location ~ ^/re/ {{ proxy_pass http://{0}/v$request_uri; }}\n        \
         location / {{ proxy_pass http://{0}$request_uri; }}",
        b.addr
    );
    let p = directive_kit::start("", &server);
    let get = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
    for (path, upstream) in [
        ("/a/b?q=1", "/a/b?q=1"),
        // Forgejo's idiom: the `?` that `$request_uri` brings stays in `$uri` (nginx splits off
        // arguments only at a literal `?` of the replacement), so the raw URI goes upstream.
        ("/git/user/repo?tab=x", "/user/repo?tab=x"),
        ("/re/x?y", "/v/re/x?y"),
    ] {
        let r = answer(p.port, get(path).as_bytes()).await;
        assert!(
            r.contains(&format!("\r\n\r\nGET {upstream} HTTP/1.0\r\n")),
            "{path}: {r}"
        );
        assert!(r.contains(&format!("\r\nHost: {}\r\n", b.addr)), "{r}");
    }
}

// effect: proxy_connect_timeout
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_that_hangs_is_504_after_proxy_connect_timeout() {
    let hole = common::black_hole();
    // The default is 60s, far past the deadline below.
    let p = directive_kit::proxy(&[hole.0], "", "proxy_connect_timeout 1s;");
    let start = Instant::now();
    let mut s = send(p.port, GET_CLOSE).await;
    let (got, _) = read_to_end_within(&mut s, Duration::from_secs(15)).await;
    let got = String::from_utf8_lossy(&got);
    assert!(
        got.starts_with("HTTP/1.1 504 Gateway Time-out\r\n"),
        "{got}"
    );
    assert!(start.elapsed() >= Duration::from_millis(900), "too early");
    assert!(
        p.stderr().contains(
            "upstream timed out (110: Connection timed out) while connecting to upstream"
        ),
        "{}",
        p.stderr()
    );
}

/// A backend that reads the request head and then nothing (for an upgrade it answers `101`
/// first), holding the connection.
async fn stops_reading() -> Backend {
    Backend::start(|mut s| async move {
        let Some(head) = read_head(&mut s).await else {
            return;
        };
        if head.contains("Upgrade: websocket") {
            let up = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
            let _ = s.write_all(up).await;
        }
        tokio::time::sleep(T).await;
    })
    .await
}

/// Writes `LARGE` bytes to `s`, ignoring errors (the proxy may close first).
async fn push_large(mut s: tokio::net::tcp::OwnedWriteHalf) {
    let chunk = vec![b'x'; 1 << 16];
    for _ in 0..LARGE / chunk.len() {
        if s.write_all(&chunk).await.is_err() {
            return;
        }
    }
}

const LARGE: usize = 64 << 20;

// effect: proxy_send_timeout
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_stops_reading_is_dropped_after_proxy_send_timeout() {
    let b = stops_reading().await;
    let upgrade = "proxy_http_version 1.1; proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection upgrade;";
    // The default is 60s, far past the deadlines below.
    let p = directive_kit::proxy(
        &[b.addr],
        "client_max_body_size 0;",
        &format!("proxy_send_timeout 1s; {upgrade}"),
    );
    // A request body the backend does not read: nginx 1.22.1 answers 504 ("upstream timed out
    // (110: Connection timed out) while sending request to upstream").
    let head = format!("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: {LARGE}\r\n\r\n");
    let (mut rd, wr) = send(p.port, head.as_bytes()).await.into_split();
    let pusher = tokio::spawn(push_large(wr));
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        while let Ok(n) = rd.read(&mut buf).await {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
    };
    tokio::time::timeout(Duration::from_secs(15), read)
        .await
        .expect("an answer and the close");
    let got = String::from_utf8_lossy(&got);
    assert!(
        got.starts_with("HTTP/1.1 504 Gateway Time-out\r\n"),
        "{got}"
    );
    assert!(
        p.stderr().contains(
            "upstream timed out (110: Connection timed out) while sending request to upstream"
        ),
        "{}",
        p.stderr()
    );
    pusher.abort();
    // A tunnel whose backend stops reading: closed.
    let s = send(
        p.port,
        b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    )
    .await;
    let (mut rd, wr) = s.into_split();
    let mut head = Vec::new();
    let mut b1 = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(rd.read(&mut b1).await.unwrap(), 1);
        head.push(b1[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101 "));
    let pusher = tokio::spawn(push_large(wr));
    let mut rest = Vec::new();
    let end = tokio::time::timeout(Duration::from_secs(15), rd.read_to_end(&mut rest)).await;
    assert!(end.is_ok(), "the tunnel is still open");
    pusher.abort();
}

/// A backend whose response head carries a header of `n` bytes.
async fn big_head(n: usize) -> Backend {
    Backend::start(move |mut s| async move {
        if read_head(&mut s).await.is_some() {
            let r = format!(
                "HTTP/1.1 200 OK\r\nX-Big: {}\r\nContent-Length: 2\r\n\r\nok",
                "b".repeat(n)
            );
            let _ = s.write_all(r.as_bytes()).await;
        }
    })
    .await
}

// effect: proxy_buffer_size
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_head_larger_than_proxy_buffer_size_is_502() {
    let b = big_head(2000).await;
    // The default (4k) takes it; 1k does not (nginx 1.22.1: 502 and "upstream sent too big
    // header while reading response header from upstream").
    let p = directive_kit::proxy(&[b.addr], "", "");
    assert!(answer(p.port, GET_CLOSE)
        .await
        .starts_with("HTTP/1.1 200 OK\r\n"));
    let p = directive_kit::proxy(&[b.addr], "", "proxy_buffer_size 1k;");
    let r = answer(p.port, GET_CLOSE).await;
    assert!(r.starts_with("HTTP/1.1 502 Bad Gateway\r\n"), "{r}");
    assert!(
        p.stderr()
            .contains("upstream sent too big header while reading response header from upstream"),
        "{}",
        p.stderr()
    );
    let b = big_head(6000).await;
    let p = directive_kit::proxy(&[b.addr], "", "");
    assert!(answer(p.port, GET_CLOSE).await.starts_with("HTTP/1.1 502 "));
    let p = directive_kit::proxy(&[b.addr], "", "proxy_buffer_size 8k;");
    assert!(answer(p.port, GET_CLOSE)
        .await
        .starts_with("HTTP/1.1 200 OK\r\n"));
}

// effect: proxy_next_upstream
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connect_goes_to_the_next_server_as_proxy_next_upstream_allows() {
    let ok = directive_kit::answering("ok").await;
    // Round robin tries the refused server first. `error` (in the default `error timeout`)
    // covers a refused connect; `timeout` alone and `off` do not.
    for (next, status) in [
        ("", "200 OK"),
        ("proxy_next_upstream error;", "200 OK"),
        ("proxy_next_upstream timeout;", "502 Bad Gateway"),
        ("proxy_next_upstream off;", "502 Bad Gateway"),
    ] {
        let p = directive_kit::proxy(&[directive_kit::refused(), ok.addr], "", next);
        let r = answer(p.port, GET_CLOSE).await;
        assert!(
            r.starts_with(&format!("HTTP/1.1 {status}\r\n")),
            "{next}: {r}"
        );
    }
}

/// A backend that reads a request head and closes without answering (nginx's `return 444`).
async fn closing() -> Backend {
    Backend::start(|mut s| async move {
        let _ = read_head(&mut s).await;
    })
    .await
}

/// A backend answering every request with `status` and a body naming it.
async fn answering_status(status: &'static str) -> Backend {
    Backend::start(move |mut s| async move {
        if read_head(&mut s).await.is_some() {
            let r = format!(
                "HTTP/1.1 {status}\r\nContent-Length: 3\r\n\r\n{}",
                &status[..3]
            );
            let _ = s.write_all(r.as_bytes()).await;
        }
    })
    .await
}

/// The `X-Addr` header of a response (`$upstream_addr`).
fn addr_header(r: &str) -> &str {
    r.lines()
        .find_map(|l| l.strip_prefix("X-Addr: "))
        .unwrap_or("")
}

// effect: proxy_next_upstream
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_after_the_request_went_out_go_to_the_next_server_as_nginx() {
    let (ok, close, bad) = (
        directive_kit::answering("ok").await,
        closing().await,
        answering_status("502 Bad Gateway").await,
    );
    let (o, c, b) = (ok.addr, close.addr, bad.addr);
    let addr = "add_header X-Addr $upstream_addr always;";
    // A peer that closes without an answer is an `error` (in the default); every peer tried is
    // in `$upstream_addr`.
    let p = directive_kit::proxy(&[c, o], "", addr);
    let r = answer(p.port, GET_CLOSE).await;
    assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
    assert_eq!(addr_header(&r), format!("{c}, {o}"));
    // ... not with `proxy_next_upstream off`, nor for a POST (its body went out already).
    let p = directive_kit::proxy(&[c, o], "", &format!("{addr} proxy_next_upstream off;"));
    assert!(answer(p.port, GET_CLOSE).await.starts_with("HTTP/1.1 502 "));
    let p = directive_kit::proxy(&[c, o], "", addr);
    let post = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi";
    let r = answer(p.port, post).await;
    assert!(r.starts_with("HTTP/1.1 502 "), "{r}");
    assert_eq!(addr_header(&r), c.to_string());
    // An upstream's 502 is relayed unless `http_502` is listed.
    let p = directive_kit::proxy(&[b, o], "", addr);
    let r = answer(p.port, GET_CLOSE).await;
    assert!(
        r.starts_with("HTTP/1.1 502 Bad Gateway\r\n") && r.ends_with("502"),
        "{r}"
    );
    let p = directive_kit::proxy(
        &[b, o],
        "",
        &format!("{addr} proxy_next_upstream http_502;"),
    );
    let r = answer(p.port, GET_CLOSE).await;
    assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
    assert_eq!(addr_header(&r), format!("{b}, {o}"));
    // Every peer failed (and so is marked failed in this one shard): the next request finds no
    // live one, and `$upstream_addr` names the upstream, as nginx's "no live upstreams".
    let close2 = closing().await;
    let p = directive_kit::proxy(&[c, close2.addr], "", addr);
    let r = answer(p.port, GET_CLOSE).await;
    assert!(r.starts_with("HTTP/1.1 502 "), "{r}");
    assert_eq!(addr_header(&r), format!("{c}, {}", close2.addr));
    let r = answer(p.port, GET_CLOSE).await;
    assert_eq!(addr_header(&r), "b");
}

// effect: proxy_next_upstream_tries
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_next_upstream_tries_bounds_the_servers_tried() {
    let dead = [
        directive_kit::refused(),
        directive_kit::refused(),
        directive_kit::refused(),
    ];
    for (tries, attempts) in [("", 3), ("proxy_next_upstream_tries 2;", 2)] {
        let p = directive_kit::proxy(&dead, "", tries);
        let r = answer(p.port, GET_CLOSE).await;
        assert!(r.starts_with("HTTP/1.1 502 Bad Gateway\r\n"), "{r}");
        let log = p.stderr();
        let n = log
            .matches("connect() failed (111: Connection refused) while connecting to upstream")
            .count();
        assert_eq!(n, attempts, "{tries}: {log}");
    }
}

// effect: proxy_pass_request_body
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_pass_request_body_off_reads_the_body_and_sends_none() {
    // The backend answers, then keeps what else arrives on the connection until it closes.
    let extra = Arc::new(Mutex::new(Vec::new()));
    let e2 = extra.clone();
    let b = Backend::start(move |mut s| {
        let extra = e2.clone();
        async move {
            let Some(head) = read_head(&mut s).await else {
                return;
            };
            let r = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{head}",
                head.len()
            );
            let _ = s.write_all(r.as_bytes()).await;
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest).await;
            extra.lock().unwrap().push(rest);
        }
    })
    .await;
    let p = directive_kit::proxy(&[b.addr], "", "proxy_pass_request_body off;");
    // The body is read from the client (the next request on the connection is served) and
    // never sent: no framing header, no bytes after the head.
    let two = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloGET /next HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
    let r = answer(p.port, two).await;
    assert!(r.contains("\r\n\r\nPOST / HTTP/1.0\r\n"), "{r}");
    assert!(r.contains("\r\n\r\nGET /next HTTP/1.0\r\n"), "{r}");
    assert!(
        !r.to_ascii_lowercase().contains("content-length: 5\r\n"),
        "{r}"
    );
    wait_for("both upstream connections to end", || {
        extra.lock().unwrap().len() == 2
    })
    .await;
    let extra = extra.lock().unwrap().clone();
    assert!(extra.iter().all(|e| e.is_empty()), "{extra:?}");
}

// effect: proxy_allow_upgrade
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_allow_upgrade_lets_another_protocol_through() {
    // A backend that switches to whatever protocol is asked for, then echoes.
    let b = Backend::start(|mut s| async move {
        let Some(head) = read_head(&mut s).await else {
            return;
        };
        let Some(proto) = head
            .lines()
            .find_map(|l| l.strip_prefix("Upgrade: ").map(str::to_string))
        else {
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nnone")
                .await;
            return;
        };
        let r = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: {proto}\r\nConnection: Upgrade\r\n\r\n"
        );
        let _ = s.write_all(r.as_bytes()).await;
        let mut b = [0u8; 1024];
        while let Ok(n) = s.read(&mut b).await {
            if n == 0 || s.write_all(&b[..n]).await.is_err() {
                break;
            }
        }
    })
    .await;
    let upgrade = "proxy_http_version 1.1; proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection upgrade;";
    let req = b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: foo\r\nConnection: Upgrade\r\n\r\n";
    // Only websocket by default: another protocol is refused with 400, never forwarded.
    let p = directive_kit::proxy(&[b.addr], "", upgrade);
    assert!(answer(p.port, req).await.starts_with("HTTP/1.1 400 "));
    assert_eq!(b.accepted(), 0);
    let p = directive_kit::proxy(
        &[b.addr],
        "",
        &format!("{upgrade} proxy_allow_upgrade foo;"),
    );
    let mut s = send(p.port, req).await;
    let head = tokio::time::timeout(T, read_head(&mut s))
        .await
        .unwrap()
        .unwrap();
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert!(head.contains("\r\nUpgrade: foo\r\n"), "{head}");
    s.write_all(b"ping").await.unwrap();
    let mut echo = [0u8; 4];
    tokio::time::timeout(T, s.read_exact(&mut echo))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&echo, b"ping");
    // A location that names the protocol itself (a literal `proxy_set_header Upgrade`, as
    // nginx's own tests do) lets that one through, and no other the client asks for.
    let literal = "proxy_http_version 1.1; proxy_set_header Upgrade foo; proxy_set_header Connection upgrade;";
    let p = directive_kit::proxy(&[b.addr], "", literal);
    let bar = b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: bar\r\nConnection: Upgrade\r\n\r\n";
    let before = b.accepted();
    assert!(answer(p.port, bar).await.starts_with("HTTP/1.1 400 "));
    assert_eq!(
        b.accepted(),
        before,
        "a refused upgrade reached the backend"
    );
    let mut s = send(p.port, req).await;
    let head = tokio::time::timeout(T, read_head(&mut s))
        .await
        .unwrap()
        .unwrap();
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
}

// effect: proxy_splice
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_splice_picks_the_tunnels_forwarding_path() {
    // An echoing websocket backend; the splice path borrows pipes from the shard's pool (kept
    // open once made), the copy path never makes one: the proxy's pipes show the path taken.
    let b = Backend::start(|mut s| async move {
        if read_head(&mut s).await.is_none() {
            return;
        }
        let up = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
        let _ = s.write_all(up).await;
        let mut b = vec![0u8; 1 << 16];
        while let Ok(n) = s.read(&mut b).await {
            if n == 0 || s.write_all(&b[..n]).await.is_err() {
                break;
            }
        }
    })
    .await;
    let upgrade = "proxy_http_version 1.1; proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection upgrade;";
    let bulk = common::big(4 << 20);
    // (path, whether a small message makes a pipe, whether bulk does)
    for (path, small_pipes, bulk_pipes) in [
        ("on", true, true),
        ("auto", false, true),
        ("off", false, false),
    ] {
        let p = directive_kit::proxy(&[b.addr], "", &format!("{upgrade} proxy_splice {path};"));
        let before = directive_kit::pipes_of(p.pid());
        let mut s = send(
            p.port,
            b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
        )
        .await;
        let head = tokio::time::timeout(T, read_head(&mut s))
            .await
            .unwrap()
            .unwrap();
        assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
        s.write_all(b"ping").await.unwrap();
        let mut echo = [0u8; 4];
        tokio::time::timeout(T, s.read_exact(&mut echo))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&echo, b"ping");
        let after_small = directive_kit::pipes_of(p.pid());
        assert_eq!(
            after_small > before,
            small_pipes,
            "proxy_splice {path}: small message"
        );
        let (mut rd, mut wr) = s.into_split();
        let data = bulk.clone();
        let writer = tokio::spawn(async move { wr.write_all(&data).await.map(|()| wr) });
        let mut back = vec![0u8; bulk.len()];
        tokio::time::timeout(T, rd.read_exact(&mut back))
            .await
            .unwrap()
            .unwrap();
        assert!(back == bulk, "proxy_splice {path}: bytes changed");
        let _wr = writer.await.unwrap().unwrap();
        let after_bulk = directive_kit::pipes_of(p.pid());
        assert_eq!(after_bulk > before, bulk_pipes, "proxy_splice {path}: bulk");
    }
}

// effect: keepalive_time
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_connection_older_than_keepalive_time_is_not_kept() {
    // Each connection numbers its answers: c<connection>r<request>.
    let conns = Arc::new(Mutex::new(0));
    let c2 = conns.clone();
    let b = Backend::start(move |mut s| {
        let conns = c2.clone();
        async move {
            let id = {
                let mut c = conns.lock().unwrap();
                *c += 1;
                *c
            };
            for r in 1.. {
                if read_head(&mut s).await.is_none() {
                    return;
                }
                let body = format!("c{id}r{r}");
                let a = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                if s.write_all(a.as_bytes()).await.is_err() {
                    return;
                }
            }
        }
    })
    .await;
    let upstream = format!(
        "upstream b {{ server {}; keepalive 4; keepalive_time 1s; }}",
        b.addr
    );
    let p = directive_kit::start(
        &upstream,
        "location / { proxy_pass http://b; proxy_http_version 1.1; proxy_set_header Connection \"\"; }",
    );
    let body = |r: String| r.rsplit("\r\n\r\n").next().unwrap().to_string();
    let first = body(answer(p.port, GET_CLOSE).await);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // nginx checks keepalive_time when a connection is given back: the second request still
    // goes on it (the default is 1h), then it is closed.
    let second = body(answer(p.port, GET_CLOSE).await);
    let third = body(answer(p.port, GET_CLOSE).await);
    assert_eq!([first, second, third], ["c1r1", "c1r2", "c2r1"]);
}
