//! A read-buffered stream for monoio's owned-buffer I/O, shared by the echo server and the
//! clients.
//!
//! monoio (like io_uring) takes buffers by value for the duration of a read; this keeps one
//! reusable `Vec` per connection, reads into its spare capacity and lets the protocol code look
//! at `data()` until it has a whole head or frame. Nothing is allocated per message once the
//! buffer has grown to the largest frame seen.
//!
//! The transport is plain TCP (or one half of it) or [`Stream`], which may carry TLS: the two
//! small traits below are all the buffering needs from either.

use std::io;

use monoio::buf::{IoBufMut, SliceMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::TcpStream;

use crate::tls::TlsStream;

/// Reading side of a transport.
pub trait ReadIo {
    /// Reads once, appending at most `buf`'s spare capacity; `Ok(0)` is end of stream.
    async fn read_append(&mut self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>);
}

/// Writing side of a transport.
pub trait WriteIo {
    /// Writes all of `buf` and gives it back.
    async fn write_vec(&mut self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>);
}

impl<T: AsyncReadRent> ReadIo for T {
    async fn read_append(&mut self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        let len = buf.len();
        let (res, slice): (_, SliceMut<Vec<u8>>) = self.read(buf.slice_mut(len..)).await;
        (res, slice.into_inner())
    }
}

impl<T: AsyncWriteRent> WriteIo for T {
    async fn write_vec(&mut self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        let (res, buf) = self.write_all(buf).await;
        (res.map(|_| ()), buf)
    }
}

/// A connection that is plain TCP or TLS over TCP.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream>),
}

impl Stream {
    /// Ends TLS politely (close_notify) before the connection is dropped; nothing for TCP.
    pub async fn close_notify(&mut self) {
        if let Stream::Tls(t) = self {
            let _ = t.close_notify().await;
        }
    }
}

impl ReadIo for Stream {
    async fn read_append(&mut self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        match self {
            Stream::Plain(s) => s.read_append(buf).await,
            Stream::Tls(t) => t.read_append(buf).await,
        }
    }
}

impl WriteIo for Stream {
    async fn write_vec(&mut self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        match self {
            Stream::Plain(s) => s.write_vec(buf).await,
            Stream::Tls(t) => t.write_all(buf).await,
        }
    }
}

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

impl<S: ReadIo> BufConn<S> {
    /// Reads once, aiming for `data()` to reach `want` bytes. Returns the number of new bytes;
    /// end of stream is an `UnexpectedEof` error because every caller is mid-message there.
    pub async fn read_more(&mut self, want: usize) -> io::Result<usize> {
        self.make_room(want);
        let buf = std::mem::take(&mut self.rbuf);
        let (res, buf) = self.io.read_append(buf).await;
        self.rbuf = buf;
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

impl<S: WriteIo> BufConn<S> {
    /// Writes all of `buf` and gives it back cleared, so callers keep reusing one allocation.
    pub async fn write_all(&mut self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        let (res, mut buf) = self.io.write_vec(buf).await;
        buf.clear();
        (res, buf)
    }
}
