//! Real receivers on 127.0.0.1 for telemetry tests: an OTLP/HTTP trace receiver
//! (protobuf bodies decoded with opentelemetry-proto) and a Sentry envelope
//! endpoint (envelopes parsed item by item).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use tokio_util::sync::CancellationToken;

/// How a receiver answers.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// 200 at once.
    Answer,
    /// Never answers (holds the request open).
    Hang,
}

/// Collected OTLP spans.
#[derive(Clone)]
pub struct OtlpReceiver {
    pub endpoint: String,
    spans: Arc<Mutex<Vec<Span>>>,
    metric_names: Arc<Mutex<Vec<String>>>,
    requests: Arc<Mutex<usize>>,
    _stop: Arc<StopOnDrop>,
}

struct StopOnDrop(CancellationToken);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

#[derive(Clone)]
struct OtlpState {
    spans: Arc<Mutex<Vec<Span>>>,
    metric_names: Arc<Mutex<Vec<String>>>,
    requests: Arc<Mutex<usize>>,
    behaviour: Behaviour,
}

impl OtlpReceiver {
    pub async fn start(behaviour: Behaviour) -> OtlpReceiver {
        let spans = Arc::new(Mutex::new(Vec::new()));
        let requests = Arc::new(Mutex::new(0));
        let metric_names = Arc::new(Mutex::new(Vec::new()));
        let state = OtlpState {
            spans: spans.clone(),
            metric_names: metric_names.clone(),
            requests: requests.clone(),
            behaviour,
        };
        let router = axum::Router::new()
            .route("/v1/traces", post(receive_traces))
            .route("/v1/metrics", post(receive_metrics))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let token = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(token.cancelled_owned())
                .await;
        });
        OtlpReceiver {
            endpoint: format!("http://{addr}"),
            metric_names,
            spans,
            requests,
            _stop: Arc::new(StopOnDrop(stop)),
        }
    }

    pub fn spans(&self) -> Vec<Span> {
        self.spans.lock().unwrap().clone()
    }

    /// Names of every metric received on /v1/metrics.
    pub fn metric_names(&self) -> Vec<String> {
        self.metric_names.lock().unwrap().clone()
    }

    pub fn requests(&self) -> usize {
        *self.requests.lock().unwrap()
    }

    /// Runtime telemetry whose MCP spans go over OTLP/HTTP to this receiver,
    /// through mcpwatch's own bounded export processor (what `install` wires,
    /// without a global `tracing` subscriber). Shut the provider down (from a
    /// blocking context) to flush.
    pub fn traced_telemetry(
        &self,
    ) -> (
        Arc<mcpwatch::telemetry::Telemetry>,
        opentelemetry_sdk::trace::SdkTracerProvider,
    ) {
        use mcpwatch::testing::{BoundedSpanProcessor, ExportCounters};
        use opentelemetry::trace::TracerProvider as _;
        use opentelemetry_otlp::WithExportConfig as _;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(format!("{}/v1/traces", self.endpoint))
            .build()
            .unwrap();
        let counters = ExportCounters {
            dropped: prometheus::IntCounter::new("dropped", "dropped").unwrap(),
            failed: prometheus::IntCounter::new("failed", "failed").unwrap(),
        };
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_span_processor(BoundedSpanProcessor::new(exporter, counters, None).unwrap())
            .build();
        let telemetry = mcpwatch::telemetry::Telemetry::new().unwrap();
        assert!(telemetry.set_tracer(provider.tracer("mcpwatch")));
        (Arc::new(telemetry), provider)
    }
}

async fn receive_traces(State(state): State<OtlpState>, body: Bytes) -> &'static str {
    *state.requests.lock().unwrap() += 1;
    if state.behaviour == Behaviour::Hang {
        std::future::pending::<()>().await;
    }
    let request = ExportTraceServiceRequest::decode(body).expect("a valid OTLP protobuf body");
    let mut spans = state.spans.lock().unwrap();
    for resource in request.resource_spans {
        for scope in resource.scope_spans {
            spans.extend(scope.spans);
        }
    }
    ""
}

async fn receive_metrics(State(state): State<OtlpState>, body: Bytes) -> &'static str {
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    let request = ExportMetricsServiceRequest::decode(body).expect("a valid OTLP metrics body");
    let mut names = state.metric_names.lock().unwrap();
    for resource in request.resource_metrics {
        for scope in resource.scope_metrics {
            names.extend(scope.metrics.into_iter().map(|m| m.name));
        }
    }
    ""
}

/// A span attribute's value as text ("" when absent).
pub fn attr(span: &Span, key: &str) -> String {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
        .map(|v| match v {
            Value::StringValue(s) => s.clone(),
            Value::IntValue(i) => i.to_string(),
            Value::BoolValue(b) => b.to_string(),
            Value::DoubleValue(d) => d.to_string(),
            other => format!("{other:?}"),
        })
        .unwrap_or_default()
}

/// Collected Sentry envelopes.
#[derive(Clone)]
pub struct SentryReceiver {
    pub dsn: String,
    bodies: Arc<Mutex<Vec<Vec<u8>>>>,
    _stop: Arc<StopOnDrop>,
}

impl SentryReceiver {
    pub async fn start() -> SentryReceiver {
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let state = bodies.clone();
        let router = axum::Router::new().route(
            "/api/{project}/envelope/",
            post(move |body: Bytes| {
                let state = state.clone();
                async move {
                    state.lock().unwrap().push(body.to_vec());
                    "{}"
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let token = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(token.cancelled_owned())
                .await;
        });
        SentryReceiver {
            dsn: format!("http://public-key@{addr}/42"),
            bodies,
            _stop: Arc::new(StopOnDrop(stop)),
        }
    }

    /// Every raw envelope body, as text.
    pub fn raw(&self) -> Vec<String> {
        self.bodies
            .lock()
            .unwrap()
            .iter()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect()
    }

    /// Every event item of every envelope, parsed.
    pub fn events(&self) -> Vec<serde_json::Value> {
        let mut events = Vec::new();
        for body in self.bodies.lock().unwrap().iter() {
            let mut lines = body.split(|b| *b == b'\n');
            let _envelope_header = lines.next();
            while let Some(header) = lines.next() {
                let Ok(header) = serde_json::from_slice::<serde_json::Value>(header) else {
                    continue;
                };
                let Some(payload) = lines.next() else { break };
                if header["type"] == "event" {
                    events.push(serde_json::from_slice(payload).expect("an event payload"));
                }
            }
        }
        events
    }
}
