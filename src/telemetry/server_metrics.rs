//! The metric handles of one server, resolved once, so that a request observes
//! its duration without hashing label values in the registry or taking a lock.
//!
//! A request's `mcp_client_operation_duration_seconds` series depend on its
//! `(method, tool)`. [`ServerMetrics::operation`] finds that pair's
//! [`OperationMetrics`] in a copy-on-write table behind an [`ArcSwap`]: a lookup
//! is a lock-free load plus two small hash lookups, with no write to memory
//! shared with other threads. Only a miss (the first request of a `(method,
//! tool)`) takes the server's writer lock, copies the table and swaps the copy
//! in. The table stays small: each server names at most
//! [`names::TOOL_LABEL_CAP`] tools; beyond, every tool shares the `_OTHER`
//! handles and the table stops growing, so a caller inventing tool names costs
//! neither memory nor a lock.
//!
//! Why `arc-swap` rather than a concurrent map: the table is read on every
//! request and written a bounded number of times, so copy-on-write makes reads
//! as cheap as they get. A sharded lock map (`dashmap`) takes a shard's read
//! lock, an atomic write to a cache line every thread shares, on every call; an
//! epoch-based map (`papaya`) reads lock-free too, but brings its own memory
//! reclamation for writes we barely have. The maps hash with `rustc-hash`
//! (FxHash): SipHash's flooding resistance buys nothing here, as only the first
//! [`names::TOOL_LABEL_CAP`] tool names a caller sends are ever inserted, and
//! it costs each lookup of a short name several times more.

use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use arc_swap::ArcSwap;
use prometheus::{Histogram, HistogramVec, IntGauge};
use rustc_hash::{FxHashMap, FxHashSet};

use super::semconv as names;
use crate::runtime::ErrorKind;

/// Metric handles resolved once per server.
pub(crate) struct ServerMetrics {
    /// `mcp_client_inflight_requests` of this server.
    pub(crate) inflight: IntGauge,
    server: Arc<str>,
    operation_duration: HistogramVec,
    operations: ArcSwap<OperationTable>,
    /// Serializes the (rare) writers of `operations`; readers never take it.
    writer: Mutex<()>,
}

impl ServerMetrics {
    /// The handles of `server`, with its series in `operation_duration`.
    pub(crate) fn new(
        server: &str,
        inflight: IntGauge,
        operation_duration: HistogramVec,
    ) -> ServerMetrics {
        ServerMetrics {
            inflight,
            server: Arc::from(server),
            operation_duration,
            operations: ArcSwap::from_pointee(OperationTable::default()),
            writer: Mutex::new(()),
        }
    }

    /// The handles of a `method` request (on `tool` for `tools/call`), resolved
    /// on first use and cached for every later request.
    pub(crate) fn operation(&self, method: &str, tool: Option<&str>) -> Arc<OperationMetrics> {
        if let Some(found) = self.operations.load().find(method, tool) {
            return Arc::clone(found);
        }
        self.insert(method, tool)
    }

    /// The slow path: adds `(method, tool)` to a copy of the table.
    fn insert(&self, method: &str, tool: Option<&str>) -> Arc<OperationMetrics> {
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let current = self.operations.load_full();
        if let Some(found) = current.find(method, tool) {
            return Arc::clone(found); // another writer was first
        }
        let mut table = OperationTable::clone(&current);
        let found = table.insert(method, tool, |label| {
            OperationMetrics::new(&self.server, method, label, &self.operation_duration)
        });
        self.operations.store(Arc::new(table));
        found
    }
}

/// The resolved `(method, tool)` pairs of one server.
#[derive(Clone, Default)]
struct OperationTable {
    /// By method, then by tool label (`""` for a request without a tool).
    by_method: FxHashMap<Box<str>, FxHashMap<Box<str>, Arc<OperationMetrics>>>,
    /// The tools with a label of their own: at most [`names::TOOL_LABEL_CAP`].
    named_tools: FxHashSet<Box<str>>,
}

impl OperationTable {
    fn find(&self, method: &str, tool: Option<&str>) -> Option<&Arc<OperationMetrics>> {
        let tools = self.by_method.get(method)?;
        let tool = tool.unwrap_or("");
        if let Some(found) = tools.get(tool) {
            return Some(found);
        }
        // A tool beyond the cap shares `_OTHER`; a named tool new to this method does not.
        if self.is_full() && !self.named_tools.contains(tool) {
            return tools.get(names::TOOL_OVERFLOW);
        }
        None
    }

    fn insert(
        &mut self,
        method: &str,
        tool: Option<&str>,
        make: impl FnOnce(&str) -> OperationMetrics,
    ) -> Arc<OperationMetrics> {
        let label = match tool {
            None => "",
            Some(tool) if self.named_tools.contains(tool) => tool,
            Some(_) if self.is_full() => names::TOOL_OVERFLOW,
            Some(tool) => {
                self.named_tools.insert(Box::from(tool));
                tool
            }
        };
        let found = self
            .by_method
            .entry(Box::from(method))
            .or_default()
            .entry(Box::from(label))
            .or_insert_with(|| Arc::new(make(label)));
        Arc::clone(found)
    }

    fn is_full(&self) -> bool {
        self.named_tools.len() >= names::TOOL_LABEL_CAP
    }
}

/// Success, then one series per [`ErrorKind`].
const OUTCOMES: usize = 1 + ErrorKind::ALL.len();

/// The `mcp_client_operation_duration_seconds` series of one `(server, method,
/// tool)`, one per outcome, each resolved from the family on its first use (so
/// that an outcome that never happened has no series, as before caching).
pub(crate) struct OperationMetrics {
    /// The `gen_ai_tool_name` label: the tool, `""`, or `_OTHER` beyond the cap.
    tool_label: Box<str>,
    server: Arc<str>,
    method: Box<str>,
    family: HistogramVec,
    /// Index 0: success; `1 + kind as usize`: that [`ErrorKind`].
    series: [OnceLock<Histogram>; OUTCOMES],
}

impl OperationMetrics {
    fn new(server: &Arc<str>, method: &str, tool_label: &str, family: &HistogramVec) -> Self {
        OperationMetrics {
            tool_label: Box::from(tool_label),
            server: Arc::clone(server),
            method: Box::from(method),
            family: family.clone(),
            series: std::array::from_fn(|_| OnceLock::new()),
        }
    }

    /// The `gen_ai_tool_name` label value these handles record under.
    pub(crate) fn tool_label(&self) -> &str {
        &self.tool_label
    }

    /// Records one request's duration: `error` is `None` on success.
    pub(crate) fn observe(&self, error: Option<ErrorKind>, seconds: f64) {
        // `ErrorKind::ALL` is in declaration order, so `kind as usize` indexes it.
        let index = error.map_or(0, |kind| 1 + kind as usize);
        match self.series.get(index) {
            Some(cell) => cell.get_or_init(|| self.resolve(error)).observe(seconds),
            None => self.resolve(error).observe(seconds),
        }
    }

    fn resolve(&self, error: Option<ErrorKind>) -> Histogram {
        let error = error.map_or("", ErrorKind::as_str);
        self.family
            .with_label_values(&[&*self.server, &*self.method, &*self.tool_label, error])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::Metrics;

    /// Each series of the operation family: (method, tool, error_type, count).
    fn series(metrics: &Metrics) -> Vec<(String, String, String, u64)> {
        let mut out = Vec::new();
        for family in metrics.registry().gather() {
            if family.name() != names::OPERATION_DURATION {
                continue;
            }
            for sample in family.get_metric() {
                let label = |name: &str| {
                    sample
                        .label
                        .iter()
                        .find(|l| l.name() == name)
                        .map(|l| l.value().to_owned())
                        .unwrap_or_default()
                };
                out.push((
                    label(names::LABEL_METHOD),
                    label(names::LABEL_TOOL),
                    label(names::LABEL_ERROR_TYPE),
                    sample.histogram.as_ref().map_or(0, |h| h.sample_count()),
                ));
            }
        }
        out.sort();
        out
    }

    fn server(metrics: &Metrics) -> ServerMetrics {
        metrics.for_server("s", "pipe", &[])
    }

    #[test]
    fn error_kinds_index_their_series() {
        for (index, kind) in ErrorKind::ALL.into_iter().enumerate() {
            assert_eq!(kind as usize, index, "{kind:?}");
        }
    }

    #[test]
    fn handles_are_resolved_once_and_record_under_their_labels() {
        let metrics = Metrics::new().unwrap();
        let server = server(&metrics);
        let echo = server.operation("tools/call", Some("echo"));
        assert!(Arc::ptr_eq(
            &echo,
            &server.operation("tools/call", Some("echo"))
        ));
        echo.observe(None, 0.001);
        echo.observe(Some(ErrorKind::ToolError), 0.001);
        echo.observe(Some(ErrorKind::ToolError), 0.001);
        server.operation("ping", None).observe(None, 0.001);
        server
            .operation("tools/list", None)
            .observe(Some(ErrorKind::Timeout), 0.001);
        let row = |m: &str, t: &str, e: &str, n| (m.to_owned(), t.to_owned(), e.to_owned(), n);
        assert_eq!(
            series(&metrics),
            vec![
                row("ping", "", "", 1),
                row("tools/call", "echo", "", 1),
                row("tools/call", "echo", "tool_error", 2),
                row("tools/list", "", "timeout", 1),
            ],
            "an outcome that never happened has no series"
        );
    }

    #[test]
    fn tools_beyond_the_cap_share_other_and_the_table_stops_growing() {
        let metrics = Metrics::new().unwrap();
        let server = server(&metrics);
        for i in 0..names::TOOL_LABEL_CAP {
            let handles = server.operation("tools/call", Some(&format!("t{i}")));
            assert_eq!(handles.tool_label(), format!("t{i}"));
        }
        let first_over = server.operation("tools/call", Some("late-1"));
        assert_eq!(first_over.tool_label(), names::TOOL_OVERFLOW);
        let table = server.operations.load_full();
        for i in 0..1000 {
            let over = server.operation("tools/call", Some(&format!("late-{i}")));
            assert!(Arc::ptr_eq(&over, &first_over));
        }
        assert!(
            Arc::ptr_eq(&table, &server.operations.load_full()),
            "unknown tools beyond the cap neither copy nor grow the table"
        );
        // A named tool keeps its label, on any method.
        assert_eq!(
            server.operation("tools/call", Some("t0")).tool_label(),
            "t0"
        );
        assert_eq!(server.operation("other", Some("t7")).tool_label(), "t7");
        assert_eq!(
            server.operation("other", Some("late-3")).tool_label(),
            names::TOOL_OVERFLOW
        );
    }

    #[test]
    fn each_server_has_its_own_cap() {
        let metrics = Metrics::new().unwrap();
        let a = metrics.for_server("a", "pipe", &[]);
        let b = metrics.for_server("b", "pipe", &[]);
        for i in 0..names::TOOL_LABEL_CAP {
            a.operation("tools/call", Some(&format!("t{i}")));
        }
        assert_eq!(
            a.operation("tools/call", Some("x")).tool_label(),
            names::TOOL_OVERFLOW
        );
        assert_eq!(b.operation("tools/call", Some("x")).tool_label(), "x");
    }

    #[test]
    fn concurrent_first_uses_agree_on_one_handle() {
        let metrics = Metrics::new().unwrap();
        let server = server(&metrics);
        let handles: Vec<Arc<OperationMetrics>> = std::thread::scope(|scope| {
            let threads: Vec<_> = (0..4)
                .map(|_| scope.spawn(|| server.operation("tools/call", Some("echo"))))
                .collect();
            threads.into_iter().map(|t| t.join().unwrap()).collect()
        });
        assert!(handles.iter().all(|h| Arc::ptr_eq(h, &handles[0])));
    }
}
