//! Secret newtypes: tokens, client secrets, PKCE verifiers and admin keys.
//!
//! They redact themselves in `Debug`, have no `Display`, `Serialize` or `PartialEq`, and wipe
//! their memory on drop. The only way to the bytes is an explicit `expose()` call, which makes
//! every use easy to find in review. This module must never log or format a secret.

use std::fmt;

use zeroize::{Zeroize, ZeroizeOnDrop};

macro_rules! secret_string {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Zeroize, ZeroizeOnDrop)]
        pub struct $name(String);

        impl $name {
            pub fn new(value: impl Into<String>) -> Self {
                Self(value.into())
            }
            /// The secret itself. Call sites are the audit trail of where it goes.
            pub fn expose(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($name), "([redacted])"))
            }
        }
    };
}

secret_string!(
    /// A Salesforce access token (session id). Cloneable: many callers share one.
    AccessToken
);
secret_string!(
    /// A Salesforce refresh token. Not `Clone`: each one is used at most once under rotation.
    RefreshToken
);
secret_string!(
    /// The consumer secret of the partner's Connected App / External Client App.
    ClientSecret
);
secret_string!(
    /// A PKCE code verifier. Not `Clone`: it is consumed by the one code exchange it belongs to.
    PkceVerifier
);
secret_string!(
    /// An authorization `state` value as handed to the browser.
    StateToken
);
secret_string!(
    /// An authorization code from the callback.
    AuthorizationCode
);

impl Clone for AccessToken {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}
impl Clone for ClientSecret {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

/// Bytes that are secret (decrypted token material, raw keys).
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct SecretBytes(Vec<u8>);

impl SecretBytes {
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
    /// The bytes as UTF-8 text, if they are.
    pub fn into_string(mut self) -> Option<String> {
        let bytes = std::mem::take(&mut self.0);
        String::from_utf8(bytes).ok()
    }
}
impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretBytes([redacted; {}])", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_contains_the_secret() {
        let token = RefreshToken::new("5Aep861-very-secret");
        let access = AccessToken::new("00Dxx!AQ-secret");
        let rendered = format!(
            "{token:?} {access:?} {:?}",
            SecretBytes::new(b"abc".to_vec())
        );
        assert!(!rendered.contains("secret"), "{rendered}");
        assert!(rendered.contains("[redacted]"));
    }
}
