//! The pool's global budget of sessions, and the callers waiting for room in it.
//!
//! A unit of the budget is held by a [`Reservation`], and a reservation lives in a
//! server's slot map next to its slot (see `slot.rs`). So the number of reserved
//! units always equals the number of slots in every map, with no caller keeping
//! the two in step: removing a slot drops its reservation, which gives the unit
//! back and wakes the waiters.
//!
//! Waking is cheap when nobody waits: [`Capacity::wake`] runs at the end of every
//! call (a checkout going idle), and a `Notify` there would take its lock and
//! write one shared cache line per call. A waiter instead announces itself in
//! `listeners` before it looks for room, and a change wakes only when someone
//! listens. The two `SeqCst` fences make that safe: either the waker sees the
//! listener, or the listener's look sees the change (see [`Capacity::listen`]).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering, fence};

use tokio::sync::Notify;
use tokio::sync::futures::Notified;

/// The global cap on pooled sessions (`pool.max_sessions`), the units reserved
/// under it, and the callers waiting for one to free.
#[derive(Debug)]
pub(crate) struct Capacity {
    max: usize,
    reserved: AtomicUsize,
    /// Callers inside [`Capacity::listen`]: only then does a change need a wake-up.
    listeners: AtomicUsize,
    changed: Notify,
}

impl Capacity {
    /// A budget of `max` units, none reserved.
    pub(crate) fn new(max: usize) -> Arc<Capacity> {
        Arc::new(Capacity {
            max,
            reserved: AtomicUsize::new(0),
            listeners: AtomicUsize::new(0),
            changed: Notify::new(),
        })
    }

    /// One unit, if the cap leaves room. The unit is free again when the
    /// reservation drops.
    pub(crate) fn try_reserve(self: &Arc<Self>) -> Option<Reservation> {
        self.reserved
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .ok()?;
        Some(Reservation {
            capacity: self.clone(),
        })
    }

    /// Units reserved now (every slot of every server, opening ones included).
    pub(crate) fn reserved(&self) -> usize {
        self.reserved.load(Ordering::Acquire)
    }

    /// Announces a caller about to look for room. Look only after this returns,
    /// and wait on the listener if there was none: a unit freed or a session gone
    /// idle after this call wakes it, and one before it is seen by the look.
    pub(crate) fn listen(&self) -> Listener<'_> {
        self.listeners.fetch_add(1, Ordering::Relaxed);
        let mut changed = Box::pin(self.changed.notified());
        changed.as_mut().enable();
        // Pairs with the fence in `wake`: the look that follows sees every change
        // whose `wake` missed this listener.
        fence(Ordering::SeqCst);
        Listener {
            capacity: self,
            changed,
        }
    }

    /// Tells the listeners that room may have appeared: a unit was freed, or a
    /// session went idle and can be evicted. Call it after the change.
    pub(crate) fn wake(&self) {
        fence(Ordering::SeqCst);
        if self.listeners.load(Ordering::Relaxed) > 0 {
            self.changed.notify_waiters();
        }
    }
}

/// One unit of [`Capacity`]. Dropping it frees the unit and wakes the listeners.
#[derive(Debug)]
pub(crate) struct Reservation {
    capacity: Arc<Capacity>,
}

impl Reservation {
    /// The budget this unit belongs to.
    pub(crate) fn capacity(&self) -> &Arc<Capacity> {
        &self.capacity
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.capacity.reserved.fetch_sub(1, Ordering::AcqRel);
        self.capacity.wake();
    }
}

/// A caller waiting for room; see [`Capacity::listen`].
pub(crate) struct Listener<'a> {
    capacity: &'a Capacity,
    changed: Pin<Box<Notified<'a>>>,
}

impl Listener<'_> {
    /// Resolves at the first change after the listener was created.
    pub(crate) async fn changed(mut self) {
        self.changed.as_mut().await;
    }
}

impl Drop for Listener<'_> {
    fn drop(&mut self) {
        self.capacity.listeners.fetch_sub(1, Ordering::Relaxed);
    }
}
