//! The schema-version checks every adapter makes on opening and in `ping`, worded once: a
//! store migrated past what this build knows is refused, and one behind it is not current.
//! Pure comparisons; each adapter reads its own applied version.

use crate::store::StoreError;

/// Refuses a store that a newer build has migrated past `known`, this build's latest
/// migration: those migrations may have changed what this build reads and writes. `backend`
/// prefixes the message (`sqlite`, `postgres`).
pub fn refuse_newer(backend: &str, applied: i64, known: i64) -> Result<(), StoreError> {
    if applied > known {
        return Err(StoreError::Migration(format!(
            "{backend}: the database schema is at version {applied}, newer than this build of \
             forcelink knows ({known}): a newer forcelink has migrated it; run that version or \
             a later one"
        )));
    }
    Ok(())
}

/// Refuses a store whose schema is behind `needed`, this build's latest migration.
pub fn require_current(applied: i64, needed: i64) -> Result<(), StoreError> {
    if applied < needed {
        return Err(StoreError::Migration(format!(
            "schema is at version {applied}, behind this build's {needed}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_newer_schema_is_refused_and_only_an_older_one_is_behind() {
        assert!(refuse_newer("sqlite", 11, 11).is_ok());
        assert!(refuse_newer("sqlite", 10, 11).is_ok());
        let newer = refuse_newer("sqlite", 12, 11).unwrap_err().to_string();
        assert!(
            newer.contains("sqlite: the database schema is at version 12"),
            "{newer}"
        );
        assert!(require_current(11, 11).is_ok());
        assert!(require_current(12, 11).is_ok());
        let behind = require_current(10, 11).unwrap_err().to_string();
        assert!(
            behind.contains("schema is at version 10, behind this build's 11"),
            "{behind}"
        );
    }
}
