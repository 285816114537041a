//! `mcpwatch serve` in a child process, for the gateway runs: its config
//! written to a temporary file, its API and admin addresses read from its
//! banner, its `/metrics` scraped, its RSS and fds read from `/proc`.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};

use super::metric_sum;

/// The demo server the agent fronts in a gateway run.
#[derive(Debug, Clone)]
pub(crate) enum Upstream {
    /// `transport = "builtin"`: in the agent's process.
    Builtin,
    /// `transport = "http"`: a `mcpwatch demo-server --http` at this URL.
    Http(String),
}

/// The limits a gateway run sets (every cap raised to fit the run).
#[derive(Debug, Clone)]
pub(crate) struct AgentLimits {
    /// `pool.max_sessions`, `[servers.demo] max_sessions` and `gateway.max_sessions`.
    pub(crate) max_sessions: usize,
    /// `gateway.session_idle_ttl` in seconds.
    pub(crate) session_idle_ttl_secs: u64,
}

/// The agent's config file: the demo server behind the gateway, every cap
/// raised, upstream sessions kept (pool idle TTL an hour), no retries (a
/// failure is reported with its own cause).
fn config_toml(upstream: &Upstream, limits: &AgentLimits) -> String {
    let max = limits.max_sessions;
    let transport = match upstream {
        Upstream::Builtin => "transport = \"builtin\"".to_owned(),
        Upstream::Http(url) => format!("transport = \"http\"\nurl = \"{url}\""),
    };
    format!(
        "[agent]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\
         max_in_flight = 4096\nqueue_timeout = \"30s\"\n\
         [log]\nlevel = \"warn\"\n\
         [pool]\nmax_sessions = {max}\nidle_ttl = \"1h\"\nqueue_timeout = \"30s\"\n\
         [gateway]\nmax_sessions = {max}\nsession_idle_ttl = \"{ttl}s\"\n\
         [servers.demo]\n{transport}\nmax_sessions = {max}\n\
         connect_timeout = \"30s\"\ncall_timeout = \"30s\"\n\
         [servers.demo.retry]\nmax_attempts = 1\n",
        ttl = limits.session_idle_ttl_secs,
    )
}

/// A running `mcpwatch serve`.
pub(crate) struct Agent {
    child: Child,
    /// Its process id.
    pub(crate) pid: u32,
    /// `http://127.0.0.1:PORT`: the API and gateway listener.
    pub(crate) api: String,
    /// `http://127.0.0.1:PORT`: the admin listener (`/metrics`).
    admin: String,
    /// For `/metrics` (one connection, dropped after each scrape).
    http: reqwest::Client,
    /// Kept open: the agent's stdout (a closed pipe would hurt a later write).
    _stdout: tokio::io::Lines<BufReader<ChildStdout>>,
    /// Holds the config file until the agent stops.
    _dir: tempfile::TempDir,
}

impl Agent {
    /// Writes the config, starts the agent and waits for its banner.
    pub(crate) async fn start(
        bin: &Path,
        upstream: &Upstream,
        limits: &AgentLimits,
    ) -> Result<Agent> {
        let dir = tempfile::tempdir().context("a temporary directory for the agent's config")?;
        let config = dir.path().join("agent.toml");
        std::fs::write(&config, config_toml(upstream, limits))
            .with_context(|| format!("writing {}", config.display()))?;
        let mut command = Command::new(bin);
        command
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        if std::env::var_os("RUST_LOG").is_none() {
            command.env("RUST_LOG", "warn");
        }
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {} serve", bin.display()))?;
        let pid = child.id().context("the agent exited at once")?;
        let stdout = child.stdout.take().context("no stdout pipe")?;
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .context("the agent did not print its banner within 30 s")??
            .context("the agent exited before listening")?;
        let (api, admin) = parse_banner(&line)
            .with_context(|| format!("unexpected first line from the agent: {line}"))?;
        eprintln!("scale: agent pid {pid}: API {api}, admin {admin}");
        Ok(Agent {
            child,
            pid,
            api,
            admin,
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()?,
            _stdout: lines,
            _dir: dir,
        })
    }

    /// The agent's Prometheus text.
    pub(crate) async fn metrics(&self) -> Result<String> {
        let url = format!("{}/metrics", self.admin);
        let answer = self.http.get(&url).send().await?.error_for_status()?;
        Ok(answer.text().await?)
    }

    /// The sum of the samples of `name` (every label).
    pub(crate) async fn gauge(&self, name: &str) -> Result<i64> {
        Ok(metric_sum(&self.metrics().await?, name, &[]))
    }

    /// SIGTERM, then SIGKILL if it has not exited within 30 s; returns how it exited.
    pub(crate) async fn stop(mut self) -> Result<String> {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.pid)?);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        match tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await {
            Ok(status) => Ok(format!("{}", status?)),
            Err(_) => {
                self.child.kill().await?;
                Ok("killed after 30 s (SIGTERM ignored)".to_owned())
            }
        }
    }
}

/// `(api, admin)` from "mcpwatch agent: API on http://A  admin on http://B".
fn parse_banner(line: &str) -> Option<(String, String)> {
    let rest = line.split("API on ").nth(1)?;
    let (api, rest) = rest.split_once(char::is_whitespace)?;
    let admin = rest.split("admin on ").nth(1)?.split_whitespace().next()?;
    let local = |url: &str| url.starts_with("http://127.0.0.1:");
    if !local(api) || !local(admin) {
        return None;
    }
    Some((api.to_owned(), admin.to_owned()))
}
