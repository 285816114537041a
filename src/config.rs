//! The typed configuration tree and how it is loaded.
//!
//! Sources, strongest first (DESIGN §7):
//!
//! 1. `MCPWATCH_*` environment variables, `__` between levels
//!    (`MCPWATCH_AGENT__LISTEN=127.0.0.1:9000`, `MCPWATCH_SERVERS__DEMO__CALL_TIMEOUT=5s`);
//! 2. the file given with `--config FILE` or `MCPWATCH_CONFIG` (no file is read implicitly);
//! 3. the standard variables, for what the config leaves unset
//!    (`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_PROTOCOL`, `OTEL_SERVICE_NAME`,
//!    `SENTRY_DSN`, `SENTRY_ENVIRONMENT`);
//! 4. built-in defaults. With no file at all, the config holds the built-in `demo` server.
//!
//! String values may hold `${VAR}` (read from the environment at load; a missing variable
//! is a config error; `$$` is a literal `$`). Durations are human strings (`"30s"`).
//!
//! Loading never stops at the first problem: unknown keys, values of the wrong type and
//! semantic problems (a stdio server without `command`, a bad URL, ...) are all collected
//! and reported together, each with its key path ([`ConfigError`]).
//!
//! Secrets (`agent.token`, header values, `env` values of stdio servers, the Sentry DSN)
//! are held in [`Secret`], whose `Debug`, `Display` and `Serialize` print `[redacted]`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use serde_json::Value;

mod defaults;
mod secret;
mod validate;

pub use secret::{REDACTED, Secret};

/// The name of the built-in demo server present when no config file is given.
pub const DEMO_SERVER: &str = "demo";

/// The gateway's aggregate endpoint `/mcp`: its route and `mcp_server` label;
/// no server may take the name.
pub const AGGREGATE_SERVER: &str = "_aggregate";

/// The whole configuration (DESIGN §7).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The agent's listeners and limits.
    pub agent: AgentConfig,
    /// Logging.
    pub log: LogConfig,
    /// Session pool limits shared by every server.
    pub pool: PoolConfig,
    /// Traces, metrics export and Sentry.
    pub telemetry: TelemetryConfig,
    /// Gateway mode: MCP served on the main listener (`/mcp/{server}`).
    pub gateway: GatewayConfig,
    /// The MCP servers, by name.
    pub servers: BTreeMap<String, ServerConfig>,
}

/// `[agent]`: the HTTP API and the admin listener.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentConfig {
    /// API listener (`/v1`).
    pub listen: SocketAddr,
    /// Admin listener (`/metrics`, `/healthz`, `/readyz`).
    pub admin_listen: SocketAddr,
    /// Optional bearer token required on the API.
    pub token: Option<Secret>,
    /// Allows a non-loopback API listener without a token.
    pub allow_unauthenticated: bool,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Calls running at once; the rest queue.
    pub max_in_flight: usize,
    /// How long a queued call waits for a slot before `pool_exhausted`.
    #[serde(with = "humantime_serde")]
    pub queue_timeout: Duration,
    /// How long in-flight calls may finish after SIGTERM.
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
    /// After SIGTERM the listeners stay open at least this long (new calls get 503
    /// `shutting_down`, `/readyz` 503), so that a load balancer sees `/readyz` fail and
    /// stops sending before the agent closes its connections. At most `drain_timeout`.
    #[serde(with = "humantime_serde")]
    pub shutdown_delay: Duration,
    /// How long an `Idempotency-Key` answer is kept.
    #[serde(with = "humantime_serde")]
    pub idempotency_ttl: Duration,
}

/// `[gateway]`: mcpwatch as a streamable-HTTP MCP server in front of its
/// servers (DESIGN §10, docs/gateway.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// Serve `/mcp/{server}` and `/scopes/{scope}/mcp/{server}`.
    pub enabled: bool,
    /// The servers on the aggregate endpoint `/mcp` (`*`: every server).
    pub expose: Vec<String>,
    /// Downstream sessions at once; past it `initialize` gets HTTP 503.
    pub max_sessions: usize,
    /// A downstream session unused this long ends (`idle_timeout`).
    #[serde(with = "humantime_serde")]
    pub session_idle_ttl: Duration,
    /// Interval of the keep-alive comments on an SSE answer or GET stream.
    #[serde(with = "humantime_serde")]
    pub keepalive_interval: Duration,
    /// HMAC key of downstream session ids (shared by replicas); random at start when unset.
    pub session_key: Option<Secret>,
    /// Origins accepted besides the listener's own (requests without `Origin` pass).
    pub allowed_origins: Vec<String>,
    /// Host names accepted; when set, the Host check applies on any listener.
    pub allowed_hosts: Vec<String>,
}

impl GatewayConfig {
    /// True if `server` is on the aggregate endpoint (`expose`, `*` for all).
    pub fn exposes(&self, server: &str) -> bool {
        self.expose.iter().any(|e| e == "*" || e == server)
    }
}

/// `[log]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: LogFormat,
    /// A tracing filter directive; `RUST_LOG` wins when set.
    pub level: String,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log pipelines.
    Json,
}

/// `[pool]`: limits over all servers' pooled sessions.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PoolConfig {
    /// Global cap on pooled sessions; at the cap the least recently used idle one closes.
    pub max_sessions: usize,
    /// How long a new session waits for a slot when every session is busy.
    #[serde(with = "humantime_serde")]
    pub queue_timeout: Duration,
    /// An idle session older than this closes (`idle_timeout`); per-server override.
    #[serde(with = "humantime_serde")]
    pub idle_ttl: Duration,
    /// A session older than this closes once idle (`max_lifetime`).
    #[serde(with = "humantime_serde")]
    pub max_lifetime: Duration,
}

/// `[telemetry]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetryConfig {
    /// Record tool arguments and results on spans.
    pub capture_payloads: bool,
    /// `service.name` of exported telemetry (`OTEL_SERVICE_NAME`).
    pub service_name: String,
    /// OTLP export.
    pub otlp: OtlpConfig,
    /// Sentry reporting.
    pub sentry: SentryConfig,
}

/// `[telemetry.otlp]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OtlpConfig {
    /// Base URL of the collector; `/v1/traces` is appended. Empty: no export.
    pub endpoint: Option<String>,
    /// `http/protobuf` or `grpc`.
    pub protocol: OtlpProtocol,
    /// Also export the two semconv histograms over OTLP (off: scrape `/metrics`).
    pub metrics: bool,
}

/// OTLP wire protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OtlpProtocol {
    /// OTLP/HTTP with protobuf bodies.
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
    /// OTLP over gRPC.
    #[serde(rename = "grpc")]
    Grpc,
}

/// `[telemetry.sentry]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SentryConfig {
    /// Project DSN (`SENTRY_DSN`); empty: no Sentry.
    pub dsn: Option<Secret>,
    /// Environment tag (`SENTRY_ENVIRONMENT`).
    pub environment: String,
    /// Send tool arguments and results with reports.
    pub send_default_pii: bool,
}

/// How mcpwatch reaches a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransportKind {
    /// A child process speaking JSON-RPC lines on stdin/stdout.
    Stdio,
    /// Streamable HTTP.
    Http,
    /// Legacy HTTP+SSE (protocol 2024-11-05).
    Sse,
    /// The built-in demo server, in-process.
    Builtin,
}

impl TransportKind {
    /// The config spelling, e.g. `"stdio"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            TransportKind::Stdio => "stdio",
            TransportKind::Http => "http",
            TransportKind::Sse => "sse",
            TransportKind::Builtin => "builtin",
        }
    }

    /// The `network.transport` value: `pipe`, `tcp` or `inproc`.
    pub const fn network_transport(self) -> &'static str {
        match self {
            TransportKind::Stdio => "pipe",
            TransportKind::Http | TransportKind::Sse => "tcp",
            TransportKind::Builtin => "inproc",
        }
    }
}

/// `[servers.NAME]`: one MCP server. Which keys apply depends on `transport`;
/// [`Config::validate`] rejects keys that do not.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// `stdio`, `http`, `sse` or `builtin` (required).
    pub transport: Option<TransportKind>,
    /// stdio: the program (no shell is involved).
    pub command: Option<String>,
    /// stdio: its arguments.
    pub args: Vec<String>,
    /// stdio: extra environment variables (secrets).
    pub env: BTreeMap<String, Secret>,
    /// stdio: start from an empty environment plus `env_allow` and `env`.
    pub env_clear: bool,
    /// stdio: variables kept from mcpwatch's environment when `env_clear` is set.
    pub env_allow: Vec<String>,
    /// stdio: working directory.
    pub cwd: Option<PathBuf>,
    /// http/sse: the endpoint URL (`/mcp` for streamable HTTP, `/sse` for legacy SSE).
    pub url: Option<String>,
    /// http/sse: extra request headers (values are secrets).
    pub headers: BTreeMap<String, Secret>,
    /// Open the `default` session at start.
    pub warm: bool,
    /// Deadline for spawn/connect plus `initialize`.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Default deadline of every request.
    #[serde(with = "humantime_serde")]
    pub call_timeout: Duration,
    /// Idle TTL for this server's sessions (default: `pool.idle_ttl`).
    #[serde(with = "humantime_serde::option")]
    pub idle_ttl: Option<Duration>,
    /// Cap on this server's pooled sessions (default: `pool.max_sessions`).
    pub max_sessions: Option<usize>,
    /// Largest accepted response message.
    pub max_response_bytes: usize,
    /// Retry policy (only where safe, DESIGN §4).
    pub retry: RetryConfig,
    /// Circuit breaker.
    pub breaker: BreakerConfig,
    /// Tools that may run twice without harm: retried after any transient failure.
    pub idempotent_tools: Vec<String>,
    /// How `sampling/createMessage` requests from the server are answered.
    pub sampling: SamplingPolicy,
    /// How `elicitation/create` requests from the server are answered.
    pub elicitation: ElicitationPolicy,
    /// How a session starts: `initialize` or the 2026-07-28 `server/discover`.
    pub lifecycle: Lifecycle,
    /// `per_scope`: a pooled session per scope; `shared`: one for every scope.
    pub scopes: ScopeMode,
    /// http: OAuth 2.1 authorization (`[servers.NAME.oauth]`); `None`: no OAuth.
    pub oauth: Option<OAuthConfig>,
}

/// `[servers.NAME.oauth]`: how mcpwatch obtains access tokens for a protected
/// streamable-HTTP server. Discovery (protected resource and authorization
/// server metadata), client registration, PKCE, scope selection and step-up,
/// and token refresh are automatic; these keys say who mcpwatch is.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OAuthConfig {
    /// `authorization_code` (with PKCE; the authorization server must redirect
    /// back without a person, e.g. an already-consented client) or
    /// `client_credentials` (a machine client: needs `client_id` and `client_secret`).
    pub grant: OAuthGrant,
    /// A client registered with the authorization server beforehand; empty: a
    /// client ID metadata document (`client_metadata_url`) when the server
    /// supports it, else dynamic client registration.
    pub client_id: Option<String>,
    /// The secret of `client_id` (a confidential client).
    pub client_secret: Option<Secret>,
    /// `client_credentials` only: a PEM private key instead of `client_secret`, for
    /// `private_key_jwt` client authentication (RFC 7523).
    pub private_key: Option<Secret>,
    /// The signing algorithm of `private_key`: RS256, RS384, RS512, ES256 or ES384.
    pub private_key_algorithm: JwtAlgorithm,
    /// HTTPS URL of mcpwatch's client ID metadata document (SEP-991), used as
    /// the client ID by servers that advertise support.
    pub client_metadata_url: Option<String>,
    /// `client_name` in dynamic client registration.
    pub client_name: String,
    /// Scopes to ask for; empty: those of the server's challenge or metadata.
    pub scopes: Vec<String>,
    /// Where the authorization server sends the code (mcpwatch reads the
    /// redirect; nothing needs to listen there).
    pub redirect_uri: String,
}

/// `private_key_algorithm = ..`: how the client assertion is signed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)] // the JOSE names say it all
pub enum JwtAlgorithm {
    RS256,
    RS384,
    RS512,
    #[default]
    ES256,
    ES384,
}

/// `grant = ..`: the OAuth grant mcpwatch uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OAuthGrant {
    /// Authorization code with PKCE, redirected back without a person.
    #[default]
    AuthorizationCode,
    /// Client credentials (SEP-1046): a machine-to-machine client.
    ClientCredentials,
}

/// `sampling = ..`: what mcpwatch answers a server asking for an LLM completion.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SamplingPolicy {
    /// Advertise the `sampling` capability and decline every request (JSON-RPC
    /// error -1, the spec's "user rejected"): the server learns that no one will answer.
    #[default]
    Decline,
    /// Do not advertise the capability; a request anyway gets "method not found".
    Off,
}

/// `elicitation = ..`: what mcpwatch answers a server asking the user for input.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ElicitationPolicy {
    /// Advertise form elicitation and answer every request with `decline`.
    #[default]
    Decline,
    /// Advertise form elicitation and accept with the schema's defaults; a request
    /// with a required field that has no default is declined.
    AcceptDefaults,
    /// Do not advertise the capability; a request anyway gets "method not found".
    Off,
}

/// `lifecycle = ..`: how a session starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Lifecycle {
    /// The `initialize` handshake (protocol 2025-11-25 offered).
    #[default]
    Initialize,
    /// The 2026-07-28 revision: `server/discover`, then self-contained requests.
    /// The server must speak 2026-07-28 (no fallback).
    Discover,
}

/// `scopes = ..`: which scopes get a session of their own (DESIGN §10).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScopeMode {
    /// A pooled session per `(server, scope)`: the server keeps state per scope.
    #[default]
    PerScope,
    /// One pooled session serves every scope, requests multiplexed on it: for
    /// stateless servers (and 2026-07-28 ones, which keep no per-connection
    /// state). It shows as scope `*`, and closing a scope leaves it open.
    Shared,
}

/// `retry = { .. }`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryConfig {
    /// Attempts in all (1 = no retry).
    pub max_attempts: u32,
    /// First backoff; doubles each attempt, with jitter.
    #[serde(with = "humantime_serde")]
    pub initial_backoff: Duration,
    /// Cap on one backoff.
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
}

/// `breaker = { .. }`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker.
    pub failure_threshold: u32,
    /// How long it stays open before one probe decides.
    #[serde(with = "humantime_serde")]
    pub cool_down: Duration,
}

/// One problem found while loading or validating, with its key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// Dotted key path, e.g. `servers.fs.call_timeout`; empty for the file itself.
    pub path: String,
    /// What is wrong, for a person.
    pub message: String,
}

impl std::fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every problem of a configuration, reported together.
#[derive(Debug, Clone, thiserror::Error)]
#[error("invalid configuration ({} problem{}):\n{}", problems.len(), if problems.len() == 1 { "" } else { "s" },
    problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
pub struct ConfigError {
    /// The problems, in key order.
    pub problems: Vec<ConfigProblem>,
}

/// Where [`Config::load`] reads from. Tests pass their own environment map, so
/// no test has to change the process environment.
#[derive(Debug, Clone, Default)]
pub struct ConfigSource {
    /// The config file (`--config`); when `None`, `MCPWATCH_CONFIG` from `env` is used.
    pub file: Option<PathBuf>,
    /// The environment (`std::env::vars()` in the binary).
    pub env: BTreeMap<String, String>,
}

impl ConfigSource {
    /// The process environment and an optional file.
    pub fn from_process(file: Option<PathBuf>) -> ConfigSource {
        ConfigSource {
            file,
            env: std::env::vars().collect(),
        }
    }

    /// The file that will be read, if any.
    pub fn file(&self) -> Option<PathBuf> {
        self.file.clone().or_else(|| {
            self.env
                .get("MCPWATCH_CONFIG")
                .filter(|s| !s.is_empty())
                .map(PathBuf::from)
        })
    }
}

impl Config {
    /// Loads, merges, interpolates and validates the configuration.
    ///
    /// ```
    /// use mcpwatch::config::{Config, ConfigSource};
    /// let config = Config::load(&ConfigSource::default()).unwrap();
    /// assert!(config.servers.contains_key("demo"));
    /// ```
    pub fn load(source: &ConfigSource) -> Result<Config, ConfigError> {
        let file = source.file();
        let mut figment = Figment::new().merge(Serialized::defaults(defaults::standard_env_layer(
            &source.env,
        )));
        if file.is_none() {
            figment = figment.merge(Serialized::defaults(defaults::demo_layer()));
        }
        if let Some(path) = &file {
            let text = read_file(path)?;
            figment = figment.merge(Toml::string(&text));
        }
        figment = figment.merge(Serialized::defaults(defaults::mcpwatch_env_layer(
            &source.env,
        )));

        let mut tree: Value = figment.extract().map_err(|e| ConfigError {
            problems: vec![ConfigProblem {
                path: String::new(),
                message: figment_message(&e, file.as_deref()),
            }],
        })?;
        let mut problems = Vec::new();
        validate::interpolate(&mut tree, &source.env, &mut String::new(), &mut problems);
        let config = validate::deserialize_collecting(tree, &mut problems);
        let reported: BTreeSet<String> = problems.iter().map(|p| p.path.clone()).collect();
        for problem in config.check() {
            if !reported.contains(&problem.path) {
                problems.push(problem);
            }
        }
        if problems.is_empty() {
            Ok(config)
        } else {
            problems.sort_by(|a, b| a.path.cmp(&b.path));
            Err(ConfigError { problems })
        }
    }

    /// Checks a config built in code (as [`Config::load`] does for loaded ones).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let problems = self.check();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError { problems })
        }
    }

    /// Warnings that do not stop the agent (e.g. credentials over plain HTTP).
    pub fn warnings(&self) -> Vec<ConfigProblem> {
        validate::warnings(self)
    }

    /// A config with only the built-in demo server (what `serve` runs with no file).
    pub fn demo() -> Config {
        let mut config = Config::default();
        config
            .servers
            .insert(DEMO_SERVER.to_owned(), ServerConfig::builtin());
        config
    }

    fn check(&self) -> Vec<ConfigProblem> {
        validate::check(self)
    }
}

impl ServerConfig {
    /// A server of the given transport with every other key at its default.
    pub fn new(transport: TransportKind) -> ServerConfig {
        ServerConfig {
            transport: Some(transport),
            ..ServerConfig::default()
        }
    }

    /// The built-in demo server.
    pub fn builtin() -> ServerConfig {
        ServerConfig::new(TransportKind::Builtin)
    }

    /// A stdio server running `command` with `args`.
    pub fn stdio(
        command: impl Into<String>,
        args: impl IntoIterator<Item = impl Into<String>>,
    ) -> ServerConfig {
        ServerConfig {
            command: Some(command.into()),
            args: args.into_iter().map(Into::into).collect(),
            ..ServerConfig::new(TransportKind::Stdio)
        }
    }

    /// A streamable-HTTP server at `url`.
    pub fn http(url: impl Into<String>) -> ServerConfig {
        ServerConfig {
            url: Some(url.into()),
            ..ServerConfig::new(TransportKind::Http)
        }
    }

    /// A legacy SSE server at `url`.
    pub fn sse(url: impl Into<String>) -> ServerConfig {
        ServerConfig {
            url: Some(url.into()),
            ..ServerConfig::new(TransportKind::Sse)
        }
    }

    /// The transport; `builtin` for an (invalid) config without one.
    pub fn transport_kind(&self) -> TransportKind {
        self.transport.unwrap_or(TransportKind::Builtin)
    }
}

fn read_file(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| ConfigError {
        problems: vec![ConfigProblem {
            path: String::new(),
            message: format!("cannot read config file {}: {e}", path.display()),
        }],
    })
}

fn figment_message(error: &figment::Error, file: Option<&Path>) -> String {
    match file {
        Some(path) => format!("{}: {error}", path.display()),
        None => error.to_string(),
    }
}
