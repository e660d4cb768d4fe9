//! The WebSocket client used by every load scenario: the HTTP/1.1 upgrade handshake (written
//! by hand, parsed with httparse, accept key verified) and masked frame I/O over monoio.
//!
//! One write per frame and one reusable buffer each way: the tool must not be the bottleneck
//! of the proxy it measures. `wss://` targets run the TLS handshake first (crate::tls).

use std::io::{self, Write as _};

use monoio::net::TcpStream;
use ringproxy::ws::{self, FrameError, FrameHeader, OpCode, Status};

use crate::cli::Target;
use crate::conn::{BufConn, Stream};
use crate::tls::{ClientTls, TlsStream};

/// Largest frame the client accepts from a server.
const MAX_FRAME: u64 = 1 << 30;
const MAX_RESPONSE_HEAD: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connect failed: {0}")]
    Connect(io::Error),
    #[error("TLS handshake failed: {0}")]
    Tls(io::Error),
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    #[error("handshake failed: {0}")]
    Handshake(String),
    #[error("protocol error: {0}")]
    Frame(#[from] FrameError),
    #[error("protocol error: {0}")]
    Protocol(&'static str),
    #[error("server closed the WebSocket")]
    Closed,
    #[error("reply does not match what was sent")]
    Mismatch,
    #[error("timed out")]
    Timeout,
}

/// xorshift64*: masks and key nonces need to be unpredictable to intermediaries, not
/// cryptographically strong, and this costs a few cycles per frame.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        let t = crate::push::now_ns();
        Self((t ^ seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn mask(&mut self) -> [u8; 4] {
        (self.next_u64() as u32).to_ne_bytes()
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let r = self.next_u64().to_ne_bytes();
            chunk.copy_from_slice(&r[..chunk.len()]);
        }
    }
}

pub struct WsClient {
    c: BufConn<Stream>,
    wbuf: Vec<u8>,
    /// Length of the frame last returned by `recv`, consumed on the next call so its payload
    /// can be borrowed in between.
    pending: usize,
    /// The status code of the server's Close frame, once one came (1005 when it had none).
    close_code: Option<u16>,
}

fn bad(msg: impl Into<String>) -> ClientError {
    ClientError::Handshake(msg.into())
}

fn has_token(value: &[u8], token: &str) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

impl WsClient {
    /// TCP connect, TLS handshake when `tls` is given (a full one unless resumption is
    /// enabled), then the upgrade; succeeds only on `101` with the right
    /// `Sec-WebSocket-Accept`.
    pub async fn connect(
        target: &Target,
        tls: Option<&ClientTls>,
        rng: &mut Rng,
    ) -> Result<Self, ClientError> {
        let tcp = TcpStream::connect_addr(target.addr)
            .await
            .map_err(ClientError::Connect)?;
        let _ = tcp.set_nodelay(true);
        let stream = match tls {
            None => Stream::Plain(tcp),
            Some(tls) => {
                let mut t = TlsStream::client(tcp, tls).map_err(ClientError::Tls)?;
                t.handshake().await.map_err(ClientError::Tls)?;
                Stream::Tls(Box::new(t))
            }
        };
        let mut nonce = [0u8; 16];
        rng.fill(&mut nonce);
        let key = ws::client_key(nonce);
        let mut req = Vec::with_capacity(256);
        write!(
            req,
            "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n",
            target.path, target.host
        )?;
        let mut c = BufConn::new(stream);
        let (res, wbuf) = c.write_all(req).await;
        res?;
        let head_len = loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(c.data()) {
                Ok(httparse::Status::Complete(n)) => {
                    check_101(&resp, &key)?;
                    break n;
                }
                Ok(httparse::Status::Partial) if c.data().len() < MAX_RESPONSE_HEAD => {
                    c.read_more(0).await.map_err(|e| {
                        if e.kind() == io::ErrorKind::UnexpectedEof {
                            bad("connection closed before the response head")
                        } else {
                            ClientError::Io(e)
                        }
                    })?;
                }
                Ok(httparse::Status::Partial) => return Err(bad("response head too large")),
                Err(e) => return Err(bad(format!("invalid response head: {e}"))),
            }
        };
        // Bytes after the head are already WebSocket frames; they stay in the buffer.
        c.consume(head_len);
        Ok(Self {
            c,
            wbuf,
            pending: 0,
            close_code: None,
        })
    }

    /// Drops both buffers while the connection idles: `hold` keeps thousands open and must
    /// measure the proxy's memory per connection, not the tool's.
    pub fn release_buffers(&mut self) {
        if self.pending == 0 {
            self.c.release_if_empty();
        }
        if let Stream::Tls(t) = &mut self.c.io {
            t.release_buffers();
        }
        self.wbuf = Vec::new();
    }

    /// Sends one whole message as a single masked frame, with one write.
    pub async fn send(
        &mut self,
        opcode: OpCode,
        payload: &[u8],
        mask: [u8; 4],
    ) -> Result<(), ClientError> {
        let mut w = std::mem::take(&mut self.wbuf);
        ws::write_frame(&mut w, true, opcode, Some(mask), payload);
        let (res, w) = self.c.write_all(w).await;
        self.wbuf = w;
        Ok(res?)
    }

    /// Waits for the next complete frame. Its payload is `self.payload(&h)` until the next call.
    pub async fn recv(&mut self) -> Result<FrameHeader, ClientError> {
        if self.pending > 0 {
            self.c.consume(self.pending);
            self.pending = 0;
        }
        loop {
            let need = match ws::decode_header(self.c.data(), MAX_FRAME)? {
                Status::Complete(h) => {
                    let total = h.frame_len() as usize;
                    if self.c.data().len() >= total {
                        if h.mask.is_some() {
                            return Err(ClientError::Protocol("server sent a masked frame"));
                        }
                        self.pending = total;
                        return Ok(h);
                    }
                    total
                }
                Status::Partial(n) => n,
            };
            self.c.read_more(need).await?;
        }
    }

    /// Whether the TLS handshake resumed a session (never for plain connections).
    pub fn resumed(&self) -> bool {
        matches!(&self.c.io, Stream::Tls(t) if t.resumed())
    }

    pub fn payload(&self, h: &FrameHeader) -> &[u8] {
        &self.c.data()[h.header_len..h.frame_len() as usize]
    }

    /// Receives one data message, answering pings on the way. `on_chunk(offset, bytes)` sees
    /// each frame's payload in order, so replies are checked without reassembling them.
    /// Returns the message's opcode and total length.
    pub async fn recv_message(
        &mut self,
        mask: [u8; 4],
        mut on_chunk: impl FnMut(usize, &[u8]),
    ) -> Result<(OpCode, usize), ClientError> {
        let mut total = 0;
        let mut op = None;
        loop {
            let h = self.recv().await?;
            match (h.opcode, op) {
                (OpCode::Ping, _) => {
                    let mut tmp = [0u8; 125];
                    let p = self.payload(&h);
                    tmp[..p.len()].copy_from_slice(p);
                    let n = p.len();
                    self.send(OpCode::Pong, &tmp[..n], mask).await?;
                }
                (OpCode::Pong, _) => {}
                (OpCode::Close, _) => {
                    self.close_code = Some(close_code(self.payload(&h)));
                    return Err(ClientError::Closed);
                }
                (OpCode::Text | OpCode::Binary, None) | (OpCode::Continuation, Some(_)) => {
                    let first = op.unwrap_or(h.opcode);
                    op = Some(first);
                    let p = self.payload(&h);
                    on_chunk(total, p);
                    total += p.len();
                    if h.fin {
                        return Ok((first, total));
                    }
                }
                (OpCode::Continuation, None) => {
                    return Err(ClientError::Protocol(
                        "continuation frame without a message",
                    ))
                }
                (_, Some(_)) => {
                    return Err(ClientError::Protocol("new message inside a fragmented one"))
                }
            }
        }
    }

    /// Answers a server's Close (echoing its code, as RFC 6455 asks) and waits for the server
    /// to close the connection.
    pub async fn answer_close(&mut self, mask: [u8; 4]) -> Result<(), ClientError> {
        let code = self.close_code.unwrap_or(1000);
        // 1005 is for reporting only: the answer then carries no code.
        let payload: &[u8] = &code.to_be_bytes();
        let payload = if code == 1005 { &[][..] } else { payload };
        self.send(OpCode::Close, payload, mask).await?;
        self.c.consume(std::mem::take(&mut self.pending));
        loop {
            match self.c.read_more(0).await {
                Ok(_) => self.c.consume(self.c.data().len()),
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The server's Close code, if `recv_message` met a Close frame.
    pub fn close_code(&self) -> Option<u16> {
        self.close_code
    }

    /// Sends `payload` and checks that the echo is byte-for-byte identical.
    pub async fn echo_check(&mut self, payload: &[u8], rng: &mut Rng) -> Result<(), ClientError> {
        self.send(OpCode::Binary, payload, rng.mask()).await?;
        let mut same = true;
        let (op, len) = self
            .recv_message(rng.mask(), |off, chunk| {
                same &= payload.get(off..off + chunk.len()) == Some(chunk);
            })
            .await?;
        if same && len == payload.len() && op == OpCode::Binary {
            Ok(())
        } else {
            Err(ClientError::Mismatch)
        }
    }

    /// Close handshake: send 1000, wait for the server's close frame, then for its TCP close
    /// (the server closes first, so TIME_WAIT stays on the server, not on our ports).
    pub async fn close(&mut self, mask: [u8; 4]) -> Result<(), ClientError> {
        self.send(OpCode::Close, &1000u16.to_be_bytes(), mask)
            .await?;
        loop {
            let h = self.recv().await?;
            if h.opcode == OpCode::Close {
                break;
            }
        }
        self.c.consume(std::mem::take(&mut self.pending));
        loop {
            match self.c.read_more(0).await {
                Ok(_) => self.c.consume(self.c.data().len()),
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// A Close frame's status code: its first two payload bytes, 1005 (none given) without them.
pub fn close_code(payload: &[u8]) -> u16 {
    match payload {
        [a, b, ..] => u16::from_be_bytes([*a, *b]),
        _ => 1005,
    }
}

fn check_101(resp: &httparse::Response<'_, '_>, key: &str) -> Result<(), ClientError> {
    if resp.code != Some(101) {
        return Err(bad(format!(
            "expected 101, got {} {}",
            resp.code.unwrap_or(0),
            resp.reason.unwrap_or("")
        )));
    }
    let mut upgrade = false;
    let mut connection = false;
    let mut accept_ok = false;
    let expected = ws::accept_key(key.as_bytes());
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("upgrade") {
            upgrade |= has_token(h.value, "websocket");
        } else if h.name.eq_ignore_ascii_case("connection") {
            connection |= has_token(h.value, "upgrade");
        } else if h.name.eq_ignore_ascii_case("sec-websocket-accept") {
            accept_ok = h.value.trim_ascii() == expected.as_bytes();
        }
    }
    match (upgrade, connection, accept_ok) {
        (true, true, true) => Ok(()),
        (false, _, _) => Err(bad("101 without `Upgrade: websocket`")),
        (_, false, _) => Err(bad("101 without `Connection: Upgrade`")),
        _ => Err(bad("wrong or missing Sec-WebSocket-Accept")),
    }
}
