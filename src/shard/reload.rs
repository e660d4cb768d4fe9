//! The main thread's view of the running shards, and reload (HUP, `ringproxy -s reload`).
//!
//! [`Shards`] owns a handle on every shard: its control channel, the thread, and the main
//! thread's own handle on each of its listening sockets (to take them out of service before the
//! process exits). A reload reads and checks the whole new configuration first (the files, the
//! proxy state every shard will build from it: certificates, keys, access logs, balancers) and
//! binds the addresses it adds; on any error it logs nginx's `[emerg] ... in FILE:LINE` and
//! nothing changes. Then the error logs are reopened, each shard gets the new generation with
//! the sockets of its new addresses (addresses kept keep their sockets), shards beyond the new
//! `worker_processes` are retired (they stop accepting and drain, as on a graceful stop) and
//! missing ones are started.

use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::listener::{self, ListenSpec};
use super::worker::{self, NextGeneration, ShardStart};
use super::Driver;
use crate::config::model::{Config, ErrorLog};
use crate::log;

/// Re-reads the configuration the process was started with (same files, prefix, `-g` and
/// `-e`): the configuration and its error logs, or the error in nginx's words without its
/// level (`unknown directive "x" in /etc/ringproxy/ringproxy.conf:7`).
pub type Reloader = Box<dyn Fn() -> Result<(Config, Vec<ErrorLog>), String>>;

/// Sockets bound for one shard, one per address.
pub type Sockets = Vec<(ListenSpec, std::net::TcpListener)>;

/// Binds one socket per address (one shard's share).
pub fn bind_all(specs: &[ListenSpec]) -> Result<Sockets, String> {
    let mut out = Vec::with_capacity(specs.len());
    for spec in specs {
        match listener::bind(spec) {
            Ok(s) => out.push((spec.clone(), s)),
            Err(e) => {
                shut_all(&out);
                return Err(e);
            }
        }
    }
    Ok(out)
}

/// Like `bind_all`, taking a socket inherited from an old binary (`upgrade`) where one is bound
/// to the address. On an error only the sockets bound here are shut down.
pub fn bind_or_adopt(
    specs: &[ListenSpec],
    inherited: &mut super::upgrade::Inherited,
) -> Result<Sockets, String> {
    let mut out = Vec::with_capacity(specs.len());
    let mut bound = Vec::new();
    for spec in specs {
        if let Some(s) = inherited.take(spec.addr) {
            out.push((spec.clone(), s));
            continue;
        }
        match listener::bind(spec) {
            Ok(s) => bound.push((spec.clone(), s)),
            Err(e) => {
                shut_all(&bound);
                return Err(e);
            }
        }
    }
    out.extend(bound);
    Ok(out)
}

fn shut_all(sockets: &Sockets) {
    sockets.iter().for_each(|(_, s)| listener::shut(s));
}

/// The order that stops a shard gracefully (see `worker::ShardStart::control`).
fn stop_order(shared: bool, hand_over: bool) -> u8 {
    match (shared, hand_over) {
        (_, true) => b'H',
        (true, false) => b'S',
        (false, false) => b'Q',
    }
}

/// A running shard, as the main thread sees it.
struct Handle {
    control: UnixStream,
    generations: Sender<NextGeneration>,
    thread: JoinHandle<()>,
    /// The main thread's own handle on each listening socket of the shard, by address.
    sockets: Vec<(SocketAddr, std::net::TcpListener)>,
}

impl Handle {
    fn order(&mut self, byte: u8) {
        let _ = self.control.write_all(&[byte]);
    }
}

/// Every shard of the process.
pub struct Shards {
    config: Arc<Config>,
    driver: Driver,
    running: Vec<Handle>,
    /// Shards a reload retired, draining their connections.
    retiring: Vec<Handle>,
    ready: Receiver<Result<(), String>>,
    ready_tx: Sender<Result<(), String>>,
    /// False after WINCH: the shards stopped accepting (HUP starts them again).
    accepting: bool,
}

impl Shards {
    /// Starts one shard per element of `sockets` and waits until each accepts.
    pub fn start(
        config: Arc<Config>,
        driver: Driver,
        sockets: Vec<Sockets>,
    ) -> Result<Shards, String> {
        let (ready_tx, ready) = channel();
        let mut shards = Shards {
            config,
            driver,
            running: Vec::new(),
            retiring: Vec::new(),
            ready,
            ready_tx,
            accepting: true,
        };
        let n = sockets.len();
        for socks in sockets {
            shards.spawn(socks)?;
        }
        shards.wait_ready(n)?;
        Ok(shards)
    }

    /// The configuration the shards run.
    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    fn spawn(&mut self, sockets: Sockets) -> Result<(), String> {
        let i = self.running.len();
        let (ours, theirs) =
            UnixStream::pair().map_err(|e| format!("socketpair() failed ({e})"))?;
        // The shard's end must not block: monoio's epoll driver tries a read before waiting
        // for readiness, and a blocking read would stall the whole shard until the next order.
        theirs
            .set_nonblocking(true)
            .map_err(|e| format!("ioctl(FIONBIO) failed ({e})"))?;
        let (gen_tx, gen_rx) = channel();
        let mut held = Vec::with_capacity(sockets.len());
        for (spec, s) in &sockets {
            held.push((
                spec.addr,
                s.try_clone().map_err(|e| format!("dup() failed ({e})"))?,
            ));
        }
        let start = ShardStart {
            id: i,
            config: self.config.clone(),
            sockets,
            control: theirs,
            generations: gen_rx,
            ready: self.ready_tx.clone(),
        };
        let cpus = super::cpus_for(&self.config, i);
        let driver = self.driver;
        let thread = std::thread::Builder::new()
            .name(format!("ringproxy-shard-{i}"))
            .spawn(move || {
                log::set_shard(i + 1);
                if cpus.is_some() {
                    super::pin(cpus.as_deref());
                }
                worker::run(start, driver);
            })
            .map_err(|e| format!("cannot start shard {i}: {e}"))?;
        self.running.push(Handle {
            control: ours,
            generations: gen_tx,
            thread,
            sockets: held,
        });
        Ok(())
    }

    fn wait_ready(&self, n: usize) -> Result<(), String> {
        for _ in 0..n {
            match self.ready.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err("a shard stopped while starting".into()),
            }
        }
        Ok(())
    }

    /// Sends `byte` to every shard (`R`: reopen the access logs).
    pub fn tell_all(&mut self, byte: u8) {
        self.running.iter_mut().for_each(|h| h.order(byte));
    }

    /// Reloads: see the module documentation. Logs what it did (once every shard has the new
    /// configuration in place) or why nothing changed. `shared`: another ringproxy accepts on
    /// the sockets too (binary upgrade), so those of removed addresses and retired shards are
    /// closed, not shut down.
    pub fn reload(&mut self, load: &Reloader, shared: bool) {
        match self.try_reload(load, shared) {
            Ok(()) => log!(Notice, "reconfigured: {} shards", self.running.len()),
            Err(e) => {
                log!(Emerg, "{e}");
                log!(Notice, "reload failed, the configuration is unchanged");
            }
        }
    }

    fn try_reload(&mut self, load: &Reloader, shared: bool) -> Result<(), String> {
        self.reap();
        let (config, logs) = load()?;
        let config = Arc::new(config);
        // What every shard builds from it: certificates, keys, CAs, access logs, balancers.
        drop(crate::proxy::ShardProxy::new(&config)?);
        let specs = listener::all_specs(&config);
        listener::check_shared(&specs)?;
        let want = super::shard_count(&config);
        let kept = want.min(self.running.len());
        let mut added: Vec<Sockets> = Vec::with_capacity(want);
        let mut bind = || -> Result<(), String> {
            for i in 0..want {
                let missing: Vec<ListenSpec> = specs
                    .iter()
                    .filter(|s| {
                        i >= kept || !self.running[i].sockets.iter().any(|(a, _)| *a == s.addr)
                    })
                    .cloned()
                    .collect();
                added.push(bind_all(&missing)?);
            }
            Ok(())
        };
        if let Err(e) = bind() {
            added.iter().for_each(shut_all);
            return Err(e);
        }
        if let Err(e) = log::init(&logs) {
            added.iter().for_each(shut_all);
            return Err(e);
        }
        self.config = config;
        let mut added = added.into_iter();
        let mut told = 0;
        for (i, h) in self.running.iter_mut().enumerate().take(kept) {
            let sockets = added.next().unwrap_or_default();
            h.sockets
                .retain(|(a, _)| specs.iter().any(|s| s.addr == *a));
            for (spec, s) in &sockets {
                if let Ok(dup) = s.try_clone() {
                    h.sockets.push((spec.addr, dup));
                }
            }
            let next = NextGeneration {
                config: self.config.clone(),
                sockets,
                cpus: super::cpus_for(&self.config, i),
                shut_removed: !shared,
            };
            if h.generations.send(next).is_ok() {
                h.order(b'G');
                told += 1;
            }
        }
        // Each shard says when its new generation is in place. A shard can fail only if a file
        // changed since the check above; it then keeps the old configuration, and says so.
        for _ in 0..told {
            match self.ready.recv_timeout(Duration::from_secs(10)) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => log!(Alert, "{e}"),
                Err(_) => log!(
                    Alert,
                    "a shard did not take the new configuration within 10 s"
                ),
            }
        }
        for mut h in self.running.drain(kept..) {
            h.order(if shared { b'S' } else { b'Q' });
            self.retiring.push(h);
        }
        let fresh: Vec<Sockets> = added.collect();
        let n = fresh.len();
        for socks in fresh {
            self.spawn(socks)?;
        }
        self.wait_ready(n)
    }

    /// Joins the retired shards that have finished.
    fn reap(&mut self) {
        let (done, busy): (Vec<_>, Vec<_>) = std::mem::take(&mut self.retiring)
            .into_iter()
            .partition(|h| h.thread.is_finished());
        self.retiring = busy;
        for h in done {
            let _ = h.thread.join();
        }
    }

    /// Graceful stop: every shard stops accepting and drains; waits for them up to
    /// `worker_shutdown_timeout` (and a second more). `shared`: another ringproxy accepts on
    /// the sockets (binary upgrade), so the shards close them without shutting them down;
    /// `hand_over`: that is a new binary taking the plain tunnels.
    pub fn stop_gracefully(&mut self, shared: bool, hand_over: bool) {
        self.tell_all(stop_order(shared, hand_over));
        let deadline = self
            .config
            .main
            .worker_shutdown_timeout
            .map(|d| Instant::now() + d + Duration::from_secs(1));
        for h in self.running.iter().chain(&self.retiring) {
            while !h.thread.is_finished() {
                if deadline.is_some_and(|d| Instant::now() > d) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Whether the shards accept (not stopped by WINCH).
    pub fn accepting(&self) -> bool {
        self.accepting
    }

    /// WINCH: every shard stops accepting and drains, as on a graceful stop, but its sockets
    /// stay open (the main thread keeps them) and are never shut down, so HUP can start the
    /// shards again on them (`resume`) and a new binary keeps accepting on them. `hand_over`:
    /// the plain tunnels move to that new binary.
    pub fn stop_accepting(&mut self, hand_over: bool) {
        self.tell_all(stop_order(true, hand_over));
        self.accepting = false;
    }

    /// HUP after WINCH: starts the shards again, on the same sockets and configuration; the
    /// stopped ones finish draining.
    pub fn resume(&mut self) -> Result<(), String> {
        self.reap();
        let specs = self
            .config
            .http
            .as_ref()
            .map(listener::specs)
            .unwrap_or_default();
        let stopped = std::mem::take(&mut self.running);
        let mut all = Vec::with_capacity(stopped.len());
        for h in stopped {
            let mut socks = Sockets::new();
            for (addr, s) in &h.sockets {
                let spec = specs.iter().find(|sp| sp.addr == *addr);
                if let (Some(spec), Ok(dup)) = (spec, s.try_clone()) {
                    socks.push((spec.clone(), dup));
                }
            }
            all.push(socks);
            self.retiring.push(h);
        }
        let n = all.len();
        for socks in all {
            self.spawn(socks)?;
        }
        self.wait_ready(n)?;
        self.accepting = true;
        Ok(())
    }

    /// This process's descriptor of every listening socket (for a new binary).
    pub fn listening_fds(&self) -> Vec<i32> {
        use std::os::fd::AsRawFd;
        self.running
            .iter()
            .flat_map(|h| h.sockets.iter().map(|(_, s)| s.as_raw_fd()))
            .collect()
    }

    /// Takes every listening socket out of service (before the process exits), except those
    /// another ringproxy accepts on (binary upgrade): only closed, with the process.
    pub fn shut_listeners(&self, upgrade: &super::upgrade::Upgrade) {
        for h in self.running.iter().chain(&self.retiring) {
            h.sockets
                .iter()
                .filter(|(_, s)| !upgrade.shared(s))
                .for_each(|(_, s)| listener::shut(s));
        }
    }
}
