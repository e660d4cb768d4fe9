//! The upstream keep-alive pool through a running ringproxy (one shard), against a scripted
//! backend that counts the connections it accepts: `keepalive N` reuses one connection for
//! sequential requests, nothing is reused without it or when either side says close, when the
//! response was read until close, or after `keepalive_requests`; a connection the backend closed
//! while idle is never used, one it closes as the request arrives is retried on a new connection,
//! and idle connections close after `keepalive_timeout`. Also the other keep-alive directives:
//! `keepalive_time` on client connections and `proxy_socket_keepalive` (SO_KEEPALIVE).

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{read_head, Proxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const T: Duration = Duration::from_secs(20);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// HTTP/1.1 with Content-Length, as many requests per connection as the proxy sends.
    KeepAlive,
    /// Chunked responses, otherwise as `KeepAlive`.
    Chunked,
    /// Answers one request, then closes.
    CloseAfterOne,
    /// Answers the first request; reads the second and closes without answering.
    DropSecond,
    /// Says `Connection: close` but keeps the connection open.
    SaysClose,
    /// Answers `HTTP/1.0` with a length and keeps the connection open.
    Http10,
    /// No length: the body ends when the backend closes.
    UntilClose,
    /// `101` for an upgrade request (then echoes), keep-alive answers otherwise.
    Upgrade,
}

#[derive(Default)]
struct Counts {
    accepted: AtomicUsize,
    /// Connections the proxy closed while the backend waited for the next request.
    closed_by_proxy: AtomicUsize,
    heads: Mutex<Vec<String>>,
}

struct Backend {
    addr: std::net::SocketAddr,
    counts: Arc<Counts>,
}

impl Backend {
    fn accepted(&self) -> usize {
        self.counts.accepted.load(Ordering::SeqCst)
    }
}

async fn backend(mode: Mode) -> Backend {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let counts = Arc::new(Counts::default());
    let c2 = counts.clone();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else {
                return;
            };
            let id = c2.accepted.fetch_add(1, Ordering::SeqCst) + 1;
            tokio::spawn(serve(s, id, mode, c2.clone()));
        }
    });
    Backend { addr, counts }
}

async fn serve(mut s: TcpStream, id: usize, mode: Mode, counts: Arc<Counts>) {
    for req in 1.. {
        let Some(head) = read_head(&mut s).await else {
            counts.closed_by_proxy.fetch_add(1, Ordering::SeqCst);
            return;
        };
        counts.heads.lock().unwrap().push(head.clone());
        let body = format!("c{id}r{req}");
        let len = body.len();
        let answer = match mode {
            Mode::DropSecond if req == 2 => return,
            Mode::KeepAlive | Mode::CloseAfterOne | Mode::DropSecond => {
                format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\n\r\n{body}")
            }
            Mode::Upgrade if head.to_ascii_lowercase().contains("upgrade: websocket") => {
                let _ = s
                    .write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
                    .await;
                let mut b = [0u8; 1024];
                while let Ok(n) = s.read(&mut b).await {
                    if n == 0 || s.write_all(&b[..n]).await.is_err() {
                        break;
                    }
                }
                return;
            }
            Mode::Upgrade => format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\n\r\n{body}"),
            Mode::Chunked => format!(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{len:x}\r\n{body}\r\n0\r\n\r\n"
            ),
            Mode::SaysClose => format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n{body}"
            ),
            Mode::Http10 => format!("HTTP/1.0 200 OK\r\nContent-Length: {len}\r\n\r\n{body}"),
            Mode::UntilClose => format!("HTTP/1.1 200 OK\r\n\r\n{body}"),
        };
        if s.write_all(answer.as_bytes()).await.is_err() {
            return;
        }
        if matches!(mode, Mode::CloseAfterOne | Mode::UntilClose) {
            return;
        }
    }
}

/// A one-shard proxy in front of `b`; `upstream` and `location` add directives.
fn proxy(b: &Backend, upstream: &str, location: &str) -> Proxy {
    let port = common::free_port();
    let addr = b.addr;
    let conf = format!(
        "worker_processes 1;\nevents {{}}\nhttp {{\n    upstream b {{\n        server {addr};\n        {upstream}\n    }}\n    server {{\n        listen 127.0.0.1:{port};\n        location / {{\n            proxy_pass http://b;\n            proxy_read_timeout 5s;\n            {location}\n        }}\n    }}\n}}\n"
    );
    Proxy::start(&conf, port, "", &[])
}

/// nginx's keep-alive recipe: HTTP/1.1 and no `Connection: close` to the backend.
const KEEP: &str = "proxy_http_version 1.1; proxy_set_header Connection \"\";";

/// One GET on its own client connection; the whole response.
async fn get(port: u16) -> String {
    common::roundtrip(
        port,
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    .await
}

/// The body of a response, de-chunked.
fn body(r: &str) -> String {
    let (head, mut rest) = r.split_once("\r\n\r\n").unwrap();
    if !head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return rest.to_string();
    }
    let mut out = String::new();
    loop {
        let (size, after) = rest.split_once("\r\n").unwrap();
        let n = usize::from_str_radix(size, 16).unwrap();
        if n == 0 {
            return out;
        }
        out.push_str(&after[..n]);
        rest = &after[n + 2..];
    }
}

/// Sends `n` sequential requests, each must be a 200; returns the bodies.
async fn run(port: u16, n: usize) -> Vec<String> {
    let mut bodies = Vec::new();
    for _ in 0..n {
        let r = get(port).await;
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
        bodies.push(body(&r));
    }
    bodies
}

// effect: keepalive
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_requests_share_one_connection() {
    for mode in [Mode::KeepAlive, Mode::Chunked] {
        let b = backend(mode).await;
        let p = proxy(&b, "keepalive 4;", KEEP);
        let bodies = run(p.port, 5).await;
        assert_eq!(bodies, ["c1r1", "c1r2", "c1r3", "c1r4", "c1r5"]);
        assert_eq!(b.accepted(), 1);
        let heads = b.counts.heads.lock().unwrap().clone();
        assert!(heads.iter().all(|h| h.starts_with("GET / HTTP/1.1\r\n")
            && !h.to_ascii_lowercase().contains("connection:")));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_reused_without_keepalive_or_when_the_request_says_close() {
    // No `keepalive` in the upstream block.
    let b = backend(Mode::KeepAlive).await;
    let p = proxy(&b, "", KEEP);
    assert_eq!(run(p.port, 4).await, ["c1r1", "c2r1", "c3r1", "c4r1"]);
    assert_eq!(b.accepted(), 4);
    // `keepalive`, but nginx's default request (HTTP/1.0, Connection: close).
    let b = backend(Mode::KeepAlive).await;
    let p = proxy(&b, "keepalive 4;", "");
    run(p.port, 3).await;
    assert_eq!(b.accepted(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_that_end_the_connection_are_not_reused() {
    for mode in [Mode::SaysClose, Mode::Http10, Mode::UntilClose] {
        let b = backend(mode).await;
        let p = proxy(&b, "keepalive 4;", KEEP);
        assert_eq!(run(p.port, 3).await, ["c1r1", "c2r1", "c3r1"]);
        assert_eq!(b.accepted(), 3);
    }
}

// effect: keepalive_requests
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_requests_limits_the_requests_per_connection() {
    let b = backend(Mode::KeepAlive).await;
    let p = proxy(&b, "keepalive 4; keepalive_requests 2;", KEEP);
    let bodies = run(p.port, 5).await;
    assert_eq!(bodies, ["c1r1", "c1r2", "c2r1", "c2r2", "c3r1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_the_backend_closed_while_idle_is_not_used() {
    let b = backend(Mode::CloseAfterOne).await;
    let p = proxy(&b, "keepalive 4;", KEEP);
    for i in 1..=3 {
        // Wait until the backend has closed the previous connection (its task ended).
        let r = get(p.port).await;
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
        assert!(r.ends_with(&format!("c{i}r1")), "{r}");
    }
    assert_eq!(b.accepted(), 3);
    assert!(!p.stderr().contains("[error]"), "{}", p.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_connection_closed_under_the_request_is_retried_on_a_new_one() {
    let b = backend(Mode::DropSecond).await;
    let p = proxy(&b, "keepalive 4;", KEEP);
    // Every second request goes out on the cached connection, which the backend closes
    // without answering: the proxy sends it again on a new connection.
    // nginx 1.22.1 against the same backend: c1r1, c2r1, c3r1, and one error line per retry.
    assert_eq!(run(p.port, 3).await, ["c1r1", "c2r1", "c3r1"]);
    assert_eq!(b.accepted(), 3);
    let log = p.stderr();
    let lines = log.lines().filter(|l| l.contains("[error]")).count();
    assert_eq!(lines, 2, "{log}");
    assert!(
        log.contains(
            "upstream prematurely closed connection while reading response header from upstream"
        ),
        "{log}"
    );
    // A POST is not sent twice (nginx: non_idempotent is not in proxy_next_upstream): 502, as
    // nginx 1.22.1 answered here.
    // With non_idempotent listed it goes again, body included (it came with the head).
    let post = b"POST / HTTP/1.1\r\nHost: a\r\nConnection: close\r\nContent-Length: 2\r\n\r\nhi";
    for (next, status, connections) in [
        ("", "HTTP/1.1 502", 1),
        (
            "proxy_next_upstream error non_idempotent;",
            "HTTP/1.1 200",
            2,
        ),
    ] {
        let b = backend(Mode::DropSecond).await;
        let p = proxy(&b, "keepalive 4;", &format!("{KEEP} {next}"));
        run(p.port, 1).await;
        let out = common::roundtrip(p.port, post).await;
        assert!(out.starts_with(status), "{next}: {out}");
        assert_eq!(b.accepted(), connections, "{next}");
        if !next.is_empty() {
            // The retried POST carries its body again (framing included).
            let heads = b.counts.heads.lock().unwrap().clone();
            let last = heads.last().unwrap().to_ascii_lowercase();
            assert!(
                last.starts_with("post / ") && last.contains("\r\ncontent-length: 2\r\n"),
                "{heads:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_conns_slots_are_given_back_when_requests_end() {
    // `max_conns=1`: one connection at a time, not one for the process's life.
    for (upstream, location) in [("", ""), ("keepalive 2;", KEEP)] {
        let b = backend(Mode::KeepAlive).await;
        let port = common::free_port();
        let conf = format!(
            "worker_processes 1;\nevents {{}}\nhttp {{ upstream b {{ server {} max_conns=1; {upstream} }}
              server {{ listen 127.0.0.1:{port}; location / {{ proxy_pass http://b; {location} }} }} }}\n",
            b.addr
        );
        let p = Proxy::start(&conf, port, "", &[]);
        run(p.port, 5).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_cached_connection_does_not_count_against_its_peer() {
    let a = backend(Mode::DropSecond).await;
    let b = backend(Mode::KeepAlive).await;
    // Round robin over a and b: the third request reuses a's cached connection, which a closes.
    // nginx 1.22.1 counts that as a failure ("upstream server temporarily disabled") and sends
    // everything to b for fail_timeout; ringproxy keeps a in the rotation.
    let p = proxy(
        &a,
        &format!(
            "server {} max_fails=1 fail_timeout=30s; keepalive 4;",
            b.addr
        ),
        KEEP,
    );
    run(p.port, 6).await;
    assert!(a.accepted() >= 2, "a left the rotation: {}", p.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgraded_connection_is_never_pooled() {
    let b = backend(Mode::Upgrade).await;
    let upgrade = "proxy_http_version 1.1; proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection $http_connection;";
    let p = proxy(&b, "keepalive 4;", upgrade);
    let mut ws = TcpStream::connect(("127.0.0.1", p.port)).await.unwrap();
    ws.write_all(b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(T, ws.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 101"));
    ws.write_all(b"ping").await.unwrap();
    let mut echo = [0u8; 4];
    tokio::time::timeout(T, ws.read_exact(&mut echo))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&echo, b"ping");
    drop(ws);
    // Plain HTTP/1.0 requests (no Connection header: `$http_connection` is empty) share a
    // second connection.
    for r in 1..=3 {
        let out = common::roundtrip(p.port, b"GET / HTTP/1.0\r\nHost: a\r\n\r\n").await;
        assert!(
            out.starts_with("HTTP/1.1 200") && out.ends_with(&format!("c2r{r}")),
            "{out}"
        );
    }
    assert_eq!(b.accepted(), 2);
}

// effect: keepalive_timeout
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_close_after_keepalive_timeout() {
    let b = backend(Mode::KeepAlive).await;
    let p = proxy(&b, "keepalive 4; keepalive_timeout 1s;", KEEP);
    run(p.port, 2).await;
    assert_eq!(b.accepted(), 1);
    // The default keepalive_timeout is 60s: well past this deadline.
    let deadline = Instant::now() + Duration::from_secs(15);
    while b.counts.closed_by_proxy.load(Ordering::SeqCst) == 0 {
        assert!(
            Instant::now() < deadline,
            "the idle connection was not closed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The next request connects again.
    assert_eq!(run(p.port, 1).await, ["c2r1"]);
}

/// Reads one response with a Content-Length from a keep-alive client connection.
async fn read_response(s: &mut TcpStream) -> String {
    let head = tokio::time::timeout(T, read_head(s))
        .await
        .unwrap()
        .expect("a response head");
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length: ")
                .map(str::to_string)
        })
        .expect("content-length")
        .trim()
        .parse()
        .unwrap();
    let mut body = vec![0u8; len];
    tokio::time::timeout(T, s.read_exact(&mut body))
        .await
        .unwrap()
        .unwrap();
    format!("{head}{}", String::from_utf8_lossy(&body))
}

// effect: keepalive_time
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_connections_close_after_keepalive_time() {
    let b = backend(Mode::KeepAlive).await;
    let p = proxy(&b, "", "keepalive_time 3s; keepalive_timeout 60s;");
    let mut s = TcpStream::connect(("127.0.0.1", p.port)).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    // Answered within 3 s of the connection (3 s of margin for a loaded machine).
    let first = read_response(&mut s).await;
    assert!(first.contains("Connection: keep-alive"), "{first}");
    // The proxy accepted the connection before it answered, so 3.5 s after the answer the
    // connection is older than keepalive_time whatever the delays: nginx answers the second
    // request and closes.
    let answered = Instant::now();
    tokio::time::sleep_until((answered + Duration::from_millis(3500)).into()).await;
    s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let second = read_response(&mut s).await;
    assert!(second.contains("Connection: close"), "{second}");
    let mut rest = Vec::new();
    let n = tokio::time::timeout(T, s.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, 0);
}

/// The `tr` (timer) field of the /proc/net/tcp row for the connection `local` -> `remote`:
/// 0 none, 1 retransmit, 2 keep-alive.
fn tcp_timer(local: std::net::SocketAddr, remote: std::net::SocketAddr) -> Option<u8> {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let hex = |a: std::net::SocketAddr| format!(":{:04X}", a.port());
    table.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f[1].ends_with(&hex(local)) && f[2].ends_with(&hex(remote)))
            .then(|| u8::from_str_radix(&f[5][..2], 16).unwrap())
    })
}

// effect: proxy_socket_keepalive
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_socket_keepalive_sets_so_keepalive_on_upstream_sockets() {
    for on in [true, false] {
        // A backend that reads the request and holds the connection without answering.
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let b = Backend {
            addr: l.local_addr().unwrap(),
            counts: Arc::default(),
        };
        let flag = if on { "on" } else { "off" };
        let p = proxy(&b, "", &format!("proxy_socket_keepalive {flag};"));
        let port = p.port;
        let client = tokio::spawn(async move { get(port).await });
        let (mut s, proxy_side) = tokio::time::timeout(T, l.accept()).await.unwrap().unwrap();
        read_head(&mut s).await.expect("the request");
        // Wait until the request is acknowledged (no retransmit timer), then read the timer.
        let deadline = Instant::now() + T;
        let timer = loop {
            match tcp_timer(proxy_side, b.addr) {
                Some(1) | None => {}
                Some(t) => break t,
            }
            assert!(Instant::now() < deadline, "no settled row in /proc/net/tcp");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(
            timer,
            if on { 2 } else { 0 },
            "proxy_socket_keepalive {flag}"
        );
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            .await
            .unwrap();
        assert!(client.await.unwrap().ends_with("ok"));
    }
}
