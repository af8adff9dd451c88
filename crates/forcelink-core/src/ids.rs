//! Validated identifiers: Salesforce org and user ids, connection contexts and keys.
//!
//! Every id is parsed once at the edge (`OrgId::parse`) and carried as a newtype afterwards.
//! Nothing here performs IO or knows where an id came from.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Why an identifier was refused, phrased for the person who typed it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("{kind} must be 15 or 18 characters, got {len}")]
    Length { kind: &'static str, len: usize },
    #[error("{kind} may contain only letters and digits")]
    Charset { kind: &'static str },
    #[error("{kind} must start with {prefix}")]
    Prefix {
        kind: &'static str,
        prefix: &'static str,
    },
    #[error("{kind} has a wrong checksum suffix (last 3 characters)")]
    Checksum { kind: &'static str },
    #[error("context must be 1 to 64 characters of a-z, 0-9, '-', '_' or '.'")]
    Context,
}

const SUFFIX_ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";

/// The 3-character case-safe suffix Salesforce appends to a 15-character id.
fn checksum_suffix(id15: &[u8]) -> [u8; 3] {
    let mut suffix = [0u8; 3];
    for (chunk_index, chunk) in id15.chunks(5).enumerate() {
        let mut bits = 0usize;
        for (position, byte) in chunk.iter().enumerate() {
            if byte.is_ascii_uppercase() {
                bits |= 1 << position;
            }
        }
        suffix[chunk_index] = SUFFIX_ALPHABET[bits];
    }
    suffix
}

/// Parses a 15- or 18-character Salesforce id with the given 3-character key prefix and
/// returns the 18-character form.
fn parse_salesforce_id(
    kind: &'static str,
    prefix: &'static str,
    raw: &str,
) -> Result<Arc<str>, IdError> {
    let raw = raw.trim();
    let bytes = raw.as_bytes();
    if bytes.len() != 15 && bytes.len() != 18 {
        return Err(IdError::Length {
            kind,
            len: raw.chars().count(),
        });
    }
    if !bytes.iter().all(u8::is_ascii_alphanumeric) {
        return Err(IdError::Charset { kind });
    }
    if !raw.starts_with(prefix) {
        return Err(IdError::Prefix { kind, prefix });
    }
    let suffix = checksum_suffix(&bytes[..15]);
    if bytes.len() == 18 && !bytes[15..].eq_ignore_ascii_case(&suffix) {
        return Err(IdError::Checksum { kind });
    }
    let mut full = [0u8; 18];
    full[..15].copy_from_slice(&bytes[..15]);
    full[15..].copy_from_slice(&suffix);
    // Alphanumeric ASCII throughout (checked above; the suffix alphabet is A-Z0-5).
    std::str::from_utf8(&full)
        .map(Arc::from)
        .map_err(|_| IdError::Charset { kind })
}

macro_rules! salesforce_id {
    ($name:ident, $kind:literal, $prefix:literal) => {
        #[doc = concat!("A Salesforce ", $kind, " in its 18-character form. Cloning it")]
        #[doc = "shares the text instead of copying it."]
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(Arc<str>);

        impl $name {
            /// Accepts the 15- or 18-character form; the result is always 18 characters.
            pub fn parse(raw: &str) -> Result<Self, IdError> {
                parse_salesforce_id($kind, $prefix, raw).map(Self)
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
            /// The shared text itself, e.g. for a driver that can keep it without copying.
            pub fn shared(&self) -> Arc<str> {
                Arc::clone(&self.0)
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(value: String) -> Result<Self, IdError> {
                Self::parse(&value)
            }
        }
        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0.to_string()
            }
        }
    };
}

salesforce_id!(OrgId, "org id", "00D");
salesforce_id!(UserId, "user id", "005");

/// What a connection to an org is for: `api` (the default, as in the start URL) or any other
/// name such as a per-user context. Cloning it shares the text instead of copying it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ConnectionContext(Arc<str>);

impl ConnectionContext {
    pub const DEFAULT: &'static str = "api";

    pub fn parse(raw: &str) -> Result<Self, IdError> {
        let ok = !raw.is_empty()
            && raw.len() <= 64
            && raw.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
            });
        if ok {
            Ok(Self(Arc::from(raw)))
        } else {
            Err(IdError::Context)
        }
    }
    pub fn api() -> Self {
        Self(Arc::from(Self::DEFAULT))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// The shared text itself, e.g. for a driver that can keep it without copying.
    pub fn shared(&self) -> Arc<str> {
        Arc::clone(&self.0)
    }
}
impl fmt::Display for ConnectionContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl TryFrom<String> for ConnectionContext {
    type Error = IdError;
    fn try_from(value: String) -> Result<Self, IdError> {
        Self::parse(&value)
    }
}
impl From<ConnectionContext> for String {
    fn from(value: ConnectionContext) -> String {
        value.0.to_string()
    }
}

/// A connection is identified by org id and context.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ConnectionKey {
    pub org_id: OrgId,
    pub context: ConnectionContext,
}

impl ConnectionKey {
    pub fn new(org_id: OrgId, context: ConnectionContext) -> Self {
        Self { org_id, context }
    }
}
impl fmt::Display for ConnectionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.org_id, self.context)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifteen_char_org_id_gains_salesforce_checksum() {
        // Known pair: 00D000000000062 -> 00D000000000062EAA
        let id = OrgId::parse("00D000000000062").unwrap();
        assert_eq!(id.as_str(), "00D000000000062EAA");
        let mixed = OrgId::parse("00D5g000004ZcYh").unwrap();
        assert_eq!(mixed.as_str().len(), 18);
        assert_eq!(OrgId::parse(mixed.as_str()).unwrap(), mixed);
    }

    #[test]
    fn eighteen_char_id_with_wrong_suffix_is_refused() {
        assert_eq!(
            OrgId::parse("00D000000000062XYZ"),
            Err(IdError::Checksum { kind: "org id" })
        );
    }

    #[test]
    fn org_id_must_have_org_prefix_and_sane_characters() {
        assert!(matches!(
            OrgId::parse("005000000000062"),
            Err(IdError::Prefix { .. })
        ));
        assert!(matches!(
            OrgId::parse("00D00000000006!"),
            Err(IdError::Charset { .. })
        ));
        assert!(matches!(OrgId::parse("00D"), Err(IdError::Length { .. })));
    }

    #[test]
    fn context_is_a_lowercase_slug() {
        assert!(ConnectionContext::parse("api").is_ok());
        assert!(ConnectionContext::parse("user.005xx").is_ok());
        assert!(ConnectionContext::parse("").is_err());
        assert!(ConnectionContext::parse("API").is_err());
        assert!(ConnectionContext::parse("a/b").is_err());
    }
}
