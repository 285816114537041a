//! Fault injection (issue 7, part 1): the faults that tests/failures.rs and
//! tests/shutdown.rs do not already cover, against servers of our own: a loopback
//! TCP proxy (`support::proxy`) adding latency, black-holing and resetting
//! connections and cutting responses; a hand-written streamable-HTTP server
//! (`support::fake_mcp`) answering 429/500/503, oversized results, streams cut or
//! stalled mid-response; and the Python `mcp` server (`tests/servers/bad_server.py`)
//! crashing during `initialize` and during close, writing garbage or half a
//! message on stdout, and sending oversized results over every transport.
//!
//! Every test asserts the typed outcome, that nobody waited past the deadline
//! (+500 ms), and that the session gauge, this process's file descriptors and its
//! child processes are back at their baseline afterwards.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use mcpwatch::config::ServerConfig;
use mcpwatch::{CallOptions, Config, ErrorKind, Runtime};
use serde_json::json;
use support::fake_mcp::{DeleteMode, FakeMcp, InitMode};
use support::proxy::{Fault, Proxy};
use support::*;

/// Slack on every timing bound: "not before the deadline, at most 500 ms after".
const SLACK: Duration = Duration::from_millis(500);

/// What this process had before the test started its servers.
struct Baseline {
    fds: usize,
    children: Vec<u32>,
}

impl Baseline {
    fn take() -> Baseline {
        let mut children = my_children();
        children.sort_unstable();
        Baseline {
            fds: open_fds(),
            children,
        }
    }

    /// Shuts the runtime down, drops it and every fixture, then waits until the
    /// fds and children of this process are exactly what they were.
    async fn back_to(self, runtime: Runtime, fixtures: Vec<Box<dyn std::any::Any>>) {
        assert_eq!(
            metric(&runtime, "mcp_client_sessions_active", &[]),
            0.0,
            "the session gauge is back at 0 before shutdown: {:?}",
            runtime.sessions()
        );
        let report = runtime.shutdown(Duration::from_secs(5)).await;
        assert!(!report.timed_out, "{report:?}");
        assert_eq!(runtime.internal_map_sizes(), (0, 0, 0));
        drop(runtime);
        drop(fixtures);
        let expected = self.fds;
        eventually(
            Duration::from_secs(5),
            &format!("fds back to {expected}"),
            || open_fds() == expected,
        )
        .await;
        eventually(Duration::from_secs(5), "children back to baseline", || {
            let mut now = my_children();
            now.sort_unstable();
            now == self.children
        })
        .await;
    }
}

fn gauge(runtime: &Runtime) -> f64 {
    metric(runtime, "mcp_client_sessions_active", &[])
}

/// Asserts the call took at most `deadline` + SLACK; returns the elapsed time.
fn on_time(started: Instant, deadline: Duration, what: &str) -> Duration {
    let elapsed = started.elapsed();
    eprintln!("{what}: {elapsed:?} (deadline {deadline:?})");
    assert!(
        elapsed <= deadline + SLACK,
        "{what}: took {elapsed:?}, deadline {deadline:?}"
    );
    elapsed
}

async fn call(
    runtime: &Runtime,
    server: &str,
    tool: &str,
    args: serde_json::Value,
    scope: &str,
    deadline: Duration,
) -> mcpwatch::Result<String> {
    runtime
        .call_tool(
            server,
            tool,
            Some(args),
            CallOptions::scope(scope).with_timeout(deadline),
        )
        .await
        .map(|c| text(&c.result))
}

async fn echo(runtime: &Runtime, server: &str, scope: &str, message: &str) -> String {
    call(
        runtime,
        server,
        "echo",
        json!({"message": message}),
        scope,
        Duration::from_secs(10),
    )
    .await
    .unwrap()
}

/// The error of a call that must fail (an answer, maybe megabytes, is shown by its size only).
fn must_fail(outcome: mcpwatch::Result<String>, what: &str) -> mcpwatch::Error {
    match outcome {
        Ok(answer) => panic!("{what}: answered {} bytes instead of failing", answer.len()),
        Err(error) => error,
    }
}

fn http(url: String) -> ServerConfig {
    let mut spec = ServerConfig::http(url);
    spec.connect_timeout = Duration::from_secs(2);
    spec
}

fn one(name: &'static str, spec: ServerConfig) -> Config {
    config([(name, spec)])
}

// 1. The TCP proxy: latency, black hole, reset, cut -----------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_below_the_deadline_only_slows_calls_and_above_it_is_a_timeout_on_time() {
    let baseline = Baseline::take();
    let demo = HttpDemo::start().await;
    let proxy = Proxy::start(demo.addr).await;
    let runtime = Runtime::start(one("demo", http(proxy.url("/mcp"))))
        .await
        .unwrap();
    assert_eq!(echo(&runtime, "demo", "l", "warm").await, "warm");

    proxy.set(Fault::Latency(Duration::from_millis(100)));
    let started = Instant::now();
    assert_eq!(echo(&runtime, "demo", "l", "slow-1").await, "slow-1");
    let slow = started.elapsed();
    eprintln!("echo through 100 ms of latency per chunk: {slow:?}");
    assert!(slow >= Duration::from_millis(200), "{slow:?}");

    proxy.set(Fault::Latency(Duration::from_secs(3)));
    let deadline = Duration::from_millis(500);
    let started = Instant::now();
    let error = call(
        &runtime,
        "demo",
        "echo",
        json!({"message": "late"}),
        "l",
        deadline,
    )
    .await
    .unwrap_err();
    let elapsed = on_time(started, deadline, "echo through 3 s of latency");
    assert_eq!(error.kind(), ErrorKind::Timeout, "{error}");
    assert!(
        elapsed >= deadline,
        "failed before the deadline: {elapsed:?}"
    );

    proxy.set(Fault::Pass);
    proxy.reset_all();
    assert_eq!(echo(&runtime, "demo", "l", "after").await, "after");
    runtime.close_scope("l").await.unwrap();
    assert_eq!(gauge(&runtime), 0.0);
    baseline
        .back_to(runtime, vec![Box::new(proxy), Box::new(demo)])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_hole_is_a_timeout_on_time_for_the_open_and_for_a_call() {
    let baseline = Baseline::take();
    let demo = HttpDemo::start().await;
    let proxy = Proxy::start(demo.addr).await;
    let runtime = Runtime::start(one("demo", http(proxy.url("/mcp"))))
        .await
        .unwrap();

    // The open: bounded by connect_timeout (2 s), well inside the call's 10 s.
    proxy.set(Fault::Blackhole);
    let started = Instant::now();
    let error = call(
        &runtime,
        "demo",
        "echo",
        json!({"message": "x"}),
        "b",
        Duration::from_secs(10),
    )
    .await
    .unwrap_err();
    on_time(started, Duration::from_secs(2), "open into a black hole");
    assert_eq!(error.kind(), ErrorKind::Timeout, "{error}");
    assert!(error.to_string().contains("initialize"), "{error}");
    assert_eq!(gauge(&runtime), 0.0);
    assert!(runtime.sessions().is_empty());

    // A call on a live session.
    proxy.set(Fault::Pass);
    assert_eq!(echo(&runtime, "demo", "b", "open").await, "open");
    proxy.set(Fault::Blackhole);
    let deadline = Duration::from_millis(500);
    let started = Instant::now();
    let error = call(
        &runtime,
        "demo",
        "echo",
        json!({"message": "x"}),
        "b",
        deadline,
    )
    .await
    .unwrap_err();
    on_time(started, deadline, "call into a black hole");
    assert_eq!(error.kind(), ErrorKind::Timeout, "{error}");

    proxy.set(Fault::Pass);
    proxy.reset_all();
    assert_eq!(echo(&runtime, "demo", "b", "healed").await, "healed");
    runtime.close_scope("b").await.unwrap();
    assert_eq!(gauge(&runtime), 0.0);
    baseline
        .back_to(runtime, vec![Box::new(proxy), Box::new(demo)])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_connections_fail_fast_with_a_typed_error_and_the_next_call_recovers() {
    let baseline = Baseline::take();
    let demo = HttpDemo::start().await;
    let proxy = Proxy::start(demo.addr).await;
    // This test is about resets, not the breaker: the retried opens below may
    // add up to the default threshold, which would (correctly) open it.
    let mut spec = http(proxy.url("/mcp"));
    spec.breaker.failure_threshold = 1000;
    let runtime = Runtime::start(one("demo", spec)).await.unwrap();
    assert_eq!(echo(&runtime, "demo", "r", "one").await, "one");

    // Every connection, the live keep-alive one included, is reset.
    proxy.set(Fault::Reset);
    proxy.reset_all();
    let deadline = Duration::from_secs(3);
    let started = Instant::now();
    let error = call(
        &runtime,
        "demo",
        "echo",
        json!({"message": "x"}),
        "r",
        deadline,
    )
    .await
    .unwrap_err();
    on_time(started, deadline, "call while every connection is reset");
    assert!(
        matches!(
            error.kind(),
            ErrorKind::TransportClosed | ErrorKind::ConnectFailed | ErrorKind::InitializeFailed
        ),
        "{error}"
    );

    // A fresh open while resets go on fails the same way, within its deadline.
    runtime.close_scope("r").await.unwrap();
    let started = Instant::now();
    let error = call(
        &runtime,
        "demo",
        "echo",
        json!({"message": "x"}),
        "r2",
        deadline,
    )
    .await
    .unwrap_err();
    on_time(started, deadline, "open while every connection is reset");
    assert!(
        matches!(
            error.kind(),
            ErrorKind::InitializeFailed | ErrorKind::ConnectFailed | ErrorKind::TransportClosed
        ),
        "{error}"
    );
    assert_eq!(gauge(&runtime), 0.0);

    proxy.set(Fault::Pass);
    assert_eq!(echo(&runtime, "demo", "r", "two").await, "two");
    runtime.close_scope("r").await.unwrap();
    assert_eq!(gauge(&runtime), 0.0);
    baseline
        .back_to(runtime, vec![Box::new(proxy), Box::new(demo)])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_cut_by_the_network_is_a_typed_error_within_the_deadline() {
    let baseline = Baseline::take();
    let demo = HttpDemo::start().await;
    let proxy = Proxy::start(demo.addr).await;
    let mut spec = http(proxy.url("/mcp"));
    spec.retry.max_attempts = 1;
    let runtime = Runtime::start(one("demo", spec)).await.unwrap();
    assert_eq!(echo(&runtime, "demo", "c", "one").await, "one");

    // New connections get 40 bytes of the answer (half a status line and headers), then RST.
    proxy.set(Fault::CutResponseAfter(40));
    proxy.reset_all();
    let deadline = Duration::from_secs(3);
    let started = Instant::now();
    let error = call(
        &runtime,
        "demo",
        "echo",
        json!({"message": "x"}),
        "c",
        deadline,
    )
    .await
    .unwrap_err();
    on_time(started, deadline, "answer cut after 40 bytes");
    assert!(
        matches!(
            error.kind(),
            ErrorKind::TransportClosed | ErrorKind::ConnectFailed | ErrorKind::Timeout
        ),
        "{error}"
    );

    proxy.set(Fault::Pass);
    assert_eq!(echo(&runtime, "demo", "c", "two").await, "two");
    runtime.close_scope("c").await.unwrap();
    assert_eq!(gauge(&runtime), 0.0);
    baseline
        .back_to(runtime, vec![Box::new(proxy), Box::new(demo)])
        .await;
}

// 2. HTTP status answers ----------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_429_retry_after_is_honoured_within_the_deadline_and_passed_on_beyond_it() {
    let baseline = Baseline::take();
    let fake = FakeMcp::start().await;
    let runtime = Runtime::start(one("fake", http(fake.url.clone())))
        .await
        .unwrap();
    assert_eq!(echo(&runtime, "fake", "s", "up").await, "up");

    // Retry-After: 1 inside a 5 s deadline: the call waits 1 s, then succeeds.
    let deadline = Duration::from_secs(5);
    let started = Instant::now();
    let answer = call(
        &runtime,
        "fake",
        "status",
        json!({"code": 429, "times": 1, "key": "a", "retry_after": "1"}),
        "s",
        deadline,
    )
    .await
    .unwrap();
    let elapsed = on_time(started, deadline, "429 with Retry-After: 1");
    assert_eq!(answer, "ok after 1");
    assert!(
        elapsed >= Duration::from_secs(1),
        "Retry-After was not honoured: retried after {elapsed:?}"
    );
    assert_eq!(fake.status_calls("a"), 2);
    assert_eq!(
        metric(
            &runtime,
            "mcp_client_retries_total",
            &[("mcp_server", "fake"), ("error_type", "rate_limited")]
        ),
        1.0
    );

    // Retry-After: 30 does not fit a 2 s deadline: rate_limited at once, Retry-After passed on.
    let deadline = Duration::from_secs(2);
    let started = Instant::now();
    let error = call(
        &runtime,
        "fake",
        "status",
        json!({"code": 429, "times": 5, "key": "b", "retry_after": "30"}),
        "s",
        deadline,
    )
    .await
    .unwrap_err();
    let elapsed = on_time(started, deadline, "429 with Retry-After: 30");
    assert!(
        elapsed < Duration::from_secs(1),
        "waited for nothing: {elapsed:?}"
    );
    assert_eq!(error.kind(), ErrorKind::RateLimited, "{error}");
    assert_eq!(error.retry_after(), Some("30"));
    assert_eq!(
        fake.status_calls("b"),
        1,
        "no retry that could not finish in time"
    );

    // The session survived both.
    assert_eq!(echo(&runtime, "fake", "s", "still").await, "still");
    assert_eq!(fake.sessions(), 1);
    runtime.close_scope("s").await.unwrap();
    assert_eq!(gauge(&runtime), 0.0);
    baseline.back_to(runtime, vec![Box::new(fake)]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_500_and_503_are_http_status_errors_retried_only_for_idempotent_tools() {
    let baseline = Baseline::take();
    let fake = FakeMcp::start().await;
    let mut spec = http(fake.url.clone());
    spec.idempotent_tools = vec!["status".into()];
    let mut plain = http(fake.url.clone());
    plain.retry.max_attempts = 3;
    let runtime = Runtime::start(config([("idem", spec), ("plain", plain)]))
        .await
        .unwrap();
    let deadline = Duration::from_secs(5);

    for (code, key) in [(500u16, "p500"), (503, "p503")] {
        let started = Instant::now();
        let error = call(
            &runtime,
            "plain",
            "status",
            json!({"code": code, "times": 1, "key": key, "retry_after": "1"}),
            "s",
            deadline,
        )
        .await
        .unwrap_err();
        on_time(started, deadline, &format!("HTTP {code}, not idempotent"));
        assert_eq!(error.kind(), ErrorKind::HttpStatus, "{error}");
        assert!(error.to_string().contains(&code.to_string()), "{error}");
        assert_eq!(error.retry_after(), Some("1"), "Retry-After is passed on");
        assert_eq!(
            fake.status_calls(key),
            1,
            "a tool that may not run twice ran once"
        );
    }

    // An idempotent tool is retried, each time after the server's Retry-After.
    let started = Instant::now();
    let answer = call(
        &runtime,
        "idem",
        "status",
        json!({"code": 503, "times": 2, "key": "i503", "retry_after": "1"}),
        "s",
        deadline,
    )
    .await
    .unwrap();
    let elapsed = on_time(
        started,
        deadline,
        "HTTP 503 twice with Retry-After: 1, idempotent",
    );
    assert_eq!(answer, "ok after 2");
    assert_eq!(fake.status_calls("i503"), 3);
    assert!(
        elapsed >= Duration::from_secs(2),
        "Retry-After was not honoured: {elapsed:?}"
    );

    runtime.close_scope("s").await.unwrap();
    assert_eq!(gauge(&runtime), 0.0);
    baseline.back_to(runtime, vec![Box::new(fake)]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_answers_429_with_retry_after_and_502_for_upstream_5xx() {
    let fake = FakeMcp::start().await;
    let config = format!(
        "[servers.fake]\ntransport = \"http\"\nurl = \"{}\"\nretry = {{ max_attempts = 1 }}\n",
        fake.url
    );
    let agent = Agent::start(&config, &[]).await;
    let response = agent
        .http
        .post(format!("{}/v1/tools/call", agent.api))
        .json(&json!({"server": "fake", "tool": "status", "scope": "a",
            "arguments": {"code": 429, "times": 1, "key": "a", "retry_after": "7"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "7");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["type"], "rate_limited");

    let response = agent
        .http
        .post(format!("{}/v1/tools/call", agent.api))
        .json(&json!({"server": "fake", "tool": "status", "scope": "a",
            "arguments": {"code": 503, "times": 1, "key": "b", "retry_after": "9"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
    assert_eq!(
        response.headers()["retry-after"],
        "9",
        "passed on with the 502"
    );
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["type"], "http_status", "{body}");
}

// 3. Streams closed or stalled mid-response ------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_responses_closed_mid_way_fail_within_the_deadline() {
    let baseline = Baseline::take();
    let fake = FakeMcp::start().await;
    let mut spec = http(fake.url.clone());
    spec.retry.max_attempts = 1;
    let runtime = Runtime::start(one("fake", spec)).await.unwrap();
    assert_eq!(echo(&runtime, "fake", "m", "up").await, "up");
    let deadline = Duration::from_secs(3);

    for tool in ["cut_json", "cut_sse"] {
        let started = Instant::now();
        let outcome = call(&runtime, "fake", tool, json!({}), "m", deadline).await;
        on_time(started, deadline, tool);
        let error = outcome.unwrap_err();
        eprintln!("{tool}: {error}");
        assert!(
            matches!(
                error.kind(),
                ErrorKind::TransportClosed | ErrorKind::ProtocolError | ErrorKind::Timeout
            ),
            "{tool}: {error}"
        );
        // The next call works (on this session or a fresh one).
        assert_eq!(echo(&runtime, "fake", "m", "next").await, "next");
    }

    runtime.close_scope("m").await.unwrap();
    assert_eq!(gauge(&runtime), 0.0);
    baseline.back_to(runtime, vec![Box::new(fake)]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_sse_response_is_a_timeout_on_time_and_the_session_lives_on() {
    let baseline = Baseline::take();
    let fake = FakeMcp::start().await;
    let runtime = Runtime::start(one("fake", http(fake.url.clone())))
        .await
        .unwrap();
    assert_eq!(echo(&runtime, "fake", "st", "up").await, "up");
    let deadline = Duration::from_millis(800);
    for tool in ["stall_sse", "hang"] {
        let started = Instant::now();
        let error = call(&runtime, "fake", tool, json!({}), "st", deadline)
            .await
            .unwrap_err();
        let elapsed = on_time(started, deadline, tool);
        assert!(elapsed >= deadline, "{tool}: early, {elapsed:?}");
        assert_eq!(error.kind(), ErrorKind::Timeout, "{tool}: {error}");
        assert_eq!(echo(&runtime, "fake", "st", "alive").await, "alive");
    }
    assert_eq!(fake.sessions(), 1, "the session survived both");
    runtime.close_scope("st").await.unwrap();
    assert_eq!(gauge(&runtime), 0.0);
    baseline.back_to(runtime, vec![Box::new(fake)]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_legacy_sse_stream_times_out_on_time_before_and_after_the_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("events.log");
    let baseline = Baseline::take();
    let port = free_port();
    let server = python_http("sse", port, &log, &[]).await;
    let proxy = Proxy::start(([127, 0, 0, 1], port).into()).await;
    let mut spec = ServerConfig::sse(proxy.url("/sse"));
    spec.connect_timeout = Duration::from_secs(2);
    // One attempt: a failed open (connect_failed) is otherwise retried within the call's deadline.
    spec.retry.max_attempts = 1;
    let runtime = Runtime::start(one("py", spec)).await.unwrap();

    // Stalled before the endpoint event: the open ends at connect_timeout.
    proxy.set(Fault::Blackhole);
    let started = Instant::now();
    let error = call(
        &runtime,
        "py",
        "echo",
        json!({"message": "x"}),
        "s",
        Duration::from_secs(10),
    )
    .await
    .unwrap_err();
    on_time(
        started,
        Duration::from_secs(2),
        "SSE stream stalled before the endpoint",
    );
    assert!(
        matches!(error.kind(), ErrorKind::ConnectFailed | ErrorKind::Timeout),
        "{error}"
    );
    assert_eq!(gauge(&runtime), 0.0);

    // Stalled under a live session: the call ends at its deadline.
    proxy.set(Fault::Pass);
    assert_eq!(echo(&runtime, "py", "s", "open").await, "open");
    proxy.set(Fault::Blackhole);
    let deadline = Duration::from_millis(800);
    let started = Instant::now();
    let error = call(
        &runtime,
        "py",
        "echo",
        json!({"message": "x"}),
        "s",
        deadline,
    )
    .await
    .unwrap_err();
    on_time(started, deadline, "SSE stream stalled under a live session");
    assert_eq!(error.kind(), ErrorKind::Timeout, "{error}");

    proxy.set(Fault::Pass);
    proxy.reset_all();
    // Healed: the session recovers. With retries off (above), the first open may
    // still pick a keep-alive connection the reset just killed (`connect_failed`,
    // seen once in CI); a second call must then succeed.
    let mut healed = call(
        &runtime,
        "py",
        "echo",
        json!({"message": "healed"}),
        "s",
        Duration::from_secs(10),
    )
    .await;
    if let Err(error) = &healed {
        assert_eq!(error.kind(), ErrorKind::ConnectFailed, "{error}");
        healed = call(
            &runtime,
            "py",
            "echo",
            json!({"message": "healed"}),
            "s",
            Duration::from_secs(10),
        )
        .await;
    }
    assert_eq!(healed.unwrap(), "healed");
    runtime.close_scope("s").await.unwrap();
    assert_eq!(gauge(&runtime), 0.0);
    baseline
        .back_to(runtime, vec![Box::new(proxy), Box::new(server)])
        .await;
}

// 4. Responses larger than max_response_bytes ----------------------------------------

const LIMIT: usize = 64 * 1024;
const OVER: usize = 256 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_http_response_is_response_too_large_json_or_sse() {
    let baseline = Baseline::take();
    let fake = FakeMcp::start().await;
    let mut spec = http(fake.url.clone());
    spec.max_response_bytes = LIMIT;
    let runtime = Runtime::start(one("fake", spec)).await.unwrap();
    let deadline = Duration::from_secs(3);

    // Just under the limit passes.
    let fits = call(
        &runtime,
        "fake",
        "big",
        json!({"size": LIMIT / 2}),
        "o",
        deadline,
    )
    .await
    .unwrap();
    assert_eq!(fits.len(), LIMIT / 2);

    for sse in [false, true] {
        let started = Instant::now();
        let outcome = call(
            &runtime,
            "fake",
            "big",
            json!({"size": OVER, "sse": sse}),
            "o",
            deadline,
        )
        .await;
        on_time(started, deadline, &format!("oversized answer, sse={sse}"));
        let error = must_fail(outcome, "an answer over max_response_bytes");
        eprintln!("sse={sse}: {error}");
        assert_eq!(
            error.kind(),
            ErrorKind::ResponseTooLarge,
            "sse={sse}: {error}"
        );
        assert!(error.to_string().contains(&LIMIT.to_string()), "{error}");
        assert_eq!(echo(&runtime, "fake", "o", "after").await, "after");
    }
    assert_eq!(
        fake.sessions(),
        1,
        "an oversized answer does not cost the session"
    );

    runtime.close_scope("o").await.unwrap();
    assert_eq!(gauge(&runtime), 0.0);
    baseline.back_to(runtime, vec![Box::new(fake)]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_stdio_line_is_dropped_unbuffered_and_the_call_times_out_on_time() {
    let baseline = Baseline::take();
    let mut spec = python_stdio(&[]);
    spec.max_response_bytes = LIMIT;
    let runtime = Runtime::start(one("py", spec)).await.unwrap();
    assert_eq!(echo(&runtime, "py", "o", "up").await, "up");
    let pid = session_pid(&runtime, "py", "o").unwrap();
    let rss_before = rss_kib(std::process::id());

    // 8 MiB on one line against a 64 KiB limit: read and discarded in chunks, never buffered.
    let deadline = Duration::from_secs(3);
    let started = Instant::now();
    let outcome = call(
        &runtime,
        "py",
        "big",
        json!({"size": 8 * 1024 * 1024}),
        "o",
        deadline,
    )
    .await;
    let error = must_fail(outcome, "an 8 MiB line over stdio");
    let elapsed = on_time(started, deadline, "8 MiB line over a 64 KiB limit (stdio)");
    assert!(elapsed >= deadline);
    assert_eq!(error.kind(), ErrorKind::Timeout, "{error}");
    let grown = rss_kib(std::process::id()).saturating_sub(rss_before);
    eprintln!("RSS grew by {grown} KiB");
    assert!(
        grown < 6 * 1024,
        "the oversized line was buffered: RSS +{grown} KiB"
    );

    // The line was skipped whole: the same session answers the next call.
    assert_eq!(echo(&runtime, "py", "o", "after").await, "after");
    assert_eq!(session_pid(&runtime, "py", "o"), Some(pid));
    runtime.close_scope("o").await.unwrap();
    assert_eq!(gauge(&runtime), 0.0);
    baseline.back_to(runtime, vec![]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_legacy_sse_event_ends_the_stream_fast_and_the_next_call_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("events.log");
    let baseline = Baseline::take();
    let port = free_port();
    let server = python_http("sse", port, &log, &[]).await;
    let mut spec = ServerConfig::sse(format!("http://127.0.0.1:{port}/sse"));
    spec.max_response_bytes = LIMIT;
    spec.retry.max_attempts = 1;
    let runtime = Runtime::start(one("py", spec)).await.unwrap();
    assert_eq!(echo(&runtime, "py", "o", "up").await, "up");

    let deadline = Duration::from_secs(5);
    let started = Instant::now();
    let outcome = call(&runtime, "py", "big", json!({"size": OVER}), "o", deadline).await;
    let error = must_fail(outcome, "an oversized legacy SSE event");
    let elapsed = on_time(started, deadline, "oversized legacy SSE event");
    assert!(elapsed < Duration::from_secs(2), "not fast: {elapsed:?}");
    assert!(
        matches!(
            error.kind(),
            ErrorKind::TransportClosed | ErrorKind::ResponseTooLarge
        ),
        "{error}"
    );
    eventually(
        Duration::from_secs(3),
        "the broken session is retired",
        || gauge(&runtime) == 0.0,
    )
    .await;
    assert_eq!(echo(&runtime, "py", "o", "after").await, "after");
    runtime.close_scope("o").await.unwrap();
    assert_eq!(gauge(&runtime), 0.0);
    baseline.back_to(runtime, vec![Box::new(server)]).await;
}

// 5. Garbage on stdout ------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_json_stdout_line_is_skipped_and_the_session_keeps_working() {
    let baseline = Baseline::take();
    let runtime = Runtime::start(one("py", python_stdio(&[]))).await.unwrap();
    assert_eq!(echo(&runtime, "py", "g", "before").await, "before");
    let pid = session_pid(&runtime, "py", "g").unwrap();
    for _ in 0..3 {
        let answer = call(
            &runtime,
            "py",
            "garbage_stdout",
            json!({}),
            "g",
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        assert_eq!(answer, "ok");
    }
    assert_eq!(echo(&runtime, "py", "g", "after").await, "after");
    assert_eq!(session_pid(&runtime, "py", "g"), Some(pid), "same process");
    assert_eq!(
        metric(
            &runtime,
            "mcp_client_sessions_closed_total",
            &[("mcp_server", "py")]
        ),
        0.0
    );
    runtime.close_scope("g").await.unwrap();
    assert_eq!(gauge(&runtime), 0.0);
    baseline.back_to(runtime, vec![]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_a_message_then_eof_is_transport_closed_at_once_and_the_next_call_respawns() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("events.log");
    let baseline = Baseline::take();
    let runtime = Runtime::start(one(
        "py",
        python_stdio(&[("BAD_LOG", log.to_str().unwrap())]),
    ))
    .await
    .unwrap();
    assert_eq!(echo(&runtime, "py", "p", "before").await, "before");
    let pid = session_pid(&runtime, "py", "p").unwrap();

    let deadline = Duration::from_secs(10);
    let started = Instant::now();
    let error = call(&runtime, "py", "partial_exit", json!({}), "p", deadline)
        .await
        .unwrap_err();
    let elapsed = on_time(started, deadline, "half a message, then EOF");
    assert!(elapsed < Duration::from_secs(2), "not at once: {elapsed:?}");
    assert_eq!(error.kind(), ErrorKind::TransportClosed, "{error}");
    assert!(error.to_string().contains("exited with code 0"), "{error}");
    assert_eq!(count_lines(&log, "partial_exit"), 1);
    eventually(Duration::from_secs(2), "closed as server_exit", || {
        metric(
            &runtime,
            "mcp_client_sessions_closed_total",
            &[("mcp_server", "py"), ("reason", "server_exit")],
        ) == 1.0
    })
    .await;
    assert_eq!(gauge(&runtime), 0.0);
    assert!(!alive(pid));

    assert_eq!(echo(&runtime, "py", "p", "again").await, "again");
    assert_ne!(session_pid(&runtime, "py", "p"), Some(pid));
    runtime.close_scope("p").await.unwrap();
    assert_eq!(gauge(&runtime), 0.0);
    baseline.back_to(runtime, vec![]).await;
}

// 6. Crashes during initialize and during close ------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stdio_server_crashing_during_initialize_is_initialize_failed_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("events.log");
    let baseline = Baseline::take();
    let mut spec = python_stdio(&[
        ("BAD_CRASH_ON", "initialize"),
        ("BAD_LOG", log.to_str().unwrap()),
    ]);
    spec.connect_timeout = Duration::from_secs(10);
    spec.retry.max_attempts = 1;
    let runtime = Runtime::start(one("py", spec)).await.unwrap();
    let started = Instant::now();
    let error = call(
        &runtime,
        "py",
        "echo",
        json!({"message": "x"}),
        "i",
        Duration::from_secs(10),
    )
    .await
    .unwrap_err();
    let elapsed = on_time(
        started,
        Duration::from_secs(10),
        "stdio crash during initialize",
    );
    assert!(elapsed < Duration::from_secs(5), "not at once: {elapsed:?}");
    assert_eq!(error.kind(), ErrorKind::InitializeFailed, "{error}");
    assert!(error.to_string().contains("exited with code 5"), "{error}");
    assert_eq!(count_lines(&log, "crash initialize"), 1);
    assert_eq!(
        metric(
            &runtime,
            "mcp_client_sessions_opened_total",
            &[("mcp_server", "py"), ("outcome", "error")]
        ),
        1.0
    );
    assert_eq!(gauge(&runtime), 0.0);
    assert!(runtime.sessions().is_empty());
    eventually(Duration::from_secs(2), "no child left", || {
        let mut now = my_children();
        now.sort_unstable();
        now == baseline.children
    })
    .await;
    baseline.back_to(runtime, vec![]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_server_crashing_or_failing_during_initialize_is_a_typed_error_on_time() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("events.log");
    let baseline = Baseline::take();
    let port = free_port();
    // The real Python server, told to die on the initialize POST.
    let crashing =
        python_http_env("http", port, &log, &[], &[("BAD_CRASH_ON", "initialize")]).await;
    let fake = FakeMcp::start().await;
    let mut py = http(format!("http://127.0.0.1:{port}/mcp"));
    py.retry.max_attempts = 1;
    let mut fk = http(fake.url.clone());
    fk.retry.max_attempts = 1;
    let runtime = Runtime::start(config([("py", py), ("fake", fk)]))
        .await
        .unwrap();
    let deadline = Duration::from_secs(5);

    let started = Instant::now();
    let error = call(
        &runtime,
        "py",
        "echo",
        json!({"message": "x"}),
        "i",
        deadline,
    )
    .await
    .unwrap_err();
    on_time(
        started,
        Duration::from_secs(2),
        "HTTP server crash during initialize",
    );
    assert!(
        matches!(
            error.kind(),
            ErrorKind::InitializeFailed | ErrorKind::ConnectFailed
        ),
        "{error}"
    );
    assert_eq!(count_lines(&log, "crash initialize"), 1);

    for (mode, kinds) in [
        (
            InitMode::Cut,
            &[ErrorKind::InitializeFailed, ErrorKind::TransportClosed][..],
        ),
        (
            InitMode::Status(503),
            &[ErrorKind::HttpStatus, ErrorKind::InitializeFailed][..],
        ),
        (InitMode::Hang, &[ErrorKind::Timeout][..]),
    ] {
        fake.set_init(mode);
        let started = Instant::now();
        let error = call(
            &runtime,
            "fake",
            "echo",
            json!({"message": "x"}),
            "i",
            deadline,
        )
        .await
        .unwrap_err();
        on_time(
            started,
            Duration::from_secs(2),
            &format!("initialize {mode:?}"),
        );
        assert!(kinds.contains(&error.kind()), "{mode:?}: {error}");
        assert_eq!(gauge(&runtime), 0.0);
    }
    fake.set_init(InitMode::Ok);
    assert_eq!(echo(&runtime, "fake", "i", "recovered").await, "recovered");
    runtime.close_scope("i").await.unwrap();
    assert_eq!(gauge(&runtime), 0.0);
    baseline
        .back_to(runtime, vec![Box::new(crashing), Box::new(fake)])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stdio_server_crashing_during_close_leaves_no_process_of_its_group() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("events.log");
    let baseline = Baseline::take();
    let spec = python_stdio(&[
        ("BAD_CRASH_ON", "close"),
        ("BAD_SPAWN_GRANDCHILD", "1"),
        ("BAD_LOG", log.to_str().unwrap()),
    ]);
    let runtime = Runtime::start(one("py", spec)).await.unwrap();
    assert_eq!(echo(&runtime, "py", "c", "up").await, "up");
    let pgid = session_pid(&runtime, "py", "c").unwrap();
    eventually(Duration::from_secs(5), "the grandchild runs", || {
        group_members(pgid).len() >= 2
    })
    .await;

    let started = Instant::now();
    assert_eq!(runtime.close_scope("c").await.unwrap(), 1);
    on_time(
        started,
        Duration::from_secs(2),
        "close of a server that crashes on EOF",
    );
    eventually(
        Duration::from_secs(3),
        "the server logged its crash",
        || count_lines(&log, "crash close") == 1,
    )
    .await;
    eventually(Duration::from_secs(2), "the whole group is gone", || {
        group_members(pgid).is_empty()
    })
    .await;
    assert_eq!(gauge(&runtime), 0.0);
    assert_eq!(
        metric(
            &runtime,
            "mcp_client_sessions_closed_total",
            &[("mcp_server", "py"), ("reason", "scope_closed")]
        ),
        1.0
    );
    baseline.back_to(runtime, vec![]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_server_crashing_or_hanging_during_close_is_closed_within_the_grace() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("events.log");
    let baseline = Baseline::take();
    let port = free_port();
    let crashing = python_http_env("http", port, &log, &[], &[("BAD_CRASH_ON", "close")]).await;
    let fake = FakeMcp::start().await;
    fake.set_delete(DeleteMode::Hang);
    let runtime = Runtime::start(config([
        ("py", http(format!("http://127.0.0.1:{port}/mcp"))),
        ("fake", http(fake.url.clone())),
    ]))
    .await
    .unwrap();
    assert_eq!(echo(&runtime, "py", "c", "up").await, "up");
    assert_eq!(echo(&runtime, "fake", "c", "up").await, "up");
    assert_eq!(gauge(&runtime), 2.0);

    // Both closes run at once; each is bounded by the 2 s close grace.
    let grace = Duration::from_secs(2);
    let started = Instant::now();
    assert_eq!(runtime.close_scope("c").await.unwrap(), 2);
    on_time(
        started,
        grace,
        "close: DELETE crashes one server and hangs on the other",
    );
    assert_eq!(gauge(&runtime), 0.0);
    assert!(runtime.sessions().is_empty());
    eventually(
        Duration::from_secs(3),
        "the Python server died on DELETE",
        || count_lines(&log, "crash close") == 1,
    )
    .await;
    assert_eq!(fake.deletes(), 1);
    baseline
        .back_to(runtime, vec![Box::new(crashing), Box::new(fake)])
        .await;
}

// Paging ------------------------------------------------------------------------

/// Lists follow every page, on the pooled path and on a lease and an owned
/// session alike (they used to stop at the first page there).
#[tokio::test]
async fn every_list_follows_every_page_pooled_leased_and_owned() {
    let fake = FakeMcp::start().await;
    let runtime = Runtime::start(one("fake", http(fake.url.clone())))
        .await
        .unwrap();
    let names = |tools: Vec<rmcp::model::Tool>| {
        tools
            .into_iter()
            .map(|t| t.name.to_string())
            .collect::<Vec<_>>()
    };
    let pooled = names(runtime.list_tools("fake", Some("p")).await.unwrap());
    assert_eq!(pooled.len(), 7, "{pooled:?}");
    let lease = runtime.session("fake", Some("p")).await.unwrap();
    assert_eq!(names(lease.list_tools().await.unwrap()), pooled);
    drop(lease);
    let owned = runtime.open("fake").await.unwrap();
    assert_eq!(names(owned.list_tools().await.unwrap()), pooled);
    owned.close().await;
    runtime.shutdown(Duration::from_secs(5)).await;
}
