//! The one typed configuration tree: defaults < TOML file < `FORCELINK_` environment.
//!
//! `FORCELINK_SECTION__KEY=value` sets `section.key` (`__` nests). Any `x_file` setting reads
//! secret `x` from a file. Unknown keys in the file are errors; unknown environment variables
//! are warnings. `load` (the loading) is the only code that reads the environment; `Debug` and
//! `config check` print secrets as `[redacted]`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use anyhow::{anyhow, bail};
use serde::{Deserialize, Serialize};

mod load;
mod webhooks;

pub use webhooks::{WebhookEndpointConfig, WebhooksConfig};

/// A secret setting: redacted in Debug and Serialize.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct SecretSetting(pub String);

impl fmt::Debug for SecretSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}
impl Serialize for SecretSetting {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("[redacted]")
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub store: StoreConfig,
    pub salesforce: SalesforceConfig,
    pub admin: AdminConfig,
    pub keys: KeysConfig,
    pub refresh: RefreshConfig,
    pub heartbeat: HeartbeatConfig,
    pub egress: EgressConfig,
    pub agents: AgentsConfig,
    pub proxy: ProxyConfig,
    pub webhooks: WebhooksConfig,
}

/// Agent keys (`forcelink agents create`): how they are checked.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentsConfig {
    /// How long a checked key is trusted before the store is read again: the longest a
    /// revocation made by another process (the CLI, another instance) takes to bite. A
    /// revocation through this server's API bites at once. 0 = read the store on every request.
    pub key_cache_seconds: u32,
}

impl Default for AgentsConfig {
    fn default() -> Self {
        Self {
            key_cache_seconds: 5,
        }
    }
}

/// The Salesforce API proxy (`/v1/proxy/{org}/services/...`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxyConfig {
    /// Largest request body forwarded; larger ones get 413.
    pub max_body_bytes: u64,
    /// How long Salesforce may take to answer (headers), and the longest pause while a body
    /// streams, before the call fails with 504.
    pub timeout_seconds: u32,
    pub connect_timeout_seconds: u32,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 10 * 1024 * 1024,
            timeout_seconds: 120,
            connect_timeout_seconds: 10,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HeartbeatConfig {
    pub enabled: bool,
    /// Use every refresh token at least this often; must be safely below the idle TTL.
    pub interval_hours: u32,
    pub tick_seconds: u32,
    pub batch: u32,
    pub concurrency: u32,
    /// Refreshes per second per login host.
    pub per_host_rate: f64,
    /// A failed heartbeat is retried this much later.
    pub retry_minutes: u32,
}

impl Default for HeartbeatConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval_hours: 24,
            tick_seconds: 30,
            batch: 500,
            concurrency: 8,
            per_host_rate: 20.0,
            retry_minutes: 15,
        }
    }
}

/// Where traffic to Salesforce's token endpoints leaves from: the addresses org admins put in
/// their refresh-token IP allow list.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EgressConfig {
    /// Local address to send from (must be an address of this host).
    pub bind_address: Option<std::net::IpAddr>,
    /// An HTTP CONNECT proxy for token traffic, e.g. `http://egress.internal:3128`.
    pub proxy: Option<String>,
    /// The public IPs admins must allow (what the proxy or NAT presents), for `doctor`.
    pub declared_ips: Vec<String>,
    /// Send the API proxy's traffic (`/v1/proxy/...`) the same way, not only token traffic.
    pub api_traffic: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RefreshConfig {
    /// Refresh lease length; 0 = request timeout + 15 s. Must exceed the request timeout.
    pub lease_ttl_seconds: u32,
    /// After this long a lost request has surely ended at Salesforce; 0 = request timeout + 5 s.
    pub in_flight_window_seconds: u32,
    /// How long a token request waits for another instance's refresh or a recovery.
    pub max_wait_seconds: u32,
    pub transient_retries: u32,
    pub concurrent_retries: u32,
    pub backoff_base_ms: u32,
    /// Salesforce's idle refresh-token TTL.
    pub idle_ttl_days: u32,
}

impl Default for RefreshConfig {
    fn default() -> Self {
        Self {
            lease_ttl_seconds: 0,
            in_flight_window_seconds: 0,
            max_wait_seconds: 10,
            transient_retries: 2,
            concurrent_retries: 6,
            backoff_base_ms: 100,
            idle_ttl_days: 30,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: String,
    /// The URL people and Salesforce reach forcelink at; the callback URL hangs off it.
    pub public_url: String,
    /// This instance's name in leases and lineage; empty = generated per process.
    pub instance_id: String,
    /// Serve HTTPS with this certificate chain (PEM); needs `tls_key_file`.
    pub tls_cert_file: Option<PathBuf>,
    /// The private key (PEM, PKCS#8, PKCS#1 or SEC1) of `tls_cert_file`.
    pub tls_key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `sqlite:PATH` (or a bare path) or `postgres://…`.
    pub url: String,
    pub max_connections: u32,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SalesforceConfig {
    pub client_id: String,
    /// Absent for a public client.
    pub client_secret: Option<SecretSetting>,
    pub scopes: Vec<String>,
    pub production_login_url: String,
    pub sandbox_login_url: String,
    /// Host suffixes accepted as My Domain login hosts (https only).
    pub my_domain_suffixes: Vec<String>,
    /// Further exact origins accepted as login hosts (e.g. a simulator on loopback).
    pub extra_login_urls: Vec<String>,
    pub session_timeout_minutes: u32,
    pub refresh_margin_seconds: u32,
    pub request_timeout_seconds: u32,
    pub state_ttl_minutes: u32,
    /// Learn each access token's real expiry from introspection (needs the client secret).
    pub introspect_expiry: bool,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    pub api_key: Option<SecretSetting>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeysConfig {
    /// The key that seals new values.
    pub active: String,
    /// key id → base64 of 32 random bytes (`forcelink keys generate`).
    pub ring: BTreeMap<String, SecretSetting>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            public_url: "http://127.0.0.1:8080".into(),
            instance_id: String::new(),
            tls_cert_file: None,
            tls_key_file: None,
        }
    }
}
impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            url: "sqlite:forcelink.db".into(),
            max_connections: 16,
        }
    }
}
impl Default for SalesforceConfig {
    fn default() -> Self {
        Self {
            client_id: String::new(),
            client_secret: None,
            scopes: vec!["api".into(), "refresh_token".into()],
            production_login_url: "https://login.salesforce.com".into(),
            sandbox_login_url: "https://test.salesforce.com".into(),
            my_domain_suffixes: vec![".my.salesforce.com".into()],
            extra_login_urls: Vec::new(),
            session_timeout_minutes: 120,
            refresh_margin_seconds: 300,
            request_timeout_seconds: 30,
            state_ttl_minutes: 10,
            introspect_expiry: true,
        }
    }
}

impl Config {
    /// The callback URL registered on the Salesforce app.
    pub fn callback_url(&self) -> String {
        format!(
            "{}/v1/connect/salesforce/callback",
            self.server.public_url.trim_end_matches('/')
        )
    }

    /// Start-up checks that need no IO. Each message says how to fix it.
    pub fn validate_for_serve(&self) -> anyhow::Result<()> {
        if self.salesforce.client_id.trim().is_empty() {
            bail!(
                "salesforce.client_id is not set: put the consumer key of your Connected App / \
                 External Client App under [salesforce] in the config file, or set FORCELINK_SALESFORCE__CLIENT_ID"
            );
        }
        if self
            .admin
            .api_key
            .as_ref()
            .is_none_or(|key| key.0.len() < 24)
        {
            bail!(
                "admin.api_key is not set or shorter than 24 characters: set [admin] api_key (or api_key_file), \
                 or FORCELINK_ADMIN__API_KEY; generate one with `forcelink keys generate`"
            );
        }
        if self
            .admin
            .api_key
            .as_ref()
            .is_some_and(|key| key.0.starts_with(forcelink_core::agents::AGENT_KEY_PREFIX))
        {
            bail!(
                "admin.api_key looks like an agent key (flk_agent_…): the admin key must be a                  separate secret; generate one with `forcelink keys generate`"
            );
        }
        self.validate_keys()?;
        self.validate_refresh()?;
        self.validate_heartbeat()?;
        self.webhooks.validate()?;
        url::Url::parse(&self.server.public_url).map_err(|_| {
            anyhow!("server.public_url {:?} is not a URL: set it to the address Salesforce redirects back to", self.server.public_url)
        })?;
        Ok(())
    }

    /// The heartbeat must use every token well inside the idle TTL.
    pub fn validate_heartbeat(&self) -> anyhow::Result<()> {
        let interval = u64::from(self.heartbeat.interval_hours);
        let idle_hours = u64::from(self.refresh.idle_ttl_days) * 24;
        if interval == 0 {
            bail!("heartbeat.interval_hours must be at least 1");
        }
        if interval * 3 > idle_hours {
            bail!(
                "heartbeat.interval_hours ({interval}) is not safely below the refresh-token idle TTL \
                 ({} days): use at most {} hours so a failed heartbeat can be retried twice before tokens die",
                self.refresh.idle_ttl_days,
                idle_hours / 3
            );
        }
        if let Some(proxy) = &self.egress.proxy {
            url::Url::parse(proxy).map_err(|_| {
                anyhow!("egress.proxy {proxy:?} is not a URL like http://host:3128")
            })?;
        }
        Ok(())
    }

    /// The lease must outlive any request, or two instances could refresh one token.
    pub fn validate_refresh(&self) -> anyhow::Result<()> {
        let timeout = self.salesforce.request_timeout_seconds;
        let lease = self.refresh.lease_ttl_seconds;
        if lease != 0 && lease <= timeout {
            bail!(
                "refresh.lease_ttl_seconds ({lease}) must be longer than salesforce.request_timeout_seconds ({timeout}); \
                 set it to at least {} or to 0 for the default",
                timeout + 5
            );
        }
        if timeout == 0 {
            bail!("salesforce.request_timeout_seconds must be at least 1");
        }
        Ok(())
    }

    pub fn validate_keys(&self) -> anyhow::Result<()> {
        if self.keys.ring.is_empty() || self.keys.active.is_empty() {
            bail!(
                "no encryption key: add [keys] active = \"k1\" and [keys.ring] k1 = \"<base64>\" to the config \
                 (or FORCELINK_KEYS__ACTIVE / FORCELINK_KEYS__RING__K1); generate a key with `forcelink keys generate`"
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn environment_overrides_file_and_nests_with_double_underscore() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("forcelink.toml");
        std::fs::write(
            &file,
            "[salesforce]\nclient_id = \"from-file\"\nsession_timeout_minutes = 60\n",
        )
        .unwrap();
        let config = Config::load_from(
            Some(&file),
            &env(&[
                ("FORCELINK_SALESFORCE__CLIENT_ID", "from-env"),
                ("FORCELINK_KEYS__RING__K1", "abc"),
            ]),
        )
        .unwrap();
        assert_eq!(config.salesforce.client_id, "from-env");
        assert_eq!(config.salesforce.session_timeout_minutes, 60);
        assert_eq!(
            config.keys.ring.get("k1").map(|s| s.0.as_str()),
            Some("abc")
        );
    }

    #[test]
    fn unknown_key_in_file_is_an_error_naming_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("forcelink.toml");
        std::fs::write(&file, "[salesforce]\nclient_idd = \"typo\"\n").unwrap();
        let error = Config::load_from(Some(&file), &[]).unwrap_err().to_string();
        assert!(error.contains("client_idd"), "{error}");
    }

    #[test]
    fn unknown_environment_variable_is_ignored() {
        let config = Config::load_from(None, &env(&[("FORCELINK_NOPE__X", "1")])).unwrap();
        assert_eq!(config.server.listen, "127.0.0.1:8080");
    }

    #[test]
    fn secret_files_are_read_and_secrets_never_printed() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "super-secret-admin-key-000000\n").unwrap();
        let config = Config::load_from(
            None,
            &env(&[("FORCELINK_ADMIN__API_KEY_FILE", secret.to_str().unwrap())]),
        )
        .unwrap();
        assert_eq!(
            config.admin.api_key.as_ref().unwrap().0,
            "super-secret-admin-key-000000"
        );
        let shown = format!("{config:?} {}", toml::to_string(&config).unwrap());
        assert!(!shown.contains("super-secret"), "{shown}");
    }

    #[test]
    fn webhook_endpoint_secrets_are_read_from_files() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("hook_secret");
        let value = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        std::fs::write(&secret, format!("{value}\n")).unwrap();
        let file = dir.path().join("forcelink.toml");
        std::fs::write(
            &file,
            format!(
                "[[webhooks.endpoints]]\nurl = \"https://hooks.example.com/a\"\n\
                 secret_file = \"{}\"\nevents = [\"connection.created\"]\n",
                secret.display()
            ),
        )
        .unwrap();
        let config = Config::load_from(Some(&file), &[]).unwrap();
        config.webhooks.validate().unwrap();
        let endpoint = &config.webhooks.endpoints[0];
        assert_eq!(endpoint.secret.as_ref().unwrap().0, value);
        assert_eq!(config.webhooks.max_attempts, 12);
    }

    #[test]
    fn missing_client_id_fails_with_a_fix() {
        let error = Config::default()
            .validate_for_serve()
            .unwrap_err()
            .to_string();
        assert!(error.contains("FORCELINK_SALESFORCE__CLIENT_ID"), "{error}");
    }

    #[test]
    fn an_agent_key_cannot_be_the_admin_key() {
        let mut config = Config::default();
        config.salesforce.client_id = "abc".into();
        config.admin.api_key = Some(SecretSetting(
            "flk_agent_0123456789abcdefghijklmnopqrstuvwxyz".into(),
        ));
        let error = config.validate_for_serve().unwrap_err().to_string();
        assert!(error.contains("looks like an agent key"), "{error}");
    }
}
