//! Configuration: sources and precedence, `${VAR}`, every problem reported at
//! once with its key path, secrets never shown, the example file in step with
//! the types, and `check-config`'s exit status.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;
use std::process::Command;

use mcpwatch::config::{Config, ConfigSource, ServerConfig, TransportKind};
use serde_json::Value;

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn file(text: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(text.as_bytes()).unwrap();
    file
}

fn load(
    path: Option<&Path>,
    env: BTreeMap<String, String>,
) -> Result<Config, mcpwatch::config::ConfigError> {
    Config::load(&ConfigSource {
        file: path.map(Path::to_owned),
        env,
    })
}

const EXAMPLE_ENV: &[(&str, &str)] = &[
    ("MCPWATCH_TOKEN", "tok-123-secret"),
    ("SENTRY_DSN", "https://key@sentry.example/1"),
    ("EVERYTHING_API_KEY", "api-key-secret"),
    ("REMOTE_TOKEN", "remote-secret"),
    ("PROTECTED_CLIENT_SECRET", "client-secret-value"),
];

#[test]
fn the_example_file_loads() {
    let example = support::root().join("config/mcpwatch.example.toml");
    let config = load(Some(&example), env(EXAMPLE_ENV)).unwrap();
    assert_eq!(config.servers.len(), 4);
    let oauth = config.servers["protected"].oauth.as_ref().unwrap();
    assert_eq!(
        oauth.client_secret.as_ref().unwrap().expose(),
        "client-secret-value"
    );
    let everything = &config.servers["everything"];
    assert_eq!(everything.transport, Some(TransportKind::Stdio));
    assert_eq!(everything.env["API_KEY"].expose(), "api-key-secret");
    assert_eq!(everything.max_sessions, Some(64));
    assert_eq!(everything.breaker.failure_threshold, 5);
    assert_eq!(
        config.agent.token.as_ref().unwrap().expose(),
        "tok-123-secret"
    );
    assert_eq!(
        config.servers["remote"].headers["Authorization"].expose(),
        "Bearer remote-secret"
    );
    let debug = format!("{config:?}");
    for (_, secret) in EXAMPLE_ENV {
        assert!(!debug.contains(secret), "{secret} shows in Debug");
    }
}

/// Every key of the config types appears in the example file, so the example
/// (the config reference) cannot fall behind the types.
#[test]
fn the_example_documents_every_key() {
    let example =
        std::fs::read_to_string(support::root().join("config/mcpwatch.example.toml")).unwrap();
    let mut config = Config::default();
    let mut server = ServerConfig::stdio("x", ["y"]);
    server.cwd = Some("/".into());
    server.url = Some("http://x".into());
    server.idle_ttl = Some(std::time::Duration::from_secs(1));
    server.max_sessions = Some(1);
    server.oauth = Some(mcpwatch::config::OAuthConfig {
        client_id: Some("c".into()),
        client_secret: Some(mcpwatch::config::Secret::new("s")),
        client_metadata_url: Some("https://x/m.json".into()),
        ..Default::default()
    });
    config.servers.insert("s".into(), server);
    config.agent.token = Some(mcpwatch::config::Secret::new("t"));
    config.telemetry.otlp.endpoint = Some("http://x".into());
    config.telemetry.sentry.dsn = Some(mcpwatch::config::Secret::new("d"));
    let mut keys = BTreeSet::new();
    collect_keys(&serde_json::to_value(&config).unwrap(), &mut keys);
    keys.remove("s"); // the server's name
    for key in [
        "servers",
        "agent",
        "log",
        "pool",
        "telemetry",
        "otlp",
        "sentry",
        "oauth",
        "gateway",
    ] {
        keys.remove(key);
    }
    let missing: Vec<&String> = keys
        .iter()
        .filter(|k| {
            !example.lines().any(|l| {
                l.trim_start().starts_with(&format!("{k} =")) || l.contains(&format!(" {k} ="))
            })
        })
        .collect();
    assert!(
        missing.is_empty(),
        "keys missing from config/mcpwatch.example.toml: {missing:?}"
    );
}

fn collect_keys(value: &Value, keys: &mut BTreeSet<String>) {
    if let Value::Object(map) = value {
        for (key, child) in map {
            keys.insert(key.clone());
            collect_keys(child, keys);
        }
    }
}

#[test]
fn no_file_means_the_builtin_demo_server() {
    let config = load(None, env(&[])).unwrap();
    assert_eq!(config.servers.keys().collect::<Vec<_>>(), ["demo"]);
    assert_eq!(
        config.servers["demo"].transport,
        Some(TransportKind::Builtin)
    );
    assert_eq!(config.agent.listen.to_string(), "127.0.0.1:8700");
    assert!(
        config.telemetry.otlp.endpoint.is_none(),
        "no endpoint, no export"
    );
}

#[test]
fn sources_are_layered_defaults_standard_env_file_mcpwatch_env() {
    let with_endpoint = file(
        "[telemetry.otlp]\nendpoint = \"http://file:4318\"\n[servers.demo]\ntransport = \"builtin\"\n",
    );
    let without = file("[servers.demo]\ntransport = \"builtin\"\n");
    let otel = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://otel-env:4318");
    let ours = (
        "MCPWATCH_TELEMETRY__OTLP__ENDPOINT",
        "http://mcpwatch-env:4318",
    );

    let c = load(Some(without.path()), env(&[otel])).unwrap();
    assert_eq!(
        c.telemetry.otlp.endpoint.as_deref(),
        Some("http://otel-env:4318"),
        "standard env over defaults"
    );
    let c = load(Some(with_endpoint.path()), env(&[otel])).unwrap();
    assert_eq!(
        c.telemetry.otlp.endpoint.as_deref(),
        Some("http://file:4318"),
        "file over standard env"
    );
    let c = load(Some(with_endpoint.path()), env(&[otel, ours])).unwrap();
    assert_eq!(
        c.telemetry.otlp.endpoint.as_deref(),
        Some("http://mcpwatch-env:4318"),
        "MCPWATCH_* over the file"
    );

    let c = load(
        Some(without.path()),
        env(&[
            ("MCPWATCH_POOL__MAX_SESSIONS", "7"),
            ("MCPWATCH_SERVERS__DEMO__CALL_TIMEOUT", "3s"),
            ("SENTRY_ENVIRONMENT", "staging"),
            ("OTEL_SERVICE_NAME", "agent-7"),
        ]),
    )
    .unwrap();
    assert_eq!(c.pool.max_sessions, 7);
    assert_eq!(
        c.servers["demo"].call_timeout,
        std::time::Duration::from_secs(3)
    );
    assert_eq!(c.telemetry.sentry.environment, "staging");
    assert_eq!(c.telemetry.service_name, "agent-7");
}

#[test]
fn mcpwatch_config_names_the_file_when_no_flag_is_given() {
    let f = file("[servers.only]\ntransport = \"builtin\"\n");
    let config = load(
        None,
        env(&[("MCPWATCH_CONFIG", f.path().to_str().unwrap())]),
    )
    .unwrap();
    assert_eq!(
        config.servers.keys().collect::<Vec<_>>(),
        ["only"],
        "no demo server when a file is given"
    );
}

const BAD: &str = r#"
[agent]
bogus = 1
[servers.a]
transport = "carrier-pigeon"
[servers.b]
transport = "stdio"
call_timeout = "soon"
colour = "blue"
[servers.c]
transport = "http"
url = "not a url"
command = "x"
[servers.d]
transport = "sse"
url = "http://127.0.0.1:1/${MCPWATCH_TEST_UNSET_VARIABLE}"
"#;

#[test]
fn every_problem_is_reported_at_once_with_its_key_path() {
    let bad = file(BAD);
    let error = load(Some(bad.path()), env(&[])).unwrap_err();
    let paths: Vec<&str> = error.problems.iter().map(|p| p.path.as_str()).collect();
    for expected in [
        "agent.bogus",
        "servers.a.transport",
        "servers.b.call_timeout",
        "servers.b.colour",
        "servers.b.command",
        "servers.c.url",
        "servers.c.command",
        "servers.d.url",
    ] {
        assert!(
            paths.contains(&expected),
            "{expected} not reported; got:\n{error}"
        );
    }
    let text = error.to_string();
    assert!(text.contains("unknown variant `carrier-pigeon`"), "{text}");
    assert!(
        text.contains("`MCPWATCH_TEST_UNSET_VARIABLE` is not set"),
        "{text}"
    );
    assert!(
        text.contains("is required for transport \"stdio\""),
        "{text}"
    );
}

/// The protocol keys of a server: policies, lifecycle and OAuth, each problem
/// with its key path.
#[test]
fn protocol_and_oauth_keys_are_checked() {
    let good = file(
        "[servers.h]\ntransport = \"http\"\nurl = \"http://127.0.0.1:1/mcp\"\n\
         sampling = \"off\"\nelicitation = \"accept_defaults\"\nlifecycle = \"discover\"\n\
         [servers.h.oauth]\ngrant = \"client_credentials\"\nclient_id = \"c\"\nclient_secret = \"sekrit-value\"\n",
    );
    let config = load(Some(good.path()), env(&[])).unwrap();
    let server = &config.servers["h"];
    assert_eq!(server.sampling, mcpwatch::config::SamplingPolicy::Off);
    assert_eq!(
        server.elicitation,
        mcpwatch::config::ElicitationPolicy::AcceptDefaults
    );
    assert_eq!(server.lifecycle, mcpwatch::config::Lifecycle::Discover);
    assert!(
        !format!("{config:?}").contains("sekrit-value"),
        "the secret is redacted"
    );

    let bad = file(
        "[servers.s]\ntransport = \"sse\"\nurl = \"http://127.0.0.1:1/sse\"\nlifecycle = \"discover\"\n\
         sampling = \"maybe\"\n[servers.s.oauth]\n\
         [servers.h]\ntransport = \"http\"\nurl = \"http://127.0.0.1:1/mcp\"\n\
         headers = { Authorization = \"Bearer x\" }\n\
         [servers.h.oauth]\ngrant = \"client_credentials\"\nclient_secret = \"s\"\n\
         client_metadata_url = \"http://x/doc.json\"\nredirect_uri = \"not a url\"\n",
    );
    let error = load(Some(bad.path()), env(&[])).unwrap_err();
    let paths: Vec<&str> = error.problems.iter().map(|p| p.path.as_str()).collect();
    for expected in [
        "servers.s.lifecycle",
        "servers.s.sampling",
        "servers.s.oauth",
        "servers.h.headers.Authorization",
        "servers.h.oauth.grant",
        "servers.h.oauth.client_secret",
        "servers.h.oauth.client_metadata_url",
        "servers.h.oauth.redirect_uri",
    ] {
        assert!(
            paths.contains(&expected),
            "{expected} not reported; got:\n{error}"
        );
    }
    assert!(!error.to_string().contains("Bearer x"), "{error}");
}

#[test]
fn a_file_that_is_not_toml_or_not_there_is_one_clear_problem() {
    let broken = file("[servers\ntransport = ");
    let error = load(Some(broken.path()), env(&[])).unwrap_err();
    assert_eq!(error.problems.len(), 1);
    let missing = load(Some(Path::new("/nonexistent/mcpwatch.toml")), env(&[])).unwrap_err();
    assert!(
        missing
            .to_string()
            .contains("cannot read config file /nonexistent/mcpwatch.toml"),
        "{missing}"
    );
}

#[test]
fn non_loopback_listener_needs_a_token() {
    let open = file("[agent]\nlisten = \"0.0.0.0:8700\"\n[servers.d]\ntransport = \"builtin\"\n");
    let error = load(Some(open.path()), env(&[])).unwrap_err();
    assert!(
        error.problems.iter().any(|p| p.path == "agent.listen"),
        "{error}"
    );
    let allowed = file(
        "[agent]\nlisten = \"0.0.0.0:8700\"\nallow_unauthenticated = true\n[servers.d]\ntransport = \"builtin\"\n",
    );
    assert!(load(Some(allowed.path()), env(&[])).is_ok());
    let token = file(
        "[agent]\nlisten = \"0.0.0.0:8700\"\ntoken = \"t\"\n[servers.d]\ntransport = \"builtin\"\n",
    );
    assert!(load(Some(token.path()), env(&[])).is_ok());
}

#[test]
fn plain_http_with_credentials_to_a_remote_host_is_a_warning() {
    let f = file(
        "[servers.r]\ntransport = \"http\"\nurl = \"http://mcp.example.com/mcp\"\nheaders = { Authorization = \"Bearer x\" }\n",
    );
    let config = load(Some(f.path()), env(&[])).unwrap();
    let warnings = config.warnings();
    assert_eq!(warnings.len(), 1);
    assert_eq!(warnings[0].path, "servers.r.url");
    let local = file(
        "[servers.r]\ntransport = \"http\"\nurl = \"http://127.0.0.1:9/mcp\"\nheaders = { Authorization = \"Bearer x\" }\n",
    );
    assert!(
        load(Some(local.path()), env(&[]))
            .unwrap()
            .warnings()
            .is_empty()
    );
}

#[test]
fn check_config_exits_64_and_lists_every_problem() {
    let bad = file(BAD);
    let output = Command::new(support::mcpwatch_bin())
        .args(["check-config", "--config"])
        .arg(bad.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("servers.b.colour") && stderr.contains("servers.a.transport"),
        "{stderr}"
    );
}

#[test]
fn check_config_prints_the_effective_config_without_secrets() {
    let f = file(
        "[agent]\ntoken = \"agent-token-value\"\n[servers.r]\ntransport = \"http\"\nurl = \"http://127.0.0.1:9/mcp\"\nheaders = { X-Api-Key = \"header-secret-value\" }\n[servers.s]\ntransport = \"stdio\"\ncommand = \"x\"\nenv = { KEY = \"${MY_SECRET_ENV}\" }\n",
    );
    let output = Command::new(support::mcpwatch_bin())
        .args(["check-config", "--config"])
        .arg(f.path())
        .env("MY_SECRET_ENV", "env-secret-value")
        .env("SENTRY_DSN", "https://dsn-secret-value@sentry.example/1")
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        all.contains("[servers.r]") && all.contains("[redacted]"),
        "{all}"
    );
    for secret in [
        "agent-token-value",
        "header-secret-value",
        "env-secret-value",
        "dsn-secret-value",
    ] {
        assert!(!all.contains(secret), "{secret} printed:\n{all}");
    }
}

#[test]
fn aggregate_names_are_checked_and_aggregate_is_reserved() {
    let problems = |toml: &str| {
        let f = file(toml);
        match load(Some(f.path()), env(&[])) {
            Ok(_) => Vec::new(),
            Err(error) => error.problems.iter().map(|p| p.path.clone()).collect(),
        }
    };
    let builtin = "transport = \"builtin\"\n";
    assert_eq!(
        problems(&format!("[servers._aggregate]\n{builtin}")),
        ["servers._aggregate"]
    );
    for bad in ["a__b", "_lead", "trail_", "dot.ted"] {
        assert_eq!(
            problems(&format!("[servers.\"{bad}\"]\n{builtin}")),
            [format!("servers.{bad}")],
            "{bad}"
        );
    }
    // Left out of the aggregate endpoint, or with the gateway off: no problem.
    assert!(
        problems(&format!(
            "[gateway]\nexpose = [\"ok\"]\n[servers.ok]\n{builtin}[servers.a__b]\n{builtin}"
        ))
        .is_empty()
    );
    assert!(
        problems(&format!(
            "[gateway]\nenabled = false\n[servers.a__b]\n{builtin}"
        ))
        .is_empty()
    );
    assert_eq!(
        problems(&format!(
            "[gateway]\nexpose = [\"missing\"]\n[servers.ok]\n{builtin}"
        )),
        ["gateway.expose"]
    );
    assert!(problems(&format!("[servers.my_server-2]\n{builtin}")).is_empty());
}
