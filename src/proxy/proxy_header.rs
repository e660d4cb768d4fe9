//! Reading the PROXY protocol header of a `listen ... proxy_protocol` connection:
//! `handler::serve` calls [`read`] right after accept, before TLS (as nginx), and the
//! connection goes on to `tls::accept` and the first request head only when a whole, valid
//! header was read. The bytes are parsed by `http::proxy_protocol`.
//!
//! Only the header's own bytes are consumed: each step peeks at what the socket holds, and
//! reads exactly what belongs to the header, so what follows (a ClientHello, a request head)
//! stays in the socket for the next step. A header split across segments is awaited (nginx
//! wants it in the first read); the wait ends at `client_header_timeout`. A malformed header,
//! or the end of the stream inside one, closes the connection with nginx's error-log line.

use std::net::SocketAddr;
use std::time::Instant;

use monoio::net::TcpStream;
use rustix::io::Errno;
use rustix::net::RecvFlags;

use super::conn::{read_now, until};
use crate::http::proxy_protocol::{parse, Broken, ProxyAddrs, Status};
use crate::log;
use crate::sys::fd;

/// Reads the header (at most `max` bytes) by `deadline`. `None`: close the connection;
/// `Some(None)`: a header without addresses (`UNKNOWN`, LOCAL).
pub(crate) async fn read(
    tcp: &TcpStream,
    max: usize,
    deadline: Instant,
    peer: SocketAddr,
    server: SocketAddr,
) -> Option<Option<ProxyAddrs>> {
    let client = peer.ip();
    let mut got: Vec<u8> = Vec::new();
    let mut peeked = vec![0u8; max];
    loop {
        let room = max - got.len();
        let n = match rustix::net::recv(fd(tcp), &mut peeked[..room], RecvFlags::PEEK) {
            Ok((0, _)) => {
                if got.is_empty() {
                    log!(Info, "client closed connection while reading PROXY protocol, client: {client}, server: {server}");
                } else {
                    log!(
                        Error,
                        "{} while reading PROXY protocol, client: {client}, server: {server}",
                        Broken::Header(got)
                    );
                }
                return None;
            }
            Ok((n, _)) => n,
            Err(Errno::AGAIN) => {
                if until(tcp.readable(false), deadline).await.is_err() {
                    log!(Info, "client timed out (110: Connection timed out) while reading PROXY protocol, client: {client}, server: {server}");
                    return None;
                }
                continue;
            }
            Err(Errno::INTR) => continue,
            Err(e) => {
                log!(Info, "recv() failed ({e}) while reading PROXY protocol, client: {client}, server: {server}");
                return None;
            }
        };
        let before = got.len();
        got.extend_from_slice(&peeked[..n]);
        let (take, done) = match parse(&got, max) {
            Ok(Status::Incomplete) => (n, None),
            Ok(Status::Done { len, addrs }) => (len - before, Some(addrs)),
            Err(e) => {
                log!(
                    Error,
                    "{e} while reading PROXY protocol, client: {client}, server: {server}"
                );
                return None;
            }
        };
        // What was peeked is in the socket's buffer: this read returns it at once.
        if !matches!(read_now(tcp, &mut peeked[..take]), Ok(Some(r)) if r == take) {
            return None;
        }
        if done.is_some() {
            return done;
        }
    }
}
