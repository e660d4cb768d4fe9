//! Connecting to a peer for `proxy_pass::proxy`: the location's balancer picks one (with the
//! rendered `hash` key), an idle keep-alive connection to it is taken when one is cached, else a
//! new one is connected within `proxy_connect_timeout` (and its TLS handshake run for
//! `https://`). A failed peer is reported to the balancer and the next one tried as
//! `proxy_next_upstream` allows. The connection goes on to `exchange::send_request`.

use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use monoio::net::TcpStream;

use super::conn::Stream;
use super::io::is_timeout;
use super::req::Req;
use super::upstream_pool::UpstreamConn;
use crate::config::model::{Balance, ProxyPass};
use crate::log;
use crate::upstream::balancer::{Outcome as PeerOutcome, PickState};

/// Why a connection attempt failed.
enum Failed {
    /// The connect itself.
    Connect(io::Error),
    /// The TLS handshake, with its status (logged where it failed).
    Handshake(u16),
}

/// Connects to a peer of the location's upstream (an idle keep-alive connection to the picked
/// peer when `pooled` and one is cached), trying the next one as `proxy_next_upstream` allows.
/// `Err(status)` is 502 or 504.
pub(super) async fn connect(
    req: &mut Req<'_>,
    pp: &ProxyPass,
    pooled: bool,
) -> Result<UpstreamConn, u16> {
    let (ctx, conf) = (req.ctx, req.conf);
    let group = &req.http.upstreams[pp.upstream];
    let balancer = &ctx.proxy.balancers[pp.upstream];
    let key = match &group.balance {
        Balance::Hash { key, .. } => {
            let mut k = Vec::new();
            req.vars.render(key, &mut k);
            Some(k)
        }
        // The client's address after realip, as nginx's `ip_hash` reads it.
        Balance::IpHash => Some(match req.vars.remote_ip() {
            std::net::IpAddr::V4(a) => a.octets().to_vec(),
            std::net::IpAddr::V6(a) => a.octets().to_vec(),
        }),
        _ => None,
    };
    let next = conf.proxy_next_upstream();
    let max_tries = match conf.proxy_next_upstream_tries() {
        0 => usize::MAX,
        n => n as usize,
    };
    let mut state = match &group.sticky {
        Some(sticky) => PickState::with_hint(super::sticky::hint(sticky, &mut req.vars)),
        None => PickState::new(),
    };
    let mut status = 502;
    let mut tries = 0;
    let (started, time_limit) = (Instant::now(), conf.proxy_next_upstream_timeout());
    loop {
        let picked = balancer
            .borrow_mut()
            .pick(key.as_deref(), Instant::now(), &mut state);
        let Some(id) = picked else {
            let head = req.head;
            log!(Error, "no live upstreams while connecting to upstream, client: {}, request: \"{} {}\", upstream: \"{}\"", req.conn.peer.ip(), head.method, head.target.raw, group.name);
            return Err(status);
        };
        let addr = balancer.borrow().peers().spec(id).addr;
        let cached = pooled.then(|| ctx.proxy.upstream_pools.take(pp.upstream, id));
        if let Some(c) = cached.flatten() {
            req.vars.upstream.addr = addr.to_string();
            return Ok(c);
        }
        tries += 1;
        let failed = match attempt(req, pp, addr).await {
            Ok(s) => {
                balancer
                    .borrow_mut()
                    .report(id, PeerOutcome::Success, Instant::now());
                return Ok(UpstreamConn::new(s, id, Instant::now()));
            }
            Err(failed) => failed,
        };
        balancer
            .borrow_mut()
            .report(id, PeerOutcome::Failure, Instant::now());
        balancer.borrow_mut().release(id);
        let timed_out = match &failed {
            // A failed TLS handshake: 504 when it timed out.
            Failed::Handshake(code) => *code == 504,
            Failed::Connect(e) => is_timeout(e),
        };
        status = if timed_out { 504 } else { 502 };
        if let Failed::Connect(e) = &failed {
            log_connect_failure(req, pp, addr, e, timed_out);
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

/// One new connection to `addr`: the connect within `proxy_connect_timeout`, the location's
/// socket options, and for `https://` the TLS handshake, part of connecting as in nginx (a
/// failed one fails the peer, and the next one is tried).
async fn attempt(req: &mut Req<'_>, pp: &ProxyPass, addr: SocketAddr) -> Result<Stream, Failed> {
    let conf = req.conf;
    let connected =
        monoio::time::timeout(conf.proxy_connect_timeout(), TcpStream::connect_addr(addr)).await;
    match connected {
        Ok(Ok(s)) if super::io::set_nonblocking(&s).is_ok() => {
            // nginx sets it on upstream connections too (streamed bodies, tunnels).
            if conf.tcp_nodelay() {
                let _ = s.set_nodelay(true);
            }
            if conf.proxy_socket_keepalive() {
                let _ = socket2::SockRef::from(&crate::sys::fd(&s)).set_keepalive(true);
            }
            req.vars.upstream.addr = addr.to_string();
            let client = req.conn.peer;
            crate::tls::upstream(req.ctx, s, client, conf, pp, &mut req.vars)
                .await
                .map_err(Failed::Handshake)
        }
        Ok(Ok(_)) => Err(Failed::Connect(io::Error::other("fcntl failed"))),
        Ok(Err(e)) => Err(Failed::Connect(e)),
        Err(_) => Err(Failed::Connect(io::Error::from(io::ErrorKind::TimedOut))),
    }
}

fn log_connect_failure(
    req: &Req<'_>,
    pp: &ProxyPass,
    addr: SocketAddr,
    e: &io::Error,
    timed_out: bool,
) {
    let (ip, head) = (req.conn.peer.ip(), req.head);
    let scheme = if pp.tls { "https" } else { "http" };
    if timed_out {
        log!(Error, "upstream timed out (110: Connection timed out) while connecting to upstream, client: {ip}, request: \"{} {}\", upstream: \"{scheme}://{addr}\"", head.method, head.target.raw);
    } else {
        log!(Error, "connect() failed ({}) while connecting to upstream, client: {ip}, request: \"{} {}\", upstream: \"{scheme}://{addr}\"", crate::config::os_error(e), head.method, head.target.raw);
    }
}
