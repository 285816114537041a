#![allow(clippy::print_stdout)] // its output is the point
//! The baseline for mcpwatch's benchmarks: raw rmcp 3.9, one persistent
//! session, sequential calls, no pool, no telemetry. Prints the same JSON line
//! as `mcpwatch bench --json`.
//!
//! ```text
//! cargo run --release --example raw_rmcp -- --tool echo --args '{"message":"hi"}' --calls 2000 -- node everything.js stdio
//! cargo run --release --example raw_rmcp -- --tool echo --args '{"message":"hi"}' --calls 2000 --http http://127.0.0.1:3001/mcp
//! ```
//!
//! `--session-per-call` opens, uses and closes a session for every call (what
//! langchain-mcp-adapters does): `initialize`, the call, then the close (`DELETE`
//! over HTTP, the process's end over stdio).
//!
//! `--concurrency C` keeps C calls in flight on the one session (throughput);
//! the default is 1, sequential calls.
//!
//! `--latencies FILE` also writes every measured call's latency (microseconds,
//! one per line, in call order) for the charts of `benches/charts.py`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use rmcp::ServiceExt;
use rmcp::model::{
    CallToolRequestParams, ClientCapabilities, ClientConfig, Implementation, ProtocolVersion,
};
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};

/// Raw rmcp benchmark client.
#[derive(Parser)]
struct Args {
    /// Tool to call.
    #[arg(long)]
    tool: String,
    /// Tool arguments (a JSON object).
    #[arg(long)]
    args: Option<String>,
    /// Calls to measure after 20 warm-up calls.
    #[arg(long, default_value_t = 1000)]
    calls: u64,
    /// Write every measured call's latency (microseconds, one per line) to this file.
    #[arg(long, value_name = "FILE")]
    latencies: Option<std::path::PathBuf>,
    /// Streamable-HTTP endpoint; otherwise the command after `--` is spawned (stdio).
    #[arg(long)]
    http: Option<String>,
    /// Open and close a session for every call (5 warm-up calls instead of 20).
    #[arg(long)]
    session_per_call: bool,
    /// Calls in flight at once on the one session (not with --session-per-call).
    #[arg(long, default_value_t = 1)]
    concurrency: u64,
    /// The stdio server command.
    #[arg(last = true)]
    command: Vec<String>,
}

type Client = RunningService<RoleClient, ClientConfig>;

/// Opens one session, over HTTP or to a newly spawned stdio server.
async fn connect(args: &Args) -> anyhow::Result<Client> {
    let info = ClientConfig::new(
        ClientCapabilities::default(),
        Implementation::new("raw-rmcp-bench", "0.1.0"),
    )
    .with_protocol_version(ProtocolVersion::V_2025_11_25);
    if let Some(url) = &args.http {
        // rmcp keeps at most 16 POSTs in flight unless told otherwise.
        let config = StreamableHttpClientTransportConfig::with_uri(url.as_str())
            .max_concurrent_requests(args.concurrency as usize);
        return Ok(info
            .serve(StreamableHttpClientTransport::from_config(config))
            .await?);
    }
    let (program, rest) = args
        .command
        .split_first()
        .context("give --http URL or a command after --")?;
    let mut command = tokio::process::Command::new(program);
    command.args(rest);
    // The builder's default (inherit) would override a stderr set on the command.
    let (transport, _) = TokioChildProcess::builder(command)
        .stderr(std::process::Stdio::null())
        .spawn()?;
    Ok(info.serve(transport).await?)
}

/// One call; with `fresh`, on a session of its own, closed after it.
async fn one_call(
    args: &Args,
    client: &Client,
    fresh: bool,
    params: CallToolRequestParams,
) -> anyhow::Result<bool> {
    if !fresh {
        let result = client.peer().call_tool(params).await;
        return Ok(matches!(result, Ok(r) if r.is_error != Some(true)));
    }
    let session = connect(args).await?;
    let result = session.peer().call_tool(params).await;
    session.cancel().await?;
    Ok(matches!(result, Ok(r) if r.is_error != Some(true)))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let client = connect(&args).await?;
    let arguments = match &args.args {
        Some(text) => serde_json::from_str::<serde_json::Value>(text)?
            .as_object()
            .cloned(),
        None => None,
    };
    let params = || {
        let mut params = CallToolRequestParams::new(args.tool.clone());
        params.arguments = arguments.clone();
        params
    };
    let fresh = args.session_per_call;
    for _ in 0..if fresh { 5 } else { 20 } {
        one_call(&args, &client, fresh, params()).await?;
    }
    anyhow::ensure!(
        !(fresh && args.concurrency > 1),
        "--concurrency is for one session, not --session-per-call"
    );
    let next = AtomicU64::new(0);
    let started = Instant::now();
    let workers = (0..args.concurrency.max(1)).map(|_| async {
        let (mut latencies, mut errors) = (Vec::new(), 0u64);
        while next.fetch_add(1, Ordering::Relaxed) < args.calls {
            let call_started = Instant::now();
            if !one_call(&args, &client, fresh, params())
                .await
                .unwrap_or(false)
            {
                errors += 1;
            }
            latencies.push(call_started.elapsed().as_micros() as u64);
        }
        (latencies, errors)
    });
    let (mut latencies, mut errors) = (Vec::with_capacity(args.calls as usize), 0);
    for (worker_latencies, worker_errors) in futures::future::join_all(workers).await {
        latencies.extend(worker_latencies);
        errors += worker_errors;
    }
    let elapsed = started.elapsed();
    if let Some(path) = &args.latencies {
        mcpwatch::testing::write_latencies(path, &latencies)
            .with_context(|| format!("cannot write the latencies to {}", path.display()))?;
    }
    let report = mcpwatch::testing::summarize(latencies, errors, elapsed);
    println!("{}", serde_json::to_string(&report)?);
    client.cancel().await?;
    Ok(())
}
