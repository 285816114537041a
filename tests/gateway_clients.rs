//! Gateway mode (DESIGN §10) with unmodified SDK clients: the drivers of
//! tests/gateway_clients/ (see the README there) run as subprocesses against
//! a real agent, each printing one JSON object, asserted here:
//! - the mcp 2.x `Client` (py2_client.py) in both connect modes: `legacy`
//!   (initialize, a downstream session) and `auto`, which speaks 2026-07-28
//!   since the gateway answers `server/discover`;
//! - the mcp 1.x `ClientSession` (py1_client.py, both HTTP helpers) and the
//!   TypeScript SDK (ts_client.mjs): sessions, a named scope across them, DELETE;
//! - py2's `everything` scenario against server-everything over stdio: every
//!   tool, resource and prompt, progress, sampling and elicitation answered by
//!   the downstream client, `list_changed` and `resources/updated` reaching it;
//! - langchain-mcp-adapters with LangGraph (langgraph_threads.py): one upstream
//!   session per thread with the scope interceptor, a fresh one per call without.
//!
//! Every driver runs bounded ([`DRIVER_LIMIT`]) and is killed past it. The
//! conformance suite's server scenarios through the gateway run in
//! tests/conformance.rs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use support::Agent;

/// Longest one driver may run; past it, it is killed.
const DRIVER_LIMIT: Duration = Duration::from_secs(60);

/// The drivers' own `--timeout` (seconds for the whole scenario), below the limit.
const DRIVER_TIMEOUT: &str = "40";

const BUILTIN: &str = "[servers.demo]\ntransport = \"builtin\"\n";

fn stdio_demo() -> String {
    format!(
        "[servers.demo]\ntransport = \"stdio\"\ncommand = \"{}\"\nargs = [\"demo-server\", \"--stdio\"]\n",
        support::mcpwatch_bin()
    )
}

fn everything_over_stdio() -> String {
    format!(
        "[servers.every]\ntransport = \"stdio\"\ncommand = \"node\"\nargs = [\"{}\", \"stdio\"]\n",
        support::everything_js().display()
    )
}

/// A path under the repository root that scripts/install-test-deps.sh installs.
fn installed(relative: &str) -> PathBuf {
    let path = support::root().join(relative);
    assert!(
        path.exists(),
        "{} is missing: run scripts/install-test-deps.sh first",
        path.display()
    );
    path
}

/// The Python with mcp 1.x, langchain-mcp-adapters and LangGraph.
fn mcp1_python() -> PathBuf {
    installed(".test-deps/venv-mcp1/bin/python")
}

/// What a driver printed, and how it ended.
struct Run {
    code: Option<i32>,
    /// The last stdout line (one JSON object); `null` when there is none.
    json: Value,
    stderr: String,
}

impl Run {
    /// The JSON of a driver that succeeded.
    fn ok(self) -> Value {
        assert_eq!(
            self.code,
            Some(0),
            "the driver failed: {}\n{}",
            self.json,
            self.stderr
        );
        self.json
    }
}

/// Runs `program script --url URL ARGS` from the repository root; killed when
/// it runs past [`DRIVER_LIMIT`] (the output future, which owns it, is dropped).
async fn drive(program: &OsStr, script: &str, url: &str, args: &[&str]) -> Run {
    let mut command = tokio::process::Command::new(program);
    command
        .arg(script)
        .args(["--url", url, "--timeout", DRIVER_TIMEOUT])
        .args(args)
        .current_dir(support::root())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(DRIVER_LIMIT, command.output())
        .await
        .unwrap_or_else(|_| panic!("{script} {args:?} ran longer than {DRIVER_LIMIT:?}"))
        .expect("cannot start the driver");
    let stdout = String::from_utf8_lossy(&output.stdout);
    Run {
        code: output.status.code(),
        json: stdout
            .lines()
            .last()
            .and_then(|line| serde_json::from_str(line).ok())
            .unwrap_or(Value::Null),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

async fn py2(url: &str, args: &[&str]) -> Run {
    let python = support::python();
    drive(
        python.as_os_str(),
        "tests/gateway_clients/py2_client.py",
        url,
        args,
    )
    .await
}

async fn py1(url: &str, args: &[&str]) -> Run {
    let python = mcp1_python();
    drive(
        python.as_os_str(),
        "tests/gateway_clients/py1_client.py",
        url,
        args,
    )
    .await
}

async fn ts(url: &str, args: &[&str]) -> Run {
    installed(".test-deps/node-sdk/node_modules/@modelcontextprotocol/sdk/package.json");
    drive(
        OsStr::new("node"),
        "tests/gateway_clients/ts_client.mjs",
        url,
        args,
    )
    .await
}

async fn langgraph(url: &str, args: &[&str]) -> Run {
    let python = mcp1_python();
    let mut all = vec!["--scenario", "threads"];
    all.extend_from_slice(args);
    drive(
        python.as_os_str(),
        "tests/gateway_clients/langgraph_threads.py",
        url,
        &all,
    )
    .await
}

/// The scopes of the live upstream sessions, sorted.
async fn upstream_scopes(agent: &Agent) -> Vec<String> {
    let body = agent.get("/v1/sessions", &[]).await.1;
    let mut scopes: Vec<String> = body["sessions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["scope"].as_str().map(str::to_owned))
        .collect();
    scopes.sort();
    scopes
}

/// Waits (bounded) until the live upstream sessions are those of `scopes`.
async fn upstream_scopes_become(agent: &Agent, scopes: &[&str]) {
    support::eventually_async(
        Duration::from_secs(5),
        &format!("the upstream sessions are those of {scopes:?}"),
        move || async move { upstream_scopes(agent).await == scopes },
    )
    .await;
}

/// Upstream sessions `server` opened so far.
async fn sessions_opened(agent: &Agent, server: &str) -> f64 {
    agent
        .metric(
            "mcp_client_sessions_opened_total",
            &[("mcp_server", server), ("outcome", "ok")],
        )
        .await
}

/// Requests of server `every` of `method` (sampling, elicitation) answered with `outcome`.
async fn server_requests(agent: &Agent, method: &str, outcome: &str) -> f64 {
    agent
        .metric(
            "mcp_client_server_requests_total",
            &[
                ("mcp_server", "every"),
                ("mcp_method_name", method),
                ("outcome", outcome),
            ],
        )
        .await
}

/// Waits (bounded) until no downstream session is open: every driver ends its own.
async fn downstream_sessions_end(agent: &Agent) {
    support::eventually_async(
        Duration::from_secs(5),
        "every downstream session ends",
        move || async move { agent.metric("mcpwatch_gateway_sessions_active", &[]).await == 0.0 },
    )
    .await;
}

#[tokio::test]
async fn an_mcp2_client_keeps_state_per_session_and_per_named_scope_in_both_modes() {
    let agent = Agent::start(BUILTIN, &[]).await;
    let url = format!("{}/mcp/demo", agent.api);

    // legacy: initialize, a downstream session, which is the scope when no other is named.
    let basic = py2(&url, &["--scenario", "basic", "--mode", "legacy"])
        .await
        .ok();
    assert_eq!(basic["protocol_version"], "2025-11-25", "{basic}");
    assert_eq!(basic["server_name"], "mcpwatch/demo");
    assert_eq!(basic["echo"], "hello gateway");
    assert!(
        basic["tools"]
            .as_array()
            .unwrap()
            .contains(&json!("counter")),
        "{basic}"
    );
    assert_eq!(basic["counter"], json!([1, 2]), "one session, one state");
    let next = py2(&url, &["--scenario", "counter", "--mode", "legacy"])
        .await
        .ok();
    assert_eq!(next["counter"], 1, "a new session starts a new state");

    // A named scope outlives each client's session.
    let named = py2(
        &url,
        &["--scenario", "basic", "--mode", "legacy", "--scope", "s1"],
    )
    .await
    .ok();
    assert_eq!(named["counter"], json!([1, 2]));
    let later = py2(
        &url,
        &["--scenario", "counter", "--mode", "legacy", "--scope", "s1"],
    )
    .await
    .ok();
    assert_eq!(later["counter"], 3, "the scope kept its state");

    // auto: 2026-07-28, no session; the named scope keeps the state.
    let stateless = py2(
        &url,
        &["--scenario", "basic", "--mode", "auto", "--scope", "a1"],
    )
    .await
    .ok();
    assert_eq!(stateless["protocol_version"], "2026-07-28", "{stateless}");
    assert_eq!(stateless["server_name"], "mcpwatch/demo");
    assert_eq!(stateless["echo"], "hello gateway");
    assert_eq!(stateless["counter"], json!([1, 2]));
    let stateless_later = py2(
        &url,
        &["--scenario", "counter", "--mode", "auto", "--scope", "a1"],
    )
    .await
    .ok();
    assert_eq!(stateless_later["counter"], 3);
    // Without a named scope, 2026-07-28 clients share `default`.
    let first = py2(&url, &["--scenario", "counter", "--mode", "auto"])
        .await
        .ok();
    let second = py2(&url, &["--scenario", "counter", "--mode", "auto"])
        .await
        .ok();
    assert_eq!(
        (&first["counter"], &second["counter"]),
        (&json!(1), &json!(2))
    );

    downstream_sessions_end(&agent).await;
    upstream_scopes_become(&agent, &["a1", "default", "s1"]).await;
    assert_eq!(
        sessions_opened(&agent, "demo").await,
        5.0,
        "two session scopes, s1, a1 and default"
    );
}

#[tokio::test]
async fn mcp1_and_typescript_clients_share_a_named_scope_across_their_sessions() {
    let agent = Agent::start(BUILTIN, &[]).await;
    let url = format!("{}/mcp/demo", agent.api);
    for run in [
        py1(&url, &["--scenario", "basic"]).await,
        ts(&url, &["--scenario", "basic"]).await,
    ] {
        let basic = run.ok();
        assert_eq!(basic["protocol_version"], "2025-11-25", "{basic}");
        assert_eq!(basic["server_name"], "mcpwatch/demo");
        assert_eq!(basic["echo"], "hello gateway");
        assert_eq!(basic["counter"], json!([1, 2]), "{basic}");
        assert_eq!(
            basic["session_id"].as_str().map(str::len),
            Some(40),
            "the gateway's Mcp-Session-Id: {basic}"
        );
    }

    // One scope, four sessions, two SDKs, three ways to send the header, and the path form.
    let by_scope = format!("{}/scopes/k/mcp/demo", agent.api);
    let counters = [
        py1(&url, &["--scenario", "counter", "--scope", "k"]).await,
        py1(
            &url,
            &[
                "--scenario",
                "counter",
                "--scope",
                "k",
                "--helper",
                "streamablehttp_client",
            ],
        )
        .await,
        ts(&url, &["--scenario", "counter", "--scope", "k"]).await,
        ts(&by_scope, &["--scenario", "counter"]).await,
    ]
    .map(|run| run.ok()["counter"].clone());
    assert_eq!(counters, [json!(1), json!(2), json!(3), json!(4)]);

    downstream_sessions_end(&agent).await;
    upstream_scopes_become(&agent, &["k"]).await;
    assert_eq!(
        sessions_opened(&agent, "demo").await,
        3.0,
        "two session scopes and k"
    );
}

#[tokio::test]
async fn server_everything_over_stdio_serves_every_feature_to_an_mcp2_client() {
    let agent = Agent::start(&everything_over_stdio(), &[]).await;
    let url = format!("{}/mcp/every", agent.api);
    let run = py2(&url, &["--scenario", "everything", "--mode", "legacy"]).await;
    let result = &run.json;
    assert_eq!(result["protocol_version"], "2025-11-25", "{}", run.stderr);
    assert_eq!(result["server_name"], "mcpwatch/every");

    // Results pass through whole (raw over stdio): the client sees
    // simulate-research-query's `execution.taskSupport = "required"` and skips
    // it, as it does directly.
    assert_eq!(run.code, Some(0), "{}\n{}", result["failures"], run.stderr);
    assert!(
        !result["tools"]["simulate-research-query"]["skipped"].is_null(),
        "{}",
        result["tools"]
    );

    // Every other tool answered without error; the sampling and elicitation
    // tools' answers carry the client's canned replies (the driver checks them).
    let listed: Vec<&str> = result["tools_listed"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for tool in [
        "echo",
        "get-annotated-message",
        "get-env",
        "get-resource-links",
        "get-resource-reference",
        "get-structured-content",
        "get-sum",
        "get-tiny-image",
        "gzip-file-as-resource",
        "toggle-simulated-logging",
        "toggle-subscriber-updates",
        "trigger-long-running-operation",
        "trigger-sampling-request",
        "trigger-elicitation-request",
    ] {
        assert!(listed.contains(&tool), "{tool} not in {listed:?}");
        assert_eq!(result["tools"][tool]["is_error"], false, "{tool}: {result}");
    }
    // mcpwatch's upstream session declares sampling and both elicitation modes
    // (so server-everything offers its URL elicitation), but no roots: it has
    // none of its own, and one pooled session serves clients with and without.
    assert!(listed.contains(&"trigger-url-elicitation"), "{listed:?}");
    assert!(!listed.contains(&"get-roots-list"), "{listed:?}");
    assert_eq!(result["roots_requests"], 0);

    for kind in ["resources", "resource_templates"] {
        let listed = result[kind]["listed"].as_u64().unwrap();
        assert!(listed > 0, "{kind}: {result}");
        assert_eq!(result[kind]["read"], listed, "every one of the {kind} read");
    }
    let prompts = result["prompts"].as_object().unwrap();
    assert_eq!(prompts.len(), 4, "{prompts:?}");
    assert!(prompts.values().all(|p| p["messages"].as_u64() > Some(0)));
    assert!(
        !result["completions"]["department"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    assert_eq!(
        result["progress"],
        json!([[1.0, 3.0], [2.0, 3.0], [3.0, 3.0]]),
        "trigger-long-running-operation's progress, under the client's token"
    );
    assert_eq!(result["sampling_requests"], 1);
    assert_eq!(result["elicitation_requests"], 2, "form and URL");
    for (method, forwarded) in [("sampling/createMessage", 1.0), ("elicitation/create", 2.0)] {
        assert_eq!(
            server_requests(&agent, method, "forwarded").await,
            forwarded,
            "{method} went to the downstream client"
        );
        assert_eq!(
            server_requests(&agent, method, "decline").await,
            0.0,
            "{method} was not left to the server's policy"
        );
    }
    assert!(result["log_messages"].as_u64() >= Some(1), "{result}");
    assert_eq!(result["resource_updated"], true);
    assert_eq!(
        result["list_changed"]["resources"], true,
        "gzip-file-as-resource's list_changed reached the client"
    );
    assert_eq!(result["session_resource_read"], true);

    downstream_sessions_end(&agent).await;
}

#[tokio::test]
async fn langgraph_threads_get_one_upstream_session_each_with_the_scope_interceptor() {
    let agent = Agent::start(&stdio_demo(), &[]).await;
    let url = format!("{}/mcp/demo", agent.api);

    let with = langgraph(&url, &["--interceptor"]).await.ok();
    assert_eq!(with["t1"], json!([1, 2, 3]), "{with}");
    assert_eq!(with["t2"], json!([1, 2, 3]), "{with}");
    assert_eq!(
        with["scopes_sent"],
        json!({"t1": ["t1", "t1", "t1"], "t2": ["t2", "t2", "t2"]})
    );
    assert!(
        with["tools"]
            .as_array()
            .unwrap()
            .contains(&json!("counter")),
        "{with}"
    );
    // get_tools() lists the tools in a session of its own, scoped by that
    // session: one upstream session. The six tool calls opened exactly two.
    let opened = sessions_opened(&agent, "demo").await;
    assert_eq!(opened - 1.0, 2.0, "one upstream session per thread");
    upstream_scopes_become(&agent, &["t1", "t2"]).await;

    // Without the interceptor no scope is named: each call's downstream session
    // is its scope (DESIGN §10), so every call starts on a fresh upstream
    // session, as directly against the server. The threads do not share
    // `default`: that is the scope of 2026-07-28 requests only.
    let without = langgraph(&url, &[]).await.ok();
    assert_eq!(without["t1"], json!([1, 1, 1]), "{without}");
    assert_eq!(without["t2"], json!([1, 1, 1]), "{without}");
    assert_eq!(
        without["scopes_sent"],
        json!({"t1": [null, null, null], "t2": [null, null, null]})
    );
    assert_eq!(
        sessions_opened(&agent, "demo").await - opened,
        7.0,
        "get_tools() and each of the six calls: a session scope each"
    );
    downstream_sessions_end(&agent).await;
    upstream_scopes_become(&agent, &["t1", "t2"]).await;
}

/// The aggregate endpoint `/mcp`: the mcp 2.x client (both modes) and
/// langchain-mcp-adapters see every server's tools as `{server}__{name}` and
/// call them; two servers with the same tools are told apart.
#[tokio::test]
async fn clients_see_and_call_every_servers_tools_on_the_aggregate_endpoint() {
    let config = format!("{BUILTIN}[servers.twin]\ntransport = \"builtin\"\n");
    let agent = Agent::start(&config, &[]).await;
    let url = format!("{}/mcp", agent.api);
    for (mode, prefix) in [("legacy", "demo__"), ("auto", "twin__")] {
        let run = py2(
            &url,
            &[
                "--scenario",
                "basic",
                "--mode",
                mode,
                "--scope",
                "agg",
                "--tool-prefix",
                prefix,
            ],
        )
        .await
        .ok();
        assert_eq!(run["server_name"], "mcpwatch", "{run}");
        assert_eq!(run["counter"], json!([1, 2]), "{mode}: {run}");
        for tool in ["demo__echo", "twin__echo", "demo__counter", "twin__counter"] {
            assert!(
                run["tools"].as_array().unwrap().contains(&json!(tool)),
                "{tool}: {run}"
            );
        }
    }
    // Same scope, other server's counter: its own state, 1 again; demo's goes on.
    let again = py2(
        &url,
        &[
            "--scenario",
            "counter",
            "--scope",
            "agg",
            "--tool-prefix",
            "demo__",
        ],
    )
    .await
    .ok();
    assert_eq!(again["counter"], 3, "{again}");
    let graph = langgraph(&url, &["--interceptor", "--tool-prefix", "twin__"])
        .await
        .ok();
    assert_eq!(graph["t1"], json!([1, 2, 3]), "{graph}");
    assert_eq!(graph["t2"], json!([1, 2, 3]), "{graph}");
    downstream_sessions_end(&agent).await;
}
