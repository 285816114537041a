//! `mcpwatch demo-server (--stdio | --http ADDR)`: the built-in demo MCP server.

use std::process::ExitCode;

use tokio_util::sync::CancellationToken;

use super::args::DemoServerArgs;
use super::{EXIT_USAGE, print_out};

/// Serves until stdin closes (`--stdio`) or SIGINT/SIGTERM (`--http`).
pub(crate) async fn run(args: DemoServerArgs) -> anyhow::Result<ExitCode> {
    if args.stdio {
        mcpwatch::demo::serve_stdio().await?;
        return Ok(ExitCode::SUCCESS);
    }
    let Some(addr) = args.http else {
        return Ok(ExitCode::from(EXIT_USAGE));
    };
    let shutdown = CancellationToken::new();
    cancel_on_signal(&shutdown)?;
    mcpwatch::demo::serve_http(addr, shutdown, |bound| {
        print_out(&format!("demo MCP server listening on http://{bound}/mcp"));
    })
    .await?;
    Ok(ExitCode::SUCCESS)
}

/// Cancels `shutdown` on SIGINT or SIGTERM.
fn cancel_on_signal(shutdown: &CancellationToken) -> std::io::Result<()> {
    let stopper = shutdown.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        stopper.cancel();
    });
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let stopper = shutdown.clone();
    tokio::spawn(async move {
        terminate.recv().await;
        stopper.cancel();
    });
    Ok(())
}
