//! One attempt at an upstream exchange, up to the first response byte: the request head is
//! built and written on a connection (new or from the keep-alive pool), the body relayed, and
//! the first bytes of the answer awaited (watching for the client going away unless
//! `proxy_ignore_client_abort on`). A cached connection that fails before any response byte is
//! reported as [`Sent::Stale`] so the handler can retry on a new connection, as nginx does.

use std::time::Instant;

use super::conn::Stream;
use super::handler::Conn;
use super::io::{is_timeout, read_into, write_all};
use super::req::Req;
use super::request::{build_request, UpstreamBody};
use super::request_body::{relay_request_body, BodyError};
use super::upstream_pool::UpstreamConn;
use crate::config::model::ProxyPass;
use crate::http::request::Body;
use crate::log;
use crate::upstream::keepalive;

/// What went to the upstream, and the first bytes of its answer.
pub(super) struct Request {
    /// The request asked for an upgrade.
    pub(super) upgrade: bool,
    /// The request let the connection live on (HTTP/1.1, no `Connection: close`).
    pub(super) keeps_alive: bool,
    /// Client bytes beyond the request (the next pipelined request, or held early frames).
    pub(super) leftover: Vec<u8>,
    /// The upstream's first response bytes (at least one).
    pub(super) ubuf: Vec<u8>,
}

/// Why a request did not get as far as a response byte.
pub(super) enum Sent {
    /// A cached connection failed before any response byte: retry on a new one.
    Stale,
    /// Answer the client with this status.
    Fail(u16),
    /// The peer failed (502: an error, 504: a timeout): `proxy_next_upstream` may try another,
    /// else the client gets this status.
    Upstream(u16),
    /// The client side failed; close.
    Closed,
}

/// Sends the request head and body on `up` and waits for the first response byte. With
/// `retry`, a reused connection that fails before that byte is `Sent::Stale`.
pub(super) async fn send_request(
    req: &mut Req<'_>,
    up: &mut UpstreamConn,
    pp: &ProxyPass,
    retry: bool,
) -> Result<Request, Sent> {
    let (head, conf) = (req.head, req.conf);
    // A body already relayed (an error_page that proxies again after a POST) is not read again.
    let client_body = if req.conn.body_read.get() {
        Body::None
    } else {
        head.body
    };
    let out = upstream_head(req, pp, client_body)?;
    up.start_request();
    let stale = retry && up.reused;
    let upgrade = sends_upgrade(&out);
    let keeps_alive = keepalive::request_keeps_alive(&out);
    let conn = &*req.conn;
    match write_all(&up.stream, &out, conf.proxy_send_timeout()).await {
        Ok(()) => {}
        Err(e) if stale && !is_timeout(&e) => return Err(Sent::Stale),
        Err(e) => return Err(Sent::Upstream(send_failed(conn, &e))),
    }
    drop(out);
    // The request body (none for an upgrade: the bytes after the head are the first frames,
    // held until the 101).
    let leftover = if head.upgrade {
        req.early.to_vec()
    } else {
        // `proxy_pass_request_body off`: the body is read and dropped.
        let to = conf.proxy_pass_request_body().then_some(&up.stream);
        match relay_request_body(conn, to, client_body, req.early, conf).await {
            Ok(rest) => {
                if client_body != Body::None {
                    conn.body_read.set(true);
                }
                rest
            }
            Err(BodyError::Upstream(e)) if stale && !is_timeout(&e) => return Err(Sent::Stale),
            Err(e) => return Err(body_failed(conn, e)),
        }
    };
    let ubuf = first_response_bytes(req, &up.stream, stale).await?;
    Ok(Request {
        upgrade,
        keeps_alive,
        leftover,
        ubuf,
    })
}

/// The upstream request head (`proxy::request::build_request`) for a client body framed as
/// `client_body`; nginx's status when it cannot be built.
fn upstream_head(req: &mut Req<'_>, pp: &ProxyPass, client_body: Body) -> Result<Vec<u8>, Sent> {
    let body = match client_body {
        Body::None => UpstreamBody::None,
        Body::Length(n) => UpstreamBody::Length(n),
        Body::Chunked => UpstreamBody::Chunked,
    };
    let mut out = Vec::with_capacity(1024);
    match build_request(&mut req.vars, req.conf, pp, req.matcher, body, &mut out) {
        Ok(()) => Ok(out),
        Err(e) => {
            log!(
                Error,
                "cannot build the upstream request: {e}, client: {}",
                req.conn.peer.ip()
            );
            let code = if matches!(e, crate::proxy::request::BuildError::ChunkedToHttp10) {
                411
            } else {
                500
            };
            Err(Sent::Fail(code))
        }
    }
}

/// Waits for the upstream's first response bytes (`stale`: a reused connection, which may
/// fail as `Sent::Stale`).
async fn first_response_bytes(req: &Req<'_>, up: &Stream, stale: bool) -> Result<Vec<u8>, Sent> {
    let (conn, conf) = (&*req.conn, req.conf);
    let mut ubuf: Vec<u8> = Vec::with_capacity(conf.proxy_buffer_size() as usize);
    let deadline = Instant::now() + conf.proxy_read_timeout();
    let room = (conf.proxy_buffer_size() as usize).max(1024);
    let got = read_upstream(req, up, &mut ubuf, room, deadline).await;
    match got {
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionAborted => {
            conn.status.set(499);
            Err(Sent::Closed)
        }
        Ok(0) => {
            // Logged for a stale cached connection too, as nginx 1.22 does before its retry.
            log!(Error, "upstream prematurely closed connection while reading response header from upstream, client: {}", conn.peer.ip());
            Err(if stale {
                Sent::Stale
            } else {
                Sent::Upstream(502)
            })
        }
        Err(e) if stale && !is_timeout(&e) => {
            log!(
                Error,
                "recv() failed ({}) while reading response header from upstream, client: {}",
                crate::config::os_error(&e),
                conn.peer.ip()
            );
            Err(Sent::Stale)
        }
        Ok(_) => Ok(ubuf),
        Err(e) => {
            let code = if is_timeout(&e) { 504 } else { 502 };
            log!(
                Error,
                "upstream timed out ({}) while reading response header from upstream, client: {}",
                crate::config::os_error(&e),
                conn.peer.ip()
            );
            Err(Sent::Upstream(code))
        }
    }
}

/// nginx's status for a request whose head or body could not be written upstream (504 when
/// `proxy_send_timeout` ran out), with its log line.
fn send_failed(conn: &Conn, e: &std::io::Error) -> u16 {
    let ip = conn.peer.ip();
    if is_timeout(e) {
        log!(Error, "upstream timed out (110: Connection timed out) while sending request to upstream, client: {ip}");
        504
    } else {
        let e = crate::config::os_error(e);
        log!(
            Error,
            "send() failed ({e}) while sending request to upstream, client: {ip}"
        );
        502
    }
}

/// What nginx does when a request body could not be relayed: an answer for a body that is too
/// large or malformed, or for an upstream that failed; for a client that timed out or went away
/// only the access log's status (408, 400) and the close.
fn body_failed(conn: &Conn, e: BodyError) -> Sent {
    let ip = conn.peer.ip();
    match e {
        BodyError::Upstream(e) => Sent::Upstream(send_failed(conn, &e)),
        BodyError::TooLarge(before, size) => {
            log!(Error, "client intended to send too large chunked body: {before}+{size} bytes, client: {ip}");
            Sent::Fail(413)
        }
        BodyError::Invalid => {
            log!(Info, "client sent invalid chunked body, client: {ip}");
            Sent::Fail(400)
        }
        BodyError::Client(e) => {
            if is_timeout(&e) {
                log!(Info, "client timed out (110: Connection timed out) while reading client request body, client: {ip}");
                conn.status.set(408);
            } else {
                log!(Info, "client prematurely closed connection while reading client request body, client: {ip}");
                conn.status.set(400);
            }
            Sent::Closed
        }
    }
}

/// Reads what the upstream sends (up to `max` bytes, by `deadline`). Unless
/// `proxy_ignore_client_abort on`, gives up with `ConnectionAborted` as soon as the client
/// closes (nginx watches the client for the whole upstream exchange).
pub(super) async fn read_upstream(
    req: &Req<'_>,
    upstream: &Stream,
    buf: &mut Vec<u8>,
    max: usize,
    deadline: Instant,
) -> std::io::Result<usize> {
    let (conn, conf) = (&*req.conn, req.conf);
    if conf.proxy_ignore_client_abort() {
        return read_into(upstream, buf, max, deadline).await;
    }
    // Bytes already waiting are taken without watching the client (no extra poll per read
    // while a body streams); only a wait for the upstream also watches the client.
    match read_into(upstream, buf, max, Instant::now()).await {
        Err(e) if is_timeout(&e) => {}
        done => return done,
    }
    let read = read_into(upstream, buf, max, deadline);
    monoio::select! {
        r = read => r,
        _ = super::io::peer_closed(conn.stream.tcp()) => {
            log!(Info, "client prematurely closed connection, so upstream connection is closed too while reading upstream, client: {}", conn.peer.ip());
            Err(std::io::ErrorKind::ConnectionAborted.into())
        }
    }
}

/// The upstream request asks for an upgrade (its head has an `Upgrade` line).
fn sends_upgrade(upstream_head: &[u8]) -> bool {
    upstream_head
        .split(|&b| b == b'\n')
        .any(|line| line.len() > 8 && line[..8].eq_ignore_ascii_case(b"upgrade:"))
}
