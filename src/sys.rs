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
