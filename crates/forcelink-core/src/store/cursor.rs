//! The cursor of `Store::sealed_values`, shared by every adapter so pages mean the same on
//! each backend: `pending/<state hash>` or `connection/<org id>/<context>/<field>`, naming the
//! last value handed out. Pure text handling; no IO.

use crate::store::{SealedField, SealedRef, SealedRow, StoreError};

/// Where the last page of sealed values stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SealedCursor {
    Start,
    Pending(String),
    Connection {
        org_id: String,
        context: String,
        field: SealedField,
    },
}

impl SealedCursor {
    /// Reads a cursor this store issued; anything else is refused.
    pub fn parse(cursor: Option<&str>) -> Result<Self, StoreError> {
        let Some(text) = cursor else {
            return Ok(Self::Start);
        };
        if let Some(hash) = text.strip_prefix("pending/") {
            return Ok(Self::Pending(hash.to_string()));
        }
        let invalid =
            || StoreError::Corrupt("sealed_values cursor was not issued by this store".into());
        let rest = text.strip_prefix("connection/").ok_or_else(invalid)?;
        let mut parts = rest.splitn(3, '/');
        let (Some(org_id), Some(context), Some(field)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid());
        };
        let field = match field {
            "access_token" => SealedField::AccessToken,
            "refresh_token" => SealedField::RefreshToken,
            _ => return Err(invalid()),
        };
        Ok(Self::Connection {
            org_id: org_id.to_string(),
            context: context.to_string(),
            field,
        })
    }

    /// The cursor that resumes after `reference`.
    pub fn after(reference: &SealedRef) -> String {
        match &reference.row {
            SealedRow::Pending(hash) => format!("pending/{hash}"),
            // Not paged by `sealed_values` (see `WebhookStore`); named for completeness.
            SealedRow::WebhookEndpoint(id) => format!("webhook_endpoint/{id}"),
            SealedRow::Connection(key) => {
                format!(
                    "connection/{}/{}/{}",
                    key.org_id,
                    key.context,
                    reference.field.as_str()
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{ConnectionContext, ConnectionKey, OrgId};

    #[test]
    fn cursors_round_trip_and_foreign_ones_are_refused() {
        let key = ConnectionKey::new(
            OrgId::parse("00D000000000062").unwrap(),
            ConnectionContext::api(),
        );
        let text = SealedCursor::after(&SealedRef::connection(&key, SealedField::RefreshToken));
        assert_eq!(
            SealedCursor::parse(Some(&text)).unwrap(),
            SealedCursor::Connection {
                org_id: key.org_id.to_string(),
                context: "api".into(),
                field: SealedField::RefreshToken
            }
        );
        assert_eq!(
            SealedCursor::parse(Some("pending/ab")).unwrap(),
            SealedCursor::Pending("ab".into())
        );
        assert_eq!(SealedCursor::parse(None).unwrap(), SealedCursor::Start);
        for bad in ["nonsense", "connection/x", "connection/a/b/pkce_verifier"] {
            assert!(SealedCursor::parse(Some(bad)).is_err(), "{bad}");
        }
    }
}
