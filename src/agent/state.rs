//! What every handler shares.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use super::error::ApiError;
use super::idempotency::IdempotencyStore;
use crate::config::{AgentConfig, Secret};
use crate::gateway::Gateway;
use crate::runtime::{ErrorKind, Runtime};

/// Shared state of the API and admin routers.
#[derive(Clone)]
pub struct AgentState {
    pub(crate) runtime: Runtime,
    pub(crate) token: Option<Secret>,
    pub(crate) max_body_bytes: usize,
    pub(crate) idempotency: Arc<IdempotencyStore>,
    /// The MCP gateway (`gateway.enabled`).
    pub(crate) gateway: Option<Arc<Gateway>>,
    slots: Arc<Semaphore>,
    queue_timeout: Duration,
    draining: Arc<AtomicBool>,
    in_flight: Arc<AtomicUsize>,
    drained: Arc<Notify>,
}

impl AgentState {
    /// State for `runtime` with the `[agent]` settings.
    pub fn new(runtime: Runtime, config: &AgentConfig) -> AgentState {
        let gateway = runtime
            .config()
            .gateway
            .enabled
            .then(|| Gateway::start(runtime.clone(), config.listen))
            .and_then(|started| {
                started
                    .map_err(|e| tracing::error!("the gateway cannot start: {e}"))
                    .ok()
            });
        AgentState {
            gateway,
            runtime,
            token: config.token.clone().filter(|t| !t.is_empty()),
            max_body_bytes: config.max_body_bytes,
            idempotency: Arc::new(IdempotencyStore::new(config.idempotency_ttl)),
            slots: Arc::new(Semaphore::new(config.max_in_flight)),
            queue_timeout: config.queue_timeout,
            draining: Arc::new(AtomicBool::new(false)),
            in_flight: Arc::new(AtomicUsize::new(0)),
            drained: Arc::new(Notify::new()),
        }
    }

    /// Admits one call: refuses while draining, waits up to `queue_timeout` for a slot.
    pub(crate) async fn admit(&self) -> Result<CallTicket, ApiError> {
        if self.is_draining() {
            return Err(ApiError::new(
                ErrorKind::ShuttingDown,
                "the agent is shutting down",
            ));
        }
        let permit = match self.slots.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => tokio::time::timeout(self.queue_timeout, self.slots.clone().acquire_owned())
                .await
                .map_err(|_| {
                    ApiError::new(
                        ErrorKind::PoolExhausted,
                        format!(
                            "agent.max_in_flight calls are running; none finished within {:?}",
                            self.queue_timeout
                        ),
                    )
                })?
                .map_err(|_| {
                    ApiError::new(ErrorKind::ShuttingDown, "the agent is shutting down")
                })?,
        };
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        Ok(CallTicket {
            _permit: permit,
            state: self.clone(),
        })
    }

    /// True once shutdown has begun.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Starts draining: new calls are refused, `/readyz` answers 503.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// Calls in flight now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Waits until no call is in flight, or `deadline` passes; true if drained.
    pub async fn wait_drained(&self, deadline: Duration) -> bool {
        let wait = async {
            loop {
                let notified = self.drained.notified();
                if self.in_flight() == 0 {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(deadline, wait).await.is_ok()
    }
}

/// One admitted call; dropping it frees the slot.
pub(crate) struct CallTicket {
    _permit: OwnedSemaphorePermit,
    state: AgentState,
}

impl Drop for CallTicket {
    fn drop(&mut self) {
        if self.state.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.state.drained.notify_waiters();
        }
    }
}
