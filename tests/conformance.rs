//! The MCP conformance suite's `core` client scenarios against mcpwatch
//! (`examples/conformance_client.rs`, which uses the runtime), through
//! `scripts/conformance.sh`: the run must hold `conformance/baseline.yml`
//! (no new failure, no stale entry), the scenarios outside the baseline
//! (all 18 of core: initialization, tools, elicitation defaults, SSE retry, and
//! OAuth discovery, registration, PKCE, scopes, step-up, token endpoint auth)
//! must pass every check, and no access token may show in the client's logs.
//!
//! The script installs Node 22 and the suite from npm into `.test-deps/` on
//! first use and builds the client with cargo (debug profile here). Run it
//! under `cargo nextest run` (as `scripts/test.sh` does): `cargo test` holds the
//! build directory's lock while tests run, so the client build would wait for it.
//!
//! The suite's 32 server scenarios run twice against
//! `tests/servers/conformance_fixture.py`: directly (baseline
//! `conformance/server-direct.yml`) and through the gateway, `mcpwatch serve`
//! fronting the fixture at `/mcp/conf` (baseline `conformance/server-gateway.yml`).
//! Through the gateway no scenario may fail that passes directly, and the three
//! that judge the gateway's own HTTP transport must pass.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Length of the `-<timestamp>` suffix of the suite's result folders.
const TIMESTAMP_LEN: usize = "-2026-11-21T12-23-24-105Z".len();

/// Longest the whole run (install on first use, build, 18 scenarios) may take.
const RUN_LIMIT: Duration = Duration::from_secs(170);

/// Longest one server run (32 scenarios, about 2 s, one retry) may take.
const SERVER_RUN_LIMIT: Duration = Duration::from_secs(60);

/// The server scenarios that judge the gateway's own HTTP transport (Host and
/// Origin checks, SEP-1699 priming, concurrent POSTs), not the fixture behind it.
const GATEWAY_SCENARIOS: [&str; 3] = [
    "dns-rebinding-protection",
    "server-sse-polling",
    "server-sse-multiple-streams",
];

/// How one run of `scripts/conformance.sh` ended.
struct ScriptRun {
    /// Its exit status; `None` when it ran past its limit (and was killed).
    status: Option<ExitStatus>,
    stdout: String,
    /// Its stdout and stderr, for failure messages.
    transcript: String,
}

/// Runs `scripts/conformance.sh ARGS` from the repository root with `env`, its
/// results under `results`, bounded by `limit`: past it, its process group
/// (the script and the suite's node processes) is killed.
fn run_script(args: &[String], env: &[(&str, &str)], results: &Path, limit: Duration) -> ScriptRun {
    use std::os::unix::process::CommandExt;
    let root = support::root();
    let mut child = Command::new(root.join("scripts/conformance.sh"))
        .args(args)
        .envs(env.iter().copied())
        .env("CONFORMANCE_RESULTS", results)
        .current_dir(&root)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run scripts/conformance.sh");
    // Drain both pipes while waiting, within a bound.
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || std::io::read_to_string(stdout).unwrap_or_default());
    let err = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > limit {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let (stdout, stderr) = (out.join().unwrap(), err.join().unwrap());
    let transcript = format!("--- stdout\n{stdout}\n--- stderr\n{stderr}");
    ScriptRun {
        status,
        stdout,
        transcript,
    }
}

fn baseline_entries(root: &Path) -> BTreeSet<String> {
    let text = std::fs::read_to_string(root.join("conformance/baseline.yml")).unwrap();
    text.lines()
        .filter_map(|line| line.trim_start().strip_prefix("- "))
        .map(|entry| entry.split('#').next().unwrap().trim().to_owned())
        .collect()
}

#[test]
fn the_core_client_suite_holds_the_baseline() {
    let root = support::root();
    let results = tempfile::tempdir().unwrap();
    let run = run_script(
        &["core".to_owned()],
        &[
            ("CONFORMANCE_PROFILE", "dev"),
            // mcpwatch's own logs at their most verbose: still no token in them.
            ("RUST_LOG", "info,mcpwatch=trace"),
        ],
        results.path(),
        RUN_LIMIT,
    );
    let (out, transcript) = (run.stdout, run.transcript);
    let Some(status) = run.status else {
        panic!("scripts/conformance.sh core ran longer than {RUN_LIMIT:?}\n{transcript}");
    };
    assert_ne!(
        status.code(),
        Some(2),
        "the suite could not be set up (Node 22 / the suite from npm, or the client build)\n{transcript}"
    );
    assert!(
        status.success(),
        "the core suite does not hold conformance/baseline.yml (a new failure or a stale entry)\n{transcript}"
    );
    assert!(out.contains("Baseline check passed"), "{transcript}");

    // Every scenario that ran and is not in the baseline passed all its checks.
    let baseline = baseline_entries(&root);
    let mut passed = BTreeSet::new();
    let mut scenarios = 0;
    let mut authorized = 0;
    for checks in walk(&results.path().join("core")) {
        scenarios += 1;
        for output in ["stdout.txt", "stderr.txt"] {
            let text = std::fs::read_to_string(checks.with_file_name(output)).unwrap_or_default();
            // The suite's authorization servers issue `test-token-*` / `cc-token-*`.
            assert!(
                !text.contains("test-token-") && !text.contains("cc-token-"),
                "an access token in the client's {output} of {}",
                checks.display()
            );
            authorized += text.matches("OAuth authorization complete").count();
        }
        let scenario_dir = checks.parent().unwrap();
        let relative = scenario_dir
            .strip_prefix(results.path().join("core"))
            .unwrap()
            .to_string_lossy()
            .into_owned();
        // `<scenario>-<timestamp>` (`-2026-11-21T12-23-24-105Z`), `auth/` a folder.
        let scenario = relative
            .get(..relative.len().saturating_sub(TIMESTAMP_LEN))
            .unwrap_or_default()
            .to_owned();
        let text = std::fs::read_to_string(&checks).unwrap();
        let checks: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
        let failed: Vec<&serde_json::Value> = checks
            .iter()
            .filter(|c| matches!(c["status"].as_str(), Some("FAILURE" | "WARNING")))
            .collect();
        if baseline.contains(&scenario) {
            continue;
        }
        assert!(
            failed.is_empty(),
            "{relative}: not in the baseline, yet {failed:?}"
        );
        assert!(
            checks.iter().any(|c| c["status"] == "SUCCESS"),
            "{relative}: no successful check"
        );
        passed.insert(scenario);
    }
    assert_eq!(
        scenarios, 18,
        "the core suite's scenarios ran\n{transcript}"
    );
    assert!(
        authorized >= 14,
        "the auth scenarios' logs were read ({authorized} authorizations logged)"
    );
    for scenario in [
        "initialize",
        "tools_call",
        "elicitation-sep1034-client-defaults",
        "sse-retry",
        "auth/metadata-default",
        "auth/basic-cimd",
        "auth/scope-step-up",
        "auth/scope-retry-limit",
        "auth/token-endpoint-auth-basic",
        "auth/pre-registration",
    ] {
        assert!(
            passed.contains(scenario),
            "{scenario} did not pass: passed {passed:?}\n{transcript}"
        );
    }
}

/// `tests/servers/conformance_fixture.py` on 127.0.0.1:`port`; its process
/// group is killed on drop.
async fn conformance_fixture(port: u16) -> support::ServerProcess {
    use std::os::unix::process::CommandExt;
    let mut command = Command::new(support::python());
    command
        .arg(support::root().join("tests/servers/conformance_fixture.py"))
        .arg("--port")
        .arg(port.to_string())
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let fixture = support::ServerProcess {
        child: command
            .spawn()
            .expect("cannot start the conformance fixture"),
        port,
        log: None,
    };
    support::wait_port(port, Duration::from_secs(30)).await;
    fixture
}

/// One server run of the whole suite against `url`, with `baseline` (the
/// script's default, conformance/server-direct.yml, when `None`); results in
/// `results/server-{baseline name}-all/`.
async fn server_run(url: &str, baseline: Option<&str>, results: &Path) -> ScriptRun {
    let mut args = vec!["--server".to_owned(), url.to_owned()];
    if let Some(baseline) = baseline {
        args.extend(["--server-baseline".to_owned(), baseline.to_owned()]);
    }
    let results = results.to_owned();
    tokio::task::spawn_blocking(move || run_script(&args, &[], &results, SERVER_RUN_LIMIT))
        .await
        .unwrap()
}

/// The checks of every scenario of one server run, by scenario name.
fn server_checks(run_dir: &Path) -> BTreeMap<String, Vec<Value>> {
    walk(run_dir)
        .into_iter()
        .map(|checks| {
            // `server-<scenario>-<timestamp>`
            let folder = checks
                .parent()
                .unwrap()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let scenario = folder
                .strip_prefix("server-")
                .and_then(|rest| rest.get(..rest.len().saturating_sub(TIMESTAMP_LEN)))
                .unwrap_or_default()
                .to_owned();
            let text = std::fs::read_to_string(&checks).unwrap();
            (scenario, serde_json::from_str(&text).unwrap())
        })
        .collect()
}

/// True if no check failed or warned (the suite counts a WARNING as a failure).
fn passed(checks: &[Value]) -> bool {
    !checks
        .iter()
        .any(|c| matches!(c["status"].as_str(), Some("FAILURE" | "WARNING")))
}

#[tokio::test]
async fn the_server_suite_holds_its_baselines_directly_and_through_the_gateway() {
    let port = support::free_port();
    let _fixture = conformance_fixture(port).await;
    let results = tempfile::tempdir().unwrap();
    let fixture_url = format!("http://127.0.0.1:{port}/mcp");

    let direct = server_run(&fixture_url, None, results.path()).await;
    assert!(
        direct.status.is_some_and(|s| s.success()),
        "directly, the suite does not hold conformance/server-direct.yml\n{}",
        direct.transcript
    );

    // On 127.0.0.1 without agent.token, fronting the fixture.
    let agent = support::Agent::start(
        &format!("[servers.conf]\ntransport = \"http\"\nurl = \"{fixture_url}\"\n"),
        &[],
    )
    .await;
    let gateway_url = format!("{}/mcp/conf", agent.api);
    let gateway = server_run(
        &gateway_url,
        Some("conformance/server-gateway.yml"),
        results.path(),
    )
    .await;
    assert!(
        gateway.status.is_some_and(|s| s.success()),
        "through the gateway, the suite does not hold conformance/server-gateway.yml\n{}",
        gateway.transcript
    );

    let direct = server_checks(&results.path().join("server-direct-all"));
    let gateway = server_checks(&results.path().join("server-gateway-all"));
    assert_eq!(
        direct.len(),
        32,
        "every scenario ran directly: {:?}",
        direct.keys()
    );
    assert_eq!(
        gateway.keys().collect::<Vec<_>>(),
        direct.keys().collect::<Vec<_>>(),
        "the same scenarios ran through the gateway"
    );
    for (scenario, checks) in &direct {
        if passed(checks) {
            assert!(
                passed(&gateway[scenario]),
                "{scenario} passes directly but not through the gateway: {:?}",
                gateway[scenario]
            );
        }
    }
    for scenario in GATEWAY_SCENARIOS {
        let checks = &gateway[scenario];
        assert!(
            passed(checks) && checks.iter().any(|c| c["status"] == "SUCCESS"),
            "{scenario} judges the gateway itself and must pass through it: {checks:?}"
        );
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(walk(&path));
        } else if path.file_name().is_some_and(|n| n == "checks.json") {
            found.push(path);
        }
    }
    found
}
