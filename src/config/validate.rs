//! Interpolation, problem-collecting deserialization and semantic checks.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;
use serde_path_to_error::Segment;

use super::AGGREGATE_SERVER as AGGREGATE_NAME;
use super::{
    Config, ConfigProblem, Lifecycle, OAuthConfig, OAuthGrant, ServerConfig, TransportKind,
};

/// Most problems reported for one load; past this the file is badly broken anyway.
const MAX_PROBLEMS: usize = 200;

/// Replaces `${VAR}` in every string value; `$$` is a literal `$`.
pub(super) fn interpolate(
    node: &mut Value,
    env: &BTreeMap<String, String>,
    path: &mut String,
    problems: &mut Vec<ConfigProblem>,
) {
    match node {
        Value::String(text) if text.contains('$') => match expand(text, env) {
            Ok(expanded) => *text = expanded,
            Err(message) => problems.push(ConfigProblem {
                path: path.clone(),
                message,
            }),
        },
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                interpolate(child, env, path, problems);
                path.truncate(len);
            }
        }
        Value::Array(items) => {
            for (index, child) in items.iter_mut().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{index}]"));
                interpolate(child, env, path, problems);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

fn expand(text: &str, env: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body
                .find('}')
                .ok_or_else(|| "unterminated `${` (write `$$` for a literal `$`)".to_owned())?;
            let name = &body[..end];
            let valid =
                !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(format!("`${{{name}}}` is not a valid variable reference"));
            }
            let value = env
                .get(name)
                .ok_or_else(|| format!("environment variable `{name}` is not set"))?;
            out.push_str(value);
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Deserializes the tree, recording each failing key and removing it until the
/// rest deserializes, so that every type error and unknown key is reported at once.
pub(super) fn deserialize_collecting(mut tree: Value, problems: &mut Vec<ConfigProblem>) -> Config {
    for _ in 0..MAX_PROBLEMS {
        let error = match serde_path_to_error::deserialize::<_, Config>(&tree) {
            Ok(config) => return config,
            Err(error) => error,
        };
        let mut segments: Vec<Segment> = error.path().iter().cloned().collect();
        let message = error.inner().to_string();
        let (message, removed) = match unknown_field(&message) {
            Some(field) => {
                let named = matches!(segments.last(), Some(Segment::Map { key }) if *key == field);
                if !named {
                    segments.push(Segment::Map { key: field.clone() });
                }
                (
                    format!("unknown key `{field}`{}", expected_keys(&message)),
                    remove(&mut tree, &segments),
                )
            }
            None => (message, remove(&mut tree, &segments)),
        };
        problems.push(ConfigProblem {
            path: dotted(&segments),
            message,
        });
        if !removed {
            break;
        }
    }
    Config::default()
}

fn unknown_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    Some(rest[..rest.find('`')?].to_owned())
}

fn expected_keys(message: &str) -> String {
    message
        .find(", expected")
        .map(|at| format!(" ({})", &message[at + 2..]))
        .unwrap_or_default()
}

fn dotted(segments: &[Segment]) -> String {
    let mut out = String::new();
    for segment in segments {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Unknown => out.push_str(".?"),
        }
    }
    out
}

fn remove(tree: &mut Value, segments: &[Segment]) -> bool {
    let Some((last, parents)) = segments.split_last() else {
        return false;
    };
    let mut node = tree;
    for segment in parents {
        node = match (segment, node) {
            (Segment::Map { key }, Value::Object(map)) => match map.get_mut(key) {
                Some(child) => child,
                None => return false,
            },
            (Segment::Seq { index }, Value::Array(items)) => match items.get_mut(*index) {
                Some(child) => child,
                None => return false,
            },
            _ => return false,
        };
    }
    match (last, node) {
        (Segment::Map { key }, Value::Object(map)) => map.remove(key).is_some(),
        (Segment::Seq { index }, Value::Array(items)) if *index < items.len() => {
            items.remove(*index);
            true
        }
        _ => false,
    }
}

/// Semantic checks of a deserialized config.
pub(super) fn check(config: &Config) -> Vec<ConfigProblem> {
    let mut problems = Vec::new();
    let mut problem =
        |path: String, message: String| problems.push(ConfigProblem { path, message });

    if config.pool.max_sessions == 0 {
        problem("pool.max_sessions".into(), "must be at least 1".into());
    }
    for (key, value) in [
        ("pool.queue_timeout", config.pool.queue_timeout),
        ("pool.idle_ttl", config.pool.idle_ttl),
        ("pool.max_lifetime", config.pool.max_lifetime),
        ("agent.queue_timeout", config.agent.queue_timeout),
        ("agent.idempotency_ttl", config.agent.idempotency_ttl),
    ] {
        if value.is_zero() {
            problem(key.into(), "must be longer than 0s".into());
        }
    }
    if config.agent.shutdown_delay > config.agent.drain_timeout {
        problem(
            "agent.shutdown_delay".into(),
            format!(
                "must not exceed agent.drain_timeout ({:?})",
                config.agent.drain_timeout
            ),
        );
    }
    if config.agent.max_in_flight == 0 {
        problem("agent.max_in_flight".into(), "must be at least 1".into());
    }
    if config.agent.max_body_bytes < 1024 {
        problem(
            "agent.max_body_bytes".into(),
            "must be at least 1024".into(),
        );
    }
    if let Some(token) = &config.agent.token
        && token.is_empty()
    {
        problem(
            "agent.token".into(),
            "is empty (remove the key to run without a token)".into(),
        );
    }
    if !config.agent.listen.ip().is_loopback()
        && config.agent.token.is_none()
        && !config.agent.allow_unauthenticated
    {
        problem(
            "agent.listen".into(),
            format!(
                "{} is not a loopback address and no agent.token is set; set a token, \
                 or agent.allow_unauthenticated = true to accept any caller",
                config.agent.listen
            ),
        );
    }
    check_gateway(&config.gateway, &mut problem);
    check_exposed_names(config, &mut problem);
    if let Some(endpoint) = config
        .telemetry
        .otlp
        .endpoint
        .as_deref()
        .filter(|e| !e.is_empty())
        && let Err(message) = http_url(endpoint)
    {
        problem("telemetry.otlp.endpoint".into(), message);
    }
    if config.servers.is_empty() {
        problem("servers".into(), "no server is configured".into());
    }
    for (name, server) in &config.servers {
        check_server(name, server, &mut problem);
    }
    problems
}

fn check_server(name: &str, server: &ServerConfig, problem: &mut impl FnMut(String, String)) {
    let at = |key: &str| format!("servers.{name}.{key}");
    let name_ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if !name_ok {
        problem(
            format!("servers.{name}"),
            "a server name is 1 to 64 characters of [A-Za-z0-9_.-]".into(),
        );
    }
    let Some(transport) = server.transport else {
        problem(
            at("transport"),
            "is required: one of \"stdio\", \"http\", \"sse\", \"builtin\"".into(),
        );
        return;
    };
    let kind = transport.as_str();
    let is = |k: TransportKind| transport == k;
    let stdio_keys_set = [
        ("command", server.command.is_some()),
        ("args", !server.args.is_empty()),
        ("env", !server.env.is_empty()),
        ("env_clear", server.env_clear),
        ("env_allow", !server.env_allow.is_empty()),
        ("cwd", server.cwd.is_some()),
    ];
    let http_keys_set = [
        ("url", server.url.is_some()),
        ("headers", !server.headers.is_empty()),
    ];
    if !is(TransportKind::Stdio) {
        for (key, set) in stdio_keys_set {
            if set {
                problem(
                    at(key),
                    format!("applies only to transport \"stdio\", not \"{kind}\""),
                );
            }
        }
    }
    if !matches!(transport, TransportKind::Http | TransportKind::Sse) {
        for (key, set) in http_keys_set {
            if set {
                problem(
                    at(key),
                    format!("applies only to transports \"http\" and \"sse\", not \"{kind}\""),
                );
            }
        }
    }
    match transport {
        TransportKind::Stdio => match server.command.as_deref() {
            None => problem(at("command"), "is required for transport \"stdio\"".into()),
            Some("") => problem(at("command"), "is empty".into()),
            Some(_) => {}
        },
        TransportKind::Http | TransportKind::Sse => match server.url.as_deref() {
            None => problem(at("url"), format!("is required for transport \"{kind}\"")),
            Some(url) => {
                if let Err(message) = http_url(url) {
                    problem(at("url"), message);
                }
            }
        },
        TransportKind::Builtin => {}
    }
    for header in server.headers.keys() {
        if http::HeaderName::from_bytes(header.as_bytes()).is_err() {
            problem(
                at(&format!("headers.{header}")),
                "is not a valid HTTP header name".into(),
            );
        }
    }
    for (key, value) in [
        ("connect_timeout", server.connect_timeout),
        ("call_timeout", server.call_timeout),
    ] {
        if value.is_zero() {
            problem(at(key), "must be longer than 0s".into());
        }
    }
    if server.idle_ttl.is_some_and(|d| d.is_zero()) {
        problem(at("idle_ttl"), "must be longer than 0s".into());
    }
    if server.max_sessions == Some(0) {
        problem(at("max_sessions"), "must be at least 1".into());
    }
    if server.max_response_bytes < 1024 {
        problem(at("max_response_bytes"), "must be at least 1024".into());
    }
    if server.retry.max_attempts == 0 {
        problem(
            at("retry.max_attempts"),
            "must be at least 1 (1 means no retry)".into(),
        );
    }
    if server.retry.initial_backoff > server.retry.max_backoff {
        problem(
            at("retry.initial_backoff"),
            "is longer than retry.max_backoff".into(),
        );
    }
    if server.breaker.failure_threshold == 0 {
        problem(at("breaker.failure_threshold"), "must be at least 1".into());
    }
    if server.breaker.cool_down.is_zero() {
        problem(at("breaker.cool_down"), "must be longer than 0s".into());
    }
    if let Some(oauth) = &server.oauth {
        check_oauth(server, transport, oauth, &at, problem);
    }
    if server.lifecycle == Lifecycle::Discover && transport == TransportKind::Sse {
        problem(
            at("lifecycle"),
            "\"discover\" is a 2026-07-28 lifecycle; legacy SSE servers speak 2024-11-05".into(),
        );
    }
}

fn check_oauth(
    server: &ServerConfig,
    transport: TransportKind,
    oauth: &OAuthConfig,
    at: &impl Fn(&str) -> String,
    problem: &mut impl FnMut(String, String),
) {
    if transport != TransportKind::Http {
        problem(
            at("oauth"),
            format!(
                "applies only to transport \"http\", not \"{}\"",
                transport.as_str()
            ),
        );
    }
    if server
        .headers
        .keys()
        .any(|h| h.eq_ignore_ascii_case("authorization"))
    {
        problem(
            at("headers.Authorization"),
            "conflicts with oauth (mcpwatch sends the OAuth access token)".into(),
        );
    }
    let has_id = oauth.client_id.as_deref().is_some_and(|id| !id.is_empty());
    let has_secret = oauth.client_secret.as_ref().is_some_and(|s| !s.is_empty());
    let has_key = oauth.private_key.as_ref().is_some_and(|s| !s.is_empty());
    if oauth.grant == OAuthGrant::ClientCredentials && !(has_id && (has_secret || has_key)) {
        problem(
            at("oauth.grant"),
            "\"client_credentials\" needs oauth.client_id and oauth.client_secret (or oauth.private_key)"
                .into(),
        );
    }
    if has_key && oauth.grant != OAuthGrant::ClientCredentials {
        problem(
            at("oauth.private_key"),
            "applies only to grant \"client_credentials\" (private_key_jwt)".into(),
        );
    }
    if has_key && has_secret {
        problem(
            at("oauth.private_key"),
            "set oauth.client_secret or oauth.private_key, not both".into(),
        );
    }
    if has_secret && !has_id {
        problem(
            at("oauth.client_secret"),
            "needs oauth.client_id (the client the secret belongs to)".into(),
        );
    }
    if let Some(url) = oauth.client_metadata_url.as_deref() {
        let https = url::Url::parse(url)
            .is_ok_and(|u| u.scheme() == "https" && u.host_str().is_some() && u.path() != "/");
        if !https {
            problem(
                at("oauth.client_metadata_url"),
                format!(
                    "`{url}` must be an https:// URL with a path (the client ID metadata document)"
                ),
            );
        }
    }
    if let Err(message) = http_url(&oauth.redirect_uri) {
        problem(at("oauth.redirect_uri"), message);
    }
}

fn http_url(text: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(text).map_err(|e| format!("`{text}` is not a valid URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("`{text}` must be an http:// or https:// URL"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("`{text}` has no host"));
    }
    Ok(url)
}

/// Problems that do not stop the agent.
pub(super) fn warnings(config: &Config) -> Vec<ConfigProblem> {
    let mut warnings = Vec::new();
    for (name, server) in &config.servers {
        let Some(url) = server.url.as_deref().and_then(|u| url::Url::parse(u).ok()) else {
            continue;
        };
        let loopback = match url.host() {
            Some(url::Host::Domain(domain)) => domain == "localhost",
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        };
        if url.scheme() == "http" && !server.headers.is_empty() && !loopback {
            warnings.push(ConfigProblem {
                path: format!("servers.{name}.url"),
                message: "sends credentials (headers) over plain http:// to a non-loopback host; use https://".into(),
            });
        }
    }
    warnings
}

/// Longest server name on the aggregate endpoint (tool names there are
/// `{server}__{tool}`, at most 64 characters).
const MAX_EXPOSED_NAME: usize = 32;

/// Server names: `_aggregate` is reserved; a server on the aggregate endpoint
/// needs a name that splits `{server}__{name}` one way only (no `__`, no `_` at
/// either end, letters, digits, `-` and `_`) and leaves room for the tool's.
fn check_exposed_names(config: &Config, problem: &mut impl FnMut(String, String)) {
    if config.servers.contains_key(AGGREGATE_NAME) {
        problem(
            format!("servers.{AGGREGATE_NAME}"),
            "is reserved for the gateway's aggregate endpoint /mcp".into(),
        );
    }
    for name in &config.gateway.expose {
        if name != "*" && !config.servers.contains_key(name) {
            problem(
                "gateway.expose".into(),
                format!("names {name:?}, which is not a configured server"),
            );
        }
    }
    if !config.gateway.enabled {
        return;
    }
    for name in config
        .servers
        .keys()
        .filter(|n| config.gateway.exposes(n) && n.as_str() != AGGREGATE_NAME)
    {
        if let Err(why) = exposable(name) {
            problem(
                format!("servers.{name}"),
                format!(
                    "{why}: on the aggregate endpoint its tools are named {name}__TOOL, which must split one way (leave it out of gateway.expose, or rename it)"
                ),
            );
        }
    }
}

/// Why `name` cannot be a prefix on the aggregate endpoint, if it cannot.
fn exposable(name: &str) -> Result<(), String> {
    if name.len() > MAX_EXPOSED_NAME {
        return Err(format!("is longer than {MAX_EXPOSED_NAME} characters"));
    }
    if name.contains("__") || name.starts_with('_') || name.ends_with('_') {
        return Err("contains `__` or starts or ends with `_`".into());
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err("has characters other than letters, digits, `-` and `_`".into());
    }
    Ok(())
}

/// `[gateway]`: sane limits and a usable session key.
fn check_gateway(gateway: &super::GatewayConfig, problem: &mut impl FnMut(String, String)) {
    if gateway.max_sessions == 0 {
        problem("gateway.max_sessions".into(), "must be at least 1".into());
    }
    if gateway.session_idle_ttl < Duration::from_secs(1) {
        problem(
            "gateway.session_idle_ttl".into(),
            "must be at least 1s".into(),
        );
    }
    if gateway.keepalive_interval < Duration::from_millis(100) {
        problem(
            "gateway.keepalive_interval".into(),
            "must be at least 100ms".into(),
        );
    }
    if let Some(key) = &gateway.session_key
        && key.expose().len() < 16
    {
        problem(
            "gateway.session_key".into(),
            "must be at least 16 bytes (every replica needs the same key)".into(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn expands_variables_and_escapes() {
        let env = env(&[("A", "x"), ("B", "y")]);
        assert_eq!(expand("${A}-${B}", &env).unwrap(), "x-y");
        assert_eq!(expand("cost $$5 ${A}", &env).unwrap(), "cost $5 x");
        assert_eq!(expand("plain $ sign", &env).unwrap(), "plain $ sign");
        assert!(
            expand("${MISSING}", &env)
                .unwrap_err()
                .contains("`MISSING` is not set")
        );
        assert!(expand("${A", &env).is_err());
    }

    #[test]
    fn urls_must_be_http() {
        assert!(http_url("http://127.0.0.1:1/mcp").is_ok());
        assert!(http_url("ftp://x/").is_err());
        assert!(http_url("not a url").is_err());
    }
}
