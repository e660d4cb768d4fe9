//! Reading a request head: `handler::serve`'s loop calls [`one_request`] on a connection with
//! bytes to read (or some left over from the last request). The head is read under one
//! absolute deadline (`client_header_timeout`) within nginx's buffer limits and parsed; a
//! malformed one is answered here with nginx's status, an HTTP/0.9 one as nginx does. A
//! complete head goes on to `req::start` (server, `$uri`, variables) and the location loop.

use std::rc::Rc;
use std::time::Instant;

use super::answer::fail;
use super::handler::{Conn, State};
use super::io::read_some;
use super::pool::PooledBuf;
use super::req;
use crate::config::model::{HttpConf, LocConf};
use crate::http::request::{parse_request, HeadLimits, Parsed, RequestError};
use crate::log;
use crate::shard::ShardCtx;

/// Most header lines accepted in one head (httparse needs a fixed array).
pub(super) const MAX_HEADERS: usize = 100;

fn limits(conf: &LocConf) -> HeadLimits {
    let (count, size) = conf.large_client_header_buffers();
    HeadLimits {
        client_header_buffer_size: conf.client_header_buffer_size() as usize,
        large_buffers_count: count as usize,
        large_buffer_size: size as usize,
        ignore_invalid_headers: conf.ignore_invalid_headers(),
        underscores_in_headers: conf.underscores_in_headers(),
    }
}

/// The head buffer: a pooled buffer for the common case, grown into a heap buffer only for
/// heads longer than one pooled buffer (nginx's large header buffers).
enum HeadBuf {
    Pooled(PooledBuf),
    Large(Vec<u8>),
}

impl HeadBuf {
    fn bytes(&mut self) -> &mut [u8] {
        match self {
            HeadBuf::Pooled(p) => p.bytes(),
            HeadBuf::Large(v) => v,
        }
    }
}

/// Reads and serves one request. Returns `ReadingHead` to go on (keep-alive), `Tunnel`, or
/// `Closed`.
pub(super) async fn one_request(ctx: &Rc<ShardCtx>, http: &HttpConf, conn: &mut Conn) -> State {
    let router = &ctx.proxy.router;
    let Ok(default_idx) = router.default_server(conn.local) else {
        return State::Closed;
    };
    let dconf = &http.servers[default_idx].conf;
    let limits = limits(dconf);
    // client_header_timeout is one deadline for the whole head.
    let deadline = if conn.requests == 0 {
        conn.accepted
    } else {
        Instant::now()
    } + dconf.client_header_timeout();
    let mut buf = HeadBuf::Pooled(PooledBuf::take());
    let mut filled = conn.buf.len().min(buf.bytes().len());
    buf.bytes()[..filled].copy_from_slice(&conn.buf[..filled]);
    conn.buf = conn.buf.split_off(filled);
    let head_len = loop {
        let mut hdrs = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let bytes = &buf.bytes()[..filled];
        match parse_request(bytes, &mut hdrs, &limits) {
            Ok(Parsed::Complete(_, len)) => break len,
            Ok(Parsed::Partial) => {}
            Err(RequestError::Http09 {
                target_start,
                target_end,
                ..
            }) => {
                let target = bytes[target_start..target_end].to_vec();
                drop(buf);
                return http09(ctx, http, conn, &target, &limits, default_idx).await;
            }
            Err(e) => return invalid(conn, e, dconf).await,
        }
        if filled == buf.bytes().len() {
            let mut large = vec![0u8; limits.max_head_len().max(filled + 1)];
            large[..filled].copy_from_slice(&buf.bytes()[..filled]);
            buf = HeadBuf::Large(large);
        }
        match read_some(&conn.stream, &mut buf.bytes()[filled..], deadline).await {
            Ok(0) | Err(_) => return State::Closed,
            Ok(n) => filled += n,
        }
    };
    conn.requests += 1;
    let bytes = &buf.bytes()[..filled];
    let mut hdrs = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let Ok(Parsed::Complete(head, _)) = parse_request(bytes, &mut hdrs, &limits) else {
        return State::Closed;
    };
    let early = &bytes[head_len..];
    req::start(ctx, http, conn, &head, early, default_idx).await
}

/// A head that does not parse: nginx's status for it, and the connection closes.
async fn invalid(conn: &mut Conn, e: RequestError, dconf: &LocConf) -> State {
    log!(
        Info,
        "client sent invalid request: {e} while reading client request headers, client: {}",
        conn.peer.ip()
    );
    if matches!(e, RequestError::InvalidHttp09Method) {
        // nginx's answer to HTTP/0.9 is a bare body, its error pages too.
        match conn.stream.bare() {
            Ok(s) => conn.stream = s,
            Err(_) => return State::Closed,
        }
    }
    fail(conn, e.status(), dconf).await
}

/// An HTTP/0.9 request (`GET /path` and nothing else): served as nginx does, as a GET with no
/// headers whose answer is the bare body (no status line, no head), then the connection closes.
async fn http09(
    ctx: &Rc<ShardCtx>,
    http: &HttpConf,
    conn: &mut Conn,
    target: &[u8],
    limits: &HeadLimits,
    default_idx: usize,
) -> State {
    match conn.stream.bare() {
        Ok(s) => conn.stream = s,
        Err(_) => return State::Closed,
    }
    conn.buf.clear();
    conn.requests += 1;
    let mut line = b"GET ".to_vec();
    line.extend_from_slice(target);
    line.extend_from_slice(b" HTTP/1.0\r\n\r\n");
    let mut hdrs = [httparse::EMPTY_HEADER; 4];
    let Ok(Parsed::Complete(head, _)) = parse_request(&line, &mut hdrs, limits) else {
        return State::Closed;
    };
    req::start(ctx, http, conn, &head, &[], default_idx).await;
    State::Closed
}
