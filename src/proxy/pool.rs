//! Per-shard pools of relay buffers and pipes.
//!
//! A tunnel borrows a buffer (copy path) or a pipe (splice path) only while bytes are in flight
//! and gives it back before it waits again, so idle tunnels cost no buffer
//! (docs/architecture.md, decision 2). Each shard is one thread, so the pools are thread-local: no locks, no atomics.

use std::cell::{Cell, RefCell};
use std::os::fd::OwnedFd;

/// Size of one relay buffer: large enough that a 64 KiB WebSocket message takes four reads.
pub const BUF_SIZE: usize = 16 * 1024;

/// Idle buffers kept for reuse (2 MiB per shard); beyond this, returned buffers are freed, so a
/// burst does not leave its peak in the pool for good.
const MAX_IDLE_BUFS: usize = 128;

/// Idle buffers kept when a burst's memory is given back (see [`release_after_burst`]).
const IDLE_BUFS_AFTER_BURST: usize = 8;

/// Idle pipes kept for reuse (each costs two descriptors).
const MAX_IDLE_PIPES: usize = 256;

/// Bytes a pipe holds (the Linux default, 16 pages).
pub const PIPE_SIZE: usize = 64 * 1024;

thread_local! {
    static BUFS: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
    /// Connections accepted since the last housekeeping tick, and since memory was last given
    /// back (see [`release_after_burst`]).
    static OPENED: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
    static PIPES: RefCell<Vec<(OwnedFd, OwnedFd)>> = const { RefCell::new(Vec::new()) };
}

/// A buffer borrowed from the shard's pool; returned on drop.
pub struct PooledBuf(Option<Vec<u8>>);

impl PooledBuf {
    /// Takes a buffer of `BUF_SIZE` bytes.
    pub fn take() -> PooledBuf {
        let buf = BUFS
            .with(|b| b.borrow_mut().pop())
            .unwrap_or_else(|| vec![0; BUF_SIZE]);
        PooledBuf(Some(buf))
    }

    /// The whole buffer.
    pub fn bytes(&mut self) -> &mut [u8] {
        self.0.as_mut().expect("present until drop")
    }
}

impl Drop for PooledBuf {
    fn drop(&mut self) {
        if let Some(buf) = self.0.take() {
            BUFS.with(|b| {
                let mut b = b.borrow_mut();
                if b.len() < MAX_IDLE_BUFS {
                    b.push(buf);
                }
            });
        }
    }
}

/// Counts an accepted connection (for [`release_after_burst`]).
pub fn note_connection() {
    OPENED.with(|o| {
        let (tick, since) = o.get();
        o.set((tick + 1, since + 1));
    });
}

/// Connections a burst must have opened before its memory is worth giving back.
const BURST: u64 = 1024;
/// A housekeeping tick (at most 250 ms) with fewer new connections than this ends a burst.
const QUIET: u64 = 16;

/// Called by the shard's housekeeping (every 250 ms at most). When a burst of connections (a
/// reconnect storm: at least `BURST` since the last release) has died down (fewer than `QUIET`
/// in the last tick), gives the memory its handshakes freed back to the kernel: the allocator keeps it
/// otherwise, and what a node holds by the million is idle tunnels, not handshakes in flight.
/// Never during a burst, where the pages would only be faulted in again.
pub fn release_after_burst() {
    let release = OPENED.with(|o| {
        let (tick, since) = o.get();
        let release = since >= BURST && tick < QUIET;
        // A tick without a new connection also ends what was no burst: slow steady traffic
        // never adds up to one.
        o.set((0, if release || tick == 0 { 0 } else { since }));
        release
    });
    if release {
        // The buffers the burst's handshakes left idle in the pool go first.
        BUFS.with(|b| {
            let mut b = b.borrow_mut();
            b.truncate(IDLE_BUFS_AFTER_BURST);
            b.shrink_to_fit();
        });
        crate::sys::release_free_memory();
    }
}

/// Buffers currently idle in this shard's pool (for tests and metrics).
pub fn idle_buffers() -> usize {
    BUFS.with(|b| b.borrow().len())
}

/// A pipe borrowed from the shard's pool. It must be returned empty: `give_back` does that, and
/// a pipe dropped with bytes in it (an error path) is closed instead of reused.
pub struct PooledPipe {
    /// Read end.
    pub read: OwnedFd,
    /// Write end.
    pub write: OwnedFd,
}

impl PooledPipe {
    /// Takes an empty pipe (non-blocking both ends).
    pub fn take() -> std::io::Result<PooledPipe> {
        #[cfg(test)]
        if tests::NO_NEW_PIPES.with(|n| n.get()) {
            return Err(std::io::Error::from_raw_os_error(libc::EMFILE));
        }
        if let Some((read, write)) = PIPES.with(|p| p.borrow_mut().pop()) {
            return Ok(PooledPipe { read, write });
        }
        let (read, write) = rustix::pipe::pipe_with(
            rustix::pipe::PipeFlags::NONBLOCK | rustix::pipe::PipeFlags::CLOEXEC,
        )?;
        Ok(PooledPipe { read, write })
    }

    /// Returns an empty pipe to the pool.
    pub fn give_back(self) {
        PIPES.with(|p| {
            let mut p = p.borrow_mut();
            if p.len() < MAX_IDLE_PIPES {
                p.push((self.read, self.write));
            }
        });
    }
}

/// Pipes currently idle in this shard's pool (for tests and metrics).
pub fn idle_pipes() -> usize {
    PIPES.with(|p| p.borrow().len())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    thread_local! {
        /// Makes `PooledPipe::take` fail as with a full descriptor table (this thread only).
        pub(crate) static NO_NEW_PIPES: Cell<bool> = const { Cell::new(false) };
    }

    /// From now on this thread has no pipe to take: the pool is emptied and new ones fail.
    pub(crate) fn no_pipes_left() {
        PIPES.with(|p| p.borrow_mut().clear());
        NO_NEW_PIPES.with(|n| n.set(true));
    }

    #[test]
    fn buffers_return_to_the_pool() {
        let before = idle_buffers();
        {
            let mut a = PooledBuf::take();
            a.bytes()[0] = 1;
            let _b = PooledBuf::take();
        }
        assert_eq!(idle_buffers(), before.max(2));
        let _c = PooledBuf::take();
        assert_eq!(idle_buffers(), before.max(2) - 1);
    }

    #[test]
    fn a_burst_gives_its_idle_buffers_back_once_it_dies_down() {
        BUFS.with(|b| b.borrow_mut().clear());
        OPENED.with(|o| o.set((0, 0)));
        let many: Vec<PooledBuf> = (0..64).map(|_| PooledBuf::take()).collect();
        drop(many);
        assert_eq!(idle_buffers(), 64);
        for _ in 0..BURST {
            note_connection();
        }
        release_after_burst(); // still in the burst: this tick opened BURST connections
        assert_eq!(idle_buffers(), 64, "nothing is released during a burst");
        release_after_burst(); // a quiet tick ends it
        assert_eq!(idle_buffers(), IDLE_BUFS_AFTER_BURST);
        for _ in 0..QUIET * 2 {
            note_connection();
            release_after_burst();
        }
        let again: Vec<PooledBuf> = (0..32).map(|_| PooledBuf::take()).collect();
        drop(again);
        release_after_burst();
        assert_eq!(idle_buffers(), 32, "slow steady traffic is no burst");
    }

    #[test]
    fn pipes_are_reused() {
        let p = PooledPipe::take().unwrap();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&p.read);
        p.give_back();
        let q = PooledPipe::take().unwrap();
        assert_eq!(std::os::fd::AsRawFd::as_raw_fd(&q.read), fd);
    }
}
