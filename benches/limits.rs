//! What a limited request costs: `limit_req`'s check and charge and `limit_conn`'s slot taken
//! and given back, on zones shared by every shard (16 tables behind their own locks). One
//! iteration is one request from one of 10,000 client addresses (4-byte keys, as
//! `$binary_remote_addr`); the rate is high enough that nothing is rejected, so each
//! iteration does the whole work. `contended`: the same with a second thread doing it on the
//! same zone at the same time, as two shards would.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use ringproxy::limits::req::{decide, Limit};
use ringproxy::limits::{conn_zone, now_ms, req_zone};

fn keys() -> Vec<[u8; 4]> {
    (0..10_000u32)
        .map(|i| (0x0a00_0000 | i).to_be_bytes())
        .collect()
}

fn limit_req(c: &mut Criterion) {
    let keys = keys();
    let zone = req_zone("bench_req", 10 << 20, "$binary_remote_addr", 1_000_000_000).unwrap();
    let mut i = 0;
    c.bench_function("limit_req/one_zone", |b| {
        b.iter(|| {
            i = (i + 1) % keys.len();
            let l = [Limit {
                zone: &zone,
                key: &keys[i],
                burst: 1_000_000,
                delay: u64::MAX,
            }];
            black_box(decide(&l, now_ms()))
        })
    });
    let stop = Arc::new(AtomicBool::new(false));
    let other = {
        let (zone, stop, keys) = (zone.clone(), stop.clone(), keys.clone());
        std::thread::spawn(move || {
            let mut j = 0;
            while !stop.load(Ordering::Relaxed) {
                j = (j + 7) % keys.len();
                let l = [Limit {
                    zone: &zone,
                    key: &keys[j],
                    burst: 1_000_000,
                    delay: u64::MAX,
                }];
                black_box(decide(&l, now_ms()));
            }
        })
    };
    c.bench_function("limit_req/contended", |b| {
        b.iter(|| {
            i = (i + 1) % keys.len();
            let l = [Limit {
                zone: &zone,
                key: &keys[i],
                burst: 1_000_000,
                delay: u64::MAX,
            }];
            black_box(decide(&l, now_ms()))
        })
    });
    stop.store(true, Ordering::Relaxed);
    other.join().unwrap();
}

fn limit_conn(c: &mut Criterion) {
    let keys = keys();
    let zone = conn_zone("bench_conn", 10 << 20, "$binary_remote_addr").unwrap();
    let mut i = 0;
    c.bench_function("limit_conn/acquire_release", |b| {
        b.iter(|| {
            i = (i + 1) % keys.len();
            black_box(zone.acquire(&keys[i], 100).is_ok())
        })
    });
}

criterion_group!(benches, limit_req, limit_conn);
criterion_main!(benches);
