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
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Length of the `-<timestamp>` suffix of the suite's result folders.
const TIMESTAMP_LEN: usize = "-2026-11-21T12-23-24-105Z".len();

/// Longest the whole run (install on first use, build, 18 scenarios) may take.
const RUN_LIMIT: Duration = Duration::from_secs(170);

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
    let mut child = Command::new(root.join("scripts/conformance.sh"))
        .arg("core")
        .env("CONFORMANCE_PROFILE", "dev")
        // mcpwatch's own logs at their most verbose: still no token in them.
        .env("RUST_LOG", "info,mcpwatch=trace")
        .env("CONFORMANCE_RESULTS", results.path())
        .current_dir(&root)
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
        if started.elapsed() > RUN_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    let transcript = format!("--- stdout\n{out}\n--- stderr\n{err}");
    let Some(status) = status else {
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
