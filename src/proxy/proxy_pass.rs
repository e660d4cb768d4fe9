//! A location with `proxy_pass`: the location loop (`locations`) calls [`proxy`]. What nginx
//! can refuse from the head alone is refused; then `upstream_connect` picks and connects a
//! peer, `exchange::send_request` sends the request (once more on a new connection when a
//! cached one turned out stale), and the response head is read and shaped for the client. A
//! `101` goes on to `upgrade` (and from there to a tunnel); any other response's body is
//! relayed (`response_body`, or `gzip_relay`) and the connection goes back to `handler::serve`
//! for its next request, or closes.

use std::rc::Rc;
use std::time::Instant;

use super::answer::send_head;
use super::error_page;
use super::exchange::{send_request, Request, Sent};
use super::gzip::BodyEncoder;
use super::handler::State;
use super::headers_out::ProxiedRequest;
use super::io::{is_timeout, read_into};
use super::read_head::MAX_HEADERS;
use super::req::Req;
use super::request_body::{check_early_chunks, ChunksError};
use super::respond;
use super::response::{write_client_head, ClientFraming, ClientOptions};
use super::response_body::{relay_response_body, Frame};
use super::upgrade::tunnel_after_101;
use super::upstream_connect::{connect, Attempts, Fault};
use super::upstream_pool::{self, UpstreamConn, UpstreamPools};
use crate::config::model::{LocConf, ProxyPass};
use crate::http::request::{Body, Parsed};
use crate::http::response::{parse_response, ResponseBody, ResponseHead};
use crate::http::script::Reply;
use crate::http::vars::UpstreamFacts;
use crate::log;
use crate::shard::ShardCtx;
use crate::upstream::keepalive;

/// A peer's connection slot taken by the balancer's pick (`max_conns` counts it), given back
/// when the request, or its tunnel, is done with the connection.
/// A `direct` peer's group of one lives only for its request: nothing to give back.
pub(super) struct PeerSlot {
    ctx: Rc<ShardCtx>,
    upstream: Option<usize>,
    peer: crate::upstream::PeerId,
}

impl PeerSlot {
    fn new(ctx: &Rc<ShardCtx>, pp: &ProxyPass, peer: crate::upstream::PeerId) -> PeerSlot {
        PeerSlot {
            ctx: ctx.clone(),
            upstream: pp.direct.is_none().then_some(pp.upstream),
            peer,
        }
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        if let Some(u) = self.upstream {
            self.ctx.proxy.balancers[u].borrow_mut().release(self.peer);
        }
    }
}

/// The upstream's response head, as the client gets it.
struct Response {
    /// The status sent to the client (an `error_page` `=code` may have changed it).
    status: u16,
    /// How the upstream frames the body, and how the client gets it.
    body: ResponseBody,
    framing: ClientFraming,
    /// The client connection stays open after the response.
    keep: bool,
    /// The upstream connection may go back to the keep-alive pool after the body.
    reusable: bool,
    /// The client's head, written.
    head: Vec<u8>,
    gzip: Option<BodyEncoder>,
}

/// Proxies the request to `pp`'s upstream and relays the answer; `keep_alive`: the location
/// lets the client connection live on.
pub(super) async fn proxy(req: &mut Req<'_>, pp: &ProxyPass, keep_alive: bool) -> State {
    if let Some(refused) = refuse(req).await {
        return refused;
    }
    let evaluated;
    let pp = if pp.needs_eval() {
        match super::dynamic_pass::evaluate(req, pp).await {
            Ok(p) => {
                evaluated = p;
                &evaluated
            }
            Err(code) => return req.fail(code).await,
        }
    } else {
        pp
    };
    req.vars.upstream = UpstreamFacts::for_proxy_pass(pp);
    let mut attempts = Attempts::new(req, pp);
    let body_read = req.conn.body_read.get();
    let (upstream, leftover, sent_upgrade, ubuf, slot, resp) = loop {
        let (upstream, sent, slot) = match exchange(req, pp, &mut attempts).await {
            Ok(exchanged) => exchanged,
            Err(st) => return st,
        };
        let Request {
            upgrade,
            keeps_alive,
            leftover,
            mut ubuf,
        } = sent;
        let facts = (keep_alive, keeps_alive);
        let head = read_response_head(req, pp, &upstream, &mut ubuf, facts, &attempts).await;
        match head {
            Ok(r) => break (upstream, leftover, upgrade, ubuf, slot, r),
            Err(Headless::Done(st)) => return *st,
            Err(Headless::Next(status)) => {
                // The peer's answer is not used: the next peer gets the request again.
                attempts.set_status(status);
                req.conn.body_read.set(body_read);
            }
        }
    };
    let _upstream_guard = req.ctx.hold();
    let Response {
        status,
        body,
        framing,
        keep,
        reusable,
        head,
        gzip,
    } = resp;
    if body == ResponseBody::SwitchingProtocols {
        if !(req.head.upgrade && sent_upgrade) || status != 101 {
            return req.fail(502).await;
        }
        req.conn.buf = leftover;
        let websocket = req
            .head
            .upgrade_protocol
            .is_some_and(|p| p.eq_ignore_ascii_case(b"websocket"));
        let tunnel = (upstream.stream, slot, websocket);
        return tunnel_after_101(req, tunnel, head, ubuf).await;
    }
    if !send_head(req.conn, status, &head, req.conf).await {
        return State::Closed;
    }
    drop(head);
    let relayed = match gzip {
        Some(mut enc) => {
            let (c, sent) = (&req.conn.stream, &req.conn.sent);
            let r =
                super::gzip_relay::relay(c, sent, &upstream.stream, ubuf, body, &mut enc, req.conf)
                    .await
                    .map(|()| false);
            req.conn.gzip_io.set(Some(enc.counts()));
            r
        }
        None => relay_response_body(req, &upstream.stream, ubuf, Frame::of(body, framing)).await,
    };
    // Only plain connections are cached (a TLS one is never taken back out).
    if matches!(relayed, Ok(true))
        && reusable
        && upstream.stream.plain().is_some()
        && pp.direct.is_none()
    {
        UpstreamPools::put(req.ctx, pp.upstream, upstream);
    }
    drop(slot);
    match relayed {
        Ok(_) if keep => {
            // Pipelined bytes beyond this request's body start the next request; an idle
            // keep-alive connection holds no buffer.
            req.conn.buf = leftover;
            State::ReadingHead
        }
        _ => State::Closed,
    }
}

/// nginx reads the body before it goes upstream: what it can tell from the head and the bytes
/// that came with it is refused without contacting the upstream, as are upgrades to anything
/// but WebSocket (unless `proxy_allow_upgrade` lists them).
async fn refuse(req: &Req<'_>) -> Option<State> {
    let (head, conf, ip) = (req.head, req.conf, req.conn.peer.ip());
    let max = conf.client_max_body_size();
    match head.body {
        _ if req.conn.body_read.get() => {}
        Body::Length(n) if max > 0 && n > max => {
            log!(
                Error,
                "client intended to send too large body: {n} bytes, client: {ip}"
            );
            return Some(req.fail(413).await);
        }
        Body::Chunked => match check_early_chunks(req.early, max) {
            Ok(()) => {}
            Err(ChunksError::TooLarge(before, size)) => {
                log!(Error, "client intended to send too large chunked body: {before}+{size} bytes, client: {ip}");
                return Some(req.fail(413).await);
            }
            Err(ChunksError::Invalid) => {
                log!(Info, "client sent invalid chunked body, client: {ip}");
                return Some(req.fail(400).await);
            }
        },
        _ => {}
    }
    if head.upgrade
        && !head
            .upgrade_protocol
            .is_some_and(|p| upgrade_allowed(p, conf))
    {
        // h2c (and anything else but websocket unless proxy_allow_upgrade lists it) is a
        // request-smuggling vector: the request goes on without the upgrade.
        log!(
            Info,
            "upgrade to \"{}\" refused, client: {ip}",
            String::from_utf8_lossy(head.upgrade_protocol.unwrap_or(b"")),
        );
        return Some(req.fail(400).await);
    }
    None
}

/// Whether a client's upgrade to `protocol` goes upstream: WebSocket, a protocol
/// `proxy_allow_upgrade` lists, or the one the location itself names upstream with a literal
/// `proxy_set_header Upgrade PROTO` (the operator chose it; the client cannot pick another, as
/// it can through `$http_upgrade`).
fn upgrade_allowed(protocol: &[u8], conf: &LocConf) -> bool {
    let same = |p: &str| p.as_bytes().eq_ignore_ascii_case(protocol);
    protocol.eq_ignore_ascii_case(b"websocket")
        || conf.proxy_allow_upgrade.iter().flatten().any(|p| same(p))
        || conf.proxy_set_header.iter().flatten().any(|(name, value)| {
            name.eq_ignore_ascii_case("upgrade") && value.as_literal().is_some_and(same)
        })
}

/// Connects to a peer and sends the request, up to the first response byte; the peer slot is
/// held for as long as this connection serves the request (or its tunnel).
async fn exchange(
    req: &mut Req<'_>,
    pp: &ProxyPass,
    attempts: &mut Attempts,
) -> Result<(UpstreamConn, Request, PeerSlot), State> {
    // A cached connection the peer closed just as the request went out is retried once on a
    // new connection (nginx: proxy_next_upstream error, not counted against the peer).
    let retry = upstream_pool::may_retry(req.head, req.early, req.conf);
    let mut pooled =
        !pp.tls && pp.direct.is_none() && req.ctx.proxy.upstream_pools.enabled(pp.upstream);
    let body_read = req.conn.body_read.get();
    loop {
        let mut up = match connect(req, pp, pooled, attempts).await {
            Ok(u) => u,
            Err(code) => return Err(req.fail(code).await),
        };
        let slot = PeerSlot::new(req.ctx, pp, up.peer);
        match send_request(req, &mut up, pp, retry).await {
            Ok(sent) => return Ok((up, sent, slot)),
            Err(Sent::Stale) => {
                // The body (all of it still in `early`: `may_retry`) goes again.
                req.conn.body_read.set(body_read);
                attempts.stale(up.peer);
                pooled = false;
            }
            Err(Sent::Upstream(code)) => {
                let fault = Fault::of_status(code);
                peer_failed(req, pp, up.peer, fault);
                if !(resendable(req) && attempts.again(req, pp, fault)) {
                    return Err(req.fail(code).await);
                }
                attempts.set_status(code);
                req.conn.body_read.set(body_read);
            }
            Err(Sent::Fail(code)) => return Err(req.fail(code).await),
            Err(Sent::Closed) => return Err(State::Closed),
        }
    }
}

/// Whether the request can go to another peer after this one had it (nginx buffers the body
/// and refuses to repeat a non-idempotent request unless `proxy_next_upstream non_idempotent`;
/// ringproxy streams bodies, so only one it still holds whole goes again).
fn resendable(req: &Req<'_>) -> bool {
    let listed = |w: &str| req.conf.proxy_next_upstream().when.iter().any(|x| x == w);
    let body_held = match req.head.body {
        Body::None => true,
        Body::Length(n) => n <= req.early.len() as u64,
        Body::Chunked => false,
    };
    let idempotent =
        !matches!(req.head.method, "POST" | "LOCK" | "PATCH") || listed("non_idempotent");
    body_held && idempotent && !req.head.upgrade
}

/// Tells the balancer that `peer` failed this request as `fault`, whether or not another peer
/// gets it (nginx frees the peer as failed in `ngx_http_upstream_next`); its connection slot
/// goes back when the caller drops it.
fn peer_failed(req: &Req<'_>, pp: &ProxyPass, peer: crate::upstream::PeerId, fault: Fault) {
    // A group of one made for an address a URL with variables named has no state to keep.
    if fault.fails_peer() && pp.direct.is_none() {
        req.ctx.proxy.balancers[pp.upstream].borrow_mut().report(
            peer,
            crate::upstream::Outcome::Failure,
            Instant::now(),
        );
    }
}

/// Why no response head came to use.
enum Headless {
    /// The request is answered (an error sent, or deferred to `error_page`).
    Done(Box<State>),
    /// The peer failed, and `proxy_next_upstream` lets another try; the status is what the
    /// request gets if no other peer is left.
    Next(u16),
}

/// Reads the response head into `ubuf` (skipping `100 Continue`s) and builds the client's
/// head; leaves the body's first bytes in `ubuf`. `(keep_alive, reusable)`: the location
/// lets the client connection live on, the upstream request let the upstream one.
async fn read_response_head(
    req: &mut Req<'_>,
    pp: &ProxyPass,
    upstream: &UpstreamConn,
    ubuf: &mut Vec<u8>,
    (keep_alive, reusable): (bool, bool),
    attempts: &Attempts,
) -> Result<Response, Headless> {
    let conf = req.conf;
    // The peer failed as `fault`: whether another may make up for it.
    let next = |req: &mut Req<'_>, fault: Fault| {
        peer_failed(req, pp, upstream.peer, fault);
        resendable(req) && attempts.again(req, pp, fault)
    };
    let listed_status = |req: &Req<'_>, status: u16| {
        Fault::of_response(status).is_some_and(|f| resendable(req) && attempts.again(req, pp, f))
    };
    let max_head = conf.proxy_buffer_size() as usize;
    let head_request = req.head.method == "HEAD";
    let ip = req.conn.peer.ip();
    loop {
        let mut hdrs = [httparse::EMPTY_HEADER; MAX_HEADERS];
        match parse_response(ubuf, &mut hdrs, max_head.max(1024), head_request) {
            Ok(Parsed::Complete(h, len)) if h.status == 100 => {
                ubuf.drain(..len);
                continue;
            }
            Ok(Parsed::Complete(h, _)) if listed_status(req, h.status) => {
                peer_failed(req, pp, upstream.peer, Fault::Status(h.status));
                return Err(Headless::Next(502));
            }
            Ok(Parsed::Complete(h, _)) if error_page::intercepts(conf, h.status) => {
                return Err(Headless::Done(Box::new(State::Error(
                    Reply::status(h.status),
                    false,
                ))));
            }
            Ok(Parsed::Complete(h, len)) => {
                let resp = client_head(req, (pp, upstream.peer), &h, len, (keep_alive, reusable));
                ubuf.drain(..len);
                return match resp {
                    Some(r) => Ok(r),
                    None => Err(Headless::Done(Box::new(req.fail(502).await))),
                };
            }
            Ok(Parsed::Partial) => {}
            Err(e) => {
                // The error is nginx's text ("upstream sent too big header", ...).
                log!(
                    Error,
                    "{e} while reading response header from upstream, client: {ip}"
                );
                if next(req, Fault::InvalidHeader) {
                    return Err(Headless::Next(502));
                }
                return Err(Headless::Done(Box::new(req.fail(502).await)));
            }
        }
        let deadline = Instant::now() + conf.proxy_read_timeout();
        let room = max_head.saturating_sub(ubuf.len()).max(1024);
        match read_into(&upstream.stream, ubuf, room, deadline).await {
            Ok(0) => {
                log!(Error, "upstream prematurely closed connection while reading response header from upstream, client: {ip}");
                if next(req, Fault::Error) {
                    return Err(Headless::Next(502));
                }
                return Err(Headless::Done(Box::new(req.fail(502).await)));
            }
            Ok(_) => {}
            Err(e) => {
                let code = if is_timeout(&e) { 504 } else { 502 };
                log!(Error, "upstream timed out ({}) while reading response header from upstream, client: {ip}", crate::config::os_error(&e));
                if next(req, Fault::of_status(code)) {
                    return Err(Headless::Next(code));
                }
                return Err(Headless::Done(Box::new(req.fail(code).await)));
            }
        }
    }
}

/// `sticky cookie`'s `Set-Cookie` for a response from `peer`, if the upstream has one.
fn sticky_cookie(
    req: &mut Req<'_>,
    pp: &ProxyPass,
    peer: crate::upstream::PeerId,
) -> Option<Vec<u8>> {
    if pp.direct.is_some() {
        return None;
    }
    let group = &req.http.upstreams[pp.upstream];
    let cookie = group.sticky.as_ref()?.cookie.as_ref()?;
    let balancer = req.ctx.proxy.balancers[pp.upstream].borrow();
    let sid = &balancer.peers().spec(peer).sid;
    let now = std::time::SystemTime::now();
    Some(super::sticky::set_cookie(cookie, sid, &mut req.vars, now))
}

/// The client's head for the upstream's `h`: nginx's response filters (`add_header`,
/// `proxy_redirect`, gzip) and framing (`head_len`: the upstream head's size). `None` when it cannot be written (nginx: 502).
fn client_head(
    req: &mut Req<'_>,
    (pp, peer): (&ProxyPass, crate::upstream::PeerId),
    h: &ResponseHead<'_, '_>,
    head_len: usize,
    (keep_alive, reusable): (bool, bool),
) -> Option<Response> {
    let conf = req.conf;
    let list: Vec<(&str, &[u8])> = h.headers.iter().map(|x| (x.name, x.value)).collect();
    let length = match h.body {
        ResponseBody::Length(n) => Some(n),
        _ => None,
    };
    let proxied = ProxiedRequest {
        pass: pp,
        matcher: req.matcher,
        status_override: req.conn.err_status.get(),
        sticky_cookie: sticky_cookie(req, pp, peer),
    };
    let shaped =
        super::headers_out::shape_proxied(conf, &mut req.vars, &proxied, h.status, &list, length);
    let (framing, gzip) = shaped.framing(h.body, respond::takes_chunked(req.head, conf));
    let keep =
        keep_alive && framing != ClientFraming::Close && h.body != ResponseBody::SwitchingProtocols;
    let reusable = reusable && keepalive::response_keeps_alive(h);
    let list = shaped.header_list();
    let mut head = Vec::with_capacity(head_len + 128);
    let opts = ClientOptions {
        framing,
        keep_alive: keep,
        now: std::time::SystemTime::now(),
        extras: &shaped.extras,
    };
    let reason = if shaped.status == h.status {
        h.reason
    } else {
        ""
    };
    write_client_head(shaped.status, reason, &list, conf, &opts, &mut head).ok()?;
    Some(Response {
        status: shaped.status,
        body: h.body,
        framing,
        keep,
        reusable,
        head,
        gzip,
    })
}

/// An `auth_request` subrequest's exchange with `pp`'s upstream: the status and headers of its
/// response, whose body is dropped (the connection goes back to the keep-alive pool when the
/// body was empty or already read whole). `Err`: the status nginx gives a failed exchange (502,
/// 504...), `None` when the client went away.
pub(super) async fn subrequest(
    req: &mut Req<'_>,
    pp: &ProxyPass,
) -> Result<(u16, Vec<(String, Vec<u8>)>), Option<u16>> {
    req.vars.upstream = UpstreamFacts::for_proxy_pass(pp);
    let failed = |st: State| match st {
        State::Error(r, _) => Some(r.code),
        _ => None,
    };
    let mut attempts = Attempts::new(req, pp);
    let (upstream, sent, slot) = exchange(req, pp, &mut attempts).await.map_err(failed)?;
    let mut ubuf = sent.ubuf;
    let max_head = (req.conf.proxy_buffer_size() as usize).max(1024);
    let ip = req.conn.peer.ip();
    loop {
        let mut hdrs = [httparse::EMPTY_HEADER; MAX_HEADERS];
        match parse_response(&ubuf, &mut hdrs, max_head, false) {
            Ok(Parsed::Complete(h, len)) if h.status == 100 => {
                ubuf.drain(..len);
                continue;
            }
            Ok(Parsed::Complete(h, len)) => {
                let headers = h
                    .headers
                    .iter()
                    .map(|x| (x.name.to_string(), x.value.to_vec()))
                    .collect();
                let whole = match h.body {
                    ResponseBody::None => ubuf.len() == len,
                    ResponseBody::Length(n) => (ubuf.len() - len) as u64 == n,
                    _ => false,
                };
                let reusable = whole && sent.keeps_alive && keepalive::response_keeps_alive(&h);
                let status = h.status;
                if reusable && upstream.stream.plain().is_some() {
                    UpstreamPools::put(req.ctx, pp.upstream, upstream);
                }
                drop(slot);
                return Ok((status, headers));
            }
            Ok(Parsed::Partial) => {}
            Err(e) => {
                log!(
                    Error,
                    "{e} while reading response header from upstream, client: {ip}"
                );
                return Err(Some(502));
            }
        }
        let deadline = Instant::now() + req.conf.proxy_read_timeout();
        match read_into(&upstream.stream, &mut ubuf, max_head, deadline).await {
            Ok(0) => {
                log!(Error, "upstream prematurely closed connection while reading response header from upstream, client: {ip}");
                return Err(Some(502));
            }
            Ok(_) => {}
            Err(e) => {
                log!(Error, "upstream timed out ({}) while reading response header from upstream, client: {ip}", crate::config::os_error(&e));
                return Err(Some(if is_timeout(&e) { 504 } else { 502 }));
            }
        }
    }
}
