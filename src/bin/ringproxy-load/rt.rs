//! One monoio runtime per thread, io_uring first with the epoll (legacy) driver as fallback.
//!
//! io_uring is blocked by Docker's default seccomp profile, gVisor and `io_uring_disabled=2`;
//! the tool must still run there, so `FusionDriver` probes and falls back. `RINGPROXY_DRIVER=epoll`
//! forces the fallback so both paths can be exercised on one machine. `driver` says which one
//! the runtimes got (the reports and the echo server name it, so a test can check it).

use std::future::Future;
use std::sync::atomic::{AtomicU8, Ordering};

use anyhow::{Context, Result};
use monoio::{FusionDriver, FusionRuntime, LegacyDriver, RuntimeBuilder};

/// Submission queue entries per ring: enough for a few thousand in-flight operations per thread
/// without the ring itself becoming the queue.
const RING_ENTRIES: u32 = 4096;

/// 0 before any runtime is built, then `IO_URING` or `EPOLL` (every thread probes alike).
static DRIVER: AtomicU8 = AtomicU8::new(0);
const IO_URING: u8 = 1;
const EPOLL: u8 = 2;

/// The driver this process's runtimes run: `io_uring`, `epoll`, or `unknown` before any ran.
pub fn driver() -> &'static str {
    match DRIVER.load(Ordering::Relaxed) {
        IO_URING => "io_uring",
        EPOLL => "epoll",
        _ => "unknown",
    }
}

pub fn force_epoll() -> bool {
    std::env::var("RINGPROXY_DRIVER").is_ok_and(|v| v.eq_ignore_ascii_case("epoll"))
}

/// Runs `make()`'s future to completion on a fresh runtime on the current thread.
pub fn block_on<F, Fut>(make: F) -> Result<Fut::Output>
where
    F: FnOnce() -> Fut,
    Fut: Future,
{
    if force_epoll() {
        let mut rt = RuntimeBuilder::<LegacyDriver>::new()
            .enable_timer()
            .build()
            .context("cannot build the epoll runtime")?;
        DRIVER.store(EPOLL, Ordering::Relaxed);
        Ok(rt.block_on(make()))
    } else {
        let mut rt = RuntimeBuilder::<FusionDriver>::new()
            .with_entries(RING_ENTRIES)
            .enable_timer()
            .build()
            .context("cannot build the monoio runtime")?;
        let kind = match &rt {
            FusionRuntime::Uring(_) => IO_URING,
            FusionRuntime::Legacy(_) => EPOLL,
        };
        DRIVER.store(kind, Ordering::Relaxed);
        Ok(rt.block_on(make()))
    }
}
