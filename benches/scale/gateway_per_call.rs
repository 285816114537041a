//! The `gateway-per-call` run (issue 14): a session-per-call client through
//! the gateway at concurrency 64, next to the `/v1` API at the same
//! concurrency, against one `mcpwatch serve` with the builtin demo.
//!
//! A gateway call is what langchain-mcp-adapters does for every tool call:
//! `initialize`, `notifications/initialized`, `tools/call echo`, `DELETE`, each
//! a request (this client, `mcp_client.rs`). With `X-Mcpwatch-Scope: bench` all
//! calls share the scope's pooled upstream session, as `mcpwatch bench --mode
//! agent` (scope `bench`) does on `/v1`. The rows alternate in every round
//! (the order rotating), so they see the same machine:
//!
//! * `gateway, named scope`: the four requests per call;
//! * `gateway, session scope` (`--session-scope`): the same without a scope, so
//!   every call also opens and closes an upstream (builtin) session;
//! * `/v1`: `mcpwatch bench --mode agent --concurrency C --calls N --json` in a
//!   child process (its lean HTTP/1.1 load generator).
//!
//! Each row reports calls per second, latency p50, and the CPU time per call of
//! the agent and of the load generator (from `/proc` and `getrusage`), which the
//! noisy machine disturbs less than the rate.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::agent::{Agent, AgentLimits, Upstream};
use super::mcp_client::{Failure, McpClient};
use super::{Report, percentiles, round1, row};

/// Linux's `USER_HZ`: the unit of `/proc/PID/stat` times (100 on every Linux ABI).
const TICKS_PER_S: f64 = 100.0;

/// `gateway-per-call` options.
#[derive(Debug, clap::Args)]
pub(crate) struct GatewayPerCallArgs {
    /// Calls in flight at once (each row).
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Calls per row and round.
    #[arg(long, default_value_t = 20_000)]
    calls: usize,
    /// Rounds (the rows alternate within each).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Also a row without a scope (each call opens an upstream session).
    #[arg(long)]
    session_scope: bool,
    /// Then the named-scope call cut short step by step: the agent's CPU per request kind.
    #[arg(long)]
    breakdown: bool,
}

/// A row of the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Row {
    GatewayNamed,
    GatewaySession,
    Api,
}

impl Row {
    fn name(self) -> &'static str {
        match self {
            Row::GatewayNamed => "gateway session-per-call, named scope",
            Row::GatewaySession => "gateway session-per-call, session scope",
            Row::Api => "/v1 (mcpwatch bench --mode agent)",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Row::GatewayNamed => "gateway_named",
            Row::GatewaySession => "gateway_session",
            Row::Api => "v1",
        }
    }
}

/// One row's round.
#[derive(Debug, Clone, Copy, Default)]
struct Measured {
    errors: usize,
    calls_per_s: f64,
    p50_ms: f64,
    /// Agent CPU per call, µs.
    agent_cpu_us: f64,
    /// Load generator CPU per call, µs.
    client_cpu_us: f64,
}

/// User plus system CPU time of a process so far (`/proc/PID/stat`), or of this one.
fn cpu_time(pid: Option<u32>) -> Result<Duration> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_owned(),
    };
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    // "pid (comm) state ..." : utime and stime are fields 14 and 15, i.e. the
    // 12th and 13th after the comm's closing parenthesis.
    let fields: Vec<&str> = stat
        .rfind(')')
        .map(|end| stat[end + 1..].split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    let (Some(user), Some(system)) = (ticks(11), ticks(12)) else {
        bail!("no utime/stime in {path}");
    };
    Ok(Duration::from_secs_f64(
        (user + system) as f64 / TICKS_PER_S,
    ))
}

/// User plus system CPU time of the reaped children of this process.
fn children_cpu_time() -> Result<Duration> {
    use nix::sys::resource::{UsageWho, getrusage};
    let usage = getrusage(UsageWho::RUSAGE_CHILDREN)?;
    let micros = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 * 1e6 + t.tv_usec() as f64;
    Ok(Duration::from_secs_f64(
        (micros(usage.user_time()) + micros(usage.system_time())) / 1e6,
    ))
}

/// CPU per call in µs.
fn per_call(cpu: Duration, calls: usize) -> f64 {
    round1(cpu.as_secs_f64() * 1e6 / calls.max(1) as f64)
}

/// The requests of one session-per-call call; each ends with `DELETE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Steps {
    /// `initialize`, `DELETE`.
    InitializeDelete,
    /// `initialize`, `notifications/initialized`, `DELETE`.
    WithInitialized,
    /// `initialize`, `notifications/initialized`, `tools/call`, `DELETE`: the real thing.
    Full,
}

impl Steps {
    /// Runs one call; the session is deleted whatever failed before.
    async fn run(self, client: &McpClient) -> Result<(), Failure> {
        let session = client.initialize().await?;
        let mut outcome = Ok(());
        if self != Steps::InitializeDelete {
            outcome = client.initialized(&session).await;
        }
        if self == Steps::Full && outcome.is_ok() {
            outcome = client.echo(&session).await;
        }
        let deleted = client.delete(&session).await;
        outcome.and(deleted)
    }
}

/// `calls` session-per-call calls, `concurrency` at once.
async fn gateway_round(
    client: &McpClient,
    agent_pid: u32,
    (calls, concurrency): (usize, usize),
    steps: Steps,
) -> Result<(Measured, BTreeMap<Failure, u64>)> {
    let (agent_cpu, client_cpu) = (cpu_time(Some(agent_pid))?, cpu_time(None)?);
    let started = Instant::now();
    let mut latencies = Vec::with_capacity(calls);
    let mut failures: BTreeMap<Failure, u64> = BTreeMap::new();
    let results = futures::stream::iter(0..calls)
        .map(|_| async move {
            let started = Instant::now();
            steps.run(client).await.map(|()| started.elapsed())
        })
        .buffer_unordered(concurrency);
    tokio::pin!(results);
    while let Some(result) = results.next().await {
        match result {
            Ok(took) => latencies.push(took),
            Err(failure) => *failures.entry(failure).or_default() += 1,
        }
    }
    let elapsed = started.elapsed();
    let agent_cpu = cpu_time(Some(agent_pid))?.saturating_sub(agent_cpu);
    let client_cpu = cpu_time(None)?.saturating_sub(client_cpu);
    let (p50_ms, _, _) = percentiles(&mut latencies);
    let measured = Measured {
        errors: failures.values().sum::<u64>() as usize,
        calls_per_s: round1(calls as f64 / elapsed.as_secs_f64().max(1e-9)),
        p50_ms,
        agent_cpu_us: per_call(agent_cpu, calls),
        client_cpu_us: per_call(client_cpu, calls),
    };
    Ok((measured, failures))
}

/// One `mcpwatch bench --mode agent` at `concurrency`, in a child process.
async fn api_round(
    bin: &Path,
    agent: &Agent,
    calls: usize,
    concurrency: usize,
) -> Result<Measured> {
    let (agent_cpu, client_cpu) = (cpu_time(Some(agent.pid))?, children_cpu_time()?);
    let output = tokio::process::Command::new(bin)
        .args(["bench", "--mode", "agent", "--agent", &agent.api])
        .args([
            "--server",
            "demo",
            "--tool",
            "echo",
            "--args",
            r#"{"message":"hi"}"#,
        ])
        .args([
            "--calls",
            &calls.to_string(),
            "--concurrency",
            &concurrency.to_string(),
            "--json",
        ])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .output()
        .await
        .context("running mcpwatch bench --mode agent")?;
    let agent_cpu = cpu_time(Some(agent.pid))?.saturating_sub(agent_cpu);
    let client_cpu = children_cpu_time()?.saturating_sub(client_cpu);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .with_context(|| {
            format!(
                "mcpwatch bench printed no JSON line ({}): {stdout}",
                output.status
            )
        })?;
    let report: Value = serde_json::from_str(line)?;
    let number = |key: &str| report.get(key).and_then(Value::as_f64).unwrap_or(0.0);
    Ok(Measured {
        errors: number("errors") as usize,
        calls_per_s: round1(number("calls_per_s")),
        p50_ms: number("p50_us") / 1e3,
        // The warm-up calls (at most 32) are in these CPU times too: negligible.
        agent_cpu_us: per_call(agent_cpu, calls),
        client_cpu_us: per_call(client_cpu, calls),
    })
}

/// The median of `values` (0 for none).
fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

/// The `gateway-per-call` run.
pub(crate) async fn gateway_per_call(bin: &Path, args: &GatewayPerCallArgs) -> Result<Report> {
    if args.concurrency == 0 || args.calls == 0 || args.rounds == 0 {
        bail!("--concurrency, --calls and --rounds must be at least 1");
    }
    let limits = AgentLimits {
        max_sessions: 4096 + args.concurrency * 4,
        session_idle_ttl_secs: 600,
    };
    let agent = Agent::start(bin, &Upstream::Builtin, &limits).await?;
    let url = format!("{}/mcp/demo", agent.api);
    let clients = Clients {
        named: McpClient::new(url.clone(), Some("bench".to_owned()))?,
        unscoped: McpClient::new(url, None)?,
    };
    // Warm-up: connections, the scope's upstream session, caches.
    let warm_up = (args.concurrency * 4, args.concurrency);
    gateway_round(&clients.named, agent.pid, warm_up, Steps::Full).await?;
    if args.session_scope {
        gateway_round(&clients.unscoped, agent.pid, warm_up, Steps::Full).await?;
    }
    let (measured, mut failures) = rounds(bin, args, &agent, &clients).await?;
    let breakdown = if args.breakdown {
        Some(breakdown(args, &agent, &clients.named, &mut failures).await?)
    } else {
        None
    };
    drop(clients);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let downstream_after = agent.gauge("mcpwatch_gateway_sessions_active").await?;
    let exit = agent.stop().await?;
    let ends = Ends {
        failures,
        breakdown,
        downstream_after,
        exit,
    };
    Ok(report(args, &measured, &ends))
}

/// The gateway's two clients: with the named scope `bench`, and with none.
struct Clients {
    named: McpClient,
    unscoped: McpClient,
}

/// What the run found besides the rows' figures.
struct Ends {
    failures: BTreeMap<Failure, u64>,
    breakdown: Option<Vec<(Steps, Measured)>>,
    downstream_after: i64,
    exit: String,
}

/// The alternating rounds; returns each row's results and the gateway's failures.
async fn rounds(
    bin: &Path,
    args: &GatewayPerCallArgs,
    agent: &Agent,
    clients: &Clients,
) -> Result<(BTreeMap<Row, Vec<Measured>>, BTreeMap<Failure, u64>)> {
    let mut rows = vec![Row::GatewayNamed, Row::Api];
    if args.session_scope {
        rows.push(Row::GatewaySession);
    }
    let load = (args.calls, args.concurrency);
    let mut measured: BTreeMap<Row, Vec<Measured>> = BTreeMap::new();
    let mut failures: BTreeMap<Failure, u64> = BTreeMap::new();
    for round in 0..args.rounds {
        let mut order = rows.clone();
        order.rotate_left(round % rows.len());
        for row in order {
            let result = match row {
                Row::Api => api_round(bin, agent, args.calls, args.concurrency).await?,
                Row::GatewayNamed | Row::GatewaySession => {
                    let client = match row {
                        Row::GatewayNamed => &clients.named,
                        _ => &clients.unscoped,
                    };
                    let (result, failed) =
                        gateway_round(client, agent.pid, load, Steps::Full).await?;
                    for (failure, n) in failed {
                        *failures.entry(failure).or_default() += n;
                    }
                    result
                }
            };
            eprintln!(
                "scale: round {}: {}: {:.0} calls/s, p50 {:.2} ms, agent CPU {:.1} µs/call, errors {}",
                round + 1,
                row.name(),
                result.calls_per_s,
                result.p50_ms,
                result.agent_cpu_us,
                result.errors
            );
            measured.entry(row).or_default().push(result);
        }
    }
    Ok((measured, failures))
}

/// The named-scope call cut short, step by step: CPU per call of each prefix
/// (the differences are what `notifications/initialized` and `tools/call` cost).
async fn breakdown(
    args: &GatewayPerCallArgs,
    agent: &Agent,
    client: &McpClient,
    failures: &mut BTreeMap<Failure, u64>,
) -> Result<Vec<(Steps, Measured)>> {
    let mut found = Vec::new();
    for steps in [Steps::InitializeDelete, Steps::WithInitialized, Steps::Full] {
        let load = (args.calls, args.concurrency);
        let (result, failed) = gateway_round(client, agent.pid, load, steps).await?;
        for (failure, n) in failed {
            *failures.entry(failure).or_default() += n;
        }
        eprintln!(
            "scale: breakdown {steps:?}: agent CPU {:.1} µs/call, load generator {:.1} µs/call",
            result.agent_cpu_us, result.client_cpu_us
        );
        found.push((steps, result));
    }
    Ok(found)
}

/// The per-round ratio of `row`'s calls per second to `/v1`'s.
fn ratios(measured: &BTreeMap<Row, Vec<Measured>>, row: Row) -> Vec<f64> {
    let (Some(rows), Some(api)) = (measured.get(&row), measured.get(&Row::Api)) else {
        return Vec::new();
    };
    rows.iter()
        .zip(api)
        .map(|(r, a)| (r.calls_per_s / a.calls_per_s.max(1e-9) * 1000.0).round() / 1000.0)
        .collect()
}

/// `/v1`'s agent CPU per call over the named-scope gateway's (medians): what
/// the rate ratio would be if the load generators cost nothing.
fn agent_cpu_ratio(measured: &BTreeMap<Row, Vec<Measured>>) -> f64 {
    let cpu = |row: Row| {
        median(
            measured
                .get(&row)
                .map(|results| results.iter().map(|m| m.agent_cpu_us).collect())
                .unwrap_or_default(),
        )
    };
    let (api, named) = (cpu(Row::Api), cpu(Row::GatewayNamed));
    (api / named.max(1e-9) * 1000.0).round() / 1000.0
}

/// The rows' medians: table rows, JSON object, and the errors of every round.
fn row_figures(
    measured: &BTreeMap<Row, Vec<Measured>>,
) -> (Vec<(String, String)>, serde_json::Map<String, Value>, usize) {
    let mut rows = Vec::new();
    let mut json_rows = serde_json::Map::new();
    let mut errors = 0;
    for (row_kind, results) in measured {
        let pick = |f: fn(&Measured) -> f64| median(results.iter().map(f).collect());
        let rates: Vec<f64> = results.iter().map(|m| m.calls_per_s).collect();
        let row_errors = results.iter().map(|m| m.errors).sum::<usize>();
        errors += row_errors;
        rows.push(row(
            row_kind.name(),
            format!(
                "{:.0} calls/s (rounds {rates:?}), p50 {:.2} ms, CPU per call: agent {:.1} µs, load generator {:.1} µs",
                pick(|m| m.calls_per_s),
                pick(|m| m.p50_ms),
                pick(|m| m.agent_cpu_us),
                pick(|m| m.client_cpu_us),
            ),
        ));
        json_rows.insert(
            row_kind.key().to_owned(),
            json!({
                "calls_per_s": pick(|m| m.calls_per_s),
                "calls_per_s_rounds": rates,
                "p50_ms": pick(|m| m.p50_ms),
                "agent_cpu_us_per_call": pick(|m| m.agent_cpu_us),
                "client_cpu_us_per_call": pick(|m| m.client_cpu_us),
                "errors": row_errors,
            }),
        );
    }
    (rows, json_rows, errors)
}

/// The breakdown's rows and JSON: CPU per call of each prefix, and the differences.
fn breakdown_figures(breakdown: &[(Steps, Measured)]) -> (Vec<(String, String)>, Value) {
    let cpu = |steps: Steps| {
        breakdown
            .iter()
            .find(|(s, _)| *s == steps)
            .map_or((0.0, 0.0), |(_, m)| (m.agent_cpu_us, m.client_cpu_us))
    };
    let (a, b, c) = (
        cpu(Steps::InitializeDelete),
        cpu(Steps::WithInitialized),
        cpu(Steps::Full),
    );
    let text =
        |(agent, client): (f64, f64)| format!("agent {agent:.1} µs, load generator {client:.1} µs");
    let diff = |x: (f64, f64), y: (f64, f64)| (round1(x.0 - y.0), round1(x.1 - y.1));
    let rows = vec![
        row("breakdown: initialize + DELETE", text(a)),
        row("breakdown: + notifications/initialized", text(diff(b, a))),
        row(
            "breakdown: + tools/call (whole call)",
            format!("{} ({})", text(diff(c, b)), text(c)),
        ),
    ];
    let json = json!({
        "initialize_delete": {"agent_us": a.0, "client_us": a.1},
        "initialized": {"agent_us": diff(b, a).0, "client_us": diff(b, a).1},
        "tools_call": {"agent_us": diff(c, b).0, "client_us": diff(c, b).1},
        "whole": {"agent_us": c.0, "client_us": c.1},
    });
    (rows, json)
}

/// The run's table and JSON line.
fn report(
    args: &GatewayPerCallArgs,
    measured: &BTreeMap<Row, Vec<Measured>>,
    ends: &Ends,
) -> Report {
    let mut rows = vec![row(
        "concurrency / calls per row and round / rounds",
        format!("{} / {} / {}", args.concurrency, args.calls, args.rounds),
    )];
    let (figures, json_rows, errors) = row_figures(measured);
    rows.extend(figures);
    let named = ratios(measured, Row::GatewayNamed);
    let session = ratios(measured, Row::GatewaySession);
    rows.push(row(
        "gateway named / /v1 calls per second (median of rounds)",
        format!(
            "{:.3} (rounds {named:?}; target at least 0.25)",
            median(named.clone())
        ),
    ));
    let cpu_ratio = agent_cpu_ratio(measured);
    rows.push(row(
        "/v1 / gateway named agent CPU per call (the rate ratio with free load generators)",
        format!("{cpu_ratio:.3}"),
    ));
    if args.session_scope {
        rows.push(row(
            "gateway session scope / /v1 (median of rounds)",
            format!("{:.3} (rounds {session:?})", median(session.clone())),
        ));
    }
    let breakdown = ends.breakdown.as_deref().map(breakdown_figures);
    if let Some((breakdown_rows, _)) = &breakdown {
        rows.extend(breakdown_rows.iter().cloned());
    }
    rows.push(row(
        "gateway failures by kind",
        format!("{:?}", ends.failures),
    ));
    rows.push(row(
        "downstream gauge after / agent exit",
        format!("{} / {}", ends.downstream_after, ends.exit),
    ));
    let passed = errors == 0 && ends.failures.is_empty() && ends.downstream_after == 0;
    rows.push(row("checks", if passed { "PASS" } else { "FAIL" }));
    let json = json!({
        "run": "gateway-per-call",
        "concurrency": args.concurrency,
        "calls": args.calls,
        "rounds": args.rounds,
        "rows": json_rows,
        "named_over_v1": median(named.clone()),
        "named_over_v1_rounds": named,
        "session_over_v1": median(session.clone()),
        "agent_cpu_v1_over_named": cpu_ratio,
        "breakdown_cpu_per_call": breakdown.map(|(_, json)| json),
        "failures": ends.failures,
        "downstream_after": ends.downstream_after,
        "passed": passed,
    });
    Report {
        title: format!(
            "gateway-per-call: session per call at concurrency {}",
            args.concurrency
        ),
        rows,
        json,
        passed,
    }
}
