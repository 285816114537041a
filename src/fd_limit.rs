//! The open-file limit. Every stdio session holds three pipes and every
//! streamable-HTTP session a connection for its GET stream, so an agent with
//! thousands of sessions needs more descriptors than the usual soft limit
//! (1,024). `mcpwatch serve` raises the soft limit to the hard one at start, as
//! Go's runtime and most servers do; the hard limit is the operator's to set
//! (`ulimit -Hn`, `LimitNOFILE=`, the container runtime).

use nix::sys::resource::{Resource, getrlimit, setrlimit};

/// The soft limit before and after [`raise_open_file_limit`], and the hard limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFileLimit {
    /// The soft limit found at start.
    pub before: u64,
    /// The soft limit now.
    pub soft: u64,
    /// The hard limit (the ceiling).
    pub hard: u64,
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (a no-op when they are
/// equal); returns the limits before and after.
///
/// ```
/// let limit = mcpwatch::testing::raise_open_file_limit().unwrap();
/// assert_eq!(limit.soft, limit.hard);
/// assert!(limit.before <= limit.soft);
/// ```
pub fn raise_open_file_limit() -> Result<OpenFileLimit, nix::Error> {
    let (before, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if before < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    }
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    Ok(OpenFileLimit { before, soft, hard })
}
