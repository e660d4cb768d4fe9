//! The `stream { }` module: plain TCP proxying and TLS passthrough, as nginx 1.22's stream
//! module does it, on the same shards, listeners and tunnel as http.
//!
//! Place in the data flow: a shard's accept loop hands a connection accepted on a stream
//! address (`ListenSpec::stream`) to [`serve`] instead of http's handler. A session reads the
//! PROXY protocol header when the listen asks for it, prereads the ClientHello with
//! `ssl_preread` ([`preread`]), evaluates `proxy_pass` (a group, or a variable naming one or an
//! address), picks and connects a peer with the group's balancer (the same balancers as http,
//! `crate::upstream`), sends a PROXY v1 header with `proxy_protocol on`, and then runs the
//! WebSocket tunnel's engine (`crate::proxy::tunnel`, copy or splice) with no framing, its
//! idle timeout being `proxy_timeout`. The access log line is written when the session ends
//! ([`vars`] holds what it knows). The configuration lives in `crate::config::stream`.

pub mod preread;
mod session;
pub mod vars;

use std::cell::RefCell;

pub use session::serve;

use crate::accesslog::AccessLogs;
use crate::config::stream::StreamConf;
use crate::upstream::balancer::Balancer;

/// What one shard builds from the `stream` block: one balancer per group, and its access logs.
pub struct ShardStream {
    /// Balancers, indexed like `StreamConf::upstreams`.
    pub balancers: Vec<RefCell<Box<dyn Balancer>>>,
    /// The stream servers' access logs.
    pub access: RefCell<AccessLogs>,
}

impl ShardStream {
    /// Builds the shard's balancers and opens the access logs.
    pub fn new(stream: &StreamConf) -> Result<ShardStream, String> {
        let mut balancers = Vec::new();
        for u in &stream.upstreams {
            balancers.push(RefCell::new(crate::proxy::balancer_for(u)?));
        }
        let logs = stream
            .servers
            .iter()
            .flat_map(|s| s.conf.access_log.iter().flatten());
        let access = AccessLogs::new(logs, &stream.log_formats).map_err(|e| e.to_string())?;
        Ok(ShardStream {
            balancers,
            access: RefCell::new(access),
        })
    }
}
