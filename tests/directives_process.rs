//! The main and `events` directives, observed on the running process: `daemon` (the parent
//! exits, the daemon serves and is named by the pid file), `pid`, `worker_processes` (shard
//! threads), `worker_rlimit_nofile` (`/proc/<pid>/limits`), `worker_cpu_affinity` (the shard
//! threads' `Cpus_allowed_list`), `worker_shutdown_timeout` (QUIT with an open tunnel),
//! `worker_connections` (the connection beyond the limit is refused), `use` (the shards' event
//! descriptors) and `error_log` (the file and level lines go to).

mod common;

use std::io::{BufRead, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Proxy;

const T: Duration = Duration::from_secs(20);

/// Polls `cond` every 10 ms until it holds; panics with `what` after `limit`.
fn wait_until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "{what} (waited {limit:?})");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A server answering every request with `body` (and a `location /` for it).
fn plain_conf(main: &str, events: &str, port: u16, body: &str) -> String {
    format!(
        "{main}\nevents {{ {events} }}\nhttp {{\n    access_log off;\n    server {{\n        listen 127.0.0.1:{port};\n        location / {{ return 200 \"{body}\"; }}\n    }}\n}}\n"
    )
}

/// One `GET /` on a new connection with `Connection: close`; the whole response.
fn get(port: u16) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// The threads of `pid`: (name, `/proc/<pid>/task/<tid>/status`).
fn threads(pid: i32) -> Vec<(String, String)> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|t| {
            let dir = t.ok()?.path();
            let comm = std::fs::read_to_string(dir.join("comm")).ok()?;
            let status = std::fs::read_to_string(dir.join("status")).ok()?;
            Some((comm.trim().to_string(), status))
        })
        .collect()
}

/// The status files of the shard threads (`ringproxy-shard-N`, cut by the kernel to 15 bytes).
fn shard_threads(pid: i32) -> Vec<String> {
    threads(pid)
        .into_iter()
        .filter(|(name, _)| name.starts_with("ringproxy-shard"))
        .map(|(_, status)| status)
        .collect()
}

/// The value of `field:` in a `/proc` status text.
fn status_field(status: &str, field: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("no {field} in {status}"))
        .trim()
        .to_string()
}

/// Whether `pid` is gone (or a zombie nobody has reaped yet: it no longer runs).
fn is_gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

/// Kills a process that is not our child (the daemon) if a test ends before stopping it.
struct KillOnDrop(i32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if !is_gone(self.0) {
            let _ = ringproxy::sys::kill(self.0, libc::SIGKILL);
        }
    }
}

// effect: daemon pid
#[test]
fn daemon_on_detaches_and_the_daemon_serves_until_signalled() {
    let port = common::free_port();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("logs")).unwrap();
    std::fs::create_dir_all(dir.path().join("run")).unwrap();
    let conf = plain_conf(
        "daemon on;\npid run/daemon.pid;",
        "",
        port,
        "from the daemon",
    );
    std::fs::write(dir.path().join("ringproxy.conf"), conf).unwrap();
    // stderr goes to a file: a pipe would stay open in the daemon and hold up a reader.
    let stderr = std::fs::File::create(dir.path().join("stderr.log")).unwrap();
    let mut parent = Command::new(common::ringproxy())
        .args(["-p", dir.path().to_str().unwrap(), "-c", "ringproxy.conf"])
        .args(["-e", "logs/error.log"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let parent_pid = parent.id() as i32;
    let mut status = None;
    wait_until(T, "the parent did not exit (it did not detach)", || {
        status = parent.try_wait().unwrap();
        status.is_some()
    });
    assert!(status.unwrap().success(), "parent: {:?}", status);

    let pid_file = dir.path().join("run/daemon.pid");
    wait_until(T, "no pid file at the `pid` path", || pid_file.exists());
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim_end()
        .parse()
        .unwrap();
    let _guard = KillOnDrop(pid);
    assert!(!dir.path().join("logs/ringproxy.pid").exists());
    assert_ne!(
        pid, parent_pid,
        "the pid file names the parent, not the daemon"
    );
    assert!(!is_gone(pid), "the daemon {pid} is not running");
    // A session leader of its own, as nginx's daemon (setsid).
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    assert_eq!(
        fields[3],
        pid.to_string(),
        "session id of the daemon: {stat}"
    );

    for _ in 0..3 {
        let r = get(port);
        assert!(
            r.starts_with("HTTP/1.1 200") && r.ends_with("from the daemon"),
            "{r}"
        );
    }
    ringproxy::sys::kill(pid, libc::SIGTERM).unwrap();
    wait_until(T, "the daemon did not stop on TERM", || is_gone(pid));
    assert!(!pid_file.exists(), "the pid file outlived the daemon");
    // A leader that has exited shows as a zombie while its threads still wind down.
    wait_until(T, "the daemon's listener outlived it", || {
        TcpStream::connect(("127.0.0.1", port)).is_err()
    });
}

// effect: worker_processes
#[test]
fn worker_processes_starts_that_many_shards() {
    for n in [1usize, 3] {
        let port = common::free_port();
        let conf = plain_conf(&format!("worker_processes {n};"), "", port, "ok");
        let p = Proxy::start(&conf, port, "", &[]);
        assert_eq!(shard_threads(p.pid()).len(), n, "worker_processes {n}");
        // Every shard listens: more connections than shards are all served.
        for _ in 0..2 * n {
            assert!(get(port).ends_with("ok"));
        }
    }
}

// effect: worker_rlimit_nofile
#[test]
fn worker_rlimit_nofile_sets_the_open_files_limit() {
    let port = common::free_port();
    let conf = plain_conf("worker_rlimit_nofile 1234;", "", port, "ok");
    let p = Proxy::start(&conf, port, "", &[]);
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", p.pid())).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let soft = line.split_whitespace().nth(3).unwrap();
    assert_eq!(soft, "1234", "{line}");
    assert!(get(port).ends_with("ok"));
}

/// The CPUs this test process may run on (`Cpus_allowed_list`, e.g. `0-1` or `0,2`).
fn allowed_cpus() -> Vec<usize> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    cpu_list(&status_field(&status, "Cpus_allowed_list"))
}

fn cpu_list(list: &str) -> Vec<usize> {
    let mut out = Vec::new();
    for part in list.split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => out.extend(a.parse::<usize>().unwrap()..=b.parse().unwrap()),
            None => out.push(part.parse().unwrap()),
        }
    }
    out
}

/// A `worker_cpu_affinity` mask with the given CPUs set (the rightmost digit is CPU 0).
fn mask(cpus: &[usize]) -> String {
    let top = cpus.iter().max().unwrap();
    (0..=*top)
        .rev()
        .map(|c| if cpus.contains(&c) { '1' } else { '0' })
        .collect()
}

// effect: worker_cpu_affinity
#[test]
fn worker_cpu_affinity_pins_each_shard() {
    let cpus = allowed_cpus();
    assert!(
        cpus.len() >= 2,
        "pinning cannot be observed on fewer than two CPUs: {cpus:?}"
    );
    let shard_cpus = |pid: i32| -> Vec<Vec<usize>> {
        let mut got: Vec<Vec<usize>> = shard_threads(pid)
            .iter()
            .map(|s| cpu_list(&status_field(s, "Cpus_allowed_list")))
            .collect();
        got.sort();
        got
    };
    // One mask per shard, as nginx: a shard may run on every CPU its mask names, and the last
    // mask serves the shards beyond the list. The single CPU is the last allowed one, so a
    // shard given only the first CPU of a mask cannot pass.
    let last = cpus[cpus.len() - 1];
    let port = common::free_port();
    let main = format!(
        "worker_processes 3;\nworker_cpu_affinity {} {};",
        mask(&cpus),
        mask(&[last])
    );
    let p = Proxy::start(&plain_conf(&main, "", port, "ok"), port, "", &[]);
    let mut want = vec![cpus.clone(), vec![last], vec![last]];
    want.sort();
    assert_eq!(shard_cpus(p.pid()), want, "{main}");
    assert!(get(port).ends_with("ok"));
    drop(p);

    // `auto`: shard i on the i-th allowed CPU, one CPU each.
    let port = common::free_port();
    let main = "worker_processes 2;\nworker_cpu_affinity auto;";
    let p = Proxy::start(&plain_conf(main, "", port, "ok"), port, "", &[]);
    assert_eq!(
        shard_cpus(p.pid()),
        vec![vec![cpus[0]], vec![cpus[1]]],
        "{main}"
    );
}

/// A backend that answers every request with 101 and then echoes until the client closes.
/// Not a WebSocket upgrade: a graceful stop leaves such a tunnel open until the timeout
/// (WebSocket tunnels get a closing handshake: tests/drain.rs).
fn upgrade_echo_backend() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut b = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if s.read(&mut b).unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(b[0]);
                }
                let _ = s.write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: tcp-echo\r\nConnection: Upgrade\r\n\r\n");
                let mut buf = [0u8; 4096];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// An upgraded connection through the proxy on `port`, checked to echo.
fn open_tunnel(port: u16) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    s.write_all(b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: tcp-echo\r\nConnection: Upgrade\r\n\r\n")
        .unwrap();
    let mut r = std::io::BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert!(line.starts_with("HTTP/1.1 101"), "{line}");
    while line != "\r\n" {
        line.clear();
        r.read_line(&mut line).unwrap();
    }
    s.write_all(b"ping").unwrap();
    let mut buf = [0u8; 4];
    s.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ping");
    s
}

fn tunnel_conf(main: &str, port: u16, backend: SocketAddr) -> String {
    format!(
        "{main}\nevents {{}}\nhttp {{\n    access_log off;\n    server {{\n        listen 127.0.0.1:{port};\n        location / {{\n            proxy_pass http://{backend};\n            proxy_http_version 1.1;\n            proxy_set_header Upgrade $http_upgrade;\n            proxy_set_header Connection \"upgrade\";\n            proxy_read_timeout 60s;\n            proxy_allow_upgrade tcp-echo;\n        }}\n    }}\n}}\n"
    )
}

// effect: worker_shutdown_timeout
#[test]
fn worker_shutdown_timeout_ends_a_graceful_stop_with_an_open_tunnel() {
    let backend = upgrade_echo_backend();
    let port = common::free_port();
    let limit = Duration::from_secs(3);
    let conf = tunnel_conf("worker_shutdown_timeout 3s;", port, backend);
    let p = Proxy::start(&conf, port, "", &[]);
    let mut tunnel = open_tunnel(port);
    let quit_at = Instant::now();
    ringproxy::sys::kill(p.pid(), libc::SIGQUIT).unwrap();
    // Within the timeout the tunnel still works (a graceful stop, not a fast one)...
    tunnel.write_all(b"pong").unwrap();
    let mut buf = [0u8; 4];
    tunnel.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"pong");
    // ...and at the timeout the process ends, closing it. Without the directive it would wait
    // for the tunnel forever (proxy_read_timeout is 60 s).
    let status = p.stop_with(0, limit + Duration::from_secs(15));
    let took = quit_at.elapsed();
    assert!(status.success(), "{status}");
    assert!(
        took >= limit,
        "exited {took:?} after QUIT, before the timeout"
    );
    let mut rest = Vec::new();
    let closed = match tunnel.read_to_end(&mut rest) {
        Ok(_) => true,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    };
    assert!(closed, "the tunnel was not closed: {rest:?}");
}

// effect: events worker_connections
#[test]
fn worker_connections_refuses_a_connection_beyond_the_limit() {
    // The epoll driver can accept a whole backlog at once: each accepted connection must count
    // before the next accept, not when its task first runs.
    for driver in ["epoll", "io_uring"] {
        refuses_beyond_the_limit(driver);
    }
}

fn refuses_beyond_the_limit(driver: &str) {
    const N: usize = 4;
    let port = common::free_port();
    let events = format!("worker_connections {N}; use {driver};");
    let conf = plain_conf("worker_processes 1;", &events, port, "ok");
    let mut p = Proxy::start(&conf, port, "", &[("RINGPROXY_DRIVER", "default")]);
    p.allow_log("worker_connections are not enough");
    // N connections in the middle of their request heads: busy, open, counted. (nginx counts
    // its listening socket and its channel to the master too, and closes idle keep-alive
    // connections to make room; ringproxy counts client and upstream connections only, see
    // README.)
    let mut busy = Vec::new();
    for _ in 0..N {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(T)).unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n").unwrap();
        busy.push(s);
    }
    let mut extra = TcpStream::connect(("127.0.0.1", port)).unwrap();
    extra.set_read_timeout(Some(T)).unwrap();
    let _ = extra.write_all(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    let mut got = Vec::new();
    // Closed unserved: a FIN when the proxy closed before our request arrived, a reset when it
    // arrived first (unread data); which one is a race between two processes, both are "not
    // served", and what matters is that no response byte came.
    let refused = match extra.read_to_end(&mut got) {
        Ok(_) => got.is_empty(),
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    };
    assert!(
        refused,
        "{events}: connection {} was served: {}",
        N + 1,
        String::from_utf8_lossy(&got)
    );
    let alert = format!(
        "[alert] {}#1: {N} worker_connections are not enough",
        p.pid()
    );
    wait_until(T, "no worker_connections alert", || {
        p.stderr().contains(&alert)
    });
    // The N busy connections are served.
    for s in &mut busy {
        s.write_all(b"Connection: close\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        assert!(
            out.starts_with("HTTP/1.1 200") && out.ends_with("ok"),
            "{out}"
        );
    }
    // Once they are closed there is room again.
    wait_until(T, "no connection served after the busy ones closed", || {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(T)).unwrap();
        let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out.ends_with("ok")
    });
}

/// What the open descriptors of `pid` are, by kind: (io_uring instances, epoll instances).
fn event_fds(pid: i32) -> (usize, usize) {
    let mut uring = 0;
    let mut epoll = 0;
    for e in std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
    {
        let Ok(target) = std::fs::read_link(e.path()) else {
            continue;
        };
        match target.to_string_lossy().as_ref() {
            "anon_inode:[io_uring]" => uring += 1,
            "anon_inode:[eventpoll]" => epoll += 1,
            _ => {}
        }
    }
    (uring, epoll)
}

// effect: use
#[test]
fn use_picks_the_shards_event_driver() {
    // The environment's override is set to a value that forces nothing.
    let env = [("RINGPROXY_DRIVER", "default")];
    let port = common::free_port();
    let conf = plain_conf("worker_processes 2;", "use epoll;", port, "ok");
    let p = Proxy::start(&conf, port, "", &env);
    let (uring, epoll) = event_fds(p.pid());
    assert_eq!(uring, 0, "use epoll, yet an io_uring instance is open");
    assert!(
        epoll >= 2,
        "use epoll: {epoll} epoll instances for 2 shards"
    );
    assert!(get(port).ends_with("ok"));
    drop(p);

    let port = common::free_port();
    let conf = plain_conf("worker_processes 2;", "use io_uring;", port, "ok");
    let p = Proxy::start(&conf, port, "", &env);
    let (uring, _) = event_fds(p.pid());
    if p.stderr().contains("io_uring is not available here") {
        assert_eq!(uring, 0);
    } else {
        assert!(uring >= 2, "use io_uring: {uring} rings for 2 shards");
    }
    assert!(get(port).ends_with("ok"));
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

// effect: error_log
#[test]
fn error_log_writes_each_level_to_its_file() {
    let port = common::free_port();
    // The configured logs live outside the prefix: they are read once the process has stopped.
    let logs = tempfile::tempdir().unwrap();
    let (info_log, crit_log) = (logs.path().join("info.log"), logs.path().join("crit.log"));
    let main = format!(
        "error_log {} info;\nerror_log {} crit;",
        info_log.display(),
        crit_log.display()
    );
    let p = Proxy::start(&plain_conf(&main, "", port, "ok"), port, "", &[]);
    // An invalid request is an [info] line in nginx and here.
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    wait_until(T, "no [info] line in info.log", || {
        read(&info_log).contains("[info] ")
    });
    let info = read(&info_log);
    assert!(
        info.contains("client sent invalid request"),
        "info.log: {info}"
    );
    // The -e log (logs/error.log) is replaced by the configured ones, and crit is above info.
    assert!(!read(&p.dir.path().join("logs/error.log")).contains("[info]"));
    assert!(!read(&crit_log).contains("[info]"));
    // TERM's [notice] reaches info.log, not crit.log.
    p.stop_with(libc::SIGTERM, T);
    let info = read(&info_log);
    assert!(info.contains("[notice] "), "info.log: {info}");
    assert!(!read(&crit_log).contains("[notice]"));
}
