//! The channel on which an old binary hands its plain tunnels to the new one (binary upgrade).
//!
//! At USR2 the old binary creates a `SOCK_SEQPACKET` socket pair and names the new binary's
//! end in `RINGPROXY_HANDOFF`, as the listening sockets are named in `RINGPROXY_LISTEN`. Once
//! the new binary has said it started, the old one's end is the process's outbox
//! ([`open_outbox`]); its shards send each tunnel as one message: the tunnel's state
//! (`proxy::handoff`) with its two sockets as `SCM_RIGHTS`. A sent message holds the sockets in
//! the kernel, so nothing is lost if the old process exits right after. When the new binary
//! exits the outbox closes, and a send that fails leaves the tunnel where it was.
//!
//! In the new binary one thread ([`receive`]) reads the messages and deals the tunnels to the
//! shards in turn: each shard that runs registers an inbox ([`Inbox::open`]), a queue and a
//! socket pair whose byte wakes the shard's task that adopts what is queued.

use std::io::{self, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};

use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags, SocketFlags, SocketType,
};

use crate::log;

/// The environment variable naming the new binary's end of the channel.
pub const HANDOFF_ENV: &str = "RINGPROXY_HANDOFF";

/// The longest message: a tunnel's state (`proxy::handoff::STATE_LEN` is below it).
pub const MAX_MESSAGE: usize = 256;

/// A tunnel as it arrives: its state and its two sockets.
pub struct Arrived {
    /// The tunnel's state, as `proxy::handoff` wrote it.
    pub state: Vec<u8>,
    /// The client's socket.
    pub client: OwnedFd,
    /// The upstream's socket.
    pub upstream: OwnedFd,
}

/// The old binary's end, while its new binary runs and has started.
static OUTBOX: Mutex<Option<Arc<OwnedFd>>> = Mutex::new(None);

/// Whether this process was given a channel: its shards then open inboxes.
static RECEIVING: AtomicBool = AtomicBool::new(false);

/// The shards' inboxes, in the order tunnels are dealt to them.
static INBOXES: Mutex<Vec<Registered>> = Mutex::new(Vec::new());

/// Numbers the inboxes (a shard removes its own at its stop).
static NEXT_INBOX: AtomicU64 = AtomicU64::new(0);

struct Registered {
    id: u64,
    queue: Sender<Arrived>,
    /// One byte per delivery wakes the shard (non-blocking: a full buffer already will).
    bell: UnixStream,
}

/// A new socket pair for the channel: (the old binary's end, the new binary's end), both
/// close-on-exec (the new binary's end is made inheritable in the child only).
pub fn pair() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )?)
}

/// The new binary has started: tunnels may be sent on `ours`.
pub fn open_outbox(ours: OwnedFd) {
    if let Ok(mut o) = OUTBOX.lock() {
        *o = Some(Arc::new(ours));
    }
}

/// The new binary has exited (or the process is about to start another): nothing is sent
/// any more.
pub fn close_outbox() {
    if let Ok(mut o) = OUTBOX.lock() {
        *o = None;
    }
}

/// Whether tunnels can be sent.
pub fn outbox_open() -> bool {
    OUTBOX.lock().is_ok_and(|o| o.is_some())
}

/// Sends one tunnel: `state` and the two sockets, without waiting (a full channel is an
/// error: the tunnel then stays). On success the kernel holds the sockets for the new binary.
pub fn send(state: &[u8], client: BorrowedFd<'_>, upstream: BorrowedFd<'_>) -> io::Result<()> {
    let Some(out) = OUTBOX.lock().ok().and_then(|o| o.clone()) else {
        return Err(io::Error::new(
            io::ErrorKind::NotConnected,
            "the new binary is gone",
        ));
    };
    let fds = [client, upstream];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(2))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !control.push(SendAncillaryMessage::ScmRights(&fds)) {
        return Err(io::ErrorKind::OutOfMemory.into());
    }
    let flags = SendFlags::DONTWAIT | SendFlags::NOSIGNAL;
    loop {
        match rustix::net::sendmsg(&*out, &[io::IoSlice::new(state)], &mut control, flags) {
            Ok(n) if n == state.len() => return Ok(()),
            Ok(_) => return Err(io::ErrorKind::WriteZero.into()),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Takes the channel named in `RINGPROXY_HANDOFF`, if this process is a new binary given one;
/// its shards then open inboxes.
pub fn from_env() -> Option<OwnedFd> {
    let fd = std::env::var(HANDOFF_ENV).ok()?.parse().ok()?;
    let ours = crate::sys::adopt_fd(fd)?;
    RECEIVING.store(true, Ordering::Relaxed);
    Some(ours)
}

/// A shard's inbox: tunnels dealt to it, and the socket whose bytes say some arrived.
pub struct Inbox {
    id: u64,
    /// Queued tunnels.
    pub queue: Receiver<Arrived>,
    /// Readable when tunnels were queued.
    pub bell: UnixStream,
}

impl Inbox {
    /// Registers an inbox for the calling shard, if this process receives tunnels.
    pub fn open() -> io::Result<Option<Inbox>> {
        if !RECEIVING.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let (ring, bell) = UnixStream::pair()?;
        ring.set_nonblocking(true)?;
        // The epoll driver reads after readiness with a plain read(2): a blocking socket
        // would stop the whole shard once the bell has been read empty.
        bell.set_nonblocking(true)?;
        let (queue_tx, queue) = channel();
        let id = NEXT_INBOX.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut all) = INBOXES.lock() {
            all.push(Registered {
                id,
                queue: queue_tx,
                bell: ring,
            });
        }
        Ok(Some(Inbox { id, queue, bell }))
    }

    /// Takes the inbox out of the deal (the shard stops); returns what was queued meanwhile.
    pub fn close(&self) -> Vec<Arrived> {
        if let Ok(mut all) = INBOXES.lock() {
            all.retain(|r| r.id != self.id);
        }
        // After the removal nothing more is queued here.
        self.queue.try_iter().collect()
    }
}

/// The new binary's thread reading the channel until the old binary closes it (it exited).
pub fn receive(channel: OwnedFd) {
    let mut turn = 0usize;
    loop {
        let mut state = vec![0u8; MAX_MESSAGE];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(2))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let got = rustix::net::recvmsg(
            channel.as_fd(),
            &mut [io::IoSliceMut::new(&mut state)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        );
        let n = match got {
            Ok(m) if m.bytes == 0 => return,
            Ok(m) => m.bytes,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => {
                log!(
                    Alert,
                    "recvmsg() on the hand-over channel failed ({})",
                    crate::config::os_error(&e.into())
                );
                return;
            }
        };
        let mut fds = Vec::with_capacity(2);
        for msg in control.drain() {
            if let RecvAncillaryMessage::ScmRights(rights) = msg {
                fds.extend(rights);
            }
        }
        let (Some(upstream), Some(client), None) = (fds.pop(), fds.pop(), fds.pop()) else {
            log!(
                Alert,
                "a hand-over message with {} sockets, not 2: ignored",
                fds.len()
            );
            continue;
        };
        state.truncate(n);
        deal(
            Arrived {
                state,
                client,
                upstream,
            },
            &mut turn,
        );
    }
}

/// Queues `tunnel` on the next shard's inbox, in turn.
fn deal(mut tunnel: Arrived, turn: &mut usize) {
    let Ok(all) = INBOXES.lock() else {
        return;
    };
    for _ in 0..all.len() {
        let r = &all[*turn % all.len()];
        *turn = turn.wrapping_add(1);
        match r.queue.send(tunnel) {
            Ok(()) => {
                // A full buffer means the shard has bytes to read already.
                let _ = (&r.bell).write(b"T");
                return;
            }
            Err(back) => tunnel = back.0,
        }
    }
    log!(
        Alert,
        "no shard runs to take a tunnel handed over by the old binary: it is closed"
    );
}
