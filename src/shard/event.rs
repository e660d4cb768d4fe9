//! A one-shot, shard-local event: tasks wait until it is set (e.g. "stop accepting"). Shards are
//! single-threaded, so a `Cell` and a waker table suffice; no atomics on the per-request path.
//!
//! A waiter that gives up (its `select!` took another branch: a keep-alive connection's next
//! request came) takes its waker out of the table when it is dropped. A waker keeps its whole
//! task alive, so a table that only grew held every such connection's memory until the event
//! was set (about 10 KiB per kept-alive connection).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// Set once; every waiter wakes.
#[derive(Default)]
pub struct Event {
    set: Cell<bool>,
    waiters: RefCell<HashMap<u64, Waker>>,
    next_key: Cell<u64>,
}

impl Event {
    /// Sets the event and wakes every waiter.
    pub fn set(&self) {
        self.set.set(true);
        let waiters = std::mem::take(&mut *self.waiters.borrow_mut());
        for w in waiters.into_values() {
            w.wake();
        }
    }

    /// Whether it is set.
    pub fn is_set(&self) -> bool {
        self.set.get()
    }

    /// Resolves once the event is set.
    pub fn wait(&self) -> Wait<'_> {
        Wait {
            event: self,
            key: None,
        }
    }

    /// How many wakers wait (for tests).
    pub fn waiting(&self) -> usize {
        self.waiters.borrow().len()
    }
}

/// Future of [`Event::wait`].
pub struct Wait<'a> {
    event: &'a Event,
    /// Its entry in the event's table, once it has waited.
    key: Option<u64>,
}

impl Future for Wait<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.event.set.get() {
            return Poll::Ready(());
        }
        let key = match self.key {
            Some(k) => k,
            None => {
                let k = self.event.next_key.get();
                self.event.next_key.set(k + 1);
                self.key = Some(k);
                k
            }
        };
        let mut waiters = self.event.waiters.borrow_mut();
        match waiters.get_mut(&key) {
            Some(w) if w.will_wake(cx.waker()) => {}
            Some(w) => w.clone_from(cx.waker()),
            None => {
                waiters.insert(key, cx.waker().clone());
            }
        }
        Poll::Pending
    }
}

impl Drop for Wait<'_> {
    fn drop(&mut self) {
        if let Some(k) = self.key {
            self.event.waiters.borrow_mut().remove(&k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_waiter_that_gives_up_leaves_nothing_behind() {
        let event = Event::default();
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        for _ in 0..3 {
            let mut w = Box::pin(event.wait());
            assert!(w.as_mut().poll(&mut cx).is_pending());
            assert!(w.as_mut().poll(&mut cx).is_pending());
            assert_eq!(event.waiting(), 1);
        }
        assert_eq!(event.waiting(), 0);
        let mut w = Box::pin(event.wait());
        assert!(w.as_mut().poll(&mut cx).is_pending());
        event.set();
        assert_eq!(event.waiting(), 0);
        assert!(w.as_mut().poll(&mut cx).is_ready());
    }
}
