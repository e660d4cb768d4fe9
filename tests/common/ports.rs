//! Listen ports for the proxies the tests start, and the check that a started proxy is alone on
//! its ports.
//!
//! The proxy needs a port number in its configuration, so a test picks one and releases it
//! before ringproxy binds it; ringproxy binds with SO_REUSEPORT, so a second listener on the same
//! port (another test's proxy, here or in a test binary running beside this one) would not make
//! its bind fail: the two would silently share the connections. Two defences:
//!
//! - `free_port` never hands out a port twice in one test binary, and picks it below the kernel's
//!   ephemeral range (`ip_local_port_range`), where no `bind(0)` backend and no client
//!   connection can be given it between the pick and the proxy's bind;
//! - `assert_sole_listener` (run by `Proxy` once it has started and again at teardown) fails
//!   the test, naming the other process, when any listening socket on a port the proxy listens
//!   on is not the proxy's own.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{BuildHasher, Hasher};
use std::sync::Mutex;

static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// Ports below this are picked from (the bottom of the ephemeral range, 32768 by default).
fn ephemeral_low() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768)
}

/// A random number (std's hasher keys come from the OS's randomness).
fn random() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.finish()
}

/// A TCP port on 127.0.0.1 that nothing listens on now and that no other test of this binary
/// has been given, outside the ephemeral range (see the module doc).
pub fn free_port() -> u16 {
    let high = ephemeral_low();
    let low = high.saturating_sub(16384).max(1024);
    assert!(
        high > low + 1000,
        "ip_local_port_range leaves no room below it"
    );
    let mut handed = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..10_000 {
        let port = low + (random() % u64::from(high - low)) as u16;
        if handed.contains(&port) {
            continue;
        }
        // Fails when anything is bound to it (a listener of any process, a connection).
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            handed.insert(port);
            return port;
        }
    }
    panic!("no free port in {low}..{high}");
}

/// One row of /proc/net/tcp{,6} in LISTEN state.
struct Listening {
    port: u16,
    inode: u64,
    uid: u32,
}

fn listening_sockets() -> Vec<Listening> {
    let mut out = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // sl local rem st tx:rx tr:when retrnsmt uid timeout inode ...
            if f.len() < 10 || f[3] != "0A" {
                continue;
            }
            let port = f[1]
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            if let (Some(port), Ok(uid), Ok(inode)) = (port, f[7].parse(), f[9].parse()) {
                out.push(Listening { port, inode, uid });
            }
        }
    }
    out
}

/// The socket inodes process `pid` holds open.
fn socket_inodes(pid: i32) -> BTreeSet<u64> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return BTreeSet::new();
    };
    dir.flatten()
        .filter_map(|e| {
            let target = std::fs::read_link(e.path()).ok()?;
            let t = target.to_str()?;
            t.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
        })
        .collect()
}

/// Who holds socket `inode`: "pid N (command line)", or what /proc/net/tcp says.
fn holder(inode: u64, uid: u32) -> String {
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if socket_inodes(pid).contains(&inode) {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            return format!("pid {pid} ({})", cmd.trim());
        }
    }
    format!("socket inode {inode} of uid {uid}, process not found")
}

/// Panics if a listening socket on any port process `pid` listens on belongs to someone else
/// (a port collision SO_REUSEPORT would otherwise hide). Returns the ports `pid` listens on.
pub fn assert_sole_listener(pid: i32) -> BTreeSet<u16> {
    let ours = socket_inodes(pid);
    let all = listening_sockets();
    let ports: BTreeSet<u16> = all
        .iter()
        .filter(|l| ours.contains(&l.inode))
        .map(|l| l.port)
        .collect();
    let mut foreign: BTreeMap<u16, Vec<String>> = BTreeMap::new();
    for l in &all {
        if ports.contains(&l.port) && !ours.contains(&l.inode) {
            foreign
                .entry(l.port)
                .or_default()
                .push(holder(l.inode, l.uid));
        }
    }
    assert!(
        foreign.is_empty(),
        "port collision: ringproxy (pid {pid}) shares its listening ports with other sockets \
         (SO_REUSEPORT would split its connections with them): {foreign:?}"
    );
    ports
}
