//! A cheap in-tree stand-in for the cargo-fuzz targets: random and mutated inputs must never
//! panic, and whatever is accepted must be self-consistent.

use crate::http::body::ChunkedDecoder;
use crate::http::request::{parse_request, HeadLimits, Parsed};
use crate::http::response::parse_response;
use httparse::EMPTY_HEADER;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const SEEDS: &[&[u8]] = &[
    b"GET /a?b HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    b"POST http://h:1/%2e%2e/x HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n",
    b"5;x\r\nhello\r\n0\r\nT: 1\r\n\r\n",
];

const ALPHABET: &[u8] = b"\r\n :;,.%/0123456789abcdefHTPGE\t\0\x7f\xff";

fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..=rng.below(4) {
        let at = rng.below(v.len() + 1);
        match rng.below(3) {
            0 if at < v.len() => v[at] = ALPHABET[rng.below(ALPHABET.len())],
            1 if at < v.len() => {
                v.remove(at);
            }
            _ => v.insert(at, ALPHABET[rng.below(ALPHABET.len())]),
        }
    }
    v
}

#[test]
fn parsers_never_panic_on_mutated_input() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let limits = HeadLimits {
        client_header_buffer_size: 32,
        large_buffers_count: 2,
        large_buffer_size: 48,
        ..HeadLimits::default()
    };
    for i in 0..20_000 {
        let input = mutate(&mut rng, SEEDS[i % SEEDS.len()]);
        let mut h = [EMPTY_HEADER; 8];
        if let Ok(Parsed::Complete(r, n)) = parse_request(&input, &mut h, &limits) {
            assert!(n <= input.len());
            assert!(r.target.path.starts_with('/'));
        }
        let mut h = [EMPTY_HEADER; 8];
        if let Ok(Parsed::Complete(_, n)) = parse_response(&input, &mut h, 64, i % 2 == 0) {
            assert!(n <= input.len());
        }
        let mut dec = ChunkedDecoder::new();
        let mut rest = &input[..];
        while let Ok(d) = dec.decode(rest) {
            assert!(d.consumed <= rest.len());
            rest = &rest[d.consumed..];
            if d.done || rest.is_empty() {
                break;
            }
        }
    }
}
