//! Reading a running agent's lists over its API (`mcpwatch servers` and
//! `mcpwatch sessions`), with the crate's one HTTP client (the runtime's
//! `transport::http::shared_client`) rather than one of its own.

use std::time::Duration;

/// How long the agent may take to answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// A list a running agent serves under `/v1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentList {
    /// `GET /v1/servers`: configured servers, their state and breaker.
    Servers,
    /// `GET /v1/sessions`: live sessions.
    Sessions,
}

impl AgentList {
    /// The list's name: its path under `/v1` and its key in the answer.
    pub const fn name(self) -> &'static str {
        match self {
            AgentList::Servers => "servers",
            AgentList::Sessions => "sessions",
        }
    }
}

/// Why a list could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RemoteError {
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client")]
    Client(#[source] reqwest::Error),
    /// No answer (connection refused, timeout, bad URL).
    #[error("cannot reach the agent at {url}")]
    Unreachable {
        /// What was asked.
        url: String,
        /// Why.
        #[source]
        source: reqwest::Error,
    },
    /// The answer was not JSON.
    #[error("{url} did not answer JSON")]
    NotJson {
        /// What was asked.
        url: String,
        /// Why.
        #[source]
        source: reqwest::Error,
    },
    /// The agent answered an error (a wrong token, say).
    #[error("the agent answered {status}: {message}")]
    Refused {
        /// The HTTP status.
        status: reqwest::StatusCode,
        /// The agent's `error.message`.
        message: String,
    },
}

/// The agent's JSON answer to `GET {agent}/v1/{list}`, with `token` as bearer
/// token when given.
pub async fn get_list(
    agent: &str,
    list: AgentList,
    token: Option<&str>,
) -> Result<serde_json::Value, RemoteError> {
    let url = format!("{}/v1/{}", agent.trim_end_matches('/'), list.name());
    let client = crate::runtime::transport::http::shared_client().map_err(RemoteError::Client)?;
    let mut request = client.get(&url).timeout(ANSWER_TIMEOUT);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = match request.send().await {
        Ok(response) => response,
        Err(source) => return Err(RemoteError::Unreachable { url, source }),
    };
    let status = response.status();
    let body: serde_json::Value = match response.json().await {
        Ok(body) => body,
        Err(source) => return Err(RemoteError::NotJson { url, source }),
    };
    if !status.is_success() {
        let message = body["error"]["message"].as_str().unwrap_or("unknown error");
        return Err(RemoteError::Refused {
            status,
            message: message.to_owned(),
        });
    }
    Ok(body)
}
