//! What a shard's tasks share: the [`Shard`] itself (its connection count, its stop event, the
//! configuration generation new work uses) and one [`ShardCtx`] per configuration generation.
//!
//! A reload builds a new `ShardCtx` (router, balancers, pools, TLS, access logs) from the new
//! configuration and makes it the shard's current one. A connection takes the current
//! generation when it is accepted and again before each new request on a kept-alive
//! connection; a request in progress and an open tunnel keep the generation they started with.
//! An old generation is freed when the last connection holding it ends. Nothing on the
//! per-message path looks at the generation.
//!
//! With `worker_shutdown_timeout` set, a reload retires the old generation as nginx's reload
//! retires its old workers: its connections take no new request, its WebSocket tunnels close
//! with the closing handshake over the spread window, and what is left of it is cut when the
//! timeout ends ([`ShardCtx::retire`]). Unset (nginx's default too), they live on.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::event::Event;
use super::listener::ListenSpec;
use crate::config::model::Config;

/// One shard: single-threaded state that outlives configuration generations.
pub struct Shard {
    /// Shard number (0-based).
    pub id: usize,
    /// Open connections, client and upstream (`worker_connections` counts both, as nginx).
    pub active: Cell<usize>,
    /// Set on a graceful stop: keep-alive connections close instead of waiting.
    pub stopping: Event,
    /// The generation new connections and new requests use; `None` once the shard has ended.
    current: RefCell<Option<Rc<ShardCtx>>>,
    /// Generations made so far (the next one's serial number).
    generations: Cell<u32>,
}

impl Shard {
    /// A shard with no generation yet.
    pub fn new(id: usize) -> Rc<Shard> {
        Rc::new(Shard {
            id,
            active: Cell::new(0),
            stopping: Event::default(),
            current: RefCell::new(None),
            generations: Cell::new(0),
        })
    }

    /// Counts a connection for its lifetime (drop the guard when it closes).
    pub fn hold(self: &Rc<Self>) -> ConnGuard {
        self.active.set(self.active.get() + 1);
        ConnGuard(self.clone())
    }

    /// The current generation.
    pub fn current(&self) -> Option<Rc<ShardCtx>> {
        self.current.borrow().clone()
    }

    /// Makes `next` current; returns the generation it replaces.
    pub fn install(&self, next: Option<Rc<ShardCtx>>) -> Option<Rc<ShardCtx>> {
        self.current.replace(next)
    }
}

/// Keeps one connection counted in [`Shard::active`].
pub struct ConnGuard(Rc<Shard>);

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.0.active.set(self.0.active.get() - 1);
    }
}

/// One configuration generation on one shard: what every connection task that uses it shares
/// (single-threaded: `Cell`, `Rc`).
pub struct ShardCtx {
    /// Shard number (0-based).
    pub id: usize,
    /// The configuration.
    pub config: Arc<Config>,
    /// The shard this generation runs on.
    pub shard: Rc<Shard>,
    /// This generation's number on its shard.
    pub serial: u32,
    /// Set once a newer generation has replaced this one: its idle upstream connections close.
    pub retired: Event,
    /// Set when `worker_shutdown_timeout` has passed since `retired`: its connections close.
    pub cut: Event,
    /// Proxy state built from the configuration for this shard (router, balancers, pools).
    pub proxy: crate::proxy::ShardProxy,
    /// The addresses this configuration listens on, with their options.
    pub listens: Vec<ListenSpec>,
}

impl ShardCtx {
    /// A generation of `shard` for `config`.
    pub fn new(shard: &Rc<Shard>, config: Arc<Config>, proxy: crate::proxy::ShardProxy) -> Self {
        let listens = super::listener::all_specs(&config);
        let serial = shard.generations.get();
        shard.generations.set(serial.wrapping_add(1));
        ShardCtx {
            id: shard.id,
            config,
            shard: shard.clone(),
            serial,
            retired: Event::default(),
            cut: Event::default(),
            proxy,
            listens,
        }
    }

    /// Counts a connection for its lifetime.
    pub fn hold(&self) -> ConnGuard {
        self.shard.hold()
    }

    /// Called once a newer generation has replaced this one. With `worker_shutdown_timeout`,
    /// also winds it down: WebSocket tunnels close over the spread window, and at the timeout
    /// the generation is cut (its connections close wherever they are).
    pub fn retire(self: &Rc<Self>) {
        self.retired.set();
        let Some(timeout) = self.config.main.worker_shutdown_timeout else {
            return;
        };
        let cut_at = Instant::now() + timeout;
        crate::proxy::idle::retire_generation(
            self.serial,
            spread_window(&self.config.main),
            cut_at,
        );
        let gen = Rc::downgrade(self);
        monoio::spawn(async move {
            monoio::time::sleep_until(cut_at.into()).await;
            if let Some(gen) = gen.upgrade() {
                gen.cut.set();
            }
        });
    }

    /// Resolves when this generation's connections should stop waiting for a new request: on a
    /// graceful stop, and once it is retired with `worker_shutdown_timeout` set.
    pub async fn leaving(&self) {
        if self.config.main.worker_shutdown_timeout.is_none() {
            return self.shard.stopping.wait().await;
        }
        monoio::select! {
            _ = self.shard.stopping.wait() => {}
            _ = self.retired.wait() => {}
        }
    }

    /// Retired with `worker_shutdown_timeout` set: its connections take no new request.
    pub fn winding_down(&self) -> bool {
        self.retired.is_set() && self.config.main.worker_shutdown_timeout.is_some()
    }

    /// How this generation listens on `addr`, if it does.
    pub fn listen_spec(&self, addr: SocketAddr) -> Option<&ListenSpec> {
        self.listens.iter().find(|s| s.addr == addr)
    }

    /// The generation a connection accepted on `addr` uses for its next request: the shard's
    /// current one when that still listens on `addr`, else this one.
    pub fn for_next_request(self: &Rc<Self>, addr: SocketAddr) -> Rc<ShardCtx> {
        match self.shard.current() {
            Some(cur) if !Rc::ptr_eq(&cur, self) && cur.listen_spec(addr).is_some() => cur,
            _ => self.clone(),
        }
    }
}

impl Drop for ShardCtx {
    fn drop(&mut self) {
        crate::proxy::idle::forget_generation(self.serial);
    }
}

/// The window WebSocket closes are spread over: `worker_shutdown_spread`, cut so that the
/// last closing handshake still has its wait before `worker_shutdown_timeout`.
pub fn spread_window(main: &crate::config::model::MainConf) -> Duration {
    let spread = main.worker_shutdown_spread;
    match main.worker_shutdown_timeout {
        Some(hard) => spread.min(hard.saturating_sub(crate::proxy::tunnel::CLOSE_WAIT)),
        None => spread,
    }
}
