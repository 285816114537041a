//! `mcpwatch bench`: N calls of one tool at concurrency C, through the pooled
//! runtime, one session per call, or a running agent's HTTP API; then the
//! latency distribution and throughput.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

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
}

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchPlan {
    /// Server name.
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
    /// Show a progress bar on stderr.
    pub progress: bool,
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

/// Runs the plan. `runtime` is needed for the `pooled` and `per-call-session` modes.
pub async fn run(plan: &BenchPlan, runtime: Option<&Runtime>) -> Result<BenchReport, String> {
    let caller = Caller::new(plan, runtime)?;
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
    Ok(summarize(
        latencies,
        errors.load(Ordering::Relaxed),
        elapsed,
    ))
}

#[derive(Clone)]
enum Caller {
    Runtime(Runtime),
    Agent {
        http: reqwest::Client,
        url: String,
        token: Option<String>,
    },
}

impl Caller {
    fn new(plan: &BenchPlan, runtime: Option<&Runtime>) -> Result<Caller, String> {
        match plan.mode {
            BenchMode::Agent => {
                let http = reqwest::Client::builder()
                    .tcp_nodelay(true)
                    .pool_max_idle_per_host(plan.concurrency as usize)
                    .build()
                    .map_err(|e| e.to_string())?;
                let url = format!("{}/v1/tools/call", plan.agent.trim_end_matches('/'));
                Ok(Caller::Agent {
                    http,
                    url,
                    token: plan.token.clone(),
                })
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
            (Caller::Agent { http, url, token }, _) => {
                let body = serde_json::json!({"server": plan.server, "tool": plan.tool, "arguments": plan.arguments, "scope": "bench"});
                let mut request = http.post(url).json(&body).timeout(Duration::from_secs(60));
                if let Some(token) = token {
                    request = request.bearer_auth(token);
                }
                let response = request.send().await.map_err(|e| e.to_string())?;
                let ok = response.status().is_success();
                let body: serde_json::Value = response.json().await.map_err(|e| e.to_string())?;
                if ok && body["result"]["isError"] != serde_json::Value::Bool(true) {
                    Ok(())
                } else {
                    Err(body.to_string())
                }
            }
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
}
