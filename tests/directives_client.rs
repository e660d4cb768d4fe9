//! Client-side directives through a running ringproxy (one shard), each against what nginx 1.22
//! did in runs made by hand (no script repeats them): the keep-alive limits on client connections, the head timeout and buffers, the body
//! size limit and timeout, the send timeout (responses and tunnels) and `tcp_nodelay`.

mod common;
mod directive_kit;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::read_head;
use directive_kit::{read_response, read_to_end_within, send, wait_for, Backend, End, T};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
const GET_CLOSE: &[u8] = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";

/// A backend answering each request on a connection with `200` and `ok`, keeping it open.
async fn keeps_answering() -> Backend {
    Backend::start(|mut s| async move {
        while read_head(&mut s).await.is_some() {
            let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
            if s.write_all(ok).await.is_err() {
                return;
            }
        }
    })
    .await
}

// effect: keepalive_timeout
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_client_connection_closes_after_keepalive_timeout() {
    let b = keeps_answering().await;
    // Set for the server, then only for the request's location (nginx keeps the connection
    // for the timeout of the location that served the last request); the default is 75s.
    for (server, location) in [("keepalive_timeout 1s;", ""), ("", "keepalive_timeout 1s;")] {
        let p = directive_kit::proxy(&[b.addr], server, location);
        let mut s = send(p.port, GET).await;
        let r = read_response(&mut s).await;
        assert!(r.contains("\r\nConnection: keep-alive\r\n"), "{r}");
        let idle = Instant::now();
        let (rest, end) = read_to_end_within(&mut s, Duration::from_secs(15)).await;
        let what = format!("server {server:?}, location {location:?}");
        assert_eq!(end, Some(End::Eof), "{what}: not closed");
        assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
        assert!(idle.elapsed() >= Duration::from_millis(900), "closed early");
    }
    // keepalive_timeout 0 disables keep-alive.
    let p = directive_kit::proxy(&[b.addr], "keepalive_timeout 0;", "");
    let mut s = send(p.port, GET).await;
    let (r, end) = read_to_end_within(&mut s, T).await;
    let r = String::from_utf8_lossy(&r);
    assert!(r.contains("\r\nConnection: close\r\n"), "{r}");
    assert_eq!(end, Some(End::Eof));
}

// effect: keepalive_requests
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_requests_closes_the_client_connection_after_that_many() {
    let b = keeps_answering().await;
    let p = directive_kit::proxy(&[b.addr], "keepalive_requests 2;", "");
    let mut s = send(p.port, GET).await;
    let first = read_response(&mut s).await;
    assert!(first.contains("\r\nConnection: keep-alive\r\n"), "{first}");
    s.write_all(GET).await.unwrap();
    let second = read_response(&mut s).await;
    assert!(second.contains("\r\nConnection: close\r\n"), "{second}");
    let (rest, end) = read_to_end_within(&mut s, T).await;
    assert_eq!((rest.len(), end), (0, Some(End::Eof)));
}

// effect: client_header_timeout
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unfinished_head_is_dropped_after_client_header_timeout() {
    let b = keeps_answering().await;
    // The default is 60s. nginx closes without an answer ("client timed out", 408 in the log).
    let p = directive_kit::proxy(&[b.addr], "client_header_timeout 1s;", "");
    let start = Instant::now();
    let mut s = send(p.port, b"GET / HTTP/1.1\r\nHost: a\r\n").await;
    let (got, end) = read_to_end_within(&mut s, Duration::from_secs(15)).await;
    assert_eq!(end, Some(End::Eof), "not closed");
    assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));
    assert!(
        start.elapsed() >= Duration::from_millis(900),
        "closed early"
    );
    assert_eq!(b.accepted(), 0);
}

/// The status line of the answer to `raw` on a new connection.
async fn status_of(port: u16, raw: &[u8]) -> String {
    let mut s = send(port, raw).await;
    let (got, _) = read_to_end_within(&mut s, T).await;
    let got = String::from_utf8_lossy(&got).into_owned();
    got.lines().next().unwrap_or("").to_string()
}

fn with_uri_of(len: usize) -> Vec<u8> {
    format!(
        "GET /{} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        "u".repeat(len)
    )
    .into_bytes()
}

fn with_header_of(len: usize) -> Vec<u8> {
    format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX-Long: {}\r\nConnection: close\r\n\r\n",
        "h".repeat(len)
    )
    .into_bytes()
}

// effect: large_client_header_buffers client_header_buffer_size
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_buffers_limit_request_lines_and_header_lines_as_nginx() {
    let b = keeps_answering().await;
    // The defaults (1k, then 4 buffers of 8k) take a 3000-byte request line or header line.
    let p = directive_kit::proxy(&[b.addr], "", "");
    assert_eq!(
        status_of(p.port, &with_uri_of(3000)).await,
        "HTTP/1.1 200 OK"
    );
    assert_eq!(
        status_of(p.port, &with_header_of(3000)).await,
        "HTTP/1.1 200 OK"
    );
    // With large buffers of 1k a line that long fits nowhere: 414 in the request line, nginx's
    // 494 (sent as 400 with its own page) in a header line.
    let p = directive_kit::proxy(&[b.addr], "large_client_header_buffers 2 1k;", "");
    assert_eq!(
        status_of(p.port, &with_uri_of(3000)).await,
        "HTTP/1.1 414 Request-URI Too Large"
    );
    assert_eq!(
        status_of(p.port, &with_header_of(3000)).await,
        "HTTP/1.1 400 Bad Request"
    );
    // A head that fits in client_header_buffer_size never needs a large buffer.
    let p = directive_kit::proxy(
        &[b.addr],
        "client_header_buffer_size 8k; large_client_header_buffers 2 1k;",
        "",
    );
    assert_eq!(
        status_of(p.port, &with_uri_of(3000)).await,
        "HTTP/1.1 200 OK"
    );
    assert_eq!(
        status_of(p.port, &with_header_of(3000)).await,
        "HTTP/1.1 200 OK"
    );
}

/// A backend that reads a request head, then everything until the proxy closes, keeping the
/// bytes after the head in `body`; answers nothing.
async fn draining(body: Arc<Mutex<Vec<u8>>>) -> Backend {
    Backend::start(move |mut s| {
        let body = body.clone();
        async move {
            if read_head(&mut s).await.is_none() {
                return;
            }
            let mut b = [0u8; 4096];
            while let Ok(n) = s.read(&mut b).await {
                if n == 0 {
                    break;
                }
                body.lock().unwrap().extend_from_slice(&b[..n]);
            }
            body.lock().unwrap().extend_from_slice(b"<closed>");
        }
    })
    .await
}

// effect: client_max_body_size
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_max_body_size_answers_413_as_nginx() {
    let body = Arc::new(Mutex::new(Vec::new()));
    let b = draining(body.clone()).await;
    // HTTP/1.1 upstream: chunks go on as chunks (to 1.0 ringproxy would answer 411: it does
    // not buffer bodies as nginx does).
    let p = directive_kit::proxy(
        &[b.addr],
        "client_max_body_size 100;",
        "proxy_http_version 1.1;",
    );
    // A Content-Length over the limit: 413 before any of the body is sent (nginx's page,
    // Connection: close), and the backend never hears of it.
    let mut s = send(
        p.port,
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n",
    )
    .await;
    let (got, end) = read_to_end_within(&mut s, T).await;
    let got = String::from_utf8_lossy(&got);
    assert!(
        got.starts_with("HTTP/1.1 413 Request Entity Too Large\r\n"),
        "{got}"
    );
    assert!(got.contains("\r\nConnection: close\r\n"), "{got}");
    assert_eq!(end, Some(End::Eof));
    assert!(
        p.stderr()
            .contains("client intended to send too large body: 1000 bytes"),
        "{}",
        p.stderr()
    );
    // A chunk announced with the head that goes over: 413 at once, the backend is not
    // contacted (nginx 1.22.1: "client intended to send too large chunked body: 0+200 bytes").
    let mut chunked =
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nc8\r\n".to_vec();
    chunked.extend_from_slice(&[b'a'; 200]);
    chunked.extend_from_slice(b"\r\n0\r\n\r\n");
    let got = status_of(p.port, &chunked).await;
    assert_eq!(got, "HTTP/1.1 413 Request Entity Too Large");
    assert!(
        p.stderr()
            .contains("client intended to send too large chunked body: 0+200 bytes"),
        "{}",
        p.stderr()
    );
    assert_eq!(b.accepted(), 0, "a refused request reached the backend");
    // Chunks that go over later, once the request streams to the backend: 413 for the client,
    // and the backend sees the connection close before the body's end.
    let mut s = send(
        p.port,
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n32\r\n",
    )
    .await;
    s.write_all(&[b'a'; 50]).await.unwrap();
    s.write_all(b"\r\n").await.unwrap();
    wait_for("the first chunk at the backend", || {
        body.lock().unwrap().iter().filter(|&&c| c == b'a').count() == 50
    })
    .await;
    let mut more = b"46\r\n".to_vec();
    more.extend_from_slice(&[b'b'; 70]);
    more.extend_from_slice(b"\r\n0\r\n\r\n");
    s.write_all(&more).await.unwrap();
    let (got, _) = read_to_end_within(&mut s, T).await;
    let got = String::from_utf8_lossy(&got);
    assert!(
        got.starts_with("HTTP/1.1 413 Request Entity Too Large\r\n"),
        "{got}"
    );
    wait_for("the backend's connection to close", || {
        body.lock().unwrap().ends_with(b"<closed>")
    })
    .await;
    let seen = body.lock().unwrap().clone();
    assert!(
        !seen.contains(&b'b') && !seen.windows(5).any(|w| w == b"0\r\n\r\n"),
        "{}",
        String::from_utf8_lossy(&seen)
    );
    assert!(
        p.stderr()
            .contains("client intended to send too large chunked body: 50+70 bytes"),
        "{}",
        p.stderr()
    );
}

// effect: client_body_timeout
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_request_body_is_dropped_after_client_body_timeout() {
    let body = Arc::new(Mutex::new(Vec::new()));
    let b = draining(body.clone()).await;
    // The default is 60s. nginx 1.22.1 closes without an answer and logs 408 (its access log:
    // `"POST / HTTP/1.1" 408 0`); the body streams, so the backend sees the connection close.
    let p = directive_kit::proxy(&[b.addr], "client_body_timeout 1s;", "");
    let start = Instant::now();
    let mut s = send(
        p.port,
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 50\r\n\r\nabc",
    )
    .await;
    let (got, end) = read_to_end_within(&mut s, Duration::from_secs(15)).await;
    assert!(end.is_some(), "not closed");
    assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));
    assert!(
        start.elapsed() >= Duration::from_millis(900),
        "closed early"
    );
    wait_for("the backend's connection to close", || {
        body.lock().unwrap().ends_with(b"<closed>")
    })
    .await;
    assert_eq!(&body.lock().unwrap()[..], b"abc<closed>");
    let log = p.dir.path().join("logs/access.log");
    wait_for("the access log line", || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("\"POST / HTTP/1.1\" 408 0 "))
    })
    .await;
}

/// Bytes of the large responses: far beyond what the socket buffers on both sides hold.
const LARGE: usize = 64 << 20;

/// Writes `LARGE` bytes of a pattern to `s` (stops at the first error).
async fn flood(s: &mut tokio::net::TcpStream) {
    let chunk = vec![b'x'; 1 << 16];
    for _ in 0..LARGE / chunk.len() {
        if s.write_all(&chunk).await.is_err() {
            return;
        }
    }
}

/// Waits `pause` without reading `s`, then reads it to its end: how many bytes came.
async fn read_after_pause(s: &mut tokio::net::TcpStream, pause: Duration) -> usize {
    tokio::time::sleep(pause).await;
    let (got, end) = read_to_end_within(s, Duration::from_secs(15)).await;
    assert!(end.is_some(), "still open after 15s");
    got.len()
}

// effect: send_timeout
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_dropped_after_send_timeout() {
    // A response body, then the same through a tunnel (nginx: send_timeout for writes to the
    // client there too; proxy_send_timeout is for writes to the upstream).
    let b = Backend::start(|mut s| async move {
        let Some(head) = read_head(&mut s).await else {
            return;
        };
        let answer = if head.contains("Upgrade: websocket") {
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
                .to_string()
        } else {
            format!("HTTP/1.1 200 OK\r\nContent-Length: {LARGE}\r\n\r\n")
        };
        if s.write_all(answer.as_bytes()).await.is_ok() {
            flood(&mut s).await;
        }
    })
    .await;
    let upgrade = "proxy_http_version 1.1; proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection upgrade;";
    // The default is 60s: everything would arrive once the client reads again.
    for (what, timeout) in [("default", ""), ("send_timeout 1s", "send_timeout 1s;")] {
        let p = directive_kit::proxy(&[b.addr], timeout, upgrade);
        let mut s = send(p.port, GET_CLOSE).await;
        let n = read_after_pause(&mut s, Duration::from_secs(4)).await;
        let head = "HTTP/1.1 200 OK\r\n".len();
        if timeout.is_empty() {
            assert!(n > LARGE, "{what}: {n} bytes");
        } else {
            assert!(n > head && n < LARGE, "{what}: {n} bytes");
        }
    }
    let p = directive_kit::proxy(&[b.addr], "send_timeout 1s;", upgrade);
    let mut s = send(
        p.port,
        b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    )
    .await;
    let head = tokio::time::timeout(T, read_head(&mut s)).await.unwrap();
    assert!(head.is_some_and(|h| h.starts_with("HTTP/1.1 101 ")));
    let n = read_after_pause(&mut s, Duration::from_secs(4)).await;
    assert!(n < LARGE, "tunnel: {n} bytes");
}

// effect: tcp_nodelay
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_nodelay_is_set_on_the_client_and_upstream_sockets_as_configured() {
    // The backend notes the proxy's address on the upstream connection and holds it open.
    let seen: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
    let s2 = seen.clone();
    let b = Backend::start(move |mut s| {
        let seen = s2.clone();
        async move {
            if read_head(&mut s).await.is_some() {
                *seen.lock().unwrap() = s.peer_addr().ok();
            }
            let mut sink = Vec::new();
            let _ = s.read_to_end(&mut sink).await;
        }
    })
    .await;
    // nginx sets TCP_NODELAY (never clears it) when the location serving a request has
    // tcp_nodelay on, on the upstream connection too (streamed bodies, tunnels).
    let cases = [
        ("", "", true),
        ("tcp_nodelay off;", "", false),
        ("tcp_nodelay off;", "tcp_nodelay on;", true),
        ("", "tcp_nodelay off;", false),
    ];
    for (server, location, on) in cases {
        *seen.lock().unwrap() = None;
        let p = directive_kit::proxy(&[b.addr], server, location);
        let c = send(p.port, GET).await;
        wait_for("the request at the backend", || {
            seen.lock().unwrap().is_some()
        })
        .await;
        let upstream_local = seen.lock().unwrap().unwrap();
        let listen = SocketAddr::from(([127, 0, 0, 1], p.port));
        let client_side = directive_kit::proxy_socket(p.pid(), listen, c.local_addr().unwrap())
            .expect("the proxy's client socket");
        let upstream_side = directive_kit::proxy_socket(p.pid(), upstream_local, b.addr)
            .expect("the proxy's upstream socket");
        let nodelay = |fd: &std::os::fd::OwnedFd| socket2::SockRef::from(fd).tcp_nodelay().unwrap();
        let what = format!("server {server:?}, location {location:?}");
        assert_eq!(nodelay(&client_side), on, "{what}: client socket");
        assert_eq!(nodelay(&upstream_side), on, "{what}: upstream socket");
    }
}
