//! The Prometheus metrics of DESIGN §5, registered once in one registry.
//!
//! No globals: a [`Metrics`] belongs to a runtime, which renders it for `/metrics`.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

use super::semconv as names;
pub(crate) use super::server_metrics::ServerMetrics;
use crate::runtime::{CloseReason, ErrorKind};

/// Operation buckets: from 0.5 ms (pooled stdio calls) to 300 s.
pub(crate) const OPERATION_BUCKETS: [f64; 19] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0,
    30.0, 60.0, 120.0, 300.0,
];

/// Session-duration buckets: from 1 s to 12 h.
pub(crate) const SESSION_BUCKETS: [f64; 12] = [
    0.1, 1.0, 10.0, 30.0, 60.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21600.0, 43200.0,
];

/// Every metric of the runtime.
pub struct Metrics {
    registry: Registry,
    pub(crate) sessions_active: IntGaugeVec,
    pub(crate) sessions_opened: IntCounterVec,
    pub(crate) sessions_closed: IntCounterVec,
    pub(crate) sessions_unclosed: IntCounterVec,
    pub(crate) session_duration: HistogramVec,
    pub(crate) operation_duration: HistogramVec,
    pub(crate) inflight_requests: IntGaugeVec,
    pub(crate) retries: IntCounterVec,
    pub(crate) session_recoveries: IntCounterVec,
    pub(crate) circuit_state: IntGaugeVec,
    pub(crate) pool_capacity: IntGaugeVec,
    pub(crate) notifications: IntCounterVec,
    pub(crate) server_requests: IntCounterVec,
    /// Gateway requests served, by server, method, tool and error.
    pub(crate) gateway_operation_duration: HistogramVec,
    /// Downstream session lifetimes, by server and reason.
    pub(crate) gateway_session_duration: HistogramVec,
    /// Downstream sessions open, by server.
    pub(crate) gateway_sessions_active: IntGaugeVec,
    /// Downstream sessions closed, by server and reason.
    pub(crate) gateway_sessions_closed: IntCounterVec,
    /// Telemetry items dropped (full queue, rate limit), by `signal`.
    pub telemetry_dropped: IntCounterVec,
    /// Failed telemetry exports, by `signal`.
    pub telemetry_export_errors: IntCounterVec,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// Registering fixed, valid names cannot fail; if it ever does, it is a bug here.
#[derive(Debug, thiserror::Error)]
#[error("metric registration failed: {0}")]
pub struct MetricsError(#[from] prometheus::Error);

impl Metrics {
    /// Creates and registers every metric (plus process metrics on Linux).
    pub fn new() -> Result<Metrics, MetricsError> {
        let registry = Registry::new();
        let server = names::LABEL_SERVER;
        let transport = names::LABEL_NETWORK_TRANSPORT;
        let gauge =
            |name: &str, help: &str, labels: &[&str]| -> Result<IntGaugeVec, MetricsError> {
                let metric = IntGaugeVec::new(Opts::new(name, help), labels)?;
                registry.register(Box::new(metric.clone()))?;
                Ok(metric)
            };
        let counter =
            |name: &str, help: &str, labels: &[&str]| -> Result<IntCounterVec, MetricsError> {
                let metric = IntCounterVec::new(Opts::new(name, help), labels)?;
                registry.register(Box::new(metric.clone()))?;
                Ok(metric)
            };
        let histogram = |name: &str,
                         help: &str,
                         labels: &[&str],
                         buckets: &[f64]|
         -> Result<HistogramVec, MetricsError> {
            let metric = HistogramVec::new(
                HistogramOpts::new(name, help).buckets(buckets.to_vec()),
                labels,
            )?;
            registry.register(Box::new(metric.clone()))?;
            Ok(metric)
        };
        let metrics = Metrics {
            sessions_active: gauge(
                names::SESSIONS_ACTIVE,
                "Live MCP client sessions.",
                &[server, transport],
            )?,
            sessions_opened: counter(
                names::SESSIONS_OPENED,
                "MCP client session opens, by outcome.",
                &[server, transport, names::LABEL_OUTCOME],
            )?,
            sessions_closed: counter(
                names::SESSIONS_CLOSED,
                "MCP client session closes, by reason.",
                &[server, transport, names::LABEL_REASON],
            )?,
            sessions_unclosed: counter(
                names::SESSIONS_UNCLOSED,
                "Owned sessions dropped without close(), detected and closed by the leak guard.",
                &[server],
            )?,
            session_duration: histogram(
                names::SESSION_DURATION,
                "Lifetime of MCP client sessions.",
                &[server, transport, names::LABEL_ERROR_TYPE],
                &SESSION_BUCKETS,
            )?,
            operation_duration: histogram(
                names::OPERATION_DURATION,
                "Duration of MCP requests (tool calls, initialize, ping, lists).",
                &[
                    server,
                    names::LABEL_METHOD,
                    names::LABEL_TOOL,
                    names::LABEL_ERROR_TYPE,
                ],
                &OPERATION_BUCKETS,
            )?,
            inflight_requests: gauge(
                names::INFLIGHT_REQUESTS,
                "MCP requests in flight.",
                &[server],
            )?,
            retries: counter(
                names::RETRIES,
                "Retried MCP requests, by the error retried.",
                &[server, names::LABEL_ERROR_TYPE],
            )?,
            session_recoveries: counter(
                names::SESSION_RECOVERIES,
                "Sessions re-opened after the server lost them (server state lost).",
                &[server, names::LABEL_ERROR_TYPE],
            )?,
            circuit_state: gauge(
                names::CIRCUIT_STATE,
                "Circuit breaker: 0 closed, 1 half-open, 2 open.",
                &[server],
            )?,
            pool_capacity: gauge(
                names::POOL_CAPACITY,
                "The server's max_sessions.",
                &[server],
            )?,
            notifications: counter(
                names::NOTIFICATIONS,
                "Notifications received from MCP servers, by method.",
                &[server, names::LABEL_METHOD],
            )?,
            server_requests: counter(
                names::SERVER_REQUESTS,
                "Requests from MCP servers (sampling, elicitation, roots), by method and the policy's answer.",
                &[server, names::LABEL_METHOD, names::LABEL_OUTCOME],
            )?,
            gateway_operation_duration: histogram(
                names::GATEWAY_OPERATION_DURATION,
                "Duration of MCP requests served by the gateway to its clients.",
                &[
                    server,
                    names::LABEL_METHOD,
                    names::LABEL_TOOL,
                    names::LABEL_ERROR_TYPE,
                ],
                &OPERATION_BUCKETS,
            )?,
            gateway_session_duration: histogram(
                names::GATEWAY_SESSION_DURATION,
                "Lifetime of the gateway's downstream MCP sessions.",
                &[server, names::LABEL_REASON],
                &SESSION_BUCKETS,
            )?,
            gateway_sessions_active: gauge(
                names::GATEWAY_SESSIONS_ACTIVE,
                "Downstream MCP sessions open on the gateway.",
                &[server],
            )?,
            gateway_sessions_closed: counter(
                names::GATEWAY_SESSIONS_CLOSED,
                "Downstream MCP sessions closed, by reason.",
                &[server, names::LABEL_REASON],
            )?,
            telemetry_dropped: counter(
                names::TELEMETRY_DROPPED,
                "Telemetry items dropped instead of buffered without limit (spans: export queue full; sentry: queue full or rate limited).",
                &[names::LABEL_SIGNAL],
            )?,
            telemetry_export_errors: counter(
                names::TELEMETRY_EXPORT_ERRORS,
                "Failed telemetry exports (OTLP requests, Sentry envelopes).",
                &[names::LABEL_SIGNAL],
            )?,
            registry,
        };
        for signal in names::TELEMETRY_SIGNALS {
            metrics
                .telemetry_dropped
                .with_label_values(&[signal])
                .inc_by(0);
            metrics
                .telemetry_export_errors
                .with_label_values(&[signal])
                .inc_by(0);
        }
        let build = IntGaugeVec::new(
            Opts::new(names::BUILD_INFO, "mcpwatch build, always 1."),
            &["version", "revision"],
        )?;
        build
            .with_label_values(&[
                env!("CARGO_PKG_VERSION"),
                option_env!("MCPWATCH_REVISION").unwrap_or("unknown"),
            ])
            .set(1);
        metrics.registry.register(Box::new(build))?;
        #[cfg(target_os = "linux")]
        metrics.registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        Ok(metrics)
    }

    /// The gateway families of `server` at 0 (DESIGN §10: present from the start).
    pub(crate) fn for_gateway_server(&self, server: &str) {
        self.gateway_sessions_active
            .with_label_values(&[server])
            .set(0);
        for reason in names::GATEWAY_CLOSE_REASONS {
            self.gateway_sessions_closed
                .with_label_values(&[server, reason])
                .inc_by(0);
            let _ = self
                .gateway_session_duration
                .with_label_values(&[server, reason]);
        }
        let _ = self
            .gateway_operation_duration
            .with_label_values(&[server, "tools/call", "", ""]);
    }

    /// The registry, for callers that add their own metrics (the agent does).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        if let Err(error) = TextEncoder::new().encode(&self.registry.gather(), &mut buffer) {
            tracing::warn!(%error, "rendering metrics failed");
        }
        String::from_utf8(buffer).unwrap_or_default()
    }

    /// Pre-resolved handles for one server's hot-path metrics.
    ///
    /// Also creates every series of the server that a dashboard or an alert
    /// reads at 0, so each family is there from the start: a panel shows 0, not
    /// "No data", and `increase()` counts the first event (a series born at 1
    /// shows no increase). `retryable` are the kinds the retry policy may retry.
    pub(crate) fn for_server(
        &self,
        server: &str,
        network_transport: &str,
        retryable: &[ErrorKind],
    ) -> ServerMetrics {
        self.sessions_active
            .with_label_values(&[server, network_transport])
            .add(0);
        for outcome in ["ok", "error"] {
            self.sessions_opened
                .with_label_values(&[server, network_transport, outcome])
                .inc_by(0);
        }
        for reason in CloseReason::ALL {
            self.sessions_closed
                .with_label_values(&[server, network_transport, reason.as_str()])
                .inc_by(0);
        }
        // A clean close has no error type; histograms are born empty.
        self.session_duration
            .with_label_values(&[server, network_transport, ""]);
        self.sessions_unclosed
            .with_label_values(&[server])
            .inc_by(0);
        for kind in retryable {
            self.retries
                .with_label_values(&[server, kind.as_str()])
                .inc_by(0);
        }
        self.session_recoveries
            .with_label_values(&[server, ErrorKind::SessionExpired.as_str()])
            .inc_by(0);
        for method in names::NOTIFICATION_METHODS {
            self.notifications
                .with_label_values(&[server, method])
                .inc_by(0);
        }
        ServerMetrics::new(
            server,
            self.inflight_requests.with_label_values(&[server]),
            self.operation_duration.clone(),
        )
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::names;

    /// The handler and the transport count notifications by literal method
    /// name; every one of them must be among those created at 0 (and no other).
    #[test]
    fn the_notifications_created_at_zero_are_those_counted() {
        let handler = include_str!("../runtime/handler.rs");
        let mut counted: BTreeSet<&str> = handler
            .split("self.notified(\"")
            .skip(1)
            .filter_map(|rest| rest.split('"').next())
            .collect();
        let progress = "notifications/progress";
        if include_str!("../runtime/transport.rs").contains(&format!("\"{progress}\"")) {
            counted.insert(progress);
        }
        assert_eq!(
            counted,
            names::NOTIFICATION_METHODS.into_iter().collect(),
            "update semconv::NOTIFICATION_METHODS"
        );
    }
}
