//! The commands of the `mcpwatch` binary, one file each, and what they share:
//! loading the config, starting a runtime with telemetry, writing to stdout.
//!
//! Logs go to stderr (set up by `mcpwatch::telemetry`); stdout carries only
//! command output (and the protocol of `demo-server --stdio`).

pub(crate) mod agent_lists;
pub(crate) mod args;
pub(crate) mod bench;
pub(crate) mod call;
pub(crate) mod check_config;
pub(crate) mod demo_server;
pub(crate) mod serve;
mod table;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use mcpwatch::Runtime;
use mcpwatch::config::{Config, ConfigSource, LogFormat};
use mcpwatch::telemetry::{Telemetry, TelemetryGuard};

use args::ConfigArg;

/// Exit status for an invalid configuration or command line (EX_USAGE).
pub(crate) const EXIT_USAGE: u8 = 64;

/// The config of `args` (file, environment, defaults); an invalid one is
/// printed and gives exit status 64.
pub(crate) fn load_config(args: &ConfigArg) -> Result<Config, ExitCode> {
    Config::load(&ConfigSource::from_process(args.config.clone())).map_err(|error| {
        eprintln!("{error}");
        ExitCode::from(EXIT_USAGE)
    })
}

/// Installs logging, OTLP and Sentry per the config, then starts the runtime reporting through them.
pub(crate) async fn start_with_telemetry(
    config: Config,
    log_format: Option<LogFormat>,
) -> anyhow::Result<(Runtime, TelemetryGuard)> {
    let telemetry = Arc::new(Telemetry::from_config(&config.telemetry)?);
    let guard = mcpwatch::telemetry::install(&config, &telemetry, log_format)?;
    let runtime = Runtime::start_with(config, telemetry).await?;
    Ok((runtime, guard))
}

/// Exports what is buffered (spans, Sentry events) before exit.
pub(crate) async fn flush_telemetry(guard: TelemetryGuard) {
    let _ = tokio::task::spawn_blocking(move || guard.shutdown(Duration::from_secs(5))).await;
}

/// The one place the CLI writes to stdout.
#[allow(clippy::print_stdout)]
pub(crate) fn print_out(text: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{text}");
    let _ = stdout.flush();
}
