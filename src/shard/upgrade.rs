//! Binary upgrade on USR2, as nginx's "upgrading executable on the fly".
//!
//! The running (old) binary renames its pid file to `<pid>.oldbin` and starts the executable it
//! was started from, with the same arguments, handing it every listening socket: the
//! descriptors stay open across exec and are named in `RINGPROXY_LISTEN=fd;fd;...` (nginx's
//! `NGINX` variable). The new binary adopts an inherited socket whose address (getsockname)
//! matches a `listen` instead of binding it, binds what is missing, closes the rest and writes
//! the pid file; both then accept on the same sockets, so no connection is refused or reset.
//! WINCH makes the old one stop accepting (it stays: HUP starts its shards again), QUIT makes it
//! exit gracefully. If the new binary exits, or has not written its pid file within
//! `START_DEADLINE`, the old one renames `.oldbin` back and keeps serving.
//!
//! With the sockets goes the hand-over channel (`handoff`, `RINGPROXY_HANDOFF`): once the new
//! binary has started, WINCH and QUIT hand the old binary's plain tunnels over to it instead of
//! draining them.
//!
//! A socket another ringproxy holds is never shut down (`shutdown(2)` acts on the socket, for
//! every process holding it): stopping closes only this process's descriptors, after each
//! shard's accept in flight has been cancelled and its outcome served (`worker::accept_loop`).

use std::ffi::OsString;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::listener::ListenSpec;
use crate::log;

/// The environment variable naming the inherited listening sockets.
pub const LISTEN_ENV: &str = "RINGPROXY_LISTEN";

/// The environment variable naming the pipe on which the new binary says it has started.
const READY_ENV: &str = "RINGPROXY_READY";

/// How long the new binary has to write its pid file.
const START_DEADLINE: Duration = Duration::from_secs(10);

/// The executable and arguments the process was started with, resolved at start: the file at
/// that path may since have been replaced by the new version, which is the point.
/// (`/proc/self/exe` would name the old, deleted file.)
pub struct Exe {
    path: PathBuf,
    args: Vec<OsString>,
}

impl Exe {
    /// `argv[0]` made absolute against the start directory when it names a path (a bare name
    /// is looked up in `PATH` again, as the shell did), and the other arguments.
    pub fn at_start() -> Exe {
        let mut argv = std::env::args_os();
        let argv0 = PathBuf::from(argv.next().unwrap_or_else(|| "ringproxy".into()));
        let path = if argv0.components().count() > 1 {
            std::path::absolute(&argv0).unwrap_or(argv0)
        } else {
            argv0
        };
        Exe {
            path,
            args: argv.collect(),
        }
    }
}

/// The identity of a socket (its inode): the same for every descriptor of it, in any process.
fn identity(socket: &TcpListener) -> Option<u64> {
    rustix::fs::fstat(socket).ok().map(|s| s.st_ino)
}

/// Listening sockets inherited from the old binary (`RINGPROXY_LISTEN`), by address.
#[derive(Default)]
pub struct Inherited {
    sockets: Vec<(SocketAddr, TcpListener)>,
    identities: Vec<u64>,
    parent: Option<rustix::process::Pid>,
    /// Where to say that this process has started (`RINGPROXY_READY`).
    ready: Option<std::os::fd::OwnedFd>,
    /// Where the old binary hands its tunnels over (`RINGPROXY_HANDOFF`).
    pub handoff: Option<std::os::fd::OwnedFd>,
}

impl Inherited {
    /// The sockets named in the environment (nginx's notice and messages).
    pub fn from_env() -> Inherited {
        let Some(value) = std::env::var_os(LISTEN_ENV) else {
            return Inherited::default();
        };
        let value = value.to_string_lossy().into_owned();
        log!(Notice, "using inherited sockets from \"{value}\"");
        let mut out = Inherited {
            parent: rustix::process::getppid(),
            ready: std::env::var(READY_ENV)
                .ok()
                .and_then(|v| v.parse().ok())
                .and_then(crate::sys::adopt_fd),
            handoff: super::handoff::from_env(),
            ..Inherited::default()
        };
        let mut seen = Vec::new();
        for part in value.split([';', ':']).filter(|p| !p.is_empty()) {
            let Some(fd) = part.parse::<i32>().ok().filter(|fd| !seen.contains(fd)) else {
                log!(
                    Emerg,
                    "invalid socket number \"{part}\" in {LISTEN_ENV} environment variable, \
                     ignoring the rest of the variable"
                );
                break;
            };
            seen.push(fd);
            let Some(socket) = crate::sys::adopt_listener(fd) else {
                log!(
                    Emerg,
                    "invalid socket number \"{part}\" in {LISTEN_ENV} environment variable, \
                     ignoring the rest of the variable"
                );
                break;
            };
            if let (Ok(addr), Some(id)) = (socket.local_addr(), identity(&socket)) {
                out.identities.push(id);
                out.sockets.push((addr, socket));
            }
        }
        out
    }

    /// An inherited socket bound to `addr`, if one is left.
    pub fn take(&mut self, addr: SocketAddr) -> Option<TcpListener> {
        let i = self.sockets.iter().position(|(a, _)| *a == addr)?;
        Some(self.sockets.swap_remove(i).1)
    }

    /// Every socket left whose address is one of `specs` (the old binary ran more shards: each
    /// socket of an address's SO_REUSEPORT group needs an acceptor here, or the connections the
    /// kernel queues on it would wait for a process that stops accepting).
    pub fn take_matching(&mut self, specs: &[ListenSpec]) -> Vec<(ListenSpec, TcpListener)> {
        let mut out = Vec::new();
        for spec in specs {
            while let Some(s) = self.take(spec.addr) {
                out.push((spec.clone(), s));
            }
        }
        out
    }

    /// Closes the sockets no `listen` asked for (closed, not shut down: the old binary may
    /// still accept on them).
    pub fn close_rest(&mut self) {
        self.sockets.clear();
    }
}

/// What the watcher of a new binary and the main thread share.
#[derive(Default)]
struct State {
    /// The new binary's pid while it runs (the pid file is then `.oldbin`).
    child: Option<u32>,
    /// The process is exiting: the pid file is no longer renamed back.
    exiting: bool,
}

/// The process's part in binary upgrades: as the old binary (USR2) and as the new one.
pub struct Upgrade {
    exe: Exe,
    pid_path: PathBuf,
    state: Arc<Mutex<State>>,
    /// Sockets inherited from the old binary, by identity, and the old binary's pid.
    inherited: Vec<u64>,
    parent: Option<rustix::process::Pid>,
    /// The old binary's pipe, told once the pid file is written.
    ready: Mutex<Option<std::os::fd::OwnedFd>>,
}

impl Upgrade {
    /// `pid_path` is the pid file; `inherited` what this process took from an old binary.
    pub fn new(exe: Exe, pid_path: PathBuf, inherited: &mut Inherited) -> Upgrade {
        Upgrade {
            ready: Mutex::new(inherited.ready.take()),
            exe,
            pid_path,
            state: Arc::default(),
            inherited: inherited.identities.clone(),
            parent: inherited.parent,
        }
    }

    /// Once the pid file is written: tells the old binary that started this one (if any).
    pub fn announce(&self) {
        if let Some(fd) = self.ready.lock().ok().and_then(|mut r| r.take()) {
            let _ = rustix::io::write(&fd, b"1");
        }
    }

    fn oldbin(&self) -> PathBuf {
        let mut p = self.pid_path.clone().into_os_string();
        p.push(".oldbin");
        PathBuf::from(p)
    }

    /// Whether the old binary that started this process still runs (it is still the parent).
    fn old_binary_runs(&self) -> bool {
        !self.inherited.is_empty()
            && self.parent.is_some()
            && rustix::process::getppid() == self.parent
    }

    fn child(&self) -> Option<u32> {
        self.state.lock().map(|s| s.child).unwrap_or(None)
    }

    /// Whether another ringproxy may accept on `socket`: our new binary (it got every socket),
    /// or the old binary we inherited it from.
    pub fn shared(&self, socket: &TcpListener) -> bool {
        self.child().is_some()
            || (self.old_binary_runs()
                && identity(socket).is_some_and(|i| self.inherited.contains(&i)))
    }

    /// Whether a stop hands the plain tunnels over to the new binary: it runs, has started,
    /// and the channel to it is open.
    pub fn hands_over(&self) -> bool {
        self.child().is_some() && super::handoff::outbox_open()
    }

    /// Whether any of our sockets may be held by another ringproxy.
    pub fn sharing(&self) -> bool {
        self.child().is_some() || self.old_binary_runs()
    }

    /// USR2: starts the new binary with `sockets` (this process's descriptors of every
    /// listening socket). Logs what happened; on failure nothing changes.
    pub fn start(&self, sockets: Vec<i32>) {
        if self.child().is_some() || self.old_binary_runs() {
            log!(
                Alert,
                "the changing binary signal is ignored: you should shutdown or terminate \
                 before either old or new binary's process"
            );
            return;
        }
        let oldbin = self.oldbin();
        if let Err(e) = std::fs::rename(&self.pid_path, &oldbin) {
            log!(
                Alert,
                "rename() {} to {} failed ({})",
                self.pid_path.display(),
                oldbin.display(),
                crate::config::os_error(&e)
            );
            return;
        }
        let names: String = sockets.iter().map(|fd| format!("{fd};")).collect();
        let pipe = rustix::pipe::pipe_with(
            rustix::pipe::PipeFlags::CLOEXEC | rustix::pipe::PipeFlags::NONBLOCK,
        );
        let (ready, tell) = match pipe {
            Ok(p) => p,
            Err(e) => {
                log!(
                    Alert,
                    "pipe() failed ({})",
                    crate::config::os_error(&e.into())
                );
                self.rename_back(&oldbin);
                return;
            }
        };
        // No channel, no hand-over: the tunnels then drain here, as nginx's would.
        let (handoff, theirs) = match super::handoff::pair() {
            Ok((ours, theirs)) => (Some(ours), Some(theirs)),
            Err(e) => {
                log!(
                    Alert,
                    "socketpair() failed ({}): tunnels will not be handed over",
                    crate::config::os_error(&e)
                );
                (None, None)
            }
        };
        let mut keep = sockets;
        keep.push(tell.as_raw_fd());
        let mut cmd = Command::new(&self.exe.path);
        cmd.args(&self.exe.args)
            .env(LISTEN_ENV, names)
            .env(READY_ENV, tell.as_raw_fd().to_string());
        match &theirs {
            Some(theirs) => {
                keep.push(theirs.as_raw_fd());
                cmd.env(super::handoff::HANDOFF_ENV, theirs.as_raw_fd().to_string());
            }
            // Inherited from our own old binary, it would name a descriptor of ours.
            None => {
                cmd.env_remove(super::handoff::HANDOFF_ENV);
            }
        }
        let spawned = crate::sys::spawn_keeping(&mut cmd, keep);
        drop(tell);
        // Only the new binary holds its end: when it exits, a send fails instead of queuing.
        drop(theirs);
        let child = match spawned {
            Ok(c) => c,
            Err(e) => {
                log!(
                    Alert,
                    "execve() failed while executing new binary process \"{}\" ({})",
                    self.exe.path.display(),
                    crate::config::os_error(&e)
                );
                self.rename_back(&oldbin);
                return;
            }
        };
        log!(Notice, "start new binary process {}", child.id());
        if let Ok(mut s) = self.state.lock() {
            s.child = Some(child.id());
        }
        let watcher = Watcher {
            ready,
            handoff,
            pid_path: self.pid_path.clone(),
            oldbin,
            state: self.state.clone(),
        };
        std::thread::spawn(move || watcher.watch(child));
    }

    fn rename_back(&self, oldbin: &std::path::Path) {
        rename_back(oldbin, &self.pid_path);
    }

    /// At exit: removes this process's pid file (`.oldbin` while a new binary runs), and
    /// keeps the watcher from renaming it back afterwards.
    pub fn remove_pid_file(&self) {
        let Ok(mut s) = self.state.lock() else {
            return;
        };
        s.exiting = true;
        let path = if s.child.is_some() {
            self.oldbin()
        } else {
            self.pid_path.clone()
        };
        let _ = std::fs::remove_file(path);
    }
}

fn rename_back(oldbin: &std::path::Path, pid_path: &std::path::Path) {
    if let Err(e) = std::fs::rename(oldbin, pid_path) {
        log!(
            Alert,
            "rename() {} back to {} failed ({})",
            oldbin.display(),
            pid_path.display(),
            crate::config::os_error(&e)
        );
    }
}

/// Watches a new binary from the old one: its start (it writes a byte on `ready` once its pid
/// file is written), and its exit.
struct Watcher {
    ready: std::os::fd::OwnedFd,
    /// The old binary's end of the hand-over channel, opened once the new binary has started.
    handoff: Option<std::os::fd::OwnedFd>,
    pid_path: PathBuf,
    oldbin: PathBuf,
    state: Arc<Mutex<State>>,
}

impl Watcher {
    fn watch(mut self, mut child: Child) {
        let pid = child.id();
        let deadline = Instant::now() + START_DEADLINE;
        let mut started = false;
        let why = loop {
            // Read before the exit is looked at: a byte written by a binary that has exited
            // since is still in the pipe.
            let mut byte = [0u8; 1];
            if !started && rustix::io::read(&self.ready, &mut byte).is_ok_and(|n| n == 1) {
                started = true;
                log!(Notice, "new binary process {pid} started");
                if let Some(ours) = self.handoff.take() {
                    super::handoff::open_outbox(ours);
                }
            }
            match child.try_wait() {
                Ok(Some(status)) => {
                    break if started {
                        format!("new binary process {pid} exited ({status})")
                    } else {
                        format!("new binary process {pid} failed to start ({status})")
                    }
                }
                Ok(None) => {}
                Err(e) => break format!("new binary process {pid}: waitpid() failed ({e})"),
            }
            if !started && Instant::now() > deadline {
                let _ = crate::sys::kill(pid as i32, libc::SIGKILL);
                let _ = child.wait();
                break format!(
                    "new binary process {pid} did not write its pid file within {} s, killed",
                    START_DEADLINE.as_secs()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        super::handoff::close_outbox();
        let Ok(mut s) = self.state.lock() else {
            return;
        };
        if s.exiting || s.child != Some(pid) {
            return;
        }
        s.child = None;
        if started {
            log!(Notice, "{why}; the old binary serves alone again");
        } else {
            log!(Alert, "{why}; the old binary keeps serving");
        }
        rename_back(&self.oldbin, &self.pid_path);
    }
}
