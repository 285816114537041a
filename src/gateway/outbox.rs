//! Where messages for one downstream session go outside a request's own
//! answer: notifications and the server's requests. A session's GET stream
//! takes them when open; otherwise the stream of its latest request in flight
//! (a client that opens no GET stream still sees progress, logs and the
//! server's questions while it waits on a call).

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde_json::Value;
use tokio::sync::mpsc;

use super::sessions::Downstream;

/// Messages one answer stream may hold before new ones are dropped.
pub(crate) const STREAM_CAPACITY: usize = 256;

/// One message on an answer stream, before the answer: a notification or a
/// request of the server's.
#[derive(Debug)]
pub(crate) enum Outgoing {
    /// The message.
    Note(Value),
}

#[derive(Default)]
struct Streams {
    get: Option<mpsc::Sender<Outgoing>>,
    requests: Vec<(u64, mpsc::Sender<Outgoing>)>,
    next: u64,
    closed: bool,
}

/// The open streams of one session.
#[derive(Default)]
pub(crate) struct Outbox(Mutex<Streams>);

impl Outbox {
    fn lock(&self) -> MutexGuard<'_, Streams> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Opens the GET stream (replacing an older one, which ends); `None` once closed.
    pub(crate) fn open_get(&self) -> Option<mpsc::Receiver<Outgoing>> {
        let mut streams = self.lock();
        if streams.closed {
            return None;
        }
        let (tx, rx) = mpsc::channel(STREAM_CAPACITY);
        streams.get = Some(tx);
        Some(rx)
    }

    /// Delivers `message`; false when no stream took it.
    pub(crate) fn deliver(&self, message: Outgoing) -> bool {
        let streams = self.lock();
        let target = streams
            .get
            .as_ref()
            .filter(|tx| !tx.is_closed())
            .or_else(|| streams.requests.last().map(|(_, tx)| tx));
        match target {
            Some(tx) => tx.try_send(message).is_ok(),
            None => false,
        }
    }

    /// Ends every stream (the session ended).
    pub(crate) fn close(&self) {
        let mut streams = self.lock();
        streams.closed = true;
        streams.get = None;
        streams.requests.clear();
    }
}

/// A request's stream registered with its session's outbox until dropped.
pub(crate) struct RequestStreamSlot {
    session: Arc<Downstream>,
    id: u64,
}

impl RequestStreamSlot {
    /// Registers `tx` as a stream of `session`.
    pub(crate) fn register(
        session: &Arc<Downstream>,
        tx: mpsc::Sender<Outgoing>,
    ) -> RequestStreamSlot {
        let mut streams = session.outbox.lock();
        let id = streams.next;
        streams.next += 1;
        if !streams.closed {
            streams.requests.push((id, tx));
        }
        drop(streams);
        RequestStreamSlot {
            session: session.clone(),
            id,
        }
    }
}

impl Drop for RequestStreamSlot {
    fn drop(&mut self) {
        let mut streams = self.session.outbox.lock();
        streams.requests.retain(|(id, _)| *id != self.id);
    }
}
