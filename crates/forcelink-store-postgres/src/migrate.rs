//! The PostgreSQL schema: embedded, numbered migrations and the "is the schema current" check.
//!
//! Migrations are append-only (`migrations/NNNN_name.sql`); never edit one that has shipped.
//! This module must not hold data queries.

use std::borrow::Cow;
use std::sync::LazyLock;

use forcelink_core::StoreError;
use forcelink_core::store::schema;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{PgPool, SqlSafeStr};

/// Built once: each `Migration::new` hashes its SQL, and `/readyz` asks for the latest version
/// on every probe.
static MIGRATOR: LazyLock<Migrator> = LazyLock::new(|| {
    Migrator::with_migrations(vec![
        Migration::new(
            1,
            Cow::Borrowed("init"),
            MigrationType::Simple,
            include_str!("../migrations/0001_init.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            2,
            Cow::Borrowed("rotation"),
            MigrationType::Simple,
            include_str!("../migrations/0002_rotation.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            3,
            Cow::Borrowed("heartbeat"),
            MigrationType::Simple,
            include_str!("../migrations/0003_heartbeat.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            4,
            Cow::Borrowed("lost_rotations"),
            MigrationType::Simple,
            include_str!("../migrations/0004_lost_rotations.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            5,
            Cow::Borrowed("agent_keys"),
            MigrationType::Simple,
            include_str!("../migrations/0005_agent_keys.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            6,
            Cow::Borrowed("webhooks"),
            MigrationType::Simple,
            include_str!("../migrations/0006_webhooks.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            7,
            Cow::Borrowed("lineage_index"),
            MigrationType::Simple,
            include_str!("../migrations/0007_lineage_index.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            8,
            Cow::Borrowed("webhook_backlog"),
            MigrationType::Simple,
            include_str!("../migrations/0008_webhook_backlog.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            9,
            Cow::Borrowed("webhook_retry"),
            MigrationType::Simple,
            include_str!("../migrations/0009_webhook_retry.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            10,
            Cow::Borrowed("webhook_retried_at"),
            MigrationType::Simple,
            include_str!("../migrations/0010_webhook_retried_at.sql").into_sql_str(),
            false,
        ),
    ])
});

fn latest_version() -> i64 {
    MIGRATOR
        .iter()
        .map(|migration| migration.version)
        .max()
        .unwrap_or(0)
}

/// Applies pending migrations under sqlx's advisory lock, so instances may start together.
/// The caller has refused a newer schema first (`refuse_newer_schema`).
pub(crate) async fn run(pool: &PgPool) -> Result<(), StoreError> {
    MIGRATOR
        .run(pool)
        .await
        .map_err(|error| StoreError::Migration(format!("postgres: {error}")))
}

/// Refuses a database that a newer build has migrated past what this one knows: those
/// migrations may have changed what this build reads and writes. (sqlx would refuse it too,
/// with a message about a missing migration that does not say what to do.)
pub(crate) async fn refuse_newer_schema(pool: &PgPool) -> Result<(), StoreError> {
    schema::refuse_newer("postgres", applied_version(pool).await?, latest_version())
}

/// The highest migration applied to the database, 0 when none is (no migrations table yet).
async fn applied_version(pool: &PgPool) -> Result<i64, StoreError> {
    let has_table: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
        .fetch_one(pool)
        .await
        .map_err(crate::rows::unavailable("migrations"))?;
    if !has_table {
        return Ok(0);
    }
    sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM _sqlx_migrations WHERE success")
        .fetch_one(pool)
        .await
        .map_err(crate::rows::unavailable("migrations"))
}

/// Reachable, and every migration this build knows has been applied.
pub(crate) async fn check_current(pool: &PgPool) -> Result<(), StoreError> {
    schema::require_current(applied_version(pool).await?, latest_version())
}
