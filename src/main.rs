//! The `mcpwatch` command line: parse, load the config (exit 64 when invalid),
//! run the command. The commands live in `cli/`, one file each.

mod cli;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use mcpwatch::config::{LogConfig, LogFormat};
use mcpwatch::testing::AgentList;

use cli::args::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let log_format = cli.log_format();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(worker_threads())
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(dispatch(cli.command, log_format));
    runtime.shutdown_timeout(Duration::from_secs(1));
    outcome.unwrap_or_else(|error| {
        eprintln!("error: {error:#}");
        ExitCode::FAILURE
    })
}

/// At least two workers, even on one CPU (DESIGN §8b).
fn worker_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .max(2)
}

/// Runs `command`. `serve`, `call` and `bench` set up their telemetry (logs,
/// OTLP, Sentry) themselves; the others only log.
async fn dispatch(command: Command, log_format: Option<LogFormat>) -> anyhow::Result<ExitCode> {
    let config = match command.config_arg().map(cli::load_config).transpose() {
        Ok(config) => config,
        Err(code) => return Ok(code),
    };
    let logs_only = |log: &LogConfig| mcpwatch::telemetry::install_logging(log, log_format);
    match (command, config) {
        (Command::Serve(_), Some(config)) => cli::serve::run(config, log_format).await,
        (Command::CheckConfig(_), Some(config)) => {
            logs_only(&config.log);
            Ok(cli::check_config::run(&config))
        }
        (Command::Call(args), Some(config)) => cli::call::run(args, config, log_format).await,
        (Command::Bench(args), Some(config)) => cli::bench::run(args, config, log_format).await,
        (Command::DemoServer(args), _) => {
            logs_only(&LogConfig::default());
            cli::demo_server::run(args).await
        }
        (Command::Servers(args), _) => {
            logs_only(&LogConfig::default());
            cli::agent_lists::run(&args, AgentList::Servers).await
        }
        (Command::Sessions(args), _) => {
            logs_only(&LogConfig::default());
            cli::agent_lists::run(&args, AgentList::Sessions).await
        }
        // `config_arg` gives a config to every command matched above with one.
        (_, None) => Ok(ExitCode::from(cli::EXIT_USAGE)),
    }
}
