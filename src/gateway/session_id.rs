//! Self-contained downstream session ids (DESIGN §10): random bytes, the
//! negotiated protocol version and the client's capabilities, signed with
//! HMAC-SHA256 under `gateway.session_key`. Any replica with the key accepts
//! any valid id, so a load balancer may send a session's requests anywhere.
//!
//! Layout (30 bytes, base64url without padding, 40 characters): 12 random
//! bytes, 1 byte version index, 1 byte capabilities, then the first 16 bytes
//! of `HMAC(key, server || 0x00 || the 14 bytes before)`. The server's name is
//! signed, so an id minted on `/mcp/a` is refused on `/mcp/b`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

use super::version::SESSION_VERSIONS;

const NONCE_LEN: usize = 12;
const CLAIMS_LEN: usize = NONCE_LEN + 2;
const TAG_LEN: usize = 16;
const ID_LEN: usize = CLAIMS_LEN + TAG_LEN;

/// The client capabilities the gateway routes server requests by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ClientCaps {
    /// The client answers `sampling/createMessage`.
    pub(crate) sampling: bool,
    /// The client answers `elicitation/create`.
    pub(crate) elicitation: bool,
    /// The client answers `roots/list`.
    pub(crate) roots: bool,
}

impl ClientCaps {
    /// The capabilities declared in an `initialize`'s `params.capabilities`.
    pub(crate) fn of(capabilities: Option<&serde_json::Value>) -> ClientCaps {
        let has =
            |name: &str| capabilities.is_some_and(|c| c.get(name).is_some_and(|v| !v.is_null()));
        ClientCaps {
            sampling: has("sampling"),
            elicitation: has("elicitation"),
            roots: has("roots"),
        }
    }

    /// True if the client answers any server request.
    pub(crate) fn any(self) -> bool {
        self.sampling || self.elicitation || self.roots
    }

    fn to_byte(self) -> u8 {
        u8::from(self.sampling) | (u8::from(self.elicitation) << 1) | (u8::from(self.roots) << 2)
    }

    fn from_byte(byte: u8) -> ClientCaps {
        ClientCaps {
            sampling: byte & 1 != 0,
            elicitation: byte & 2 != 0,
            roots: byte & 4 != 0,
        }
    }
}

/// What a valid id says about its session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SessionClaims {
    /// The negotiated protocol version.
    pub(crate) version: &'static str,
    /// The client's capabilities.
    pub(crate) caps: ClientCaps,
}

/// Signs and checks downstream session ids.
pub(crate) struct SessionKey {
    key: hmac::Key,
    random: SystemRandom,
}

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKey(..)")
    }
}

/// The system's random source failed: no id can be minted safely.
#[derive(Debug, thiserror::Error)]
#[error("the system random source failed")]
pub(crate) struct RandomFailed;

impl SessionKey {
    /// A key from `secret`, or a random one (valid on this replica only).
    pub(crate) fn new(secret: Option<&str>) -> Result<SessionKey, RandomFailed> {
        let random = SystemRandom::new();
        let key = match secret {
            Some(secret) => hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes()),
            None => hmac::Key::generate(hmac::HMAC_SHA256, &random).map_err(|_| RandomFailed)?,
        };
        Ok(SessionKey { key, random })
    }

    /// A new id for a session of `server` with `claims`.
    pub(crate) fn mint(&self, server: &str, claims: SessionClaims) -> Result<String, RandomFailed> {
        let mut bytes = [0u8; ID_LEN];
        self.random
            .fill(&mut bytes[..NONCE_LEN])
            .map_err(|_| RandomFailed)?;
        bytes[NONCE_LEN] = version_index(claims.version);
        bytes[NONCE_LEN + 1] = claims.caps.to_byte();
        let tag = self.tag(server, &bytes[..CLAIMS_LEN]);
        bytes[CLAIMS_LEN..].copy_from_slice(&tag.as_ref()[..TAG_LEN]);
        Ok(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// The claims of `id` if it is a valid id of `server`.
    pub(crate) fn verify(&self, server: &str, id: &str) -> Option<SessionClaims> {
        if id.len() != 40 {
            return None;
        }
        let bytes = URL_SAFE_NO_PAD.decode(id).ok()?;
        let bytes: [u8; ID_LEN] = bytes.try_into().ok()?;
        let mut message = Vec::with_capacity(server.len() + 1 + CLAIMS_LEN);
        message.extend_from_slice(server.as_bytes());
        message.push(0);
        message.extend_from_slice(&bytes[..CLAIMS_LEN]);
        // `verify` compares in constant time; it needs the full tag, so the
        // truncated one is compared by recomputing (also constant time).
        let tag = hmac::sign(&self.key, &message);
        let expected = &tag.as_ref()[..TAG_LEN];
        if !constant_time_eq(expected, &bytes[CLAIMS_LEN..]) {
            return None;
        }
        let version = *SESSION_VERSIONS.get(usize::from(bytes[NONCE_LEN]))?;
        Some(SessionClaims {
            version,
            caps: ClientCaps::from_byte(bytes[NONCE_LEN + 1]),
        })
    }

    fn tag(&self, server: &str, claims: &[u8]) -> hmac::Tag {
        let mut context = hmac::Context::with_key(&self.key);
        context.update(server.as_bytes());
        context.update(&[0]);
        context.update(claims);
        context.sign()
    }
}

fn version_index(version: &str) -> u8 {
    SESSION_VERSIONS
        .iter()
        .position(|v| *v == version)
        .and_then(|i| u8::try_from(i).ok())
        .unwrap_or(u8::MAX)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> SessionClaims {
        SessionClaims {
            version: "2025-06-18",
            caps: ClientCaps {
                sampling: true,
                elicitation: false,
                roots: true,
            },
        }
    }

    #[test]
    fn an_id_verifies_on_any_replica_with_the_key_and_only_for_its_server() {
        let one = SessionKey::new(Some("a shared key of 32 bytes or so..")).unwrap();
        let two = SessionKey::new(Some("a shared key of 32 bytes or so..")).unwrap();
        let id = one.mint("demo", claims()).unwrap();
        assert_eq!(id.len(), 40);
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_eq!(two.verify("demo", &id), Some(claims()));
        assert_eq!(two.verify("other", &id), None);
        let stranger = SessionKey::new(Some("another key entirely, 32 bytes..")).unwrap();
        assert_eq!(stranger.verify("demo", &id), None);
    }

    #[test]
    fn a_tampered_or_malformed_id_is_refused() {
        let key = SessionKey::new(None).unwrap();
        let id = key.mint("demo", claims()).unwrap();
        let mut bytes = id.clone().into_bytes();
        bytes[20] = if bytes[20] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes).unwrap();
        assert_eq!(key.verify("demo", &tampered), None);
        for bad in [
            "",
            "short",
            &"x".repeat(40),
            &format!("{id}x"),
            "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!",
        ] {
            assert_eq!(key.verify("demo", bad), None, "{bad}");
        }
    }
}
