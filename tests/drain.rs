//! The graceful stop of WebSocket tunnels (QUIT): each client receives a Close 1001 as from a
//! server and the backend a masked Close 1001 as from a client, at a random moment of
//! `worker_shutdown_spread`; a frame in flight is finished first; a side that never answers its
//! Close is closed after the short wait; other upgrades are cut at `worker_shutdown_timeout`.
//!
//! Real sockets: tokio-tungstenite clients (which check framing and answer a Close) through
//! ringproxy to a recording backend (tokio-tungstenite as a server, which refuses unmasked
//! client frames), or raw sockets where the test must see exact bytes.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::echo::Server;
use common::Proxy;
use common::{open_ws as open, WsClient as Client};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// Deadline of single steps.
const T: Duration = Duration::from_secs(20);

fn conf(main: &str, port: u16, backend: SocketAddr, loc: &str) -> String {
    format!(
        "{main}\nevents {{ worker_connections 2048; }}\nhttp {{\n    access_log off;\n    server {{\n        listen 127.0.0.1:{port};\n        location / {{\n            proxy_pass http://{backend};\n            proxy_http_version 1.1;\n            proxy_set_header Upgrade $http_upgrade;\n            proxy_set_header Connection \"upgrade\";\n            proxy_read_timeout 120s;\n            {loc}\n        }}\n    }}\n}}\n"
    )
}

/// What the recording backend saw: the close codes of the Close frames it received, and the
/// errors its WebSocket layer raised (an unmasked frame from the proxy would be one).
#[derive(Default)]
struct Seen {
    closes: Vec<u16>,
    errors: Vec<String>,
}

/// A WebSocket backend that echoes messages and records Close frames (answering them).
fn recording_backend() -> (Server, Arc<Mutex<Seen>>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let rec = seen.clone();
    let server = Server::start(
        "recording",
        Arc::new(move |mut s: TcpStream| {
            let rec = rec.clone();
            Box::pin(async move {
                let Some(head) = common::read_head(&mut s).await else {
                    return;
                };
                let reply = switching_protocols(&head);
                if s.write_all(reply.as_bytes()).await.is_err() {
                    return;
                }
                let mut ws = WebSocketStream::from_raw_socket(s, Role::Server, None).await;
                while let Some(m) = ws.next().await {
                    match m {
                        Ok(Message::Close(frame)) => {
                            let code = frame.map_or(0, |f| u16::from(f.code));
                            rec.lock().unwrap().closes.push(code);
                        }
                        Ok(m @ (Message::Text(_) | Message::Binary(_))) => {
                            if ws.send(m).await.is_err() {
                                return;
                            }
                        }
                        Ok(_) => {}
                        Err(e) => {
                            rec.lock().unwrap().errors.push(e.to_string());
                            return;
                        }
                    }
                }
            })
        }),
    );
    (server, seen)
}

/// Reads until the Close frame; returns its code (tungstenite answers it).
async fn close_code(ws: &mut Client) -> u16 {
    loop {
        match ws.next().await {
            Some(Ok(Message::Close(f))) => return f.map_or(0, |f| u16::from(f.code)),
            Some(Ok(_)) => {}
            other => panic!("connection ended without a Close frame: {other:?}"),
        }
    }
}

// effect: worker_shutdown_spread
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quit_closes_every_websocket_with_going_away_spread_over_the_window() {
    const N: usize = 200;
    const SPREAD: Duration = Duration::from_secs(8);
    let (_backend, seen) = recording_backend();
    let port = common::free_port();
    let main = "worker_processes 2; worker_shutdown_spread 8s; worker_shutdown_timeout 60s;";
    let p = Proxy::start(&conf(main, port, _backend.addr, ""), port, "", &[]);
    let mut clients = Vec::new();
    for _ in 0..N {
        clients.push(open(port).await);
    }
    let quit = Instant::now();
    ringproxy::sys::kill(p.pid(), libc::SIGQUIT).unwrap();
    let waits: Vec<_> = clients
        .into_iter()
        .map(|mut ws| {
            tokio::spawn(async move {
                let code = tokio::time::timeout(SPREAD + T, close_code(&mut ws))
                    .await
                    .expect("a Close within the window");
                let at = quit.elapsed();
                // The closing handshake's end: the proxy closes the connection.
                let end = tokio::time::timeout(T, async { while ws.next().await.is_some() {} });
                end.await.expect("the proxy closes after the handshake");
                (code, at)
            })
        })
        .collect();
    let exit = tokio::task::spawn_blocking(move || {
        let status = p.stop_with(0, SPREAD + T);
        (status, quit.elapsed())
    });
    let mut times = Vec::new();
    for w in waits {
        let (code, at) = w.await.unwrap();
        assert_eq!(code, 1001, "Going Away");
        times.push(at);
    }
    let (status, exited) = exit.await.unwrap();
    assert!(status.success(), "{status}");
    // Exits once the tunnels are closed, long before the hard limit.
    assert!(exited < Duration::from_secs(40), "exited after {exited:?}");
    times.sort();
    let (first, last) = (times[0], times[N - 1]);
    // Spread over the window, not at once: uniform over 8 s spans more than 5.5 s with
    // overwhelming odds (a default 5 s window could not), and no second holds half of them.
    assert!(
        last - first > Duration::from_millis(5500),
        "closes between {first:?} and {last:?}"
    );
    assert!(
        last < SPREAD + Duration::from_secs(8),
        "last close at {last:?}"
    );
    for w in times.windows(N / 2) {
        assert!(
            w[N / 2 - 1] - w[0] > Duration::from_secs(1),
            "half the closes within one second: {:?}..{:?}",
            w[0],
            w[N / 2 - 1]
        );
    }
    let deadline = Instant::now() + T;
    loop {
        let done = {
            let s = seen.lock().unwrap();
            assert!(
                s.errors.is_empty(),
                "{} backend errors, the first: {:?}",
                s.errors.len(),
                s.errors.first()
            );
            assert!(s.closes.iter().all(|&c| c == 1001), "{:?}", s.closes);
            assert!(
                s.closes.len() == N || Instant::now() < deadline,
                "the backend got {} Close frames of {N}",
                s.closes.len()
            );
            s.closes.len() == N
        };
        if done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// After QUIT: waits until the proxy refuses new connections (its stop has begun, and with
/// it the drain), then a little more for the sweeper's tick.
async fn until_stopping(port: u16) {
    let deadline = Instant::now() + T;
    while TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
        assert!(Instant::now() < deadline, "still accepting after QUIT");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
}

/// A raw WebSocket backend: with its 101 it sends the first half of one large binary frame,
/// the rest when told, then reads what the proxy sends and reports it (up to its close).
async fn half_frame_backend(
    len: usize,
    rest: tokio::sync::oneshot::Receiver<()>,
    got: tokio::sync::oneshot::Sender<Vec<u8>>,
) -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let head = common::read_head(&mut s).await.unwrap();
        let reply = switching_protocols(&head);
        let mut frame = vec![0x82, 127];
        frame.extend_from_slice(&(len as u64).to_be_bytes());
        frame.extend(common::big(len));
        let half = frame.len() / 2;
        // In one write with the 101: the proxy reads the frame's start with the head and
        // forwards it before the tunnel starts, which must still know where the frame ends.
        let mut first = reply.into_bytes();
        first.extend_from_slice(&frame[..half]);
        s.write_all(&first).await.unwrap();
        rest.await.unwrap();
        s.write_all(&frame[half..]).await.unwrap();
        let mut seen = Vec::new();
        let _ = tokio::time::timeout(T, s.read_to_end(&mut seen)).await;
        let _ = got.send(seen);
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_frame_in_flight_arrives_whole_before_the_close() {
    const LEN: usize = 4 << 20;
    let mut frame = vec![0x82, 127];
    frame.extend_from_slice(&(LEN as u64).to_be_bytes());
    frame.extend(common::big(LEN));
    for path in ["off", "on", "auto"] {
        let (rest_tx, rest_rx) = tokio::sync::oneshot::channel();
        let (got_tx, got_rx) = tokio::sync::oneshot::channel();
        let backend = half_frame_backend(LEN, rest_rx, got_tx).await;
        let port = common::free_port();
        let main = "worker_shutdown_spread 0s; worker_shutdown_timeout 60s;";
        let loc = format!("proxy_splice {path};");
        let p = Proxy::start(&conf(main, port, backend, &loc), port, "", &[]);
        let mut s = raw_upgrade(port, "websocket").await;
        // The frame has begun to arrive: the drain begins inside it.
        let mut got = vec![0u8; 1024];
        tokio::time::timeout(T, s.read_exact(&mut got))
            .await
            .unwrap()
            .unwrap();
        ringproxy::sys::kill(p.pid(), libc::SIGQUIT).unwrap();
        until_stopping(port).await;
        rest_tx.send(()).unwrap();
        // The whole frame, then the Close, and nothing between.
        let mut rest = vec![0u8; frame.len() + 4 - got.len()];
        tokio::time::timeout(T, s.read_exact(&mut rest))
            .await
            .expect("the frame and the Close in time")
            .unwrap();
        got.extend(rest);
        let bad = got.iter().zip(&frame).position(|(a, b)| a != b);
        assert_eq!(bad, None, "splice {path}: first changed byte of the frame");
        assert_eq!(
            got[frame.len()..],
            [0x88, 0x02, 0x03, 0xE9],
            "splice {path}: a Close 1001 right after the frame"
        );
        // Our answer (masked, as a client's) ends the handshake.
        s.write_all(&[0x88, 0x82, 1, 2, 3, 4, 0x03 ^ 1, 0xE9 ^ 2])
            .await
            .unwrap();
        let mut after = Vec::new();
        tokio::time::timeout(T, s.read_to_end(&mut after))
            .await
            .unwrap()
            .unwrap();
        assert!(after.is_empty(), "splice {path}: {after:x?}");
        // The backend got exactly one masked Close 1001 and nothing else.
        let seen = tokio::time::timeout(T, got_rx).await.unwrap().unwrap();
        assert_eq!(seen.len(), 8, "splice {path}: backend got {seen:x?}");
        assert_eq!(&seen[..2], &[0x88, 0x82], "a masked Close of 2 bytes");
        let m = &seen[2..6];
        assert_eq!(
            [seen[6] ^ m[0], seen[7] ^ m[1]],
            [0x03, 0xE9],
            "status 1001"
        );
        let status = p.stop_with(0, T);
        assert!(status.success(), "{status}");
    }
}

/// Upgrades a raw connection through the proxy (the handshake by hand).
async fn raw_upgrade(port: u16, protocol: &str) -> TcpStream {
    raw_upgrade_at(port, "/", protocol).await
}

/// Upgrades a raw connection to `path` through the proxy.
async fn raw_upgrade_at(port: u16, path: &str, protocol: &str) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: a\r\nUpgrade: {protocol}\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let head = tokio::time::timeout(T, common::read_head(&mut s))
        .await
        .unwrap()
        .unwrap();
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_answers_the_close_is_closed_after_the_short_wait() {
    let echo = common::Echo::start();
    let port = common::free_port();
    let main = "worker_shutdown_spread 0s; worker_shutdown_timeout 60s;";
    let p = Proxy::start(&conf(main, port, echo.addr, ""), port, "", &[]);
    let mut s = raw_upgrade(port, "websocket").await;
    let quit = Instant::now();
    ringproxy::sys::kill(p.pid(), libc::SIGQUIT).unwrap();
    let mut close = [0u8; 4];
    tokio::time::timeout(T, s.read_exact(&mut close))
        .await
        .expect("the Close in time")
        .unwrap();
    assert_eq!(close, [0x88, 0x02, 0x03, 0xE9], "an unmasked Close 1001");
    // No answer: the proxy waits a little for one, then closes.
    let mut rest = Vec::new();
    let end = tokio::time::timeout(T, s.read_to_end(&mut rest))
        .await
        .expect("closed in time");
    let waited = quit.elapsed();
    assert!(end.is_ok(), "{end:?}");
    assert!(rest.is_empty(), "after the Close: {rest:x?}");
    // The wait (2 s) starts after QUIT, when the Close is sent.
    assert!(
        waited >= Duration::from_millis(1900),
        "closed {waited:?} after QUIT: no wait for the answer"
    );
    let status = p.stop_with(0, T);
    assert!(status.success(), "{status}");
    assert!(
        quit.elapsed() < Duration::from_secs(15),
        "the stop took {:?}",
        quit.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_websocket_upgrade_is_cut_at_worker_shutdown_timeout() {
    let backend = Server::raw_echo();
    let port = common::free_port();
    let main = "worker_shutdown_spread 0s; worker_shutdown_timeout 4s;";
    let loc = "proxy_allow_upgrade tcp-echo;";
    let p = Proxy::start(&conf(main, port, backend.addr, loc), port, "", &[]);
    let mut s = raw_upgrade(port, "tcp-echo").await;
    let quit = Instant::now();
    ringproxy::sys::kill(p.pid(), libc::SIGQUIT).unwrap();
    until_stopping(port).await;
    // Past the (empty) spread window the tunnel still carries bytes, unframed...
    common::echo::raw_echo_once(&mut s, b"\x88\x00still").await;
    // ...and is cut at the hard limit, with no Close frame.
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(T, s.read_to_end(&mut rest)).await;
    assert!(rest.is_empty(), "{rest:x?}");
    let status = p.stop_with(0, T);
    assert!(status.success(), "{status}");
    assert!(
        quit.elapsed() >= Duration::from_secs(4),
        "cut after {:?}",
        quit.elapsed()
    );
}

/// Sizes of the frames the flooding backend sends, in turn: every length form, small and
/// large, so the splice path peeks between frames and splices within them.
const SIZES: [usize; 6] = [10, 200, 70_000, 3000, 1 << 20, 126];

fn flood_payload(i: usize) -> Vec<u8> {
    let n = SIZES[i % SIZES.len()];
    (0..n).map(|k| ((k + i * 31) % 251) as u8).collect()
}

/// The backend's 101 answer to the upgrade request `head`.
fn switching_protocols(head: &str) -> String {
    let key = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("sec-websocket-key")
                .then(|| v.trim())
        })
        .unwrap_or_default();
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
        derive_accept_key(key.as_bytes())
    )
}

/// A raw WebSocket backend that sends binary frames (`flood_payload(0)`, `(1)`, ...) without
/// end, and reports every byte the proxy sends it (up to its close).
async fn flooding_backend(got: tokio::sync::oneshot::Sender<Vec<u8>>) -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let head = common::read_head(&mut s).await.unwrap();
        let reply = switching_protocols(&head);
        s.write_all(reply.as_bytes()).await.unwrap();
        let (mut r, mut w) = s.into_split();
        tokio::spawn(async move {
            for i in 0.. {
                let payload = flood_payload(i);
                let mut frame = Vec::new();
                let mut out = ws_frame_header(payload.len());
                frame.append(&mut out);
                frame.extend(payload);
                if w.write_all(&frame).await.is_err() {
                    return;
                }
            }
        });
        let mut seen = Vec::new();
        let _ = tokio::time::timeout(T, r.read_to_end(&mut seen)).await;
        let _ = got.send(seen);
    });
    addr
}

/// An unmasked binary frame's header for `len` payload bytes.
fn ws_frame_header(len: usize) -> Vec<u8> {
    let mut h = vec![0x82];
    if len < 126 {
        h.push(len as u8);
    } else if len <= 0xFFFF {
        h.push(126);
        h.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        h.push(127);
        h.extend_from_slice(&(len as u64).to_be_bytes());
    }
    h
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_streaming_when_the_drain_begins_stay_whole_on_every_path() {
    for path in ["off", "on", "auto"] {
        let (got_tx, got_rx) = tokio::sync::oneshot::channel();
        let backend = flooding_backend(got_tx).await;
        let port = common::free_port();
        let main = "worker_shutdown_spread 0s; worker_shutdown_timeout 60s;";
        let loc = format!("proxy_splice {path};");
        let p = Proxy::start(&conf(main, port, backend, &loc), port, "", &[]);
        let url = format!("ws://127.0.0.1:{port}/");
        let (mut ws, _) = tokio::time::timeout(T, tokio_tungstenite::connect_async(url.as_str()))
            .await
            .unwrap()
            .unwrap();
        let mut i = 0;
        let code = tokio::time::timeout(T, async {
            loop {
                match ws.next().await {
                    Some(Ok(Message::Binary(b))) => {
                        assert!(
                            b[..] == flood_payload(i)[..],
                            "splice {path}: message {i} changed ({} bytes)",
                            b.len()
                        );
                        i += 1;
                        if i == 20 {
                            ringproxy::sys::kill(p.pid(), libc::SIGQUIT).unwrap();
                        }
                    }
                    Some(Ok(Message::Close(f))) => return f.map_or(0, |f| u16::from(f.code)),
                    other => panic!("splice {path}: after {i} messages: {other:?}"),
                }
            }
        })
        .await
        .expect("the Close in time");
        assert_eq!(code, 1001, "splice {path}");
        assert!(i >= 20, "splice {path}: closed after {i} messages");
        let seen = tokio::time::timeout(T, got_rx).await.unwrap().unwrap();
        assert_eq!(seen.len(), 8, "splice {path}: backend got {seen:x?}");
        assert_eq!(&seen[..2], &[0x88, 0x82], "splice {path}: a masked Close");
        let status = p.stop_with(0, T);
        assert!(status.success(), "{status}");
    }
}

// A reload that lowers worker_processes retires shards with the same graceful stop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_retired_by_a_reload_close_their_websockets_the_same_way() {
    const N: usize = 24;
    let (backend, seen) = recording_backend();
    let port = common::free_port();
    let main = |n: usize| {
        format!("worker_processes {n}; worker_shutdown_spread 1s; error_log logs/error.log notice;")
    };
    let p = Proxy::start(&conf(&main(2), port, backend.addr, ""), port, "", &[]);
    let mut clients = Vec::new();
    for _ in 0..N {
        clients.push(open(port).await);
    }
    std::fs::write(
        p.dir.path().join("ringproxy.conf"),
        conf(&main(1), port, backend.addr, ""),
    )
    .unwrap();
    ringproxy::sys::kill(p.pid(), libc::SIGHUP).unwrap();
    // Each tunnel on the retired shard gets its Close within the window (1 s, and a wide
    // margin); one on the kept shard stays silent and still echoes.
    let waits: Vec<_> = clients
        .into_iter()
        .map(|mut ws| {
            tokio::spawn(async move {
                match tokio::time::timeout(Duration::from_secs(8), close_code(&mut ws)).await {
                    Ok(code) => {
                        assert_eq!(code, 1001, "Going Away");
                        while ws.next().await.is_some() {}
                        true
                    }
                    Err(_) => {
                        common::echo_each(&mut ws, [Message::text("kept")], "kept shard").await;
                        ws.close(None).await.unwrap();
                        while ws.next().await.is_some() {}
                        false
                    }
                }
            })
        })
        .collect();
    let mut closed = 0;
    for w in waits {
        closed += usize::from(w.await.unwrap());
    }
    // SO_REUSEPORT spreads connections by their addresses: all on one shard has odds 2^-23.
    assert!(0 < closed && closed < N, "{closed} of {N} tunnels closed");
    // The proxy's Close 1001 for each closed tunnel, the kept ones' own (no code) for the rest.
    let deadline = Instant::now() + T;
    while seen.lock().unwrap().closes.len() < N {
        assert!(
            Instant::now() < deadline,
            "the backend got too few Close frames"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let s = seen.lock().unwrap();
    assert!(s.errors.is_empty(), "{:?}", s.errors.first());
    let going_away = s.closes.iter().filter(|&&c| c == 1001).count();
    assert_eq!(going_away, closed, "{:?}", s.closes);
    assert!(
        p.stderr().contains("reconfigured: 1 shards"),
        "{}",
        p.stderr()
    );
}

/// Reads until the peer closes; fails on any byte or on no close within `limit`.
async fn closed_within(s: &mut TcpStream, limit: Duration, what: &str) {
    let mut rest = Vec::new();
    match tokio::time::timeout(limit, s.read_to_end(&mut rest)).await {
        Ok(_) => assert!(rest.is_empty(), "{what}: {rest:x?}"),
        Err(_) => panic!("{what}: still open after {limit:?}"),
    }
}

// With worker_shutdown_timeout set, a reload retires the old configuration as nginx's reload
// retires its workers: idle connections close at once, WebSocket tunnels get their Close 1001
// within the spread window, and the rest is cut at the timeout; the new configuration serves.
// effect: worker_shutdown_timeout
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_with_worker_shutdown_timeout_winds_the_old_configuration_down() {
    const TIMEOUT: Duration = Duration::from_secs(10);
    let (ws_backend, seen) = recording_backend();
    let raw_backend = Server::raw_echo();
    let port = common::free_port();
    let conf = |version: &str| {
        format!(
            "worker_shutdown_spread 1s; worker_shutdown_timeout 10s; error_log logs/error.log info;\n\
             events {{}}\nhttp {{\n access_log off;\n server {{\n  listen 127.0.0.1:{port};\n\
             location /v {{ return 200 \"{version}\"; }}\n\
             location / {{ proxy_pass http://{}; proxy_http_version 1.1;\n\
               proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection upgrade; }}\n\
             location /raw {{ proxy_pass http://{}; proxy_http_version 1.1;\n\
               proxy_set_header Upgrade tcp-echo; proxy_set_header Connection upgrade; }}\n\
             }}\n}}\n",
            ws_backend.addr, raw_backend.addr
        )
    };
    let p = Proxy::start(&conf("a"), port, "", &[]);
    let mut clients = Vec::new();
    for _ in 0..8 {
        clients.push(open(port).await);
    }
    // A literal `proxy_set_header Upgrade tcp-echo` lets that protocol through.
    let mut raw = raw_upgrade_at(port, "/raw", "tcp-echo").await;
    let mut kept_alive = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    kept_alive
        .write_all(b"GET /v HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let head = tokio::time::timeout(T, common::read_head(&mut kept_alive))
        .await
        .unwrap()
        .unwrap();
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    let mut body = [0u8; 1];
    kept_alive.read_exact(&mut body).await.unwrap();
    assert_eq!(&body, b"a");
    let mut silent = TcpStream::connect(("127.0.0.1", port)).await.unwrap();

    std::fs::write(p.dir.path().join("ringproxy.conf"), conf("b")).unwrap();
    let hup = Instant::now();
    ringproxy::sys::kill(p.pid(), libc::SIGHUP).unwrap();
    // The kept-alive connection takes no new request under the old configuration: it closes.
    closed_within(
        &mut kept_alive,
        TIMEOUT - Duration::from_secs(2),
        "keep-alive",
    )
    .await;
    assert!(hup.elapsed() < TIMEOUT, "closed only by the cut");
    // Every WebSocket gets its Going Away well before the cut.
    for mut ws in clients {
        let code = tokio::time::timeout(TIMEOUT, close_code(&mut ws)).await;
        assert_eq!(code.expect("a Close in time"), 1001);
    }
    assert!(hup.elapsed() < TIMEOUT, "Close frames came only at the cut");
    // The raw tunnel still carries bytes until the cut, then closes with nothing more.
    common::echo::raw_echo_once(&mut raw, b"still").await;
    closed_within(&mut raw, T, "raw tunnel").await;
    closed_within(&mut silent, T, "a connection that never sent a request").await;
    assert!(hup.elapsed() >= TIMEOUT, "cut early: {:?}", hup.elapsed());
    // New connections use the new configuration.
    let got = common::roundtrip(
        port,
        b"GET /v HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(got.ends_with("\r\n\r\nb"), "{got}");
    let deadline = Instant::now() + T;
    while seen.lock().unwrap().closes.len() < 8 {
        assert!(
            Instant::now() < deadline,
            "the backend got too few Close frames"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(seen.lock().unwrap().closes.iter().all(|&c| c == 1001));
}
