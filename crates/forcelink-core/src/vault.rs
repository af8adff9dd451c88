//! The vault: seals secrets with AES-256-GCM under a ring of named keys, and opens them.
//!
//! A `Sealed` value is the only form in which a token reaches a store. Its layout is
//! `0x01 | key-id length | key id | 96-bit random nonce | ciphertext+tag`, so every value names
//! the key that opens it and a ring holding old and new keys opens both during a rotation.
//! The associated data binds a value to its row and column, so a sealed token copied into
//! another row does not open. This module never logs, formats or stores key material.

use std::collections::BTreeMap;
use std::fmt;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key};
use base64::Engine;
use rand::RngExt;

use crate::secret::SecretBytes;

const FORMAT_VERSION: u8 = 1;
const NONCE_LEN: usize = 12;
const AAD_PREFIX: &[u8] = b"forcelink/sealed/v1/";

/// Why sealing, opening or building a key ring failed. Never carries secret material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VaultError {
    #[error("key id {0:?} must be 1 to 32 characters of a-z, 0-9, '-' or '_'")]
    BadKeyId(String),
    #[error(
        "key {0:?} must be 32 bytes encoded as base64 (generate one with `forcelink keys generate`)"
    )]
    BadKey(String),
    #[error("the key ring is empty: configure at least one key")]
    EmptyRing,
    #[error("the active key {0:?} is not in the key ring")]
    UnknownActiveKey(String),
    #[error("sealed value names key {0:?}, which is not in the key ring")]
    UnknownKey(String),
    #[error("sealed value is malformed")]
    Malformed,
    #[error("sealed value failed authentication (wrong key, tampered, or moved to another row)")]
    Authentication,
}

/// A sealed secret as stored: opaque bytes that name their key.
#[derive(Clone, PartialEq, Eq)]
pub struct Sealed(Vec<u8>);

impl Sealed {
    /// Wraps bytes read from a store. They are checked when opened.
    pub fn from_stored(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
    /// The id of the key this value was sealed under, if the layout is sound.
    pub fn key_id(&self) -> Option<&str> {
        let (&version, rest) = self.0.split_first()?;
        if version != FORMAT_VERSION {
            return None;
        }
        let (&len, rest) = rest.split_first()?;
        let id = rest.get(..usize::from(len))?;
        std::str::from_utf8(id).ok()
    }
}

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sealed(key={:?}, {} bytes)", self.key_id(), self.0.len())
    }
}

/// A named 256-bit key. Debug prints only the id.
struct RingKey {
    cipher: Aes256Gcm,
}

/// The set of keys that can open sealed values, and the one that seals new ones.
pub struct KeyRing {
    active: String,
    keys: BTreeMap<String, RingKey>,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("active", &self.active)
            .field("key_ids", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

fn valid_key_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 32
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

impl KeyRing {
    /// Builds a ring from `(id, base64 key)` pairs and the id of the key that seals.
    pub fn new<'a>(
        keys: impl IntoIterator<Item = (&'a str, &'a SecretBytes)>,
        active: &str,
    ) -> Result<Self, VaultError> {
        let mut ring = BTreeMap::new();
        for (id, encoded) in keys {
            if !valid_key_id(id) {
                return Err(VaultError::BadKeyId(id.to_string()));
            }
            let text = std::str::from_utf8(encoded.expose())
                .map_err(|_| VaultError::BadKey(id.to_string()))?;
            let raw = SecretBytes::new(
                base64::engine::general_purpose::STANDARD
                    .decode(text.trim())
                    .map_err(|_| VaultError::BadKey(id.to_string()))?,
            );
            let bytes: [u8; 32] = raw
                .expose()
                .try_into()
                .map_err(|_| VaultError::BadKey(id.to_string()))?;
            let cipher = Aes256Gcm::new(&Key::<Aes256Gcm>::from(bytes));
            ring.insert(id.to_string(), RingKey { cipher });
        }
        if ring.is_empty() {
            return Err(VaultError::EmptyRing);
        }
        if !ring.contains_key(active) {
            return Err(VaultError::UnknownActiveKey(active.to_string()));
        }
        Ok(Self {
            active: active.to_string(),
            keys: ring,
        })
    }

    /// A fresh random key, base64-encoded, for `forcelink keys generate`.
    pub fn generate_key() -> SecretBytes {
        let mut bytes = [0u8; 32];
        rand::rng().fill(&mut bytes[..]);
        let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
        SecretBytes::new(encoded.into_bytes())
    }

    pub fn active_key_id(&self) -> &str {
        &self.active
    }
    pub fn key_ids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    /// Seals `plaintext` under the active key with a fresh nonce, bound to `aad`.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Sealed {
        self.seal_with(&self.active, plaintext, aad)
            .unwrap_or_else(|_| Sealed(Vec::new()))
    }

    fn seal_with(&self, key_id: &str, plaintext: &[u8], aad: &[u8]) -> Result<Sealed, VaultError> {
        let key = self
            .keys
            .get(key_id)
            .ok_or_else(|| VaultError::UnknownKey(key_id.into()))?;
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill(&mut nonce[..]);
        let full_aad = [AAD_PREFIX, aad].concat();
        let ciphertext = key
            .cipher
            .encrypt(
                &nonce.into(),
                Payload {
                    msg: plaintext,
                    aad: &full_aad,
                },
            )
            .map_err(|_| VaultError::Malformed)?;
        let id = key_id.as_bytes();
        let mut out = Vec::with_capacity(2 + id.len() + NONCE_LEN + ciphertext.len());
        out.push(FORMAT_VERSION);
        out.push(u8::try_from(id.len()).map_err(|_| VaultError::BadKeyId(key_id.into()))?);
        out.extend_from_slice(id);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        Ok(Sealed(out))
    }

    /// Opens a sealed value with whichever key of the ring it names.
    pub fn open(&self, sealed: &Sealed, aad: &[u8]) -> Result<SecretBytes, VaultError> {
        let key_id = sealed.key_id().ok_or(VaultError::Malformed)?;
        let key = self
            .keys
            .get(key_id)
            .ok_or_else(|| VaultError::UnknownKey(key_id.into()))?;
        let body = sealed
            .0
            .get(2 + key_id.len()..)
            .ok_or(VaultError::Malformed)?;
        if body.len() < NONCE_LEN + 16 {
            return Err(VaultError::Malformed);
        }
        let (nonce, ciphertext) = body.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| VaultError::Malformed)?;
        let full_aad = [AAD_PREFIX, aad].concat();
        key.cipher
            .decrypt(
                &nonce.into(),
                Payload {
                    msg: ciphertext,
                    aad: &full_aad,
                },
            )
            .map(SecretBytes::new)
            .map_err(|_| VaultError::Authentication)
    }

    /// Opens a value and seals it again under the active key (for key rotation).
    pub fn reseal(&self, sealed: &Sealed, aad: &[u8]) -> Result<Sealed, VaultError> {
        let plain = self.open(sealed, aad)?;
        self.seal_with(&self.active, plain.expose(), aad)
    }

    /// Whether a value is already sealed under the active key.
    pub fn is_current(&self, sealed: &Sealed) -> bool {
        sealed.key_id() == Some(self.active.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(ids: &[&str], active: &str) -> (KeyRing, Vec<SecretBytes>) {
        let keys: Vec<SecretBytes> = ids.iter().map(|_| KeyRing::generate_key()).collect();
        let ring = KeyRing::new(ids.iter().copied().zip(keys.iter()), active).unwrap();
        (ring, keys)
    }

    #[test]
    fn sealed_value_opens_only_with_its_row_binding() {
        let (ring, _) = ring(&["k1"], "k1");
        let sealed = ring.seal(b"refresh-token-value", b"connection:1:refresh");
        assert_eq!(
            ring.open(&sealed, b"connection:1:refresh")
                .unwrap()
                .expose(),
            b"refresh-token-value"
        );
        assert!(matches!(
            ring.open(&sealed, b"connection:2:refresh"),
            Err(VaultError::Authentication)
        ));
    }

    #[test]
    fn every_seal_uses_a_fresh_nonce_and_hides_the_plaintext() {
        let (ring, _) = ring(&["k1"], "k1");
        let a = ring.seal(b"same", b"x");
        let b = ring.seal(b"same", b"x");
        assert_ne!(a, b);
        assert!(!a.as_bytes().windows(4).any(|w| w == b"same"));
        assert_eq!(a.key_id(), Some("k1"));
    }

    #[test]
    fn tampered_value_fails_authentication() {
        let (ring, _) = ring(&["k1"], "k1");
        let sealed = ring.seal(b"token", b"x");
        let mut bytes = sealed.as_bytes().to_vec();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert!(matches!(
            ring.open(&Sealed::from_stored(bytes), b"x"),
            Err(VaultError::Authentication)
        ));
    }

    #[test]
    fn rotation_reseals_under_the_new_key_and_old_values_still_open() {
        let old_key = KeyRing::generate_key();
        let new_key = KeyRing::generate_key();
        let old_ring = KeyRing::new([("old", &old_key)], "old").unwrap();
        let sealed = old_ring.seal(b"token", b"x");
        let both = KeyRing::new([("old", &old_key), ("new", &new_key)], "new").unwrap();
        assert!(!both.is_current(&sealed));
        assert_eq!(both.open(&sealed, b"x").unwrap().expose(), b"token");
        let resealed = both.reseal(&sealed, b"x").unwrap();
        assert_eq!(resealed.key_id(), Some("new"));
        let only_new = KeyRing::new([("new", &new_key)], "new").unwrap();
        assert_eq!(only_new.open(&resealed, b"x").unwrap().expose(), b"token");
        assert!(matches!(
            only_new.open(&sealed, b"x"),
            Err(VaultError::UnknownKey(_))
        ));
    }

    #[test]
    fn ring_refuses_bad_configuration() {
        let key = KeyRing::generate_key();
        assert!(matches!(
            KeyRing::new([("k1", &key)], "k2"),
            Err(VaultError::UnknownActiveKey(_))
        ));
        assert!(matches!(
            KeyRing::new([("K1", &key)], "K1"),
            Err(VaultError::BadKeyId(_))
        ));
        let short = SecretBytes::new(b"c2hvcnQ=".to_vec());
        assert!(matches!(
            KeyRing::new([("k1", &short)], "k1"),
            Err(VaultError::BadKey(_))
        ));
        assert!(matches!(
            KeyRing::new(std::iter::empty(), "k1"),
            Err(VaultError::EmptyRing)
        ));
    }
}
