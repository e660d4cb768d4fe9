//! Helpers of the binary upgrade tests: ringproxy in a prefix whose `logs` the test owns (the
//! pid files and the error log outlive the old process), USR2 and the new binary's pid, a storm
//! of short connections.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Starts ringproxy on `conf` in a new prefix whose `logs` is `run`, a directory the test owns:
/// the pid files and the error log outlive the old process's `super::Proxy` (whose prefix
/// goes with it) while the new binary runs.
pub fn start(run: &Path, conf: &str, port: u16) -> super::Proxy {
    start_with(run, conf, port, &[], |_| {})
}

/// Like `start`, with `env` for ringproxy (and so its new binary), after `setup` has written
/// what else the prefix needs (certificates).
pub fn start_with(
    run: &Path,
    conf: &str,
    port: u16,
    env: &[(&str, &str)],
    setup: impl FnOnce(&Path),
) -> super::Proxy {
    let prefix = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(run, prefix.path().join("logs")).unwrap();
    std::fs::write(prefix.path().join("ringproxy.conf"), conf).unwrap();
    setup(prefix.path());
    super::Proxy::start_in(prefix, port, "", env)
}

pub fn pid_file(run: &Path) -> PathBuf {
    run.join("ringproxy.pid")
}

pub fn oldbin(run: &Path) -> PathBuf {
    run.join("ringproxy.pid.oldbin")
}

pub fn error_log(run: &Path) -> String {
    std::fs::read_to_string(run.join("error.log")).unwrap_or_default()
}

pub fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Whether `pid` runs (a zombie, exited but not reaped, does not).
pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit(')')
            .next()
            .is_some_and(|r| !r.trim_start().starts_with('Z'))
    })
}

/// A process the test did not start (the new binary: the old one's child), killed on drop.
pub struct Other(pub i32);

impl Drop for Other {
    fn drop(&mut self) {
        let _ = ringproxy::sys::kill(self.0, libc::SIGKILL);
    }
}

impl Other {
    /// Sends QUIT and waits (up to 30 s) until the process is gone.
    pub fn quit(self) {
        ringproxy::sys::kill(self.0, libc::SIGQUIT).unwrap();
        wait_until("the new binary exits after QUIT", || !alive(self.0));
    }
}

pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// USR2 to `old`: waits until the new binary has written the pid file (and the old one's is
/// `.oldbin`) and the old one knows it started; returns the new binary.
pub fn upgrade(dir: &Path, old: i32) -> Other {
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
    let new = new.unwrap();
    // The old process hands tunnels over only once it has seen the new one start (a stop
    // before that drains them): its watcher looks every 20 ms.
    let started = format!("new binary process {new} started");
    wait_until("the old process sees the new one start", || {
        error_log(dir).contains(&started)
    });
    Other(new)
}

/// One short connection: `GET /v`, the body; `Err` names what failed (refused, reset, ...).
pub fn get_v(port: u16) -> Result<String, (ErrorKind, String)> {
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
pub struct Storm {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    bodies: Arc<Mutex<Vec<String>>>,
    errors: Arc<Mutex<Vec<(ErrorKind, String)>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

pub const THREADS: usize = 4;

impl Storm {
    pub fn start(port: u16) -> Storm {
        Storm::start_with(port, THREADS)
    }

    pub fn start_with(port: u16, threads: usize) -> Storm {
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
    pub fn go_on(&self, n: usize) {
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

    pub fn has_seen(&self, body: &str) -> bool {
        self.bodies.lock().unwrap().iter().any(|b| b == body)
    }

    /// Stops; the number of successful connections and the errors.
    pub fn finish(mut self) -> (usize, Vec<(ErrorKind, String)>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            t.join().unwrap();
        }
        let errors = std::mem::take(&mut *self.errors.lock().unwrap());
        (self.ok.load(Ordering::Relaxed), errors)
    }
}
