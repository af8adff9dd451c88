//! The HTTP client for Salesforce's OAuth endpoints.
//!
//! A connect failure means the request was never sent (safe to retry); a timeout or a dropped
//! connection after sending means the outcome is unknown, which under rotation is not the same
//! thing. Redirects are never followed on token calls.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use forcelink_core::salesforce::Introspection;
use forcelink_core::salesforce::classify_token_error;
use forcelink_core::{
    AccessToken, ClientCredentials, CodeExchange, Identity, LoginHost, RefreshGrant,
    SalesforceError, SalesforceOAuth, TokenResponse,
};

use crate::h1::{Failure, Transport};
use crate::wire::{RawError, RawIdentity, RawIntrospection, RawToken};

/// How the client reaches Salesforce.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Upper bound on one request, connect to last byte.
    pub timeout: Duration,
    /// Local address to send from (egress pinning), if any.
    pub local_address: Option<IpAddr>,
    /// HTTP CONNECT proxy for all traffic of this client, if any.
    pub proxy: Option<String>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            local_address: None,
            proxy: None,
        }
    }
}

/// Talks to Salesforce login hosts, My Domains and identity URLs.
#[derive(Debug, Clone)]
pub struct SalesforceClient {
    http: reqwest::Client,
    /// The token endpoint's own transport (`h1`); `None` with an egress proxy, where token
    /// calls go through reqwest's proxy support like every other call.
    token: Option<Arc<Transport>>,
}

const USER_AGENT: &str = concat!("forcelink/", env!("CARGO_PKG_VERSION"));

impl SalesforceClient {
    pub fn new(options: &ClientOptions) -> Result<Self, String> {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        // With a proxy, token calls go through reqwest: no transport, no TLS roots loaded for it.
        let token = match &options.proxy {
            Some(_) => None,
            None => Some(Arc::new(Transport::new(
                token_tls()?,
                options.local_address,
                options.timeout,
                options.timeout.min(Duration::from_secs(10)),
                USER_AGENT,
            ))),
        };
        let mut builder = reqwest::Client::builder();
        if let Some(proxy) = &options.proxy {
            let proxy = reqwest::Proxy::all(proxy.as_str())
                .map_err(|_| "egress.proxy is not a valid proxy URL".to_string())?;
            builder = builder.proxy(proxy);
        } else {
            builder = builder.no_proxy();
        }
        let http = builder
            .redirect(reqwest::redirect::Policy::none())
            .timeout(options.timeout)
            .connect_timeout(options.timeout.min(Duration::from_secs(10)))
            .local_address(options.local_address)
            .user_agent(USER_AGENT)
            .build()
            .map_err(|error| format!("cannot build the http client: {error}"))?;
        Ok(Self { http, token })
    }

    async fn token_call(
        &self,
        host: &LoginHost,
        form: &[(&str, &str)],
        refresh: bool,
    ) -> Result<TokenResponse, SalesforceError> {
        let (status, body) = match &self.token {
            Some(transport) => {
                let body = url::form_urlencoded::Serializer::new(String::with_capacity(512))
                    .extend_pairs(form)
                    .finish();
                let answer = transport
                    .post_form(host.url(), TOKEN_PATH, body.as_bytes())
                    .await
                    .map_err(failure_error)?;
                (answer.status, answer.body)
            }
            None => {
                let response = self
                    .http
                    .post(host.endpoint(TOKEN_PATH))
                    .header("Accept", "application/json")
                    .form(form)
                    .send()
                    .await
                    .map_err(transport_error)?;
                let status = response.status().as_u16();
                let body = response.bytes().await.map_err(transport_error)?;
                (status, body.to_vec())
            }
        };
        if !(200..300).contains(&status) {
            return Err(classify_token_error(
                status,
                &String::from_utf8_lossy(&body),
                refresh,
            ));
        }
        serde_json::from_slice::<RawToken>(&body)
            .map(RawToken::into_response)
            .map_err(|_| {
                // A 2xx that does not parse may still have rotated the token: not knowing is
                // not the same as failing.
                SalesforceError::OutcomeUnknown {
                    detail: "token endpoint answered 2xx with an unreadable body".into(),
                }
            })
    }
}

const TOKEN_PATH: &str = "/services/oauth2/token";

/// TLS for the token transport: the platform's roots, as reqwest uses, and HTTP/1.1 only.
fn token_tls() -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls_platform_verifier::BuilderVerifierExt;
    let mut config = rustls::ClientConfig::builder()
        .with_platform_verifier()
        .map_err(|error| format!("cannot load the platform's TLS roots: {error}"))?
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Sorts a failure of the token transport, which knows whether the request left.
fn failure_error(failure: Failure) -> SalesforceError {
    match failure {
        Failure::NotSent => SalesforceError::Unavailable {
            status: None,
            detail: "cannot connect".into(),
        },
        Failure::TimedOut => SalesforceError::OutcomeUnknown {
            detail: "request timed out".into(),
        },
        Failure::Lost => SalesforceError::OutcomeUnknown {
            detail: "connection lost before the answer arrived".into(),
        },
    }
}

/// Sorts a reqwest failure the same way: never sent (unavailable), or sent and lost or timed
/// out (outcome unknown).
fn transport_error(error: reqwest::Error) -> SalesforceError {
    failure_error(if error.is_connect() {
        Failure::NotSent
    } else if error.is_timeout() {
        Failure::TimedOut
    } else {
        Failure::Lost
    })
}

#[async_trait]
impl SalesforceOAuth for SalesforceClient {
    async fn exchange_code(
        &self,
        request: CodeExchange<'_>,
    ) -> Result<TokenResponse, SalesforceError> {
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", request.code.expose()),
            ("client_id", request.client.client_id.as_str()),
            ("redirect_uri", request.redirect_uri),
            ("code_verifier", request.verifier.expose()),
        ];
        // A public client must not send a secret; a confidential one must.
        if let Some(secret) = &request.client.client_secret {
            form.push(("client_secret", secret.expose()));
        }
        self.token_call(request.login_host, &form, false).await
    }

    async fn refresh(&self, request: RefreshGrant<'_>) -> Result<TokenResponse, SalesforceError> {
        let mut form = vec![
            ("grant_type", "refresh_token"),
            ("refresh_token", request.refresh_token.expose()),
            ("client_id", request.client.client_id.as_str()),
        ];
        if let Some(secret) = &request.client.client_secret {
            form.push(("client_secret", secret.expose()));
        }
        self.token_call(request.login_host, &form, true).await
    }

    async fn revoke(&self, login_host: &LoginHost, token: &str) -> Result<(), SalesforceError> {
        let response = self
            .http
            .post(login_host.endpoint("/services/oauth2/revoke"))
            .form(&[("token", token)])
            .send()
            .await
            .map_err(transport_error)?;
        let status = response.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(());
        }
        if status >= 500 {
            return Err(SalesforceError::Unavailable {
                status: Some(status),
                detail: "revoke failed".into(),
            });
        }
        let body = response.text().await.unwrap_or_default();
        let parsed: Option<RawError> = serde_json::from_str(&body).ok();
        Err(SalesforceError::AuthorizationRejected {
            error: parsed
                .as_ref()
                .and_then(|e| e.error.clone())
                .unwrap_or_else(|| "invalid_token".into()),
            description: parsed.and_then(|e| e.error_description).unwrap_or_default(),
        })
    }

    async fn introspect(
        &self,
        login_host: &LoginHost,
        client: &ClientCredentials,
        access_token: &AccessToken,
    ) -> Result<Introspection, SalesforceError> {
        let mut form = vec![
            ("token", access_token.expose()),
            ("token_type_hint", "access_token"),
            ("client_id", client.client_id.as_str()),
        ];
        if let Some(secret) = &client.client_secret {
            form.push(("client_secret", secret.expose()));
        }
        let response = self
            .http
            .post(login_host.endpoint("/services/oauth2/introspect"))
            .header("Accept", "application/json")
            .form(&form)
            .send()
            .await
            .map_err(transport_error)?;
        let status = response.status().as_u16();
        let body = response.text().await.map_err(transport_error)?;
        if !(200..300).contains(&status) {
            return Err(classify_token_error(status, &body, false));
        }
        let raw: RawIntrospection =
            serde_json::from_str(&body).map_err(|_| SalesforceError::Protocol {
                detail: "introspection is not the expected JSON".into(),
            })?;
        Ok(raw.into_introspection())
    }

    async fn identity(
        &self,
        identity_url: &str,
        access_token: &AccessToken,
    ) -> Result<Identity, SalesforceError> {
        let response = self
            .http
            .get(identity_url)
            .bearer_auth(access_token.expose())
            .header("Accept", "application/json")
            .send()
            .await
            .map_err(transport_error)?;
        let status = response.status().as_u16();
        match status {
            200..=299 => {}
            401 | 403 => return Err(SalesforceError::InvalidSession),
            500.. => {
                return Err(SalesforceError::Unavailable {
                    status: Some(status),
                    detail: "identity failed".into(),
                });
            }
            _ => {
                return Err(SalesforceError::Protocol {
                    detail: format!("identity answered {status}"),
                });
            }
        }
        let raw: RawIdentity = response
            .json()
            .await
            .map_err(|_| SalesforceError::Protocol {
                detail: "identity is not the expected JSON".into(),
            })?;
        raw.into_identity()
    }
}
