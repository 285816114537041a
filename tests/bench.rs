//! `mcpwatch bench` in the modes that call an MCP URL (`mcp`,
//! `mcp-per-call-session`; issue 14): the real binary against the demo server
//! over streamable HTTP (`mcpwatch demo-server --http`, a child process) and
//! against the gateway of a real agent, whose metrics count the downstream
//! sessions the bench opened and closed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use support::*;

/// A finished `mcpwatch bench` run.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    /// The `--json` line.
    fn report(&self) -> Value {
        assert_eq!(self.code, Some(0), "stderr: {}", self.stderr);
        serde_json::from_str(self.stdout.trim()).expect("one JSON line")
    }

    /// Asserts a usage or start failure whose message names `what`.
    fn failed_with(&self, what: &str) {
        assert_eq!(self.code, Some(1), "stdout: {}", self.stdout);
        assert!(self.stderr.contains(what), "stderr: {}", self.stderr);
        assert!(self.stdout.is_empty(), "no report: {}", self.stdout);
    }
}

/// Runs `mcpwatch bench ARGS` (bounded: killed after 60 s).
async fn bench(args: &[&str]) -> Run {
    let child = tokio::process::Command::new(mcpwatch_bin())
        .arg("bench")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("bench finished within 60 s")
        .unwrap();
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// `mcpwatch demo-server --http` as a child process on a free port.
async fn http_demo() -> (ServerProcess, String) {
    use std::os::unix::process::CommandExt;
    let port = free_port();
    let child = std::process::Command::new(mcpwatch_bin())
        .args(["demo-server", "--http", &format!("127.0.0.1:{port}")])
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let process = ServerProcess {
        child,
        port,
        log: None,
    };
    wait_port(port, Duration::from_secs(20)).await;
    (process, format!("http://127.0.0.1:{port}/mcp"))
}

const ECHO: [&str; 4] = ["--tool", "echo", "--args", r#"{"message":"hi"}"#];

fn assert_report(report: &Value, calls: u64) {
    let keys: Vec<&str> = report
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut sorted = keys.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        [
            "calls",
            "calls_per_s",
            "errors",
            "max_us",
            "p50_us",
            "p90_us",
            "p99_us"
        ],
        "DESIGN §7b keys: {report}"
    );
    assert_eq!(report["calls"], calls, "{report}");
    assert_eq!(report["errors"], 0, "{report}");
    let at = |key: &str| report[key].as_u64().unwrap();
    assert!(at("p50_us") > 0 && at("p50_us") <= at("p99_us") && at("p99_us") <= at("max_us"));
    assert!(report["calls_per_s"].as_f64().unwrap() > 0.0, "{report}");
}

#[tokio::test]
async fn both_url_modes_call_the_demo_server_over_streamable_http() {
    let (_demo, url) = http_demo().await;
    let one_session = bench(
        &[
            &["--mode", "mcp", "--url", &url, "--calls", "200"],
            &ECHO[..],
            &["--concurrency", "8", "--json"],
        ]
        .concat(),
    )
    .await;
    assert_report(&one_session.report(), 200);
    let per_call = bench(
        &[
            &["--mode", "mcp-per-call-session", "--url", &url],
            &ECHO[..],
            &["--calls", "20", "--json"],
        ]
        .concat(),
    )
    .await;
    assert_report(&per_call.report(), 20);
}

/// Downstream sessions of the gateway's `demo` server closed by `DELETE`.
async fn deleted_sessions(agent: &Agent) -> f64 {
    agent
        .metric(
            "mcpwatch_gateway_sessions_closed_total",
            &[("mcp_server", "demo"), ("reason", "deleted")],
        )
        .await
}

async fn active_sessions(agent: &Agent) -> f64 {
    agent
        .metric(
            "mcpwatch_gateway_sessions_active",
            &[("mcp_server", "demo")],
        )
        .await
}

#[tokio::test]
async fn through_the_gateway_mcp_is_one_session_and_per_call_sessions_keep_the_scope() {
    let agent = Agent::start("[servers.demo]\ntransport = \"builtin\"\n", &[]).await;
    let url = format!("{}/mcp/demo", agent.api);

    // Mode mcp: 32 calls in flight on one downstream session, ended with DELETE.
    let run = bench(
        &[
            &["--mode", "mcp", "--url", &url, "--calls", "320"],
            &ECHO[..],
            &["--concurrency", "32", "--json"],
        ]
        .concat(),
    )
    .await;
    assert_report(&run.report(), 320);
    assert_eq!(deleted_sessions(&agent).await, 1.0, "one session in all");
    assert_eq!(active_sessions(&agent).await, 0.0);

    // Mode mcp-per-call-session with the scope header: a session per call (one
    // warm-up call, then 10), each deleted, all on the scope's upstream session.
    let run = bench(&[
        "--mode",
        "mcp-per-call-session",
        "--url",
        &url,
        "--header",
        "X-Mcpwatch-Scope: bench-scope",
        "--tool",
        "counter",
        "--calls",
        "10",
        "--json",
    ])
    .await;
    assert_report(&run.report(), 10);
    assert_eq!(deleted_sessions(&agent).await, 12.0, "1 + 1 warm-up + 10");
    assert_eq!(active_sessions(&agent).await, 0.0);
    let (status, body) = agent
        .post(
            "/v1/tools/call",
            json!({"server": "demo", "tool": "counter", "scope": "bench-scope"}),
            &[],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(answer_text(&body), "12", "the header reached the gateway");
}

#[tokio::test]
async fn url_mode_failures_are_reported_without_a_result() {
    let (_demo, url) = http_demo().await;
    bench(&[&["--mode", "mcp"], &ECHO[..]].concat())
        .await
        .failed_with("--url is required");
    bench(
        &[
            &["--mode", "mcp", "--url", &url, "--server", "demo"],
            &ECHO[..],
        ]
        .concat(),
    )
    .await
    .failed_with("--server is not used");
    bench(&ECHO).await.failed_with("--server is required");
    bench(&[&["--server", "demo", "--url", &url], &ECHO[..]].concat())
        .await
        .failed_with("--url is required in modes mcp");
    bench(&[&["--server", "demo", "--header", "a:b"], &ECHO[..]].concat())
        .await
        .failed_with("--header is only sent to --url");
    bench(
        &[
            &["--mode", "mcp", "--url", &url, "--header", "no-colon"],
            &ECHO[..],
        ]
        .concat(),
    )
    .await
    .failed_with("\"no-colon\" is not NAME:VALUE");
    bench(
        &[
            &["--mode", "mcp", "--url", &url, "--header", "bad name: v"],
            &ECHO[..],
        ]
        .concat(),
    )
    .await
    .failed_with("is not NAME:VALUE");
    let nobody = format!("http://127.0.0.1:{}/mcp", free_port());
    for mode in ["mcp", "mcp-per-call-session"] {
        bench(&[&["--mode", mode, "--url", &nobody], &ECHO[..]].concat())
            .await
            .failed_with("cannot open an MCP session at");
    }
    bench(&["--mode", "mcp", "--url", &url, "--tool", "no-such-tool"])
        .await
        .failed_with("benchmark failed: tools/call failed");
    bench(&[
        "--mode",
        "mcp-per-call-session",
        "--url",
        &url,
        "--tool",
        "fail",
    ])
    .await
    .failed_with("benchmark failed: tool error");
    bench(&[
        "--mode", "mcp", "--url", &url, "--tool", "echo", "--args", "[1]",
    ])
    .await
    .failed_with("not a JSON object");
}
