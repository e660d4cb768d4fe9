//! A one-shot, shard-local event: tasks wait until it is set (e.g. "stop accepting"). Shards are
//! single-threaded, so a `Cell` and a waker list suffice; no atomics on the per-request path.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// Set once; every waiter wakes.
#[derive(Default)]
pub struct Event {
    set: Cell<bool>,
    waiters: RefCell<Vec<Waker>>,
}

impl Event {
    /// Sets the event and wakes every waiter.
    pub fn set(&self) {
        self.set.set(true);
        for w in self.waiters.borrow_mut().drain(..) {
            w.wake();
        }
    }

    /// Whether it is set.
    pub fn is_set(&self) -> bool {
        self.set.get()
    }

    /// Resolves once the event is set.
    pub fn wait(&self) -> Wait<'_> {
        Wait { event: self }
    }
}

/// Future of [`Event::wait`].
pub struct Wait<'a> {
    event: &'a Event,
}

impl Future for Wait<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.event.set.get() {
            return Poll::Ready(());
        }
        let mut waiters = self.event.waiters.borrow_mut();
        if !waiters.iter().any(|w| w.will_wake(cx.waker())) {
            waiters.push(cx.waker().clone());
        }
        Poll::Pending
    }
}
