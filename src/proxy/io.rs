//! Socket helpers the proxy uses after readiness: non-blocking reads and writes through the
//! borrowed descriptor (the same model as the tunnel), each wait bounded by a deadline.

use std::io;
use std::time::{Duration, Instant};

use monoio::net::TcpStream;
use rustix::io::Errno;

use crate::sys::fd;

/// Makes the socket non-blocking (the io_uring driver leaves accepted sockets blocking; the raw
/// reads and writes after readiness must never block the shard).
pub fn set_nonblocking(s: &TcpStream) -> io::Result<()> {
    let flags = rustix::fs::fcntl_getfl(fd(s))?;
    rustix::fs::fcntl_setfl(fd(s), flags | rustix::fs::OFlags::NONBLOCK)?;
    Ok(())
}

/// Reads what is available into `buf`, waiting for readability until `deadline`.
/// `Ok(0)` is end of stream; a passed deadline is `TimedOut`.
pub async fn read_some(s: &TcpStream, buf: &mut [u8], deadline: Instant) -> io::Result<usize> {
    loop {
        match rustix::io::read(fd(s), &mut *buf) {
            Ok(n) => return Ok(n),
            Err(Errno::AGAIN) => {}
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(io::ErrorKind::TimedOut.into());
        }
        match monoio::time::timeout(deadline - now, s.readable(false)).await {
            Ok(r) => r?,
            Err(_) => return Err(io::ErrorKind::TimedOut.into()),
        }
    }
}

/// Appends what is available to `buf` (growing it by up to `max` bytes).
pub async fn read_into(
    s: &TcpStream,
    buf: &mut Vec<u8>,
    max: usize,
    deadline: Instant,
) -> io::Result<usize> {
    let start = buf.len();
    buf.resize(start + max, 0);
    let r = read_some(s, &mut buf[start..], deadline).await;
    let n = *r.as_ref().unwrap_or(&0);
    buf.truncate(start + n);
    r
}

/// Writes all of `data`; each wait for writability is bounded by `timeout`.
pub async fn write_all(s: &TcpStream, data: &[u8], timeout: Duration) -> io::Result<()> {
    super::tunnel::write_all_to(s, data, timeout).await
}

/// Whether an error is a timeout (for 504 vs 502).
pub fn is_timeout(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::TimedOut
}

/// Resolves once the peer has closed the connection (end of stream or an error), as nginx's
/// broken-connection check sees it; never resolves while bytes are waiting (a pipelined
/// request is not a close, and nginx stops watching then too).
pub async fn peer_closed(s: &TcpStream) {
    loop {
        if s.readable(false).await.is_err() {
            return;
        }
        let mut probe = [0u8; 1];
        let flags = rustix::net::RecvFlags::PEEK | rustix::net::RecvFlags::DONTWAIT;
        match rustix::net::recv(fd(s), &mut probe[..], flags) {
            Ok((0, _)) => return,
            Ok(_) => return std::future::pending().await,
            Err(Errno::AGAIN | Errno::INTR) => continue,
            Err(_) => return,
        }
    }
}
