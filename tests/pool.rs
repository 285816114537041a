//! Pool and lifecycle (DESIGN §3): per-scope sessions, single flight, caps with
//! LRU eviction, idle TTL and max lifetime, owned sessions and the leak guard.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use mcpwatch::config::ServerConfig;
use mcpwatch::{CallOptions, ErrorKind, Runtime};
use serde_json::json;
use support::*;

async fn counter(runtime: &Runtime, server: &str, scope: &str) -> u64 {
    let call = runtime
        .call_tool(server, "counter", None, CallOptions::scope(scope))
        .await
        .unwrap();
    text(&call.result).parse().unwrap()
}

#[tokio::test]
async fn counter_keeps_state_per_scope_in_one_child_process() {
    let runtime = Runtime::start(config([("demo", demo_stdio())]))
        .await
        .unwrap();
    for expected in 1..=100 {
        assert_eq!(counter(&runtime, "demo", "A").await, expected);
    }
    assert_eq!(
        counter(&runtime, "demo", "B").await,
        1,
        "scope B has its own session"
    );
    let sessions = runtime.sessions();
    assert_eq!(sessions.len(), 2);
    let a = sessions.iter().find(|s| s.scope == "A").unwrap();
    assert_eq!(a.calls, 100);
    let pid_a = a.pid.unwrap();
    assert!(alive(pid_a));
    assert_eq!(
        metric(
            &runtime,
            "mcp_client_sessions_opened_total",
            &[("mcp_server", "demo"), ("outcome", "ok")]
        ),
        2.0
    );

    assert_eq!(runtime.close_scope("A").await.unwrap(), 1);
    assert!(!alive(pid_a), "closing the scope ends its server process");
    assert_eq!(
        counter(&runtime, "demo", "A").await,
        1,
        "a closed scope starts over"
    );
    assert_eq!(
        counter(&runtime, "demo", "B").await,
        2,
        "other scopes are untouched"
    );
    assert_eq!(
        metric(
            &runtime,
            "mcp_client_sessions_closed_total",
            &[("reason", "scope_closed")]
        ),
        1.0
    );

    let report = runtime.shutdown(Duration::from_secs(10)).await;
    assert_eq!(report.sessions_closed, 2);
    assert_eq!(
        metric(
            &runtime,
            "mcp_client_sessions_active",
            &[("mcp_server", "demo")]
        ),
        0.0
    );
    assert!(
        my_children().is_empty(),
        "children left: {:?}",
        my_children()
    );
}

#[tokio::test]
async fn concurrent_first_calls_open_exactly_one_session() {
    let runtime = Runtime::start(config([("demo", demo_stdio())]))
        .await
        .unwrap();
    let calls = (0..200).map(|i| {
        let runtime = runtime.clone();
        tokio::spawn(async move {
            runtime
                .call_tool(
                    "demo",
                    "echo",
                    Some(json!({"message": format!("m{i}")})),
                    CallOptions::scope("shared"),
                )
                .await
                .map(|c| text(&c.result))
        })
    });
    let results = futures::future::join_all(calls).await;
    for (i, result) in results.into_iter().enumerate() {
        assert_eq!(result.unwrap().unwrap(), format!("m{i}"));
    }
    assert_eq!(
        metric(
            &runtime,
            "mcp_client_sessions_opened_total",
            &[("mcp_server", "demo")]
        ),
        1.0
    );
    assert_eq!(runtime.sessions().len(), 1);
    assert_eq!(runtime.sessions()[0].calls, 200);
    assert_eq!(my_children().len(), 1, "one server process");
    runtime.shutdown(Duration::from_secs(10)).await;
}

#[tokio::test]
async fn cap_evicts_exactly_the_least_recently_used_idle_sessions() {
    let mut spec = ServerConfig::builtin();
    spec.max_sessions = Some(3);
    let runtime = Runtime::start(config([("demo", spec)])).await.unwrap();
    for scope in ["s1", "s2", "s3"] {
        counter(&runtime, "demo", scope).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // s1 is used again, so s2 and then s3 are the least recently used.
    counter(&runtime, "demo", "s1").await;
    counter(&runtime, "demo", "s4").await;
    counter(&runtime, "demo", "s5").await;
    let mut scopes: Vec<String> = runtime.sessions().into_iter().map(|s| s.scope).collect();
    scopes.sort();
    assert_eq!(scopes, ["s1", "s4", "s5"]);
    eventually(Duration::from_secs(2), "two evictions counted", || {
        metric(
            &runtime,
            "mcp_client_sessions_closed_total",
            &[("reason", "evicted")],
        ) == 2.0
    })
    .await;
    assert_eq!(
        counter(&runtime, "demo", "s1").await,
        3,
        "s1 kept its session"
    );
    runtime.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_session_with_a_call_in_flight_is_not_evicted() {
    let mut spec = ServerConfig::builtin();
    spec.max_sessions = Some(1);
    let mut config = config([("demo", spec)]);
    config.pool.queue_timeout = Duration::from_millis(300);
    let runtime = Runtime::start(config).await.unwrap();
    let busy = {
        let runtime = runtime.clone();
        tokio::spawn(async move {
            runtime
                .call_tool(
                    "demo",
                    "sleep",
                    Some(json!({"ms": 800})),
                    CallOptions::scope("busy"),
                )
                .await
        })
    };
    eventually(Duration::from_secs(2), "the sleep is in flight", || {
        runtime.sessions().first().is_some_and(|s| s.in_flight == 1)
    })
    .await;
    let started = std::time::Instant::now();
    let error = runtime
        .call_tool(
            "demo",
            "echo",
            Some(json!({"message": "x"})),
            CallOptions::scope("other"),
        )
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::PoolExhausted);
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "waited the queue timeout"
    );
    let done = busy.await.unwrap().unwrap();
    assert_eq!(
        text(&done.result),
        "slept 800 ms",
        "the busy session finished its call"
    );
    assert_eq!(
        metric(
            &runtime,
            "mcp_client_sessions_closed_total",
            &[("reason", "evicted")]
        ),
        0.0
    );
    // Now idle, it can make room.
    runtime
        .call_tool(
            "demo",
            "echo",
            Some(json!({"message": "x"})),
            CallOptions::scope("other"),
        )
        .await
        .unwrap();
    assert_eq!(
        metric(
            &runtime,
            "mcp_client_sessions_closed_total",
            &[("reason", "evicted")]
        ),
        1.0
    );
    runtime.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_waiting_call_gets_the_slot_freed_by_a_finished_call() {
    let mut spec = ServerConfig::builtin();
    spec.max_sessions = Some(1);
    let runtime = Runtime::start(config([("demo", spec)])).await.unwrap();
    let busy = {
        let runtime = runtime.clone();
        tokio::spawn(async move {
            runtime
                .call_tool(
                    "demo",
                    "sleep",
                    Some(json!({"ms": 300})),
                    CallOptions::scope("a"),
                )
                .await
        })
    };
    eventually(Duration::from_secs(2), "in flight", || {
        runtime.sessions().first().is_some_and(|s| s.in_flight == 1)
    })
    .await;
    let waiting = runtime
        .call_tool("demo", "counter", None, CallOptions::scope("b"))
        .await
        .unwrap();
    assert_eq!(text(&waiting.result), "1");
    busy.await.unwrap().unwrap();
    runtime.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(start_paused = true)]
async fn idle_ttl_closes_idle_sessions_in_paused_time() {
    let mut spec = ServerConfig::builtin();
    spec.idle_ttl = Some(Duration::from_secs(600));
    let runtime = Runtime::start(config([("demo", spec)])).await.unwrap();
    counter(&runtime, "demo", "a").await;
    tokio::time::sleep(Duration::from_secs(599)).await;
    assert_eq!(runtime.sessions().len(), 1, "not before the TTL");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(runtime.sessions().is_empty(), "closed after the TTL");
    assert_eq!(
        metric(
            &runtime,
            "mcp_client_sessions_closed_total",
            &[("reason", "idle_timeout")]
        ),
        1.0
    );
    assert_eq!(counter(&runtime, "demo", "a").await, 1, "a new session");
    runtime.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(start_paused = true)]
async fn max_lifetime_closes_busy_sessions_once_idle() {
    let mut config = config([("demo", ServerConfig::builtin())]);
    config.pool.max_lifetime = Duration::from_secs(60);
    config.pool.idle_ttl = Duration::from_secs(100_000);
    let runtime = Runtime::start(config).await.unwrap();
    // Keep the session busy across its lifetime; it must not be closed mid-call.
    let long = runtime.call_tool(
        "demo",
        "sleep",
        Some(json!({"ms": 70_000})),
        CallOptions::scope("a").with_timeout(Duration::from_secs(100)),
    );
    let result = long.await.unwrap();
    assert_eq!(text(&result.result), "slept 70000 ms");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(runtime.sessions().is_empty());
    assert_eq!(
        metric(
            &runtime,
            "mcp_client_sessions_closed_total",
            &[("reason", "max_lifetime")]
        ),
        1.0
    );
    runtime.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn leaked_owned_session_is_reported_with_its_location_and_closed() {
    let logs = LogCapture::start();
    let runtime = Runtime::start(config([("demo", demo_stdio())]))
        .await
        .unwrap();
    let line = line!() + 1;
    let session = runtime.open("demo").await.unwrap();
    session
        .call_tool("echo", Some(json!({"message": "hi"})), None)
        .await
        .unwrap();
    let pid = session.info().pid.unwrap();
    assert!(alive(pid));
    drop(session);
    eventually(
        Duration::from_secs(2),
        "the leaked session's server is gone",
        || !alive(pid),
    )
    .await;
    let text = logs.text();
    let location = format!("{}:{line}", file!());
    assert!(
        text.contains("unclosed MCP session") && text.contains(&location),
        "no unclosed report naming {location}:\n{text}"
    );
    assert_eq!(
        metric(
            &runtime,
            "mcp_client_sessions_unclosed_total",
            &[("mcp_server", "demo")]
        ),
        1.0
    );
    eventually(
        Duration::from_secs(2),
        "closed with reason unclosed",
        || {
            metric(
                &runtime,
                "mcp_client_sessions_closed_total",
                &[("reason", "unclosed")],
            ) == 1.0
        },
    )
    .await;
    assert_eq!(runtime.internal_map_sizes(), (0, 0, 0));
    runtime.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn owned_session_closed_explicitly_is_not_a_leak() {
    let runtime = Runtime::start(config([("demo", demo_stdio())]))
        .await
        .unwrap();
    let session = runtime.open("demo").await.unwrap();
    let pid = session.info().pid.unwrap();
    assert_eq!(runtime.sessions().len(), 1);
    assert!(runtime.sessions()[0].owned);
    session.close().await;
    assert!(!alive(pid));
    assert_eq!(
        metric(&runtime, "mcp_client_sessions_unclosed_total", &[]),
        0.0
    );
    assert_eq!(
        metric(
            &runtime,
            "mcp_client_sessions_closed_total",
            &[("reason", "explicit")]
        ),
        1.0
    );
    assert_eq!(runtime.internal_map_sizes(), (0, 0, 0));
    runtime.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_lease_pins_one_session() {
    let runtime = Runtime::start(config([("demo", ServerConfig::builtin())]))
        .await
        .unwrap();
    let lease = runtime.session("demo", Some("t1")).await.unwrap();
    for expected in 1..=3 {
        assert_eq!(
            text(&lease.call_tool("counter", None, None).await.unwrap()),
            expected.to_string()
        );
    }
    assert!(
        lease
            .list_tools()
            .await
            .unwrap()
            .iter()
            .any(|t| t.name == "sleep")
    );
    drop(lease);
    assert_eq!(
        counter(&runtime, "demo", "t1").await,
        4,
        "the pooled call uses the same session"
    );
    runtime.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn bad_scopes_and_unknown_servers_are_rejected_before_anything_opens() {
    let runtime = Runtime::start(config([("demo", ServerConfig::builtin())]))
        .await
        .unwrap();
    for scope in ["", "../etc", "a b", "line\nbreak", &"x".repeat(201)] {
        let error = runtime
            .call_tool("demo", "echo", None, CallOptions::scope(scope))
            .await
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::InvalidRequest, "{scope:?}");
    }
    let error = runtime
        .call_tool("nope", "echo", None, CallOptions::default())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::UnknownServer);
    let error = runtime
        .call_tool("demo", "echo", Some(json!([1, 2])), CallOptions::default())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidRequest);
    assert!(runtime.sessions().is_empty());
    runtime.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn warm_servers_open_their_default_session_at_start() {
    let mut spec = demo_stdio();
    spec.warm = true;
    let runtime = Runtime::start(config([("demo", spec)])).await.unwrap();
    let probe = runtime.clone();
    eventually(Duration::from_secs(10), "warm session ready", move || {
        probe.is_ready()
    })
    .await;
    let sessions = runtime.sessions();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].scope, "default");
    let call = runtime
        .call_tool("demo", "counter", None, CallOptions::default())
        .await
        .unwrap();
    assert!(call.reused || call.session_age > Duration::ZERO);
    runtime.shutdown(Duration::from_secs(5)).await;
    assert!(!runtime.is_ready(), "not ready while shut down");
}

#[tokio::test]
async fn global_cap_spans_servers() {
    let mut config = config([
        ("a", ServerConfig::builtin()),
        ("b", ServerConfig::builtin()),
    ]);
    config.pool.max_sessions = 2;
    let runtime = Arc::new(Runtime::start(config).await.unwrap());
    counter(&runtime, "a", "x").await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    counter(&runtime, "b", "x").await;
    counter(&runtime, "b", "y").await; // evicts a/x, the least recently used anywhere
    let mut keys: Vec<(String, String)> = runtime
        .sessions()
        .into_iter()
        .map(|s| (s.server, s.scope))
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            ("b".to_owned(), "x".to_owned()),
            ("b".to_owned(), "y".to_owned())
        ]
    );
    runtime.shutdown(Duration::from_secs(5)).await;
}

/// `scopes = "shared"`: 200 scopes use one pooled session of the server, shown
/// as scope `*`, with requests multiplexed on it; closing a scope leaves it open.
#[tokio::test]
async fn a_shared_server_serves_every_scope_from_one_session() {
    let mut demo = support::demo_stdio();
    demo.scopes = mcpwatch::config::ScopeMode::Shared;
    let runtime = Runtime::start(support::config([("shared", demo)]))
        .await
        .unwrap();
    let counts = futures::future::join_all((0..200).map(|i| {
        let runtime = runtime.clone();
        async move {
            let call = runtime
                .call_tool(
                    "shared",
                    "counter",
                    None,
                    CallOptions::scope(format!("scope-{i}")),
                )
                .await
                .unwrap();
            support::text(&call.result).parse::<u32>().unwrap()
        }
    }))
    .await;
    let mut sorted = counts.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        (1..=200).collect::<Vec<u32>>(),
        "one session counted every call"
    );
    let sessions = runtime.sessions();
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert_eq!(sessions[0].scope, "*");
    assert_eq!(
        runtime.close_scope("scope-7").await.unwrap(),
        0,
        "closing a scope leaves it open"
    );
    assert_eq!(runtime.sessions().len(), 1);
    runtime.shutdown(Duration::from_secs(10)).await;
}
