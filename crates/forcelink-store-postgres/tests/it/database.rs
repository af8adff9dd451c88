//! A throw-away database per test on the server named by `FORCELINK_TEST_PG_URL`:
//! `forcelink_test_<uuid>`, dropped `WITH (FORCE)` afterwards. Must not touch other databases.

use std::io::Write;

use sqlx::{Connection, PgConnection};

const SKIP_MESSAGE: &str = "SKIPPED: PostgreSQL store tests need FORCELINK_TEST_PG_URL \
                            (e.g. postgres://postgres@127.0.0.1:5432/postgres)";

/// The server URL, or `None` after printing the skip notice.
#[allow(clippy::disallowed_methods)] // tests read their one setting from the environment
pub fn server_url() -> Option<String> {
    match std::env::var("FORCELINK_TEST_PG_URL") {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            // Straight to stderr, past the test harness's capture, so the skip is seen.
            let _ = writeln!(std::io::stderr(), "{SKIP_MESSAGE}");
            None
        }
    }
}

/// A database that exists until `drop_now` is awaited.
#[derive(Debug)]
pub struct TestDatabase {
    server_url: String,
    name: String,
    pub url: String,
}

impl TestDatabase {
    pub async fn create(server_url: &str) -> TestDatabase {
        let name = format!("forcelink_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(server_url).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut admin)
            .await
            .unwrap();
        admin.close().await.unwrap();
        let mut url = url::Url::parse(server_url).unwrap();
        url.set_path(&format!("/{name}"));
        TestDatabase {
            server_url: server_url.to_string(),
            name,
            url: url.to_string(),
        }
    }

    pub async fn drop_now(self) {
        let mut admin = PgConnection::connect(&self.server_url).await.unwrap();
        let statement = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
        sqlx::query(sqlx::AssertSqlSafe(statement))
            .execute(&mut admin)
            .await
            .unwrap();
        admin.close().await.unwrap();
    }
}

/// Runs `test` against a fresh database, dropping it afterwards even if `test` panics.
pub async fn with_database<F, Fut>(server_url: &str, test: F)
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let database = TestDatabase::create(server_url).await;
    let outcome = tokio::spawn(test(database.url.clone())).await;
    database.drop_now().await;
    if let Err(error) = outcome {
        std::panic::resume_unwind(error.into_panic());
    }
}
