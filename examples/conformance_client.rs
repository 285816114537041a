//! The client under test of the MCP conformance suite
//! (`@modelcontextprotocol/conformance`), driven by `scripts/conformance.sh`.
//!
//! The suite runs `conformance_client <scenario URL>` with `MCP_CONFORMANCE_SCENARIO`
//! set (and `MCP_CONFORMANCE_CONTEXT`, a JSON object, for auth scenarios). Every
//! request goes through the mcpwatch runtime (pooled session, deadlines,
//! policies, OAuth), so the suite tests mcpwatch, not rmcp alone. The verdict
//! comes from the checks the scenario's server records; the exit status only
//! says whether this client thinks it got through.
//!
//! ```bash
//! cargo build --release --example conformance_client
//! scripts/conformance.sh core
//! ```
#![allow(clippy::print_stderr)]

use std::process::ExitCode;
use std::time::Duration;

use mcpwatch::config::{
    ElicitationPolicy, JwtAlgorithm, OAuthConfig, OAuthGrant, Secret, ServerConfig,
};
use mcpwatch::{CallOptions, Config, Runtime};
use serde_json::{Value, json};

/// The configured name of the scenario's server.
const SERVER: &str = "conformance";

/// The client ID metadata document the suite's authorization servers expect (SEP-991).
const CLIENT_METADATA_URL: &str = "https://conformance-test.local/client-metadata.json";

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rmcp=warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let Some(url) = std::env::args().skip(1).last() else {
        eprintln!("usage: conformance_client <server URL> (MCP_CONFORMANCE_SCENARIO set)");
        return ExitCode::from(64);
    };
    let scenario = std::env::var("MCP_CONFORMANCE_SCENARIO").unwrap_or_default();
    let context: Value = std::env::var("MCP_CONFORMANCE_CONTEXT")
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or(Value::Null);
    match run(&scenario, &url, &context).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("conformance_client: scenario {scenario:?} failed: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(scenario: &str, url: &str, context: &Value) -> Result<(), String> {
    let mut server = ServerConfig::http(url);
    server.connect_timeout = Duration::from_secs(20);
    server.call_timeout = Duration::from_secs(20);
    // A person would fill the form in; the suite checks that defaults are applied.
    server.elicitation = ElicitationPolicy::AcceptDefaults;
    if scenario.starts_with("auth/") {
        server.oauth = Some(oauth_config(scenario, context));
    }
    let mut config = Config::default();
    config.servers.insert(SERVER.to_owned(), server);
    let runtime = Runtime::start(config)
        .await
        .map_err(|e| format!("runtime: {e}"))?;
    let outcome = exercise(&runtime, scenario).await;
    let report = runtime.shutdown(Duration::from_secs(5)).await;
    eprintln!(
        "conformance_client: {scenario}: {} session(s) closed",
        report.sessions_closed
    );
    outcome
}

/// The OAuth settings of an auth scenario: the client the suite's context
/// names (pre-registered, or a client-credentials client), else a client ID
/// metadata document (used where the authorization server supports them), else
/// dynamic client registration.
fn oauth_config(scenario: &str, context: &Value) -> OAuthConfig {
    let text = |key: &str| context.get(key).and_then(Value::as_str).map(str::to_owned);
    let mut oauth = OAuthConfig {
        client_id: text("client_id"),
        client_secret: text("client_secret").map(Secret::new),
        client_metadata_url: Some(CLIENT_METADATA_URL.to_owned()),
        ..OAuthConfig::default()
    };
    if scenario.starts_with("auth/client-credentials") {
        oauth.grant = OAuthGrant::ClientCredentials;
    }
    if let Some(key) = text("private_key_pem") {
        oauth.private_key = Some(Secret::new(key));
        oauth.private_key_algorithm = match text("signing_algorithm").as_deref() {
            Some("RS256") => JwtAlgorithm::RS256,
            Some("RS384") => JwtAlgorithm::RS384,
            Some("RS512") => JwtAlgorithm::RS512,
            Some("ES384") => JwtAlgorithm::ES384,
            _ => JwtAlgorithm::ES256,
        };
    }
    oauth
}

/// What each scenario expects of a client: connect, list, call its tool.
async fn exercise(runtime: &Runtime, scenario: &str) -> Result<(), String> {
    let tools = runtime
        .list_tools(SERVER, None)
        .await
        .map_err(|e| format!("tools/list: {e}"))?;
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    eprintln!("conformance_client: {scenario}: tools {names:?}");
    if scenario == "sse-retry" {
        // The scenario counts the first GET after the tool call as the
        // reconnection: give the session's standalone GET stream (opened after
        // initialize) time to connect first, as it has in a session in use.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let calls: Vec<(&str, Value)> = match scenario {
        "initialize" => Vec::new(),
        "tools_call" => vec![("add_numbers", json!({"a": 5, "b": 3}))],
        _ => names.iter().map(|name| (*name, json!({}))).collect(),
    };
    for (tool, arguments) in calls {
        let call = runtime
            .call_tool(SERVER, tool, Some(arguments), CallOptions::default())
            .await
            .map_err(|e| format!("tools/call {tool}: {e}"))?;
        eprintln!(
            "conformance_client: {scenario}: {tool} -> {}",
            serde_json::to_string(&call.result).unwrap_or_default()
        );
        if call.is_error() {
            return Err(format!("tools/call {tool} answered isError"));
        }
    }
    Ok(())
}
