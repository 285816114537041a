//! Telemetry against real receivers on 127.0.0.1: OTLP spans (names, kinds,
//! attributes, parents, error status, the traceparent the server received),
//! Sentry envelopes (fingerprints, tags, no secrets, no payloads), exact metric
//! counts for a scripted scenario, and a collector that is down or hangs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use mcpwatch::config::{Secret, ServerConfig};
use mcpwatch::telemetry::{Telemetry, TelemetryGuard};
use mcpwatch::{CallOptions, Config, ErrorKind, Runtime};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use serde_json::json;
use support::receivers::{Behaviour, OtlpReceiver, SentryReceiver, attr};
use support::*;
use tracing::Instrument;

async fn start(config: Config, logs: Option<&LogSink>) -> (Runtime, TelemetryGuard) {
    let telemetry = Arc::new(Telemetry::from_config(&config.telemetry).unwrap());
    let guard = match logs {
        Some(sink) => {
            let sink = sink.clone();
            mcpwatch::testing::install_with_log_writer(
                &config,
                &telemetry,
                None,
                tracing_subscriber::fmt::writer::BoxMakeWriter::new(move || sink.clone()),
            )
        }
        None => mcpwatch::telemetry::install(&config, &telemetry, None),
    }
    .unwrap();
    (Runtime::start_with(config, telemetry).await.unwrap(), guard)
}

async fn flush(guard: TelemetryGuard) {
    tokio::task::spawn_blocking(move || guard.shutdown(Duration::from_secs(5)))
        .await
        .unwrap();
}

#[derive(Clone, Default)]
struct LogSink(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogSink {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_a_real_otlp_receiver_with_the_semconv_shape() {
    let receiver = OtlpReceiver::start(Behaviour::Answer).await;
    let mut config = config([("demo", demo_stdio())]);
    config.telemetry.otlp.endpoint = Some(receiver.endpoint.clone());
    let (runtime, guard) = start(config, None).await;

    let parent = tracing::info_span!(target: "mcpwatch::test", "orchestrator.step");
    let traceparent = async {
        let options = || CallOptions::scope("t1");
        runtime
            .call_tool("demo", "echo", Some(json!({"message": "hi"})), options())
            .await
            .unwrap();
        let failed = runtime
            .call_tool("demo", "fail", None, options())
            .await
            .unwrap();
        assert!(failed.is_error());
        let timeout = runtime
            .call_tool(
                "demo",
                "sleep",
                Some(json!({"ms": 3000})),
                options().with_timeout(Duration::from_millis(200)),
            )
            .await
            .unwrap_err();
        assert_eq!(timeout.kind(), ErrorKind::Timeout);
        let call = runtime
            .call_tool("demo", "traceparent", None, options())
            .await
            .unwrap();
        text(&call.result)
    }
    .instrument(parent)
    .await;
    runtime.close_scope("t1").await.unwrap();
    runtime.shutdown(Duration::from_secs(5)).await;
    flush(guard).await;

    let spans = receiver.spans();
    let named = |name: &str| {
        spans.iter().find(|s| s.name == name).unwrap_or_else(|| {
            panic!(
                "no span {name}: {:?}",
                spans.iter().map(|s| &s.name).collect::<Vec<_>>()
            )
        })
    };
    let step = named("orchestrator.step");
    let echo = named("tools/call echo");
    assert_eq!(echo.kind, SpanKind::Client as i32);
    assert_eq!(
        echo.parent_span_id, step.span_id,
        "the caller's span is the parent"
    );
    assert_eq!(echo.trace_id, step.trace_id);
    for (key, value) in [
        ("mcp.method.name", "tools/call"),
        ("gen_ai.tool.name", "echo"),
        ("gen_ai.operation.name", "execute_tool"),
        ("mcp.protocol.version", "2025-11-25"),
        ("network.transport", "pipe"),
        ("mcp.server.name", "demo"),
        ("mcp.scope", "t1"),
    ] {
        assert_eq!(attr(echo, key), value, "{key}");
    }
    assert!(!attr(echo, "jsonrpc.request.id").is_empty());
    assert!(
        attr(echo, "gen_ai.tool.call.arguments").is_empty(),
        "no payloads unless capture_payloads"
    );
    assert_ne!(
        echo.status.as_ref().map(|s| s.code),
        Some(StatusCode::Error as i32)
    );

    let fail = named("tools/call fail");
    assert_eq!(attr(fail, "error.type"), "tool_error");
    assert_eq!(fail.status.as_ref().unwrap().code, StatusCode::Error as i32);
    let sleep = named("tools/call sleep");
    assert_eq!(attr(sleep, "error.type"), "timeout");
    assert_eq!(
        sleep.status.as_ref().unwrap().code,
        StatusCode::Error as i32
    );

    let initialize = named("initialize");
    assert_eq!(initialize.kind, SpanKind::Client as i32);
    assert_eq!(
        initialize.parent_span_id, step.span_id,
        "the open is part of the caller's trace"
    );
    assert_eq!(attr(initialize, "mcp.protocol.version"), "2025-11-25");

    let close = named("mcp.session.close");
    assert_eq!(close.kind, SpanKind::Internal as i32);
    assert_eq!(attr(close, "mcp.session.close.reason"), "scope_closed");

    let traced = named("tools/call traceparent");
    let expected = format!("00-{}-{}-01", hex(&traced.trace_id), hex(&traced.span_id));
    assert_eq!(
        traceparent, expected,
        "the server received the client span's traceparent in _meta"
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentry_gets_tagged_reports_and_never_a_secret() {
    let sentry = SentryReceiver::start().await;
    let http_demo = HttpDemo::start().await;
    let mut remote = ServerConfig::http(&http_demo.url);
    remote.headers.insert(
        "Authorization".into(),
        Secret::new("Bearer header-token-8842"),
    );
    let mut child = demo_stdio();
    child
        .env
        .insert("DEMO_API_KEY".into(), Secret::new("stdio-env-secret-5531"));
    let mut config = config([("demo", child), ("remote", remote)]);
    config.agent.token = Some(Secret::new("agent-token-7777"));
    config.telemetry.sentry.dsn = Some(Secret::new(sentry.dsn.clone()));
    let (runtime, guard) = start(config, None).await;

    let leaked = runtime.open("demo").await.unwrap();
    leaked
        .call_tool("echo", Some(json!({"message": "secret-argument-1"})), None)
        .await
        .unwrap();
    drop(leaked);
    runtime
        .call_tool(
            "remote",
            "fail",
            Some(json!({"message": "secret-result-2"})),
            CallOptions::scope("s"),
        )
        .await
        .unwrap();
    runtime
        .call_tool(
            "demo",
            "sleep",
            Some(json!({"ms": 2000})),
            CallOptions::scope("s").with_timeout(Duration::from_millis(150)),
        )
        .await
        .unwrap_err();
    runtime
        .call_tool(
            "demo",
            "echo",
            Some(json!({"message": "fine"})),
            CallOptions::scope("s"),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    runtime.shutdown(Duration::from_secs(5)).await;
    flush(guard).await;

    let events = sentry.events();
    let by_fingerprint = |first: &str| -> Vec<&serde_json::Value> {
        events
            .iter()
            .filter(|e| e["fingerprint"][0] == first)
            .collect()
    };
    let unclosed = by_fingerprint("mcp-unclosed-session");
    assert_eq!(unclosed.len(), 1, "{events:#?}");
    assert_eq!(unclosed[0]["level"], "warning");
    assert_eq!(
        unclosed[0]["fingerprint"],
        json!(["mcp-unclosed-session", "demo"])
    );
    assert_eq!(unclosed[0]["tags"]["mcp.server.name"], "demo");
    assert_eq!(unclosed[0]["tags"]["mcp.transport"], "stdio");
    assert_eq!(
        unclosed[0]["contexts"]["mcp"]["opened_at.file"],
        "tests/telemetry.rs"
    );

    let failures = by_fingerprint("mcp-tool-error");
    assert_eq!(
        failures.len(),
        2,
        "one error per distinct tool failure: {failures:#?}"
    );
    let tool_error = failures
        .iter()
        .find(|e| e["tags"]["error.type"] == "tool_error")
        .unwrap();
    // Sentry leaves the default level (error) out of the payload.
    assert!(
        tool_error["level"].is_null() || tool_error["level"] == "error",
        "{tool_error}"
    );
    assert_eq!(
        tool_error["fingerprint"],
        json!(["mcp-tool-error", "remote", "fail", "tool_error"])
    );
    for (tag, value) in [
        ("mcp.server.name", "remote"),
        ("mcp.transport", "http"),
        ("network.transport", "tcp"),
        ("mcp.method.name", "tools/call"),
        ("mcp.tool.name", "fail"),
        ("mcp.protocol.version", "2025-11-25"),
        ("mcp.scope", "s"),
    ] {
        assert_eq!(tool_error["tags"][tag], value, "{tag}");
    }
    let timeout = failures
        .iter()
        .find(|e| e["tags"]["error.type"] == "timeout")
        .unwrap();
    assert_eq!(
        timeout["fingerprint"],
        json!(["mcp-tool-error", "demo", "sleep", "timeout"])
    );
    assert!(timeout["contexts"]["mcp"]["jsonrpc.request.id"].is_string());

    let everything = sentry.raw().join("\n");
    for secret in [
        "header-token-8842",
        "stdio-env-secret-5531",
        "agent-token-7777",
        "public-key",
    ] {
        assert!(!everything.contains(secret), "{secret} reached Sentry");
    }
    for payload in ["secret-argument-1", "secret-result-2"] {
        assert!(
            !everything.contains(payload),
            "{payload} sent without send_default_pii"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payloads_go_to_sentry_only_with_send_default_pii() {
    let sentry = SentryReceiver::start().await;
    let mut config = config([("demo", ServerConfig::builtin())]);
    config.telemetry.sentry.dsn = Some(Secret::new(sentry.dsn.clone()));
    config.telemetry.sentry.send_default_pii = true;
    let (runtime, guard) = start(config, None).await;
    runtime
        .call_tool(
            "demo",
            "fail",
            Some(json!({"message": "visible-payload-3"})),
            CallOptions::default(),
        )
        .await
        .unwrap();
    runtime.shutdown(Duration::from_secs(5)).await;
    flush(guard).await;
    let events = sentry.events();
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0]["contexts"]["mcp"]["tool.arguments"]["message"],
        "visible-payload-3"
    );
}

/// 3 sessions on 2 servers, 10 calls, 2 tool errors, 1 timeout, 1 leak, then close all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scripted_scenario_gives_exact_metric_counts() {
    let runtime = Runtime::start(config([
        ("a", ServerConfig::builtin()),
        ("b", demo_stdio()),
    ]))
    .await
    .unwrap();
    let call = |server: &'static str, tool: &'static str, scope: &'static str| {
        let runtime = runtime.clone();
        async move {
            runtime
                .call_tool(
                    server,
                    tool,
                    Some(json!({"message": "m", "ms": 2000})),
                    CallOptions::scope(scope).with_timeout(Duration::from_millis(300)),
                )
                .await
        }
    };
    for _ in 0..4 {
        call("a", "echo", "s1").await.unwrap();
    }
    call("a", "echo", "s2").await.unwrap();
    call("b", "echo", "s1").await.unwrap();
    call("b", "counter", "s1").await.unwrap();
    assert!(call("a", "fail", "s1").await.unwrap().is_error());
    assert!(call("b", "fail", "s1").await.unwrap().is_error());
    assert_eq!(
        call("b", "sleep", "s1").await.unwrap_err().kind(),
        ErrorKind::Timeout
    );
    let leaked = runtime.open("a").await.unwrap();
    drop(leaked);
    for server in ["a", "b"] {
        runtime.close_server(server).await.unwrap();
    }
    eventually(Duration::from_secs(3), "the leak is closed", || {
        metric(
            &runtime,
            "mcp_client_sessions_closed_total",
            &[("reason", "unclosed")],
        ) == 1.0
    })
    .await;
    let m = |name: &str, labels: &[(&str, &str)]| metric(&runtime, name, labels);
    assert_eq!(
        m("mcp_client_sessions_opened_total", &[("outcome", "ok")]),
        4.0,
        "3 pooled + 1 owned"
    );
    assert_eq!(
        m("mcp_client_sessions_opened_total", &[("mcp_server", "a")]),
        3.0
    );
    assert_eq!(
        m(
            "mcp_client_sessions_closed_total",
            &[("reason", "explicit")]
        ),
        3.0
    );
    assert_eq!(m("mcp_client_sessions_closed_total", &[]), 4.0);
    assert_eq!(
        m("mcp_client_sessions_unclosed_total", &[("mcp_server", "a")]),
        1.0
    );
    assert_eq!(m("mcp_client_sessions_active", &[]), 0.0);
    assert_eq!(m("mcp_client_session_duration_seconds", &[]), 4.0);
    assert_eq!(
        m(
            "mcp_client_operation_duration_seconds",
            &[("mcp_method_name", "tools/call")]
        ),
        10.0
    );
    assert_eq!(
        m(
            "mcp_client_operation_duration_seconds",
            &[("mcp_method_name", "tools/call"), ("error_type", "")]
        ),
        7.0
    );
    assert_eq!(
        m(
            "mcp_client_operation_duration_seconds",
            &[("error_type", "tool_error")]
        ),
        2.0
    );
    assert_eq!(
        m(
            "mcp_client_operation_duration_seconds",
            &[("error_type", "timeout")]
        ),
        1.0
    );
    assert_eq!(
        m(
            "mcp_client_operation_duration_seconds",
            &[("mcp_method_name", "initialize")]
        ),
        4.0
    );
    assert_eq!(m("mcp_client_inflight_requests", &[]), 0.0);
    assert_eq!(m("mcp_client_retries_total", &[]), 0.0);
    assert_eq!(
        m("mcp_client_pool_capacity", &[("mcp_server", "a")]),
        1024.0
    );
    assert_eq!(m("mcpwatch_build_info", &[]), 1.0);

    let exposition = runtime.metrics().render();
    assert!(
        exposition.contains("process_open_fds"),
        "process metrics are exported"
    );
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &exposition).unwrap();
    let promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(file.path()).unwrap())
        .output()
        .expect(
            "promtool (Debian package prometheus) is installed by scripts/install-test-deps.sh",
        );
    assert!(
        promtool.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&promtool.stdout),
        String::from_utf8_lossy(&promtool.stderr)
    );
    runtime.shutdown(Duration::from_secs(5)).await;
}

/// A collector and Sentry that are down: calls go on, queues stay bounded,
/// drops are counted, and the warning is logged once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telemetry_on_a_closed_port_never_breaks_a_call() {
    let runtime = telemetry_down(format!("http://127.0.0.1:{}", free_port()), "closed port").await;
    assert!(
        metric(
            &runtime,
            "mcpwatch_telemetry_export_errors_total",
            &[("signal", "spans")]
        ) > 0.0,
        "failed exports are counted"
    );
}

/// The same with a collector that accepts connections and never answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telemetry_that_never_answers_never_breaks_a_call() {
    let hanging = OtlpReceiver::start(Behaviour::Hang).await;
    let runtime = telemetry_down(hanging.endpoint.clone(), "never answers").await;
    assert!(hanging.requests() >= 1, "the exporter did try");
    assert!(
        metric(
            &runtime,
            "mcpwatch_telemetry_dropped_total",
            &[("signal", "spans")]
        ) > 0.0,
        "a collector that never answers fills the bounded queue: the overflow is dropped and counted"
    );
}

async fn telemetry_down(endpoint: String, behaviour: &str) -> Runtime {
    let logs = LogSink::default();
    let mut config = config([("demo", ServerConfig::builtin())]);
    config.telemetry.otlp.endpoint = Some(endpoint);
    config.telemetry.sentry.dsn =
        Some(Secret::new(format!("http://k@127.0.0.1:{}/1", free_port())));
    let (runtime, guard) = start(config, Some(&logs)).await;
    let started = std::time::Instant::now();
    for i in 0..10_000 {
        let call = runtime
            .call_tool(
                "demo",
                "fail",
                Some(json!({"message": i.to_string()})),
                CallOptions::default(),
            )
            .await
            .unwrap();
        assert!(call.is_error());
    }
    let elapsed = started.elapsed();
    let dropped = metric(
        &runtime,
        "mcpwatch_telemetry_dropped_total",
        &[("signal", "spans")],
    );
    let sentry_dropped = metric(
        &runtime,
        "mcpwatch_telemetry_dropped_total",
        &[("signal", "sentry")],
    );
    runtime.shutdown(Duration::from_secs(5)).await;
    let flushed = tokio::time::timeout(Duration::from_secs(20), flush(guard)).await;
    assert!(
        flushed.is_ok(),
        "{behaviour}: shutdown must not hang on a dead collector"
    );
    assert!(dropped <= 10_000.0);
    assert!(
        sentry_dropped > 0.0,
        "{behaviour}: sentry reports beyond the rate limit are dropped and counted"
    );
    let text = logs.text();
    let warnings = text
        .lines()
        .filter(|l| l.contains("OTLP span export failed"))
        .count();
    assert!(
        warnings <= 1,
        "{behaviour}: {warnings} export warnings in {elapsed:?}:\n{text}"
    );
    eprintln!(
        "{behaviour}: 10,000 calls in {elapsed:?}, {dropped} spans dropped, {warnings} warning(s)"
    );
    runtime
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_semconv_histograms_go_over_otlp_when_asked() {
    let receiver = OtlpReceiver::start(Behaviour::Answer).await;
    let mut config = config([("demo", ServerConfig::builtin())]);
    config.telemetry.otlp.endpoint = Some(receiver.endpoint.clone());
    config.telemetry.otlp.metrics = true;
    let (runtime, guard) = start(config, None).await;
    runtime
        .call_tool(
            "demo",
            "echo",
            Some(json!({"message": "m"})),
            CallOptions::default(),
        )
        .await
        .unwrap();
    runtime.shutdown(Duration::from_secs(5)).await;
    flush(guard).await;
    let names = receiver.metric_names();
    assert!(
        names.iter().any(|n| n == "mcp.client.operation.duration"),
        "{names:?}"
    );
    assert!(
        names.iter().any(|n| n == "mcp.client.session.duration"),
        "{names:?}"
    );
}
