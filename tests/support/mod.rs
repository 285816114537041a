#![allow(unreachable_pub)] // helpers shared by the integration tests, not an API
//! Shared test helpers: real MCP servers (the demo as a child process or over
//! HTTP, server-everything from npm, the misbehaving Python server), process and
//! fd inspection, and metric reads. Every process started here is killed on drop.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod fake_mcp;
pub mod mcp_http;
pub mod proxy;
pub mod receivers;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mcpwatch::Config;
use mcpwatch::config::ServerConfig;
use tokio_util::sync::CancellationToken;

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The mcpwatch binary built for this test run.
pub fn mcpwatch_bin() -> &'static str {
    env!("CARGO_BIN_EXE_mcpwatch")
}

fn required(path: PathBuf) -> PathBuf {
    assert!(
        path.exists(),
        "{} is missing: run scripts/install-test-deps.sh first",
        path.display()
    );
    path
}

/// server-everything's entry point (installed by scripts/install-test-deps.sh).
pub fn everything_js() -> PathBuf {
    required(
        root().join(
            ".test-deps/node/node_modules/@modelcontextprotocol/server-everything/dist/index.js",
        ),
    )
}

/// The project-local Python with `mcp` installed.
pub fn python() -> PathBuf {
    required(root().join(".test-deps/venv/bin/python"))
}

/// The misbehaving Python MCP server.
pub fn bad_server_py() -> PathBuf {
    required(root().join("tests/servers/bad_server.py"))
}

/// A config with exactly these servers and otherwise defaults.
pub fn config(servers: impl IntoIterator<Item = (&'static str, ServerConfig)>) -> Config {
    Config {
        servers: servers
            .into_iter()
            .map(|(name, spec)| (name.to_owned(), spec))
            .collect::<BTreeMap<_, _>>(),
        ..Config::default()
    }
}

/// The demo server as a child process over stdio.
pub fn demo_stdio() -> ServerConfig {
    ServerConfig::stdio(mcpwatch_bin(), ["demo-server", "--stdio"])
}

/// server-everything over stdio (node, no npx wrapper).
pub fn everything_stdio() -> ServerConfig {
    ServerConfig::stdio(
        "node",
        [everything_js().display().to_string(), "stdio".to_owned()],
    )
}

/// The Python server over stdio, with optional `BAD_*` environment.
pub fn python_stdio(env: &[(&str, &str)]) -> ServerConfig {
    let mut spec = ServerConfig::stdio(
        python().display().to_string(),
        [bad_server_py().display().to_string(), "stdio".to_owned()],
    );
    for (name, value) in env {
        spec.env
            .insert((*name).to_owned(), mcpwatch::config::Secret::new(*value));
    }
    spec.connect_timeout = Duration::from_secs(20);
    spec
}

/// A free TCP port on 127.0.0.1 (bind, read, release).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The demo server over streamable HTTP, in this process. Stops when dropped.
pub struct HttpDemo {
    pub url: String,
    pub addr: SocketAddr,
    stop: CancellationToken,
}

impl HttpDemo {
    pub async fn start() -> HttpDemo {
        Self::start_at("127.0.0.1:0".parse().unwrap()).await
    }

    pub async fn start_at(addr: SocketAddr) -> HttpDemo {
        let stop = CancellationToken::new();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let token = stop.clone();
        tokio::spawn(async move {
            let _ = mcpwatch::demo::serve_http(addr, token, move |bound| {
                let _ = tx.send(bound);
            })
            .await;
        });
        let addr = rx.await.expect("demo HTTP server failed to bind");
        HttpDemo {
            url: format!("http://{addr}/mcp"),
            addr,
            stop,
        }
    }

    pub fn stop(&self) {
        self.stop.cancel();
    }
}

impl Drop for HttpDemo {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A server process started by a test; killed (with its process group) on drop.
pub struct ServerProcess {
    pub child: Child,
    pub port: u16,
    pub log: Option<PathBuf>,
}

impl ServerProcess {
    /// Kills the process group now and waits for the leader.
    pub fn kill(&mut self) {
        let pid = self.child.id() as i32;
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = self.child.wait();
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The BAD_LOG lines written so far.
    pub fn log_lines(&self) -> Vec<String> {
        self.log
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .map(|text| text.lines().map(str::to_owned).collect())
            .unwrap_or_default()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

fn spawn_group(mut command: Command) -> Child {
    use std::os::unix::process::CommandExt;
    command
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command.spawn().expect("cannot start test server")
}

/// server-everything over streamable HTTP (`/mcp`) or legacy SSE (`/sse`) on `port`.
pub async fn everything_http(mode: &str, port: u16) -> ServerProcess {
    let mut command = Command::new("node");
    command
        .arg(everything_js())
        .arg(mode)
        .env("PORT", port.to_string());
    let process = ServerProcess {
        child: spawn_group(command),
        port,
        log: None,
    };
    wait_port(port, Duration::from_secs(30)).await;
    process
}

/// The Python server in `http` or `sse` mode on `port`, logging events to a temp file.
pub async fn python_http(mode: &str, port: u16, log: &Path, extra: &[&str]) -> ServerProcess {
    python_http_env(mode, port, log, extra, &[]).await
}

/// [`python_http`] with extra `BAD_*` environment.
pub async fn python_http_env(
    mode: &str,
    port: u16,
    log: &Path,
    extra: &[&str],
    env: &[(&str, &str)],
) -> ServerProcess {
    let mut command = Command::new(python());
    command
        .arg(bad_server_py())
        .arg(mode)
        .arg("--port")
        .arg(port.to_string())
        .args(extra)
        .env("BAD_LOG", log)
        .envs(env.iter().copied());
    let process = ServerProcess {
        child: spawn_group(command),
        port,
        log: Some(log.to_owned()),
    };
    wait_port(port, Duration::from_secs(30)).await;
    process
}

/// Waits until something accepts connections on 127.0.0.1:`port`.
pub async fn wait_port(port: u16, within: Duration) {
    let started = Instant::now();
    while started.elapsed() < within {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("nothing listens on 127.0.0.1:{port} after {within:?}");
}

/// Polls `check` every 20 ms until it holds or `within` passes.
pub async fn eventually(within: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    loop {
        if check() {
            return;
        }
        assert!(
            started.elapsed() < within,
            "not true after {within:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// True if `pid` exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next());
            !matches!(state, Some("Z" | "X"))
        }
        Err(_) => false,
    }
}

/// Live (non-zombie) processes in process group `pgid`.
pub fn group_members(pgid: u32) -> Vec<u32> {
    let mut members = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // fields[0] = state, [1] = ppid, [2] = pgrp
        if fields.len() > 2 && fields[2] == pgid.to_string() && !matches!(fields[0], "Z" | "X") {
            members.push(pid);
        }
    }
    members
}

/// Live child processes of this test process.
pub fn my_children() -> Vec<u32> {
    let me = std::process::id().to_string();
    let mut children = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.len() > 1 && fields[1] == me && !matches!(fields[0], "Z" | "X") {
            children.push(pid);
        }
    }
    children
}

/// Open file descriptors of this process.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Open file descriptors of process `pid` (0 when it is gone).
pub fn fds_of(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Live (non-zombie) child processes of `parent`.
pub fn children_of(parent: u32) -> Vec<u32> {
    let parent = parent.to_string();
    let mut children = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.len() > 1 && fields[1] == parent && !matches!(fields[0], "Z" | "X") {
            children.push(pid);
        }
    }
    children
}

/// Resident set size of process `pid` in KiB (`VmRSS` of /proc/PID/status; 0 when gone).
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// The value of one sample of a metric (counter, gauge, or histogram count),
/// matched by the given labels; 0 when absent.
pub fn metric(runtime: &mcpwatch::Runtime, name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut total = 0.0;
    for family in runtime.metrics().registry().gather() {
        if family.name() != name {
            continue;
        }
        for sample in family.get_metric() {
            let matches = labels.iter().all(|(k, v)| {
                sample
                    .label
                    .iter()
                    .any(|l| l.name() == *k && l.value() == *v)
            });
            if !matches {
                continue;
            }
            total += if let Some(counter) = sample.counter.as_ref() {
                counter.value()
            } else if let Some(gauge) = sample.gauge.as_ref() {
                gauge.value()
            } else if let Some(histogram) = sample.histogram.as_ref() {
                histogram.sample_count() as f64
            } else {
                0.0
            };
        }
    }
    total
}

/// The text of the first content block of a tool result.
pub fn text(result: &rmcp::model::CallToolResult) -> String {
    result
        .content
        .first()
        .and_then(|c| c.as_text())
        .map(|t| t.text.clone())
        .unwrap_or_default()
}

/// Collects every log line written through `tracing` in this process (nextest
/// runs each test in its own process, so a global subscriber is the test's own).
pub struct LogCapture {
    buffer: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl LogCapture {
    pub fn start() -> LogCapture {
        let buffer = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter("mcpwatch=debug")
            .with_ansi(false)
            .with_writer(move || CaptureWriter(writer.clone()))
            .finish();
        tracing::subscriber::set_global_default(subscriber)
            .expect("one log capture per test process");
        LogCapture { buffer }
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.buffer.lock().unwrap()).into_owned()
    }
}

struct CaptureWriter(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for CaptureWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Polls the async `check` every 20 ms until it holds or `within` passes.
pub async fn eventually_async<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    loop {
        if check().await {
            return;
        }
        assert!(
            started.elapsed() < within,
            "not true after {within:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends SIGKILL to one process (not its group).
pub fn kill9(pid: u32) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill -9");
}

/// Lines of the file at `path` equal to `line` (0 when the file does not exist).
pub fn count_lines(path: &Path, line: &str) -> usize {
    std::fs::read_to_string(path)
        .map(|text| text.lines().filter(|l| *l == line).count())
        .unwrap_or(0)
}

/// The pid of the stdio session of `(server, scope)`, if it is live.
pub fn session_pid(runtime: &mcpwatch::Runtime, server: &str, scope: &str) -> Option<u32> {
    runtime
        .sessions()
        .into_iter()
        .find(|s| s.server == server && s.scope == scope)
        .and_then(|s| s.pid)
}

/// The median of some durations (the upper one for an even count).
pub fn median(mut samples: Vec<Duration>) -> Duration {
    assert!(!samples.is_empty(), "median of nothing");
    samples.sort();
    samples[samples.len() / 2]
}

/// The real `mcpwatch serve` binary on free ports, with a config file. Killed on drop.
pub struct Agent {
    pub child: Child,
    pub api: String,
    pub admin: String,
    pub http: reqwest::Client,
    _config: tempfile::NamedTempFile,
    pub stdout_rest: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Agent {
    /// Starts the agent with `config` (TOML; `[agent]` listen addresses are added) and `env`.
    pub async fn start(config: &str, env: &[(&str, &str)]) -> Agent {
        Self::start_inner(config, env, None).await
    }

    /// Like [`Agent::start`], collecting every stderr line (the agent's log) into `stderr`.
    pub async fn start_capturing(
        config: &str,
        env: &[(&str, &str)],
        stderr: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    ) -> Agent {
        Self::start_inner(config, env, Some(stderr)).await
    }

    async fn start_inner(
        config: &str,
        env: &[(&str, &str)],
        capture: Option<std::sync::Arc<std::sync::Mutex<Vec<String>>>>,
    ) -> Agent {
        use std::io::{BufRead, Write};
        let mut file = tempfile::NamedTempFile::new().unwrap();
        let config = if config.contains("[agent]") {
            config.replacen(
                "[agent]",
                "[agent]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"",
                1,
            )
        } else {
            format!("[agent]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n{config}")
        };
        file.write_all(config.as_bytes()).unwrap();
        let mut command = Command::new(mcpwatch_bin());
        command
            .arg("serve")
            .arg("--config")
            .arg(file.path())
            .stdout(Stdio::piped())
            .stderr(if capture.is_some() {
                Stdio::piped()
            } else {
                Stdio::inherit()
            });
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().unwrap();
        if let (Some(lines), Some(stderr)) = (capture, child.stderr.take()) {
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(stderr)
                    .lines()
                    .map_while(Result::ok)
                {
                    lines.lock().unwrap().push(line);
                }
            });
        }
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let rest = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let keep = rest.clone();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if let Some(sender) = tx.take_if(|_| line.starts_with("mcpwatch agent: API on ")) {
                    let _ = sender.send(line.clone());
                }
                keep.lock().unwrap().push(line);
            }
        });
        let line = tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(30)))
            .await
            .unwrap()
            .expect("the agent did not print its addresses");
        let mut words = line.split_whitespace().filter(|w| w.starts_with("http://"));
        let api = words.next().unwrap().to_owned();
        let admin = words.next().unwrap().to_owned();
        Agent {
            child,
            api,
            admin,
            http: reqwest::Client::new(),
            _config: file,
            stdout_rest: rest,
        }
    }

    /// POSTs JSON to an API path; returns status and JSON body.
    pub async fn post(
        &self,
        path: &str,
        body: serde_json::Value,
        headers: &[(&str, &str)],
    ) -> (u16, serde_json::Value) {
        let mut request = self.http.post(format!("{}{path}", self.api)).json(&body);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (
            status,
            response.json().await.unwrap_or(serde_json::Value::Null),
        )
    }

    /// GETs an API path.
    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> (u16, serde_json::Value) {
        let mut request = self.http.get(format!("{}{path}", self.api));
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (
            status,
            response.json().await.unwrap_or(serde_json::Value::Null),
        )
    }

    /// GETs an admin path; returns status and text.
    pub async fn admin(&self, path: &str) -> (u16, String) {
        let response = self
            .http
            .get(format!("{}{path}", self.admin))
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    /// The value of the metric `name{labels}` on the admin listener's `/metrics`
    /// (the sum of the samples whose labels include `labels`; 0 when absent).
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        prometheus_sample(&self.admin("/metrics").await.1, name, labels)
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
    }

    /// Waits for the process to exit (bounded); returns its exit code.
    pub async fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let started = Instant::now();
        while started.elapsed() < within {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of the sample `name{labels}` in a Prometheus text page: the sum
/// of the samples whose labels include `labels` (0 when absent).
pub fn prometheus_sample(page: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    page.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The text of `result.content[0].text` in an agent call answer.
pub fn answer_text(body: &serde_json::Value) -> String {
    body["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}
