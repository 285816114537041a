//! JSON-RPC 2.0 messages as the gateway receives them: parsed from raw JSON,
//! checked strictly (a bad message gets a clear error, never a panic), and the
//! answers it writes.

use serde_json::{Map, Value, json};

/// JSON-RPC: invalid JSON.
pub(crate) const PARSE_ERROR: i32 = -32700;
/// JSON-RPC: not a valid request object.
pub(crate) const INVALID_REQUEST: i32 = -32600;
/// JSON-RPC: invalid method parameters.
pub(crate) const INVALID_PARAMS: i32 = -32602;
/// JSON-RPC: internal error.
pub(crate) const INTERNAL_ERROR: i32 = -32603;
/// MCP 2026-07-28: a standard header disagrees with the body (SEP-2243).
pub(crate) const HEADER_MISMATCH: i32 = -32020;

/// Longest accepted request id (a string id, or a number's text).
const MAX_ID_LEN: usize = 256;

/// One incoming message.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Message {
    /// A request: it gets an answer.
    Request(Request),
    /// A notification: no answer.
    Notification {
        /// The method.
        method: String,
        /// Its params.
        params: Option<Map<String, Value>>,
    },
    /// The client's answer to a request of the server's.
    Response {
        /// The id of the server's request.
        id: Value,
        /// The whole message (`result` or `error`).
        body: Value,
    },
}

/// A request with its id.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Request {
    /// The id, a string or an integer.
    pub(crate) id: Value,
    /// The method.
    pub(crate) method: String,
    /// The params, when sent.
    pub(crate) params: Option<Map<String, Value>>,
}

/// A message the gateway refuses, with the id to answer under (null when unknown).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Refused {
    pub(crate) id: Value,
    pub(crate) code: i32,
    pub(crate) message: String,
}

impl Refused {
    fn new(id: Value, code: i32, message: impl Into<String>) -> Refused {
        Refused {
            id,
            code,
            message: message.into(),
        }
    }

    /// The error answer.
    pub(crate) fn answer(&self) -> Value {
        error_answer(&self.id, self.code, &self.message, None)
    }
}

/// A body: one message or a batch of them.
#[derive(Debug)]
pub(crate) enum Body {
    /// One message.
    Single(Result<Message, Refused>),
    /// A batch (a JSON array).
    Batch(Vec<Result<Message, Refused>>),
}

/// Parses a request body; `Err` when it is not JSON at all (or nested too deep).
pub(crate) fn parse(bytes: &[u8]) -> Result<Body, Refused> {
    // serde_json's recursion limit (128) stays on: deep nesting is an error.
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| Refused::new(Value::Null, PARSE_ERROR, format!("parse error: {e}")))?;
    match value {
        Value::Array(items) if items.is_empty() => {
            Err(Refused::new(Value::Null, INVALID_REQUEST, "an empty batch"))
        }
        Value::Array(items) => Ok(Body::Batch(items.into_iter().map(message).collect())),
        other => Ok(Body::Single(message(other))),
    }
}

/// One message, checked.
pub(crate) fn message(value: Value) -> Result<Message, Refused> {
    let Value::Object(mut object) = value else {
        return Err(Refused::new(
            Value::Null,
            INVALID_REQUEST,
            "a message must be a JSON object",
        ));
    };
    let id = match object.remove("id") {
        None => None,
        Some(id) => Some(checked_id(id)?),
    };
    let refuse =
        |message: &str| Refused::new(id.clone().unwrap_or(Value::Null), INVALID_REQUEST, message);
    if object.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(refuse("`jsonrpc` must be \"2.0\""));
    }
    let params = match object.remove("params") {
        None => None,
        Some(Value::Object(params)) => Some(params),
        Some(_) => return Err(refuse("`params` must be an object")),
    };
    match (object.remove("method"), id) {
        (Some(Value::String(method)), Some(id)) => {
            if method.starts_with("notifications/") {
                return Err(Refused::new(
                    id,
                    INVALID_REQUEST,
                    format!("{method} is a notification: it carries no id"),
                ));
            }
            Ok(Message::Request(Request { id, method, params }))
        }
        (Some(Value::String(method)), None) => Ok(Message::Notification { method, params }),
        (Some(_), id) => Err(Refused::new(
            id.unwrap_or(Value::Null),
            INVALID_REQUEST,
            "`method` must be a string",
        )),
        (None, Some(id)) if object.contains_key("result") || object.contains_key("error") => {
            let mut body = object;
            body.insert("id".to_owned(), id.clone());
            Ok(Message::Response {
                id,
                body: Value::Object(body),
            })
        }
        (None, id) => Err(Refused::new(
            id.unwrap_or(Value::Null),
            INVALID_REQUEST,
            "neither a request, a notification nor a response",
        )),
    }
}

/// An id is a string or an integer of sane length.
fn checked_id(id: Value) -> Result<Value, Refused> {
    let ok = match &id {
        Value::String(s) => s.len() <= MAX_ID_LEN,
        Value::Number(n) => n.is_i64() || n.is_u64(),
        _ => false,
    };
    if ok {
        Ok(id)
    } else {
        Err(Refused::new(
            Value::Null,
            INVALID_REQUEST,
            format!("an id must be a string of at most {MAX_ID_LEN} bytes or an integer"),
        ))
    }
}

/// The key of an id in maps: its JSON text (`1` and `"1"` differ).
pub(crate) fn id_key(id: &Value) -> String {
    id.to_string()
}

/// A result answer.
pub(crate) fn result_answer(id: &Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

/// An error answer.
pub(crate) fn error_answer(id: &Value, code: i32, message: &str, data: Option<Value>) -> Value {
    let mut error = json!({"code": code, "message": message});
    if let Some(data) = data {
        error["data"] = data;
    }
    json!({"jsonrpc": "2.0", "id": id, "error": error})
}

/// A notification.
pub(crate) fn notification(method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "method": method, "params": params})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> Result<Message, Refused> {
        match parse(text.as_bytes()) {
            Ok(Body::Single(m)) => m,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn requests_notifications_and_responses_are_told_apart() {
        assert!(matches!(
            one(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#),
            Ok(Message::Request(_))
        ));
        assert!(matches!(
            one(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#),
            Ok(Message::Notification { .. })
        ));
        assert!(matches!(
            one(r#"{"jsonrpc":"2.0","id":"a","result":{}}"#),
            Ok(Message::Response { .. })
        ));
    }

    #[test]
    fn hostile_messages_get_clear_errors() {
        for (text, code) in [
            (
                r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#,
                INVALID_REQUEST,
            ),
            (
                r#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#,
                INVALID_REQUEST,
            ),
            (
                r#"{"jsonrpc":"2.0","id":{"a":1},"method":"ping"}"#,
                INVALID_REQUEST,
            ),
            (
                r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#,
                INVALID_REQUEST,
            ),
            (r#"{"jsonrpc":"2.0","id":1,"method":7}"#, INVALID_REQUEST),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":[1]}"#,
                INVALID_REQUEST,
            ),
            (
                r#"{"jsonrpc":"2.0","id":3,"method":"notifications/cancelled"}"#,
                INVALID_REQUEST,
            ),
            (r#"{"jsonrpc":"2.0"}"#, INVALID_REQUEST),
            (r#"7"#, INVALID_REQUEST),
        ] {
            assert_eq!(one(text).unwrap_err().code, code, "{text}");
        }
        let huge = format!(
            r#"{{"jsonrpc":"2.0","id":"{}","method":"ping"}}"#,
            "x".repeat(300)
        );
        assert_eq!(one(&huge).unwrap_err().code, INVALID_REQUEST);
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert_eq!(parse(deep.as_bytes()).unwrap_err().code, PARSE_ERROR);
        assert_eq!(parse(b"[]").unwrap_err().code, INVALID_REQUEST);
        assert_eq!(parse(b"{").unwrap_err().code, PARSE_ERROR);
    }
}
