//! The agent binary over real HTTP: calls in scopes, listings, closing scopes,
//! every error status, idempotency, caller hang-up, and graceful shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::*;

fn demo_config() -> String {
    format!(
        "[servers.demo]\ntransport = \"builtin\"\n\
         [servers.child]\ntransport = \"stdio\"\ncommand = \"{}\"\nargs = [\"demo-server\", \"--stdio\"]\n",
        mcpwatch_bin()
    )
}

async fn counter(agent: &Agent, server: &str, scope: &str) -> String {
    let (status, body) = agent
        .post(
            "/v1/tools/call",
            json!({"server": server, "tool": "counter", "scope": scope}),
            &[],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    answer_text(&body)
}

#[tokio::test]
async fn calls_in_scopes_listings_and_closing_a_scope() {
    let agent = Agent::start(&demo_config(), &[]).await;
    for expected in ["1", "2", "3"] {
        assert_eq!(counter(&agent, "child", "A").await, expected);
    }
    assert_eq!(
        counter(&agent, "child", "B").await,
        "1",
        "scope B has its own session"
    );
    // The scope may come in a header; header and body must agree (DESIGN §10).
    let (_, body) = agent
        .post(
            "/v1/tools/call",
            json!({"server": "child", "tool": "counter"}),
            &[("X-Mcpwatch-Scope", "A")],
        )
        .await;
    assert_eq!(answer_text(&body), "4");
    assert_eq!(body["session"]["reused"], json!(true));
    let (_, body) = agent
        .post(
            "/v1/tools/call",
            json!({"server": "child", "tool": "counter", "scope": "B"}),
            &[("X-Mcpwatch-Scope", "A")],
        )
        .await;
    assert_eq!(status_of(&body), "invalid_request", "{body}");
    let (_, body) = agent
        .post(
            "/v1/tools/call",
            json!({"server": "child", "tool": "counter", "scope": "B"}),
            &[("X-Mcpwatch-Scope", "B")],
        )
        .await;
    assert_eq!(answer_text(&body), "2", "agreeing sources");

    let (status, servers) = agent.get("/v1/servers", &[]).await;
    assert_eq!(status, 200);
    let child = servers["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "child")
        .unwrap();
    assert_eq!(
        (
            child["transport"].as_str(),
            child["state"].as_str(),
            child["breaker"].as_str()
        ),
        (Some("stdio"), Some("ready"), Some("closed"))
    );
    assert_eq!(child["sessions"], json!(2));

    let (status, tools) = agent.get("/v1/servers/demo/tools", &[]).await;
    assert_eq!(status, 200);
    let names: Vec<&str> = tools["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"echo") && names.contains(&"counter"),
        "{names:?}"
    );

    let (_, sessions) = agent.get("/v1/sessions", &[]).await;
    let pid_a = sessions["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["server"] == "child" && s["scope"] == "A")
        .map(|s| s["pid"].as_u64().unwrap() as u32)
        .unwrap();
    assert!(alive(pid_a));
    let response = agent
        .http
        .delete(format!("{}/v1/scopes/A", agent.api))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<serde_json::Value>().await.unwrap(),
        json!({"closed": 1})
    );
    assert!(!alive(pid_a), "the scope's server process is gone");
    assert_eq!(counter(&agent, "child", "A").await, "1");
    let response = agent
        .http
        .delete(format!("{}/v1/sessions/child/B", agent.api))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.json::<serde_json::Value>().await.unwrap(),
        json!({"closed": 1})
    );

    let (_, metrics) = agent.admin("/metrics").await;
    assert!(
        metrics.contains(
            "mcp_client_sessions_active{mcp_server=\"child\",network_transport=\"pipe\"} 1"
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn every_error_has_its_status_and_type() {
    let config = format!(
        "{}[servers.broken]\ntransport = \"stdio\"\ncommand = \"/nonexistent/mcp-server\"\nbreaker = {{ failure_threshold = 1, cool_down = \"60s\" }}\n\
         [agent]\nmax_body_bytes = 2048\n",
        demo_config()
    );
    let agent = Agent::start(&config, &[]).await;
    let call = |server: &str, tool: &str| json!({"server": server, "tool": tool});

    let (status, body) = agent
        .post("/v1/tools/call", call("nope", "echo"), &[])
        .await;
    assert_eq!(
        (status, body["error"]["type"].as_str()),
        (404, Some("unknown_server"))
    );

    let response = agent
        .http
        .post(format!("{}/v1/tools/call", agent.api))
        .body("{\"server\": \"demo\", ")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["type"], "invalid_request");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("EOF"),
        "{body}"
    );

    let (status, body) = agent
        .post(
            "/v1/tools/call",
            json!({"server": "demo", "tool": "echo", "colour": 1}),
            &[],
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("unknown field `colour`"),
        "{body}"
    );

    let (status, body) = agent
        .post(
            "/v1/tools/call",
            json!({"server": "demo", "tool": "echo", "scope": "../x"}),
            &[],
        )
        .await;
    assert_eq!(
        (status, body["error"]["type"].as_str()),
        (400, Some("invalid_request"))
    );

    let big = "x".repeat(4096);
    let (status, body) = agent
        .post(
            "/v1/tools/call",
            json!({"server": "demo", "tool": "echo", "arguments": {"message": big}}),
            &[],
        )
        .await;
    assert_eq!(
        (status, body["error"]["type"].as_str()),
        (413, Some("payload_too_large"))
    );

    let (status, body) = agent
        .post("/v1/tools/call", json!({"server": "demo", "tool": "sleep", "arguments": {"ms": 5000}, "timeout_ms": 200}), &[])
        .await;
    assert_eq!(
        (status, body["error"]["type"].as_str()),
        (504, Some("timeout"))
    );
    assert_eq!(body["error"]["may_have_run"], json!(true), "{body}");

    let (status, body) = agent
        .post("/v1/tools/call", call("demo", "fail"), &[])
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["result"]["isError"], json!(true));

    let (status, body) = agent
        .post("/v1/tools/call", call("broken", "echo"), &[])
        .await;
    assert_eq!(
        (status, body["error"]["type"].as_str()),
        (502, Some("connect_failed")),
        "{body}"
    );
    assert_eq!(body["error"]["may_have_run"], json!(false), "{body}");
    let (status, body) = agent
        .post("/v1/tools/call", call("broken", "echo"), &[])
        .await;
    assert_eq!(
        (status, body["error"]["type"].as_str()),
        (503, Some("breaker_open")),
        "{body}"
    );

    let (status, body) = agent.get("/v1/no/such/route", &[]).await;
    assert_eq!(status, 404);
    assert_eq!(
        body,
        json!({"error": {"type": "invalid_request", "may_have_run": false,
            "message": "no such route; see GET /v1/openapi.json"}})
    );
}

#[tokio::test]
async fn a_token_guards_the_api_but_not_the_admin_listener() {
    let config = format!(
        "[agent]\ntoken = \"${{TEST_AGENT_TOKEN}}\"\n{}",
        demo_config()
    );
    let agent = Agent::start(&config, &[("TEST_AGENT_TOKEN", "s3cret-token")]).await;
    let call = json!({"server": "demo", "tool": "echo", "arguments": {"message": "x"}});
    let (status, body) = agent.post("/v1/tools/call", call.clone(), &[]).await;
    assert_eq!(
        (status, body["error"]["type"].as_str()),
        (401, Some("unauthorized"))
    );
    let (status, _) = agent
        .post(
            "/v1/tools/call",
            call.clone(),
            &[("Authorization", "Bearer wrong-token")],
        )
        .await;
    assert_eq!(status, 401);
    let (status, _) = agent
        .get("/v1/sessions", &[("Authorization", "Bearer s3cret-tokenX")])
        .await;
    assert_eq!(status, 401);
    let (status, body) = agent
        .post(
            "/v1/tools/call",
            call,
            &[("Authorization", "Bearer s3cret-token")],
        )
        .await;
    assert_eq!((status, answer_text(&body).as_str()), (200, "x"));
    let (status, _) = agent.admin("/healthz").await;
    assert_eq!(status, 200);
    let (status, _) = agent.admin("/metrics").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn the_same_idempotency_key_runs_the_tool_once() {
    let agent = Agent::start(&demo_config(), &[]).await;
    let body = json!({"server": "demo", "tool": "counter", "scope": "idem"});
    let key = [("Idempotency-Key", "step-1")];
    let (first, second) = tokio::join!(
        agent.post("/v1/tools/call", body.clone(), &key),
        agent.post("/v1/tools/call", body.clone(), &key)
    );
    assert_eq!((first.0, second.0), (200, 200));
    assert_eq!(answer_text(&first.1), "1");
    assert_eq!(
        answer_text(&second.1),
        "1",
        "the retry joined the first call"
    );
    let (_, third) = agent.post("/v1/tools/call", body.clone(), &key).await;
    assert_eq!(
        answer_text(&third),
        "1",
        "and later retries get the stored answer"
    );
    let (_, fresh) = agent
        .post(
            "/v1/tools/call",
            body.clone(),
            &[("Idempotency-Key", "step-2")],
        )
        .await;
    assert_eq!(answer_text(&fresh), "2", "a new key runs the tool");
    let (status, error) = agent
        .post(
            "/v1/tools/call",
            json!({"server": "demo", "tool": "echo", "scope": "idem"}),
            &key,
        )
        .await;
    assert_eq!(
        (status, error["error"]["type"].as_str()),
        (400, Some("invalid_request")),
        "same key, other body"
    );
}

#[tokio::test]
async fn a_caller_that_hangs_up_cancels_its_call_at_the_server() {
    let agent = Agent::start(&demo_config(), &[]).await;
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let result = impatient
        .post(format!("{}/v1/tools/call", agent.api))
        .json(&json!({"server": "child", "tool": "sleep", "arguments": {"ms": 10000}, "scope": "hangup"}))
        .send()
        .await;
    assert!(result.is_err(), "the client gave up");
    let started = Instant::now();
    loop {
        let (_, body) = agent
            .post(
                "/v1/tools/call",
                json!({"server": "child", "tool": "stats", "scope": "hangup"}),
                &[],
            )
            .await;
        let stats: serde_json::Value = serde_json::from_str(&answer_text(&body)).unwrap();
        if stats["cancelled"] == json!(1) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "the server never saw the cancellation: {stats}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn sigterm_drains_calls_in_flight_then_exits_cleanly() {
    let otlp = support::receivers::OtlpReceiver::start(support::receivers::Behaviour::Answer).await;
    let mut agent = Agent::start(
        &format!("[agent]\ndrain_timeout = \"10s\"\n{}", demo_config()),
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.endpoint.as_str())],
    )
    .await;
    // A child-process session, to prove it is gone afterwards.
    counter(&agent, "child", "proc").await;
    let (_, sessions) = agent.get("/v1/sessions", &[]).await;
    let pid = sessions["sessions"][0]["pid"].as_u64().unwrap() as u32;
    let slow: Vec<_> = (0..20)
        .map(|i| {
            let http = agent.http.clone();
            let url = format!("{}/v1/tools/call", agent.api);
            tokio::spawn(async move {
                let body = json!({"server": "demo", "tool": "sleep", "arguments": {"ms": 1500}, "scope": format!("s{i}")});
                let response = http.post(url).json(&body).send().await.unwrap();
                (response.status().as_u16(), response.json::<serde_json::Value>().await.unwrap())
            })
        })
        .collect();
    let (_, ready) = agent.admin("/readyz").await;
    assert!(ready.contains("ready"));
    // Wait until all 20 are in flight.
    let started = Instant::now();
    loop {
        let (_, sessions) = agent.get("/v1/sessions", &[]).await;
        let busy = sessions["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["in_flight"] == json!(1))
            .count();
        if busy == 20 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "only {busy} calls in flight"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    agent.terminate();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, _) = agent.admin("/readyz").await;
    assert_eq!(status, 503, "readyz turns 503 at once");
    let (status, body) = agent
        .post(
            "/v1/tools/call",
            json!({"server": "demo", "tool": "echo", "arguments": {"message": "late"}}),
            &[],
        )
        .await;
    assert_eq!(
        (status, body["error"]["type"].as_str()),
        (503, Some("shutting_down"))
    );
    for call in slow {
        let (status, body) = call.await.unwrap();
        assert_eq!(
            (status, answer_text(&body).as_str()),
            (200, "slept 1500 ms")
        );
    }
    assert_eq!(agent.wait_exit(Duration::from_secs(15)).await, Some(0));
    assert!(!alive(pid), "the stdio server died with the agent");
    let spans = otlp.spans();
    let sleeps = spans
        .iter()
        .filter(|s| s.name == "tools/call sleep")
        .count();
    assert_eq!(
        sleeps, 20,
        "the spans of every drained call were exported before exit"
    );
    assert!(
        spans.iter().any(|s| s.name == "mcp.session.close"),
        "and the closes at shutdown"
    );
}

#[tokio::test]
async fn the_openapi_document_matches_the_routes() {
    let agent = Agent::start(&demo_config(), &[]).await;
    let (status, document) = agent.get("/v1/openapi.json", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(document["openapi"], "3.1.0");
    let paths = document["paths"].as_object().unwrap();
    assert!(paths.len() >= 7);
    for (path, methods) in paths {
        let concrete = path
            .replace("{server}", "demo")
            .replace("{scope}", "doc-test");
        for (method, operation) in methods.as_object().unwrap() {
            let url = format!("{}{concrete}", agent.api);
            let request = match method.as_str() {
                "get" => agent.http.get(url),
                "post" => agent.http.post(url).json(
                    &json!({"server": "demo", "tool": "echo", "arguments": {"message": "doc"}}),
                ),
                "delete" => agent.http.delete(url),
                other => panic!("undocumented method {other}"),
            };
            let status = request.send().await.unwrap().status().as_u16();
            let documented = operation["responses"].as_object().unwrap();
            assert!(
                documented.contains_key(&status.to_string()),
                "{method} {path} answered {status}, not documented"
            );
            assert_ne!(status, 404, "{method} {path} is not routed");
        }
    }
}

#[tokio::test]
async fn max_in_flight_queues_then_refuses() {
    let config = format!(
        "[agent]\nmax_in_flight = 2\nqueue_timeout = \"200ms\"\n{}",
        demo_config()
    );
    let agent = Agent::start(&config, &[]).await;
    let busy: Vec<_> = (0..2)
        .map(|i| {
            let http = agent.http.clone();
            let url = format!("{}/v1/tools/call", agent.api);
            tokio::spawn(async move {
                let body = json!({"server": "demo", "tool": "sleep", "arguments": {"ms": 1000}, "scope": format!("b{i}")});
                http.post(url).json(&body).send().await.unwrap().status().as_u16()
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let (status, body) = agent
        .post(
            "/v1/tools/call",
            json!({"server": "demo", "tool": "echo", "arguments": {"message": "x"}}),
            &[],
        )
        .await;
    assert_eq!(
        (status, body["error"]["type"].as_str()),
        (503, Some("pool_exhausted"))
    );
    assert!(started.elapsed() >= Duration::from_millis(200));
    for call in busy {
        assert_eq!(call.await.unwrap(), 200);
    }
    let (status, _) = agent
        .post(
            "/v1/tools/call",
            json!({"server": "demo", "tool": "echo", "arguments": {"message": "x"}}),
            &[],
        )
        .await;
    assert_eq!(status, 200, "slots are free again");
}

/// The README's quickstart: `serve` with no config file, its curl, then the gauge.
#[tokio::test]
async fn the_readme_quickstart_works_without_a_config_file() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    assert!(readme.contains("cargo run --release -- serve"));
    let body = readme
        .lines()
        .skip_while(|l| !l.contains("curl -s http://127.0.0.1:8700/v1/tools/call"))
        .nth(1)
        .and_then(|l| l.trim().strip_prefix("-d '"))
        .and_then(|l| l.strip_suffix('\''))
        .expect("the README's curl example");
    let body: serde_json::Value = serde_json::from_str(body).unwrap();
    let mut child = std::process::Command::new(mcpwatch_bin())
        .arg("serve")
        .env("MCPWATCH_AGENT__LISTEN", "127.0.0.1:0")
        .env("MCPWATCH_AGENT__ADMIN_LISTEN", "127.0.0.1:0")
        .env_remove("MCPWATCH_CONFIG")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let first = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        std::io::BufReader::new(stdout)
            .lines()
            .next()
            .unwrap()
            .unwrap()
    })
    .await
    .unwrap();
    let mut urls = first
        .split_whitespace()
        .filter(|w| w.starts_with("http://"));
    let (api, admin) = (
        urls.next().unwrap().to_owned(),
        urls.next().unwrap().to_owned(),
    );
    let http = reqwest::Client::new();
    let answer: serde_json::Value = http
        .post(format!("{api}/v1/tools/call"))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer_text(&answer), "hello", "{answer}");
    let metrics = http
        .get(format!("{admin}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(
            "mcp_client_sessions_active{mcp_server=\"demo\",network_transport=\"inproc\"} 1"
        ),
        "{metrics}"
    );
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test]
async fn servers_and_sessions_commands_print_tables() {
    let agent = Agent::start(&demo_config(), &[]).await;
    counter(&agent, "demo", "table-scope").await;
    let output = tokio::process::Command::new(mcpwatch_bin())
        .args(["sessions", "--agent", &agent.api])
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success());
    assert!(
        text.starts_with("SERVER") && text.contains("table-scope"),
        "{text}"
    );
    let output = tokio::process::Command::new(mcpwatch_bin())
        .args(["servers", "--agent", &agent.api])
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("child") && text.contains("stdio") && text.contains("ready"),
        "{text}"
    );
}

/// `mcpwatch servers|sessions ARGS` with `token` in MCPWATCH_TOKEN (or none):
/// exit status, stdout, stderr.
async fn agent_command(args: &[&str], token: Option<&str>) -> (Option<i32>, String, String) {
    let mut command = tokio::process::Command::new(mcpwatch_bin());
    command.args(args).env_remove("MCPWATCH_TOKEN");
    if let Some(token) = token {
        command.env("MCPWATCH_TOKEN", token);
    }
    let output = tokio::time::timeout(Duration::from_secs(30), command.output())
        .await
        .unwrap()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn servers_and_sessions_commands_report_a_refusal_an_absent_agent_and_json() {
    let config = format!(
        "[agent]\ntoken = \"${{TEST_AGENT_TOKEN}}\"\n{}",
        demo_config()
    );
    let agent = Agent::start(&config, &[("TEST_AGENT_TOKEN", "s3cret-token")]).await;
    let (code, out, err) =
        agent_command(&["servers", "--agent", &agent.api], Some("wrong-token")).await;
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(
        err.contains("error: the agent answered 401 Unauthorized: "),
        "{err}"
    );
    assert!(out.is_empty(), "no table on a refusal: {out}");
    let (code, out, err) = agent_command(
        &[
            "sessions",
            "--agent",
            &agent.api,
            "--token",
            "s3cret-token",
            "--json",
        ],
        None,
    )
    .await;
    assert_eq!(code, Some(0), "{err}");
    let body: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(body["sessions"], json!([]), "{out}");
    let (code, out, _) =
        agent_command(&["sessions", "--agent", &agent.api], Some("s3cret-token")).await;
    assert_eq!(code, Some(0));
    assert!(out.starts_with("SERVER") && out.contains("(none)"), "{out}");

    let absent = format!("http://127.0.0.1:{}", free_port());
    let (code, _, err) = agent_command(&["sessions", "--agent", &absent], None).await;
    assert_eq!(code, Some(1));
    assert!(
        err.contains(&format!(
            "error: cannot reach the agent at {absent}/v1/sessions: "
        )),
        "{err}"
    );
}

#[tokio::test]
async fn an_incoming_traceparent_is_the_parent_of_the_call_spans() {
    let otlp = support::receivers::OtlpReceiver::start(support::receivers::Behaviour::Answer).await;
    let mut agent = Agent::start(
        &demo_config(),
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.endpoint.as_str())],
    )
    .await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let traceparent = format!("00-{trace_id}-00f067aa0ba902b7-01");
    let response = agent
        .http
        .post(format!("{}/v1/tools/call", agent.api))
        .header("traceparent", &traceparent)
        .header("x-request-id", "req-abc-123")
        .json(&json!({"server": "demo", "tool": "echo", "arguments": {"message": "traced"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["x-request-id"],
        "req-abc-123",
        "the request id comes back"
    );
    assert_eq!(response.status(), 200);
    agent.terminate();
    assert_eq!(agent.wait_exit(Duration::from_secs(15)).await, Some(0));
    let spans = otlp.spans();
    let call = spans
        .iter()
        .find(|s| s.name == "tools/call echo")
        .expect("the call's span was exported");
    let hex: String = call.trace_id.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        hex, trace_id,
        "the caller's trace continues through the agent"
    );
}

/// The `error.type` of an API answer.
fn status_of(body: &serde_json::Value) -> &str {
    body["error"]["type"].as_str().unwrap_or_default()
}
