//! A read-buffered stream for monoio's owned-buffer I/O, shared by the echo server and the
//! clients.
//!
//! monoio (like io_uring) takes buffers by value for the duration of a read; this keeps one
//! reusable `Vec` per connection, reads into its spare capacity and lets the protocol code look
//! at `data()` until it has a whole head or frame. Nothing is allocated per message once the
//! buffer has grown to the largest frame seen.

use std::io;

use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};

/// Smallest spare capacity offered to the kernel per read: small reads cost a syscall each, and
/// large ones cost memory on every idle connection (a held WebSocket keeps its buffer).
const MIN_READ: usize = 4096;

pub struct BufConn<S> {
    pub io: S,
    rbuf: Vec<u8>,
    rpos: usize,
}

impl<S> BufConn<S> {
    pub fn new(io: S) -> Self {
        Self {
            io,
            rbuf: Vec::new(),
            rpos: 0,
        }
    }

    /// Unconsumed bytes.
    pub fn data(&self) -> &[u8] {
        &self.rbuf[self.rpos..]
    }

    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.rbuf[self.rpos..]
    }

    pub fn consume(&mut self, n: usize) {
        self.rpos += n;
        debug_assert!(self.rpos <= self.rbuf.len());
        if self.rpos >= self.rbuf.len() {
            // Everything read was used: restart at the front for free instead of compacting.
            self.rbuf.clear();
            self.rpos = 0;
        }
    }

    /// Frees the read buffer if nothing is pending in it, for connections about to sit idle.
    pub fn release_if_empty(&mut self) {
        if self.rpos >= self.rbuf.len() {
            self.rbuf = Vec::new();
            self.rpos = 0;
        }
    }

    pub fn into_parts(self) -> (S, Vec<u8>) {
        let mut buf = self.rbuf;
        buf.drain(..self.rpos);
        (self.io, buf)
    }

    pub fn from_parts(io: S, rbuf: Vec<u8>) -> Self {
        Self { io, rbuf, rpos: 0 }
    }

    /// Makes room so that `data()` can grow to at least `want` bytes with one read.
    fn make_room(&mut self, want: usize) {
        let avail = self.rbuf.len() - self.rpos;
        let spare = self.rbuf.capacity() - self.rbuf.len();
        let need_spare = want.saturating_sub(avail).max(MIN_READ);
        if spare >= need_spare {
            return;
        }
        if self.rpos > 0 {
            self.rbuf.drain(..self.rpos);
            self.rpos = 0;
        }
        let spare = self.rbuf.capacity() - self.rbuf.len();
        if spare < need_spare {
            self.rbuf.reserve(need_spare);
        }
    }
}

impl<S: AsyncReadRent> BufConn<S> {
    /// Reads once, aiming for `data()` to reach `want` bytes. Returns the number of new bytes;
    /// end of stream is an `UnexpectedEof` error because every caller is mid-message there.
    pub async fn read_more(&mut self, want: usize) -> io::Result<usize> {
        self.make_room(want);
        let buf = std::mem::take(&mut self.rbuf);
        let len = buf.len();
        let (res, slice) = self.io.read(buf.slice_mut(len..)).await;
        self.rbuf = slice.into_inner();
        match res {
            Ok(0) => Err(io::ErrorKind::UnexpectedEof.into()),
            other => other,
        }
    }

    /// Reads until `data()` holds at least `want` bytes.
    pub async fn fill(&mut self, want: usize) -> io::Result<()> {
        while self.data().len() < want {
            self.read_more(want).await?;
        }
        Ok(())
    }
}

impl<S: AsyncWriteRent> BufConn<S> {
    /// Writes all of `buf` and gives it back cleared, so callers keep reusing one allocation.
    pub async fn write_all(&mut self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        let (res, mut buf) = self.io.write_all(buf).await;
        buf.clear();
        (res.map(|_| ()), buf)
    }
}
