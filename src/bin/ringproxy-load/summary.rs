//! `ringproxy-load report` (this module is `summary` because `report` is the clients' result
//! printer): turns the raw runs `scripts/bench.sh` appends to `results.jsonl` into
//! medians per (scenario, workers, target) and compares every target with nginx. Writes
//! `medians.csv`, `results.md` (the README's benchmark table, with the machine and the command
//! that produced it) and `ratios.png` (the ratios to nginx, drawn with plotters).
//!
//! Input: one JSON object per line. A line with `"kind":"meta"` describes the machine and the
//! run; every other line is one load-tool result plus the fields bench.sh adds (`target`,
//! `workers`, `label`, `repeat`, `cpu_us_per_op`, `rss_kib_per_conn`, ...).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

mod chart;

/// Targets in column order; nginx is the reference for the ratios.
pub const TARGETS: [&str; 4] = ["direct", "nginx", "haproxy", "ringproxy"];
const REFERENCE: &str = "nginx";

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct Meta {
    pub command: String,
    pub date: String,
    pub nproc: u32,
    pub cpu_model: String,
    pub kernel: String,
    pub nginx_version: String,
    pub haproxy_version: String,
    pub git_commit: String,
    pub repeats: u32,
    pub notes: String,
}

/// One raw run: the load tool's JSON plus what bench.sh adds. Unknown fields are ignored.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct Run {
    pub target: String,
    pub workers: Option<String>,
    pub label: Option<String>,
    pub scenario: String,
    pub size: Option<u64>,
    pub connections: Option<u64>,
    pub repeat: u32,
    pub ops_per_s: Option<f64>,
    pub errors: Option<f64>,
    pub p99_us: Option<f64>,
    pub mb_per_s: Option<f64>,
    pub survived: Option<f64>,
    pub dropped: Option<f64>,
    pub lost: Option<f64>,
    pub cpu_us_per_op: Option<f64>,
    pub rss_kib_per_conn: Option<f64>,
    /// Whether the client spoke wss:// (TLS terminated by the target).
    pub tls: Option<bool>,
    /// Whether the target spoke TLS to the echo backend (bench.sh's upstream-tls-*).
    pub upstream_tls: Option<bool>,
}

impl Run {
    /// The scenario as bench.sh named it (`rtt-64`), or one made from scenario and size.
    fn key(&self) -> String {
        match (&self.label, self.size) {
            (Some(l), _) => l.clone(),
            (None, Some(s)) if matches!(self.scenario.as_str(), "rtt" | "bulk") => {
                format!("{}-{s}", self.scenario)
            }
            _ => self.scenario.clone(),
        }
    }

    /// Human name: `rtt 64 B x50`, `wss handshake x50`, `rtt 64 B x50 to TLS backend`.
    fn title(&self) -> String {
        let mut t = if self.tls == Some(true) {
            format!("wss {}", self.scenario)
        } else {
            self.scenario.clone()
        };
        if let (Some(s), true) = (self.size, matches!(self.scenario.as_str(), "rtt" | "bulk")) {
            t.push(' ');
            t.push_str(&human_size(s));
        }
        if let Some(c) = self.connections {
            let _ = write!(t, " x{c}");
        }
        if self.upstream_tls == Some(true) {
            t.push_str(" to TLS backend");
        }
        // bench.sh's `SCENARIO:PATH` runs: ringproxy with one tunnel forwarding path forced.
        if let Some((_, path)) = self.label.as_deref().and_then(|l| l.split_once(':')) {
            let _ = write!(t, ", {path} path");
        }
        t
    }
}

fn human_size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} B"),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    Higher,
    Lower,
}

/// A reported metric: which field, its name in the table, and which direction wins.
#[derive(Debug, Clone, Copy)]
pub struct Metric {
    pub name: &'static str,
    pub unit: &'static str,
    pub better: Better,
    pub get: fn(&Run) -> Option<f64>,
}

const fn m(
    name: &'static str,
    unit: &'static str,
    better: Better,
    get: fn(&Run) -> Option<f64>,
) -> Metric {
    Metric {
        name,
        unit,
        better,
        get,
    }
}

/// The metrics shown for each scenario (by the load tool's `scenario` field).
pub fn metrics(scenario: &str) -> Vec<Metric> {
    use Better::{Higher, Lower};
    let cpu = |what| m(what, "us", Lower, |r: &Run| r.cpu_us_per_op);
    match scenario {
        "rtt" => vec![
            m("round trips/s", "1/s", Higher, |r| r.ops_per_s),
            m("p99 latency", "us", Lower, |r| r.p99_us),
            cpu("proxy CPU per round trip"),
        ],
        "handshake" => vec![
            m("handshakes/s", "1/s", Higher, |r| r.ops_per_s),
            m("p99 handshake", "us", Lower, |r| r.p99_us),
            cpu("proxy CPU per handshake"),
        ],
        "bulk" => vec![
            m("throughput", "MB/s", Higher, |r| r.mb_per_s),
            cpu("proxy CPU per message"),
        ],
        "push" => vec![
            m("messages delivered/s", "1/s", Higher, |r| r.ops_per_s),
            m("p99 delivery", "us", Lower, |r| r.p99_us),
            m("messages lost", "", Lower, |r| r.lost),
            cpu("proxy CPU per delivered message"),
        ],
        "hold" => vec![
            m("memory per idle WebSocket", "KiB", Lower, |r| {
                r.rss_kib_per_conn
            }),
            m("survived", "", Higher, |r| r.survived),
            m("dropped", "", Lower, |r| r.dropped),
        ],
        _ => vec![
            m("ops/s", "1/s", Higher, |r| r.ops_per_s),
            m("errors", "", Lower, |r| r.errors),
        ],
    }
}

/// Median of the present values; `None` when there are none.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// `value / reference`, when both exist and the reference is not zero.
pub fn ratio(value: Option<f64>, reference: Option<f64>) -> Option<f64> {
    match (value, reference) {
        (Some(v), Some(r)) if r != 0.0 => Some(v / r),
        _ => None,
    }
}

/// One line of the table: a metric of a scenario at one worker setting, for every target.
#[derive(Debug, Clone)]
pub struct Row {
    pub key: String,
    pub title: String,
    pub workers: String,
    pub metric: Metric,
    /// Median per target, in [`TARGETS`] order.
    pub values: [Option<f64>; 4],
    /// Number of runs behind each median.
    pub runs: [usize; 4],
}

impl Row {
    /// Ratio of target `i` to nginx.
    pub fn ratio(&self, i: usize) -> Option<f64> {
        ratio(self.values[i], self.values[1])
    }
}

/// Parses results.jsonl: the meta line (if any) and the runs, in file order.
pub fn parse(text: &str) -> Result<(Meta, Vec<Run>)> {
    let mut meta = Meta::default();
    let mut runs = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let v: serde_json::Value =
            serde_json::from_str(line).with_context(|| format!("line {}: not JSON", i + 1))?;
        if v.get("kind").and_then(|k| k.as_str()) == Some("meta") {
            meta = serde_json::from_value(v).with_context(|| format!("line {}: meta", i + 1))?;
        } else {
            let run: Run = serde_json::from_value(v).with_context(|| format!("line {}", i + 1))?;
            if !TARGETS.contains(&run.target.as_str()) {
                bail!("line {}: unknown target {:?}", i + 1, run.target);
            }
            runs.push(run);
        }
    }
    Ok((meta, runs))
}

/// Groups the runs and computes the medians. Rows keep the scenarios' order in the file; the
/// direct runs (no workers) appear in every worker setting's rows.
pub fn aggregate(runs: &[Run]) -> Vec<Row> {
    let mut scenarios: Vec<(String, &Run)> = Vec::new();
    let mut workers: Vec<String> = Vec::new();
    for r in runs {
        let k = r.key();
        if !scenarios.iter().any(|(s, _)| *s == k) {
            scenarios.push((k, r));
        }
        if let Some(w) = &r.workers {
            if r.target != "direct" && !workers.contains(w) {
                workers.push(w.clone());
            }
        }
    }
    if workers.is_empty() {
        workers.push("-".into());
    }
    let mut groups: BTreeMap<(String, String, &str), Vec<&Run>> = BTreeMap::new();
    for r in runs {
        let w = match (&r.workers, r.target.as_str()) {
            (_, "direct") | (None, _) => "-".to_string(),
            (Some(w), _) => w.clone(),
        };
        groups
            .entry((r.key(), w, r.target.as_str()))
            .or_default()
            .push(r);
    }
    let mut rows = Vec::new();
    for (key, first) in &scenarios {
        for w in &workers {
            for metric in metrics(&first.scenario) {
                let mut values = [None; 4];
                let mut counts = [0; 4];
                for (i, t) in TARGETS.iter().enumerate() {
                    let gw = if *t == "direct" {
                        "-".to_string()
                    } else {
                        w.clone()
                    };
                    if let Some(g) = groups.get(&(key.clone(), gw, *t)) {
                        let xs: Vec<f64> = g.iter().filter_map(|r| (metric.get)(r)).collect();
                        counts[i] = xs.len();
                        values[i] = median(&xs);
                    }
                }
                if values.iter().any(Option::is_some) {
                    rows.push(Row {
                        key: key.clone(),
                        title: first.title(),
                        workers: w.clone(),
                        metric,
                        values,
                        runs: counts,
                    });
                }
            }
        }
    }
    rows
}

/// Three significant-ish figures, no exponent.
pub fn fmt_value(v: f64) -> String {
    let a = v.abs();
    if a >= 100.0 || v == v.trunc() {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn opt(v: Option<f64>, f: impl Fn(f64) -> String, none: &str) -> String {
    v.map(f).unwrap_or_else(|| none.to_string())
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

pub fn to_csv(rows: &[Row]) -> String {
    let mut out = String::from("scenario,label,workers,metric,unit,better");
    for t in TARGETS {
        let _ = write!(out, ",{t}");
    }
    for t in TARGETS.iter().filter(|t| **t != REFERENCE) {
        let _ = write!(out, ",{t}_vs_{REFERENCE}");
    }
    for t in TARGETS {
        let _ = write!(out, ",{t}_runs");
    }
    out.push('\n');
    for r in rows {
        let better = if r.metric.better == Better::Higher {
            "higher"
        } else {
            "lower"
        };
        let mut line = [
            &r.title,
            &r.key,
            &r.workers,
            r.metric.name,
            r.metric.unit,
            better,
        ]
        .map(csv_field)
        .join(",");
        for v in r.values {
            let _ = write!(line, ",{}", opt(v, |x| format!("{x}"), ""));
        }
        for (i, _) in TARGETS.iter().enumerate().filter(|(_, t)| **t != REFERENCE) {
            let _ = write!(line, ",{}", opt(r.ratio(i), |x| format!("{x:.4}"), ""));
        }
        for n in r.runs {
            let _ = write!(line, ",{n}");
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}

pub fn to_markdown(meta: &Meta, rows: &[Row]) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "### WebSocket proxying: direct vs nginx vs HAProxy vs ringproxy\n"
    );
    let _ = writeln!(
        o,
        "Machine: {}, nproc {}, {}; {}; {}.  ",
        or_unknown(&meta.cpu_model),
        meta.nproc,
        or_unknown(&meta.kernel),
        or_unknown(&meta.nginx_version),
        or_unknown(&meta.haproxy_version)
    );
    let _ = writeln!(
        o,
        "Command: `{}` (commit {}, {}).  ",
        or_unknown(&meta.command),
        or_unknown(&meta.git_commit),
        or_unknown(&meta.date)
    );
    let _ = writeln!(
        o,
        "Medians of {} interleaved repeats. \"direct\" is the echo backend without a proxy \
         (the ceiling). Ratios are target / nginx: above 1 wins for throughput, below 1 wins \
         for latency, CPU and memory. CPU is the proxy's utime+stime over all its processes \
         (master and workers) across the whole client run, per operation (warmup counted at \
         the measured rate; push includes the subscribers' handshakes). Memory is the proxy's \
         (VmRSS holding - VmRSS before) / held connections, summed over its processes.",
        meta.repeats.max(1)
    );
    if !meta.notes.is_empty() {
        let _ = writeln!(o, "\nNote: {}.", meta.notes);
    }
    o.push_str("\n| scenario | workers | metric |");
    for t in TARGETS {
        let _ = write!(o, " {t} |");
    }
    for t in TARGETS.iter().filter(|t| **t != REFERENCE) {
        let _ = write!(o, " {t}/{REFERENCE} |");
    }
    o.push_str("\n|---|---|---|");
    o.push_str(&"---:|".repeat(TARGETS.len() * 2 - 1));
    o.push('\n');
    for r in rows {
        let unit = if r.metric.unit.is_empty() {
            String::new()
        } else {
            format!(" ({})", r.metric.unit)
        };
        let _ = write!(
            o,
            "| {} | {} | {}{} |",
            r.title, r.workers, r.metric.name, unit
        );
        for v in r.values {
            let _ = write!(o, " {} |", opt(v, fmt_value, "-"));
        }
        for (i, _) in TARGETS.iter().enumerate().filter(|(_, t)| **t != REFERENCE) {
            let _ = write!(o, " {} |", opt(r.ratio(i), |x| format!("{x:.2}x"), "-"));
        }
        o.push('\n');
    }
    o
}

pub(crate) fn or_unknown(s: &str) -> &str {
    if s.is_empty() {
        "unknown"
    } else {
        s
    }
}

/// `ringproxy-load report --input target/bench/results.jsonl --out-dir target/bench/`
pub fn run(args: &[String]) -> Result<()> {
    let mut input = PathBuf::from("target/bench/results.jsonl");
    let mut out_dir = PathBuf::from("target/bench");
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--input" => input = it.next().context("--input needs a file")?.into(),
            "--out-dir" => out_dir = it.next().context("--out-dir needs a directory")?.into(),
            "-h" | "--help" => {
                println!("usage: ringproxy-load report [--input FILE] [--out-dir DIR]");
                return Ok(());
            }
            other => bail!("report: unknown argument {other:?}"),
        }
    }
    let text =
        std::fs::read_to_string(&input).with_context(|| format!("reading {}", input.display()))?;
    let (meta, runs) = parse(&text).with_context(|| format!("parsing {}", input.display()))?;
    if runs.is_empty() {
        bail!("{}: no runs", input.display());
    }
    let rows = aggregate(&runs);
    std::fs::create_dir_all(&out_dir)?;
    let csv = out_dir.join("medians.csv");
    std::fs::write(&csv, to_csv(&rows)).with_context(|| format!("writing {}", csv.display()))?;
    let md = out_dir.join("results.md");
    let markdown = to_markdown(&meta, &rows);
    std::fs::write(&md, &markdown).with_context(|| format!("writing {}", md.display()))?;
    let png = out_dir.join("ratios.png");
    if let Err(e) = chart::draw_png(&rows, &meta, &png) {
        eprintln!("report: no chart: {e:#}");
    }
    print!("{markdown}");
    eprintln!(
        "report: {} runs -> {}, {}, {}",
        runs.len(),
        csv.display(),
        md.display(),
        png.display()
    );
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn run(
        target: &str,
        workers: Option<&str>,
        label: &str,
        repeat: u32,
        ops: f64,
        cpu: Option<f64>,
    ) -> String {
        let w = workers.map_or("null".to_string(), |w| format!("\"{w}\""));
        let cpu = cpu.map_or("null".to_string(), |c| c.to_string());
        format!(
            r#"{{"scenario":"rtt","url":"ws://x/","connections":50,"size":64,"duration_s":3.0,"ops":1,"ops_per_s":{ops},"errors":0,"p50_us":1,"p99_us":10,"p999_us":null,"max_us":null,"mb_per_s":null,"established":null,"survived":null,"dropped":null,"lost":null,"target":"{target}","workers":{w},"label":"{label}","repeat":{repeat},"cpu_s":1.0,"cpu_us_per_op":{cpu},"rss_before_kib":1,"rss_holding_kib":null,"rss_kib_per_conn":null}}"#
        )
    }

    pub(crate) fn sample() -> String {
        let mut lines = vec![r#"{"kind":"meta","command":"scripts/bench.sh --quick","nproc":2,"cpu_model":"Xeon","kernel":"Linux 6","nginx_version":"nginx version: nginx/1.22.1","haproxy_version":"HAProxy version 2.6.12","repeats":3,"notes":"ringproxy skipped"}"#.to_string()];
        for (rep, (d, n, h)) in [
            (150.0, 60.0, 50.0),
            (120.0, 70.0, 55.0),
            (130.0, 65.0, 52.0),
        ]
        .into_iter()
        .enumerate()
        {
            let rep = rep as u32 + 1;
            lines.push(run("direct", None, "rtt-64", rep, d * 1000.0, None));
            lines.push(run(
                "nginx",
                Some("1"),
                "rtt-64",
                rep,
                n * 1000.0,
                Some(14.0 + rep as f64),
            ));
            lines.push(run(
                "haproxy",
                Some("1"),
                "rtt-64",
                rep,
                h * 1000.0,
                Some(12.0),
            ));
            lines.push(run(
                "nginx",
                Some("all"),
                "rtt-64",
                rep,
                2.0 * n * 1000.0,
                Some(16.0),
            ));
        }
        lines.join("\n")
    }

    #[test]
    fn median_odd_even_empty_and_nan() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[f64::NAN, 5.0]), Some(5.0));
    }

    #[test]
    fn ratio_needs_both_and_nonzero_reference() {
        assert_eq!(ratio(Some(50.0), Some(100.0)), Some(0.5));
        assert_eq!(ratio(None, Some(100.0)), None);
        assert_eq!(ratio(Some(1.0), None), None);
        assert_eq!(ratio(Some(1.0), Some(0.0)), None);
    }

    #[test]
    fn aggregates_medians_per_target_and_workers() {
        let (meta, runs) = parse(&sample()).unwrap();
        assert_eq!(meta.nproc, 2);
        assert_eq!(runs.len(), 12);
        let rows = aggregate(&runs);
        // rtt has 3 metrics, for workers 1 and all.
        assert_eq!(rows.len(), 6);
        let rps = &rows[0];
        assert_eq!(
            (rps.workers.as_str(), rps.metric.name),
            ("1", "round trips/s")
        );
        assert_eq!(rps.title, "rtt 64 B x50");
        assert_eq!(
            rps.values,
            [Some(130_000.0), Some(65_000.0), Some(52_000.0), None]
        );
        assert_eq!(rps.runs, [3, 3, 3, 0]);
        assert_eq!(rps.ratio(0), Some(2.0));
        assert_eq!(rps.ratio(2), Some(0.8));
        assert_eq!(rps.ratio(3), None);
        let cpu = &rows[2];
        assert_eq!(cpu.metric.name, "proxy CPU per round trip");
        assert_eq!(cpu.values, [None, Some(16.0), Some(12.0), None]);
        // direct is shown in every workers setting; haproxy has no "all" runs.
        let all = &rows[3];
        assert_eq!(all.workers, "all");
        assert_eq!(all.values, [Some(130_000.0), Some(130_000.0), None, None]);
        assert_eq!(all.ratio(0), Some(1.0));
    }

    #[test]
    fn csv_shape() {
        let (_, runs) = parse(&sample()).unwrap();
        let csv = to_csv(&aggregate(&runs));
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 7);
        let header: Vec<&str> = lines[0].split(',').collect();
        assert_eq!(header.len(), 6 + 4 + 3 + 4);
        assert!(
            lines.iter().all(|l| l.split(',').count() == header.len()),
            "{csv}"
        );
        assert_eq!(header[6..10], ["direct", "nginx", "haproxy", "ringproxy"]);
        assert!(lines[1].starts_with("rtt 64 B x50,rtt-64,1,round trips/s,1/s,higher,130000,65000,52000,,2.0000,0.8000,,3,3,3,0"), "{}", lines[1]);
        assert_eq!(csv_field("a,b"), "\"a,b\"");
    }

    #[test]
    fn markdown_shape() {
        let (meta, runs) = parse(&sample()).unwrap();
        let md = to_markdown(&meta, &aggregate(&runs));
        assert!(md.contains(
            "Machine: Xeon, nproc 2, Linux 6; nginx version: nginx/1.22.1; HAProxy version 2.6.12"
        ));
        assert!(md.contains("Command: `scripts/bench.sh --quick`"));
        assert!(md.contains("Note: ringproxy skipped."));
        let table: Vec<&str> = md.lines().filter(|l| l.starts_with('|')).collect();
        assert_eq!(table.len(), 2 + 6);
        let cols = table[0].matches('|').count();
        assert!(table.iter().all(|l| l.matches('|').count() == cols));
        assert!(table[0].contains("| direct | nginx | haproxy | ringproxy | direct/nginx | haproxy/nginx | ringproxy/nginx |"));
        assert_eq!(table[2], "| rtt 64 B x50 | 1 | round trips/s (1/s) | 130000 | 65000 | 52000 | - | 2.00x | 0.80x | - |");
    }

    #[test]
    fn names_and_numbers() {
        assert_eq!(human_size(64), "64 B");
        assert_eq!(human_size(65536), "64 KiB");
        assert_eq!(human_size(1 << 20), "1 MiB");
        assert_eq!(fmt_value(61234.7), "61235");
        assert_eq!(fmt_value(17.63), "17.6");
        assert_eq!(fmt_value(4.612), "4.61");
        assert_eq!(fmt_value(3.0), "3");
        assert!(parse(r#"{"target":"envoy","scenario":"rtt"}"#).is_err());
        let (_, runs) =
            parse(r#"{"target":"nginx","scenario":"handshake","connections":50,"tls":true}"#)
                .unwrap();
        assert_eq!(runs[0].title(), "wss handshake x50");
        let line =
            r#"{"target":"nginx","scenario":"rtt","size":64,"connections":50,"upstream_tls":true}"#;
        assert_eq!(
            parse(line).unwrap().1[0].title(),
            "rtt 64 B x50 to TLS backend"
        );
    }
}
