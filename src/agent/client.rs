//! A lean HTTP/1.1 client for `POST /v1/tools/call`: the load generator of
//! `mcpwatch bench --mode agent`.
//!
//! The load generator shares the machine with the agent, so what it costs per
//! call is counted in the latency the API adds. What this client does, so that
//! numbers made with it can be judged:
//!
//! * one keep-alive TCP connection (`TCP_NODELAY`) per call in flight, opened on
//!   first use and reused; a reused connection the agent has closed is replaced
//!   once, transparently;
//! * the whole request (head and JSON body) built once, and written with one
//!   `write` per call;
//! * the answer read up to its `Content-Length` (or to its last chunk), its
//!   status checked, and of its JSON only `result.isError` decoded (serde skips
//!   the rest without building it); the body is still read and checked to be
//!   well-formed JSON;
//! * no TLS, redirects, proxies or compression: the agent speaks plain HTTP/1.1.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest answer head accepted.
const MAX_HEAD: usize = 64 * 1024;
/// Largest answer body accepted.
const MAX_BODY: usize = 64 * 1024 * 1024;

/// Calls one tool, with one fixed request, through a running agent's API.
#[derive(Debug)]
pub struct CallClient {
    addr: String,
    request: Vec<u8>,
    /// Where the blank line ending the head starts in `request`.
    head_end: usize,
    timeout: Duration,
    idle: Mutex<Vec<Connection>>,
}

#[derive(Debug)]
struct Connection {
    stream: TcpStream,
    buf: Vec<u8>,
}

/// An answer read off a connection.
struct Answer {
    status: u16,
    body: std::ops::Range<usize>,
    keep_alive: bool,
}

/// Why an exchange failed.
enum Failure {
    /// The connection was closed before any byte of the answer: a reused
    /// connection the agent had already closed.
    Stale,
    /// Anything else.
    Other(String),
}

impl From<std::io::Error> for Failure {
    fn from(error: std::io::Error) -> Failure {
        Failure::Other(error.to_string())
    }
}

/// What of the answer is decoded: `result.isError`.
#[derive(Deserialize)]
struct AnswerFlag {
    result: Option<ResultFlag>,
}

#[derive(Deserialize)]
struct ResultFlag {
    #[serde(rename = "isError")]
    is_error: Option<bool>,
}

impl CallClient {
    /// A client posting `body` (JSON) to `{agent}/v1/tools/call`, with `token`
    /// as bearer token, each call bounded by `timeout`. `agent` is an
    /// `http://host:port` URL, optionally with a path prefix.
    pub fn new(
        agent: &str,
        body: &[u8],
        token: Option<&str>,
        timeout: Duration,
    ) -> Result<CallClient, String> {
        let url = url::Url::parse(agent).map_err(|e| format!("bad agent URL {agent}: {e}"))?;
        if url.scheme() != "http" {
            return Err(format!(
                "the agent load generator speaks plain http:// only, not {}",
                url.scheme()
            ));
        }
        let host = url
            .host_str()
            .ok_or_else(|| format!("no host in the agent URL {agent}"))?;
        let port = url.port_or_known_default().unwrap_or(80);
        let authority = match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        };
        let path = format!("{}/v1/tools/call", url.path().trim_end_matches('/'));
        let mut head = format!(
            "POST {path} HTTP/1.1\r\nhost: {authority}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
            body.len()
        );
        if let Some(token) = token {
            head.push_str(&format!("authorization: Bearer {token}\r\n"));
        }
        let head_end = head.len();
        head.push_str("\r\n");
        let mut request = head.into_bytes();
        request.extend_from_slice(body);
        Ok(CallClient {
            addr: format!("{host}:{port}"),
            request,
            head_end,
            timeout,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// One call: Ok for a 2xx answer whose `result.isError` is not true, else
    /// the answer (or the transport error) as the error.
    pub async fn call(&self) -> Result<(), String> {
        self.call_request(&self.request).await
    }

    /// [`CallClient::call`] with an `Idempotency-Key: key` header (the request
    /// is then built per call).
    pub async fn call_with_key(&self, key: &str) -> Result<(), String> {
        let (head, rest) = self.request.split_at(self.head_end);
        let mut request = Vec::with_capacity(self.request.len() + key.len() + 20);
        request.extend_from_slice(head);
        request.extend_from_slice(b"idempotency-key: ");
        request.extend_from_slice(key.as_bytes());
        request.extend_from_slice(b"\r\n");
        request.extend_from_slice(rest);
        self.call_request(&request).await
    }

    async fn call_request(&self, request: &[u8]) -> Result<(), String> {
        match tokio::time::timeout(self.timeout, self.call_inner(request)).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {:?}", self.timeout)),
        }
    }

    async fn call_inner(&self, request: &[u8]) -> Result<(), String> {
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let (mut conn, answer) = match idle {
            Some(mut conn) => match self.exchange(&mut conn, request).await {
                Ok(answer) => (conn, answer),
                Err(Failure::Stale) => self.fresh_exchange(request).await?,
                Err(Failure::Other(error)) => return Err(error),
            },
            None => self.fresh_exchange(request).await?,
        };
        let body = &conn.buf[answer.body.clone()];
        let outcome = if (200..300).contains(&answer.status)
            && serde_json::from_slice::<AnswerFlag>(body)
                .is_ok_and(|a| a.result.and_then(|r| r.is_error) != Some(true))
        {
            Ok(())
        } else {
            Err(format!(
                "{} {}",
                answer.status,
                String::from_utf8_lossy(body)
            ))
        };
        if answer.keep_alive {
            conn.buf.clear();
            self.idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(conn);
        }
        outcome
    }

    async fn fresh_exchange(&self, request: &[u8]) -> Result<(Connection, Answer), String> {
        let stream = TcpStream::connect(&self.addr)
            .await
            .map_err(|e| format!("cannot connect to {}: {e}", self.addr))?;
        let _ = stream.set_nodelay(true);
        let mut conn = Connection {
            stream,
            buf: Vec::with_capacity(4096),
        };
        match self.exchange(&mut conn, request).await {
            Ok(answer) => Ok((conn, answer)),
            Err(Failure::Stale) => Err("the agent closed the connection".to_owned()),
            Err(Failure::Other(error)) => Err(error),
        }
    }

    /// Writes the request and reads the answer into `conn.buf`.
    async fn exchange(&self, conn: &mut Connection, request: &[u8]) -> Result<Answer, Failure> {
        conn.stream.write_all(request).await?;
        conn.buf.clear();
        let head_end = loop {
            if let Some(at) = find(&conn.buf, b"\r\n\r\n") {
                break at + 4;
            }
            if conn.buf.len() > MAX_HEAD {
                return Err(Failure::Other("answer head too large".to_owned()));
            }
            if conn.stream.read_buf(&mut conn.buf).await? == 0 {
                return Err(if conn.buf.is_empty() {
                    Failure::Stale
                } else {
                    Failure::Other("the agent closed the connection mid-answer".to_owned())
                });
            }
        };
        let head = Head::parse(&conn.buf[..head_end])?;
        let body = match (head.content_length, head.chunked) {
            (Some(length), false) => {
                if length > MAX_BODY {
                    return Err(Failure::Other("answer body too large".to_owned()));
                }
                let end = head_end + length;
                while conn.buf.len() < end {
                    conn.buf.reserve(end - conn.buf.len());
                    if conn.stream.read_buf(&mut conn.buf).await? == 0 {
                        return Err(Failure::Other(
                            "the agent closed the connection mid-body".to_owned(),
                        ));
                    }
                }
                head_end..end
            }
            (_, true) => {
                while !conn.buf[head_end..].ends_with(b"0\r\n\r\n") {
                    if conn.buf.len() - head_end > MAX_BODY {
                        return Err(Failure::Other("answer body too large".to_owned()));
                    }
                    if conn.stream.read_buf(&mut conn.buf).await? == 0 {
                        return Err(Failure::Other(
                            "the agent closed the connection mid-body".to_owned(),
                        ));
                    }
                }
                let decoded = dechunk(&conn.buf[head_end..])?;
                conn.buf.truncate(head_end);
                conn.buf.extend_from_slice(&decoded);
                head_end..conn.buf.len()
            }
            (None, false) => {
                // No length: the body runs to the end of the connection.
                conn.stream.read_to_end(&mut conn.buf).await?;
                return Ok(Answer {
                    status: head.status,
                    body: head_end..conn.buf.len(),
                    keep_alive: false,
                });
            }
        };
        Ok(Answer {
            status: head.status,
            body,
            keep_alive: head.keep_alive,
        })
    }
}

/// What of an answer's head is used.
struct Head {
    status: u16,
    content_length: Option<usize>,
    chunked: bool,
    keep_alive: bool,
}

impl Head {
    fn parse(head: &[u8]) -> Result<Head, Failure> {
        let text = std::str::from_utf8(head)
            .map_err(|_| Failure::Other("answer head is not UTF-8".to_owned()))?;
        let mut lines = text.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or_default();
        let status = parts
            .next()
            .and_then(|s| s.parse::<u16>().ok())
            .ok_or_else(|| Failure::Other(format!("bad status line: {status_line}")))?;
        let mut parsed = Head {
            status,
            content_length: None,
            chunked: false,
            keep_alive: version == "HTTP/1.1",
        };
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let (name, value) = (name.trim(), value.trim());
            if name.eq_ignore_ascii_case("content-length") {
                parsed.content_length = Some(
                    value
                        .parse()
                        .map_err(|_| Failure::Other(format!("bad content-length: {value}")))?,
                );
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                parsed.chunked = value.to_ascii_lowercase().contains("chunked");
            } else if name.eq_ignore_ascii_case("connection") {
                if value.eq_ignore_ascii_case("close") {
                    parsed.keep_alive = false;
                } else if value.eq_ignore_ascii_case("keep-alive") {
                    parsed.keep_alive = true;
                }
            }
        }
        Ok(parsed)
    }
}

/// The body of a chunked answer (no trailers).
fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, Failure> {
    let bad = || Failure::Other("bad chunked body".to_owned());
    let mut out = Vec::with_capacity(data.len());
    loop {
        let line_end = find(data, b"\r\n").ok_or_else(bad)?;
        let size_text = std::str::from_utf8(&data[..line_end]).map_err(|_| bad())?;
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| bad())?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size + 2 {
            return Err(bad());
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_and_chunks_parse() {
        let head = Head::parse(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nContent-Length: 12\r\n\r\n",
        )
        .ok()
        .unwrap();
        assert_eq!(
            (head.status, head.content_length, head.keep_alive),
            (200, Some(12), true)
        );
        let head = Head::parse(b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\ntransfer-encoding: chunked\r\n\r\n")
            .ok()
            .unwrap();
        assert_eq!(
            (head.status, head.chunked, head.keep_alive),
            (503, true, false)
        );
        assert_eq!(
            dechunk(b"3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n")
                .ok()
                .unwrap(),
            b"abcde"
        );
        assert!(dechunk(b"zz\r\n").is_err());
    }

    #[test]
    fn requests_are_built_once() {
        let client = CallClient::new(
            "http://127.0.0.1:8700/",
            b"{}",
            Some("t"),
            Duration::from_secs(1),
        )
        .unwrap();
        assert_eq!(client.addr, "127.0.0.1:8700");
        assert_eq!(
            String::from_utf8(client.request).unwrap(),
            "POST /v1/tools/call HTTP/1.1\r\nhost: 127.0.0.1:8700\r\ncontent-type: application/json\r\ncontent-length: 2\r\nauthorization: Bearer t\r\n\r\n{}"
        );
        assert!(CallClient::new("https://x", b"{}", None, Duration::from_secs(1)).is_err());
        let client = CallClient::new("http://h:1", b"{}", None, Duration::from_secs(1)).unwrap();
        let (head, rest) = client.request.split_at(client.head_end);
        assert_eq!(
            (head, rest),
            (
                &b"POST /v1/tools/call HTTP/1.1\r\nhost: h:1\r\ncontent-type: application/json\r\ncontent-length: 2\r\n"[..],
                &b"\r\n{}"[..]
            )
        );
    }
}
