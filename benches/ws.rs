//! WebSocket protocol costs outside the proxy's hot path but inside the load tool's and any
//! future handshake validation: the `Sec-WebSocket-Accept` computation (SHA-1 + base64, once per
//! handshake), decoding a 64-byte masked client frame, and unmasking 64 B and 64 KiB payloads
//! (the 8-bytes-at-a-time loop versus a byte loop, to show why the load tool does it that way).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ringproxy::ws;

fn byte_mask(buf: &mut [u8], mask: [u8; 4]) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b ^= mask[i % 4];
    }
}

fn bench(c: &mut Criterion) {
    c.bench_function("accept key", |b| {
        b.iter(|| ws::accept_key(std::hint::black_box(b"dGhlIHNhbXBsZSBub25jZQ==")))
    });

    let mut frame = Vec::new();
    ws::write_frame(
        &mut frame,
        true,
        ws::OpCode::Binary,
        Some([1, 2, 3, 4]),
        &[7u8; 64],
    );
    c.bench_function("decode 64 B masked frame", |b| {
        b.iter(|| ws::decode_frame(std::hint::black_box(&frame), 1 << 20).unwrap())
    });

    let mut g = c.benchmark_group("unmask");
    for size in [64usize, 64 * 1024] {
        let mut buf = vec![0x5Au8; size];
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::new("u64 loop", size), &size, |b, _| {
            b.iter(|| ws::apply_mask(&mut buf, [1, 2, 3, 4], 0))
        });
        g.bench_with_input(BenchmarkId::new("byte loop", size), &size, |b, _| {
            b.iter(|| byte_mask(&mut buf, [1, 2, 3, 4]))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
