//! The record of one gateway request: its SERVER span and its
//! `mcp_server_operation_duration_seconds` observation, settled exactly once,
//! by [`Served::finish`] or, when the request is dropped unanswered (the
//! client went away), by `Drop` as `cancelled`.

use std::collections::HashSet;
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use crate::telemetry::Metrics;
use crate::telemetry::spans::McpSpan;

/// Distinct tool labels per gateway before `_OTHER` (a client names tools freely).
const TOOL_LABEL_CAP: usize = 100;
const TOOL_OVERFLOW: &str = "_OTHER";

/// The tool labels in use, capped per gateway.
#[derive(Debug, Default)]
pub(crate) struct ToolLabels(Mutex<HashSet<(String, String)>>);

impl ToolLabels {
    /// The label for `tool` of `server`: the name while under the cap.
    pub(crate) fn label(&self, server: &str, tool: &str) -> String {
        let mut seen = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (server.to_owned(), tool.to_owned());
        if seen.contains(&key) {
            return tool.to_owned();
        }
        if seen.len() >= TOOL_LABEL_CAP {
            return TOOL_OVERFLOW.to_owned();
        }
        seen.insert(key);
        tool.to_owned()
    }
}

/// One request being served.
pub(crate) struct Served<'a> {
    metrics: &'a Metrics,
    labels: [String; 3],
    started: Instant,
    pub(crate) span: McpSpan,
    settled: bool,
}

impl<'a> Served<'a> {
    pub(crate) fn start(
        metrics: &'a Metrics,
        server: &str,
        method: &str,
        tool: String,
        span: McpSpan,
    ) -> Served<'a> {
        Served {
            metrics,
            labels: [server.to_owned(), method.to_owned(), tool],
            started: Instant::now(),
            span,
            settled: false,
        }
    }

    /// Settles the record: `error_type` is empty on success.
    pub(crate) fn finish(mut self, error_type: &str, description: &str, rpc_code: Option<i32>) {
        self.settle(error_type, description, rpc_code);
    }

    fn settle(&mut self, error_type: &str, description: &str, rpc_code: Option<i32>) {
        if std::mem::replace(&mut self.settled, true) {
            return;
        }
        let [server, method, tool] = &self.labels;
        self.metrics
            .gateway_operation_duration
            .with_label_values(&[server.as_str(), method.as_str(), tool.as_str(), error_type])
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
