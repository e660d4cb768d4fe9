//! Hot paths of the sans-IO HTTP layer, per message: ringproxy's full request-head parse
//! (httparse plus nginx's limit, framing, Host and upgrade checks) against bare
//! `httparse::Request::parse` on the same bytes, for a Chrome WebSocket handshake and a plain
//! GET, so the cost of the extra checks is visible; and chunked decoding of a 64 KiB body sent
//! as 4 KiB chunks (throughput; the decoder hands out borrowed slices, no copy).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ringproxy::http::body::{encode_chunk, ChunkedDecoder, LAST_CHUNK};
use ringproxy::http::request::{parse_request, HeadLimits, Parsed};
use std::hint::black_box;

const WS_HANDSHAKE: &[u8] = b"GET /chat?room=42 HTTP/1.1\r\n\
Host: live.example.com\r\n\
Connection: Upgrade\r\n\
Pragma: no-cache\r\n\
Cache-Control: no-cache\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36\r\n\
Upgrade: websocket\r\n\
Origin: https://live.example.com\r\n\
Sec-WebSocket-Version: 13\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Accept-Language: en-US,en;q=0.9\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n";

const PLAIN_GET: &[u8] = b"GET /api/v1/items?page=2 HTTP/1.1\r\n\
Host: example.com\r\n\
User-Agent: curl/8.5.0\r\n\
Accept: */*\r\n\r\n";

fn heads(c: &mut Criterion) {
    let limits = HeadLimits::default();
    let mut g = c.benchmark_group("request_head");
    for (name, buf) in [("ws_handshake", WS_HANDSHAKE), ("plain_get", PLAIN_GET)] {
        g.throughput(Throughput::Bytes(buf.len() as u64));
        g.bench_with_input(BenchmarkId::new("ringproxy", name), buf, |b, buf| {
            b.iter(|| {
                let mut h = [httparse::EMPTY_HEADER; 32];
                match parse_request(black_box(buf), &mut h, &limits) {
                    Ok(Parsed::Complete(r, n)) => black_box((r.upgrade, r.host, n)),
                    _ => unreachable!("bench input is valid"),
                };
            })
        });
        g.bench_with_input(BenchmarkId::new("httparse_only", name), buf, |b, buf| {
            b.iter(|| {
                let mut h = [httparse::EMPTY_HEADER; 32];
                let mut r = httparse::Request::new(&mut h);
                black_box(r.parse(black_box(buf)).ok());
            })
        });
    }
    g.finish();
}

fn chunked(c: &mut Criterion) {
    let piece = vec![b'x'; 4096];
    let mut body = Vec::new();
    for _ in 0..16 {
        encode_chunk(&piece, &mut body);
    }
    body.extend_from_slice(LAST_CHUNK);
    let mut g = c.benchmark_group("chunked_decode");
    g.throughput(Throughput::Bytes(64 * 1024));
    g.bench_function("64KiB_in_4KiB_chunks", |b| {
        b.iter(|| {
            let mut dec = ChunkedDecoder::new();
            let mut rest = black_box(&body[..]);
            let mut total = 0;
            while !rest.is_empty() {
                let d = dec.decode(rest).expect("valid body");
                total += d.data.len();
                rest = &rest[d.consumed..];
                if d.done {
                    break;
                }
            }
            black_box(total)
        })
    });
    g.finish();
}

criterion_group!(benches, heads, chunked);
criterion_main!(benches);
