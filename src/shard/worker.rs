//! One shard's life: build its runtime, adopt its listening sockets, accept connections (within
//! `worker_connections`, backing off on EMFILE), hand each to the proxy, and on a graceful stop
//! stop accepting and wait for its connections to finish.

use std::cell::Cell;
use std::os::unix::net::UnixStream as StdUnixStream;
use std::rc::Rc;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use monoio::io::AsyncReadRent;
use monoio::net::{TcpListener, UnixStream};

use super::event::Event;
use super::listener::ListenSpec;
use super::Driver;
use crate::config::model::Config;
use crate::log;

/// io_uring submission queue size per shard.
const RING_ENTRIES: u32 = 4096;

/// What every connection task of a shard shares (single-threaded: `Cell`, `Rc`).
pub struct ShardCtx {
    /// Shard number (0-based).
    pub id: usize,
    /// The configuration.
    pub config: Arc<Config>,
    /// Open connections, client and upstream (`worker_connections` counts both, as nginx).
    pub active: Cell<usize>,
    /// Set on a graceful stop: keep-alive connections close instead of waiting.
    pub stopping: Event,
    /// Proxy state built from the configuration for this shard (router, balancers, pools).
    pub proxy: crate::proxy::ShardProxy,
}

impl ShardCtx {
    /// Counts a connection for its lifetime (drop the guard when it closes).
    pub fn hold(self: &Rc<Self>) -> ConnGuard {
        self.active.set(self.active.get() + 1);
        ConnGuard(self.clone())
    }
}

/// Keeps one connection counted in `ShardCtx::active`.
pub struct ConnGuard(Rc<ShardCtx>);

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.0.active.set(self.0.active.get() - 1);
    }
}

/// Thread body of a shard. Reports on `ready` once it accepts (or why it cannot).
pub fn run(
    id: usize,
    config: Arc<Config>,
    sockets: Vec<(ListenSpec, std::net::TcpListener)>,
    control: StdUnixStream,
    driver: Driver,
    ready: Sender<Result<(), String>>,
) {
    let main = shard_main(id, config, sockets, control, ready.clone());
    let built = match driver {
        Driver::IoUring => monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
            .with_entries(RING_ENTRIES)
            .uring_builder(tuned_ring())
            .enable_timer()
            .build()
            .or_else(|_| {
                // Kernels before 6.1 lack the flags: a plain ring then.
                monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
                    .with_entries(RING_ENTRIES)
                    .enable_timer()
                    .build()
            })
            .map(|mut rt| rt.block_on(main)),
        Driver::Epoll => monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .map(|mut rt| rt.block_on(main)),
    };
    if let Err(e) = built {
        let _ = ready.send(Err(format!("shard {id}: cannot start its runtime ({e})")));
    }
}

/// The shard's ring: completions are handed over when the shard enters the kernel to wait for
/// them (`DEFER_TASKRUN`, one submitter: `SINGLE_ISSUER`), instead of interrupting the shard
/// with an inter-processor interrupt for every readiness event while it is busy forwarding.
fn tuned_ring() -> io_uring::Builder {
    let mut b = io_uring::IoUring::builder();
    if std::env::var_os("RINGPROXY_RING") != Some("plain".into()) {
        if std::env::var_os("RINGPROXY_RING") == Some("coop".into()) {
            b.setup_coop_taskrun();
        } else {
            b.setup_single_issuer().setup_defer_taskrun();
        }
    }
    b
}

async fn shard_main(
    id: usize,
    config: Arc<Config>,
    sockets: Vec<(ListenSpec, std::net::TcpListener)>,
    control: StdUnixStream,
    ready: Sender<Result<(), String>>,
) {
    let proxy = match crate::proxy::ShardProxy::new(&config) {
        Ok(p) => p,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let ctx = Rc::new(ShardCtx {
        id,
        config: config.clone(),
        active: Cell::new(0),
        stopping: Event::default(),
        proxy,
    });
    let mut listeners = Vec::new();
    for (spec, std_listener) in sockets {
        match TcpListener::from_std(std_listener) {
            Ok(l) => listeners.push((spec, l)),
            Err(e) => {
                let _ = ready.send(Err(format!("shard {id}: cannot adopt {} ({e})", spec.addr)));
                return;
            }
        }
    }
    let control = match UnixStream::from_std(control) {
        Ok(c) => c,
        Err(e) => {
            let _ = ready.send(Err(format!("shard {id}: control channel ({e})")));
            return;
        }
    };
    let mut accepts = Vec::new();
    for (spec, listener) in listeners {
        accepts.push(monoio::spawn(accept_loop(ctx.clone(), spec, listener)));
    }
    let _ = ready.send(Ok(()));
    monoio::spawn(flush_access_logs(ctx.clone()));
    // Control bytes from the main thread: "R" reopens the access logs (SIGUSR1), "Q" (or the
    // main thread going away) stops gracefully.
    let mut control = control;
    loop {
        let (r, buf) = control.read(vec![0u8; 1]).await;
        match (r, buf.first()) {
            (Ok(1), Some(b'R')) => {
                for e in ctx.proxy.access.borrow_mut().reopen() {
                    log!(Alert, "{e}");
                }
            }
            _ => break,
        }
    }
    ctx.stopping.set();
    for a in accepts {
        a.await;
    }
    let deadline = config
        .main
        .worker_shutdown_timeout
        .map(|d| Instant::now() + d);
    while ctx.active.get() > 0 {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            log!(
                Notice,
                "shard {id}: {} connections still open at worker_shutdown_timeout",
                ctx.active.get()
            );
            break;
        }
        monoio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The longest the shard's housekeeping sleeps.
const HOUSEKEEPING: Duration = Duration::from_millis(250);

/// The shard's housekeeping, at least every `HOUSEKEEPING`: writes buffered access-log lines when their
/// `flush=` time comes (and everything at the end), and releases memory a burst left behind.
async fn flush_access_logs(ctx: Rc<ShardCtx>) {
    loop {
        let next = ctx.proxy.access.borrow().next_flush();
        let wait = next
            .map_or(HOUSEKEEPING, |t| {
                t.saturating_duration_since(Instant::now())
            })
            .min(HOUSEKEEPING);
        monoio::select! {
            _ = monoio::time::sleep(wait.max(Duration::from_millis(10))) => {}
            _ = ctx.stopping.wait() => {
                if let Err(e) = ctx.proxy.access.borrow_mut().flush_all() {
                    log!(Alert, "{e}");
                }
                return;
            }
        }
        if let Err(e) = ctx.proxy.access.borrow_mut().flush_due(Instant::now()) {
            log!(Alert, "{e}");
        }
        crate::proxy::pool::release_after_burst();
    }
}

async fn accept_loop(ctx: Rc<ShardCtx>, spec: ListenSpec, listener: TcpListener) {
    let limit = ctx.config.events.worker_connections as usize;
    let mut last_warn: Option<Instant> = None;
    let mut warn = |msg: String| {
        // Once a second at most: a flood of refusals must not become a flood of log lines.
        if last_warn.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
            last_warn = Some(Instant::now());
            log!(Alert, "{msg}");
        }
    };
    loop {
        let accepted = monoio::select! {
            r = listener.accept() => r,
            _ = ctx.stopping.wait() => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                if ctx.active.get() >= limit {
                    warn(format!("{limit} worker_connections are not enough"));
                    drop(stream);
                    continue;
                }
                // Counted here, not when the task first runs: the epoll driver can accept a
                // whole backlog before any of the spawned tasks starts.
                let guard = ctx.hold();
                let ctx2 = ctx.clone();
                let spec2 = spec.clone();
                monoio::spawn(async move {
                    crate::proxy::handler::serve(ctx2, guard, spec2, stream, peer).await;
                });
            }
            Err(e) => {
                let raw = e.raw_os_error();
                if raw == Some(libc::EMFILE) || raw == Some(libc::ENFILE) {
                    warn(format!("accept() failed ({})", crate::config::os_error(&e)));
                    // Back off instead of spinning on a full descriptor table.
                    monoio::time::sleep(Duration::from_millis(100)).await;
                } else if raw != Some(libc::ECONNABORTED) && raw != Some(libc::EINTR) {
                    warn(format!("accept() failed ({})", crate::config::os_error(&e)));
                    monoio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }
}
