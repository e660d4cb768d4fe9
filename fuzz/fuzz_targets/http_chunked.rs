//! Arbitrary bytes as a chunked body, fed whole and then split at the first byte's position:
//! must never panic, and both feeds must decode the same data.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringproxy::http::body::ChunkedDecoder;

fn decode(pieces: &[&[u8]]) -> Option<Vec<u8>> {
    let mut dec = ChunkedDecoder::new();
    let mut out = Vec::new();
    for piece in pieces {
        let mut rest = *piece;
        while !rest.is_empty() && !dec.is_done() {
            let d = dec.decode(rest).ok()?;
            out.extend_from_slice(d.data);
            rest = &rest[d.consumed..];
        }
    }
    Some(out)
}

fuzz_target!(|data: &[u8]| {
    let split = data.first().map_or(0, |&b| usize::from(b) % (data.len() + 1));
    let (a, b) = data.split_at(split);
    assert_eq!(decode(&[data]), decode(&[a, b]));
});
