//! The shard's upstream keep-alive pools: the socket side of [`crate::upstream::keepalive`].
//!
//! One [`IdleCache`] per `upstream` block with `keepalive N`, owned by the shard (no lock, no
//! atomic: nothing here crosses shards). The handler asks [`UpstreamPools::take`] for an idle
//! connection to the peer the balancer picked before it connects, and hands a finished
//! connection back with [`UpstreamPools::put`] when the exchange left it reusable. An idle
//! connection is only its socket; before reuse it is probed with a non-blocking `MSG_PEEK`
//! (as nginx's close handler does): end of stream, an error or any unexpected byte drops it. One
//! timer task per pool closes connections idle for `keepalive_timeout`, and everything on a
//! graceful stop.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Instant;

use super::conn::Stream;
use rustix::io::Errno;
use rustix::net::RecvFlags;

use crate::config::model::{HttpConf, LocConf};
use crate::http::request::{Body, RequestHead};
use crate::shard::ShardCtx;
use crate::upstream::keepalive::{IdleCache, Lease, Limits};
use crate::upstream::PeerId;

/// A connection to a peer as the handler holds it.
pub type UpstreamConn = Lease<Stream>;

struct Pool {
    cache: RefCell<IdleCache<Stream>>,
    /// Whether the expiry task runs.
    sweeping: Cell<bool>,
}

/// Per-shard pools, indexed like `HttpConf::upstreams` (`None`: no `keepalive` there).
#[derive(Default)]
pub struct UpstreamPools {
    pools: Vec<Option<Rc<Pool>>>,
}

impl UpstreamPools {
    /// A pool for every upstream group with `keepalive N`.
    pub fn new(http: Option<&HttpConf>) -> UpstreamPools {
        let pools = http
            .iter()
            .flat_map(|h| &h.upstreams)
            .map(|u| {
                (u.keepalive > 0).then(|| {
                    Rc::new(Pool {
                        cache: RefCell::new(IdleCache::new(Limits {
                            max_idle: u.keepalive as usize,
                            timeout: u.keepalive_timeout,
                            requests: u.keepalive_requests,
                            time: u.keepalive_time,
                        })),
                        sweeping: Cell::new(false),
                    })
                })
            })
            .collect();
        UpstreamPools { pools }
    }

    /// Whether `upstream` keeps connections.
    pub fn enabled(&self, upstream: usize) -> bool {
        matches!(self.pools.get(upstream), Some(Some(_)))
    }

    /// An idle connection to `peer` of `upstream` that still looks usable, if one is cached.
    pub fn take(&self, upstream: usize, peer: PeerId) -> Option<UpstreamConn> {
        let pool = self.pools.get(upstream)?.as_ref()?;
        let got = pool
            .cache
            .borrow_mut()
            .take(peer, Instant::now(), still_idle);
        got
    }

    /// Caches a connection whose exchange left it reusable (the cache may still refuse it:
    /// `keepalive_requests`, `keepalive_time`; then it closes). Nothing is cached once the
    /// shard is stopping or a reload has replaced this generation.
    pub fn put(ctx: &Rc<ShardCtx>, upstream: usize, conn: UpstreamConn) {
        let Some(Some(pool)) = ctx.proxy.upstream_pools.pools.get(upstream) else {
            return;
        };
        if ctx.shard.stopping.is_set()
            || ctx.retired.is_set()
            || !pool.cache.borrow_mut().put(conn, Instant::now())
        {
            return;
        }
        if !pool.sweeping.replace(true) {
            monoio::spawn(sweep(ctx.clone(), pool.clone()));
        }
    }
}

/// Whether an idle connection is still idle: nothing to read (not even end of stream). Only
/// plain connections are pooled (a TLS one could hold a close_notify in rustls' buffer).
fn still_idle(s: &Stream) -> bool {
    let Some(s) = s.plain() else {
        return false;
    };
    let mut probe = [0u8; 1];
    loop {
        match rustix::net::recv(
            crate::sys::fd(s),
            &mut probe[..],
            RecvFlags::PEEK | RecvFlags::DONTWAIT,
        ) {
            Err(Errno::AGAIN) => return true,
            Err(Errno::INTR) => continue,
            // End of stream, bytes nobody asked for, or an error: the connection is done.
            _ => return false,
        }
    }
}

/// Closes a pool's connections as they reach `keepalive_timeout`; ends when the pool is empty
/// (the next `put` starts it again) and empties it on a graceful stop or when a reload replaces
/// the generation (a new one has pools of its own, for the new configuration's peers).
async fn sweep(ctx: Rc<ShardCtx>, pool: Rc<Pool>) {
    loop {
        let next = pool.cache.borrow().next_expiry();
        let Some(at) = next else {
            break;
        };
        monoio::select! {
            _ = monoio::time::sleep_until(at.into()) => {}
            _ = ctx.shard.stopping.wait() => {
                pool.cache.borrow_mut().clear();
                break;
            }
            _ = ctx.retired.wait() => {
                pool.cache.borrow_mut().clear();
                break;
            }
        }
        pool.cache.borrow_mut().expire(Instant::now());
    }
    pool.sweeping.set(false);
}

/// Whether a request whose cached connection failed before any response byte may go again on a
/// new one: `proxy_next_upstream` has `error`, the whole body is still at hand (nothing was read
/// from the client for it), and the method is idempotent unless `non_idempotent` is listed (as
/// nginx decides for POST, LOCK and PATCH).
pub fn may_retry(head: &RequestHead<'_, '_>, early: &[u8], conf: &LocConf) -> bool {
    let next = conf.proxy_next_upstream();
    let listed = |w: &str| next.when.iter().any(|x| x == w);
    let body_held = match head.body {
        Body::None => true,
        Body::Length(n) => n <= early.len() as u64,
        Body::Chunked => false,
    };
    let idempotent = !matches!(head.method, "POST" | "LOCK" | "PATCH") || listed("non_idempotent");
    !next.off && listed("error") && body_held && idempotent
}
