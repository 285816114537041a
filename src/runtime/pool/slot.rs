//! A pooled session's place in its server's map ([`Slot`]), the guard of a caller
//! using it ([`Checkout`]), and the map itself ([`SlotMap`]).
//!
//! The map is reachable only through its server's mutex (`ServerEntry::slots`),
//! so every method here runs under that lock. Each entry holds the slot and its
//! unit of the pool's [`Capacity`]: an entry leaving the map, by whatever path,
//! gives the unit back exactly once. [`SlotMap::check_out`] is the only place
//! that adds a checkout, which is why an evictor that sees a slot idle under the
//! lock knows nobody can start using it before it is removed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use tokio::sync::watch;

use super::capacity::{Capacity, Reservation};
use crate::runtime::error::Error;
use crate::runtime::session::Session;

/// A pooled session's place in its server's map, present from the start of its open.
pub(crate) struct Slot {
    /// Callers using the session now; changed only under the map's lock (up) or
    /// by a dropped [`Checkout`] (down).
    checkouts: AtomicUsize,
    session: OnceLock<Arc<Session>>,
    state: watch::Sender<SlotState>,
    /// Woken when the slot goes idle: its session can then be evicted.
    capacity: Arc<Capacity>,
}

#[derive(Clone)]
enum SlotState {
    Opening,
    Ready,
    Failed(Error),
}

impl Slot {
    fn new(capacity: Arc<Capacity>) -> Slot {
        Slot {
            checkouts: AtomicUsize::new(0),
            session: OnceLock::new(),
            state: watch::channel(SlotState::Opening).0,
            capacity,
        }
    }

    /// The session, once it has opened.
    pub(crate) fn session(&self) -> Option<&Arc<Session>> {
        self.session.get()
    }

    /// The session, if it has opened and nobody uses it. Only a look under the
    /// map's lock can rely on the answer staying true.
    pub(crate) fn idle_session(&self) -> Option<&Arc<Session>> {
        self.session
            .get()
            .filter(|_| self.checkouts.load(Ordering::Acquire) == 0)
    }

    /// True if this slot's session is `session`.
    pub(crate) fn holds(&self, session: &Arc<Session>) -> bool {
        self.session.get().is_some_and(|s| Arc::ptr_eq(s, session))
    }

    /// The open succeeded: every caller waiting in [`Slot::ready`] gets `session`.
    pub(crate) fn set_ready(&self, session: Arc<Session>) {
        let _ = self.session.set(session);
        self.state.send_replace(SlotState::Ready);
    }

    /// The open failed: every caller waiting in [`Slot::ready`] gets `error`.
    pub(crate) fn set_failed(&self, error: Error) {
        self.state.send_replace(SlotState::Failed(error));
    }

    /// The session, if it has opened.
    pub(crate) fn opened(&self) -> Option<Arc<Session>> {
        self.session.get().cloned()
    }

    /// The session, once its open has finished (the open's error if it failed).
    pub(crate) async fn ready(&self) -> Result<Arc<Session>, Error> {
        if let Some(session) = self.session.get() {
            return Ok(session.clone());
        }
        let mut state = self.state.subscribe();
        let outcome = state
            .wait_for(|s| !matches!(s, SlotState::Opening))
            .await
            .map(|s| s.clone());
        match outcome {
            Ok(SlotState::Ready) => self.session.get().cloned().ok_or(Error::ShuttingDown),
            Ok(SlotState::Failed(error)) => Err(error),
            Ok(SlotState::Opening) | Err(_) => Err(Error::ShuttingDown),
        }
    }
}

/// Keeps a slot in use; dropping it makes the session evictable again (and wakes
/// the callers waiting for room, who may now evict it).
pub(crate) struct Checkout {
    slot: Arc<Slot>,
}

impl Checkout {
    /// The slot in use.
    pub(crate) fn slot(&self) -> &Arc<Slot> {
        &self.slot
    }
}

impl Drop for Checkout {
    fn drop(&mut self) {
        if self.slot.checkouts.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.slot.capacity.wake();
        }
    }
}

/// The cap that left no room for a new slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cap {
    /// The server's `max_sessions`.
    Server,
    /// The pool's `pool.max_sessions`.
    Global,
}

/// A slot checked out by [`SlotMap::check_out`].
pub(crate) struct Claim {
    pub(crate) checkout: Checkout,
    /// The slot is new: the caller must start its open.
    pub(crate) created: bool,
}

/// One server's pooled sessions by scope (opening ones included). Each entry
/// holds one unit of the pool's capacity for as long as it is in the map.
#[derive(Default)]
pub(crate) struct SlotMap {
    listed: HashMap<Arc<str>, Listed>,
}

struct Listed {
    slot: Arc<Slot>,
    /// Given back when the entry leaves the map.
    _unit: Reservation,
}

impl SlotMap {
    /// Slots in the map.
    pub(crate) fn len(&self) -> usize {
        self.listed.len()
    }

    /// Checks out the slot of `scope`, creating it if the server's cap (`max`)
    /// and the pool's `capacity` leave room.
    pub(crate) fn check_out(
        &mut self,
        scope: &str,
        max: usize,
        capacity: &Arc<Capacity>,
    ) -> Result<Claim, Cap> {
        if let Some(listed) = self.listed.get(scope) {
            return Ok(Claim {
                checkout: check_out(&listed.slot),
                created: false,
            });
        }
        if self.listed.len() >= max {
            return Err(Cap::Server);
        }
        let unit = capacity.try_reserve().ok_or(Cap::Global)?;
        let slot = Arc::new(Slot::new(unit.capacity().clone()));
        let checkout = check_out(&slot);
        self.listed
            .insert(Arc::from(scope), Listed { slot, _unit: unit });
        Ok(Claim {
            checkout,
            created: true,
        })
    }

    /// True if `slot` is the slot of `scope`.
    pub(crate) fn lists(&self, scope: &str, slot: &Arc<Slot>) -> bool {
        self.listed
            .get(scope)
            .is_some_and(|listed| Arc::ptr_eq(&listed.slot, slot))
    }

    /// Removes the slot of `scope` if `remove` says so, freeing its unit.
    pub(crate) fn remove_if(
        &mut self,
        scope: &str,
        remove: impl FnOnce(&Arc<Slot>) -> bool,
    ) -> Option<Arc<Slot>> {
        let listed = self.listed.get(scope)?;
        if !remove(&listed.slot) {
            return None;
        }
        self.listed.remove(scope).map(|Listed { slot, .. }| slot)
    }

    /// Removes every slot for which `remove(scope, slot)` is true, freeing
    /// their units, and returns them.
    pub(crate) fn remove_where(
        &mut self,
        mut remove: impl FnMut(&str, &Slot) -> bool,
    ) -> Vec<Arc<Slot>> {
        let mut removed = Vec::new();
        self.listed.retain(|scope, listed| {
            let leaves = remove(scope, &listed.slot);
            if leaves {
                removed.push(listed.slot.clone());
            }
            !leaves
        });
        removed
    }

    /// Every slot in the map.
    pub(crate) fn slots(&self) -> impl Iterator<Item = &Arc<Slot>> {
        self.listed.values().map(|listed| &listed.slot)
    }
}

/// Adds one checkout. Called only by [`SlotMap::check_out`], so always under the
/// map's lock.
fn check_out(slot: &Arc<Slot>) -> Checkout {
    slot.checkouts.fetch_add(1, Ordering::AcqRel);
    Checkout { slot: slot.clone() }
}
