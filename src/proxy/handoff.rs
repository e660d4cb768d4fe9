//! A tunnel's task, and its move to a new binary (binary upgrade).
//!
//! [`carry`] runs a tunnel to its end. When the tunnel stops to move ([`End::HandOver`]: both
//! sides plain, no byte held, both directions open), its state is written as a fixed record
//! and sent with its two sockets on the hand-over channel (`crate::shard::handoff`); if that
//! fails the tunnel resumes here, on the same sockets, and drains as on any graceful stop. In
//! the new binary [`adopt`] turns a record and its sockets back into a tunnel on the shard it
//! was dealt to, counted in its connections, run by the same [`carry`].
//!
//! What moves: the two sockets (with everything the kernel holds for them: queued bytes,
//! options such as TCP_NODELAY), the timeouts (`proxy_read_timeout`, `send_timeout`,
//! `proxy_send_timeout`) and the forwarding path the tunnel opened with, where each direction
//! of a WebSocket stands frame-wise, and the client's address for the log. What does not: the
//! upstream peer's `max_conns` slot (the new binary's balancer does not count it) and the
//! idle time so far (the idle timeout starts again).

use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

use super::conn::Stream;
use super::frames::{Frames, STATE_LEN as FRAMES_LEN};
use super::tunnel::{self, End, Path, TunnelConfig};
use crate::log;
use crate::shard::handoff::Arrived;
use crate::shard::Shard;
use crate::sys::fd;

/// The record's version: a new binary refuses what it cannot read (the tunnel is closed).
const VERSION: u8 = 1;

/// Bytes of a tunnel's record.
pub const STATE_LEN: usize = 2 + 3 * 8 + 1 + 2 * FRAMES_LEN + 19;

/// Runs a tunnel on `client` and `upstream` until it ends, or has moved to a new binary;
/// `guards` (connection counts, peer slot) are held until then.
///
/// A plain function returning a block, not an `async fn`: the block holds each argument once
/// (an `async fn` may hold its arguments twice, rust-lang/rust#62958), so the task of an idle
/// tunnel is no bigger than it was before the hand-over existed.
#[allow(clippy::manual_async_fn)]
pub fn carry<G: 'static>(
    guards: G,
    client: Stream,
    upstream: Stream,
    cfg: TunnelConfig,
    peer: SocketAddr,
) -> impl std::future::Future<Output = ()> {
    async move {
        let outcome = tunnel::run(&client, &upstream, cfg).await;
        let End::HandOver(now) = outcome.end else {
            log_end(&outcome.end, peer);
            return;
        };
        let sent = send(&now, &client, &upstream, peer);
        match sent {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                // A task of its own for the wait: this future stays the size it was.
                monoio::spawn(send_when_room(guards, client, upstream, now, peer));
            }
            sent => settle(sent, guards, client, upstream, now, peer),
        }
    }
}

/// How long a tunnel waits for room on a full channel (thousands moving at once, the new
/// binary still reading) before it stays and drains here. It holds no byte meanwhile: what
/// arrives waits in the kernel's socket buffers and moves with the sockets.
const ROOM_WAIT: Duration = Duration::from_secs(10);

fn send(
    now: &TunnelConfig,
    client: &Stream,
    upstream: &Stream,
    peer: SocketAddr,
) -> std::io::Result<()> {
    match (client.plain(), upstream.plain()) {
        (Some(c), Some(u)) => crate::shard::handoff::send(&encode(now, peer), fd(c), fd(u)),
        // `run` asks only plain tunnels to move.
        _ => Err(std::io::ErrorKind::Unsupported.into()),
    }
}

/// Retries a hand-over the full channel refused, a few milliseconds apart, up to `ROOM_WAIT`.
async fn send_when_room<G: 'static>(
    guards: G,
    client: Stream,
    upstream: Stream,
    now: TunnelConfig,
    peer: SocketAddr,
) {
    let deadline = std::time::Instant::now() + ROOM_WAIT;
    let sent = loop {
        monoio::time::sleep(Duration::from_millis(2)).await;
        match send(&now, &client, &upstream, peer) {
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    && std::time::Instant::now() < deadline => {}
            sent => break sent,
        }
    };
    settle(sent, guards, client, upstream, now, peer);
}

/// After a send: the tunnel has moved (this process lets its sockets and counts go), or it
/// resumes here and the shard's tunnels drain.
fn settle<G: 'static>(
    sent: std::io::Result<()>,
    guards: G,
    client: Stream,
    upstream: Stream,
    now: TunnelConfig,
    peer: SocketAddr,
) {
    match sent {
        Ok(()) => {
            log!(
                Info,
                "tunnel handed over to the new binary, client: {}",
                peer.ip()
            );
            // The kernel holds the sockets for the new binary: this process may let them
            // go (and exit, once its other connections are gone).
            drop(guards);
        }
        Err(e) => {
            log!(
                Notice,
                "cannot hand a tunnel over to the new binary ({}): the shard's tunnels \
                 drain here, client: {}",
                crate::config::os_error(&e),
                peer.ip()
            );
            super::idle::cancel_handoff();
            // A task of its own, not a loop here: the tunnel's future stays as it was.
            monoio::spawn(carry(guards, client, upstream, now, peer));
        }
    }
}

fn log_end(end: &End, peer: SocketAddr) {
    match end {
        End::Closed | End::HandOver(_) => {}
        End::ShutdownTimeout => log!(Info, "upgraded connection closed at worker_shutdown_timeout after a reload, client: {}", peer.ip()),
        End::ReadTimeout => log!(Info, "upstream timed out (110: Connection timed out) while proxying upgraded connection, client: {}", peer.ip()),
        End::SendTimeout(side) => log!(Info, "{side:?} send timed out while proxying upgraded connection, client: {}", peer.ip()),
        End::Error(side, e) => log!(Info, "{side:?} error ({}) while proxying upgraded connection, client: {}", crate::config::os_error(e), peer.ip()),
    }
}

/// A tunnel's record: settings, frame trackers, client address.
pub fn encode(cfg: &TunnelConfig, peer: SocketAddr) -> [u8; STATE_LEN] {
    let mut out = [0u8; STATE_LEN];
    out[0] = VERSION;
    out[1] = match cfg.path {
        Path::Copy => 0,
        Path::Splice => 1,
        Path::Auto => 2,
    };
    let mut at = 2;
    for d in [
        cfg.read_timeout,
        cfg.client_send_timeout,
        cfg.upstream_send_timeout,
    ] {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        out[at..at + 8].copy_from_slice(&ms.to_le_bytes());
        at += 8;
    }
    if let Some(frames) = &cfg.frames {
        out[at] = 1;
        for (i, f) in frames.iter().enumerate() {
            let from = at + 1 + i * FRAMES_LEN;
            out[from..from + FRAMES_LEN].copy_from_slice(&f.to_bytes());
        }
    }
    at += 1 + 2 * FRAMES_LEN;
    let (family, ip) = match peer.ip() {
        IpAddr::V4(v4) => (4, v4.to_ipv6_mapped().octets()),
        IpAddr::V6(v6) => (6, v6.octets()),
    };
    out[at] = family;
    out[at + 1..at + 17].copy_from_slice(&ip);
    out[at + 17..at + 19].copy_from_slice(&peer.port().to_le_bytes());
    out
}

/// A record back into settings and the client's address; `None` if it is not one.
pub fn decode(b: &[u8]) -> Option<(TunnelConfig, SocketAddr)> {
    let b: &[u8; STATE_LEN] = b.try_into().ok()?;
    if b[0] != VERSION {
        return None;
    }
    let path = match b[1] {
        0 => Path::Copy,
        1 => Path::Splice,
        2 => Path::Auto,
        _ => return None,
    };
    let ms = |at: usize| {
        let mut v = [0u8; 8];
        v.copy_from_slice(&b[at..at + 8]);
        Duration::from_millis(u64::from_le_bytes(v))
    };
    let mut at = 2 + 3 * 8;
    let tracker = |i: usize| {
        let from = at + 1 + i * FRAMES_LEN;
        let mut f = [0u8; FRAMES_LEN];
        f.copy_from_slice(&b[from..from + FRAMES_LEN]);
        Frames::from_bytes(&f)
    };
    let frames = match b[at] {
        0 => None,
        1 => Some([tracker(0)?, tracker(1)?]),
        _ => return None,
    };
    at += 1 + 2 * FRAMES_LEN;
    let mut ip = [0u8; 16];
    ip.copy_from_slice(&b[at + 1..at + 17]);
    let ip = match b[at] {
        4 => IpAddr::V4(std::net::Ipv6Addr::from(ip).to_ipv4_mapped()?),
        6 => IpAddr::V6(ip.into()),
        _ => return None,
    };
    let port = u16::from_le_bytes([b[at + 17], b[at + 18]]);
    let cfg = TunnelConfig {
        read_timeout: ms(2),
        client_send_timeout: ms(10),
        upstream_send_timeout: ms(18),
        path,
        frames,
        // Set by `adopt`: the generation of the shard that takes it.
        generation: 0,
        half_close: true,
    };
    Some((cfg, SocketAddr::new(ip, port)))
}

/// Runs a tunnel handed over by the old binary on `shard`, counted as its two connections
/// (client and upstream, as `worker_connections` counts them). Over the limit it is still
/// taken: refusing would drop a live connection the old binary has already let go.
pub fn adopt(shard: &Rc<Shard>, tunnel: Arrived) {
    let Some((mut cfg, peer)) = decode(&tunnel.state) else {
        log!(
            Alert,
            "a tunnel handed over by the old binary has a record this binary cannot read: \
             it is closed"
        );
        return;
    };
    let stream = |s: std::os::fd::OwnedFd| -> std::io::Result<Stream> {
        let s = std::net::TcpStream::from(s);
        s.set_nonblocking(true)?;
        Ok(Stream::Plain(monoio::net::TcpStream::from_std(s)?))
    };
    let (client, upstream) = match (stream(tunnel.client), stream(tunnel.upstream)) {
        (Ok(c), Ok(u)) => (c, u),
        (Err(e), _) | (_, Err(e)) => {
            log!(
                Alert,
                "cannot run a tunnel handed over by the old binary ({}), client: {}",
                crate::config::os_error(&e),
                peer.ip()
            );
            return;
        }
    };
    log!(
        Info,
        "tunnel taken over from the old binary, client: {}",
        peer.ip()
    );
    // A later reload with `worker_shutdown_timeout` winds it down with the generation it
    // arrived under.
    cfg.generation = shard.current().map_or(0, |g| g.serial);
    let guards = (shard.hold(), shard.hold());
    monoio::spawn(carry(guards, client, upstream, cfg, peer));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_gives_back_the_settings_and_trackers_it_was_made_from() {
        let mut up = Frames::default();
        // A masked frame of 300 bytes, header whole, 100 bytes of payload gone by.
        up.feed(&[0x82, 0xFE, 0x01, 0x2C, 1, 2, 3, 4]);
        up.feed(&[0u8; 100]);
        let mut down = Frames::default();
        // Half a 64-bit length header.
        down.feed(&[0x81, 0x7F, 0, 0]);
        let cfg = TunnelConfig {
            read_timeout: Duration::from_secs(3600),
            client_send_timeout: Duration::from_millis(1500),
            upstream_send_timeout: Duration::from_secs(7),
            path: Path::Auto,
            frames: Some([up, down]),
            generation: 0,
            half_close: true,
        };
        for peer in ["127.0.0.1:40000", "[::1]:65535"] {
            let peer: SocketAddr = peer.parse().unwrap();
            let (back, at) = decode(&encode(&cfg, peer)).expect("a record");
            assert_eq!(at, peer);
            assert_eq!(back.read_timeout, cfg.read_timeout);
            assert_eq!(back.client_send_timeout, cfg.client_send_timeout);
            assert_eq!(back.upstream_send_timeout, cfg.upstream_send_timeout);
            assert_eq!(back.path, Path::Auto);
            let [u, d] = back.frames.expect("trackers");
            assert_eq!((u, d), (up, down));
            assert_eq!(u.left(), 200);
            assert!(d.in_header() && !d.at_boundary());
        }
        let plain = TunnelConfig {
            frames: None,
            path: Path::Splice,
            ..cfg
        };
        let (back, _) = decode(&encode(&plain, "10.0.0.1:1".parse().unwrap())).unwrap();
        assert!(back.frames.is_none());
        assert_eq!(back.path, Path::Splice);
    }

    #[test]
    fn a_damaged_record_is_refused() {
        let cfg = TunnelConfig {
            read_timeout: Duration::from_secs(60),
            client_send_timeout: Duration::from_secs(60),
            upstream_send_timeout: Duration::from_secs(60),
            path: Path::Copy,
            frames: Some([Frames::default(), Frames::default()]),
            generation: 0,
            half_close: true,
        };
        let good = encode(&cfg, "127.0.0.1:1".parse().unwrap());
        assert!(decode(&good).is_some());
        assert!(decode(&good[..STATE_LEN - 1]).is_none(), "short");
        let mut bad = good;
        bad[0] = 9;
        assert!(decode(&bad).is_none(), "another version");
        let mut bad = good;
        bad[1] = 3;
        assert!(decode(&bad).is_none(), "no such path");
        let mut bad = good;
        // The first tracker's `have`: more header bytes than a header has.
        bad[2 + 24 + 1 + crate::ws::MAX_HEADER_LEN] = 20;
        assert!(decode(&bad).is_none(), "impossible tracker");
    }
}

#[cfg(test)]
mod size {
    use super::*;

    fn pair() -> (Stream, Stream) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let a = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (b, _) = l.accept().unwrap();
        let plain = |s| Stream::Plain(monoio::net::TcpStream::from_std(s).unwrap());
        (plain(a), plain(b))
    }

    /// What an idle tunnel costs lies mostly in its task's future: the hand-over must not add
    /// to it. Before the hand-over existed `tunnel::run`'s future was 984 bytes, and the task
    /// was a block holding the guards, both streams, the settings, the peer and that future.
    #[test]
    fn the_hand_over_adds_nothing_to_an_idle_tunnel() {
        let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .unwrap();
        rt.block_on(async {
            let cfg = TunnelConfig {
                read_timeout: Duration::from_secs(1),
                client_send_timeout: Duration::from_secs(1),
                upstream_send_timeout: Duration::from_secs(1),
                path: Path::Auto,
                frames: None,
                generation: 0,
                half_close: true,
            };
            let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
            let (a, b) = pair();
            let run = std::mem::size_of_val(&tunnel::run(&a, &b, cfg));
            assert!(run <= 984, "tunnel::run's future grew to {run} bytes");
            // The task as it was, on today's `run`.
            let before = async move {
                let _guards = ((), ());
                let outcome = tunnel::run(&a, &b, cfg).await;
                log_end(&outcome.end, peer);
            };
            let before = std::mem::size_of_val(&before);
            let (a, b) = pair();
            let task = std::mem::size_of_val(&carry(((), ()), a, b, cfg, peer));
            assert!(
                task <= before,
                "the tunnel's task: {task} bytes, {before} before"
            );
        });
    }
}
