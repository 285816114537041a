//! Scale runs (issue 6, "Performance"): the mcpwatch runtime in this process, the
//! demo server in its own process (`mcpwatch demo-server`), both on 127.0.0.1.
//! The gateway runs (issue 14) put the agent (`mcpwatch serve`) in a child
//! process too, and this process is only its MCP client.
//!
//! Build and run (release; `cargo bench` builds the `mcpwatch` binary too and
//! passes its path in `CARGO_BIN_EXE_mcpwatch`; `--server-bin` overrides it):
//!
//! ```text
//! cargo bench --bench scale -- sessions --count 5000 --concurrency 64 --json
//! cargo bench --bench scale -- churn --transport builtin --seconds 60 --json
//! cargo bench --bench scale -- churn --transport http --seconds 60 --json
//! cargo bench --bench scale -- churn --transport stdio --seconds 20 --json
//! cargo bench --bench scale -- gateway-sessions --scope named --count 10000 --end delete --json
//! cargo bench --bench scale -- gateway-sessions --scope session --count 10000 --end idle --idle-ttl-secs 60 --json
//! cargo bench --bench scale -- gateway-per-call --concurrency 64 --calls 20000 --rounds 5 --session-scope --json
//! ```
//!
//! or `scripts/scale.sh`, which runs them all.
//!
//! * `sessions`: raises `RLIMIT_NOFILE` (soft to hard; the server child inherits
//!   it), starts `mcpwatch demo-server --http 127.0.0.1:0`, opens `--count` pooled
//!   sessions, one per scope `s-0 .. s-N`, with one `echo` call each, at most
//!   `--concurrency` at once, and stops at the first failure (reported with its
//!   error). Then the sessions sit idle for `--idle-secs`, client and server RSS
//!   and fds are measured (memory per idle session), every session serves one more
//!   call (all must be `reused`), the runtime shuts down, and the client's fds, the
//!   live-session gauge and the server's fds must be back at their baseline.
//! * `churn`: a pool capped at `--max-sessions` with calls rotating over `--scopes`
//!   scopes (many more than the cap), so nearly every call opens a session and
//!   evicts the least recently used idle one, for `--seconds` (and at most
//!   `--max-calls` calls). Reports opens per second, evictions, calls and errors,
//!   and fds, live sessions and child processes at baseline, during the run (peak)
//!   and after shutdown, which must equal the baseline.
//! * `gateway-sessions`: `--count` downstream MCP sessions open at once through
//!   the gateway, their idle cost in the agent (and in the upstream demo server),
//!   and everything back to the baseline after `DELETE` or idle expiry
//!   (`scale/gateway_sessions.rs`).
//! * `gateway-per-call`: a session-per-call client through the gateway next to
//!   the `/v1` API at the same concurrency, in alternating rounds
//!   (`scale/gateway_per_call.rs`).
//!
//! Each run prints a table and, with `--json`, one JSON line last. The exit status
//! is non-zero when a check fails (a leak, a session not reused).
#![allow(clippy::print_stdout, clippy::print_stderr)] // a bench program: stdout is its report

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use futures::StreamExt;
use mcpwatch::config::ServerConfig;
use mcpwatch::{CallOptions, Config, Runtime};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};
use tokio::time::Instant;

#[path = "scale/agent.rs"]
mod agent;
#[path = "scale/gateway_per_call.rs"]
mod gateway_per_call;
#[path = "scale/gateway_sessions.rs"]
mod gateway_sessions;
#[path = "scale/mcp_client.rs"]
mod mcp_client;

/// The server's name in the runtime's config.
const SERVER: &str = "demo";

/// How long a probe waits for fds and children to settle back to the baseline.
const SETTLE: Duration = Duration::from_secs(15);

/// The command line (cargo adds `--bench`, which is dropped before parsing).
#[derive(Debug, Parser)]
#[command(
    name = "scale",
    about = "mcpwatch scale runs: many pooled sessions, LRU churn"
)]
struct Cli {
    /// What to run.
    #[command(subcommand)]
    command: Cmd,
    /// Also print the results as one JSON line (the last line of output).
    #[arg(long, global = true)]
    json: bool,
    /// The mcpwatch binary that serves the demo (default: the one cargo built).
    #[arg(long, global = true, value_name = "PATH")]
    server_bin: Option<PathBuf>,
}

/// The scale runs.
#[derive(Debug, Subcommand)]
enum Cmd {
    /// As many pooled streamable-HTTP sessions as asked (or as the limits allow).
    Sessions(SessionsArgs),
    /// LRU churn: many more scopes than the pool's cap, for a while.
    Churn(ChurnArgs),
    /// Many downstream MCP sessions open at once through `mcpwatch serve`'s gateway.
    GatewaySessions(gateway_sessions::GatewaySessionsArgs),
    /// A session-per-call client through the gateway next to the `/v1` API.
    GatewayPerCall(gateway_per_call::GatewayPerCallArgs),
}

/// `sessions` options.
#[derive(Debug, clap::Args)]
struct SessionsArgs {
    /// Sessions to open (one scope each).
    #[arg(long, default_value_t = 5000)]
    count: usize,
    /// Opens in flight at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// How long the sessions sit idle before memory is measured.
    #[arg(long, default_value_t = 5)]
    idle_secs: u64,
}

/// `churn` options.
#[derive(Debug, clap::Args)]
struct ChurnArgs {
    /// The transport of the demo server.
    #[arg(long, value_enum)]
    transport: Transport,
    /// How long to churn.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// The pool's cap (global and per server).
    #[arg(long, default_value_t = 64)]
    max_sessions: usize,
    /// Scopes the calls rotate over (many more than the cap).
    #[arg(long, default_value_t = 1024)]
    scopes: usize,
    /// Callers at once (keep it well under the cap: busy sessions are not evictable).
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Upper bound on calls, whatever the time.
    #[arg(long, default_value_t = 10_000_000)]
    max_calls: u64,
}

/// The demo server's transport in a churn run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Transport {
    /// In-process.
    Builtin,
    /// `mcpwatch demo-server --http` in a child process.
    Http,
    /// One `mcpwatch demo-server --stdio` child process per session.
    Stdio,
}

impl Transport {
    /// The command-line spelling.
    fn as_str(self) -> &'static str {
        match self {
            Transport::Builtin => "builtin",
            Transport::Http => "http",
            Transport::Stdio => "stdio",
        }
    }
}

/// Parses the command line (without cargo's `--bench`) and runs it.
#[tokio::main]
async fn main() -> ExitCode {
    let args = std::env::args_os().filter(|arg| arg != "--bench");
    let cli = Cli::parse_from(args);
    let outcome = run(cli).await;
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("scale: a check failed (see above)");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the subcommand; `Ok(false)` when a check failed.
async fn run(cli: Cli) -> Result<bool> {
    let limit = mcpwatch::testing::raise_open_file_limit().context("raising RLIMIT_NOFILE")?;
    let (soft, hard) = (limit.soft, limit.hard);
    eprintln!("scale: RLIMIT_NOFILE soft {soft}, hard {hard}");
    let bin = server_bin(cli.server_bin)?;
    let report = match cli.command {
        Cmd::Sessions(args) => sessions(&bin, &args, hard).await?,
        Cmd::Churn(args) => churn(&bin, &args).await?,
        Cmd::GatewaySessions(args) => gateway_sessions::gateway_sessions(&bin, &args).await?,
        Cmd::GatewayPerCall(args) => gateway_per_call::gateway_per_call(&bin, &args).await?,
    };
    print_table(&report.title, &report.rows);
    if cli.json {
        println!("{}", report.json);
    }
    Ok(report.passed)
}

/// What a run prints.
struct Report {
    /// The table's heading.
    title: String,
    /// `(name, value)` rows of the table.
    rows: Vec<(String, String)>,
    /// Every number, for the JSON line.
    json: Value,
    /// True when every check held.
    passed: bool,
}

/// The `mcpwatch` binary: `--server-bin`, else the one cargo built for this bench,
/// else `target/release/mcpwatch`.
fn server_bin(flag: Option<PathBuf>) -> Result<PathBuf> {
    let bin = flag
        .or_else(|| option_env!("CARGO_BIN_EXE_mcpwatch").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("target/release/mcpwatch"));
    if !bin.is_file() {
        bail!(
            "{} not found: build it with `cargo build --release` or pass --server-bin",
            bin.display()
        );
    }
    Ok(bin)
}

// ---------------------------------------------------------------- probes

/// Open file descriptors of a process (`None`: this one).
fn fd_count(pid: Option<u32>) -> Result<usize> {
    let dir = match pid {
        None => "/proc/self/fd".to_owned(),
        Some(pid) => format!("/proc/{pid}/fd"),
    };
    // read_dir holds one fd of its own while it reads: the same in every count.
    Ok(std::fs::read_dir(&dir)
        .with_context(|| format!("reading {dir}"))?
        .count())
}

/// `/proc/PID/status`, opened once: re-read from the start it is current, and
/// reading it needs no new fd when the sessions have taken them all.
struct Status {
    file: std::fs::File,
    path: String,
}

impl Status {
    /// Opens the status of a process (`None`: this one).
    fn open(pid: Option<u32>) -> Result<Status> {
        let path = match pid {
            None => "/proc/self/status".to_owned(),
            Some(pid) => format!("/proc/{pid}/status"),
        };
        let file = std::fs::File::open(&path).with_context(|| format!("opening {path}"))?;
        Ok(Status { file, path })
    }

    /// Resident set size in KiB (`VmRSS`).
    fn rss_kb(&mut self) -> Result<u64> {
        use std::io::{Read, Seek};
        let mut status = String::new();
        self.file
            .seek(std::io::SeekFrom::Start(0))
            .and_then(|_| self.file.read_to_string(&mut status))
            .with_context(|| format!("reading {}", self.path))?;
        parse_rss(&status).with_context(|| format!("no VmRSS in {}", self.path))
    }
}

/// The `VmRSS` of a `/proc/PID/status` text, in KiB.
fn parse_rss(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kb| kb.parse().ok())
}

/// Processes whose parent is this process (live or not yet reaped).
fn child_count() -> Result<usize> {
    let me = std::process::id();
    let mut children = 0;
    for entry in std::fs::read_dir("/proc").context("reading /proc")? {
        let Ok(entry) = entry else { continue };
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        // The process may be gone already: skip it.
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        let ppid = stat
            .rfind(')')
            .and_then(|end| stat[end + 1..].split_whitespace().nth(1))
            .and_then(|ppid| ppid.parse::<u32>().ok());
        if ppid == Some(me) {
            children += 1;
        }
    }
    Ok(children)
}

/// The runtime's live-session gauge (`mcp_client_sessions_active`, summed over labels).
fn gauge_sessions(runtime: &Runtime) -> i64 {
    metric_sum(
        &runtime.metrics().render(),
        "mcp_client_sessions_active",
        &[],
    )
}

/// Sum of the samples of `name` whose labels contain every `label="value"` of `labels`.
fn metric_sum(text: &str, name: &str, labels: &[&str]) -> i64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            if !(rest.starts_with('{') || rest.starts_with(' ')) {
                return None;
            }
            if !labels.iter().all(|label| rest.contains(label)) {
                return None;
            }
            rest.rsplit(' ').next()?.parse::<f64>().ok()
        })
        .sum::<f64>() as i64
}

/// Samples the peak fd count of this process and of a server every 50 ms, until stopped.
struct FdSampler {
    stop: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<(usize, usize)>,
}

impl FdSampler {
    /// Starts sampling this process and `server`.
    fn start(server: u32) -> FdSampler {
        let stop = tokio_util::sync::CancellationToken::new();
        let token = stop.clone();
        let task = tokio::spawn(async move {
            let mut peak = (0, 0);
            // Bounded: at most an hour of samples, whatever happens to the caller.
            for _ in 0..72_000 {
                peak.0 = peak.0.max(fd_count(None).unwrap_or(0));
                peak.1 = peak.1.max(fd_count(Some(server)).unwrap_or(0));
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(50)) => {}
                    () = token.cancelled() => break,
                }
            }
            peak
        });
        FdSampler { stop, task }
    }

    /// The peaks `(this process, server)`.
    async fn stop(self) -> (usize, usize) {
        self.stop.cancel();
        self.task.await.unwrap_or_default()
    }
}

/// Waits (at most [`SETTLE`]) until `probe` returns at most `baseline`; returns its last value.
async fn settle(
    baseline: usize,
    mut probe: impl FnMut() -> Result<usize>,
) -> Result<(usize, Duration)> {
    let started = Instant::now();
    loop {
        // An error (EMFILE while the last connections close) is "not yet".
        let now = probe();
        if let Ok(now) = now
            && now <= baseline
        {
            return Ok((now, started.elapsed()));
        }
        if started.elapsed() >= SETTLE {
            return Ok((now?, started.elapsed()));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Latency percentiles of `samples` in milliseconds: `(p50, p99, max)`.
fn percentiles(samples: &mut [Duration]) -> (f64, f64, f64) {
    if samples.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    samples.sort_unstable();
    let at = |q: f64| {
        let rank = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
        ms(samples[rank - 1])
    };
    (at(0.50), at(0.99), ms(samples[samples.len() - 1]))
}

/// A duration in milliseconds, rounded to µs.
fn ms(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 1e6).round() / 1e3
}

/// One decimal place.
fn round1(value: f64) -> f64 {
    (value * 10.0).round() / 10.0
}

/// Prints a report's table on stdout.
fn print_table(title: &str, rows: &[(String, String)]) {
    let width = rows.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
    println!();
    println!("== {title}");
    for (name, value) in rows {
        println!("  {name:<width$}  {value}");
    }
}

// ---------------------------------------------------------------- the demo server child

/// `mcpwatch demo-server --http 127.0.0.1:0` in a child process.
struct HttpServer {
    child: Child,
    pid: u32,
    url: String,
    /// Kept open: the server's stdout (it prints one line; a closed pipe would hurt a later write).
    _stdout: tokio::io::Lines<BufReader<ChildStdout>>,
}

impl HttpServer {
    /// Starts the server and waits for the address it prints.
    async fn start(bin: &Path) -> Result<HttpServer> {
        let mut command = Command::new(bin);
        command
            .args(["demo-server", "--http", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        if std::env::var_os("RUST_LOG").is_none() {
            command.env("RUST_LOG", "warn");
        }
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {} demo-server", bin.display()))?;
        let pid = child.id().context("the demo server exited at once")?;
        let stdout = child.stdout.take().context("no stdout pipe")?;
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .context("the demo server did not say where it listens within 20 s")??
            .context("the demo server exited before listening")?;
        let Some(addr) = line.split("http://").nth(1) else {
            bail!("unexpected first line from the demo server: {line}");
        };
        let url = format!("http://{}", addr.trim());
        if !url.starts_with("http://127.0.0.1:") {
            bail!("the demo server listens on {url}, not on 127.0.0.1");
        }
        eprintln!("scale: demo server pid {pid} at {url}");
        Ok(HttpServer {
            child,
            pid,
            url,
            _stdout: lines,
        })
    }

    /// SIGTERM, then SIGKILL if it has not exited within 10 s; returns how it exited.
    async fn stop(mut self) -> Result<String> {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.pid)?);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        match tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await {
            Ok(status) => Ok(format!("{}", status?)),
            Err(_) => {
                self.child.kill().await?;
                Ok("killed after 10 s (SIGTERM ignored)".to_owned())
            }
        }
    }
}

// ---------------------------------------------------------------- sessions

/// The `sessions` run.
async fn sessions(bin: &Path, args: &SessionsArgs, fd_limit: u64) -> Result<Report> {
    if args.count == 0 || args.concurrency == 0 {
        bail!("--count and --concurrency must be at least 1");
    }
    // One keep-alive connection (the session's GET stream) per session on each
    // side, plus the POST connections in flight and the process's own.
    let wanted = args.count as u64 + args.concurrency as u64 + 256;
    if wanted > fd_limit {
        eprintln!(
            "scale: warning: {} sessions need about {wanted} fds per process; the limit is {fd_limit}",
            args.count
        );
    }
    let server = HttpServer::start(bin).await?;
    let mut config = Config::default();
    config.pool.max_sessions = args.count + 16;
    config.pool.queue_timeout = Duration::from_secs(30);
    config.pool.idle_ttl = Duration::from_secs(3600);
    let mut spec = ServerConfig::http(server.url.clone());
    spec.max_sessions = Some(args.count + 16);
    spec.connect_timeout = Duration::from_secs(30);
    spec.call_timeout = Duration::from_secs(30);
    // Stop at the first failure with its real cause, not after retries.
    spec.retry.max_attempts = 1;
    config.servers.insert(SERVER.to_owned(), spec);

    // Opened first: the fd baseline counts them (both stay open to the end).
    let mut client_status = Status::open(None)?;
    let mut server_status = Status::open(Some(server.pid))?;
    let fds_base = fd_count(None)?;
    let server_fds_base = fd_count(Some(server.pid))?;
    let server_rss_base = server_status.rss_kb()?;
    let runtime = Runtime::start(config).await?;
    let rss_base = client_status.rss_kb()?;

    // Open: one echo per scope, at most `concurrency` at once; stop at the first failure.
    let started = Instant::now();
    let mut open_times = Vec::with_capacity(args.count);
    let mut opened_scopes = Vec::with_capacity(args.count);
    let mut failure: Option<String> = None;
    {
        let calls = futures::stream::iter(0..args.count)
            .map(|i| {
                let runtime = runtime.clone();
                async move {
                    let scope = format!("s-{i}");
                    let args = json!({"message": "hi"});
                    let call = runtime
                        .call_tool(SERVER, "echo", Some(args), CallOptions::scope(&scope))
                        .await;
                    (scope, call)
                }
            })
            .buffer_unordered(args.concurrency);
        tokio::pin!(calls);
        let mut next_report = 1000;
        while let Some((scope, call)) = calls.next().await {
            match call {
                Ok(call) if !call.is_error() && !call.reused => {
                    open_times.push(call.duration);
                    opened_scopes.push(scope);
                }
                Ok(call) => {
                    failure = Some(format!(
                        "{scope}: unexpected answer (isError {}, reused {})",
                        call.is_error(),
                        call.reused
                    ));
                    break;
                }
                Err(error) => {
                    failure = Some(format!("{scope}: {} ({error})", error.kind().as_str()));
                    break;
                }
            }
            if open_times.len() >= next_report {
                // At the fd limit the count itself may fail (EMFILE): say so, go on.
                let fds = fd_count(None).map_or_else(|e| format!("? ({e})"), |n| n.to_string());
                eprintln!(
                    "scale: {} sessions open ({:.1} s, {fds} client fds)",
                    open_times.len(),
                    started.elapsed().as_secs_f64(),
                );
                next_report += 1000;
            }
        }
    }
    let open_total = started.elapsed();
    let reached = open_times.len();
    if let Some(failure) = &failure {
        eprintln!("scale: stopped at the first failure after {reached} sessions: {failure}");
    }
    let (open_p50, open_p99, open_max) = percentiles(&mut open_times);
    eprintln!(
        "scale: {reached} sessions open in {:.1} s; idle for {} s",
        open_total.as_secs_f64(),
        args.idle_secs
    );

    // Idle, then measure.
    tokio::time::sleep(Duration::from_secs(args.idle_secs)).await;
    let pooled = runtime.sessions().len();
    let gauge_open = gauge_sessions(&runtime);
    let rss_idle = client_status.rss_kb()?;
    // At the fd limit these may fail (EMFILE): 0 then, and the run goes on to shut down.
    let fds_idle = fd_count(None).unwrap_or(0);
    let server_rss_idle = server_status.rss_kb()?;
    let server_fds_idle = fd_count(Some(server.pid)).unwrap_or(0);
    let per_session = |after: u64, before: u64| {
        if reached == 0 {
            0.0
        } else {
            round1(after.saturating_sub(before) as f64 / reached as f64)
        }
    };
    let client_kb = per_session(rss_idle, rss_base);
    let server_kb = per_session(server_rss_idle, server_rss_base);

    // Second pass: one call per session; every one must be served by its pooled session.
    // Client and server fds are sampled meanwhile: the pass should need no new connections.
    let sampler = FdSampler::start(server.pid);
    let started = Instant::now();
    let mut reuse_times = Vec::with_capacity(reached);
    let mut reused = 0usize;
    let mut reuse_errors: BTreeMap<String, u64> = BTreeMap::new();
    {
        let calls = futures::stream::iter(opened_scopes.iter())
            .map(|scope| {
                let runtime = runtime.clone();
                async move {
                    let args = json!({"message": "again"});
                    runtime
                        .call_tool(SERVER, "echo", Some(args), CallOptions::scope(scope))
                        .await
                }
            })
            .buffer_unordered(args.concurrency);
        tokio::pin!(calls);
        while let Some(call) = calls.next().await {
            match call {
                Ok(call) => {
                    reused += usize::from(call.reused && !call.is_error());
                    reuse_times.push(call.duration);
                }
                Err(error) => {
                    *reuse_errors
                        .entry(error.kind().as_str().to_owned())
                        .or_default() += 1;
                }
            }
        }
    }
    let reuse_total = started.elapsed();
    let (fds_reuse_peak, server_fds_reuse_peak) = sampler.stop().await;
    let (reuse_p50, reuse_p99, reuse_max) = percentiles(&mut reuse_times);
    let rss_after_reuse = client_status.rss_kb()?;
    let pooled_after_reuse = runtime.sessions().len();

    // Shutdown: everything back to the baseline (fds sampled on the way: the
    // session DELETEs must not need a connection each).
    let sampler = FdSampler::start(server.pid);
    let shutdown = runtime.shutdown(Duration::from_secs(120)).await;
    let gauge_after = gauge_sessions(&runtime);
    let sessions_after = runtime.sessions().len();
    drop(runtime);
    let (fds_after, fds_settle) = settle(fds_base, || fd_count(None)).await?;
    let (server_fds_after, _) = settle(server_fds_base, || fd_count(Some(server.pid))).await?;
    let (fds_shutdown_peak, server_fds_shutdown_peak) = sampler.stop().await;
    let rss_after = client_status.rss_kb()?;
    let server_rss_after = server_status.rss_kb()?;
    let server_exit = server.stop().await?;
    let children_after = child_count()?;

    let all_reused = reused == reached && reuse_errors.is_empty();
    let back = fds_after <= fds_base
        && gauge_after == 0
        && sessions_after == 0
        && server_fds_after <= server_fds_base
        && children_after == 0;
    let passed = all_reused && back;
    let rows = vec![
        row("sessions asked", args.count),
        row("sessions reached", reached),
        row(
            "stopped by",
            failure
                .clone()
                .unwrap_or_else(|| "nothing (all opened)".into()),
        ),
        row("open concurrency", args.concurrency),
        row(
            "open time total",
            format!(
                "{:.2} s ({:.0} opens/s)",
                open_total.as_secs_f64(),
                reached as f64 / open_total.as_secs_f64().max(1e-9)
            ),
        ),
        row(
            "open time p50 / p99 / max",
            format!("{open_p50:.2} / {open_p99:.2} / {open_max:.2} ms"),
        ),
        row(
            "pooled sessions / gauge (idle)",
            format!("{pooled} / {gauge_open}"),
        ),
        row(
            "client RSS base -> idle",
            format!("{rss_base} -> {rss_idle} KiB"),
        ),
        row("client KiB per idle session", client_kb),
        row(
            "server RSS base -> idle",
            format!("{server_rss_base} -> {server_rss_idle} KiB"),
        ),
        row("server KiB per idle session", server_kb),
        row(
            "client fds base -> idle -> after",
            format!("{fds_base} -> {fds_idle} -> {fds_after} (settled in {fds_settle:.1?})"),
        ),
        row(
            "server fds base -> idle -> after",
            format!("{server_fds_base} -> {server_fds_idle} -> {server_fds_after}"),
        ),
        row(
            "reuse pass: reused / errors",
            format!("{reused} of {reached} / {reuse_errors:?}"),
        ),
        row(
            "reuse pass p50 / p99 / max",
            format!(
                "{reuse_p50:.2} / {reuse_p99:.2} / {reuse_max:.2} ms ({:.2} s total)",
                reuse_total.as_secs_f64()
            ),
        ),
        row(
            "client / server fds peak during reuse pass",
            format!("{fds_reuse_peak} / {server_fds_reuse_peak}"),
        ),
        row(
            "client RSS after reuse / after shutdown",
            format!("{rss_after_reuse} / {rss_after} KiB"),
        ),
        row(
            "server RSS after shutdown",
            format!("{server_rss_after} KiB"),
        ),
        row(
            "shutdown",
            format!(
                "{} closed in {:.2} s, timed out: {}",
                shutdown.sessions_closed,
                shutdown.elapsed.as_secs_f64(),
                shutdown.timed_out
            ),
        ),
        row(
            "client / server fds peak during shutdown",
            format!("{fds_shutdown_peak} / {server_fds_shutdown_peak}"),
        ),
        row(
            "after shutdown: gauge / sessions / children",
            format!("{gauge_after} / {sessions_after} / {children_after}"),
        ),
        row("server exit", &server_exit),
        row("checks", if passed { "PASS" } else { "FAIL" }),
    ];
    let json = json!({
        "run": "sessions",
        "fd_limit": fd_limit,
        "asked": args.count,
        "reached": reached,
        "stopped_by": failure,
        "concurrency": args.concurrency,
        "open_total_s": round1(open_total.as_secs_f64() * 100.0) / 100.0,
        "open_ms": {"p50": open_p50, "p99": open_p99, "max": open_max},
        "pooled_idle": pooled,
        "gauge_idle": gauge_open,
        "client_rss_kb": {"base": rss_base, "idle": rss_idle, "after_reuse": rss_after_reuse, "after_shutdown": rss_after},
        "client_kb_per_session": client_kb,
        "server_rss_kb": {"base": server_rss_base, "idle": server_rss_idle, "after_shutdown": server_rss_after},
        "server_kb_per_session": server_kb,
        "client_fds": {"base": fds_base, "idle": fds_idle, "after": fds_after},
        "server_fds": {"base": server_fds_base, "idle": server_fds_idle, "after": server_fds_after},
        "reused": reused,
        "pooled_after_reuse": pooled_after_reuse,
        "reuse_errors": reuse_errors,
        "reuse_fds_peak": {"client": fds_reuse_peak, "server": server_fds_reuse_peak},
        "shutdown_fds_peak": {"client": fds_shutdown_peak, "server": server_fds_shutdown_peak},
        "reuse_ms": {"p50": reuse_p50, "p99": reuse_p99, "max": reuse_max},
        "shutdown": {"closed": shutdown.sessions_closed, "elapsed_s": shutdown.elapsed.as_secs_f64(), "timed_out": shutdown.timed_out},
        "after": {"gauge": gauge_after, "sessions": sessions_after, "children": children_after},
        "passed": passed,
    });
    Ok(Report {
        title: format!("sessions: {reached} pooled streamable-HTTP sessions"),
        rows,
        json,
        passed,
    })
}

/// A table row.
fn row(name: &str, value: impl ToString) -> (String, String) {
    (name.to_owned(), value.to_string())
}

// ---------------------------------------------------------------- churn

/// One probe of the process: fds, live sessions, gauge, children.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Probe {
    fds: usize,
    sessions: usize,
    gauge: i64,
    children: usize,
}

impl Probe {
    /// Probes now (`runtime`: `None` once it is gone).
    fn take(runtime: Option<&Runtime>) -> Result<Probe> {
        Ok(Probe {
            fds: fd_count(None)?,
            sessions: runtime.map_or(0, |r| r.sessions().len()),
            gauge: runtime.map_or(0, gauge_sessions),
            children: child_count()?,
        })
    }

    /// The larger of each field.
    fn max(self, other: Probe) -> Probe {
        Probe {
            fds: self.fds.max(other.fds),
            sessions: self.sessions.max(other.sessions),
            gauge: self.gauge.max(other.gauge),
            children: self.children.max(other.children),
        }
    }

    /// The probe as a JSON object.
    fn json(self) -> Value {
        json!({"fds": self.fds, "sessions": self.sessions, "gauge": self.gauge, "children": self.children})
    }

    /// The probe as one line of text.
    fn text(self) -> String {
        format!(
            "fds {}, sessions {}, gauge {}, children {}",
            self.fds, self.sessions, self.gauge, self.children
        )
    }
}

/// The `churn` run.
async fn churn(bin: &Path, args: &ChurnArgs) -> Result<Report> {
    if args.max_sessions == 0 || args.concurrency == 0 || args.scopes == 0 {
        bail!("--max-sessions, --concurrency and --scopes must be at least 1");
    }
    if args.concurrency >= args.max_sessions {
        bail!("--concurrency must be below --max-sessions (busy sessions cannot be evicted)");
    }
    let server = match args.transport {
        Transport::Http => Some(HttpServer::start(bin).await?),
        Transport::Builtin | Transport::Stdio => None,
    };
    let mut spec = match (&server, args.transport) {
        (Some(server), _) => ServerConfig::http(server.url.clone()),
        (None, Transport::Stdio) => ServerConfig::stdio(
            bin.to_string_lossy().into_owned(),
            ["demo-server", "--stdio"],
        ),
        (None, _) => ServerConfig::builtin(),
    };
    spec.max_sessions = Some(args.max_sessions);
    let mut config = Config::default();
    config.pool.max_sessions = args.max_sessions;
    config.pool.queue_timeout = Duration::from_secs(10);
    config.servers.insert(SERVER.to_owned(), spec);

    let server_fds_base = match &server {
        Some(server) => Some(fd_count(Some(server.pid))?),
        None => None,
    };
    let base_process = Probe::take(None)?;
    let runtime = Runtime::start(config).await?;
    let baseline = Probe::take(Some(&runtime))?;
    let baseline = Probe {
        fds: base_process.fds,
        children: base_process.children,
        ..baseline
    };
    eprintln!(
        "scale: churn {} baseline: {}",
        args.transport.as_str(),
        baseline.text()
    );

    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let next = Arc::new(AtomicU64::new(0));
    let ok = Arc::new(AtomicU64::new(0));
    let mut workers = tokio::task::JoinSet::new();
    let started = Instant::now();
    for _ in 0..args.concurrency {
        let (runtime, next, ok) = (runtime.clone(), next.clone(), ok.clone());
        let (scopes, max_calls) = (args.scopes as u64, args.max_calls);
        workers.spawn(async move {
            let mut errors: BTreeMap<String, u64> = BTreeMap::new();
            while Instant::now() < deadline {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= max_calls {
                    break;
                }
                let options = CallOptions::scope(format!("s-{}", i % scopes));
                let args = json!({"message": "churn"});
                match runtime.call_tool(SERVER, "echo", Some(args), options).await {
                    Ok(call) if !call.is_error() => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(_) => *errors.entry("tool_error".to_owned()).or_default() += 1,
                    Err(error) => *errors.entry(error.kind().as_str().to_owned()).or_default() += 1,
                }
            }
            errors
        });
    }
    // Sample while the workers run (bounded: they stop at the deadline).
    let mut peak = baseline;
    let mut last_report = Instant::now();
    while Instant::now() < deadline {
        let left = deadline.saturating_duration_since(Instant::now());
        tokio::time::sleep(left.min(Duration::from_millis(500))).await;
        peak = peak.max(Probe::take(Some(&runtime))?);
        if last_report.elapsed() >= Duration::from_secs(10) {
            last_report = Instant::now();
            eprintln!(
                "scale: {:.0} s: {} calls ok; now {}",
                started.elapsed().as_secs_f64(),
                ok.load(Ordering::Relaxed),
                Probe::take(Some(&runtime))?.text()
            );
        }
    }
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    let joined = tokio::time::timeout(Duration::from_secs(60), async {
        let mut all = Vec::new();
        while let Some(done) = workers.join_next().await {
            all.push(done);
        }
        all
    })
    .await
    .context("churn callers did not stop within 60 s of the deadline")?;
    for done in joined {
        for (kind, n) in done? {
            *errors.entry(kind).or_default() += n;
        }
    }
    let elapsed = started.elapsed();
    let during = Probe::take(Some(&runtime))?;
    peak = peak.max(during);
    let metrics = runtime.metrics().render();
    let opens = metric_sum(
        &metrics,
        "mcp_client_sessions_opened_total",
        &["outcome=\"ok\""],
    );
    let open_errors = metric_sum(
        &metrics,
        "mcp_client_sessions_opened_total",
        &["outcome=\"error\""],
    );
    let evictions = metric_sum(
        &metrics,
        "mcp_client_sessions_closed_total",
        &["reason=\"evicted\""],
    );
    let calls_ok = ok.load(Ordering::Relaxed);
    let error_total: u64 = errors.values().sum();
    let calls = calls_ok + error_total;

    let shutdown = runtime.shutdown(Duration::from_secs(30)).await;
    let gauge_after = gauge_sessions(&runtime);
    let sessions_after = runtime.sessions().len();
    drop(runtime);
    let (fds_after, fds_settle) = settle(baseline.fds, || fd_count(None)).await?;
    let (children_after, _) = settle(baseline.children, child_count).await?;
    let after = Probe {
        fds: fds_after,
        sessions: sessions_after,
        gauge: gauge_after,
        children: children_after,
    };
    let server_fds_after = match (&server, server_fds_base) {
        (Some(server), Some(base)) => Some(settle(base, || fd_count(Some(server.pid))).await?.0),
        _ => None,
    };
    let server_exit = match server {
        Some(server) => Some(server.stop().await?),
        None => None,
    };
    let back = after == baseline
        && server_fds_after
            .zip(server_fds_base)
            .is_none_or(|(after, base)| after <= base);
    let secs = elapsed.as_secs_f64().max(1e-9);
    let passed = back && error_total == 0 && calls > 0;
    let rows = vec![
        row("transport", args.transport.as_str()),
        row(
            "duration / cap / scopes / callers",
            format!(
                "{:.1} s / {} / {} / {}",
                secs, args.max_sessions, args.scopes, args.concurrency
            ),
        ),
        row(
            "calls (ok + errors)",
            format!(
                "{calls} ({calls_ok} + {error_total}) = {:.0}/s",
                calls as f64 / secs
            ),
        ),
        row("errors by kind", format!("{errors:?}")),
        row(
            "opens ok / failed",
            format!(
                "{opens} / {open_errors} = {:.0} opens/s",
                opens as f64 / secs
            ),
        ),
        row("evictions", evictions),
        row(
            "opens per call",
            format!("{:.3}", opens as f64 / calls.max(1) as f64),
        ),
        row("baseline", baseline.text()),
        row("peak during", peak.text()),
        row(
            "after shutdown",
            format!("{} (settled in {fds_settle:.1?})", after.text()),
        ),
        row(
            "server fds base -> after",
            match (server_fds_base, server_fds_after) {
                (Some(base), Some(after)) => format!("{base} -> {after}"),
                _ => "n/a (no server process)".to_owned(),
            },
        ),
        row(
            "shutdown",
            format!(
                "{} closed in {:.2} s, forced kills {}, timed out: {}",
                shutdown.sessions_closed,
                shutdown.elapsed.as_secs_f64(),
                shutdown.forced_kills,
                shutdown.timed_out
            ),
        ),
        row("server exit", server_exit.as_deref().unwrap_or("n/a")),
        row("back to baseline", if back { "yes" } else { "NO" }),
        row("checks", if passed { "PASS" } else { "FAIL" }),
    ];
    let json = json!({
        "run": "churn",
        "transport": args.transport.as_str(),
        "seconds": round1(secs),
        "max_sessions": args.max_sessions,
        "scopes": args.scopes,
        "concurrency": args.concurrency,
        "calls": calls,
        "calls_ok": calls_ok,
        "errors": errors,
        "calls_per_s": round1(calls as f64 / secs),
        "opens": opens,
        "open_errors": open_errors,
        "opens_per_s": round1(opens as f64 / secs),
        "evictions": evictions,
        "baseline": baseline.json(),
        "peak": peak.json(),
        "after": after.json(),
        "server_fds": {"base": server_fds_base, "after": server_fds_after},
        "shutdown": {"closed": shutdown.sessions_closed, "forced_kills": shutdown.forced_kills, "elapsed_s": shutdown.elapsed.as_secs_f64(), "timed_out": shutdown.timed_out},
        "back_to_baseline": back,
        "passed": passed,
    });
    Ok(Report {
        title: format!("churn over {} for {:.0} s", args.transport.as_str(), secs),
        rows,
        json,
        passed,
    })
}
