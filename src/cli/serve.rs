//! `mcpwatch serve`: the agent, until SIGTERM or SIGINT.

use std::process::ExitCode;

use mcpwatch::agent::Bound;
use mcpwatch::config::{Config, LogFormat};

use super::{flush_telemetry, print_out, start_with_telemetry};

/// Runs the agent, drains it on a signal, flushes telemetry.
pub(crate) async fn run(config: Config, log_format: Option<LogFormat>) -> anyhow::Result<ExitCode> {
    for warning in config.warnings() {
        tracing::warn!(key = %warning.path, "{}", warning.message);
    }
    raise_open_file_limit();
    let agent_config = config.agent.clone();
    let first_server = config.servers.keys().next().cloned().unwrap_or_default();
    let with_token = agent_config.token.is_some();
    let (runtime, guard) = start_with_telemetry(config, log_format).await?;
    let report = mcpwatch::agent::serve(runtime, &agent_config, stop_signal(), |bound| {
        print_out(&banner(&bound, &first_server, with_token));
    })
    .await?;
    if !report.drained {
        tracing::warn!("some calls were still running when the drain timeout passed");
    }
    flush_telemetry(guard).await;
    Ok(ExitCode::SUCCESS)
}

/// Many sessions need many fds: the soft limit goes up to the hard one.
fn raise_open_file_limit() {
    match mcpwatch::testing::raise_open_file_limit() {
        Ok(limit) if limit.soft > limit.before => tracing::info!(
            from = limit.before,
            to = limit.soft,
            "raised the open-file limit to the hard limit"
        ),
        Ok(limit) => tracing::debug!(limit = limit.soft, "open-file limit"),
        Err(error) => tracing::warn!(%error, "cannot raise the open-file limit"),
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn stop_signal() {
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(error) => {
                tracing::error!(%error, "cannot watch SIGTERM; stop with Ctrl-C");
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
        _ = terminate.recv() => tracing::info!("SIGTERM received"),
    }
}

/// Where the agent listens, and a first call to try.
fn banner(bound: &Bound, first_server: &str, with_token: bool) -> String {
    let Bound { api, admin } = bound;
    let token_hint = if with_token {
        " -H \"Authorization: Bearer $MCPWATCH_TOKEN\""
    } else {
        ""
    };
    format!(
        "mcpwatch agent: API on http://{api}  admin on http://{admin}\n\
         try:\n  curl -s http://{api}/v1/tools/call{token_hint} -H 'content-type: application/json' \\\n    \
         -d '{{\"server\": \"{first_server}\", \"tool\": \"echo\", \"arguments\": {{\"message\": \"hello\"}}, \"scope\": \"thread-1\"}}'\n  \
         curl -s http://{admin}/metrics | grep mcp_client_sessions_active"
    )
}
