//! Runs every check of core's store conformance suite against a fresh PostgreSQL database
//! each. Must not add PostgreSQL-specific expectations; those belong in `postgres_only`.

use std::sync::Arc;

use forcelink_core::store::conformance;
use forcelink_store_postgres::PostgresStore;

use crate::database::{server_url, with_database};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_passes_every_conformance_check() {
    let Some(server) = server_url() else { return };
    conformance::run_checks(3, move |check| {
        let server = server.clone();
        async move {
            with_database(&server, move |url| async move {
                let store = PostgresStore::connect(&url, 5).await.unwrap();
                (check.run)(Arc::new(store.clone())).await;
                store.close().await;
            })
            .await;
        }
    })
    .await;
}
