//! A client connection, as an explicit state machine: where `shard::worker`'s accept loop hands
//! an accepted socket ([`serve`]) and where it is freed again. Each request is one
//! `read_head::one_request` call (reading the head, then `locations` routes it, `proxy_pass`
//! relays it upstream or `static_files` answers it) that ends in a [`State`]: `ReadingHead`
//! again for the next keep-alive request, `Tunnel` after a `101` (`upgrade`; [`serve`] then
//! spawns the tunnel on a task of its own, `handoff::carry`), `Closed`, or an `Error` not sent
//! yet (which `error_page` may answer). Malformed requests get nginx's status and are never
//! forwarded.

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use monoio::net::TcpStream;

use super::conn::Stream;
use super::proxy_pass::PeerSlot;
use super::read_head::one_request;
use super::tunnel::TunnelConfig;
use crate::http::proxy_protocol::{ProxyAddrs, V1_MAX};
use crate::http::script::Reply;
use crate::shard::listener::ListenSpec;
use crate::shard::ShardCtx;

/// Where a connection is after a request: waiting for the next head (keep-alive), switched to a
/// tunnel (the 101 and any early bytes already relayed; only the two sockets live on), or done.
pub(super) enum State {
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
    pub(super) local: SocketAddr,
    /// Bytes read from the client and not yet consumed (the next head, a pipelined frame).
    pub(super) buf: Vec<u8>,
    pub(super) requests: u32,
    pub(super) accepted: Instant,
    /// `$connection`: this shard's connection serial number.
    pub(super) id: u64,
    /// Status of the current request's response (for `$status` in the access log).
    pub(super) status: Cell<u16>,
    /// Bytes of the current response written to the client, head and body.
    pub(super) sent: Cell<u64>,
    /// Of which, the head.
    pub(super) head_sent: Cell<u64>,
    /// Inside a request's location loop: errors come back as `State::Error` for `error_page`.
    pub(super) defer_errors: Cell<bool>,
    /// The status an `error_page` gave the rest of this request.
    pub(super) err_status: Cell<Option<u16>>,
    /// The `Location` of the `return` that led to an `error_page`: nginx keeps it in the
    /// response headers across the internal redirect, so the page's reply carries it.
    pub(super) err_location: std::cell::RefCell<Option<Vec<u8>>>,
    /// Body bytes in and out of gzip for this response (`$gzip_ratio`).
    pub(super) gzip_io: Cell<Option<(u64, u64)>>,
    /// The request body went upstream already: a proxied error page gets none.
    pub(super) body_read: Cell<bool>,
    /// How long to wait for the next request: `keepalive_timeout` of the location that served
    /// the last one, as in nginx.
    pub(super) idle_timeout: std::time::Duration,
    /// TCP_NODELAY is set (nginx sets it once a location with `tcp_nodelay on` serves a
    /// request, and never clears it).
    pub(super) nodelay: bool,
    /// The PROXY protocol header's addresses (`listen ... proxy_protocol`).
    pub(super) proxy_protocol: Option<ProxyAddrs>,
    /// The current request's `limit_conn` slots.
    pub(super) limit_slots: Vec<crate::limits::ConnSlot>,
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
    // As nginx: the PROXY header comes first, before a TLS handshake.
    let mut proxy_protocol = None;
    if spec.listen.proxy_protocol {
        let (max, timeout) = default_conf.map_or((1024, Duration::from_secs(60)), |c| {
            (c.client_header_buffer_size(), c.client_header_timeout())
        });
        let max = usize::try_from(max).unwrap_or(usize::MAX).max(V1_MAX);
        let read = super::proxy_header::read(&stream, max, accepted + timeout, peer, spec.addr);
        let Some(addrs) = read.await else {
            return;
        };
        proxy_protocol = addrs;
    }
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
        err_location: Default::default(),
        gzip_io: Cell::new(None),
        body_read: Cell::new(false),
        idle_timeout: default_conf.map_or(std::time::Duration::ZERO, |c| c.keepalive_timeout()),
        nodelay,
        proxy_protocol,
        limit_slots: Vec::new(),
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
        // The request's `limit_conn` slots: given back now, or held by its tunnel.
        let limits = std::mem::take(&mut conn.limit_slots);
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
            State::Tunnel(upstream, cfg, slot) => {
                // The tunnel gets a task of its own holding only the two sockets and its
                // guards: this connection's future (request state, buffers) is freed now.
                let limits = (!limits.is_empty()).then(|| limits.into_boxed_slice());
                let guards = (guard, ctx.hold(), slot, limits);
                let (client, peer) = (conn.stream, conn.peer);
                monoio::spawn(super::handoff::carry(guards, client, upstream, cfg, peer));
                return;
            }
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
