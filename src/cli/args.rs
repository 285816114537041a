//! The command line's grammar (DESIGN §7b): every command, flag and its help.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use mcpwatch::config::LogFormat;

/// mcpwatch: a production MCP client runtime and agent.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
pub(crate) struct Cli {
    /// Log line format.
    #[arg(long, global = true, value_parser = ["text", "json"])]
    log_format: Option<String>,
    #[command(subcommand)]
    pub(crate) command: Command,
}

impl Cli {
    /// `--log-format`, when given.
    pub(crate) fn log_format(&self) -> Option<LogFormat> {
        match self.log_format.as_deref() {
            Some("json") => Some(LogFormat::Json),
            Some(_) => Some(LogFormat::Text),
            None => None,
        }
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the agent: the HTTP API and the admin listener (/metrics, /healthz, /readyz).
    ///
    /// With no config file it serves the built-in demo server. Example:
    ///   mcpwatch serve --config config/mcpwatch.example.toml
    Serve(ConfigArg),
    /// Validate the configuration and print it with secrets redacted (exit 64 when invalid).
    ///
    /// Example: mcpwatch check-config --config config/mcpwatch.example.toml
    CheckConfig(ConfigArg),
    /// Call one tool in-process and print the result.
    ///
    /// Example: mcpwatch call demo add a=2 b=3
    Call(CallArgs),
    /// List a running agent's servers: transport, state, breaker, sessions.
    ///
    /// Example: mcpwatch servers --agent http://127.0.0.1:8700
    Servers(AgentArgs),
    /// List a running agent's live sessions.
    ///
    /// Example: MCPWATCH_TOKEN=... mcpwatch sessions
    Sessions(AgentArgs),
    /// Measure a tool: N calls at concurrency C, then p50/p90/p99/max and throughput.
    ///
    /// Example: mcpwatch bench --server demo --tool echo --args '{"message":"hi"}' --calls 10000 --concurrency 8
    Bench(BenchArgs),
    /// Run the built-in demo MCP server over stdio or streamable HTTP.
    ///
    /// Example: mcpwatch demo-server --http 127.0.0.1:8800   (then http://127.0.0.1:8800/mcp)
    DemoServer(DemoServerArgs),
}

impl Command {
    /// The config file argument of the commands that load a config.
    pub(crate) fn config_arg(&self) -> Option<&ConfigArg> {
        match self {
            Command::Serve(args) | Command::CheckConfig(args) => Some(args),
            Command::Call(args) => Some(&args.config),
            Command::Bench(args) => Some(&args.config),
            Command::DemoServer(_) | Command::Servers(_) | Command::Sessions(_) => None,
        }
    }
}

#[derive(Debug, Args)]
pub(crate) struct ConfigArg {
    /// Config file (TOML); also MCPWATCH_CONFIG. Without one, the built-in demo server is configured.
    #[arg(long, short = 'c')]
    pub(crate) config: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct CallArgs {
    /// Server name from the config.
    pub(crate) server: String,
    /// Tool name.
    pub(crate) tool: String,
    /// Arguments as key=value (values parse as JSON when they can: n=3, flag=true, s=text).
    #[arg(value_name = "KEY=VALUE")]
    pub(crate) pairs: Vec<String>,
    /// Arguments as one JSON object (merged under the key=value pairs).
    #[arg(long)]
    pub(crate) args: Option<String>,
    /// Scope of the session.
    #[arg(long)]
    pub(crate) scope: Option<String>,
    /// Deadline, e.g. 5s.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub(crate) timeout: Option<Duration>,
    /// Print the raw MCP result as JSON.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) config: ConfigArg,
}

#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// Server name (modes pooled, per-call-session, agent).
    #[arg(long)]
    pub(crate) server: Option<String>,
    /// Tool name.
    #[arg(long)]
    pub(crate) tool: String,
    /// Tool arguments as a JSON object.
    #[arg(long)]
    pub(crate) args: Option<String>,
    /// Calls to measure (after a short warm-up).
    #[arg(long, default_value_t = 1000)]
    pub(crate) calls: u64,
    /// Calls in flight at once.
    #[arg(long, default_value_t = 1)]
    pub(crate) concurrency: u64,
    /// pooled: the runtime's pooled session; per-call-session: open and close a session per call;
    /// agent: through a running agent's HTTP API (--agent); mcp: one session at any streamable-HTTP
    /// MCP endpoint (--url); mcp-per-call-session: a session per call there (initialize, call, DELETE).
    #[arg(long, value_enum, default_value = "pooled")]
    pub(crate) mode: mcpwatch::testing::BenchMode,
    /// The MCP endpoint (modes mcp, mcp-per-call-session), e.g. http://127.0.0.1:8700/mcp/demo.
    #[arg(long)]
    pub(crate) url: Option<String>,
    /// An HTTP header for every request to --url, e.g. "X-Mcpwatch-Scope: bench"; repeatable.
    #[arg(long = "header", value_name = "NAME:VALUE")]
    pub(crate) headers: Vec<String>,
    /// The agent's API address (mode agent).
    #[arg(long, default_value = "http://127.0.0.1:8700")]
    pub(crate) agent: String,
    /// The agent's bearer token (mode agent; also MCPWATCH_TOKEN).
    #[arg(long, env = "MCPWATCH_TOKEN", hide_env_values = true)]
    pub(crate) token: Option<String>,
    /// Print one JSON line: {"calls","errors","p50_us","p90_us","p99_us","max_us","calls_per_s"}.
    #[arg(long)]
    pub(crate) json: bool,
    /// Write every measured call's latency (microseconds, one per line) to FILE, for charts.
    #[arg(long, value_name = "FILE")]
    pub(crate) latencies: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) config: ConfigArg,
}

#[derive(Debug, Args)]
pub(crate) struct AgentArgs {
    /// The agent's API address.
    #[arg(long, default_value = "http://127.0.0.1:8700")]
    pub(crate) agent: String,
    /// Bearer token (also MCPWATCH_TOKEN).
    #[arg(long, env = "MCPWATCH_TOKEN", hide_env_values = true)]
    pub(crate) token: Option<String>,
    /// Print the agent's JSON answer instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub(crate) struct DemoServerArgs {
    /// Serve one session on stdin/stdout.
    #[arg(long)]
    pub(crate) stdio: bool,
    /// Serve streamable HTTP at ADDR (path /mcp); port 0 picks a free port.
    #[arg(long, value_name = "ADDR")]
    pub(crate) http: Option<SocketAddr>,
}
