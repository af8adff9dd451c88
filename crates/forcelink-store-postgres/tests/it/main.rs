//! The PostgreSQL store's one integration-test binary: the shared conformance suite on a
//! fresh database per check, plus what only PostgreSQL has (several instances migrating and
//! writing at once). Runs only when `FORCELINK_TEST_PG_URL` names a server; otherwise every
//! test says SKIPPED loudly and passes. Tests must not share databases or sleep.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod conformance;
mod database;
mod heartbeat;
mod postgres_only;
mod webhooks;
