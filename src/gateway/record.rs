//! The record of one gateway request: its SERVER span and its
//! `mcp_server_operation_duration_seconds` observation, settled exactly once,
//! by [`Served::finish`] or, when the request is dropped unanswered (the
//! client went away), by `Drop` as `cancelled`.
//!
//! The histogram of each `(server, method, tool, error_type)` is looked up in
//! a table of its own by borrowed names, so a request allocates nothing and
//! hashes no label set in the metrics registry once its series exists. Tool
//! names are the client's: past 100 per server they are counted as `_OTHER`.

use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use prometheus::Histogram;

use crate::telemetry::Metrics;
use crate::telemetry::spans::McpSpan;

/// Distinct tool labels per server before `_OTHER` (a client names tools freely).
const TOOL_LABEL_CAP: usize = 100;
const TOOL_OVERFLOW: &str = "_OTHER";

/// Small tables searched by borrowed key: a request allocates nothing once
/// its series exists (a handful of methods and servers, at most 100 tools).
type Table<K, V> = Vec<(K, V)>;

/// The entry of `key` in `table`, added (with `V::default()`) when missing.
fn entry<'t, V: Default>(table: &'t mut Table<Box<str>, V>, key: &str) -> &'t mut V {
    let at = match table.iter().position(|(k, _)| k.as_ref() == key) {
        Some(at) => at,
        None => {
            table.push((Box::from(key), V::default()));
            table.len() - 1
        }
    };
    &mut table[at].1
}

/// Histograms by tool, then error type.
type ByTool = Table<Box<str>, Table<&'static str, Histogram>>;

#[derive(Default)]
struct ServerHistograms {
    /// Distinct tool labels so far.
    tools: Vec<Box<str>>,
    /// By method, then tool, then error type.
    by_method: Table<Box<str>, ByTool>,
}

/// The gateway's operation histograms, by borrowed names.
#[derive(Default)]
pub(crate) struct OperationHistograms(Mutex<Table<Box<str>, ServerHistograms>>);

impl std::fmt::Debug for OperationHistograms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OperationHistograms")
    }
}

impl OperationHistograms {
    /// The histogram of one series (created in `metrics` on first use).
    fn get(
        &self,
        metrics: &Metrics,
        server: &str,
        method: &str,
        tool: &str,
        error_type: &'static str,
    ) -> Histogram {
        let mut table = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let histograms = entry(&mut table, server);
        let known = tool.is_empty() || histograms.tools.iter().any(|t| t.as_ref() == tool);
        let tool = if known {
            tool
        } else if histograms.tools.len() < TOOL_LABEL_CAP {
            histograms.tools.push(Box::from(tool));
            tool
        } else {
            TOOL_OVERFLOW
        };
        let errors = entry(entry(&mut histograms.by_method, method), tool);
        if let Some((_, histogram)) = errors.iter().find(|(e, _)| *e == error_type) {
            return histogram.clone();
        }
        let histogram = metrics
            .gateway_operation_duration
            .with_label_values(&[server, method, tool, error_type]);
        errors.push((error_type, histogram.clone()));
        histogram
    }
}

/// One request being served.
pub(crate) struct Served<'a> {
    metrics: &'a Metrics,
    histograms: &'a OperationHistograms,
    server: &'a str,
    method: &'a str,
    tool: &'a str,
    started: Instant,
    pub(crate) span: McpSpan,
    settled: bool,
}

impl<'a> Served<'a> {
    pub(crate) fn start(
        metrics: &'a Metrics,
        histograms: &'a OperationHistograms,
        labels: [&'a str; 3],
        span: McpSpan,
    ) -> Served<'a> {
        let [server, method, tool] = labels;
        Served {
            metrics,
            histograms,
            server,
            method,
            tool,
            started: Instant::now(),
            span,
            settled: false,
        }
    }

    /// Settles the record: `error_type` is empty on success.
    pub(crate) fn finish(
        mut self,
        error_type: &'static str,
        description: &str,
        rpc_code: Option<i32>,
    ) {
        self.settle(error_type, description, rpc_code);
    }

    fn settle(&mut self, error_type: &'static str, description: &str, rpc_code: Option<i32>) {
        if std::mem::replace(&mut self.settled, true) {
            return;
        }
        self.histograms
            .get(
                self.metrics,
                self.server,
                self.method,
                self.tool,
                error_type,
            )
            .observe(self.started.elapsed().as_secs_f64());
        if !error_type.is_empty() {
            self.span.record_error(error_type, description, rpc_code);
        }
    }
}

impl Drop for Served<'_> {
    fn drop(&mut self) {
        self.settle("cancelled", "the client went away before the answer", None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_labels_are_capped_per_server() {
        let metrics = Metrics::new().unwrap();
        let table = OperationHistograms::default();
        for n in 0..TOOL_LABEL_CAP + 5 {
            let tool = format!("t{n}");
            table
                .get(&metrics, "s", "tools/call", &tool, "")
                .observe(0.001);
        }
        table
            .get(&metrics, "s", "tools/call", "t0", "timeout")
            .observe(0.001);
        let page = metrics.render();
        assert!(page.contains(r#"gen_ai_tool_name="_OTHER""#));
        assert!(page.contains(r#"gen_ai_tool_name="t99""#));
        assert!(!page.contains(r#"gen_ai_tool_name="t100""#));
        assert!(page.contains(r#"error_type="timeout",gen_ai_tool_name="t0""#));
    }
}
