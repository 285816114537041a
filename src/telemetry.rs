//! Telemetry: metrics now; traces (OTLP) and Sentry reports hang off the same events.

pub mod events;
pub mod metrics;
pub mod semconv;

pub use metrics::{Metrics, MetricsError};

/// What a runtime reports through. One per runtime; no globals.
#[derive(Debug)]
pub struct Telemetry {
    /// The Prometheus metrics.
    pub metrics: Metrics,
}

impl Telemetry {
    /// Telemetry with a fresh metrics registry.
    pub fn new() -> Result<Telemetry, MetricsError> {
        Ok(Telemetry {
            metrics: Metrics::new()?,
        })
    }
}
