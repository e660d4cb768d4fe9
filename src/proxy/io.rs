//! Socket helpers the proxy uses after readiness: non-blocking reads and writes through the
//! borrowed descriptor (the same model as the tunnel), each wait bounded by a deadline, on
//! plain and TLS streams alike ([`Stream`]).

use std::io;
use std::time::{Duration, Instant};

use monoio::net::TcpStream;

use super::conn::Stream;
use rustix::io::Errno;

use crate::sys::fd;

/// Makes the socket non-blocking (the io_uring driver leaves accepted sockets blocking; the raw
/// reads and writes after readiness must never block the shard).
/// One `ioctl(FIONBIO)`, not `fcntl` get-then-set: two system calls per connection saved.
pub fn set_nonblocking(s: &TcpStream) -> io::Result<()> {
    rustix::io::ioctl_fionbio(fd(s), true)?;
    Ok(())
}

/// Reads what is available into `buf`, waiting for readability until `deadline`.
/// `Ok(0)` is end of stream; a passed deadline is `TimedOut`.
pub async fn read_some(s: &Stream, buf: &mut [u8], deadline: Instant) -> io::Result<usize> {
    s.read_some(buf, deadline).await
}

/// Appends what is available to `buf` (growing it by up to `max` bytes).
pub async fn read_into(
    s: &Stream,
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
pub async fn write_all(s: &Stream, data: &[u8], timeout: Duration) -> io::Result<()> {
    s.write_all(data, timeout).await
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
