//! Results kept whole over stdio: a reader between the child's stdout and
//! rmcp's line transport that wraps every response's `result` (after the
//! first, the `initialize` or `server/discover` answer rmcp reads itself) as
//! `{"__mcpwatch_raw": <result>}`.
//!
//! Why: rmcp decodes a result into its untagged `ServerResult`, taking the
//! first typed variant that fits (`CallToolResult`, ...) and dropping every
//! field that variant does not know. The wrapped object fits no typed variant,
//! so rmcp keeps it as `CustomResult`, exactly as sent; [`unwrap`] takes the
//! result back out. The gateway needs this: results pass through unchanged,
//! fields mcpwatch does not know included. The rewrite reads the line once as
//! borrowed raw JSON (no tree is built) and copies it.
//!
//! Lines longer than the transport's limit pass through untouched, so rmcp's
//! own limit still drops them.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use rmcp::model::{CustomResult, ServerResult};
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::io::{AsyncRead, ReadBuf};

/// The key the raw result is wrapped under.
const RAW_KEY: &str = "__mcpwatch_raw";

/// Bytes read from the child at a time.
const CHUNK: usize = 16 * 1024;

/// A reader that wraps responses' results (see the module docs).
pub(crate) struct RawResults<R> {
    inner: R,
    max_line: usize,
    /// The line being assembled.
    line: Vec<u8>,
    /// The current line is over the limit: its bytes pass through.
    passing: bool,
    /// The first response (rmcp's handshake reads it typed) has gone by.
    handshake_done: bool,
    /// Bytes ready for the reader.
    out: Vec<u8>,
    out_at: usize,
    eof: bool,
}

impl<R> RawResults<R> {
    pub(crate) fn new(inner: R, max_line: usize) -> RawResults<R> {
        RawResults {
            inner,
            max_line,
            line: Vec::new(),
            passing: false,
            handshake_done: false,
            out: Vec::new(),
            out_at: 0,
            eof: false,
        }
    }

    /// Splits `chunk` into lines: whole lines are rewritten into `out`.
    fn take_chunk(&mut self, mut chunk: &[u8]) {
        while !chunk.is_empty() {
            let newline = chunk.iter().position(|b| *b == b'\n');
            let end = newline.map_or(chunk.len(), |at| at + 1);
            let (segment, rest) = chunk.split_at(end);
            chunk = rest;
            if self.passing {
                self.out.extend_from_slice(segment);
                self.passing = newline.is_none();
                continue;
            }
            self.line.extend_from_slice(segment);
            if self.line.len() > self.max_line {
                self.out.append(&mut self.line);
                self.passing = newline.is_none();
            } else if newline.is_some() {
                let line = std::mem::take(&mut self.line);
                self.rewrite(&line);
                self.line = line;
                self.line.clear();
            }
        }
    }

    /// Appends `line` to `out`, its result wrapped when it is a response.
    fn rewrite(&mut self, line: &[u8]) {
        #[derive(Deserialize)]
        struct Response<'a> {
            #[serde(borrow)]
            id: Option<&'a RawValue>,
            #[serde(borrow)]
            result: Option<&'a RawValue>,
        }
        let response = serde_json::from_slice::<Response<'_>>(line).ok();
        let (Some(id), Some(result)) = response.map_or((None, None), |r| (r.id, r.result)) else {
            self.out.extend_from_slice(line);
            return;
        };
        if !std::mem::replace(&mut self.handshake_done, true) {
            self.out.extend_from_slice(line);
            return;
        }
        let (id, result) = (id.get().as_bytes(), result.get().as_bytes());
        self.out.reserve(id.len() + result.len() + 64);
        self.out.extend_from_slice(br#"{"jsonrpc":"2.0","id":"#);
        self.out.extend_from_slice(id);
        self.out.extend_from_slice(br#","result":{""#);
        self.out.extend_from_slice(RAW_KEY.as_bytes());
        self.out.extend_from_slice(br#"":"#);
        self.out.extend_from_slice(result);
        self.out.extend_from_slice(b"}}\n");
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for RawResults<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.out_at < this.out.len() {
                let n = buf.remaining().min(this.out.len() - this.out_at);
                buf.put_slice(&this.out[this.out_at..this.out_at + n]);
                this.out_at += n;
                if this.out_at == this.out.len() {
                    this.out.clear();
                    this.out_at = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            let mut chunk = [0u8; CHUNK];
            let mut read = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read))?;
            if read.filled().is_empty() {
                // EOF: an unterminated last line goes as it is.
                this.eof = true;
                this.out.append(&mut this.line);
                continue;
            }
            this.take_chunk(read.filled());
        }
    }
}

/// A result as the server sent it: a wrapped one unwrapped, others as decoded.
pub(crate) fn unwrap(result: ServerResult) -> ServerResult {
    match result {
        ServerResult::CustomResult(CustomResult(serde_json::Value::Object(mut map)))
            if map.len() == 1 && map.contains_key(RAW_KEY) =>
        {
            let raw = map.remove(RAW_KEY).unwrap_or_default();
            ServerResult::CustomResult(CustomResult(raw))
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmcp::model::ServerJsonRpcMessage;
    use serde_json::json;
    use tokio::io::AsyncReadExt;

    async fn through(input: &[u8], max_line: usize) -> Vec<u8> {
        let mut reader = RawResults::new(input, max_line);
        let mut out = Vec::new();
        reader.read_to_end(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn results_after_the_handshake_are_wrapped_and_decode_whole() {
        let input = concat!(
            r#"{"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2025-11-25","capabilities":{},"serverInfo":{"name":"s","version":"1"}}}"#,
            "\n",
            r#"{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"x"}}"#,
            "\n",
            r#"{"jsonrpc":"2.0","id":1,"result":{"content":[],"isError":false,"vendor":{"kept":true}}}"#,
            "\n",
            r#"{"jsonrpc":"2.0","id":2,"result":{}}"#,
            "\n",
            r#"{"jsonrpc":"2.0","id":3,"error":{"code":-1,"message":"m"}}"#,
        );
        let out = String::from_utf8(through(input.as_bytes(), 1 << 20).await).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 5);
        assert_eq!(
            lines[0],
            input.lines().next().unwrap(),
            "the handshake answer is left alone"
        );
        assert_eq!(lines[1], input.lines().nth(1).unwrap());
        assert_eq!(lines[4], input.lines().nth(4).unwrap());
        for (line, expected) in [
            (
                lines[2],
                json!({"content": [], "isError": false, "vendor": {"kept": true}}),
            ),
            (lines[3], json!({})),
        ] {
            let message: ServerJsonRpcMessage = serde_json::from_str(line).unwrap();
            let rmcp::model::JsonRpcMessage::Response(response) = message else {
                panic!("{line}")
            };
            match unwrap(response.result) {
                ServerResult::CustomResult(CustomResult(value)) => assert_eq!(value, expected),
                other => panic!("decoded as a typed variant: {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn an_overlong_line_passes_through_and_the_next_is_rewritten() {
        let long = format!(
            r#"{{"jsonrpc":"2.0","id":1,"result":{{"x":"{}"}}}}"#,
            "y".repeat(100)
        );
        let input = format!(
            "{}\n{long}\n{}\n",
            r#"{"jsonrpc":"2.0","id":0,"result":{}}"#,
            r#"{"jsonrpc":"2.0","id":2,"result":{"a":1}}"#
        );
        let out = String::from_utf8(through(input.as_bytes(), 64).await).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[1], long, "left for rmcp's own limit to drop");
        assert_eq!(
            lines[2],
            r#"{"jsonrpc":"2.0","id":2,"result":{"__mcpwatch_raw":{"a":1}}}"#
        );
    }
}
