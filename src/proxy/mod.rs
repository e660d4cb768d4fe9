//! Proxying. A client connection's path, state by state: `handler` (accept to tunnel spawn:
//! the connection's state loop), `read_head` (one request head), `req` (the request's context:
//! server, `$uri`, variables), `locations` (rewrite scripts, location search, `error_page`,
//! static files), `proxy_pass` (to the upstream and back: `upstream_connect` picks and connects
//! a peer, `exchange` sends the request, `response_body` relays the body), `upgrade` (after a
//! 101) and `tunnel` (the tunnel itself), with `answer` for what ringproxy writes to the client
//! itself. Around them: what goes to the peer and what comes back as nginx's proxy module does
//! it (`request` builds the upstream request head, `response` filters the upstream response
//! head; both sans-IO), plain or TLS connections (`conn`), the per-shard buffer and pipe pools
//! (`pool`), socket helpers (`io`), the responses ringproxy makes itself (`respond`) and static
//! files for locations without `proxy_pass` (`static_files`). Every response head passes
//! nginx's response filters (`headers_out`: `add_header`, `proxy_redirect`; `gzip`, with the
//! compressed relay in `gzip_relay`), and errors may be answered by `error_page`
//! (`error_page`). The shard's upstream keep-alive pools are in `upstream_pool`, the request
//! body's relay in `request_body`.

mod access;
mod answer;
mod auth_request;
pub mod conn;
pub mod cookies;
mod dynamic_pass;
pub mod error_page;
mod exchange;
pub mod expires;
pub mod frames;
pub mod gzip;
pub mod gzip_relay;
pub mod handler;
pub mod handoff;
pub mod headers_out;
pub mod idle;
pub mod io;
mod limits;
mod locations;
pub mod pool;
pub(crate) mod proxy_header;
mod proxy_pass;
mod read_head;
mod req;
pub mod request;
mod request_body;
pub mod respond;
pub mod response;
mod response_body;
pub mod static_files;
mod sticky;
pub mod tunnel;
mod upgrade;
mod upstream_connect;
pub mod upstream_pool;

#[cfg(test)]
mod tests;

use std::cell::{Cell, RefCell};
use std::sync::Arc;

use crate::config::model::{Balance, Config, HttpConf, UpstreamConf};
use crate::upstream::balancer::{self, Balancer, Method};
use crate::upstream::peer::PeerSpec;

/// What a shard builds from the configuration to proxy: one balancer per upstream group
/// (shard-local state: fail counts, smooth weights; open-connection counts are shared with the
/// other shards through `UpstreamConf::conns`), in `HttpConf::upstreams` order.
pub struct ShardProxy {
    /// Balancers, indexed like `HttpConf::upstreams`.
    pub balancers: Vec<RefCell<Box<dyn Balancer>>>,
    /// Server and location matching.
    pub router: crate::route::Router,
    /// `$hostname`.
    pub hostname: String,
    /// `$pid`, read once (getpid is a system call in current glibc).
    pub pid: u32,
    /// This shard's access logs (its own file handles and buffers).
    pub access: RefCell<crate::accesslog::AccessLogs>,
    /// This shard's TLS configurations (session caches and ticket keys are per shard).
    pub tls: crate::tls::ShardTls,
    /// Idle upstream connections (`keepalive` in `upstream`), indexed like the balancers.
    pub upstream_pools: upstream_pool::UpstreamPools,
    /// The `stream` block's balancers and access logs, when there is one.
    pub stream: Option<crate::stream::ShardStream>,
    next_id: Cell<u64>,
}

fn peer_specs(u: &UpstreamConf) -> Vec<PeerSpec> {
    let mut specs = Vec::new();
    for p in &u.peers {
        for addr in &p.addrs {
            let mut spec = PeerSpec {
                weight: p.weight,
                max_fails: p.max_fails,
                fail_timeout: p.fail_timeout,
                backup: p.backup,
                down: p.down,
                max_conns: p.max_conns,
                ..PeerSpec::new(p.name.clone(), addr.clone())
            };
            if let Some(route) = &p.route {
                spec.sid = route.clone();
            }
            specs.push(spec);
        }
    }
    specs
}

/// The balancer of one upstream group (http or stream): the one place its method is chosen.
pub fn balancer_for(u: &UpstreamConf) -> Result<Box<dyn Balancer>, String> {
    let method = match &u.balance {
        Balance::RoundRobin => Method::RoundRobin,
        Balance::Hash {
            consistent: false, ..
        } => Method::Hash,
        Balance::Hash {
            consistent: true, ..
        } => Method::ConsistentHash,
        Balance::IpHash => Method::IpHash,
        Balance::LeastConn => Method::LeastConn,
        Balance::Random { two: false } => Method::Random,
        Balance::Random { two: true } => Method::RandomTwo,
    };
    let b = balancer::build_with(&method, peer_specs(u), &u.conns)
        .map_err(|e| format!("upstream \"{}\": {e}", u.name))?;
    Ok(match u.sticky {
        Some(_) => Box::new(balancer::Sticky::new(b)),
        None => b,
    })
}

impl ShardProxy {
    /// Builds the shard's balancers.
    pub fn new(config: &Arc<Config>) -> Result<ShardProxy, String> {
        let mut balancers = Vec::new();
        for u in config.http.iter().flat_map(|h| &h.upstreams) {
            balancers.push(RefCell::new(balancer_for(u)?));
        }
        // A configuration with only `stream` serves no http: an empty block routes nothing.
        let empty;
        let http = match (config.http.as_ref(), &config.stream) {
            (Some(h), _) => h,
            (None, Some(_)) => {
                empty = HttpConf::default();
                &empty
            }
            (None, None) => return Err("no \"http\" section in configuration".into()),
        };
        let router = crate::route::Router::new(http);
        let hostname = rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned();
        let access = crate::accesslog::AccessLogs::from_http(http).map_err(|e| e.to_string())?;
        let tls = crate::tls::ShardTls::new(config, http)?;
        let stream = match &config.stream {
            Some(s) => Some(crate::stream::ShardStream::new(s)?),
            None => None,
        };
        Ok(ShardProxy {
            stream,
            tls,
            access: RefCell::new(access),
            upstream_pools: upstream_pool::UpstreamPools::new(config.http.as_ref()),
            pid: std::process::id(),
            balancers,
            router,
            hostname,
            next_id: Cell::new(0),
        })
    }

    /// A serial number for a new client connection (`$connection`, per shard).
    pub fn next_connection_id(&self) -> u64 {
        let id = self.next_id.get() + 1;
        self.next_id.set(id);
        id
    }
}
