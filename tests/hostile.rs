//! Hostile input (issue 7, part 4): property tests (`proptest`) over the API
//! bodies, headers and paths through the real router, and over the config parser;
//! schemathesis (PyPI) against the OpenAPI document of a running agent; and the
//! real binary fed deeply nested JSON, huge strings, invalid UTF-8, odd scope
//! names and header injection. Every one gets a clear 4xx (or a config error with
//! its key path); nothing panics, and the agent keeps serving afterwards.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::sync::LazyLock;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, Method, Request};
use mcpwatch::config::{Config, ConfigSource};
use mcpwatch::testing::{AgentState, api_router};
use mcpwatch::{ErrorKind, Runtime};
use proptest::prelude::*;
use serde_json::{Value, json};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;

// Property tests over the real router ---------------------------------------------

/// One runtime (builtin demo) and its API router, shared by every case of a test.
struct Fixture {
    tokio: tokio::runtime::Runtime,
    router: axum::Router,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut config = Config::demo();
    config.agent.max_body_bytes = 64 * 1024;
    let runtime = tokio.block_on(Runtime::start(config.clone())).unwrap();
    let router = api_router(AgentState::new(runtime, &config.agent));
    Fixture { tokio, router }
});

/// Sends one request through the router; returns status and body bytes.
fn respond(request: Request<Body>) -> (u16, Vec<u8>) {
    let fixture = &*FIXTURE;
    fixture.tokio.block_on(async {
        let response = tokio::time::timeout(
            Duration::from_secs(20),
            fixture.router.clone().oneshot(request),
        )
        .await
        .expect("the router answered within 20 s")
        .unwrap();
        let status = response.status().as_u16();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap()
            .to_vec();
        (status, body)
    })
}

/// The contract of every answer: no 5xx other than the upstream ones, a JSON
/// body, and an error body whose type maps to the status it came with.
fn assert_clear_answer(status: u16, body: &[u8], allowed: &[u16]) -> Result<(), TestCaseError> {
    prop_assert!(
        allowed.contains(&status),
        "status {status}: {}",
        String::from_utf8_lossy(body)
    );
    let body: Value = serde_json::from_slice(body).map_err(|e| {
        TestCaseError::fail(format!("status {status}: a body that is not JSON: {e}"))
    })?;
    if status == 200 {
        prop_assert!(body.get("error").is_none(), "{body}");
        return Ok(());
    }
    let kind = body["error"]["type"].as_str().unwrap_or_default();
    let message = body["error"]["message"].as_str();
    prop_assert!(message.is_some_and(|m| !m.is_empty()), "no message: {body}");
    let known = ErrorKind::ALL.iter().find(|k| k.as_str() == kind);
    prop_assert!(known.is_some(), "unknown error type: {body}");
    prop_assert_eq!(
        body["error"]["may_have_run"].as_bool(),
        Some(known.unwrap().tool_may_have_run()),
        "{}",
        body
    );
    // The route fallback answers 404 with `invalid_request`; everything else maps exactly.
    if status != 404 || kind != "invalid_request" {
        prop_assert_eq!(known.unwrap().http_status(), status, "{}", body);
    }
    Ok(())
}

fn post_call(body: Vec<u8>, headers: &[(&str, HeaderValue)]) -> Request<Body> {
    let mut request = Request::builder()
        .method(Method::POST)
        .uri("/v1/tools/call")
        .header("content-type", "application/json");
    for (name, value) in headers {
        request = request.header(*name, value.clone());
    }
    request.body(Body::from(body)).unwrap()
}

/// Any JSON value, nested a few levels.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,40}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(".{0,12}", inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Call bodies close to valid ones: real and random servers, tools, arguments,
/// scopes and timeouts, sometimes an unknown field.
fn call_body() -> impl Strategy<Value = Value> {
    let server = prop_oneof![3 => Just("demo".to_owned()), 1 => ".{0,16}"];
    let tool = prop_oneof![
        Just("echo".to_owned()),
        Just("add".to_owned()),
        Just("counter".to_owned()),
        Just("fail".to_owned()),
        Just("stats".to_owned()),
        "[a-z]{0,12}".prop_filter("not the slow or crashing tools", |t| t != "sleep"
            && t != "crash"),
    ];
    let scope = prop::option::of(prop_oneof![
        "[A-Za-z0-9._:@-]{1,30}",
        ".{0,30}",
        Just("../etc".to_owned()),
        Just(String::new()),
    ]);
    let timeout = prop::option::of(prop_oneof![0u64..3, 50u64..5000, any::<u64>()]);
    let arguments = prop::option::of(prop_oneof![
        any_json(),
        ".{0,20}".prop_map(|m| json!({"message": m})),
        (any::<f64>(), any::<f64>()).prop_map(|(a, b)| json!({"a": a, "b": b})),
    ]);
    let extra = prop::option::of((".{1,8}", any_json()));
    (server, tool, arguments, scope, timeout, extra).prop_map(
        |(server, tool, arguments, scope, timeout, extra)| {
            let mut body = json!({"server": server, "tool": tool});
            if let Some(arguments) = arguments {
                body["arguments"] = arguments;
            }
            if let Some(scope) = scope {
                body["scope"] = Value::from(scope);
            }
            if let Some(timeout) = timeout {
                body["timeout_ms"] = Value::from(timeout);
            }
            if let Some((key, value)) = extra {
                body[key] = value;
            }
            body
        },
    )
}

/// Percent-encodes every byte outside the URI's unreserved set.
fn encode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

const CALL_STATUSES: &[u16] = &[200, 400, 404, 413, 502, 503, 504];

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn any_json_body_gets_a_clear_answer(body in any_json()) {
        let (status, answer) = respond(post_call(serde_json::to_vec(&body).unwrap(), &[]));
        assert_clear_answer(status, &answer, &[400, 404])?;
    }

    #[test]
    fn near_valid_call_bodies_get_a_clear_answer(body in call_body()) {
        let (status, answer) = respond(post_call(serde_json::to_vec(&body).unwrap(), &[]));
        assert_clear_answer(status, &answer, CALL_STATUSES)?;
        let answer: Value = serde_json::from_slice(&answer).unwrap();
        if status == 200 && body["tool"] == "echo" && answer["result"]["isError"] == json!(false) {
            prop_assert_eq!(&answer["result"]["content"][0]["text"], &body["arguments"]["message"]);
        }
    }

    #[test]
    fn any_bytes_as_a_body_get_a_clear_answer(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let (status, answer) = respond(post_call(bytes, &[]));
        assert_clear_answer(status, &answer, CALL_STATUSES)?;
    }

    #[test]
    fn any_scope_header_gets_a_clear_answer(value in prop::collection::vec(any::<u8>(), 0..300)) {
        let Ok(value) = HeaderValue::from_bytes(&value) else {
            return Ok(()); // not sendable as a header at all
        };
        let body = serde_json::to_vec(&json!({"server": "demo", "tool": "echo", "arguments": {"message": "h"}})).unwrap();
        let (status, answer) = respond(post_call(body, &[("x-mcpwatch-scope", value.clone())]));
        assert_clear_answer(status, &answer, &[200, 400])?;
        let valid = value.to_str().ok().is_some_and(|s| mcpwatch::validate_scope(Some(s)).is_ok());
        prop_assert_eq!(status == 200, valid, "{:?}", value);
    }

    #[test]
    fn any_path_segment_gets_a_clear_answer(a in ".{0,40}", b in ".{0,40}") {
        let (a, b) = (encode(&a), encode(&b));
        for (method, path) in [
            (Method::DELETE, format!("/v1/scopes/{a}")),
            (Method::DELETE, format!("/v1/sessions/{a}/{b}")),
            (Method::GET, format!("/v1/servers/{a}/tools")),
            (Method::GET, format!("/v1/{a}")),
        ] {
            let request = Request::builder().method(method).uri(&path).body(Body::empty()).unwrap();
            let (status, answer) = respond(request);
            assert_clear_answer(status, &answer, &[200, 400, 404, 405])
                .map_err(|e| TestCaseError::fail(format!("{path}: {e}")))?;
        }
    }
}

// Property tests over the config parser ----------------------------------------------

/// Any TOML value, nested a little.
fn any_toml() -> impl Strategy<Value = toml::Value> {
    let leaf = prop_oneof![
        ".{0,20}".prop_map(toml::Value::String),
        any::<i64>().prop_map(toml::Value::Integer),
        any::<f64>().prop_map(toml::Value::Float),
        any::<bool>().prop_map(toml::Value::Boolean),
        Just(toml::Value::String("30s".into())),
        Just(toml::Value::String("127.0.0.1:0".into())),
        Just(toml::Value::String("${MISSING_VARIABLE}".into())),
    ];
    leaf.prop_recursive(2, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(toml::Value::Array),
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..4)
                .prop_map(|m| toml::Value::Table(m.into_iter().collect())),
        ]
    })
}

const SECTION_KEYS: &[(&str, &[&str])] = &[
    (
        "agent",
        &[
            "listen",
            "admin_listen",
            "token",
            "allow_unauthenticated",
            "max_body_bytes",
            "max_in_flight",
            "queue_timeout",
            "drain_timeout",
            "shutdown_delay",
            "idempotency_ttl",
        ],
    ),
    ("log", &["format", "level"]),
    (
        "pool",
        &["max_sessions", "queue_timeout", "idle_ttl", "max_lifetime"],
    ),
    (
        "telemetry",
        &["capture_payloads", "service_name", "otlp", "sentry"],
    ),
];

const SERVER_KEYS: &[&str] = &[
    "command",
    "args",
    "env",
    "env_clear",
    "env_allow",
    "cwd",
    "url",
    "headers",
    "warm",
    "connect_timeout",
    "call_timeout",
    "idle_ttl",
    "max_sessions",
    "max_response_bytes",
    "retry",
    "breaker",
    "idempotent_tools",
];

/// A config tree: real sections and keys (and some unknown ones) with random values.
fn config_tree() -> impl Strategy<Value = toml::Value> {
    let section = (0..SECTION_KEYS.len()).prop_flat_map(|i| {
        let (name, keys) = SECTION_KEYS[i];
        prop::collection::btree_map(
            prop_oneof![4 => prop::sample::select(keys), 1 => Just("colour")]
                .prop_map(str::to_owned),
            any_toml(),
            0..4,
        )
        .prop_map(move |table| {
            (
                name.to_owned(),
                toml::Value::Table(table.into_iter().collect()),
            )
        })
    });
    let transport = prop_oneof![
        Just("stdio"),
        Just("http"),
        Just("sse"),
        Just("builtin"),
        Just("carrier-pigeon")
    ]
    .prop_map(|t| toml::Value::String(t.to_owned()));
    let server = (
        "[a-z0-9_-]{1,10}",
        prop::option::of(transport),
        prop::collection::btree_map(
            prop::sample::select(SERVER_KEYS).prop_map(str::to_owned),
            any_toml(),
            0..5,
        ),
    )
        .prop_map(|(name, transport, mut keys)| {
            if let Some(transport) = transport {
                keys.insert("transport".to_owned(), transport);
            }
            (name, toml::Value::Table(keys.into_iter().collect()))
        });
    (
        prop::collection::vec(section, 0..4),
        prop::collection::vec(server, 0..4),
        prop::option::of(("[a-z]{1,8}", any_toml())),
    )
        .prop_map(|(sections, servers, extra)| {
            let mut root = toml::map::Map::new();
            for (name, table) in sections {
                root.insert(name, table);
            }
            let servers: toml::map::Map<String, toml::Value> = servers.into_iter().collect();
            if !servers.is_empty() {
                root.insert("servers".to_owned(), toml::Value::Table(servers));
            }
            if let Some((key, value)) = extra {
                root.insert(key, value);
            }
            toml::Value::Table(root)
        })
}

fn load_text(
    text: &str,
    env: BTreeMap<String, String>,
) -> Result<Config, mcpwatch::config::ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mcpwatch.toml");
    std::fs::write(&path, text).unwrap();
    Config::load(&ConfigSource {
        file: Some(path),
        env,
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn any_config_tree_loads_or_names_the_key_of_every_problem(tree in config_tree()) {
        let Ok(text) = toml::to_string(&tree) else { return Ok(()) };
        if let Err(error) = load_text(&text, BTreeMap::new()) {
            prop_assert!(!error.problems.is_empty());
            for problem in &error.problems {
                prop_assert!(!problem.path.is_empty(), "a problem without its key path: {problem}\n{text}");
                prop_assert!(!problem.message.is_empty(), "{text}");
            }
        }
    }

    #[test]
    fn any_text_as_a_config_file_is_an_error_not_a_panic(text in "(?s).{0,400}") {
        if let Err(error) = load_text(&text, BTreeMap::new()) {
            prop_assert!(!error.problems.is_empty());
            prop_assert!(!error.to_string().is_empty());
        }
    }

    #[test]
    fn any_mcpwatch_environment_loads_or_names_the_key(
        vars in prop::collection::btree_map("[A-Z_]{1,24}", ".{0,24}", 0..5)
    ) {
        let env: BTreeMap<String, String> = vars
            .into_iter()
            .map(|(k, v)| (format!("MCPWATCH_{k}"), v))
            .collect();
        match Config::load(&ConfigSource { file: None, env: env.clone() }) {
            Ok(_) => {}
            Err(error) => {
                for problem in &error.problems {
                    prop_assert!(!problem.path.is_empty(), "{problem} from {env:?}");
                }
            }
        }
    }

    #[test]
    fn config_errors_never_show_a_secret(
        secret in "[A-Za-z0-9]{12,24}",
        bad in prop_oneof![Just("listen = 5"), Just("max_body_bytes = \"lots\""), Just("colour = 1")],
    ) {
        let secret = format!("s3cr3t-{secret}");
        let text = format!(
            "[agent]\ntoken = \"{secret}\"\n{bad}\n[telemetry.sentry]\ndsn = \"https://{secret}@sentry.invalid/1\"\n\
             [servers.r]\ntransport = \"http\"\nurl = \"not a url\"\nheaders = {{ Authorization = \"Bearer {secret}\" }}\n\
             [servers.s]\ntransport = \"stdio\"\nenv = {{ KEY = \"{secret}\" }}\n"
        );
        let error = load_text(&text, BTreeMap::new()).unwrap_err();
        prop_assert!(!error.to_string().contains(&secret), "{error}");
        let debug = format!("{error:?}");
        prop_assert!(!debug.contains(&secret), "{}", debug);
    }
}

// The real binary ------------------------------------------------------------------

fn demo_config() -> String {
    "[agent]\nmax_body_bytes = 1048576\n[servers.demo]\ntransport = \"builtin\"\n".to_owned()
}

/// The agent still runs and serves a call.
async fn still_serving(agent: &mut Agent) {
    assert!(agent.child.try_wait().unwrap().is_none(), "the agent died");
    assert_eq!(agent.admin("/healthz").await.0, 200);
    let (status, body) = agent
        .post(
            "/v1/tools/call",
            json!({"server": "demo", "tool": "echo", "arguments": {"message": "still here"}, "scope": "ok"}),
            &[],
        )
        .await;
    assert_eq!(
        (status, answer_text(&body).as_str()),
        (200, "still here"),
        "{body}"
    );
}

async fn post_raw(agent: &Agent, body: Vec<u8>, headers: &[(&str, &str)]) -> (u16, Value) {
    let mut request = agent
        .http
        .post(format!("{}/v1/tools/call", agent.api))
        .header("content-type", "application/json")
        .body(body);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn kind(body: &Value) -> &str {
    body["error"]["type"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_nesting_huge_strings_and_invalid_utf8_get_a_clear_4xx() {
    let mut agent = Agent::start(&demo_config(), &[]).await;

    // 100,000 levels of arrays, and of objects inside `arguments`: serde's recursion limit.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let (status, body) = post_raw(&agent, deep.into_bytes(), &[]).await;
    assert_eq!((status, kind(&body)), (400, "invalid_request"), "{body}");
    let nested = format!(
        "{{\"server\": \"demo\", \"tool\": \"echo\", \"arguments\": {}1{}}}",
        "{\"a\": ".repeat(50_000),
        "}".repeat(50_000)
    );
    let (status, body) = post_raw(&agent, nested.into_bytes(), &[]).await;
    assert_eq!((status, kind(&body)), (400, "invalid_request"), "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("recursion"),
        "{body}"
    );

    // Huge strings: under the body limit they are ordinary input, over it a 413.
    let long_name = "n".repeat(900_000);
    let (status, body) = agent
        .post(
            "/v1/tools/call",
            json!({"server": long_name, "tool": "echo"}),
            &[],
        )
        .await;
    assert_eq!((status, kind(&body)), (404, "unknown_server"));
    let (status, body) = agent
        .post(
            "/v1/tools/call",
            json!({"server": "demo", "tool": "t".repeat(900_000)}),
            &[],
        )
        .await;
    assert!(matches!(status, 400 | 404), "{status}: {}", kind(&body));
    let (status, body) = agent
        .post(
            "/v1/tools/call",
            json!({"server": "demo", "tool": "echo", "arguments": {"message": "m".repeat(2_000_000)}}),
            &[],
        )
        .await;
    assert_eq!((status, kind(&body)), (413, "payload_too_large"));
    let echoed = "é🦀\u{202e}".repeat(50_000);
    let (status, body) = agent
        .post(
            "/v1/tools/call",
            json!({"server": "demo", "tool": "echo", "arguments": {"message": echoed}}),
            &[],
        )
        .await;
    assert_eq!(
        (status, answer_text(&body)),
        (200, echoed),
        "unicode round-trips intact"
    );

    // Invalid UTF-8, inside a string and as the whole body; a lone surrogate escape.
    let mut bad = br#"{"server": "demo", "tool": "echo", "arguments": {"message": ""#.to_vec();
    bad.extend_from_slice(&[0xff, 0xfe, 0xc3, 0x28]);
    bad.extend_from_slice(br#""}}"#);
    let (status, body) = post_raw(&agent, bad, &[]).await;
    assert_eq!((status, kind(&body)), (400, "invalid_request"), "{body}");
    let (status, body) = post_raw(&agent, vec![0xc0, 0xaf, 0xed, 0xa0, 0x80], &[]).await;
    assert_eq!((status, kind(&body)), (400, "invalid_request"), "{body}");
    let surrogate =
        br#"{"server": "demo", "tool": "echo", "arguments": {"message": "\ud800"}}"#.to_vec();
    let (status, body) = post_raw(&agent, surrogate, &[]).await;
    assert_eq!((status, kind(&body)), (400, "invalid_request"), "{body}");

    // Empty body, a JSON scalar, trailing garbage, a NUL.
    for body in [
        &b""[..],
        b"42",
        b"{\"server\": \"demo\", \"tool\": \"echo\"} x",
        b"\0",
    ] {
        let (status, answer) = post_raw(&agent, body.to_vec(), &[]).await;
        assert_eq!(
            (status, kind(&answer)),
            (400, "invalid_request"),
            "{answer}"
        );
    }
    still_serving(&mut agent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_scope_names_in_body_header_and_path_are_refused_with_400() {
    let mut agent = Agent::start(&demo_config(), &[]).await;
    let odd = [
        // (".." alone is a valid scope: dots are in the alphabet, and a scope is
        // only ever a map key and a log field, never a path.)
        "../".to_owned(),
        "../../etc/passwd".to_owned(),
        String::new(),
        "a".repeat(10 * 1024),
        "a".repeat(201),
        "a\nb".to_owned(),
        "a\rb".to_owned(),
        "nul\0byte".to_owned(),
        "tab\there".to_owned(),
        "\u{1b}[31mred".to_owned(),
        "space here".to_owned(),
        "slash/inside".to_owned(),
        "ünïcödé".to_owned(),
        "%2e%2e%2f".to_owned(),
    ];
    for scope in &odd {
        let (status, body) = agent
            .post(
                "/v1/tools/call",
                json!({"server": "demo", "tool": "echo", "arguments": {"message": "x"}, "scope": scope}),
                &[],
            )
            .await;
        assert_eq!(
            (status, kind(&body)),
            (400, "invalid_request"),
            "body scope {scope:?}: {body}"
        );
        if let Ok(value) = HeaderValue::from_str(scope) {
            let response = agent
                .http
                .post(format!("{}/v1/tools/call", agent.api))
                .header("x-mcpwatch-scope", value)
                .json(&json!({"server": "demo", "tool": "echo", "arguments": {"message": "x"}}))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 400, "header scope {scope:?}");
        }
        let path = format!("{}/v1/scopes/{}", agent.api, encode(scope));
        let status = agent
            .http
            .delete(&path)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        assert!(
            matches!(status, 400 | 404),
            "DELETE /v1/scopes/{scope:?}: {status}"
        );
        let path = format!("{}/v1/sessions/demo/{}", agent.api, encode(scope));
        let status = agent
            .http
            .delete(&path)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        assert!(
            matches!(status, 400 | 404),
            "DELETE /v1/sessions/demo/{scope:?}: {status}"
        );
    }
    // A scope at the limit is fine; nothing odd was opened.
    let (status, _) = agent
        .post(
            "/v1/tools/call",
            json!({"server": "demo", "tool": "echo", "arguments": {"message": "x"}, "scope": "a".repeat(200)}),
            &[],
        )
        .await;
    assert_eq!(status, 200);
    let (_, sessions) = agent.get("/v1/sessions", &[]).await;
    assert_eq!(
        sessions["sessions"].as_array().unwrap().len(),
        1,
        "{sessions}"
    );
    still_serving(&mut agent).await;
}

/// Sends raw bytes to `api` (http://127.0.0.1:PORT) and reads the whole answer.
async fn raw_http(api: &str, request: &[u8]) -> String {
    let addr = api.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_injection_is_refused_and_nothing_is_reflected() {
    let mut agent = Agent::start(&demo_config(), &[]).await;
    let body = r#"{"server": "demo", "tool": "echo", "arguments": {"message": "x"}}"#;
    let request = |header: &str| {
        format!(
            "POST /v1/tools/call HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{header}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    // CR/LF smuggled into header values: refused by the HTTP parser or by us, never reflected.
    for header in [
        "X-Request-Id: abc\rX-Injected: yes",
        "X-Mcpwatch-Scope: a\rX-Injected: yes",
        "X-Request-Id: abc\r\n X-Injected: yes",
        "X-Mcpwatch-Scope: a\x01b",
        "X-Mcpwatch-Scope: \u{ff}\u{fe}",
        "Idempotency-Key: k\x7f",
        "Authorization: Bearer \x00",
    ] {
        let answer = raw_http(&agent.api, request(header).as_bytes()).await;
        let status_line = answer.lines().next().unwrap_or_default().to_owned();
        assert!(
            status_line.starts_with("HTTP/1.1 400") || status_line.starts_with("HTTP/1.1 200"),
            "{header:?}: {status_line}"
        );
        let head = answer
            .split("\r\n\r\n")
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        assert!(
            !head.contains("x-injected"),
            "{header:?} reflected a header:\n{head}"
        );
    }
    // A request id is echoed only when it is plain [A-Za-z0-9-], up to 64 characters.
    for (sent, echoed) in [
        ("good-id-123", true),
        ("evil id", false),
        ("<script>", false),
        (&*"x".repeat(65), false),
    ] {
        let response = agent
            .http
            .get(format!("{}/v1/servers", agent.api))
            .header("x-request-id", sent)
            .send()
            .await
            .unwrap();
        let id = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        assert_eq!(id == sent, echoed, "{sent:?} -> {id:?}");
    }
    // A scope carrying a header line in the JSON body is a 400, not a header.
    let response = agent
        .http
        .post(format!("{}/v1/tools/call", agent.api))
        .json(&json!({"server": "demo", "tool": "echo", "arguments": {"message": "x"}, "scope": "a\r\nX-Injected: yes"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert!(response.headers().get("x-injected").is_none());
    // An upstream error text with CR/LF stays inside the JSON string.
    let response = agent
        .http
        .post(format!("{}/v1/tools/call", agent.api))
        .json(&json!({"server": "demo", "tool": "fail", "arguments": {"message": "line\r\nX-Injected: yes"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("x-injected").is_none());
    still_serving(&mut agent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_nothing_against_the_openapi_document() {
    let schemathesis = root().join(".test-deps/venv/bin/schemathesis");
    assert!(
        schemathesis.exists(),
        "{} is missing: run scripts/install-test-deps.sh first",
        schemathesis.display()
    );
    let mut agent = Agent::start(&demo_config(), &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let settings = dir.path().join("schemathesis.toml");
    // Every check, except that a schema-valid call may be refused where the body
    // names a scope: a body scope that disagrees with the X-Mcpwatch-Scope header,
    // or a reused Idempotency-Key with another body, is a 400 no schema can express.
    let exempt: String = ["callTool", "readResource", "getPrompt"]
        .iter()
        .map(|id| {
            format!(
                "\n[[operations]]\ninclude-operation-id = \"{id}\"\n\
                 checks.positive_data_acceptance.enabled = false\n"
            )
        })
        .collect();
    std::fs::write(&settings, format!("[checks]\nenabled = true\n{exempt}")).unwrap();
    // One worker: with two, a DELETE of a scope races a call in that scope, which
    // then fails with transport_closed by design (close_scope closes calls in flight).
    let output = tokio::process::Command::new(&schemathesis)
        .arg("--config-file")
        .arg(&settings)
        .args(["run", &format!("{}/v1/openapi.json", agent.api)])
        .args([
            "--max-examples",
            "40",
            "--phases",
            "examples,coverage,fuzzing",
        ])
        .args(["--request-timeout", "10", "--workers", "1", "--no-color"])
        .current_dir(dir.path())
        .env("SCHEMATHESIS_HOOKS", "")
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(240), output)
        .await
        .expect("schemathesis finished within 240 s")
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let summary: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("generated") || l.contains("Seed"))
        .collect();
    eprintln!("schemathesis: {summary:?}");
    assert!(
        output.status.success(),
        "schemathesis found problems:\n{text}"
    );
    assert!(text.contains("generated"), "{text}");
    still_serving(&mut agent).await;
}
