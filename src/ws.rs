//! Sans-IO RFC 6455 WebSocket pieces: frame header encoding/decoding over byte slices, payload
//! masking and the `Sec-WebSocket-Accept` computation.
//!
//! Nothing here touches a socket. The load tool (`ringproxy-load`) drives these over monoio; the
//! proxy's tunnel writes its graceful stop's Close frames with `write_frame` (it follows frame
//! boundaries with its own lenient tracker, `proxy::frames`, which judges no bits).
//! Like the HTTP parsers, decoding returns [`Status::Partial`] until a whole header (or frame) is
//! in the buffer and never panics on network input.

use base64::Engine as _;
use sha1::{Digest, Sha1};

/// The GUID RFC 6455 §1.3 appends to the client key before hashing.
pub const ACCEPT_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The longest frame header: 2 bytes + 8-byte length + 4-byte mask.
pub const MAX_HEADER_LEN: usize = 14;

/// Frame opcodes (RFC 6455 §5.2). Reserved opcodes are rejected by the decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpCode {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl OpCode {
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0x0 => Self::Continuation,
            0x1 => Self::Text,
            0x2 => Self::Binary,
            0x8 => Self::Close,
            0x9 => Self::Ping,
            0xA => Self::Pong,
            _ => return None,
        })
    }

    pub fn as_u8(self) -> u8 {
        match self {
            Self::Continuation => 0x0,
            Self::Text => 0x1,
            Self::Binary => 0x2,
            Self::Close => 0x8,
            Self::Ping => 0x9,
            Self::Pong => 0xA,
        }
    }

    pub fn is_control(self) -> bool {
        matches!(self, Self::Close | Self::Ping | Self::Pong)
    }
}

/// Why a frame was refused. Any of these means the peer broke the protocol (or exceeded our
/// limit): the connection should be failed with a close frame, not resynchronised.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("reserved bits set in frame header (no extension was negotiated)")]
    ReservedBits,
    #[error("reserved opcode {0:#x}")]
    ReservedOpcode(u8),
    #[error("control frame is fragmented or longer than 125 bytes")]
    BadControlFrame,
    #[error("frame payload length {0} exceeds the limit of {1} bytes")]
    TooLarge(u64, u64),
    #[error("64-bit payload length has its most significant bit set")]
    BadLength,
}

/// Result of an incremental decode, in httparse's style.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status<T> {
    Complete(T),
    /// More bytes are needed; the value is a lower bound on the total bytes required.
    Partial(usize),
}

/// A decoded frame header. `header_len + payload_len` is the frame's size on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub fin: bool,
    pub opcode: OpCode,
    pub mask: Option<[u8; 4]>,
    pub payload_len: u64,
    pub header_len: usize,
}

impl FrameHeader {
    /// Total bytes of the frame on the wire; saturates so a hostile length cannot overflow.
    pub fn frame_len(&self) -> u64 {
        (self.header_len as u64).saturating_add(self.payload_len)
    }
}

/// Decodes a frame header from the front of `buf`, refusing payloads over `max_payload`.
///
/// The limit is checked as soon as the length is known, so a peer announcing an enormous frame
/// is refused before anyone allocates for it.
pub fn decode_header(buf: &[u8], max_payload: u64) -> Result<Status<FrameHeader>, FrameError> {
    if buf.len() < 2 {
        return Ok(Status::Partial(2));
    }
    let b0 = buf[0];
    let b1 = buf[1];
    if b0 & 0x70 != 0 {
        return Err(FrameError::ReservedBits);
    }
    let fin = b0 & 0x80 != 0;
    let opcode = OpCode::from_u8(b0 & 0x0F).ok_or(FrameError::ReservedOpcode(b0 & 0x0F))?;
    let masked = b1 & 0x80 != 0;
    let len7 = b1 & 0x7F;
    if opcode.is_control() && (!fin || len7 > 125) {
        return Err(FrameError::BadControlFrame);
    }
    let (payload_len, mut pos) = match len7 {
        126 => {
            if buf.len() < 4 {
                return Ok(Status::Partial(4));
            }
            (u64::from(u16::from_be_bytes([buf[2], buf[3]])), 4)
        }
        127 => {
            if buf.len() < 10 {
                return Ok(Status::Partial(10));
            }
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            let len = u64::from_be_bytes(b);
            if len >> 63 != 0 {
                return Err(FrameError::BadLength);
            }
            (len, 10)
        }
        n => (u64::from(n), 2),
    };
    if payload_len > max_payload {
        return Err(FrameError::TooLarge(payload_len, max_payload));
    }
    let mask = if masked {
        if buf.len() < pos + 4 {
            return Ok(Status::Partial(pos + 4));
        }
        let m = [buf[pos], buf[pos + 1], buf[pos + 2], buf[pos + 3]];
        pos += 4;
        Some(m)
    } else {
        None
    };
    Ok(Status::Complete(FrameHeader {
        fin,
        opcode,
        mask,
        payload_len,
        header_len: pos,
    }))
}

/// A whole frame borrowed from the input buffer. `payload` is still masked if `header.mask` is
/// set: unmasking needs a mutable buffer, which the caller owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    pub header: FrameHeader,
    pub payload: &'a [u8],
}

/// Decodes one complete frame from the front of `buf`.
pub fn decode_frame(buf: &[u8], max_payload: u64) -> Result<Status<Frame<'_>>, FrameError> {
    let header = match decode_header(buf, max_payload)? {
        Status::Complete(h) => h,
        Status::Partial(n) => return Ok(Status::Partial(n)),
    };
    let total = header.frame_len();
    if (buf.len() as u64) < total {
        return Ok(Status::Partial(
            usize::try_from(total).unwrap_or(usize::MAX),
        ));
    }
    // total <= buf.len() here, so the conversion cannot truncate.
    let payload = &buf[header.header_len..total as usize];
    Ok(Status::Complete(Frame { header, payload }))
}

/// Writes a frame header into `out` and returns its length.
pub fn encode_header(
    out: &mut [u8; MAX_HEADER_LEN],
    fin: bool,
    opcode: OpCode,
    mask: Option<[u8; 4]>,
    payload_len: u64,
) -> usize {
    out[0] = (if fin { 0x80 } else { 0 }) | opcode.as_u8();
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    let mut pos = if payload_len < 126 {
        out[1] = mask_bit | payload_len as u8;
        2
    } else if payload_len <= u64::from(u16::MAX) {
        out[1] = mask_bit | 126;
        out[2..4].copy_from_slice(&(payload_len as u16).to_be_bytes());
        4
    } else {
        out[1] = mask_bit | 127;
        out[2..10].copy_from_slice(&payload_len.to_be_bytes());
        10
    };
    if let Some(m) = mask {
        out[pos..pos + 4].copy_from_slice(&m);
        pos += 4;
    }
    pos
}

/// Appends a whole frame (header and payload, masked when `mask` is set) to `out`, so the
/// caller can hand the kernel one buffer per frame, or several frames in one write.
pub fn write_frame(
    out: &mut Vec<u8>,
    fin: bool,
    opcode: OpCode,
    mask: Option<[u8; 4]>,
    payload: &[u8],
) {
    let mut hdr = [0u8; MAX_HEADER_LEN];
    let n = encode_header(&mut hdr, fin, opcode, mask, payload.len() as u64);
    out.reserve(n + payload.len());
    out.extend_from_slice(&hdr[..n]);
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(m) = mask {
        apply_mask(&mut out[start..], m, 0);
    }
}

/// XORs `buf` with the 4-byte `mask`, starting at mask phase `offset` (the position of
/// `buf[0]` within the payload), so a payload can be (un)masked in pieces as it arrives.
///
/// Eight bytes at a time through `u64`: masking sits on the throughput path of every client
/// byte, and the byte loop is several times slower.
pub fn apply_mask(buf: &mut [u8], mask: [u8; 4], offset: usize) {
    let mut m = mask;
    m.rotate_left(offset % 4);
    let wide = u64::from_ne_bytes([m[0], m[1], m[2], m[3], m[0], m[1], m[2], m[3]]);
    let mut chunks = buf.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(w) ^ wide).to_ne_bytes());
    }
    // Whole 8-byte chunks keep the phase, so the tail starts at mask byte 0 of the rotated mask.
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= m[i % 4];
    }
}

/// The `Sec-WebSocket-Accept` value for a client's `Sec-WebSocket-Key` (RFC 6455 §4.2.2).
pub fn accept_key(client_key: &[u8]) -> String {
    let mut h = Sha1::new();
    h.update(client_key);
    h.update(ACCEPT_GUID);
    base64::engine::general_purpose::STANDARD.encode(h.finalize())
}

/// Encodes 16 nonce bytes as a `Sec-WebSocket-Key`.
pub fn client_key(nonce: [u8; 16]) -> String {
    base64::engine::general_purpose::STANDARD.encode(nonce)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: u64 = 1 << 30;

    fn frame(fin: bool, op: OpCode, mask: Option<[u8; 4]>, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        write_frame(&mut v, fin, op, mask, payload);
        v
    }

    #[test]
    fn rfc_accept_key_example() {
        // RFC 6455 §1.3's worked example (the same value Python's hashlib gives).
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn rfc_masked_hello_example() {
        // RFC 6455 §5.7: a single-frame masked text message "Hello".
        let wire = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        assert_eq!(
            frame(true, OpCode::Text, Some([0x37, 0xfa, 0x21, 0x3d]), b"Hello"),
            wire
        );
        let Status::Complete(f) = decode_frame(&wire, MAX).unwrap() else {
            panic!("partial")
        };
        assert_eq!(f.header.opcode, OpCode::Text);
        let mut p = f.payload.to_vec();
        apply_mask(&mut p, f.header.mask.unwrap(), 0);
        assert_eq!(p, b"Hello");
    }

    #[test]
    fn roundtrip_all_length_forms() {
        for len in [0usize, 1, 125, 126, 127, 65535, 65536, 200_000] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            for mask in [None, Some([1, 2, 3, 4])] {
                let wire = frame(len % 2 == 0, OpCode::Binary, mask, &payload);
                let Status::Complete(f) = decode_frame(&wire, MAX).unwrap() else {
                    panic!("partial at len {len}")
                };
                assert_eq!(f.header.payload_len, len as u64);
                assert_eq!(f.header.fin, len % 2 == 0);
                assert_eq!(f.header.mask, mask);
                assert_eq!(f.header.frame_len(), wire.len() as u64);
                let mut p = f.payload.to_vec();
                if let Some(m) = mask {
                    assert!(len <= 8 || p != payload, "payload not masked");
                    apply_mask(&mut p, m, 0);
                }
                assert_eq!(p, payload);
            }
        }
    }

    #[test]
    fn every_prefix_is_partial_never_error() {
        let payload = vec![0xAB; 300];
        let wire = frame(true, OpCode::Binary, Some([9, 8, 7, 6]), &payload);
        for cut in 0..wire.len() {
            match decode_frame(&wire[..cut], MAX).unwrap() {
                Status::Partial(need) => assert!(need > cut, "need {need} at cut {cut}"),
                Status::Complete(_) => panic!("complete at cut {cut}"),
            }
        }
        // Trailing bytes of a following frame are not consumed.
        let mut two = wire.clone();
        two.extend_from_slice(&wire[..5]);
        let Status::Complete(f) = decode_frame(&two, MAX).unwrap() else {
            panic!("partial")
        };
        assert_eq!(f.header.frame_len(), wire.len() as u64);
    }

    #[test]
    fn masking_in_pieces_matches_whole() {
        let mask = [0xde, 0xad, 0xbe, 0xef];
        let data: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
        let mut whole = data.clone();
        apply_mask(&mut whole, mask, 0);
        for split in [0, 1, 3, 7, 8, 9, 13, 500, 999, 1000] {
            let mut parts = data.clone();
            let (a, b) = parts.split_at_mut(split);
            apply_mask(a, mask, 0);
            apply_mask(b, mask, split);
            assert_eq!(parts, whole, "split at {split}");
        }
        let naive: Vec<u8> = data
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[i % 4])
            .collect();
        assert_eq!(whole, naive);
        apply_mask(&mut whole, mask, 0);
        assert_eq!(whole, data);
    }

    #[test]
    fn invalid_frames_are_rejected() {
        assert_eq!(
            decode_header(&[0xC2, 0x00], MAX),
            Err(FrameError::ReservedBits)
        );
        assert_eq!(
            decode_header(&[0x83, 0x00], MAX),
            Err(FrameError::ReservedOpcode(3))
        );
        // Fragmented ping, and a ping longer than 125 bytes.
        assert_eq!(
            decode_header(&[0x09, 0x00], MAX),
            Err(FrameError::BadControlFrame)
        );
        assert_eq!(
            decode_header(&[0x89, 126, 0, 200], MAX),
            Err(FrameError::BadControlFrame)
        );
        let mut huge = vec![0x82, 127];
        huge.extend_from_slice(&u64::MAX.to_be_bytes());
        assert_eq!(decode_header(&huge, MAX), Err(FrameError::BadLength));
        let mut big = vec![0x82, 127];
        big.extend_from_slice(&(MAX + 1).to_be_bytes());
        assert_eq!(
            decode_header(&big, MAX),
            Err(FrameError::TooLarge(MAX + 1, MAX))
        );
        // Over the limit is refused even before the mask bytes arrive.
        assert_eq!(
            decode_header(&[0x82, 0xFE, 0x01, 0x00], 100),
            Err(FrameError::TooLarge(256, 100))
        );
    }

    #[test]
    fn arbitrary_input_never_panics() {
        // A cheap deterministic fuzz: every 2-byte header and many pseudo-random buffers.
        for a in 0..=255u8 {
            for b in 0..=255u8 {
                let _ = decode_frame(&[a, b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff], MAX);
            }
        }
        let mut x = 0x1234_5678_9abc_def0u64;
        for _ in 0..20_000 {
            let mut buf = [0u8; 24];
            for byte in &mut buf {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *byte = x as u8;
            }
            let len = (x % 25) as usize;
            let _ = decode_frame(&buf[..len], MAX);
            let _ = decode_frame(&buf[..len], 0);
        }
    }

    #[test]
    fn client_key_is_16_bytes_base64() {
        assert_eq!(client_key([0; 16]).len(), 24);
    }
}
