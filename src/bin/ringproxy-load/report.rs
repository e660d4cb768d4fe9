//! Per-thread counters, merged at the end into one result: a table for people, or one JSON
//! object (fixed key set, `null` where a number does not apply) for scripts/bench.sh.

use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::cli::{ClientArgs, Scenario};
use crate::client::ClientError;

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
    /// Connections that could not be opened (TCP, TLS or the upgrade failed).
    pub failed_opens: u64,
    /// Connects refused (ECONNREFUSED).
    pub refused: u64,
    /// Connections reset (ECONNRESET) while connecting, upgrading or in use.
    pub reset: u64,
    /// `tunnels`: tunnels that ended without the client asking and without a Close frame.
    pub dropped: u64,
    /// `tunnels`: tunnels the server closed with Close 1001, or with another code.
    pub closed_1001: u64,
    pub closed_other: u64,
    /// `tunnels`: first and last moment (Unix ms) a server's Close, or a drop, was seen.
    pub closes: Span,
    pub drops: Span,
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
            failed_opens: 0,
            refused: 0,
            reset: 0,
            dropped: 0,
            closed_1001: 0,
            closed_other: 0,
            closes: Span::default(),
            drops: Span::default(),
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

    /// Counts a client error, and also as refused or reset when it is one.
    pub fn client_error(&mut self, e: ClientError) {
        match failure_kind(&e) {
            Some(FailureKind::Refused) => self.refused += 1,
            Some(FailureKind::Reset) => self.reset += 1,
            None => {}
        }
        self.error(e);
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
        self.failed_opens += o.failed_opens;
        self.refused += o.refused;
        self.reset += o.reset;
        self.dropped += o.dropped;
        self.closed_1001 += o.closed_1001;
        self.closed_other += o.closed_other;
        self.closes.merge(o.closes);
        self.drops.merge(o.drops);
        self.reached_any |= o.reached_any;
        if self.first_error.is_none() {
            self.first_error = o.first_error;
        }
    }
}

/// The first and last of a set of moments (Unix milliseconds); empty until one is added.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Span(Option<(u64, u64)>);

impl Span {
    pub fn add(&mut self, ms: u64) {
        self.0 = Some(self.0.map_or((ms, ms), |(a, b)| (a.min(ms), b.max(ms))));
    }

    pub fn merge(&mut self, o: Span) {
        if let Some((a, b)) = o.0 {
            self.add(a);
            self.add(b);
        }
    }

    pub fn first(&self) -> Option<u64> {
        self.0.map(|(a, _)| a)
    }

    pub fn last(&self) -> Option<u64> {
        self.0.map(|(_, b)| b)
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum FailureKind {
    Refused,
    Reset,
}

/// Whether an error is a refused connect or a reset connection (a proxy that stops listening
/// badly shows as one or the other; a slow or wrong answer as neither).
pub fn failure_kind(e: &ClientError) -> Option<FailureKind> {
    let io = match e {
        ClientError::Connect(io) | ClientError::Tls(io) | ClientError::Io(io) => io,
        _ => return None,
    };
    match io.kind() {
        std::io::ErrorKind::ConnectionRefused => Some(FailureKind::Refused),
        std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted => {
            Some(FailureKind::Reset)
        }
        _ => None,
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
    /// Connections that could not be opened; connects refused; connections reset.
    pub failed_opens: u64,
    pub refused: u64,
    pub reset: u64,
    /// `tunnels`: how many the server closed with Close 1001 or another code, and the first
    /// and last moment (Unix ms) a Close, or a drop, was seen; `null` for other scenarios or
    /// when there was none.
    pub closed_1001: Option<u64>,
    pub closed_other: Option<u64>,
    pub close_first_unix_ms: Option<u64>,
    pub close_last_unix_ms: Option<u64>,
    pub drop_first_unix_ms: Option<u64>,
    pub drop_last_unix_ms: Option<u64>,
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
        let tunnels = sc == Scenario::Tunnels;
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
            survived: matches!(sc, Scenario::Hold | Scenario::Tunnels).then_some(s.survived),
            dropped: match sc {
                Scenario::Hold => Some(s.established - s.survived.min(s.established)),
                Scenario::Tunnels => Some(s.dropped),
                _ => None,
            },
            lost: matches!(sc, Scenario::Push | Scenario::Tunnels).then_some(s.lost),
            tls: args.target.tls,
            tls_resumed: args.target.tls.then_some(s.resumed),
            driver: crate::rt::driver(),
            failed_opens: s.failed_opens,
            refused: s.refused,
            reset: s.reset,
            closed_1001: tunnels.then_some(s.closed_1001),
            closed_other: tunnels.then_some(s.closed_other),
            close_first_unix_ms: s.closes.first(),
            close_last_unix_ms: s.closes.last(),
            drop_first_unix_ms: s.drops.first(),
            drop_last_unix_ms: s.drops.last(),
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
            ("failed", self.failed_opens.to_string()),
            ("refused", self.refused.to_string()),
            ("reset", self.reset.to_string()),
            ("close 1001", optu(self.closed_1001)),
            ("close other", optu(self.closed_other)),
        ];
        for (k, v) in rows {
            let _ = writeln!(t, "{k:<12} {v}");
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_and_reset_are_told_apart_from_other_failures() {
        let io = |k| std::io::Error::from(k);
        use std::io::ErrorKind as K;
        assert_eq!(
            failure_kind(&ClientError::Connect(io(K::ConnectionRefused))),
            Some(FailureKind::Refused)
        );
        assert_eq!(
            failure_kind(&ClientError::Tls(io(K::ConnectionReset))),
            Some(FailureKind::Reset)
        );
        assert_eq!(
            failure_kind(&ClientError::Io(io(K::ConnectionReset))),
            Some(FailureKind::Reset)
        );
        assert_eq!(failure_kind(&ClientError::Io(io(K::UnexpectedEof))), None);
        assert_eq!(failure_kind(&ClientError::Closed), None);
        assert_eq!(failure_kind(&ClientError::Timeout), None);
        let mut s = Stats::new();
        s.client_error(ClientError::Connect(io(K::ConnectionRefused)));
        s.client_error(ClientError::Io(io(K::ConnectionReset)));
        s.client_error(ClientError::Timeout);
        assert_eq!((s.errors, s.refused, s.reset), (3, 1, 1));
    }

    #[test]
    fn spans_keep_the_first_and_last_moment() {
        let mut a = Span::default();
        assert_eq!((a.first(), a.last()), (None, None));
        a.add(50);
        a.add(20);
        a.add(70);
        let mut b = Span::default();
        b.add(90);
        b.merge(a);
        b.merge(Span::default());
        assert_eq!((b.first(), b.last()), (Some(20), Some(90)));
    }
}
