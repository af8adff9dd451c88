//! SQLite store files for the tests that check a command leaves a store's schema alone: one
//! made by this build with its newest migration taken out of the record (so the store is one
//! migration behind), and the version a file has applied.

use std::path::Path;

use sqlx::Connection;

async fn connect(path: &Path) -> sqlx::SqliteConnection {
    sqlx::SqliteConnection::connect(&format!("sqlite:{}", path.display()))
        .await
        .unwrap()
}

/// The highest migration version the file at `path` records.
pub async fn applied_version(path: &Path) -> i64 {
    sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations")
        .fetch_one(&mut connect(path).await)
        .await
        .unwrap()
}

/// Makes a store at `path` with this build, then takes its newest migration out of the record;
/// returns the version it is left at.
pub async fn store_one_migration_behind(path: &Path) -> i64 {
    forcelink_store_sqlite::SqliteStore::open(path)
        .await
        .unwrap();
    let latest = applied_version(path).await;
    sqlx::query("DELETE FROM _sqlx_migrations WHERE version = ?1")
        .bind(latest)
        .execute(&mut connect(path).await)
        .await
        .unwrap();
    latest - 1
}
