//! The `gateway-sessions` run (issue 14): many downstream MCP sessions open at
//! once through `mcpwatch serve`'s gateway, what each costs while idle, and
//! everything back to its baseline after `DELETE` or after idle expiry.
//!
//! * `--scope named`: the builtin demo; every session sends `X-Mcpwatch-Scope:
//!   scale`, so all of them share one upstream session and what grows is the
//!   gateway's own state per downstream session.
//! * `--scope session`: `mcpwatch demo-server --http` behind the agent; no scope
//!   is sent, so each session is its own scope `~s:{id}` and holds an upstream
//!   session (the agent's client side and the demo server's side both grow).
//!
//! Each session is opened with `initialize`, `notifications/initialized` and one
//! `tools/call echo`, at most `--concurrency` at once, and then left idle with no
//! GET stream and no connection (the client that opened them is dropped). After
//! `--idle-secs` the agent's (and the demo server's) RSS and fds are read. Then
//! `--end delete` sends `DELETE` for every session; `--end idle` sends nothing and
//! waits for `gateway.session_idle_ttl` to end them. Either way the downstream
//! gauge, the upstream gauge, the agent's fds and the demo server's fds must come
//! back to their baseline (read after one warm-up session, opened and deleted).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{Result, bail};
use clap::ValueEnum;
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::agent::{Agent, AgentLimits, Upstream};
use super::mcp_client::{Failure, McpClient};
use super::{HttpServer, Report, Status, fd_count, percentiles, round1, row};

/// The named scope of `--scope named`.
const NAMED_SCOPE: &str = "scale";

/// How long the run waits for gauges and fds to come back after the sessions end:
/// the upstream connections of closed sessions stay in the agent's HTTP
/// keep-alive pool until its idle timeout (60 s) passes.
const SETTLE_AFTER: Duration = Duration::from_secs(180);

/// `gateway-sessions` options.
#[derive(Debug, clap::Args)]
pub(crate) struct GatewaySessionsArgs {
    /// Which scope the sessions use.
    #[arg(long, value_enum)]
    scope: ScopeKind,
    /// Downstream sessions to open.
    #[arg(long, default_value_t = 10_000)]
    count: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// How long the sessions sit idle before memory is measured.
    #[arg(long, default_value_t = 5)]
    idle_secs: u64,
    /// How the sessions end.
    #[arg(long, value_enum, default_value = "delete")]
    end: EndBy,
    /// `gateway.session_idle_ttl` in seconds (default: 3600 with `--end delete`,
    /// 60 with `--end idle`); must outlast the opening plus `--idle-secs`.
    #[arg(long)]
    idle_ttl_secs: Option<u64>,
}

/// The scope of the sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ScopeKind {
    /// One named scope for all (builtin demo).
    Named,
    /// Each session its own scope (HTTP demo server).
    Session,
}

/// How the sessions end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum EndBy {
    /// `DELETE` for each.
    Delete,
    /// `gateway.session_idle_ttl`.
    Idle,
}

impl ScopeKind {
    fn as_str(self) -> &'static str {
        match self {
            ScopeKind::Named => "named",
            ScopeKind::Session => "session",
        }
    }
}

impl EndBy {
    fn as_str(self) -> &'static str {
        match self {
            EndBy::Delete => "delete",
            EndBy::Idle => "idle",
        }
    }
}

/// The processes of a run and how to read them.
struct Processes {
    agent: Agent,
    agent_status: Status,
    server: Option<(HttpServer, Status)>,
}

/// One reading of both processes and both gauges.
#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    agent_rss_kb: u64,
    agent_fds: usize,
    server_rss_kb: u64,
    server_fds: usize,
    /// `mcpwatch_gateway_sessions_active`.
    downstream: i64,
    /// `mcp_client_sessions_active`.
    upstream: i64,
}

impl Sample {
    fn json(self) -> Value {
        json!({"agent_rss_kb": self.agent_rss_kb, "agent_fds": self.agent_fds,
            "server_rss_kb": self.server_rss_kb, "server_fds": self.server_fds,
            "downstream": self.downstream, "upstream": self.upstream})
    }

    /// True if no count is above `baseline`'s (RSS is not compared).
    fn back_to(self, baseline: Sample) -> bool {
        self.agent_fds <= baseline.agent_fds
            && self.server_fds <= baseline.server_fds
            && self.downstream <= baseline.downstream
            && self.upstream <= baseline.upstream
    }
}

impl Processes {
    /// Reads fds and RSS first, then the gauges (the scrape's connection closes after it).
    async fn sample(&mut self) -> Result<Sample> {
        let mut sample = Sample {
            agent_rss_kb: self.agent_status.rss_kb()?,
            // At the fd limit a count may fail: 0 then, and the run goes on.
            agent_fds: fd_count(Some(self.agent.pid)).unwrap_or(0),
            ..Sample::default()
        };
        if let Some((server, status)) = &mut self.server {
            sample.server_rss_kb = status.rss_kb()?;
            sample.server_fds = fd_count(Some(server.pid)).unwrap_or(0);
        }
        let metrics = self.agent.metrics().await?;
        sample.downstream = super::metric_sum(&metrics, "mcpwatch_gateway_sessions_active", &[]);
        sample.upstream = super::metric_sum(&metrics, "mcp_client_sessions_active", &[]);
        Ok(sample)
    }

    /// Samples until every count is back to `baseline`, at most `limit` after `since`.
    async fn settle(
        &mut self,
        baseline: Sample,
        since: Instant,
        limit: Duration,
    ) -> Result<Settled> {
        let mut next_report = Duration::from_secs(5);
        let mut gauges_back = None;
        loop {
            let now = self.sample().await?;
            if gauges_back.is_none()
                && now.downstream <= baseline.downstream
                && now.upstream <= baseline.upstream
            {
                gauges_back = Some((since.elapsed(), now));
            }
            if now.back_to(baseline) || since.elapsed() >= limit {
                let all_back = now.back_to(baseline).then(|| since.elapsed());
                return Ok(Settled {
                    after: now,
                    gauges_back,
                    all_back,
                });
            }
            if since.elapsed() >= next_report {
                eprintln!(
                    "scale: {:.0} s after the end began: {}",
                    since.elapsed().as_secs_f64(),
                    now.json()
                );
                next_report += Duration::from_secs(5);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn stop(self) -> Result<(String, Option<String>)> {
        let agent = self.agent.stop().await?;
        let server = match self.server {
            Some((server, _)) => Some(server.stop().await?),
            None => None,
        };
        Ok((agent, server))
    }
}

/// How the counts came back after the sessions ended (times since the end began).
struct Settled {
    /// The last sample.
    after: Sample,
    /// When both gauges were back, and the sample then (fds may still linger).
    gauges_back: Option<(Duration, Sample)>,
    /// When every count was back.
    all_back: Option<Duration>,
}

/// What the opening pass reached.
struct Opened {
    sessions: Vec<String>,
    times: Vec<Duration>,
    failure: Option<Failure>,
    elapsed: Duration,
}

/// Opens `count` sessions (one `echo` each), `concurrency` at once; stops at the first failure.
async fn open_all(client: &McpClient, count: usize, concurrency: usize) -> Opened {
    let started = Instant::now();
    let mut opened = Opened {
        sessions: Vec::with_capacity(count),
        times: Vec::with_capacity(count),
        failure: None,
        elapsed: Duration::ZERO,
    };
    let opens = futures::stream::iter(0..count)
        .map(|_| async move {
            let started = Instant::now();
            let session = client.open().await?;
            client.echo(&session).await?;
            Ok::<_, Failure>((session, started.elapsed()))
        })
        .buffer_unordered(concurrency);
    tokio::pin!(opens);
    while let Some(open) = opens.next().await {
        match open {
            Ok((session, took)) => {
                opened.sessions.push(session);
                opened.times.push(took);
            }
            Err(failure) => {
                opened.failure = Some(failure);
                break;
            }
        }
        if opened.sessions.len().is_multiple_of(1000) {
            eprintln!(
                "scale: {} downstream sessions open ({:.1} s)",
                opened.sessions.len(),
                started.elapsed().as_secs_f64()
            );
        }
    }
    opened.elapsed = started.elapsed();
    opened
}

/// `DELETE`s every session, `concurrency` at once; returns the time and the failures by kind.
async fn delete_all(
    client: &McpClient,
    sessions: &[String],
    concurrency: usize,
) -> (Duration, BTreeMap<Failure, u64>) {
    let started = Instant::now();
    let mut failures = BTreeMap::new();
    let deletes = futures::stream::iter(sessions)
        .map(|session| client.delete(session))
        .buffer_unordered(concurrency);
    tokio::pin!(deletes);
    while let Some(done) = deletes.next().await {
        if let Err(failure) = done {
            *failures.entry(failure).or_default() += 1;
        }
    }
    (started.elapsed(), failures)
}

/// Starts the demo server (session scopes) and the agent in front of it.
async fn start(bin: &Path, args: &GatewaySessionsArgs, ttl: u64) -> Result<Processes> {
    let server = match args.scope {
        ScopeKind::Named => None,
        ScopeKind::Session => Some(HttpServer::start(bin).await?),
    };
    let upstream = match &server {
        Some(server) => Upstream::Http(server.url.clone()),
        None => Upstream::Builtin,
    };
    let limits = AgentLimits {
        max_sessions: args.count + 64,
        session_idle_ttl_secs: ttl,
    };
    let agent = Agent::start(bin, &upstream, &limits).await?;
    let agent_status = Status::open(Some(agent.pid))?;
    let server = match server {
        Some(server) => {
            let status = Status::open(Some(server.pid))?;
            Some((server, status))
        }
        None => None,
    };
    Ok(Processes {
        agent,
        agent_status,
        server,
    })
}

/// The `gateway-sessions` run.
pub(crate) async fn gateway_sessions(bin: &Path, args: &GatewaySessionsArgs) -> Result<Report> {
    if args.count == 0 || args.concurrency == 0 {
        bail!("--count and --concurrency must be at least 1");
    }
    let ttl = args.idle_ttl_secs.unwrap_or(match args.end {
        EndBy::Delete => 3600,
        EndBy::Idle => 60,
    });
    let mut processes = start(bin, args, ttl).await?;
    let url = format!("{}/mcp/demo", processes.agent.api);
    let scope = (args.scope == ScopeKind::Named).then(|| NAMED_SCOPE.to_owned());

    // Warm-up: one session, opened and deleted (the named scope's upstream
    // session stays, and is part of the baseline).
    {
        let client = McpClient::new(url.clone(), scope.clone())?;
        let session = client.open().await.map_err(anyhow::Error::msg)?;
        client.echo(&session).await.map_err(anyhow::Error::msg)?;
        client.delete(&session).await.map_err(anyhow::Error::msg)?;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let baseline = processes.sample().await?;
    eprintln!("scale: gateway baseline {}", baseline.json());

    let client = McpClient::new(url.clone(), scope.clone())?;
    let mut opened = open_all(&client, args.count, args.concurrency).await;
    drop(client);
    let reached = opened.sessions.len();
    if let Some(failure) = &opened.failure {
        eprintln!("scale: stopped at the first failure after {reached} sessions: {failure}");
    }
    eprintln!(
        "scale: {reached} sessions open in {:.1} s; idle for {} s",
        opened.elapsed.as_secs_f64(),
        args.idle_secs
    );
    tokio::time::sleep(Duration::from_secs(args.idle_secs)).await;
    let idle = processes.sample().await?;

    let ended = Instant::now();
    let (end_took, end_failures) = match args.end {
        EndBy::Delete => {
            let client = McpClient::new(url.clone(), scope.clone())?;
            delete_all(&client, &opened.sessions, args.concurrency).await
        }
        EndBy::Idle => (Duration::ZERO, BTreeMap::new()),
    };
    // Idle expiry takes up to the TTL plus a sweep interval (a quarter of it, at most 30 s).
    let limit = match args.end {
        EndBy::Delete => SETTLE_AFTER,
        EndBy::Idle => Duration::from_secs(ttl + 30) + SETTLE_AFTER,
    };
    let settled = processes.settle(baseline, ended, limit).await?;
    let exits = processes.stop().await?;

    let outcome = Outcome {
        reached,
        baseline,
        idle,
        after: settled.after,
        settled,
        end_took,
        end_failures,
        exits,
        ttl,
    };
    Ok(report(args, &mut opened, &outcome))
}

/// Everything measured after the opening.
struct Outcome {
    reached: usize,
    baseline: Sample,
    idle: Sample,
    after: Sample,
    settled: Settled,
    end_took: Duration,
    end_failures: BTreeMap<Failure, u64>,
    exits: (String, Option<String>),
    ttl: u64,
}

/// KiB per session of a growth in RSS.
fn per_session(after: u64, before: u64, sessions: usize) -> f64 {
    if sessions == 0 {
        return 0.0;
    }
    round1(after.saturating_sub(before) as f64 / sessions as f64)
}

/// The checks of a run: every session opened, the gauges counted them, and all came back.
fn checks(args: &GatewaySessionsArgs, outcome: &Outcome) -> Vec<String> {
    let Outcome {
        reached,
        baseline,
        idle,
        after,
        ..
    } = outcome;
    let reached = *reached as i64;
    let mut failed = Vec::new();
    if reached != args.count as i64 {
        failed.push(format!("opened {reached} of {}", args.count));
    }
    if idle.downstream != baseline.downstream + reached {
        failed.push(format!("downstream gauge {} while idle", idle.downstream));
    }
    let upstream_idle = match args.scope {
        ScopeKind::Named => baseline.upstream,
        ScopeKind::Session => baseline.upstream + reached,
    };
    if idle.upstream != upstream_idle {
        failed.push(format!(
            "upstream gauge {} while idle, expected {upstream_idle}",
            idle.upstream
        ));
    }
    if !outcome.end_failures.is_empty() {
        failed.push(format!("DELETE failures {:?}", outcome.end_failures));
    }
    if !after.back_to(*baseline) {
        failed.push(format!(
            "not back to baseline: {} vs {}",
            after.json(),
            baseline.json()
        ));
    }
    failed
}

/// The figures derived from a run.
struct Figures {
    open_ms: (f64, f64, f64),
    agent_kb: f64,
    server_kb: f64,
    failed: Vec<String>,
}

/// The run's table and JSON line.
fn report(args: &GatewaySessionsArgs, opened: &mut Opened, outcome: &Outcome) -> Report {
    let (base, idle) = (&outcome.baseline, &outcome.idle);
    let figures = Figures {
        open_ms: percentiles(&mut opened.times),
        agent_kb: per_session(idle.agent_rss_kb, base.agent_rss_kb, outcome.reached),
        server_kb: per_session(idle.server_rss_kb, base.server_rss_kb, outcome.reached),
        failed: checks(args, outcome),
    };
    let passed = figures.failed.is_empty();
    Report {
        title: format!(
            "gateway-sessions: {} downstream sessions, {} scope, ended by {}",
            outcome.reached,
            args.scope.as_str(),
            args.end.as_str()
        ),
        rows: table(args, opened, outcome, &figures),
        json: json_line(args, opened, outcome, &figures),
        passed,
    }
}

/// `base -> idle -> after` of one reading.
fn trio<T: std::fmt::Display>(outcome: &Outcome, read: impl Fn(&Sample) -> T) -> String {
    let Outcome {
        baseline,
        idle,
        after,
        ..
    } = outcome;
    format!("{} -> {} -> {}", read(baseline), read(idle), read(after))
}

/// The table's rows.
fn table(
    args: &GatewaySessionsArgs,
    opened: &Opened,
    outcome: &Outcome,
    figures: &Figures,
) -> Vec<(String, String)> {
    let n = outcome.reached;
    let (p50, p99, max) = figures.open_ms;
    let fds_per = round1(
        outcome
            .idle
            .agent_fds
            .saturating_sub(outcome.baseline.agent_fds) as f64
            / n.max(1) as f64,
    );
    let secs = opened.elapsed.as_secs_f64().max(1e-9);
    let mut rows = vec![
        row(
            "scope / upstream",
            match args.scope {
                ScopeKind::Named => "named (one scope for all) / builtin demo",
                ScopeKind::Session => "session (one per downstream session) / demo-server --http",
            },
        ),
        row("sessions asked / reached", format!("{} / {n}", args.count)),
        row(
            "stopped by",
            opened.failure.as_deref().unwrap_or("nothing (all opened)"),
        ),
        row(
            "open: total",
            format!(
                "{secs:.2} s ({:.0} sessions/s, concurrency {})",
                n as f64 / secs,
                args.concurrency
            ),
        ),
        row(
            "open (initialize, initialized, echo) p50 / p99 / max",
            format!("{p50:.2} / {p99:.2} / {max:.2} ms"),
        ),
        row(
            "downstream gauge base -> idle -> after",
            trio(outcome, |s| s.downstream),
        ),
        row(
            "upstream gauge base -> idle -> after",
            trio(outcome, |s| s.upstream),
        ),
        row(
            "agent RSS KiB base -> idle -> after",
            trio(outcome, |s| s.agent_rss_kb),
        ),
        row("agent KiB per idle session", figures.agent_kb),
        row(
            "agent fds base -> idle -> after",
            format!("{} ({fds_per} per session)", trio(outcome, |s| s.agent_fds)),
        ),
    ];
    if args.scope == ScopeKind::Session {
        rows.push(row(
            "server RSS KiB base -> idle -> after",
            trio(outcome, |s| s.server_rss_kb),
        ));
        rows.push(row("server KiB per idle session", figures.server_kb));
        rows.push(row(
            "agent + server KiB per idle session",
            round1(figures.agent_kb + figures.server_kb),
        ));
        rows.push(row(
            "server fds base -> idle -> after",
            trio(outcome, |s| s.server_fds),
        ));
    }
    rows.push(row(
        "end",
        match args.end {
            EndBy::Delete => format!(
                "DELETE x {n} in {:.2} s, failures {:?}",
                outcome.end_took.as_secs_f64(),
                outcome.end_failures
            ),
            EndBy::Idle => format!("idle expiry (session_idle_ttl {} s)", outcome.ttl),
        },
    ));
    let gauges_back = match outcome.settled.gauges_back {
        Some((at, then)) => format!(
            "{:.1} s (agent / server fds then: {} / {})",
            at.as_secs_f64(),
            then.agent_fds,
            then.server_fds
        ),
        None => "NOT within the limit".to_owned(),
    };
    rows.push(row("gauges back, after the end began", gauges_back));
    let all_back = match outcome.settled.all_back {
        Some(at) => format!("{:.1} s", at.as_secs_f64()),
        None => "NOT within the limit".to_owned(),
    };
    rows.push(row(
        "everything back (fds too), after the end began",
        all_back,
    ));
    rows.push(row(
        "agent / server exit",
        format!(
            "{} / {}",
            outcome.exits.0,
            outcome.exits.1.as_deref().unwrap_or("n/a")
        ),
    ));
    let checks = if figures.failed.is_empty() {
        "PASS".to_owned()
    } else {
        format!("FAIL: {}", figures.failed.join("; "))
    };
    rows.push(row("checks", checks));
    rows
}

/// The JSON line.
fn json_line(
    args: &GatewaySessionsArgs,
    opened: &Opened,
    outcome: &Outcome,
    figures: &Figures,
) -> Value {
    let (p50, p99, max) = figures.open_ms;
    json!({
        "run": "gateway-sessions",
        "scope": args.scope.as_str(),
        "end": args.end.as_str(),
        "asked": args.count,
        "reached": outcome.reached,
        "stopped_by": opened.failure,
        "concurrency": args.concurrency,
        "open_total_s": round1(opened.elapsed.as_secs_f64()),
        "open_ms": {"p50": p50, "p99": p99, "max": max},
        "session_idle_ttl_s": outcome.ttl,
        "baseline": outcome.baseline.json(),
        "idle": outcome.idle.json(),
        "after": outcome.after.json(),
        "agent_kb_per_session": figures.agent_kb,
        "server_kb_per_session": figures.server_kb,
        "delete_s": round1(outcome.end_took.as_secs_f64()),
        "end_failures": outcome.end_failures,
        "gauges_back_s": outcome.settled.gauges_back.map(|(at, _)| round1(at.as_secs_f64())),
        "fds_when_gauges_back": outcome.settled.gauges_back.map(|(_, then)| json!({"agent": then.agent_fds, "server": then.server_fds})),
        "all_back_s": outcome.settled.all_back.map(|at| round1(at.as_secs_f64())),
        "failed": figures.failed,
        "passed": figures.failed.is_empty(),
    })
}
