//! Binary upgrade (USR2, then WINCH/QUIT of the old process), as nginx's: the new binary
//! accepts on the old one's sockets, so a connect storm across the upgrade sees no connection
//! refused or reset; plain tunnels open on the old process move to the new binary at its QUIT
//! (no byte lost, no Close), a wss tunnel, or any tunnel when the new binary is gone, is
//! drained (Close 1001); a new binary that fails to start leaves the old one serving with its
//! pid file restored; WINCH then HUP rolls an upgrade back.

mod common;

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;

use common::upgrade::*;
use tokio_tungstenite::tungstenite::Message;

/// A configuration: `/v` answers `version`, `/ws` goes to the echo backend.
fn conf(port: u16, version: &str, echo: std::net::SocketAddr) -> String {
    format!(
        "worker_processes 2;\nworker_shutdown_timeout 60s;\nerror_log logs/error.log info;\n\
         events {{}}\nhttp {{\n\
         server {{ listen 127.0.0.1:{port};\n\
           location /v {{ return 200 \"{version}\"; }}\n\
           location /ws {{ proxy_pass http://{echo}; proxy_http_version 1.1;\n\
             proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection upgrade; }}\n\
         }}\n}}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usr2_then_quit_refuses_and_resets_nothing_and_moves_the_old_tunnel() {
    let echo = common::Echo::start();
    let port = common::free_port();
    let run = tempfile::tempdir().unwrap();
    let run = run.path();
    let p = start(run, &conf(port, "old", echo.addr), port);
    let prefix = p.dir.path().to_path_buf();
    let old = p.pid();
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/ws"))
        .await
        .unwrap();
    common::echo_each(&mut ws, [Message::text("before")], "tunnel").await;

    let storm = Storm::start(port);
    storm.go_on(200);
    // The new binary reads the configuration again: its answers tell who served.
    std::fs::write(prefix.join("ringproxy.conf"), conf(port, "new", echo.addr)).unwrap();
    let new = upgrade(run, old);
    wait_until("the new binary serves", || storm.has_seen("new"));
    storm.go_on(200);
    ringproxy::sys::kill(old, libc::SIGQUIT).unwrap();
    wait_until("the old pid file goes", || !oldbin(run).exists());
    storm.go_on(300);
    let (ok, errors) = storm.finish();
    let refused = errors
        .iter()
        .filter(|(k, _)| *k == ErrorKind::ConnectionRefused)
        .count();
    let reset = errors
        .iter()
        .filter(|(k, _)| *k == ErrorKind::ConnectionReset)
        .count();
    assert!(
        errors.is_empty(),
        "{ok} connections served, {refused} refused, {reset} reset, {} failed: {:?}",
        errors.len(),
        &errors[..errors.len().min(10)]
    );

    // The old process hands the tunnel it had to the new binary, then exits; the tunnel
    // goes on, with no Close.
    let status = p.stop_with(libc::SIGQUIT, Duration::from_secs(30));
    assert!(status.success(), "the old process exited with {status}");
    common::echo_each(&mut ws, [Message::text("after")], "moved tunnel").await;
    drop(ws);

    // Only the new binary is left, on the same port, with its pid file.
    for _ in 0..20 {
        assert_eq!(get_v(port).unwrap(), "new");
    }
    assert_eq!(read_pid(&pid_file(run)), Some(new.0));
    let (mut ws2, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/ws"))
        .await
        .unwrap();
    common::echo_each(&mut ws2, [Message::text("on new")], "new tunnel").await;
    drop(ws2);
    new.quit();
    let log = error_log(run);
    assert!(
        log.contains("using inherited sockets from"),
        "the new binary did not take the old one's sockets:\n{log}"
    );
    assert!(
        !log.contains("using the epoll driver"),
        "this test is about io_uring, and the proxy ran epoll:\n{log}"
    );
    for alarm in ["[alert]", "[emerg]", "[crit]", "panicked at"] {
        assert!(!log.contains(alarm), "{alarm} in the log:\n{log}");
    }
}

#[test]
fn a_new_binary_that_fails_to_start_leaves_the_old_one_serving() {
    let echo = common::Echo::start();
    let port = common::free_port();
    let run = tempfile::tempdir().unwrap();
    let run = run.path();
    let mut p = start(run, &conf(port, "old", echo.addr), port);
    p.allow_log("[emerg]");
    p.allow_log("failed to start");
    let prefix = p.dir.path().to_path_buf();
    let old = p.pid();
    std::fs::write(
        prefix.join("ringproxy.conf"),
        "events {}\nhttp { bogus; }\n",
    )
    .unwrap();
    ringproxy::sys::kill(old, libc::SIGUSR2).unwrap();
    wait_until("the old process reports the failure", || {
        error_log(run).contains("failed to start")
    });
    let log = format!("{}{}", error_log(run), p.stderr());
    let alert = log.lines().find(|l| l.contains("failed to start")).unwrap();
    assert!(alert.contains("[alert]"), "{alert}");
    assert!(alert.contains("exit status: 1"), "{alert}");
    assert!(log.contains("unknown directive \"bogus\""), "{log}");
    assert_eq!(read_pid(&pid_file(run)), Some(old), "pid file restored");
    assert!(!oldbin(run).exists());
    for _ in 0..20 {
        assert_eq!(get_v(port).unwrap(), "old");
    }
    // And a working binary is accepted afterwards.
    std::fs::write(prefix.join("ringproxy.conf"), conf(port, "new", echo.addr)).unwrap();
    let new = upgrade(run, old);
    wait_until("the new binary serves", || {
        get_v(port).is_ok_and(|b| b == "new")
    });
    let status = p.stop_with(libc::SIGQUIT, Duration::from_secs(30));
    assert!(status.success(), "{status}");
    new.quit();
}

/// Starts ringproxy through a shell script, which USR2 then runs again as the "new binary":
/// with `RINGPROXY_LISTEN` set it does what the file `mode` says (`exit`: exit 1, `hang`:
/// never start). `exec -a` keeps the script as ringproxy's `argv[0]`, which USR2 starts.
fn start_wrapped(dir: &Path) -> common::Child {
    let script = dir.join("ringproxy-wrapper");
    std::fs::write(
        &script,
        format!(
            "#!/bin/bash\nif [ -n \"$RINGPROXY_LISTEN\" ]; then\n  case \"$(cat {mode})\" in\n    \
             exit) exit 1;;\n    hang) exec sleep 120;;\n  esac\nfi\nexec -a \"$0\" {bin} \"$@\"\n",
            mode = dir.join("mode").display(),
            bin = common::ringproxy().display()
        ),
    )
    .unwrap();
    let mode = <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o755);
    std::fs::set_permissions(&script, mode).unwrap();
    spawn(&script, dir)
}

/// Starts `program` (ringproxy, or a script that runs it) on the prefix `dir` (with its
/// `ringproxy.conf` and `logs/`), in the foreground; returns once the pid file is written.
fn spawn(program: &Path, dir: &Path) -> common::Child {
    let run = dir.join("logs");
    let stderr = std::fs::File::create(dir.join("stderr.log")).unwrap();
    let child = std::process::Command::new(program)
        .args(["-p", dir.to_str().unwrap(), "-c", "ringproxy.conf"])
        .args(["-g", "daemon off;", "-e", "logs/error.log"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let child = common::Child(child);
    wait_until("the pid file", || pid_file(&run).exists());
    child
}

#[test]
fn a_wrapper_that_exits_or_hangs_is_rolled_back() {
    let echo = common::Echo::start();
    let port = common::free_port();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    std::fs::create_dir(dir.join("logs")).unwrap();
    std::fs::write(dir.join("ringproxy.conf"), conf(port, "old", echo.addr)).unwrap();
    std::fs::write(dir.join("mode"), "exit").unwrap();
    let mut old = start_wrapped(dir);
    let pid = old.0.id() as i32;
    let logs = dir.join("logs");
    let log = || error_log(&logs);

    ringproxy::sys::kill(pid, libc::SIGUSR2).unwrap();
    wait_until("the exit is reported", || log().contains("failed to start"));
    assert!(log().contains("[alert]"), "{}", log());
    assert_eq!(read_pid(&pid_file(&logs)), Some(pid));
    assert_eq!(get_v(port).unwrap(), "old");

    std::fs::write(dir.join("mode"), "hang").unwrap();
    let started = Instant::now();
    ringproxy::sys::kill(pid, libc::SIGUSR2).unwrap();
    wait_until("the old pid file is .oldbin", || oldbin(&logs).exists());
    // Meanwhile the old process serves.
    assert_eq!(get_v(port).unwrap(), "old");
    let deadline = Instant::now() + Duration::from_secs(40);
    while !log().contains("did not write its pid file") {
        assert!(
            Instant::now() < deadline,
            "no report of the hang:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        started.elapsed() >= Duration::from_secs(9),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(read_pid(&pid_file(&logs)), Some(pid));
    assert!(!oldbin(&logs).exists());
    assert_eq!(get_v(port).unwrap(), "old");

    ringproxy::sys::kill(pid, libc::SIGQUIT).unwrap();
    let status = old.0.wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(!pid_file(&logs).exists());
}

#[test]
fn winch_then_hup_rolls_the_upgrade_back() {
    let echo = common::Echo::start();
    let port = common::free_port();
    let run = tempfile::tempdir().unwrap();
    let run = run.path();
    let p = start(run, &conf(port, "old", echo.addr), port);
    let prefix = p.dir.path().to_path_buf();
    let old = p.pid();
    std::fs::write(prefix.join("ringproxy.conf"), conf(port, "new", echo.addr)).unwrap();
    let new = upgrade(run, old);
    ringproxy::sys::kill(old, libc::SIGWINCH).unwrap();
    wait_until("the old process stops accepting", || {
        error_log(run).contains("stop accepting connections")
    });
    // Once the old shards have stopped, only the new binary answers.
    wait_until("only the new binary answers", || {
        (0..50).all(|_| get_v(port).unwrap() == "new")
    });
    ringproxy::sys::kill(old, libc::SIGHUP).unwrap();
    wait_until("the old process accepts again", || {
        (0..20).any(|_| get_v(port).unwrap() == "old")
    });
    new.quit();
    wait_until("the old pid file is back", || {
        read_pid(&pid_file(run)) == Some(old)
    });
    for _ in 0..20 {
        assert_eq!(get_v(port).unwrap(), "old");
    }
    let status = p.stop_with(libc::SIGQUIT, Duration::from_secs(30));
    assert!(status.success(), "{status}");
}

/// Upgrades in a chain (each new binary is upgraded in turn, its old one quits) under a storm
/// from more threads: an old process that stopped accepting must not have taken a connection
/// it then drops (an accept in flight in its ring when it stopped).
#[test]
fn chained_upgrades_under_a_storm_lose_no_connection() {
    const ROUNDS: usize = 30;
    let echo = common::Echo::start();
    let port = common::free_port();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let run = dir.join("logs");
    std::fs::create_dir(&run).unwrap();
    std::fs::write(dir.join("ringproxy.conf"), conf(port, "r0", echo.addr)).unwrap();
    let mut first = spawn(&common::ringproxy(), dir);
    let storm = Storm::start_with(port, 12);
    storm.go_on(100);
    let mut current: Option<Other> = None;
    for round in 1..=ROUNDS {
        let old = current.as_ref().map_or(first.0.id() as i32, |o| o.0);
        let version = format!("r{round}");
        std::fs::write(dir.join("ringproxy.conf"), conf(port, &version, echo.addr)).unwrap();
        let new = upgrade(&run, old);
        wait_until("the new binary serves", || storm.has_seen(&version));
        storm.go_on(100);
        match current.take() {
            Some(o) => o.quit(),
            None => {
                ringproxy::sys::kill(old, libc::SIGQUIT).unwrap();
                let status = first.0.wait().unwrap();
                assert!(status.success(), "{status}");
            }
        }
        storm.go_on(100);
        current = Some(new);
    }
    let (ok, errors) = storm.finish();
    assert!(
        errors.is_empty(),
        "{ok} connections served, {} failed: {:?}",
        errors.len(),
        &errors[..errors.len().min(10)]
    );
    current.unwrap().quit();
    let log = error_log(&run);
    for alarm in ["[alert]", "[emerg]", "[crit]", "panicked at"] {
        assert!(!log.contains(alarm), "{alarm} in the log:\n{log}");
    }
}

/// Listening sockets on `port` (127.0.0.1) in `/proc/net/tcp`: a socket shut down is no
/// longer there, whoever still holds it.
fn listening_on(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let local = format!("0100007F:{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.get(1) == Some(&local.as_str()) && f.get(3) == Some(&"0A")
        })
        .count()
}

/// A reload of the new binary that retires a shard, while the old one still runs: the retired
/// shard's socket, which the old one accepts on too, is closed, not shut down.
#[test]
fn a_reload_during_an_upgrade_shuts_no_shared_socket() {
    let echo = common::Echo::start();
    let port = common::free_port();
    let run = tempfile::tempdir().unwrap();
    let run = run.path();
    let p = start(run, &conf(port, "old", echo.addr), port);
    let prefix = p.dir.path().to_path_buf();
    assert_eq!(listening_on(port), 2, "two shards, two sockets");
    let new = upgrade(run, p.pid());
    let one = conf(port, "new", echo.addr).replace("worker_processes 2;", "worker_processes 1;");
    std::fs::write(prefix.join("ringproxy.conf"), one).unwrap();
    ringproxy::sys::kill(new.0, libc::SIGHUP).unwrap();
    wait_until("the new binary reconfigures", || {
        error_log(run).contains("reconfigured: 1 shards")
    });
    // Once the new binary has exited, its retired shard has stopped for sure (a graceful stop
    // waits for retired shards too); the old binary's two sockets must still listen.
    new.quit();
    assert_eq!(listening_on(port), 2, "a shared socket was shut down");
    for _ in 0..20 {
        assert_eq!(get_v(port).unwrap(), "old");
    }
    let status = p.stop_with(libc::SIGQUIT, Duration::from_secs(30));
    assert!(status.success(), "{status}");
}

/// `/ws` to the WebSocket echo backend, `/raw` to `raw` (a `tcp-echo` upgrade), on a plain
/// listener, or TLS with `ssl`.
fn tunnels_conf(port: u16, echo: SocketAddr, raw: SocketAddr, ssl: bool) -> String {
    let (listen, certs) = if ssl {
        (
            " ssl",
            "ssl_certificate certs/localhost.crt; ssl_certificate_key certs/localhost.key;",
        )
    } else {
        ("", "")
    };
    let up = "proxy_http_version 1.1; proxy_set_header Upgrade $http_upgrade; \
              proxy_set_header Connection upgrade; proxy_read_timeout 120s;";
    format!(
        "worker_processes 2;\nworker_shutdown_timeout 60s;\nerror_log logs/error.log info;\n\
         events {{}}\nhttp {{\n access_log off;\n\
         server {{ listen 127.0.0.1:{port}{listen}; {certs}\n\
           location /ws {{ proxy_pass http://{echo}; {up} }}\n\
           location /raw {{ proxy_pass http://{raw}; {up} proxy_allow_upgrade tcp-echo; }}\n\
         }}\n}}\n"
    )
}

/// A `tcp-echo` upgrade through the proxy, checked with one echo.
async fn raw_tunnel(port: u16) -> tokio::net::TcpStream {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    s.write_all(
        b"GET /raw HTTP/1.1\r\nHost: a\r\nUpgrade: tcp-echo\r\nConnection: Upgrade\r\n\r\n",
    )
    .await
    .unwrap();
    let head = tokio::time::timeout(T, common::read_head(&mut s))
        .await
        .unwrap()
        .unwrap();
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    common::echo::raw_echo_once(&mut s, b"before").await;
    s
}

const T: Duration = Duration::from_secs(20);

/// Message `i` of the busy client: sizes from 1 byte to 70 kB (every length form, frames that
/// are often in flight when the tunnel is asked to move), contents that tell them apart.
fn message(i: usize) -> Vec<u8> {
    let n = (i * 7919) % 70_000 + 1;
    (0..n).map(|k| ((k + i * 31) % 251) as u8).collect()
}

/// A WebSocket client that sends messages without waiting for their echoes until told to
/// stop, while another task checks each echo, in order: a byte lost, duplicated or changed, or
/// a Close, fails it. `received` counts the echoes checked.
struct Busy {
    stop: tokio::sync::oneshot::Sender<()>,
    sent: tokio::task::JoinHandle<usize>,
    checked: tokio::task::JoinHandle<usize>,
    received: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Busy {
    async fn start(port: u16) -> Busy {
        let (ws, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/ws"))
            .await
            .unwrap();
        let (mut sink, mut stream) = ws.split();
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let sent = tokio::spawn(async move {
            let mut i = 0;
            loop {
                sink.send(Message::binary(message(i))).await.unwrap();
                i += 1;
                // Paced, not a flood: the echoes must keep up with a loaded machine.
                tokio::select! {
                    _ = &mut stopped => break,
                    _ = tokio::time::sleep(Duration::from_millis(2)) => {}
                }
            }
            sink.send(Message::text("end")).await.unwrap();
            i
        });
        let received = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = received.clone();
        let checked = tokio::spawn(async move {
            let mut i = 0;
            loop {
                let m = tokio::time::timeout(T, stream.next())
                    .await
                    .unwrap_or_else(|_| panic!("no echo of message {i} within 20 s"))
                    .unwrap_or_else(|| panic!("the stream ended before message {i}"))
                    .unwrap_or_else(|e| panic!("at message {i}: {e}"));
                match m {
                    Message::Text(t) if t.as_str() == "end" => return i,
                    Message::Binary(b) => assert!(b[..] == message(i)[..], "message {i} changed"),
                    other => panic!("at message {i}: {other:?}"),
                }
                i += 1;
                counter.store(i, std::sync::atomic::Ordering::Relaxed);
            }
        });
        Busy {
            stop,
            sent,
            checked,
            received,
        }
    }

    /// Waits until `n` more echoes have been checked.
    async fn go_on(&self, n: usize) {
        let load = || self.received.load(std::sync::atomic::Ordering::Relaxed);
        let target = load() + n;
        let deadline = Instant::now() + T;
        while load() < target {
            assert!(!self.checked.is_finished(), "the checking task ended");
            assert!(
                Instant::now() < deadline,
                "{n} more echoes did not come in 20 s"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Stops sending; every message sent was echoed once, in order.
    async fn finish(self) {
        let _ = self.stop.send(());
        let sent = self.sent.await.unwrap();
        let checked = tokio::time::timeout(T, self.checked)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(sent, checked, "sent {sent} messages, {checked} came back");
    }
}

/// The first frame `ws` receives must be a Close 1001, within 20 s.
async fn going_away<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>, what: &str)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let frame = tokio::time::timeout(T, ws.next())
        .await
        .unwrap_or_else(|_| panic!("{what}: no Close within 20 s"))
        .unwrap_or_else(|| panic!("{what}: the stream ended without a Close"))
        .unwrap();
    match frame {
        Message::Close(Some(f)) => assert_eq!(u16::from(f.code), 1001, "{what}: {f:?}"),
        other => panic!("{what}: got {other:?}, not a Close 1001"),
    }
}

/// USR2, then QUIT to the old process while a client keeps sending: every plain tunnel (idle
/// WebSockets, a busy one, a `tcp-echo` upgrade) moves to the new binary and goes on with no
/// byte lost or repeated and no Close; the new binary's own QUIT then drains the WebSockets it
/// took with a Close 1001 (it counts them, and knows where their frames end).
async fn plain_tunnels_move_to_the_new_binary(env: &[(&str, &str)]) {
    const IDLE: usize = 6;
    let echo = common::Echo::start();
    let raw = common::echo::Server::raw_echo();
    let port = common::free_port();
    let run = tempfile::tempdir().unwrap();
    let run = run.path();
    let conf = tunnels_conf(port, echo.addr, raw.addr, false);
    let p = start_with(run, &conf, port, env, |_| {});
    let mut idle = Vec::new();
    for _ in 0..IDLE {
        let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/ws"))
            .await
            .unwrap();
        common::echo_each(&mut ws, [Message::text("before")], "idle tunnel").await;
        idle.push(ws);
    }
    let mut raw_s = raw_tunnel(port).await;
    let busy = Busy::start(port).await;
    busy.go_on(50).await;

    let new = upgrade(run, p.pid());
    busy.go_on(20).await;
    let status = p.stop_with(libc::SIGQUIT, Duration::from_secs(30));
    assert!(status.success(), "the old process exited with {status}");
    for (i, ws) in idle.iter_mut().enumerate() {
        let m = [
            Message::text(format!("after {i}")),
            Message::binary(message(i)),
        ];
        common::echo_each(ws, m, "idle tunnel, moved").await;
    }
    busy.go_on(50).await;
    common::echo::raw_echo_once(&mut raw_s, b"after the move").await;
    busy.finish().await;
    let log = error_log(run);
    let moved = log.matches("tunnel taken over from the old binary").count();
    assert_eq!(moved, IDLE + 2, "tunnels the new binary took:\n{log}");

    drop(raw_s);
    ringproxy::sys::kill(new.0, libc::SIGQUIT).unwrap();
    for ws in &mut idle {
        going_away(ws, "a moved tunnel at the new binary's QUIT").await;
    }
    drop(idle);
    new.quit();
    let log = error_log(run);
    for alarm in ["[alert]", "[emerg]", "[crit]", "panicked at"] {
        assert!(!log.contains(alarm), "{alarm} in the log:\n{log}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_tunnels_move_to_the_new_binary_on_io_uring() {
    plain_tunnels_move_to_the_new_binary(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_tunnels_move_to_the_new_binary_on_epoll() {
    plain_tunnels_move_to_the_new_binary(&[("RINGPROXY_DRIVER", "epoll")]).await;
}

/// A tunnel with TLS on the client side cannot move (its TLS state is in the old process): it
/// is drained there, with a Close 1001, and the old process says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wss_tunnel_is_drained_by_the_old_process() {
    let echo = common::Echo::start();
    let raw = common::echo::Server::raw_echo();
    let port = common::free_port();
    let run = tempfile::tempdir().unwrap();
    let run = run.path();
    let conf = tunnels_conf(port, echo.addr, raw.addr, true);
    let p = start_with(run, &conf, port, &[], |prefix| {
        common::certs::write_localhost(prefix);
    });
    let tls = common::tls::connect(port, None, common::tls::client(&[], &[]))
        .await
        .unwrap();
    let url = format!("wss://127.0.0.1:{port}/ws");
    let (mut ws, _) = tokio::time::timeout(T, tokio_tungstenite::client_async(url, tls))
        .await
        .unwrap()
        .unwrap();
    common::echo_each(&mut ws, [Message::text("before")], "wss tunnel").await;
    let new = upgrade(run, p.pid());
    ringproxy::sys::kill(p.pid(), libc::SIGQUIT).unwrap();
    going_away(&mut ws, "the wss tunnel").await;
    drop(ws);
    let status = p.stop_with(0, Duration::from_secs(30));
    assert!(status.success(), "the old process exited with {status}");
    let log = error_log(run);
    assert!(
        log.contains("handing 0 tunnels over to the new binary, 1 stay"),
        "{log}"
    );
    new.quit();
}

/// With the new binary gone before QUIT, the old process drains its tunnels as on any
/// graceful stop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_new_binary_gone_the_old_process_drains_as_before() {
    let echo = common::Echo::start();
    let raw = common::echo::Server::raw_echo();
    let port = common::free_port();
    let run = tempfile::tempdir().unwrap();
    let run = run.path();
    let conf = tunnels_conf(port, echo.addr, raw.addr, false);
    let p = start_with(run, &conf, port, &[], |_| {});
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/ws"))
        .await
        .unwrap();
    common::echo_each(&mut ws, [Message::text("before")], "tunnel").await;
    let new = upgrade(run, p.pid());
    let gone = new.0;
    drop(new);
    wait_until("the new binary is gone", || !alive(gone));
    // Gone for the old process too: its watcher has seen the exit. (In the few milliseconds
    // before, a dead process's sockets can still take a message, as io_uring tears a process's
    // files down after it: a tunnel sent then is lost. The closing note of issue 12 says so.)
    let exited = format!("new binary process {gone} exited");
    wait_until("the old process sees the new one exit", || {
        error_log(run).contains(&exited)
    });
    ringproxy::sys::kill(p.pid(), libc::SIGQUIT).unwrap();
    going_away(&mut ws, "the tunnel of an old process left alone").await;
    drop(ws);
    let status = p.stop_with(0, Duration::from_secs(30));
    assert!(status.success(), "the old process exited with {status}");
    let log = error_log(run);
    assert!(!log.contains("handed over"), "{log}");
}
