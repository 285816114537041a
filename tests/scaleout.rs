//! Scale-out for real (issue 16): three `mcpwatch serve` replicas on loopback behind
//! HAProxy running the shipped `deploy/haproxy/haproxy.cfg`, a Prometheus scraping the
//! replicas (job "mcpwatch") and HAProxy's own exporter (job "haproxy") with the shipped
//! rules, and an Alertmanager running the shipped `alerts/alertmanager.example.yml` (with
//! test-sized timings) that delivers to a webhook receiver written here.
//!
//! `a_fleet_behind_haproxy_...` drives the scenarios that share one fleet, in order:
//! affinity, the dashboards across replicas, a replica SIGKILLed under load (with the
//! alert it raises, delivered and then resolved), a rolling restart under load, and
//! HAProxy's own errors once every replica is gone. Alertmanager's inhibition and the
//! shipped files' static checks are tests of their own.
//!
//! Needs Debian's `haproxy`, `prometheus` and `prometheus-alertmanager`, and the venv's
//! Python with PyYAML (scripts/install-test-deps.sh installs all of them).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use serde_json::{Value, json};
use support::mcp_http::McpHttp;
use support::{ServerProcess, free_port, mcpwatch_bin, prometheus_sample, root, wait_port};
use tokio_util::sync::CancellationToken;

const HAPROXY: &str = "/usr/sbin/haproxy";
const PROMETHEUS: &str = "/usr/bin/prometheus";
const ALERTMANAGER: &str = "/usr/bin/prometheus-alertmanager";
const AMTOOL: &str = "/usr/bin/amtool";
const HAPROXY_CFG: &str = "deploy/haproxy/haproxy.cfg";
const ALERTMANAGER_EXAMPLE: &str = "alerts/alertmanager.example.yml";
const RULES: &str = "alerts/mcpwatch.rules.yml";
/// The same HMAC key on every replica: any replica accepts any downstream session id.
const SESSION_KEY: &str = "scaleout-test-session-key-0123456789";
/// Scopes of the affinity and kill scenarios, and the calls each gets in the first.
const SCOPES: usize = 200;
const CALLS_PER_SCOPE: u64 = 10;
/// The test-sized `for` of MCPWatchDown (the shipped rule says 5m).
const ALERT_FOR: Duration = Duration::from_secs(5);
/// Alertmanager's test-sized group_wait.
const GROUP_WAIT: Duration = Duration::from_secs(1);

fn path(relative: &str) -> PathBuf {
    root().join(relative)
}

fn require(binary: &str) {
    assert!(
        Path::new(binary).exists(),
        "{binary} is missing: run scripts/install-test-deps.sh (apt: haproxy, prometheus, prometheus-alertmanager)"
    );
}

/// A YAML file of the repository as JSON (PyYAML's safe loader; the crate has no YAML parser).
fn yaml(relative: &str) -> Value {
    let output = Command::new(support::python())
        .arg("-c")
        .arg("import json, sys, yaml\njson.dump(yaml.safe_load(open(sys.argv[1])), sys.stdout)")
        .arg(path(relative))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{relative}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// A daemon in its own process group, its output in `log`; killed on drop.
fn spawn(command: &mut Command, port: u16, log: &Path) -> ServerProcess {
    use std::os::unix::process::CommandExt;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let child = command
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    ServerProcess {
        child,
        port,
        log: Some(log.to_owned()),
    }
}

fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// GETs `url` until it answers 200, for at most `within`.
async fn wait_ok(http: &reqwest::Client, url: &str, within: Duration, log: &Path) {
    let started = Instant::now();
    loop {
        let ok = http
            .get(url)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ok {
            return;
        }
        assert!(
            started.elapsed() < within,
            "{url} not 200 after {within:?}:\n{}",
            log_tail(log)
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

// ---------------------------------------------------------------------------------
// The replicas

/// One `mcpwatch serve` on fixed free ports, so that it comes back at the same address.
struct Replica {
    /// HAProxy's name for it: `mcpwatch-N`.
    name: String,
    api: u16,
    admin: u16,
    config: PathBuf,
    log: PathBuf,
    process: Option<ServerProcess>,
}

impl Replica {
    fn new(number: usize, dir: &Path) -> Replica {
        let (api, admin) = (free_port(), free_port());
        let config = dir.join(format!("replica-{number}.toml"));
        // shutdown_delay: above HAProxy's detection of a draining replica (2.25s, see
        // haproxy.cfg), so that it stops sending before the listeners close.
        // SCALEOUT_SHUTDOWN_DELAY=0s shows what happens without (docs/scaling.md).
        let delay = std::env::var("SCALEOUT_SHUTDOWN_DELAY").unwrap_or_else(|_| "3s".into());
        std::fs::write(
            &config,
            format!(
                "[agent]\nlisten = \"127.0.0.1:{api}\"\nadmin_listen = \"127.0.0.1:{admin}\"\n\
                 drain_timeout = \"10s\"\nshutdown_delay = \"{delay}\"\n\
                 [gateway]\nsession_key = \"${{MCPWATCH_SESSION_KEY}}\"\n\
                 [servers.demo]\ntransport = \"builtin\"\n"
            ),
        )
        .unwrap();
        Replica {
            name: format!("mcpwatch-{number}"),
            api,
            admin,
            config,
            log: dir.join(format!("replica-{number}.log")),
            process: None,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.api)
    }

    /// Its scrape target (and so the `instance` label of its series and alerts).
    fn target(&self) -> String {
        format!("127.0.0.1:{}", self.admin)
    }

    /// Starts it and waits until `/readyz` is 200.
    async fn start(&mut self, http: &reqwest::Client) {
        assert!(self.process.is_none(), "{} runs already", self.name);
        let mut command = Command::new(mcpwatch_bin());
        command
            .args(["serve", "--config"])
            .arg(&self.config)
            .env("MCPWATCH_SESSION_KEY", SESSION_KEY);
        self.process = Some(spawn(&mut command, self.api, &self.log));
        let readyz = format!("http://127.0.0.1:{}/readyz", self.admin);
        wait_ok(http, &readyz, Duration::from_secs(30), &self.log).await;
    }

    /// SIGKILL, and reaps it.
    fn kill(&mut self) {
        self.process.take().expect("a running replica").kill();
    }

    /// SIGTERM, then waits (bounded) for the exit; returns its exit code.
    async fn terminate(&mut self) -> Option<i32> {
        let mut process = self.process.take().expect("a running replica");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(process.pid() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(30) {
            if let Some(status) = process.child.try_wait().unwrap() {
                return status.code();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }

    /// Calls in flight on it now (the sum over its sessions).
    async fn in_flight(&self, http: &reqwest::Client) -> u64 {
        let Ok(response) = http.get(format!("{}/v1/sessions", self.url())).send().await else {
            return 0;
        };
        let body: Value = response.json().await.unwrap_or_default();
        body["sessions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["in_flight"].as_u64())
            .sum()
    }

    /// The scopes it holds a `demo` session for.
    async fn scopes(&self, http: &reqwest::Client) -> BTreeSet<String> {
        let body: Value = http
            .get(format!("{}/v1/sessions", self.url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["server"] == "demo")
            .map(|s| s["scope"].as_str().unwrap().to_owned())
            .collect()
    }
}

// ---------------------------------------------------------------------------------
// HAProxy

struct Haproxy {
    _process: ServerProcess,
    /// Where clients connect.
    url: String,
    /// Its Prometheus exporter, host:port.
    metrics: String,
    log: PathBuf,
    http: reqwest::Client,
}

impl Haproxy {
    /// Runs the shipped config with the replicas' addresses in the environment, and
    /// waits until every replica is UP.
    async fn start(replicas: &[Replica], dir: &Path, http: &reqwest::Client) -> Haproxy {
        require(HAPROXY);
        let (port, metrics_port) = (free_port(), free_port());
        let mut command = Command::new(HAPROXY);
        command
            .arg("-db")
            .arg("-f")
            .arg(path(HAPROXY_CFG))
            .env("MCPWATCH_LB_BIND", format!("127.0.0.1:{port}"))
            .env("HAPROXY_METRICS_BIND", format!("127.0.0.1:{metrics_port}"));
        for (i, replica) in replicas.iter().enumerate() {
            command
                .env(
                    format!("MCPWATCH_{}", i + 1),
                    format!("127.0.0.1:{}", replica.api),
                )
                .env(
                    format!("MCPWATCH_{}_ADMIN_PORT", i + 1),
                    replica.admin.to_string(),
                );
        }
        let log = dir.join("haproxy.log");
        let process = spawn(&mut command, port, &log);
        wait_port(port, Duration::from_secs(10)).await;
        let haproxy = Haproxy {
            _process: process,
            url: format!("http://127.0.0.1:{port}"),
            metrics: format!("127.0.0.1:{metrics_port}"),
            log,
            http: http.clone(),
        };
        for replica in replicas {
            haproxy
                .wait_state(&replica.name, "UP", Duration::from_secs(15))
                .await;
        }
        haproxy
    }

    /// Its exporter's page.
    async fn exported(&self) -> String {
        self.http
            .get(format!("http://{}/metrics", self.metrics))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// A sample of the `mcpwatch` backend or one of its servers.
    async fn sample(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let mut all = vec![("proxy", "mcpwatch")];
        all.extend_from_slice(labels);
        prometheus_sample(&self.exported().await, name, &all)
    }

    /// Polls the exporter until `server` is in `state` (UP, DOWN); returns when it saw it.
    async fn wait_state(&self, server: &str, state: &str, within: Duration) -> Instant {
        let started = Instant::now();
        loop {
            let labels = [("server", server), ("state", state)];
            if self.sample("haproxy_server_status", &labels).await == 1.0 {
                return Instant::now();
            }
            assert!(
                started.elapsed() < within,
                "HAProxy did not mark {server} {state} within {within:?}:\n{}",
                log_tail(&self.log)
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

// ---------------------------------------------------------------------------------
// Prometheus, Alertmanager and a webhook receiver

struct Prometheus {
    _process: ServerProcess,
    url: String,
    http: reqwest::Client,
    log: PathBuf,
}

impl Prometheus {
    /// Scrapes the replicas as job "mcpwatch" and HAProxy as job "haproxy" every second,
    /// evaluates the shipped rules and the test-sized MCPWatchDown every second, and
    /// sends alerts to `alertmanager` (host:port).
    async fn start(fleet: &[Replica], haproxy: &Haproxy, alertmanager: &str, dir: &Path) -> Self {
        require(PROMETHEUS);
        let rules = dir.join("rules");
        std::fs::create_dir_all(&rules).unwrap();
        std::fs::copy(path(RULES), rules.join("mcpwatch.rules.yml")).unwrap();
        std::fs::write(
            rules.join("test-sized.yml"),
            test_sized_down_alert().to_string(),
        )
        .unwrap();
        let targets: Vec<String> = fleet.iter().map(Replica::target).collect();
        let config = json!({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [format!("{}/*.yml", rules.display())],
            "alerting": {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]},
            "scrape_configs": [
                {"job_name": "mcpwatch", "static_configs": [{"targets": targets}]},
                {"job_name": "haproxy", "static_configs": [{"targets": [haproxy.metrics]}]},
            ],
        });
        let config_path = dir.join("prometheus.yml");
        std::fs::write(&config_path, config.to_string()).unwrap();
        let port = free_port();
        let log = dir.join("prometheus.log");
        let mut command = Command::new(PROMETHEUS);
        command
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--storage.tsdb.retention.time=1h");
        let process = spawn(&mut command, port, &log);
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        wait_ok(
            &http,
            &format!("{url}/-/ready"),
            Duration::from_secs(30),
            &log,
        )
        .await;
        Prometheus {
            _process: process,
            url,
            http,
            log,
        }
    }

    /// An instant query: the result vector, or Prometheus's error.
    async fn query(&self, promql: &str) -> Result<Vec<Value>, String> {
        let url = url::Url::parse_with_params(
            &format!("{}/api/v1/query", self.url),
            &[("query", promql)],
        )
        .unwrap();
        let body: Value = self
            .http
            .get(url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if body["status"] != "success" {
            return Err(format!("{}: {}", body["errorType"], body["error"]));
        }
        Ok(body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    /// Polls `promql` until it returns a series, for at most `within`.
    async fn wait_nonempty(&self, promql: &str, within: Duration) {
        let started = Instant::now();
        while self.query(promql).await.unwrap().is_empty() {
            assert!(
                started.elapsed() < within,
                "Prometheus: nothing for {promql} after {within:?}:\n{}",
                log_tail(&self.log)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// The shipped MCPWatchDown with `for: 5s`, in a rules file of its own: the shipped
/// rules stay as they are, and this copy fires within the test.
fn test_sized_down_alert() -> Value {
    let rules = yaml(RULES);
    let mut down = rules["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .find(|r| r["alert"] == "MCPWatchDown")
        .expect("the shipped MCPWatchDown")
        .clone();
    down["for"] = json!(format!("{}s", ALERT_FOR.as_secs()));
    json!({"groups": [{"name": "mcpwatch.test-sized", "rules": [down]}]})
}

/// The shipped Alertmanager example with test-sized timings (group_wait 1s,
/// group_interval 1s, repeat_interval 1h), every webhook pointed at `webhook` under its
/// receiver's name, and (when `inhibit` is false) no inhibition rules.
fn alertmanager_config(webhook: &Webhook, inhibit: bool) -> Value {
    fn test_sized(route: &mut Value) {
        for (key, value) in [
            ("group_wait", "1s"),
            ("group_interval", "1s"),
            ("repeat_interval", "1h"),
        ] {
            if route.get(key).is_some() {
                route[key] = json!(value);
            }
        }
        for child in route["routes"].as_array_mut().into_iter().flatten() {
            test_sized(child);
        }
    }
    let mut config = yaml(ALERTMANAGER_EXAMPLE);
    test_sized(&mut config["route"]);
    for receiver in config["receivers"].as_array_mut().unwrap() {
        let name = receiver["name"].as_str().unwrap().to_owned();
        for hook in receiver["webhook_configs"]
            .as_array_mut()
            .into_iter()
            .flatten()
        {
            hook["url"] = json!(format!("{}/{name}", webhook.url));
        }
    }
    if !inhibit {
        config.as_object_mut().unwrap().remove("inhibit_rules");
    }
    config
}

struct Alertmanager {
    _process: ServerProcess,
    /// host:port.
    addr: String,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Alertmanager {
    async fn start(config: &Value) -> Alertmanager {
        require(ALERTMANAGER);
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("alertmanager.yml");
        std::fs::write(&config_path, config.to_string()).unwrap();
        let port = free_port();
        let log = dir.path().join("alertmanager.log");
        let mut command = Command::new(ALERTMANAGER);
        command
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            // Its cluster listener would bind every interface.
            .arg("--cluster.listen-address=");
        let process = spawn(&mut command, port, &log);
        let addr = format!("127.0.0.1:{port}");
        let http = reqwest::Client::new();
        wait_ok(
            &http,
            &format!("http://{addr}/-/ready"),
            Duration::from_secs(30),
            &log,
        )
        .await;
        Alertmanager {
            _process: process,
            addr,
            http,
            _dir: dir,
        }
    }

    /// Posts firing alerts (label sets, with annotations) to `/api/v2/alerts`.
    async fn post(&self, alerts: Value) {
        let response = self
            .http
            .post(format!("http://{}/api/v2/alerts", self.addr))
            .json(&alerts)
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{}", response.status());
    }
}

/// One alert of one webhook notification.
#[derive(Debug, Clone)]
struct Delivered {
    receiver: String,
    at: Instant,
    status: String,
    labels: Value,
    annotations: Value,
}

/// Alertmanager's webhook receiver: records every alert of every notification, by
/// receiver (the last path segment). Stops on drop.
struct Webhook {
    url: String,
    delivered: Arc<Mutex<Vec<Delivered>>>,
    stop: CancellationToken,
}

impl Webhook {
    async fn start() -> Webhook {
        use axum::extract::{Path as UrlPath, State};
        type Inbox = Arc<Mutex<Vec<Delivered>>>;
        async fn receive(
            State(inbox): State<Inbox>,
            UrlPath(receiver): UrlPath<String>,
            axum::Json(body): axum::Json<Value>,
        ) {
            let at = Instant::now();
            for alert in body["alerts"].as_array().into_iter().flatten() {
                inbox.lock().unwrap().push(Delivered {
                    receiver: receiver.clone(),
                    at,
                    status: alert["status"].as_str().unwrap_or_default().to_owned(),
                    labels: alert["labels"].clone(),
                    annotations: alert["annotations"].clone(),
                });
            }
        }
        let delivered: Inbox = Arc::default();
        let router = axum::Router::new()
            .route("/{receiver}", axum::routing::post(receive))
            .with_state(delivered.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let stop = CancellationToken::new();
        let token = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(token.cancelled_owned())
                .await;
        });
        Webhook {
            url,
            delivered,
            stop,
        }
    }

    fn delivered(&self) -> Vec<Delivered> {
        self.delivered.lock().unwrap().clone()
    }

    /// Waits (bounded) for an alert named `alert` with `status` (and `instance`, when
    /// given) to be delivered; returns it.
    async fn wait_for(
        &self,
        alert: &str,
        status: &str,
        instance: Option<&str>,
        within: Duration,
    ) -> Delivered {
        let started = Instant::now();
        loop {
            let found = self.delivered().into_iter().find(|d| {
                d.labels["alertname"] == alert
                    && d.status == status
                    && instance.is_none_or(|i| d.labels["instance"] == i)
            });
            if let Some(found) = found {
                return found;
            }
            assert!(
                started.elapsed() < within,
                "no {status} {alert} delivered within {within:?}; delivered: {:#?}",
                self.delivered()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

// ---------------------------------------------------------------------------------
// Calls

/// One `/v1/tools/call` answer, timed.
#[derive(Debug, Clone)]
struct Answer {
    scope: String,
    sent: Instant,
    answered: Instant,
    /// 0 when no HTTP answer came at all.
    status: u16,
    /// The JSON body (a string when it was not JSON).
    body: Value,
}

impl Answer {
    fn ok(&self) -> bool {
        self.status == 200 && self.body["result"]["isError"] == false
    }

    /// The demo `counter`'s value.
    fn counter(&self) -> Option<u64> {
        self.body["result"]["content"][0]["text"]
            .as_str()?
            .parse()
            .ok()
    }

    fn reused(&self) -> Option<bool> {
        self.body["session"]["reused"].as_bool()
    }

    /// A JSON error body in mcpwatch's shape.
    fn is_json_error(&self) -> bool {
        self.body["error"]["type"].is_string() && self.body["error"]["message"].is_string()
    }

    /// The connection closed with no answer at all: what HAProxy does to a request
    /// that was not the first on its client connection when the replica dies under it
    /// (it leaves the retry to the client; docs/scaling.md).
    fn closed_without_answer(&self) -> bool {
        self.status == 0
            && self
                .body
                .as_str()
                .is_some_and(|b| b.contains("IncompleteMessage"))
    }
}

/// A demo tool called over `/v1` at `base` (HAProxy or a replica), scope in the header.
async fn call(
    http: &reqwest::Client,
    base: &str,
    scope: &str,
    tool: &str,
    arguments: Value,
) -> Answer {
    let sent = Instant::now();
    let response = http
        .post(format!("{base}/v1/tools/call"))
        .header("x-mcpwatch-scope", scope)
        .json(&json!({"server": "demo", "tool": tool, "arguments": arguments}))
        .send()
        .await;
    let (status, body) = match response {
        Ok(response) => {
            let status = response.status().as_u16();
            let text = response.text().await.unwrap_or_default();
            (
                status,
                serde_json::from_str(&text).unwrap_or(Value::String(text)),
            )
        }
        Err(error) => (0, Value::String(format!("no answer: {error:?}"))),
    };
    Answer {
        scope: scope.to_owned(),
        sent,
        answered: Instant::now(),
        status,
        body,
    }
}

/// Steady load through HAProxy: `workers` clients (each with its own connection pool,
/// as separate client processes would be), each calling `tool` on its own share of
/// `scopes` in turn (so the calls of one scope never overlap), until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    calls: Arc<AtomicUsize>,
    workers: Vec<tokio::task::JoinHandle<Vec<Answer>>>,
}

impl Load {
    fn start(
        base: &str,
        scopes: &[String],
        workers: usize,
        tool: &'static str,
        arguments: Value,
    ) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let calls = Arc::new(AtomicUsize::new(0));
        let workers = (0..workers)
            .map(|w| {
                let mine: Vec<String> = scopes.iter().skip(w).step_by(workers).cloned().collect();
                let http = reqwest::Client::builder()
                    .timeout(Duration::from_secs(30))
                    .build()
                    .unwrap();
                let (base, arguments) = (base.to_owned(), arguments.clone());
                let (stop, calls) = (stop.clone(), calls.clone());
                tokio::spawn(async move {
                    let started = Instant::now();
                    let mut answers = Vec::new();
                    for scope in mine.iter().cycle() {
                        // Bounded: a test that forgets to stop its load still ends.
                        if stop.load(Ordering::Acquire)
                            || started.elapsed() > Duration::from_secs(120)
                        {
                            break;
                        }
                        answers.push(call(&http, &base, scope, tool, arguments.clone()).await);
                        calls.fetch_add(1, Ordering::AcqRel);
                    }
                    answers
                })
            })
            .collect();
        Load {
            stop,
            calls,
            workers,
        }
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::Acquire)
    }

    /// Stops the load; every answer, each worker's in the order it got them.
    async fn stop(self) -> Vec<Answer> {
        self.stop.store(true, Ordering::Release);
        let mut all = Vec::new();
        for worker in self.workers {
            all.extend(worker.await.unwrap());
        }
        all
    }
}

/// A gateway client of `url` that shares `http`'s connection pool.
fn gateway(http: &reqwest::Client, url: String) -> McpHttp {
    let mut client = McpHttp::new(url);
    client.http = http.clone();
    client
}

/// One `counter` call on an initialized gateway client; its value.
async fn gateway_counter(client: &McpHttp, id: i64) -> u64 {
    let reply = client.call(id, "counter", json!({})).await;
    assert_eq!(reply.status, 200, "{:?}", reply.messages);
    reply
        .text()
        .parse()
        .unwrap_or_else(|_| panic!("not a counter: {:?}", reply.messages))
}

// ---------------------------------------------------------------------------------
// The fleet

struct Fleet {
    http: reqwest::Client,
    replicas: Vec<Replica>,
    haproxy: Haproxy,
    webhook: Webhook,
    _alertmanager: Alertmanager,
    prometheus: Prometheus,
    _dir: tempfile::TempDir,
}

impl Fleet {
    async fn start() -> Fleet {
        let dir = tempfile::tempdir().unwrap();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let mut replicas: Vec<Replica> = (1..=3).map(|n| Replica::new(n, dir.path())).collect();
        for replica in &mut replicas {
            replica.start(&http).await;
        }
        let haproxy = Haproxy::start(&replicas, dir.path(), &http).await;
        let webhook = Webhook::start().await;
        let alertmanager = Alertmanager::start(&alertmanager_config(&webhook, true)).await;
        let prometheus =
            Prometheus::start(&replicas, &haproxy, &alertmanager.addr, dir.path()).await;
        Fleet {
            http,
            replicas,
            haproxy,
            webhook,
            _alertmanager: alertmanager,
            prometheus,
            _dir: dir,
        }
    }

    /// HAProxy's address, where every client goes.
    fn lb(&self) -> &str {
        &self.haproxy.url
    }
}

// ---------------------------------------------------------------------------------
// Scenario 1: affinity

/// The ten `counter` calls of one named scope, by three kinds of client through
/// HAProxy: four over `/v1` (scope in the header), three by a session-per-call gateway
/// client with the header, three on one downstream session at `/scopes/{scope}/mcp/demo`
/// (scope in the path, no header). One upstream session serves all ten: 1, 2, ..., 10.
async fn scope_counts_to_ten(fleet: &Fleet, scope: &str) {
    let lb = fleet.lb();
    let mut seen = Vec::new();
    for _ in 0..4 {
        let answer = call(&fleet.http, lb, scope, "counter", json!({})).await;
        assert!(answer.ok(), "{answer:?}");
        seen.push(answer.counter().unwrap());
    }
    for _ in 0..3 {
        let mut client = gateway(&fleet.http, format!("{lb}/mcp/demo")).with_scope(scope);
        assert_eq!(client.initialize("2025-11-25", json!({})).await.status, 200);
        seen.push(gateway_counter(&client, 1).await);
        assert_eq!(client.delete().await, 200);
    }
    let mut client = gateway(&fleet.http, format!("{lb}/scopes/{scope}/mcp/demo"));
    assert_eq!(client.initialize("2025-11-25", json!({})).await.status, 200);
    for id in 1..=3 {
        seen.push(gateway_counter(&client, id).await);
    }
    assert_eq!(client.delete().await, 200);
    let wanted: Vec<u64> = (1..=CALLS_PER_SCOPE).collect();
    assert_eq!(
        seen, wanted,
        "scope {scope}: its calls reached more than one session"
    );
}

/// A downstream session with no scope at all (its session is its scope): `initialize`
/// goes anywhere, then HAProxy hashes its `Mcp-Session-Id`, so ten calls count 1..10.
async fn session_counts_to_ten(fleet: &Fleet) {
    let mut client = gateway(&fleet.http, format!("{}/mcp/demo", fleet.lb()));
    assert_eq!(client.initialize("2025-11-25", json!({})).await.status, 200);
    let mut seen = Vec::new();
    for id in 1..=10 {
        seen.push(gateway_counter(&client, id).await);
    }
    assert_eq!(seen, (1..=10).collect::<Vec<u64>>());
    assert_eq!(client.delete().await, 200);
}

/// `DELETE /v1/sessions/{server}/{scope}` and `DELETE /v1/scopes/{scope}` carry the
/// scope in the path only: HAProxy must send them where the header sent its calls.
async fn deletes_reach_the_scope_owner(fleet: &Fleet) {
    for i in 0..20 {
        let scope = format!("d-{i:02}");
        assert!(
            call(&fleet.http, fleet.lb(), &scope, "counter", json!({}))
                .await
                .ok()
        );
        let path = if i % 2 == 0 {
            format!("/v1/sessions/demo/{scope}")
        } else {
            format!("/v1/scopes/{scope}")
        };
        let response = fleet
            .http
            .delete(format!("{}{path}", fleet.lb()))
            .send()
            .await
            .unwrap();
        let closed: Value = response.json().await.unwrap();
        assert_eq!(
            closed["closed"], 1,
            "DELETE {path} reached another replica: {closed}"
        );
    }
}

/// Scenario 1. Returns the owner (index into `fleet.replicas`) of every `t-*` scope.
async fn affinity(fleet: &Fleet) -> BTreeMap<String, usize> {
    let started = Instant::now();
    let scopes: Vec<String> = (0..SCOPES).map(|i| format!("t-{i:03}")).collect();
    futures::stream::iter(&scopes)
        .for_each_concurrent(16, |scope| scope_counts_to_ten(fleet, scope))
        .await;
    futures::stream::iter(0..40)
        .for_each_concurrent(8, |_| session_counts_to_ten(fleet))
        .await;
    deletes_reach_the_scope_owner(fleet).await;
    // Each scope's session lives on exactly one replica, and each replica has its share.
    let mut owners = BTreeMap::new();
    for (i, replica) in fleet.replicas.iter().enumerate() {
        for scope in replica.scopes(&fleet.http).await {
            if scope.starts_with("t-") {
                assert!(
                    owners.insert(scope.clone(), i).is_none(),
                    "{scope} on two replicas"
                );
            }
        }
    }
    assert_eq!(owners.len(), SCOPES);
    let shares: Vec<usize> = (0..fleet.replicas.len())
        .map(|i| owners.values().filter(|o| **o == i).count())
        .collect();
    for share in &shares {
        assert!(
            share * 100 >= SCOPES * 15,
            "a replica owns under 15%: {shares:?}"
        );
    }
    eprintln!(
        "affinity: {SCOPES} scopes x {CALLS_PER_SCOPE} calls and 40 session-scoped clients in {:?}; scopes per replica {shares:?}",
        started.elapsed()
    );
    owners
}

// ---------------------------------------------------------------------------------
// Scenario 6: the dashboards across replicas

/// Every panel of a dashboard but rows, rows' nested panels included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        out.extend(panel["panels"].as_array().into_iter().flatten());
        if panel["type"] != "row" {
            out.push(panel);
        }
    }
    out
}

/// A dashboard query with its variables as tests/operations.rs substitutes them.
fn substitute(expr: &str, server: &str) -> String {
    let vars = [
        ("__rate_interval", "30s"),
        ("instance", ".+"),
        ("__range", "1h"),
        ("server", server),
        ("job", "mcpwatch"),
    ];
    let mut out = expr.to_owned();
    for (name, value) in vars {
        out = out.replace(&format!("${{{name}}}"), value);
        out = out.replace(&format!("${name}"), value);
    }
    out
}

/// Runs each overview query (at least one series each) and each per-instance query
/// of both dashboards (legend `{{instance}}`: one series per replica, all three).
/// Returns (problems, queries run).
async fn check_dashboards(
    prometheus: &Prometheus,
    targets: &BTreeSet<String>,
) -> (Vec<String>, usize) {
    let mut problems = Vec::new();
    let mut queries = 0;
    for file in [
        "dashboards/mcpwatch-overview.json",
        "dashboards/mcpwatch-server.json",
    ] {
        let dashboard: Value =
            serde_json::from_str(&std::fs::read_to_string(path(file)).unwrap()).unwrap();
        let overview = dashboard["uid"] == "mcpwatch-overview";
        for panel in panels(&dashboard) {
            for target in panel["targets"].as_array().into_iter().flatten() {
                let legend = target["legendFormat"].as_str().unwrap_or_default();
                let per_instance = legend.contains("{{instance}}");
                if !overview && !per_instance {
                    continue;
                }
                queries += 1;
                let server = if overview { ".+" } else { "demo" };
                let promql = substitute(target["expr"].as_str().unwrap(), server);
                let place = format!("{file} / {}", panel["title"].as_str().unwrap_or_default());
                let series = match prometheus.query(&promql).await {
                    Ok(series) => series,
                    Err(error) => {
                        problems.push(format!("{place}: {promql}: {error}"));
                        continue;
                    }
                };
                if series.is_empty() {
                    problems.push(format!("{place}: no series for {promql}"));
                }
                let instances: BTreeSet<String> = series
                    .iter()
                    .filter_map(|s| s["metric"]["instance"].as_str().map(str::to_owned))
                    .collect();
                if per_instance && &instances != targets {
                    problems.push(format!("{place}: instances {instances:?} for {promql}"));
                }
            }
        }
    }
    (problems, queries)
}

/// Scenario 6.
async fn dashboards_across_replicas(fleet: &Fleet) {
    let started = Instant::now();
    // A failed tool call and a failed gateway request on every replica, so that the
    // error panels have series.
    for replica in &fleet.replicas {
        let failed = call(&fleet.http, &replica.url(), "dash", "fail", json!({})).await;
        assert_eq!(
            (failed.status, &failed.body["result"]["isError"]),
            (200, &json!(true))
        );
        let mut client = gateway(&fleet.http, format!("{}/mcp/demo", replica.url()));
        assert_eq!(client.initialize("2025-11-25", json!({})).await.status, 200);
        let reply = client.call(1, "no_such_tool", json!({})).await;
        assert!(reply.answer()["error"].is_object(), "{:?}", reply.messages);
        assert_eq!(client.delete().await, 200);
    }
    let prometheus = &fleet.prometheus;
    let within = Duration::from_secs(30);
    prometheus
        .wait_nonempty("count(up{job=\"mcpwatch\"} == 1) == 3", within)
        .await;
    prometheus
        .wait_nonempty(
            "count(count by (instance) (mcp_client_operation_duration_seconds_count{job=\"mcpwatch\", error_type=\"tool_error\"})) == 3",
            within,
        )
        .await;
    prometheus
        .wait_nonempty("up{job=\"haproxy\"} == 1", within)
        .await;
    let targets: BTreeSet<String> = fleet.replicas.iter().map(Replica::target).collect();
    let checked = Instant::now();
    let (problems, queries) = loop {
        let outcome = check_dashboards(prometheus, &targets).await;
        if outcome.0.is_empty() || checked.elapsed() > Duration::from_secs(20) {
            break outcome;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    eprintln!(
        "dashboards: {queries} queries against 3 replicas in {:?}",
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------------
// Scenario 2: a replica killed under load (and scenario 4: its alert)

/// The replica scenario 2 kills (its index).
const VICTIM: usize = 1;

/// Checks the answers of the load around the kill (see [`kill_under_load`]).
fn check_kill(
    answers: &[Answer],
    owners: &BTreeMap<String, usize>,
    killed_at: Instant,
    down_at: Instant,
) -> KillFigures {
    let mut figures = KillFigures::default();
    for answer in answers {
        if answer.answered < killed_at {
            assert!(
                answer.ok(),
                "a call answered before the kill failed: {answer:?}"
            );
        }
        if answer.sent > down_at {
            assert!(
                answer.ok(),
                "a call sent after HAProxy marked the replica DOWN failed: {answer:?}"
            );
        }
        if !answer.ok() {
            // Only calls to the dead replica fail (in flight at the kill, or sent before
            // HAProxy saw it down on a connection HAProxy kept to it): HAProxy's JSON
            // 502, or (on a kept-alive client connection) the connection closed.
            assert_eq!(owners[&answer.scope], VICTIM, "{answer:?}");
            assert!(
                answer.is_json_error() || answer.closed_without_answer(),
                "neither a JSON error body nor a closed connection: {answer:?}"
            );
        }
    }
    for (scope, owner) in owners {
        let mine: Vec<&Answer> = answers.iter().filter(|a| &a.scope == scope).collect();
        if *owner == VICTIM {
            // Its next call sent after the kill succeeds on another replica, with a
            // fresh session: the counter starts again.
            let next = mine
                .iter()
                .find(|a| a.sent >= killed_at && a.ok())
                .expect("a call after the kill succeeds");
            assert_eq!(
                (next.counter(), next.reused()),
                (Some(1), Some(false)),
                "{next:?}"
            );
        }
        // Survivors' scopes continue on their session; the moved ones from 1 once.
        // Survivors' scopes continue on their session. A moved scope starts again at 1,
        // and may do so twice: HAProxy redispatches its calls sent before it marked the
        // replica DOWN to the next replica on the ring, and afterwards hashes them onto
        // the ring without the replica, which can be another one (docs/scaling.md).
        let (mut expected, mut fresh) = (CALLS_PER_SCOPE + 1, 0);
        for answer in mine.iter().filter(|a| a.ok()) {
            let value = answer.counter().unwrap();
            if value != expected {
                let moved = *owner == VICTIM && value == 1 && answer.reused() == Some(false);
                assert!(
                    moved && fresh < 2,
                    "scope {scope}: {value} where {expected} was due: {answer:?}"
                );
                assert!(answer.answered >= killed_at, "{answer:?}");
                fresh += 1;
            }
            expected = value + 1;
        }
        figures.moved_twice += usize::from(fresh == 2);
    }
    let failed: Vec<&Answer> = answers.iter().filter(|a| !a.ok()).collect();
    figures.in_flight = failed.iter().filter(|a| a.sent < killed_at).count();
    figures.after_kill = failed.len() - figures.in_flight;
    figures
}

/// What [`check_kill`] counted.
#[derive(Debug, Default)]
struct KillFigures {
    /// Failed calls that were in flight at the kill.
    in_flight: usize,
    /// Failed calls sent between the kill and HAProxy's DOWN.
    after_kill: usize,
    /// Moved scopes that got a fresh session twice.
    moved_twice: usize,
}

/// After the kill, the survivors hold the victim's scopes and kept their own; returns
/// how many scopes moved.
async fn moved_scopes_live_on_the_survivors(
    fleet: &Fleet,
    owners: &BTreeMap<String, usize>,
) -> usize {
    let mut held = BTreeSet::new();
    for (i, replica) in fleet.replicas.iter().enumerate() {
        if i == VICTIM {
            continue;
        }
        let scopes = replica.scopes(&fleet.http).await;
        for (scope, owner) in owners {
            assert!(
                *owner != i || scopes.contains(scope),
                "{} lost {scope}",
                replica.name
            );
        }
        held.extend(scopes);
    }
    let moved: Vec<&String> = owners
        .iter()
        .filter(|(_, o)| **o == VICTIM)
        .map(|(s, _)| s)
        .collect();
    assert!(
        moved.iter().all(|s| held.contains(*s)),
        "a moved scope is nowhere"
    );
    moved.len()
}

/// Scenario 2, then scenario 4. Eight clients call `counter` on the 200 scopes through
/// HAProxy while three long `sleep` calls are in flight on one replica; it is SIGKILLed.
async fn kill_under_load(fleet: &mut Fleet, owners: &BTreeMap<String, usize>) {
    let scopes: Vec<String> = owners.keys().cloned().collect();
    let load = Load::start(fleet.lb(), &scopes, 8, "counter", json!({}));
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Each long call on a connection of its own (the first request of its client
    // connection): HAProxy answers those with its JSON 502.
    let fresh = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let long_calls: Vec<_> = owners
        .iter()
        .filter(|(_, owner)| **owner == VICTIM)
        .take(3)
        .map(|(scope, _)| {
            let (http, lb, scope) = (fresh.clone(), fleet.lb().to_owned(), scope.clone());
            tokio::spawn(
                async move { call(&http, &lb, &scope, "sleep", json!({"ms": 5000})).await },
            )
        })
        .collect();
    let (victim, http) = (&fleet.replicas[VICTIM], &fleet.http);
    support::eventually_async(
        Duration::from_secs(5),
        "3 calls in flight on the victim",
        || async move { victim.in_flight(http).await >= 3 },
    )
    .await;
    let (name, target) = (victim.name.clone(), victim.target());

    let killed_at = Instant::now();
    fleet.replicas[VICTIM].kill();
    let down_at = fleet
        .haproxy
        .wait_state(&name, "DOWN", Duration::from_secs(15))
        .await;
    // Every scope gets calls after the DOWN.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let answers = load.stop().await;
    for long in long_calls {
        let answer = long.await.unwrap();
        assert_eq!(answer.status, 502, "{answer:?}");
        assert_eq!(
            answer.body["error"]["type"], "transport_closed",
            "{answer:?}"
        );
        assert_eq!(answer.body["error"]["may_have_run"], true, "{answer:?}");
    }
    let figures = check_kill(&answers, owners, killed_at, down_at);
    let moved = moved_scopes_live_on_the_survivors(fleet, owners).await;
    let share = moved as f64 / SCOPES as f64;
    assert!(
        share <= 1.0 / 3.0 + 0.05,
        "{moved} of {SCOPES} scopes moved"
    );
    eprintln!(
        "kill: {} calls; failed: {} in flight at the kill (and the 3 long calls: 502), {} sent between the kill and DOWN; {} of {SCOPES} scopes moved ({:.1}%), {} of them twice; DOWN {:?} after the kill",
        answers.len(),
        figures.in_flight,
        figures.after_kill,
        moved,
        share * 100.0,
        figures.moved_twice,
        down_at - killed_at
    );
    incident_path(fleet, killed_at, &target).await;
}

/// Scenario 4: the killed replica's MCPWatchDown reaches the webhook through
/// Alertmanager, and resolves once the replica is back.
async fn incident_path(fleet: &mut Fleet, killed_at: Instant, target: &str) {
    let budget = ALERT_FOR + GROUP_WAIT + Duration::from_secs(30);
    let webhook = &fleet.webhook;
    let within = budget.saturating_sub(killed_at.elapsed());
    let fired = webhook
        .wait_for("MCPWatchDown", "firing", Some(target), within)
        .await;
    let latency = fired.at - killed_at;
    assert_eq!(fired.labels["severity"], "critical", "{fired:?}");
    assert_eq!(
        fired.receiver,
        critical_receiver(),
        "routed by severity: {fired:?}"
    );
    let runbook = fired.annotations["runbook_url"]
        .as_str()
        .unwrap_or_default();
    assert!(
        runbook.ends_with("/alerts/runbook.md#mcpwatchdown"),
        "{fired:?}"
    );

    let replica = &mut fleet.replicas[VICTIM];
    replica.start(&fleet.http).await;
    let back_at = Instant::now();
    let name = replica.name.clone();
    fleet
        .haproxy
        .wait_state(&name, "UP", Duration::from_secs(20))
        .await;
    let resolved = fleet
        .webhook
        .wait_for(
            "MCPWatchDown",
            "resolved",
            Some(target),
            Duration::from_secs(30),
        )
        .await;
    eprintln!(
        "incident: MCPWatchDown delivered {latency:?} after the kill (budget {budget:?}); resolved delivered {:?} after the restart",
        resolved.at - back_at
    );
}

/// The receiver the example routes `severity="critical"` to.
fn critical_receiver() -> String {
    let config = yaml(ALERTMANAGER_EXAMPLE);
    config["route"]["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| {
            r["matchers"]
                .to_string()
                .contains(r#"severity=\"critical\""#)
        })
        .and_then(|r| r["receiver"].as_str())
        .expect("a route for severity=\"critical\"")
        .to_owned()
}

// ---------------------------------------------------------------------------------
// Scenario 3: a rolling restart under load

/// Scenario 3. Sixteen clients call `sleep` (20 ms) through HAProxy while each replica
/// in turn gets SIGTERM (with calls in flight) and starts again. Clients retry
/// nothing; HAProxy retries the 503s of the draining replica elsewhere.
async fn rolling_restart(fleet: &mut Fleet) {
    let started = Instant::now();
    let retries_before = fleet
        .haproxy
        .sample("haproxy_backend_retry_warnings_total", &[])
        .await;
    let scopes: Vec<String> = (0..64).map(|i| format!("r-{i:02}")).collect();
    let load = Load::start(fleet.lb(), &scopes, 16, "sleep", json!({"ms": 20}));
    tokio::time::sleep(Duration::from_secs(1)).await;
    for i in 0..fleet.replicas.len() {
        let (replica, http) = (&fleet.replicas[i], &fleet.http);
        support::eventually_async(Duration::from_secs(5), "a call in flight", || async move {
            replica.in_flight(http).await > 0
        })
        .await;
        let name = replica.name.clone();
        let code = fleet.replicas[i].terminate().await;
        assert_eq!(
            code,
            Some(0),
            "{name}:\n{}",
            log_tail(&fleet.replicas[i].log)
        );
        fleet.replicas[i].start(&fleet.http).await;
        fleet
            .haproxy
            .wait_state(&name, "UP", Duration::from_secs(20))
            .await;
    }
    let restarted = started.elapsed();
    let waited = Instant::now();
    while load.calls() < 5000 {
        assert!(
            waited.elapsed() < Duration::from_secs(60),
            "the load is too slow"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let answers = load.stop().await;
    let failed: Vec<&Answer> = answers.iter().filter(|a| !a.ok()).collect();
    assert!(
        failed.is_empty(),
        "{} of {} calls failed in the rolling restart: {:#?}",
        failed.len(),
        answers.len(),
        &failed[..failed.len().min(5)]
    );
    let retries = fleet
        .haproxy
        .sample("haproxy_backend_retry_warnings_total", &[])
        .await
        - retries_before;
    assert!(
        retries > 0.0,
        "HAProxy retried nothing: no call met a draining replica"
    );
    eprintln!(
        "rolling restart: 3 replicas restarted in {restarted:?}; {} calls, 0 failed; HAProxy retried {retries}",
        answers.len()
    );
}

/// HAProxy's own answers are JSON in mcpwatch's error shape: with every replica gone,
/// a call gets its 503 (the 502 of a call in flight on a killed replica is checked in
/// scenario 2).
async fn haproxy_errors_are_json(fleet: &mut Fleet) {
    for replica in &mut fleet.replicas {
        replica.kill();
    }
    for replica in &fleet.replicas {
        fleet
            .haproxy
            .wait_state(&replica.name, "DOWN", Duration::from_secs(15))
            .await;
    }
    let response = fleet
        .http
        .post(format!("{}/v1/tools/call", fleet.lb()))
        .header("x-mcpwatch-scope", "t-000")
        .json(&json!({"server": "demo", "tool": "counter"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    let header = |name: &str| response.headers()[name].to_str().unwrap().to_owned();
    assert_eq!(header("content-type"), "application/json");
    assert_eq!(header("retry-after"), "1");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["type"], "connect_failed", "{body}");
    assert_eq!(body["error"]["may_have_run"], false, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_behind_haproxy_keeps_scopes_survives_a_kill_and_a_rolling_restart_and_alerts() {
    let started = Instant::now();
    let mut fleet = Fleet::start().await;
    eprintln!("fleet up in {:?}", started.elapsed());
    let owners = affinity(&fleet).await;
    dashboards_across_replicas(&fleet).await;
    kill_under_load(&mut fleet, &owners).await;
    rolling_restart(&mut fleet).await;
    haproxy_errors_are_json(&mut fleet).await;
    eprintln!("the fleet test took {:?}", started.elapsed());
}

// ---------------------------------------------------------------------------------
// Scenario 5: inhibition, checked so that it can fail

/// A firing alert as Prometheus would post it, with the shipped rule's annotations.
fn firing(labels: Value) -> Value {
    let name = labels["alertname"].as_str().unwrap().to_lowercase();
    json!({
        "labels": labels,
        "annotations": {
            "summary": "posted by tests/scaleout.rs",
            "runbook_url": format!("https://github.com/mcpwatch/mcpwatch/blob/main/alerts/runbook.md#{name}"),
        },
    })
}

/// Posts `alerts` to a fresh Alertmanager running the example (with or without its
/// inhibition rules); waits until `delivered` arrived, then as long again as
/// Alertmanager would take to send anything else; returns the alert names delivered.
async fn deliveries(inhibit: bool, alerts: &[Value], delivered: &[&str]) -> BTreeSet<String> {
    let webhook = Webhook::start().await;
    let alertmanager = Alertmanager::start(&alertmanager_config(&webhook, inhibit)).await;
    alertmanager.post(Value::Array(alerts.to_vec())).await;
    for alert in delivered {
        webhook
            .wait_for(alert, "firing", None, Duration::from_secs(20))
            .await;
    }
    // Every alert was posted at once, each in a group of its own (group_by alertname,
    // instance, mcp_server): a suppressed one would have come with the others, or one
    // group_interval later.
    tokio::time::sleep(GROUP_WAIT * 3).await;
    webhook
        .delivered()
        .into_iter()
        .map(|d| d.labels["alertname"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alertmanager_inhibits_as_the_example_says_and_not_without_its_rules() {
    let instance = "10.0.0.7:9464";
    let down_and_server = [
        firing(
            json!({"alertname": "MCPWatchDown", "job": "mcpwatch", "instance": instance, "severity": "critical"}),
        ),
        firing(
            json!({"alertname": "MCPServerUnavailable", "job": "mcpwatch", "instance": instance, "mcp_server": "demo", "severity": "critical"}),
        ),
    ];
    // MCPWatchAbsent and the aggregated alerts carry no instance.
    let absent_and_latency = [
        firing(json!({"alertname": "MCPWatchAbsent", "job": "mcpwatch", "severity": "critical"})),
        firing(
            json!({"alertname": "MCPToolLatencyHigh", "job": "mcpwatch", "mcp_server": "demo", "severity": "warning"}),
        ),
    ];
    let (down_inhibited, down_plain, absent_inhibited, absent_plain) = tokio::join!(
        deliveries(true, &down_and_server, &["MCPWatchDown"]),
        deliveries(
            false,
            &down_and_server,
            &["MCPWatchDown", "MCPServerUnavailable"]
        ),
        deliveries(true, &absent_and_latency, &["MCPWatchAbsent"]),
        deliveries(
            false,
            &absent_and_latency,
            &["MCPWatchAbsent", "MCPToolLatencyHigh"]
        ),
    );
    let names = |list: &[&str]| {
        list.iter()
            .map(|s| (*s).to_owned())
            .collect::<BTreeSet<_>>()
    };
    assert_eq!(down_inhibited, names(&["MCPWatchDown"]));
    assert_eq!(down_plain, names(&["MCPWatchDown", "MCPServerUnavailable"]));
    assert_eq!(absent_inhibited, names(&["MCPWatchAbsent"]));
    assert_eq!(
        absent_plain,
        names(&["MCPWatchAbsent", "MCPToolLatencyHigh"])
    );
}

// ---------------------------------------------------------------------------------
// The shipped files, checked by their own tools

#[test]
fn the_haproxy_config_is_valid_and_its_own_errors_are_json_in_our_shape() {
    require(HAPROXY);
    let mut command = Command::new(HAPROXY);
    command.arg("-c").arg("-f").arg(path(HAPROXY_CFG));
    for n in 1..=3 {
        command.env(format!("MCPWATCH_{n}"), format!("127.0.0.1:{}", 8700 + n));
    }
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "haproxy -c: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    // 502 and 503 are seen live in the fleet test; 504 (a replica silent for 330s) only here.
    let config = std::fs::read_to_string(path(HAPROXY_CFG)).unwrap();
    let kinds: BTreeSet<&str> = mcpwatch::ErrorKind::ALL
        .iter()
        .map(|k| k.as_str())
        .collect();
    let mut statuses = Vec::new();
    for line in config
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("http-error status"))
    {
        statuses.push(line.split_whitespace().nth(2).unwrap().to_owned());
        assert!(line.contains("content-type application/json"), "{line}");
        let body = line.split('\'').nth(1).expect("a single-quoted body");
        let body: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{line}: {e}"));
        let error = &body["error"];
        assert!(kinds.contains(error["type"].as_str().unwrap()), "{line}");
        assert!(
            error["message"].as_str().is_some_and(|m| m.len() > 20),
            "{line}"
        );
        assert!(error["may_have_run"].is_boolean(), "{line}");
    }
    assert_eq!(statuses, ["502", "503", "504"]);
    // Weight at least 100 (even shares of the ring), for every replica.
    let defaults = config
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("default-server "))
        .expect("default-server");
    let words: Vec<&str> = defaults.split_whitespace().collect();
    let weight: u32 = words[words.iter().position(|w| *w == "weight").unwrap() + 1]
        .parse()
        .unwrap();
    assert!(weight >= 100, "{defaults}");
    let servers: Vec<&str> = config
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("server "))
        .collect();
    assert_eq!(servers.len(), 3, "{servers:?}");
    assert!(
        servers.iter().all(|l| !l.contains("weight")),
        "no replica overrides the weight"
    );
}

#[test]
fn the_alertmanager_example_passes_amtool_and_routes_groups_and_inhibits_as_documented() {
    require(AMTOOL);
    let output = Command::new(AMTOOL)
        .args(["check-config"])
        .arg(path(ALERTMANAGER_EXAMPLE))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "amtool check-config: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let config = yaml(ALERTMANAGER_EXAMPLE);
    let route = &config["route"];
    assert_eq!(
        route["group_by"],
        json!(["alertname", "instance", "mcp_server"])
    );
    let receivers: BTreeSet<&str> = config["receivers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert!(r["webhook_configs"][0]["url"].is_string(), "{r}");
            r["name"].as_str().unwrap()
        })
        .collect();
    // Every severity the rules use has a route to a receiver that exists.
    for severity in ["critical", "warning"] {
        let to = route["routes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["matchers"].to_string().contains(severity))
            .and_then(|r| r["receiver"].as_str())
            .unwrap_or_else(|| panic!("no route for severity {severity}"));
        assert!(receivers.contains(to), "{to}");
    }
    let inhibit = &config["inhibit_rules"];
    assert_eq!(
        inhibit,
        &json!([
            {"source_matchers": ["alertname=\"MCPWatchDown\""], "target_matchers": ["job=\"mcpwatch\""], "equal": ["instance"]},
            {"source_matchers": ["alertname=\"MCPWatchAbsent\""], "target_matchers": ["job=\"mcpwatch\""]},
        ])
    );
}

// ---------------------------------------------------------------------------------
// agent.shutdown_delay

/// After SIGTERM with nothing in flight, the listeners stay open for `shutdown_delay`:
/// a load balancer that has not yet seen `/readyz` fail gets 503 `shutting_down` (which
/// it retries elsewhere), not a closed connection. Then the agent exits cleanly.
#[tokio::test]
async fn after_sigterm_an_idle_agent_answers_503_for_its_shutdown_delay_then_exits() {
    let mut agent = support::Agent::start(
        "[agent]\ndrain_timeout = \"10s\"\nshutdown_delay = \"2s\"\n[servers.demo]\ntransport = \"builtin\"\n",
        &[],
    )
    .await;
    let terminated = Instant::now();
    agent.terminate();
    // The signal takes a moment to land: from the first 503 of /readyz on, every
    // call is refused until the delay ends.
    let mut ready_status = 200;
    while ready_status != 503 && terminated.elapsed() < Duration::from_millis(1000) {
        ready_status = agent.admin("/readyz").await.0;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(ready_status, 503, "draining within a second of SIGTERM");
    let mut refused = 0;
    while terminated.elapsed() < Duration::from_millis(1500) {
        let call = json!({"server": "demo", "tool": "echo", "arguments": {"message": "late"}});
        let (status, body) = agent.post("/v1/tools/call", call, &[]).await;
        assert_eq!(
            (status, body["error"]["type"].as_str()),
            (503, Some("shutting_down"))
        );
        assert_eq!(body["error"]["may_have_run"], false);
        assert_eq!(agent.admin("/readyz").await.0, 503);
        refused += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(refused >= 5, "{refused}");
    assert_eq!(agent.wait_exit(Duration::from_secs(10)).await, Some(0));
    assert!(
        terminated.elapsed() >= Duration::from_secs(2),
        "exited {:?} after SIGTERM, before its shutdown_delay",
        terminated.elapsed()
    );
}

#[test]
fn a_shutdown_delay_longer_than_the_drain_timeout_is_refused() {
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        config.path(),
        "[agent]\ndrain_timeout = \"5s\"\nshutdown_delay = \"6s\"\n[servers.demo]\ntransport = \"builtin\"\n",
    )
    .unwrap();
    let output = Command::new(mcpwatch_bin())
        .args(["check-config", "--config"])
        .arg(config.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(64));
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(
        said.contains("agent.shutdown_delay: must not exceed agent.drain_timeout (5s)"),
        "{said}"
    );
}
