//! forcelink's domain, use cases and ports. No IO: no sockets, files, databases or env.
//!
//! Adapters implement the ports (`Store`, `SalesforceOAuth`, `Clock`, `WebhookSender`); the
//! binary wires them.

pub mod access;
pub mod agents;
pub mod authorize;
pub mod broker;
pub mod cache;
pub mod clock;
pub mod connection;
pub mod disconnect;
mod expiry;
mod group_commit;
pub mod heartbeat;
pub mod ids;
pub mod lineage;
pub mod pkce;
pub mod refresh;
pub mod rekey;
mod rotation;
pub mod salesforce;
pub mod schedule;
pub mod secret;
pub mod store;
pub mod vault;
pub mod webhook;

pub use agents::{
    AgentDenied, AgentKey, AgentKeyError, AgentKeySpec, AgentKeys, AgentScope, Capability,
};
pub use authorize::{CallbackOutcome, Connected, StartRequest, Started};
pub use broker::{Broker, BrokerError, BrokerSettings};
pub use cache::IssuedToken;
pub use clock::{Clock, ManualClock, OffsetClock, SystemClock};
pub use connection::{
    Connection, ConnectionHealth, ConnectionState, Lease, RotationInFlight, SealedTokens,
};
pub use ids::{ConnectionContext, ConnectionKey, IdError, OrgId, UserId};
pub use rekey::{RekeyReport, RingHealth};
pub use salesforce::{
    ClientCredentials, CodeExchange, DeadGrantReason, Identity, LoginHost, RefreshGrant,
    SalesforceError, SalesforceOAuth, TokenResponse,
};
pub use secret::{
    AccessToken, AuthorizationCode, ClientSecret, PkceVerifier, RefreshToken, SecretBytes,
    StateToken,
};
pub use store::{
    AgentKeyStore, BeginWrite, CommitOutcome, CommitWrite, Event, EventFilter, GrantWrite,
    Incident, LeaseOutcome, NewEvent, PendingAuthorization, RefreshAttempt, RefreshWrite,
    RotationEnd, RotationWrite, RotationWritten, SavedGrant, SealedField, SealedPage, SealedRef,
    SealedRow, SealedValue, Store, StoreError, WebhookStore,
};
pub use vault::{KeyRing, Sealed, VaultError};
