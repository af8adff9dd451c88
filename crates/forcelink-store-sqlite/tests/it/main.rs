//! The SQLite store's one integration-test binary: the shared conformance suite on a fresh
//! temp file per check, plus what only SQLite has (several pools on one file, WAL, the bytes
//! on disk). Tests here must not share files, sleep or depend on each other's order.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod conformance;
mod sqlite_only;
