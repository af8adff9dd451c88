//! Webhook signing in the Standard Webhooks scheme (<https://www.standardwebhooks.com/>).
//!
//! A secret is `whsec_` + base64 of 24 to 64 random bytes; the key is the decoded bytes. The
//! signature of a message is `v1,` + base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}")),
//! sent in `webhook-signature` next to `webhook-id` and `webhook-timestamp` (unix seconds).
//! `WebhookSecret` redacts itself in Debug and wipes its memory on drop; nothing here logs.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{KeyInit, Mac};
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// The prefix of every secret's text form.
pub const SECRET_PREFIX: &str = "whsec_";
const MIN_KEY_BYTES: usize = 24;
const MAX_KEY_BYTES: usize = 64;

/// A webhook signing secret. No Display, Serialize, Clone or PartialEq.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct WebhookSecret {
    text: String,
    key: Vec<u8>,
}

/// Why a secret was refused. Never carries the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "a webhook secret must be `whsec_` followed by the base64 of 24 to 64 random bytes \
     (or leave it out to have one generated)"
)]
pub struct InvalidSecret;

impl WebhookSecret {
    /// Parses the `whsec_<base64>` text form.
    pub fn parse(text: &str) -> Result<Self, InvalidSecret> {
        let text = text.trim();
        let encoded = text.strip_prefix(SECRET_PREFIX).ok_or(InvalidSecret)?;
        let key = STANDARD.decode(encoded).map_err(|_| InvalidSecret)?;
        if !(MIN_KEY_BYTES..=MAX_KEY_BYTES).contains(&key.len()) {
            return Err(InvalidSecret);
        }
        Ok(Self {
            text: text.to_string(),
            key,
        })
    }

    /// A new secret of 32 random bytes.
    pub fn generate() -> Self {
        let key: [u8; 32] = rand::random();
        let text = format!("{SECRET_PREFIX}{}", STANDARD.encode(key));
        Self {
            text,
            key: key.to_vec(),
        }
    }

    /// The `whsec_…` text. Call sites are the audit trail of where it goes.
    pub fn expose(&self) -> &str {
        &self.text
    }

    /// The `webhook-signature` value for one message.
    pub fn sign(&self, message_id: &str, timestamp: i64, body: &str) -> String {
        // HMAC takes a key of any length.
        let Ok(mut mac) = hmac::Hmac::<Sha256>::new_from_slice(&self.key) else {
            return String::new();
        };
        mac.update(message_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body.as_bytes());
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_standard_webhooks_example_signature_is_reproduced() {
        // The example of the Standard Webhooks specification and its reference libraries.
        let secret = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let signature = secret.sign(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            r#"{"test": 2432232314}"#,
        );
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn generated_secrets_parse_and_bad_ones_are_refused() {
        let secret = WebhookSecret::generate();
        assert!(secret.expose().starts_with("whsec_"));
        assert!(WebhookSecret::parse(secret.expose()).is_ok());
        for bad in [
            "",
            "whsec_",
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "whsec_not base64!",
            "whsec_c2hvcnQ=",
        ] {
            assert!(WebhookSecret::parse(bad).is_err(), "{bad}");
        }
        let shown = format!("{secret:?} {}", InvalidSecret);
        assert!(!shown.contains(&secret.expose()[6..]), "{shown}");
    }
}
