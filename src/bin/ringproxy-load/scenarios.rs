//! The client scenarios (`rtt`, `bulk`, `handshake`, `hold`, `push`; `tunnels` in
//! crate::tunnels), run on one thread's runtime each; connection `i` of N belongs to thread
//! `i % threads`.
//!
//! Every reply is checked (length and content) so a proxy that corrupts or reorders bytes
//! shows up as errors, never as speed. Each wait is bounded by the run's deadline plus a grace
//! period, so a stalled server cannot hang the tool.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::Duration;

use monoio::time::{sleep, timeout, timeout_at, Instant};

use crate::cli::{ClientArgs, Scenario};
use crate::client::{ClientError, Rng, WsClient};
use crate::push::{decode_push, now_ns, PUSH_MSG_LEN};
use crate::report::Stats;
use crate::tls::ClientTls;

/// How long past the deadline an operation may still finish before it counts as stalled.
const GRACE: Duration = Duration::from_secs(2);
/// Handshakes in flight while `hold` opens connections, across all threads.
pub const MAX_OPENING: usize = 512;
/// How long one `hold` handshake or liveness check may take.
const HOLD_OP_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after a failed connection before a scenario loop tries again.
const RETRY_PAUSE: Duration = Duration::from_millis(20);

/// State shared by all client threads and the main thread (progress, barriers).
pub struct Shared {
    pub args: ClientArgs,
    /// Client TLS configuration for `wss://` targets.
    pub tls: Option<Arc<ClientTls>>,
    pub start: std::time::Instant,
    pub opened: AtomicU64,
    /// Whether any TCP connection to the target ever succeeded (even if its upgrade failed):
    /// until then a refused connect means the target is wrong or down, not a counted error.
    pub reached: AtomicBool,
    /// Connections that finished their first attempt, good or bad (`push` measures once all
    /// have).
    pub settled: AtomicUsize,
    /// Nanoseconds after `start` when every `push` subscriber had settled; `u64::MAX` until then.
    pub all_settled_ns: AtomicU64,
    pub next_open: AtomicUsize,
    /// Set by the main thread once every `hold` connection is open, releasing the idle phase.
    pub go: (Mutex<bool>, Condvar),
    /// `tunnels`: opening attempts finished, good or bad (the main thread reports when all
    /// have).
    pub open_tried: AtomicUsize,
}

impl Shared {
    pub fn new(args: ClientArgs, tls: Option<Arc<ClientTls>>) -> Self {
        Self {
            args,
            tls,
            start: std::time::Instant::now(),
            opened: AtomicU64::new(0),
            reached: AtomicBool::new(false),
            settled: AtomicUsize::new(0),
            all_settled_ns: AtomicU64::new(u64::MAX),
            next_open: AtomicUsize::new(0),
            go: (Mutex::new(false), Condvar::new()),
            open_tried: AtomicUsize::new(0),
        }
    }

    pub fn start_at(&self) -> Instant {
        Instant::from_std(self.start)
    }

    /// End of the measured window (after the warm-up).
    pub fn end(&self) -> Instant {
        self.start_at() + self.args.warmup + self.args.duration
    }

    pub fn release_hold(&self) {
        let (m, cv) = &self.go;
        *m.lock().unwrap_or_else(|e| e.into_inner()) = true;
        cv.notify_all();
    }

    fn wait_hold_release(&self) {
        let (m, cv) = &self.go;
        let mut go = m.lock().unwrap_or_else(|e| e.into_inner());
        while !*go {
            go = cv.wait(go).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn reached(&self, st: &St) {
        self.reached.store(true, Ordering::Relaxed);
        st.borrow_mut().reached_any = true;
    }
}

pub enum Msg {
    /// A `hold` thread has opened (or failed) all its connections.
    Opened,
    Done(usize, anyhow::Result<Box<Stats>>),
}

pub type St = Rc<RefCell<Stats>>;

pub async fn run_thread(sh: Arc<Shared>, t: usize, tx: mpsc::Sender<Msg>) -> Stats {
    let stats: St = Rc::new(RefCell::new(Stats::new()));
    let a = &sh.args;
    let mine: Vec<usize> = (t..a.connections).step_by(a.threads).collect();
    match a.scenario {
        Scenario::Hold => hold(&sh, &stats, mine.len(), &tx).await,
        Scenario::Tunnels => crate::tunnels::run(&sh, &stats).await,
        sc => {
            let tasks: Vec<_> = mine
                .into_iter()
                .map(|i| {
                    let (sh, st) = (sh.clone(), stats.clone());
                    match sc {
                        Scenario::Rtt | Scenario::Bulk => monoio::spawn(pingpong(sh, st, i)),
                        Scenario::Handshake => monoio::spawn(handshake(sh, st, i)),
                        _ => monoio::spawn(push(sh, st, i)),
                    }
                })
                .collect();
            for task in tasks {
                task.await;
            }
        }
    }
    let out = std::mem::replace(&mut *stats.borrow_mut(), Stats::new());
    out
}

/// Connects within the deadline, recording success and failure.
pub async fn open(sh: &Shared, st: &St, rng: &mut Rng, deadline: Instant) -> Option<WsClient> {
    let connect = WsClient::connect(&sh.args.target, sh.tls.as_deref(), rng);
    match timeout_at(deadline, connect).await {
        Ok(Ok(ws)) => {
            sh.reached(st);
            sh.opened.fetch_add(1, Ordering::Relaxed);
            let mut s = st.borrow_mut();
            s.established += 1;
            s.resumed += u64::from(ws.resumed());
            drop(s);
            Some(ws)
        }
        Ok(Err(e)) => {
            if !matches!(e, ClientError::Connect(_) | ClientError::Tls(_)) {
                // TCP and TLS got through; the upgrade failed, which is a result, not a setup
                // problem. Until a TLS handshake has succeeded once, a failing one (untrusted
                // certificate, wrong name) means the tool cannot run against this target.
                sh.reached(st);
            }
            let mut s = st.borrow_mut();
            s.failed_opens += 1;
            s.client_error(e);
            None
        }
        Err(_) => {
            let mut s = st.borrow_mut();
            s.failed_opens += 1;
            s.error(ClientError::Timeout);
            None
        }
    }
}

pub async fn close_quietly(mut ws: WsClient, rng: &mut Rng) {
    let _ = timeout(Duration::from_secs(1), ws.close(rng.mask())).await;
}

/// `rtt` and `bulk`: one message in flight per connection, every echo compared byte for byte.
/// A counter in the first bytes makes each message unique, so a stale or reordered reply fails.
async fn pingpong(sh: Arc<Shared>, st: St, i: usize) {
    let mut rng = Rng::new(i as u64);
    let size = sh.args.size;
    let mut payload = vec![0u8; size];
    rng.fill(&mut payload);
    let measure_from = sh.start_at() + sh.args.warmup;
    let end = sh.end();
    let mut counter = 0u64;
    while Instant::now() < end {
        let Some(mut ws) = open(&sh, &st, &mut rng, end + GRACE).await else {
            // Nothing has ever connected: the target is wrong or down, and retrying for the
            // whole duration would only hide that.
            if !sh.reached.load(Ordering::Relaxed) {
                return;
            }
            sleep(RETRY_PAUSE).await;
            continue;
        };
        // One deadline for the whole session rather than a timer per round trip: the bound is
        // the same absolute instant, and arming a timer per message costs throughput.
        let session = async {
            loop {
                let t0 = Instant::now();
                if t0 >= end {
                    return Ok(());
                }
                counter += 1;
                let tag = counter.to_le_bytes();
                let n = size.min(8);
                payload[..n].copy_from_slice(&tag[..n]);
                match ws.echo_check(&payload, &mut rng).await {
                    Ok(()) => {
                        let t1 = Instant::now();
                        if t1 >= measure_from && t1 <= end {
                            let mut s = st.borrow_mut();
                            s.ops += 1;
                            s.payload_bytes += 2 * size as u64;
                            s.hist.saturating_record((t1 - t0).as_nanos() as u64);
                        }
                    }
                    // The framing is intact, only the content differs: keep this connection.
                    Err(ClientError::Mismatch) => st.borrow_mut().error(ClientError::Mismatch),
                    Err(e) => return Err(e),
                }
            }
        };
        match timeout_at(end + GRACE, session).await {
            Ok(Ok(())) => {
                close_quietly(ws, &mut rng).await;
                return;
            }
            Ok(Err(e)) => st.borrow_mut().error(e),
            Err(_) => {
                st.borrow_mut().error(ClientError::Timeout);
                return;
            }
        }
        sleep(RETRY_PAUSE).await;
    }
}

/// `handshake`: connect, upgrade, one checked echo, close handshake, repeat. The latency is
/// connect start to verified 101.
async fn handshake(sh: Arc<Shared>, st: St, i: usize) {
    let mut rng = Rng::new(i as u64);
    let mut payload = vec![0u8; sh.args.size.max(1)];
    rng.fill(&mut payload);
    let measure_from = sh.start_at() + sh.args.warmup;
    let end = sh.end();
    while Instant::now() < end {
        let t0 = Instant::now();
        let Some(mut ws) = open(&sh, &st, &mut rng, end + GRACE).await else {
            if !sh.reached.load(Ordering::Relaxed) {
                return;
            }
            sleep(RETRY_PAUSE).await;
            continue;
        };
        let hs = t0.elapsed();
        let cycle = async {
            ws.echo_check(&payload, &mut rng).await?;
            ws.close(rng.mask()).await
        };
        match timeout_at(end + GRACE, cycle).await {
            Ok(Ok(())) => {
                let t1 = Instant::now();
                if t1 >= measure_from && t1 <= end + GRACE {
                    let mut s = st.borrow_mut();
                    s.ops += 1;
                    s.payload_bytes += 2 * payload.len() as u64;
                    s.hist.saturating_record(hs.as_nanos() as u64);
                }
            }
            Ok(Err(e)) => st.borrow_mut().client_error(e),
            Err(_) => {
                st.borrow_mut().error(ClientError::Timeout);
                return;
            }
        }
    }
}

/// `push`: subscribe, then check every broadcast message's sequence number and measure its
/// delivery latency from the server's timestamp, once every subscriber has connected.
async fn push(sh: Arc<Shared>, st: St, i: usize) {
    let mut rng = Rng::new(i as u64);
    let end = sh.end();
    let n = sh.args.connections;
    let conn = open(&sh, &st, &mut rng, end).await;
    if sh.settled.fetch_add(1, Ordering::AcqRel) + 1 == n {
        let ns = sh.start.elapsed().as_nanos() as u64;
        sh.all_settled_ns.store(ns, Ordering::Release);
    }
    let Some(mut ws) = conn else { return };
    let mut last: Option<u64> = None;
    let mut msg = [0u8; PUSH_MSG_LEN];
    loop {
        let mask = rng.mask();
        let res = timeout_at(
            end,
            ws.recv_message(mask, |off, chunk| {
                if let Some(dst) = msg.get_mut(off..off + chunk.len()) {
                    dst.copy_from_slice(chunk);
                }
            }),
        )
        .await;
        let len = match res {
            Ok(Ok((_, len))) => len,
            Ok(Err(e)) => {
                st.borrow_mut().error(e);
                return;
            }
            Err(_) => break,
        };
        let arrived = now_ns();
        let Some((ts, seq)) =
            decode_push(&msg[..len.min(PUSH_MSG_LEN)]).filter(|_| len == PUSH_MSG_LEN)
        else {
            st.borrow_mut().error(ClientError::Mismatch);
            continue;
        };
        let measuring = sh.all_settled_ns.load(Ordering::Acquire) != u64::MAX;
        let mut s = st.borrow_mut();
        if let Some(prev) = last {
            if seq <= prev {
                s.error(ClientError::Protocol("push sequence went backwards"));
            } else if measuring {
                s.lost += seq - prev - 1;
            }
        }
        last = Some(seq);
        if measuring {
            s.ops += 1;
            s.payload_bytes += PUSH_MSG_LEN as u64;
            s.hist.saturating_record(arrived.saturating_sub(ts));
        }
    }
    close_quietly(ws, &mut rng).await;
}

/// `hold`: open this thread's share of connections (paced, bounded in flight), report to the
/// main thread, wait until every thread is done opening, idle, then check each with an echo.
async fn hold(sh: &Arc<Shared>, st: &St, mine: usize, tx: &mpsc::Sender<Msg>) {
    let a = &sh.args;
    let held: Rc<RefCell<Vec<WsClient>>> = Rc::new(RefCell::new(Vec::with_capacity(mine)));
    let workers = MAX_OPENING.div_ceil(a.threads).min(mine.max(1));
    let tasks: Vec<_> = (0..workers)
        .map(|w| {
            let (sh, st, held) = (sh.clone(), st.clone(), held.clone());
            monoio::spawn(async move {
                let mut rng = Rng::new(w as u64 ^ 0x5555);
                // Indices are global so the rate applies to the whole run, not per thread.
                loop {
                    let i = sh.next_open.fetch_add(1, Ordering::Relaxed);
                    if i >= sh.args.connections {
                        break;
                    }
                    if let Some(rate) = sh.args.open_rate {
                        let at = sh.start_at() + Duration::from_secs_f64(i as f64 / rate);
                        monoio::time::sleep_until(at).await;
                    }
                    let t0 = Instant::now();
                    let deadline = Instant::now() + HOLD_OP_TIMEOUT;
                    if let Some(mut ws) = open(&sh, &st, &mut rng, deadline).await {
                        ws.release_buffers();
                        st.borrow_mut()
                            .hist
                            .saturating_record(t0.elapsed().as_nanos() as u64);
                        held.borrow_mut().push(ws);
                    } else if !sh.reached.load(Ordering::Relaxed) {
                        // Nothing has ever connected: the target is wrong or down.
                        break;
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await;
    }
    let _ = tx.send(Msg::Opened);
    // Blocking this runtime is fine here: every held connection is idle until released.
    sh.wait_hold_release();
    sleep(a.idle).await;
    let conns = std::mem::take(&mut *held.borrow_mut());
    let checks: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(k, mut ws)| {
            let st = st.clone();
            monoio::spawn(async move {
                let mut rng = Rng::new(k as u64 ^ 0xAAAA);
                let mut payload = [0u8; 16];
                rng.fill(&mut payload);
                match timeout(HOLD_OP_TIMEOUT, ws.echo_check(&payload, &mut rng)).await {
                    Ok(Ok(())) => {
                        {
                            let mut s = st.borrow_mut();
                            s.survived += 1;
                            s.ops += 1;
                        }
                        close_quietly(ws, &mut rng).await;
                    }
                    Ok(Err(e)) => st.borrow_mut().error(e),
                    Err(_) => st.borrow_mut().error(ClientError::Timeout),
                }
            })
        })
        .collect();
    for c in checks {
        c.await;
    }
}
