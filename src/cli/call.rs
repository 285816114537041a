//! `mcpwatch call SERVER TOOL [key=value ...]`: one tool call, in-process.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use mcpwatch::config::{Config, LogFormat};
use mcpwatch::{CallOptions, ToolCall};
use serde_json::{Map, Value};

use super::args::CallArgs;
use super::{flush_telemetry, print_out, start_with_telemetry};

/// Runs the call, prints its result; exit status 2 for a tool error.
pub(crate) async fn run(
    args: CallArgs,
    config: Config,
    log_format: Option<LogFormat>,
) -> anyhow::Result<ExitCode> {
    let arguments = arguments(&args)?;
    let (runtime, guard) = start_with_telemetry(config, log_format).await?;
    let options = CallOptions {
        scope: args.scope.clone(),
        timeout: args.timeout,
        ..CallOptions::default()
    };
    let outcome = runtime
        .call_tool(
            &args.server,
            &args.tool,
            Some(Value::Object(arguments)),
            options,
        )
        .await;
    runtime.shutdown(Duration::from_secs(5)).await;
    flush_telemetry(guard).await;
    let call = outcome?;
    print_result(&call, args.json)?;
    Ok(if call.is_error() {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

/// `--args` (a JSON object), with the `key=value` pairs over it.
fn arguments(args: &CallArgs) -> anyhow::Result<Map<String, Value>> {
    let mut arguments = match &args.args {
        Some(text) => match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(map)) => map,
            Ok(_) => anyhow::bail!("--args must be a JSON object"),
            Err(error) => anyhow::bail!("--args is not valid JSON: {error}"),
        },
        None => Map::new(),
    };
    for pair in &args.pairs {
        let (key, value) = pair
            .split_once('=')
            .with_context(|| format!("`{pair}` is not KEY=VALUE"))?;
        let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_owned()));
        arguments.insert(key.to_owned(), value);
    }
    Ok(arguments)
}

/// The raw result with `--json`; else each text block, other blocks as JSON,
/// then the structured content.
fn print_result(call: &ToolCall, json: bool) -> anyhow::Result<()> {
    if json {
        print_out(&serde_json::to_string_pretty(&call.result)?);
        return Ok(());
    }
    for block in &call.result.content {
        match block.as_text() {
            Some(text) => print_out(&text.text),
            None => print_out(&serde_json::to_string(block)?),
        }
    }
    if let Some(structured) = &call.result.structured_content {
        print_out(&serde_json::to_string_pretty(structured)?);
    }
    Ok(())
}
