//! Gateway mode (DESIGN §10) over the wire: a real agent process, real
//! upstreams (the builtin demo, the demo as a stdio child), a raw
//! streamable-HTTP client that sees every header and message. The SDK
//! clients (Python, TypeScript, langchain-mcp-adapters) run in
//! tests/gateway_clients.rs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use futures::StreamExt as _;
use serde_json::{Value, json};
use support::Agent;
use support::mcp_http::McpHttp;

const BUILTIN: &str = "[servers.demo]\ntransport = \"builtin\"\n";

fn stdio_demo() -> String {
    format!(
        "[servers.demo]\ntransport = \"stdio\"\ncommand = \"{}\"\nargs = [\"demo-server\", \"--stdio\"]\n",
        support::mcpwatch_bin()
    )
}

async fn metric(agent: &Agent, name: &str, labels: &[(&str, &str)]) -> f64 {
    agent.metric(name, labels).await
}

async fn upstream_sessions(agent: &Agent) -> usize {
    agent.get("/v1/sessions", &[]).await.1["sessions"]
        .as_array()
        .map_or(0, Vec::len)
}

fn url(agent: &Agent, path: &str) -> String {
    format!("{}{path}", agent.api)
}

#[tokio::test]
async fn a_session_calls_tools_with_progress_over_sse_and_delete_ends_it() {
    let agent = Agent::start(BUILTIN, &[]).await;
    let mut client = McpHttp::new(url(&agent, "/mcp/demo"));
    let init = client.initialize("2025-06-18", json!({})).await;
    assert_eq!(init.status, 200);
    let result = &init.answer()["result"];
    assert_eq!(
        result["protocolVersion"], "2025-06-18",
        "the client's version is spoken"
    );
    assert_eq!(result["serverInfo"]["name"], "mcpwatch/demo");
    assert!(result["capabilities"]["tools"].is_object(), "{result}");
    assert!(result["instructions"].as_str().unwrap().contains("demo"));
    let id = client.session.clone().expect("Mcp-Session-Id");
    assert_eq!(id.len(), 40);

    // A fast answer is plain JSON (a loaded machine may take 100 ms once or twice).
    let mut answers = Vec::new();
    for id in 1..=5 {
        let echo = client.call(id, "echo", json!({"message": "hi"})).await;
        assert_eq!(echo.text(), "hi");
        answers.push(echo.sse);
        if !echo.sse {
            break;
        }
    }
    assert!(
        answers.contains(&false),
        "a fast answer is plain JSON: {answers:?}"
    );

    let slow = client
        .request(
            2,
            "tools/call",
            json!({"name": "sleep", "arguments": {"ms": 300}, "_meta": {"progressToken": "tok-1"}}),
        )
        .await;
    assert!(slow.sse, "an answer later than 100 ms comes as SSE");
    let progress: Vec<&Value> = slow
        .messages
        .iter()
        .filter(|m| m["method"] == "notifications/progress")
        .collect();
    assert!(!progress.is_empty(), "{:?}", slow.messages);
    assert!(
        progress
            .iter()
            .all(|p| p["params"]["progressToken"] == "tok-1"),
        "tokens mapped back"
    );
    assert_eq!(slow.answer()["id"], 2);
    assert_eq!(slow.text(), "slept 300 ms");

    let sessions = agent.get("/v1/sessions", &[]).await.1;
    assert_eq!(
        sessions["sessions"][0]["scope"],
        format!("~s:{id}"),
        "no named scope: the session's own"
    );
    assert_eq!(
        metric(
            &agent,
            "mcpwatch_gateway_sessions_active",
            &[("mcp_server", "demo")]
        )
        .await,
        1.0
    );

    assert_eq!(client.delete().await, 200);
    let after = client.call(3, "echo", json!({"message": "again"})).await;
    assert_eq!(after.status, 404, "an ended session is gone");
    support::eventually_async(
        Duration::from_secs(5),
        "the session scope closes with its session",
        || async { upstream_sessions(&agent).await == 0 },
    )
    .await;
    assert_eq!(
        metric(
            &agent,
            "mcpwatch_gateway_sessions_active",
            &[("mcp_server", "demo")]
        )
        .await,
        0.0
    );
    assert_eq!(
        metric(
            &agent,
            "mcpwatch_gateway_sessions_closed_total",
            &[("reason", "deleted")]
        )
        .await,
        1.0
    );
    assert_eq!(client.delete().await, 404, "a second DELETE finds nothing");
}

#[tokio::test]
async fn a_named_scope_outlives_session_per_call_clients_and_scopes_stay_apart() {
    let agent = Agent::start(BUILTIN, &[]).await;
    let per_call = |scope: &str| McpHttp::new(url(&agent, "/mcp/demo")).with_scope(scope);
    let mut seen = Vec::new();
    for scope in ["t1", "t1", "t1", "t2", "t1"] {
        let mut client = per_call(scope);
        assert_eq!(client.initialize("2025-11-25", json!({})).await.status, 200);
        seen.push(client.call(1, "counter", json!({})).await.text());
        assert_eq!(client.delete().await, 200);
    }
    assert_eq!(seen, ["1", "2", "3", "1", "4"]);
    // The path form names the same scope.
    let mut by_path = McpHttp::new(url(&agent, "/scopes/t2/mcp/demo"));
    by_path.initialize("2025-11-25", json!({})).await;
    assert_eq!(by_path.call(1, "counter", json!({})).await.text(), "2");
    assert_eq!(
        metric(
            &agent,
            "mcp_client_sessions_opened_total",
            &[("mcp_server", "demo")]
        )
        .await,
        2.0,
        "two named scopes, two upstream sessions, whatever the downstream sessions"
    );
    assert_eq!(
        upstream_sessions(&agent).await,
        2,
        "named scopes outlive DELETE"
    );
    // Sources that disagree: -32602.
    let clash = by_path
        .clone()
        .with_scope("t1")
        .call(2, "counter", json!({}))
        .await;
    assert_eq!(
        clash.answer()["error"]["code"],
        -32602,
        "{:?}",
        clash.messages
    );
    let meta = by_path
        .request(
            3,
            "tools/call",
            json!({"name": "counter", "_meta": {"mcpwatch/scope": "t9"}}),
        )
        .await;
    assert_eq!(meta.answer()["error"]["code"], -32602);
    let reserved = per_call("~s:forged").call(4, "counter", json!({})).await;
    assert_eq!(
        reserved.status, 400,
        "no session: refused before the scope is read"
    );
}

#[tokio::test]
async fn the_stateless_revision_needs_no_session() {
    let agent = Agent::start(BUILTIN, &[]).await;
    let client = McpHttp::new(url(&agent, "/mcp/demo")).with_scope("thread-9");
    let discover = client
        .post_raw(
            json!({"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {}})
                .to_string()
                .into_bytes(),
            &[
                ("mcp-protocol-version", "2026-07-28"),
                ("mcp-method", "server/discover"),
            ],
        )
        .await;
    let result = &discover.answer()["result"];
    assert!(
        result["supportedVersions"]
            .as_array()
            .unwrap()
            .contains(&json!("2026-07-28")),
        "{result}"
    );
    assert!(result["capabilities"]["tools"].is_object());
    let call = |name: &'static str, header_name: &'static str| {
        let client = client.clone();
        async move {
            let body = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
                "name": name, "arguments": {},
                "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                          "io.modelcontextprotocol/clientCapabilities": {}}}});
            client
                .post_raw(
                    body.to_string().into_bytes(),
                    &[
                        ("mcp-protocol-version", "2026-07-28"),
                        ("mcp-method", "tools/call"),
                        ("mcp-name", header_name),
                    ],
                )
                .await
        }
    };
    assert_eq!(call("counter", "counter").await.text(), "1");
    assert_eq!(
        call("counter", "counter").await.text(),
        "2",
        "the named scope keeps state"
    );
    let mismatch = call("counter", "echo").await;
    assert_eq!(mismatch.status, 400);
    assert_eq!(mismatch.answer()["error"]["code"], -32020);
    let encoded = call("counter", "=?base64?Y291bnRlcg==?=").await;
    assert_eq!(encoded.text(), "3", "a Base64-wrapped Mcp-Name is decoded");
    let legacy = client.call(3, "counter", json!({})).await;
    assert_eq!(
        legacy.status, 400,
        "a session revision request without a session"
    );
}

#[tokio::test]
async fn hostile_requests_get_clear_errors_and_no_panic() {
    let agent = Agent::start(BUILTIN, &[]).await;
    let mut client = McpHttp::new(url(&agent, "/mcp/demo"));
    client.initialize("2025-06-18", json!({})).await;
    let cases: Vec<(Vec<u8>, u16, i64)> = vec![
        (b"{".to_vec(), 400, -32700),
        (
            format!("{}{}", "[".repeat(500), "]".repeat(500)).into_bytes(),
            400,
            -32700,
        ),
        (
            br#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#.to_vec(),
            400,
            -32600,
        ),
        (
            br#"{"jsonrpc":"2.0","id":{"x":1},"method":"ping"}"#.to_vec(),
            400,
            -32600,
        ),
        (
            format!(
                r#"{{"jsonrpc":"2.0","id":"{}","method":"ping"}}"#,
                "x".repeat(5000)
            )
            .into_bytes(),
            400,
            -32600,
        ),
        (
            br#"{"jsonrpc":"2.0","id":7,"method":"notifications/cancelled"}"#.to_vec(),
            400,
            -32600,
        ),
        (
            br#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#.to_vec(),
            400,
            -32600,
        ),
    ];
    for (body, status, code) in cases {
        let reply = client.post_raw(body.clone(), &[]).await;
        assert_eq!(
            reply.status,
            status,
            "{}",
            String::from_utf8_lossy(&body[..body.len().min(80)])
        );
        assert_eq!(reply.answer()["error"]["code"], code);
    }
    let unknown = client.request(8, "no/such/method", json!({})).await;
    assert_eq!(
        unknown.answer()["error"]["code"],
        -32601,
        "the upstream's own error passes through"
    );
    let no_server = McpHttp::new(url(&agent, "/mcp/nope"))
        .request(1, "ping", json!({}))
        .await;
    assert_eq!(no_server.status, 404);
    let mut forged = client.clone();
    forged.session = Some("A".repeat(40));
    assert_eq!(forged.call(1, "echo", json!({})).await.status, 404);
    let foreign = client
        .post_raw(
            br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#.to_vec(),
            &[("origin", "http://evil.example")],
        )
        .await;
    assert_eq!(foreign.status, 403);
    let rebinding = client
        .post_raw(
            br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#.to_vec(),
            &[("host", "evil.example:80")],
        )
        .await;
    assert_eq!(rebinding.status, 403);
    let huge = client.post_raw(vec![b' '; 5 * 1024 * 1024], &[]).await;
    assert_eq!(huge.status, 413);
    // Batches: only on 2025-03-26, at most 32, duplicates refused.
    let mut old = McpHttp::new(url(&agent, "/mcp/demo"));
    old.initialize("2025-03-26", json!({})).await;
    let batch = json!([
        {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "echo", "arguments": {"message": "a"}}},
        {"jsonrpc": "2.0", "id": 1, "method": "ping"},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "ping"}]);
    let answers = old.post(batch).await;
    let answers = answers.answer().as_array().cloned().unwrap();
    assert_eq!(answers.len(), 3, "{answers:?}");
    assert!(answers.iter().any(|a| a["error"]["code"] == -32600));
    assert!(
        answers
            .iter()
            .any(|a| a["result"]["content"][0]["text"] == "a")
    );
    let too_many: Vec<Value> = (0..33)
        .map(|i| json!({"jsonrpc": "2.0", "id": i, "method": "ping"}))
        .collect();
    assert_eq!(old.post(Value::Array(too_many)).await.status, 400);
    assert_eq!(
        client
            .call(9, "echo", json!({"message": "still"}))
            .await
            .text(),
        "still"
    );
}

#[tokio::test]
async fn runtime_failures_are_typed_errors_and_a_recovered_session_says_so() {
    let config = format!("{}call_timeout = \"300ms\"\n", stdio_demo());
    let agent = Agent::start(&config, &[]).await;
    let mut client = McpHttp::new(url(&agent, "/mcp/demo")).with_scope("r1");
    client.initialize("2025-11-25", json!({})).await;
    let timeout = client.call(1, "sleep", json!({"ms": 2000})).await;
    assert_eq!(
        timeout.answer()["error"]["code"],
        -32001,
        "{:?}",
        timeout.messages
    );
    assert_eq!(timeout.error_type(), "timeout");
    assert_eq!(timeout.answer()["error"]["data"]["may_have_run"], true);
    assert_eq!(timeout.answer()["error"]["data"]["server"], "demo");
    let failed = client.call(2, "fail", json!({"message": "no"})).await;
    assert_eq!(
        failed.answer()["result"]["isError"],
        true,
        "isError results pass through"
    );
    assert_eq!(client.call(3, "counter", json!({})).await.text(), "1");
    let crashed = client.call(4, "crash", json!({})).await;
    assert_eq!(
        crashed.error_type(),
        "transport_closed",
        "{:?}",
        crashed.messages
    );
    assert_eq!(crashed.answer()["error"]["code"], -32010);
    let next = client.call(5, "counter", json!({})).await;
    assert_eq!(
        next.text(),
        "1",
        "a fresh upstream session: {:?}",
        next.messages
    );
    assert_eq!(
        next.answer()["result"]["_meta"]["mcpwatch/session_recovered"],
        true,
        "{:?}",
        next.messages
    );
    let after = client.call(6, "counter", json!({})).await;
    assert!(
        after.answer()["result"]["_meta"]
            .get("mcpwatch/session_recovered")
            .is_none()
    );
}

#[tokio::test]
async fn cancellation_reaches_exactly_the_named_upstream_request() {
    let agent = Agent::start(&stdio_demo(), &[]).await;
    let mut client = McpHttp::new(url(&agent, "/mcp/demo")).with_scope("c1");
    client.initialize("2025-11-25", json!({})).await;
    // notifications/cancelled names request 7 while 8 runs too.
    let slow = |id: i64| {
        let client = client.clone();
        tokio::spawn(async move { client.call(id, "sleep", json!({"ms": 3000})).await })
    };
    let (seven, eight) = (slow(7), slow(8));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ack = client
        .post(json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 7}}))
        .await;
    assert_eq!(ack.status, 202);
    let started = Instant::now();
    let seven = seven.await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(2), "7 ends at once");
    assert_eq!(seven.error_type(), "cancelled", "{:?}", seven.messages);
    assert_eq!(
        eight.await.unwrap().text(),
        "slept 3000 ms",
        "8 runs to the end"
    );
    let stats: Value =
        serde_json::from_str(&client.call(9, "stats", json!({})).await.text()).unwrap();
    assert_eq!(
        stats["cancelled"], 1,
        "the upstream saw exactly one cancellation: {stats}"
    );

    // A client that hangs up mid-call (2025-11-25, SSE answer) cancels its request.
    let hang_up = client.clone();
    let call = tokio::spawn(async move { hang_up.call(10, "sleep", json!({"ms": 5000})).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    call.abort();
    support::eventually_async(
        Duration::from_secs(5),
        "the upstream sees the disconnect as cancellation",
        || async {
            let stats = client.call(11, "stats", json!({})).await.text();
            serde_json::from_str::<Value>(&stats).unwrap()["cancelled"] == 2
        },
    )
    .await;
    // The dropped request settled its record (`cancelled`) and left the session's
    // in-flight map: its id can be used again.
    let dropped = metric(
        &agent,
        "mcp_server_operation_duration_seconds_count",
        &[
            ("mcp_method_name", "tools/call"),
            ("error_type", "cancelled"),
            ("gen_ai_tool_name", "sleep"),
        ],
    )
    .await;
    assert!(
        dropped >= 2.0,
        "notification-cancelled and dropped requests recorded: {dropped}"
    );
    assert_eq!(
        client
            .call(10, "echo", json!({"message": "again"}))
            .await
            .text(),
        "again"
    );
}

#[tokio::test]
async fn sessions_that_never_delete_end_by_idle_timeout_and_everything_returns() {
    let config = format!(
        "[pool]\nmax_sessions = 2500\n{BUILTIN}max_sessions = 2500\n[gateway]\nsession_idle_ttl = \"2s\"\nmax_sessions = 2500\n"
    );
    let agent = Agent::start(&config, &[]).await;
    // No keep-alive: the client's own connections must not count as the agent's fds.
    let base = McpHttp::new(url(&agent, "/mcp/demo")).without_keepalive();
    let fds_before = support::fds_of(agent.child.id());
    let answers: Vec<String> = futures::stream::iter(0..2000)
        .map(|_| {
            let mut client = base.clone();
            async move {
                // A session idle past the TTL between two requests (a loaded
                // machine) is gone: like any client, start a new one.
                let mut reply = None;
                for _ in 0..5 {
                    client.initialize_lenient("2025-11-25").await;
                    let answer = client.call(1, "echo", json!({"message": "x"})).await;
                    if answer.status != 404 {
                        reply = Some(answer);
                        break;
                    }
                }
                let reply = reply.expect("a session within five tries");
                match reply.text().as_str() {
                    "x" => "x".to_owned(),
                    _ => format!("{} {:?}", reply.status, reply.messages),
                }
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let failed: Vec<&String> = answers.iter().filter(|t| *t != "x").collect();
    assert!(
        failed.is_empty(),
        "{} failed, e.g. {:?}",
        failed.len(),
        failed.first()
    );
    support::eventually_async(
        Duration::from_secs(30),
        "every session idles out",
        || async { metric(&agent, "mcpwatch_gateway_sessions_active", &[]).await == 0.0 },
    )
    .await;
    let idled = metric(
        &agent,
        "mcpwatch_gateway_sessions_closed_total",
        &[("reason", "idle_timeout")],
    )
    .await;
    assert!(
        idled >= 2000.0,
        "every session ended by idle timeout: {idled}"
    );
    support::eventually_async(
        Duration::from_secs(20),
        "their session scopes close upstream",
        || async { upstream_sessions(&agent).await == 0 },
    )
    .await;
    support::eventually(Duration::from_secs(10), "fds return to baseline", || {
        support::fds_of(agent.child.id()) <= fds_before + 5
    })
    .await;
}

#[tokio::test]
async fn past_max_sessions_initialize_gets_503() {
    let agent = Agent::start(&format!("{BUILTIN}[gateway]\nmax_sessions = 2\n"), &[]).await;
    let mut clients = Vec::new();
    for _ in 0..2 {
        let mut client = McpHttp::new(url(&agent, "/mcp/demo"));
        assert_eq!(client.initialize("2025-11-25", json!({})).await.status, 200);
        clients.push(client);
    }
    let mut third = McpHttp::new(url(&agent, "/mcp/demo"));
    assert_eq!(third.initialize("2025-11-25", json!({})).await.status, 503);
    assert_eq!(clients[0].delete().await, 200);
    assert_eq!(third.initialize("2025-11-25", json!({})).await.status, 200);
}

#[tokio::test]
async fn the_gateway_keeps_the_token_and_refuses_when_off() {
    let agent = Agent::start(&format!("[agent]\ntoken = \"s3cret\"\n{BUILTIN}"), &[]).await;
    let mut client = McpHttp::new(url(&agent, "/mcp/demo"));
    assert_eq!(client.initialize("2025-11-25", json!({})).await.status, 401);
    client
        .headers
        .push(("authorization".into(), "Bearer s3cret".into()));
    assert_eq!(client.initialize("2025-11-25", json!({})).await.status, 200);
    let off = Agent::start(&format!("{BUILTIN}[gateway]\nenabled = false\n"), &[]).await;
    let mut client = McpHttp::new(url(&off, "/mcp/demo"));
    assert_eq!(client.initialize("2025-11-25", json!({})).await.status, 404);
}

#[tokio::test]
async fn set_level_is_per_session_and_get_opens_a_stream_only_with_a_session() {
    let agent = Agent::start(BUILTIN, &[]).await;
    let mut client = McpHttp::new(url(&agent, "/mcp/demo")).with_scope("logs");
    client.initialize("2025-11-25", json!({})).await;
    let level = client
        .request(1, "logging/setLevel", json!({"level": "warning"}))
        .await;
    assert_eq!(level.answer()["result"], json!({}));
    let bad = client
        .request(2, "logging/setLevel", json!({"level": "loud"}))
        .await;
    assert_eq!(bad.answer()["error"]["code"], -32602);
    let get = client
        .http
        .get(&client.url)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", client.session.clone().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 200);
    assert!(
        get.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let no_session = client.http.get(&client.url).send().await.unwrap();
    assert_eq!(no_session.status(), 405);
}

#[tokio::test]
async fn results_errors_and_meta_pass_through_unchanged_with_fields_mcpwatch_does_not_know() {
    let script = support::root().join("tests/servers/extra_fields_server.py");
    let config = format!(
        "[servers.vendor]\ntransport = \"stdio\"\ncommand = \"python3\"\nargs = [\"{}\"]\n",
        script.display()
    );
    let agent = Agent::start(&config, &[]).await;
    let mut client = McpHttp::new(url(&agent, "/mcp/vendor")).with_scope("f1");
    client.initialize("2025-11-25", json!({})).await;
    let call = client.call(1, "vendor_tool", json!({})).await;
    assert_eq!(
        call.answer()["result"],
        json!({
            "content": [{"type": "text", "text": "hi", "vendorAnnotation": {"x": 1}}],
            "isError": false,
            "vendorField": {"kept": true, "list": [1, 2.5, "three"]},
            "_meta": {"vendor.example/trace": "abc", "progressToken": "not-ours"},
        }),
        "the result exactly as the server sent it"
    );
    let list = client.request(2, "tools/list", json!({})).await;
    assert_eq!(list.answer()["result"]["vendorListField"], 7);
    assert_eq!(list.answer()["result"]["tools"][0]["vendorHint"], "extra");
    let read = client
        .request(3, "resources/read", json!({"uri": "vendor://a"}))
        .await;
    assert_eq!(
        read.answer()["result"]["contents"][0]["vendorBlob"],
        json!([1])
    );
    assert_eq!(read.answer()["result"]["vendorTop"], true);
    let error = client.request(4, "vendor/unknown", json!({})).await;
    assert_eq!(
        error.answer()["error"],
        json!({"code": -32042, "message": "vendor failure", "data": {"vendorCode": "E42", "retry": false}}),
        "an upstream JSON-RPC error passes through with its code, message and data"
    );
}

#[tokio::test]
async fn the_aggregate_endpoint_prefixes_merges_routes_and_leaves_a_dead_server_out() {
    let everything = support::everything_js();
    let config = format!(
        "{BUILTIN}[servers.twin]\ntransport = \"builtin\"\n\
         [servers.dead]\ntransport = \"stdio\"\ncommand = \"/nonexistent/mcp-server\"\n\
         [servers.every]\ntransport = \"stdio\"\ncommand = \"node\"\nargs = [\"{}\", \"stdio\"]\n",
        everything.display()
    );
    let agent = Agent::start(&config, &[]).await;
    let mut client = McpHttp::new(url(&agent, "/mcp")).with_scope("agg");
    let init = client.initialize("2025-11-25", json!({})).await;
    let result = &init.answer()["result"];
    assert_eq!(result["serverInfo"]["name"], "mcpwatch");
    assert_eq!(
        result["capabilities"]["tools"]["listChanged"], true,
        "{result}"
    );

    let tools = client.request(1, "tools/list", json!({})).await;
    let names: Vec<String> = tools.answer()["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("{:?}", tools.messages))
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect();
    for name in [
        "demo__echo",
        "twin__echo",
        "demo__counter",
        "twin__counter",
        "every__get-sum",
    ] {
        assert!(names.contains(&name.to_owned()), "{name} not in {names:?}");
    }
    assert!(names.iter().all(|n| !n.starts_with("dead__")));
    let unique: std::collections::HashSet<&String> = names.iter().collect();
    assert_eq!(unique.len(), names.len(), "no two equal names");
    assert!(names.iter().all(|n| {
        n.len() <= 64
            && n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    }));
    let warned = tools.messages.iter().any(|m| {
        m["method"] == "notifications/message"
            && m["params"]["data"]
                .as_str()
                .is_some_and(|d| d.contains("dead"))
    });
    assert!(
        warned,
        "the dead server is named in a log notification: {:?}",
        tools.messages
    );

    // Two servers with the same tools are told apart: each keeps its own state.
    assert_eq!(client.call(2, "demo__counter", json!({})).await.text(), "1");
    assert_eq!(client.call(3, "demo__counter", json!({})).await.text(), "2");
    assert_eq!(client.call(4, "twin__counter", json!({})).await.text(), "1");
    assert_eq!(
        client
            .call(5, "every__get-sum", json!({"a": 2, "b": 3}))
            .await
            .text(),
        "The sum of 2 and 3 is 5."
    );
    let unknown = client.call(6, "nobody__echo", json!({})).await;
    assert_eq!(unknown.answer()["error"]["code"], -32602);

    // Resources and templates route back to the server that listed them.
    let resources = client.request(7, "resources/list", json!({})).await;
    let first = resources.answer()["result"]["resources"][0]["uri"]
        .as_str()
        .unwrap()
        .to_owned();
    let read = client
        .request(8, "resources/read", json!({"uri": first}))
        .await;
    assert!(
        read.answer()["result"]["contents"].is_array(),
        "{:?}",
        read.messages
    );
    let templates = client
        .request(9, "resources/templates/list", json!({}))
        .await;
    assert!(
        !templates.answer()["result"]["resourceTemplates"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let prompts = client.request(10, "prompts/list", json!({})).await;
    let prompt = prompts.answer()["result"]["prompts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "every__simple-prompt")
        .cloned()
        .unwrap_or_else(|| panic!("{:?}", prompts.messages));
    let got = client
        .request(11, "prompts/get", json!({"name": prompt["name"]}))
        .await;
    assert!(
        got.answer()["result"]["messages"].is_array(),
        "{:?}",
        got.messages
    );
    // The dead server leaves the others usable, and a dead one named directly fails typed.
    let direct = client.call(12, "dead__anything", json!({})).await;
    assert!(
        ["connect_failed", "breaker_open"].contains(&direct.error_type().as_str()),
        "{:?}",
        direct.messages
    );
    assert_eq!(direct.answer()["error"]["data"]["may_have_run"], false);
    assert_eq!(
        client
            .call(13, "twin__echo", json!({"message": "ok"}))
            .await
            .text(),
        "ok"
    );
}

#[tokio::test]
async fn a_server_reached_later_announces_itself_to_the_aggregate_sessions() {
    let port = support::free_port();
    let config = format!(
        "{BUILTIN}[servers.late]\ntransport = \"http\"\nurl = \"http://127.0.0.1:{port}/mcp\"\n"
    );
    let agent = Agent::start(&config, &[]).await;
    // The first session: `late` is down, initialize does not wait on it.
    let mut first = McpHttp::new(url(&agent, "/mcp"));
    let started = Instant::now();
    assert_eq!(first.initialize("2025-11-25", json!({})).await.status, 200);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "never waits on a dead server"
    );
    tokio::time::sleep(Duration::from_millis(500)).await; // the background attempts end
    let mut stream = first
        .http
        .get(&first.url)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", first.session.clone().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    // `late` comes up; the next initialize reaches it in the background.
    let _late = support::HttpDemo::start_at(format!("127.0.0.1:{port}").parse().unwrap()).await;
    let mut second = McpHttp::new(url(&agent, "/mcp"));
    assert_eq!(second.initialize("2025-11-25", json!({})).await.status, 200);
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !seen.contains("notifications/tools/list_changed") && Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(1), stream.chunk()).await {
            Ok(Ok(Some(chunk))) => seen.push_str(&String::from_utf8_lossy(&chunk)),
            Ok(_) => break,
            Err(_) => {}
        }
    }
    assert!(seen.contains("notifications/tools/list_changed"), "{seen}");
    let tools = first.request(1, "tools/list", json!({})).await;
    let listed = tools.answer()["result"]["tools"].to_string();
    assert!(
        listed.contains("late__echo") && listed.contains("demo__echo"),
        "{listed}"
    );
}

#[tokio::test]
async fn each_request_is_a_server_span_parented_on_the_clients_traceparent() {
    use support::receivers::{Behaviour, OtlpReceiver, attr};
    let receiver = OtlpReceiver::start(Behaviour::Answer).await;
    let config = format!(
        "{BUILTIN}[telemetry.otlp]\nendpoint = \"{}\"\n",
        receiver.endpoint
    );
    let mut agent = Agent::start(&config, &[]).await;
    let mut client = McpHttp::new(url(&agent, "/mcp/demo")).with_scope("traced");
    client.initialize("2025-11-25", json!({})).await;
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent = "00f067aa0ba902b7";
    let seen = client
        .request(
            1,
            "tools/call",
            json!({"name": "traceparent", "arguments": {},
            "_meta": {"traceparent": format!("00-{trace}-{parent}-01")}}),
        )
        .await
        .text();
    assert!(
        seen.contains(trace),
        "the upstream got the same trace: {seen}"
    );
    assert!(
        !seen.contains(parent),
        "and the gateway's own span as parent: {seen}"
    );
    agent.terminate();
    assert_eq!(agent.wait_exit(Duration::from_secs(15)).await, Some(0));
    let spans = receiver.spans();
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let server = spans
        .iter()
        .find(|s| s.name == "tools/call traceparent" && s.kind == 2)
        .unwrap_or_else(|| {
            panic!(
                "no SERVER span in {:?}",
                spans.iter().map(|s| &s.name).collect::<Vec<_>>()
            )
        });
    assert_eq!(hex(&server.trace_id), trace);
    assert_eq!(
        hex(&server.parent_span_id),
        parent,
        "a child of the client's span"
    );
    assert_eq!(attr(server, "client.address"), "127.0.0.1");
    assert_eq!(
        attr(server, "mcp.session.id"),
        client.session.clone().unwrap()
    );
    let upstream = spans
        .iter()
        .find(|s| s.name == "tools/call traceparent" && s.kind == 3)
        .expect("the upstream CLIENT span");
    assert_eq!(
        upstream.parent_span_id, server.span_id,
        "the SERVER span parents the upstream call"
    );
    assert!(
        seen.contains(&hex(&upstream.span_id)),
        "the server saw the CLIENT span: {seen}"
    );
}
