//! A TLS connection on rustls' unbuffered API: the handshake and the record layer of
//! [`crate::proxy::conn::Stream::Tls`], for both ends (client connections on `listen ... ssl`,
//! upstream connections for `proxy_pass https://`).
//!
//! Why unbuffered: rustls' buffered `Connection` keeps a 4 KiB receive buffer for as long as
//! the connection lives, which was most of an idle wss tunnel's memory. Here the connection
//! owns bytes only while they are in flight, like a plain tunnel (docs/architecture.md,
//! decision 2):
//! - received records are read into a buffer from the shard's pool and decrypted there; only an
//!   incomplete record (or records left over when the caller's buffer filled up) is kept, in
//!   `inc`, and its memory is freed once it is processed;
//! - plaintext is encrypted straight into `out`, written at once, and `out` is freed when the
//!   socket took it all; while the peer reads slowly it holds the unwritten records.
//!
//! An idle connection holds rustls' state (keys, sequence numbers) and nothing else.
//!
//! rustls' contract for `process_tls_records`: the `discard` it reports is removed from the
//! front of the buffer before the next call, and the next call gets the rest of that same
//! buffer. Every call here passes the unprocessed bytes from their first one (`inc`, or the
//! pool buffer just read when `inc` is empty), so a handshake message split over records is
//! joined correctly.

use std::io;
use std::time::Instant;

use monoio::net::TcpStream;
use rustls::client::UnbufferedClientConnection;
use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncryptError, InsufficientSizeError, UnbufferedStatus,
};

use crate::proxy::conn::{read_now, until, write_now};
use crate::proxy::pool::PooledBuf;

/// Most plaintext put in one write's records (one full TLS record).
const RECORD: usize = 16 * 1024;

/// Room guessed for what records add to their plaintext (header, TLS 1.2 explicit nonce, tag,
/// TLS 1.3 content type); rustls reports the exact need when a guess is short.
const OVERHEAD: usize = 64;

/// Which end of the connection this is.
pub enum Side {
    /// We terminate TLS (a client connected to `listen ... ssl`).
    Server(UnbufferedServerConnection),
    /// We connect with TLS (`proxy_pass https://`).
    Client(UnbufferedClientConnection),
}

/// Runs `process_tls_records` on either side and hands the status to `$f` (the two sides'
/// statuses are different types).
macro_rules! process {
    ($side:expr, $buf:expr, $f:expr) => {
        match $side {
            Side::Server(c) => $f(c.process_tls_records($buf)),
            Side::Client(c) => $f(c.process_tls_records($buf)),
        }
    };
}

/// What a `process_tls_records` call came to.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Event {
    /// Something was done (records decrypted, handshake data queued): call again.
    Progress,
    /// Nothing more without more bytes from the peer.
    NeedData,
    /// Application data may be sent (and nothing is left to process without more bytes).
    Ready,
    /// Both ends have sent close_notify.
    Closed,
}

/// rustls' state and the bytes in flight; see the module docs.
pub struct Tls {
    side: Side,
    /// Received bytes not processed yet, starting at the first one rustls has not discarded.
    inc: Vec<u8>,
    /// Whether `inc` may hold whole records (a read stopped because the caller's buffer was
    /// full).
    more: bool,
    /// Decrypted bytes the caller's buffer had no room for: `rest[rest_at..]`.
    rest: Vec<u8>,
    rest_at: usize,
    /// Records not written to the socket yet: `out[out_at..]`.
    out: Vec<u8>,
    out_at: usize,
    /// The peer's close_notify has been processed.
    peer_closed: bool,
    /// Our close_notify is queued.
    closing: bool,
    /// The error that ended the connection; every later call reports it.
    failed: Option<rustls::Error>,
}

/// A rustls error as an I/O error (`InvalidData`, the rustls error inside for callers that
/// tell certificate errors apart).
pub fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// Appends what `f` writes into `out`, growing the room to what rustls says it needs.
fn append(
    out: &mut Vec<u8>,
    guess: usize,
    mut f: impl FnMut(&mut [u8]) -> Result<usize, Option<InsufficientSizeError>>,
) -> Result<(), rustls::Error> {
    let start = out.len();
    let mut room = guess;
    loop {
        out.resize(start + room, 0);
        match f(&mut out[start..]) {
            Ok(n) => {
                out.truncate(start + n);
                return Ok(());
            }
            Err(Some(InsufficientSizeError { required_size })) if required_size > room => {
                room = required_size;
            }
            Err(_) => {
                out.truncate(start);
                return Err(rustls::Error::EncryptError);
            }
        }
    }
}

fn encode_err(e: EncodeError) -> Option<InsufficientSizeError> {
    match e {
        EncodeError::InsufficientSize(s) => Some(s),
        EncodeError::AlreadyEncoded => None,
    }
}

fn encrypt_err(e: EncryptError) -> Option<InsufficientSizeError> {
    match e {
        EncryptError::InsufficientSize(s) => Some(s),
        EncryptError::EncryptExhausted => None,
    }
}

/// Where one `process_tls_records` call puts what it produces.
struct Sink<'a, 's> {
    /// Records to send.
    out: &'a mut Vec<u8>,
    /// Decrypted bytes: into `dst[*filled..]`, the overflow into `rest`.
    dst: &'a mut [u8],
    filled: &'a mut usize,
    rest: &'a mut Vec<u8>,
    peer_closed: &'a mut bool,
    /// Plaintext to encrypt if sending is possible; set to `None` once encrypted.
    send: Option<&'s [u8]>,
    /// Queue our close_notify if sending is possible; cleared once queued.
    close: bool,
}

/// Handles one status: returns the bytes to discard and what happened, or the error.
fn step<Data>(
    st: UnbufferedStatus<'_, '_, Data>,
    sink: &mut Sink<'_, '_>,
) -> Result<(usize, Event), rustls::Error> {
    let discard = st.discard;
    let state = st.state?;
    let event = match state {
        ConnectionState::ReadTraffic(mut r) => {
            while let Some(rec) = r.next_record() {
                let p = rec?.payload;
                let k = p.len().min(sink.dst.len() - *sink.filled);
                sink.dst[*sink.filled..*sink.filled + k].copy_from_slice(&p[..k]);
                *sink.filled += k;
                sink.rest.extend_from_slice(&p[k..]);
            }
            Event::Progress
        }
        ConnectionState::EncodeTlsData(mut e) => {
            append(sink.out, 512, |b| e.encode(b).map_err(encode_err))?;
            Event::Progress
        }
        // The records stay in `out`, which is written before anything queued after them.
        ConnectionState::TransmitTlsData(t) => {
            t.done();
            Event::Progress
        }
        ConnectionState::BlockedHandshake => Event::NeedData,
        ConnectionState::WriteTraffic(mut w) => {
            if let Some(data) = sink.send.take() {
                // One record per 4 KiB guessed (`ssl_buffer_size` may cut records smaller).
                let guess = data.len() + (data.len() / 4096 + 1) * OVERHEAD;
                append(sink.out, guess, |b| w.encrypt(data, b).map_err(encrypt_err))?;
            }
            if std::mem::take(&mut sink.close) {
                append(sink.out, OVERHEAD, |b| {
                    w.queue_close_notify(b).map_err(encrypt_err)
                })?;
            }
            Event::Ready
        }
        ConnectionState::PeerClosed => {
            *sink.peer_closed = true;
            Event::Progress
        }
        ConnectionState::Closed => Event::Closed,
        // Early data is never enabled (`max_early_data_size` stays 0).
        _ => return Err(rustls::Error::General("unexpected TLS state".into())),
    };
    Ok((discard, event))
}

impl Tls {
    /// A connection about to handshake; `inc` holds bytes already received (the ClientHello
    /// the acceptor read).
    fn new(side: Side, inc: Vec<u8>) -> Tls {
        Tls {
            side,
            inc,
            more: false,
            rest: Vec::new(),
            rest_at: 0,
            out: Vec::new(),
            out_at: 0,
            peer_closed: false,
            closing: false,
            failed: None,
        }
    }

    /// rustls' view of the connection (version, suite, handshake state).
    pub fn common(&self) -> &rustls::CommonState {
        match &self.side {
            Side::Server(c) => c,
            Side::Client(c) => c,
        }
    }

    /// Processes `data` (the unprocessed bytes, from their first one) until rustls needs more
    /// bytes or `dst` is full; `send`/`close` are done if sending is possible. Returns the
    /// bytes rustls is done with and the last event.
    fn process(
        &mut self,
        data: &mut [u8],
        dst: &mut [u8],
        filled: &mut usize,
        mut send: Option<&[u8]>,
        mut close: bool,
    ) -> Result<(usize, Event), rustls::Error> {
        let mut used = 0;
        self.more = false;
        loop {
            if *filled == dst.len() && !dst.is_empty() {
                self.more = used < data.len();
                return Ok((used, Event::NeedData));
            }
            let mut sink = Sink {
                out: &mut self.out,
                dst: &mut *dst,
                filled: &mut *filled,
                rest: &mut self.rest,
                peer_closed: &mut self.peer_closed,
                send: send.take(),
                close,
            };
            let r = process!(&mut self.side, &mut data[used..], |st| step(st, &mut sink));
            send = sink.send;
            close = sink.close;
            match r {
                Ok((discard, Event::Progress)) => used += discard,
                Ok((discard, event)) => return Ok((used + discard, event)),
                // The connection is over: what is left unprocessed no longer matters.
                Err(e) => {
                    self.fail(e.clone());
                    return Err(e);
                }
            }
        }
    }

    /// Records a fatal error and queues the alert rustls prepared for it (the callers write it
    /// out, best effort).
    fn fail(&mut self, e: rustls::Error) {
        self.failed = Some(e);
        self.rest = Vec::new();
        self.rest_at = 0;
        let mut filled = 0;
        // rustls hands out what it queued (a pending key update answer, then the alert) one
        // chunk per call, before it looks at received bytes. The calls stop once nothing is
        // queued, so the bad bytes are never processed again (which would queue a second
        // alert, or misread a handshake message rustls was joining).
        while self.common().wants_write() {
            let mut sink = Sink {
                out: &mut self.out,
                dst: &mut [],
                filled: &mut filled,
                rest: &mut self.rest,
                peer_closed: &mut self.peer_closed,
                send: None,
                close: false,
            };
            if process!(&mut self.side, &mut [], |st| step(st, &mut sink)).is_err() {
                break;
            }
        }
    }

    /// After an error: writes what is queued (a fatal alert) without waiting, and passes the
    /// error on.
    fn failed_with(&mut self, tcp: &TcpStream, e: io::Error) -> io::Error {
        let _ = self.flush_now(tcp);
        e
    }

    /// Processes `inc` (see [`Tls::process`]) and drops what rustls is done with.
    fn process_inc(
        &mut self,
        dst: &mut [u8],
        filled: &mut usize,
        send: Option<&[u8]>,
        close: bool,
    ) -> Result<Event, rustls::Error> {
        let mut inc = std::mem::take(&mut self.inc);
        let r = self.process(&mut inc, dst, filled, send, close);
        let used = match &r {
            Ok((used, _)) => *used,
            Err(_) => inc.len(),
        };
        inc.drain(..used);
        // An idle connection keeps no receive buffer.
        self.inc = if inc.is_empty() { Vec::new() } else { inc };
        r.map(|(_, event)| event)
    }

    /// Writes what `out` holds without waiting. `Ok(true)`: nothing left.
    fn flush_now(&mut self, tcp: &TcpStream) -> io::Result<bool> {
        while self.out_at < self.out.len() {
            match write_now(tcp, &self.out[self.out_at..])? {
                Some(n) => self.out_at += n,
                None => return Ok(false),
            }
        }
        self.out = Vec::new();
        self.out_at = 0;
        Ok(true)
    }

    /// Reads what the socket has into a buffer from the pool and processes it (in the pool
    /// buffer when nothing is pending, else after `inc`). `Ok(None)`: the socket would block;
    /// `Ok(Some(0))`: end of stream.
    fn read_socket(
        &mut self,
        tcp: &TcpStream,
        dst: &mut [u8],
        filled: &mut usize,
    ) -> io::Result<Option<usize>> {
        let mut pb = PooledBuf::take();
        let n = match read_now(tcp, pb.bytes())? {
            None => return Ok(None),
            Some(0) => return Ok(Some(0)),
            Some(n) => n,
        };
        let r = if self.inc.is_empty() {
            let data = &mut pb.bytes()[..n];
            let r = self.process(data, dst, filled, None, false);
            if let Ok((used, _)) = r {
                self.inc.extend_from_slice(&data[used..]);
            }
            r.map(|_| ())
        } else {
            self.inc.extend_from_slice(&pb.bytes()[..n]);
            self.process_inc(dst, filled, None, false).map(|_| ())
        };
        match r {
            Ok(()) => Ok(Some(n)),
            Err(e) => Err(self.failed_with(tcp, tls_error(e))),
        }
    }

    /// Reads decrypted bytes into `buf` without waiting: `Ok(None)` when nothing is there yet,
    /// `Ok(Some(0))` at the end of the stream (close_notify, or a FIN without one, which nginx
    /// also takes as the end).
    pub fn try_read(&mut self, tcp: &TcpStream, buf: &mut [u8]) -> io::Result<Option<usize>> {
        if let Some(e) = &self.failed {
            return Err(tls_error(e.clone()));
        }
        if buf.is_empty() {
            return Ok(Some(0));
        }
        if self.rest_at < self.rest.len() {
            let k = (self.rest.len() - self.rest_at).min(buf.len());
            buf[..k].copy_from_slice(&self.rest[self.rest_at..self.rest_at + k]);
            self.rest_at += k;
            if self.rest_at == self.rest.len() {
                self.rest = Vec::new();
                self.rest_at = 0;
            }
            return Ok(Some(k));
        }
        let mut filled = 0;
        if self.more {
            if let Err(e) = self.process_inc(buf, &mut filled, None, false) {
                return Err(self.failed_with(tcp, tls_error(e)));
            }
        }
        loop {
            // Records still waiting for the socket go out when they can; a write error is the
            // writer's to report, and must not lose what was just decrypted.
            let _ = self.flush_now(tcp);
            // (A record only overflows into `rest` once `buf` has some of it: `filled > 0`.)
            if filled > 0 {
                return Ok(Some(filled));
            }
            if self.peer_closed {
                return Ok(Some(0));
            }
            match self.read_socket(tcp, buf, &mut filled)? {
                None => return Ok(None),
                Some(0) => return Ok(Some(0)),
                Some(_) => {}
            }
        }
    }

    /// Encrypts up to one record of `data` and writes what the socket takes. `Ok(None)`:
    /// earlier records are still waiting for the socket, nothing taken.
    pub fn try_write(&mut self, tcp: &TcpStream, data: &[u8]) -> io::Result<Option<usize>> {
        if let Some(e) = &self.failed {
            return Err(tls_error(e.clone()));
        }
        if !self.flush_now(tcp)? {
            return Ok(None);
        }
        if data.is_empty() {
            return Ok(Some(0));
        }
        if self.closing {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        let chunk = &data[..data.len().min(RECORD)];
        let mut filled = 0;
        let event = match self.process_inc(&mut [], &mut filled, Some(chunk), false) {
            Ok(event) => event,
            Err(e) => return Err(self.failed_with(tcp, tls_error(e))),
        };
        if event != Event::Ready {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        self.flush_now(tcp)?;
        Ok(Some(chunk.len()))
    }

    /// Writes out records still held. `Ok(true)`: nothing left.
    pub fn try_flush(&mut self, tcp: &TcpStream) -> io::Result<bool> {
        self.flush_now(tcp)
    }

    /// Queues our close_notify (once) and writes what the socket takes, without waiting.
    pub fn close_notify(&mut self, tcp: &TcpStream) {
        if self.failed.is_some() {
            // The alert, if it has not gone out yet.
            let _ = self.flush_now(tcp);
            return;
        }
        if self.closing || self.common().is_handshaking() {
            return;
        }
        self.closing = true;
        let mut filled = 0;
        if self.process_inc(&mut [], &mut filled, None, true).is_ok() {
            let _ = self.flush_now(tcp);
        }
    }

    /// Whether a read would return something without the socket: decrypted bytes waiting,
    /// records left in `inc`, the end of the stream or an error to report.
    pub fn has_buffered(&self) -> bool {
        self.rest_at < self.rest.len() || self.more || self.peer_closed || self.failed.is_some()
    }
}

/// Drives the handshake of `side` on `tcp` to its end (or `deadline`): records both ways,
/// waiting for readiness in between. `inc`: bytes already received. Errors are the TLS error
/// (`InvalidData`, after the alert is sent), end of stream (`UnexpectedEof`) or `TimedOut`.
pub async fn handshake(
    tcp: &TcpStream,
    side: Side,
    inc: Vec<u8>,
    deadline: Instant,
) -> io::Result<Tls> {
    let mut t = Tls::new(side, inc);
    loop {
        let mut filled = 0;
        let event = match t.process_inc(&mut [], &mut filled, None, false) {
            Ok(event) => event,
            // The alert goes out best effort; the TLS error is what the caller reports.
            Err(e) => return Err(t.failed_with(tcp, tls_error(e))),
        };
        while !t.flush_now(tcp)? {
            until(tcp.writable(false), deadline).await?;
        }
        match event {
            Event::Ready if !t.common().is_handshaking() => return Ok(t),
            Event::Closed => return Err(io::ErrorKind::UnexpectedEof.into()),
            _ if t.peer_closed => return Err(io::ErrorKind::UnexpectedEof.into()),
            _ => {}
        }
        read_more(tcp, &mut t.inc, deadline).await?;
    }
}

/// Appends what the socket has to `into`, waiting for readability until `deadline` (one read
/// through a pool buffer). The end of the stream is `UnexpectedEof`.
pub async fn read_more(tcp: &TcpStream, into: &mut Vec<u8>, deadline: Instant) -> io::Result<()> {
    loop {
        let mut pb = PooledBuf::take();
        match read_now(tcp, pb.bytes())? {
            Some(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Some(n) => {
                into.extend_from_slice(&pb.bytes()[..n]);
                return Ok(());
            }
            None => {
                drop(pb);
                until(tcp.readable(false), deadline).await?;
            }
        }
    }
}

#[cfg(test)]
impl Tls {
    /// Bytes of buffer the connection holds besides rustls' state.
    fn held(&self) -> usize {
        self.inc.capacity() + self.rest.capacity() + self.out.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::conn::{Stream, TlsStream};
    use std::io::{Read, Write};
    use std::sync::Arc;
    use std::time::Duration;

    fn pattern(n: usize, seed: usize) -> Vec<u8> {
        (0..n).map(|i| ((i + seed) * 7 % 251) as u8).collect()
    }

    /// A server configuration for `localhost` and a client configuration trusting it.
    fn configs() -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let cert = ck.cert.der().clone();
        let key =
            rustls::pki_types::PrivateKeyDer::try_from(ck.signing_key.serialize_der()).unwrap();
        let server = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], key)
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert).unwrap();
        let client = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        (Arc::new(server), Arc::new(client))
    }

    /// Runs `server` on a monoio runtime with a TLS stream accepted on 127.0.0.1 (the
    /// handshake done), while `client` runs in a thread with a rustls client connected to it.
    fn with_pair<C, S, F>(client: C, server: S)
    where
        C: FnOnce(rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>)
            + Send
            + 'static,
        S: FnOnce(Stream) -> F,
        F: std::future::Future<Output = ()>,
    {
        let (scfg, ccfg) = configs();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let peer = std::thread::spawn(move || {
            let sock = std::net::TcpStream::connect(addr).unwrap();
            sock.set_read_timeout(Some(Duration::from_secs(20)))
                .unwrap();
            let conn =
                rustls::ClientConnection::new(ccfg, "localhost".try_into().unwrap()).unwrap();
            client(rustls::StreamOwned::new(conn, sock));
        });
        let (sock, _) = listener.accept().unwrap();
        sock.set_nonblocking(true).unwrap();
        let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .unwrap();
        rt.block_on(async move {
            let tcp = TcpStream::from_std(sock).unwrap();
            let deadline = Instant::now() + Duration::from_secs(20);
            let conn = UnbufferedServerConnection::new(scfg).unwrap();
            let tls = handshake(&tcp, Side::Server(conn), Vec::new(), deadline)
                .await
                .expect("handshake");
            let s = Stream::Tls(Box::new(TlsStream::new(tcp, tls, None)));
            monoio::time::timeout(Duration::from_secs(20), server(s))
                .await
                .expect("server side in time");
        });
        peer.join().expect("client side");
    }

    fn held(s: &Stream) -> usize {
        match s {
            Stream::Tls(t) => t.tls_state().held(),
            _ => unreachable!(),
        }
    }

    #[test]
    fn records_larger_than_the_readers_buffer_arrive_whole_across_a_key_update() {
        const ROUND: usize = 64 * 1024;
        with_pair(
            |mut c| {
                for round in 0..3 {
                    if round == 2 {
                        // TLS 1.3 key update, with an update requested from the server.
                        c.conn.refresh_traffic_keys().unwrap();
                    }
                    c.write_all(&pattern(ROUND, round)).unwrap();
                    let mut back = vec![0; ROUND];
                    c.read_exact(&mut back).unwrap();
                    assert!(
                        back == pattern(ROUND, round),
                        "echo of round {round} intact"
                    );
                }
                c.conn.send_close_notify();
                c.flush().unwrap();
                // The server answers our close_notify with its own: a clean end, not a
                // truncation (which rustls reports as UnexpectedEof).
                let mut rest = Vec::new();
                c.read_to_end(&mut rest).expect("clean close");
                assert!(rest.is_empty());
            },
            |s| async move {
                let deadline = Instant::now() + Duration::from_secs(20);
                for round in 0..3 {
                    let mut got = Vec::new();
                    // A reader buffer far smaller than a record: the rest of each record
                    // waits in the connection.
                    let mut small = [0u8; 100];
                    while got.len() < ROUND {
                        let n = s.read_some(&mut small, deadline).await.unwrap();
                        assert!(n > 0, "no end of stream mid-round");
                        got.extend_from_slice(&small[..n]);
                    }
                    assert!(got == pattern(ROUND, round), "round {round} intact");
                    assert_eq!(held(&s), 0, "all read: no buffer held");
                    s.write_all(&got, Duration::from_secs(20)).await.unwrap();
                    assert_eq!(held(&s), 0, "all written: no buffer held");
                }
                let mut b = [0u8; 100];
                assert_eq!(s.read_some(&mut b, deadline).await.unwrap(), 0);
                s.shutdown_write();
            },
        );
    }

    #[test]
    fn a_slow_reader_gets_every_byte_and_the_writer_waits_for_it() {
        const TOTAL: usize = 8 << 20;
        // The reader starts once the writer has found the socket full (ordering, not a sleep
        // that a loaded machine could make too short for the writer to fill it).
        let (full_tx, full_rx) = std::sync::mpsc::channel::<()>();
        with_pair(
            move |mut c| {
                c.write_all(b"go").unwrap();
                full_rx
                    .recv_timeout(Duration::from_secs(20))
                    .expect("the writer blocked on the unread socket");
                let mut got = vec![0; TOTAL];
                c.read_exact(&mut got).unwrap();
                assert!(got == pattern(TOTAL, 1), "bytes intact");
            },
            |s| async move {
                let deadline = Instant::now() + Duration::from_secs(20);
                let mut b = [0u8; 2];
                assert_eq!(s.read_some(&mut b, deadline).await.unwrap(), 2);
                let data = pattern(TOTAL, 1);
                let mut at = 0;
                let mut blocked = false;
                while at < TOTAL {
                    match s.try_write(&data[at..]).unwrap() {
                        Some(n) => at += n,
                        None => {
                            if !blocked {
                                blocked = true;
                                full_tx.send(()).unwrap();
                            }
                            s.writable().await.unwrap();
                        }
                    }
                }
                s.flush(Duration::from_secs(20)).await.unwrap();
                assert!(blocked, "8 MiB filled the socket while the client waited");
                assert_eq!(held(&s), 0);
            },
        );
    }

    #[test]
    fn a_corrupted_record_is_an_error_answered_with_an_alert() {
        with_pair(
            |mut c| {
                c.conn.complete_io(&mut c.sock).unwrap();
                c.conn.writer().write_all(b"hello").unwrap();
                let mut wire = Vec::new();
                c.conn.write_tls(&mut wire).unwrap();
                let last = wire.len() - 1;
                wire[last] ^= 0x40; // in the tag
                c.sock.write_all(&wire).unwrap();
                let mut reply = Vec::new();
                // The alert, then an ordinary close: the server read the whole record.
                c.sock.read_to_end(&mut reply).unwrap();
                let mut rd = &reply[..];
                let mut got = Ok(());
                while !rd.is_empty() && got.is_ok() {
                    c.conn.read_tls(&mut rd).unwrap();
                    got = c.conn.process_new_packets().map(drop);
                }
                assert_eq!(
                    got,
                    Err(rustls::Error::AlertReceived(
                        rustls::AlertDescription::BadRecordMac
                    )),
                    "the alert came back"
                );
            },
            |s| async move {
                let deadline = Instant::now() + Duration::from_secs(20);
                let mut b = [0u8; 64];
                let e = s.read_some(&mut b, deadline).await.unwrap_err();
                assert_eq!(e.kind(), io::ErrorKind::InvalidData);
                // The failure sticks.
                assert!(s.try_read(&mut b).is_err());
                drop(s);
            },
        );
    }
}
