//! sfsim's integration tests: one binary, real HTTP over 127.0.0.1 against a fresh sim per test.

// Helpers outside #[test] functions are test code too (clippy's allow-*-in-tests misses them).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod authorize;
mod control;
mod faults;
mod identity;
mod refresh;
mod rest;
mod revoke;
mod support;
