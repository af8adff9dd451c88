//! End-to-end tests of forcelink over real HTTP: forcelink and sfsim on 127.0.0.1:0, a fresh
//! database per test (SQLite; PostgreSQL too when FORCELINK_TEST_PG_URL is set).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod api;
mod cli;
mod connect;
mod crash;
mod doctor;
mod faults;
mod harness;
mod heartbeat;
mod instances;
mod keys;
mod peers;
mod process;
mod proxy;
mod refresh;
mod rotation;
mod schema;
mod tidy;
mod webhook_instances;
mod webhook_retries;
mod webhooks;
