//! Telemetry: Prometheus metrics, OpenTelemetry spans (OTLP) and Sentry reports.
//!
//! Two parts:
//!
//! * [`Telemetry`] belongs to one runtime: its metrics registry, its Sentry
//!   reporter, and the switches for what spans carry. Every lifecycle event
//!   (`events.rs`) updates all three together.
//! * [`install`] wires the process: the `tracing` subscriber (logs to stderr, and
//!   mcpwatch's spans to OTLP when an endpoint is configured) and the Sentry
//!   client (when a DSN is configured). It returns a [`TelemetryGuard`] whose
//!   [`TelemetryGuard::shutdown`] flushes both. A library user with their own
//!   OpenTelemetry pipeline hands its tracer to [`Telemetry::set_tracer`]
//!   instead of calling `install`.
//!
//! Telemetry never blocks a call: spans and Sentry envelopes go into bounded
//! queues drained by worker threads; when a queue is full the item is dropped and
//! counted (`mcpwatch_telemetry_dropped_total`), and failed exports are counted
//! (`mcpwatch_telemetry_export_errors_total`) and logged at most once a minute.

pub(crate) mod events;
pub(crate) mod export;
pub(crate) mod metrics;
pub(crate) mod semconv;
pub(crate) mod sentry;
pub(crate) mod server_metrics;
pub(crate) mod spans;
pub(crate) mod warn_limit;

use std::sync::OnceLock;
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Histogram, MeterProvider};
use opentelemetry::trace::TracerProvider;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

pub use metrics::{Metrics, MetricsError};

use crate::config::{Config, LogConfig, LogFormat, OtlpProtocol, TelemetryConfig};
use export::{BoundedSpanProcessor, ExportCounters};
use sentry::SentryReporter;

/// How long an OTLP request may take before it counts as failed.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// Semconv histogram boundaries for the optional OTLP metrics (seconds).
const SEMCONV_BOUNDARIES: [f64; 14] = [
    0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// What a runtime reports through. One per runtime; no globals.
#[derive(Debug)]
pub struct Telemetry {
    /// The Prometheus metrics.
    pub metrics: Metrics,
    pub(crate) sentry: SentryReporter,
    pub(crate) capture_payloads: bool,
    otlp_metrics: OnceLock<OtlpInstruments>,
    tracer: OnceLock<SdkTracer>,
}

/// The two semconv histograms, exported over OTLP when `telemetry.otlp.metrics` is on.
#[derive(Debug)]
pub(crate) struct OtlpInstruments {
    pub(crate) operation: Histogram<f64>,
    pub(crate) session: Histogram<f64>,
}

impl Telemetry {
    /// Telemetry with a fresh metrics registry and default switches.
    pub fn new() -> Result<Telemetry, MetricsError> {
        Telemetry::from_config(&TelemetryConfig::default())
    }

    /// Telemetry for the `[telemetry]` settings.
    pub fn from_config(config: &TelemetryConfig) -> Result<Telemetry, MetricsError> {
        let metrics = Metrics::new()?;
        let limited = metrics
            .telemetry_dropped
            .with_label_values(&[semconv::SIGNAL_SENTRY]);
        Ok(Telemetry {
            sentry: SentryReporter::new(config.sentry.send_default_pii, Some(limited)),
            capture_payloads: config.capture_payloads,
            otlp_metrics: OnceLock::new(),
            tracer: OnceLock::new(),
            metrics,
        })
    }

    pub(crate) fn otlp(&self) -> Option<&OtlpInstruments> {
        self.otlp_metrics.get()
    }

    /// Records this runtime's MCP spans through `tracer` (a library user's own
    /// OpenTelemetry pipeline; [`install`] sets the OTLP one itself). The first
    /// tracer set stays: false if one was set already.
    ///
    /// ```
    /// use opentelemetry::trace::TracerProvider as _;
    /// let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
    /// let telemetry = mcpwatch::telemetry::Telemetry::new().unwrap();
    /// assert!(telemetry.set_tracer(provider.tracer("mcpwatch")));
    /// ```
    pub fn set_tracer(&self, tracer: SdkTracer) -> bool {
        self.tracer.set(tracer).is_ok()
    }

    /// The tracer MCP spans are recorded with, if any.
    pub(crate) fn tracer(&self) -> Option<&SdkTracer> {
        self.tracer.get()
    }
}

/// Why telemetry could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TelemetryError {
    /// The OTLP exporter could not be built.
    #[error("cannot set up OTLP export to {endpoint}: {detail}")]
    Otlp {
        /// The configured endpoint.
        endpoint: String,
        /// Why.
        detail: String,
    },
    /// The export thread could not start.
    #[error("cannot start the telemetry export thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// Flushes and stops exporters when asked (or, for Sentry, when dropped).
#[must_use = "call shutdown() before exit, or buffered spans are lost"]
pub struct TelemetryGuard {
    tracer: Option<SdkTracerProvider>,
    meter: Option<SdkMeterProvider>,
    sentry: Option<::sentry::ClientInitGuard>,
}

impl std::fmt::Debug for TelemetryGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelemetryGuard")
            .field("otlp", &self.tracer.is_some())
            .field("sentry", &self.sentry.is_some())
            .finish()
    }
}

impl TelemetryGuard {
    /// Exports what is buffered and stops, within `timeout` per signal. Blocks:
    /// call it from a blocking context (`spawn_blocking`), not on a runtime worker.
    pub fn shutdown(mut self, timeout: Duration) {
        if let Some(tracer) = self.tracer.take()
            && let Err(error) = tracer.shutdown_with_timeout(timeout)
        {
            tracing::warn!(target: "mcpwatch::telemetry", %error, "spans may have been lost at shutdown");
        }
        if let Some(meter) = self.meter.take() {
            let _ = meter.shutdown_with_timeout(timeout);
        }
        if let Some(client) = ::sentry::Hub::main().client() {
            client.close(Some(timeout));
        }
        self.sentry.take();
    }
}

/// Sets up logging, OTLP export and Sentry for this process, per `config`.
/// `log_format` overrides `log.format` (the `--log-format` flag).
pub fn install(
    config: &Config,
    telemetry: &Telemetry,
    log_format: Option<LogFormat>,
) -> Result<TelemetryGuard, TelemetryError> {
    install_with_log_writer(
        config,
        telemetry,
        log_format,
        BoxMakeWriter::new(std::io::stderr),
    )
}

/// [`install`] with logs written to `writer` instead of stderr (tests read them).
pub fn install_with_log_writer(
    config: &Config,
    telemetry: &Telemetry,
    log_format: Option<LogFormat>,
    writer: BoxMakeWriter,
) -> Result<TelemetryGuard, TelemetryError> {
    install_inner(config, telemetry, log_format, writer, false)
}

fn install_inner(
    config: &Config,
    telemetry: &Telemetry,
    log_format: Option<LogFormat>,
    writer: BoxMakeWriter,
    ansi: bool,
) -> Result<TelemetryGuard, TelemetryError> {
    let settings = &config.telemetry;
    let endpoint = settings
        .otlp
        .endpoint
        .as_deref()
        .map(|e| e.trim_end_matches('/').to_owned())
        .filter(|e| !e.is_empty());
    let resource = Resource::builder()
        .with_service_name(settings.service_name.clone())
        .build();
    let tracer = match &endpoint {
        None => None,
        Some(endpoint) => Some(tracer_provider(
            endpoint,
            settings.otlp.protocol,
            telemetry,
            resource.clone(),
        )?),
    };
    let meter = match (&endpoint, settings.otlp.metrics) {
        (Some(endpoint), true) => Some(meter_provider(
            endpoint,
            settings.otlp.protocol,
            telemetry,
            resource,
        )?),
        _ => None,
    };

    // The MCP spans are built with the OpenTelemetry API (`spans.rs`) through
    // the runtime's tracer. The `tracing-opentelemetry` layer carries the
    // agent's request spans (and a caller's own `tracing` spans under
    // `mcpwatch`), which parent the MCP spans. Only the attributes we set: no
    // code location, thread, target or busy/idle timings (each costs the
    // request an attribute and the export thread its encoding), and no
    // OpenTelemetry context attached on every poll (the MCP spans read their
    // parent from the current `tracing` span). A `None` layer would still make
    // the registry build every span: add it only when spans are exported.
    let mut layers: Vec<Box<dyn Layer<tracing_subscriber::Registry> + Send + Sync>> =
        vec![log_layer(&config.log, log_format, writer, ansi)];
    if let Some(provider) = &tracer {
        telemetry.set_tracer(provider.tracer("mcpwatch"));
        let otel = tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("mcpwatch"))
            .with_location(false)
            .with_threads(false)
            .with_target(false)
            .with_tracked_inactivity(false)
            .with_context_activation(false)
            .with_filter(
                tracing_subscriber::filter::Targets::new()
                    .with_target("mcpwatch", tracing::Level::INFO),
            );
        layers.push(otel.boxed());
    }
    let _ = tracing_subscriber::registry().with(layers).try_init();

    let sentry = settings
        .sentry
        .dsn
        .as_ref()
        .filter(|d| !d.is_empty())
        .map(|dsn| {
            let dropped = telemetry
                .metrics
                .telemetry_dropped
                .with_label_values(&[semconv::SIGNAL_SENTRY]);
            let failed = telemetry
                .metrics
                .telemetry_export_errors
                .with_label_values(&[semconv::SIGNAL_SENTRY]);
            ::sentry::init(sentry::client_options(
                config,
                dsn.expose(),
                dropped,
                failed,
            ))
        });
    Ok(TelemetryGuard {
        tracer,
        meter,
        sentry,
    })
}

/// Sets up logging alone, to stderr (no OTLP, no Sentry): for the commands that
/// make no MCP calls. `log_format` overrides `log.format` (the `--log-format`
/// flag). A no-op if this process already has a subscriber.
pub fn install_logging(log: &LogConfig, log_format: Option<LogFormat>) {
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let layer = log_layer(log, log_format, BoxMakeWriter::new(std::io::stderr), ansi);
    let _ = tracing_subscriber::registry().with(layer).try_init();
}

/// The one log layer: lines to `writer` in `log_format` (else `log.format`),
/// filtered by `RUST_LOG` when set, else by `log.level` with rmcp at `warn` and
/// the OpenTelemetry crates off (failed exports are counted and logged by
/// `export.rs`, at most once a minute).
fn log_layer(
    log: &LogConfig,
    log_format: Option<LogFormat>,
    writer: BoxMakeWriter,
    ansi: bool,
) -> Box<dyn Layer<tracing_subscriber::Registry> + Send + Sync> {
    let level = &log.level;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| {
            EnvFilter::try_new(format!(
                "{level},rmcp=warn,opentelemetry=off,opentelemetry_sdk=off,opentelemetry_otlp=off"
            ))
        })
        .unwrap_or_else(|_| EnvFilter::new("info,rmcp=warn"));
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(ansi);
    match log_format.unwrap_or(log.format) {
        LogFormat::Json => fmt.json().with_filter(filter).boxed(),
        LogFormat::Text => fmt.with_filter(filter).boxed(),
    }
}

fn tracer_provider(
    endpoint: &str,
    protocol: OtlpProtocol,
    telemetry: &Telemetry,
    resource: Resource,
) -> Result<SdkTracerProvider, TelemetryError> {
    let failed = |detail: String| TelemetryError::Otlp {
        endpoint: endpoint.to_owned(),
        detail,
    };
    let counters = ExportCounters {
        dropped: telemetry
            .metrics
            .telemetry_dropped
            .with_label_values(&[semconv::SIGNAL_SPANS]),
        failed: telemetry
            .metrics
            .telemetry_export_errors
            .with_label_values(&[semconv::SIGNAL_SPANS]),
    };
    let processor = match protocol {
        OtlpProtocol::HttpProtobuf => {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_endpoint(format!("{endpoint}/v1/traces"))
                .with_timeout(EXPORT_TIMEOUT)
                .build()
                .map_err(|e| failed(e.to_string()))?;
            BoundedSpanProcessor::new(exporter, counters, None)?
        }
        OtlpProtocol::Grpc => {
            let handle = tokio::runtime::Handle::try_current()
                .map_err(|_| failed("gRPC export needs a tokio runtime".to_owned()))?;
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint.to_owned())
                .with_timeout(EXPORT_TIMEOUT)
                .build()
                .map_err(|e| failed(e.to_string()))?;
            BoundedSpanProcessor::new(exporter, counters, Some(handle))?
        }
    };
    Ok(SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_resource(resource)
        .build())
}

fn meter_provider(
    endpoint: &str,
    protocol: OtlpProtocol,
    telemetry: &Telemetry,
    resource: Resource,
) -> Result<SdkMeterProvider, TelemetryError> {
    let failed = |detail: String| TelemetryError::Otlp {
        endpoint: endpoint.to_owned(),
        detail,
    };
    let exporter = match protocol {
        OtlpProtocol::HttpProtobuf => opentelemetry_otlp::MetricExporter::builder()
            .with_http()
            .with_endpoint(format!("{endpoint}/v1/metrics"))
            .with_timeout(EXPORT_TIMEOUT)
            .build(),
        OtlpProtocol::Grpc => opentelemetry_otlp::MetricExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint.to_owned())
            .with_timeout(EXPORT_TIMEOUT)
            .build(),
    }
    .map_err(|e| failed(e.to_string()))?;
    let provider = SdkMeterProvider::builder()
        .with_periodic_exporter(exporter)
        .with_resource(resource)
        .build();
    let meter = provider.meter("mcpwatch");
    let operation = meter
        .f64_histogram("mcp.client.operation.duration")
        .with_unit("s")
        .with_description("Duration of MCP requests as seen by the client.")
        .with_boundaries(SEMCONV_BOUNDARIES.to_vec())
        .build();
    let session = meter
        .f64_histogram("mcp.client.session.duration")
        .with_unit("s")
        .with_description("Duration of MCP sessions as seen by the client.")
        .with_boundaries(SEMCONV_BOUNDARIES.to_vec())
        .build();
    let _ = telemetry
        .otlp_metrics
        .set(OtlpInstruments { operation, session });
    Ok(provider)
}

/// Attributes of a semconv operation point.
pub(crate) fn operation_attributes(
    method: &str,
    tool: Option<&str>,
    error: Option<&str>,
    transport: &str,
) -> Vec<KeyValue> {
    let mut attributes = vec![
        KeyValue::new(semconv::ATTR_METHOD, method.to_owned()),
        KeyValue::new(semconv::ATTR_NETWORK_TRANSPORT, transport.to_owned()),
    ];
    if let Some(tool) = tool {
        attributes.push(KeyValue::new(semconv::ATTR_TOOL, tool.to_owned()));
    }
    if let Some(error) = error {
        attributes.push(KeyValue::new(semconv::ATTR_ERROR_TYPE, error.to_owned()));
    }
    attributes
}
