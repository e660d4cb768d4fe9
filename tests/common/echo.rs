//! The echo backend of the integration tests, written here on tokio so the proxy's tests do
//! not depend on the load tool: HTTP/1.1 with keep-alive, Content-Length and chunked request
//! bodies (read and dropped), `Expect: 100-continue`, HEAD, any path ending in `/headers`
//! answered with the request head it received (what a proxy forwarded), and after a
//! WebSocket upgrade an echo of every message (tokio-tungstenite framing; pings answered, the
//! close handshake completed), bytes sent right behind the upgrade request included.
//!
//! Each backend runs on its own thread with its own tokio runtime, so sync and async tests use
//! it alike; dropping it stops the runtime and closes every connection. `serve` is the
//! per-connection part, also used over TLS by `tls_backend`.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// The body of every answer but `/headers`.
pub const ANSWER: &[u8] = b"echo backend\n";
const MAX_HEAD: usize = 64 * 1024;

/// A connection handler run by a [`Server`] for each accepted TCP connection.
pub type Handler = Arc<dyn Fn(TcpStream) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// A listener on 127.0.0.1:0 served by its own thread and tokio runtime until dropped.
pub struct Server {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    pub fn start(name: &str, handler: Handler) -> Server {
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("echo runtime");
                rt.block_on(async move {
                    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
                        .await
                        .expect("bind 127.0.0.1:0");
                    addr_tx.send(l.local_addr().unwrap()).unwrap();
                    let accept = async {
                        loop {
                            match l.accept().await {
                                Ok((s, _)) => {
                                    let _ = s.set_nodelay(true);
                                    tokio::spawn(handler(s));
                                }
                                // Out of descriptors: serve the others, try again shortly.
                                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                            }
                        }
                    };
                    tokio::select! {
                        _ = stopped => {}
                        _ = accept => {}
                    }
                });
                // Dropping the runtime drops every connection task, closing its socket.
            })
            .expect("spawn the echo thread");
        let addr = addr_rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the echo backend listening within 20 s");
        Server {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.stop.take().unwrap().send(());
        let _ = self.thread.take().unwrap().join();
    }
}

impl Server {
    /// A backend that accepts an upgrade to the non-WebSocket protocol `tcp-echo` (whatever
    /// the request asked) and then echoes raw bytes until the client closes.
    pub fn raw_echo() -> Server {
        Server::start(
            "raw-echo",
            Arc::new(|mut s: TcpStream| {
                Box::pin(async move {
                    if super::read_head(&mut s).await.is_none() {
                        return;
                    }
                    let _ = s
                        .write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: tcp-echo\r\nConnection: Upgrade\r\n\r\n")
                        .await;
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                })
            }),
        )
    }
}

/// The plain echo backend on 127.0.0.1:0.
pub struct Echo {
    pub addr: SocketAddr,
    _server: Server,
}

impl Echo {
    pub fn start() -> Echo {
        let server = Server::start("echo", Arc::new(|s| Box::pin(serve(s, ANSWER.to_vec()))));
        Echo {
            addr: server.addr,
            _server: server,
        }
    }
}

/// The echo backend on a unix stream socket (bound at `path`, which must not exist yet), on
/// its own thread and runtime until dropped.
#[allow(dead_code)]
pub struct UnixEcho {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[allow(dead_code)]
impl UnixEcho {
    pub fn start(path: &std::path::Path) -> UnixEcho {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let path = path.to_path_buf();
        let thread = std::thread::Builder::new()
            .name("unix-echo".to_string())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("echo runtime");
                rt.block_on(async move {
                    let l = tokio::net::UnixListener::bind(&path).expect("bind the unix socket");
                    ready_tx.send(()).unwrap();
                    let accept = async {
                        loop {
                            match l.accept().await {
                                Ok((s, _)) => {
                                    tokio::spawn(serve(s, ANSWER.to_vec()));
                                }
                                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                            }
                        }
                    };
                    tokio::select! {
                        _ = stopped => {}
                        _ = accept => {}
                    }
                });
            })
            .expect("spawn the echo thread");
        ready_rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the unix echo backend listening within 20 s");
        UnixEcho {
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for UnixEcho {
    fn drop(&mut self) {
        let _ = self.stop.take().unwrap().send(());
        let _ = self.thread.take().unwrap().join();
    }
}

/// What the server needs from a request head.
struct Head {
    len: usize,
    head_method: bool,
    mirror: bool,
    keep_alive: bool,
    upgrade: bool,
    ws_key: Option<Vec<u8>>,
    ws_version_ok: bool,
    expect_continue: bool,
    content_length: u64,
    chunked: bool,
}

fn has_token(v: &[u8], token: &str) -> bool {
    v.split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// `Ok(None)`: more bytes needed; `Err`: not HTTP.
fn parse_head(buf: &[u8]) -> Result<Option<Head>, ()> {
    let mut headers = [httparse::EMPTY_HEADER; 100];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(()),
    };
    let path = req.path.unwrap_or("/");
    let mut h = Head {
        len,
        head_method: req.method == Some("HEAD"),
        mirror: path.split('?').next().unwrap_or("").ends_with("/headers"),
        keep_alive: req.version == Some(1),
        upgrade: false,
        ws_key: None,
        ws_version_ok: false,
        expect_continue: false,
        content_length: 0,
        chunked: false,
    };
    let mut conn_upgrade = false;
    for hd in req.headers.iter() {
        let (name, v) = (hd.name, hd.value);
        if name.eq_ignore_ascii_case("connection") {
            h.keep_alive &= !has_token(v, "close");
            conn_upgrade |= has_token(v, "upgrade");
        } else if name.eq_ignore_ascii_case("upgrade") {
            h.upgrade |= has_token(v, "websocket");
        } else if name.eq_ignore_ascii_case("sec-websocket-key") {
            h.ws_key = Some(v.trim_ascii().to_vec());
        } else if name.eq_ignore_ascii_case("sec-websocket-version") {
            h.ws_version_ok = v.trim_ascii() == b"13";
        } else if name.eq_ignore_ascii_case("content-length") {
            h.content_length = std::str::from_utf8(v)
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .ok_or(())?;
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            h.chunked |= has_token(v, "chunked");
        } else if name.eq_ignore_ascii_case("expect") {
            h.expect_continue |= v.eq_ignore_ascii_case(b"100-continue");
        }
    }
    h.upgrade &= conn_upgrade && req.method == Some("GET");
    Ok(Some(h))
}

/// A stream and the bytes read from it but not used yet.
struct Conn<S> {
    s: S,
    buf: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    /// Reads more; `Err` at the end of the stream.
    async fn more(&mut self) -> std::io::Result<()> {
        let mut b = [0u8; 16 * 1024];
        match self.s.read(&mut b).await? {
            0 => Err(std::io::ErrorKind::UnexpectedEof.into()),
            n => {
                self.buf.extend_from_slice(&b[..n]);
                Ok(())
            }
        }
    }

    async fn skip(&mut self, mut n: u64) -> std::io::Result<()> {
        while n > 0 {
            if self.buf.is_empty() {
                self.more().await?;
            }
            let take = (self.buf.len() as u64).min(n) as usize;
            self.buf.drain(..take);
            n -= take as u64;
        }
        Ok(())
    }

    /// Reads and drops a chunked body, trailers included.
    async fn skip_chunked(&mut self) -> std::io::Result<()> {
        let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "bad chunked body");
        loop {
            let size = loop {
                match httparse::parse_chunk_size(&self.buf) {
                    Ok(httparse::Status::Complete((used, size))) => {
                        self.buf.drain(..used);
                        break size;
                    }
                    Ok(httparse::Status::Partial) if self.buf.len() < 4096 => self.more().await?,
                    _ => return Err(bad()),
                }
            };
            if size == 0 {
                break;
            }
            self.skip(size).await?;
            while self.buf.len() < 2 {
                self.more().await?;
            }
            if &self.buf[..2] != b"\r\n" {
                return Err(bad());
            }
            self.buf.drain(..2);
        }
        loop {
            match self.buf.windows(2).position(|w| w == b"\r\n") {
                Some(i) => {
                    self.buf.drain(..i + 2);
                    if i == 0 {
                        return Ok(());
                    }
                }
                None if self.buf.len() < MAX_HEAD => self.more().await?,
                None => return Err(bad()),
            }
        }
    }
}

/// Serves one connection: requests until the client closes or asks to, or a WebSocket echo
/// after an upgrade. `answer` is the body of every response but `/headers`.
pub async fn serve<S>(s: S, answer: Vec<u8>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut c = Conn { s, buf: Vec::new() };
    loop {
        let head = loop {
            match parse_head(&c.buf) {
                Ok(Some(h)) => break h,
                Ok(None) if c.buf.len() < MAX_HEAD => {
                    if c.more().await.is_err() {
                        return;
                    }
                }
                _ => {
                    let _ = c
                        .s
                        .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                        .await;
                    let _ = c.s.shutdown().await;
                    return;
                }
            }
        };
        if head.upgrade {
            return upgrade(c, head).await;
        }
        let body = if head.mirror {
            c.buf[..head.len].to_vec()
        } else {
            answer.clone()
        };
        c.buf.drain(..head.len);
        let mut resp = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{}\r\n",
            body.len(),
            if head.keep_alive {
                ""
            } else {
                "Connection: close\r\n"
            }
        )
        .into_bytes();
        if !head.head_method {
            resp.extend_from_slice(&body);
        }
        let has_body = head.chunked || head.content_length > 0;
        if head.expect_continue
            && has_body
            && c.s
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .await
                .is_err()
        {
            return;
        }
        let read = if head.chunked {
            c.skip_chunked().await
        } else {
            c.skip(head.content_length).await
        };
        if read.is_err() || c.s.write_all(&resp).await.is_err() {
            return;
        }
        if !head.keep_alive {
            let _ = c.s.shutdown().await;
            return;
        }
    }
}

async fn upgrade<S>(mut c: Conn<S>, head: Head)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let Some(key) = head.ws_key.as_deref().filter(|_| head.ws_version_ok) else {
        let _ = c
            .s
            .write_all(b"HTTP/1.1 426 Upgrade Required\r\nSec-WebSocket-Version: 13\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .await;
        return;
    };
    let resp = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n\r\n",
        derive_accept_key(key)
    );
    if c.s.write_all(resp.as_bytes()).await.is_err() {
        return;
    }
    // Frames the client sent right behind its request are the WebSocket's first bytes.
    let early = c.buf.split_off(head.len);
    let mut ws = WebSocketStream::from_partially_read(c.s, early, Role::Server, None).await;
    // tungstenite answers pings and completes the close handshake while reading.
    while let Some(Ok(m)) = ws.next().await {
        if matches!(m, Message::Text(_) | Message::Binary(_)) && ws.send(m).await.is_err() {
            return;
        }
    }
}

/// Writes `data` on a raw upgraded connection and reads it back within 20 s: a tunnel to a
/// raw echo backend ([`Server::raw_echo`]) that must pass bytes unchanged.
pub async fn raw_echo_once(s: &mut TcpStream, data: &[u8]) {
    s.write_all(data).await.unwrap();
    let mut got = vec![0u8; data.len()];
    tokio::time::timeout(Duration::from_secs(20), s.read_exact(&mut got))
        .await
        .expect("the raw echo in time")
        .expect("the raw echo");
    assert_eq!(got, data, "the raw tunnel changed the bytes");
}
