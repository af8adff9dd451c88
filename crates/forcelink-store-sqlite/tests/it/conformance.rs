//! Runs every check of core's store conformance suite against a fresh SQLite file each.
//! Must not add SQLite-specific expectations; those belong in `sqlite_only`.

use std::sync::Arc;

use forcelink_core::store::conformance;
use forcelink_store_sqlite::SqliteStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store_passes_every_conformance_check() {
    conformance::run_checks(4, |check| async move {
        let directory = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&directory.path().join("forcelink.db"))
            .await
            .unwrap();
        (check.run)(Arc::new(store)).await;
    })
    .await;
}
