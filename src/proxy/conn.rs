//! One connection abstraction over plain TCP and TLS (rustls), for both sides of the proxy: the
//! client connection (`listen ... ssl`) and the upstream one (`proxy_pass https://`).
//!
//! Everything stays in the readiness model of the rest of the proxy: the descriptor is
//! non-blocking, a wait is `readable`/`writable` on the monoio stream, and the bytes move with
//! plain system calls right after readiness. rustls is sans-IO, so a TLS stream is the same
//! socket plus a `rustls::Connection` that records go through (`read_tls`/`write_tls` on the
//! borrowed descriptor, `reader`/`writer` for the plaintext). The tunnel's splice path only
//! applies when both sides are [`Stream::Plain`] ([`Stream::plain`]).
//!
//! Memory: a plain stream holds nothing but its socket. A TLS stream also holds rustls' state
//! (keys, sequence numbers); received and outgoing records are held only while in flight (see
//! [`crate::tls::stream`]).

use std::cell::RefCell;
use std::io::{self, Write};
use std::rc::Rc;
use std::time::{Duration, Instant};

use monoio::net::TcpStream;
use rustix::io::Errno;
use rustix::net::Shutdown;

use crate::http::vars::TlsFacts;
use crate::sys::fd;
use crate::tls::peer::PeerCert;
pub use crate::tls::stream::{handshake, Side as TlsSide, Tls};

/// A connection: plain TCP or TLS over TCP.
pub enum Stream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP, after its handshake.
    Tls(Box<TlsStream>),
    /// Plain TCP answering an HTTP/0.9 request: writes drop everything up to the end of the
    /// response head, as nginx answers HTTP/0.9 with the bare body.
    Bare(Box<Bare>),
}

/// A plain stream whose writes skip the response head ([`Stream::Bare`]).
pub struct Bare {
    tcp: TcpStream,
    /// How much of the `\r\n\r\n` ending the head has been written; 4: the head is over.
    matched: std::cell::Cell<u8>,
}

impl Bare {
    /// Bytes of `data` that are still head (all of it while the end is not in sight).
    fn head_part(&self, data: &[u8]) -> usize {
        const END: &[u8; 4] = b"\r\n\r\n";
        let mut m = self.matched.get();
        let mut used = 0;
        while m < 4 && used < data.len() {
            let b = data[used];
            m = if b == END[m as usize] {
                m + 1
            } else {
                u8::from(b == b'\r')
            };
            used += 1;
        }
        self.matched.set(m);
        used
    }
}

/// A TLS connection whose handshake has completed.
pub struct TlsStream {
    tcp: TcpStream,
    tls: RefCell<Tls>,
    facts: TlsInfo,
}

/// What `$ssl_*` report, fixed at the end of the handshake (cheap to clone: a request holds
/// its own copy while the connection is borrowed mutably).
#[derive(Clone, Debug)]
pub struct TlsInfo {
    protocol: &'static str,
    cipher: &'static str,
    server_name: Option<Rc<str>>,
    session_reused: bool,
    /// The client's certificate, when it sent one (`ssl_verify_client`).
    client: Option<Rc<PeerCert>>,
}

impl TlsInfo {
    /// The facts `$ssl_protocol`, `$ssl_cipher`, `$ssl_server_name` and `$ssl_session_reused`
    /// read.
    pub fn facts(&self) -> TlsFacts<'_> {
        TlsFacts {
            protocol: self.protocol,
            cipher: self.cipher,
            server_name: self.server_name.as_deref(),
            session_reused: self.session_reused,
            client: self.client.as_deref(),
        }
    }
}

/// `io::Write` on a borrowed non-blocking descriptor (what rustls' acceptor writes its alert
/// to). `EAGAIN` is `WouldBlock`; `EINTR` is retried.
pub struct FdIo<'a>(pub &'a TcpStream);

impl Write for FdIo<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        loop {
            match rustix::io::write(fd(self.0), buf) {
                Err(Errno::INTR) => continue,
                r => return r.map_err(io::Error::from),
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Waits for `fut` until `deadline`; a passed deadline is `TimedOut`.
pub async fn until<F: std::future::Future<Output = io::Result<()>>>(
    fut: F,
    deadline: Instant,
) -> io::Result<()> {
    let now = Instant::now();
    if now >= deadline {
        return Err(io::ErrorKind::TimedOut.into());
    }
    match monoio::time::timeout(deadline - now, fut).await {
        Ok(r) => r,
        Err(_) => Err(io::ErrorKind::TimedOut.into()),
    }
}

/// The OpenSSL name of a rustls cipher suite (`$ssl_cipher`, `ssl_ciphers`).
pub fn openssl_cipher_name(suite: rustls::CipherSuite) -> &'static str {
    crate::tls::suites::openssl_name(suite).unwrap_or("")
}

impl TlsStream {
    /// Wraps a connection whose handshake [`handshake`] completed; `server_name` is the SNI
    /// the client sent (server side) or `None`.
    pub fn new(tcp: TcpStream, tls: Tls, server_name: Option<String>) -> TlsStream {
        let common = tls.common();
        let protocol = match common.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
            _ => "",
        };
        let cipher = common
            .negotiated_cipher_suite()
            .map_or("", |s| openssl_cipher_name(s.suite()));
        let session_reused = common.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
        TlsStream {
            tcp,
            tls: RefCell::new(tls),
            facts: TlsInfo {
                protocol,
                cipher,
                server_name: server_name.map(Rc::from),
                session_reused,
                client: None,
            },
        }
    }

    /// Records the certificate the client sent (server side).
    pub fn set_client_cert(&mut self, cert: Option<Rc<PeerCert>>) {
        self.facts.client = cert;
    }
}

#[cfg(test)]
impl TlsStream {
    /// The TLS state (tests look at what it holds).
    pub fn tls_state(&self) -> std::cell::Ref<'_, Tls> {
        self.tls.borrow()
    }
}

impl Drop for TlsStream {
    /// A closing TLS connection sends its close_notify (best effort, without waiting), as
    /// nginx's `SSL_shutdown` does, so clients see a clean end rather than a truncation.
    fn drop(&mut self) {
        self.tls.get_mut().close_notify(&self.tcp);
    }
}

/// A non-blocking read on a socket: `Ok(None)` when it would block, `Ok(Some(0))` at the end
/// of the stream.
pub fn read_now(s: &TcpStream, buf: &mut [u8]) -> io::Result<Option<usize>> {
    loop {
        match rustix::io::read(fd(s), &mut *buf) {
            Ok(n) => return Ok(Some(n)),
            Err(Errno::AGAIN) => return Ok(None),
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// A non-blocking write on a socket: `Ok(None)` when it would block.
pub fn write_now(s: &TcpStream, data: &[u8]) -> io::Result<Option<usize>> {
    loop {
        match rustix::io::write(fd(s), data) {
            Ok(n) => return Ok(Some(n)),
            Err(Errno::AGAIN) => return Ok(None),
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

impl Stream {
    /// The TCP socket underneath.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(t) => &t.tcp,
            Stream::Bare(b) => &b.tcp,
        }
    }

    /// For an HTTP/0.9 request: the same connection, its writes without the response head
    /// (the descriptor is duplicated into the new stream; dropping this one closes its copy).
    /// Plain streams only: HTTP/0.9 over TLS is refused.
    pub fn bare(&self) -> io::Result<Stream> {
        let tcp = match self {
            Stream::Plain(s) => s,
            _ => return Err(io::ErrorKind::Unsupported.into()),
        };
        let dup = std::net::TcpStream::from(fd(tcp).try_clone_to_owned()?);
        let tcp = TcpStream::from_std(dup)?;
        Ok(Stream::Bare(Box::new(Bare {
            tcp,
            matched: std::cell::Cell::new(0),
        })))
    }

    /// The socket when the stream is plain TCP (what `splice(2)` may move bytes on).
    pub fn plain(&self) -> Option<&TcpStream> {
        match self {
            Stream::Plain(s) => Some(s),
            Stream::Tls(_) | Stream::Bare(_) => None,
        }
    }

    /// `$ssl_protocol`, `$ssl_cipher`, `$ssl_server_name` of a TLS stream.
    pub fn tls_info(&self) -> Option<TlsInfo> {
        match self {
            Stream::Plain(_) | Stream::Bare(_) => None,
            Stream::Tls(t) => Some(t.facts.clone()),
        }
    }

    /// Reads what is available now. `Ok(None)`: nothing yet (wait with [`Stream::readable`]);
    /// `Ok(Some(0))`: end of stream.
    pub fn try_read(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        match self {
            Stream::Plain(_) | Stream::Bare(_) => read_now(self.tcp(), buf),
            Stream::Tls(t) => t.tls.borrow_mut().try_read(&t.tcp, buf),
        }
    }

    /// Writes what the socket (or rustls' bounded buffer) takes now. `Ok(None)`: nothing
    /// taken (wait with [`Stream::writable`]). A TLS stream may hold taken bytes until
    /// [`Stream::try_flush`] reports them out.
    pub fn try_write(&self, data: &[u8]) -> io::Result<Option<usize>> {
        match self {
            Stream::Plain(s) => write_now(s, data),
            Stream::Tls(t) => t.tls.borrow_mut().try_write(&t.tcp, data),
            Stream::Bare(b) => {
                let head = b.head_part(data);
                if head == data.len() {
                    return Ok(Some(head));
                }
                match write_now(&b.tcp, &data[head..])? {
                    Some(n) => Ok(Some(head + n)),
                    None if head > 0 => Ok(Some(head)),
                    None => Ok(None),
                }
            }
        }
    }

    /// Writes out bytes a TLS stream still holds. `Ok(true)`: nothing left (always, plain).
    pub fn try_flush(&self) -> io::Result<bool> {
        match self {
            Stream::Plain(_) | Stream::Bare(_) => Ok(true),
            Stream::Tls(t) => t.tls.borrow_mut().try_flush(&t.tcp),
        }
    }

    /// Whether a read would return something without waiting for the socket.
    pub fn has_buffered(&self) -> bool {
        match self {
            Stream::Plain(_) | Stream::Bare(_) => false,
            Stream::Tls(t) => t.tls.borrow().has_buffered(),
        }
    }

    /// Waits until a read may return something. Holds no buffer while waiting.
    pub async fn readable(&self) -> io::Result<()> {
        if self.has_buffered() {
            return Ok(());
        }
        self.tcp().readable(false).await
    }

    /// Waits until the socket takes more bytes.
    pub async fn writable(&self) -> io::Result<()> {
        self.tcp().writable(false).await
    }

    /// Reads what is available into `buf`, waiting for readability until `deadline`.
    /// `Ok(0)` is end of stream; a passed deadline is `TimedOut`.
    pub async fn read_some(&self, buf: &mut [u8], deadline: Instant) -> io::Result<usize> {
        loop {
            if let Some(n) = self.try_read(buf)? {
                return Ok(n);
            }
            until(self.readable(), deadline).await?;
        }
    }

    /// Writes all of `data` and flushes; each wait for writability is bounded by `timeout`.
    pub async fn write_all(&self, mut data: &[u8], timeout: Duration) -> io::Result<()> {
        while !data.is_empty() {
            match self.try_write(data)? {
                Some(n) => data = &data[n..],
                None => until(self.writable(), Instant::now() + timeout).await?,
            }
        }
        self.flush(timeout).await
    }

    /// Writes out what a TLS stream still holds; each wait is bounded by `timeout`.
    pub async fn flush(&self, timeout: Duration) -> io::Result<()> {
        while !self.try_flush()? {
            until(self.writable(), Instant::now() + timeout).await?;
        }
        Ok(())
    }

    /// Passes an end of stream on (a half-close): TLS sends its close_notify first (best
    /// effort, without waiting), then the TCP FIN.
    pub fn shutdown_write(&self) {
        if let Stream::Tls(t) = self {
            t.tls.borrow_mut().close_notify(&t.tcp);
        }
        let _ = rustix::net::shutdown(fd(self.tcp()), Shutdown::Write);
    }
}
