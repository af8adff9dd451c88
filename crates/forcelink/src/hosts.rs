//! Which Salesforce login hosts a connect flow may use: production, sandbox, a My Domain whose
//! host ends with a configured suffix (https only), or an exact origin the config lists.
//!
//! The token exchange sends the client secret to the chosen host, so anything not allowed here
//! is refused before a flow starts.

use anyhow::{Context, anyhow};
use forcelink_core::LoginHost;

use crate::config::SalesforceConfig;

/// The login-host rules from the config.
#[derive(Debug, Clone)]
pub struct LoginHostPolicy {
    pub production: LoginHost,
    pub sandbox: LoginHost,
    my_domain_suffixes: Vec<String>,
    extra: Vec<LoginHost>,
}

impl LoginHostPolicy {
    pub fn from_config(config: &SalesforceConfig) -> anyhow::Result<Self> {
        let parse = |name: &str, value: &str| {
            LoginHost::parse(value).ok_or_else(|| {
                anyhow!(
                    "salesforce.{name} {value:?} is not a URL like https://login.salesforce.com"
                )
            })
        };
        let extra = config
            .extra_login_urls
            .iter()
            .map(|url| parse("extra_login_urls", url))
            .collect::<anyhow::Result<Vec<_>>>()
            .context("fix salesforce.extra_login_urls")?;
        Ok(Self {
            production: parse("production_login_url", &config.production_login_url)?,
            sandbox: parse("sandbox_login_url", &config.sandbox_login_url)?,
            my_domain_suffixes: config
                .my_domain_suffixes
                .iter()
                .map(|s| s.to_ascii_lowercase())
                .collect(),
            extra,
        })
    }

    /// Picks the host for `env` (`production` or `sandbox`) or a My Domain `domain`.
    pub fn choose(
        &self,
        env: Option<&str>,
        domain: Option<&str>,
    ) -> Result<LoginHost, (&'static str, String)> {
        if let Some(domain) = domain.filter(|d| !d.trim().is_empty()) {
            return self.my_domain(domain.trim());
        }
        match env.unwrap_or("production") {
            "production" | "prod" => Ok(self.production.clone()),
            "sandbox" | "test" => Ok(self.sandbox.clone()),
            other => Err((
                "invalid_env",
                format!(
                    "env must be production or sandbox, got {other:?}; for a My Domain pass domain=NAME.my.salesforce.com"
                ),
            )),
        }
    }

    fn my_domain(&self, domain: &str) -> Result<LoginHost, (&'static str, String)> {
        let text = if domain.contains("://") {
            domain.to_string()
        } else {
            format!("https://{domain}")
        };
        let refused = || {
            (
                "invalid_domain",
                format!(
                    "{domain:?} is not an allowed My Domain login host (expected NAME{})",
                    self.my_domain_suffixes
                        .first()
                        .map(String::as_str)
                        .unwrap_or(".my.salesforce.com")
                ),
            )
        };
        let host = LoginHost::parse(&text).ok_or_else(refused)?;
        if self.extra.contains(&host) || host == self.production || host == self.sandbox {
            return Ok(host);
        }
        let url = host.url();
        let name = url.host_str().unwrap_or("").to_ascii_lowercase();
        let suffix_ok = self
            .my_domain_suffixes
            .iter()
            .any(|suffix| name.len() > suffix.len() && name.ends_with(suffix.as_str()));
        let label_ok = name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        if url.scheme() == "https" && url.port().is_none() && suffix_ok && label_ok {
            Ok(host)
        } else {
            Err(refused())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> LoginHostPolicy {
        let config = SalesforceConfig {
            extra_login_urls: vec!["http://127.0.0.1:4444".into()],
            ..SalesforceConfig::default()
        };
        LoginHostPolicy::from_config(&config).unwrap()
    }

    #[test]
    fn my_domain_must_match_a_configured_suffix_over_https() {
        let policy = policy();
        assert_eq!(
            policy
                .choose(None, Some("acme.my.salesforce.com"))
                .unwrap()
                .origin(),
            "https://acme.my.salesforce.com"
        );
        assert_eq!(
            policy
                .choose(None, Some("acme--uat.sandbox.my.salesforce.com"))
                .unwrap()
                .origin(),
            "https://acme--uat.sandbox.my.salesforce.com"
        );
        assert!(policy.choose(None, Some("evil.example.com")).is_err());
        assert!(
            policy
                .choose(None, Some("http://acme.my.salesforce.com"))
                .is_err()
        );
        assert!(
            policy
                .choose(None, Some("acme.my.salesforce.com.evil.com"))
                .is_err()
        );
        assert!(
            policy
                .choose(None, Some("https://acme.my.salesforce.com:8443"))
                .is_err()
        );
        assert_eq!(
            policy
                .choose(None, Some("http://127.0.0.1:4444"))
                .unwrap()
                .origin(),
            "http://127.0.0.1:4444"
        );
    }

    #[test]
    fn env_selects_production_or_sandbox() {
        let policy = policy();
        assert_eq!(
            policy.choose(None, None).unwrap().origin(),
            "https://login.salesforce.com"
        );
        assert_eq!(
            policy.choose(Some("sandbox"), None).unwrap().origin(),
            "https://test.salesforce.com"
        );
        assert_eq!(
            policy.choose(Some("staging"), None).unwrap_err().0,
            "invalid_env"
        );
    }
}
