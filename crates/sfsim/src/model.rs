//! The public vocabulary of the simulator: specs for orgs, users and apps, the app settings that
//! mirror Salesforce's External Client App switches, counters and recorded requests.
//! Plain data only: no locking, no HTTP, no time reading here.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// One day, the unit most refresh-token policies are expressed in.
pub const DAY: Duration = Duration::from_secs(24 * 60 * 60);

/// What to create with [`crate::Sim::create_org`].
#[derive(Debug, Clone)]
pub struct OrgSpec {
    pub name: String,
    pub sandbox: bool,
    /// The My Domain name (cosmetic: the sim serves the org on its own 127.0.0.1 port).
    pub my_domain: String,
    pub seed_accounts: usize,
    pub seed_contacts_per_account: usize,
}

impl Default for OrgSpec {
    fn default() -> Self {
        OrgSpec {
            name: "Acme".to_owned(),
            sandbox: false,
            my_domain: "acme".to_owned(),
            seed_accounts: 5,
            seed_contacts_per_account: 2,
        }
    }
}

/// An org as created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Org {
    /// 18-character id starting with `00D`.
    pub org_id: String,
    pub name: String,
    pub sandbox: bool,
    pub my_domain: String,
    /// The org's My Domain listener: REST API base and a My Domain login host.
    pub instance_url: String,
    /// The production or sandbox login host this org logs in on.
    pub login_url: String,
}

/// What to create with [`crate::Sim::create_user`]. Empty fields are filled from the username.
#[derive(Debug, Clone, Default)]
pub struct UserSpec {
    pub username: String,
    pub display_name: String,
    pub email: String,
}

impl UserSpec {
    /// A spec with only a username; display name and email are derived.
    pub fn named(username: &str) -> UserSpec {
        UserSpec {
            username: username.to_owned(),
            ..UserSpec::default()
        }
    }
}

/// A user as created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// 18-character id starting with `005`.
    pub user_id: String,
    pub org_id: String,
    pub username: String,
}

/// What to create with [`crate::Sim::create_app`]. `callback_urls` is copied into the settings
/// when the settings' own list is empty.
#[derive(Debug, Clone, Default)]
pub struct AppSpec {
    pub name: String,
    pub callback_urls: Vec<String>,
    pub settings: AppSettings,
}

/// An app (a partner External Client App, installed in every org).
#[derive(Debug, Clone)]
pub struct App {
    pub consumer_key: String,
    pub consumer_secret: String,
    pub name: String,
    pub settings: AppSettings,
}

/// Refresh Token Policy (reference §6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshTokenPolicy {
    /// Valid until revoked.
    Infinite,
    /// Immediately expire: never refreshable.
    Zero,
    /// Expire if not used for this long (sliding).
    SpecificInactivity(Duration),
    /// Expire this long after issue.
    SpecificLifetime(Duration),
}

/// App settings. Defaults follow an ECA as a 2026 partner must configure it; every UNCONFIRMED
/// behaviour of the reference is a field here (see docs/sfsim.md).
#[derive(Debug, Clone)]
pub struct AppSettings {
    pub callback_urls: Vec<String>,
    /// `isPkceRequired` (ECA default true).
    pub pkce_required: bool,
    /// Accept `code_challenge_method=plain` (UNCONFIRMED; default false).
    pub allow_plain_pkce: bool,
    /// An absent `code_challenge_method` means `plain` (UNCONFIRMED; default false = S256).
    pub missing_challenge_method_is_plain: bool,
    /// Refresh Token Rotation (default true).
    pub rotation: bool,
    /// `isConsumerSecretOptional`: true = public client (default false).
    pub consumer_secret_optional: bool,
    /// A public client that sends a secret at code exchange is refused (UNCONFIRMED; default
    /// false = the secret is validated).
    pub public_client_secret_rejected: bool,
    /// `isSecretRequiredForRefreshToken` (default true). When false a sent secret is validated.
    pub secret_required_for_refresh: bool,
    pub refresh_token_policy: RefreshTokenPolicy,
    /// Spring '26 "Limit Idle Refresh Token TTL to 30 Days" (default true).
    pub idle_ttl_limit: bool,
    /// Refresh Token IP Allowlist: inclusive ranges; None = not enforced.
    pub refresh_ip_allowlist: Option<Vec<(IpAddr, IpAddr)>>,
    /// Wire error for an allowlist block (UNCONFIRMED; default `invalid_grant`/`ip restricted`).
    pub ip_block_error: (String, String),
    /// Access-token lifetime on the sim clock (default 2 h; REST use does not extend it).
    pub session_timeout: Duration,
    /// `isIntrospectAllTokens` (default false).
    pub introspect_all_tokens: bool,
    /// A concurrent refresh on the same token also revokes the family (UNCONFIRMED; default false).
    pub concurrent_request_revokes_family: bool,
    /// Live grants per (user, app); one more revokes the oldest (default 5).
    pub max_grants_per_user: usize,
    /// Authorization code lifetime (default 15 min).
    pub code_ttl: Duration,
}

impl Default for AppSettings {
    fn default() -> Self {
        AppSettings {
            callback_urls: Vec::new(),
            pkce_required: true,
            allow_plain_pkce: false,
            missing_challenge_method_is_plain: false,
            rotation: true,
            consumer_secret_optional: false,
            public_client_secret_rejected: false,
            secret_required_for_refresh: true,
            refresh_token_policy: RefreshTokenPolicy::SpecificInactivity(DAY * 30),
            idle_ttl_limit: true,
            refresh_ip_allowlist: None,
            ip_block_error: ("invalid_grant".to_owned(), "ip restricted".to_owned()),
            session_timeout: Duration::from_secs(2 * 60 * 60),
            introspect_all_tokens: false,
            concurrent_request_revokes_family: false,
            max_grants_per_user: 5,
            code_ttl: Duration::from_secs(15 * 60),
        }
    }
}

/// Event counters, as totals or per (org, app).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub code_exchanges: u64,
    /// Successful refresh grants.
    pub refresh_grants: u64,
    pub refresh_failures: u64,
    pub reuse_detections: u64,
    pub concurrent_rejections: u64,
    pub revocations: u64,
    pub ip_blocks: u64,
    pub rest_calls: u64,
    pub rest_unauthorized: u64,
}

/// One HTTP request as received by any of the sim's hosts.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// The base URL of the host that received it (`http://127.0.0.1:PORT`).
    pub host: String,
    pub method: String,
    pub path_and_query: String,
    /// Every header as received, names lowercase.
    pub headers: Vec<(String, String)>,
    pub peer: SocketAddr,
}

impl RecordedRequest {
    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(header_name, _)| header_name.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// Errors of the Rust control API.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SimError {
    #[error("unknown org {0}")]
    UnknownOrg(String),
    #[error("unknown user {0}")]
    UnknownUser(String),
    #[error("unknown app {0}")]
    UnknownApp(String),
    #[error("username {0} is already taken")]
    DuplicateUsername(String),
    #[error("invalid request: {0}")]
    Invalid(String),
}
