//! Shards: one OS thread per core, each running its own monoio runtime (io_uring, or the epoll
//! driver where io_uring is blocked or `use epoll`/`RINGPROXY_DRIVER=epoll` asks for it), pinned
//! to its core, accepting on its own SO_REUSEPORT sockets. Nothing on the per-request path is
//! shared between shards: each owns its connections, pools, balancers and counters; they share
//! only the immutable `Arc<Config>`.
//!
//! The main thread binds every socket, starts the shards, writes the pid file once every shard
//! is accepting, then turns signals into actions: TERM/INT stop at once, QUIT stops accepting and
//! lets requests and tunnels finish (up to `worker_shutdown_timeout`), USR1 reopens the logs.
//! Started as root with `user`, the process drops to that user once the pid file is written.

pub mod event;
pub mod listener;
mod worker;

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::Duration;

use crate::config::model::{Config, CpuAffinity, EventMethod, RunAs, WorkerProcesses};
use crate::log;

pub use worker::{ConnGuard, ShardCtx};

/// Which io driver the shards run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Driver {
    /// io_uring.
    IoUring,
    /// epoll (monoio's legacy driver).
    Epoll,
}

/// Picks the driver: forced epoll by `RINGPROXY_DRIVER=epoll` or `use epoll`, else io_uring when
/// the kernel allows it, else epoll with one notice (never a failure: DESIGN.md, decision 1).
pub fn choose_driver(config: &Config) -> Driver {
    let forced = std::env::var("RINGPROXY_DRIVER").is_ok_and(|v| v.eq_ignore_ascii_case("epoll"))
        || config.events.method == Some(EventMethod::Epoll);
    if forced {
        return Driver::Epoll;
    }
    if monoio::utils::detect_uring() {
        Driver::IoUring
    } else {
        log!(
            Notice,
            "io_uring is not available here, using the epoll driver"
        );
        Driver::Epoll
    }
}

fn shard_count(config: &Config) -> usize {
    match config.main.worker_processes {
        WorkerProcesses::Count(n) => n as usize,
        WorkerProcesses::Auto => std::thread::available_parallelism().map_or(1, |n| n.get()),
    }
}

/// The CPUs shard `i` may run on, from `worker_cpu_affinity` (`None`: not pinned). As nginx,
/// `auto` gives each shard one CPU of those allowed (and in the mask), in turn; an explicit
/// mask gives the shard every CPU it names, the last mask serving the shards beyond the list.
fn cpus_for(config: &Config, i: usize) -> Option<Vec<usize>> {
    let set = |mask: &[bool]| -> Vec<usize> {
        mask.iter()
            .enumerate()
            .filter(|&(_, &on)| on)
            .map(|(cpu, _)| cpu)
            .collect()
    };
    match config.main.worker_cpu_affinity.as_ref()? {
        CpuAffinity::Auto(mask) => {
            let allowed: Vec<usize> = core_affinity::get_core_ids()?
                .iter()
                .map(|c| c.id)
                .filter(|&c| {
                    mask.as_ref()
                        .is_none_or(|m| m.get(c).copied().unwrap_or(false))
                })
                .collect();
            allowed.get(i % allowed.len().max(1)).map(|&c| vec![c])
        }
        CpuAffinity::Masks(masks) => masks.get(i).or(masks.last()).map(|m| set(m)),
    }
}

/// How the process was asked to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    Fast,
    Graceful,
}

/// Raises the soft `RLIMIT_NOFILE` to `worker_rlimit_nofile` (and the hard limit when allowed).
fn raise_nofile(n: u64) {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let cur = getrlimit(Resource::Nofile);
    let max = cur.maximum.map_or(n, |m| m.max(n));
    let want = Rlimit {
        current: Some(n),
        maximum: Some(max),
    };
    if setrlimit(Resource::Nofile, want).is_err() {
        let capped = Rlimit {
            current: Some(cur.maximum.map_or(n, |m| m.min(n))),
            maximum: cur.maximum,
        };
        if let Err(e) = setrlimit(Resource::Nofile, capped) {
            log!(
                Alert,
                "setrlimit(RLIMIT_NOFILE, {n}) failed ({})",
                crate::config::os_error(&e.into())
            );
        }
    }
}

/// Runs the proxy until it is told to stop. Errors are nginx's `[emerg]` texts.
pub fn run(config: Arc<Config>) -> Result<(), String> {
    if let Some(n) = config.main.worker_rlimit_nofile {
        raise_nofile(n);
    }
    let Some(http) = config.http.as_ref() else {
        return Err("no \"http\" section in configuration: nothing to serve".into());
    };
    let specs = listener::specs(http);
    let shards = shard_count(&config);
    let mut sockets = Vec::with_capacity(shards);
    for _ in 0..shards {
        let mut mine = Vec::with_capacity(specs.len());
        for spec in &specs {
            mine.push((spec.clone(), listener::bind(spec)?));
        }
        sockets.push(mine);
    }
    if config.main.daemon {
        crate::sys::daemonize()
            .map_err(|e| format!("daemon() failed ({})", crate::config::os_error(&e)))?;
    }
    let driver = choose_driver(&config);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
    let mut controls = Vec::with_capacity(shards);
    let mut threads = Vec::with_capacity(shards);
    for (i, socks) in sockets.into_iter().enumerate() {
        let (ours, theirs) =
            UnixStream::pair().map_err(|e| format!("socketpair() failed ({e})"))?;
        controls.push(ours);
        let config = config.clone();
        let ready = ready_tx.clone();
        let cpus = cpus_for(&config, i);
        let t = std::thread::Builder::new()
            .name(format!("ringproxy-shard-{i}"))
            .spawn(move || {
                log::set_shard(i + 1);
                if let Some(cpus) = cpus {
                    for c in &cpus {
                        log!(Notice, "sched_setaffinity(): using cpu #{c}");
                    }
                    if let Err(e) = crate::sys::set_thread_affinity(&cpus) {
                        log!(
                            Alert,
                            "sched_setaffinity() failed ({})",
                            crate::config::os_error(&e)
                        );
                    }
                }
                worker::run(i, config, socks, theirs, driver, ready);
            })
            .map_err(|e| format!("cannot start shard {i}: {e}"))?;
        threads.push(t);
    }
    drop(ready_tx);
    for _ in 0..shards {
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err("a shard stopped while starting".into()),
        }
    }
    let pid_path = config.main.pid.clone();
    std::fs::write(&pid_path, format!("{}\n", std::process::id())).map_err(|e| {
        format!(
            "open() \"{}\" failed ({})",
            pid_path.display(),
            crate::config::os_error(&e)
        )
    })?;
    if let Some(run_as) = &config.main.user {
        if let Err(e) = drop_privileges(run_as) {
            let _ = std::fs::remove_file(&pid_path);
            return Err(e);
        }
    }
    let stop = wait_for_stop(&mut controls);
    let _ = std::fs::remove_file(&pid_path);
    if stop == Stop::Fast {
        log!(Notice, "exiting");
        return Ok(());
    }
    for mut c in controls {
        let _ = c.write_all(b"Q");
    }
    let limit = config.main.worker_shutdown_timeout;
    let deadline = limit.map(|d| std::time::Instant::now() + d + Duration::from_secs(1));
    for t in threads {
        while !t.is_finished() {
            if deadline.is_some_and(|d| std::time::Instant::now() > d) {
                log!(Notice, "exiting");
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = t.join();
    }
    log!(Notice, "exiting");
    Ok(())
}

/// `user`: once every listener, log file and the pid file is open, the whole process (every
/// shard thread: glibc applies set*id to all threads) becomes `user`, as nginx's workers do:
/// setgid, initgroups, setuid, in nginx's order and with its messages.
fn drop_privileges(run_as: &RunAs) -> Result<(), String> {
    use nix::unistd::{geteuid, initgroups, setgid, setuid, Gid, Uid};
    if !geteuid().is_root() {
        return Ok(());
    }
    let os = |e: nix::Error| crate::config::os_error(&std::io::Error::from(e));
    setgid(Gid::from_raw(run_as.gid))
        .map_err(|e| format!("setgid({}) failed ({})", run_as.gid, os(e)))?;
    let name = std::ffi::CString::new(run_as.user.as_str()).map_err(|e| e.to_string())?;
    initgroups(&name, Gid::from_raw(run_as.gid)).map_err(|e| {
        format!(
            "initgroups({}, {}) failed ({})",
            run_as.user,
            run_as.gid,
            os(e)
        )
    })?;
    setuid(Uid::from_raw(run_as.uid))
        .map_err(|e| format!("setuid({}) failed ({})", run_as.uid, os(e)))
}

fn wait_for_stop(controls: &mut [UnixStream]) -> Stop {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1};
    let mut signals =
        match signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1]) {
            Ok(s) => s,
            Err(e) => {
                log!(Alert, "cannot install signal handlers: {e}");
                // Without handlers the default actions apply; park until one of them ends us.
                loop {
                    std::thread::park();
                }
            }
        };
    loop {
        for sig in signals.wait() {
            match sig {
                SIGTERM | SIGINT => {
                    log!(Notice, "signal {sig} received, exiting");
                    return Stop::Fast;
                }
                SIGQUIT => {
                    log!(
                        Notice,
                        "signal {sig} (SIGQUIT) received, shutting down gracefully"
                    );
                    return Stop::Graceful;
                }
                SIGUSR1 => {
                    log!(Notice, "signal {sig} (SIGUSR1) received, reopening logs");
                    log::reopen();
                    for c in controls.iter_mut() {
                        let _ = c.write_all(b"R");
                    }
                }
                SIGHUP => {
                    log!(Notice, "signal {sig} (SIGHUP) received: reload is not implemented yet, configuration unchanged");
                }
                _ => {}
            }
        }
    }
}
