//! `ringproxy-load`: the WebSocket load tool and test backend that ringproxy's benchmarks and
//! integration tests drive (`echo` backend, plain or TLS; `rtt`, `handshake`, `hold`, `push`,
//! `bulk`, `tunnels` clients over ws:// or wss://; `cert` makes a self-signed certificate; `report` turns
//! bench.sh's raw runs into tables and a chart).
//!
//! Threads each own one monoio runtime, like the proxy's shards; the main thread only prints
//! progress, merges per-thread counters and reports. Exit status is non-zero only when the tool
//! itself could not run (bad flags, nothing could connect): counted errors are data.

mod cert;
mod cli;
mod client;
mod conn;
mod push;
mod report;
mod rt;
mod scenarios;
mod server;
mod summary;
mod tls;
mod tunnels;

use std::io::Write as _;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::cli::{ClientArgs, Command, Scenario};
use crate::report::{Report, Stats};
use crate::scenarios::{Msg, Shared};

fn main() {
    // `report` (bench.sh's aggregation) has its own flags, outside the load-generating CLI.
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("report") {
        if let Err(e) = summary::run(&args[1..]) {
            eprintln!("ringproxy-load: {e:#}");
            std::process::exit(1);
        }
        return;
    }
    let cmd = match cli::parse_args(std::env::args_os().skip(1)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ringproxy-load: {e:#}");
            std::process::exit(2);
        }
    };
    let res = match cmd {
        Command::Help => {
            println!("{}", cli::USAGE);
            Ok(())
        }
        Command::Echo(a) => server::run(a),
        Command::Client(a) => run_client(a),
        Command::Cert(a) => cert::run(&a),
    };
    if let Err(e) = res {
        eprintln!("ringproxy-load: {e:#}");
        std::process::exit(1);
    }
}

fn run_client(args: ClientArgs) -> Result<()> {
    let tls = match args.target.tls {
        true => Some(Arc::new(tls::client(&args.tls, &args.target.host)?)),
        false => None,
    };
    let sh = Arc::new(Shared::new(args.clone(), tls));
    let (tx, rx) = mpsc::channel();
    for t in 0..args.threads {
        let (sh, tx) = (sh.clone(), tx.clone());
        std::thread::Builder::new()
            .name(format!("load-{t}"))
            .spawn(move || {
                let mut guard = DoneGuard { t, tx, sent: false };
                let res = rt::block_on(|| scenarios::run_thread(sh, t, guard.tx.clone()));
                guard.sent = true;
                let _ = guard.tx.send(Msg::Done(t, res.map(Box::new)));
            })
            .context("cannot start a client thread")?;
    }
    drop(tx);

    let mut total = Stats::new();
    let mut done = 0;
    let mut opened_threads = 0;
    let mut released = false;
    let mut announced = false;
    let mut thread_error = None;
    let mut next_progress = Instant::now() + Duration::from_secs(1);
    while done < args.threads {
        let mut wait = next_progress.saturating_duration_since(Instant::now());
        if args.scenario == Scenario::Tunnels && !announced {
            // The announcement below is what scripts wait for: look often.
            wait = wait.min(Duration::from_millis(50));
        }
        match rx.recv_timeout(wait) {
            Ok(Msg::Opened) => opened_threads += 1,
            Ok(Msg::Done(_, Ok(s))) => {
                done += 1;
                total.merge(*s);
            }
            Ok(Msg::Done(t, Err(e))) => {
                done += 1;
                thread_error.get_or_insert(format!("thread {t}: {e:#}"));
            }
            Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() >= next_progress => {
                progress(&sh);
                next_progress += Duration::from_secs(1);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if args.scenario == Scenario::Tunnels
            && !announced
            && sh.open_tried.load(Ordering::Acquire) >= args.connections
        {
            // Scripts wait for this line before they signal the proxy.
            let n = sh.opened.load(Ordering::Relaxed);
            let mut err = std::io::stderr().lock();
            let _ = writeln!(err, "tunnels: established {n}");
            let _ = err.flush();
            announced = true;
        }
        if args.scenario == Scenario::Hold && !released && opened_threads + done >= args.threads {
            let n = sh.opened.load(Ordering::Relaxed);
            let mut err = std::io::stderr().lock();
            let _ = writeln!(err, "hold: established {n}");
            let _ = err.flush();
            sh.release_hold();
            released = true;
        }
    }
    if let Some(e) = thread_error {
        bail!("{e}");
    }
    if !total.reached_any {
        bail!(
            "cannot connect to {}: {}",
            args.target.url,
            total
                .first_error
                .as_deref()
                .unwrap_or("no connection attempted")
        );
    }
    if let Some(e) = &total.first_error {
        eprintln!(
            "{}: {} errors, first: {e}",
            args.scenario.name(),
            total.errors
        );
    }

    let secs = match args.scenario {
        Scenario::Hold => args.idle.as_secs_f64(),
        Scenario::Push => {
            let all = sh.all_settled_ns.load(Ordering::Acquire);
            let end = (args.warmup + args.duration).as_nanos() as u64;
            if all == u64::MAX {
                0.0
            } else {
                end.saturating_sub(all) as f64 / 1e9
            }
        }
        _ => args.duration.as_secs_f64(),
    };
    let report = Report::new(&args, &total, secs);
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer(&mut out, &report)?;
        writeln!(out)?;
    } else {
        write!(out, "{}", report.table())?;
    }
    out.flush()?;
    Ok(())
}

/// Reports a thread that panicked as done, so the main thread (and a `hold` run waiting for
/// every thread to finish opening) is never left waiting for it.
struct DoneGuard {
    t: usize,
    tx: mpsc::Sender<Msg>,
    sent: bool,
}

impl Drop for DoneGuard {
    fn drop(&mut self) {
        if !self.sent {
            let _ = self.tx.send(Msg::Done(
                self.t,
                Err(anyhow::anyhow!("client thread panicked")),
            ));
        }
    }
}

fn progress(sh: &Shared) {
    let a = &sh.args;
    let opened = sh.opened.load(Ordering::Relaxed);
    let elapsed = sh.start.elapsed();
    let total = match a.scenario {
        Scenario::Hold => None,
        _ => Some(a.warmup + a.duration),
    };
    let mut err = std::io::stderr().lock();
    let _ = match total {
        Some(t) => writeln!(
            err,
            "{}: {opened} connections opened, {}s left",
            a.scenario.name(),
            t.saturating_sub(elapsed).as_secs()
        ),
        None => writeln!(
            err,
            "{}: {opened}/{} connections opened, {}s elapsed",
            a.scenario.name(),
            a.connections,
            elapsed.as_secs()
        ),
    };
}
