//! `mcpwatch bench`: N calls of one tool at concurrency C, through the pooled
//! runtime, one session per call, a running agent's HTTP API, or rmcp's
//! streamable-HTTP client against any MCP URL ([`mcp_url`]); then the latency
//! distribution and throughput.

mod mcp_url;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use self::mcp_url::McpUrl;
pub use self::mcp_url::{McpUrlError, parse_header};
use crate::agent::client::CallClient;
use crate::runtime::{CallOptions, Runtime};

/// How calls are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchMode {
    /// Through the runtime's pooled session (opened once).
    Pooled,
    /// A new session for every call, closed after it (what many adapters do).
    PerCallSession,
    /// Through a running agent's `POST /v1/tools/call`.
    Agent,
    /// rmcp's streamable-HTTP client on one session at `url` (any MCP endpoint).
    Mcp,
    /// rmcp's streamable-HTTP client, a session per call at `url`: `initialize`,
    /// the call, `DELETE` (what langchain-mcp-adapters does).
    McpPerCallSession,
}

impl BenchMode {
    /// Whether the mode calls an MCP URL (`url`) rather than a configured server.
    pub fn calls_a_url(self) -> bool {
        matches!(self, BenchMode::Mcp | BenchMode::McpPerCallSession)
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchPlan {
    /// Server name (modes `pooled`, `per-call-session`, `agent`; empty in the
    /// modes that call a URL).
    pub server: String,
    /// Tool name.
    pub tool: String,
    /// Tool arguments.
    pub arguments: Option<serde_json::Value>,
    /// Calls in all (warm-up not included).
    pub calls: u64,
    /// Calls in flight at once.
    pub concurrency: u64,
    /// How calls are made.
    pub mode: BenchMode,
    /// The agent's API address (mode `agent`).
    pub agent: String,
    /// The agent's token (mode `agent`).
    pub token: Option<String>,
    /// The MCP endpoint (modes `mcp`, `mcp-per-call-session`).
    pub url: Option<String>,
    /// HTTP headers sent with every request to `url`, as (name, value).
    pub headers: Vec<(String, String)>,
    /// Show a progress bar on stderr.
    pub progress: bool,
    /// Where to write every measured call's latency (microseconds, one per
    /// line), for charts; none: not written.
    pub latencies: Option<PathBuf>,
}

/// The result line (`--json`): microseconds and calls per second.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct BenchReport {
    /// Calls made.
    pub calls: u64,
    /// Calls that failed (transport or tool errors).
    pub errors: u64,
    /// Median latency.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// Slowest call.
    pub max_us: u64,
    /// Throughput over the whole run.
    pub calls_per_s: f64,
}

/// Percentiles and throughput of `latencies` (microseconds) over `elapsed`.
pub fn summarize(mut latencies: Vec<u64>, errors: u64, elapsed: Duration) -> BenchReport {
    latencies.sort_unstable();
    let at = |q: f64| -> u64 {
        if latencies.is_empty() {
            return 0;
        }
        let rank = ((latencies.len() as f64) * q).ceil() as usize;
        latencies[rank.clamp(1, latencies.len()) - 1]
    };
    let calls = latencies.len() as u64;
    BenchReport {
        calls,
        errors,
        p50_us: at(0.50),
        p90_us: at(0.90),
        p99_us: at(0.99),
        max_us: latencies.last().copied().unwrap_or(0),
        calls_per_s: if elapsed.is_zero() {
            0.0
        } else {
            calls as f64 / elapsed.as_secs_f64()
        },
    }
}

/// Writes `latencies` (microseconds) to `path`, one integer per line, in the
/// order given (the order the calls finished, per worker).
pub fn write_latencies(path: &Path, latencies: &[u64]) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    for latency in latencies {
        writeln!(out, "{latency}")?;
    }
    out.flush()
}

/// Runs the plan. `runtime` is needed for the `pooled` and `per-call-session` modes.
pub async fn run(plan: &BenchPlan, runtime: Option<&Runtime>) -> Result<BenchReport, String> {
    let caller = Caller::new(plan, runtime).await?;
    let report = measure(plan, &caller).await;
    caller.close().await;
    report
}

/// The warm-up, then the measured calls.
async fn measure(plan: &BenchPlan, caller: &Caller) -> Result<BenchReport, String> {
    // Warm-up: open the session (and the agent's), fill caches; not measured.
    for _ in 0..plan.concurrency.clamp(1, 32) {
        caller.call(plan).await?;
    }
    let bar = if plan.progress {
        let bar = ProgressBar::new(plan.calls);
        if let Ok(style) =
            ProgressStyle::with_template("{bar:40} {pos}/{len} calls {per_sec} eta {eta}")
        {
            bar.set_style(style);
        }
        bar
    } else {
        ProgressBar::hidden()
    };
    let next = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let workers = (0..plan.concurrency.max(1)).map(|_| {
        let (next, errors, bar, caller) =
            (next.clone(), errors.clone(), bar.clone(), caller.clone());
        async move {
            let mut latencies = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < plan.calls {
                let call_started = Instant::now();
                if caller.call(plan).await.is_err() {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
                latencies.push(call_started.elapsed().as_micros() as u64);
                bar.inc(1);
            }
            latencies
        }
    });
    let latencies: Vec<u64> = futures::future::join_all(workers)
        .await
        .into_iter()
        .flatten()
        .collect();
    let elapsed = started.elapsed();
    bar.finish_and_clear();
    if let Some(path) = &plan.latencies {
        write_latencies(path, &latencies)
            .map_err(|e| format!("cannot write the latencies to {}: {e}", path.display()))?;
    }
    Ok(summarize(
        latencies,
        errors.load(Ordering::Relaxed),
        elapsed,
    ))
}

#[derive(Clone)]
enum Caller {
    Runtime(Runtime),
    /// Through the agent's API: a lean keep-alive HTTP/1.1 client, one
    /// connection per call in flight, the request built once, only
    /// `result.isError` of the answer decoded (see [`crate::agent::client`]).
    Agent(Arc<CallClient>),
    /// rmcp's streamable-HTTP client against the plan's URL.
    Url(Arc<McpUrl>),
}

impl Caller {
    async fn new(plan: &BenchPlan, runtime: Option<&Runtime>) -> Result<Caller, String> {
        match plan.mode {
            BenchMode::Mcp | BenchMode::McpPerCallSession => {
                let url = plan.url.as_deref().ok_or("no --url")?;
                let persistent = plan.mode == BenchMode::Mcp;
                let client = McpUrl::open(
                    url,
                    &plan.headers,
                    &plan.tool,
                    plan.arguments.as_ref(),
                    plan.concurrency,
                    persistent,
                )
                .await
                .map_err(|e| e.to_string())?;
                Ok(Caller::Url(Arc::new(client)))
            }
            BenchMode::Agent => {
                let body = serde_json::json!({"server": plan.server, "tool": plan.tool, "arguments": plan.arguments, "scope": "bench"});
                let body = serde_json::to_vec(&body).map_err(|e| e.to_string())?;
                let client = CallClient::new(
                    &plan.agent,
                    &body,
                    plan.token.as_deref(),
                    Duration::from_secs(60),
                )?;
                Ok(Caller::Agent(Arc::new(client)))
            }
            _ => runtime
                .cloned()
                .map(Caller::Runtime)
                .ok_or_else(|| "no runtime".to_owned()),
        }
    }

    async fn call(&self, plan: &BenchPlan) -> Result<(), String> {
        match (self, plan.mode) {
            (Caller::Runtime(runtime), BenchMode::PerCallSession) => {
                let session = runtime
                    .open(&plan.server)
                    .await
                    .map_err(|e| e.to_string())?;
                let result = session
                    .call_tool(&plan.tool, plan.arguments.clone(), None)
                    .await;
                session.close().await;
                match result {
                    Ok(result) if result.is_error != Some(true) => Ok(()),
                    Ok(_) => Err("tool error".to_owned()),
                    Err(error) => Err(error.to_string()),
                }
            }
            (Caller::Runtime(runtime), _) => {
                // One scope: every worker shares the pooled session, as the
                // steps of one orchestrator thread do.
                let options = CallOptions::scope("bench");
                match runtime
                    .call_tool(&plan.server, &plan.tool, plan.arguments.clone(), options)
                    .await
                {
                    Ok(call) if !call.is_error() => Ok(()),
                    Ok(_) => Err("tool error".to_owned()),
                    Err(error) => Err(error.to_string()),
                }
            }
            (Caller::Agent(client), _) => client.call().await,
            (Caller::Url(client), _) => client.call().await.map_err(|e| e.to_string()),
        }
    }

    /// Ends what the caller holds open (the `mcp` mode's session, with `DELETE`).
    async fn close(self) {
        if let Caller::Url(client) = self
            && let Some(client) = Arc::into_inner(client)
        {
            client.close().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let report = summarize((1..=100).rev().collect(), 2, Duration::from_secs(2));
        assert_eq!(
            (report.p50_us, report.p90_us, report.p99_us, report.max_us),
            (50, 90, 99, 100)
        );
        assert_eq!(report.calls, 100);
        assert_eq!(report.errors, 2);
        assert!((report.calls_per_s - 50.0).abs() < 1e-9);
        assert_eq!(summarize(Vec::new(), 0, Duration::ZERO).p50_us, 0);
    }

    #[test]
    fn latencies_are_written_one_per_line() {
        let dir = std::env::temp_dir().join(format!("mcpwatch-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("latencies.txt");
        write_latencies(&path, &[300, 12, 4_000_000]).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "300\n12\n4000000\n"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
