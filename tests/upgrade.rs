//! Binary upgrade (USR2, then WINCH/QUIT of the old process), as nginx's: the new binary
//! accepts on the old one's sockets, so a connect storm across the upgrade sees no connection
//! refused or reset; a WebSocket open on the old process is drained by its QUIT (Close 1001); a new
//! binary that fails to start leaves the old one serving with its pid file restored; WINCH then HUP
//! rolls an upgrade back.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

/// Starts ringproxy on `conf` in a new prefix whose `logs` is `run`, a directory the test owns:
/// the pid files and the error log outlive the old process's `common::Proxy` (whose prefix
/// goes with it) while the new binary runs.
fn start(run: &Path, conf: &str, port: u16) -> common::Proxy {
    let prefix = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(run, prefix.path().join("logs")).unwrap();
    std::fs::write(prefix.path().join("ringproxy.conf"), conf).unwrap();
    common::Proxy::start_in(prefix, port, "", &[])
}

fn pid_file(run: &Path) -> PathBuf {
    run.join("ringproxy.pid")
}

fn oldbin(run: &Path) -> PathBuf {
    run.join("ringproxy.pid.oldbin")
}

fn error_log(run: &Path) -> String {
    std::fs::read_to_string(run.join("error.log")).unwrap_or_default()
}

fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Whether `pid` runs (a zombie, exited but not reaped, does not).
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit(')')
            .next()
            .is_some_and(|r| !r.trim_start().starts_with('Z'))
    })
}

/// A process the test did not start (the new binary: the old one's child), killed on drop.
struct Other(i32);

impl Drop for Other {
    fn drop(&mut self) {
        let _ = ringproxy::sys::kill(self.0, libc::SIGKILL);
    }
}

impl Other {
    /// Sends QUIT and waits (up to 30 s) until the process is gone.
    fn quit(self) {
        ringproxy::sys::kill(self.0, libc::SIGQUIT).unwrap();
        wait_until("the new binary exits after QUIT", || !alive(self.0));
    }
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// USR2 to `old`: waits until the new binary has written the pid file (and the old one's is
/// `.oldbin`); returns the new binary.
fn upgrade(dir: &Path, old: i32) -> Other {
    ringproxy::sys::kill(old, libc::SIGUSR2).unwrap();
    let mut new = None;
    wait_until("the new binary's pid file", || {
        new = read_pid(&pid_file(dir)).filter(|&p| p != old);
        new.is_some()
    });
    assert_eq!(
        read_pid(&oldbin(dir)),
        Some(old),
        "the old pid file is .oldbin"
    );
    Other(new.unwrap())
}

/// One short connection: `GET /v`, the body; `Err` names what failed (refused, reset, ...).
fn get_v(port: u16) -> Result<String, (ErrorKind, String)> {
    let fail = |what: &str, e: std::io::Error| (e.kind(), format!("{what}: {e}"));
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| fail("connect", e))?;
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(b"GET /v HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .map_err(|e| fail("write", e))?;
    let mut got = Vec::new();
    s.read_to_end(&mut got).map_err(|e| fail("read", e))?;
    let text = String::from_utf8_lossy(&got).into_owned();
    match text.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.1 200") => Ok(body.to_string()),
        _ => Err((
            ErrorKind::Other,
            format!("not a whole 200 response: {text:?}"),
        )),
    }
}

/// Short connections from `THREADS` threads until stopped.
struct Storm {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    bodies: Arc<Mutex<Vec<String>>>,
    errors: Arc<Mutex<Vec<(ErrorKind, String)>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

const THREADS: usize = 4;

impl Storm {
    fn start(port: u16) -> Storm {
        Storm::start_with(port, THREADS)
    }

    fn start_with(port: u16, threads: usize) -> Storm {
        let storm = Storm {
            stop: Arc::default(),
            ok: Arc::default(),
            bodies: Arc::default(),
            errors: Arc::default(),
            threads: Vec::new(),
        };
        let threads = (0..threads)
            .map(|_| {
                let (stop, ok) = (storm.stop.clone(), storm.ok.clone());
                let (bodies, errors) = (storm.bodies.clone(), storm.errors.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        match get_v(port) {
                            Ok(body) => {
                                ok.fetch_add(1, Ordering::Relaxed);
                                let mut b = bodies.lock().unwrap();
                                if !b.contains(&body) {
                                    b.push(body);
                                }
                            }
                            Err(e) => errors.lock().unwrap().push(e),
                        }
                    }
                })
            })
            .collect();
        Storm { threads, ..storm }
    }

    /// Waits until `n` more connections have succeeded.
    fn go_on(&self, n: usize) {
        let target = self.ok.load(Ordering::Relaxed) + n;
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.ok.load(Ordering::Relaxed) < target {
            let errors = self.errors.lock().unwrap();
            assert!(
                Instant::now() < deadline,
                "{n} more connections did not succeed within 30 s; {} failed, the first: {:?}",
                errors.len(),
                &errors[..errors.len().min(5)]
            );
            drop(errors);
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn has_seen(&self, body: &str) -> bool {
        self.bodies.lock().unwrap().iter().any(|b| b == body)
    }

    /// Stops; the number of successful connections and the errors.
    fn finish(mut self) -> (usize, Vec<(ErrorKind, String)>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            t.join().unwrap();
        }
        let errors = std::mem::take(&mut *self.errors.lock().unwrap());
        (self.ok.load(Ordering::Relaxed), errors)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usr2_then_quit_refuses_and_resets_nothing_and_drains_the_old_tunnel() {
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

    // The old process drains the tunnel it had as on any graceful stop: a Close 1001 within
    // `worker_shutdown_spread` (its client reconnects, to the new binary), then it exits.
    let frame = tokio::time::timeout(
        Duration::from_secs(20),
        futures_util::StreamExt::next(&mut ws),
    )
    .await
    .expect("a Close from the old process within its spread")
    .expect("a frame, not the end of the stream")
    .unwrap();
    match frame {
        Message::Close(Some(f)) => assert_eq!(u16::from(f.code), 1001, "{f:?}"),
        other => panic!("the old tunnel got {other:?}, not a Close 1001"),
    }
    drop(ws);
    let status = p.stop_with(libc::SIGQUIT, Duration::from_secs(30));
    assert!(status.success(), "the old process exited with {status}");

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
