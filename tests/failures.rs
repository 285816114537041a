//! Failure paths of the call and session contracts (DESIGN §3-4), each against
//! real servers: a killed or crashing stdio server, deadlines with cancellation
//! seen by the server, a command that does not exist behind the circuit breaker,
//! grandchildren of `sh -c` servers, and HTTP servers restarted under live
//! sessions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use mcpwatch::config::ServerConfig;
use mcpwatch::{CallOptions, ErrorKind, Runtime};
use serde_json::json;
use support::*;

/// Slack on every timing bound: "not before the deadline, at most 500 ms after".
const SLACK: Duration = Duration::from_millis(500);

async fn call(
    runtime: &Runtime,
    server: &str,
    tool: &str,
    args: serde_json::Value,
    scope: &str,
) -> mcpwatch::Result<String> {
    runtime
        .call_tool(server, tool, Some(args), CallOptions::scope(scope))
        .await
        .map(|c| text(&c.result))
}

async fn counter(runtime: &Runtime, server: &str, scope: &str) -> u64 {
    call(runtime, server, "counter", json!({}), scope)
        .await
        .unwrap()
        .parse()
        .unwrap()
}

fn closed(runtime: &Runtime, server: &str, reason: &str) -> f64 {
    metric(
        runtime,
        "mcp_client_sessions_closed_total",
        &[("mcp_server", server), ("reason", reason)],
    )
}

fn recoveries(runtime: &Runtime, server: &str) -> f64 {
    metric(
        runtime,
        "mcp_client_session_recoveries_total",
        &[("mcp_server", server)],
    )
}

// 1 ------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_call_fails_the_call_fast_and_the_next_call_gets_a_new_process() {
    let runtime = Runtime::start(config([("demo", demo_stdio())]))
        .await
        .unwrap();
    assert_eq!(counter(&runtime, "demo", "k").await, 1);
    let pid = session_pid(&runtime, "demo", "k").unwrap();

    let in_flight = {
        let runtime = runtime.clone();
        tokio::spawn(async move {
            let result = runtime
                .call_tool(
                    "demo",
                    "sleep",
                    Some(json!({"ms": 10_000})),
                    CallOptions::scope("k").with_timeout(Duration::from_secs(20)),
                )
                .await;
            (result, Instant::now())
        })
    };
    eventually(Duration::from_secs(5), "the sleep is in flight", || {
        runtime.sessions().first().is_some_and(|s| s.in_flight == 1)
    })
    .await;
    let killed_at = Instant::now();
    kill9(pid);
    let (result, failed_at) = tokio::time::timeout(Duration::from_secs(5), in_flight)
        .await
        .expect("the in-flight call must not hang after kill -9")
        .unwrap();
    let latency = failed_at - killed_at;
    eprintln!("kill -9 -> error: {latency:?}");
    let error = result.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::TransportClosed, "{error}");
    assert!(
        latency < Duration::from_secs(1),
        "kill -9 -> error took {latency:?}"
    );

    eventually(Duration::from_secs(2), "closed as server_exit", || {
        closed(&runtime, "demo", "server_exit") == 1.0
    })
    .await;
    assert_eq!(
        metric(
            &runtime,
            "mcp_client_sessions_active",
            &[("mcp_server", "demo")]
        ),
        0.0
    );
    assert!(runtime.sessions().is_empty(), "{:?}", runtime.sessions());

    assert_eq!(
        counter(&runtime, "demo", "k").await,
        1,
        "the next call runs on a fresh session"
    );
    let new_pid = session_pid(&runtime, "demo", "k").unwrap();
    assert_ne!(new_pid, pid, "a new server process");
    assert!(alive(new_pid));
    assert_eq!(
        metric(
            &runtime,
            "mcp_client_sessions_opened_total",
            &[("mcp_server", "demo"), ("outcome", "ok")]
        ),
        2.0
    );
    runtime.shutdown(Duration::from_secs(5)).await;
    assert!(my_children().is_empty(), "{:?}", my_children());
}

// 2 ------------------------------------------------------------------------

/// Runs `tool` with a 500 ms deadline on a warm session; asserts `timeout`, not
/// before the deadline and at most SLACK after it.
async fn times_out(runtime: &Runtime, server: &str, tool: &str, args: serde_json::Value) {
    let deadline = Duration::from_millis(500);
    let started = Instant::now();
    let error = runtime
        .call_tool(
            server,
            tool,
            Some(args),
            CallOptions::scope("t").with_timeout(deadline),
        )
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    eprintln!("{server}: {tool} with a {deadline:?} deadline failed after {elapsed:?}");
    assert_eq!(error.kind(), ErrorKind::Timeout, "{error}");
    assert!(
        error.to_string().ends_with("timed out after 500ms"),
        "the error names the call's deadline: {error}"
    );
    assert!(elapsed >= deadline, "{server}: failed early, {elapsed:?}");
    assert!(
        elapsed <= deadline + SLACK,
        "{server}: failed late, {elapsed:?}"
    );
    assert_eq!(
        metric(
            runtime,
            "mcp_client_operation_duration_seconds",
            &[
                ("mcp_server", server),
                ("gen_ai_tool_name", tool),
                ("error_type", "timeout")
            ]
        ),
        1.0,
        "{server}: the timed-out call is in the operation histogram"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_past_its_deadline_times_out_is_cancelled_at_the_demo_server_and_the_session_lives_on()
 {
    let runtime = Runtime::start(config([("demo", demo_stdio())]))
        .await
        .unwrap();
    assert_eq!(counter(&runtime, "demo", "t").await, 1);
    let pid = session_pid(&runtime, "demo", "t").unwrap();

    times_out(&runtime, "demo", "sleep", json!({"ms": 5_000})).await;

    eventually_async(
        Duration::from_secs(3),
        "the demo server saw the cancellation",
        || async {
            let stats = call(&runtime, "demo", "stats", json!({}), "t")
                .await
                .unwrap();
            let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
            stats["cancelled"] == 1
        },
    )
    .await;
    assert_eq!(
        counter(&runtime, "demo", "t").await,
        2,
        "same session, state kept"
    );
    assert_eq!(
        session_pid(&runtime, "demo", "t"),
        Some(pid),
        "same server process"
    );
    assert_eq!(runtime.sessions().len(), 1);
    assert_eq!(closed(&runtime, "demo", "error"), 0.0);
    runtime.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hang_past_its_deadline_is_cancelled_at_the_python_server_over_stdio() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("events.log");
    let runtime = Runtime::start(config([(
        "py",
        python_stdio(&[("BAD_LOG", log.to_str().unwrap())]),
    )]))
    .await
    .unwrap();
    assert_eq!(counter(&runtime, "py", "t").await, 1);
    let pid = session_pid(&runtime, "py", "t").unwrap();

    times_out(&runtime, "py", "hang", json!({})).await;

    eventually(
        Duration::from_secs(3),
        "the Python server logged `hang CANCELLED`",
        || count_lines(&log, "hang CANCELLED") == 1,
    )
    .await;
    assert_eq!(counter(&runtime, "py", "t").await, 2, "same session");
    assert_eq!(session_pid(&runtime, "py", "t"), Some(pid), "same process");
    runtime.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hang_past_its_deadline_is_cancelled_at_the_python_server_over_streamable_http() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("events.log");
    let port = free_port();
    let _server = python_http("http", port, &log, &[]).await;
    let runtime = Runtime::start(config([(
        "py",
        ServerConfig::http(format!("http://127.0.0.1:{port}/mcp")),
    )]))
    .await
    .unwrap();
    assert_eq!(counter(&runtime, "py", "t").await, 1);
    let session_id = runtime.sessions()[0].mcp_session_id.clone();
    assert!(session_id.is_some(), "the Python server issues session ids");

    times_out(&runtime, "py", "hang", json!({})).await;

    eventually(
        Duration::from_secs(3),
        "the Python server logged `hang CANCELLED`",
        || count_lines(&log, "hang CANCELLED") == 1,
    )
    .await;
    assert_eq!(counter(&runtime, "py", "t").await, 2, "same session");
    assert_eq!(runtime.sessions()[0].mcp_session_id, session_id);
    runtime.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sleep_past_its_deadline_is_cancelled_at_the_demo_server_over_streamable_http() {
    let demo = HttpDemo::start().await;
    let runtime = Runtime::start(config([("demo", ServerConfig::http(demo.url.clone()))]))
        .await
        .unwrap();
    assert_eq!(counter(&runtime, "demo", "t").await, 1);

    times_out(&runtime, "demo", "sleep", json!({"ms": 5_000})).await;

    eventually_async(
        Duration::from_secs(3),
        "the demo server saw the cancellation",
        || async {
            let stats = call(&runtime, "demo", "stats", json!({}), "t")
                .await
                .unwrap();
            let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
            stats["cancelled"] == 1
        },
    )
    .await;
    assert_eq!(counter(&runtime, "demo", "t").await, 2, "same session");
    runtime.shutdown(Duration::from_secs(5)).await;
}

// 3 ------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_command_opens_the_breaker_which_fails_fast_without_spawning_then_probes_once() {
    use std::os::unix::fs::PermissionsExt;

    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("server.sh");
    let marker = dir.path().join("spawned");
    let cool_down = Duration::from_secs(2);
    let mut spec = ServerConfig::stdio(script.display().to_string(), Vec::<String>::new());
    spec.retry.max_attempts = 1;
    spec.breaker.failure_threshold = 2;
    spec.breaker.cool_down = cool_down;
    let runtime = Runtime::start(config([("gone", spec)])).await.unwrap();

    for attempt in 1..=2 {
        let error = call(&runtime, "gone", "echo", json!({"message": "x"}), "s")
            .await
            .unwrap_err();
        assert_eq!(
            error.kind(),
            ErrorKind::ConnectFailed,
            "attempt {attempt}: {error}"
        );
    }
    let opened_at = Instant::now();
    assert_eq!(
        metric(
            &runtime,
            "mcp_client_circuit_state",
            &[("mcp_server", "gone")]
        ),
        2.0,
        "open after 2 failures"
    );

    // The command exists from now on, and leaves a mark each time it runs.
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho run >> '{}'\nexec '{}' demo-server --stdio\n",
            marker.display(),
            mcpwatch_bin()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();

    let mut latencies = Vec::new();
    for i in 0..50 {
        let started = Instant::now();
        let error = call(
            &runtime,
            "gone",
            "echo",
            json!({"message": "x"}),
            &format!("s{i}"),
        )
        .await
        .unwrap_err();
        latencies.push(started.elapsed());
        assert_eq!(error.kind(), ErrorKind::BreakerOpen, "call {i}: {error}");
    }
    let in_cool_down = opened_at.elapsed();
    assert!(
        in_cool_down < cool_down,
        "the fast-fail calls ran past the cool-down ({in_cool_down:?}); the check below means nothing"
    );
    assert!(
        !marker.exists(),
        "a spawn was attempted during the cool-down"
    );
    let median_latency = median(latencies.clone());
    eprintln!(
        "breaker fast-fail: median {median_latency:?}, max {:?}",
        latencies.iter().max().unwrap()
    );
    assert!(
        median_latency < Duration::from_millis(5),
        "median fast-fail {median_latency:?}"
    );
    assert_eq!(
        metric(
            &runtime,
            "mcp_client_sessions_opened_total",
            &[("mcp_server", "gone"), ("outcome", "error")]
        ),
        2.0,
        "only the two real attempts tried to open a session"
    );

    // Wait out the cool-down (not an assertion), then fire 10 calls at once:
    // exactly one is the probe; the others still fail fast.
    tokio::time::sleep((opened_at + cool_down + Duration::from_millis(50)) - Instant::now()).await;
    let calls = (0..10).map(|i| {
        let runtime = runtime.clone();
        async move {
            runtime
                .call_tool(
                    "gone",
                    "echo",
                    Some(json!({"message": format!("p{i}")})),
                    CallOptions::scope(format!("p{i}")),
                )
                .await
        }
    });
    let results = futures::future::join_all(calls).await;
    let passed: Vec<usize> = (0..10).filter(|i| results[*i].is_ok()).collect();
    assert_eq!(passed.len(), 1, "exactly one probe: {results:?}");
    for result in &results {
        if let Err(error) = result {
            assert_eq!(error.kind(), ErrorKind::BreakerOpen, "{error}");
        }
    }
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap(),
        "run\n",
        "the probe spawned exactly once"
    );
    assert_eq!(
        metric(
            &runtime,
            "mcp_client_circuit_state",
            &[("mcp_server", "gone")]
        ),
        0.0,
        "the successful probe closed the breaker"
    );
    let probe_scope = format!("p{}", passed[0]);
    assert_eq!(
        call(
            &runtime,
            "gone",
            "echo",
            json!({"message": "again"}),
            &probe_scope
        )
        .await
        .unwrap(),
        "again",
        "calls flow again, on the probe's session"
    );
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "run\n");
    runtime.shutdown(Duration::from_secs(5)).await;
}

// 4 ------------------------------------------------------------------------

fn sh(script: String) -> ServerConfig {
    let mut spec = ServerConfig::stdio("sh", ["-c".to_owned(), script]);
    spec.connect_timeout = Duration::from_secs(20);
    spec
}

/// The pid of `(server, scope)`'s session once its group has at least `members` processes.
async fn group_of(runtime: &Runtime, server: &str, scope: &str, members: usize) -> u32 {
    assert_eq!(counter(runtime, server, scope).await, 1);
    let pid = session_pid(runtime, server, scope).unwrap();
    eventually(
        Duration::from_secs(5),
        "the server's grandchild is running",
        || group_members(pid).len() >= members,
    )
    .await;
    pid
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_process_of_an_sh_c_servers_group_survives_close_scope_or_shutdown() {
    let demo = format!("sleep 300 & exec '{}' demo-server --stdio", mcpwatch_bin());
    let mut py = sh(format!(
        "'{}' '{}' stdio",
        python().display(),
        bad_server_py().display()
    ));
    py.env.insert(
        "BAD_SPAWN_GRANDCHILD".to_owned(),
        mcpwatch::config::Secret::new("1"),
    );
    let runtime = Runtime::start(config([("shdemo", sh(demo)), ("shpy", py)]))
        .await
        .unwrap();

    // close_scope
    let demo_group = group_of(&runtime, "shdemo", "closed", 2).await;
    let py_group = group_of(&runtime, "shpy", "closed", 2).await;
    eprintln!(
        "before close_scope: {:?} {:?}",
        group_members(demo_group),
        group_members(py_group)
    );
    assert_eq!(runtime.close_scope("closed").await.unwrap(), 2);
    for pgid in [demo_group, py_group] {
        eventually(
            Duration::from_secs(2),
            "the group is gone after close_scope",
            || group_members(pgid).is_empty(),
        )
        .await;
    }

    // shutdown
    let demo_group = group_of(&runtime, "shdemo", "shut", 2).await;
    let py_group = group_of(&runtime, "shpy", "shut", 2).await;
    let report = runtime.shutdown(Duration::from_secs(5)).await;
    assert_eq!(report.sessions_closed, 2);
    for pgid in [demo_group, py_group] {
        eventually(
            Duration::from_secs(2),
            "the group is gone after shutdown",
            || group_members(pgid).is_empty(),
        )
        .await;
    }
    assert!(my_children().is_empty(), "{:?}", my_children());
}

// 5 ------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_everything_restarted_under_a_live_http_session_fails_within_the_deadline_then_recovers()
 {
    let port = free_port();
    let mut server = everything_http("streamableHttp", port).await;
    let runtime = Runtime::start(config([(
        "every",
        ServerConfig::http(format!("http://127.0.0.1:{port}/mcp")),
    )]))
    .await
    .unwrap();
    assert_eq!(
        call(&runtime, "every", "echo", json!({"message": "one"}), "r")
            .await
            .unwrap(),
        "Echo: one"
    );
    let old_id = runtime.sessions()[0].mcp_session_id.clone().unwrap();

    server.kill();
    let _server = everything_http("streamableHttp", port).await;

    let deadline = Duration::from_secs(5);
    let started = Instant::now();
    let first = runtime
        .call_tool(
            "every",
            "echo",
            Some(json!({"message": "two"})),
            CallOptions::scope("r").with_timeout(deadline),
        )
        .await;
    let elapsed = started.elapsed();
    eprintln!(
        "first call after the restart: {:?} in {elapsed:?}",
        first.as_ref().map(|c| text(&c.result))
    );
    assert!(elapsed <= deadline + SLACK, "took {elapsed:?}");
    match &first {
        Ok(call) => assert_eq!(text(&call.result), "Echo: two"),
        Err(error) => assert!(
            matches!(error.kind(), ErrorKind::Timeout | ErrorKind::SessionExpired),
            "{error}"
        ),
    }
    let detected = first.is_ok()
        || first
            .as_ref()
            .is_err_and(|e| e.kind() == ErrorKind::SessionExpired);

    assert_eq!(
        call(&runtime, "every", "echo", json!({"message": "three"}), "r")
            .await
            .unwrap(),
        "Echo: three",
        "the next call recovers"
    );
    let new_id = runtime.sessions()[0].mcp_session_id.clone().unwrap();
    assert_ne!(new_id, old_id, "a new MCP session");
    if detected {
        assert_eq!(recoveries(&runtime, "every"), 1.0);
        eventually(Duration::from_secs(2), "the stale session closed", || {
            closed(&runtime, "every", "error") == 1.0
        })
        .await;
    }
    runtime.shutdown(Duration::from_secs(5)).await;
}

// 6 ------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_python_http_server_is_recovered_from_and_a_non_idempotent_tool_runs_once() {
    let dir = tempfile::tempdir().unwrap();
    let (old_log, new_log) = (dir.path().join("old.log"), dir.path().join("new.log"));
    let port = free_port();
    let mut server = python_http("http", port, &old_log, &[]).await;
    let runtime = Runtime::start(config([(
        "py",
        ServerConfig::http(format!("http://127.0.0.1:{port}/mcp")),
    )]))
    .await
    .unwrap();
    assert_eq!(
        call(&runtime, "py", "record", json!({"tag": "before"}), "r")
            .await
            .unwrap(),
        "before"
    );
    assert_eq!(count_lines(&old_log, "record before"), 1);
    let old_id = runtime.sessions()[0].mcp_session_id.clone().unwrap();

    server.kill();
    let _server = python_http("http", port, &new_log, &[]).await;

    let result = runtime
        .call_tool(
            "py",
            "record",
            Some(json!({"tag": "after"})),
            CallOptions::scope("r").with_timeout(Duration::from_secs(10)),
        )
        .await;
    eprintln!(
        "record after the restart: {:?}",
        result.as_ref().map(|c| text(&c.result))
    );
    let runs = count_lines(&new_log, "record after");
    match &result {
        Ok(call) => {
            assert_eq!(text(&call.result), "after");
            assert_eq!(runs, 1, "ran exactly once");
        }
        Err(error) => {
            assert!(
                matches!(
                    error.kind(),
                    ErrorKind::SessionExpired | ErrorKind::TransportClosed | ErrorKind::Timeout
                ),
                "{error}"
            );
            assert!(runs <= 1, "ran {runs} times");
        }
    }
    assert_eq!(
        metric(
            &runtime,
            "mcp_client_session_recoveries_total",
            &[("mcp_server", "py"), ("error_type", "session_expired")]
        ),
        1.0,
        "the lost session is counted once"
    );
    assert_eq!(
        call(&runtime, "py", "record", json!({"tag": "next"}), "r")
            .await
            .unwrap(),
        "next"
    );
    assert_eq!(count_lines(&new_log, "record next"), 1);
    assert_eq!(
        count_lines(&new_log, "record after"),
        runs,
        "never re-run later"
    );
    assert_ne!(
        runtime.sessions()[0].mcp_session_id.clone().unwrap(),
        old_id
    );
    runtime.shutdown(Duration::from_secs(5)).await;
}

// 7 ------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashing_python_stdio_server_fails_the_call_and_the_next_call_gets_a_new_process() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("events.log");
    let runtime = Runtime::start(config([(
        "py",
        python_stdio(&[("BAD_LOG", log.to_str().unwrap())]),
    )]))
    .await
    .unwrap();
    assert_eq!(counter(&runtime, "py", "c").await, 1);
    let pid = session_pid(&runtime, "py", "c").unwrap();

    let started = Instant::now();
    let error = call(&runtime, "py", "crash", json!({"code": 3}), "c")
        .await
        .unwrap_err();
    eprintln!("crash -> error in {:?}: {error}", started.elapsed());
    assert_eq!(error.kind(), ErrorKind::TransportClosed, "{error}");
    assert!(
        error.to_string().contains("exited with code 3"),
        "the error says how the server ended: {error}"
    );
    assert_eq!(count_lines(&log, "crash 3"), 1);
    eventually(Duration::from_secs(2), "closed as server_exit", || {
        closed(&runtime, "py", "server_exit") == 1.0
    })
    .await;

    assert_eq!(counter(&runtime, "py", "c").await, 1, "a fresh session");
    let new_pid = session_pid(&runtime, "py", "c").unwrap();
    assert_ne!(new_pid, pid);
    assert!(!alive(pid));
    runtime.shutdown(Duration::from_secs(5)).await;
    assert!(my_children().is_empty(), "{:?}", my_children());
}

/// A call whose future is dropped (an outer timeout, a caller gone) is recorded
/// as `cancelled`, and the in-flight gauge comes back down: the request's record
/// settles on drop.
#[tokio::test]
async fn a_dropped_call_is_recorded_as_cancelled() {
    let runtime = Runtime::start(mcpwatch::Config::demo()).await.unwrap();
    let args = serde_json::json!({"ms": 5_000});
    let call = runtime.call_tool("demo", "sleep", Some(args), CallOptions::scope("drop"));
    let dropped = tokio::time::timeout(Duration::from_millis(300), call).await;
    assert!(dropped.is_err());
    let cancelled = [
        ("mcp_server", "demo"),
        ("mcp_method_name", "tools/call"),
        ("gen_ai_tool_name", "sleep"),
        ("error_type", "cancelled"),
    ];
    let name = "mcp_client_operation_duration_seconds";
    assert_eq!(metric(&runtime, name, &cancelled), 1.0);
    let inflight = [("mcp_server", "demo")];
    assert_eq!(
        metric(&runtime, "mcp_client_inflight_requests", &inflight),
        0.0
    );
    runtime.shutdown(Duration::from_secs(5)).await;
}

/// A call's cancel token cancels exactly that request at the server: the caller
/// gets `cancelled` at once, the server receives `notifications/cancelled`, and
/// the session lives on.
#[tokio::test]
async fn a_cancel_token_cancels_the_request_at_the_server() {
    let runtime = Runtime::start(config([("demo", demo_stdio())]))
        .await
        .unwrap();
    assert_eq!(counter(&runtime, "demo", "c").await, 1);
    let token = tokio_util::sync::CancellationToken::new();
    let options = CallOptions::scope("c").cancel_on(token.clone());
    let started = Instant::now();
    let call_sleep = runtime.call_tool("demo", "sleep", Some(json!({"ms": 5_000})), options);
    let cancel = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        token.cancel();
    };
    let (outcome, ()) = tokio::join!(call_sleep, cancel);
    assert_eq!(outcome.unwrap_err().kind(), ErrorKind::Cancelled);
    assert!(started.elapsed() < Duration::from_secs(2));
    eventually_async(
        Duration::from_secs(3),
        "the server saw the cancellation",
        || async {
            let stats = call(&runtime, "demo", "stats", json!({}), "c")
                .await
                .unwrap();
            let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
            stats["cancelled"] == 1
        },
    )
    .await;
    assert_eq!(counter(&runtime, "demo", "c").await, 2, "the same session");
    runtime.shutdown(Duration::from_secs(5)).await;
}
