//! Export that never blocks a call: finished spans go into a bounded queue
//! (full: the span is dropped and counted), a worker thread exports them in
//! batches, and export failures are counted and logged at most once a minute.
//!
//! This replaces the SDK's `BatchSpanProcessor`, which drops silently (a count
//! appears only in a log at shutdown) and logs every failed batch.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use opentelemetry::Context;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter, SpanProcessor};
use prometheus::IntCounter;

use super::warn_limit::WarnLimiter;

/// Spans held at most while waiting for export.
pub(crate) const QUEUE_CAPACITY: usize = 4096;
/// Spans per export request at most; a queue this long wakes the worker early.
const MAX_BATCH: usize = 512;
/// How often the worker exports what has queued up.
const BATCH_DELAY: Duration = Duration::from_millis(500);

/// Counters of the export path.
#[derive(Debug, Clone)]
pub struct ExportCounters {
    /// Items dropped because the queue was full.
    pub dropped: IntCounter,
    /// Export requests that failed.
    pub failed: IntCounter,
}

/// The queue between the spans' ends (any thread) and the export worker.
///
/// A span's end only pushes under an uncontended lock: it does not wake the
/// worker (a futex wake and a context switch per call cost the call path more
/// than building the span). The worker wakes every [`BATCH_DELAY`], when a full
/// batch is waiting, or when asked to flush or stop.
#[derive(Debug, Default)]
struct Queue {
    state: Mutex<QueueState>,
    /// Wakes the worker.
    work: Condvar,
    /// Wakes callers waiting for a flush or the stop.
    done: Condvar,
}

#[derive(Debug, Default)]
struct QueueState {
    spans: Vec<SpanData>,
    /// Flushes asked for, and done (a waiter waits for its number).
    flushes_asked: u64,
    flushes_done: u64,
    stop_asked: bool,
    stopped: bool,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits on `done` until `finished` holds or `deadline` passes.
    fn wait_done(
        &self,
        mut state: MutexGuard<'_, QueueState>,
        deadline: Instant,
        finished: impl Fn(&QueueState) -> bool,
    ) -> bool {
        while !finished(&state) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            state = self
                .done
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        true
    }
}

/// The bounded span processor.
#[derive(Debug)]
pub struct BoundedSpanProcessor {
    queue: Arc<Queue>,
    counters: ExportCounters,
    worker: Mutex<Option<JoinHandle<()>>>,
}

impl BoundedSpanProcessor {
    /// Starts the worker thread that owns `exporter`.
    /// `runtime`: the tokio runtime to drive exports on (gRPC needs one); `None`
    /// drives them on the worker thread itself (OTLP/HTTP with the blocking client).
    pub fn new<E: SpanExporter + 'static>(
        exporter: E,
        counters: ExportCounters,
        runtime: Option<tokio::runtime::Handle>,
    ) -> std::io::Result<BoundedSpanProcessor> {
        let queue = Arc::new(Queue::default());
        let failed = counters.failed.clone();
        let worker_queue = queue.clone();
        let worker = std::thread::Builder::new()
            .name("mcpwatch-otlp".to_owned())
            .spawn(move || export_loop(exporter, &worker_queue, failed, runtime))?;
        Ok(BoundedSpanProcessor {
            queue,
            counters,
            worker: Mutex::new(Some(worker)),
        })
    }
}

impl SpanProcessor for BoundedSpanProcessor {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        let mut state = self.queue.lock();
        if state.stopped || state.spans.len() >= QUEUE_CAPACITY {
            drop(state);
            self.counters.dropped.inc();
            return;
        }
        state.spans.push(span);
        let full_batch = state.spans.len() == MAX_BATCH;
        drop(state);
        if full_batch {
            self.queue.work.notify_one();
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        let timeout = Duration::from_secs(5);
        let deadline = Instant::now() + timeout;
        let mut state = self.queue.lock();
        if state.stopped {
            return Ok(());
        }
        state.flushes_asked += 1;
        let mine = state.flushes_asked;
        self.queue.work.notify_one();
        let flushed = self
            .queue
            .wait_done(state, deadline, |s| s.flushes_done >= mine || s.stopped);
        flushed.then_some(()).ok_or(OTelSdkError::Timeout(timeout))
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        let deadline = Instant::now() + timeout;
        let mut state = self.queue.lock();
        state.stop_asked = true;
        self.queue.work.notify_one();
        if !self.queue.wait_done(state, deadline, |s| s.stopped) {
            return Err(OTelSdkError::Timeout(timeout));
        }
        if let Some(worker) = self.worker.lock().ok().and_then(|mut w| w.take()) {
            let _ = worker.join();
        }
        Ok(())
    }
}

fn export_loop<E: SpanExporter>(
    exporter: E,
    queue: &Queue,
    failed: IntCounter,
    runtime: Option<tokio::runtime::Handle>,
) {
    let warn = WarnLimiter::new(Duration::from_secs(60));
    let export = |spans: Vec<SpanData>| {
        let count = spans.len();
        let result = match &runtime {
            Some(runtime) => runtime.block_on(exporter.export(spans)),
            None => futures::executor::block_on(exporter.export(spans)),
        };
        if let Err(error) = result {
            failed.inc();
            warn.warn(|suppressed| {
                tracing::warn!(target: "mcpwatch::telemetry", %error, spans = count, suppressed, "OTLP span export failed (next warning in a minute at the earliest)");
            });
        }
    };
    let mut taken: Vec<SpanData> = Vec::new();
    loop {
        // Swapped into the queue below: room for a batch without regrowing.
        taken.reserve(MAX_BATCH);
        let deadline = Instant::now() + BATCH_DELAY;
        let (flush, stop) = {
            let mut state = queue.lock();
            loop {
                let asked = state.flushes_asked > state.flushes_done || state.stop_asked;
                let left = deadline.saturating_duration_since(Instant::now());
                if asked || state.spans.len() >= MAX_BATCH || left.is_zero() {
                    break;
                }
                state = queue
                    .work
                    .wait_timeout(state, left)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
            std::mem::swap(&mut taken, &mut state.spans);
            (state.flushes_asked, state.stop_asked)
        };
        while !taken.is_empty() {
            let rest = taken.split_off(taken.len().min(MAX_BATCH));
            export(std::mem::replace(&mut taken, rest));
        }
        if stop {
            let _ = exporter.shutdown();
        }
        let mut state = queue.lock();
        state.flushes_done = flush;
        state.stopped = stop;
        drop(state);
        queue.done.notify_all();
        if stop {
            return;
        }
    }
}
