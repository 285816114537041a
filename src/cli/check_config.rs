//! `mcpwatch check-config`: the effective configuration, secrets redacted, as TOML.

use std::process::ExitCode;

use mcpwatch::config::Config;
use serde_json::Value;

use super::print_out;

/// Prints the config's warnings (stderr) and the config itself (stdout).
pub(crate) fn run(config: &Config) -> ExitCode {
    for warning in config.warnings() {
        eprintln!("warning: {warning}");
    }
    match toml_text(config) {
        Ok(text) => {
            print_out(&text);
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: cannot print the config: {error}");
            ExitCode::FAILURE
        }
    }
}

fn toml_text(config: &Config) -> anyhow::Result<String> {
    let value = strip_nulls(serde_json::to_value(config)?);
    Ok(format!(
        "# effective configuration (secrets redacted)\n{}",
        toml::to_string_pretty(&value)?
    ))
}

/// TOML has no null: unset options are left out.
fn strip_nulls(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, strip_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(strip_nulls).collect()),
        other => other,
    }
}
