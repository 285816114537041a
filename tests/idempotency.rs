//! `Idempotency-Key` through the real agent over real HTTP: which answers a
//! retry gets replayed and which it runs again (issue 12). The store's expiry,
//! eviction and hung-up callers are unit-tested in `src/agent/idempotency.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::*;

/// An error where the tool never ran (`connect_failed`: nothing listened) is
/// not kept: once the server is up, a retry with the same key runs the call.
#[tokio::test]
async fn a_never_ran_error_is_not_replayed_and_the_retry_runs_the_call() {
    let port = free_port();
    // One attempt per call, and a threshold the first failure cannot reach.
    let config = format!(
        "[servers.later]\ntransport = \"http\"\nurl = \"http://127.0.0.1:{port}/mcp\"\n\
         retry = {{ max_attempts = 1 }}\nbreaker = {{ failure_threshold = 100 }}\n"
    );
    let agent = Agent::start(&config, &[]).await;
    let call = json!({"server": "later", "tool": "echo", "arguments": {"message": "hi"}});
    let key = [("Idempotency-Key", "job-7")];

    let (status, body) = agent.post("/v1/tools/call", call.clone(), &key).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["error"]["type"], "connect_failed", "{body}");
    assert_eq!(body["error"]["may_have_run"], json!(false), "{body}");

    let _demo = HttpDemo::start_at(format!("127.0.0.1:{port}").parse().unwrap()).await;
    let (status, body) = agent.post("/v1/tools/call", call.clone(), &key).await;
    assert_eq!((status, answer_text(&body).as_str()), (200, "hi"), "{body}");

    // A result is kept: the next retry gets it without a call (the demo
    // counts this session's calls).
    let (_, replay) = agent.post("/v1/tools/call", call, &key).await;
    assert_eq!(replay, body, "the kept answer, byte for byte");
    assert_eq!(stats(&agent, "later", "default").await["calls"], 1);
}

/// A `timeout` may have run the tool: a retry with the same key gets the same
/// 504, and the tool does not run again.
#[tokio::test]
async fn a_timeout_is_kept_and_a_retry_does_not_run_the_tool_again() {
    let agent = Agent::start("[servers.demo]\ntransport = \"builtin\"\n", &[]).await;
    let call = json!({"server": "demo", "tool": "sleep", "arguments": {"ms": 5000},
        "timeout_ms": 200, "scope": "slow"});
    let key = [("Idempotency-Key", "step-1")];

    let (status, first) = agent.post("/v1/tools/call", call.clone(), &key).await;
    assert_eq!(status, 504, "{first}");
    assert_eq!(first["error"]["type"], "timeout");
    assert_eq!(first["error"]["may_have_run"], json!(true));

    let (status, retry) = agent.post("/v1/tools/call", call.clone(), &key).await;
    assert_eq!((status, &retry), (504, &first), "the kept answer");
    assert_eq!(stats(&agent, "demo", "slow").await["calls"], 1, "ran once");

    // The count moves when a call does run: another key runs the tool.
    let other = [("Idempotency-Key", "step-2")];
    let (status, _) = agent.post("/v1/tools/call", call, &other).await;
    assert_eq!(status, 504);
    assert_eq!(stats(&agent, "demo", "slow").await["calls"], 2);
}

/// A keyed call goes on when its caller hangs up, and keeps its admission slot
/// until it ends (so calls in flight, and the store's running entries, stay
/// within `agent.max_in_flight`); its answer is kept for the retry.
#[tokio::test]
async fn a_keyed_call_whose_caller_hung_up_keeps_its_slot_and_its_answer() {
    let config = "[agent]\nmax_in_flight = 1\nqueue_timeout = \"100ms\"\n\
                  [servers.demo]\ntransport = \"builtin\"\n";
    let agent = Agent::start(config, &[]).await;
    let call = json!({"server": "demo", "tool": "sleep", "arguments": {"ms": 3000}});
    let key = [("Idempotency-Key", "long-step")];
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let hung_up = impatient
        .post(format!("{}/v1/tools/call", agent.api))
        .header(key[0].0, key[0].1)
        .json(&call)
        .send()
        .await;
    assert!(hung_up.is_err_and(|e| e.is_timeout()));

    let echo = json!({"server": "demo", "tool": "echo", "arguments": {"message": "x"}});
    let (status, body) = agent.post("/v1/tools/call", echo.clone(), &[]).await;
    assert_eq!(status, 503, "the sleep still holds the only slot: {body}");
    assert_eq!(body["error"]["type"], "pool_exhausted");

    let started = Instant::now();
    loop {
        let (status, body) = agent.post("/v1/tools/call", call.clone(), &key).await;
        if status == 200 {
            assert_eq!(answer_text(&body), "slept 3000 ms");
            break;
        }
        assert_eq!(body["error"]["type"], "pool_exhausted", "{body}");
        assert!(started.elapsed() < Duration::from_secs(15), "no answer");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(stats(&agent, "demo", "default").await["calls"], 1);
    let (status, _) = agent.post("/v1/tools/call", echo, &[]).await;
    assert_eq!(status, 200, "the slot is free again");
}

/// The demo's `stats` for the session of `(server, scope)`: its tool calls.
async fn stats(agent: &Agent, server: &str, scope: &str) -> serde_json::Value {
    let (status, body) = agent
        .post(
            "/v1/tools/call",
            json!({"server": server, "tool": "stats", "scope": scope}),
            &[],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&answer_text(&body)).unwrap()
}
