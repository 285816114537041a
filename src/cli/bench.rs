//! `mcpwatch bench`: a tool's latency distribution and throughput.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use mcpwatch::config::{Config, LogFormat};
use mcpwatch::testing::{BenchMode, BenchPlan, BenchReport, parse_header};

use super::args::BenchArgs;
use super::table::table;
use super::{flush_telemetry, print_out, start_with_telemetry};

/// Runs the benchmark and prints its report; exit status 2 if any call failed.
pub(crate) async fn run(
    args: BenchArgs,
    config: Config,
    log_format: Option<LogFormat>,
) -> anyhow::Result<ExitCode> {
    let json = args.json;
    let plan = plan(args)?;
    // Through an agent or a URL, this process runs no runtime: logs only.
    let (runtime, guard) = if plan.mode == BenchMode::Agent || plan.mode.calls_a_url() {
        mcpwatch::telemetry::install_logging(&config.log, log_format);
        (None, None)
    } else {
        let (runtime, guard) = start_with_telemetry(config, log_format).await?;
        (Some(runtime), Some(guard))
    };
    let report = mcpwatch::testing::run(&plan, runtime.as_ref()).await;
    if let Some(runtime) = runtime {
        runtime.shutdown(Duration::from_secs(10)).await;
    }
    if let Some(guard) = guard {
        flush_telemetry(guard).await;
    }
    let report = report.map_err(|e| anyhow::anyhow!("benchmark failed: {e}"))?;
    print_report(&report, json)?;
    Ok(if report.errors > 0 {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

fn plan(args: BenchArgs) -> anyhow::Result<BenchPlan> {
    let arguments = match &args.args {
        Some(text) => Some(serde_json::from_str(text).context("--args is not valid JSON")?),
        None => None,
    };
    let server = match (args.server, args.mode.calls_a_url()) {
        (Some(server), false) => server,
        (None, true) => String::new(),
        (Some(_), true) => anyhow::bail!("--server is not used in the modes that call --url"),
        (None, false) => anyhow::bail!("--server is required in this mode"),
    };
    if args.mode.calls_a_url() != args.url.is_some() {
        anyhow::bail!("--url is required in modes mcp and mcp-per-call-session, and only there");
    }
    if !args.mode.calls_a_url() && !args.headers.is_empty() {
        anyhow::bail!("--header is only sent to --url (modes mcp, mcp-per-call-session)");
    }
    let headers = args
        .headers
        .iter()
        .map(|header| parse_header(header))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(BenchPlan {
        server,
        tool: args.tool,
        arguments,
        calls: args.calls,
        concurrency: args.concurrency.max(1),
        mode: args.mode,
        agent: args.agent,
        token: args.token,
        url: args.url,
        headers,
        progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
        latencies: args.latencies,
    })
}

/// One JSON line with `--json` (DESIGN §7b), else a one-row table.
fn print_report(report: &BenchReport, json: bool) -> anyhow::Result<()> {
    if json {
        print_out(&serde_json::to_string(report)?);
        return Ok(());
    }
    let row = vec![
        report.calls.to_string(),
        report.errors.to_string(),
        report.p50_us.to_string(),
        report.p90_us.to_string(),
        report.p99_us.to_string(),
        report.max_us.to_string(),
        format!("{:.0}", report.calls_per_s),
    ];
    let columns = [
        "calls",
        "errors",
        "p50_us",
        "p90_us",
        "p99_us",
        "max_us",
        "calls_per_s",
    ];
    print_out(&table(&columns, &[row]));
    Ok(())
}
