//! One shard's life: build its runtime, adopt its listening sockets, accept connections (within
//! `worker_connections`, backing off on EMFILE), hand each to the proxy, take new configuration
//! generations (reload: `reload`), and on a graceful stop stop accepting and wait for its
//! connections to finish. During a binary upgrade an old binary's stop first hands its plain
//! tunnels to the new binary (`handoff`), and a new binary's shards take such tunnels in.
//!
//! A listening socket is never closed with connections in its queue: on stop the shard accepts
//! what the kernel has queued (and serves it), then shuts the socket down itself. Only then does
//! it leave the SO_REUSEPORT group at once: closing is not enough under io_uring, where a pending
//! accept keeps the socket alive until the ring is torn down, after the process has exited; a
//! process started meanwhile on the same address would share the group with that dead socket,
//! and the connections the kernel hands it are reset.

use std::net::SocketAddr;
use std::os::unix::net::UnixStream as StdUnixStream;
use std::rc::{Rc, Weak};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use monoio::io::{AsyncReadRent, Canceller};
use monoio::net::{TcpListener, TcpStream, UnixStream};
use monoio::task::JoinHandle;

use super::context::{ConnGuard, Shard, ShardCtx};
use super::event::Event;
use super::listener::ListenSpec;
use super::Driver;
use crate::config::model::Config;
use crate::log;

/// io_uring submission queue size per shard.
const RING_ENTRIES: u32 = 4096;

/// What a shard thread starts with.
pub struct ShardStart {
    /// Shard number (0-based).
    pub id: usize,
    /// The configuration it starts on.
    pub config: Arc<Config>,
    /// Its listening sockets, one per address of the configuration.
    pub sockets: Vec<(ListenSpec, std::net::TcpListener)>,
    /// Its end of the control channel: one byte per order (`R` reopen the logs, `G` take the
    /// next generation from `generations`, `Q` or the main thread gone: stop gracefully, `S`:
    /// the same, leaving the sockets to another process that accepts on them too, `H`: as `S`,
    /// handing the plain tunnels over to that process, a new binary).
    pub control: StdUnixStream,
    /// New configurations (reload), announced by a `G` on `control`.
    pub generations: Receiver<NextGeneration>,
    /// Told once the shard accepts (or why it cannot), and once each new generation is in
    /// place (or why not).
    pub ready: Sender<Result<(), String>>,
}

/// A new configuration for a running shard (reload), checked by the main thread.
pub struct NextGeneration {
    /// The configuration.
    pub config: Arc<Config>,
    /// Sockets for the addresses the shard does not listen on yet.
    pub sockets: Vec<(ListenSpec, std::net::TcpListener)>,
    /// The CPUs to run on (`worker_cpu_affinity`; `None`: every CPU, not pinned).
    pub cpus: Option<Vec<usize>>,
    /// Whether the sockets of removed addresses are shut down (not while another process
    /// accepts on them: binary upgrade).
    pub shut_removed: bool,
}

/// Thread body of a shard. Reports on `start.ready` once it accepts (or why it cannot).
pub fn run(start: ShardStart, driver: Driver) {
    let (id, ready) = (start.id, start.ready.clone());
    let main = shard_main(start);
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

async fn shard_main(start: ShardStart) {
    let ShardStart {
        id,
        config,
        sockets,
        control,
        generations,
        ready,
    } = start;
    let shard = Shard::new(id);
    let proxy = match crate::proxy::ShardProxy::new(&config) {
        Ok(p) => p,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let first = Rc::new(ShardCtx::new(&shard, config, proxy));
    shard.install(Some(first.clone()));
    let mut listening = Vec::new();
    for (spec, socket) in sockets {
        match Listening::open(&shard, &first, spec.addr, socket) {
            Ok(l) => listening.push(l),
            Err(e) => {
                let _ = ready.send(Err(format!("shard {id}: cannot adopt {} ({e})", spec.addr)));
                return;
            }
        }
    }
    drop(first);
    let inbox = match super::handoff::Inbox::open() {
        Ok(i) => i.map(Rc::new),
        Err(e) => {
            let _ = ready.send(Err(format!("shard {id}: hand-over inbox ({e})")));
            return;
        }
    };
    if let Some(inbox) = &inbox {
        monoio::spawn(arrivals(shard.clone(), inbox.clone()));
    }
    let mut control = match UnixStream::from_std(control) {
        Ok(c) => c,
        Err(e) => {
            let _ = ready.send(Err(format!("shard {id}: control channel ({e})")));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    monoio::spawn(housekeeping(shard.clone()));
    loop {
        let (r, buf) = control.read(vec![0u8; 1]).await;
        match (r, buf.first()) {
            (Ok(1), Some(b'R')) => {
                if let Some(cur) = shard.current() {
                    for e in cur.proxy.access.borrow_mut().reopen() {
                        log!(Alert, "{e}");
                    }
                    if let Some(s) = &cur.proxy.stream {
                        for e in s.access.borrow_mut().reopen() {
                            log!(Alert, "{e}");
                        }
                    }
                }
            }
            (Ok(1), Some(b'G')) => {
                while let Ok(next) = generations.try_recv() {
                    let _ = ready.send(reload(&shard, &mut listening, next));
                }
            }
            (Ok(1), Some(b'S')) => {
                stop(&shard, listening, false, false, inbox.as_deref()).await;
                return;
            }
            (Ok(1), Some(b'H')) => {
                stop(&shard, listening, false, true, inbox.as_deref()).await;
                return;
            }
            _ => break,
        }
    }
    stop(&shard, listening, true, false, inbox.as_deref()).await;
}

/// Takes in the tunnels the receiving thread deals to this shard (binary upgrade), each time
/// its bell rings.
async fn arrivals(shard: Rc<Shard>, inbox: Rc<super::handoff::Inbox>) {
    let Ok(bell) = inbox.bell.try_clone().and_then(UnixStream::from_std) else {
        log!(
            Alert,
            "shard {}: cannot wait for handed-over tunnels",
            shard.id
        );
        return;
    };
    let mut bell = bell;
    let mut buf = vec![0u8; 64];
    loop {
        let (r, b) = bell.read(buf).await;
        buf = b;
        if !matches!(r, Ok(n) if n > 0) {
            return;
        }
        for tunnel in inbox.queue.try_iter() {
            crate::proxy::handoff::adopt(&shard, tunnel);
        }
    }
}

/// Graceful stop: accepting ends (what is queued is served), WebSocket tunnels are closed with
/// the closing handshake, each at a random moment of `worker_shutdown_spread`, and the shard
/// waits for its connections up to `worker_shutdown_timeout`. `shut`: the sockets are shut
/// down, not only closed (never when another process accepts on them: binary upgrade).
/// `hand_over`: first, the plain tunnels are asked to move to the new binary; each that has
/// not moved by its moment in the spread drains as the others do. `inbox`: a new binary's,
/// closed here; what was dealt to it meanwhile is taken in, and drains too.
async fn stop(
    shard: &Rc<Shard>,
    listening: Vec<Listening>,
    shut: bool,
    hand_over: bool,
    inbox: Option<&super::handoff::Inbox>,
) {
    shard.stopping.set();
    let Some(cur) = shard.current() else {
        return;
    };
    if hand_over {
        // Before the drain's schedule: the tunnels asked are woken first.
        let (moving, staying) = crate::proxy::idle::request_handoff();
        if moving + staying > 0 {
            log!(
                Notice,
                "shard {}: handing {moving} tunnels over to the new binary, {staying} stay \
                 and drain (TLS, half-closed or closing)",
                shard.id
            );
        }
    }
    crate::proxy::idle::start_drain(super::context::spread_window(&cur.config.main));
    for tunnel in inbox.map(super::handoff::Inbox::close).unwrap_or_default() {
        crate::proxy::handoff::adopt(shard, tunnel);
    }
    let loops: Vec<_> = listening.into_iter().map(|l| l.close(&cur, shut)).collect();
    for l in loops {
        l.await;
    }
    let deadline = cur
        .config
        .main
        .worker_shutdown_timeout
        .map(|d| Instant::now() + d);
    drop(cur);
    while shard.active.get() > 0 {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            log!(
                Notice,
                "shard {}: {} connections still open at worker_shutdown_timeout",
                shard.id,
                shard.active.get()
            );
            break;
        }
        monoio::time::sleep(Duration::from_millis(50)).await;
    }
    // The generation points back at the shard: let both go.
    shard.install(None);
}

/// Makes `next` the shard's current generation. Addresses it no longer listens on stop
/// accepting (what is queued on them is served by the old generation) and are shut; new ones
/// start accepting; requests in progress and open tunnels keep the generation they started
/// with, which is freed when the last of them ends.
fn reload(
    shard: &Rc<Shard>,
    listening: &mut Vec<Listening>,
    next: NextGeneration,
) -> Result<(), String> {
    // The main thread built the same proxy state from this configuration before sending it, so
    // this fails only if the files changed in between; then the shard keeps the old one.
    let proxy = crate::proxy::ShardProxy::new(&next.config)
        .map_err(|e| format!("shard {}: {e}; its configuration is unchanged", shard.id))?;
    let Some(old) = shard.current() else {
        return Ok(());
    };
    super::pin(next.cpus.as_deref());
    let gen = Rc::new(ShardCtx::new(shard, next.config, proxy));
    let (kept, gone): (Vec<_>, Vec<_>) = std::mem::take(listening)
        .into_iter()
        .partition(|l| gen.listen_spec(l.addr).is_some());
    *listening = kept;
    let ended: Vec<_> = gone
        .into_iter()
        .map(|l| l.close(&old, next.shut_removed))
        .collect();
    shard.install(Some(gen.clone()));
    old.retire();
    if let Err(e) = old.proxy.access.borrow_mut().flush_all() {
        log!(Alert, "{e}");
    }
    for (spec, socket) in next.sockets {
        match Listening::open(shard, &gen, spec.addr, socket) {
            Ok(l) => listening.push(l),
            Err(e) => log!(
                Alert,
                "shard {}: cannot adopt {} ({e})",
                shard.id,
                spec.addr
            ),
        }
    }
    // The accept loops of removed addresses may still hand over one connection they had
    // accepted: they fall back to the old generation, which they hold weakly.
    monoio::spawn(async move {
        for l in ended {
            l.await;
        }
        drop(old);
    });
    Ok(())
}

/// The longest the shard's housekeeping sleeps.
const HOUSEKEEPING: Duration = Duration::from_millis(250);

/// The shard's housekeeping, at least every `HOUSEKEEPING`: writes the current generation's
/// buffered access-log lines when their `flush=` time comes (and everything at the end), and
/// releases memory a burst left behind. An old generation's lines are written when it is
/// replaced and when it is freed.
async fn housekeeping(shard: Rc<Shard>) {
    loop {
        let next = shard
            .current()
            .and_then(|g| g.proxy.access.borrow().next_flush());
        let wait = next
            .map_or(HOUSEKEEPING, |t| {
                t.saturating_duration_since(Instant::now())
            })
            .min(HOUSEKEEPING);
        monoio::select! {
            _ = monoio::time::sleep(wait.max(Duration::from_millis(10))) => {}
            _ = shard.stopping.wait() => {
                if let Some(cur) = shard.current() {
                    if let Err(e) = cur.proxy.access.borrow_mut().flush_all() {
                        log!(Alert, "{e}");
                    }
                    if let Some(s) = &cur.proxy.stream {
                        if let Err(e) = s.access.borrow_mut().flush_all() {
                            log!(Alert, "{e}");
                        }
                    }
                }
                return;
            }
        }
        if let Some(cur) = shard.current() {
            if let Err(e) = cur.proxy.access.borrow_mut().flush_due(Instant::now()) {
                log!(Alert, "{e}");
            }
            if let Some(s) = &cur.proxy.stream {
                if let Err(e) = s.access.borrow_mut().flush_due(Instant::now()) {
                    log!(Alert, "{e}");
                }
            }
        }
        crate::proxy::pool::release_after_burst();
    }
}

/// One listening socket of the shard and its accept loop.
struct Listening {
    addr: SocketAddr,
    /// Ends the accept loop.
    stop: Rc<Event>,
    /// The same socket as a non-blocking std handle: drains the queue and shuts the socket.
    queue: std::net::TcpListener,
    task: JoinHandle<()>,
}

impl Listening {
    /// Adopts `socket` and starts accepting on it; `gen` serves what the loop accepts once
    /// newer generations no longer listen on `addr`.
    fn open(
        shard: &Rc<Shard>,
        gen: &Rc<ShardCtx>,
        addr: SocketAddr,
        socket: std::net::TcpListener,
    ) -> std::io::Result<Listening> {
        let queue = socket.try_clone()?;
        let listener = TcpListener::from_std(socket)?;
        let stop = Rc::new(Event::default());
        let task = monoio::spawn(accept_loop(
            shard.clone(),
            Rc::downgrade(gen),
            addr,
            listener,
            stop.clone(),
        ));
        Ok(Listening {
            addr,
            stop,
            queue,
            task,
        })
    }

    /// Stops accepting: what the kernel has queued is served by `gen`, not reset, and the
    /// socket is shut down when `shut` (it leaves its SO_REUSEPORT group now), else only
    /// closed. The socket is non-blocking, so the drain ends at the first empty queue. Returns
    /// the accept loop, to await: it ends once its accept in flight is cancelled (or has
    /// completed, and what it accepted is served).
    fn close(self, gen: &Rc<ShardCtx>, shut: bool) -> JoinHandle<()> {
        self.stop.set();
        if let Some(spec) = gen.listen_spec(self.addr) {
            while let Ok((stream, peer)) = self.queue.accept() {
                match TcpStream::from_std(stream) {
                    Ok(stream) => hand_over(gen, gen.hold(), spec, stream, peer),
                    Err(e) => log!(Alert, "accept() failed ({})", crate::config::os_error(&e)),
                }
            }
        }
        if shut {
            super::listener::shut(&self.queue);
        }
        self.task
    }
}

/// The generation that serves a connection accepted on `addr`: the current one, or, on an
/// address a reload removed, the one that opened it.
fn serving(shard: &Shard, origin: &Weak<ShardCtx>, addr: SocketAddr) -> Option<Rc<ShardCtx>> {
    shard
        .current()
        .filter(|g| g.listen_spec(addr).is_some())
        .or_else(|| origin.upgrade())
}

async fn accept_loop(
    shard: Rc<Shard>,
    origin: Weak<ShardCtx>,
    addr: SocketAddr,
    listener: TcpListener,
    stop: Rc<Event>,
) {
    let mut last_warn: Option<Instant> = None;
    let mut warn = |msg: String| {
        // Once a second at most: a flood of refusals must not become a flood of log lines.
        if last_warn.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
            last_warn = Some(Instant::now());
            log!(Alert, "{msg}");
        }
    };
    loop {
        if stop.is_set() {
            return;
        }
        // Cancelled, not dropped, on stop: an io_uring accept the kernel completed meanwhile
        // still hands its connection over here and is served, instead of being lost in the ring
        // (where it would be reset when the process exits) while another process (binary
        // upgrade) could have served it.
        let canceller = Canceller::new();
        let accept = listener.cancelable_accept(canceller.handle());
        futures_util::pin_mut!(accept);
        let accepted = monoio::select! {
            r = &mut accept => r,
            _ = stop.wait() => {
                drop(canceller.cancel());
                accept.await
            }
        };
        match accepted {
            Ok((stream, peer)) => {
                let Some(gen) = serving(&shard, &origin, addr) else {
                    continue;
                };
                let limit = gen.config.events.worker_connections as usize;
                if shard.active.get() >= limit {
                    warn(format!("{limit} worker_connections are not enough"));
                    continue;
                }
                // Counted here, not when the task first runs: the epoll driver can accept a
                // whole backlog before any of the spawned tasks starts.
                let guard = shard.hold();
                if let Some(spec) = gen.listen_spec(addr) {
                    hand_over(&gen, guard, spec, stream, peer);
                }
            }
            Err(e) => {
                let raw = e.raw_os_error();
                if stop.is_set() {
                    // Cancelled (ECANCELED), or shut down meanwhile.
                    return;
                }
                if raw == Some(libc::EINVAL) {
                    // The socket was shut down (`listener::shut`): the process is exiting.
                    return;
                }
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

/// Hands an accepted connection to the proxy on a task of its own.
fn hand_over(
    gen: &Rc<ShardCtx>,
    guard: ConnGuard,
    spec: &ListenSpec,
    stream: TcpStream,
    peer: SocketAddr,
) {
    let (gen, spec) = (gen.clone(), spec.clone());
    if spec.stream {
        monoio::spawn(crate::stream::serve(gen, guard, spec, stream, peer));
        return;
    }
    monoio::spawn(async move {
        crate::proxy::handler::serve(gen, guard, spec, stream, peer).await;
    });
}
