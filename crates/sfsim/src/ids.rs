//! Generation of Salesforce-shaped identifiers and secrets: 18-character record ids with the
//! case-safe suffix, consumer keys, authorization codes, access and refresh tokens.
//! Randomness only; it must not touch simulator state.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rand::RngExt;

const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const SUFFIX_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";

/// Random string over an alphabet.
pub(crate) fn random_from(alphabet: &[u8], length: usize) -> String {
    let mut rng = rand::rng();
    (0..length)
        .map(|_| {
            let index = rng.random_range(0..alphabet.len());
            char::from(alphabet.get(index).copied().unwrap_or(b'0'))
        })
        .collect()
}

pub(crate) fn random_base62(length: usize) -> String {
    random_from(BASE62, length)
}

/// An 18-character Salesforce id with the given 3-character key prefix (`00D`, `005`, `001`…).
pub(crate) fn record_id(prefix: &str) -> String {
    let fifteen = format!("{prefix}5g{}", random_base62(10));
    with_case_safe_suffix(&fifteen)
}

/// Appends the 3-character case-safe checksum Salesforce puts on 18-character ids.
pub(crate) fn with_case_safe_suffix(fifteen: &str) -> String {
    let bytes = fifteen.as_bytes();
    let mut suffix = String::with_capacity(3);
    for chunk in bytes.chunks(5).take(3) {
        let mut bits = 0usize;
        for (position, byte) in chunk.iter().enumerate() {
            if byte.is_ascii_uppercase() {
                bits |= 1 << position;
            }
        }
        suffix.push(char::from(
            SUFFIX_ALPHABET.get(bits).copied().unwrap_or(b'A'),
        ));
    }
    format!("{fifteen}{suffix}")
}

/// A consumer key, shaped like Salesforce's (`3MVG9…`, 85 characters).
pub(crate) fn consumer_key() -> String {
    format!(
        "3MVG9{}",
        random_from(
            b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz._",
            80
        )
    )
}

/// A consumer secret (64 hex-ish uppercase characters, like Salesforce's).
pub(crate) fn consumer_secret() -> String {
    random_from(b"0123456789ABCDEF", 64)
}

/// An authorization code: standard base64 ending in `==`, so it needs URL-encoding (§2.2).
pub(crate) fn authorization_code() -> String {
    let mut bytes = [0u8; 58];
    rand::rng().fill(&mut bytes[..]);
    format!("aPrx{}", STANDARD.encode(bytes))
}

/// An access token: `{org_id}!AQ…` (§3.5).
pub(crate) fn access_token(org_id: &str) -> String {
    format!(
        "{org_id}!AQ{}",
        random_from(
            b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz._",
            96
        )
    )
}

/// A refresh token (`5Aep861…`).
pub(crate) fn refresh_token() -> String {
    format!(
        "5Aep861{}",
        random_from(
            b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz._",
            80
        )
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_safe_suffix_matches_a_known_salesforce_id() {
        assert_eq!(
            with_case_safe_suffix("001A000001abcDE"),
            "001A000001abcDEIAY"
        );
    }

    #[test]
    fn record_ids_are_eighteen_characters_with_their_prefix() {
        let id = record_id("00D");
        assert_eq!(id.len(), 18);
        assert!(id.starts_with("00D"));
    }

    #[test]
    fn codes_end_with_base64_padding() {
        assert!(authorization_code().ends_with("=="));
    }
}
