//! The built-in demo server, in-process over an in-memory duplex pipe.

use rmcp::ServiceExt;
use tokio::io::DuplexStream;
use tokio_util::task::TaskTracker;

use crate::demo::DemoServer;

/// Buffer of each direction of the in-memory pipe.
const PIPE_BYTES: usize = 256 * 1024;

/// Starts a demo server task and returns the client end of its pipe.
pub(crate) fn start(tracker: &TaskTracker) -> DuplexStream {
    let (client, server) = tokio::io::duplex(PIPE_BYTES);
    tracker.spawn(async move {
        match DemoServer::builtin().serve(server).await {
            Ok(running) => {
                let _ = running.waiting().await;
            }
            Err(error) => tracing::debug!(%error, "built-in demo session ended during initialize"),
        }
    });
    client
}
