//! Where a sealed value lives (`SealedRef`: its row and column) and the associated data that
//! binds it there, so a value copied to another row or column does not open; and the pages of
//! `Store::sealed_values`, which re-keying walks. No IO.

use crate::ids::ConnectionKey;
use crate::vault::Sealed;

/// Which secret column a sealed value lives in. Part of its associated data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SealedField {
    AccessToken,
    RefreshToken,
    PkceVerifier,
    /// A webhook endpoint's signing secret.
    WebhookSecret,
}

impl SealedField {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AccessToken => "access_token",
            Self::RefreshToken => "refresh_token",
            Self::PkceVerifier => "pkce_verifier",
            Self::WebhookSecret => "secret",
        }
    }
}

/// Which row a sealed value lives in.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SealedRow {
    Connection(ConnectionKey),
    /// A pending authorization, by its state hash.
    Pending(String),
    /// A webhook endpoint, by its id.
    WebhookEndpoint(String),
}

/// The address of one sealed value; its associated data is derived from it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SealedRef {
    pub row: SealedRow,
    pub field: SealedField,
}

impl SealedRef {
    pub fn connection(key: &ConnectionKey, field: SealedField) -> Self {
        Self {
            row: SealedRow::Connection(key.clone()),
            field,
        }
    }
    pub fn pending(state_hash: &str) -> Self {
        Self {
            row: SealedRow::Pending(state_hash.to_string()),
            field: SealedField::PkceVerifier,
        }
    }
    pub fn webhook_secret(endpoint_id: &str) -> Self {
        Self {
            row: SealedRow::WebhookEndpoint(endpoint_id.to_string()),
            field: SealedField::WebhookSecret,
        }
    }
    /// The associated data that binds a sealed value to this row and column.
    pub fn aad(&self) -> Vec<u8> {
        match &self.row {
            SealedRow::Connection(key) => {
                format!(
                    "connection/{}/{}/{}",
                    key.org_id,
                    key.context,
                    self.field.as_str()
                )
            }
            SealedRow::Pending(hash) => format!("pending/{hash}/{}", self.field.as_str()),
            SealedRow::WebhookEndpoint(id) => {
                format!("webhook_endpoint/{id}/{}", self.field.as_str())
            }
        }
        .into_bytes()
    }
}

/// One sealed value and where it lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedValue {
    pub reference: SealedRef,
    pub value: Sealed,
}

/// A page of sealed values and the cursor of the next page, if any.
#[derive(Debug, Clone)]
pub struct SealedPage {
    pub values: Vec<SealedValue>,
    pub next: Option<String>,
}
