//! Faults and edge cases through a running ringproxy, with scripted backends (tokio): smuggling
//! inputs are refused and never reach the backend, a backend that refuses an upgrade is relayed
//! as an ordinary response, 502/504, a reset mid-tunnel, half-close both ways, the idle timeout,
//! consistent hashing across shards, and graceful/fast stops.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::Proxy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const T: Duration = Duration::from_secs(20);

#[derive(Clone, Copy)]
enum Script {
    /// Answer every request with this response and close.
    Answer(&'static [u8]),
    /// Accept and never answer.
    Silent,
    /// Answer 101, read one byte through the tunnel (the client has its 101), then reset.
    UpgradeThenReset,
    /// Answer 101, read until the client's FIN, then send "bye" and close.
    UpgradeThenBye,
    /// Answer 101, then echo bytes until closed.
    UpgradeEcho,
    /// Answer 200 with this backend's id as the body.
    Id(u8),
    /// Answer 101 and `FLOOD` bytes of a pattern at once, then close.
    UpgradeThenFlood,
}

/// Bytes the flooding backend sends: far more than the socket buffers, so the proxy's writes to
/// a client that is not reading must block and resume.
const FLOOD: usize = 8 << 20;

fn flood_byte(i: usize) -> u8 {
    (i % 251) as u8
}

/// The flooding backend's whole answer, the 101 and the flood in one buffer made before any
/// connection: built per connection, the 8 MiB could take longer than the tunnel's 1 s idle
/// timeout on a loaded machine, and the proxy would rightly close a tunnel still silent.
fn flood_reply() -> &'static [u8] {
    static REPLY: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    REPLY.get_or_init(|| {
        let mut r = UPGRADED.to_vec();
        r.extend((0..FLOOD).map(flood_byte));
        r
    })
}

struct Backend {
    addr: std::net::SocketAddr,
    conns: Arc<AtomicUsize>,
    /// `Script::Answer`: per finished connection, every byte that came after the request head
    /// up to the proxy's close.
    after_head: Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
}

async fn read_head(s: &mut TcpStream) -> Vec<u8> {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut b).await {
            Ok(1) => head.push(b[0]),
            _ => break,
        }
    }
    head
}

const UPGRADED: &[u8] =
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";

async fn backend(script: Script) -> Backend {
    if matches!(script, Script::UpgradeThenFlood) {
        flood_reply();
    }
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let conns = Arc::new(AtomicUsize::new(0));
    let after_head = Arc::new(std::sync::Mutex::new(Vec::new()));
    let c2 = conns.clone();
    let a2 = after_head.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            c2.fetch_add(1, Ordering::SeqCst);
            let after_head = a2.clone();
            tokio::spawn(async move {
                let _ = read_head(&mut s).await;
                match script {
                    Script::Answer(r) => {
                        let _ = s.write_all(r).await;
                        // Without `keepalive` the proxy closes its side after the response.
                        let mut rest = Vec::new();
                        let _ = tokio::time::timeout(T, s.read_to_end(&mut rest)).await;
                        after_head.lock().unwrap().push(rest);
                    }
                    Script::Silent => tokio::time::sleep(T).await,
                    Script::UpgradeThenReset => {
                        let _ = s.write_all(UPGRADED).await;
                        let mut go = [0u8; 1];
                        let _ = tokio::time::timeout(T, s.read_exact(&mut go)).await;
                        let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
                        drop(s);
                    }
                    Script::UpgradeThenBye => {
                        let _ = s.write_all(UPGRADED).await;
                        let mut sink = Vec::new();
                        let _ = s.read_to_end(&mut sink).await;
                        let _ = s
                            .write_all(format!("bye after {}", sink.len()).as_bytes())
                            .await;
                        let _ = s.shutdown().await;
                    }
                    Script::UpgradeEcho => {
                        let _ = s.write_all(UPGRADED).await;
                        let mut b = [0u8; 4096];
                        while let Ok(n) = s.read(&mut b).await {
                            if n == 0 || s.write_all(&b[..n]).await.is_err() {
                                break;
                            }
                        }
                    }
                    Script::UpgradeThenFlood => {
                        let _ = s.write_all(flood_reply()).await;
                        let _ = s.shutdown().await;
                    }
                    Script::Id(id) => {
                        let r = format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: close\r\n\r\n{id}"
                        );
                        let _ = s.write_all(r.as_bytes()).await;
                    }
                }
            });
        }
    });
    Backend {
        addr,
        conns,
        after_head,
    }
}

fn conf(
    port: u16,
    servers: &[std::net::SocketAddr],
    extra_upstream: &str,
    extra_loc: &str,
) -> String {
    let read_timeout = if extra_loc.contains("proxy_read_timeout") {
        ""
    } else {
        "proxy_read_timeout 1s;"
    };
    let servers: String = servers
        .iter()
        .map(|a| format!("        server {a};\n"))
        .collect();
    format!(
        "events {{}}\nhttp {{\n    upstream b {{\n{servers}        {extra_upstream}\n    }}\n    server {{\n        listen 127.0.0.1:{port};\n        location / {{\n            proxy_pass http://b;\n            proxy_http_version 1.1;\n            proxy_set_header Upgrade $http_upgrade;\n            proxy_set_header Connection \"upgrade\";\n            proxy_connect_timeout 2s;\n            {read_timeout}\n            {extra_loc}\n        }}\n    }}\n}}\n"
    )
}

async fn start(script: Script, extra_loc: &str) -> (Backend, Proxy) {
    let b = backend(script).await;
    let port = common::free_port();
    let p = Proxy::start(&conf(port, &[b.addr], "", extra_loc), port, "", &[]);
    (b, p)
}

/// Sends `raw`; the whole response up to the proxy's close, which must be an end of stream
/// (FIN), not a reset: as nginx's lingering close, the proxy reads what the client sent after a
/// refused head before closing, so no unread data turns its close into a reset that could
/// destroy the response before the client reads it.
async fn roundtrip(port: u16, raw: &[u8]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(raw).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(T, s.read_to_end(&mut out))
        .await
        .expect("closed in time")
        .expect("an end of stream, not a reset");
    String::from_utf8_lossy(&out).into_owned()
}

const UPGRADE_REQ: &[u8] = b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggling_inputs_are_refused_and_never_forwarded() {
    let (b, p) = start(
        Script::Answer(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
        "",
    )
    .await;
    let cases: &[(&[u8], &str)] = &[
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "400"),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello", "400"),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello", "400"),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\nhello", "400"),
        // nginx 1.22.1 answers an unknown Transfer-Encoding with 501 (checked by hand).
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", "501"),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX-Folded: a\r\n b\r\n\r\n", "400"),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX-Space : a\r\n\r\n", "400"),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX-Nul: a\0b\r\n\r\n", "400"),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX-Cr: a\rb\r\n\r\n", "400"),
        (b"GET / HTTP/1.1\r\n\r\n", "400"),
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "400"),
        // h2c upgrade: a smuggling vector, refused unless proxy_allow_upgrade lists it.
        (b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n", "400"),
    ];
    for (raw, status) in cases {
        let r = roundtrip(p.port, raw).await;
        assert!(
            r.starts_with(&format!("HTTP/1.1 {status} ")),
            "{:?} -> {r}",
            String::from_utf8_lossy(raw)
        );
    }
    assert_eq!(
        b.conns.load(Ordering::SeqCst),
        0,
        "a refused request reached the backend"
    );
    // The same proxy forwards a well-formed request.
    let r = roundtrip(
        p.port,
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 200 OK"), "{r}");
    assert_eq!(b.conns.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_upgrade_is_relayed_and_early_bytes_are_not_forwarded() {
    for (answer, status) in [
        (
            &b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nno"[..],
            "200",
        ),
        (
            &b"HTTP/1.1 426 Upgrade Required\r\nContent-Length: 0\r\n\r\n"[..],
            "426",
        ),
    ] {
        let (b, p) = start(Script::Answer(answer), "").await;
        let mut req = UPGRADE_REQ.to_vec();
        // A WebSocket frame sent before the 101 (an empty masked text frame).
        req.extend_from_slice(b"\x81\x80\0\0\0\0");
        let r = roundtrip(p.port, &req).await;
        assert!(r.starts_with(&format!("HTTP/1.1 {status} ")), "{r}");
        assert!(!r.contains("101"), "{r}");
        // The backend got the head and nothing after it, on its only connection: the frame
        // was neither sent on as tunnel data nor as another request. (Stopping the proxy ends
        // the backend's read if the proxy kept its side open.)
        drop(p);
        let deadline = std::time::Instant::now() + T;
        while b.after_head.lock().unwrap().is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "the backend never saw the end"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(b.conns.load(Ordering::SeqCst), 1, "{status}");
        assert_eq!(
            *b.after_head.lock().unwrap(),
            [Vec::<u8>::new()],
            "{status}: bytes after the head reached the backend"
        );
    }
}

// effect: proxy_read_timeout
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_down_is_502_and_slow_is_504() {
    let dead = common::free_port();
    let port = common::free_port();
    let dead_addr: std::net::SocketAddr = format!("127.0.0.1:{dead}").parse().unwrap();
    let p = Proxy::start(&conf(port, &[dead_addr], "", ""), port, "", &[]);
    let r = roundtrip(port, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert!(r.starts_with("HTTP/1.1 502 Bad Gateway\r\n"), "{r}");
    assert!(
        p.stderr()
            .contains("connect() failed (111: Connection refused) while connecting to upstream"),
        "{}",
        p.stderr()
    );

    let (_b, p) = start(Script::Silent, "").await;
    let r = roundtrip(p.port, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert!(r.starts_with("HTTP/1.1 504 Gateway Time-out\r\n"), "{r}");
}

async fn upgrade(port: u16) -> TcpStream {
    upgrade_as(port, UPGRADE_REQ).await
}

/// Sends the upgrade request `req`; the connection once its 101 has been read.
async fn upgrade_as(port: u16, req: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(req).await.unwrap();
    let head = tokio::time::timeout(T, read_head(&mut s)).await.unwrap();
    assert!(
        head.starts_with(b"HTTP/1.1 101 "),
        "{}",
        String::from_utf8_lossy(&head)
    );
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_mid_tunnel_closes_the_client() {
    let (_b, p) = start(Script::UpgradeThenReset, "").await;
    let mut s = upgrade(p.port).await;
    // The backend resets once this byte has come through the tunnel.
    s.write_all(b"x").await.unwrap();
    let mut buf = [0u8; 16];
    let r = tokio::time::timeout(T, s.read(&mut buf))
        .await
        .expect("closed in time");
    // An end of stream, not a reset: the reset is the backend's, and as nginx the proxy ends
    // the client's side with an ordinary close (it read everything the client sent, so the
    // kernel sends a FIN; only unread data or SO_LINGER 0 would make it a reset).
    assert_eq!(r.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_close_is_passed_on_both_ways() {
    for path in ["off", "on", "auto"] {
        let (_b, p) = start(Script::UpgradeThenBye, &format!("proxy_splice {path};")).await;
        let mut s = upgrade(p.port).await;
        s.write_all(b"12345").await.unwrap();
        // Client -> backend FIN; the backend still answers on the other direction.
        s.shutdown().await.unwrap();
        let mut out = Vec::new();
        tokio::time::timeout(T, s.read_to_end(&mut out))
            .await
            .expect("in time")
            .unwrap();
        assert_eq!(out, b"bye after 5", "splice {path}");
    }
}

// effect: proxy_read_timeout
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_tunnel_is_closed_after_proxy_read_timeout() {
    let (_b, p) = start(Script::UpgradeEcho, "").await;
    let mut s = upgrade(p.port).await;
    // The tunnel's last activity is after this instant (the proxy moves "ping" after we send it).
    let sent = std::time::Instant::now();
    s.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    tokio::time::timeout(T, s.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf, b"ping");
    // proxy_read_timeout is 1s: the silent tunnel must be closed well within the deadline,
    // and not before the timeout.
    let r = tokio::time::timeout(T, s.read(&mut buf))
        .await
        .expect("closed by the proxy");
    let silent = sent.elapsed();
    // An end of stream: as nginx (reset_timedout_connection off), a timed-out connection is
    // closed normally, and the proxy had read all the client sent.
    assert_eq!(r.unwrap(), 0);
    assert!(silent >= Duration::from_secs(1), "closed after {silent:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_blocked_on_a_paused_reader_is_not_an_idle_tunnel() {
    // proxy_read_timeout 1s, proxy_send_timeout 30s: a client that stops reading for longer
    // than the read timeout blocks the proxy's writes; as in nginx, only the send timeout
    // applies then, and every byte arrives once the client reads again.
    let (_b, p) = start(Script::UpgradeThenFlood, "proxy_send_timeout 30s;").await;
    let mut s = upgrade(p.port).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let mut got = Vec::with_capacity(FLOOD);
    tokio::time::timeout(T, s.read_to_end(&mut got))
        .await
        .expect("in time")
        .unwrap();
    assert_eq!(got.len(), FLOOD, "the tunnel was closed while blocked");
}

// effect: hash
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistent_hash_picks_the_same_peer_on_every_shard() {
    let (b1, b2) = (backend(Script::Id(1)).await, backend(Script::Id(2)).await);
    let port = common::free_port();
    // rewrite_log writes one notice per request, with the shard that served it (`pid#shard`).
    let p = Proxy::start(
        &conf(
            port,
            &[b1.addr, b2.addr],
            "hash $remote_addr consistent;",
            "rewrite_log on; rewrite ^(.*)$ $1 break;",
        ),
        port,
        "worker_processes 2; error_log logs/error.log notice;",
        &[],
    );
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..40 {
        let r = roundtrip(
            p.port,
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        )
        .await;
        seen.insert(r.chars().last().unwrap());
    }
    assert_eq!(
        seen.len(),
        1,
        "one client address must map to one peer: {seen:?}"
    );
    assert_eq!(
        b1.conns.load(Ordering::SeqCst) + b2.conns.load(Ordering::SeqCst),
        40
    );
    // Both shards served some of the 40 connections (SO_REUSEPORT spreads them by source port:
    // all 40 on one shard has a chance of 2^-39).
    let log = p.stderr();
    let shards: std::collections::BTreeSet<&str> = log
        .lines()
        .filter(|l| l.contains("[notice]") && l.contains(" matches \"/\""))
        .filter_map(|l| l.split_once("] ")?.1.split_once(": *")?.0.split_once('#'))
        .map(|(_, shard)| shard)
        .collect();
    assert_eq!(shards.len(), 2, "shards that served: {shards:?}\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quit_lets_open_tunnels_finish_and_term_stops_at_once() {
    // Not a WebSocket upgrade: those are closed with a closing handshake (tests/drain.rs).
    let loc = "proxy_read_timeout 30s; proxy_allow_upgrade tcp-echo;";
    let (_b, p) = start(Script::UpgradeEcho, loc).await;
    let port = p.port;
    let req = b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: tcp-echo\r\nConnection: Upgrade\r\n\r\n";
    let mut s = upgrade_as(port, req).await;
    let pid = p.pid();
    ringproxy::sys::kill(pid, libc::SIGQUIT).unwrap();
    // New connections are refused once the listeners close...
    let deadline = std::time::Instant::now() + T;
    while TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "still accepting after QUIT"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // ...while the open tunnel keeps working.
    s.write_all(b"still").await.unwrap();
    let mut buf = [0u8; 5];
    tokio::time::timeout(T, s.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf, b"still");
    drop(s);
    let status = p.stop_with(0, T);
    assert!(status.success(), "{status}");

    let (_b, p) = start(Script::UpgradeEcho, "proxy_read_timeout 30s;").await;
    let _s = upgrade(p.port).await;
    let status = p.stop_with(libc::SIGTERM, T);
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_gets_every_byte_in_order() {
    for path in ["off", "on", "auto"] {
        let (_b, p) = start(
            Script::UpgradeThenFlood,
            &format!("proxy_splice {path}; proxy_read_timeout 10s;"),
        )
        .await;
        let mut s = upgrade(p.port).await;
        // Not reading for a while: the proxy's writes to us block (backpressure).
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut got = Vec::with_capacity(FLOOD);
        tokio::time::timeout(T, s.read_to_end(&mut got))
            .await
            .expect("in time")
            .unwrap();
        assert_eq!(got.len(), FLOOD, "splice {path}");
        let bad = got
            .iter()
            .enumerate()
            .position(|(i, &b)| b != flood_byte(i));
        assert_eq!(bad, None, "splice {path}: first corrupted byte");
    }
}
