//! Connecting to a peer for `proxy_pass::proxy`: the location's balancer picks one (with the
//! rendered `hash` key), an idle keep-alive connection to it is taken when one is cached, else a
//! new one is connected within `proxy_connect_timeout` (and its TLS handshake run for
//! `https://`). A failed peer is reported to the balancer and the next one tried as
//! `proxy_next_upstream` allows. The connection goes on to `exchange::send_request`.

use std::cell::RefCell;
use std::io;
use std::path::Path;
use std::time::Instant;

use monoio::net::TcpStream;

use super::conn::Stream;
use super::io::is_timeout;
use super::req::Req;
use super::upstream_pool::UpstreamConn;
use crate::config::model::{Balance, ProxyPass};
use crate::log;
use crate::upstream::balancer::{self, Outcome as PeerOutcome, PickState};
use crate::upstream::peer::{PeerAddr, PeerSpec};

/// Why a connection attempt failed.
enum Failed {
    /// The connect itself.
    Connect(io::Error),
    /// The TLS handshake, with its status (logged where it failed).
    Handshake(u16),
}

/// One request's walk over the peers of its upstream (nginx's `u->peer` across
/// `ngx_http_upstream_next`): the balancer's per-request state, the attempts made, and the
/// status the request gets if no peer answers.
pub(super) struct Attempts {
    state: PickState,
    made: usize,
    status: u16,
    started: Instant,
}

/// What went wrong with a peer, as `proxy_next_upstream` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Fault {
    /// `error`: connecting, sending, or the peer closed before a whole head.
    Error,
    /// `timeout`.
    Timeout,
    /// `invalid_header`.
    InvalidHeader,
    /// `http_500`, `http_502`, ...: the peer answered with this status.
    Status(u16),
}

impl Fault {
    /// A `502` or `504` from the exchange: an error or a timeout.
    pub(super) fn of_status(code: u16) -> Fault {
        if code == 504 {
            Fault::Timeout
        } else {
            Fault::Error
        }
    }

    /// A response status `proxy_next_upstream` can name.
    pub(super) fn of_response(status: u16) -> Option<Fault> {
        matches!(status, 500 | 502 | 503 | 504 | 403 | 404 | 429).then_some(Fault::Status(status))
    }

    fn name(self) -> std::borrow::Cow<'static, str> {
        match self {
            Fault::Error => "error".into(),
            Fault::Timeout => "timeout".into(),
            Fault::InvalidHeader => "invalid_header".into(),
            Fault::Status(s) => format!("http_{s}").into(),
        }
    }

    /// Whether the peer counts as failed (max_fails): not for `http_403`/`http_404`
    /// (`NGX_PEER_NEXT`).
    pub(super) fn fails_peer(self) -> bool {
        !matches!(self, Fault::Status(403 | 404))
    }
}

impl Attempts {
    /// A request's first attempt at the upstream of `pp` (with the server ID a `sticky` one
    /// asks for).
    pub(super) fn new(req: &mut Req<'_>, pp: &ProxyPass) -> Attempts {
        // An address named by a URL with variables is a group of one, without `sticky`.
        let sticky = match pp.direct {
            Some(_) => None,
            None => req.http.upstreams[pp.upstream].sticky.as_ref(),
        };
        let state = match sticky {
            Some(sticky) => PickState::with_hint(super::sticky::hint(sticky, &mut req.vars)),
            None => PickState::new(),
        };
        Attempts {
            state,
            made: 0,
            status: 502,
            started: Instant::now(),
        }
    }

    /// Whether, after `fault` on the last peer, another may be tried (`ngx_http_upstream_next`):
    /// `proxy_next_upstream` names it, peers and `proxy_next_upstream_tries` are not used up,
    /// `proxy_next_upstream_timeout` has not run out. The caller checks that the request can
    /// go again.
    pub(super) fn again(&self, req: &Req<'_>, pp: &ProxyPass, fault: Fault) -> bool {
        let conf = req.conf;
        let next = conf.proxy_next_upstream();
        let name = fault.name();
        let listed = !next.off && next.when.iter().any(|w| *w == name);
        let max_tries = match conf.proxy_next_upstream_tries() {
            0 => usize::MAX,
            n => n as usize,
        };
        let peers = match pp.direct {
            Some(_) => 1,
            None => req.ctx.proxy.balancers[pp.upstream].borrow().tries(),
        };
        let limit = conf.proxy_next_upstream_timeout();
        let out_of_time = !limit.is_zero() && self.started.elapsed() >= limit;
        listed && self.made < max_tries.min(peers) && !out_of_time
    }

    /// A cached connection to `peer` went stale: the peer may be picked again.
    pub(super) fn stale(&mut self, peer: crate::upstream::PeerId) {
        self.state.untry(peer);
    }

    /// Records the status a request that gives up now gets.
    pub(super) fn set_status(&mut self, status: u16) {
        self.status = status;
    }
}

/// Appends `addr` to `$upstream_addr` (nginx lists every peer tried, `, `-separated).
fn note_addr(req: &mut Req<'_>, addr: &str) {
    let list = &mut req.vars.upstream.addr;
    if !list.is_empty() {
        list.push_str(", ");
    }
    list.push_str(addr);
}

/// Connects to a peer of the location's upstream (an idle keep-alive connection to the picked
/// peer when `pooled` and one is cached), trying the next one as `proxy_next_upstream` allows.
/// `Err(status)` is 502 or 504.
pub(super) async fn connect(
    req: &mut Req<'_>,
    pp: &ProxyPass,
    pooled: bool,
    attempts: &mut Attempts,
) -> Result<UpstreamConn, u16> {
    let ctx = req.ctx;
    let own;
    let (balancer, name, balance) = match &pp.direct {
        // An address a URL with variables named: a group of one for this request.
        Some(addr) => {
            let spec = PeerSpec::new(pp.host.clone(), addr.clone());
            let built = balancer::build(&balancer::Method::RoundRobin, vec![spec])
                .expect("one peer without backup or zero weight makes a group");
            own = RefCell::new(built);
            (&own, pp.host.as_str(), &Balance::RoundRobin)
        }
        None => {
            let group = &req.http.upstreams[pp.upstream];
            let b = &ctx.proxy.balancers[pp.upstream];
            (b, group.name.as_str(), &group.balance)
        }
    };
    let key = match balance {
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
    loop {
        let picked =
            balancer
                .borrow_mut()
                .pick(key.as_deref(), Instant::now(), &mut attempts.state);
        let Some(id) = picked else {
            let head = req.head;
            log!(Error, "no live upstreams while connecting to upstream, client: {}, request: \"{} {}\", upstream: \"{}\"", req.conn.peer.ip(), head.method, head.target.raw, name);
            // nginx's peer name for "no live upstreams" is the upstream's.
            note_addr(req, name);
            return Err(attempts.status);
        };
        let addr = balancer.borrow().peers().spec(id).addr.clone();
        note_addr(req, &addr.to_string());
        let cached = pooled.then(|| ctx.proxy.upstream_pools.take(pp.upstream, id));
        if let Some(c) = cached.flatten() {
            return Ok(c);
        }
        attempts.made += 1;
        let failed = match attempt(req, pp, &addr).await {
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
        attempts.status = if timed_out { 504 } else { 502 };
        if let Failed::Connect(e) = &failed {
            log_connect_failure(req, pp, &addr, e, timed_out);
        }
        let fault = if timed_out {
            Fault::Timeout
        } else {
            Fault::Error
        };
        if !attempts.again(req, pp, fault) {
            return Err(attempts.status);
        }
    }
}

/// One new connection to `addr`: the connect within `proxy_connect_timeout`, the location's
/// socket options, and for `https://` the TLS handshake, part of connecting as in nginx (a
/// failed one fails the peer, and the next one is tried).
async fn attempt(req: &mut Req<'_>, pp: &ProxyPass, addr: &PeerAddr) -> Result<Stream, Failed> {
    let conf = req.conf;
    let connected = monoio::time::timeout(conf.proxy_connect_timeout(), connect_peer(addr)).await;
    match connected {
        Ok(Ok(s)) if super::io::set_nonblocking(&s).is_ok() => {
            // nginx sets it on upstream connections too (streamed bodies, tunnels).
            if conf.tcp_nodelay() && matches!(addr, PeerAddr::Inet(_)) {
                let _ = s.set_nodelay(true);
            }
            if conf.proxy_socket_keepalive() {
                let _ = socket2::SockRef::from(&crate::sys::fd(&s)).set_keepalive(true);
            }
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

/// A new connection to `addr`, TCP or unix.
async fn connect_peer(addr: &PeerAddr) -> io::Result<TcpStream> {
    match addr {
        PeerAddr::Inet(a) => TcpStream::connect_addr(*a).await,
        PeerAddr::Unix(path) => connect_unix(path),
    }
}

/// A connected unix stream socket, carried as a monoio `TcpStream`: that type is only a
/// descriptor registered with the driver (io_uring or epoll), and all the proxy does with an
/// upstream stream (readiness waits, reads and writes, splice, shutdown, passing it to a new
/// binary) works on any stream socket, so the tunnel, the keep-alive pool and the splice path
/// serve unix peers unchanged. Only TCP options are skipped for it (`attempt`); its addresses
/// are never asked (monoio would expect an inet one).
///
/// The connect is non-blocking, as nginx's: a unix socket connects at once or fails at once
/// (`EAGAIN` when the listener's backlog is full, which nginx reports as a failure too).
fn connect_unix(path: &Path) -> io::Result<TcpStream> {
    use socket2::{Domain, SockAddr, Socket, Type};
    let s = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    s.set_nonblocking(true)?;
    s.connect(&SockAddr::unix(path)?)?;
    let fd: std::os::fd::OwnedFd = s.into();
    TcpStream::from_std(std::net::TcpStream::from(fd))
}

fn log_connect_failure(
    req: &Req<'_>,
    pp: &ProxyPass,
    addr: &PeerAddr,
    e: &io::Error,
    timed_out: bool,
) {
    let (ip, head) = (req.conn.peer.ip(), req.head);
    let scheme = if pp.tls { "https" } else { "http" };
    if timed_out {
        log!(Error, "upstream timed out (110: Connection timed out) while connecting to upstream, client: {ip}, request: \"{} {}\", upstream: \"{scheme}://{addr}\"", head.method, head.target.raw);
    } else if let PeerAddr::Unix(_) = addr {
        // A unix connect fails synchronously, where nginx names the peer.
        log!(Error, "connect() to {addr} failed ({}) while connecting to upstream, client: {ip}, request: \"{} {}\", upstream: \"{scheme}://{addr}:\"", crate::config::os_error(e), head.method, head.target.raw);
    } else {
        log!(Error, "connect() failed ({}) while connecting to upstream, client: {ip}, request: \"{} {}\", upstream: \"{scheme}://{addr}\"", crate::config::os_error(e), head.method, head.target.raw);
    }
}
