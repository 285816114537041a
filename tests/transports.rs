//! Open, call, list tools and close over every transport, against real servers:
//! the demo (in-process, child process, streamable HTTP), the reference
//! server-everything (stdio, streamable HTTP, legacy SSE) and the Python `mcp`
//! server (stdio, streamable HTTP, legacy SSE).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use mcpwatch::ACCEPTED_PROTOCOL_VERSIONS;
use mcpwatch::config::ServerConfig;
use mcpwatch::{CallOptions, Runtime};
use serde_json::json;
use support::*;

/// Lists tools, calls the echo tool, checks the session, closes the scope and
/// checks that nothing is left (session gauge, maps, stdio process).
async fn round_trip(
    spec: ServerConfig,
    echo_tool: &str,
    expected_echo: &str,
    list_must_contain: &[&str],
) {
    let transport = spec.transport_kind();
    let runtime = Runtime::start(config([("srv", spec)])).await.unwrap();
    let tools = runtime.list_tools("srv", Some("t")).await.unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    for expected in list_must_contain {
        assert!(
            names.contains(expected),
            "{expected} missing from {names:?}"
        );
    }
    let call = runtime
        .call_tool(
            "srv",
            echo_tool,
            Some(json!({"message": "hello"})),
            CallOptions::scope("t"),
        )
        .await
        .unwrap();
    assert!(!call.is_error(), "{:?}", call.result);
    assert_eq!(text(&call.result), expected_echo);
    assert!(
        call.reused,
        "tools/list opened the session; the call reused it"
    );
    let sessions = runtime.sessions();
    assert_eq!(sessions.len(), 1);
    let session = &sessions[0];
    assert_eq!(session.transport, transport.as_str());
    assert!(
        ACCEPTED_PROTOCOL_VERSIONS.contains(&session.protocol_version.as_str())
            || session.protocol_version == "2024-11-05",
        "{}",
        session.protocol_version
    );
    runtime.ping("srv", Some("t")).await.unwrap();
    let pid = session.pid;
    assert_eq!(runtime.close_scope("t").await.unwrap(), 1);
    if let Some(pid) = pid {
        assert!(
            group_members(pid).is_empty(),
            "process group of {pid} survived the close"
        );
    }
    assert!(runtime.sessions().is_empty());
    assert_eq!(runtime.internal_map_sizes(), (0, 0, 0));
    let net = transport.network_transport();
    assert_eq!(
        metric(
            &runtime,
            "mcp_client_sessions_active",
            &[("mcp_server", "srv"), ("network_transport", net)]
        ),
        0.0
    );
    assert_eq!(
        metric(
            &runtime,
            "mcp_client_sessions_opened_total",
            &[("outcome", "ok")]
        ),
        1.0
    );
    assert_eq!(
        metric(
            &runtime,
            "mcp_client_sessions_closed_total",
            &[("reason", "scope_closed")]
        ),
        1.0
    );
    assert_eq!(
        metric(
            &runtime,
            "mcp_client_operation_duration_seconds",
            &[
                ("mcp_method_name", "tools/call"),
                ("gen_ai_tool_name", echo_tool)
            ]
        ),
        1.0
    );
    runtime.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn builtin_demo() {
    round_trip(
        ServerConfig::builtin(),
        "echo",
        "hello",
        &["echo", "add", "sleep", "fail", "counter", "crash"],
    )
    .await;
}

#[tokio::test]
async fn demo_as_a_child_process() {
    round_trip(demo_stdio(), "echo", "hello", &["echo", "counter"]).await;
}

#[tokio::test]
async fn demo_over_streamable_http() {
    let server = HttpDemo::start().await;
    round_trip(
        ServerConfig::http(&server.url),
        "echo",
        "hello",
        &["echo", "counter"],
    )
    .await;
}

#[tokio::test]
async fn everything_over_stdio() {
    round_trip(
        everything_stdio(),
        "echo",
        "Echo: hello",
        &["echo", "get-sum", "trigger-long-running-operation"],
    )
    .await;
}

#[tokio::test]
async fn everything_over_streamable_http() {
    let port = free_port();
    let _server = everything_http("streamableHttp", port).await;
    let spec = ServerConfig::http(format!("http://127.0.0.1:{port}/mcp"));
    round_trip(spec, "echo", "Echo: hello", &["echo", "get-sum"]).await;
}

#[tokio::test]
async fn everything_over_legacy_sse() {
    let port = free_port();
    let _server = everything_http("sse", port).await;
    let spec = ServerConfig::sse(format!("http://127.0.0.1:{port}/sse"));
    round_trip(spec, "echo", "Echo: hello", &["echo", "get-sum"]).await;
}

#[tokio::test]
async fn python_over_stdio() {
    round_trip(
        python_stdio(&[]),
        "echo",
        "hello",
        &["echo", "slow", "hang", "record"],
    )
    .await;
}

#[tokio::test]
async fn python_over_streamable_http() {
    let log = tempfile::NamedTempFile::new().unwrap();
    let port = free_port();
    let _server = python_http("http", port, log.path(), &[]).await;
    let spec = ServerConfig::http(format!("http://127.0.0.1:{port}/mcp"));
    round_trip(spec, "echo", "hello", &["echo", "record"]).await;
}

#[tokio::test]
async fn python_over_legacy_sse() {
    let log = tempfile::NamedTempFile::new().unwrap();
    let port = free_port();
    let _server = python_http("sse", port, log.path(), &[]).await;
    let spec = ServerConfig::sse(format!("http://127.0.0.1:{port}/sse"));
    round_trip(spec, "echo", "hello", &["echo", "record"]).await;
}

#[tokio::test]
async fn http_sessions_report_the_server_session_id_and_close_it() {
    let log = tempfile::NamedTempFile::new().unwrap();
    let port = free_port();
    let _server = python_http("http", port, log.path(), &[]).await;
    let runtime = Runtime::start(config([(
        "py",
        ServerConfig::http(format!("http://127.0.0.1:{port}/mcp")),
    )]))
    .await
    .unwrap();
    let first = runtime
        .call_tool("py", "counter", None, CallOptions::scope("a"))
        .await
        .unwrap();
    let second = runtime
        .call_tool("py", "counter", None, CallOptions::scope("a"))
        .await
        .unwrap();
    assert_eq!(
        (text(&first.result).as_str(), text(&second.result).as_str()),
        ("1", "2"),
        "one server session"
    );
    let other = runtime
        .call_tool("py", "counter", None, CallOptions::scope("b"))
        .await
        .unwrap();
    assert_eq!(text(&other.result), "1");
    let sessions = runtime.sessions();
    let ids: Vec<String> = sessions
        .iter()
        .filter_map(|s| s.mcp_session_id.clone())
        .collect();
    assert_eq!(
        ids.len(),
        2,
        "each session has the Mcp-Session-Id the server issued"
    );
    assert_ne!(ids[0], ids[1]);
    runtime.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn server_stderr_is_drained_into_the_log() {
    let logs = LogCapture::start();
    let runtime = Runtime::start(config([("py", python_stdio(&[]))]))
        .await
        .unwrap();
    runtime
        .call_tool(
            "py",
            "echo",
            Some(json!({"message": "x"})),
            CallOptions::default(),
        )
        .await
        .unwrap();
    eventually(
        Duration::from_secs(5),
        "the server's stderr banner in our log",
        || {
            logs.text().lines().any(|l| {
                l.contains("mcpwatch::server_stderr")
                    && l.contains("mcp_server=py")
                    && l.contains("start stdio")
            })
        },
    )
    .await;
    runtime.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn many_concurrent_calls_share_one_http_session() {
    let server = HttpDemo::start().await;
    let runtime = Runtime::start(config([("demo", ServerConfig::http(&server.url))]))
        .await
        .unwrap();
    let calls = (0..100).map(|i| {
        let runtime = runtime.clone();
        tokio::spawn(async move {
            let args = json!({"message": format!("payload-{i}")});
            runtime
                .call_tool("demo", "echo", Some(args), CallOptions::scope("one"))
                .await
                .map(|c| text(&c.result))
        })
    });
    for (i, result) in futures::future::join_all(calls)
        .await
        .into_iter()
        .enumerate()
    {
        assert_eq!(
            result.unwrap().unwrap(),
            format!("payload-{i}"),
            "results are never crossed"
        );
    }
    assert_eq!(
        metric(&runtime, "mcp_client_sessions_opened_total", &[]),
        1.0
    );
    runtime.shutdown(Duration::from_secs(5)).await;
}

/// Closing many HTTP sessions at once sends their `DELETE`s at most 64 at a time,
/// over connections already open: unbounded, each `DELETE` opened a new
/// connection (two more fds per session here, client and server in one process).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_many_http_sessions_does_not_open_a_connection_per_delete() {
    const SESSIONS: usize = 300;
    let demo = HttpDemo::start().await;
    let runtime = Runtime::start(config([("demo", ServerConfig::http(demo.url.clone()))]))
        .await
        .unwrap();
    let calls = (0..SESSIONS).map(|i| {
        let runtime = runtime.clone();
        async move {
            let scope = format!("s{i}");
            runtime
                .call_tool(
                    "demo",
                    "echo",
                    Some(json!({"message": "x"})),
                    CallOptions::scope(&scope),
                )
                .await
        }
    });
    // Opened 8 at a time, so that few idle keep-alive connections are left over
    // for the `DELETE`s to reuse (as in a pool filled over time).
    use futures::StreamExt;
    let results: Vec<_> = futures::stream::iter(calls)
        .buffer_unordered(8)
        .collect()
        .await;
    assert!(results.iter().all(Result::is_ok), "every session opened");
    assert_eq!(runtime.sessions().len(), SESSIONS);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle = open_fds();

    // Sample the fds every millisecond while every session closes.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampling = stop.clone();
    let sampler = std::thread::spawn(move || {
        let mut peak = 0;
        for _ in 0..30_000 {
            if sampling.load(std::sync::atomic::Ordering::Relaxed) {
                break;
            }
            peak = peak.max(open_fds());
            std::thread::sleep(Duration::from_millis(1));
        }
        peak
    });
    let report = runtime.shutdown(Duration::from_secs(10)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let peak = sampler.join().unwrap();
    assert_eq!(report.sessions_closed, SESSIONS, "{report:?}");
    assert!(
        peak < idle + 2 * 64 + 40,
        "fds went from {idle} (idle) to a peak of {peak} while closing {SESSIONS} sessions"
    );
}
