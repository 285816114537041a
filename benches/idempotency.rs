//! The idempotency store under load (issue 12's target): sequential `echo` calls
//! on the builtin demo server through the agent's HTTP API, each with a new
//! `Idempotency-Key`, on one keep-alive connection.
//!
//! ```text
//! cargo bench --bench idempotency -- [--rounds 5] [--calls 1500] [--fill 60000] [--json]
//! ```
//!
//! Each round starts a fresh agent in this process (API on 127.0.0.1:0, the
//! demo `builtin`), warms it with 200 calls without a key, measures the p50 of
//! `--calls` keyed calls (the store nearly empty), fills the store with `--fill`
//! more keyed calls, then measures the p50 of `--calls` keyed calls again (the
//! store full), and stops the agent. Rounds alternate empty and full on fresh
//! agents; the report gives each round, the medians, and the median of the
//! per-round ratios full / empty (target: at most 1.5).
//!
//! The client is the agent load generator of `mcpwatch bench --mode agent`
//! ([`mcpwatch::testing::CallClient`]): the request built once, the key
//! header added per call, the answer read to its `Content-Length`.
#![allow(clippy::print_stdout, clippy::print_stderr)] // a bench program: stdout is its report

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::Parser;
use mcpwatch::testing::CallClient;
use mcpwatch::{Config, Runtime};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The call measured: `echo` on the builtin demo.
const ECHO: &[u8] = br#"{"server": "demo", "tool": "echo", "arguments": {"message": "hi"}}"#;
/// Unmeasured calls (without a key) before each round.
const WARM_UP: usize = 200;
/// The longest one call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The command line (cargo adds `--bench`, which is accepted and ignored).
#[derive(Debug, Parser)]
#[command(
    name = "idempotency",
    about = "p50 of keyed echo calls, store empty vs full"
)]
struct Cli {
    /// Rounds, each on a fresh agent.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Calls measured per phase (empty, full).
    #[arg(long, default_value_t = 1_500)]
    calls: usize,
    /// Distinct keys stored between the two phases.
    #[arg(long, default_value_t = 60_000)]
    fill: usize,
    /// Also print the results as one JSON line (the last line of output).
    #[arg(long)]
    json: bool,
    #[arg(long, hide = true)]
    bench: bool,
}

/// One round's p50s, in microseconds.
struct Round {
    empty: f64,
    full: f64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start tokio: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(&cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("idempotency bench failed: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: &Cli) -> Result<()> {
    println!(
        "idempotency store: p50 of {} keyed echo calls (builtin demo, one keep-alive connection), \
         empty vs after {} more keys; {} rounds",
        cli.calls, cli.fill, cli.rounds
    );
    let mut rounds = Vec::new();
    for round in 0..cli.rounds {
        let result = one_round(cli, round).await?;
        println!(
            "round {}: empty {:>7.1} µs  full {:>7.1} µs  ratio {:.2}",
            round + 1,
            result.empty,
            result.full,
            result.full / result.empty
        );
        rounds.push(result);
    }
    let empty = median(rounds.iter().map(|r| r.empty).collect());
    let full = median(rounds.iter().map(|r| r.full).collect());
    let ratio = median(rounds.iter().map(|r| r.full / r.empty).collect());
    println!(
        "median: empty {empty:.1} µs  full {full:.1} µs  paired ratio {ratio:.2} (target ≤ 1.5)"
    );
    if cli.json {
        let json = serde_json::json!({"calls": cli.calls, "fill": cli.fill, "rounds": cli.rounds,
            "empty_p50_us": empty, "full_p50_us": full, "ratio": ratio,
            "per_round": rounds.iter().map(|r| [r.empty, r.full]).collect::<Vec<_>>()});
        println!("{json}");
    }
    Ok(())
}

async fn one_round(cli: &Cli, round: usize) -> Result<Round> {
    let agent = InProcessAgent::start().await?;
    let client = CallClient::new(&agent.url, ECHO, None, CALL_TIMEOUT).map_err(|e| anyhow!(e))?;
    for _ in 0..WARM_UP {
        client.call().await.map_err(|e| anyhow!("warm-up: {e}"))?;
    }
    let mut keys = (0..).map(|n: usize| format!("bench-{round}-{n}"));
    let mut phase = |count: usize| {
        let keys: Vec<String> = keys.by_ref().take(count).collect();
        let client = &client;
        async move {
            let mut micros = Vec::with_capacity(keys.len());
            for key in &keys {
                let started = Instant::now();
                client
                    .call_with_key(key)
                    .await
                    .map_err(|e| anyhow!("{key}: {e}"))?;
                micros.push(started.elapsed().as_secs_f64() * 1e6);
            }
            Ok::<_, anyhow::Error>(micros)
        }
    };
    let empty = median(phase(cli.calls).await?);
    phase(cli.fill).await?;
    let full = median(phase(cli.calls).await?);
    agent.stop().await?;
    Ok(Round { empty, full })
}

/// The agent (`mcpwatch::agent::serve`) on 127.0.0.1:0 in this process.
struct InProcessAgent {
    url: String,
    stop: CancellationToken,
    task: JoinHandle<Result<(), mcpwatch::agent::AgentError>>,
}

impl InProcessAgent {
    async fn start() -> Result<InProcessAgent> {
        let mut config = Config::demo();
        config.agent.listen = "127.0.0.1:0".parse()?;
        config.agent.admin_listen = "127.0.0.1:0".parse()?;
        let runtime = Runtime::start(config.clone())
            .await
            .context("starting the runtime")?;
        let stop = CancellationToken::new();
        let (bound, listening) = tokio::sync::oneshot::channel();
        let shutdown = stop.clone().cancelled_owned();
        let task = tokio::spawn(async move {
            mcpwatch::agent::serve(runtime, &config.agent, shutdown, |addrs| {
                let _ = bound.send(addrs.api);
            })
            .await
            .map(|_| ())
        });
        let api = listening.await.context("the agent did not start")?;
        Ok(InProcessAgent {
            url: format!("http://{api}"),
            stop,
            task,
        })
    }

    async fn stop(self) -> Result<()> {
        self.stop.cancel();
        match tokio::time::timeout(Duration::from_secs(30), self.task).await {
            Ok(Ok(result)) => result.context("the agent failed"),
            Ok(Err(join)) => bail!("the agent task failed: {join}"),
            Err(_) => bail!("the agent did not stop within 30 s"),
        }
    }
}

/// The median (the upper one for an even count).
fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples.get(samples.len() / 2).copied().unwrap_or(f64::NAN)
}
