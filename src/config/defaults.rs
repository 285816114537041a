//! Built-in defaults and the environment layers of the config.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Map, Value, json};

use super::{
    AgentConfig, BreakerConfig, DEMO_SERVER, ElicitationPolicy, GatewayConfig, JwtAlgorithm,
    Lifecycle, LogConfig, LogFormat, OAuthConfig, OAuthGrant, OtlpConfig, OtlpProtocol, PoolConfig,
    RetryConfig, SamplingPolicy, ScopeMode, SentryConfig, ServerConfig, TelemetryConfig,
};

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            listen: ([127, 0, 0, 1], 8700).into(),
            admin_listen: ([127, 0, 0, 1], 9464).into(),
            token: None,
            allow_unauthenticated: false,
            max_body_bytes: 4 * 1024 * 1024,
            max_in_flight: 1024,
            queue_timeout: Duration::from_secs(5),
            drain_timeout: Duration::from_secs(30),
            shutdown_delay: Duration::ZERO,
            idempotency_ttl: Duration::from_secs(600),
        }
    }
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            enabled: true,
            expose: vec!["*".to_owned()],
            max_sessions: 10_000,
            session_idle_ttl: Duration::from_secs(600),
            keepalive_interval: Duration::from_secs(15),
            session_key: None,
            allowed_origins: Vec::new(),
            allowed_hosts: Vec::new(),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            level: "info".to_owned(),
        }
    }
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            max_sessions: 1024,
            queue_timeout: Duration::from_secs(5),
            idle_ttl: Duration::from_secs(600),
            max_lifetime: Duration::from_secs(12 * 3600),
        }
    }
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            capture_payloads: false,
            service_name: "mcpwatch".to_owned(),
            otlp: OtlpConfig::default(),
            sentry: SentryConfig::default(),
        }
    }
}

impl Default for OtlpConfig {
    fn default() -> Self {
        OtlpConfig {
            endpoint: None,
            protocol: OtlpProtocol::HttpProtobuf,
            metrics: false,
        }
    }
}

impl Default for SentryConfig {
    fn default() -> Self {
        SentryConfig {
            dsn: None,
            environment: "production".to_owned(),
            send_default_pii: false,
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            transport: None,
            command: None,
            args: Vec::new(),
            env: BTreeMap::new(),
            env_clear: false,
            env_allow: Vec::new(),
            cwd: None,
            url: None,
            headers: BTreeMap::new(),
            warm: false,
            connect_timeout: Duration::from_secs(10),
            call_timeout: Duration::from_secs(30),
            idle_ttl: None,
            max_sessions: None,
            max_response_bytes: 16 * 1024 * 1024,
            retry: RetryConfig::default(),
            breaker: BreakerConfig::default(),
            idempotent_tools: Vec::new(),
            sampling: SamplingPolicy::default(),
            elicitation: ElicitationPolicy::default(),
            lifecycle: Lifecycle::default(),
            scopes: ScopeMode::default(),
            oauth: None,
        }
    }
}

impl Default for OAuthConfig {
    fn default() -> Self {
        OAuthConfig {
            grant: OAuthGrant::default(),
            client_id: None,
            client_secret: None,
            private_key: None,
            private_key_algorithm: JwtAlgorithm::default(),
            client_metadata_url: None,
            client_name: "mcpwatch".to_owned(),
            scopes: Vec::new(),
            redirect_uri: "http://localhost/mcpwatch/oauth/callback".to_owned(),
        }
    }
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
        }
    }
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failure_threshold: 5,
            cool_down: Duration::from_secs(30),
        }
    }
}

/// The standard OpenTelemetry and Sentry variables, as the weakest layer above the defaults.
pub(super) fn standard_env_layer(env: &BTreeMap<String, String>) -> Value {
    let mut tree = Value::Object(Map::new());
    let mapping = [
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            ["telemetry", "otlp", "endpoint"].as_slice(),
        ),
        (
            "OTEL_EXPORTER_OTLP_PROTOCOL",
            &["telemetry", "otlp", "protocol"],
        ),
        ("OTEL_SERVICE_NAME", &["telemetry", "service_name"]),
        ("SENTRY_DSN", &["telemetry", "sentry", "dsn"]),
        (
            "SENTRY_ENVIRONMENT",
            &["telemetry", "sentry", "environment"],
        ),
    ];
    for (variable, path) in mapping {
        if let Some(value) = env.get(variable).filter(|v| !v.is_empty()) {
            insert(&mut tree, path, Value::String(value.clone()));
        }
    }
    tree
}

/// The built-in demo server, present only when no config file is given.
pub(super) fn demo_layer() -> Value {
    json!({ "servers": { DEMO_SERVER: { "transport": "builtin" } } })
}

/// `MCPWATCH_A__B=value` → `a.b = value`. Values parse as JSON where they can
/// (`10`, `true`, `["a","b"]`) and are strings otherwise. Variables without
/// `__` (`MCPWATCH_CONFIG`, `MCPWATCH_TOKEN`) are not config keys.
pub(super) fn mcpwatch_env_layer(env: &BTreeMap<String, String>) -> Value {
    let mut tree = Value::Object(Map::new());
    for (key, raw) in env {
        let Some(rest) = key.strip_prefix("MCPWATCH_") else {
            continue;
        };
        if !rest.contains("__") {
            continue;
        }
        let path: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
        if path.iter().any(String::is_empty) {
            continue;
        }
        let value =
            serde_json::from_str::<Value>(raw).unwrap_or_else(|_| Value::String(raw.clone()));
        let path: Vec<&str> = path.iter().map(String::as_str).collect();
        insert(&mut tree, &path, value);
    }
    tree
}

fn insert(tree: &mut Value, path: &[&str], value: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut node = tree;
    for key in parents {
        if !node.is_object() {
            *node = Value::Object(Map::new());
        }
        let Value::Object(map) = node else { return };
        node = map
            .entry((*key).to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    if !node.is_object() {
        *node = Value::Object(Map::new());
    }
    if let Value::Object(map) = node {
        map.insert((*last).to_owned(), value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_keys_become_nested_paths() {
        let env: BTreeMap<String, String> = [
            ("MCPWATCH_AGENT__LISTEN", "127.0.0.1:9"),
            ("MCPWATCH_POOL__MAX_SESSIONS", "7"),
            ("MCPWATCH_SERVERS__X__ARGS", "[\"a\",\"b\"]"),
            ("MCPWATCH_TOKEN", "not-a-key"),
            ("MCPWATCH_CONFIG", "/nowhere"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let tree = mcpwatch_env_layer(&env);
        assert_eq!(
            tree,
            json!({"agent": {"listen": "127.0.0.1:9"}, "pool": {"max_sessions": 7}, "servers": {"x": {"args": ["a", "b"]}}})
        );
    }
}
