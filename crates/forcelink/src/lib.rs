//! The forcelink binary's library: config, wiring, HTTP, CLI commands and the demo.
//!
//! Only this crate knows routes, the CLI, config files, the environment and which adapters are
//! wired in. `main.rs` only parses arguments and calls in here.

pub mod app;
pub mod bench;
pub mod cli;
pub mod config;
pub mod demo;
pub mod doctor;
pub mod hosts;
pub mod http;
pub mod telemetry;
pub mod tls;
pub mod webhooks;
