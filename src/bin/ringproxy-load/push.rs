//! Broadcast for the echo server's `/push` WebSockets, and the message format both sides share.
//!
//! Each thread has one [`Hub`]: a ticker bumps a sequence number and stamps the time, then wakes
//! every registered connection's writer. A writer that is still busy with the previous message
//! when the next tick comes sends only the newest one; the gap in sequence numbers is what the
//! `push` client reports as lost, which is exactly what a slow path through a proxy looks like.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::rc::{Rc, Weak};
use std::task::{Poll, Waker};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use monoio::io::{AsyncReadRent, AsyncWriteRent, Splitable};
use monoio::net::TcpStream;
use ringproxy::ws::{self, OpCode, Status};

use crate::conn::BufConn;

/// Push message size: timestamp, sequence number, padding (a typical small live-comment event).
pub const PUSH_MSG_LEN: usize = 64;
const PAD: u8 = 0x5A;

pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

pub fn encode_push(ts_ns: u64, seq: u64) -> [u8; PUSH_MSG_LEN] {
    let mut m = [PAD; PUSH_MSG_LEN];
    m[..8].copy_from_slice(&ts_ns.to_le_bytes());
    m[8..16].copy_from_slice(&seq.to_le_bytes());
    m
}

/// Returns `(timestamp_ns, seq)` if `payload` is a well-formed push message.
pub fn decode_push(payload: &[u8]) -> Option<(u64, u64)> {
    if payload.len() != PUSH_MSG_LEN || payload[16..].iter().any(|&b| b != PAD) {
        return None;
    }
    let ts = u64::from_le_bytes(payload[..8].try_into().ok()?);
    let seq = u64::from_le_bytes(payload[8..16].try_into().ok()?);
    Some((ts, seq))
}

#[derive(Default)]
pub struct Hub {
    seq: Cell<u64>,
    ts_ns: Cell<u64>,
    subs: RefCell<Vec<Weak<Sub>>>,
}

#[derive(Default)]
struct Sub {
    waker: Cell<Option<Waker>>,
    /// Encoded control frames (pong, close) the reader wants sent.
    control: RefCell<Vec<u8>>,
    closing: Cell<bool>,
}

impl Sub {
    fn wake(&self) {
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }
}

impl Hub {
    /// Ticks forever at `rate_hz`; spawned once per thread when `--push-rate` is set.
    pub async fn run_ticker(self: Rc<Self>, rate_hz: f64) {
        let mut iv = monoio::time::interval(Duration::from_secs_f64(1.0 / rate_hz));
        iv.set_missed_tick_behavior(monoio::time::MissedTickBehavior::Skip);
        loop {
            iv.tick().await;
            self.seq.set(self.seq.get() + 1);
            self.ts_ns.set(now_ns());
            self.subs.borrow_mut().retain(|w| match w.upgrade() {
                Some(s) => {
                    s.wake();
                    true
                }
                None => false,
            });
        }
    }

    /// Serves one upgraded `/push` connection until it closes.
    /// `leftover` is what was read past the upgrade request.
    pub async fn serve(self: Rc<Self>, stream: TcpStream, leftover: Vec<u8>) {
        let (r, w) = stream.into_split();
        let sub = Rc::new(Sub::default());
        self.subs.borrow_mut().push(Rc::downgrade(&sub));
        // Reading and writing run as two tasks because a pending io_uring read cannot be
        // abandoned for a tick without risking the loss of bytes it already received.
        monoio::spawn(read_side(BufConn::from_parts(r, leftover), sub.clone()));
        write_side(w, &self, &sub).await;
    }
}

async fn read_side<R: AsyncReadRent>(mut c: BufConn<R>, sub: Rc<Sub>) {
    let mut need = 2;
    loop {
        if c.data().len() >= need {
            match ws::decode_header(c.data(), 125) {
                Ok(Status::Complete(h)) if h.mask.is_some() => {
                    let total = h.frame_len() as usize;
                    if c.data().len() < total {
                        need = total;
                        continue;
                    }
                    let payload = &mut c.data_mut()[h.header_len..total];
                    ws::apply_mask(payload, h.mask.unwrap_or_default(), 0);
                    let mut ctl = sub.control.borrow_mut();
                    match h.opcode {
                        OpCode::Ping => {
                            ws::write_frame(&mut ctl, true, OpCode::Pong, None, payload)
                        }
                        OpCode::Close => {
                            let code = &payload[..payload.len().min(2)];
                            ws::write_frame(&mut ctl, true, OpCode::Close, None, code);
                            drop(ctl);
                            sub.closing.set(true);
                            sub.wake();
                            return;
                        }
                        _ => {}
                    }
                    drop(ctl);
                    sub.wake();
                    c.consume(total);
                    need = 2;
                    continue;
                }
                Ok(Status::Partial(n)) => need = n,
                // Unmasked or invalid (including data frames over 125 bytes, which a push
                // subscriber has no reason to send): fail the connection.
                _ => {
                    ws::write_frame(
                        &mut sub.control.borrow_mut(),
                        true,
                        OpCode::Close,
                        None,
                        &1002u16.to_be_bytes(),
                    );
                    break;
                }
            }
        }
        if c.data().len() < need && c.read_more(need).await.is_err() {
            break;
        }
    }
    sub.closing.set(true);
    sub.wake();
}

async fn write_side<W: AsyncWriteRent>(w: W, hub: &Hub, sub: &Sub) {
    let mut w = BufConn::new(w);
    let mut last = hub.seq.get();
    let mut wbuf = Vec::with_capacity(256);
    loop {
        poll_fn(|cx| {
            if sub.closing.get() || !sub.control.borrow().is_empty() || hub.seq.get() != last {
                Poll::Ready(())
            } else {
                sub.waker.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        })
        .await;
        wbuf.extend_from_slice(&sub.control.borrow());
        sub.control.borrow_mut().clear();
        let closing = sub.closing.get();
        if !closing && hub.seq.get() != last {
            last = hub.seq.get();
            let msg = encode_push(hub.ts_ns.get(), last);
            ws::write_frame(&mut wbuf, true, OpCode::Binary, None, &msg);
        }
        if !wbuf.is_empty() {
            let (res, b) = w.write_all(wbuf).await;
            wbuf = b;
            if res.is_err() {
                return;
            }
        }
        if closing {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_message_roundtrip() {
        let m = encode_push(123, 456);
        assert_eq!(decode_push(&m), Some((123, 456)));
        let mut bad = m;
        bad[40] ^= 1;
        assert_eq!(decode_push(&bad), None);
        assert_eq!(decode_push(&m[..10]), None);
    }
}
