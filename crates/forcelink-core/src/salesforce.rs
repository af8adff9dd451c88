//! The Salesforce port: what forcelink asks of Salesforce, the token response as Salesforce
//! shapes it, the `signature` check, and the error taxonomy every failure is sorted into.
//!
//! Classification is pure (`classify_token_error`) so it is tested here and shared by every
//! adapter. Nothing here sends a request; adapters implement `SalesforceOAuth`.

use std::fmt;

use async_trait::async_trait;
use base64::Engine;
use chrono::{DateTime, TimeZone, Utc};
use hmac::{KeyInit, Mac};
use serde::Deserialize;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use url::Url;

use crate::ids::{OrgId, UserId};
use crate::secret::{AccessToken, AuthorizationCode, ClientSecret, PkceVerifier, RefreshToken};

/// The base URL of a Salesforce login host or My Domain (`https://login.salesforce.com`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LoginHost(Url);

impl LoginHost {
    /// Keeps scheme, host and port; drops any path. The caller decides which hosts to trust.
    pub fn from_url(url: &Url) -> Option<Self> {
        let host = url.host_str()?;
        let mut base = Url::parse(&format!("{}://{}", url.scheme(), host)).ok()?;
        base.set_port(url.port()).ok()?;
        Some(Self(base))
    }
    pub fn parse(text: &str) -> Option<Self> {
        let url = Url::parse(text).ok()?;
        // Already a bare origin (as every stored row holds it): keep it, no second parse.
        let bare = url.host_str().is_some()
            && url.path() == "/"
            && url.query().is_none()
            && url.fragment().is_none()
            && url.username().is_empty()
            && url.password().is_none();
        if bare {
            return Some(Self(url));
        }
        Self::from_url(&url)
    }
    pub fn url(&self) -> &Url {
        &self.0
    }
    /// `scheme://host[:port]` without a trailing slash.
    pub fn origin(&self) -> String {
        self.0.as_str().trim_end_matches('/').to_string()
    }
    pub fn endpoint(&self, path: &str) -> String {
        format!("{}{}", self.origin(), path)
    }
}

impl fmt::Display for LoginHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.origin())
    }
}

/// The partner app's client identity. No secret means a public client.
#[derive(Debug, Clone)]
pub struct ClientCredentials {
    pub client_id: String,
    pub client_secret: Option<ClientSecret>,
}

/// A token endpoint answer as Salesforce sends it: no `expires_in`, `issued_at` in
/// milliseconds as a string, `signature` over `id + issued_at`.
#[derive(Debug)]
pub struct TokenResponse {
    pub access_token: AccessToken,
    pub refresh_token: Option<RefreshToken>,
    pub instance_url: String,
    pub id: String,
    pub issued_at: String,
    pub signature: Option<String>,
    pub scope: Option<String>,
}

impl TokenResponse {
    /// `issued_at` as a time, if it is the millisecond string Salesforce sends.
    pub fn issued_at_time(&self) -> Option<DateTime<Utc>> {
        let millis: i64 = self.issued_at.trim().parse().ok()?;
        Utc.timestamp_millis_opt(millis).single()
    }
    /// Org and user from the last two path segments of the identity URL.
    pub fn identity_ids(&self) -> Option<(OrgId, UserId)> {
        parse_identity_url(&self.id)
    }
    pub fn scopes(&self) -> Vec<String> {
        self.scope
            .as_deref()
            .unwrap_or("")
            .split_whitespace()
            .map(str::to_string)
            .collect()
    }
}

/// `https://login.salesforce.com/id/{org}/{user}` → (org, user).
pub fn parse_identity_url(id: &str) -> Option<(OrgId, UserId)> {
    // Read by hand, not with `Url::parse`: every refresh answer carries one, and the check
    // needs only the path's last three segments (`…/id/{org}/{user}`).
    let (scheme, rest) = id.trim().split_once("://")?;
    if scheme.is_empty() || !scheme.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    let (authority, path) = rest.split_at(rest.find('/')?);
    if authority.is_empty() {
        return None;
    }
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let mut segments = path.split('/').filter(|s| !s.is_empty()).rev();
    let user = segments.next()?;
    let org = segments.next()?;
    if segments.next() != Some("id") {
        return None;
    }
    Some((OrgId::parse(org).ok()?, UserId::parse(user).ok()?))
}

/// Checks `signature == base64(HMAC-SHA256(client_secret, id + issued_at))` in constant time.
pub fn verify_signature(secret: &ClientSecret, id: &str, issued_at: &str, signature: &str) -> bool {
    let Ok(mut mac) = hmac::Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()) else {
        return false;
    };
    mac.update(id.as_bytes());
    mac.update(issued_at.as_bytes());
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    expected
        .as_bytes()
        .ct_eq(signature.trim().as_bytes())
        .into()
}

/// What the identity URL says about the user who granted access.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub org_id: OrgId,
    pub user_id: UserId,
    pub username: String,
    pub display_name: Option<String>,
    pub email: Option<String>,
}

/// Why a grant is dead and an admin must reconnect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeadGrantReason {
    /// `expired access/refresh token`: expired, revoked, rotated out or reused.
    ExpiredOrRevoked,
    InactiveUser,
    InactiveOrganization,
    /// Another `invalid_grant` description Salesforce sent for a refresh.
    Other(String),
}

impl DeadGrantReason {
    pub fn code(&self) -> &'static str {
        match self {
            Self::ExpiredOrRevoked => "expired_or_revoked",
            Self::InactiveUser => "inactive_user",
            Self::InactiveOrganization => "inactive_organization",
            Self::Other(_) => "invalid_grant",
        }
    }
}

/// Every way a Salesforce call can fail, named after what the caller must do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SalesforceError {
    #[error("grant is dead ({}): {description}", reason.code())]
    GrantDead {
        reason: DeadGrantReason,
        description: String,
    },
    #[error("token request is already being processed")]
    ConcurrentRequest,
    #[error("refresh blocked by an IP restriction: {description}")]
    IpBlocked { description: String },
    #[error("app misconfigured ({error}): {description}")]
    AppMisconfigured { error: String, description: String },
    #[error("authorization refused ({error}): {description}")]
    AuthorizationRejected { error: String, description: String },
    #[error("salesforce unavailable: {detail}")]
    Unavailable { status: Option<u16>, detail: String },
    #[error("outcome unknown: {detail}")]
    OutcomeUnknown { detail: String },
    #[error("unexpected response from salesforce: {detail}")]
    Protocol { detail: String },
    #[error("access token refused by salesforce")]
    InvalidSession,
}

impl SalesforceError {
    /// A stable snake_case name for logs, metrics and API errors.
    pub fn class(&self) -> &'static str {
        match self {
            Self::GrantDead { .. } => "grant_dead",
            Self::ConcurrentRequest => "concurrent_request",
            Self::IpBlocked { .. } => "ip_blocked",
            Self::AppMisconfigured { .. } => "app_misconfigured",
            Self::AuthorizationRejected { .. } => "authorization_rejected",
            Self::Unavailable { .. } => "unavailable",
            Self::OutcomeUnknown { .. } => "outcome_unknown",
            Self::Protocol { .. } => "protocol",
            Self::InvalidSession => "invalid_session",
        }
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    error: Option<String>,
    error_description: Option<String>,
}

/// Sorts a non-2xx answer of the token endpoint into the taxonomy. `grant` tells whether the
/// request was a refresh (descriptions mean different things for a code exchange).
pub fn classify_token_error(status: u16, body: &str, refresh: bool) -> SalesforceError {
    if status >= 500 {
        return SalesforceError::Unavailable {
            status: Some(status),
            detail: format!("token endpoint answered {status}"),
        };
    }
    let Ok(parsed) = serde_json::from_str::<ErrorBody>(body) else {
        return SalesforceError::Protocol {
            detail: format!("status {status} with a non-JSON body"),
        };
    };
    let error = parsed.error.unwrap_or_default();
    let description = parsed.error_description.unwrap_or_default();
    let lowered = description.to_ascii_lowercase();
    match error.as_str() {
        "invalid_client"
        | "invalid_client_id"
        | "invalid_client_credentials"
        | "unsupported_grant_type"
        | "invalid_app_access" => SalesforceError::AppMisconfigured { error, description },
        "inactive_user" => dead(DeadGrantReason::InactiveUser, description),
        "inactive_org" => dead(DeadGrantReason::InactiveOrganization, description),
        "rate_limit_exceeded" => SalesforceError::Unavailable {
            status: Some(status),
            detail: "rate limit exceeded".into(),
        },
        "invalid_grant" if lowered.contains("already being processed") => {
            SalesforceError::ConcurrentRequest
        }
        "invalid_grant" if lowered.contains("ip restricted") || lowered.contains("ip address") => {
            SalesforceError::IpBlocked { description }
        }
        "invalid_grant" if refresh => match lowered.as_str() {
            "expired access/refresh token" => dead(DeadGrantReason::ExpiredOrRevoked, description),
            "inactive user" => dead(DeadGrantReason::InactiveUser, description),
            "inactive organization" | "inactive org" => {
                dead(DeadGrantReason::InactiveOrganization, description)
            }
            _ if lowered.contains("inactive") && lowered.contains("org") => {
                dead(DeadGrantReason::InactiveOrganization, description)
            }
            _ => dead(DeadGrantReason::Other(description.clone()), description),
        },
        _ => SalesforceError::AuthorizationRejected { error, description },
    }
}

fn dead(reason: DeadGrantReason, description: String) -> SalesforceError {
    SalesforceError::GrantDead {
        reason,
        description,
    }
}

/// An authorization-code exchange.
#[derive(Debug)]
pub struct CodeExchange<'a> {
    pub login_host: &'a LoginHost,
    pub client: &'a ClientCredentials,
    pub code: &'a AuthorizationCode,
    pub redirect_uri: &'a str,
    pub verifier: &'a PkceVerifier,
}

/// A refresh-token grant.
#[derive(Debug)]
pub struct RefreshGrant<'a> {
    pub login_host: &'a LoginHost,
    pub client: &'a ClientCredentials,
    pub refresh_token: &'a RefreshToken,
}

/// What introspection says of an access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Introspection {
    pub active: bool,
    pub expires_at: Option<DateTime<Utc>>,
}

/// What forcelink asks of Salesforce's OAuth endpoints.
#[async_trait]
pub trait SalesforceOAuth: Send + Sync + fmt::Debug + 'static {
    async fn exchange_code(
        &self,
        request: CodeExchange<'_>,
    ) -> Result<TokenResponse, SalesforceError>;
    async fn refresh(&self, request: RefreshGrant<'_>) -> Result<TokenResponse, SalesforceError>;
    /// Revokes a refresh or access token (a refresh token takes its access tokens with it).
    async fn revoke(&self, login_host: &LoginHost, token: &str) -> Result<(), SalesforceError>;
    /// Introspects an access token of this app (needs the client secret).
    async fn introspect(
        &self,
        login_host: &LoginHost,
        client: &ClientCredentials,
        access_token: &AccessToken,
    ) -> Result<Introspection, SalesforceError>;
    /// Reads the identity URL with the access token.
    async fn identity(
        &self,
        identity_url: &str,
        access_token: &AccessToken,
    ) -> Result<Identity, SalesforceError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_host_parse_of_an_origin_equals_the_slow_path() {
        for text in [
            "https://login.salesforce.com",
            "https://test.salesforce.com:8443/",
            "http://127.0.0.1:4100",
            "https://Acme.My.Salesforce.com/services/oauth2/token?x=1",
            "https://user@acme.my.salesforce.com",
        ] {
            let slow = Url::parse(text).ok().as_ref().and_then(LoginHost::from_url);
            assert_eq!(LoginHost::parse(text), slow, "{text}");
        }
    }

    #[test]
    fn signature_matches_salesforce_hmac_of_id_and_issued_at() {
        let secret = ClientSecret::new("secret");
        let id = "https://login.salesforce.com/id/00D000000000062EAA/005000000000001AAA";
        let issued_at = "1708058728442";
        let mut mac = hmac::Hmac::<Sha256>::new_from_slice(b"secret").unwrap();
        mac.update(format!("{id}{issued_at}").as_bytes());
        let good = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        assert!(verify_signature(&secret, id, issued_at, &good));
        let tampered = id.replace("001AAA", "002AAA");
        assert!(!verify_signature(&secret, &tampered, issued_at, &good));
        assert!(!verify_signature(&secret, id, "1708058728443", &good));
    }

    #[test]
    fn identity_url_yields_org_and_user() {
        let (org, user) =
            parse_identity_url("https://test.salesforce.com/id/00D000000000062/005000000000001")
                .unwrap();
        assert_eq!(org.as_str(), "00D000000000062EAA");
        assert_eq!(user.as_str().len(), 18);
        assert!(parse_identity_url("https://x/notid/00D000000000062/005000000000001").is_none());
        // A trailing slash, a query or a fragment do not change what the path says.
        for variant in [
            "https://login.salesforce.com/id/00D000000000062/005000000000001/",
            "https://login.salesforce.com/id/00D000000000062/005000000000001?version=1",
            "https://login.salesforce.com/id/00D000000000062/005000000000001#x",
        ] {
            assert_eq!(
                parse_identity_url(variant).map(|(o, _)| o),
                Some(org.clone())
            );
        }
        for bad in [
            "",
            "not a url",
            "/id/00D000000000062/005000000000001",
            "https:///id/00D000000000062/005000000000001",
            "https://login.salesforce.com/id/00D000000000062",
            "https://login.salesforce.com/id/00D000000000062/not-an-id",
            "https://login.salesforce.com/00D000000000062/005000000000001",
            "https://login.salesforce.com/id/00D000000000062/005000000000001/extra",
        ] {
            assert!(parse_identity_url(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn refresh_errors_are_classified_by_salesforce_description() {
        let body = |d: &str| format!(r#"{{"error":"invalid_grant","error_description":"{d}"}}"#);
        assert_eq!(
            classify_token_error(400, &body("expired access/refresh token"), true).class(),
            "grant_dead"
        );
        assert_eq!(
            classify_token_error(400, &body("token request is already being processed"), true),
            SalesforceError::ConcurrentRequest
        );
        assert_eq!(
            classify_token_error(400, &body("ip restricted"), true).class(),
            "ip_blocked"
        );
        assert!(matches!(
            classify_token_error(400, &body("inactive user"), true),
            SalesforceError::GrantDead {
                reason: DeadGrantReason::InactiveUser,
                ..
            }
        ));
        assert!(matches!(
            classify_token_error(400, &body("inactive organization"), true),
            SalesforceError::GrantDead {
                reason: DeadGrantReason::InactiveOrganization,
                ..
            }
        ));
        let client =
            r#"{"error":"invalid_client","error_description":"invalid client credentials"}"#;
        assert_eq!(
            classify_token_error(400, client, true).class(),
            "app_misconfigured"
        );
        assert_eq!(
            classify_token_error(503, "<html>", true).class(),
            "unavailable"
        );
        assert_eq!(
            classify_token_error(400, "<html>", true).class(),
            "protocol"
        );
        assert_eq!(
            classify_token_error(400, &body("invalid code verifier"), false).class(),
            "authorization_rejected"
        );
    }
}
