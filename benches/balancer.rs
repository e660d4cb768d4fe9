//! Pick latency of the upstream balancers, the per-request cost of choosing a peer.
//!
//! Compares nginx-compatible round robin, `hash KEY` and `hash KEY consistent` (ketama ring
//! lookup) over 2, 10 and 100 peers with mixed weights (1, 2, 3, ...). One iteration is one
//! request: a fresh `PickState`, `pick` (with a key from a rotating set of 1024 for the hash
//! methods), `report` success and `release`, as the proxy handler does. Building the
//! consistent-hash ring (160 points per unit of weight, once per config load) is measured
//! separately.

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use ringproxy::upstream::balancer::{build, ChashRing, Method, Outcome, PickState};
use ringproxy::upstream::{PeerSpec, Peers};

fn specs(n: u16) -> Vec<PeerSpec> {
    (0..n)
        .map(|i| PeerSpec {
            weight: u32::from(i % 3 + 1),
            ..PeerSpec::new(
                format!("10.0.{}.{}:8080", i / 256, i % 256),
                SocketAddr::from(([10, 0, (i / 256) as u8, (i % 256) as u8], 8080)),
            )
        })
        .collect()
}

fn pick(c: &mut Criterion) {
    let keys: Vec<String> = (0..1024).map(|i| format!("user-{i}")).collect();
    let now = Instant::now();
    let mut group = c.benchmark_group("pick");
    for n in [2u16, 10, 100] {
        for (label, method) in [
            ("round_robin", Method::RoundRobin),
            ("hash", Method::Hash),
            ("consistent_hash", Method::ConsistentHash),
        ] {
            let mut b = build(&method, specs(n)).expect("peers");
            let mut i = 0usize;
            group.bench_with_input(BenchmarkId::new(label, n), &n, |bench, _| {
                bench.iter(|| {
                    i = (i + 1) % keys.len();
                    let mut st = PickState::new();
                    let id = b
                        .pick(Some(black_box(keys[i].as_bytes())), now, &mut st)
                        .expect("a peer");
                    b.report(id, Outcome::Success, now);
                    b.release(id);
                    black_box(id)
                })
            });
        }
    }
    group.finish();
}

fn ring_build(c: &mut Criterion) {
    let mut group = c.benchmark_group("chash_ring_build");
    for n in [2u16, 10, 100] {
        let peers = Peers::new(specs(n)).expect("peers");
        group.bench_with_input(BenchmarkId::from_parameter(n), &peers, |bench, peers| {
            bench.iter(|| black_box(ChashRing::new(peers)))
        });
    }
    group.finish();
}

criterion_group!(benches, pick, ring_build);
criterion_main!(benches);
