//! Idle clocks for tunnels: one sweeper per shard instead of one timer per tunnel.
//!
//! A tunnel must close after `proxy_read_timeout` of silence in both directions. A runtime timer
//! per tunnel costs more memory than the rest of an idle tunnel together (a monoio `Sleep` is
//! 640 bytes; docs/architecture.md, decision 2, wants idle tunnels nearly free), and re-arming
//! it on every message costs more than the message. Instead each tunnel takes a slot in its shard's table
//! (last activity, timeout, waker: about 56 bytes, contiguous), stamps it when bytes move, and
//! one sweeper task per shard scans the table and wakes the tunnels whose silence has lasted.
//!
//! Precision: a tunnel closes between `timeout` and `timeout + tick` after its last byte, where
//! the tick is a tenth of the smallest timeout in the table, between 10 ms and 1 s. Each shard is
//! one thread, so the table is thread-local: no locks, no atomics.
//!
//! The same table carries the graceful stop's schedule for WebSocket tunnels: [`start_drain`]
//! gives each of them a random moment in the spread window (and so does [`IdleClock::drains`]
//! for a tunnel opened while the shard drains), and the sweeper wakes each tunnel at its moment
//! to begin its closing handshake. Moments are random, not in turn, so the closes of every
//! shard and process draining at once are spread alike.
//!
//! A reload with `worker_shutdown_timeout` set retires one configuration generation the same
//! way ([`retire_generation`]): its WebSocket tunnels get moments in the window, and its other
//! tunnels are cut when the timeout ends. Each slot records its generation for this.
//!
//! It also carries the binary upgrade's hand-over request ([`request_handoff`]): each tunnel
//! that may move (both sides plain, both directions open) is woken, and its [`Expired`]
//! resolves to [`Wake::HandOver`] once no write of it is blocked (the slot's `held`), that is
//! when both directions wait for readability holding no byte: the tunnel's future adds nothing.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// Finest sweep interval.
const MIN_TICK: Duration = Duration::from_millis(10);
/// Coarsest sweep interval (the most a long timeout is overshot by).
const MAX_TICK: Duration = Duration::from_secs(1);
/// Sweep interval while closes are scheduled: how far a close may fall behind its moment.
const DRAIN_TICK: Duration = Duration::from_millis(20);

struct Slot {
    last: Instant,
    timeout: Duration,
    expired: bool,
    /// Directions blocked writing (backpressure): the send timeouts govern them, and a
    /// tunnel held this way is not silent (nginx drops its read timer while it cannot write).
    held: u8,
    /// A WebSocket tunnel: closed with the closing handshake on a graceful stop.
    drains: bool,
    /// When its close begins (set on a graceful stop).
    drain_at: Option<Instant>,
    /// Its close has begun.
    draining: bool,
    /// `drain_at` is a hard cut (`worker_shutdown_timeout` after a reload), not a close.
    cut: bool,
    /// The configuration generation the tunnel started on.
    gen: u32,
    /// Both sides plain and both directions open: the tunnel may move to a new binary.
    movable: bool,
    /// Asked to move to a new binary (binary upgrade).
    handoff: bool,
    waker: Option<Waker>,
}

impl Slot {
    /// Gives the slot its moment from what is retiring: the shard (graceful stop) or the
    /// slot's generation (a reload with `worker_shutdown_timeout`).
    fn schedule(&mut self, now: Instant, t: &Table) {
        // A moment once given stays; a cut becomes a moment if the slot turns out to drain.
        if self.drain_at.is_some() && !(self.cut && self.drains) {
            return;
        }
        let retired = t.retired.iter().find(|r| r.gen == self.gen);
        if self.drains {
            let until = match (t.drain_until, retired) {
                (Some(a), Some(r)) => Some(a.min(r.until)),
                (a, r) => a.or(r.map(|r| r.until)),
            };
            self.drain_at = until.map(|u| moment(now, u));
            self.cut = false;
        } else if let Some(r) = retired {
            self.drain_at = Some(r.cut_at);
            self.cut = true;
        }
    }
}

/// A generation retired by a reload with `worker_shutdown_timeout`.
struct Retired {
    gen: u32,
    /// The end of its spread window.
    until: Instant,
    /// When what is left of it is cut.
    cut_at: Instant,
}

#[derive(Default)]
struct Table {
    /// `None` marks a free slot (its index is in `free`).
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
    live: usize,
    /// On a graceful stop: the end of the spread window.
    drain_until: Option<Instant>,
    /// Generations retired by reloads with `worker_shutdown_timeout` and not freed yet.
    retired: Vec<Retired>,
    /// Tunnels are handed to a new binary: those that become movable are asked at once.
    handing_off: bool,
}

thread_local! {
    static TABLE: RefCell<Table> = RefCell::new(Table::default());
    /// Whether this shard's sweeper task is running.
    static SWEEPING: Cell<bool> = const { Cell::new(false) };
    /// Set by [`start_drain`]: the sweeper stops sleeping and scans at once.
    static NUDGED: Cell<bool> = const { Cell::new(false) };
    static SWEEPER: RefCell<Option<Waker>> = const { RefCell::new(None) };
    /// xorshift64* state, seeded from the process's random hash keys.
    static RNG: Cell<u64> = Cell::new({
        use std::hash::BuildHasher;
        std::collections::hash_map::RandomState::new().hash_one(0x5eed_u64) | 1
    });
}

/// A pseudo-random number (spread moments, masking keys): not for secrets.
pub fn random() -> u64 {
    RNG.with(|r| {
        let mut x = r.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        r.set(x);
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    })
}

/// A random moment between `now` and `until` (`now` if that has passed).
fn moment(now: Instant, until: Instant) -> Instant {
    let window = until.saturating_duration_since(now).as_nanos() as u64;
    now + Duration::from_nanos(if window == 0 { 0 } else { random() % window })
}

/// Begins a graceful stop on this shard: every WebSocket tunnel gets a random moment within
/// `window` from now to begin its close; tunnels that open later get one in what is left.
pub fn start_drain(window: Duration) {
    let now = Instant::now();
    let until = now + window;
    TABLE.with(|t| {
        let mut t = t.borrow_mut();
        t.drain_until = Some(until);
        reschedule(&mut t, now);
    });
    nudge();
}

/// Retires generation `gen` (a reload with `worker_shutdown_timeout`): its WebSocket tunnels
/// get random moments within `window` from now to begin their close, and its other tunnels are
/// cut at `cut_at`; so are those that open on it later. [`forget_generation`] ends the record.
pub fn retire_generation(gen: u32, window: Duration, cut_at: Instant) {
    let now = Instant::now();
    TABLE.with(|t| {
        let mut t = t.borrow_mut();
        t.retired.push(Retired {
            gen,
            until: (now + window).min(cut_at),
            cut_at,
        });
        reschedule(&mut t, now);
    });
    nudge();
}

/// Generation `gen` is gone (no connection uses it): drops its record.
pub fn forget_generation(gen: u32) {
    // try_with: a generation may be freed while the thread's locals are being destroyed.
    let _ = TABLE.try_with(|t| t.borrow_mut().retired.retain(|r| r.gen != gen));
}

fn reschedule(t: &mut Table, now: Instant) {
    let mut slots = std::mem::take(&mut t.slots);
    for s in slots.iter_mut().flatten() {
        s.schedule(now, t);
    }
    t.slots = slots;
}

/// The sweeper may be in a long sleep (up to `MAX_TICK`): the first moments are near.
fn nudge() {
    NUDGED.with(|n| n.set(true));
    if let Some(w) = SWEEPER.with(|w| w.borrow_mut().take()) {
        w.wake();
    }
}

/// Asks every movable tunnel of this shard (and those that become movable later) to move to a
/// new binary; returns how many were asked and how many stay (TLS, half-closed, closing).
pub fn request_handoff() -> (usize, usize) {
    let mut wake = Vec::new();
    let counts = TABLE.with(|t| {
        let mut t = t.borrow_mut();
        t.handing_off = true;
        let (mut moving, mut staying) = (0, 0);
        for s in t.slots.iter_mut().flatten() {
            if s.movable && !s.draining {
                s.handoff = true;
                moving += 1;
                wake.extend(s.waker.take());
            } else {
                staying += 1;
            }
        }
        (moving, staying)
    });
    // Woken outside the borrow: a waker may run code that looks at the table.
    wake.into_iter().for_each(Waker::wake);
    counts
}

/// Withdraws the hand-over request (the channel to the new binary failed): every tunnel of
/// this shard stays, and drains as on any graceful stop.
pub fn cancel_handoff() {
    TABLE.with(|t| {
        let mut t = t.borrow_mut();
        t.handing_off = false;
        for s in t.slots.iter_mut().flatten() {
            s.handoff = false;
        }
    });
}

/// Resolves once [`start_drain`] has nudged the sweeper.
struct Nudge;

impl Future for Nudge {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if NUDGED.with(|n| n.replace(false)) {
            return Poll::Ready(());
        }
        SWEEPER.with(|w| *w.borrow_mut() = Some(cx.waker().clone()));
        Poll::Pending
    }
}

/// One tunnel's slot; freed on drop.
pub struct IdleClock {
    index: usize,
}

impl IdleClock {
    /// Takes a slot for a tunnel that closes after `timeout` of silence, starting now. Starts the
    /// shard's sweeper if it is not running (must be called inside the shard's runtime).
    pub fn register(timeout: Duration) -> IdleClock {
        let slot = Slot {
            last: Instant::now(),
            timeout,
            expired: false,
            held: 0,
            drains: false,
            drain_at: None,
            draining: false,
            cut: false,
            gen: 0,
            movable: false,
            handoff: false,
            waker: None,
        };
        let index = TABLE.with(|t| {
            let mut t = t.borrow_mut();
            t.live += 1;
            match t.free.pop() {
                Some(i) => {
                    t.slots[i] = Some(slot);
                    i
                }
                None => {
                    t.slots.push(Some(slot));
                    t.slots.len() - 1
                }
            }
        });
        if !SWEEPING.with(|s| s.replace(true)) {
            monoio::spawn(sweeper());
        }
        IdleClock { index }
    }

    /// Marks a WebSocket tunnel: on a graceful stop it is woken at a random moment of the
    /// spread window (at once given a moment, when the shard is already draining).
    pub fn drains(&self) {
        self.update(|s| s.drains = true);
    }

    /// Records the configuration generation the tunnel started on (at once given its moment
    /// or cut, when that generation is already retired).
    pub fn of_generation(&self, gen: u32) {
        self.update(|s| s.gen = gen);
    }

    fn update(&self, f: impl FnOnce(&mut Slot)) {
        TABLE.with(|t| {
            let mut t = t.borrow_mut();
            let mut slot = t.slots[self.index].take();
            if let Some(s) = slot.as_mut() {
                f(s);
                s.schedule(Instant::now(), &t);
            }
            t.slots[self.index] = slot;
        });
    }

    /// Whether the tunnel was cut at `worker_shutdown_timeout` (rather than silent).
    pub fn was_cut(&self) -> bool {
        TABLE.with(|t| {
            t.borrow().slots[self.index]
                .as_ref()
                .is_some_and(|s| s.cut && s.expired)
        })
    }

    /// Marks a tunnel that may move to a new binary (both sides plain); asked to at once when
    /// this shard is handing its tunnels over.
    pub fn movable(&self) {
        let asked = TABLE.with(|t| t.borrow().handing_off);
        self.with_slot(|s| {
            s.movable = true;
            s.handoff = asked;
        });
    }

    /// The tunnel can no longer move (a direction has ended: half-close state stays here).
    pub fn stays(&self) {
        self.with_slot(|s| {
            s.movable = false;
            s.handoff = false;
        });
    }

    /// Whether this tunnel's close has begun.
    pub fn draining(&self) -> bool {
        TABLE.with(|t| {
            t.borrow().slots[self.index]
                .as_ref()
                .is_some_and(|s| s.draining)
        })
    }

    /// Resolves once this tunnel's close begins.
    pub fn drain_due(&self) -> DrainDue<'_> {
        DrainDue { clock: self }
    }

    /// Records activity (bytes moved) at `now`.
    pub fn touch(&self, now: Instant) {
        self.with_slot(|s| s.last = now);
    }

    /// Suspends the idle timeout while the returned guard lives (a write is blocked on a slow
    /// reader); dropping the guard counts as activity.
    pub fn hold(&self) -> Held<'_> {
        self.with_slot(|s| s.held += 1);
        Held { clock: self }
    }

    fn with_slot(&self, f: impl FnOnce(&mut Slot)) {
        TABLE.with(|t| {
            if let Some(s) = t.borrow_mut().slots[self.index].as_mut() {
                f(s);
            }
        });
    }

    /// Resolves once the tunnel has been silent for its timeout, or may move now.
    pub fn expired(&self) -> Expired<'_> {
        Expired { clock: self }
    }
}

impl Drop for IdleClock {
    fn drop(&mut self) {
        TABLE.with(|t| {
            let mut t = t.borrow_mut();
            t.slots[self.index] = None;
            t.free.push(self.index);
            t.live -= 1;
            if t.live == 0 {
                // Give back what a burst grew (the table is all free slots now).
                t.slots.clear();
                t.free.clear();
                t.slots.shrink_to(64);
                t.free.shrink_to(64);
            }
        });
    }
}

/// Guard of [`IdleClock::hold`].
pub struct Held<'a> {
    clock: &'a IdleClock,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        let now = Instant::now();
        self.clock.with_slot(|s| {
            s.held -= 1;
            s.last = now;
        });
    }
}

/// Why [`Expired`] resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wake {
    /// Silent for its timeout.
    Silent,
    /// Asked to move to a new binary, and no write of it is blocked. The tunnel's task polls
    /// its directions before this, so each of them waits for readability holding no byte.
    HandOver,
}

/// Future of [`IdleClock::expired`].
pub struct Expired<'a> {
    clock: &'a IdleClock,
}

impl Future for Expired<'_> {
    type Output = Wake;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Wake> {
        TABLE.with(|t| {
            let mut t = t.borrow_mut();
            let Some(s) = t.slots[self.clock.index].as_mut() else {
                return Poll::Ready(Wake::Silent);
            };
            if s.expired {
                return Poll::Ready(Wake::Silent);
            }
            if s.handoff && s.movable && s.held == 0 && !s.draining {
                return Poll::Ready(Wake::HandOver);
            }
            match &s.waker {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => s.waker = Some(cx.waker().clone()),
            }
            Poll::Pending
        })
    }
}

/// Future of [`IdleClock::drain_due`]. It shares the slot's waker with [`Expired`]: both are
/// polled by the one task of the tunnel.
pub struct DrainDue<'a> {
    clock: &'a IdleClock,
}

impl Future for DrainDue<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        TABLE.with(|t| {
            let mut t = t.borrow_mut();
            let Some(s) = t.slots[self.clock.index].as_mut() else {
                return Poll::Pending;
            };
            if s.draining {
                return Poll::Ready(());
            }
            match &s.waker {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => s.waker = Some(cx.waker().clone()),
            }
            Poll::Pending
        })
    }
}

/// Marks and wakes the slots silent past their timeout at `now`, and those whose close is due;
/// returns the next tick, or `None` when the table is empty.
fn sweep(now: Instant) -> Option<Duration> {
    TABLE.with(|t| {
        let mut t = t.borrow_mut();
        if t.live == 0 {
            return None;
        }
        let mut smallest = MAX_TICK * 10;
        let mut scheduled = false;
        for s in t.slots.iter_mut().flatten() {
            smallest = smallest.min(s.timeout);
            let silent =
                !s.expired && s.held == 0 && now.saturating_duration_since(s.last) >= s.timeout;
            let due = !s.draining && !s.expired && s.drain_at.is_some_and(|at| at <= now);
            scheduled |= !s.draining && !s.expired && s.drain_at.is_some();
            if silent {
                s.expired = true;
            }
            if due && s.cut {
                s.expired = true;
            } else if due {
                s.draining = true;
            }
            if silent || due {
                if let Some(w) = s.waker.take() {
                    w.wake();
                }
            }
        }
        let tick = (smallest / 10).clamp(MIN_TICK, MAX_TICK);
        Some(if scheduled {
            tick.min(DRAIN_TICK)
        } else {
            tick
        })
    })
}

/// The shard's sweeper: runs while any tunnel is registered, then stops (the next registration
/// starts it again).
async fn sweeper() {
    while let Some(tick) = sweep(Instant::now()) {
        let sleep = std::pin::pin!(monoio::time::sleep(tick));
        futures_util::future::select(sleep, Nudge).await;
    }
    SWEEPER.with(|w| w.borrow_mut().take());
    SWEEPING.with(|s| s.set(false));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt() -> monoio::Runtime<monoio::time::TimeDriver<monoio::LegacyDriver>> {
        monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .expect("runtime")
    }

    #[test]
    fn the_sweeper_wakes_a_silent_clock_not_before_its_timeout() {
        rt().block_on(async {
            // Taken before the clock's start: the lower bound below holds however late any
            // of this runs.
            let start = Instant::now();
            let quiet = IdleClock::register(Duration::from_millis(100));
            let woken = monoio::time::timeout(Duration::from_secs(20), quiet.expired()).await;
            assert!(woken.is_ok(), "never expired");
            let waited = start.elapsed();
            assert!(
                waited >= Duration::from_millis(100),
                "expired early: {waited:?}"
            );
        });
    }

    #[test]
    fn only_clocks_silent_for_their_timeout_expire() {
        rt().block_on(async {
            // Sweeps at chosen instants, not the sweeper's wall-clock ticks: a loaded machine
            // cannot make the active clock look silent.
            let t0 = Instant::now();
            let quiet = IdleClock::register(Duration::from_millis(100));
            let busy = IdleClock::register(Duration::from_millis(100));
            quiet.touch(t0);
            busy.touch(t0 + Duration::from_millis(80));
            sweep(t0 + Duration::from_millis(150));
            assert!(expired(&quiet), "silent for 150 ms of 100");
            assert!(!expired(&busy), "active 70 ms ago");
            sweep(t0 + Duration::from_millis(180));
            assert!(expired(&busy), "silent for 100 ms of 100");
        });
    }

    #[test]
    fn a_held_clock_does_not_expire_and_release_counts_as_activity() {
        rt().block_on(async {
            let clock = IdleClock::register(Duration::from_secs(10));
            let held = clock.hold();
            sweep(Instant::now() + Duration::from_secs(60));
            assert!(!expired(&clock), "expired while a write was blocked");
            drop(held);
            // The release stamps the clock; 10 s of stall before this sweep would be needed to
            // make it look silent.
            sweep(Instant::now());
            assert!(!expired(&clock), "release is activity");
            sweep(Instant::now() + Duration::from_secs(60));
            assert!(expired(&clock), "silent after release");
        });
    }

    #[test]
    fn a_drain_wakes_websocket_clocks_within_the_window_and_no_other() {
        rt().block_on(async {
            let t0 = Instant::now();
            let plain = IdleClock::register(Duration::from_secs(600));
            let ws: Vec<_> = (0..50)
                .map(|_| {
                    let c = IdleClock::register(Duration::from_secs(600));
                    c.drains();
                    c
                })
                .collect();
            start_drain(Duration::from_secs(10));
            let late = IdleClock::register(Duration::from_secs(600));
            late.drains();
            let at: Vec<Instant> = ws
                .iter()
                .chain([&late])
                .map(|c| slot(c, |s| s.drain_at.expect("a moment")))
                .collect();
            assert!(at
                .iter()
                .all(|&a| a >= t0 && a <= Instant::now() + Duration::from_secs(10)));
            // Random moments, not one: 51 draws over 10 s.
            let (lo, hi) = (at.iter().min().unwrap(), at.iter().max().unwrap());
            assert!(*hi - *lo > Duration::from_secs(5), "{:?}", *hi - *lo);
            sweep(*lo);
            assert_eq!(ws.iter().chain([&late]).filter(|c| c.draining()).count(), 1);
            sweep(*hi);
            assert!(ws.iter().chain([&late]).all(IdleClock::draining));
            assert!(
                !plain.draining() && !expired(&plain),
                "not a WebSocket tunnel"
            );
        });
    }

    #[test]
    fn a_retired_generation_drains_its_websockets_and_cuts_the_rest_at_the_timeout() {
        rt().block_on(async {
            let clock = |gen: u32, websocket: bool| {
                let c = IdleClock::register(Duration::from_secs(600));
                c.of_generation(gen);
                if websocket {
                    c.drains();
                }
                c
            };
            let (old_ws, old_raw, new_ws) = (clock(1, true), clock(1, false), clock(2, true));
            let t0 = Instant::now();
            let cut_at = t0 + Duration::from_secs(30);
            retire_generation(1, Duration::from_secs(10), cut_at);
            let late_ws = clock(1, true);
            for ws in [&old_ws, &late_ws] {
                let at = slot(ws, |s| s.drain_at.expect("a moment"));
                assert!(
                    at >= t0 && at <= t0 + Duration::from_secs(11),
                    "{:?}",
                    at - t0
                );
            }
            assert_eq!(slot(&old_raw, |s| s.drain_at), Some(cut_at));
            assert_eq!(slot(&new_ws, |s| s.drain_at), None, "another generation");
            sweep(t0 + Duration::from_secs(11));
            assert!(old_ws.draining() && late_ws.draining());
            assert!(
                !expired(&old_raw) && !old_raw.was_cut(),
                "cut before the timeout"
            );
            sweep(cut_at);
            assert!(expired(&old_raw) && old_raw.was_cut());
            assert!(!old_raw.draining(), "cut, not closed with a handshake");
            assert!(!new_ws.draining() && !expired(&new_ws));
            forget_generation(1);
            assert_eq!(slot(&clock(1, false), |s| s.drain_at), None, "forgotten");
        });
    }

    fn slot<T>(clock: &IdleClock, f: impl FnOnce(&Slot) -> T) -> T {
        TABLE.with(|t| f(t.borrow().slots[clock.index].as_ref().unwrap()))
    }

    fn expired(clock: &IdleClock) -> bool {
        TABLE.with(|t| t.borrow().slots[clock.index].as_ref().unwrap().expired)
    }

    #[test]
    fn slots_are_reused_and_table_empties() {
        rt().block_on(async {
            let a = IdleClock::register(Duration::from_secs(60));
            let b = IdleClock::register(Duration::from_secs(60));
            let ia = a.index;
            drop(a);
            let c = IdleClock::register(Duration::from_secs(60));
            assert_eq!(c.index, ia, "freed slot reused");
            drop(b);
            drop(c);
            TABLE.with(|t| {
                let t = t.borrow();
                assert_eq!(t.live, 0);
                assert!(t.slots.is_empty());
            });
            assert_eq!(sweep(Instant::now()), None, "empty table stops the sweeper");
        });
    }
}
