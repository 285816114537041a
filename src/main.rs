//! The `mcpwatch` command line: parse, load config (exit 64 when invalid), run.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use mcpwatch::config::{Config, ConfigSource, LogFormat};
use mcpwatch::telemetry::{Telemetry, TelemetryGuard};
use mcpwatch::{CallOptions, Runtime};
use std::sync::Arc;

/// Exit status for an invalid configuration or command line (EX_USAGE).
const EXIT_USAGE: u8 = 64;

/// mcpwatch: a production MCP client runtime and agent.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    /// Log line format.
    #[arg(long, global = true, value_parser = ["text", "json"])]
    log_format: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
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

#[derive(Debug, Args)]
struct ConfigArg {
    /// Config file (TOML); also MCPWATCH_CONFIG. Without one, the built-in demo server is configured.
    #[arg(long, short = 'c')]
    config: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct CallArgs {
    /// Server name from the config.
    server: String,
    /// Tool name.
    tool: String,
    /// Arguments as key=value (values parse as JSON when they can: n=3, flag=true, s=text).
    #[arg(value_name = "KEY=VALUE")]
    pairs: Vec<String>,
    /// Arguments as one JSON object (merged under the key=value pairs).
    #[arg(long)]
    args: Option<String>,
    /// Scope of the session.
    #[arg(long)]
    scope: Option<String>,
    /// Deadline, e.g. 5s.
    #[arg(long, value_parser = humantime::parse_duration)]
    timeout: Option<Duration>,
    /// Print the raw MCP result as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    config: ConfigArg,
}

#[derive(Debug, Args)]
struct BenchArgs {
    /// Server name.
    #[arg(long)]
    server: String,
    /// Tool name.
    #[arg(long)]
    tool: String,
    /// Tool arguments as a JSON object.
    #[arg(long)]
    args: Option<String>,
    /// Calls to measure (after a short warm-up).
    #[arg(long, default_value_t = 1000)]
    calls: u64,
    /// Calls in flight at once.
    #[arg(long, default_value_t = 1)]
    concurrency: u64,
    /// pooled: the runtime's pooled session; per-call-session: open and close a session per call;
    /// agent: through a running agent's HTTP API (--agent).
    #[arg(long, value_enum, default_value = "pooled")]
    mode: mcpwatch::bench::BenchMode,
    /// The agent's API address (mode agent).
    #[arg(long, default_value = "http://127.0.0.1:8700")]
    agent: String,
    /// The agent's bearer token (mode agent; also MCPWATCH_TOKEN).
    #[arg(long, env = "MCPWATCH_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print one JSON line: {"calls","errors","p50_us","p90_us","p99_us","max_us","calls_per_s"}.
    #[arg(long)]
    json: bool,
    /// Write every measured call's latency (microseconds, one per line) to FILE, for charts.
    #[arg(long, value_name = "FILE")]
    latencies: Option<PathBuf>,
    #[command(flatten)]
    config: ConfigArg,
}

#[derive(Debug, Args)]
struct AgentArgs {
    /// The agent's API address.
    #[arg(long, default_value = "http://127.0.0.1:8700")]
    agent: String,
    /// Bearer token (also MCPWATCH_TOKEN).
    #[arg(long, env = "MCPWATCH_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print the agent's JSON answer instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
struct DemoServerArgs {
    /// Serve one session on stdin/stdout.
    #[arg(long)]
    stdio: bool,
    /// Serve streamable HTTP at ADDR (path /mcp); port 0 picks a free port.
    #[arg(long, value_name = "ADDR")]
    http: Option<SocketAddr>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let log_format = match cli.log_format.as_deref() {
        Some("json") => Some(LogFormat::Json),
        Some(_) => Some(LogFormat::Text),
        None => None,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(worker_threads())
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(run(cli.command, log_format));
    runtime.shutdown_timeout(Duration::from_secs(1));
    match outcome {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// At least two workers, even on one CPU (DESIGN §8b).
fn worker_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .max(2)
}

/// Logs go to stderr: stdout carries command output (and the protocol of `demo-server --stdio`).
/// `RUST_LOG` wins over `log.level`; `--log-format` wins over `log.format`.
fn init_logging(format: LogFormat, level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(format!("{level},rmcp=warn")))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rmcp=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

async fn run(command: Command, log_format: Option<LogFormat>) -> anyhow::Result<ExitCode> {
    let config_arg = match &command {
        Command::Serve(args) | Command::CheckConfig(args) => Some(args),
        Command::Call(args) => Some(&args.config),
        Command::Bench(args) => Some(&args.config),
        Command::DemoServer(_) | Command::Servers(_) | Command::Sessions(_) => None,
    };
    let config = match config_arg.map(load_config) {
        Some(Ok(config)) => Some(config),
        Some(Err(code)) => return Ok(code),
        None => None,
    };
    // serve and call install full telemetry (logs, OTLP, Sentry); the rest only log.
    if !matches!(
        command,
        Command::Serve(_) | Command::Call(_) | Command::Bench(_)
    ) {
        let (format, level) = match &config {
            Some(config) => (
                log_format.unwrap_or(config.log.format),
                config.log.level.as_str(),
            ),
            None => (log_format.unwrap_or(LogFormat::Text), "info"),
        };
        init_logging(format, level);
    }
    match (command, config) {
        (Command::Serve(_), Some(config)) => serve(config, log_format).await,
        (Command::CheckConfig(_), Some(config)) => Ok(check_config(&config)),
        (Command::Call(args), Some(config)) => call(args, config, log_format).await,
        (Command::Bench(args), Some(config)) => bench(args, config, log_format).await,
        (Command::DemoServer(args), _) => demo_server(args).await,
        (Command::Servers(args), _) => ask_agent(&args, "servers").await,
        (Command::Sessions(args), _) => ask_agent(&args, "sessions").await,
        (_, None) => Ok(ExitCode::from(EXIT_USAGE)),
    }
}

fn load_config(args: &ConfigArg) -> Result<Config, ExitCode> {
    Config::load(&ConfigSource::from_process(args.config.clone())).map_err(|error| {
        eprintln!("{error}");
        ExitCode::from(EXIT_USAGE)
    })
}

fn check_config(config: &Config) -> ExitCode {
    for warning in config.warnings() {
        eprintln!("warning: {warning}");
    }
    match toml_text(config) {
        Ok(text) => {
            print_out(&text);
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: cannot print the config: {error}");
            ExitCode::FAILURE
        }
    }
}

fn toml_text(config: &Config) -> anyhow::Result<String> {
    let value = serde_json::to_value(config)?;
    let value = strip_nulls(value);
    Ok(format!(
        "# effective configuration (secrets redacted)\n{}",
        toml::to_string_pretty(&value)?
    ))
}

fn strip_nulls(value: serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => serde_json::Value::Object(
            map.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, strip_nulls(v)))
                .collect(),
        ),
        serde_json::Value::Array(items) => {
            serde_json::Value::Array(items.into_iter().map(strip_nulls).collect())
        }
        other => other,
    }
}

async fn call(
    args: CallArgs,
    config: Config,
    log_format: Option<LogFormat>,
) -> anyhow::Result<ExitCode> {
    let mut arguments = match &args.args {
        Some(text) => match serde_json::from_str::<serde_json::Value>(text) {
            Ok(serde_json::Value::Object(map)) => map,
            Ok(_) => anyhow::bail!("--args must be a JSON object"),
            Err(error) => anyhow::bail!("--args is not valid JSON: {error}"),
        },
        None => serde_json::Map::new(),
    };
    for pair in &args.pairs {
        let (key, value) = pair
            .split_once('=')
            .with_context(|| format!("`{pair}` is not KEY=VALUE"))?;
        let value = serde_json::from_str(value)
            .unwrap_or_else(|_| serde_json::Value::String(value.to_owned()));
        arguments.insert(key.to_owned(), value);
    }
    let (runtime, guard) = start_with_telemetry(config, log_format).await?;
    let options = CallOptions {
        scope: args.scope.clone(),
        timeout: args.timeout,
        ..CallOptions::default()
    };
    let outcome = runtime
        .call_tool(
            &args.server,
            &args.tool,
            Some(serde_json::Value::Object(arguments)),
            options,
        )
        .await;
    runtime.shutdown(Duration::from_secs(5)).await;
    flush_telemetry(guard).await;
    let call = outcome?;
    if args.json {
        print_out(&serde_json::to_string_pretty(&call.result)?);
    } else {
        for block in &call.result.content {
            match block.as_text() {
                Some(text) => print_out(&text.text),
                None => print_out(&serde_json::to_string(block)?),
            }
        }
        if let Some(structured) = &call.result.structured_content {
            print_out(&serde_json::to_string_pretty(structured)?);
        }
    }
    Ok(if call.is_error() {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

/// Installs logging, OTLP and Sentry per the config, then starts the runtime reporting through them.
async fn start_with_telemetry(
    config: Config,
    log_format: Option<LogFormat>,
) -> anyhow::Result<(Runtime, TelemetryGuard)> {
    let telemetry = Arc::new(Telemetry::from_config(&config.telemetry)?);
    let guard = mcpwatch::telemetry::install(&config, &telemetry, log_format)?;
    let runtime = Runtime::start_with(config, telemetry).await?;
    Ok((runtime, guard))
}

/// Exports what is buffered (spans, Sentry events) before exit.
async fn flush_telemetry(guard: TelemetryGuard) {
    let _ = tokio::task::spawn_blocking(move || guard.shutdown(Duration::from_secs(5))).await;
}

async fn serve(config: Config, log_format: Option<LogFormat>) -> anyhow::Result<ExitCode> {
    for warning in config.warnings() {
        tracing::warn!(key = %warning.path, "{}", warning.message);
    }
    match mcpwatch::fd_limit::raise_open_file_limit() {
        Ok(limit) if limit.soft > limit.before => tracing::info!(
            from = limit.before,
            to = limit.soft,
            "raised the open-file limit to the hard limit"
        ),
        Ok(limit) => tracing::debug!(limit = limit.soft, "open-file limit"),
        Err(error) => tracing::warn!(%error, "cannot raise the open-file limit"),
    }
    let agent_config = config.agent.clone();
    let first_server = config.servers.keys().next().cloned().unwrap_or_default();
    let (runtime, guard) = start_with_telemetry(config, log_format).await?;
    let shutdown = async {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(error) => {
                    tracing::error!(%error, "cannot watch SIGTERM; stop with Ctrl-C");
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
            _ = terminate.recv() => tracing::info!("SIGTERM received"),
        }
    };
    let token_hint = if agent_config.token.is_some() {
        " -H \"Authorization: Bearer $MCPWATCH_TOKEN\""
    } else {
        ""
    };
    let report = mcpwatch::agent::serve(runtime, &agent_config, shutdown, |bound| {
        print_out(&format!("mcpwatch agent: API on http://{}  admin on http://{}", bound.api, bound.admin));
        print_out(&format!(
            "try:\n  curl -s http://{}/v1/tools/call{token_hint} -H 'content-type: application/json' \\\n    -d '{{\"server\": \"{first_server}\", \"tool\": \"echo\", \"arguments\": {{\"message\": \"hello\"}}, \"scope\": \"thread-1\"}}'\n  curl -s http://{}/metrics | grep mcp_client_sessions_active",
            bound.api, bound.admin
        ));
    })
    .await?;
    if !report.drained {
        tracing::warn!("some calls were still running when the drain timeout passed");
    }
    flush_telemetry(guard).await;
    Ok(ExitCode::SUCCESS)
}

async fn demo_server(args: DemoServerArgs) -> anyhow::Result<ExitCode> {
    if args.stdio {
        mcpwatch::demo::serve_stdio().await?;
        return Ok(ExitCode::SUCCESS);
    }
    let Some(addr) = args.http else {
        return Ok(ExitCode::from(EXIT_USAGE));
    };
    let shutdown = tokio_util::sync::CancellationToken::new();
    let stopper = shutdown.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        stopper.cancel();
    });
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let stopper = shutdown.clone();
    tokio::spawn(async move {
        terminate.recv().await;
        stopper.cancel();
    });
    mcpwatch::demo::serve_http(addr, shutdown, |bound| {
        print_out(&format!("demo MCP server listening on http://{bound}/mcp"));
    })
    .await?;
    Ok(ExitCode::SUCCESS)
}

async fn bench(
    args: BenchArgs,
    config: Config,
    log_format: Option<LogFormat>,
) -> anyhow::Result<ExitCode> {
    use mcpwatch::bench::{BenchMode, BenchPlan};
    let arguments = match &args.args {
        Some(text) => Some(serde_json::from_str(text).context("--args is not valid JSON")?),
        None => None,
    };
    let plan = BenchPlan {
        server: args.server,
        tool: args.tool,
        arguments,
        calls: args.calls,
        concurrency: args.concurrency.max(1),
        mode: args.mode,
        agent: args.agent,
        token: args.token,
        progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
        latencies: args.latencies,
    };
    let (runtime, guard) = if plan.mode == BenchMode::Agent {
        init_logging(log_format.unwrap_or(config.log.format), &config.log.level);
        (None, None)
    } else {
        let (runtime, guard) = start_with_telemetry(config, log_format).await?;
        (Some(runtime), Some(guard))
    };
    let report = mcpwatch::bench::run(&plan, runtime.as_ref()).await;
    if let Some(runtime) = runtime {
        runtime.shutdown(Duration::from_secs(10)).await;
    }
    if let Some(guard) = guard {
        flush_telemetry(guard).await;
    }
    let report = report.map_err(|e| anyhow::anyhow!("benchmark failed: {e}"))?;
    if args.json {
        print_out(&serde_json::to_string(&report)?);
    } else {
        let row = vec![
            report.calls.to_string(),
            report.errors.to_string(),
            report.p50_us.to_string(),
            report.p90_us.to_string(),
            report.p99_us.to_string(),
            report.max_us.to_string(),
            format!("{:.0}", report.calls_per_s),
        ];
        print_out(&table(
            &[
                "calls",
                "errors",
                "p50_us",
                "p90_us",
                "p99_us",
                "max_us",
                "calls_per_s",
            ],
            &[row],
        ));
    }
    Ok(if report.errors > 0 {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

/// `mcpwatch servers` / `mcpwatch sessions`: GET the list from a running agent, print a table.
async fn ask_agent(args: &AgentArgs, what: &str) -> anyhow::Result<ExitCode> {
    let url = format!("{}/v1/{what}", args.agent.trim_end_matches('/'));
    let mut request = reqwest::Client::new()
        .get(&url)
        .timeout(Duration::from_secs(10));
    if let Some(token) = &args.token {
        request = request.bearer_auth(token);
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("cannot reach the agent at {url}"))?;
    let status = response.status();
    let body: serde_json::Value = response
        .json()
        .await
        .with_context(|| format!("{url} did not answer JSON"))?;
    if !status.is_success() {
        let message = body["error"]["message"].as_str().unwrap_or("unknown error");
        anyhow::bail!("the agent answered {status}: {message}");
    }
    if args.json {
        print_out(&serde_json::to_string_pretty(&body)?);
        return Ok(ExitCode::SUCCESS);
    }
    let columns: &[&str] = match what {
        "servers" => &[
            "name",
            "transport",
            "state",
            "breaker",
            "sessions",
            "protocol_version",
        ],
        _ => &[
            "server",
            "scope",
            "transport",
            "age_ms",
            "idle_ms",
            "calls",
            "in_flight",
            "owned",
            "mcp_session_id",
        ],
    };
    let rows: Vec<Vec<String>> = body[what]
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|item| {
                    columns
                        .iter()
                        .map(|c| match &item[*c] {
                            serde_json::Value::String(s) => s.clone(),
                            serde_json::Value::Null => "-".to_owned(),
                            other => other.to_string(),
                        })
                        .collect()
                })
                .collect()
        })
        .unwrap_or_default();
    print_out(&table(columns, &rows));
    Ok(ExitCode::SUCCESS)
}

fn table(columns: &[&str], rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            rows.iter()
                .map(|r| r[i].len())
                .chain([c.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    let mut out = vec![line(
        columns
            .iter()
            .map(|c| c.to_uppercase())
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str)
            .collect(),
    )];
    out.extend(
        rows.iter()
            .map(|r| line(r.iter().map(String::as_str).collect())),
    );
    if rows.is_empty() {
        out.push("(none)".to_owned());
    }
    out.join("\n")
}

/// The one place the CLI writes to stdout.
#[allow(clippy::print_stdout)]
fn print_out(text: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{text}");
    let _ = stdout.flush();
}
