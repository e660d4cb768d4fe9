use crate::http::body::*;

/// Decodes `pieces` fed one after another, as a relay would (keeping unconsumed bytes of a
/// piece only until the decoder has taken them). Returns data and the bytes left after the end.
fn decode_pieces(pieces: &[&[u8]]) -> Result<(Vec<u8>, Vec<u8>, bool), ChunkedError> {
    let mut dec = ChunkedDecoder::new();
    let mut out = Vec::new();
    let mut after = Vec::new();
    for piece in pieces {
        let mut input = *piece;
        while !input.is_empty() {
            if dec.is_done() {
                after.extend_from_slice(input);
                break;
            }
            let d = dec.decode(input)?;
            assert!(d.consumed > 0 || d.done, "no progress");
            out.extend_from_slice(d.data);
            input = &input[d.consumed..];
        }
    }
    Ok((out, after, dec.is_done()))
}

const BODY: &[u8] = b"5\r\nhello\r\n1;ext=\"a b\"\r\n \r\nA \t; x\r\n0123456789\r\n00\r\nTrailer: t\r\nX: y\r\n\r\nNEXT";

#[test]
fn decodes_whole_body_and_stops_at_end() {
    let (data, after, done) = decode_pieces(&[BODY]).unwrap();
    assert_eq!(data, b"hello 0123456789");
    assert_eq!(after, b"NEXT");
    assert!(done);
}

#[test]
fn every_byte_split_gives_same_output() {
    let want = decode_pieces(&[BODY]).unwrap();
    let singles: Vec<&[u8]> = BODY.chunks(1).collect();
    assert_eq!(decode_pieces(&singles).unwrap(), want);
    for i in 0..=BODY.len() {
        let (a, b) = BODY.split_at(i);
        assert_eq!(decode_pieces(&[a, b]).unwrap(), want, "split at {i}");
    }
}

#[test]
fn bare_lf_and_no_trailers() {
    let (data, after, done) = decode_pieces(&[b"3\nabc\n0\n\n"]).unwrap();
    assert_eq!(
        (data.as_slice(), after.as_slice(), done),
        (&b"abc"[..], &b""[..], true)
    );
    let (_, _, done) = decode_pieces(&[b"3\r\nabc\r\n0\r\n"]).unwrap();
    assert!(!done, "waits for the end of the trailer section");
}

#[test]
fn malformed_chunks_rejected() {
    let cases: &[(&[u8], ChunkedError)] = &[
        (b"x\r\n", ChunkedError::InvalidSize),
        (b"\r\n", ChunkedError::InvalidSize),
        (b";a\r\n", ChunkedError::InvalidSize),
        (b"-1\r\n", ChunkedError::InvalidSize),
        (b"+1\r\n", ChunkedError::InvalidSize),
        (b"0x1\r\n", ChunkedError::InvalidSize),
        (b"1g\r\n", ChunkedError::InvalidSize),
        (b"10000000000000000\r\n", ChunkedError::SizeOverflow),
        (b"8000000000000000\r\n", ChunkedError::SizeOverflow),
        (b"3\r\nabcX\r\n", ChunkedError::MissingCrlf),
        (b"3\r\nabc\rX", ChunkedError::MissingCrlf),
        (b"3\rabc", ChunkedError::MissingCrlf),
        (b"3;a\0b\r\n", ChunkedError::InvalidExtension),
        (b"3;a\rb\r\n", ChunkedError::MissingCrlf),
        (b"0\r\nX: a\0\r\n\r\n", ChunkedError::InvalidTrailers),
        (b"0\r\nX: a\rb", ChunkedError::MissingCrlf),
        (b"0\r\n\rX", ChunkedError::MissingCrlf),
    ];
    for (input, want) in cases {
        let got = decode_pieces(&[input]);
        assert_eq!(got, Err(*want), "{:?}", String::from_utf8_lossy(input));
    }
    let ok_size = b"7fffffffffffffff\r\nab";
    let (data, _, _) = decode_pieces(&[ok_size]).unwrap();
    assert_eq!(data, b"ab");
    // Leading zeros are fine (nginx judges the value, not the digit count).
    assert!(
        decode_pieces(&[b"0000000000000000000003\r\nabc\r\n0\r\n\r\n"])
            .unwrap()
            .2
    );
}

#[test]
fn over_long_extension_and_trailers_rejected() {
    let mut ext = b"1;".to_vec();
    ext.extend(std::iter::repeat_n(b'a', MAX_CHUNK_EXTENSION));
    assert!(decode_pieces(&[&ext]).is_ok());
    ext.push(b'a');
    assert_eq!(decode_pieces(&[&ext]), Err(ChunkedError::InvalidExtension));
    let mut tr = b"0\r\n".to_vec();
    tr.extend(std::iter::repeat_n(b'a', MAX_TRAILERS + 1));
    assert_eq!(decode_pieces(&[&tr]), Err(ChunkedError::InvalidTrailers));
}

#[test]
fn encoder_round_trips() {
    let mut buf = Vec::new();
    for piece in [
        &b"a"[..],
        b"",
        &[7u8; 4096],
        &[1u8; 255],
        b"0123456789abcdef",
    ] {
        encode_chunk(piece, &mut buf);
    }
    buf.extend_from_slice(LAST_CHUNK);
    assert!(buf.starts_with(b"1\r\na\r\n1000\r\n"));
    let (data, after, done) = decode_pieces(&[&buf]).unwrap();
    assert!(done && after.is_empty());
    assert_eq!(data.len(), 1 + 4096 + 255 + 16);
    assert_eq!(chunk_header(0xff).as_ref(), b"ff\r\n");
    assert_eq!(
        chunk_header(usize::MAX).as_ref().len(),
        usize::BITS as usize / 4 + 2
    );
    let mut b = bytes::BytesMut::new();
    encode_chunk(b"xyz", &mut b);
    assert_eq!(&b[..], b"3\r\nxyz\r\n");
}

#[test]
fn length_counter() {
    let mut c = LengthCounter::new(10);
    assert_eq!(c.take(4), 4);
    assert_eq!(c.remaining(), 6);
    assert_eq!(c.take(100), 6);
    assert!(c.is_done());
    assert_eq!(c.take(5), 0);
    let mut big = LengthCounter::new(u64::MAX);
    assert_eq!(big.take(usize::MAX), usize::MAX);
}
