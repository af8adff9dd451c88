//! Agent keys: how backends and AI agents prove who they are, and what they may reach.
//!
//! An agent key is shown once, at creation; forcelink keeps only its SHA-256 (the key carries
//! 256 random bits, so a plain hash is a safe lookup index). A key is scoped to a list of orgs
//! or to all of them, and to capabilities (`token`: get an access token; `proxy`: call the
//! Salesforce API through forcelink). Agent keys and the admin key are separate worlds: an agent
//! key never opens the admin API and the admin key is never an agent key (agent keys carry
//! their own prefix, and lookups go only to the agent key table).
//!
//! `AgentKeys` (`service`) is the authentication service: a lock-free cache in front of the store, so the
//! hot path (token API, proxy) costs a hash and a map read. A cached entry is re-read from the
//! store after `cache_ttl`, which bounds how long a revocation made by another process (the
//! CLI, another instance) takes to bite; a revocation through this process bites at once.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use rand::RngExt;
use sha2::{Digest, Sha256};

use crate::ids::OrgId;
use crate::pkce::hex;
use crate::store::StoreError;

mod service;

pub use service::AgentKeys;

/// Every agent key starts with this, so it is recognisable in a leak scanner and never
/// mistaken for the admin key.
pub const AGENT_KEY_PREFIX: &str = "flk_agent_";

/// What an agent key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Capability {
    /// `POST /v1/connections/{org}/token`.
    Token,
    /// `/v1/proxy/{org}/services/...` and, for single-org keys, `/services/...`.
    Proxy,
}

impl Capability {
    pub const ALL: [Capability; 2] = [Capability::Token, Capability::Proxy];

    pub fn as_str(self) -> &'static str {
        match self {
            Capability::Token => "token",
            Capability::Proxy => "proxy",
        }
    }

    pub fn parse(text: &str) -> Result<Capability, AgentKeyError> {
        match text.trim() {
            "token" => Ok(Capability::Token),
            "proxy" => Ok(Capability::Proxy),
            other => Err(AgentKeyError::Invalid(format!(
                "unknown capability {other:?}; use token, proxy or both (token,proxy)"
            ))),
        }
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which orgs a key reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentScope {
    AllOrgs,
    /// Non-empty, without duplicates, in the order given.
    Orgs(Vec<OrgId>),
}

impl AgentScope {
    pub fn allows(&self, org: &OrgId) -> bool {
        match self {
            AgentScope::AllOrgs => true,
            AgentScope::Orgs(orgs) => orgs.contains(org),
        }
    }

    /// The one org of a key bound to exactly one: such a key may use forcelink's root as its
    /// Salesforce instance URL.
    pub fn single_org(&self) -> Option<&OrgId> {
        match self {
            AgentScope::Orgs(orgs) if orgs.len() == 1 => orgs.first(),
            _ => None,
        }
    }
}

impl AgentScope {
    /// The scope as one text column: `*` for all orgs, else the org ids joined by commas.
    pub fn to_stored(&self) -> String {
        match self {
            AgentScope::AllOrgs => "*".to_owned(),
            AgentScope::Orgs(orgs) => orgs.iter().map(OrgId::as_str).collect::<Vec<_>>().join(","),
        }
    }

    /// Reads `to_stored`'s text back.
    pub fn from_stored(text: &str) -> Result<AgentScope, String> {
        if text == "*" {
            return Ok(AgentScope::AllOrgs);
        }
        let orgs = text
            .split(',')
            .map(|org| OrgId::parse(org).map_err(|error| error.to_string()))
            .collect::<Result<Vec<_>, _>>()?;
        if orgs.is_empty() {
            return Err("empty org scope".to_owned());
        }
        Ok(AgentScope::Orgs(orgs))
    }
}

/// Capabilities as one text column (`token,proxy`).
pub fn capabilities_to_stored(capabilities: &[Capability]) -> String {
    capabilities
        .iter()
        .map(|capability| capability.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// Reads `capabilities_to_stored`'s text back.
pub fn capabilities_from_stored(text: &str) -> Result<Vec<Capability>, String> {
    text.split(',')
        .filter(|part| !part.is_empty())
        .map(|part| Capability::parse(part).map_err(|error| error.to_string()))
        .collect()
}

/// An agent key as stored: everything but the key itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentKey {
    pub id: String,
    pub name: String,
    /// Lowercase hex SHA-256 of the full key.
    pub key_hash: String,
    pub scope: AgentScope,
    pub capabilities: Vec<Capability>,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
}

impl AgentKey {
    pub fn can(&self, capability: Capability) -> bool {
        self.capabilities.contains(&capability)
    }

    pub fn is_revoked(&self) -> bool {
        self.revoked_at.is_some()
    }

    /// Checks that this key may use `capability` on `org`.
    pub fn authorize(&self, org: &OrgId, capability: Capability) -> Result<(), AgentDenied> {
        if !self.can(capability) {
            return Err(AgentDenied::Capability(capability));
        }
        if !self.scope.allows(org) {
            return Err(AgentDenied::Org(org.clone()));
        }
        Ok(())
    }
}

/// A freshly made agent key. Its `Debug` shows no secret; `expose` is for printing it once.
pub struct NewAgentKeySecret(String);

impl NewAgentKeySecret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for NewAgentKeySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NewAgentKeySecret(<redacted>)")
    }
}

/// What creating a key needs.
#[derive(Debug, Clone)]
pub struct AgentKeySpec {
    pub name: String,
    pub scope: AgentScope,
    pub capabilities: Vec<Capability>,
}

impl AgentKeySpec {
    /// A key for every org with every capability (the demo's, the benchmarks' and the tests').
    pub fn all_orgs(name: &str) -> AgentKeySpec {
        AgentKeySpec {
            name: name.to_owned(),
            scope: AgentScope::AllOrgs,
            capabilities: Capability::ALL.to_vec(),
        }
    }

    /// Normalises and checks the spec: a usable name, at least one org or all of them, at
    /// least one capability, no duplicates.
    pub fn validated(self) -> Result<AgentKeySpec, AgentKeyError> {
        let name = self.name.trim().to_owned();
        if name.is_empty() || name.len() > 100 {
            return Err(AgentKeyError::Invalid(
                "the name must be 1 to 100 characters".to_owned(),
            ));
        }
        if name.starts_with(AGENT_KEY_PREFIX) || name.chars().any(char::is_control) {
            return Err(AgentKeyError::Invalid(
                "the name must be plain text, not a key".to_owned(),
            ));
        }
        let scope = match self.scope {
            AgentScope::AllOrgs => AgentScope::AllOrgs,
            AgentScope::Orgs(orgs) => {
                let mut unique: Vec<OrgId> = Vec::with_capacity(orgs.len());
                for org in orgs {
                    if !unique.contains(&org) {
                        unique.push(org);
                    }
                }
                if unique.is_empty() {
                    return Err(AgentKeyError::Invalid(
                        "give at least one org (--org ORGID) or --all-orgs".to_owned(),
                    ));
                }
                AgentScope::Orgs(unique)
            }
        };
        let mut capabilities: Vec<Capability> = Vec::with_capacity(2);
        for capability in self.capabilities {
            if !capabilities.contains(&capability) {
                capabilities.push(capability);
            }
        }
        if capabilities.is_empty() {
            return Err(AgentKeyError::Invalid(
                "give at least one capability (token, proxy)".to_owned(),
            ));
        }
        Ok(AgentKeySpec {
            name,
            scope,
            capabilities,
        })
    }
}

/// Why a key was not created or found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgentKeyError {
    #[error("{0}")]
    Invalid(String),
    #[error("an agent key named {0:?} already exists; pick another name or revoke that one")]
    NameTaken(String),
    #[error("no agent key is named or has the id {0:?}")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a presented key does not open a door.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgentDenied {
    #[error("no agent key was presented")]
    Missing,
    #[error("the agent key is not valid")]
    Unknown,
    #[error("the agent key was revoked")]
    Revoked,
    #[error("the agent key may not use {0}")]
    Capability(Capability),
    #[error("the agent key is not allowed for org {0}")]
    Org(OrgId),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Lowercase hex SHA-256 of a presented key.
pub fn hash_agent_key(presented: &str) -> String {
    hex(&key_digest(presented))
}

/// SHA-256 of a presented bearer key (agent or admin): what is kept and compared instead of
/// the key.
pub fn key_digest(presented: &str) -> [u8; 32] {
    Sha256::digest(presented.as_bytes()).into()
}

/// Makes a new key: the prefix and 256 random bits, URL-safe base64.
pub fn generate_agent_key() -> NewAgentKeySecret {
    let mut bytes = [0u8; 32];
    rand::rng().fill(&mut bytes[..]);
    NewAgentKeySecret(format!(
        "{AGENT_KEY_PREFIX}{}",
        URL_SAFE_NO_PAD.encode(bytes)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn org(text: &str) -> OrgId {
        OrgId::parse(text).unwrap()
    }

    #[test]
    fn generated_keys_are_prefixed_random_and_hash_to_hex() {
        let a = generate_agent_key();
        let b = generate_agent_key();
        assert!(a.expose().starts_with(AGENT_KEY_PREFIX));
        assert_eq!(a.expose().len(), AGENT_KEY_PREFIX.len() + 43);
        assert_ne!(a.expose(), b.expose());
        let hash = hash_agent_key(a.expose());
        assert_eq!(hash.len(), 64);
        assert!(
            hash.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert!(!format!("{a:?}").contains(&a.expose()[AGENT_KEY_PREFIX.len()..]));
    }

    #[test]
    fn known_hash() {
        // sha256("abc")
        assert_eq!(
            hash_agent_key("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn spec_validation_normalises_and_refuses() {
        let a = org("00D000000000001EAA");
        let spec = AgentKeySpec {
            name: "  crm-agent ".to_owned(),
            scope: AgentScope::Orgs(vec![a.clone(), a.clone()]),
            capabilities: vec![Capability::Proxy, Capability::Proxy],
        }
        .validated()
        .unwrap();
        assert_eq!(spec.name, "crm-agent");
        assert_eq!(spec.scope, AgentScope::Orgs(vec![a.clone()]));
        assert_eq!(spec.capabilities, vec![Capability::Proxy]);
        assert_eq!(spec.scope.single_org(), Some(&a));

        let empty_orgs = AgentKeySpec {
            name: "x".to_owned(),
            scope: AgentScope::Orgs(vec![]),
            capabilities: vec![Capability::Token],
        };
        assert!(matches!(
            empty_orgs.validated(),
            Err(AgentKeyError::Invalid(_))
        ));
        let no_caps = AgentKeySpec {
            name: "x".to_owned(),
            scope: AgentScope::AllOrgs,
            capabilities: vec![],
        };
        assert!(matches!(
            no_caps.validated(),
            Err(AgentKeyError::Invalid(_))
        ));
        let blank = AgentKeySpec {
            name: "  ".to_owned(),
            scope: AgentScope::AllOrgs,
            capabilities: vec![Capability::Token],
        };
        assert!(matches!(blank.validated(), Err(AgentKeyError::Invalid(_))));
        assert!(Capability::parse("admin").is_err());
    }

    #[test]
    fn authorize_checks_capability_then_org() {
        let a = org("00D000000000001EAA");
        let b = org("00D000000000002EAA");
        let key = AgentKey {
            id: "agk_1".to_owned(),
            name: "n".to_owned(),
            key_hash: String::new(),
            scope: AgentScope::Orgs(vec![a.clone()]),
            capabilities: vec![Capability::Token],
            created_at: DateTime::UNIX_EPOCH,
            revoked_at: None,
            last_used_at: None,
        };
        assert_eq!(key.authorize(&a, Capability::Token), Ok(()));
        assert_eq!(
            key.authorize(&b, Capability::Token),
            Err(AgentDenied::Org(b.clone()))
        );
        assert_eq!(
            key.authorize(&a, Capability::Proxy),
            Err(AgentDenied::Capability(Capability::Proxy))
        );
        let all = AgentKey {
            scope: AgentScope::AllOrgs,
            ..key
        };
        assert_eq!(all.authorize(&b, Capability::Token), Ok(()));
        assert_eq!(all.scope.single_org(), None);
    }
}
