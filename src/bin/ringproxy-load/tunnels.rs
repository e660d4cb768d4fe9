//! `tunnels`: N long-lived WebSockets, each sending a numbered message every `--interval` and
//! checking its echo until `--duration` ends; what the proxy does to live tunnels across a
//! reload, a graceful stop or a binary upgrade is then counted, not assumed.
//!
//! Each tunnel ends one of three ways: it lasts the whole run (survived; the client then closes
//! it with 1000), the server closes it with a Close frame (its code and moment are kept: a
//! draining proxy sends 1001), or it drops (end of stream, reset or a stall without a Close).
//! A message is lost when its echo does not come back intact; one whose echo a Close replaced
//! is not (the Close tells the client the server stopped). Closes and drops are seen when the
//! tunnel next sends or waits, so their moments are exact to one `--interval`.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use monoio::time::{sleep_until, timeout, Instant};

use crate::client::{ClientError, Rng, WsClient};
use crate::push::now_ns;
use crate::scenarios::{close_quietly, open, Shared, St, MAX_OPENING};

/// How long one echo, or one opening handshake, may take before the tunnel counts as stalled.
const OP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a Close answer may wait for the server's end of the connection.
const CLOSE_WAIT: Duration = Duration::from_secs(3);
/// Message size: sequence number and tunnel number.
pub const MSG_LEN: usize = 16;

/// Message `seq` of tunnel `id`: unique across the run, so a stale, reordered or crossed
/// echo is a mismatch.
pub fn message(id: u64, seq: u64) -> [u8; MSG_LEN] {
    let mut m = [0u8; MSG_LEN];
    m[..8].copy_from_slice(&seq.to_le_bytes());
    m[8..].copy_from_slice(&id.to_le_bytes());
    m
}

fn now_ms() -> u64 {
    now_ns() / 1_000_000
}

/// Opens this thread's share of the tunnels (indices are global, so `--open-rate` holds for
/// the run; handshakes in flight are bounded), starting each as soon as it is open.
pub async fn run(sh: &Arc<Shared>, st: &St) {
    let a = &sh.args;
    let workers = MAX_OPENING.div_ceil(a.threads).min(a.connections);
    let openers: Vec<_> = (0..workers)
        .map(|w| {
            let (sh, st) = (sh.clone(), st.clone());
            monoio::spawn(async move {
                let mut rng = Rng::new(w as u64 ^ 0x3C3C);
                let mut tunnels = Vec::new();
                loop {
                    let i = sh.next_open.fetch_add(1, Ordering::Relaxed);
                    if i >= sh.args.connections {
                        break;
                    }
                    if let Some(rate) = sh.args.open_rate {
                        let at = sh.start_at() + Duration::from_secs_f64(i as f64 / rate);
                        sleep_until(at).await;
                    }
                    let deadline = (Instant::now() + OP_TIMEOUT).min(sh.end());
                    let ws = open(&sh, &st, &mut rng, deadline).await;
                    sh.open_tried.fetch_add(1, Ordering::AcqRel);
                    match ws {
                        Some(ws) => {
                            let t = tunnel(sh.clone(), st.clone(), ws, i as u64);
                            tunnels.push(monoio::spawn(t));
                        }
                        // Nothing has ever connected: the target is wrong or down.
                        None if !sh.reached.load(Ordering::Relaxed) => break,
                        None => {}
                    }
                }
                for t in tunnels {
                    t.await;
                }
            })
        })
        .collect();
    for o in openers {
        o.await;
    }
}

/// How one tunnel's exchange ended.
#[derive(Debug)]
enum End {
    /// The run's end came first.
    Lasted,
    /// The server's Close frame, with its code.
    Closed(u16),
    /// End of stream, reset, protocol error or stall.
    Dropped(ClientError),
}

async fn tunnel(sh: Arc<Shared>, st: St, mut ws: WsClient, id: u64) {
    let mut rng = Rng::new(id ^ 0x7777);
    let end = sh.end();
    let interval = sh.args.interval;
    ws.release_buffers();
    // A random phase spreads the tunnels' messages over the interval.
    let phase = interval.mul_f64((rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64);
    let mut next = Instant::now() + phase;
    let mut seq = 0u64;
    let how = loop {
        if next >= end {
            break End::Lasted;
        }
        sleep_until(next).await;
        // Behind schedule (a loaded machine), skip the missed slots rather than burst.
        next = (next + interval).max(Instant::now());
        seq += 1;
        let msg = message(id, seq);
        match timeout(OP_TIMEOUT, ws.echo_check(&msg, &mut rng)).await {
            Ok(Ok(())) => st.borrow_mut().ops += 1,
            Ok(Err(ClientError::Mismatch)) => {
                let mut s = st.borrow_mut();
                s.lost += 1;
                s.error(ClientError::Mismatch);
            }
            Ok(Err(ClientError::Closed)) => break End::Closed(ws.close_code().unwrap_or(1005)),
            Ok(Err(e)) => {
                st.borrow_mut().lost += 1;
                break End::Dropped(e);
            }
            Err(_) => {
                st.borrow_mut().lost += 1;
                break End::Dropped(ClientError::Timeout);
            }
        }
    };
    let at = now_ms();
    match how {
        End::Lasted => {
            st.borrow_mut().survived += 1;
            close_quietly(ws, &mut rng).await;
        }
        End::Closed(code) => {
            {
                let mut s = st.borrow_mut();
                if code == 1001 {
                    s.closed_1001 += 1;
                } else {
                    s.closed_other += 1;
                }
                s.closes.add(at);
            }
            let _ = timeout(CLOSE_WAIT, ws.answer_close(rng.mask())).await;
        }
        End::Dropped(e) => {
            let mut s = st.borrow_mut();
            s.dropped += 1;
            s.drops.add(at);
            s.client_error(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_differ_by_tunnel_and_sequence() {
        let m = message(3, 1);
        assert_eq!(m.len(), MSG_LEN);
        assert_eq!(u64::from_le_bytes(m[..8].try_into().unwrap()), 1);
        assert_eq!(u64::from_le_bytes(m[8..].try_into().unwrap()), 3);
        assert_ne!(message(3, 2), m);
        assert_ne!(message(4, 1), m);
    }

    #[test]
    fn close_codes_are_read_from_the_payload() {
        use crate::client::close_code;
        assert_eq!(close_code(&1001u16.to_be_bytes()), 1001);
        assert_eq!(close_code(b"\x03\xe8bye"), 1000);
        assert_eq!(close_code(&[]), 1005);
    }
}
