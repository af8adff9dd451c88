//! sfsim: a faithful local simulator of Salesforce's OAuth 2.0 server (authorize, token, revoke,
//! introspect, identity) and a slice of its REST API, for tests and demos. Every host (production
//! login, sandbox login, each org's My Domain) is its own 127.0.0.1 listener. Its behaviour
//! follows `reference/salesforce-oauth.md`; it shares no code with forcelink and must never be
//! used as a real identity provider.

mod clock;
mod control;
mod control_json;
mod faults;
mod identity;
mod ids;
mod model;
mod oauth;
mod rest;
mod routes;
mod server;
mod sim;
mod state;

pub use faults::{Fault, FaultKind, FaultTarget};
pub use model::{
    App, AppSettings, AppSpec, Counters, DAY, Org, OrgSpec, RecordedRequest, RefreshTokenPolicy,
    SimError, User, UserSpec,
};
pub use oauth::response::sign as token_signature;
pub use sim::Sim;
