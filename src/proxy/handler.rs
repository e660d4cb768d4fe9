//! A client connection, as an explicit state machine: `ReadingHead` (one absolute deadline,
//! nginx's buffer limits) -> `Proxying` (route, pick a peer, relay the request and the response)
//! -> `Tunnel` after a `101` -> `Closed`; or back to `ReadingHead` for the next keep-alive
//! request. Malformed requests get nginx's status and are never forwarded.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Instant;

use monoio::net::TcpStream;

use super::interim::{self, Req, Vars};
use super::io::{is_timeout, read_into, write_all};
use super::respond;
use super::tunnel::{self, Path, TunnelConfig};
use crate::config::model::{Balance, HttpConf, LocConf, Location, SpliceMode};
use crate::http::body::{encode_chunk, ChunkedDecoder, LAST_CHUNK};
use crate::http::request::{parse_request, Body, HeadLimits, Parsed};
use crate::http::response::{parse_response, ResponseBody};
use crate::log;
use crate::shard::listener::ListenSpec;
use crate::shard::ShardCtx;
use crate::upstream::balancer::{Outcome as PeerOutcome, PickState};

/// Most header lines accepted in one head (httparse needs a fixed array).
const MAX_HEADERS: usize = 100;

/// Where a connection is after a request: waiting for the next head (keep-alive), switched to a
/// tunnel (the 101 and any early bytes already relayed; only the two sockets live on), or done.
enum State {
    ReadingHead,
    Tunnel(TcpStream, TunnelConfig),
    Closed,
}

struct Conn {
    stream: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    /// Bytes read from the client and not yet consumed (the next head, a pipelined frame).
    buf: Vec<u8>,
    requests: u32,
    accepted: Instant,
}

/// Serves one accepted client connection until it closes.
pub async fn serve(ctx: Rc<ShardCtx>, spec: ListenSpec, stream: TcpStream, peer: SocketAddr) {
    let _guard = ctx.hold();
    if super::io::set_nonblocking(&stream).is_err() {
        return;
    }
    let Some(http) = ctx.config.http.as_ref() else {
        return;
    };
    let local = stream.local_addr().unwrap_or(spec.addr);
    let default = interim::server_for(http, local, None);
    let _ = stream.set_nodelay(default.conf.tcp_nodelay());
    let mut conn = Conn {
        stream,
        peer,
        local,
        buf: Vec::new(),
        requests: 0,
        accepted: Instant::now(),
    };
    loop {
        // Boxed: the request's future (head buffers, header arrays, the owned request) is freed
        // before a tunnel starts, so an idle tunnel costs only its two sockets and this task.
        match Box::pin(one_request(&ctx, http, &mut conn)).await {
            State::ReadingHead => continue,
            State::Closed => return,
            State::Tunnel(upstream, cfg) => {
                conn.buf = Vec::new();
                let outcome = Box::pin(tunnel::run(&conn.stream, &upstream, cfg)).await;
                log_tunnel_end(&outcome.end, conn.peer);
                return;
            }
        }
    }
}

fn log_tunnel_end(end: &tunnel::End, peer: SocketAddr) {
    match end {
        tunnel::End::Closed => {}
        tunnel::End::ReadTimeout => log!(Info, "upstream timed out (110: Connection timed out) while proxying upgraded connection, client: {}", peer.ip()),
        tunnel::End::SendTimeout(side) => log!(Info, "{side:?} send timed out while proxying upgraded connection, client: {}", peer.ip()),
        tunnel::End::Error(side, e) => log!(Info, "{side:?} error ({}) while proxying upgraded connection, client: {}", crate::config::os_error(e), peer.ip()),
    }
}

fn limits(conf: &LocConf) -> HeadLimits {
    let (count, size) = conf.large_client_header_buffers();
    HeadLimits {
        client_header_buffer_size: conf.client_header_buffer_size() as usize,
        large_buffers_count: count as usize,
        large_buffer_size: size as usize,
    }
}

async fn send(conn: &Conn, bytes: &[u8], conf: &LocConf) -> bool {
    write_all(&conn.stream, bytes, conf.send_timeout())
        .await
        .is_ok()
}

/// Reads and serves one request. Returns `ReadingHead` to go on (keep-alive) or `Closed`.
async fn one_request(ctx: &Rc<ShardCtx>, http: &HttpConf, conn: &mut Conn) -> State {
    let default = interim::server_for(http, conn.local, None);
    let dconf = &default.conf;
    let limits = limits(dconf);
    // The head: nginx's client_header_timeout is one deadline, from the first byte we wait for.
    if conn.buf.is_empty() && conn.requests > 0 {
        let idle = dconf.keepalive_timeout();
        let wait = Instant::now() + idle;
        conn.buf.reserve(dconf.client_header_buffer_size() as usize);
        let stopping = ctx.stopping.wait();
        let read = read_into(&conn.stream, &mut conn.buf, 4096, wait);
        let got = monoio::select! {
            r = read => r,
            _ = stopping => return State::Closed,
        };
        if !matches!(got, Ok(n) if n > 0) {
            return State::Closed;
        }
    }
    let deadline = if conn.requests == 0 {
        conn.accepted
    } else {
        Instant::now()
    } + dconf.client_header_timeout();
    let req = loop {
        let mut hdrs = [httparse::EMPTY_HEADER; MAX_HEADERS];
        match parse_request(&conn.buf, &mut hdrs, &limits) {
            Ok(Parsed::Complete(head, len)) => {
                let req = Req {
                    method: head.method.to_string(),
                    target: head.target.raw.to_string(),
                    path: head.target.path.to_string(),
                    version_11: head.version == crate::http::request::Version::Http11,
                    headers: head
                        .headers
                        .iter()
                        .map(|h| (h.name.to_string(), h.value.to_vec()))
                        .collect(),
                    host: head.host.map(str::to_string),
                    upgrade: head.upgrade,
                    keep_alive: head.keep_alive,
                };
                let body = head.body;
                conn.buf.drain(..len);
                break (req, body);
            }
            Ok(Parsed::Partial) => {}
            Err(e) => {
                log!(Info, "client sent invalid request: {e} while reading client request headers, client: {}", conn.peer.ip());
                let _ = send(
                    conn,
                    &respond::error(e.status(), false, dconf.server_tokens()),
                    dconf,
                )
                .await;
                return State::Closed;
            }
        }
        let room = limits.max_head_len().saturating_sub(conn.buf.len()).max(1);
        match read_into(&conn.stream, &mut conn.buf, room.min(16 * 1024), deadline).await {
            Ok(0) | Err(_) => return State::Closed,
            Ok(_) => {}
        }
    };
    conn.requests += 1;
    let (req, body) = req;
    let server = interim::server_for(http, conn.local, req.host.as_deref());
    let Some(loc) = interim::find_location(&server.locations, &req.path) else {
        let _ = send(
            conn,
            &respond::error(404, false, server.conf.server_tokens()),
            &server.conf,
        )
        .await;
        return State::Closed;
    };
    let conf = &loc.conf;
    let keep_alive = req.keep_alive
        && !conf.keepalive_timeout().is_zero()
        && conn.requests < conf.keepalive_requests()
        && !ctx.stopping.is_set();
    if conf.proxy_pass.is_none() {
        let _ = send(
            conn,
            &respond::error(404, false, conf.server_tokens()),
            conf,
        )
        .await;
        return State::Closed;
    }
    proxy(ctx, http, conn, &req, body, loc, keep_alive).await
}

/// Connects to a peer of the location's upstream, trying the next one as `proxy_next_upstream`
/// allows. `Err(status)` is 502 or 504.
async fn connect(
    ctx: &ShardCtx,
    http: &HttpConf,
    conn: &Conn,
    req: &Req,
    conf: &LocConf,
    vars: &Vars<'_>,
) -> Result<(TcpStream, SocketAddr), u16> {
    let pp = conf.proxy_pass.as_ref().expect("proxy location");
    let group = &http.upstreams[pp.upstream];
    let balancer = &ctx.proxy.balancers[pp.upstream];
    let key = match &group.balance {
        Balance::Hash { key, .. } => {
            let mut k = Vec::new();
            vars.render(key, &mut k);
            Some(k)
        }
        _ => None,
    };
    let next = conf.proxy_next_upstream();
    let max_tries = match conf.proxy_next_upstream_tries() {
        0 => usize::MAX,
        n => n as usize,
    };
    let mut state = PickState::new();
    let mut status = 502;
    let mut tries = 0;
    loop {
        let picked = balancer
            .borrow_mut()
            .pick(key.as_deref(), Instant::now(), &mut state);
        let Some(id) = picked else {
            log!(Error, "no live upstreams while connecting to upstream, client: {}, request: \"{} {}\", upstream: \"{}\"", conn.peer.ip(), req.method, req.target, group.name);
            return Err(status);
        };
        let addr = balancer.borrow().peers().spec(id).addr;
        tries += 1;
        let attempt =
            monoio::time::timeout(conf.proxy_connect_timeout(), TcpStream::connect_addr(addr))
                .await;
        let err = match attempt {
            Ok(Ok(s)) => {
                balancer
                    .borrow_mut()
                    .report(id, PeerOutcome::Success, Instant::now());
                if super::io::set_nonblocking(&s).is_ok() {
                    let _ = s.set_nodelay(true);
                    return Ok((s, addr));
                }
                std::io::Error::other("fcntl failed")
            }
            Ok(Err(e)) => e,
            Err(_) => std::io::Error::from(std::io::ErrorKind::TimedOut),
        };
        balancer
            .borrow_mut()
            .report(id, PeerOutcome::Failure, Instant::now());
        let timed_out = is_timeout(&err);
        status = if timed_out { 504 } else { 502 };
        if timed_out {
            log!(Error, "upstream timed out (110: Connection timed out) while connecting to upstream, client: {}, request: \"{} {}\", upstream: \"http://{addr}\"", conn.peer.ip(), req.method, req.target);
        } else {
            log!(Error, "connect() failed ({}) while connecting to upstream, client: {}, request: \"{} {}\", upstream: \"http://{addr}\"", crate::config::os_error(&err), conn.peer.ip(), req.method, req.target);
        }
        let allowed = !next.off
            && next
                .when
                .iter()
                .any(|w| w == if timed_out { "timeout" } else { "error" });
        if !allowed || tries >= max_tries {
            return Err(status);
        }
    }
}

async fn proxy(
    ctx: &Rc<ShardCtx>,
    http: &HttpConf,
    conn: &mut Conn,
    req: &Req,
    body: Body,
    loc: &Location,
    keep_alive: bool,
) -> State {
    let conf = &loc.conf;
    let tokens = conf.server_tokens();
    let pp = conf.proxy_pass.as_ref().expect("proxy location");
    if let Body::Length(n) = body {
        let max = conf.client_max_body_size();
        if max > 0 && n > max {
            log!(
                Error,
                "client intended to send too large body: {n} bytes, client: {}",
                conn.peer.ip()
            );
            let _ = send(conn, &respond::error(413, false, tokens), conf).await;
            return State::Closed;
        }
    }
    let vars = Vars {
        req,
        remote: conn.peer,
        local: conn.local,
        maps: &http.maps,
        proxy_host: &pp.host,
    };
    let (upstream, _addr) = match connect(ctx, http, conn, req, conf, &vars).await {
        Ok(u) => u,
        Err(code) => {
            let _ = send(conn, &respond::error(code, false, tokens), conf).await;
            return State::Closed;
        }
    };
    let _upstream_guard = ctx.hold();
    let v11 = conf.proxy_http_version() == crate::config::model::HttpVersion::Http11;
    let body_header = match body {
        Body::None => None,
        Body::Length(n) => Some(format!("Content-Length: {n}\r\n")),
        Body::Chunked if v11 => Some("Transfer-Encoding: chunked\r\n".to_string()),
        Body::Chunked => {
            let _ = send(conn, &respond::error(411, false, tokens), conf).await;
            return State::Closed;
        }
    };
    let (head, sent_upgrade) = interim::upstream_head(req, loc, conf, &vars, body_header);
    if write_all(&upstream, &head, conf.proxy_send_timeout())
        .await
        .is_err()
    {
        let _ = send(conn, &respond::error(502, false, tokens), conf).await;
        return State::Closed;
    }
    if relay_request_body(conn, &upstream, body, conf)
        .await
        .is_err()
    {
        return State::Closed;
    }
    // The response head.
    let mut ubuf: Vec<u8> = Vec::with_capacity(4096);
    let max_head = conf.proxy_buffer_size() as usize;
    let head_request = req.method == "HEAD";
    let (status, framing, head_len, out_head) = loop {
        let mut hdrs = [httparse::EMPTY_HEADER; MAX_HEADERS];
        match parse_response(&ubuf, &mut hdrs, max_head.max(1024), head_request) {
            Ok(Parsed::Complete(h, len)) if h.status == 100 => {
                ubuf.drain(..len);
                continue;
            }
            Ok(Parsed::Complete(h, len)) => {
                let mut out = Vec::with_capacity(len + 128);
                out.extend_from_slice(format!("HTTP/1.1 {} {}\r\n", h.status, h.reason).as_bytes());
                out.extend_from_slice(
                    format!(
                        "Server: {}\r\nDate: {}\r\n",
                        respond::server_header(tokens),
                        httpdate::fmt_http_date(std::time::SystemTime::now())
                    )
                    .as_bytes(),
                );
                for hd in h.headers.iter() {
                    let pass = if h.body == ResponseBody::SwitchingProtocols {
                        !hd.name.eq_ignore_ascii_case("server")
                            && !hd.name.eq_ignore_ascii_case("date")
                    } else {
                        interim::pass_response_header(hd.name, conf)
                    };
                    if pass {
                        out.extend_from_slice(hd.name.as_bytes());
                        out.extend_from_slice(b": ");
                        out.extend_from_slice(hd.value);
                        out.extend_from_slice(b"\r\n");
                    }
                }
                break (h.status, h.body, len, out);
            }
            Ok(Parsed::Partial) => {}
            Err(e) => {
                log!(Error, "upstream sent invalid header: {e} while reading response header from upstream, client: {}", conn.peer.ip());
                let _ = send(conn, &respond::error(502, false, tokens), conf).await;
                return State::Closed;
            }
        }
        let deadline = Instant::now() + conf.proxy_read_timeout();
        match read_into(&upstream, &mut ubuf, 16 * 1024, deadline).await {
            Ok(0) => {
                log!(Error, "upstream prematurely closed connection while reading response header from upstream, client: {}", conn.peer.ip());
                let _ = send(conn, &respond::error(502, false, tokens), conf).await;
                return State::Closed;
            }
            Ok(_) => {}
            Err(e) => {
                let code = if is_timeout(&e) { 504 } else { 502 };
                log!(Error, "upstream timed out ({}) while reading response header from upstream, client: {}", crate::config::os_error(&e), conn.peer.ip());
                let _ = send(conn, &respond::error(code, false, tokens), conf).await;
                return State::Closed;
            }
        }
    };
    ubuf.drain(..head_len);
    let mut out_head = out_head;
    if framing == ResponseBody::SwitchingProtocols {
        if !(req.upgrade && sent_upgrade) || status != 101 {
            let _ = send(conn, &respond::error(502, false, tokens), conf).await;
            return State::Closed;
        }
        out_head.extend_from_slice(b"\r\n");
        return tunnel_after_101(conn, upstream, out_head, ubuf, conf).await;
    }
    // An ordinary response: re-frame for the client.
    let client_v11 = req.version_11;
    let (frame, close_after) = match framing {
        ResponseBody::None => (Frame::None, false),
        ResponseBody::Length(n) => {
            out_head.extend_from_slice(format!("Content-Length: {n}\r\n").as_bytes());
            (Frame::Length(n), false)
        }
        ResponseBody::Chunked | ResponseBody::UntilClose if client_v11 => {
            out_head.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
            (
                if framing == ResponseBody::Chunked {
                    Frame::Chunked
                } else {
                    Frame::CloseToChunked
                },
                false,
            )
        }
        ResponseBody::Chunked => (Frame::ChunkedToClose, true),
        _ => (Frame::Close, true),
    };
    let keep = keep_alive && !close_after;
    out_head.extend_from_slice(if keep {
        b"Connection: keep-alive\r\n\r\n"
    } else {
        b"Connection: close\r\n\r\n"
    });
    if !send(conn, &out_head, conf).await {
        return State::Closed;
    }
    match relay_response_body(conn, &upstream, ubuf, frame, conf).await {
        Ok(()) if keep => {
            if conn.buf.is_empty() {
                // Idle keep-alive connections hold no buffer either.
                conn.buf = Vec::new();
            }
            State::ReadingHead
        }
        _ => State::Closed,
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Frame {
    None,
    Length(u64),
    Chunked,
    CloseToChunked,
    ChunkedToClose,
    Close,
}

async fn tunnel_after_101(
    conn: &mut Conn,
    upstream: TcpStream,
    head: Vec<u8>,
    early_down: Vec<u8>,
    conf: &LocConf,
) -> State {
    if !send(conn, &head, conf).await {
        return State::Closed;
    }
    drop(head);
    // Bytes that came with the heads: the backend's first frame, the client's pipelined one.
    if !early_down.is_empty() && !send(conn, &early_down, conf).await {
        return State::Closed;
    }
    drop(early_down);
    let early_up = std::mem::take(&mut conn.buf);
    if !early_up.is_empty()
        && write_all(&upstream, &early_up, conf.proxy_send_timeout())
            .await
            .is_err()
    {
        return State::Closed;
    }
    drop(early_up);
    let path = match conf.proxy_splice() {
        SpliceMode::On => Path::Splice,
        SpliceMode::Off | SpliceMode::Auto => Path::Copy,
    };
    let cfg = TunnelConfig {
        read_timeout: conf.proxy_read_timeout(),
        send_timeout: conf.proxy_send_timeout(),
        path,
    };
    State::Tunnel(upstream, cfg)
}

/// Sends the request body upstream, re-framed (length as length, chunked re-chunked).
async fn relay_request_body(
    conn: &mut Conn,
    upstream: &TcpStream,
    body: Body,
    conf: &LocConf,
) -> std::io::Result<()> {
    let send_to = conf.proxy_send_timeout();
    let max = conf.client_max_body_size();
    match body {
        Body::None => Ok(()),
        Body::Length(mut left) => {
            let take = (left as usize).min(conn.buf.len());
            write_all(upstream, &conn.buf[..take], send_to).await?;
            conn.buf.drain(..take);
            left -= take as u64;
            let mut chunk = super::pool::PooledBuf::take();
            while left > 0 {
                let want = (left as usize).min(chunk.bytes().len());
                let deadline = Instant::now() + conf.client_body_timeout();
                let n = super::io::read_some(&conn.stream, &mut chunk.bytes()[..want], deadline)
                    .await?;
                if n == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                write_all(upstream, &chunk.bytes()[..n], send_to).await?;
                left -= n as u64;
            }
            Ok(())
        }
        Body::Chunked => {
            let mut dec = ChunkedDecoder::new();
            let mut total = 0u64;
            let mut out = Vec::new();
            loop {
                let mut consumed = 0;
                while consumed < conn.buf.len() && !dec.is_done() {
                    let step = dec
                        .decode(&conn.buf[consumed..])
                        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidData))?;
                    consumed += step.consumed;
                    if !step.data.is_empty() {
                        total += step.data.len() as u64;
                        encode_chunk(step.data, &mut out);
                    }
                    if step.consumed == 0 && step.data.is_empty() && !step.done {
                        break;
                    }
                }
                conn.buf.drain(..consumed);
                if max > 0 && total > max {
                    return Err(std::io::ErrorKind::InvalidData.into());
                }
                if dec.is_done() {
                    out.extend_from_slice(LAST_CHUNK);
                    write_all(upstream, &out, send_to).await?;
                    return Ok(());
                }
                if !out.is_empty() {
                    write_all(upstream, &out, send_to).await?;
                    out.clear();
                }
                let deadline = Instant::now() + conf.client_body_timeout();
                if read_into(&conn.stream, &mut conn.buf, 16 * 1024, deadline).await? == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
            }
        }
    }
}

async fn relay_response_body(
    conn: &Conn,
    upstream: &TcpStream,
    mut pending: Vec<u8>,
    frame: Frame,
    conf: &LocConf,
) -> std::io::Result<()> {
    let read_to = conf.proxy_read_timeout();
    let send_to = conf.send_timeout();
    let mut dec = ChunkedDecoder::new();
    let mut left = match frame {
        Frame::Length(n) => n,
        _ => 0,
    };
    if frame == Frame::None || (frame == Frame::Length(0)) {
        return Ok(());
    }
    let mut out = Vec::new();
    loop {
        // Forward what we have.
        match frame {
            Frame::Length(_) => {
                let take = (left as usize).min(pending.len());
                write_all(&conn.stream, &pending[..take], send_to).await?;
                left -= take as u64;
                pending.clear();
                if left == 0 {
                    return Ok(());
                }
            }
            Frame::Chunked | Frame::ChunkedToClose => {
                let mut consumed = 0;
                while consumed < pending.len() && !dec.is_done() {
                    let step = dec
                        .decode(&pending[consumed..])
                        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidData))?;
                    consumed += step.consumed;
                    if !step.data.is_empty() {
                        if frame == Frame::Chunked {
                            encode_chunk(step.data, &mut out);
                        } else {
                            out.extend_from_slice(step.data);
                        }
                    }
                    if step.consumed == 0 {
                        break;
                    }
                }
                pending.drain(..consumed);
                if dec.is_done() && frame == Frame::Chunked {
                    out.extend_from_slice(LAST_CHUNK);
                }
                write_all(&conn.stream, &out, send_to).await?;
                out.clear();
                if dec.is_done() {
                    return Ok(());
                }
            }
            Frame::CloseToChunked => {
                if !pending.is_empty() {
                    encode_chunk(&pending, &mut out);
                    write_all(&conn.stream, &out, send_to).await?;
                    out.clear();
                    pending.clear();
                }
            }
            Frame::Close => {
                write_all(&conn.stream, &pending, send_to).await?;
                pending.clear();
            }
            Frame::None => return Ok(()),
        }
        let deadline = Instant::now() + read_to;
        let n = read_into(upstream, &mut pending, 16 * 1024, deadline).await?;
        if n == 0 {
            return match frame {
                Frame::CloseToChunked => write_all(&conn.stream, LAST_CHUNK, send_to).await,
                Frame::Close => Ok(()),
                _ => Err(std::io::ErrorKind::UnexpectedEof.into()),
            };
        }
    }
}
