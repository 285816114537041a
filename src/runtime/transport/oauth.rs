//! OAuth 2.1 for streamable-HTTP servers (`[servers.NAME.oauth]`), on top of
//! rmcp's `auth` feature, with no person in the loop.
//!
//! [`Authorizing`] wraps the HTTP client of a session: every request carries
//! the server's access token when there is one; a `401` starts authorization
//! from the server's `WWW-Authenticate` challenge, a `403 insufficient_scope`
//! asks for the missing scopes (step-up), and the request is sent again.
//!
//! Authorization (rmcp's `AuthorizationManager` does the protocol work):
//! protected resource metadata (from the challenge, else the well-known paths),
//! authorization server metadata (OAuth and OpenID paths, path-aware), then the
//! client: a pre-registered `client_id` (with its secret, if any), else a client
//! ID metadata document URL when the server supports them, else dynamic client
//! registration. With the `authorization_code` grant mcpwatch sends the PKCE
//! (S256) authorization request itself and reads the code from the redirect to
//! `redirect_uri` without following it: the authorization server must redirect
//! without asking a person (a client it already trusts); one that answers with
//! a page fails with a clear error. With `client_credentials` the token comes
//! straight from the token endpoint, the client authenticated by its secret or
//! by a signed assertion (`private_key_jwt`). The token endpoint authentication
//! method (`client_secret_basic`, `client_secret_post`, `none`) follows the
//! server's metadata. Expiring tokens are refreshed before use; a rejected token is
//! refreshed once, then authorization starts over.
//!
//! One [`ServerOAuth`] per server holds the tokens: every session of the server
//! uses them, and one authorization at a time runs. Tokens and secrets are never
//! logged, recorded on spans or sent to Sentry.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::stream::BoxStream;
use http::{HeaderName, HeaderValue};
use rmcp::model::ClientJsonRpcMessage;
use rmcp::transport::auth::{
    AuthError, AuthorizationCallback, AuthorizationManager, AuthorizationRequest,
    AuthorizationSession, ClientCredentialsConfig, JwtSigningAlgorithm, WWWAuthenticateParams,
};
use rmcp::transport::streamable_http_client::{
    StreamableHttpClient, StreamableHttpError, StreamableHttpPostResponse,
};
use sse_stream::{Error as SseError, Sse};
use tokio::sync::{Mutex, OnceCell, OwnedMutexGuard};

use crate::config::{JwtAlgorithm, OAuthConfig, OAuthGrant};

/// Authorizations (first, refreshed, stepped-up) one request may go through.
const MAX_ROUNDS: u32 = 4;
/// Redirects followed within the authorization server before the one to `redirect_uri`.
const MAX_HOPS: usize = 5;
/// Deadline of each HTTP exchange of the authorization request.
const HOP_TIMEOUT: Duration = Duration::from_secs(10);

type HttpError = StreamableHttpError<reqwest::Error>;

/// The OAuth state of one server, shared by its sessions.
pub(crate) struct ServerOAuth {
    server: Arc<str>,
    url: String,
    config: OAuthConfig,
    manager: OnceCell<Arc<Mutex<AuthorizationManager>>>,
    /// Serializes authorizations: concurrent 401s run one flow.
    flow: Mutex<()>,
    /// Bumped by every authorization: a request that failed with an older
    /// token just tries again.
    generation: AtomicU64,
    /// For the authorization request: redirects are read, not followed.
    http: OnceCell<reqwest::Client>,
}

impl std::fmt::Debug for ServerOAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerOAuth")
            .field("server", &self.server)
            .field("grant", &self.config.grant)
            .finish_non_exhaustive()
    }
}

impl ServerOAuth {
    pub(crate) fn new(server: Arc<str>, url: &str, config: OAuthConfig) -> ServerOAuth {
        ServerOAuth {
            server,
            url: url.to_owned(),
            config,
            manager: OnceCell::new(),
            flow: Mutex::new(()),
            generation: AtomicU64::new(0),
            http: OnceCell::new(),
        }
    }

    async fn manager(&self) -> Result<&Arc<Mutex<AuthorizationManager>>, AuthError> {
        self.manager
            .get_or_try_init(|| async {
                let manager = AuthorizationManager::new(self.url.as_str()).await?;
                Ok(Arc::new(Mutex::new(manager)))
            })
            .await
    }

    /// The current access token (refreshed first if it is about to expire), or
    /// `None` before the first authorization; and the generation it belongs to.
    async fn token(&self) -> Result<(Option<String>, u64), AuthError> {
        let generation = self.generation.load(Ordering::Acquire);
        let manager = self.manager().await?.lock().await;
        match manager.get_access_token().await {
            Ok(token) => Ok((Some(token), generation)),
            Err(AuthError::AuthorizationRequired) => Ok((None, generation)),
            Err(error) => Err(error),
        }
    }

    /// After a `401` answering a request sent with the token of `seen`:
    /// refresh a rejected token, else authorize from the challenge.
    async fn authorize(
        &self,
        challenge: &str,
        seen: u64,
        had_token: bool,
    ) -> Result<(), AuthError> {
        let _flow = self.flow.lock().await;
        if self.generation.load(Ordering::Acquire) != seen {
            return Ok(()); // another request authorized meanwhile
        }
        let mut manager = self.manager().await?.clone().lock_owned().await;
        if had_token && manager.refresh_token().await.is_ok() {
            tracing::debug!(mcp.server.name = %self.server, "OAuth access token refreshed after a 401");
            self.generation.fetch_add(1, Ordering::AcqRel);
            return Ok(());
        }
        tracing::info!(mcp.server.name = %self.server, grant = ?self.config.grant, "authorizing with the server's authorization server (OAuth)");
        let resolution = manager
            .resolve_metadata_from_challenge(Some(challenge))
            .await?;
        manager.set_metadata(resolution.metadata);
        match self.config.grant {
            OAuthGrant::ClientCredentials => {
                let scopes = if self.config.scopes.is_empty() {
                    manager.select_scopes(None, &[])
                } else {
                    self.config.scopes.clone()
                };
                self.client_credentials(manager, scopes).await?;
            }
            OAuthGrant::AuthorizationCode => {
                let placeholder = AuthorizationManager::new(self.url.as_str()).await?;
                let owned = std::mem::replace(&mut *manager, placeholder);
                let session = match AuthorizationSession::new(owned, self.request(challenge)).await
                {
                    Ok(session) => session,
                    Err((owned, error)) => {
                        *manager = owned;
                        return Err(error);
                    }
                };
                let redirected = self.follow(session.get_authorization_url()).await;
                let exchanged = match &redirected {
                    Ok(callback) => session.handle_callback_url(callback).await.map(|_| ()),
                    Err(_) => Ok(()),
                };
                *manager = session.auth_manager;
                redirected?;
                exchanged?;
            }
        }
        self.generation.fetch_add(1, Ordering::AcqRel);
        tracing::info!(mcp.server.name = %self.server, "OAuth authorization complete");
        Ok(())
    }

    /// After a `403 insufficient_scope`: authorize again for the union of the
    /// scopes held and those the challenge asks for (a bounded number of times).
    async fn step_up(
        &self,
        challenge: &str,
        required: Option<&str>,
        seen: u64,
    ) -> Result<(), AuthError> {
        let _flow = self.flow.lock().await;
        if self.generation.load(Ordering::Acquire) != seen {
            return Ok(());
        }
        let base = url::Url::parse(&self.url)?;
        let params = WWWAuthenticateParams::parse(challenge, &base);
        let required = required
            .map(str::to_owned)
            .or(params.scope)
            .ok_or_else(|| {
                AuthError::InvalidScope("insufficient_scope without the scope it needs".to_owned())
            })?;
        tracing::info!(mcp.server.name = %self.server, scope = %required, "the server asks for more scopes (OAuth step-up)");
        let manager = self.manager().await?.clone().lock_owned().await;
        match self.config.grant {
            OAuthGrant::AuthorizationCode => {
                let url = manager.request_scope_upgrade(&required).await?;
                let callback = self.follow(&url).await?;
                let callback = AuthorizationCallback::from_redirect_url(&callback)?;
                manager
                    .exchange_code_for_token_with_issuer(
                        &callback.code,
                        &callback.csrf_token,
                        callback.issuer.as_deref(),
                    )
                    .await?;
            }
            OAuthGrant::ClientCredentials => {
                if !manager.can_attempt_scope_upgrade().await {
                    return Err(AuthError::InvalidScope(
                        "scope upgrade limit reached".to_owned(),
                    ));
                }
                let mut scopes = manager.get_current_scopes().await;
                for scope in required.split_whitespace() {
                    if !scopes.iter().any(|s| s == scope) {
                        scopes.push(scope.to_owned());
                    }
                }
                // Counts against the same limit as the code flow's upgrades.
                let _ = manager.request_scope_upgrade(&required).await;
                self.client_credentials(manager, scopes).await?;
            }
        }
        self.generation.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    async fn client_credentials(
        &self,
        mut manager: OwnedMutexGuard<AuthorizationManager>,
        scopes: Vec<String>,
    ) -> Result<(), AuthError> {
        let config = &self.config;
        let resource = Some(self.url.clone());
        let secret = config.client_secret.as_ref().filter(|s| !s.is_empty());
        let key = config.private_key.as_ref().filter(|k| !k.is_empty());
        let credentials = match (&config.client_id, secret, key) {
            (Some(client_id), Some(secret), None) => ClientCredentialsConfig::ClientSecret {
                client_id: client_id.clone(),
                client_secret: secret.expose().to_owned(),
                scopes,
                resource,
            },
            (Some(client_id), None, Some(key)) => ClientCredentialsConfig::PrivateKeyJwt {
                client_id: client_id.clone(),
                signing_key: key.expose().as_bytes().to_vec(),
                signing_algorithm: match config.private_key_algorithm {
                    JwtAlgorithm::RS256 => JwtSigningAlgorithm::RS256,
                    JwtAlgorithm::RS384 => JwtSigningAlgorithm::RS384,
                    JwtAlgorithm::RS512 => JwtSigningAlgorithm::RS512,
                    JwtAlgorithm::ES256 => JwtSigningAlgorithm::ES256,
                    JwtAlgorithm::ES384 => JwtSigningAlgorithm::ES384,
                },
                token_endpoint_audience: None,
                scopes,
                resource,
            },
            _ => {
                return Err(AuthError::ClientCredentialsError(
                    "grant \"client_credentials\" needs client_id and client_secret or private_key"
                        .to_owned(),
                ));
            }
        };
        manager.validate_client_credentials_metadata(&credentials)?;
        manager.configure_client_credentials(&credentials)?;
        // rmcp 3.9's exchange future is not `Send` (with `private_key_jwt` built
        // in, it holds a form serializer across an await), so it cannot run on a
        // runtime task: it runs on a blocking thread, on the same runtime.
        let runtime = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            runtime
                .block_on(manager.exchange_client_credentials(&credentials))
                .map(|_| ())
        })
        .await
        .map_err(|e| AuthError::InternalError(format!("token exchange task: {e}")))?
    }

    /// The authorization request: who mcpwatch is, seeded by the challenge.
    fn request(&self, challenge: &str) -> AuthorizationRequest {
        let config = &self.config;
        let mut request = AuthorizationRequest::new(config.redirect_uri.clone())
            .with_client_name(config.client_name.clone())
            .with_challenge(challenge)
            .with_initial_scope_selection();
        if !config.scopes.is_empty() {
            request = request.with_scopes(config.scopes.iter().cloned());
        }
        if let Some(id) = config.client_id.as_deref().filter(|id| !id.is_empty()) {
            request = request.with_preregistered_client(id);
            if let Some(secret) = config.client_secret.as_ref().filter(|s| !s.is_empty()) {
                request = request.with_client_secret(secret.expose());
            }
        }
        if let Some(url) = &config.client_metadata_url {
            request = request.with_client_metadata_url(url.clone());
        }
        request
    }

    /// Sends the authorization request and returns the redirect to
    /// `redirect_uri` (with the code), without a person and without following it.
    async fn follow(&self, authorization_url: &str) -> Result<String, AuthError> {
        let http = self
            .http
            .get_or_try_init(|| async {
                reqwest::Client::builder()
                    .redirect(reqwest::redirect::Policy::none())
                    .timeout(HOP_TIMEOUT)
                    .build()
            })
            .await
            .map_err(|e| AuthError::InternalError(format!("HTTP client: {e}")))?;
        let redirect = url::Url::parse(&self.config.redirect_uri)?;
        let mut at = url::Url::parse(authorization_url)?;
        for _ in 0..MAX_HOPS {
            let response = http.get(at.clone()).send().await.map_err(|e| {
                AuthError::AuthorizationFailed(format!("authorization endpoint: {e}"))
            })?;
            let status = response.status();
            let location = response
                .headers()
                .get(http::header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .map(str::to_owned);
            let Some(location) = location.filter(|_| status.is_redirection()) else {
                return Err(AuthError::AuthorizationFailed(format!(
                    "the authorization endpoint answered {status} instead of redirecting to {}: \
                     it wants a person (use grant = \"client_credentials\", or a client the \
                     server approves without asking)",
                    self.config.redirect_uri
                )));
            };
            let next = at.join(&location)?;
            let back = next.scheme() == redirect.scheme()
                && next.host_str() == redirect.host_str()
                && next.port_or_known_default() == redirect.port_or_known_default()
                && next.path() == redirect.path();
            if back {
                return Ok(next.to_string());
            }
            if next.origin() != at.origin() {
                return Err(AuthError::AuthorizationFailed(format!(
                    "the authorization endpoint redirected to another site ({}): it wants a person",
                    next.origin().ascii_serialization()
                )));
            }
            at = next;
        }
        Err(AuthError::AuthorizationFailed(format!(
            "more than {MAX_HOPS} redirects before {}",
            self.config.redirect_uri
        )))
    }
}

/// A streamable-HTTP client that authorizes with OAuth as the server asks.
#[derive(Clone)]
pub(crate) struct Authorizing<C> {
    inner: C,
    oauth: Arc<ServerOAuth>,
}

impl<C> Authorizing<C> {
    pub(crate) fn new(inner: C, oauth: Arc<ServerOAuth>) -> Authorizing<C> {
        Authorizing { inner, oauth }
    }
}

impl<C> Authorizing<C>
where
    C: StreamableHttpClient<Error = reqwest::Error> + Send + Sync,
{
    /// Runs `call` with the current token; on a 401 or 403 challenge,
    /// authorizes and runs it again (a bounded number of times).
    async fn authorized<T, F, Fut>(&self, call: F) -> Result<T, HttpError>
    where
        F: Fn(Option<String>) -> Fut,
        Fut: Future<Output = Result<T, HttpError>>,
    {
        let oauth = &self.oauth;
        for round in 1..=MAX_ROUNDS {
            let (token, seen) = oauth.token().await?;
            let had_token = token.is_some();
            let error = match call(token).await {
                Err(HttpError::AuthRequired(challenge)) if round < MAX_ROUNDS => {
                    let header = &challenge.www_authenticate_header;
                    match oauth.authorize(header, seen, had_token).await {
                        Ok(()) => continue,
                        Err(error) => (error, HttpError::AuthRequired(challenge)),
                    }
                }
                Err(HttpError::InsufficientScope(challenge)) if round < MAX_ROUNDS => {
                    let header = &challenge.www_authenticate_header;
                    let required = challenge.required_scope.as_deref();
                    match oauth.step_up(header, required, seen).await {
                        Ok(()) => continue,
                        Err(error) => (error, HttpError::InsufficientScope(challenge)),
                    }
                }
                other => return other,
            };
            let (why, answer) = error;
            tracing::warn!(mcp.server.name = %oauth.server, error = %why, "OAuth authorization failed");
            return Err(answer);
        }
        Err(HttpError::Auth(AuthError::AuthorizationFailed(format!(
            "still refused after {MAX_ROUNDS} authorizations"
        ))))
    }
}

impl<C> StreamableHttpClient for Authorizing<C>
where
    C: StreamableHttpClient<Error = reqwest::Error> + Send + Sync,
{
    type Error = reqwest::Error;

    async fn post_message(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        _auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<StreamableHttpPostResponse, HttpError> {
        self.authorized(|token| {
            self.inner.post_message(
                uri.clone(),
                message.clone(),
                session_id.clone(),
                token,
                custom_headers.clone(),
            )
        })
        .await
    }

    async fn post_message_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        _auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<StreamableHttpPostResponse, HttpError> {
        self.authorized(|token| {
            self.inner.post_message_with_max_sse_event_size(
                uri.clone(),
                message.clone(),
                session_id.clone(),
                token,
                custom_headers.clone(),
                max_sse_event_size,
            )
        })
        .await
    }

    async fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        _auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<(), HttpError> {
        // Closing needs no fresh authorization: the current token, or nothing.
        let token = self.oauth.token().await.ok().and_then(|(token, _)| token);
        self.inner
            .delete_session(uri, session_id, token, custom_headers)
            .await
    }

    async fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        _auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, HttpError> {
        self.authorized(|token| {
            self.inner.get_stream(
                uri.clone(),
                session_id.clone(),
                last_event_id.clone(),
                token,
                custom_headers.clone(),
            )
        })
        .await
    }

    async fn get_stream_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        _auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, HttpError> {
        self.authorized(|token| {
            self.inner.get_stream_with_max_sse_event_size(
                uri.clone(),
                session_id.clone(),
                last_event_id.clone(),
                token,
                custom_headers.clone(),
                max_sse_event_size,
            )
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::response::{IntoResponse, Redirect};

    /// An "authorization endpoint" on 127.0.0.1 answering `/authorize` as `answer` says.
    async fn endpoint(answer: &'static str) -> (String, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let router = axum::Router::new()
            .route(
                "/authorize",
                axum::routing::get(move || async move {
                    match answer {
                        "consent" => Redirect::to("/consent").into_response(),
                        "page" => axum::response::Html("<form>log in</form>").into_response(),
                        "elsewhere" => Redirect::to("http://127.0.0.2:9/login").into_response(),
                        _ => Redirect::to(
                            "http://localhost/mcpwatch/oauth/callback?code=c0de&state=s1",
                        )
                        .into_response(),
                    }
                }),
            )
            .route(
                "/consent",
                axum::routing::get(|| async {
                    Redirect::to("http://localhost/mcpwatch/oauth/callback?code=c0de&state=s2")
                }),
            );
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        (base, server)
    }

    fn oauth() -> ServerOAuth {
        ServerOAuth::new(
            Arc::from("s"),
            "http://127.0.0.1:1/mcp",
            OAuthConfig::default(),
        )
    }

    #[tokio::test]
    async fn the_code_is_read_from_the_redirect_without_following_it() {
        let (base, server) = endpoint("code").await;
        let callback = oauth().follow(&format!("{base}/authorize")).await.unwrap();
        let parsed = AuthorizationCallback::from_redirect_url(&callback).unwrap();
        assert_eq!(
            (parsed.code.as_str(), parsed.csrf_token.as_str()),
            ("c0de", "s1")
        );
        // Hops within the authorization server are followed.
        let (base, other) = endpoint("consent").await;
        let callback = oauth().follow(&format!("{base}/authorize")).await.unwrap();
        assert!(callback.ends_with("state=s2"), "{callback}");
        server.abort();
        other.abort();
    }

    #[tokio::test]
    async fn a_login_page_or_another_site_is_a_clear_error() {
        for (answer, says) in [("page", "wants a person"), ("elsewhere", "another site")] {
            let (base, server) = endpoint(answer).await;
            let error = oauth()
                .follow(&format!("{base}/authorize"))
                .await
                .unwrap_err()
                .to_string();
            assert!(error.contains(says), "{answer}: {error}");
            server.abort();
        }
    }
}
