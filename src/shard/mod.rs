//! Shards: one OS thread per core, each running its own monoio runtime (io_uring, or the epoll
//! driver where io_uring is blocked or `use epoll`/`RINGPROXY_DRIVER=epoll` asks for it), pinned
//! to a core with `worker_cpu_affinity`, accepting on its own SO_REUSEPORT sockets. Nothing on the per-request path is
//! shared between shards: each owns its connections, pools, balancers and counters; they share
//! only the immutable `Arc<Config>`, whose one piece of run-time state is the per-peer atomic
//! count of open connections that `least_conn` and `random two` compare (lock-free).
//!
//! The main thread binds every socket, starts the shards, writes the pid file once every shard
//! is accepting, then turns signals into actions: TERM/INT stop at once, QUIT stops accepting and
//! lets requests and tunnels finish (up to `worker_shutdown_timeout`), USR1 reopens the logs,
//! HUP reloads the configuration (`reload`), USR2 starts a new binary on the same sockets and
//! WINCH stops accepting (`upgrade`). Started as root with `user`, the process drops to that user
//! once the pid file is written.

mod context;
pub mod event;
pub mod handoff;
pub mod listener;
mod reload;
mod upgrade;
mod worker;

use std::sync::Arc;

use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2, SIGWINCH};
use signal_hook::iterator::Signals;

use crate::config::model::{Config, CpuAffinity, EventMethod, RunAs, WorkerProcesses};
use crate::log;

pub use context::{ConnGuard, Shard, ShardCtx};
pub use reload::Reloader;
use reload::Shards;
pub use upgrade::Exe;
use upgrade::{Inherited, Upgrade};

/// Which io driver the shards run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Driver {
    /// io_uring.
    IoUring,
    /// epoll (monoio's legacy driver).
    Epoll,
}

/// Picks the driver: forced epoll by `RINGPROXY_DRIVER=epoll` or `use epoll`, else io_uring when
/// the kernel allows it, else epoll with one notice (never a failure: docs/architecture.md,
/// decision 1).
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

pub(crate) fn shard_count(config: &Config) -> usize {
    match config.main.worker_processes {
        WorkerProcesses::Count(n) => n as usize,
        WorkerProcesses::Auto => std::thread::available_parallelism().map_or(1, |n| n.get()),
    }
}

/// The CPUs shard `i` may run on, from `worker_cpu_affinity` (`None`: not pinned). As nginx,
/// `auto` gives each shard one CPU of those allowed (and in the mask), in turn; an explicit
/// mask gives the shard every CPU it names, the last mask serving the shards beyond the list.
pub(crate) fn cpus_for(config: &Config, i: usize) -> Option<Vec<usize>> {
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

/// Pins the calling shard thread to `cpus` with nginx's notices, or lets it run on every CPU
/// the process may use (`None`: a reload removed `worker_cpu_affinity`).
pub(crate) fn pin(cpus: Option<&[usize]>) {
    let all: Vec<usize>;
    let cpus = match cpus {
        Some(c) => {
            for cpu in c {
                log!(Notice, "sched_setaffinity(): using cpu #{cpu}");
            }
            c
        }
        None => {
            // Every CPU there can be: the kernel keeps those the process may use.
            all = (0..libc::CPU_SETSIZE as usize).collect();
            &all
        }
    };
    if let Err(e) = crate::sys::set_thread_affinity(cpus) {
        log!(
            Alert,
            "sched_setaffinity() failed ({})",
            crate::config::os_error(&e)
        );
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

/// Runs the proxy until it is told to stop; `reload` re-reads the configuration on HUP, `exe`
/// is what USR2 starts. Errors are nginx's `[emerg]` texts.
pub fn run(config: Arc<Config>, reload: Reloader, exe: Exe) -> Result<(), String> {
    if let Some(n) = config.main.worker_rlimit_nofile {
        raise_nofile(n);
    }
    if config.http.is_none() && config.stream.is_none() {
        return Err("no \"http\" section in configuration: nothing to serve".into());
    }
    // Before anything is bound: a TERM that comes while the shards start is handled (once
    // they have started), not the default action that would kill the process mid-start.
    let signals = Signals::new([SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2, SIGWINCH])
        .map_err(|e| format!("cannot install signal handlers ({e})"))?;
    let specs = listener::all_specs(&config);
    listener::check_shared(&specs)?;
    let mut inherited = Inherited::from_env();
    let mut sockets = Vec::new();
    for _ in 0..shard_count(&config) {
        sockets.push(reload::bind_or_adopt(&specs, &mut inherited)?);
    }
    for (k, extra) in inherited.take_matching(&specs).into_iter().enumerate() {
        let n = sockets.len();
        sockets[k % n].push(extra);
    }
    inherited.close_rest();
    let upgrade = Upgrade::new(exe, config.main.pid.clone(), &mut inherited);
    let handoff = inherited.handoff.take();
    // A new binary stays in the foreground of the old one, as nginx's: the old one watches it.
    if config.main.daemon && !upgrade.sharing() {
        crate::sys::daemonize()
            .map_err(|e| format!("daemon() failed ({})", crate::config::os_error(&e)))?;
    }
    let driver = choose_driver(&config);
    let count = sockets.len();
    let mut shards = Shards::start(config, driver, sockets)?;
    // Once every shard has its inbox: a tunnel dealt before would find none.
    if let Some(channel) = handoff {
        std::thread::Builder::new()
            .name("ringproxy-handoff".into())
            .spawn(move || handoff::receive(channel))
            .map_err(|e| format!("cannot start the hand-over thread: {e}"))?;
    }
    // Every shard runs the driver it was given (a shard whose runtime cannot be built fails
    // the start instead), so this names what runs; nginx's wording for its own choice.
    let method = match driver {
        Driver::IoUring => "io_uring",
        Driver::Epoll => "epoll",
    };
    let plural = if count == 1 { "" } else { "s" };
    log!(
        Notice,
        "using the \"{method}\" event method, {count} shard{plural}"
    );
    let outcome = serve(&mut shards, signals, &reload, &upgrade);
    shards.shut_listeners(&upgrade);
    outcome
}

/// Writes the pid file, drops privileges, and acts on signals until one stops the process.
fn serve(
    shards: &mut Shards,
    signals: Signals,
    reload: &Reloader,
    upgrade: &Upgrade,
) -> Result<(), String> {
    let config = shards.config().clone();
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
    upgrade.announce();
    let stop = wait_for_stop(signals, shards, reload, upgrade);
    upgrade.remove_pid_file();
    if stop == Stop::Graceful {
        shards.stop_gracefully(upgrade.sharing(), upgrade.hands_over());
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

fn wait_for_stop(
    mut signals: Signals,
    shards: &mut Shards,
    reload: &Reloader,
    upgrade: &Upgrade,
) -> Stop {
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
                    shards.tell_all(b'R');
                }
                SIGHUP if shards.accepting() => {
                    log!(Notice, "signal {sig} (SIGHUP) received, reconfiguring");
                    shards.reload(reload, upgrade.sharing());
                }
                SIGHUP => {
                    // After WINCH, as nginx: the shards start again on the same sockets and
                    // configuration (rolling an upgrade back), nothing is re-read.
                    log!(
                        Notice,
                        "signal {sig} (SIGHUP) received, starting the shards again"
                    );
                    if let Err(e) = shards.resume() {
                        log!(Alert, "{e}");
                    }
                }
                SIGUSR2 => {
                    log!(Notice, "signal {sig} (SIGUSR2) received, changing binary");
                    upgrade.start(shards.listening_fds());
                }
                SIGWINCH if std::io::IsTerminal::is_terminal(&std::io::stdin()) => {
                    // A terminal resize sends it to a foreground process: nginx honours it
                    // only when daemonized.
                    log!(Notice, "signal {sig} (SIGWINCH) received, ignoring");
                }
                SIGWINCH => {
                    log!(
                        Notice,
                        "signal {sig} (SIGWINCH) received, stop accepting connections"
                    );
                    shards.stop_accepting(upgrade.hands_over());
                }
                _ => {}
            }
        }
    }
}
