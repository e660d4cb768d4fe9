//! `ringproxy-load echo`: the backend for proxy tests and benchmarks.
//!
//! Speaks just enough HTTP/1.1 to be a fair upstream (keep-alive, Content-Length and chunked
//! request bodies, `GET .../headers` mirrors the request head so tests can see what a proxy
//! forwarded) and RFC 6455 WebSocket: echo frame by frame, ping/pong, close handshake, and a
//! timestamped broadcast on `/push*` paths. One listener socket per thread (SO_REUSEPORT), one
//! monoio runtime per thread, as in the proxy itself. With `--tls-cert/--tls-key` it speaks
//! only TLS (HTTPS and wss; `/push` is plain-only), so a proxy's TLS-to-backend path has a peer.

use std::io::Write as _;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use monoio::net::{TcpListener, TcpStream};
use ringproxy::ws::{self, OpCode, Status};
use socket2::{Domain, Protocol, Socket, Type};

use crate::cli::EchoArgs;
use crate::conn::{BufConn, Stream};
use crate::push::Hub;
use crate::tls::TlsStream;

const MAX_HEAD: usize = 64 * 1024;
/// Largest frame the echo server buffers; bulk runs use up to a few MiB.
const MAX_FRAME: u64 = 64 * 1024 * 1024;
const OK_BODY: &[u8] = b"ringproxy-load echo\n";
/// How long a client may take to complete the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

fn bind_reuseport(addr: SocketAddr) -> Result<std::net::TcpListener> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.bind(&addr.into())
        .with_context(|| format!("cannot bind {addr}"))?;
    s.listen(4096)?;
    s.set_nonblocking(true)?;
    Ok(s.into())
}

pub fn run(args: EchoArgs) -> Result<()> {
    let addr: SocketAddr = args
        .listen
        .parse()
        .with_context(|| format!("--listen {:?} is not IP:PORT", args.listen))?;
    let tls = match &args.tls {
        Some((cert, key)) => Some(crate::tls::server(cert, key)?),
        None => None,
    };
    // Bind every thread's socket before announcing the address, so a client that reads the
    // `listening on` line can connect at once; port 0 is resolved by the first bind.
    let first = bind_reuseport(addr)?;
    let bound = first.local_addr()?;
    let mut listeners = vec![first];
    for _ in 1..args.threads {
        listeners.push(bind_reuseport(bound)?);
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening on {bound}")?;
    out.flush()?;
    drop(out);

    let (built, runtime_built) = std::sync::mpsc::channel::<()>();
    let handles: Vec<_> = listeners
        .into_iter()
        .enumerate()
        .map(|(i, l)| {
            let rate = args.push_rate;
            let tls = tls.clone();
            let built = built.clone();
            std::thread::Builder::new()
                .name(format!("echo-{i}"))
                .spawn(move || {
                    crate::rt::block_on(|| {
                        let _ = built.send(());
                        serve(l, rate, tls)
                    })
                })
        })
        .collect::<Result<_, _>>()?;
    drop(built);
    // Second line: the driver the threads run. A reader that only wanted the address may have
    // closed the pipe by now; that is not an error of the server.
    if runtime_built.recv().is_ok() {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "driver {}", crate::rt::driver()).and_then(|()| out.flush());
    }
    for h in handles {
        h.join()
            .map_err(|_| anyhow::anyhow!("echo thread panicked"))???;
    }
    Ok(())
}

async fn serve(
    std_listener: std::net::TcpListener,
    push_rate: f64,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> Result<()> {
    let listener = TcpListener::from_std(std_listener)?;
    let hub = Rc::new(Hub::default());
    if push_rate > 0.0 {
        monoio::spawn(hub.clone().run_ticker(push_rate));
    }
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let _ = stream.set_nodelay(true);
                match &tls {
                    None => drop(monoio::spawn(handle(Stream::Plain(stream), hub.clone()))),
                    Some(cfg) => drop(monoio::spawn(accept_tls(stream, cfg.clone(), hub.clone()))),
                }
            }
            // Out of descriptors or a connection reset before accept: keep serving the rest.
            Err(_) => monoio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}

/// Completes the server side of the TLS handshake (bounded), then serves as over TCP.
async fn accept_tls(stream: TcpStream, cfg: Arc<rustls::ServerConfig>, hub: Rc<Hub>) {
    let Ok(mut t) = TlsStream::server(stream, cfg) else {
        return;
    };
    if let Ok(Ok(())) = monoio::time::timeout(TLS_HANDSHAKE_TIMEOUT, t.handshake()).await {
        handle(Stream::Tls(Box::new(t)), hub).await;
    }
}

/// What the server needs from a request head, copied out so the read buffer can move on.
struct Head {
    len: usize,
    method_head: bool,
    path_headers: bool,
    path_push: bool,
    keep_alive: bool,
    ws_key: Option<Vec<u8>>,
    ws_upgrade: bool,
    ws_version_ok: bool,
    expect_continue: bool,
    content_length: Option<u64>,
    chunked: bool,
}

fn has_token(value: &[u8], token: &str) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

enum HeadResult {
    Complete(Head),
    Partial,
    Invalid,
}

fn parse_head(buf: &[u8]) -> HeadResult {
    let mut headers = [httparse::EMPTY_HEADER; 100];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return HeadResult::Partial,
        Err(_) => return HeadResult::Invalid,
    };
    let path = req.path.unwrap_or("/");
    let version = req.version.unwrap_or(0);
    let mut h = Head {
        len,
        method_head: req.method == Some("HEAD"),
        // Any path ending in /headers, so a proxied location prefix (`/websocket/headers`) works.
        path_headers: path.split('?').next().unwrap_or("").ends_with("/headers"),
        path_push: path.starts_with("/push"),
        keep_alive: version == 1,
        ws_key: None,
        ws_upgrade: false,
        ws_version_ok: false,
        expect_continue: false,
        content_length: None,
        chunked: false,
    };
    let mut conn_upgrade = false;
    for hd in req.headers.iter() {
        let v = hd.value;
        let name = hd.name;
        if name.eq_ignore_ascii_case("connection") {
            if has_token(v, "close") {
                h.keep_alive = false;
            }
            conn_upgrade |= has_token(v, "upgrade");
        } else if name.eq_ignore_ascii_case("upgrade") {
            h.ws_upgrade |= has_token(v, "websocket");
        } else if name.eq_ignore_ascii_case("sec-websocket-key") {
            h.ws_key = Some(v.trim_ascii().to_vec());
        } else if name.eq_ignore_ascii_case("sec-websocket-version") {
            h.ws_version_ok = v.trim_ascii() == b"13";
        } else if name.eq_ignore_ascii_case("content-length") {
            match std::str::from_utf8(v)
                .ok()
                .and_then(|s| s.trim().parse().ok())
            {
                Some(n) => h.content_length = Some(n),
                None => return HeadResult::Invalid,
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            h.chunked |= has_token(v, "chunked");
        } else if name.eq_ignore_ascii_case("expect") {
            h.expect_continue |= v.eq_ignore_ascii_case(b"100-continue");
        }
    }
    h.ws_upgrade &= conn_upgrade && req.method == Some("GET");
    HeadResult::Complete(h)
}

async fn handle(stream: Stream, hub: Rc<Hub>) {
    let mut c = BufConn::new(stream);
    let mut wbuf = Vec::with_capacity(1024);
    loop {
        let head = loop {
            match parse_head(c.data()) {
                HeadResult::Complete(h) => break h,
                HeadResult::Partial if c.data().len() < MAX_HEAD => {
                    if c.read_more(0).await.is_err() {
                        return; // closed between requests (or mid-head): nothing to answer
                    }
                }
                HeadResult::Partial => {
                    return respond_error(c, wbuf, "431 Request Header Fields Too Large").await
                }
                HeadResult::Invalid => return respond_error(c, wbuf, "400 Bad Request").await,
            }
        };
        if head.ws_upgrade && head.path_push && matches!(c.io, Stream::Tls(_)) {
            return respond_error(c, wbuf, "501 Not Implemented").await;
        }
        if head.ws_upgrade {
            let Some(key) = head.ws_key.as_deref().filter(|_| head.ws_version_ok) else {
                wbuf.extend_from_slice(
                    b"HTTP/1.1 426 Upgrade Required\r\nSec-WebSocket-Version: 13\r\n\
                      Content-Length: 0\r\nConnection: close\r\n\r\n",
                );
                let _ = c.write_all(wbuf).await;
                return;
            };
            let accept = ws::accept_key(key);
            write!(
                wbuf,
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                 Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
            )
            .expect("writing to a Vec cannot fail");
            c.consume(head.len);
            let (res, b) = c.write_all(wbuf).await;
            if res.is_err() {
                return;
            }
            if head.path_push {
                let (Stream::Plain(tcp), leftover) = c.into_parts() else {
                    unreachable!("TLS /push was refused above")
                };
                hub.serve(tcp, leftover).await;
            } else {
                ws_echo(c, b).await;
            }
            return;
        }

        let body: &[u8] = if head.path_headers {
            &c.data()[..head.len]
        } else {
            OK_BODY
        };
        let mut resp = std::mem::take(&mut wbuf);
        write!(
            resp,
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{}\r\n",
            body.len(),
            if head.keep_alive {
                ""
            } else {
                "Connection: close\r\n"
            }
        )
        .expect("writing to a Vec cannot fail");
        if !head.method_head {
            resp.extend_from_slice(body);
        }
        c.consume(head.len);
        if head.expect_continue && (head.chunked || head.content_length.unwrap_or(0) > 0) {
            let (res, b) = c.write_all(b"HTTP/1.1 100 Continue\r\n\r\n".to_vec()).await;
            drop(b);
            if res.is_err() {
                return;
            }
        }
        let body_ok = if head.chunked {
            skip_chunked(&mut c).await
        } else {
            skip_bytes(&mut c, head.content_length.unwrap_or(0)).await
        };
        if body_ok.is_err() {
            return;
        }
        let (res, b) = c.write_all(resp).await;
        wbuf = b;
        if res.is_err() {
            return;
        }
        if !head.keep_alive {
            return c.io.close_notify().await;
        }
    }
}

async fn respond_error(mut c: BufConn<Stream>, mut wbuf: Vec<u8>, status: &str) {
    wbuf.clear();
    let _ = write!(
        wbuf,
        "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    let _ = c.write_all(wbuf).await;
    c.io.close_notify().await;
}

async fn skip_bytes(c: &mut BufConn<Stream>, mut n: u64) -> std::io::Result<()> {
    while n > 0 {
        if c.data().is_empty() {
            c.read_more(n.min(1 << 20) as usize).await?;
        }
        let take = (c.data().len() as u64).min(n);
        c.consume(take as usize);
        n -= take;
    }
    Ok(())
}

fn bad_body() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, "malformed chunked body")
}

/// Discards a chunked body (RFC 9112 §7.1) including trailers, without buffering it whole.
async fn skip_chunked(c: &mut BufConn<Stream>) -> std::io::Result<()> {
    loop {
        let size = loop {
            match httparse::parse_chunk_size(c.data()) {
                Ok(httparse::Status::Complete((used, size))) => {
                    c.consume(used);
                    break size;
                }
                Ok(httparse::Status::Partial) if c.data().len() < 4096 => {
                    c.read_more(0).await?;
                }
                _ => return Err(bad_body()),
            }
        };
        if size == 0 {
            break;
        }
        skip_bytes(c, size).await?;
        c.fill(2).await?;
        if &c.data()[..2] != b"\r\n" {
            return Err(bad_body());
        }
        c.consume(2);
    }
    // Trailer section: header lines until an empty line.
    loop {
        match c.data().windows(2).position(|w| w == b"\r\n") {
            Some(0) => {
                c.consume(2);
                return Ok(());
            }
            Some(i) => c.consume(i + 2),
            None if c.data().len() < MAX_HEAD => {
                c.read_more(0).await?;
            }
            None => return Err(bad_body()),
        }
    }
}

/// Echoes every data frame back unmasked, frame by frame (fragmentation is preserved), answers
/// pings and completes the close handshake. All replies produced by one read go out in one
/// write.
async fn ws_echo(mut c: BufConn<Stream>, mut wbuf: Vec<u8>) {
    loop {
        let mut need = 2;
        let mut closing = false;
        loop {
            let h = match ws::decode_header(c.data(), MAX_FRAME) {
                Ok(Status::Complete(h)) => h,
                Ok(Status::Partial(n)) => {
                    need = n;
                    break;
                }
                Err(_) => {
                    ws::write_frame(&mut wbuf, true, OpCode::Close, None, &1002u16.to_be_bytes());
                    closing = true;
                    break;
                }
            };
            let total = h.frame_len() as usize;
            if c.data().len() < total {
                need = total;
                break;
            }
            let Some(mask) = h.mask else {
                // RFC 6455 §5.1: a server must fail a connection whose client does not mask.
                ws::write_frame(&mut wbuf, true, OpCode::Close, None, &1002u16.to_be_bytes());
                closing = true;
                break;
            };
            let payload = &mut c.data_mut()[h.header_len..total];
            ws::apply_mask(payload, mask, 0);
            match h.opcode {
                OpCode::Text | OpCode::Binary | OpCode::Continuation => {
                    ws::write_frame(&mut wbuf, h.fin, h.opcode, None, payload)
                }
                OpCode::Ping => ws::write_frame(&mut wbuf, true, OpCode::Pong, None, payload),
                OpCode::Pong => {}
                OpCode::Close => {
                    let code = &payload[..payload.len().min(2)];
                    ws::write_frame(&mut wbuf, true, OpCode::Close, None, code);
                    closing = true;
                }
            }
            c.consume(total);
            if closing {
                break;
            }
        }
        if !wbuf.is_empty() {
            let (res, b) = c.write_all(wbuf).await;
            wbuf = b;
            if res.is_err() {
                return;
            }
        }
        // After our close frame the server closes TCP first (RFC 6455 §7.1.1): drop does it.
        if closing {
            return c.io.close_notify().await;
        }
        if c.read_more(need).await.is_err() {
            return;
        }
    }
}
