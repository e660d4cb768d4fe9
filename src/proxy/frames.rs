//! Frame boundaries of a WebSocket tunnel, one tracker per direction, for the graceful stop: a
//! Close frame may only be injected between two frames (RFC 6455 §5.4), so the tunnel must
//! know where each frame ends without owning the frames.
//!
//! Sans-IO and cheap: only frame headers are read. A payload is skipped by its length (never
//! unmasked, copied or kept), so the cost is per frame, not per byte, and the state is a few
//! bytes (a header split across reads is kept, at most 14 bytes). Reserved bits and opcodes
//! are not judged (an extension such as permessage-deflate sets RSV1): endpoints judge frames,
//! the tunnel only counts bytes. A 64-bit length with its top bit set cannot be followed: the
//! tracker is then `lost` and the stop treats the tunnel as a plain upgrade.

use crate::ws::{self, OpCode, MAX_HEADER_LEN};

/// Close status 1001, Going Away (RFC 6455 §7.4.1): the server is going down.
pub const GOING_AWAY: u16 = 1001;

/// Where one direction's byte stream stands, frame-wise.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Frames {
    /// Bytes of a header that arrived split, not yet whole.
    head: [u8; MAX_HEADER_LEN],
    have: u8,
    /// Payload bytes of the current frame still to come.
    left: u64,
    /// A Close frame's header has gone by (this side has started or answered the closing
    /// handshake).
    closed: bool,
    /// The stream cannot be followed (see the module doc).
    lost: bool,
}

/// Bytes the splice path peeks at between frames: the longest header.
pub const PEEK: usize = MAX_HEADER_LEN;

/// A header's length once its first bytes are known, or how many bytes are needed to know it.
pub fn header_len(first: &[u8]) -> Result<usize, usize> {
    if first.len() < 2 {
        return Err(2);
    }
    let mask = if first[1] & 0x80 != 0 { 4 } else { 0 };
    Ok(match first[1] & 0x7F {
        126 => 4 + mask,
        127 => 10 + mask,
        _ => 2 + mask,
    })
}

/// Payload length of a whole header (`h.len() == header_len(h)`); `None` if it is invalid.
fn payload_len(h: &[u8]) -> Option<u64> {
    match h[1] & 0x7F {
        126 => Some(u64::from(u16::from_be_bytes([h[2], h[3]]))),
        127 => {
            let mut b = [0u8; 8];
            b.copy_from_slice(&h[2..10]);
            let n = u64::from_be_bytes(b);
            (n >> 63 == 0).then_some(n)
        }
        n => Some(u64::from(n)),
    }
}

impl Frames {
    /// Follows `bytes`, the next bytes of the stream.
    pub fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() && !self.lost {
            if self.left > 0 {
                let skip = self.left.min(bytes.len() as u64);
                self.left -= skip;
                bytes = &bytes[skip as usize..];
                continue;
            }
            let have = usize::from(self.have);
            // The first two bytes give the header's length; then the rest of it.
            let want = header_len(&self.head[..have]).unwrap_or(2);
            let take = (want - have).min(bytes.len());
            self.head[have..have + take].copy_from_slice(&bytes[..take]);
            self.have += take as u8;
            bytes = &bytes[take..];
            if header_len(&self.head[..usize::from(self.have)]) == Ok(usize::from(self.have)) {
                self.header_done();
            }
        }
    }

    fn header_done(&mut self) {
        let h = &self.head[..usize::from(self.have)];
        if h[0] & 0x0F == OpCode::Close.as_u8() {
            self.closed = true;
        }
        match payload_len(h) {
            Some(n) => self.left = n,
            None => self.lost = true,
        }
        self.have = 0;
    }

    /// Skips `n` payload bytes that went by unseen (spliced); `n` is at most [`Frames::left`].
    pub fn skip(&mut self, n: u64) {
        debug_assert!(self.have == 0 && n <= self.left);
        self.left -= n.min(self.left);
    }

    /// Whether the stream stands between two frames.
    pub fn at_boundary(&self) -> bool {
        self.have == 0 && self.left == 0 && !self.lost
    }

    /// Payload bytes of the current frame still to come (0 between frames or within a header).
    pub fn left(&self) -> u64 {
        self.left
    }

    /// Whether part of a header has been read.
    pub fn in_header(&self) -> bool {
        self.have > 0
    }

    /// How many bytes may be read without passing the next frame boundary: the rest of the
    /// payload, or the header bytes known to be missing (at least 1).
    pub fn to_boundary(&self) -> u64 {
        if self.left > 0 {
            return self.left;
        }
        let have = usize::from(self.have);
        match header_len(&self.head[..have]) {
            Ok(n) => (n - have) as u64,
            Err(n) => (n - have) as u64,
        }
    }

    /// Whether a Close frame has gone by in this direction.
    pub fn closed(&self) -> bool {
        self.closed
    }

    /// Whether the stream could not be followed.
    pub fn lost(&self) -> bool {
        self.lost
    }
}

/// Bytes of [`Frames::to_bytes`].
pub const STATE_LEN: usize = MAX_HEADER_LEN + 11;

impl Frames {
    /// The tracker's state as bytes (binary upgrade: it moves with its tunnel).
    pub fn to_bytes(&self) -> [u8; STATE_LEN] {
        let mut out = [0u8; STATE_LEN];
        out[..MAX_HEADER_LEN].copy_from_slice(&self.head);
        out[MAX_HEADER_LEN] = self.have;
        out[MAX_HEADER_LEN + 1..MAX_HEADER_LEN + 9].copy_from_slice(&self.left.to_le_bytes());
        out[MAX_HEADER_LEN + 9] = u8::from(self.closed);
        out[MAX_HEADER_LEN + 10] = u8::from(self.lost);
        out
    }

    /// A tracker from [`Frames::to_bytes`]; `None` if the bytes cannot be one.
    pub fn from_bytes(b: &[u8; STATE_LEN]) -> Option<Frames> {
        let mut head = [0u8; MAX_HEADER_LEN];
        head.copy_from_slice(&b[..MAX_HEADER_LEN]);
        let have = b[MAX_HEADER_LEN];
        let mut left = [0u8; 8];
        left.copy_from_slice(&b[MAX_HEADER_LEN + 1..MAX_HEADER_LEN + 9]);
        let flag = |v: u8| (v <= 1).then_some(v == 1);
        let f = Frames {
            head,
            have,
            left: u64::from_le_bytes(left),
            closed: flag(b[MAX_HEADER_LEN + 9])?,
            lost: flag(b[MAX_HEADER_LEN + 10])?,
        };
        // A partial header is shorter than its whole length, and comes with no payload left.
        let partial = usize::from(have);
        let valid = have == 0
            || (f.left == 0
                && partial < MAX_HEADER_LEN
                && header_len(&head[..partial]).map_or(true, |n| partial < n));
        valid.then_some(f)
    }
}

/// The whole length (header and payload) of the frame whose header starts `peeked`, if
/// `peeked` holds that whole header; `None` if more bytes are needed or the header is invalid.
pub fn frame_len(peeked: &[u8]) -> Option<u64> {
    let n = header_len(peeked).ok()?;
    if peeked.len() < n {
        return None;
    }
    payload_len(&peeked[..n]).map(|p| p + n as u64)
}

/// A Close frame with status 1001: unmasked as from a server (towards the client), or masked
/// with `mask` as from a client (towards the upstream).
pub fn going_away(mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = Vec::with_capacity(8);
    ws::write_frame(
        &mut out,
        true,
        OpCode::Close,
        mask,
        &GOING_AWAY.to_be_bytes(),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(op: OpCode, mask: Option<[u8; 4]>, len: usize) -> Vec<u8> {
        let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let mut v = Vec::new();
        ws::write_frame(&mut v, true, op, mask, &payload);
        v
    }

    /// Feeds `wire` in pieces of `step` bytes; returns the offsets where the tracker said it
    /// stood at a boundary.
    fn boundaries(wire: &[u8], step: usize) -> Vec<usize> {
        let mut t = Frames::default();
        let mut at = Vec::new();
        let mut pos = 0;
        while pos < wire.len() {
            let end = (pos + step).min(wire.len());
            // Within a piece, at most up to the next boundary at a time (as the stop's reads
            // do), so every boundary is seen.
            let mut p = pos;
            while p < end {
                let n = (t.to_boundary() as usize).min(end - p);
                t.feed(&wire[p..p + n]);
                p += n;
                if t.at_boundary() {
                    at.push(p);
                }
            }
            pos = end;
        }
        at
    }

    #[test]
    fn boundaries_of_every_length_form_masked_and_not_in_any_pieces() {
        for mask in [None, Some([1, 2, 3, 4])] {
            let lens = [0usize, 1, 125, 126, 127, 65535, 65536, 70_000];
            let mut wire = Vec::new();
            let mut want = Vec::new();
            for len in lens {
                wire.extend(frame(OpCode::Binary, mask, len));
                want.push(wire.len());
            }
            for step in [1, 2, 3, 5, 13, 14, 1000, 65536, wire.len()] {
                assert_eq!(boundaries(&wire, step), want, "mask {mask:?} step {step}");
            }
        }
    }

    #[test]
    fn a_header_split_across_reads_is_kept_until_whole() {
        // 64-bit length, masked: a 14-byte header, fed one byte at a time.
        let wire = frame(OpCode::Binary, Some([9, 9, 9, 9]), 70_000);
        let mut t = Frames::default();
        for (i, b) in wire[..14].iter().enumerate() {
            assert!(i == 0 || t.in_header(), "byte {i}");
            assert!(!t.at_boundary() || i == 0);
            t.feed(std::slice::from_ref(b));
        }
        assert_eq!(t.left(), 70_000);
        t.skip(69_999);
        assert_eq!(t.to_boundary(), 1);
        t.feed(&wire[wire.len() - 1..]);
        assert!(t.at_boundary());
        // 16-bit length split after its first length byte.
        let wire = frame(OpCode::Text, None, 300);
        let mut t = Frames::default();
        t.feed(&wire[..3]);
        assert_eq!(t.to_boundary(), 1, "one length byte missing");
        t.feed(&wire[3..]);
        assert!(t.at_boundary());
    }

    #[test]
    fn a_close_frame_is_noticed_and_payloads_are_not_read_as_headers() {
        // A payload full of bytes that look like Close headers is skipped, not parsed.
        let mut wire = Vec::new();
        ws::write_frame(&mut wire, true, OpCode::Binary, None, &[0x88; 200]);
        let mut t = Frames::default();
        t.feed(&wire);
        assert!(t.at_boundary() && !t.closed());
        t.feed(&going_away(Some([5, 6, 7, 8])));
        assert!(t.at_boundary() && t.closed());
    }

    #[test]
    fn reserved_bits_are_followed_and_an_impossible_length_is_lost() {
        // permessage-deflate's RSV1 on a text frame.
        let mut wire = frame(OpCode::Text, None, 10);
        wire[0] |= 0x40;
        let mut t = Frames::default();
        t.feed(&wire);
        assert!(t.at_boundary());
        let mut bad = vec![0x82, 127];
        bad.extend_from_slice(&u64::MAX.to_be_bytes());
        t.feed(&bad);
        assert!(t.lost() && !t.at_boundary());
    }

    #[test]
    fn frame_len_needs_the_whole_header() {
        let wire = frame(OpCode::Binary, Some([1, 1, 1, 1]), 1000);
        for cut in 0..8 {
            assert_eq!(frame_len(&wire[..cut]), None, "cut {cut}");
        }
        assert_eq!(frame_len(&wire[..8]), Some(1008));
        assert_eq!(frame_len(&wire), Some(1008));
    }

    #[test]
    fn going_away_frames() {
        assert_eq!(going_away(None), [0x88, 0x02, 0x03, 0xE9]);
        let m = going_away(Some([0x10, 0x20, 0x30, 0x40]));
        assert_eq!(m, [0x88, 0x82, 0x10, 0x20, 0x30, 0x40, 0x13, 0xC9]);
    }
}
