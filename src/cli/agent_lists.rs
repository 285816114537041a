//! `mcpwatch servers` and `mcpwatch sessions`: a running agent's list, as a
//! table (or its JSON with `--json`).

use std::process::ExitCode;

use mcpwatch::testing::{AgentList, get_list};
use serde_json::Value;

use super::args::AgentArgs;
use super::print_out;
use super::table::table;

/// The columns of `mcpwatch servers`.
const SERVER_COLUMNS: [&str; 6] = [
    "name",
    "transport",
    "state",
    "breaker",
    "sessions",
    "protocol_version",
];

/// The columns of `mcpwatch sessions`.
const SESSION_COLUMNS: [&str; 9] = [
    "server",
    "scope",
    "transport",
    "age_ms",
    "idle_ms",
    "calls",
    "in_flight",
    "owned",
    "mcp_session_id",
];

/// Asks the agent for `list` and prints it.
pub(crate) async fn run(args: &AgentArgs, list: AgentList) -> anyhow::Result<ExitCode> {
    let body = get_list(&args.agent, list, args.token.as_deref()).await?;
    if args.json {
        print_out(&serde_json::to_string_pretty(&body)?);
        return Ok(ExitCode::SUCCESS);
    }
    let columns: &[&str] = match list {
        AgentList::Servers => &SERVER_COLUMNS,
        AgentList::Sessions => &SESSION_COLUMNS,
    };
    let items = body[list.name()].as_array().map(Vec::as_slice);
    print_out(&table(columns, &rows(columns, items.unwrap_or_default())));
    Ok(ExitCode::SUCCESS)
}

/// One row per item: each column's value, strings bare, `-` for null.
fn rows(columns: &[&str], items: &[Value]) -> Vec<Vec<String>> {
    items
        .iter()
        .map(|item| {
            columns
                .iter()
                .map(|column| match &item[*column] {
                    Value::String(text) => text.clone(),
                    Value::Null => "-".to_owned(),
                    other => other.to_string(),
                })
                .collect()
        })
        .collect()
}
