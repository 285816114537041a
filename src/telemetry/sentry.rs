//! Sentry reports: unclosed sessions (warning), tool failures and open failures
//! (error), with the tags, fingerprints and `mcp` context of DESIGN §5.
//!
//! * A per-fingerprint rate limit keeps a failing server from flooding the project.
//! * Events go through our own bounded transport (full: dropped and counted;
//!   failures counted and logged once a minute), so a Sentry that is down or slow
//!   costs the call path nothing.
//! * Every configured secret is scrubbed from every event before it leaves, and
//!   tool arguments and results are attached only with `send_default_pii`.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use prometheus::IntCounter;
use sentry::protocol::{Breadcrumb, Context, Event, Level, Map};
use sentry::{ClientOptions, Envelope, Hub, Transport};
use serde_json::Value;

use super::warn_limit::WarnLimiter;
use crate::config::{Config, Secret};

/// Events per fingerprint per window at most.
const EVENTS_PER_WINDOW: u32 = 10;
/// The rate-limit window.
const WINDOW: Duration = Duration::from_secs(60);
/// Envelopes waiting for the transport at most.
const TRANSPORT_QUEUE: usize = 64;
/// Recent calls kept per session for breadcrumbs.
pub(crate) const BREADCRUMBS_PER_SESSION: usize = 20;

/// One report.
pub(crate) struct Report {
    pub level: Level,
    pub message: String,
    pub fingerprint: Vec<String>,
    pub tags: Vec<(&'static str, String)>,
    pub mcp: BTreeMap<String, Value>,
    pub breadcrumbs: Vec<Breadcrumb>,
}

/// Sends reports to the process's Sentry client, if one is installed.
#[derive(Debug)]
pub(crate) struct SentryReporter {
    send_default_pii: bool,
    windows: Mutex<HashMap<Vec<String>, (Instant, u32)>>,
    limited: Option<IntCounter>,
}

impl SentryReporter {
    /// A reporter; `limited` counts reports dropped by the rate limit.
    pub(crate) fn new(send_default_pii: bool, limited: Option<IntCounter>) -> SentryReporter {
        SentryReporter {
            send_default_pii,
            windows: Mutex::new(HashMap::new()),
            limited,
        }
    }

    /// True when a Sentry client is installed and enabled.
    pub(crate) fn enabled(&self) -> bool {
        Hub::main().client().is_some_and(|c| c.is_enabled())
    }

    /// True if payloads (arguments, results) may be attached.
    pub(crate) fn send_default_pii(&self) -> bool {
        self.send_default_pii
    }

    pub(crate) fn report(&self, report: Report) {
        if !self.enabled() || !self.admit(&report.fingerprint) {
            return;
        }
        let mut event = Event {
            level: report.level,
            message: Some(report.message),
            fingerprint: Cow::Owned(report.fingerprint.into_iter().map(Cow::Owned).collect()),
            logger: Some("mcpwatch".to_owned()),
            ..Event::default()
        };
        for (key, value) in report.tags {
            event.tags.insert(key.to_owned(), value);
        }
        let context: Map<String, Value> = report.mcp.into_iter().collect();
        event
            .contexts
            .insert("mcp".to_owned(), Context::Other(context));
        event.breadcrumbs = report.breadcrumbs.into();
        Hub::main().capture_event(event);
    }

    fn admit(&self, fingerprint: &[String]) -> bool {
        let Ok(mut windows) = self.windows.lock() else {
            return false;
        };
        let now = Instant::now();
        if windows.len() > 10_000 {
            windows.retain(|_, (start, _)| now.duration_since(*start) < WINDOW);
        }
        let (start, count) = windows.entry(fingerprint.to_vec()).or_insert((now, 0));
        if now.duration_since(*start) >= WINDOW {
            *start = now;
            *count = 0;
        }
        *count += 1;
        let admitted = *count <= EVENTS_PER_WINDOW;
        if !admitted && let Some(limited) = &self.limited {
            limited.inc();
        }
        admitted
    }
}

/// One call of a session, as the breadcrumb trail of a later report shows it.
/// Kept compact (the call path records one per call); turned into a Sentry
/// breadcrumb only when a report is made.
#[derive(Debug, Clone)]
pub(crate) struct RecentCall {
    at: SystemTime,
    method: Box<str>,
    tool: Option<Box<str>>,
    error_type: Option<&'static str>,
    duration: Duration,
}

impl RecentCall {
    pub(crate) fn new(
        method: &str,
        tool: Option<&str>,
        error_type: Option<&'static str>,
        duration: Duration,
    ) -> RecentCall {
        RecentCall {
            at: SystemTime::now(),
            method: method.into(),
            tool: tool.map(Into::into),
            error_type,
            duration,
        }
    }

    /// The breadcrumb of this call (category `mcp.request`).
    pub(crate) fn breadcrumb(&self) -> Breadcrumb {
        let mut data = Map::new();
        data.insert(
            "duration_ms".to_owned(),
            Value::from(self.duration.as_secs_f64() * 1000.0),
        );
        if let Some(error) = self.error_type {
            data.insert("error.type".to_owned(), Value::from(error));
        }
        Breadcrumb {
            timestamp: self.at,
            ty: "default".to_owned(),
            category: Some("mcp.request".to_owned()),
            level: if self.error_type.is_some() {
                Level::Warning
            } else {
                Level::Info
            },
            message: Some(match &self.tool {
                Some(tool) => format!("{} {tool}", self.method),
                None => self.method.to_string(),
            }),
            data,
        }
    }
}

/// A session's recent calls, newest last.
#[derive(Debug, Default)]
pub(crate) struct RecentCalls(Mutex<VecDeque<RecentCall>>);

impl RecentCalls {
    pub(crate) fn push(&self, call: RecentCall) {
        if let Ok(mut calls) = self.0.lock() {
            if calls.len() == BREADCRUMBS_PER_SESSION {
                calls.pop_front();
            }
            calls.push_back(call);
        }
    }

    /// The breadcrumbs of the recent calls, oldest first.
    pub(crate) fn snapshot(&self) -> Vec<Breadcrumb> {
        self.0
            .lock()
            .map(|c| c.iter().map(RecentCall::breadcrumb).collect())
            .unwrap_or_default()
    }
}

/// Client options for `sentry::init`: our transport, secret scrubbing, PII switch.
pub(crate) fn client_options(
    config: &Config,
    dsn: &str,
    dropped: IntCounter,
    failed: IntCounter,
) -> ClientOptions {
    let secrets = Arc::new(config_secrets(config));
    let scrub = secrets.clone();
    let factory = move |options: &ClientOptions| -> Arc<dyn Transport> {
        Arc::new(BoundedTransport::new(
            options,
            dropped.clone(),
            failed.clone(),
        ))
    };
    ClientOptions::new()
        .dsn(dsn)
        .environment(config.telemetry.sentry.environment.clone())
        .release(concat!("mcpwatch@", env!("CARGO_PKG_VERSION")))
        .send_default_pii(config.telemetry.sentry.send_default_pii)
        .before_send(move |event| Some(scrub_event(event, &scrub)))
        .transport(factory)
}

/// Every secret value of a config (at least 4 characters long, to avoid scrubbing noise).
pub(crate) fn config_secrets(config: &Config) -> Vec<String> {
    let mut secrets: Vec<&Secret> = Vec::new();
    secrets.extend(config.agent.token.iter());
    secrets.extend(config.telemetry.sentry.dsn.iter());
    for server in config.servers.values() {
        secrets.extend(server.env.values());
        secrets.extend(server.headers.values());
    }
    let mut values: Vec<String> = secrets
        .into_iter()
        .map(|s| s.expose().to_owned())
        .filter(|s| s.len() >= 4)
        .collect();
    // Also the bare token of "Bearer <token>" headers.
    let bare: Vec<String> = values
        .iter()
        .filter_map(|v| v.strip_prefix("Bearer ").map(str::to_owned))
        .filter(|s| s.len() >= 4)
        .collect();
    values.extend(bare);
    values.sort_by_key(|v| std::cmp::Reverse(v.len()));
    values.dedup();
    values
}

fn scrub_event(event: Event<'static>, secrets: &[String]) -> Event<'static> {
    if secrets.is_empty() {
        return event;
    }
    let Ok(mut text) = serde_json::to_string(&event) else {
        return event;
    };
    let mut changed = false;
    for secret in secrets {
        let escaped = serde_json::to_string(secret).unwrap_or_default();
        let needle = escaped.trim_matches('"');
        if !needle.is_empty() && text.contains(needle) {
            text = text.replace(needle, crate::config::REDACTED);
            changed = true;
        }
    }
    if !changed {
        return event;
    }
    serde_json::from_str(&text).unwrap_or(event)
}

/// Sends envelopes from a worker thread over a bounded queue.
struct BoundedTransport {
    queue: SyncSender<TransportMessage>,
    dropped: IntCounter,
}

enum TransportMessage {
    Envelope(Box<Envelope>),
    Flush(SyncSender<()>),
}

impl BoundedTransport {
    fn new(options: &ClientOptions, dropped: IntCounter, failed: IntCounter) -> BoundedTransport {
        let (queue, receiver) = sync_channel(TRANSPORT_QUEUE);
        let target = options.dsn.as_ref().map(|dsn| {
            (
                dsn.envelope_api_url().to_string(),
                dsn.to_auth(Some(&options.user_agent)).to_string(),
            )
        });
        let spawned = std::thread::Builder::new()
            .name("mcpwatch-sentry".to_owned())
            .spawn(move || send_loop(target, receiver, failed));
        if let Err(error) = spawned {
            tracing::warn!(%error, "cannot start the Sentry transport thread; reports are dropped");
        }
        BoundedTransport { queue, dropped }
    }
}

impl Transport for BoundedTransport {
    fn send_envelope(&self, envelope: Envelope) {
        if self
            .queue
            .try_send(TransportMessage::Envelope(Box::new(envelope)))
            .is_err()
        {
            self.dropped.inc();
        }
    }

    fn flush(&self, timeout: Duration) -> bool {
        let (done, wait) = sync_channel(1);
        if self.queue.try_send(TransportMessage::Flush(done)).is_err() {
            return false;
        }
        wait.recv_timeout(timeout).is_ok()
    }

    fn shutdown(&self, timeout: Duration) -> bool {
        self.flush(timeout)
    }
}

fn send_loop(
    target: Option<(String, String)>,
    receiver: Receiver<TransportMessage>,
    failed: IntCounter,
) {
    let warn = WarnLimiter::new(Duration::from_secs(60));
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(5))
        .build();
    loop {
        let message = match receiver.recv_timeout(Duration::from_secs(3600)) {
            Ok(message) => message,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let envelope = match message {
            TransportMessage::Flush(done) => {
                let _ = done.send(());
                continue;
            }
            TransportMessage::Envelope(envelope) => envelope,
        };
        let (Some((url, auth)), Ok(client)) = (&target, &client) else {
            continue;
        };
        let mut body = Vec::new();
        if envelope.to_writer(&mut body).is_err() {
            continue;
        }
        let sent = client
            .post(url)
            .header("X-Sentry-Auth", auth)
            .header("Content-Type", "application/x-sentry-envelope")
            .body(body)
            .send();
        let problem = match sent {
            Ok(response) if response.status().is_success() => None,
            Ok(response) => Some(format!("Sentry answered HTTP {}", response.status())),
            Err(error) => Some(format!("cannot reach Sentry: {}", error.without_url())),
        };
        if let Some(problem) = problem {
            failed.inc();
            warn.warn(|suppressed| {
                tracing::warn!(target: "mcpwatch::telemetry", suppressed, "{problem} (next warning in a minute at the earliest)");
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_limit_is_per_fingerprint() {
        let reporter = SentryReporter::new(false, None);
        let a = vec!["a".to_owned()];
        let b = vec!["b".to_owned()];
        let admitted = (0..50).filter(|_| reporter.admit(&a)).count();
        assert_eq!(admitted, EVENTS_PER_WINDOW as usize);
        assert!(reporter.admit(&b));
    }

    #[test]
    fn secrets_are_scrubbed_from_every_field() {
        let mut event = Event {
            message: Some("token tok-secret-1 leaked".into()),
            ..Event::default()
        };
        event
            .tags
            .insert("header".into(), "Bearer tok-secret-1".into());
        let scrubbed = scrub_event(event, &["tok-secret-1".to_owned()]);
        let text = serde_json::to_string(&scrubbed).unwrap();
        assert!(!text.contains("tok-secret-1"));
        assert!(text.contains("[redacted]"));
    }
}
