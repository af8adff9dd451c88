//! The token endpoint's success body (reference §3.5) and its `signature` (§3.6):
//! base64(HMAC-SHA256(consumer secret, id + issued_at)), no `expires_in`, `issued_at` as a string
//! of milliseconds. It must not change simulator state.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use serde::Serialize;
use sha2::Sha256;

/// The JSON fields, in Salesforce's order.
#[derive(Debug, Serialize)]
pub(crate) struct TokenResponse {
    pub(crate) access_token: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) refresh_token: Option<String>,
    pub(crate) signature: String,
    pub(crate) scope: String,
    pub(crate) instance_url: String,
    pub(crate) id: String,
    pub(crate) token_type: String,
    pub(crate) issued_at: String,
}

/// Inputs of one success body.
#[derive(Debug)]
pub(crate) struct Issued<'a> {
    pub(crate) consumer_secret: &'a str,
    pub(crate) access_token: String,
    pub(crate) refresh_token: Option<String>,
    pub(crate) scopes: &'a [String],
    pub(crate) instance_url: &'a str,
    pub(crate) identity_url: String,
    pub(crate) issued_at_ms: i64,
    /// With `FaultKind::TamperIdentity`: the user id to put in `id` after signing.
    pub(crate) tamper_user_id: Option<String>,
}

impl Issued<'_> {
    pub(crate) fn into_response(self) -> TokenResponse {
        let issued_at = self.issued_at_ms.to_string();
        let signature = sign(self.consumer_secret, &self.identity_url, &issued_at);
        let id = match self.tamper_user_id {
            Some(other_user) => match self.identity_url.rsplit_once('/') {
                Some((prefix, _)) => format!("{prefix}/{other_user}"),
                None => self.identity_url,
            },
            None => self.identity_url,
        };
        TokenResponse {
            access_token: self.access_token,
            refresh_token: self.refresh_token,
            signature,
            scope: self.scopes.join(" "),
            instance_url: self.instance_url.to_owned(),
            id,
            token_type: "Bearer".to_owned(),
            issued_at,
        }
    }
}

/// base64(HMAC-SHA256(key = secret bytes, message = id + issued_at)), standard alphabet, padded.
pub fn sign(consumer_secret: &str, identity_url: &str, issued_at: &str) -> String {
    match Hmac::<Sha256>::new_from_slice(consumer_secret.as_bytes()) {
        Ok(mut mac) => {
            mac.update(identity_url.as_bytes());
            mac.update(issued_at.as_bytes());
            STANDARD.encode(mac.finalize().into_bytes())
        }
        Err(_) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_44_characters_of_padded_base64() {
        let signature = sign(
            "secret",
            "https://login.salesforce.com/id/00D/005",
            "1708058728442",
        );
        assert_eq!(signature.len(), 44);
        assert!(signature.ends_with('='));
    }
}
