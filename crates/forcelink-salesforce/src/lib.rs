//! forcelink's Salesforce adapter: the `SalesforceOAuth` port over reqwest, with a transport
//! of its own for the token endpoint (`h1`), which every refresh goes through.
//!
//! It speaks Salesforce's wire format (form posts, `issued_at` in ms, no `expires_in`) and turns
//! every failure into core's `SalesforceError`. It knows no routes, config files or stores, and
//! never logs a token or a secret.

mod client;
mod h1;
mod wire;

pub use client::{ClientOptions, SalesforceClient};
