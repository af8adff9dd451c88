//! Client authentication for the token and introspection endpoints: `client_id`/`client_secret`
//! in the body or HTTP Basic (§3), and the per-grant secret rules. Decides only who the client is.

use axum::http::HeaderMap;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::{OAuthError, Params};
use crate::model::App;
use crate::state::State;

/// How a grant treats the client secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SecretRule {
    /// Must be present and correct.
    Required,
    /// Optional, but checked when sent.
    ValidateIfSent,
    /// Must not be sent.
    RejectIfSent,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct ClientCredentials {
    pub(crate) client_id: Option<String>,
    pub(crate) client_secret: Option<String>,
}

impl ClientCredentials {
    /// Body parameters win; HTTP Basic fills what the body lacks.
    pub(crate) fn from_request(headers: &HeaderMap, params: &Params) -> ClientCredentials {
        let mut credentials = ClientCredentials {
            client_id: params.get("client_id").map(str::to_owned),
            client_secret: params.get("client_secret").map(str::to_owned),
        };
        if let Some((basic_id, basic_secret)) = basic_credentials(headers) {
            if credentials.client_id.is_none() {
                credentials.client_id = Some(basic_id);
            }
            if credentials.client_secret.is_none() && !basic_secret.is_empty() {
                credentials.client_secret = Some(basic_secret);
            }
        }
        credentials
    }

    /// Finds the app named by `client_id`.
    pub(crate) fn app(&self, state: &State) -> Result<App, OAuthError> {
        self.client_id
            .as_deref()
            .and_then(|client_id| state.apps.get(client_id))
            .cloned()
            .ok_or_else(OAuthError::invalid_client_id)
    }

    /// Applies the secret rule for this grant.
    pub(crate) fn check_secret(&self, app: &App, rule: SecretRule) -> Result<(), OAuthError> {
        match (&self.client_secret, rule) {
            (None, SecretRule::Required) => Err(OAuthError::invalid_client()),
            (None, _) => Ok(()),
            (Some(_), SecretRule::RejectIfSent) => Err(OAuthError::invalid_client()),
            (Some(secret), _) if *secret == app.consumer_secret => Ok(()),
            (Some(_), _) => Err(OAuthError::invalid_client()),
        }
    }
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let encoded = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))?;
    let decoded = STANDARD.decode(encoded.trim()).ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let id = url::form_urlencoded::parse(format!("x={id}").as_bytes())
        .next()
        .map(|(_, value)| value.into_owned())
        .unwrap_or_else(|| id.to_owned());
    let secret = url::form_urlencoded::parse(format!("x={secret}").as_bytes())
        .next()
        .map(|(_, value)| value.into_owned())
        .unwrap_or_else(|| secret.to_owned());
    Some((id, secret))
}

/// The bearer token of a request (`Bearer` or Salesforce's legacy `OAuth` scheme).
pub(crate) fn bearer_token(headers: &HeaderMap) -> Option<String> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("oauth"))
        .then(|| token.trim().to_owned())
        .filter(|token| !token.is_empty())
}
