//! A client connection, as an explicit state machine. Each request is one `one_request` call:
//! reading the head (one absolute deadline, nginx's buffer limits), then routing, picking a peer
//! and relaying the request and the response; it ends in a [`State`]: `ReadingHead` again for
//! the next keep-alive request, `Tunnel` after a `101`, `Closed`, or an `Error` not sent yet
//! (which `error_page` may answer). Malformed requests get nginx's status and are never
//! forwarded.

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Instant;

use monoio::net::TcpStream;

use super::conn::Stream;
use super::error_page;
use super::exchange::{read_upstream, send_request, Request, Sent};
use super::frames::Frames;
use super::headers_out::ProxiedRequest;
use super::io::{is_timeout, read_into, read_some, write_all};
use super::pool::PooledBuf;
use super::request_body::{check_early_chunks, decode_chunks, ChunksError};
use super::respond;
use super::response::{write_client_head, ClientFraming, ClientOptions};
use super::static_files::{self, Conditional, Decision};
use super::tunnel::{Path, TunnelConfig};
use super::upstream_pool::{self, UpstreamConn, UpstreamPools};
use crate::config::model::{
    Balance, HttpConf, LocConf, Location, LocationMatch, ProxyPass, ServerName, SpliceMode,
};
use crate::http::body::{encode_chunk, ChunkedDecoder, LAST_CHUNK};
use crate::http::request::{
    parse_request, Body, HeadLimits, Parsed, RequestError, RequestHead, Version,
};
use crate::http::response::{parse_response, ResponseBody};
use crate::http::script::{self, Level, Outcome as ScriptOutcome, Reply};
use crate::http::vars::{ConnFacts, RequestVars, UpstreamFacts};
use crate::log;
use crate::route::{Found, LocId, UriChanges};
use crate::shard::listener::ListenSpec;
use crate::shard::ShardCtx;
use crate::upstream::balancer::{Outcome as PeerOutcome, PickState};
use crate::upstream::keepalive;

/// Most header lines accepted in one head (httparse needs a fixed array).
const MAX_HEADERS: usize = 100;

/// Where a connection is after a request: waiting for the next head (keep-alive), switched to a
/// tunnel (the 101 and any early bytes already relayed; only the two sockets live on), or done.
enum State {
    ReadingHead,
    /// The upstream side, the tunnel's settings, and the peer slot it holds (`max_conns`).
    Tunnel(Stream, TunnelConfig, PeerSlot),
    Closed,
    /// An error or redirect not sent yet (`error_page` may answer it); the flag: the
    /// connection may stay open after it.
    Error(Reply, bool),
}

pub(super) struct Conn {
    pub(super) stream: Stream,
    pub(super) peer: SocketAddr,
    local: SocketAddr,
    /// Bytes read from the client and not yet consumed (the next head, a pipelined frame).
    buf: Vec<u8>,
    requests: u32,
    accepted: Instant,
    /// `$connection`: this shard's connection serial number.
    id: u64,
    /// Status of the current request's response (for `$status` in the access log).
    pub(super) status: Cell<u16>,
    /// Bytes of the current response written to the client, head and body.
    sent: Cell<u64>,
    /// Of which, the head.
    head_sent: Cell<u64>,
    /// Inside a request's location loop: errors come back as `State::Error` for `error_page`.
    defer_errors: Cell<bool>,
    /// The status an `error_page` gave the rest of this request.
    err_status: Cell<Option<u16>>,
    /// Body bytes in and out of gzip for this response (`$gzip_ratio`).
    gzip_io: Cell<Option<(u64, u64)>>,
    /// The request body went upstream already: a proxied error page gets none.
    pub(super) body_read: Cell<bool>,
    /// How long to wait for the next request: `keepalive_timeout` of the location that served
    /// the last one, as in nginx.
    idle_timeout: std::time::Duration,
    /// TCP_NODELAY is set (nginx sets it once a location with `tcp_nodelay on` serves a
    /// request, and never clears it).
    nodelay: bool,
}

/// Serves one accepted client connection until it closes, `guard` counting it meanwhile: on
/// the configuration generation `ctx` for its first request and on the shard's current one
/// (after a reload) for each later one.
pub async fn serve(
    ctx: Rc<ShardCtx>,
    guard: crate::shard::ConnGuard,
    spec: ListenSpec,
    stream: TcpStream,
    peer: SocketAddr,
) {
    let mut ctx = ctx;
    super::pool::note_connection();
    if super::io::set_nonblocking(&stream).is_err() {
        return;
    }
    let Some(http) = ctx.config.http.as_ref() else {
        return;
    };
    // As nginx: only a wildcard listener needs getsockname(2) to know the local address.
    let local = if spec.addr.ip().is_unspecified() {
        stream.local_addr().unwrap_or(spec.addr)
    } else {
        spec.addr
    };
    let default_conf = ctx
        .proxy
        .router
        .default_server(local)
        .ok()
        .map(|i| &http.servers[i].conf);
    // As nginx: the default server's tcp_nodelay before a TLS handshake; a plain connection
    // gets it from the location of its first request.
    let nodelay = spec.listen.ssl && default_conf.is_none_or(|c| c.tcp_nodelay());
    if nodelay {
        let _ = stream.set_nodelay(true);
    }
    let accepted = Instant::now();
    let Some(stream) = crate::tls::accept(&ctx, &spec, stream, peer, local, accepted).await else {
        return;
    };
    let mut conn = Conn {
        stream,
        peer,
        local,
        buf: Vec::new(),
        requests: 0,
        accepted,
        id: ctx.proxy.next_connection_id(),
        status: Cell::new(0),
        sent: Cell::new(0),
        head_sent: Cell::new(0),
        defer_errors: Cell::new(false),
        err_status: Cell::new(None),
        gzip_io: Cell::new(None),
        body_read: Cell::new(false),
        idle_timeout: default_conf.map_or(std::time::Duration::ZERO, |c| c.keepalive_timeout()),
        nodelay,
    };
    loop {
        // Boxed: the request's future (head buffers, header arrays, the owned request) is freed
        // before a tunnel starts, so an idle tunnel costs only its two sockets and this task.
        // Bound first, matched after: the boxed future is freed before the tunnel's task is
        // allocated, so that small long-lived allocation can reuse the freed space instead of
        // pinning a page of it (what keeps a reconnect storm's peak in the heap).
        let Some(http) = ctx.config.http.as_ref() else {
            return;
        };
        // A generation cut at `worker_shutdown_timeout` closes its connections mid-request.
        let request = Box::pin(one_request(&ctx, http, &mut conn));
        let state = monoio::select! {
            state = request => state,
            _ = ctx.cut.wait() => return,
        };
        match state {
            State::ReadingHead => {
                if ctx.winding_down()
                    || (conn.buf.is_empty() && !next_request_arrives(&ctx, &conn).await)
                {
                    return;
                }
                // A reload since the last request: this one uses the new configuration.
                ctx = ctx.for_next_request(spec.addr);
            }
            State::Closed | State::Error(..) => return,
            State::Tunnel(_, _, _) if ctx.cut.is_set() => return,
            State::Tunnel(upstream, mut cfg, slot) => {
                cfg.generation = ctx.serial;
                // The tunnel gets a task of its own holding only the two sockets and its
                // guards: this connection's future (request state, buffers) is freed now.
                let guards = (guard, ctx.hold(), slot);
                let (client, peer) = (conn.stream, conn.peer);
                monoio::spawn(super::handoff::carry(guards, client, upstream, cfg, peer));
                return;
            }
        }
    }
}

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

async fn send(conn: &Conn, bytes: &[u8], conf: &LocConf) -> bool {
    let ok = write_all(&conn.stream, bytes, conf.send_timeout())
        .await
        .is_ok();
    if ok {
        conn.sent.set(conn.sent.get() + bytes.len() as u64);
    }
    ok
}

/// Sends a response head: records the status and the head's size for the access log.
async fn send_head(conn: &Conn, status: u16, bytes: &[u8], conf: &LocConf) -> bool {
    conn.status.set(status);
    conn.head_sent.set(bytes.len() as u64);
    send(conn, bytes, conf).await
}

/// Sends a response ringproxy made whole (head and body in one buffer), recording the head's
/// size so that `$body_bytes_sent` counts the body only, as nginx.
async fn send_whole(conn: &Conn, bytes: &[u8], conf: &LocConf) -> bool {
    let head = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(bytes.len(), |i| i + 4);
    conn.head_sent.set(head as u64);
    send(conn, bytes, conf).await
}

/// Answers with ringproxy's own page for `code` and closes.
async fn fail(conn: &Conn, code: u16, conf: &LocConf) -> State {
    if conn.defer_errors.get() {
        return State::Error(Reply::status(code), false);
    }
    conn.status.set(code);
    let _ = send_whole(
        conn,
        &respond::error(code, false, conf.server_tokens()),
        conf,
    )
    .await;
    State::Closed
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

/// Keep-alive: waits for the next request without holding a buffer, up to the
/// `keepalive_timeout` of the location that served the last one; false when the connection
/// should close instead (timeout, end of stream, graceful stop, a reload that winds the
/// generation down).
async fn next_request_arrives(ctx: &ShardCtx, conn: &Conn) -> bool {
    let readable = monoio::time::timeout(conn.idle_timeout, conn.stream.readable());
    monoio::select! {
        r = readable => matches!(r, Ok(Ok(()))),
        _ = ctx.leaving() => false,
    }
}

/// Reads and serves one request. Returns `ReadingHead` to go on (keep-alive), `Tunnel`, or
/// `Closed`.
async fn one_request(ctx: &Rc<ShardCtx>, http: &HttpConf, conn: &mut Conn) -> State {
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
            Err(e) => {
                log!(Info, "client sent invalid request: {e} while reading client request headers, client: {}", conn.peer.ip());
                if matches!(e, RequestError::InvalidHttp09Method) {
                    // nginx's answer to HTTP/0.9 is a bare body, its error pages too.
                    match conn.stream.bare() {
                        Ok(s) => conn.stream = s,
                        Err(_) => return State::Closed,
                    }
                }
                return fail(conn, e.status(), dconf).await;
            }
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
    serve_request(ctx, http, conn, &head, early, default_idx).await
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
    serve_request(ctx, http, conn, &head, &[], default_idx).await;
    State::Closed
}

/// A peer's connection slot taken by the balancer's pick (`max_conns` counts it), given back
/// when the request, or its tunnel, is done with the connection.
struct PeerSlot {
    ctx: Rc<ShardCtx>,
    upstream: usize,
    peer: crate::upstream::PeerId,
}

impl PeerSlot {
    fn new(ctx: &Rc<ShardCtx>, upstream: usize, peer: crate::upstream::PeerId) -> PeerSlot {
        PeerSlot {
            ctx: ctx.clone(),
            upstream,
            peer,
        }
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        self.ctx.proxy.balancers[self.upstream]
            .borrow_mut()
            .release(self.peer);
    }
}

/// Where routing sends a request next.
enum Next {
    /// Search a location for `$uri` (first time, `rewrite ... last`, an internal redirect).
    Search,
    /// Go to a named location (`try_files ... @name`).
    Named(LocId),
}

async fn serve_request(
    ctx: &Rc<ShardCtx>,
    http: &HttpConf,
    conn: &mut Conn,
    head: &RequestHead<'_, '_>,
    early: &[u8],
    default_idx: usize,
) -> State {
    let router = &ctx.proxy.router;
    let dconf = &http.servers[default_idx].conf;
    let Ok(sm) = router.server_for(conn.local, head.host) else {
        return fail(conn, 400, dconf).await;
    };
    let server = &http.servers[sm.server];
    let uri = match crate::route::uri::normalize(head.target.path, dconf.merge_slashes()) {
        Ok(u) => u,
        Err(_) => return fail(conn, 400, &server.conf).await,
    };
    // nginx's `$server_name` (and the `server:` of its log lines) is the first name as written.
    let server_name = server.names.first().map(ServerName::as_written);
    let tls = conn.stream.tls_info();
    let facts = ConnFacts {
        remote: conn.peer,
        local: conn.local,
        tls: tls.as_ref().map(|t| t.facts()),
        server_name: server_name.as_deref().unwrap_or(""),
        connection: conn.id,
        requests: conn.requests as u64,
        hostname: &ctx.proxy.hostname,
        pid: ctx.proxy.pid,
        underscores_in_headers: server.conf.underscores_in_headers()
            || !server.conf.ignore_invalid_headers(),
    };
    let mut vars = RequestVars::new(head, &facts, &http.maps, uri, std::time::SystemTime::now());
    if let (Some(c), Some(host)) = (&sm.captures, head.host) {
        // As nginx's `ngx_http_find_virtual_server`: the name's captures (`$1`, named groups)
        // are the request's until another regex matches.
        vars.match_regex(c.regex(), &crate::route::host_name(host));
    }
    let mut notice = rewrite_log(
        conn.id,
        conn.peer,
        head,
        server_name.as_deref().unwrap_or(""),
    );
    let outcome = match server.conf.rewrite_log() {
        true => script::run_logged(&server.conf.script, Level::Server, &mut vars, &mut notice),
        false => script::run(&server.conf.script, Level::Server, &mut vars),
    };
    match outcome {
        ScriptOutcome::Return(r) => {
            return reply(conn, &mut vars, &server.conf, r, head.keep_alive).await
        }
        ScriptOutcome::Continue | ScriptOutcome::Break | ScriptOutcome::Last(_) => {}
    }
    conn.status.set(0);
    conn.sent.set(0);
    conn.head_sent.set(0);
    conn.gzip_io.set(None);
    conn.body_read.set(false);
    let mut log_conf: &LocConf = &server.conf;
    let mut changes = UriChanges::default();
    let mut next = Next::Search;
    // nginx's r->internal (error_page, try_files, index, named locations), whether the one
    // error page (recursive_error_pages off) was used, and whether an error ended keep-alive.
    let (mut internal, mut page_used, mut closing) = (false, false, false);
    conn.err_status.set(None);
    conn.defer_errors.set(true);
    let mut pending: Option<(Reply, bool)> = None;
    let state = 'req: loop {
        // Ends the request with `$e`, or hands an error or a redirect to `error_page` first
        // (the top of the next iteration).
        macro_rules! finish {
            ($e:expr) => {
                match $e {
                    State::Error(r, ka) => {
                        pending = Some((r, ka));
                        continue 'req;
                    }
                    st => break 'req st,
                }
            };
        }
        if let Some((r, ka)) = pending.take() {
            // A body already sent upstream leaves unknown bytes behind: no keep-alive.
            closing |= !ka || conn.body_read.get();
            let page = if page_used {
                None
            } else {
                error_page::find(log_conf, r.code)
            };
            let res = page.map(|p| error_page::resolve(p, r.code, &mut vars));
            page_used |= res.is_some();
            let target = match res {
                None => None,
                Some(res) => {
                    conn.err_status.set(res.status);
                    match res.action {
                        error_page::Action::Internal { uri, args } => {
                            vars.set_uri(uri, Some(args));
                            Some(Next::Search)
                        }
                        error_page::Action::Named(name) => {
                            router.named_location(sm.server, &name).map(Next::Named)
                        }
                        error_page::Action::Redirect { code, location } => {
                            let to = Reply {
                                code,
                                location: Some(location),
                                body: None,
                            };
                            break 'req send_page(conn, &mut vars, log_conf, to, !closing).await;
                        }
                    }
                }
            };
            match target.filter(|_| changes.change().is_ok()) {
                Some(t) => {
                    internal = true;
                    next = t;
                }
                None => {
                    conn.err_status.set(None);
                    break 'req send_page(conn, &mut vars, log_conf, r, !closing).await;
                }
            }
        }
        // Find the location.
        let loc: Option<&Location> = match next {
            Next::Named(id) => router.location(http, id),
            Next::Search => match router.find_location(sm.server, vars.uri()) {
                Found::Location(id, _) => router.location(http, id),
                Found::Redirect(id) => {
                    let mut target = router.location_name(id).as_bytes().to_vec();
                    if let Some(a) = vars.args() {
                        target.push(b'?');
                        target.extend_from_slice(a.as_bytes());
                    }
                    let r = Reply {
                        code: 301,
                        location: Some(target),
                        body: None,
                    };
                    finish!(reply(conn, &mut vars, &server.conf, r, head.keep_alive).await);
                }
                Found::ServerLevel => None,
            },
        };
        let conf = loc.map_or(&server.conf, |l| &l.conf);
        log_conf = conf;
        conn.idle_timeout = conf.keepalive_timeout();
        if conf.tcp_nodelay() && !conn.nodelay {
            conn.nodelay = conn.stream.tcp().set_nodelay(true).is_ok();
        }
        if conf.internal && !internal {
            finish!(fail(conn, 404, conf).await);
        }
        if let Some(l) = loc {
            if let LocationMatch::Regex(re) = &l.matcher {
                let subject = vars.uri().to_string();
                vars.match_regex(re, &subject);
            }
            vars.set_location_valid(true);
        }
        // nginx's keep-alive limits hold for every answer from this location (`return` too).
        let keep_alive = head.keep_alive
            && !closing
            && !conf.keepalive_timeout().is_zero()
            && conn.requests < conf.keepalive_requests()
            && conn.accepted.elapsed() <= conf.keepalive_time()
            && !ctx.shard.stopping.is_set();
        let outcome = match conf.rewrite_log() {
            true => script::run_logged(&conf.script, Level::Location, &mut vars, &mut notice),
            false => script::run(&conf.script, Level::Location, &mut vars),
        };
        match outcome {
            ScriptOutcome::Return(r) => finish!(reply(conn, &mut vars, conf, r, keep_alive).await),
            ScriptOutcome::Last(_) => {
                if changes.change().is_err() {
                    log!(
                        Error,
                        "rewrite or internal redirection cycle while processing \"{}\", client: {}",
                        vars.uri(),
                        conn.peer.ip()
                    );
                    finish!(fail(conn, 500, conf).await);
                }
                next = Next::Search;
                continue;
            }
            ScriptOutcome::Continue | ScriptOutcome::Break => {}
        }
        if let Some(pp) = conf.proxy_pass.as_ref() {
            let matcher = loc.map(|l| &l.matcher).unwrap_or(&SERVER_LEVEL);
            finish!(
                proxy(ctx, http, conn, head, early, &mut vars, conf, pp, matcher, keep_alive).await
            );
        }
        // An error page is fetched as GET (nginx rewrites the method).
        if head.method != "GET" && head.method != "HEAD" && !page_used {
            finish!(fail(conn, 405, conf).await);
        }
        if !early.is_empty() {
            conn.buf = early.to_vec();
        }
        let matcher = loc.map(|l| &l.matcher).unwrap_or(&SERVER_LEVEL);
        let decision = {
            let v = &mut vars;
            let uri = v.uri().to_string();
            static_files::resolve(conf, matcher, &uri, &mut |t| {
                let mut out = Vec::new();
                v.render(t, &mut out);
                out
            })
        };
        match decision {
            Decision::File(hit) => {
                let status = conn.err_status.get().unwrap_or(200);
                conn.status.set(status);
                let cond = Conditional {
                    if_modified_since: header_str(head, "if-modified-since"),
                    if_none_match: header_str(head, "if-none-match"),
                };
                let extras = hit.extras(conf, &mut vars, status);
                let shape = static_files::Shaping {
                    status,
                    extras: &extras,
                    chunked: respond::takes_chunked(head, conf),
                    head_request: head.method == "HEAD",
                };
                finish!(match static_files::serve(
                    &conn.stream,
                    &hit,
                    &cond,
                    keep_alive,
                    conf,
                    &shape,
                )
                .await
                {
                    Ok(served) => {
                        conn.sent.set(served.body_bytes);
                        conn.gzip_io.set(served.gzip);
                        if served.keep_alive {
                            State::ReadingHead
                        } else {
                            State::Closed
                        }
                    }
                    Err(e @ static_files::ServeError::Open { .. }) => {
                        fail(conn, e.status(), conf).await
                    }
                    Err(_) => State::Closed,
                });
            }
            Decision::RedirectDir(target) => {
                let r = Reply {
                    code: 301,
                    location: Some(target.into_bytes()),
                    body: None,
                };
                finish!(reply(conn, &mut vars, conf, r, keep_alive).await);
            }
            Decision::InternalRedirect(target) => {
                if changes.change().is_err() {
                    finish!(fail(conn, 500, conf).await);
                }
                match target.split_once('?') {
                    Some((u, a)) => vars.set_uri(u.to_string(), Some(Some(a.to_string()))),
                    None => vars.set_uri(target, None),
                }
                internal = true;
                next = Next::Search;
            }
            Decision::Named(name) => match router.named_location(sm.server, &name) {
                Some(id) => {
                    if changes.change().is_err() {
                        finish!(fail(conn, 500, conf).await);
                    }
                    internal = true;
                    next = Next::Named(id);
                }
                None => finish!(fail(conn, 500, conf).await),
            },
            Decision::Status(code) => finish!(fail(conn, code, conf).await),
            Decision::Failed(code, line) => {
                if code != 404 || conf.log_not_found() {
                    let v = if head.version == Version::Http11 {
                        "1.1"
                    } else {
                        "1.0"
                    };
                    let host = head.host.unwrap_or("");
                    log!(Error, "{line}, client: {}, server: {}, request: \"{} {} HTTP/{v}\", host: \"{host}\"", conn.peer.ip(), facts.server_name, head.method, head.target.raw);
                }
                finish!(fail(conn, code, conf).await);
            }
        }
    };
    conn.defer_errors.set(false);
    conn.err_status.set(None);
    log_request(ctx, conn, log_conf, &mut vars, head);
    state
}

/// Writes the request's access-log line (nginx logs upgraded connections when they close;
/// ringproxy logs them when the tunnel opens, with status 101).
fn log_request(
    ctx: &ShardCtx,
    conn: &Conn,
    conf: &LocConf,
    vars: &mut RequestVars<'_>,
    head: &RequestHead<'_, '_>,
) {
    let logs = conf.access_log.as_deref().unwrap_or(&[]);
    if logs.is_empty() {
        return;
    }
    vars.response.status = conn.status.get();
    vars.response.bytes_sent = conn.sent.get();
    vars.response.gzip = conn.gzip_io.get();
    vars.response.body_bytes_sent = conn.sent.get().saturating_sub(conn.head_sent.get());
    vars.request_length = head
        .headers
        .iter()
        .map(|h| h.name.len() + h.value.len() + 4)
        .sum::<usize>() as u64;
    if let Err(e) = ctx.proxy.access.borrow_mut().log(logs, vars) {
        log!(Alert, "{e}");
    }
}

/// `rewrite_log on`: the rewrite script's notices with nginx's request context.
fn rewrite_log<'a>(
    id: u64,
    peer: SocketAddr,
    head: &'a RequestHead<'_, '_>,
    server: &'a str,
) -> impl FnMut(&str) + 'a {
    move |m| {
        let v = if head.version == Version::Http10 {
            0
        } else {
            1
        };
        let host = header_str(head, "host").map_or(String::new(), |h| format!(", host: \"{h}\""));
        log!(
            Notice,
            "*{} {m}, client: {}, server: {server}, request: \"{} {} HTTP/1.{v}\"{host}",
            id,
            peer.ip(),
            head.method,
            head.target.raw
        );
    }
}

/// The matcher static files use for the server level (no location matched).
static SERVER_LEVEL: LocationMatch = LocationMatch::Named(String::new());

fn header_str<'b>(head: &RequestHead<'_, 'b>, name: &str) -> Option<&'b str> {
    head.headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .and_then(|h| std::str::from_utf8(h.value).ok())
}

/// Sends a `return`/redirect reply; inside the location loop, a bare status or redirect goes
/// back to `error_page` first.
async fn reply(
    conn: &Conn,
    vars: &mut RequestVars<'_>,
    conf: &LocConf,
    r: Reply,
    keep_alive: bool,
) -> State {
    if conn.defer_errors.get() && r.body.is_none() && r.code >= 300 && r.code != 444 {
        return State::Error(r, keep_alive);
    }
    let code = conn.err_status.get().unwrap_or(r.code);
    send_page(conn, vars, conf, Reply { code, ..r }, keep_alive).await
}

/// Sends ringproxy's own response for `r` (its text, or nginx's page for the status), with the
/// location's `add_header` lines and gzip.
async fn send_page(
    conn: &Conn,
    vars: &mut RequestVars<'_>,
    conf: &LocConf,
    r: Reply,
    keep_alive: bool,
) -> State {
    conn.status.set(r.code);
    if r.code == 444 {
        return State::Closed;
    }
    let (bytes, keep, gzip) = respond::reply(vars, conf, &r, keep_alive);
    conn.gzip_io.set(gzip);
    if send_whole(conn, &bytes, conf).await && keep {
        State::ReadingHead
    } else {
        State::Closed
    }
}

/// Connects to a peer of the location's upstream (an idle keep-alive connection to the picked
/// peer when `pooled` and one is cached), trying the next one as `proxy_next_upstream` allows.
/// `Err(status)` is 502 or 504.
#[allow(clippy::too_many_arguments)]
async fn connect(
    ctx: &ShardCtx,
    http: &HttpConf,
    conn: &Conn,
    head: &RequestHead<'_, '_>,
    conf: &LocConf,
    pp: &ProxyPass,
    vars: &mut RequestVars<'_>,
    pooled: bool,
) -> Result<UpstreamConn, u16> {
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
    let (started, time_limit) = (Instant::now(), conf.proxy_next_upstream_timeout());
    loop {
        let picked = balancer
            .borrow_mut()
            .pick(key.as_deref(), Instant::now(), &mut state);
        let Some(id) = picked else {
            log!(Error, "no live upstreams while connecting to upstream, client: {}, request: \"{} {}\", upstream: \"{}\"", conn.peer.ip(), head.method, head.target.raw, group.name);
            return Err(status);
        };
        let addr = balancer.borrow().peers().spec(id).addr;
        let cached = pooled.then(|| ctx.proxy.upstream_pools.take(pp.upstream, id));
        if let Some(c) = cached.flatten() {
            vars.upstream.addr = addr.to_string();
            return Ok(c);
        }
        tries += 1;
        let attempt =
            monoio::time::timeout(conf.proxy_connect_timeout(), TcpStream::connect_addr(addr))
                .await;
        // What failed with this peer: the connect (an error), or the TLS handshake (its status).
        let err: Result<u16, std::io::Error> = match attempt {
            Ok(Ok(s)) if super::io::set_nonblocking(&s).is_ok() => {
                // nginx sets it on upstream connections too (streamed bodies, tunnels).
                if conf.tcp_nodelay() {
                    let _ = s.set_nodelay(true);
                }
                if conf.proxy_socket_keepalive() {
                    let _ = socket2::SockRef::from(&crate::sys::fd(&s)).set_keepalive(true);
                }
                vars.upstream.addr = addr.to_string();
                // `https://`: the TLS handshake is part of connecting, as in nginx: a failed
                // one (logged there) fails the peer, and the next one is tried.
                match crate::tls::upstream(ctx, s, conn.peer, conf, pp, vars).await {
                    Ok(s) => {
                        balancer
                            .borrow_mut()
                            .report(id, PeerOutcome::Success, Instant::now());
                        return Ok(UpstreamConn::new(s, id, Instant::now()));
                    }
                    Err(code) => Ok(code),
                }
            }
            Ok(Ok(_)) => Err(std::io::Error::other("fcntl failed")),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(std::io::Error::from(std::io::ErrorKind::TimedOut)),
        };
        balancer
            .borrow_mut()
            .report(id, PeerOutcome::Failure, Instant::now());
        balancer.borrow_mut().release(id);
        let timed_out = match &err {
            // A failed TLS handshake: 504 when it timed out.
            Ok(code) => *code == 504,
            Err(e) => is_timeout(e),
        };
        status = if timed_out { 504 } else { 502 };
        let scheme = if pp.tls { "https" } else { "http" };
        match &err {
            Ok(_) => {}
            Err(_) if timed_out => log!(Error, "upstream timed out (110: Connection timed out) while connecting to upstream, client: {}, request: \"{} {}\", upstream: \"{scheme}://{addr}\"", conn.peer.ip(), head.method, head.target.raw),
            Err(e) => log!(Error, "connect() failed ({}) while connecting to upstream, client: {}, request: \"{} {}\", upstream: \"{scheme}://{addr}\"", crate::config::os_error(e), conn.peer.ip(), head.method, head.target.raw),
        }
        let allowed = !next.off
            && next
                .when
                .iter()
                .any(|w| w == if timed_out { "timeout" } else { "error" });
        let out_of_time = !time_limit.is_zero() && started.elapsed() >= time_limit;
        if !allowed || tries >= max_tries || out_of_time {
            return Err(status);
        }
    }
}

pub(super) fn sends_upgrade(upstream_head: &[u8]) -> bool {
    upstream_head
        .split(|&b| b == b'\n')
        .any(|line| line.len() > 8 && line[..8].eq_ignore_ascii_case(b"upgrade:"))
}

#[allow(clippy::too_many_arguments)]
async fn proxy(
    ctx: &Rc<ShardCtx>,
    http: &HttpConf,
    conn: &mut Conn,
    head: &RequestHead<'_, '_>,
    early: &[u8],
    vars: &mut RequestVars<'_>,
    conf: &LocConf,
    pp: &ProxyPass,
    matcher: &LocationMatch,
    keep_alive: bool,
) -> State {
    // nginx reads the body before it goes upstream: what it can tell from the head and the
    // bytes that came with it is refused without contacting the upstream.
    let max = conf.client_max_body_size();
    match head.body {
        _ if conn.body_read.get() => {}
        Body::Length(n) if max > 0 && n > max => {
            log!(
                Error,
                "client intended to send too large body: {n} bytes, client: {}",
                conn.peer.ip()
            );
            return fail(conn, 413, conf).await;
        }
        Body::Chunked => match check_early_chunks(early, max) {
            Ok(()) => {}
            Err(ChunksError::TooLarge(before, size)) => {
                log!(Error, "client intended to send too large chunked body: {before}+{size} bytes, client: {}", conn.peer.ip());
                return fail(conn, 413, conf).await;
            }
            Err(ChunksError::Invalid) => {
                log!(
                    Info,
                    "client sent invalid chunked body, client: {}",
                    conn.peer.ip()
                );
                return fail(conn, 400, conf).await;
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
            "upgrade to \"{}\" refused, client: {}",
            String::from_utf8_lossy(head.upgrade_protocol.unwrap_or(b"")),
            conn.peer.ip()
        );
        return fail(conn, 400, conf).await;
    }
    vars.upstream = UpstreamFacts::for_proxy_pass(pp);
    // A cached connection the peer closed just as the request went out is retried once on a
    // new connection (nginx: proxy_next_upstream error, not counted against the peer).
    let retry = upstream_pool::may_retry(head, early, conf);
    let mut pooled = !pp.tls && ctx.proxy.upstream_pools.enabled(pp.upstream);
    let body_read = conn.body_read.get();
    let (upstream, sent, slot) = loop {
        let mut up = match connect(ctx, http, conn, head, conf, pp, vars, pooled).await {
            Ok(u) => u,
            Err(code) => return fail(conn, code, conf).await,
        };
        // Held for as long as this connection serves the request (or its tunnel).
        let slot = PeerSlot::new(ctx, pp.upstream, up.peer);
        match send_request(conn, &mut up, head, early, vars, conf, pp, matcher, retry).await {
            Ok(sent) => break (up, sent, slot),
            Err(Sent::Stale) => {
                // The body (all of it still in `early`: `may_retry`) goes again.
                conn.body_read.set(body_read);
                pooled = false;
            }
            Err(Sent::Fail(code)) => return fail(conn, code, conf).await,
            Err(Sent::Closed) => return State::Closed,
        }
    };
    let _upstream_guard = ctx.hold();
    let Request {
        upgrade: sent_upgrade,
        keeps_alive: reusable,
        leftover,
        mut ubuf,
    } = sent;
    // The response head.
    let max_head = conf.proxy_buffer_size() as usize;
    let head_request = head.method == "HEAD";
    let (status, framing, head_len, mut out_head, gzip) = loop {
        let mut hdrs = [httparse::EMPTY_HEADER; MAX_HEADERS];
        match parse_response(&ubuf, &mut hdrs, max_head.max(1024), head_request) {
            Ok(Parsed::Complete(h, len)) if h.status == 100 => {
                ubuf.drain(..len);
                continue;
            }
            Ok(Parsed::Complete(h, _)) if error_page::intercepts(conf, h.status) => {
                return State::Error(Reply::status(h.status), false);
            }
            Ok(Parsed::Complete(h, len)) => {
                let list: Vec<(&str, &[u8])> =
                    h.headers.iter().map(|x| (x.name, x.value)).collect();
                let length = match h.body {
                    ResponseBody::Length(n) => Some(n),
                    _ => None,
                };
                let req = ProxiedRequest {
                    pass: pp,
                    matcher,
                    status_override: conn.err_status.get(),
                };
                let shaped =
                    super::headers_out::shape_proxied(conf, vars, &req, h.status, &list, length);
                let (cf, gzip) = shaped.framing(h.body, respond::takes_chunked(head, conf));
                let keep = keep_alive
                    && cf != ClientFraming::Close
                    && h.body != ResponseBody::SwitchingProtocols;
                let reusable = reusable && keepalive::response_keeps_alive(&h);
                let list = shaped.header_list();
                let mut o = Vec::with_capacity(len + 128);
                let opts = ClientOptions {
                    framing: cf,
                    keep_alive: keep,
                    now: std::time::SystemTime::now(),
                    extras: &shaped.extras,
                };
                let reason = if shaped.status == h.status {
                    h.reason
                } else {
                    ""
                };
                if write_client_head(shaped.status, reason, &list, conf, &opts, &mut o).is_err() {
                    return fail(conn, 502, conf).await;
                }
                break (shaped.status, (h.body, cf, keep, reusable), len, o, gzip);
            }
            Ok(Parsed::Partial) => {}
            Err(e) => {
                // The error is nginx's text ("upstream sent too big header", ...).
                log!(
                    Error,
                    "{e} while reading response header from upstream, client: {}",
                    conn.peer.ip()
                );
                return fail(conn, 502, conf).await;
            }
        }
        let deadline = Instant::now() + conf.proxy_read_timeout();
        let room = max_head.saturating_sub(ubuf.len()).max(1024);
        match read_into(&upstream.stream, &mut ubuf, room, deadline).await {
            Ok(0) => {
                log!(Error, "upstream prematurely closed connection while reading response header from upstream, client: {}", conn.peer.ip());
                return fail(conn, 502, conf).await;
            }
            Ok(_) => {}
            Err(e) => {
                let code = if is_timeout(&e) { 504 } else { 502 };
                log!(Error, "upstream timed out ({}) while reading response header from upstream, client: {}", crate::config::os_error(&e), conn.peer.ip());
                return fail(conn, code, conf).await;
            }
        }
    };
    ubuf.drain(..head_len);
    let (body, cf, keep, reusable) = framing;
    if body == ResponseBody::SwitchingProtocols {
        if !(head.upgrade && sent_upgrade) || status != 101 {
            return fail(conn, 502, conf).await;
        }
        conn.buf = leftover;
        let websocket = head
            .upgrade_protocol
            .is_some_and(|p| p.eq_ignore_ascii_case(b"websocket"));
        let tunnel = (upstream.stream, slot, websocket);
        return tunnel_after_101(conn, tunnel, out_head, ubuf, conf).await;
    }
    if !send_head(conn, status, &out_head, conf).await {
        return State::Closed;
    }
    out_head.clear();
    let frame = match (body, cf) {
        (_, ClientFraming::None) => Frame::None,
        (ResponseBody::Length(n), _) => Frame::Length(n),
        (ResponseBody::Chunked, ClientFraming::Chunked) => Frame::Chunked,
        (ResponseBody::Chunked, _) => Frame::ChunkedToClose,
        (_, ClientFraming::Chunked) => Frame::CloseToChunked,
        _ => Frame::Close,
    };
    let relayed = match gzip {
        Some(mut enc) => {
            let (c, sent) = (&conn.stream, &conn.sent);
            let r = super::gzip_relay::relay(c, sent, &upstream.stream, ubuf, body, &mut enc, conf)
                .await
                .map(|()| false);
            conn.gzip_io.set(Some(enc.counts()));
            r
        }
        None => relay_response_body(conn, &upstream.stream, ubuf, frame, conf).await,
    };
    // Only plain connections are cached (a TLS one is never taken back out).
    if matches!(relayed, Ok(true)) && reusable && upstream.stream.plain().is_some() {
        UpstreamPools::put(ctx, pp.upstream, upstream);
    }
    drop(slot);
    match relayed {
        Ok(_) if keep => {
            // Pipelined bytes beyond this request's body start the next request; an idle
            // keep-alive connection holds no buffer.
            conn.buf = leftover;
            State::ReadingHead
        }
        _ => State::Closed,
    }
}

/// Whether a client's upgrade to `protocol` goes upstream: WebSocket, a protocol
/// `proxy_allow_upgrade` lists, or the one the location itself names upstream with a literal
/// `proxy_set_header Upgrade PROTO` (the operator chose it; the client cannot pick another, as
/// it can through `$http_upgrade`).
fn upgrade_allowed(protocol: &[u8], conf: &LocConf) -> bool {
    let same = |p: &str| p.as_bytes().eq_ignore_ascii_case(protocol);
    protocol.eq_ignore_ascii_case(b"websocket")
        || conf.proxy_allow_upgrade().iter().any(|p| same(p))
        || conf.proxy_set_header().iter().any(|(name, value)| {
            name.eq_ignore_ascii_case("upgrade") && value.as_literal().is_some_and(same)
        })
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

/// `tunnel`: the upstream, its peer slot, and whether the upgrade is to WebSocket (the tunnel
/// then follows frame boundaries, from the bytes that came with the heads on).
async fn tunnel_after_101(
    conn: &mut Conn,
    (upstream, slot, websocket): (Stream, PeerSlot, bool),
    head: Vec<u8>,
    early_down: Vec<u8>,
    conf: &LocConf,
) -> State {
    if !send_head(conn, 101, &head, conf).await {
        return State::Closed;
    }
    drop(head);
    // Bytes that came with the heads: the backend's first frame, the client's pipelined one.
    if !early_down.is_empty() && !send(conn, &early_down, conf).await {
        return State::Closed;
    }
    let early_up = std::mem::take(&mut conn.buf);
    let frames = websocket.then(|| {
        let (mut up, mut down) = (Frames::default(), Frames::default());
        up.feed(&early_up);
        down.feed(&early_down);
        [up, down]
    });
    drop(early_down);
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
        SpliceMode::Off => Path::Copy,
        SpliceMode::Auto => Path::Auto,
    };
    let cfg = TunnelConfig {
        read_timeout: conf.proxy_read_timeout(),
        client_send_timeout: conf.send_timeout(),
        upstream_send_timeout: conf.proxy_send_timeout(),
        path,
        frames,
        // Set by `serve`, which holds the generation.
        generation: 0,
    };
    State::Tunnel(upstream, cfg, slot)
}

/// Writes response body bytes to the client, counting them for the access log.
async fn write_counted(
    conn: &Conn,
    data: &[u8],
    timeout: std::time::Duration,
) -> std::io::Result<()> {
    write_all(&conn.stream, data, timeout).await?;
    conn.sent.set(conn.sent.get() + data.len() as u64);
    Ok(())
}

/// Relays the response body. `Ok(true)`: its end was framed (length, chunks, or no body) and
/// the upstream sent nothing beyond it, so the connection may be reused.
async fn relay_response_body(
    conn: &Conn,
    upstream: &Stream,
    mut pending: Vec<u8>,
    frame: Frame,
    conf: &LocConf,
) -> std::io::Result<bool> {
    let read_to = conf.proxy_read_timeout();
    let send_to = conf.send_timeout();
    let mut dec = ChunkedDecoder::new();
    let mut left = match frame {
        Frame::Length(n) => n,
        _ => 0,
    };
    if frame == Frame::None || (frame == Frame::Length(0)) {
        return Ok(pending.is_empty());
    }
    let mut out = Vec::new();
    loop {
        // Forward what we have.
        match frame {
            Frame::Length(_) => {
                let take = (left as usize).min(pending.len());
                write_counted(conn, &pending[..take], send_to).await?;
                left -= take as u64;
                if left == 0 {
                    return Ok(pending.len() == take);
                }
                pending.clear();
            }
            Frame::Chunked | Frame::ChunkedToClose => {
                let rechunk = frame == Frame::Chunked;
                let (consumed, _) = decode_chunks(&mut dec, &pending, &mut out, rechunk, 0)
                    .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidData))?;
                pending.drain(..consumed);
                if dec.is_done() && frame == Frame::Chunked {
                    out.extend_from_slice(LAST_CHUNK);
                }
                write_counted(conn, &out, send_to).await?;
                out.clear();
                if dec.is_done() {
                    return Ok(pending.is_empty());
                }
            }
            Frame::CloseToChunked => {
                if !pending.is_empty() {
                    encode_chunk(&pending, &mut out);
                    write_counted(conn, &out, send_to).await?;
                    out.clear();
                    pending.clear();
                }
            }
            Frame::Close => {
                write_counted(conn, &pending, send_to).await?;
                pending.clear();
            }
            Frame::None => return Ok(false),
        }
        let deadline = Instant::now() + read_to;
        let n = read_upstream(conn, upstream, &mut pending, 16 * 1024, deadline, conf).await?;
        if n == 0 {
            return match frame {
                Frame::CloseToChunked => write_counted(conn, LAST_CHUNK, send_to)
                    .await
                    .map(|()| false),
                Frame::Close => Ok(false),
                _ => Err(std::io::ErrorKind::UnexpectedEof.into()),
            };
        }
    }
}
