//! Body framing: a streaming chunked decoder, a chunked encoder and a Content-Length counter.
//!
//! Place in the data flow: client bytes -> request head -> route -> upstream request ->
//! response head -> **body relay**. The relay feeds whatever bytes a read returned; these types
//! say which of them are body data and where the message ends, so the bytes after it (a
//! pipelined request, or the next response on a kept-alive upstream) are never taken as body.
//! Everything is sans-IO: no buffering, no allocation, output slices borrow the input.
//!
//! The decoder accepts what nginx accepts (bare LF line ends, extensions after spaces or `;`,
//! trailers, which are dropped) because ringproxy re-frames the body it forwards: the backend
//! only ever sees ringproxy's own framing, so leniency here cannot desynchronise it.

use super::hex_digit as hex;
use bytes::BufMut;

/// Longest chunk extension accepted, per chunk-size line.
pub const MAX_CHUNK_EXTENSION: usize = 4096;
/// Most trailer bytes accepted after the last chunk.
pub const MAX_TRAILERS: usize = 8192;

/// Why a chunked body is malformed (400 from a client, 502 from an upstream).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChunkedError {
    /// A chunk-size line that does not start with a hex digit, or has a stray byte after it.
    #[error("invalid chunk size")]
    InvalidSize,
    /// A chunk size beyond 2^63-1 (nginx's off_t).
    #[error("chunk size overflows")]
    SizeOverflow,
    /// Chunk data not followed by a line end, or CR not followed by LF.
    #[error("missing CRLF after chunk")]
    MissingCrlf,
    /// More than [`MAX_CHUNK_EXTENSION`] bytes of extension, or a control character in it.
    #[error("chunk extension too long or invalid")]
    InvalidExtension,
    /// More than [`MAX_TRAILERS`] bytes of trailers, or a NUL in them.
    #[error("chunked trailers too long or invalid")]
    InvalidTrailers,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    SizeStart,
    Size,
    Extension,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    TrailerStart,
    TrailerLine,
    TrailerLf,
    EndLf,
    Done,
}

/// What one [`ChunkedDecoder::decode`] call found.
#[derive(Debug, PartialEq, Eq)]
pub struct Decoded<'a> {
    /// Input bytes used (framing and data). Less than the input only when data was returned
    /// (call again with the rest) or the body ended (the rest is not this body's).
    pub consumed: usize,
    /// Body data, possibly empty.
    pub data: &'a [u8],
    /// The last chunk and trailers have been read: the body is over.
    pub done: bool,
}

/// A streaming decoder of `Transfer-Encoding: chunked`; state survives any split of the input.
#[derive(Clone, Debug)]
pub struct ChunkedDecoder {
    state: State,
    remaining: u64,
    extension: usize,
    trailers: usize,
    /// Sum of the sizes on the chunk-size lines read so far.
    announced: u64,
    /// The size on the last one.
    last: u64,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkedDecoder {
    /// A decoder at the start of a body.
    pub fn new() -> Self {
        ChunkedDecoder {
            state: State::SizeStart,
            remaining: 0,
            extension: 0,
            trailers: 0,
            announced: 0,
            last: 0,
        }
    }

    /// The body bytes announced by the chunk-size lines read so far, and the size on the last
    /// one: nginx holds `client_max_body_size` against these as each size line arrives, before
    /// the chunk's data.
    pub fn announced(&self) -> (u64, u64) {
        (self.announced, self.last)
    }

    /// Whether the whole body has been read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Reads framing from `input` until it reaches chunk data (returned, at most one slice per
    /// call), the end of the input, or the end of the body. Never panics; after an error the
    /// body is unusable.
    pub fn decode<'a>(&mut self, input: &'a [u8]) -> Result<Decoded<'a>, ChunkedError> {
        let mut i = 0;
        while i < input.len() {
            if self.state == State::Done {
                break;
            }
            if self.state == State::Data {
                let avail = input.len() - i;
                let n = usize::try_from(self.remaining).map_or(avail, |r| r.min(avail));
                self.remaining -= n as u64;
                if self.remaining == 0 {
                    self.state = State::DataCr;
                }
                return Ok(Decoded {
                    consumed: i + n,
                    data: &input[i..i + n],
                    done: false,
                });
            }
            self.step(input[i])?;
            i += 1;
        }
        Ok(Decoded {
            consumed: i,
            data: &[],
            done: self.state == State::Done,
        })
    }

    fn end_size_line(&mut self) {
        self.announced = self.announced.saturating_add(self.remaining);
        self.last = self.remaining;
        self.state = if self.remaining == 0 {
            State::TrailerStart
        } else {
            State::Data
        };
    }

    fn step(&mut self, c: u8) -> Result<(), ChunkedError> {
        use State::*;
        match self.state {
            SizeStart | Size => match hex(c) {
                Some(d) => {
                    self.remaining = self
                        .remaining
                        .checked_mul(16)
                        .map(|r| r | u64::from(d))
                        .filter(|&r| r <= i64::MAX as u64)
                        .ok_or(ChunkedError::SizeOverflow)?;
                    self.state = Size;
                }
                None if self.state == SizeStart => return Err(ChunkedError::InvalidSize),
                None => match c {
                    b';' | b' ' | b'\t' => {
                        self.extension = 0;
                        self.state = Extension;
                    }
                    b'\r' => self.state = SizeLf,
                    b'\n' => self.end_size_line(),
                    _ => return Err(ChunkedError::InvalidSize),
                },
            },
            Extension => match c {
                b'\r' => self.state = SizeLf,
                b'\n' => self.end_size_line(),
                c if (c < b' ' && c != b'\t') || c == 0x7f => {
                    return Err(ChunkedError::InvalidExtension)
                }
                _ => {
                    self.extension += 1;
                    if self.extension > MAX_CHUNK_EXTENSION {
                        return Err(ChunkedError::InvalidExtension);
                    }
                }
            },
            SizeLf => match c {
                b'\n' => self.end_size_line(),
                _ => return Err(ChunkedError::MissingCrlf),
            },
            DataCr => match c {
                b'\r' => self.state = DataLf,
                b'\n' => self.state = SizeStart,
                _ => return Err(ChunkedError::MissingCrlf),
            },
            DataLf | TrailerLf | EndLf => match (c, self.state) {
                (b'\n', DataLf) => self.state = SizeStart,
                (b'\n', TrailerLf) => self.state = TrailerStart,
                (b'\n', _) => self.state = Done,
                _ => return Err(ChunkedError::MissingCrlf),
            },
            TrailerStart | TrailerLine => {
                match c {
                    b'\r' if self.state == TrailerStart => self.state = EndLf,
                    b'\n' if self.state == TrailerStart => self.state = Done,
                    b'\r' => self.state = TrailerLf,
                    b'\n' => self.state = TrailerStart,
                    0 => return Err(ChunkedError::InvalidTrailers),
                    _ => self.state = TrailerLine,
                }
                self.trailers += 1;
                if self.trailers > MAX_TRAILERS {
                    return Err(ChunkedError::InvalidTrailers);
                }
            }
            Data | Done => {}
        }
        Ok(())
    }
}

/// The size line of one chunk (`<hex>\r\n`), on the stack, so a relay can write
/// header + data + [`CHUNK_END`] with one vectored write and no copy of the data.
#[derive(Clone, Copy, Debug)]
pub struct ChunkHeader {
    buf: [u8; 18],
    len: u8,
}

impl AsRef<[u8]> for ChunkHeader {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }
}

/// The size line for a chunk of `len` bytes (`len` must not be 0: that is [`LAST_CHUNK`]).
pub fn chunk_header(len: usize) -> ChunkHeader {
    let mut buf = [0u8; 18];
    let digits = ((usize::BITS - len.leading_zeros()).div_ceil(4)).max(1) as usize;
    for (k, b) in buf[..digits].iter_mut().enumerate() {
        let shift = 4 * (digits - 1 - k);
        *b = b"0123456789abcdef"[(len >> shift) & 0xf];
    }
    buf[digits] = b'\r';
    buf[digits + 1] = b'\n';
    ChunkHeader {
        buf,
        len: (digits + 2) as u8,
    }
}

/// Ends each chunk's data.
pub const CHUNK_END: &[u8] = b"\r\n";
/// The last chunk and an empty trailer section: ends a chunked body.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// Appends `data` as one chunk. Empty data writes nothing (an empty chunk would end the body).
pub fn encode_chunk<B: BufMut>(data: &[u8], out: &mut B) {
    if data.is_empty() {
        return;
    }
    out.put_slice(chunk_header(data.len()).as_ref());
    out.put_slice(data);
    out.put_slice(CHUNK_END);
}

/// Counts down a `Content-Length` body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LengthCounter {
    remaining: u64,
}

impl LengthCounter {
    /// A body of `len` bytes.
    pub fn new(len: u64) -> Self {
        LengthCounter { remaining: len }
    }

    /// Of `available` bytes just read, how many belong to the body; counts them as relayed.
    pub fn take(&mut self, available: usize) -> usize {
        let n = usize::try_from(self.remaining).map_or(available, |r| r.min(available));
        self.remaining -= n as u64;
        n
    }

    /// Body bytes still to come.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    /// Whether the whole body has been relayed.
    pub fn is_done(&self) -> bool {
        self.remaining == 0
    }
}
