//! Helpers shared by the integration tests: the built binary, temp copies of configurations,
//! and running the binary with a deadline.

#![allow(dead_code)]

pub mod certs;
pub mod dns;
pub mod echo;
pub mod http1;
pub mod ports;
pub mod tls;
pub mod tls_backend;
pub mod upgrade;

// Not every test binary that includes this module starts an echo backend.
#[allow(unused_imports)]
pub use echo::Echo;

pub use ports::free_port;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The `ringproxy` binary cargo built for these tests.
pub fn ringproxy() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ringproxy"))
}

/// The seed configurations, `tests/data/seed-configs` (see its README).
pub fn seed_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/seed-configs")
}

/// A copy of the seed configurations, with generated `certs/localhost.crt` and `.key` (what
/// seed 005 names; keys are never committed).
pub fn seed_copy() -> tempfile::TempDir {
    let dir = copy_tree(&seed_dir());
    certs::write_localhost(dir.path());
    dir
}

/// Copies a directory tree into a new temp dir and returns it.
pub fn copy_tree(from: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_into(from, dir.path());
    dir
}

fn copy_into(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            std::fs::create_dir_all(&target).expect("mkdir");
            copy_into(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// Runs the binary with `args`, killing it if it has not finished within 20 s.
pub fn run(args: &[&str]) -> Output {
    let mut cmd = Command::new(ringproxy());
    cmd.args(args);
    run_command(cmd)
}

/// Runs `cmd` (stdin empty, stdout and stderr captured), killing it if it has not finished
/// within 20 s. Fails the test if it panicked: whatever the run should do, succeed or refuse,
/// a panic is never how it does it.
pub fn run_command(mut cmd: Command) -> Output {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ringproxy");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            let out = child.wait_with_output().expect("output");
            assert!(
                !stderr(&out).contains("panicked at"),
                "{what} panicked: {}",
                stderr(&out)
            );
            return out;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{what} did not finish within 20 s");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Stderr as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A child process killed on drop.
pub struct Child(pub std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What in ringproxy's stderr or error log fails a test unless the test declared it
/// (`Proxy::allow_log`): a panic, and the levels nginx reserves for the process being in trouble.
const ALARMS: [&str; 4] = ["panicked at", "[alert]", "[crit]", "[emerg]"];

/// ringproxy running a configuration in a temp prefix, in the foreground, until dropped.
///
/// At teardown (drop, or `stop_with`) the test fails if ringproxy panicked, logged an `ALARMS`
/// line the test did not allow, or (on drop) had exited on its own; and, right after the start
/// and at drop, if another process listens on one of its ports (`ports::assert_sole_listener`).
/// A test that is already failing skips these checks: its own message is the one to read.
pub struct Proxy {
    pub dir: tempfile::TempDir,
    pub port: u16,
    child: Option<Child>,
    allowed: Vec<String>,
}

impl Proxy {
    /// Writes `conf` (with `{port}` and `{backend}`... already substituted by the caller) as
    /// `ringproxy.conf` in a temp prefix and starts ringproxy on it with `extra` -g directives
    /// (after `daemon off;`); returns once the pid file exists (every shard is accepting).
    pub fn start(conf: &str, port: u16, extra: &str, env: &[(&str, &str)]) -> Proxy {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("logs")).unwrap();
        std::fs::write(dir.path().join("ringproxy.conf"), conf).unwrap();
        Proxy::start_in(dir, port, extra, env)
    }

    /// Like `start`, in a prefix the caller prepared (`ringproxy.conf` and `logs/` in it).
    pub fn start_in(dir: tempfile::TempDir, port: u16, extra: &str, env: &[(&str, &str)]) -> Proxy {
        let p = dir.path().to_str().unwrap().to_string();
        let g = format!("daemon off; {extra}");
        let log = std::fs::File::create(dir.path().join("stderr.log")).unwrap();
        let mut cmd = Command::new(ringproxy());
        cmd.args([
            "-p",
            &p,
            "-c",
            "ringproxy.conf",
            "-g",
            &g,
            "-e",
            "logs/error.log",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = Child(cmd.spawn().expect("spawn ringproxy"));
        let pid = dir.path().join("logs/ringproxy.pid");
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut proxy = Proxy {
            dir,
            port,
            child: Some(child),
            allowed: Vec::new(),
        };
        while !pid.exists() {
            if let Some(status) = proxy.child.as_mut().unwrap().0.try_wait().unwrap() {
                panic!("ringproxy exited with {status}: {}", proxy.stderr());
            }
            assert!(
                Instant::now() < deadline,
                "ringproxy did not write its pid file within 15 s"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        ports::assert_sole_listener(proxy.pid());
        proxy
    }

    /// Declares that this test provokes stderr or error log lines containing `text` that would
    /// otherwise fail it at teardown (an `[alert]` the test asks for, say).
    pub fn allow_log(&mut self, text: &str) {
        self.allowed.push(text.to_string());
    }

    /// What ringproxy printed on stderr and in its error log so far.
    pub fn stderr(&self) -> String {
        let a = std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default();
        let b = std::fs::read_to_string(self.dir.path().join("logs/error.log")).unwrap_or_default();
        format!("{a}{b}")
    }

    /// The io driver ringproxy says it runs (`io_uring` or `epoll`), from its start-up notice:
    /// the configuration must log notices (`error_log logs/error.log notice;`).
    pub fn event_method(&self) -> String {
        let log = self.stderr();
        let line = log
            .lines()
            .find(|l| l.contains("[notice]") && l.contains(" event method, "))
            .unwrap_or_else(|| panic!("no \"using the ... event method\" notice in:\n{log}"));
        let (_, rest) = line.split_once("using the \"").unwrap();
        rest.split('"').next().unwrap().to_string()
    }

    /// The process id.
    pub fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().0.id() as i32
    }

    /// Sends `sig` and waits (up to `limit`) for the exit status.
    pub fn stop_with(mut self, sig: i32, limit: Duration) -> std::process::ExitStatus {
        let mut child = self.child.take().unwrap();
        let _ = ringproxy::sys::kill(child.0.id() as i32, sig);
        let deadline = Instant::now() + limit;
        loop {
            if let Some(s) = child.0.try_wait().unwrap() {
                self.assert_no_alarms();
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "ringproxy did not exit within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Panics on an `ALARMS` line the test did not allow.
    fn assert_no_alarms(&self) {
        let log = self.stderr();
        let bad: Vec<&str> = log
            .lines()
            .filter(|l| ALARMS.iter().any(|a| l.contains(a)))
            .filter(|l| !self.allowed.iter().any(|a| l.contains(a.as_str())))
            .collect();
        assert!(
            bad.is_empty(),
            "ringproxy logged {bad:#?} (a test provoking such lines declares them with \
             Proxy::allow_log); its whole stderr and error log:\n{log}"
        );
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if std::thread::panicking() {
            return;
        }
        let exited = child.0.try_wait().ok().flatten();
        if exited.is_none() {
            ports::assert_sole_listener(child.0.id() as i32);
        }
        drop(child);
        if let Some(status) = exited {
            panic!(
                "ringproxy exited on its own ({status}) before the test ended: {}",
                self.stderr()
            );
        }
        self.assert_no_alarms();
    }
}

/// A seed configuration with its ports substituted: `8080`/`8020` -> `port`, backends
/// `127.0.0.1:9001`/`:9002` -> the given addresses.
pub fn seed(name: &str, port: u16, b1: std::net::SocketAddr, b2: std::net::SocketAddr) -> String {
    let text = std::fs::read_to_string(seed_dir().join(name)).unwrap();
    text.replace("127.0.0.1:9001", &b1.to_string())
        .replace("127.0.0.1:9002", &b2.to_string())
        .replace("listen 8080", &format!("listen 127.0.0.1:{port}"))
        .replace("listen 8020", &format!("listen 127.0.0.1:{}", free_port()))
}

/// A prefix for seed 003 (`003-nginx.conf` as `ringproxy.conf`, its `conf.d/`, `mime.types`
/// and `html/`), listening on `port` with `backend` for 127.0.0.1:9001.
pub fn seed_003_prefix(port: u16, backend: std::net::SocketAddr) -> tempfile::TempDir {
    let dir = copy_tree(&seed_dir());
    std::fs::create_dir_all(dir.path().join("logs")).unwrap();
    let main = std::fs::read_to_string(dir.path().join("003-nginx.conf")).unwrap();
    std::fs::write(dir.path().join("ringproxy.conf"), main).unwrap();
    let site = std::fs::read_to_string(dir.path().join("conf.d/default.conf")).unwrap();
    let site = site
        .replace("listen 8080", &format!("listen 127.0.0.1:{port}"))
        .replace("127.0.0.1:9001", &backend.to_string());
    std::fs::write(dir.path().join("conf.d/default.conf"), site).unwrap();
    dir
}

/// Sends `raw` on a new client connection to 127.0.0.1:`port`; the whole response, up to the
/// close (bounded by 20 s).
pub async fn roundtrip(port: u16, raw: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    s.write_all(raw).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut out))
        .await
        .expect("the response and the close within 20 s")
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

/// A scripted backend on 127.0.0.1:0: for each connection, reads one request head and writes
/// `reply(head, own address)`, then closes.
pub async fn scripted_backend(
    reply: impl Fn(&str, std::net::SocketAddr) -> Vec<u8> + Send + Sync + 'static,
) -> std::net::SocketAddr {
    use tokio::io::AsyncWriteExt;
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let reply = std::sync::Arc::new(reply);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let reply = reply.clone();
            tokio::spawn(async move {
                let Some(head) = read_head(&mut s).await else {
                    return;
                };
                let _ = s.write_all(&reply(&head, addr)).await;
                let _ = s.shutdown().await;
            });
        }
    });
    addr
}

/// Reads one HTTP head (up to the blank line) byte by byte, so nothing after it is consumed;
/// `None` at end of stream or on an error.
pub async fn read_head(s: &mut tokio::net::TcpStream) -> Option<String> {
    use tokio::io::AsyncReadExt;
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut b).await {
            Ok(1) => head.push(b[0]),
            _ => return None,
        }
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

/// A listener whose accept queue is full, so connecting to it times out (SYNs are dropped).
/// The returned values keep it so while alive.
pub fn black_hole() -> (std::net::SocketAddr, socket2::Socket, std::net::TcpStream) {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    s.bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    s.listen(0).unwrap();
    let addr = s.local_addr().unwrap().as_socket().unwrap();
    let filler = std::net::TcpStream::connect(addr).unwrap();
    (addr, s, filler)
}

/// A WebSocket client connection opened by `open_ws`.
pub type WsClient =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A WebSocket through ringproxy on 127.0.0.1:`port` (path `/`), upgraded and checked with
/// one echo, within 20 s each.
pub async fn open_ws(port: u16) -> WsClient {
    let url = format!("ws://127.0.0.1:{port}/");
    let (mut ws, _) = tokio::time::timeout(
        Duration::from_secs(20),
        tokio_tungstenite::connect_async(url.as_str()),
    )
    .await
    .expect("upgrade in time")
    .expect("upgrade");
    echo_each(
        &mut ws,
        [tokio_tungstenite::tungstenite::Message::text("hello")],
        "open",
    )
    .await;
    ws
}

/// `n` bytes of a repeating pattern (bodies and messages whose corruption a test would see).
pub fn big(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 % 251) as u8).collect()
}

/// Sends each message on `ws` and expects it echoed back unchanged, each within 20 s.
pub async fn echo_each<S>(
    ws: &mut tokio_tungstenite::WebSocketStream<S>,
    messages: impl IntoIterator<Item = tokio_tungstenite::tungstenite::Message>,
    what: &str,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use futures_util::{SinkExt, StreamExt};
    for m in messages {
        ws.send(m.clone()).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(20), ws.next())
            .await
            .expect("echo in time")
            .unwrap()
            .unwrap();
        assert_eq!(got, m, "{what}: echo differs");
    }
}
