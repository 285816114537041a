//! The operations kit (`dashboards/`, `alerts/`, `deploy/`) proven against real pieces:
//! promtool's checks and unit tests, a dashboard lint, the metric and label names the
//! agent really exports, a real Prometheus scraping a real agent (and an application
//! embedding the library) with the shipped rules loaded, and offline checks of the
//! container recipe, the compose stack and the Kubernetes manifests.
//!
//! Needs Debian's `prometheus` package (`/usr/bin/prometheus`, `/usr/bin/promtool`) and
//! the project venv's Python with PyYAML (to read YAML: the crate has no YAML parser). `kubectl kustomize`
//! is used when kubectl is installed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Agent, ServerProcess, free_port, mcpwatch_bin, root, wait_port};

const PROMTOOL: &str = "/usr/bin/promtool";
const PROMETHEUS: &str = "/usr/bin/prometheus";
const RULES: &str = "alerts/mcpwatch.rules.yml";
const DASHBOARD_UIDS: [&str; 2] = ["mcpwatch-overview", "mcpwatch-server"];

// ---------------------------------------------------------------------------------
// Files

fn path(relative: &str) -> PathBuf {
    root().join(relative)
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(path(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

/// Files in a directory of the repository whose names end with `suffix`, sorted.
fn files(dir: &str, suffix: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(path(dir))
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.to_string_lossy().ends_with(suffix))
        .collect();
    found.sort();
    assert!(!found.is_empty(), "no *{suffix} in {dir}");
    found
}

/// Every file under `dir` (recursively) whose name ends with one of `suffixes`.
fn files_recursive(dir: &Path, suffixes: &[&str], out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let p = entry.path();
        if p.is_dir() {
            files_recursive(&p, suffixes, out);
        } else if suffixes.iter().any(|s| p.to_string_lossy().ends_with(s)) {
            out.push(p);
        }
    }
}

/// Every document of a YAML file, as JSON values (PyYAML's safe loader).
fn yaml_docs(file: &Path) -> Vec<Value> {
    let output = Command::new(support::python())
        .arg("-c")
        .arg("import json, sys, yaml\njson.dump(list(yaml.safe_load_all(open(sys.argv[1]))), sys.stdout)")
        .arg(file)
        .output()
        .expect("the venv's python (scripts/install-test-deps.sh) reads YAML");
    assert!(
        output.status.success(),
        "{} is not valid YAML (or python3 lacks PyYAML): {}",
        file.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let docs: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap();
    docs.into_iter().filter(|d| !d.is_null()).collect()
}

/// The one document of a YAML file.
fn yaml(relative: &str) -> Value {
    let mut docs = yaml_docs(&path(relative));
    assert_eq!(docs.len(), 1, "{relative}: one YAML document expected");
    docs.remove(0)
}

fn dashboards() -> Vec<(PathBuf, Value)> {
    files("dashboards", ".json")
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{} is not JSON: {e}", p.display()));
            (p, value)
        })
        .collect()
}

/// Every panel of a dashboard, rows' nested panels included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        out.push(panel);
        if let Some(nested) = panel["panels"].as_array() {
            out.extend(nested.iter());
        }
    }
    out
}

fn is_row(panel: &Value) -> bool {
    panel["type"] == "row"
}

/// Every rule of a rules file (recording and alerting), with its group name.
fn rules_of(groups: &Value) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for group in groups["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            out.push((group["name"].as_str().unwrap().to_owned(), rule.clone()));
        }
    }
    out
}

fn shipped_rules() -> Vec<Value> {
    rules_of(&yaml(RULES)).into_iter().map(|(_, r)| r).collect()
}

// ---------------------------------------------------------------------------------
// A small PromQL scanner: the series selectors, the grouping labels, the ranges.

#[derive(Debug, Clone, PartialEq)]
struct Matcher {
    label: String,
    op: String,
    value: String,
}

#[derive(Debug, Clone)]
struct Selector {
    name: String,
    matchers: Vec<Matcher>,
}

impl Selector {
    /// The selector alone, as an instant-vector query.
    fn promql(&self) -> String {
        let matchers: Vec<String> = self
            .matchers
            .iter()
            .map(|m| {
                format!(
                    "{}{}\"{}\"",
                    m.label,
                    m.op,
                    m.value.replace('\\', "\\\\").replace('"', "\\\"")
                )
            })
            .collect();
        format!("{}{{{}}}", self.name, matchers.join(", "))
    }

    fn matcher(&self, label: &str) -> Option<&Matcher> {
        self.matchers.iter().find(|m| m.label == label)
    }
}

#[derive(Debug, Default)]
struct Scan {
    selectors: Vec<Selector>,
    /// Labels named in by/without/on/ignoring/group_left/group_right.
    grouping: Vec<String>,
    /// The text inside every `[...]`.
    ranges: Vec<String>,
}

/// Words that are never metric names (aggregations, keywords, number literals).
const NOT_METRICS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "atan2",
    "inf",
    "nan",
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
];

fn scan_promql(expr: &str) -> Scan {
    let chars: Vec<char> = expr.chars().collect();
    let mut scan = Scan::default();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if matches!(c, '"' | '\'' | '`') {
            i = skip_string(&chars, i).1;
        } else if c == '#' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '[' {
            let start = i + 1;
            while i < chars.len() && chars[i] != ']' {
                i += 1;
            }
            scan.ranges.push(chars[start..i].iter().collect());
            i += 1;
        } else if c == '{' {
            let (matchers, next) = parse_matchers(&chars, i);
            let name = matchers
                .iter()
                .find(|m| m.label == "__name__")
                .map(|m| m.value.clone())
                .unwrap_or_default();
            scan.selectors.push(Selector { name, matchers });
            i = next;
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || matches!(chars[i], '_' | ':'))
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut j = i;
            while j < chars.len() && chars[j].is_whitespace() {
                j += 1;
            }
            let next = chars.get(j).copied();
            let lower = word.to_ascii_lowercase();
            if matches!(
                lower.as_str(),
                "by" | "without" | "on" | "ignoring" | "group_left" | "group_right"
            ) {
                if next == Some('(') {
                    let close = (j..chars.len()).find(|&k| chars[k] == ')').unwrap();
                    let list: String = chars[j + 1..close].iter().collect();
                    scan.grouping.extend(
                        list.split(',')
                            .map(str::trim)
                            .filter(|l| !l.is_empty())
                            .map(str::to_owned),
                    );
                    i = close + 1;
                }
            } else if NOT_METRICS.contains(&lower.as_str()) || next == Some('(') {
                // an aggregation, a function or a keyword
            } else {
                let mut selector = Selector {
                    name: word,
                    matchers: Vec::new(),
                };
                if next == Some('{') {
                    let (matchers, after) = parse_matchers(&chars, j);
                    selector.matchers = matchers;
                    i = after;
                }
                scan.selectors.push(selector);
            }
        } else {
            i += 1;
        }
    }
    scan
}

/// Reads the quoted string at `chars[start]`: (its value, the index after it).
fn skip_string(chars: &[char], start: usize) -> (String, usize) {
    let quote = chars[start];
    let mut value = String::new();
    let mut i = start + 1;
    while i < chars.len() && chars[i] != quote {
        if chars[i] == '\\' && quote != '`' && i + 1 < chars.len() {
            i += 1;
        }
        value.push(chars[i]);
        i += 1;
    }
    (value, i + 1)
}

/// Parses `{label op "value", ...}` from the `{` at `open`: (matchers, index after `}`).
fn parse_matchers(chars: &[char], open: usize) -> (Vec<Matcher>, usize) {
    let mut out = Vec::new();
    let mut i = open + 1;
    loop {
        while i < chars.len() && (chars[i].is_whitespace() || chars[i] == ',') {
            i += 1;
        }
        assert!(i < chars.len(), "unterminated selector");
        if chars[i] == '}' {
            return (out, i + 1);
        }
        let start = i;
        while chars[i].is_ascii_alphanumeric() || chars[i] == '_' {
            i += 1;
        }
        let label: String = chars[start..i].iter().collect();
        while chars[i].is_whitespace() {
            i += 1;
        }
        let op = if matches!(chars[i], '!' | '=') && matches!(chars[i + 1], '=' | '~') {
            i += 2;
            chars[i - 2..i].iter().collect::<String>()
        } else {
            i += 1;
            "=".to_owned()
        };
        while chars[i].is_whitespace() {
            i += 1;
        }
        let (value, after) = skip_string(chars, i);
        i = after;
        out.push(Matcher { label, op, value });
    }
}

/// The labels a legend format or an annotation refers to: `{{x}}`, `{{ $labels.x }}`.
fn template_labels(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let Some(end) = rest[start..].find("}}") else {
            break;
        };
        let inner = rest[start + 2..start + end].trim();
        if let Some(label) = inner.strip_prefix("$labels.") {
            out.push(label.split_whitespace().next().unwrap().to_owned());
        } else if inner.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            out.push(inner.to_owned());
        }
        rest = &rest[start + end + 2..];
    }
    out
}

/// Replaces Grafana variables (`$name` and `${name}`), longest names first.
fn substitute(expr: &str, vars: &[(&str, &str)]) -> String {
    let mut vars = vars.to_vec();
    vars.sort_by_key(|(name, _)| std::cmp::Reverse(name.len()));
    let mut out = expr.to_owned();
    for (name, value) in vars {
        out = out.replace(&format!("${{{name}}}"), value);
        out = out.replace(&format!("${name}"), value);
    }
    out
}

#[test]
fn the_promql_scanner_finds_selectors_groupings_and_ranges() {
    let scan = scan_promql(
        r#"sum by (job, mcp_server) (rate(a_total{job="x", e!~"c|d"}[5m])) / ignoring (e) group_left () max(b offset 15m) or vector(0) and on(job) histogram_quantile(0.99, sum by (le) (rate(c_bucket[$__rate_interval]))) > 4 * 3600 unless job_x:y:ratio_rate5m"#,
    );
    let names: Vec<&str> = scan.selectors.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["a_total", "b", "c_bucket", "job_x:y:ratio_rate5m"]);
    assert_eq!(
        scan.selectors[0].matcher("e").unwrap(),
        &Matcher {
            label: "e".into(),
            op: "!~".into(),
            value: "c|d".into()
        }
    );
    assert_eq!(
        scan.grouping,
        ["job", "mcp_server", "e", "job", "le"].map(String::from)
    );
    assert_eq!(scan.ranges, ["5m", "$__rate_interval"].map(String::from));
    assert_eq!(
        template_labels("{{mcp_server}} / {{ $labels.instance }} {{ $value | humanize }}"),
        ["mcp_server", "instance"].map(String::from)
    );
}

// ---------------------------------------------------------------------------------
// promtool

fn promtool(args: &[&str]) -> (bool, String) {
    assert!(
        Path::new(PROMTOOL).exists(),
        "{PROMTOOL} is missing: apt-get install prometheus (scripts/install-test-deps.sh does)"
    );
    let output = Command::new(PROMTOOL)
        .args(args)
        .current_dir(root())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[test]
fn promtool_checks_every_rules_file() {
    // Every .yml there but the Alertmanager example (amtool checks it: tests/scaleout.rs).
    let rule_files: Vec<PathBuf> = files("alerts", ".yml")
        .into_iter()
        .filter(|f| !f.ends_with("alertmanager.example.yml"))
        .collect();
    for file in &rule_files {
        let (ok, text) = promtool(&["check", "rules", file.to_str().unwrap()]);
        eprintln!("{text}");
        assert!(ok, "promtool check rules {}: {text}", file.display());
        assert!(text.contains("SUCCESS"), "{text}");
    }
    // The Kubernetes PrometheusRule carries the same rules; promtool checks its spec too.
    let rule = &yaml_docs(&path("deploy/kubernetes/base/prometheusrule.yaml"))[0];
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("spec.json");
    std::fs::write(&spec, serde_json::to_string(&rule["spec"]).unwrap()).unwrap();
    let (ok, text) = promtool(&["check", "rules", spec.to_str().unwrap()]);
    assert!(
        ok,
        "promtool check rules on the PrometheusRule spec: {text}"
    );
}

#[test]
fn promtool_unit_tests_pass_and_show_every_alert_firing_and_quiet() {
    let tests = files("alerts/tests", ".yml");
    let mut args = vec!["test", "rules"];
    let names: Vec<String> = tests.iter().map(|p| p.display().to_string()).collect();
    args.extend(names.iter().map(String::as_str));
    let (ok, text) = promtool(&args);
    eprintln!("{text}");
    assert!(ok, "promtool test rules: {text}");
    assert!(!text.contains("FAILED"), "{text}");

    // Every alert of the rules file has a test where it fires and one where it stays quiet.
    let mut fires = BTreeSet::new();
    let mut quiet = BTreeSet::new();
    for file in &tests {
        let doc = &yaml_docs(file)[0];
        let rule_files: Vec<&str> = doc["rule_files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_str().unwrap())
            .collect();
        assert_eq!(rule_files, ["../mcpwatch.rules.yml"], "{}", file.display());
        for test in doc["tests"].as_array().unwrap() {
            for case in test["alert_rule_test"].as_array().into_iter().flatten() {
                let name = case["alertname"].as_str().unwrap().to_owned();
                if case["exp_alerts"].as_array().is_some_and(|a| !a.is_empty()) {
                    fires.insert(name);
                } else {
                    quiet.insert(name);
                }
            }
        }
    }
    let alerts: BTreeSet<String> = shipped_rules()
        .iter()
        .filter_map(|r| r["alert"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(alerts.len(), 10, "{alerts:?}");
    for alert in &alerts {
        assert!(
            fires.contains(alert),
            "no promtool test shows {alert} firing"
        );
        assert!(
            quiet.contains(alert),
            "no promtool test shows {alert} quiet"
        );
    }
}

#[test]
fn every_alert_has_severity_summary_description_and_a_runbook_section() {
    let runbook = read("alerts/runbook.md");
    let anchors: BTreeSet<String> = runbook
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .map(|h| {
            h.trim()
                .to_lowercase()
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ' '))
                .map(|c| if c == ' ' { '-' } else { c })
                .collect()
        })
        .collect();
    let issue_alerts = [
        "MCPSessionUnclosed",
        "MCPToolErrorBudgetBurn",
        "MCPServerUnavailable",
        "MCPToolLatencyHigh",
        "MCPPoolNearCapacity",
        "MCPSessionsPilingUp",
        "MCPWatchFileDescriptorsGrowing",
        "MCPWatchDown",
        "MCPWatchGatewaySessionsPileUp",
    ];
    let rules = shipped_rules();
    for name in issue_alerts {
        assert!(
            rules.iter().any(|r| r["alert"] == name),
            "the issue's alert {name} is missing"
        );
    }
    for rule in rules.iter().filter(|r| r.get("alert").is_some()) {
        let name = rule["alert"].as_str().unwrap();
        let severity = rule["labels"]["severity"].as_str().unwrap_or_default();
        assert!(
            matches!(severity, "critical" | "warning" | "info"),
            "{name}: severity {severity:?}"
        );
        for key in ["summary", "description", "runbook_url"] {
            assert!(
                rule["annotations"][key]
                    .as_str()
                    .is_some_and(|s| s.len() > 10),
                "{name}: annotation {key}"
            );
        }
        let url = rule["annotations"]["runbook_url"].as_str().unwrap();
        let (page, anchor) = url.split_once('#').unwrap();
        assert!(page.ends_with("/alerts/runbook.md"), "{name}: {url}");
        assert_eq!(anchor, name.to_lowercase(), "{name}: {url}");
        assert!(
            anchors.contains(anchor),
            "runbook.md has no section {anchor}"
        );
        let section = runbook
            .split("\n## ")
            .find(|s| s.starts_with(name))
            .unwrap();
        for part in ["**Meaning.**", "**Confirm.**", "**What to do.**"] {
            assert!(section.contains(part), "runbook {name}: no {part}");
        }
    }
}

// ---------------------------------------------------------------------------------
// Dashboard lint (grafana/dashboard-linter's rules, which is not installable here)

#[test]
fn dashboards_follow_the_conventions() {
    let all = dashboards();
    let uids: Vec<&str> = all
        .iter()
        .map(|(_, d)| d["uid"].as_str().unwrap())
        .collect();
    assert_eq!(
        uids.iter().copied().collect::<BTreeSet<_>>(),
        DASHBOARD_UIDS.into_iter().collect::<BTreeSet<_>>(),
        "stable uids"
    );
    let mut checked_targets = 0;
    for (file, dashboard) in &all {
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        let uid = dashboard["uid"].as_str().unwrap();
        assert_eq!(name, format!("{uid}.json"), "file named after its uid");
        assert!(uid.len() <= 40 && uid.chars().all(|c| c.is_ascii_lowercase() || c == '-'));
        assert!(
            dashboard.get("id").is_none_or(Value::is_null),
            "{name}: no fixed id"
        );
        assert!(
            dashboard["title"]
                .as_str()
                .is_some_and(|t| t.starts_with("mcpwatch"))
        );
        assert!(
            dashboard["description"]
                .as_str()
                .is_some_and(|t| !t.is_empty())
        );
        assert!(
            dashboard["schemaVersion"].as_u64().is_some_and(|v| v >= 36),
            "{name}: schemaVersion"
        );
        assert!(
            dashboard["tags"]
                .as_array()
                .unwrap()
                .contains(&json!("mcpwatch"))
        );

        // Template variables: exactly one datasource variable, job and instance variables.
        let vars = dashboard["templating"]["list"].as_array().unwrap();
        let datasources: Vec<&Value> = vars.iter().filter(|v| v["type"] == "datasource").collect();
        assert_eq!(datasources.len(), 1, "{name}: one datasource variable");
        assert_eq!(datasources[0]["name"], "datasource");
        assert_eq!(datasources[0]["label"], "Data Source");
        assert_eq!(datasources[0]["query"], "prometheus");
        let var_names: BTreeSet<&str> = vars.iter().map(|v| v["name"].as_str().unwrap()).collect();
        for required in ["job", "instance", "server"] {
            assert!(var_names.contains(required), "{name}: variable {required}");
        }
        for var in vars.iter().filter(|v| v["type"] == "query") {
            assert_eq!(
                var["datasource"]["uid"], "${datasource}",
                "{name}: variable {}",
                var["name"]
            );
            assert!(
                var["query"]["query"]
                    .as_str()
                    .is_some_and(|q| q.starts_with("label_values("))
            );
        }

        // Panels.
        let mut ids = BTreeSet::new();
        let mut cells: Vec<(u64, u64, u64, u64, String)> = Vec::new();
        for panel in panels(dashboard) {
            let title = panel["title"].as_str().unwrap_or_default().to_owned();
            assert!(!title.is_empty(), "{name}: a panel without a title");
            assert!(
                ids.insert(panel["id"].as_u64().unwrap()),
                "{name}: duplicate panel id at {title}"
            );
            let grid = &panel["gridPos"];
            let (x, y, w, h) = (
                grid["x"].as_u64().unwrap(),
                grid["y"].as_u64().unwrap(),
                grid["w"].as_u64().unwrap(),
                grid["h"].as_u64().unwrap(),
            );
            assert!(w > 0 && h > 0 && x + w <= 24, "{name}/{title}: gridPos");
            for (ox, oy, ow, oh, other) in &cells {
                let overlap = x < ox + ow && *ox < x + w && y < oy + oh && *oy < y + h;
                assert!(!overlap, "{name}: {title} overlaps {other}");
            }
            cells.push((x, y, w, h, title.clone()));
            if is_row(panel) {
                continue;
            }
            assert!(
                panel["description"].as_str().is_some_and(|d| d.len() > 20),
                "{name}/{title}: description"
            );
            assert!(
                panel["fieldConfig"]["defaults"]["unit"]
                    .as_str()
                    .is_some_and(|u| !u.is_empty()),
                "{name}/{title}: unit"
            );
            assert_eq!(
                panel["datasource"],
                json!({"type": "prometheus", "uid": "${datasource}"}),
                "{name}/{title}"
            );
            let targets = panel["targets"].as_array().unwrap();
            assert!(!targets.is_empty(), "{name}/{title}: no query");
            for target in targets {
                checked_targets += 1;
                assert_eq!(target["datasource"], panel["datasource"], "{name}/{title}");
                let expr = target["expr"].as_str().unwrap();
                let scan = scan_promql(expr);
                assert!(!scan.selectors.is_empty(), "{name}/{title}: {expr}");
                for range in &scan.ranges {
                    assert_eq!(
                        range, "$__rate_interval",
                        "{name}/{title}: ranges use $__rate_interval: {expr}"
                    );
                }
                for selector in &scan.selectors {
                    let recorded = selector.name.contains(':');
                    let job = selector.matcher("job");
                    assert!(
                        job.is_some_and(|m| m.op == "=~" && m.value == "$job"),
                        "{name}/{title}: job=~\"$job\" in {}",
                        selector.name
                    );
                    if !recorded {
                        assert!(
                            selector
                                .matcher("instance")
                                .is_some_and(|m| m.op == "=~" && m.value == "$instance"),
                            "{name}/{title}: instance=~\"$instance\" in {}",
                            selector.name
                        );
                    }
                    if selector.name.starts_with("mcp_client_") || recorded {
                        let server = selector.matcher("mcp_server");
                        let expected = if uid == "mcpwatch-server" {
                            ("=", "$server")
                        } else {
                            ("=~", "$server")
                        };
                        assert!(
                            server.is_some_and(|m| (m.op.as_str(), m.value.as_str()) == expected),
                            "{name}/{title}: mcp_server{}\"{}\" in {}",
                            expected.0,
                            expected.1,
                            selector.name
                        );
                    }
                }
            }
            // Links between the dashboards point at existing uids.
            for link in panel["fieldConfig"]["defaults"]["links"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let url = link["url"].as_str().unwrap();
                let target = url.strip_prefix("/d/").unwrap().split('/').next().unwrap();
                assert!(
                    DASHBOARD_UIDS.contains(&target),
                    "{name}/{title}: link to {url}"
                );
            }
        }
        for link in dashboard["links"].as_array().unwrap() {
            if let Some(url) = link["url"].as_str().filter(|u| u.starts_with("/d/")) {
                let target = url.strip_prefix("/d/").unwrap().split('/').next().unwrap();
                assert!(DASHBOARD_UIDS.contains(&target), "{name}: link to {url}");
            }
        }
    }
    eprintln!(
        "linted {checked_targets} panel queries in {} dashboards",
        all.len()
    );

    // The overview shows what the issue lists.
    let overview = &all
        .iter()
        .find(|(_, d)| d["uid"] == "mcpwatch-overview")
        .unwrap()
        .1;
    let exprs: String = panels(overview)
        .iter()
        .flat_map(|p| p["targets"].as_array().into_iter().flatten())
        .map(|t| t["expr"].as_str().unwrap().to_owned() + "\n")
        .collect();
    for needle in [
        "mcp_client_sessions_active",
        "mcp_client_sessions_opened_total",
        "mcp_client_sessions_closed_total",
        "sum by (mcp_server, gen_ai_tool_name)",
        "sum by (error_type)",
        "histogram_quantile(0.50",
        "histogram_quantile(0.95",
        "histogram_quantile(0.99",
        "mcp_client_sessions_unclosed_total",
        "mcp_client_retries_total",
        "mcp_client_session_recoveries_total",
        "mcp_client_circuit_state",
        "mcp_client_inflight_requests",
        "process_open_fds",
        "process_resident_memory_bytes",
    ] {
        assert!(exprs.contains(needle), "the overview lacks {needle}");
    }

    // Both dashboards show the gateway (issue 13).
    for (file, dashboard) in &all {
        let exprs: String = panels(dashboard)
            .iter()
            .flat_map(|p| p["targets"].as_array().into_iter().flatten())
            .map(|t| t["expr"].as_str().unwrap().to_owned() + "\n")
            .collect();
        for needle in [
            "mcpwatch_gateway_sessions_active",
            "mcpwatch_gateway_sessions_closed_total",
            "reason=\"idle_timeout\"",
            "mcp_server_operation_duration_seconds_count",
            "histogram_quantile(0.99, sum by (mcp_method_name, le) (rate(mcp_server_operation_duration_seconds_bucket",
            "histogram_quantile(0.99, sum by (reason, le) (rate(mcp_server_session_duration_seconds_bucket",
        ] {
            assert!(
                exprs.contains(needle),
                "{} lacks the gateway's {needle}",
                file.display()
            );
        }
    }
}

// ---------------------------------------------------------------------------------
// What the agent really exports

/// Metric family name -> label names, from a text exposition. Histograms give their
/// `_bucket`, `_count` and `_sum` series names.
fn exposition_families(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (name, labels) = match line.find('{') {
            Some(open) => {
                let close = line.rfind('}').unwrap();
                (&line[..open], &line[open + 1..close])
            }
            None => (line.split_whitespace().next().unwrap(), ""),
        };
        let entry = out.entry(name.to_owned()).or_default();
        let chars: Vec<char> = format!("{{{labels}}}").chars().collect();
        for matcher in parse_matchers(&chars, 0).0 {
            entry.insert(matcher.label);
        }
    }
    out
}

/// Every selector of every dashboard query, variable query and rule expression, with
/// where it comes from; and the rules' recorded names.
fn all_selectors() -> (Vec<(String, Selector)>, BTreeSet<String>) {
    let mut out = Vec::new();
    for (file, dashboard) in dashboards() {
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        for panel in panels(&dashboard) {
            for target in panel["targets"].as_array().into_iter().flatten() {
                for selector in scan_promql(target["expr"].as_str().unwrap()).selectors {
                    out.push((format!("{name}/{}", panel["title"]), selector));
                }
            }
        }
        for var in dashboard["templating"]["list"].as_array().unwrap() {
            if let Some(query) = var["query"]["query"].as_str() {
                for selector in scan_promql(label_values_selector(query).0).selectors {
                    out.push((format!("{name}/${}", var["name"]), selector));
                }
            }
        }
    }
    let mut recorded = BTreeSet::new();
    for rule in shipped_rules() {
        let label = rule["alert"]
            .as_str()
            .or(rule["record"].as_str())
            .unwrap()
            .to_owned();
        if let Some(record) = rule["record"].as_str() {
            recorded.insert(record.to_owned());
        }
        for selector in scan_promql(rule["expr"].as_str().unwrap()).selectors {
            out.push((format!("{RULES}/{label}"), selector));
        }
    }
    (out, recorded)
}

/// `label_values(SELECTOR, label)` -> (SELECTOR, label).
fn label_values_selector(query: &str) -> (&str, &str) {
    let inner = query
        .strip_prefix("label_values(")
        .and_then(|q| q.strip_suffix(')'))
        .unwrap_or_else(|| panic!("not label_values(): {query}"));
    let comma = inner.rfind(',').unwrap();
    (inner[..comma].trim(), inner[comma + 1..].trim())
}

/// One sample of a text exposition: name, labels, value.
type Sample = (String, BTreeMap<String, String>, f64);

/// Every sample of a text exposition (label values without escapes, as ours are).
fn exposition_samples(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap();
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => (name, rest.strip_suffix('}').unwrap()),
            None => (series, ""),
        };
        let labels = labels
            .split("\",")
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (key, value) = pair.split_once("=\"").unwrap();
                (key.to_owned(), value.trim_end_matches('"').to_owned())
            })
            .collect();
        out.push((name.to_owned(), labels, value.parse().unwrap()));
    }
    out
}

/// `promtool check metrics` on an exposition: (clean, what it said).
fn promtool_check_metrics(exposition: &str) -> (bool, String) {
    use std::io::Write;
    assert!(Path::new(PROMTOOL).exists(), "{PROMTOOL} is missing");
    let mut child = Command::new(PROMTOOL)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(exposition.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), said)
}

/// Defect 5 of issue 12: before any call, every family of DESIGN §5 and §11 is in
/// `/metrics` with the series dashboards and alerts read, at 0, for every server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_agent_exports_every_family_at_zero() {
    let config = format!(
        "[servers.demo]\ntransport = \"builtin\"\n\
         [servers.demo-stdio]\ntransport = \"stdio\"\ncommand = \"{}\"\nargs = [\"demo-server\", \"--stdio\"]\n\
         [servers.down]\ntransport = \"http\"\nurl = \"http://127.0.0.1:{}/mcp\"\n",
        mcpwatch_bin(),
        free_port()
    );
    let agent = Agent::start(&config, &[]).await;
    let (status, text) = agent.admin("/metrics").await;
    assert_eq!(status, 200);
    let samples = exposition_samples(&text);
    let at_zero = |name: &str, labels: &[(&str, &str)]| {
        let found = samples.iter().find(|(n, l, _)| {
            n == name
                && l.len() == labels.len()
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        });
        match found {
            Some((_, _, value)) => assert_eq!(*value, 0.0, "{name} {labels:?}"),
            None => panic!("a fresh agent lacks {name} {labels:?}:\n{text}"),
        }
    };
    for (server, transport) in [("demo", "inproc"), ("demo-stdio", "pipe"), ("down", "tcp")] {
        let on = |extra: &[(&'static str, &'static str)]| {
            let mut labels = vec![("mcp_server", server)];
            labels.extend_from_slice(extra);
            labels
        };
        for reason in mcpwatch::CloseReason::ALL {
            at_zero(
                "mcp_client_sessions_closed_total",
                &on(&[
                    ("network_transport", transport),
                    ("reason", reason.as_str()),
                ]),
            );
        }
        at_zero(
            "mcp_client_session_duration_seconds_count",
            &on(&[("network_transport", transport), ("error_type", "")]),
        );
        for kind in [
            "connect_failed",
            "initialize_failed",
            "session_expired",
            "rate_limited",
            "transport_closed",
            "http_status",
            "timeout",
        ] {
            at_zero("mcp_client_retries_total", &on(&[("error_type", kind)]));
        }
        at_zero(
            "mcp_client_session_recoveries_total",
            &on(&[("error_type", "session_expired")]),
        );
        for method in [
            "notifications/progress",
            "notifications/cancelled",
            "notifications/tools/list_changed",
            "notifications/resources/list_changed",
            "notifications/prompts/list_changed",
            "notifications/resources/updated",
            "notifications/message",
        ] {
            at_zero(
                "mcp_client_notifications_total",
                &on(&[("mcp_method_name", method)]),
            );
        }
    }
    for signal in ["spans", "sentry"] {
        at_zero(
            "mcpwatch_telemetry_export_errors_total",
            &[("signal", signal)],
        );
        at_zero("mcpwatch_telemetry_dropped_total", &[("signal", signal)]);
    }
    let (clean, said) = promtool_check_metrics(&text);
    assert!(
        clean && said.trim().is_empty(),
        "promtool check metrics: {said}"
    );
}

/// A config for the real agent: the builtin demo, the demo as a stdio child, the demo
/// over HTTP on `http_port` (restarted and killed by the scenario), OTLP to a dead port.
fn scenario_config(http_port: u16, dead_otlp_port: u16) -> String {
    format!(
        r#"
[telemetry.otlp]
endpoint = "http://127.0.0.1:{dead_otlp_port}"

[servers.demo]
transport = "builtin"

[servers.demo-stdio]
transport = "stdio"
command = "{bin}"
args = ["demo-server", "--stdio"]

[servers.demo-http]
transport = "http"
url = "http://127.0.0.1:{http_port}/mcp"
connect_timeout = "2s"
call_timeout = "5s"
retry = {{ max_attempts = 2, initial_backoff = "50ms", max_backoff = "100ms" }}
breaker = {{ failure_threshold = 3, cool_down = "10m" }}
"#,
        bin = mcpwatch_bin()
    )
}

/// `mcpwatch demo-server --http` on `port`, in its own process group; killed on drop.
async fn http_demo(port: u16) -> ServerProcess {
    use std::os::unix::process::CommandExt;
    let child = Command::new(mcpwatch_bin())
        .args(["demo-server", "--http", &format!("127.0.0.1:{port}")])
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let process = ServerProcess {
        child,
        port,
        log: None,
    };
    wait_port(port, Duration::from_secs(20)).await;
    process
}

async fn call(
    agent: &Agent,
    server: &str,
    tool: &str,
    arguments: Value,
    scope: &str,
) -> (u16, Value) {
    agent
        .post(
            "/v1/tools/call",
            json!({"server": server, "tool": tool, "arguments": arguments, "scope": scope}),
            &[],
        )
        .await
}

/// The traffic scenario: calls on three transports, tool errors, a timeout, a scope
/// close, an HTTP server restarted under a live session (recovery), then killed for good
/// (open failures, retries, breaker open). Returns the HTTP demo's process (dead).
async fn drive_traffic(agent: &Agent, http_port: u16) {
    let mut server = http_demo(http_port).await;
    for scope in ["thread-1", "thread-2", "thread-3"] {
        for (srv, tool, args) in [
            ("demo", "echo", json!({"message": "hi"})),
            ("demo", "add", json!({"a": 2, "b": 3})),
            ("demo", "counter", json!({})),
            ("demo-stdio", "echo", json!({"message": "hi"})),
            ("demo-stdio", "counter", json!({})),
            ("demo-http", "echo", json!({"message": "hi"})),
        ] {
            let (status, body) = call(agent, srv, tool, args, scope).await;
            assert_eq!(status, 200, "{srv}/{tool}: {body}");
            assert_eq!(body["result"]["isError"], false, "{srv}/{tool}: {body}");
        }
    }
    for srv in ["demo", "demo-stdio", "demo", "demo-stdio", "demo"] {
        let (status, body) = call(agent, srv, "fail", json!({}), "thread-2").await;
        assert_eq!(
            (status, &body["result"]["isError"]),
            (200, &json!(true)),
            "{body}"
        );
    }
    // Gateway traffic: a downstream session, a call, a failed call, a DELETE.
    let mut gateway =
        support::mcp_http::McpHttp::new(format!("{}/mcp/demo", agent.api)).with_scope("thread-2");
    assert_eq!(
        gateway.initialize("2025-11-25", json!({})).await.status,
        200
    );
    assert_eq!(
        gateway
            .call(1, "echo", json!({"message": "hi"}))
            .await
            .text(),
        "hi"
    );
    let failed = gateway.call(2, "no_such_tool", json!({})).await;
    assert!(
        failed.answer()["error"].is_object(),
        "{:?}",
        failed.messages
    );
    assert_eq!(gateway.delete().await, 200);
    let (status, body) = agent
        .post(
            "/v1/tools/call",
            json!({"server": "demo-stdio", "tool": "sleep", "arguments": {"ms": 3000}, "scope": "thread-3", "timeout_ms": 200}),
            &[],
        )
        .await;
    assert_eq!(status, 504, "{body}");
    assert_eq!(body["error"]["type"], "timeout");
    let response = agent
        .http
        .delete(format!("{}/v1/scopes/thread-1", agent.api))
        .send()
        .await
        .unwrap();
    let closed: Value = response.json().await.unwrap();
    assert_eq!(
        closed["closed"], 3,
        "thread-1 had a session on each server: {closed}"
    );

    // The HTTP server restarts under thread-2's live session: the session is lost
    // (404 for its Mcp-Session-Id), recovered and counted.
    server.kill();
    let mut server = http_demo(http_port).await;
    let mut recovered = false;
    for _ in 0..3 {
        let (status, body) = call(
            agent,
            "demo-http",
            "echo",
            json!({"message": "again"}),
            "thread-2",
        )
        .await;
        if status == 200 {
            recovered = true;
            break;
        }
        assert_eq!(body["error"]["type"], "session_expired", "{body}");
    }
    assert!(recovered, "thread-2 works again after the restart");
    let (_, metrics) = agent.admin("/metrics").await;
    assert!(
        metrics.contains("mcp_client_session_recoveries_total{error_type=\"session_expired\",mcp_server=\"demo-http\"} 1"),
        "the lost session is counted once:\n{metrics}"
    );

    // Killed for good: a new scope's open fails (retried), then the breaker opens.
    server.kill();
    let (status, body) = call(
        agent,
        "demo-http",
        "echo",
        json!({"message": "x"}),
        "thread-4",
    )
    .await;
    assert_eq!(
        (status, body["error"]["type"].as_str()),
        (502, Some("connect_failed")),
        "{body}"
    );
    let mut open = false;
    for attempt in 0..10 {
        let (status, body) = call(
            agent,
            "demo-http",
            "echo",
            json!({"message": "x"}),
            &format!("thread-{}", 5 + attempt),
        )
        .await;
        if status == 503 {
            assert_eq!(body["error"]["type"], "breaker_open", "{body}");
            open = true;
            break;
        }
    }
    assert!(open, "the breaker opens after repeated failures");
    let (_, servers) = agent.get("/v1/servers", &[]).await;
    let http = servers["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "demo-http")
        .unwrap();
    assert_eq!(http["breaker"], "open", "{servers}");

    // A little steady traffic over a few scrapes, so that rates of the series created
    // above are not only zero (a counter first seen at N has no increase yet).
    for round in 0..3 {
        tokio::time::sleep(Duration::from_millis(1100)).await;
        for (srv, tool) in [
            ("demo", "echo"),
            ("demo", "fail"),
            ("demo-stdio", "echo"),
            ("demo-stdio", "fail"),
        ] {
            let (status, body) = call(
                agent,
                srv,
                tool,
                json!({"message": "steady"}),
                &format!("steady-{round}"),
            )
            .await;
            assert_eq!(status, 200, "{body}");
        }
    }
}

/// An application embedding the library, with its own `/metrics`; it leaks one owned
/// session (the agent itself only uses pooled sessions, which cannot leak).
struct Embedded {
    runtime: mcpwatch::Runtime,
    addr: std::net::SocketAddr,
    stop: tokio_util::sync::CancellationToken,
}

impl Embedded {
    async fn start() -> Embedded {
        let runtime = mcpwatch::Runtime::start(mcpwatch::Config::demo())
            .await
            .unwrap();
        let serving = runtime.clone();
        let router = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let runtime = serving.clone();
                async move { runtime.metrics().render() }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = tokio_util::sync::CancellationToken::new();
        let token = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async move { token.cancelled().await })
                .await;
        });
        Embedded {
            runtime,
            addr,
            stop,
        }
    }

    /// Opens an owned session and drops it without close(): the leak guard counts it.
    async fn leak(&self) {
        let session = self.runtime.open("demo").await.unwrap();
        drop(session);
        let runtime = self.runtime.clone();
        support::eventually(Duration::from_secs(5), "the leak is counted", move || {
            support::metric(&runtime, "mcp_client_sessions_unclosed_total", &[]) == 1.0
        })
        .await;
    }

    async fn stop(self) {
        self.stop.cancel();
        self.runtime.shutdown(Duration::from_secs(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboards_and_rules_use_only_metrics_and_labels_the_agent_exports() {
    let http_port = free_port();
    let mut agent = Agent::start(&scenario_config(http_port, free_port()), &[]).await;
    drive_traffic(&agent, http_port).await;
    let embedded = Embedded::start().await;
    embedded.leak().await;
    let (status, agent_text) = agent.admin("/metrics").await;
    assert_eq!(status, 200);
    let mut exported = exposition_families(&agent_text);
    for (name, labels) in exposition_families(&embedded.runtime.metrics().render()) {
        exported.entry(name).or_default().extend(labels);
    }
    embedded.stop().await;
    // What Prometheus adds to every scraped series.
    for labels in exported.values_mut() {
        labels.insert("job".to_owned());
        labels.insert("instance".to_owned());
    }
    exported.insert(
        "up".to_owned(),
        ["job", "instance"].map(String::from).into(),
    );

    let (selectors, recorded) = all_selectors();
    let mut used = BTreeSet::new();
    let mut problems = Vec::new();
    for (place, selector) in &selectors {
        if recorded.contains(&selector.name) {
            // A recording rule's output: sum by (job, mcp_server).
            for m in &selector.matchers {
                if !["job", "mcp_server"].contains(&m.label.as_str()) {
                    problems.push(format!(
                        "{place}: {} has no label {}",
                        selector.name, m.label
                    ));
                }
            }
            continue;
        }
        used.insert(selector.name.clone());
        match exported.get(&selector.name) {
            None => problems.push(format!("{place}: the agent exports no {}", selector.name)),
            Some(labels) => {
                for m in &selector.matchers {
                    if !labels.contains(&m.label) {
                        problems.push(format!(
                            "{place}: {} has no label {} (it has {labels:?})",
                            selector.name, m.label
                        ));
                    }
                }
            }
        }
    }
    // Labels used for grouping exist on some metric.
    let every_label: BTreeSet<&String> = exported.values().flatten().collect();
    for (file, dashboard) in dashboards() {
        for panel in panels(&dashboard) {
            for target in panel["targets"].as_array().into_iter().flatten() {
                let scan = scan_promql(target["expr"].as_str().unwrap());
                for label in scan.grouping.iter().chain(
                    template_labels(target["legendFormat"].as_str().unwrap_or_default()).iter(),
                ) {
                    if !every_label.contains(label) {
                        problems.push(format!(
                            "{}/{}: unknown label {label}",
                            file.display(),
                            panel["title"]
                        ));
                    }
                }
            }
        }
    }
    for rule in shipped_rules() {
        let scan = scan_promql(rule["expr"].as_str().unwrap());
        let annotations = rule["annotations"].to_string();
        for label in scan
            .grouping
            .iter()
            .chain(template_labels(&annotations).iter())
        {
            if !every_label.contains(label) {
                problems.push(format!("{RULES}/{}: unknown label {label}", rule["alert"]));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    // And the dashboards show every metric of the contract.
    for name in exported.keys() {
        let family = name
            .strip_suffix("_bucket")
            .or(name.strip_suffix("_count"))
            .or(name.strip_suffix("_sum"))
            .unwrap_or(name);
        if !family.starts_with("mcp") {
            continue;
        }
        assert!(
            used.iter().any(|u| u.starts_with(family)),
            "no dashboard or rule shows {name}"
        );
    }
    eprintln!(
        "{} selectors checked against {} exported series names",
        selectors.len(),
        exported.len()
    );
    stop_agent(&mut agent).await;
}

/// SIGTERM, then wait: the agent drains, closes every session and reaps its children.
async fn stop_agent(agent: &mut Agent) {
    agent.terminate();
    assert_eq!(
        agent.wait_exit(Duration::from_secs(30)).await,
        Some(0),
        "the agent exits cleanly"
    );
}

// ---------------------------------------------------------------------------------
// A real Prometheus

struct Prometheus {
    _process: ServerProcess,
    url: String,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
    log: PathBuf,
}

impl Prometheus {
    /// Starts Prometheus on a free port, scraping `targets` (job "mcpwatch") every second
    /// and loading `rules` (file name, content).
    async fn start(targets: &[String], rules: &[(&str, String)]) -> Prometheus {
        use std::os::unix::process::CommandExt;
        assert!(
            Path::new(PROMETHEUS).exists(),
            "{PROMETHEUS} is missing: apt-get install prometheus (scripts/install-test-deps.sh does)"
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("rules")).unwrap();
        for (name, content) in rules {
            std::fs::write(dir.path().join("rules").join(name), content).unwrap();
        }
        let targets: Vec<String> = targets.iter().map(|t| format!("\"{t}\"")).collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - rules/*.yml\nscrape_configs:\n  - job_name: mcpwatch\n    scrape_interval: 1s\n    static_configs:\n      - targets: [{}]\n",
            targets.join(", ")
        );
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).unwrap();
        let port = free_port();
        let log = dir.path().join("prometheus.log");
        let log_file = std::fs::File::create(&log).unwrap();
        let child = Command::new(PROMETHEUS)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--storage.tsdb.retention.time=1h")
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .unwrap();
        let process = ServerProcess {
            child,
            port,
            log: Some(log.clone()),
        };
        let prometheus = Prometheus {
            _process: process,
            url: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
            _dir: dir,
            log,
        };
        let started = Instant::now();
        loop {
            let ready = prometheus
                .http
                .get(format!("{}/-/ready", prometheus.url))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "Prometheus not ready after 30s:\n{}",
                prometheus.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        eprintln!("Prometheus ready in {:?}", started.elapsed());
        prometheus
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn api(&self, path_and_query: &str) -> Value {
        let response = self
            .http
            .get(format!("{}{path_and_query}", self.url))
            .send()
            .await
            .unwrap();
        response.json().await.unwrap()
    }

    /// An instant query: the result vector, or Prometheus's error (e.g. a parse error).
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
        let result = &body["data"]["result"];
        Ok(match body["data"]["resultType"].as_str() {
            Some("vector" | "matrix") => result.as_array().unwrap().clone(),
            _ => vec![result.clone()],
        })
    }

    /// Polls `promql` until it returns at least one series (or `within` passes).
    async fn wait_nonempty(&self, promql: &str, within: Duration) -> Result<Vec<Value>, String> {
        let started = Instant::now();
        loop {
            let result = self.query(promql).await?;
            if !result.is_empty() || started.elapsed() >= within {
                return Ok(result);
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Firing alerts, as (labels, annotations).
    async fn firing(&self) -> Vec<(Value, Value)> {
        let body = self.api("/api/v1/alerts").await;
        body["data"]["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["state"] == "firing")
            .map(|a| (a["labels"].clone(), a["annotations"].clone()))
            .collect()
    }
}

/// Runs every dashboard panel query and variable query against Prometheus (variables
/// substituted; the per-server dashboard once per server of the scenario): each must
/// parse and return data, each selector in it must match series (for some server), and
/// each label it groups by or names in its legend must exist. Returns (problems, queries,
/// selector checks).
async fn check_dashboards(
    prometheus: &Prometheus,
    labels: &BTreeSet<String>,
) -> (Vec<String>, usize, usize) {
    let mut problems = Vec::new();
    let mut queries = 0;
    let mut selectors_checked = 0;
    let servers = ["demo", "demo-stdio", "demo-http"];
    for (file, dashboard) in dashboards() {
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        let server_values: Vec<&str> = if dashboard["uid"] == "mcpwatch-server" {
            servers.to_vec()
        } else {
            vec![".+"]
        };
        let mut exprs: Vec<(String, String, String)> = Vec::new();
        for panel in panels(&dashboard).into_iter().filter(|p| !is_row(p)) {
            for target in panel["targets"].as_array().unwrap() {
                exprs.push((
                    format!("{name}/{}", panel["title"].as_str().unwrap()),
                    target["expr"].as_str().unwrap().to_owned(),
                    target["legendFormat"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                ));
            }
        }
        for var in dashboard["templating"]["list"].as_array().unwrap() {
            if let Some(query) = var["query"]["query"].as_str() {
                let (selector, label) = label_values_selector(query);
                exprs.push((
                    format!("{name}/${}", var["name"]),
                    selector.to_owned(),
                    format!("{{{{{label}}}}}"),
                ));
            }
        }
        for (place, expr, legend) in exprs {
            queries += 1;
            let scan = scan_promql(&expr);
            for label in &scan.grouping {
                if !labels.contains(label) {
                    problems.push(format!("{place}: no series has label {label}"));
                }
            }
            let vars = |server: &'static str| {
                vec![
                    ("__rate_interval", "30s"),
                    ("__range", "1h"),
                    ("job", "mcpwatch"),
                    ("instance", ".+"),
                    ("server", server),
                ]
            };
            let mut any_data = false;
            for server in &server_values {
                let promql = substitute(&expr, &vars(server));
                match prometheus.query(&promql).await {
                    Err(error) => problems.push(format!("{place}: {promql}: {error}")),
                    Ok(result) if !result.is_empty() => {
                        any_data = true;
                        for label in template_labels(&legend) {
                            if !result.iter().any(|s| s["metric"].get(&label).is_some()) {
                                problems.push(format!(
                                    "{place}: legend label {label} is on no series of {promql}"
                                ));
                            }
                        }
                    }
                    Ok(_) => {}
                }
            }
            if !any_data {
                problems.push(format!("{place}: no data for {expr}"));
            }
            for selector in &scan.selectors {
                let mut hit = false;
                for server in &server_values {
                    selectors_checked += 1;
                    let promql = substitute(&selector.promql(), &vars(server));
                    if !prometheus
                        .query(&promql)
                        .await
                        .unwrap_or_default()
                        .is_empty()
                    {
                        hit = true;
                        break;
                    }
                }
                if !hit {
                    problems.push(format!("{place}: {} matches no series", selector.promql()));
                }
            }
        }
    }
    (problems, queries, selectors_checked)
}

/// The alerting group of the rules file with every `for:` shortened to 1s, renamed, and
/// labelled `copy: shortened` (text edits: the file's layout is ours).
fn shortened_alerts(rules: &str) -> String {
    let start = rules
        .find("  - name: mcpwatch.alerts\n")
        .expect("the alerts group");
    let group = &rules[start..];
    let mut out = String::from("groups:\n");
    let mut fors = 0;
    let mut labels = 0;
    for line in group.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("- name: mcpwatch.alerts") {
            out.push_str("  - name: mcpwatch.alerts.shortened\n");
        } else if trimmed.starts_with("for: ") {
            fors += 1;
            out.push_str(&format!("{}for: 1s\n", &line[..line.len() - trimmed.len()]));
        } else if trimmed == "labels:" {
            labels += 1;
            out.push_str(line);
            out.push('\n');
            out.push_str(&format!(
                "{}  copy: shortened\n",
                &line[..line.len() - trimmed.len()]
            ));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    assert_eq!(labels, 13, "every alert has labels");
    assert_eq!(fors, 12, "every alert but MCPSessionUnclosed waits");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboards_and_alerts_work_against_a_real_prometheus() {
    let test_started = Instant::now();
    let http_port = free_port();
    let mut agent = Agent::start(&scenario_config(http_port, free_port()), &[]).await;
    let embedded = Embedded::start().await;
    let agent_target = agent.admin.trim_start_matches("http://").to_owned();
    let embedded_target = embedded.addr.to_string();
    let rules = read(RULES);
    let prometheus = Prometheus::start(
        &[agent_target.clone(), embedded_target.clone()],
        &[
            ("mcpwatch.rules.yml", rules.clone()),
            ("shortened.yml", shortened_alerts(&rules)),
        ],
    )
    .await;

    // Both targets are up.
    let up = prometheus
        .wait_nonempty(
            "count(up{job=\"mcpwatch\"} == 1) == 2",
            Duration::from_secs(20),
        )
        .await
        .unwrap();
    assert_eq!(
        up.len(),
        1,
        "both targets scraped:\n{}",
        prometheus.log_text()
    );

    drive_traffic(&agent, http_port).await;
    embedded.leak().await;
    eprintln!("scenario done at {:?}", test_started.elapsed());

    // Prometheus has seen the end of the scenario, with two samples of each new series.
    for (what, promql) in [
        (
            "breaker open",
            "mcp_client_circuit_state{mcp_server=\"demo-http\"} == 2",
        ),
        ("the leak", "mcp_client_sessions_unclosed_total"),
        (
            "a rate of new series",
            "rate(mcp_client_sessions_opened_total{outcome=\"error\"}[30s])",
        ),
        (
            "a rate of the leak",
            "rate(mcp_client_sessions_unclosed_total[30s])",
        ),
        (
            "recorded SLO ratios",
            "job_mcp_server:mcp_client_tool_errors:ratio_rate5m{mcp_server=\"demo\"} > 0",
        ),
    ] {
        let result = prometheus
            .wait_nonempty(promql, Duration::from_secs(30))
            .await
            .unwrap();
        assert!(
            !result.is_empty(),
            "Prometheus never saw {what}: {promql}\n{}",
            prometheus.log_text()
        );
    }

    // Every rule loaded and evaluated without error.
    let started = Instant::now();
    let rule_count = loop {
        let body = prometheus.api("/api/v1/rules").await;
        let rules: Vec<Value> = body["data"]["groups"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|g| g["rules"].as_array().unwrap().clone())
            .collect();
        let bad: Vec<&Value> = rules.iter().filter(|r| r["health"] != "ok").collect();
        if bad.is_empty() && rules.len() == 20 + 13 {
            break rules.len();
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "rules not all healthy ({} loaded): {bad:#?}",
            rules.len()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };

    // Every dashboard query parses and returns data; every selector in it matches series;
    // every label it groups by or shows in a legend exists. A few rates may need another
    // scrape: the whole check is repeated (bounded) until it passes.
    let labels: BTreeSet<String> = prometheus.api("/api/v1/labels").await["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_owned())
        .collect();
    let started = Instant::now();
    let (mut problems, mut queries, mut selectors_checked) = loop {
        let outcome = check_dashboards(&prometheus, &labels).await;
        if outcome.0.is_empty() || started.elapsed() > Duration::from_secs(20) {
            break outcome;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };

    // Every rule expression parses; every selector in it matches series.
    for rule in shipped_rules() {
        let expr = rule["expr"].as_str().unwrap();
        let name = rule["alert"].as_str().or(rule["record"].as_str()).unwrap();
        queries += 1;
        if let Err(error) = prometheus.query(expr).await {
            problems.push(format!("{name}: {error}"));
        }
        let scan = scan_promql(expr);
        for label in scan
            .grouping
            .iter()
            .chain(template_labels(&rule["annotations"].to_string()).iter())
        {
            if !labels.contains(label) {
                problems.push(format!("{name}: no series has label {label}"));
            }
        }
        for selector in scan.selectors {
            selectors_checked += 1;
            if prometheus
                .query(&selector.promql())
                .await
                .unwrap_or_default()
                .is_empty()
            {
                problems.push(format!("{name}: {} matches no series", selector.promql()));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    // The leak and the killed server fire their alerts (in the copy with `for:` shortened);
    // the agent-down and pool alerts stay quiet.
    let started = Instant::now();
    let firing = loop {
        let firing = prometheus.firing().await;
        let has = |alert: &str, server: &str, instance: &str| {
            firing.iter().any(|(l, _)| {
                l["alertname"] == alert
                    && l["copy"] == "shortened"
                    && l["mcp_server"] == server
                    && l["instance"] == instance
            })
        };
        if has("MCPSessionUnclosed", "demo", &embedded_target)
            && has("MCPServerUnavailable", "demo-http", &agent_target)
        {
            break firing;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the alerts did not fire; firing: {firing:#?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    for (labels, annotations) in &firing {
        let alert = labels["alertname"].as_str().unwrap();
        assert!(
            !["MCPWatchDown", "MCPWatchAbsent", "MCPPoolNearCapacity"].contains(&alert),
            "{alert} fires: {labels}"
        );
        assert!(
            !annotations.to_string().contains("<no value>"),
            "{alert}: {annotations}"
        );
        assert!(labels["severity"].is_string(), "{alert}: {labels}");
    }
    let unavailable = firing
        .iter()
        .find(|(l, _)| l["alertname"] == "MCPServerUnavailable" && l["mcp_server"] == "demo-http")
        .unwrap();
    assert_eq!(
        unavailable.1["description"].as_str().unwrap(),
        format!(
            "MCP server demo-http cannot be used from {agent_target}; its sessions fail to open or its circuit breaker is open, so calls fail fast."
        )
    );
    eprintln!(
        "{queries} queries ({selectors_checked} selector checks) and {rule_count} rules checked; alerts fired at {:?}; test took {:?}",
        started.elapsed(),
        test_started.elapsed()
    );
    embedded.stop().await;
    stop_agent(&mut agent).await;
}

// ---------------------------------------------------------------------------------
// Configs, container recipe, compose, Kubernetes (offline)

/// `mcpwatch check-config` on a shipped config, with the environment it documents.
fn check_config(relative: &str) -> String {
    let output = Command::new(mcpwatch_bin())
        .args(["check-config", "--config"])
        .arg(path(relative))
        .env("MCPWATCH_TOKEN", "test-token")
        .env("MCPWATCH_SESSION_KEY", "test-session-key-0123456789")
        .env_remove("SENTRY_DSN")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{relative} is not a valid mcpwatch config: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// The port of `key = "HOST:PORT"` in a TOML config.
fn listen_port(config: &str, key: &str) -> u16 {
    let line = config
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{key} =")))
        .unwrap_or_else(|| panic!("no {key}"));
    let value = line.split('"').nth(1).unwrap();
    value.rsplit(':').next().unwrap().parse().unwrap()
}

/// The `${VAR}` references of a config.
fn env_references(config: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in config.lines().filter(|l| !l.trim_start().starts_with('#')) {
        let mut rest = line;
        while let Some(start) = rest.find("${") {
            let end = rest[start..].find('}').unwrap();
            out.insert(rest[start + 2..start + end].to_owned());
            rest = &rest[start + end..];
        }
    }
    out
}

#[test]
fn every_shipped_config_is_valid() {
    for config in [
        "config/mcpwatch.container.toml",
        "config/mcpwatch.compose.toml",
        "deploy/kubernetes/base/mcpwatch.toml",
        "deploy/kubernetes/examples/sidecar/mcpwatch.toml",
    ] {
        let effective = check_config(config);
        assert!(effective.contains("[servers.demo]"), "{config}");
    }
}

#[test]
fn the_operations_docs_point_at_files_that_exist() {
    let mut checked = 0;
    for doc in ["docs/operations.md", "docs/scaling.md", "alerts/runbook.md"] {
        let text = read(doc);
        for (i, part) in text.split('`').enumerate() {
            // Odd parts are inside backticks.
            let candidate = part.split_whitespace().next().unwrap_or_default();
            if i % 2 == 1
                && ["dashboards/", "alerts/", "deploy/", "config/", "docs/"]
                    .iter()
                    .any(|p| candidate.starts_with(p))
                && !candidate.contains('*')
            {
                checked += 1;
                assert!(
                    path(candidate).exists(),
                    "{doc} names {candidate}, which does not exist"
                );
            }
        }
    }
    assert!(checked >= 20, "only {checked} paths found");
    // Every alert the rules define is explained in the operations guide too.
    let guide = read("docs/operations.md");
    for rule in shipped_rules() {
        if let Some(alert) = rule["alert"].as_str() {
            assert!(
                guide.contains(alert),
                "docs/operations.md does not mention {alert}"
            );
        }
    }
}

/// Dockerfile instructions, continuation lines joined.
fn dockerfile() -> Vec<(String, String)> {
    let text = read("deploy/Dockerfile");
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || (line.is_empty() && current.is_empty()) {
            continue;
        }
        current.push_str(line.trim_end_matches('\\'));
        current.push(' ');
        if !line.ends_with('\\') {
            let (word, rest) = current
                .trim()
                .split_once(' ')
                .unwrap_or((current.trim(), ""));
            out.push((word.to_uppercase(), rest.trim().to_owned()));
            current.clear();
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_container_recipe_matches_the_binary_its_flags_and_paths() {
    let steps = dockerfile();
    let froms: Vec<&String> = steps
        .iter()
        .filter(|(w, _)| w == "FROM")
        .map(|(_, r)| r)
        .collect();
    assert!(froms.len() >= 2, "multi-stage: {froms:?}");
    assert!(
        froms[0].contains("rust:${RUST_VERSION}") && froms[0].ends_with("AS build"),
        "{froms:?}"
    );
    let final_stage_at = steps.iter().rposition(|(w, _)| w == "FROM").unwrap();
    let final_stage = &steps[final_stage_at..];
    let get = |word: &str| -> Vec<&String> {
        final_stage
            .iter()
            .filter(|(w, _)| w == word)
            .map(|(_, r)| r)
            .collect()
    };

    // The Rust version of the builder is the crate's.
    let rust_version = steps
        .iter()
        .find_map(|(w, r)| {
            (w == "ARG")
                .then(|| r.strip_prefix("RUST_VERSION="))
                .flatten()
        })
        .unwrap();
    let cargo = read("Cargo.toml");
    let wanted = cargo
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .unwrap()
        .trim_matches('"');
    assert!(
        rust_version.starts_with(wanted),
        "builder {rust_version}, crate {wanted}"
    );
    assert!(cargo.contains("[[bin]]\nname = \"mcpwatch\""));

    // Non-root.
    let user = get("USER");
    assert_eq!(user.len(), 1);
    let uid: u32 = user[0]
        .split(':')
        .next()
        .unwrap()
        .parse()
        .expect("a numeric USER");
    assert_ne!(uid, 0, "not root");

    // The binary is built, installed where ENTRYPOINT runs it, and CMD is a real subcommand.
    let build = steps
        .iter()
        .rfind(|(w, r)| w == "RUN" && r.contains("cargo build"))
        .unwrap();
    assert!(
        build.1.contains("--release --locked --bin mcpwatch"),
        "{}",
        build.1
    );
    assert!(
        build
            .1
            .contains("target/release/mcpwatch /out/usr/local/bin/mcpwatch"),
        "{}",
        build.1
    );
    let entrypoint: Vec<String> = serde_json::from_str(get("ENTRYPOINT")[0]).unwrap();
    assert_eq!(entrypoint, ["/usr/local/bin/mcpwatch"]);
    let cmd: Vec<String> = serde_json::from_str(get("CMD")[0]).unwrap();
    assert_eq!(cmd, ["serve"]);
    let help = Command::new(mcpwatch_bin())
        .args(&cmd)
        .arg("--help")
        .output()
        .unwrap();
    assert!(help.status.success(), "mcpwatch {cmd:?} --help");

    // The config: copied to where MCPWATCH_CONFIG points, valid, its ports EXPOSEd.
    let config_env = get("ENV")
        .into_iter()
        .find_map(|r| r.strip_prefix("MCPWATCH_CONFIG="))
        .unwrap()
        .to_owned();
    let copy = steps
        .iter()
        .find(|(w, r)| w == "COPY" && r.starts_with("config/"))
        .unwrap();
    let (source, dest) = copy.1.split_once(' ').unwrap();
    assert_eq!(dest.strip_prefix("/out").unwrap(), config_env);
    let config = read(source);
    check_config(source);
    let mut exposed: Vec<u16> = get("EXPOSE")[0]
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    exposed.sort();
    assert_eq!(
        exposed,
        [
            listen_port(&config, "listen"),
            listen_port(&config, "admin_listen")
        ]
    );

    // Every COPY source exists and passes the build context filter.
    let ignore = read("deploy/Dockerfile.dockerignore");
    let allowed: Vec<&str> = ignore.lines().filter_map(|l| l.strip_prefix('!')).collect();
    for (_, rest) in steps
        .iter()
        .filter(|(w, r)| w == "COPY" && !r.starts_with("--from"))
    {
        let parts: Vec<&str> = rest.split_whitespace().collect();
        for source in &parts[..parts.len() - 1] {
            assert!(path(source).exists(), "COPY {source}: missing");
            assert!(
                allowed
                    .iter()
                    .any(|a| source.trim_end_matches('/') == a.trim_end_matches('/')),
                "COPY {source} is excluded by Dockerfile.dockerignore"
            );
        }
    }

    // Run the binary the way the image does: `mcpwatch serve` with MCPWATCH_CONFIG and
    // the token in the environment (listen addresses moved to free loopback ports).
    let api_port = free_port();
    let admin_port = free_port();
    let mut child = Command::new(mcpwatch_bin())
        .arg("serve")
        .env("MCPWATCH_CONFIG", path(source))
        .env("MCPWATCH_TOKEN", "test-token")
        .env("MCPWATCH_AGENT__LISTEN", format!("127.0.0.1:{api_port}"))
        .env(
            "MCPWATCH_AGENT__ADMIN_LISTEN",
            format!("127.0.0.1:{admin_port}"),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    struct Kill<'a>(&'a mut std::process::Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let guard = Kill(&mut child);
    wait_port(admin_port, Duration::from_secs(20)).await;
    let http = reqwest::Client::new();
    for probe in ["/healthz", "/readyz"] {
        let status = http
            .get(format!("http://127.0.0.1:{admin_port}{probe}"))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200, "{probe}");
    }
    let status = http
        .get(format!("http://127.0.0.1:{api_port}/v1/servers"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 401, "the container config requires the token");
    drop(guard);
}

#[test]
fn the_compose_stack_is_consistent() {
    let compose_dir = path("deploy/compose");
    let compose = yaml("deploy/compose/compose.yaml");
    let services = compose["services"].as_object().unwrap();
    for required in [
        "mcpwatch",
        "prometheus",
        "grafana",
        "otel-collector",
        "jaeger",
        "envoy",
    ] {
        assert!(services.contains_key(required), "compose has no {required}");
    }
    // Mounts: (service, container path) -> repository path.
    let mut mounts: BTreeMap<(String, String), PathBuf> = BTreeMap::new();
    for (name, service) in services {
        for volume in service["volumes"].as_array().into_iter().flatten() {
            let spec = volume.as_str().unwrap();
            let mut parts = spec.split(':');
            let (source, target) = (parts.next().unwrap(), parts.next().unwrap());
            if !source.starts_with('.') {
                continue; // a named volume
            }
            let resolved = compose_dir.join(source);
            assert!(resolved.exists(), "{name}: {source} does not exist");
            mounts.insert((name.clone(), target.to_owned()), resolved);
        }
        for dependency in service["depends_on"].as_array().into_iter().flatten() {
            assert!(
                services.contains_key(dependency.as_str().unwrap()),
                "{name} depends on {dependency}"
            );
        }
        if let Some(build) = service.get("build") {
            assert!(
                compose_dir
                    .join(build["context"].as_str().unwrap())
                    .join(build["dockerfile"].as_str().unwrap())
                    .exists()
            );
        }
    }
    let mount = |service: &str, target: &str| -> PathBuf {
        mounts
            .get(&(service.to_owned(), target.to_owned()))
            .unwrap_or_else(|| panic!("{service} mounts nothing at {target}"))
            .clone()
    };
    let exposes = |service: &str, port: u16| -> bool {
        let s = &services[service];
        s["expose"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|p| p.as_str() == Some(&port.to_string()))
            || s["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|p| p.as_str().unwrap().ends_with(&format!(":{port}")))
    };

    // mcpwatch: its config where the image reads it, ports as configured, env for ${VAR}s.
    let steps = dockerfile();
    let config_path = steps
        .iter()
        .find_map(|(w, r)| {
            (w == "ENV")
                .then(|| r.strip_prefix("MCPWATCH_CONFIG="))
                .flatten()
        })
        .unwrap();
    let config_file = mount("mcpwatch", config_path);
    let config = std::fs::read_to_string(&config_file).unwrap();
    check_config(config_file.strip_prefix(root()).unwrap().to_str().unwrap());
    let (api, admin) = (
        listen_port(&config, "listen"),
        listen_port(&config, "admin_listen"),
    );
    assert!(exposes("mcpwatch", api) && exposes("mcpwatch", admin));
    let env = services["mcpwatch"]["environment"].as_object().unwrap();
    for var in env_references(&config) {
        assert!(env.contains_key(&var), "compose gives mcpwatch no {var}");
    }
    let otlp = env["OTEL_EXPORTER_OTLP_ENDPOINT"].as_str().unwrap();
    let otlp_host = otlp
        .trim_start_matches("http://")
        .split(':')
        .next()
        .unwrap();
    assert!(
        services.contains_key(otlp_host) && exposes(otlp_host, 4318),
        "{otlp}"
    );
    let demo_url = config
        .lines()
        .find_map(|l| l.strip_prefix("url = \"http://"))
        .unwrap();
    let demo_host = demo_url.split(':').next().unwrap();
    assert!(services.contains_key(demo_host), "{demo_url}");
    let healthcheck: Vec<&str> = services["mcpwatch"]["healthcheck"]["test"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(healthcheck[1], "/usr/local/bin/mcpwatch");
    assert!(
        healthcheck.contains(&format!("http://127.0.0.1:{api}").as_str()),
        "{healthcheck:?}"
    );
    let help = Command::new(mcpwatch_bin())
        .args(&healthcheck[2..3])
        .arg("--help")
        .output()
        .unwrap();
    assert!(
        help.status.success(),
        "healthcheck subcommand {healthcheck:?}"
    );

    // Prometheus: rebuild its container view and let promtool check config and rules.
    let view = tempfile::tempdir().unwrap();
    for ((service, target), source) in &mounts {
        if service == "prometheus" {
            let place = view.path().join(target.trim_start_matches('/'));
            std::fs::create_dir_all(place.parent().unwrap()).unwrap();
            std::fs::copy(source, &place).unwrap();
        }
    }
    let prom_config = view.path().join("etc/prometheus/prometheus.yml");
    let (ok, text) = promtool(&["check", "config", prom_config.to_str().unwrap()]);
    assert!(ok, "promtool check config: {text}");
    assert!(
        text.contains("20 rules found"),
        "the rules file is found: {text}"
    );
    let prom = yaml_docs(&prom_config).remove(0);
    let job = prom["scrape_configs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["job_name"] == "mcpwatch")
        .expect("job mcpwatch");
    let sd = &job["dns_sd_configs"][0];
    assert_eq!(sd["names"][0], "mcpwatch");
    assert_eq!(sd["port"], admin);

    // Grafana: the provider's path is where the dashboards are mounted; the datasource
    // points at the Prometheus service.
    let provider = yaml_docs(&mount(
        "grafana",
        "/etc/grafana/provisioning/dashboards/mcpwatch.yaml",
    ))
    .remove(0);
    let dashboards_path = provider["providers"][0]["options"]["path"]
        .as_str()
        .unwrap();
    let dashboards_dir = mount("grafana", dashboards_path);
    for uid in DASHBOARD_UIDS {
        assert!(dashboards_dir.join(format!("{uid}.json")).exists());
    }
    let home = services["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
        .as_str()
        .unwrap();
    assert!(
        dashboards_dir
            .join(home.strip_prefix(&format!("{dashboards_path}/")).unwrap())
            .exists()
    );
    let datasource = yaml_docs(&mount(
        "grafana",
        "/etc/grafana/provisioning/datasources/prometheus.yaml",
    ))
    .remove(0);
    let ds = &datasource["datasources"][0];
    assert_eq!(ds["type"], "prometheus");
    assert_eq!(ds["url"], "http://prometheus:9090");
    assert!(exposes("prometheus", 9090));

    // The collector: every pipeline component is defined; it exports to Jaeger.
    let collector =
        yaml_docs(&mount("otel-collector", "/etc/otelcol-contrib/config.yaml")).remove(0);
    for (kind, pipeline) in collector["service"]["pipelines"].as_object().unwrap() {
        for section in ["receivers", "processors", "exporters"] {
            for component in pipeline[section].as_array().unwrap() {
                assert!(
                    collector[section]
                        .get(component.as_str().unwrap())
                        .is_some(),
                    "{kind}: {section} {component}"
                );
            }
        }
    }
    assert_eq!(
        collector["receivers"]["otlp"]["protocols"]["http"]["endpoint"],
        "0.0.0.0:4318"
    );
    let jaeger = collector["exporters"]["otlp/jaeger"]["endpoint"]
        .as_str()
        .unwrap();
    assert_eq!(jaeger, "jaeger:4317");
    assert!(exposes("jaeger", 4317));

    // Envoy: ring hash on the scope header over the mcpwatch service, health on /readyz.
    let envoy = yaml_docs(&mount("envoy", "/etc/envoy/envoy.yaml")).remove(0);
    check_envoy(&envoy, "mcpwatch", api, admin);
    assert!(exposes("envoy", api));
}

fn check_envoy(envoy: &Value, host: &str, api: u16, admin: u16) {
    let listener = &envoy["static_resources"]["listeners"][0];
    assert_eq!(listener["address"]["socket_address"]["port_value"], api);
    let hcm = &listener["filter_chains"][0]["filters"][0]["typed_config"];
    let vhost = &hcm["route_config"]["virtual_hosts"][0];
    let cluster = &envoy["static_resources"]["clusters"][0];
    // The scope rules of deploy/haproxy/haproxy.cfg (run for real by tests/scaleout.rs):
    // the header first, then the path's scope, then the downstream session id.
    let routes = vhost["routes"].as_array().unwrap();
    let prefixes: Vec<&str> = routes
        .iter()
        .map(|r| r["match"]["prefix"].as_str().unwrap())
        .collect();
    assert_eq!(prefixes, ["/scopes/", "/v1/scopes/", "/v1/sessions/", "/"]);
    for route in routes {
        let (prefix, action) = (route["match"]["prefix"].as_str().unwrap(), &route["route"]);
        assert_eq!(action["cluster"], cluster["name"]);
        assert_eq!(
            action["timeout"], "0s",
            "{prefix}: calls carry their own deadline"
        );
        let policies = action["hash_policy"].as_array().unwrap();
        assert_eq!(policies.len(), 2, "{prefix}");
        assert_eq!(policies[0]["header"]["header_name"], "x-mcpwatch-scope");
        assert_eq!(policies[0]["terminal"], true, "{prefix}");
        let fallback = &policies[1]["header"];
        if prefix == "/" {
            assert_eq!(fallback["header_name"], "mcp-session-id");
        } else {
            assert_eq!(fallback["header_name"], ":path", "{prefix}");
            let rewrite = &fallback["regex_rewrite"];
            let pattern = rewrite["pattern"]["regex"].as_str().unwrap();
            assert!(
                pattern.starts_with(&format!("^{prefix}")),
                "{prefix}: {pattern}"
            );
            assert_eq!(pattern.matches("([^/?]+)").count(), 1, "{pattern}");
            assert_eq!(rewrite["substitution"], "\\1");
        }
    }
    // Retries on another replica of what never ran: connect failures and 503s, no resets.
    let retry = &vhost["retry_policy"];
    assert_eq!(retry["retry_on"], "connect-failure,retriable-status-codes");
    assert_eq!(retry["retriable_status_codes"], json!([503]));
    assert_eq!(
        retry["retry_host_predicate"][0]["name"],
        "envoy.retry_host_predicates.previous_hosts"
    );
    // Envoy's own answers are JSON in the agent's error shape.
    let mappers = hcm["local_reply_config"]["mappers"].as_array().unwrap();
    for mapper in mappers {
        let format = &mapper["body_format_override"];
        assert_eq!(format["content_type"], "application/json");
        let body: Value = serde_json::from_str(
            format["text_format_source"]["inline_string"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        assert!(body["error"]["type"].is_string() && body["error"]["may_have_run"].is_boolean());
    }
    assert_eq!(mappers.len(), 3);
    assert_eq!(cluster["lb_policy"], "RING_HASH");
    assert_eq!(
        cluster["health_checks"][0]["http_health_check"]["path"],
        "/readyz"
    );
    let endpoint = &cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"];
    assert_eq!(endpoint["address"]["socket_address"]["address"], host);
    assert_eq!(endpoint["address"]["socket_address"]["port_value"], api);
    assert_eq!(endpoint["health_check_config"]["port_value"], admin);
}

/// Every document of every YAML file of a kustomization (resources followed), by kind.
fn kustomize_docs(dir: &Path, out: &mut Vec<(PathBuf, Value)>) {
    let kustomization = yaml_docs(&dir.join("kustomization.yaml")).remove(0);
    for resource in kustomization["resources"].as_array().into_iter().flatten() {
        let target = dir.join(resource.as_str().unwrap());
        assert!(
            target.exists(),
            "{}: resource {resource} missing",
            dir.display()
        );
        if target.is_dir() {
            assert!(
                target.join("kustomization.yaml").exists(),
                "{} has no kustomization.yaml",
                target.display()
            );
            kustomize_docs(&target, out);
        } else {
            for doc in yaml_docs(&target) {
                assert!(
                    doc["apiVersion"].is_string() && doc["kind"].is_string(),
                    "{}",
                    target.display()
                );
                assert!(doc["metadata"]["name"].is_string(), "{}", target.display());
                out.push((target.clone(), doc));
            }
        }
    }
    for generator in kustomization["configMapGenerator"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let mut data = serde_json::Map::new();
        for file in generator["files"].as_array().unwrap() {
            let file = file.as_str().unwrap();
            let (key, source) = file
                .split_once('=')
                .unwrap_or((file.rsplit('/').next().unwrap(), file));
            assert!(
                dir.join(source).exists(),
                "{}: generator file {file} missing",
                dir.display()
            );
            data.insert(
                key.to_owned(),
                json!(std::fs::read_to_string(dir.join(source)).unwrap()),
            );
        }
        out.push((
            dir.join("kustomization.yaml"),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": generator["name"]}, "data": data}),
        ));
    }
}

fn find<'a>(docs: &'a [(PathBuf, Value)], kind: &str, name: &str) -> &'a Value {
    &docs
        .iter()
        .find(|(_, d)| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
        .1
}

fn labels_match(selector: &Value, labels: &Value) -> bool {
    selector
        .as_object()
        .unwrap()
        .iter()
        .all(|(k, v)| labels.get(k) == Some(v))
}

/// Checks one mcpwatch container of a pod spec against its config; returns its admin port name.
fn check_mcpwatch_container(
    pod: &Value,
    container: &Value,
    config: &str,
    docs: &[(PathBuf, Value)],
    what: &str,
) {
    let ports: BTreeMap<&str, u64> = container["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap(),
                p["containerPort"].as_u64().unwrap(),
            )
        })
        .collect();
    let admin_port = u64::from(listen_port(config, "admin_listen"));
    let probes = [
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
        ("startupProbe", ""),
    ];
    for (probe, wanted) in probes {
        let get = &container[probe]["httpGet"];
        assert!(get.is_object(), "{what}: {probe}");
        if !wanted.is_empty() {
            assert_eq!(get["path"], wanted, "{what}: {probe}");
        }
        assert!(["/healthz", "/readyz"].contains(&get["path"].as_str().unwrap()));
        let port = get["port"].as_str().unwrap();
        assert_eq!(
            ports.get(port),
            Some(&admin_port),
            "{what}: {probe} on the admin port"
        );
    }
    if !config.contains("listen = \"127.0.0.1:") {
        assert!(
            ports
                .values()
                .any(|p| *p == u64::from(listen_port(config, "listen"))),
            "{what}: API port"
        );
    }
    // Resources and a restricted security context.
    for kind in ["requests", "limits"] {
        assert!(
            container["resources"][kind]["memory"].is_string(),
            "{what}: resources.{kind}.memory"
        );
    }
    assert!(
        container["resources"]["requests"]["cpu"].is_string(),
        "{what}: cpu request"
    );
    let sc = &container["securityContext"];
    assert_eq!(sc["allowPrivilegeEscalation"], false, "{what}");
    assert_eq!(sc["readOnlyRootFilesystem"], true, "{what}");
    assert_eq!(sc["runAsNonRoot"], true, "{what}");
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]), "{what}");
    let seccomp = sc["seccompProfile"]["type"]
        .as_str()
        .or(pod["securityContext"]["seccompProfile"]["type"].as_str());
    assert_eq!(seccomp, Some("RuntimeDefault"), "{what}");
    let user = sc["runAsUser"]
        .as_u64()
        .or(pod["securityContext"]["runAsUser"].as_u64())
        .unwrap();
    let image_user: u64 = dockerfile()
        .iter()
        .rfind(|(w, _)| w == "USER")
        .unwrap()
        .1
        .split(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(user, image_user, "{what}: the image's user");
    // The command: serve --config FILE, FILE mounted from a ConfigMap that has it.
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(args[0], "serve");
    let config_at = Path::new(args[args.iter().position(|a| *a == "--config").unwrap() + 1]);
    let mount = container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| Path::new(m["mountPath"].as_str().unwrap()) == config_at.parent().unwrap())
        .unwrap_or_else(|| panic!("{what}: nothing mounted at {}", config_at.display()));
    let volume = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == mount["name"])
        .unwrap();
    let map = find(
        docs,
        "ConfigMap",
        volume["configMap"]["name"].as_str().unwrap(),
    );
    assert_eq!(
        map["data"][config_at.file_name().unwrap().to_str().unwrap()].as_str(),
        Some(config),
        "{what}: the mounted config"
    );
    // Every ${VAR} of the config comes from the env; secrets from an existing Secret key.
    let env = container["env"].as_array().cloned().unwrap_or_default();
    for var in env_references(config) {
        assert!(
            env.iter().any(|e| e["name"] == var.as_str()),
            "{what}: no env {var}"
        );
    }
    for entry in &env {
        if let Some(secret) = entry["valueFrom"].get("secretKeyRef") {
            let doc = find(docs, "Secret", secret["name"].as_str().unwrap());
            assert!(
                doc["stringData"]
                    .get(secret["key"].as_str().unwrap())
                    .is_some(),
                "{what}: secret key {secret}"
            );
        }
    }
}

#[test]
fn the_kubernetes_manifests_are_consistent() {
    // Every YAML file under deploy/ parses.
    let mut yaml_files = Vec::new();
    files_recursive(&path("deploy"), &[".yaml", ".yml"], &mut yaml_files);
    files_recursive(&path("dashboards"), &[".yaml", ".yml"], &mut yaml_files);
    assert!(yaml_files.len() >= 20, "{yaml_files:?}");
    for file in &yaml_files {
        yaml_docs(file);
    }

    // The base: the agent Deployment and everything around it.
    let base = path("deploy/kubernetes/base");
    let mut docs = Vec::new();
    kustomize_docs(&base, &mut docs);
    let kinds: BTreeSet<&str> = docs
        .iter()
        .map(|(_, d)| d["kind"].as_str().unwrap())
        .collect();
    for kind in [
        "Deployment",
        "ConfigMap",
        "Secret",
        "Service",
        "ServiceMonitor",
        "PrometheusRule",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "ServiceAccount",
    ] {
        assert!(kinds.contains(kind), "the base has no {kind}");
    }
    let config = std::fs::read_to_string(base.join("mcpwatch.toml")).unwrap();
    check_config("deploy/kubernetes/base/mcpwatch.toml");
    let deployment = find(&docs, "Deployment", "mcpwatch");
    let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];
    assert!(labels_match(
        &deployment["spec"]["selector"]["matchLabels"],
        pod_labels
    ));
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let container = &pod["containers"][0];
    check_mcpwatch_container(pod, container, &config, &docs, "base Deployment");
    let drain: u64 = config
        .lines()
        .find_map(|l| l.strip_prefix("drain_timeout = \""))
        .unwrap()
        .trim_end_matches("s\"")
        .parse()
        .unwrap();
    assert!(
        pod["terminationGracePeriodSeconds"].as_u64().unwrap() >= drain + 10,
        "grace period covers drain + shutdown"
    );
    assert_eq!(
        pod["serviceAccountName"],
        find(&docs, "ServiceAccount", "mcpwatch")["metadata"]["name"]
    );

    // Service -> pod ports; ServiceMonitor -> Service port "admin" at /metrics.
    let service = find(&docs, "Service", "mcpwatch");
    assert!(labels_match(&service["spec"]["selector"], pod_labels));
    let port_names: BTreeSet<&str> = container["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for port in service["spec"]["ports"].as_array().unwrap() {
        assert!(
            port_names.contains(port["targetPort"].as_str().unwrap()),
            "{port}"
        );
    }
    let monitor = find(&docs, "ServiceMonitor", "mcpwatch");
    assert!(labels_match(
        &monitor["spec"]["selector"]["matchLabels"],
        &service["metadata"]["labels"]
    ));
    let endpoint = &monitor["spec"]["endpoints"][0];
    assert_eq!(endpoint["path"], "/metrics");
    let admin = service["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == endpoint["port"])
        .expect("the monitored port");
    assert_eq!(
        admin["port"].as_u64(),
        Some(u64::from(listen_port(&config, "admin_listen")))
    );
    // The job label is the Service name, which the rules select on.
    assert!(read(RULES).contains(&format!(
        "job=\"{}\"",
        service["metadata"]["name"].as_str().unwrap()
    )));

    // PDB and HPA aim at the Deployment; the HPA's CPU target has a CPU request to divide by.
    let pdb = find(&docs, "PodDisruptionBudget", "mcpwatch");
    assert!(labels_match(
        &pdb["spec"]["selector"]["matchLabels"],
        pod_labels
    ));
    let hpa = find(&docs, "HorizontalPodAutoscaler", "mcpwatch");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["kind"], "Deployment");
    assert_eq!(
        hpa["spec"]["scaleTargetRef"]["name"],
        deployment["metadata"]["name"]
    );
    assert!(
        hpa["spec"]["minReplicas"].as_u64().unwrap() >= 2,
        "the PDB can then let one go"
    );
    assert!(
        hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"]
            .as_u64()
            .unwrap()
            >= 300
    );

    // The PrometheusRule carries exactly the rules file's groups.
    let rule = find(&docs, "PrometheusRule", "mcpwatch");
    assert_eq!(
        rule["spec"],
        yaml(RULES),
        "regenerate with deploy/kubernetes/prometheusrule.sh"
    );

    // The dashboards as ConfigMaps for Grafana's sidecar.
    let boards = find(&docs, "ConfigMap", "mcpwatch-dashboards");
    for uid in DASHBOARD_UIDS {
        let text = boards["data"][format!("{uid}.json")].as_str().unwrap();
        assert_eq!(text, read(&format!("dashboards/{uid}.json")));
    }

    // The sidecar example: a native sidecar on loopback, scraped as job="mcpwatch".
    let mut sidecar_docs = Vec::new();
    kustomize_docs(
        &path("deploy/kubernetes/examples/sidecar"),
        &mut sidecar_docs,
    );
    let sidecar_config = read("deploy/kubernetes/examples/sidecar/mcpwatch.toml");
    assert!(
        sidecar_config.contains("listen = \"127.0.0.1:8700\""),
        "the sidecar's API stays in the pod"
    );
    let orchestrator = find(&sidecar_docs, "Deployment", "orchestrator");
    let pod = &orchestrator["spec"]["template"]["spec"];
    let sidecar = pod["initContainers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "mcpwatch")
        .unwrap();
    assert_eq!(sidecar["restartPolicy"], "Always", "a native sidecar");
    check_mcpwatch_container(pod, sidecar, &sidecar_config, &sidecar_docs, "sidecar");
    let app_env = pod["containers"][0]["env"].as_array().unwrap();
    assert!(
        app_env
            .iter()
            .any(|e| e["value"] == "http://127.0.0.1:8700")
    );
    let pod_monitor = find(&sidecar_docs, "PodMonitor", "mcpwatch-sidecar");
    assert!(labels_match(
        &pod_monitor["spec"]["selector"]["matchLabels"],
        &orchestrator["spec"]["template"]["metadata"]["labels"]
    ));
    let scrape = &pod_monitor["spec"]["podMetricsEndpoints"][0];
    assert!(
        sidecar["ports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == scrape["port"])
    );
    assert_eq!(scrape["relabelings"][0]["targetLabel"], "job");
    assert_eq!(scrape["relabelings"][0]["replacement"], "mcpwatch");

    // The shared example: ingress-nginx hashing the scope header; Envoy on a headless Service.
    let mut shared_docs = Vec::new();
    kustomize_docs(&path("deploy/kubernetes/examples/shared"), &mut shared_docs);
    let ingress = find(&shared_docs, "Ingress", "mcpwatch");
    assert_eq!(
        ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/upstream-hash-by"],
        "$mcpwatch_scope"
    );
    // ... a map the controller's ConfigMap defines: header, path scope, session id.
    let hash_key = &yaml_docs(&path(
        "deploy/kubernetes/examples/shared/ingress-nginx-hash-key.yaml",
    ))[0];
    let snippet = hash_key["data"]["http-snippet"].as_str().unwrap();
    for needle in [
        "$http_x_mcpwatch_scope|$uri|$http_mcp_session_id\" $mcpwatch_scope",
        "/scopes/(?<scope>",
        "/v1/scopes/(?<scope>",
        "/v1/sessions/[^/|]+/(?<scope>",
    ] {
        assert!(snippet.contains(needle), "the hash key map lacks {needle}");
    }
    let gateway_paths: BTreeSet<&str> = ingress["spec"]["rules"][0]["http"]["paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["path"].as_str().unwrap())
        .collect();
    assert_eq!(gateway_paths, BTreeSet::from(["/v1", "/mcp", "/scopes"]));
    let backend = &ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"];
    let target = find(&shared_docs, "Service", backend["name"].as_str().unwrap());
    assert!(
        target["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == backend["port"]["name"])
    );
    let headless = find(&shared_docs, "Service", "mcpwatch-lb");
    assert_eq!(headless["spec"]["clusterIP"], "None");
    assert!(labels_match(&headless["spec"]["selector"], pod_labels));
    assert!(
        !labels_match(
            &monitor["spec"]["selector"]["matchLabels"],
            &headless["metadata"]["labels"]
        ),
        "the ServiceMonitor must not scrape the pods twice"
    );
    let envoy = yaml("deploy/envoy/envoy.yaml");
    check_envoy(
        &envoy,
        "mcpwatch",
        listen_port(&config, "listen"),
        listen_port(&config, "admin_listen"),
    );

    // kustomize itself, offline, when kubectl is installed.
    let kubectl = ["/usr/bin/kubectl", "/usr/local/bin/kubectl"]
        .into_iter()
        .find(|k| Path::new(k).exists());
    match kubectl {
        None => eprintln!("kubectl not installed: kustomize build not run"),
        Some(kubectl) => {
            for dir in [
                "deploy/kubernetes/base",
                "deploy/kubernetes/examples/sidecar",
                "deploy/kubernetes/examples/shared",
            ] {
                let output = Command::new(kubectl)
                    .args(["kustomize", dir])
                    .current_dir(root())
                    .output()
                    .unwrap();
                assert!(
                    output.status.success(),
                    "kubectl kustomize {dir}: {}",
                    String::from_utf8_lossy(&output.stderr)
                );
                let text = String::from_utf8(output.stdout).unwrap();
                assert!(
                    text.contains("image: registry.example.com/mcpwatch:0.1.0"),
                    "{dir}: image rewritten"
                );
                if dir.ends_with("base") {
                    // The generated ConfigMap name (with its hash) is wired into the pod.
                    let generated = text
                        .lines()
                        .find_map(|l| l.trim().strip_prefix("name: mcpwatch-config-"))
                        .expect("a hashed config map");
                    assert_eq!(
                        text.matches(&format!("mcpwatch-config-{generated}"))
                            .count(),
                        2,
                        "{dir}"
                    );
                }
            }
        }
    }
}
