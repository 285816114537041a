//! The circuit breaker when its half-open probe is abandoned (issue 12, defect 1):
//! the probe's caller goes away while the upstream hangs, the upstream heals, and
//! the next call must probe (and close the breaker) instead of failing
//! `breaker_open` for ever. On the pooled path, the owned path and through the
//! agent's HTTP API.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use mcpwatch::config::{BreakerConfig, RetryConfig, ServerConfig};
use mcpwatch::{CallOptions, ErrorKind, Runtime};
use support::{HttpDemo, free_port};
use tokio::net::TcpListener;

const COOL_DOWN: Duration = Duration::from_millis(300);

/// An upstream that accepts connections and never answers. Stops when dropped.
struct Hang(tokio::task::JoinHandle<()>);

impl Hang {
    async fn at(addr: SocketAddr) -> Hang {
        let listener = TcpListener::bind(addr).await.unwrap();
        Hang(tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        }))
    }
}

impl Drop for Hang {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn flaky(addr: SocketAddr) -> ServerConfig {
    let mut spec = ServerConfig::http(format!("http://{addr}/mcp"));
    spec.breaker = BreakerConfig {
        failure_threshold: 1,
        cool_down: COOL_DOWN,
    };
    spec.retry = RetryConfig {
        max_attempts: 1,
        ..RetryConfig::default()
    };
    spec.connect_timeout = Duration::from_secs(10);
    spec.call_timeout = Duration::from_secs(10);
    spec
}

fn breaker(runtime: &Runtime) -> &'static str {
    runtime.servers()[0].breaker
}

async fn echo(runtime: &Runtime) -> mcpwatch::Result<mcpwatch::ToolCall> {
    let args = serde_json::json!({"message": "hi"});
    runtime
        .call_tool("flaky", "echo", Some(args), CallOptions::scope("t"))
        .await
}

/// Opens the breaker (port closed), then abandons a probe against a hanging
/// upstream with `abandon`, then heals the upstream. Returns the healed server.
async fn open_then_abandon_a_probe<F: std::future::Future>(
    runtime: &Runtime,
    addr: SocketAddr,
    abandon: impl FnOnce() -> F,
) -> HttpDemo {
    let refused = echo(runtime).await.unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::ConnectFailed, "{refused}");
    assert_eq!(breaker(runtime), "open");
    let hang = Hang::at(addr).await;
    tokio::time::sleep(COOL_DOWN + Duration::from_millis(50)).await;
    let gone = tokio::time::timeout(Duration::from_millis(300), abandon()).await;
    assert!(gone.is_err(), "the probe should still be hanging");
    assert_eq!(breaker(runtime), "half_open");
    drop(hang);
    tokio::time::sleep(Duration::from_millis(50)).await;
    HttpDemo::start_at(addr).await
}

#[tokio::test]
async fn a_pooled_probe_dropped_by_its_caller_leaves_the_next_call_probing() {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let runtime = Runtime::start(support::config([("flaky", flaky(addr))]))
        .await
        .unwrap();
    let _healed = open_then_abandon_a_probe(&runtime, addr, || echo(&runtime)).await;
    let call = echo(&runtime)
        .await
        .expect("the next call probes and succeeds");
    assert!(!call.is_error());
    assert_eq!(breaker(&runtime), "closed");
    let state = support::metric(
        &runtime,
        "mcp_client_circuit_state",
        &[("mcp_server", "flaky")],
    );
    assert_eq!(state, 0.0);
    runtime.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn an_owned_open_probe_dropped_by_its_caller_leaves_the_next_open_probing() {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let runtime = Runtime::start(support::config([("flaky", flaky(addr))]))
        .await
        .unwrap();
    let refused = runtime.open("flaky").await.unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::ConnectFailed);
    assert_eq!(breaker(&runtime), "open");
    let hang = Hang::at(addr).await;
    tokio::time::sleep(COOL_DOWN + Duration::from_millis(50)).await;
    let gone = tokio::time::timeout(Duration::from_millis(300), runtime.open("flaky")).await;
    assert!(gone.is_err(), "the open should still be hanging");
    drop(hang);
    let _healed = HttpDemo::start_at(addr).await;
    let session = runtime
        .open("flaky")
        .await
        .expect("the next open probes and succeeds");
    assert_eq!(breaker(&runtime), "closed");
    session.close().await;
    runtime.shutdown(Duration::from_secs(5)).await;
}

/// Defect 1 as an operator met it: through the agent, the probe's HTTP caller
/// hangs up after 1 s; after the upstream heals, calls succeed again.
#[tokio::test]
async fn through_the_agent_a_hang_up_during_the_probe_then_recovery() {
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let config = format!(
        "[servers.flaky]\ntransport = \"http\"\nurl = \"http://{addr}/mcp\"\nretry = {{ max_attempts = 1 }}\n\
         breaker = {{ failure_threshold = 1, cool_down = \"1s\" }}\ncall_timeout = \"20s\"\n"
    );
    let agent = support::Agent::start(&config, &[]).await;
    let call =
        serde_json::json!({"server": "flaky", "tool": "echo", "arguments": {"message": "hi"}});
    let (status, body) = agent.post("/v1/tools/call", call.clone(), &[]).await;
    assert_eq!(
        (status, body["error"]["type"].as_str()),
        (502, Some("connect_failed"))
    );
    let hang = Hang::at(addr).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let url = format!("{}/v1/tools/call", agent.api);
    let hung_up = impatient.post(&url).json(&call).send().await;
    assert!(
        hung_up.is_err(),
        "the probe should hang until the caller hangs up"
    );
    drop(hang);
    let _healed = HttpDemo::start_at(addr).await;
    let mut answered = (0, serde_json::Value::Null);
    for _ in 0..20 {
        answered = agent.post("/v1/tools/call", call.clone(), &[]).await;
        if answered.0 == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(answered.0, 200, "{}", answered.1);
    let (_, metrics) = agent.admin("/metrics").await;
    assert!(
        metrics.contains("mcp_client_circuit_state{mcp_server=\"flaky\"} 0"),
        "{metrics}"
    );
}
