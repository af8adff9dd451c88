//! PKCE (RFC 7636) with S256 only, and the random values of the authorization flow.
//!
//! Verifiers are 43–128 characters from a CSPRNG; `state` values are random and are kept only
//! as a SHA-256 hash server-side. This module does no IO and never logs a verifier.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngExt;
use sha2::{Digest, Sha256};

use crate::secret::{PkceVerifier, StateToken};

/// Random bytes behind a verifier: 64 bytes give an 86-character base64url verifier.
const VERIFIER_BYTES: usize = 64;

/// A fresh verifier of 86 unreserved characters.
pub fn new_verifier() -> PkceVerifier {
    let mut bytes = [0u8; VERIFIER_BYTES];
    rand::rng().fill(&mut bytes[..]);
    PkceVerifier::new(URL_SAFE_NO_PAD.encode(bytes))
}

/// `BASE64URL(SHA256(ASCII(verifier)))`, the S256 challenge.
pub fn s256_challenge(verifier: &PkceVerifier) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.expose().as_bytes()))
}

/// Whether a verifier has the length and alphabet RFC 7636 §4.1 requires.
pub fn is_valid_verifier(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// A fresh single-use `state` for the authorize redirect (256 random bits).
pub fn new_state() -> StateToken {
    let mut bytes = [0u8; 32];
    rand::rng().fill(&mut bytes[..]);
    StateToken::new(URL_SAFE_NO_PAD.encode(bytes))
}

/// The form in which a `state` is stored and looked up: hex SHA-256.
pub fn state_hash(state: &str) -> String {
    hex(&Sha256::digest(state.as_bytes()))
}

/// Lowercase hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_lowercase_two_digits_per_byte() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff, 0x10]), "000fa5ff10");
        assert_eq!(hex(&[]), "");
    }

    #[test]
    fn rfc7636_appendix_b_vector() {
        let verifier = PkceVerifier::new("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk");
        assert_eq!(
            s256_challenge(&verifier),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn generated_verifiers_are_valid_and_distinct() {
        let a = new_verifier();
        let b = new_verifier();
        assert!(is_valid_verifier(a.expose()), "{}", a.expose().len());
        assert_eq!(a.expose().len(), 86);
        assert_ne!(a.expose(), b.expose());
        assert!(!is_valid_verifier("short"));
        assert!(!is_valid_verifier(&"a".repeat(129)));
    }

    #[test]
    fn state_is_stored_as_hash_only() {
        let state = new_state();
        let hash = state_hash(state.expose());
        assert_eq!(hash.len(), 64);
        assert_ne!(hash, state.expose());
        assert_eq!(hash, state_hash(state.expose()));
    }
}
