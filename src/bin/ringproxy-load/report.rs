//! Per-thread counters, merged at the end into one result: a table for people, or one JSON
//! object (fixed key set, `null` where a number does not apply) for scripts/bench.sh.

use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::cli::{ClientArgs, Scenario};

/// Counters of one client thread. Latencies are recorded in nanoseconds.
pub struct Stats {
    pub ops: u64,
    pub errors: u64,
    pub payload_bytes: u64,
    pub hist: Histogram<u64>,
    pub established: u64,
    pub survived: u64,
    pub lost: u64,
    /// TLS handshakes that resumed a session (with `--resume`).
    pub resumed: u64,
    /// Whether any TCP connect succeeded: none at all means the tool could not run.
    pub reached_any: bool,
    pub first_error: Option<String>,
}

impl Stats {
    pub fn new() -> Self {
        Self {
            ops: 0,
            errors: 0,
            payload_bytes: 0,
            // 1 ns to 1 hour at 3 significant digits.
            hist: Histogram::new_with_bounds(1, 3_600_000_000_000, 3)
                .expect("static histogram bounds are valid"),
            established: 0,
            survived: 0,
            lost: 0,
            resumed: 0,
            reached_any: false,
            first_error: None,
        }
    }

    pub fn error(&mut self, what: impl std::fmt::Display) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(what.to_string());
        }
    }

    pub fn merge(&mut self, o: Stats) {
        self.ops += o.ops;
        self.errors += o.errors;
        self.payload_bytes += o.payload_bytes;
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.hist.add(&o.hist);
        self.established += o.established;
        self.survived += o.survived;
        self.lost += o.lost;
        self.resumed += o.resumed;
        self.reached_any |= o.reached_any;
        if self.first_error.is_none() {
            self.first_error = o.first_error;
        }
    }
}

#[derive(Serialize)]
pub struct Report {
    pub scenario: &'static str,
    pub url: String,
    pub connections: usize,
    pub size: Option<usize>,
    pub duration_s: f64,
    pub ops: u64,
    pub ops_per_s: f64,
    pub errors: u64,
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
    pub p999_us: Option<f64>,
    pub max_us: Option<f64>,
    pub mb_per_s: Option<f64>,
    pub established: Option<u64>,
    pub survived: Option<u64>,
    pub dropped: Option<u64>,
    pub lost: Option<u64>,
    pub tls: bool,
    /// Of `established`, how many TLS handshakes resumed a session; `null` without TLS.
    pub tls_resumed: Option<u64>,
    /// The io driver the client ran (`io_uring`, or `epoll` when forced or as the fallback).
    pub driver: &'static str,
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

impl Report {
    pub fn new(args: &ClientArgs, s: &Stats, secs: f64) -> Self {
        let us = |q: f64| {
            (!s.hist.is_empty()).then(|| round3(s.hist.value_at_quantile(q) as f64 / 1000.0))
        };
        let secs = secs.max(1e-9);
        let sc = args.scenario;
        Report {
            scenario: sc.name(),
            url: args.target.url.clone(),
            connections: args.connections,
            size: matches!(sc, Scenario::Rtt | Scenario::Bulk | Scenario::Handshake)
                .then_some(args.size),
            duration_s: round3(secs),
            ops: s.ops,
            ops_per_s: round3(s.ops as f64 / secs),
            errors: s.errors,
            p50_us: us(0.5),
            p99_us: us(0.99),
            p999_us: us(0.999),
            max_us: (!s.hist.is_empty()).then(|| round3(s.hist.max() as f64 / 1000.0)),
            mb_per_s: matches!(sc, Scenario::Rtt | Scenario::Bulk)
                .then(|| round3(s.payload_bytes as f64 / secs / 1e6)),
            established: Some(s.established),
            survived: (sc == Scenario::Hold).then_some(s.survived),
            dropped: (sc == Scenario::Hold).then(|| s.established - s.survived.min(s.established)),
            lost: (sc == Scenario::Push).then_some(s.lost),
            tls: args.target.tls,
            tls_resumed: args.target.tls.then_some(s.resumed),
            driver: crate::rt::driver(),
        }
    }

    pub fn table(&self) -> String {
        let mut t = String::new();
        let opt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
        let optu = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
        let rows: Vec<(&str, String)> = vec![
            ("scenario", self.scenario.to_string()),
            ("url", self.url.clone()),
            ("connections", self.connections.to_string()),
            ("size", self.size.map_or("-".into(), |v| format!("{v} B"))),
            ("duration", format!("{:.3} s", self.duration_s)),
            ("ops", self.ops.to_string()),
            ("ops/s", format!("{:.1}", self.ops_per_s)),
            ("errors", self.errors.to_string()),
            ("p50", format!("{} us", opt(self.p50_us))),
            ("p99", format!("{} us", opt(self.p99_us))),
            ("p99.9", format!("{} us", opt(self.p999_us))),
            ("max", format!("{} us", opt(self.max_us))),
            ("MB/s", opt(self.mb_per_s)),
            ("established", optu(self.established)),
            ("survived", optu(self.survived)),
            ("dropped", optu(self.dropped)),
            ("lost", optu(self.lost)),
            ("tls", self.tls.to_string()),
            ("resumed", optu(self.tls_resumed)),
            ("driver", self.driver.to_string()),
        ];
        for (k, v) in rows {
            let _ = writeln!(t, "{k:<12} {v}");
        }
        t
    }
}
