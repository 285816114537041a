//! stdio servers: a child process in its own process group, stderr drained into
//! tracing, the whole group killed after close.
//!
//! npx and uvx start the real server as a grandchild, and a wrapper that dies on
//! SIGTERM leaves it orphaned: only a signal to the whole group reaches it. The
//! group is killed by [`ChildProcess::kill_group`] at the end of every close, and
//! again, synchronously, when the handle is dropped, so that no path (not even a
//! runtime torn down mid-close) leaves a process behind.

use super::raw_results::RawResults;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use futures::StreamExt;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use rmcp::service::RoleClient;
use rmcp::transport::async_rw::AsyncRwTransport;
use tokio::process::{ChildStdin, ChildStdout, Command};
use tokio::sync::watch;
use tokio_util::codec::{FramedRead, LinesCodec};
use tokio_util::task::TaskTracker;

use crate::config::ServerConfig;

/// Longest stderr line kept; the rest of a longer line is dropped.
const MAX_STDERR_LINE: usize = 16 * 1024;

/// The transport over a child's stdout/stdin.
pub(crate) type StdioTransport = AsyncRwTransport<RoleClient, RawResults<ChildStdout>, ChildStdin>;

/// A running stdio server: the leader of its own process group.
#[derive(Debug)]
pub(crate) struct ChildProcess {
    pgid: Pid,
    exit: watch::Receiver<Option<ExitStatus>>,
}

impl ChildProcess {
    /// Spawns `spec.command` (no shell) in a new process group.
    pub(crate) fn spawn(
        server: &str,
        spec: &ServerConfig,
        tracker: &TaskTracker,
    ) -> std::io::Result<(ChildProcess, StdioTransport)> {
        let program = spec.command.as_deref().unwrap_or_default();
        let mut command = Command::new(program);
        command
            .args(&spec.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        if spec.env_clear {
            command.env_clear();
            for name in &spec.env_allow {
                if let Some(value) = std::env::var_os(name) {
                    command.env(name, value);
                }
            }
        }
        for (name, value) in &spec.env {
            command.env(name, value.expose());
        }
        if let Some(cwd) = &spec.cwd {
            command.current_dir(cwd);
        }
        let mut child = command.spawn()?;
        let pid = child
            .id()
            .ok_or_else(|| std::io::Error::other("child exited before it could be tracked"))?;
        let pgid = Pid::from_raw(i32::try_from(pid).map_err(std::io::Error::other)?);
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(std::io::Error::other("child has no stdin/stdout pipe"));
        };
        if let Some(stderr) = child.stderr.take() {
            let server = server.to_owned();
            tracker.spawn(async move {
                let mut lines = FramedRead::new(stderr, LinesCodec::new_with_max_length(MAX_STDERR_LINE));
                while let Some(line) = lines.next().await {
                    match line {
                        Ok(line) => tracing::info!(target: "mcpwatch::server_stderr", mcp_server = %server, "{line}"),
                        Err(tokio_util::codec::LinesCodecError::MaxLineLengthExceeded) => {
                            tracing::info!(target: "mcpwatch::server_stderr", mcp_server = %server, "(stderr line over {MAX_STDERR_LINE} bytes dropped)")
                        }
                        Err(_) => break,
                    }
                }
            });
        }
        let (exit_tx, exit) = watch::channel(None);
        tracker.spawn(async move {
            match child.wait().await {
                Ok(status) => {
                    let _ = exit_tx.send(Some(status));
                }
                Err(error) => tracing::warn!(%error, "waiting for a stdio server failed"),
            }
        });
        let stdout = RawResults::new(stdout, spec.max_response_bytes);
        let transport = AsyncRwTransport::new_client(stdout, stdin)
            .with_max_line_length(spec.max_response_bytes);
        Ok((ChildProcess { pgid, exit }, transport))
    }

    /// The leader's pid (also the process group id).
    pub(crate) fn pid(&self) -> u32 {
        self.pgid.as_raw().unsigned_abs()
    }

    /// How the leader exited, if it has.
    pub(crate) fn exit_status(&self) -> Option<ExitStatus> {
        *self.exit.borrow()
    }

    /// Waits up to `within` for the leader to exit; true if it did.
    pub(crate) async fn wait_exit(&self, within: Duration) -> bool {
        let mut exit = self.exit.clone();
        matches!(
            tokio::time::timeout(within, exit.wait_for(Option::is_some)).await,
            Ok(Ok(_))
        )
    }

    /// SIGKILLs every process of the group. Returns true if the leader was still
    /// running (a forced kill rather than a sweep of leftovers).
    pub(crate) fn kill_group(&self) -> bool {
        let forced = self.exit_status().is_none();
        match killpg(self.pgid, Signal::SIGKILL) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
            Err(error) => {
                tracing::warn!(pgid = self.pgid.as_raw(), %error, "killing a stdio server's process group failed")
            }
        }
        forced
    }

    /// Describes how the leader ended, for error messages.
    pub(crate) fn describe_exit(&self) -> String {
        match self.exit_status() {
            None => "server process still running".to_owned(),
            Some(status) => match (
                status.code(),
                std::os::unix::process::ExitStatusExt::signal(&status),
            ) {
                (Some(code), _) => format!("server process exited with code {code}"),
                (None, Some(signal)) => format!("server process killed by signal {signal}"),
                _ => format!("server process ended: {status}"),
            },
        }
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        // Synchronous on purpose: this must work during runtime teardown too.
        let _ = killpg(self.pgid, Signal::SIGKILL);
    }
}
