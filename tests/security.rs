//! Security (issue 7, part 5), through the real binary: loopback by default; a
//! non-loopback API listener without a token refused at start (exit 64); stdio
//! servers spawned without a shell and with the environment the config allows;
//! `check-config` warning about credentials over plain HTTP; and no secret in any
//! log line, span or Sentry envelope of a run whose config holds secrets.
//!
//! Token comparison in constant time is `src/agent/auth.rs` (`subtle::ConstantTimeEq`
//! after a length check, unit-tested there); tests/agent.rs covers the 401s.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use support::receivers::{Behaviour, OtlpReceiver, SentryReceiver};
use support::*;

fn write_config(text: &str) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), text).unwrap();
    file
}

/// Runs `mcpwatch ARGS` with `env` and waits (bounded) for it to exit.
async fn run_cli(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = tokio::process::Command::new(mcpwatch_bin());
    command.args(args).kill_on_drop(true);
    for (k, v) in env {
        command.env(k, v);
    }
    tokio::time::timeout(Duration::from_secs(30), command.output())
        .await
        .expect("mcpwatch exited within 30 s")
        .unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test]
async fn listeners_are_loopback_by_default() {
    let config = mcpwatch::Config::load(&mcpwatch::config::ConfigSource::default()).unwrap();
    assert!(
        config.agent.listen.ip().is_loopback(),
        "{}",
        config.agent.listen
    );
    assert!(
        config.agent.admin_listen.ip().is_loopback(),
        "{}",
        config.agent.admin_listen
    );
    assert!(config.agent.token.is_none());
    // What the binary really runs with when given nothing.
    let output = run_cli(&["check-config"], &[]).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("listen = \"127.0.0.1:8700\""), "{text}");
    assert!(text.contains("admin_listen = \"127.0.0.1:9464\""), "{text}");
}

#[tokio::test]
async fn a_non_loopback_api_listener_without_a_token_is_refused_at_start() {
    for listen in ["0.0.0.0:0", "[::]:0", "192.0.2.1:8700"] {
        let file = write_config(&format!(
            "[agent]\nlisten = \"{listen}\"\nadmin_listen = \"127.0.0.1:0\"\n[servers.demo]\ntransport = \"builtin\"\n"
        ));
        let output = run_cli(&["serve", "--config", file.path().to_str().unwrap()], &[]).await;
        let text = stderr(&output);
        assert_eq!(output.status.code(), Some(64), "{listen}: {text}");
        assert!(
            text.contains("agent.listen")
                && text.contains("token")
                && text.contains("allow_unauthenticated"),
            "{listen}: the refusal names the key and the way out: {text}"
        );
        assert!(output.stdout.is_empty(), "{listen}: it never listened");
    }
    // The same from the environment alone.
    let output = run_cli(&["serve"], &[("MCPWATCH_AGENT__LISTEN", "0.0.0.0:0")]).await;
    assert_eq!(output.status.code(), Some(64), "{}", stderr(&output));
    assert!(stderr(&output).contains("agent.listen"));
}

/// A Python stdio server (tests/servers/bad_server.py) run with these extra arguments.
fn python_server(args: &[&str], extra: &str) -> String {
    let mut all = vec![bad_server_py().display().to_string(), "stdio".to_owned()];
    // `$$` is the config's literal `$` (`${VAR}` in a value reads the environment).
    all.extend(args.iter().map(|a| a.replace('$', "$$")));
    let args = serde_json::to_string(&all).unwrap();
    format!(
        "transport = \"stdio\"\ncommand = \"{}\"\nargs = {args}\nconnect_timeout = \"20s\"\n{extra}",
        python().display()
    )
}

async fn tool_text(agent: &Agent, server: &str, tool: &str) -> String {
    let (status, body) = agent
        .post(
            "/v1/tools/call",
            json!({"server": server, "tool": tool}),
            &[],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    answer_text(&body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdio_arguments_reach_the_server_literally_without_a_shell() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("pwned");
    let m = marker.display().to_string();
    let hostile: Vec<String> = vec![
        format!("$(touch {m})"),
        format!("`touch {m}`"),
        format!("; touch {m}"),
        format!("&& touch {m}"),
        format!("| touch {m}"),
        format!("> {m}"),
        "*".to_owned(),
        "~".to_owned(),
        "$HOME".to_owned(),
        "${PATH}".to_owned(),
        "'single' \"double\"".to_owned(),
        "two words".to_owned(),
        "new\nline".to_owned(),
    ];
    let args: Vec<&str> = hostile.iter().map(String::as_str).collect();
    let config = format!("[servers.py]\n{}", python_server(&args, ""));
    let agent = Agent::start(&config, &[]).await;
    let argv: Vec<String> = serde_json::from_str(&tool_text(&agent, "py", "argv").await).unwrap();
    assert_eq!(
        &argv[2..],
        &hostile[..],
        "every argument arrived as written"
    );
    assert!(!marker.exists(), "a shell ran one of the arguments");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_clear_and_env_allow_decide_the_environment_of_a_stdio_server() {
    let config = format!(
        "[servers.clean]\n{}\n[servers.inherit]\n{}",
        python_server(
            &[],
            "env_clear = true\nenv_allow = [\"PATH\", \"T_ALLOWED\", \"T_NOT_SET_ANYWHERE\"]\nenv = { T_EXPLICIT = \"${T_SOURCE}\" }\n"
        ),
        python_server(&[], "env = { T_EXPLICIT = \"inherited-too\" }\n"),
    );
    let agent = Agent::start(
        &config,
        &[
            ("T_ALLOWED", "yes"),
            ("T_DENIED", "no"),
            ("T_SOURCE", "from-config"),
        ],
    )
    .await;
    let clean: Value = serde_json::from_str(&tool_text(&agent, "clean", "environ").await).unwrap();
    let clean = clean.as_object().unwrap();
    assert_eq!(clean["T_ALLOWED"], "yes");
    assert_eq!(clean["T_EXPLICIT"], "from-config");
    assert!(clean.contains_key("PATH"));
    // Python itself may add LC_CTYPE (PEP 538 locale coercion); nothing else may appear.
    let mut names: Vec<&str> = clean
        .keys()
        .map(String::as_str)
        .filter(|k| *k != "LC_CTYPE")
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["PATH", "T_ALLOWED", "T_EXPLICIT"], "{clean:?}");

    let inherit: Value =
        serde_json::from_str(&tool_text(&agent, "inherit", "environ").await).unwrap();
    assert_eq!(
        inherit["T_DENIED"], "no",
        "without env_clear the environment is inherited"
    );
    assert_eq!(inherit["T_EXPLICIT"], "inherited-too");
}

#[tokio::test]
async fn check_config_warns_about_credentials_over_plain_http_to_a_remote_host() {
    let server = |url: &str, headers: bool| {
        format!(
            "[servers.r]\ntransport = \"http\"\nurl = \"{url}\"\n{}",
            if headers {
                "headers = { Authorization = \"Bearer plain-http-secret-4411\" }\n"
            } else {
                ""
            }
        )
    };
    let cases = [
        ("http://mcp.example.com/mcp", true, true),
        ("http://10.1.2.3:8080/mcp", true, true),
        ("https://mcp.example.com/mcp", true, false),
        ("http://127.0.0.1:9000/mcp", true, false),
        ("http://[::1]:9000/mcp", true, false),
        ("http://mcp.example.com/mcp", false, false),
    ];
    for (url, headers, warned) in cases {
        let file = write_config(&server(url, headers));
        let output = Command::new(mcpwatch_bin())
            .args(["check-config", "--config"])
            .arg(file.path())
            .output()
            .unwrap();
        let text = stderr(&output);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{url}: a warning, not an error: {text}"
        );
        let warning = text
            .lines()
            .find(|l| l.starts_with("warning: servers.r.url"))
            .map(str::to_owned);
        assert_eq!(
            warning.is_some(),
            warned,
            "{url} (headers: {headers}): {text}"
        );
        if let Some(warning) = warning {
            assert!(
                warning.contains("plain http://") && warning.contains("https://"),
                "{warning}"
            );
        }
        let all = format!("{}{text}", String::from_utf8_lossy(&output.stdout));
        assert!(!all.contains("plain-http-secret-4411"), "{all}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_a_log_line_a_span_or_a_sentry_envelope() {
    const AGENT_TOKEN: &str = "agent-token-secret-71a9";
    const HEADER_SECRET: &str = "header-secret-5c3e";
    const HEADER_SECRET_2: &str = "api-key-secret-90d2";
    const ENV_SECRET: &str = "stdio-env-secret-2b7f";
    const BROKEN_ENV_SECRET: &str = "broken-env-secret-8e41";
    let otlp = OtlpReceiver::start(Behaviour::Answer).await;
    let sentry = SentryReceiver::start().await;
    let dsn_key = "public-key"; // the DSN's key, from SentryReceiver
    let upstream = HttpDemo::start().await;
    let dead_port = free_port();
    let config = format!(
        "[agent]\ntoken = \"${{T_AGENT_TOKEN}}\"\n\
         [log]\nlevel = \"debug\"\n\
         [telemetry.otlp]\nendpoint = \"{otlp}\"\n\
         [telemetry.sentry]\ndsn = \"${{T_DSN}}\"\nenvironment = \"security-test\"\n\
         [servers.child]\ntransport = \"stdio\"\ncommand = \"{bin}\"\nargs = [\"demo-server\", \"--stdio\"]\n\
         env = {{ DEMO_API_KEY = \"${{T_ENV_SECRET}}\" }}\n\
         [servers.remote]\ntransport = \"http\"\nurl = \"{url}\"\n\
         headers = {{ Authorization = \"Bearer ${{T_HEADER_SECRET}}\", X-Api-Key = \"{HEADER_SECRET_2}\" }}\n\
         [servers.down]\ntransport = \"http\"\nurl = \"http://127.0.0.1:{dead_port}/mcp\"\n\
         headers = {{ Authorization = \"Bearer ${{T_HEADER_SECRET}}\" }}\nretry = {{ max_attempts = 1 }}\n\
         [servers.broken]\ntransport = \"stdio\"\ncommand = \"/nonexistent/secret-server\"\n\
         env = {{ KEY = \"{BROKEN_ENV_SECRET}\" }}\n",
        otlp = otlp.endpoint,
        bin = mcpwatch_bin(),
        url = upstream.url,
    );
    let stderr_lines = Arc::new(Mutex::new(Vec::new()));
    let mut agent = Agent::start_capturing(
        &config,
        &[
            ("T_AGENT_TOKEN", AGENT_TOKEN),
            ("T_HEADER_SECRET", HEADER_SECRET),
            ("T_ENV_SECRET", ENV_SECRET),
            ("T_DSN", &sentry.dsn),
            ("RUST_LOG", "debug"),
        ],
        stderr_lines.clone(),
    )
    .await;
    let bearer = format!("Bearer {AGENT_TOKEN}");
    let auth = [("Authorization", bearer.as_str())];
    let mut answers = Vec::new();
    let mut call = async |body: Value, headers: &[(&str, &str)]| {
        let (status, answer) = agent.post("/v1/tools/call", body, headers).await;
        answers.push(answer.to_string());
        status
    };
    // Refused callers: none, a wrong token, a token one character off.
    let off_by_one = format!("Bearer {}x", &AGENT_TOKEN[..AGENT_TOKEN.len() - 1]);
    for headers in [
        &[][..],
        &[("Authorization", "Bearer wrong")],
        &[("Authorization", off_by_one.as_str())],
    ] {
        assert_eq!(
            call(json!({"server": "child", "tool": "echo"}), headers).await,
            401
        );
    }
    // Successes, a tool error, a timeout, failures to open (connect refused, no such command).
    let scope = "security-scope";
    for server in ["child", "remote"] {
        let body = json!({"server": server, "tool": "echo", "arguments": {"message": "hello"}, "scope": scope});
        assert_eq!(call(body, &auth).await, 200);
        let body = json!({"server": server, "tool": "fail", "arguments": {"message": "boom"}, "scope": scope});
        assert_eq!(call(body, &auth).await, 200);
        let body = json!({"server": server, "tool": "sleep", "arguments": {"ms": 3000}, "scope": scope, "timeout_ms": 150});
        assert_eq!(call(body, &auth).await, 504);
    }
    assert_eq!(
        call(
            json!({"server": "down", "tool": "echo", "scope": scope}),
            &auth
        )
        .await,
        502
    );
    assert_eq!(
        call(
            json!({"server": "broken", "tool": "echo", "scope": scope}),
            &auth
        )
        .await,
        502
    );
    for path in [
        "/v1/sessions",
        "/v1/servers",
        "/v1/servers/remote/tools",
        "/v1/openapi.json",
    ] {
        let (status, body) = agent.get(path, &auth).await;
        assert_eq!(status, 200, "{path}");
        answers.push(body.to_string());
    }
    let (_, metrics) = agent.admin("/metrics").await;
    answers.push(metrics);

    // Shut down: the agent flushes spans and Sentry events on the way out.
    agent.terminate();
    assert_eq!(agent.wait_exit(Duration::from_secs(30)).await, Some(0));
    eventually(Duration::from_secs(5), "spans exported", || {
        !otlp.spans().is_empty()
    })
    .await;
    let logs = stderr_lines.lock().unwrap().join("\n");
    let stdout = agent.stdout_rest.lock().unwrap().join("\n");
    let spans = format!("{:?}", otlp.spans());
    let envelopes = sentry.raw().join("\n");
    let answers = answers.join("\n");

    // The collection is real: each channel saw this run.
    let lines = logs.lines().count();
    eprintln!(
        "checked {lines} log lines, {} spans, {} Sentry envelopes, {} API answers",
        otlp.spans().len(),
        sentry.raw().len(),
        answers.lines().count()
    );
    assert!(
        lines > 50 && logs.contains(" DEBUG ") && logs.contains(scope),
        "debug logs were collected"
    );
    assert!(
        spans.contains(scope) && spans.contains("tools/call"),
        "spans were collected"
    );
    assert!(
        sentry.events().len() >= 3 && envelopes.contains("mcp-tool-error"),
        "Sentry events were collected: {}",
        sentry.events().len()
    );
    for secret in [
        AGENT_TOKEN,
        HEADER_SECRET,
        HEADER_SECRET_2,
        ENV_SECRET,
        BROKEN_ENV_SECRET,
        dsn_key,
    ] {
        for (channel, text) in [
            ("log", &logs),
            ("stdout", &stdout),
            ("span", &spans),
            ("Sentry", &envelopes),
            ("API answer", &answers),
        ] {
            if let Some(at) = text.find(secret) {
                let context =
                    &text[at.saturating_sub(200)..(at + secret.len() + 100).min(text.len())];
                panic!("{secret} leaked into a {channel}: ...{context}...");
            }
        }
    }
}
