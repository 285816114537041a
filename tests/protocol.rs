//! The rest of the protocol through the runtime: every tool, resource and prompt
//! of server-everything (progress, server logs, sampling and elicitation
//! policies, a `list_changed` round trip), resources and prompts in the agent
//! API, progress to callbacks and spans, fresh lists after `tools/list_changed`,
//! and the 2026-07-28 discover lifecycle against the demo server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mcpwatch::config::{ElicitationPolicy, Lifecycle, SamplingPolicy, ServerConfig};
use mcpwatch::{CallOptions, ErrorKind, Progress, Runtime};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use rmcp::model::ResourceContents;
use serde_json::{Value, json};
use support::receivers::{Behaviour, OtlpReceiver};
use support::{eventually, metric, text};

/// server-everything 2026.8.31's tools for a client that advertises sampling and
/// form and URL elicitation (mcpwatch's defaults): 13 always,
/// `simulate-research-query` (tasks), and the three whose capability mcpwatch
/// advertises.
const EVERYTHING_TOOLS: [&str; 16] = [
    "echo",
    "get-annotated-message",
    "get-env",
    "get-resource-links",
    "get-resource-reference",
    "get-structured-content",
    "get-sum",
    "get-tiny-image",
    "gzip-file-as-resource",
    "simulate-research-query",
    "toggle-simulated-logging",
    "toggle-subscriber-updates",
    "trigger-elicitation-request",
    "trigger-long-running-operation",
    "trigger-sampling-request",
    "trigger-url-elicitation",
];

const SCOPE: &str = "e2e";

async fn everything() -> Runtime {
    Runtime::start(support::config([(
        "everything",
        support::everything_stdio(),
    )]))
    .await
    .unwrap()
}

async fn call(runtime: &Runtime, tool: &str, arguments: Value) -> rmcp::model::CallToolResult {
    runtime
        .call_tool(
            "everything",
            tool,
            Some(arguments),
            CallOptions::scope(SCOPE),
        )
        .await
        .unwrap_or_else(|e| panic!("{tool}: {e}"))
        .result
}

fn json_of<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap()
}

fn notifications(runtime: &Runtime, method: &str) -> f64 {
    metric(
        runtime,
        "mcp_client_notifications_total",
        &[("mcp_server", "everything"), ("mcp_method_name", method)],
    )
}

fn server_requests(runtime: &Runtime, method: &str, outcome: &str) -> f64 {
    metric(
        runtime,
        "mcp_client_server_requests_total",
        &[
            ("mcp_server", "everything"),
            ("mcp_method_name", method),
            ("outcome", outcome),
        ],
    )
}

/// Every tool of server-everything, each with the outcome it should have
/// through mcpwatch; progress, server logs, the sampling and elicitation
/// policies, and a `resources/list_changed` round trip on the way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_tool_of_server_everything() {
    let logs = support::LogCapture::start();
    let runtime = everything().await;
    let tools = runtime.list_tools("everything", Some(SCOPE)).await.unwrap();
    let names: BTreeSet<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    assert_eq!(names, BTreeSet::from(EVERYTHING_TOOLS), "the tool list");
    let mut exercised = BTreeSet::new();

    exercised.insert("echo");
    let echo = call(&runtime, "echo", json!({"message": "hello"})).await;
    assert_eq!(text(&echo), "Echo: hello");

    exercised.insert("get-sum");
    let sum = call(&runtime, "get-sum", json!({"a": 2, "b": 3})).await;
    assert_eq!(text(&sum), "The sum of 2 and 3 is 5.");

    exercised.insert("get-annotated-message");
    let annotated = call(
        &runtime,
        "get-annotated-message",
        json!({"messageType": "error", "includeImage": true}),
    )
    .await;
    assert!(annotated.is_error != Some(true));
    assert!(json_of(&annotated.content).contains("\"annotations\""));
    assert!(annotated.content.iter().any(|c| c.as_image().is_some()));

    exercised.insert("get-env");
    let env = call(&runtime, "get-env", json!({})).await;
    assert!(text(&env).contains("PATH"), "{}", text(&env));

    exercised.insert("get-resource-links");
    let links = call(&runtime, "get-resource-links", json!({"count": 2})).await;
    let linked = links
        .content
        .iter()
        .filter(|c| c.as_resource_link().is_some())
        .count();
    assert_eq!(linked, 2, "{}", json_of(&links.content));

    exercised.insert("get-resource-reference");
    let reference = call(
        &runtime,
        "get-resource-reference",
        json!({"resourceType": "Text", "resourceId": 3}),
    )
    .await;
    assert!(json_of(&reference.content).contains("demo://resource/dynamic/text/3"));

    exercised.insert("get-structured-content");
    let structured = call(
        &runtime,
        "get-structured-content",
        json!({"location": "Chicago"}),
    )
    .await;
    assert!(
        structured
            .structured_content
            .as_ref()
            .is_some_and(Value::is_object),
        "{}",
        json_of(&structured)
    );

    exercised.insert("get-tiny-image");
    let image = call(&runtime, "get-tiny-image", json!({})).await;
    assert!(json_of(&image.content).contains("image/png"));

    // A resources/list_changed round trip: the new session resource shows in
    // the next list (mcpwatch keeps no list cache), and reads back.
    exercised.insert("gzip-file-as-resource");
    let before = runtime
        .list_resources("everything", Some(SCOPE))
        .await
        .unwrap();
    let changes = notifications(&runtime, "notifications/resources/list_changed");
    let gzip = call(
        &runtime,
        "gzip-file-as-resource",
        json!({"name": "hello.txt.gz", "data": "data:text/plain;base64,aGVsbG8gbWNwd2F0Y2g=", "outputType": "resourceLink"}),
    )
    .await;
    let link = gzip
        .content
        .iter()
        .find_map(|c| c.as_resource_link().cloned())
        .unwrap_or_else(|| panic!("no resource link: {}", json_of(&gzip)));
    assert!(!before.iter().any(|r| r.uri == link.uri));
    eventually(
        Duration::from_secs(5),
        "notifications/resources/list_changed after gzip-file-as-resource",
        || notifications(&runtime, "notifications/resources/list_changed") > changes,
    )
    .await;
    let after = runtime
        .list_resources("everything", Some(SCOPE))
        .await
        .unwrap();
    assert!(
        after.iter().any(|r| r.uri == link.uri),
        "{} missing from the list after list_changed",
        link.uri
    );
    let read = runtime
        .read_resource("everything", &link.uri, Some(SCOPE))
        .await
        .unwrap();
    match &read.contents[..] {
        [ResourceContents::BlobResourceContents { blob, .. }] => {
            assert!(blob.starts_with("H4sI"), "gzip magic, base64: {blob}")
        }
        other => panic!("not one blob: {other:?}"),
    }

    // Server log messages go to tracing, per server.
    exercised.insert("toggle-simulated-logging");
    let toggled = call(&runtime, "toggle-simulated-logging", json!({})).await;
    assert!(text(&toggled).contains("Started"), "{}", text(&toggled));
    eventually(
        Duration::from_secs(5),
        "a notifications/message logged under mcpwatch::server_log",
        || {
            notifications(&runtime, "notifications/message") >= 1.0
                && logs.text().lines().any(|l| {
                    l.contains("mcpwatch::server_log")
                        && l.contains("mcp_server=everything")
                        // "Debug-level message" ... and "Alert level-message".
                        && (l.contains("-level message") || l.contains("level-message"))
                })
        },
    )
    .await;
    let toggled = call(&runtime, "toggle-simulated-logging", json!({})).await;
    assert!(text(&toggled).contains("Stopped"), "{}", text(&toggled));

    exercised.insert("toggle-subscriber-updates");
    let updates = call(&runtime, "toggle-subscriber-updates", json!({})).await;
    assert!(updates.is_error != Some(true), "{}", json_of(&updates));
    call(&runtime, "toggle-subscriber-updates", json!({})).await;

    // Progress: every notification, in order, to the caller's callback.
    exercised.insert("trigger-long-running-operation");
    let seen: Arc<Mutex<Vec<Progress>>> = Arc::default();
    let sink = seen.clone();
    let options = CallOptions::scope(SCOPE).on_progress(move |p| sink.lock().unwrap().push(p));
    let long = runtime
        .call_tool(
            "everything",
            "trigger-long-running-operation",
            Some(json!({"duration": 0.8, "steps": 4})),
            options,
        )
        .await
        .unwrap();
    assert!(
        text(&long.result).contains("completed"),
        "{}",
        text(&long.result)
    );
    let seen = seen.lock().unwrap().clone();
    let progress: Vec<(f64, Option<f64>)> = seen.iter().map(|p| (p.progress, p.total)).collect();
    assert_eq!(
        progress,
        vec![
            (1.0, Some(4.0)),
            (2.0, Some(4.0)),
            (3.0, Some(4.0)),
            (4.0, Some(4.0))
        ],
        "every progress notification, in order, before the result"
    );
    assert!(notifications(&runtime, "notifications/progress") >= 4.0);

    // Elicitation: declined by default (a headless agent has no one to ask).
    exercised.insert("trigger-elicitation-request");
    let elicited = call(&runtime, "trigger-elicitation-request", json!({})).await;
    assert!(
        text(&elicited).contains("declined"),
        "{}",
        json_of(&elicited)
    );
    assert_eq!(
        server_requests(&runtime, "elicitation/create", "decline"),
        1.0
    );

    // URL elicitation: declined by the policy too (a URL needs a person with a browser).
    exercised.insert("trigger-url-elicitation");
    let url = call(
        &runtime,
        "trigger-url-elicitation",
        json!({"url": "https://example.com/verify", "message": "verify", "errorPath": false}),
    )
    .await;
    assert!(text(&url).contains("declined"), "{}", json_of(&url));
    assert_eq!(
        server_requests(&runtime, "elicitation/create", "decline"),
        2.0
    );

    // Sampling: declined by default; the server's tool fails with our answer.
    exercised.insert("trigger-sampling-request");
    let sampled = call(
        &runtime,
        "trigger-sampling-request",
        json!({"prompt": "hi"}),
    )
    .await;
    assert_eq!(sampled.is_error, Some(true), "{}", json_of(&sampled));
    assert!(text(&sampled).contains("declined"), "{}", text(&sampled));
    assert_eq!(
        server_requests(&runtime, "sampling/createMessage", "decline"),
        1.0
    );

    // A task-only tool called without a task: the server says so; the session lives on.
    exercised.insert("simulate-research-query");
    let research = runtime
        .call_tool(
            "everything",
            "simulate-research-query",
            Some(json!({"topic": "mcp"})),
            CallOptions::scope(SCOPE),
        )
        .await;
    match &research {
        Ok(call) => assert!(call.is_error(), "{}", json_of(&call.result)),
        Err(error) => assert!(
            matches!(
                error.kind(),
                ErrorKind::InvalidRequest | ErrorKind::ProtocolError
            ),
            "{error}"
        ),
    }
    assert_eq!(
        text(&call(&runtime, "echo", json!({"message": "still here"})).await),
        "Echo: still here"
    );

    assert_eq!(
        exercised,
        BTreeSet::from(EVERYTHING_TOOLS),
        "every tool exercised"
    );
    assert_eq!(runtime.sessions().len(), 1, "all on one pooled session");
    let report = runtime.shutdown(Duration::from_secs(10)).await;
    assert_eq!(report.sessions_closed, 1);
}

/// Every resource (static, templated) and every prompt of server-everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_resource_and_prompt_of_server_everything() {
    let runtime = everything().await;
    let resources = runtime.list_resources("everything", None).await.unwrap();
    assert_eq!(resources.len(), 7, "the static documents: {resources:?}");
    for resource in &resources {
        assert!(resource.uri.starts_with("demo://resource/static/document/"));
        let read = runtime
            .read_resource("everything", &resource.uri, None)
            .await
            .unwrap();
        match &read.contents[..] {
            [ResourceContents::TextResourceContents { uri, text, .. }] => {
                assert_eq!(uri, &resource.uri);
                assert!(!text.is_empty(), "{uri} is empty");
            }
            other => panic!("{}: {other:?}", resource.uri),
        }
    }

    let templates = runtime
        .list_resource_templates("everything", None)
        .await
        .unwrap();
    let patterns: BTreeSet<&str> = templates.iter().map(|t| t.uri_template.as_str()).collect();
    assert_eq!(
        patterns,
        BTreeSet::from([
            "demo://resource/dynamic/blob/{resourceId}",
            "demo://resource/dynamic/text/{resourceId}"
        ])
    );
    let read = runtime
        .read_resource("everything", "demo://resource/dynamic/text/7", None)
        .await
        .unwrap();
    assert!(
        matches!(&read.contents[..], [ResourceContents::TextResourceContents { text, .. }] if text.contains('7')),
        "{read:?}"
    );
    let read = runtime
        .read_resource("everything", "demo://resource/dynamic/blob/7", None)
        .await
        .unwrap();
    assert!(
        matches!(
            &read.contents[..],
            [ResourceContents::BlobResourceContents { .. }]
        ),
        "{read:?}"
    );
    let missing = runtime
        .read_resource("everything", "demo://resource/nope", None)
        .await
        .unwrap_err();
    assert!(
        missing.rpc_code().is_some(),
        "the server's JSON-RPC error: {missing}"
    );

    let prompts = runtime.list_prompts("everything", None).await.unwrap();
    let names: BTreeSet<&str> = prompts.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        BTreeSet::from([
            "args-prompt",
            "completable-prompt",
            "resource-prompt",
            "simple-prompt"
        ])
    );
    let simple = runtime
        .get_prompt("everything", "simple-prompt", None, None)
        .await
        .unwrap();
    assert!(!simple.messages.is_empty());
    let args = runtime
        .get_prompt(
            "everything",
            "args-prompt",
            Some(json!({"city": "Lisbon", "state": "Lisboa"})),
            None,
        )
        .await
        .unwrap();
    assert!(json_of(&args.messages).contains("Lisbon"), "{args:?}");
    let team = runtime
        .get_prompt(
            "everything",
            "completable-prompt",
            Some(json!({"department": "Engineering", "name": "Alice"})),
            None,
        )
        .await
        .unwrap();
    assert!(json_of(&team.messages).contains("Alice"), "{team:?}");
    let embedded = runtime
        .get_prompt(
            "everything",
            "resource-prompt",
            Some(json!({"resourceType": "Text", "resourceId": "2"})),
            None,
        )
        .await
        .unwrap();
    assert!(
        json_of(&embedded.messages).contains("demo://resource/dynamic/text/2"),
        "{embedded:?}"
    );
    // Prompt arguments are strings: refused before anything is sent.
    let error = runtime
        .get_prompt("everything", "args-prompt", Some(json!({"city": 1})), None)
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidRequest);
    // A missing required argument is the server's caller error.
    let error = runtime
        .get_prompt("everything", "args-prompt", None, None)
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidRequest, "{error}");

    // The same through a lease on the pooled session.
    let lease = runtime.session("everything", None).await.unwrap();
    assert_eq!(lease.list_resources().await.unwrap().len(), 7);
    assert_eq!(lease.list_prompts().await.unwrap().len(), 4);
    let read = lease
        .read_resource("demo://resource/static/document/features.md")
        .await
        .unwrap();
    assert_eq!(read.contents.len(), 1);
    let prompt = lease.get_prompt("simple-prompt", None).await.unwrap();
    assert!(!prompt.messages.is_empty());
    drop(lease);
    assert_eq!(
        runtime.sessions().len(),
        1,
        "one pooled session served it all"
    );
    runtime.shutdown(Duration::from_secs(10)).await;
}

/// A server without resources or prompts has none (its "method not found" is
/// not an error to the caller).
#[tokio::test]
async fn a_server_without_resources_or_prompts_lists_none() {
    let runtime = Runtime::start(mcpwatch::Config::demo()).await.unwrap();
    assert!(
        runtime
            .list_resources("demo", None)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        runtime
            .list_resource_templates("demo", None)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(runtime.list_prompts("demo", None).await.unwrap().is_empty());
    runtime.shutdown(Duration::from_secs(5)).await;
}

/// `sampling = "off"` and `elicitation = "off"`: not advertised, so the server
/// does not offer the tools that need them; `accept_defaults` answers with the
/// schema's defaults (and declines when a required field has none).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampling_and_elicitation_policies() {
    let mut off = support::everything_stdio();
    off.sampling = SamplingPolicy::Off;
    off.elicitation = ElicitationPolicy::Off;
    let mut accept = support::everything_stdio();
    accept.elicitation = ElicitationPolicy::AcceptDefaults;
    let runtime = Runtime::start(support::config([("off", off), ("everything", accept)]))
        .await
        .unwrap();
    let tools = runtime.list_tools("off", None).await.unwrap();
    let names: BTreeSet<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    assert!(!names.contains("trigger-sampling-request"), "{names:?}");
    assert!(!names.contains("trigger-elicitation-request"), "{names:?}");
    assert!(!names.contains("trigger-url-elicitation"), "{names:?}");
    assert_eq!(names.len(), EVERYTHING_TOOLS.len() - 3);

    // server-everything's form has required fields without defaults: declined.
    let elicited = call(&runtime, "trigger-elicitation-request", json!({})).await;
    assert!(
        text(&elicited).contains("declined"),
        "{}",
        json_of(&elicited)
    );
    assert_eq!(
        server_requests(&runtime, "elicitation/create", "decline"),
        1.0
    );
    runtime.shutdown(Duration::from_secs(10)).await;
}

/// Progress through the demo server's `sleep`: to the callback (in order,
/// increasing), as `mcp.progress` events on the request's span, and counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_reaches_the_callback_the_span_and_the_counter() {
    let receiver = OtlpReceiver::start(Behaviour::Answer).await;
    let (telemetry, tracer) = receiver.traced_telemetry();
    let runtime = Runtime::start_with(
        support::config([("demo", support::demo_stdio())]),
        telemetry,
    )
    .await
    .unwrap();
    let seen: Arc<Mutex<Vec<f64>>> = Arc::default();
    let sink = seen.clone();
    let options =
        CallOptions::scope("p").on_progress(move |p| sink.lock().unwrap().push(p.progress));
    let call = runtime
        .call_tool("demo", "sleep", Some(json!({"ms": 450})), options)
        .await
        .unwrap();
    assert_eq!(text(&call.result), "slept 450 ms");
    let seen = seen.lock().unwrap().clone();
    assert!(seen.len() >= 3, "{seen:?}");
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "increasing: {seen:?}");
    let progress_count = || {
        metric(
            &runtime,
            "mcp_client_notifications_total",
            &[
                ("mcp_server", "demo"),
                ("mcp_method_name", "notifications/progress"),
            ],
        )
    };
    // rmcp's server may write its last notification after the answer: counted,
    // but no longer routed to the finished call.
    let counted = progress_count();
    assert!(
        counted >= seen.len() as f64,
        "{counted} counted, {} seen",
        seen.len()
    );
    // A call without a callback still counts its progress; nothing leaks into
    // the next call's callback.
    runtime
        .call_tool(
            "demo",
            "sleep",
            Some(json!({"ms": 250})),
            CallOptions::scope("p"),
        )
        .await
        .unwrap();
    eventually(
        Duration::from_secs(2),
        "a call without a callback has its progress counted",
        || progress_count() >= counted + 1.0,
    )
    .await;
    let quiet = Arc::new(AtomicUsize::new(0));
    let count = quiet.clone();
    let options = CallOptions::scope("p").on_progress(move |_| {
        count.fetch_add(1, Ordering::Relaxed);
    });
    runtime
        .call_tool("demo", "echo", Some(json!({"message": "x"})), options)
        .await
        .unwrap();
    assert_eq!(quiet.load(Ordering::Relaxed), 0);
    runtime.shutdown(Duration::from_secs(5)).await;

    // Each progress delivered is an `mcp.progress` event on its request's span.
    tokio::task::spawn_blocking(move || tracer.shutdown())
        .await
        .unwrap()
        .unwrap();
    let spans = receiver.spans();
    let first = spans
        .iter()
        .find(|s| s.name == "tools/call sleep" && !s.events.is_empty())
        .expect("the first sleep's span, with events");
    let values: Vec<String> = first
        .events
        .iter()
        .filter(|e| e.name == "mcp.progress")
        .map(|e| {
            let value = e
                .attributes
                .iter()
                .find(|kv| kv.key == "mcp.progress.value")
                .and_then(|kv| kv.value.clone())
                .and_then(|v| v.value);
            format!("{value:?}")
        })
        .collect();
    let expected: Vec<String> = seen
        .iter()
        .map(|p| format!("{:?}", Some(AnyValue::DoubleValue(*p))))
        .collect();
    assert_eq!(
        values, expected,
        "one event per progress delivered, in order"
    );
}

mod dynamic {
    //! An rmcp server whose tool list grows on request, with `tools/list_changed`.

    use std::sync::{Arc, Mutex};

    use rmcp::model::{
        CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, InitializeResult,
        ListToolsResult, PaginatedRequestParams, ServerCapabilities, Tool,
    };
    use rmcp::service::{RequestContext, RoleServer};
    use rmcp::{ErrorData, ServerHandler};

    #[derive(Clone, Default)]
    pub(crate) struct Growing {
        pub(crate) extra: Arc<Mutex<Vec<String>>>,
    }

    fn tool(name: String) -> Tool {
        let schema = serde_json::json!({"type": "object"});
        Tool::new(name, "a tool", schema.as_object().unwrap().clone())
    }

    impl ServerHandler for Growing {
        fn get_info(&self) -> InitializeResult {
            InitializeResult::new(
                ServerCapabilities::builder()
                    .enable_tools()
                    .enable_tool_list_changed()
                    .build(),
            )
        }

        async fn list_tools(
            &self,
            _request: Option<PaginatedRequestParams>,
            _context: RequestContext<RoleServer>,
        ) -> Result<ListToolsResult, ErrorData> {
            let mut tools = vec![tool("grow".to_owned())];
            tools.extend(self.extra.lock().unwrap().iter().cloned().map(tool));
            Ok(ListToolsResult::with_all_items(tools))
        }

        async fn call_tool(
            &self,
            request: CallToolRequestParams,
            context: RequestContext<RoleServer>,
        ) -> Result<CallToolResponse, ErrorData> {
            if request.name != "grow" {
                return Ok(CallToolResult::success(vec![ContentBlock::text(
                    request.name.to_string(),
                )])
                .into());
            }
            let name = {
                let mut extra = self.extra.lock().unwrap();
                let name = format!("extra-{}", extra.len() + 1);
                extra.push(name.clone());
                name
            };
            let _ = context.peer.notify_tool_list_changed().await;
            Ok(CallToolResult::success(vec![ContentBlock::text(name)]).into())
        }
    }
}

/// Serves `dynamic::Growing` over streamable HTTP on 127.0.0.1; stops on drop.
struct GrowingServer {
    url: String,
    stop: tokio_util::sync::CancellationToken,
}

impl GrowingServer {
    async fn start() -> GrowingServer {
        use rmcp::transport::streamable_http_server::{
            StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
        };
        let stop = tokio_util::sync::CancellationToken::new();
        let mut config = StreamableHttpServerConfig::default();
        config.cancellation_token = stop.child_token();
        config.legacy_session_mode = true;
        let growing = dynamic::Growing::default();
        let service = StreamableHttpService::new(
            move || Ok(growing.clone()),
            Arc::new(LocalSessionManager::default()),
            config,
        );
        let router = axum::Router::new().nest_service("/mcp", service);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let token = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async move { token.cancelled().await })
                .await;
        });
        GrowingServer {
            url: format!("http://{addr}/mcp"),
            stop,
        }
    }
}

impl Drop for GrowingServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A `tools/list_changed` round trip: the list after the notification is the
/// server's new list, not a cached one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_list_after_list_changed_is_fresh() {
    let server = GrowingServer::start().await;
    let runtime = Runtime::start(support::config([(
        "growing",
        ServerConfig::http(server.url.clone()),
    )]))
    .await
    .unwrap();
    let names = |tools: Vec<rmcp::model::Tool>| -> Vec<String> {
        tools.into_iter().map(|t| t.name.to_string()).collect()
    };
    let changed = || {
        metric(
            &runtime,
            "mcp_client_notifications_total",
            &[
                ("mcp_server", "growing"),
                ("mcp_method_name", "notifications/tools/list_changed"),
            ],
        )
    };
    assert_eq!(
        names(runtime.list_tools("growing", None).await.unwrap()),
        ["grow"]
    );
    for round in 1..=2 {
        let call = runtime
            .call_tool("growing", "grow", None, CallOptions::default())
            .await
            .unwrap();
        assert_eq!(text(&call.result), format!("extra-{round}"));
        eventually(
            Duration::from_secs(5),
            "notifications/tools/list_changed counted",
            || changed() >= f64::from(round),
        )
        .await;
        let listed = names(runtime.list_tools("growing", None).await.unwrap());
        assert_eq!(listed.len(), 1 + round as usize, "{listed:?}");
        assert_eq!(listed.last().unwrap(), &format!("extra-{round}"));
    }
    let added = runtime
        .call_tool("growing", "extra-2", None, CallOptions::default())
        .await
        .unwrap();
    assert_eq!(text(&added.result), "extra-2");
    runtime.shutdown(Duration::from_secs(5)).await;
}

/// `lifecycle = "discover"`: the 2026-07-28 revision (`server/discover`, no
/// `initialize`) against the demo server (an rmcp server) in-process, over
/// stdio and over streamable HTTP: calls, progress and the health check work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_discover_lifecycle_against_the_demo_server() {
    let http = support::HttpDemo::start().await;
    let discover = |mut spec: ServerConfig| {
        spec.lifecycle = Lifecycle::Discover;
        spec
    };
    let runtime = Runtime::start(support::config([
        ("builtin", discover(ServerConfig::builtin())),
        ("stdio", discover(support::demo_stdio())),
        ("http", discover(ServerConfig::http(http.url.clone()))),
        ("classic", ServerConfig::builtin()),
    ]))
    .await
    .unwrap();
    for server in ["builtin", "stdio", "http"] {
        let echo = runtime
            .call_tool(
                server,
                "echo",
                Some(json!({"message": "hi"})),
                CallOptions::default(),
            )
            .await
            .unwrap_or_else(|e| panic!("{server}: {e}"));
        assert_eq!(text(&echo.result), "hi");
        runtime.ping(server, None).await.unwrap();
        let status = runtime
            .servers()
            .into_iter()
            .find(|s| s.name == server)
            .unwrap();
        assert_eq!(
            status.protocol_version.as_deref(),
            Some("2026-07-28"),
            "{server}"
        );
        let progress = Arc::new(AtomicUsize::new(0));
        let count = progress.clone();
        let options = CallOptions::default().on_progress(move |_| {
            count.fetch_add(1, Ordering::Relaxed);
        });
        runtime
            .call_tool(server, "sleep", Some(json!({"ms": 450})), options)
            .await
            .unwrap();
        // One every 100 ms; rmcp's server may write the last after the answer.
        assert!(progress.load(Ordering::Relaxed) >= 2, "{server}: progress");
        let discovered = metric(
            &runtime,
            "mcp_client_operation_duration_seconds",
            &[
                ("mcp_server", server),
                ("mcp_method_name", "server/discover"),
            ],
        );
        assert_eq!(
            discovered, 1.0,
            "{server}: the health check is server/discover"
        );
    }
    // The session keeps its state over stdio; over HTTP the 2026-07-28
    // revision is stateless (each request is served on its own).
    let counter = |server: &'static str| {
        let runtime = runtime.clone();
        async move {
            let call = runtime
                .call_tool(server, "counter", None, CallOptions::default())
                .await
                .unwrap();
            text(&call.result)
        }
    };
    assert_eq!(
        (counter("stdio").await, counter("stdio").await),
        ("1".into(), "2".into())
    );
    let classic = runtime
        .servers()
        .into_iter()
        .find(|s| s.name == "classic")
        .unwrap();
    assert_eq!(classic.protocol_version, None, "not opened yet");
    runtime.ping("classic", None).await.unwrap();
    let classic = runtime
        .servers()
        .into_iter()
        .find(|s| s.name == "classic")
        .unwrap();
    assert_eq!(classic.protocol_version.as_deref(), Some("2025-11-25"));
    runtime.shutdown(Duration::from_secs(5)).await;
}

/// `lifecycle = "discover"` against a server that only speaks `initialize`
/// fails to open, with a clear error (no silent fallback).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discover_against_a_legacy_server_fails_clearly() {
    let mut spec = support::everything_stdio();
    spec.lifecycle = Lifecycle::Discover;
    spec.retry.max_attempts = 1;
    let runtime = Runtime::start(support::config([("everything", spec)]))
        .await
        .unwrap();
    let error = runtime.ping("everything", None).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InitializeFailed, "{error}");
    runtime.shutdown(Duration::from_secs(5)).await;
    assert!(support::my_children().is_empty());
}

/// The agent's resource and prompt routes (DESIGN §6) against server-everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resources_and_prompts_in_the_agent_api() {
    let config = format!(
        "[servers.everything]\ntransport = \"stdio\"\ncommand = \"node\"\nargs = [{:?}, \"stdio\"]\n",
        support::everything_js().display().to_string()
    );
    let agent = support::Agent::start(&config, &[]).await;
    let (status, listed) = agent
        .get(
            "/v1/servers/everything/resources",
            &[("x-mcpwatch-scope", "api")],
        )
        .await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["resources"].as_array().unwrap().len(), 7);
    assert_eq!(listed["resource_templates"].as_array().unwrap().len(), 2);
    let (status, prompts) = agent.get("/v1/servers/everything/prompts", &[]).await;
    assert_eq!(status, 200, "{prompts}");
    assert_eq!(prompts["prompts"].as_array().unwrap().len(), 4);

    let (status, read) = agent
        .post(
            "/v1/resources/read",
            json!({"server": "everything", "uri": "demo://resource/dynamic/text/5", "scope": "api"}),
            &[],
        )
        .await;
    assert_eq!(status, 200, "{read}");
    assert!(
        read["result"]["contents"][0]["text"]
            .as_str()
            .unwrap()
            .contains('5')
    );
    let (status, prompt) = agent
        .post(
            "/v1/prompts/get",
            json!({"server": "everything", "name": "args-prompt", "arguments": {"city": "Oslo"}}),
            &[("x-mcpwatch-scope", "api")],
        )
        .await;
    assert_eq!(status, 200, "{prompt}");
    assert!(prompt["result"]["messages"].to_string().contains("Oslo"));
    let (_, sessions) = agent.get("/v1/sessions", &[]).await;
    let scopes: Vec<&str> = sessions["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["scope"].as_str().unwrap())
        .collect();
    assert_eq!(scopes, ["api", "default"], "the scope from header or body");

    // Errors in the API's shape.
    let (status, error) = agent
        .post(
            "/v1/prompts/get",
            json!({"server": "everything", "name": "args-prompt", "arguments": {"city": 3}}),
            &[],
        )
        .await;
    assert_eq!(
        (status, error["error"]["type"].as_str()),
        (400, Some("invalid_request"))
    );
    let (status, error) = agent
        .post(
            "/v1/resources/read",
            json!({"server": "nope", "uri": "x"}),
            &[],
        )
        .await;
    assert_eq!(
        (status, error["error"]["type"].as_str()),
        (404, Some("unknown_server"))
    );
    let (status, _) = agent
        .post("/v1/resources/read", json!({"server": "everything"}), &[])
        .await;
    assert_eq!(status, 400, "uri is required");
    let (status, _) = agent.get("/v1/servers/nope/prompts", &[]).await;
    assert_eq!(status, 404);
}

/// A call with a route for the server's own requests answers them itself:
/// server-everything's sampling request reaches the caller's route (not the
/// `decline` policy), and its answer reaches the tool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(deprecated)] // Sampling is deprecated by SEP-2577, but servers still ask.
async fn a_call_with_a_route_answers_the_servers_sampling_request() {
    let runtime = Runtime::start(support::config([(
        "everything",
        support::everything_stdio(),
    )]))
    .await
    .unwrap();
    let asked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = asked.clone();
    let route: mcpwatch::ServerRequestRoute = std::sync::Arc::new(move |request| {
        seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        assert!(matches!(
            request,
            rmcp::model::ServerRequest::CreateMessageRequest(_)
        ));
        Box::pin(async {
            let answer = json!({"role": "assistant", "model": "the-caller",
                "content": {"type": "text", "text": "answered by the caller's route"}});
            let result: rmcp::model::CreateMessageResult = serde_json::from_value(answer).unwrap();
            Ok(rmcp::model::ClientResult::CreateMessageResult(Box::new(
                result,
            )))
        })
    });
    let options = CallOptions::scope(SCOPE).route_server_requests(route);
    let sampled = runtime
        .call_tool(
            "everything",
            "trigger-sampling-request",
            Some(json!({"prompt": "hi"})),
            options,
        )
        .await
        .unwrap()
        .result;
    assert_ne!(sampled.is_error, Some(true), "{}", json_of(&sampled));
    assert!(
        json_of(&sampled).contains("answered by the caller's route"),
        "{}",
        json_of(&sampled)
    );
    assert_eq!(asked.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(
        server_requests(&runtime, "sampling/createMessage", "forwarded"),
        1.0
    );
    assert_eq!(
        server_requests(&runtime, "sampling/createMessage", "decline"),
        0.0
    );
    runtime.shutdown(Duration::from_secs(10)).await;
}
