//! Webhooks: the event kinds forcelink sends, the `WebhookSender` port (an HTTP POST, done
//! by the binary), endpoint management (`endpoints`), the signing scheme (`signature`) and the
//! delivery worker (`delivery`).
//!
//! Events stay in the events table (the source of truth, `/v1/events`); deliveries are derived
//! from it through the store's durable outbox, so a recorded event reaches every endpoint that
//! wants it at least once, across crashes and restarts. No IO here: sending goes through the
//! port, storage through `WebhookStore`, time through the `Clock`.

pub mod delivery;
pub mod endpoints;
pub mod signature;

use async_trait::async_trait;

use crate::store::StoreError;

pub use delivery::{WebhookSettings, WebhookTickReport, retry_delay};
pub use endpoints::{ConfigEndpoint, CreatedEndpoint, NewEndpoint};
pub use signature::{InvalidSecret, WebhookSecret};

/// Every event kind an endpoint can receive.
pub const EVENT_KINDS: [&str; 7] = [
    "connection.created",
    "connection.needs_reauth",
    "connection.refresh_failed",
    "connection.ip_blocked",
    "connection.at_risk",
    "connection.revoked",
    "connection.reconnected",
];

/// One webhook request, signed and ready to send.
#[derive(Debug, Clone)]
pub struct WebhookRequest {
    pub url: String,
    /// `webhook-id`, `webhook-timestamp`, `webhook-signature`, `content-type`.
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

/// How a send ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// The receiver answered with this status.
    Answered(u16),
    /// No answer: timed out, refused, unreachable. The text never holds a secret.
    NoAnswer(String),
}

/// Sends one webhook request over HTTP (no redirects followed, a bounded time).
#[async_trait]
pub trait WebhookSender: Send + Sync + std::fmt::Debug + 'static {
    async fn send(&self, request: &WebhookRequest) -> SendOutcome;
}

/// Why an endpoint operation was refused, named after what the caller must fix.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("{0}")]
    InvalidUrl(String),
    #[error("unknown event kind {0:?}; known kinds: {kinds}", kinds = EVENT_KINDS.join(", "))]
    UnknownEventKind(String),
    #[error("list at least one event kind, or leave the list out for every kind")]
    NoEventKinds,
    #[error(transparent)]
    InvalidSecret(#[from] InvalidSecret),
    #[error("no webhook endpoint {0:?}")]
    NotFound(String),
    #[error("endpoint {0:?} comes from the config file: remove it there")]
    FromConfig(String),
    #[error("no webhook delivery {0:?}")]
    DeliveryNotFound(String),
    #[error("delivery {0:?} is delivered: there is nothing to retry")]
    AlreadyDelivered(String),
    #[error(
        "delivery {0:?} is pending and due now or being sent: there is nothing to bring forward"
    )]
    AlreadyDue(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}
