//! Helpers for the directive behaviour tests (`tests/directives_*.rs`): a one-shard ringproxy
//! around a location, scripted backends that count their connections, reading a response or a
//! connection to its end with a deadline, and the proxy's own sockets (fetched with
//! `pidfd_getfd(2)`) to read socket options off them.

#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::common::read_head;
use crate::common::{self, Proxy};

/// The longest any single wait in these tests may take.
pub const T: Duration = Duration::from_secs(20);

/// A one-shard ringproxy (error log at `info`, access log in `logs/access.log`): `http` at the
/// http level (upstream blocks...), then one server on a free port holding `server`.
pub fn start(http: &str, server: &str) -> Proxy {
    let port = common::free_port();
    let conf = format!(
        "worker_processes 1;\nerror_log logs/error.log info;\nevents {{}}\nhttp {{\n    access_log logs/access.log;\n    {http}\n    server {{\n        listen 127.0.0.1:{port};\n        {server}\n    }}\n}}\n"
    );
    Proxy::start(&conf, port, "", &[])
}

/// `start` with `upstream b` made of `servers` and, after `server` directives,
/// `location / { proxy_pass http://b; location }`.
pub fn proxy(servers: &[SocketAddr], server: &str, location: &str) -> Proxy {
    let servers: String = servers.iter().map(|a| format!("server {a}; ")).collect();
    start(
        &format!("upstream b {{ {servers} }}"),
        &format!("{server}\n        location / {{ proxy_pass http://b; {location} }}"),
    )
}

/// A backend on 127.0.0.1:0 running `script` on every accepted connection; counts them.
pub struct Backend {
    pub addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
}

impl Backend {
    pub async fn start<F, Fut>(script: F) -> Backend
    where
        F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        let script = Arc::new(script);
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(script(s));
            }
        });
        Backend { addr, accepted }
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// A backend answering every request with `200` and a body of `body`, then closing.
pub async fn answering(body: &'static str) -> Backend {
    Backend::start(move |mut s| async move {
        if read_head(&mut s).await.is_some() {
            let r = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            let _ = s.write_all(r.as_bytes()).await;
        }
    })
    .await
}

/// One response with a `Content-Length` from a connection that stays open: head and body.
pub async fn read_response(s: &mut TcpStream) -> String {
    let head = tokio::time::timeout(T, read_head(s))
        .await
        .expect("a response head in time")
        .expect("a response head");
    let len: usize = head
        .lines()
        .find_map(|l| {
            let l = l.to_ascii_lowercase();
            l.strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    tokio::time::timeout(T, s.read_exact(&mut body))
        .await
        .expect("the body in time")
        .unwrap();
    format!("{head}{}", String::from_utf8_lossy(&body))
}

/// How a connection ended for the side reading it.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// End of stream.
    Eof,
    /// An error (a reset).
    Error,
}

/// Reads `s` until it ends (or `within` passes: `None`); the bytes read and how it ended.
pub async fn read_to_end_within(s: &mut TcpStream, within: Duration) -> (Vec<u8>, Option<End>) {
    let mut got = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    let deadline = Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline.into(), s.read(&mut buf)).await {
            Err(_) => return (got, None),
            Ok(Ok(0)) => return (got, Some(End::Eof)),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Ok(Err(_)) => return (got, Some(End::Error)),
        }
    }
}

/// A connection to the proxy that has sent `raw`.
pub async fn send(port: u16, raw: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(raw).await.unwrap();
    s
}

/// Polls `cond` every 20 ms until it holds; panics with `what` after `T`.
pub async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + T;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An address nothing listens on (connecting is refused).
pub fn refused() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], common::free_port()))
}

/// A duplicate of the proxy's (process `pid`) TCP socket whose local and peer addresses are
/// `local` and `peer`, taken with `pidfd_getfd(2)`: socket options are per socket, so this is
/// the way to read the ones ringproxy set. `None` if it has no such socket now (or this process
/// may not ptrace the proxy, which `pidfd_getfd` requires: the proxy is its child).
pub fn proxy_socket(pid: i32, local: SocketAddr, peer: SocketAddr) -> Option<std::os::fd::OwnedFd> {
    use rustix::process::{pidfd_getfd, pidfd_open, Pid, PidfdFlags, PidfdGetfdFlags};
    let pidfd = pidfd_open(Pid::from_raw(pid)?, PidfdFlags::empty()).ok()?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    for e in fds.flatten() {
        let Ok(link) = std::fs::read_link(e.path()) else {
            continue;
        };
        if !link.to_string_lossy().starts_with("socket:") {
            continue;
        }
        let Some(n) = e.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        let Ok(fd) = pidfd_getfd(&pidfd, n, PidfdGetfdFlags::empty()) else {
            continue;
        };
        let s = socket2::SockRef::from(&fd);
        let addr = |a: std::io::Result<socket2::SockAddr>| a.ok().and_then(|a| a.as_socket());
        if addr(s.local_addr()) == Some(local) && addr(s.peer_addr()) == Some(peer) {
            return Some(fd);
        }
    }
    None
}

/// How many pipes process `pid` holds open.
pub fn pipes_of(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter(|e| {
            std::fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy().starts_with("pipe:"))
        })
        .count()
}
