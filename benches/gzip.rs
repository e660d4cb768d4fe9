//! The cost of gzip on the response path: compressing a 1 MiB text body through the streaming
//! encoder in 16 KiB slices (as the relay hands it over, framed as chunks) at levels 1 (nginx's
//! default), 6 and 9, against the plain chunk framing the relay does without gzip. Throughput is
//! reported per input byte, so the numbers read as "MiB/s of upstream body per core".

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ringproxy::http::body::encode_chunk;
use ringproxy::proxy::gzip::BodyEncoder;

/// 1 MiB of log-like text (compresses about 4:1 at level 1).
fn body() -> Vec<u8> {
    let mut out = Vec::with_capacity(1 << 20);
    let mut i = 0u64;
    while out.len() < 1 << 20 {
        out.extend_from_slice(
            format!(
                "{i} GET /api/v1/items/{} 200 {}ms user-agent=bench\n",
                i * 7919 % 10007,
                i % 97
            )
            .as_bytes(),
        );
        i += 1;
    }
    out.truncate(1 << 20);
    out
}

fn gzip(c: &mut Criterion) {
    let data = body();
    let mut g = c.benchmark_group("response_body_1MiB");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("chunked_plain", |b| {
        b.iter(|| {
            let mut out = Vec::with_capacity(20 * 1024);
            for slice in data.chunks(16 * 1024) {
                encode_chunk(slice, &mut out);
                black_box(&out);
                out.clear();
            }
        })
    });
    for level in [1u32, 6, 9] {
        g.bench_with_input(
            BenchmarkId::new("gzip_level", level),
            &level,
            |b, &level| {
                b.iter(|| {
                    let mut enc = BodyEncoder::new(level, true);
                    let mut out = Vec::with_capacity(20 * 1024);
                    for slice in data.chunks(16 * 1024) {
                        enc.push(slice, &mut out).unwrap();
                        black_box(&out);
                        out.clear();
                    }
                    enc.finish(&mut out).unwrap();
                    black_box(out.len())
                })
            },
        );
    }
    g.finish();
}

criterion_group!(benches, gzip);
criterion_main!(benches);
