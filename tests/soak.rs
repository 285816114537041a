//! Soak (issue 7, part 3): the real agent under session churn (scopes opened and
//! closed, evictions at per-server and global caps, idle timeouts) plus random
//! `kill -9` of its stdio demo servers, for `MCPWATCH_SOAK_SECS` (default 60 s)
//! after a 10 s warm-up. Afterwards the agent's open fds, child processes and
//! sessions are exactly at their baseline and its RSS is within 20% of its value
//! after the warm-up. The only errors allowed are the injected ones
//! (`transport_closed` on the stdio server whose process was killed).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use support::*;

const WARM_UP: Duration = Duration::from_secs(10);
const WORKERS: usize = 8;
const SCOPES: usize = 40;
/// Upper bound on calls per worker and phase (the loops also end on time).
const MAX_ITERATIONS: usize = 1_000_000;

fn soak_time() -> Duration {
    let secs = std::env::var("MCPWATCH_SOAK_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    Duration::from_secs(secs)
}

#[derive(Default)]
struct Tally {
    ok: AtomicUsize,
    injected: AtomicUsize,
    kills: AtomicUsize,
    scope_closes: AtomicUsize,
}

fn config() -> String {
    format!(
        "[pool]\nmax_sessions = 20\nqueue_timeout = \"10s\"\n\
         [servers.demo]\ntransport = \"builtin\"\nmax_sessions = 14\nidle_ttl = \"1s\"\n\
         [servers.child]\ntransport = \"stdio\"\ncommand = \"{}\"\nargs = [\"demo-server\", \"--stdio\"]\n\
         max_sessions = 6\nbreaker = {{ failure_threshold = 100000, cool_down = \"1s\" }}\n",
        mcpwatch_bin()
    )
}

/// A client that keeps no idle connection, so the agent's fds settle when it is done.
fn fresh_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Runs the churn for `length`: workers calling in random scopes on both servers,
/// sometimes closing a scope, and a killer SIGKILLing a random stdio server.
async fn churn(agent: &Agent, length: Duration, tally: &Arc<Tally>) {
    let until = Instant::now() + length;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for worker in 0..WORKERS {
        let (client, api, tally) = (client.clone(), agent.api.clone(), tally.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..MAX_ITERATIONS {
                if Instant::now() >= until {
                    return;
                }
                // Each worker owns its scopes, so a scope it closes has no call of another
                // worker in flight (close_scope fails those, by design).
                let scope = format!(
                    "soak-{}",
                    worker + WORKERS * fastrand::usize(..SCOPES / WORKERS)
                );
                if fastrand::u8(..100) < 5 {
                    let response = client
                        .delete(format!("{api}/v1/scopes/{scope}"))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(response.status(), 200);
                    tally.scope_closes.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let server = if fastrand::bool() { "child" } else { "demo" };
                let payload = format!("{worker}/{i}/{}", fastrand::u64(..));
                let response = client
                    .post(format!("{api}/v1/tools/call"))
                    .json(&json!({"server": server, "tool": "echo", "scope": scope,
                        "arguments": {"message": payload}}))
                    .send()
                    .await
                    .unwrap();
                let status = response.status().as_u16();
                let body: serde_json::Value = response.json().await.unwrap();
                match status {
                    200 => {
                        assert_eq!(answer_text(&body), payload, "a crossed result");
                        tally.ok.fetch_add(1, Ordering::Relaxed);
                    }
                    502 if server == "child" && body["error"]["type"] == "transport_closed" => {
                        tally.injected.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => panic!("{server}/{scope}: unexpected {status}: {body}"),
                }
            }
        }));
    }
    let killer = {
        let (api, stop, tally) = (agent.api.clone(), stop.clone(), tally.clone());
        let agent_pid = agent.child.id();
        let client = fresh_client();
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) && Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(fastrand::u64(300..900))).await;
                let Ok(response) = client.get(format!("{api}/v1/sessions")).send().await else {
                    continue;
                };
                let sessions: serde_json::Value = response.json().await.unwrap_or_default();
                let pids: Vec<u32> = sessions["sessions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|s| s["pid"].as_u64())
                    .map(|p| p as u32)
                    .collect();
                if pids.is_empty() {
                    continue;
                }
                let pid = pids[fastrand::usize(..pids.len())];
                // Only a live child of the agent: never a recycled pid.
                if children_of(agent_pid).contains(&pid) {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid as i32),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                    tally.kills.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    for task in tasks {
        task.await.unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    killer.await.unwrap();
}

/// Closes every scope and waits until the agent has no session and no child.
async fn quiesce(agent: &Agent) {
    let client = fresh_client();
    for scope in 0..SCOPES {
        let response = client
            .delete(format!("{}/v1/scopes/soak-{scope}", agent.api))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    let pid = agent.child.id();
    eventually(Duration::from_secs(10), "no child process left", || {
        children_of(pid).is_empty()
    })
    .await;
    eventually_async(Duration::from_secs(10), "no session left", || async {
        let sessions: serde_json::Value = client
            .get(format!("{}/v1/sessions", agent.api))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        sessions["sessions"].as_array().is_some_and(Vec::is_empty)
    })
    .await;
    let metrics = client
        .get(format!("{}/metrics", agent.admin))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in metrics
        .lines()
        .filter(|l| l.starts_with("mcp_client_sessions_active{"))
    {
        assert!(line.ends_with(" 0"), "the gauge is back at 0: {line}");
    }
}

fn closed_total(metrics: &str, reason: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| {
            l.starts_with("mcp_client_sessions_closed_total{")
                && l.contains(&format!("reason=\"{reason}\""))
        })
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .fold(0.0, |total, n| total + n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_and_kills_leave_fds_children_sessions_at_baseline_and_rss_flat() {
    let agent = Agent::start(&config(), &[]).await;
    let pid = agent.child.id();
    let tally = Arc::new(Tally::default());

    churn(&agent, WARM_UP, &tally).await;
    quiesce(&agent).await;
    // Settle: the idle connections of the churn clients are gone once the fd count is stable.
    let mut fds = fds_of(pid);
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = fds_of(pid);
        if now == fds {
            break;
        }
        fds = now;
    }
    let baseline_fds = fds;
    let warm_rss = rss_kib(pid);
    eprintln!(
        "after warm-up: {baseline_fds} fds, RSS {warm_rss} KiB, {} calls",
        tally.ok.load(Ordering::Relaxed)
    );

    let length = soak_time();
    let started = Instant::now();
    churn(&agent, length, &tally).await;
    let churned = started.elapsed();
    let peak_fds = fds_of(pid);
    quiesce(&agent).await;

    eventually(
        Duration::from_secs(10),
        &format!("the agent's fds back to {baseline_fds}"),
        || fds_of(pid) == baseline_fds,
    )
    .await;
    assert!(children_of(pid).is_empty());
    let rss = rss_kib(pid);
    let growth = rss as f64 / warm_rss as f64 - 1.0;
    let (_, metrics) = agent.admin("/metrics").await;
    let ok = tally.ok.load(Ordering::Relaxed);
    let injected = tally.injected.load(Ordering::Relaxed);
    let kills = tally.kills.load(Ordering::Relaxed);
    eprintln!(
        "soak {churned:?}: {ok} calls ok ({:.0}/s), {injected} injected failures from {kills} kills, \
         {} scope closes; closed: evicted {}, idle_timeout {}, server_exit {}, scope_closed {}; \
         fds {baseline_fds} -> {peak_fds} (peak) -> {}; RSS {warm_rss} KiB -> {rss} KiB ({:+.1}%)",
        ok as f64 / churned.as_secs_f64(),
        tally.scope_closes.load(Ordering::Relaxed),
        closed_total(&metrics, "evicted"),
        closed_total(&metrics, "idle_timeout"),
        closed_total(&metrics, "server_exit"),
        closed_total(&metrics, "scope_closed"),
        fds_of(pid),
        growth * 100.0
    );
    assert!(
        growth.abs() <= 0.20,
        "RSS {rss} KiB is not within 20% of {warm_rss} KiB after warm-up"
    );
    assert!(
        ok > 1000,
        "the soak made too few calls to mean anything: {ok}"
    );
    assert!(kills > 0 && closed_total(&metrics, "server_exit") > 0.0);
    assert!(
        closed_total(&metrics, "evicted") > 0.0,
        "no eviction happened"
    );
    assert!(closed_total(&metrics, "scope_closed") > 0.0);

    let mut agent = agent;
    agent.terminate();
    assert_eq!(agent.wait_exit(Duration::from_secs(20)).await, Some(0));
}
