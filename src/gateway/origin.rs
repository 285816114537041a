//! The Origin and Host checks of DESIGN §10, against DNS rebinding.
//!
//! - No `Origin`: accepted (non-browser clients send none).
//! - An `Origin` that is neither the listener's own nor in
//!   `gateway.allowed_origins`: 403.
//! - `Host` is checked when the listener is on loopback (it must be
//!   `localhost`, `127.0.0.1` or `[::1]`, any port) or when
//!   `gateway.allowed_hosts` is set (it must be one of them, or a loopback
//!   name on a loopback listener).

use std::net::SocketAddr;

use axum::http::{HeaderMap, Uri, header};

use crate::config::GatewayConfig;

const LOOPBACK_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "[::1]"];

/// Refuses a request whose `Origin` or `Host` is not allowed (the reason).
pub(crate) fn check(
    config: &GatewayConfig,
    listen: SocketAddr,
    headers: &HeaderMap,
    uri: &Uri,
) -> Result<(), String> {
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or_default().trim_end_matches('/');
        if !origin_allowed(config, listen, origin) {
            return Err(format!(
                "Origin {origin:?} is not allowed (gateway.allowed_origins)"
            ));
        }
    }
    let loopback = listen.ip().is_loopback();
    if !loopback && config.allowed_hosts.is_empty() {
        return Ok(());
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()))
        .unwrap_or_default();
    let name = host_name(host);
    let allowed = config
        .allowed_hosts
        .iter()
        .any(|h| h.eq_ignore_ascii_case(name))
        || (loopback && LOOPBACK_NAMES.iter().any(|l| l.eq_ignore_ascii_case(name)));
    if allowed {
        Ok(())
    } else {
        Err(format!(
            "Host {host:?} is not allowed (gateway.allowed_hosts)"
        ))
    }
}

fn origin_allowed(config: &GatewayConfig, listen: SocketAddr, origin: &str) -> bool {
    if config
        .allowed_origins
        .iter()
        .any(|o| o.trim_end_matches('/') == origin)
    {
        return true;
    }
    let Some(rest) = origin.strip_prefix("http://") else {
        return false;
    };
    if rest == listen.to_string() {
        return true;
    }
    let port = rest.rsplit_once(':').map(|(_, p)| p);
    listen.ip().is_loopback()
        && port == Some(listen.port().to_string().as_str())
        && LOOPBACK_NAMES
            .iter()
            .any(|l| l.eq_ignore_ascii_case(host_name(rest)))
}

/// The name of a `host[:port]` (IPv6 in brackets kept).
fn host_name(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_inclusive(']').next().unwrap_or(host);
    }
    host.split(':').next().unwrap_or(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(*k, v.parse().unwrap());
        }
        map
    }

    #[test]
    fn loopback_listener_checks_origin_and_host() {
        let config = GatewayConfig::default();
        let listen: SocketAddr = "127.0.0.1:8700".parse().unwrap();
        let uri = Uri::from_static("/mcp/demo");
        let ok = |pairs| check(&config, listen, &headers(pairs), &uri).is_ok();
        assert!(ok(&[("host", "127.0.0.1:8700")]));
        assert!(ok(&[("host", "localhost:1234")]));
        assert!(ok(&[("host", "[::1]:8700")]));
        assert!(!ok(&[("host", "evil.example:8700")]));
        assert!(ok(&[
            ("host", "localhost:8700"),
            ("origin", "http://localhost:8700")
        ]));
        assert!(ok(&[
            ("host", "localhost:8700"),
            ("origin", "http://127.0.0.1:8700")
        ]));
        assert!(!ok(&[
            ("host", "localhost:8700"),
            ("origin", "http://evil.example")
        ]));
        assert!(!ok(&[("host", "localhost:8700"), ("origin", "null")]));
    }

    #[test]
    fn a_public_listener_checks_host_only_when_configured() {
        let mut config = GatewayConfig::default();
        let listen: SocketAddr = "0.0.0.0:8700".parse().unwrap();
        let uri = Uri::from_static("/mcp/demo");
        assert!(check(&config, listen, &headers(&[("host", "anything:1")]), &uri).is_ok());
        config.allowed_hosts = vec!["mcp.internal".into()];
        config.allowed_origins = vec!["https://app.example".into()];
        assert!(
            check(
                &config,
                listen,
                &headers(&[("host", "mcp.internal:8700")]),
                &uri
            )
            .is_ok()
        );
        assert!(check(&config, listen, &headers(&[("host", "other:8700")]), &uri).is_err());
        let with_origin = headers(&[("host", "mcp.internal"), ("origin", "https://app.example/")]);
        assert!(check(&config, listen, &with_origin, &uri).is_ok());
    }
}
