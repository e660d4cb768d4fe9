//! The only `unsafe` in the crate: thin wrappers over system calls that have no safe binding in
//! our dependencies. Every block says why it is sound.
#![allow(unsafe_code)]

use std::io;

/// Sends signal `sig` to process `pid` (`kill(2)`).
pub fn kill(pid: i32, sig: i32) -> io::Result<()> {
    if pid <= 0 {
        // kill(0) and kill(-n) address process groups: never what a pid file means.
        return Err(io::Error::from_raw_os_error(libc::ESRCH));
    }
    // SAFETY: kill takes two integers and touches no memory of ours.
    let rc = unsafe { libc::kill(pid, sig) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Borrows the descriptor of a socket monoio owns, for the lifetime of the borrow of `owner`, so
/// safe `rustix` calls (`read`, `write`, `splice`, `shutdown`) can use it after readiness.
pub fn fd<T: std::os::fd::AsRawFd>(owner: &T) -> std::os::fd::BorrowedFd<'_> {
    // SAFETY: `owner` keeps the descriptor open for at least as long as `&T` lives, and the
    // returned BorrowedFd cannot outlive that borrow.
    unsafe { std::os::fd::BorrowedFd::borrow_raw(owner.as_raw_fd()) }
}

/// Detaches from the terminal as nginx's `daemon on` does: fork (the parent exits at once with
/// status 0), start a new session, and point stdin/stdout at /dev/null. Must run before any
/// thread is started.
pub fn daemonize() -> io::Result<()> {
    // SAFETY: called while the process is single-threaded (before shards start), so the child
    // inherits a consistent address space; the parent only calls _exit.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid > 0 {
        // SAFETY: _exit ends the parent without running destructors the child still needs.
        unsafe { libc::_exit(0) };
    }
    // SAFETY: setsid has no memory effects; failure is reported through the return value.
    if unsafe { libc::setsid() } < 0 {
        return Err(io::Error::last_os_error());
    }
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    use std::os::fd::AsRawFd;
    for target in [0, 1] {
        // SAFETY: dup2 onto the standard descriptors; `null` stays open during the call.
        if unsafe { libc::dup2(null.as_raw_fd(), target) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// `setsockopt(fd, level, name, &value)` for integer options that neither socket2 nor rustix
/// wrap (TCP_DEFER_ACCEPT, TCP_FASTOPEN).
pub fn setsockopt_int<T: std::os::fd::AsRawFd>(
    sock: &T,
    level: i32,
    name: i32,
    value: i32,
) -> io::Result<()> {
    // SAFETY: the pointer and length describe `value`, a live i32 on our stack; the kernel only
    // reads it. The descriptor is owned by `sock` for the duration of the call.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            level,
            name,
            (&value as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Returns the allocator's free memory to the kernel: mimalloc's (the `ringproxy` binary's
/// allocator: `mi_collect(true)` purges the calling shard's free pages at once instead of after its
/// purge delay, which an idle node would never reach since purging happens on allocator calls)
/// and glibc's (`malloc_trim(0)`: whole free pages inside every arena, for what C code and builds
/// with the system allocator, such as the tests, allocate there).
pub fn release_free_memory() {
    // SAFETY: mi_collect takes a plain flag and only walks the calling thread's heap and the
    // allocator's own arenas; it is documented as callable at any time.
    unsafe {
        libmimalloc_sys::mi_collect(true);
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes a plain integer, touches only the allocator's own free lists
    // under its arena locks, and is documented as safe to call at any time from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Restricts the calling thread to the CPUs in `cpus` (`sched_setaffinity(0, ...)`), as nginx
/// does for a worker's whole `worker_cpu_affinity` mask. CPUs beyond `CPU_SETSIZE` are ignored;
/// the kernel refuses a set with no online CPU in it (EINVAL).
pub fn set_thread_affinity(cpus: &[usize]) -> io::Result<()> {
    // SAFETY: cpu_set_t is a plain bit array; all zeroes is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &cpu in cpus.iter().filter(|&&c| c < libc::CPU_SETSIZE as usize) {
        // SAFETY: `cpu` is below CPU_SETSIZE, so the bit lies inside `set`.
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    // SAFETY: pid 0 is the calling thread; the pointer and size describe `set`, which the
    // kernel only reads.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Starts `cmd` with the descriptors in `keep` inherited and every other descriptor above
/// stderr closed at exec (binary upgrade: the new binary gets the listening sockets, never a
/// client connection, ring or pipe, some of which are not created close-on-exec). Both
/// adjustments happen in the child only, between fork and exec, so no other thread of ours
/// ever sees a listening socket without FD_CLOEXEC.
pub fn spawn_keeping(
    cmd: &mut std::process::Command,
    keep: Vec<i32>,
) -> io::Result<std::process::Child> {
    use std::os::unix::process::CommandExt;
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(1 << 20)
        .min(1 << 24) as i32;
    let hook = move || -> io::Result<()> {
        // SAFETY: close_range takes three integers; with CLOSE_RANGE_CLOEXEC it only sets a
        // flag on descriptors of this (child) process and touches no memory.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_close_range,
                3u32,
                u32::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            )
        };
        if rc != 0 {
            // Kernels before 5.11: one fcntl per possible descriptor.
            for fd in 3..limit {
                // SAFETY: fcntl on an integer descriptor; a closed one fails with EBADF.
                unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
            }
        }
        for &fd in &keep {
            // SAFETY: fcntl on an integer descriptor touches no memory of ours.
            if unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    };
    // SAFETY: the hook runs in the forked child before exec and calls only close_range and
    // fcntl, which are async-signal-safe; it allocates nothing (`keep` is only read).
    unsafe { cmd.pre_exec(hook) };
    cmd.spawn()
}

/// Takes ownership of descriptor `fd`, named in `RINGPROXY_LISTEN` by the process that started
/// this one, if it is a listening TCP socket; it is made close-on-exec again. The caller passes
/// each number once.
pub fn adopt_listener(fd: i32) -> Option<std::net::TcpListener> {
    use std::os::fd::FromRawFd;
    if fd <= 2 {
        return None;
    }
    // SAFETY: F_GETFD only asks whether `fd` is open; no memory is touched.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return None;
    }
    // SAFETY: `fd` is open (checked above) and is only borrowed for the checks below.
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let stream =
        rustix::net::sockopt::socket_type(borrowed).ok()? == rustix::net::SocketType::STREAM;
    if !stream || !rustix::net::sockopt::socket_acceptconn(borrowed).ok()? {
        return None;
    }
    // SAFETY: the old binary handed this descriptor to us alone, nothing else in this process
    // owns it, and the caller takes each number once: the listener becomes its only owner.
    let listener = unsafe { std::net::TcpListener::from_raw_fd(fd) };
    // SAFETY: F_SETFD on the descriptor the listener now owns; no memory is touched.
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    Some(listener)
}

/// Takes ownership of descriptor `fd`, the write end of the pipe on which the old binary waits
/// for this one to have started (`RINGPROXY_READY`), if it is open; it is made close-on-exec
/// again. Called once, for the one number the variable names.
pub fn adopt_fd(fd: i32) -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: F_GETFD only asks whether `fd` is open; no memory is touched.
    if fd <= 2 || unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return None;
    }
    // SAFETY: the old binary handed this descriptor to us alone and nothing else in this
    // process owns it: the OwnedFd becomes its only owner.
    let owned = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    // SAFETY: F_SETFD on the descriptor `owned` now holds; no memory is touched.
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    Some(owned)
}
