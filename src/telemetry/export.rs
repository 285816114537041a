//! Export that never blocks a call: finished spans go into a bounded queue
//! (full: the span is dropped and counted), a worker thread exports them in
//! batches, and export failures are counted and logged at most once a minute.
//!
//! This replaces the SDK's `BatchSpanProcessor`, which drops silently (a count
//! appears only in a log at shutdown) and logs every failed batch.

use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use opentelemetry::Context;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter, SpanProcessor};
use prometheus::IntCounter;

use super::warn_limit::WarnLimiter;

/// Spans held at most while waiting for export.
pub const QUEUE_CAPACITY: usize = 4096;
/// Spans per export request at most.
const MAX_BATCH: usize = 512;
/// How long a span may wait for a batch to fill.
const BATCH_DELAY: Duration = Duration::from_millis(500);

/// Counters of the export path.
#[derive(Debug, Clone)]
pub struct ExportCounters {
    /// Items dropped because the queue was full.
    pub dropped: IntCounter,
    /// Export requests that failed.
    pub failed: IntCounter,
}

enum Message {
    Span(Box<SpanData>),
    Flush(SyncSender<()>),
    Shutdown(SyncSender<()>),
}

/// The bounded span processor.
#[derive(Debug)]
pub struct BoundedSpanProcessor {
    queue: SyncSender<Message>,
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
        let (queue, receiver) = sync_channel(QUEUE_CAPACITY);
        let failed = counters.failed.clone();
        let worker = std::thread::Builder::new()
            .name("mcpwatch-otlp".to_owned())
            .spawn(move || export_loop(exporter, receiver, failed, runtime))?;
        Ok(BoundedSpanProcessor {
            queue,
            counters,
            worker: Mutex::new(Some(worker)),
        })
    }

    fn control(
        &self,
        make: impl FnOnce(SyncSender<()>) -> Message,
        timeout: Duration,
    ) -> OTelSdkResult {
        let (done, wait) = sync_channel(1);
        // A full queue must not block the caller past its timeout either.
        let deadline = Instant::now() + timeout;
        let mut message = make(done);
        loop {
            match self.queue.try_send(message) {
                Ok(()) => break,
                Err(TrySendError::Full(back)) if Instant::now() < deadline => {
                    message = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(_) => return Err(OTelSdkError::Timeout(timeout)),
            }
        }
        wait.recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .map_err(|_| OTelSdkError::Timeout(timeout))
    }
}

impl SpanProcessor for BoundedSpanProcessor {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        if self.queue.try_send(Message::Span(Box::new(span))).is_err() {
            self.counters.dropped.inc();
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.control(Message::Flush, Duration::from_secs(5))
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        let result = self.control(Message::Shutdown, timeout);
        if result.is_ok()
            && let Some(worker) = self.worker.lock().ok().and_then(|mut w| w.take())
        {
            let _ = worker.join();
        }
        result
    }
}

fn export_loop<E: SpanExporter>(
    exporter: E,
    receiver: Receiver<Message>,
    failed: IntCounter,
    runtime: Option<tokio::runtime::Handle>,
) {
    let warn = WarnLimiter::new(Duration::from_secs(60));
    let mut batch: Vec<SpanData> = Vec::with_capacity(MAX_BATCH);
    let mut oldest: Option<Instant> = None;
    let export = |batch: &mut Vec<SpanData>| {
        if batch.is_empty() {
            return;
        }
        let spans = std::mem::take(batch);
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
    loop {
        let wait = oldest.map_or(BATCH_DELAY, |t| BATCH_DELAY.saturating_sub(t.elapsed()));
        match receiver.recv_timeout(wait) {
            Ok(Message::Span(span)) => {
                oldest.get_or_insert_with(Instant::now);
                batch.push(*span);
                if batch.len() >= MAX_BATCH {
                    export(&mut batch);
                    oldest = None;
                }
            }
            Ok(Message::Flush(done)) => {
                drain(&receiver, &mut batch, &export);
                export(&mut batch);
                oldest = None;
                let _ = done.send(());
            }
            Ok(Message::Shutdown(done)) => {
                drain(&receiver, &mut batch, &export);
                export(&mut batch);
                let _ = exporter.shutdown();
                let _ = done.send(());
                return;
            }
            Err(RecvTimeoutError::Timeout) => {
                export(&mut batch);
                oldest = None;
            }
            Err(RecvTimeoutError::Disconnected) => {
                export(&mut batch);
                return;
            }
        }
    }
}

/// Moves every span already queued into `batch` (exporting full batches).
fn drain(
    receiver: &Receiver<Message>,
    batch: &mut Vec<SpanData>,
    export: &impl Fn(&mut Vec<SpanData>),
) {
    while let Ok(message) = receiver.try_recv() {
        match message {
            Message::Span(span) => {
                batch.push(*span);
                if batch.len() >= MAX_BATCH {
                    export(batch);
                }
            }
            Message::Flush(done) | Message::Shutdown(done) => {
                let _ = done.send(());
            }
        }
    }
}

/// Shared so tests and the guard can read the numbers.
pub type SharedCounters = Arc<ExportCounters>;
