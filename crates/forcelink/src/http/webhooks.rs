//! The webhook admin API behind the admin key: endpoints (create, list, delete) and the
//! delivery log.
//!
//! An endpoint's secret appears in exactly one response: the one that created it through the
//! API (a config endpoint's never). Listings and the delivery log carry no secret and no body.
//! Bad input gets 400 and a stable code, and stores nothing.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use forcelink_core::BrokerError;
use forcelink_core::store::{
    DeliveryAttempt, DeliveryFilter, DeliveryState, Retried, WebhookDelivery, WebhookEndpoint,
};
use forcelink_core::webhook::{EVENT_KINDS, NewEndpoint, WebhookError, WebhookSecret, endpoints};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::http::AppState;
use crate::http::auth::Admin;
use crate::http::error::ApiError;
use crate::http::extract::{Body, Path, Query};

impl From<WebhookError> for ApiError {
    fn from(error: WebhookError) -> Self {
        let message = error.to_string();
        match error {
            WebhookError::InvalidUrl(_) => ApiError::bad_request("invalid_url", message),
            WebhookError::UnknownEventKind(_) | WebhookError::NoEventKinds => {
                ApiError::bad_request("invalid_event_kind", message)
            }
            WebhookError::InvalidSecret(_) => ApiError::bad_request("invalid_secret", message),
            WebhookError::NotFound(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "endpoint_not_found", message)
            }
            WebhookError::FromConfig(_) => {
                ApiError::new(StatusCode::CONFLICT, "config_endpoint", message)
            }
            WebhookError::DeliveryNotFound(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "delivery_not_found", message)
            }
            WebhookError::AlreadyDelivered(_) => {
                ApiError::new(StatusCode::CONFLICT, "delivery_delivered", message)
            }
            WebhookError::AlreadyDue(_) => {
                ApiError::new(StatusCode::CONFLICT, "delivery_due", message)
            }
            WebhookError::Store(error) => BrokerError::Store(error).into(),
        }
    }
}

/// An endpoint as the API shows it: no secret.
#[derive(Debug, Serialize)]
pub struct EndpointView {
    pub id: String,
    pub url: String,
    pub events: Vec<String>,
    /// `config` (the file) or `api`.
    pub source: &'static str,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Events up to this id have been queued for it (or skipped).
    pub queued_through_event_id: i64,
}

impl From<&WebhookEndpoint> for EndpointView {
    fn from(endpoint: &WebhookEndpoint) -> Self {
        Self {
            id: endpoint.id.clone(),
            url: endpoint.url.clone(),
            events: endpoint.event_kinds.clone(),
            source: endpoint.source.as_str(),
            created_at: endpoint.created_at,
            updated_at: endpoint.updated_at,
            queued_through_event_id: endpoint.cursor,
        }
    }
}

/// The body of `POST /v1/webhooks/endpoints`. No Debug: it may hold a secret.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateEndpoint {
    url: String,
    events: Option<Vec<String>>,
    secret: Option<String>,
}

pub async fn create_endpoint(
    _: Admin,
    State(state): State<AppState>,
    Body(body): Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let request: CreateEndpoint = serde_json::from_slice(&body).map_err(|error| {
        ApiError::bad_request(
            "invalid_body",
            format!(
                "body must be JSON like {{\"url\": \"https://…\", \"events\": [\"connection.created\"]}} \
                 (optional \"secret\": \"whsec_…\"): {}",
                // serde's message can quote the offending value; keep only its position.
                error.classify_message()
            ),
        )
    })?;
    let secret = request
        .secret
        .as_deref()
        .map(WebhookSecret::parse)
        .transpose()
        .map_err(WebhookError::from)?;
    let created = state
        .broker
        .create_webhook_endpoint(NewEndpoint {
            url: request.url,
            event_kinds: request.events,
            secret,
        })
        .await?;
    let mut view = json!(EndpointView::from(&created.endpoint));
    if let Some(fields) = view.as_object_mut() {
        fields.insert("secret".into(), json!(created.secret.expose()));
    }
    Ok((StatusCode::CREATED, Json(view)))
}

/// A short, value-free description of a JSON error.
trait ClassifyMessage {
    fn classify_message(&self) -> String;
}

impl ClassifyMessage for serde_json::Error {
    fn classify_message(&self) -> String {
        let what = match self.classify() {
            serde_json::error::Category::Io => "unreadable",
            serde_json::error::Category::Syntax => "not valid JSON",
            serde_json::error::Category::Data => "a field is missing, unknown or of the wrong type",
            serde_json::error::Category::Eof => "incomplete",
        };
        format!("{what} at line {} column {}", self.line(), self.column())
    }
}

pub async fn list_endpoints(
    _: Admin,
    State(state): State<AppState>,
) -> Result<Json<Value>, ApiError> {
    let endpoints = state
        .broker
        .store()
        .webhook_endpoints()
        .await
        .map_err(BrokerError::from)?;
    let views: Vec<EndpointView> = endpoints.iter().map(EndpointView::from).collect();
    Ok(Json(
        json!({ "endpoints": views, "event_kinds": EVENT_KINDS }),
    ))
}

pub async fn delete_endpoint(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let deleted = state.broker.delete_webhook_endpoint(&id).await?;
    Ok(Json(json!({ "deleted": EndpointView::from(&deleted) })))
}

#[derive(Debug, Deserialize)]
pub struct DeliveriesQuery {
    endpoint_id: Option<String>,
    event: Option<String>,
    event_id: Option<i64>,
    state: Option<String>,
    limit: Option<u32>,
}

/// A delivery as the log shows it: no body, no secret.
#[derive(Debug, Serialize)]
pub struct DeliveryView {
    /// The `webhook-id` header of every attempt.
    pub id: String,
    pub endpoint_id: String,
    pub event_id: i64,
    pub event: String,
    pub state: &'static str,
    pub attempts: u32,
    /// When an operator last retried it by hand (null if never), and the attempts made before
    /// that retry: `max_attempts` counts from there.
    pub retried_at: Option<DateTime<Utc>>,
    pub attempts_before_retry: u32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_status_code: Option<u16>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub attempt_log: Vec<AttemptView>,
}

#[derive(Debug, Serialize)]
pub struct AttemptView {
    pub number: u32,
    pub at: DateTime<Utc>,
    pub status_code: Option<u16>,
    pub error: Option<String>,
    pub latency_ms: i64,
}

impl From<&DeliveryAttempt> for AttemptView {
    fn from(attempt: &DeliveryAttempt) -> Self {
        Self {
            number: attempt.number,
            at: attempt.at,
            status_code: attempt.status_code,
            error: attempt.error.clone(),
            latency_ms: attempt.latency_ms,
        }
    }
}

impl From<&WebhookDelivery> for DeliveryView {
    fn from(delivery: &WebhookDelivery) -> Self {
        Self {
            id: delivery.id.clone(),
            endpoint_id: delivery.endpoint_id.clone(),
            event_id: delivery.event_id,
            event: delivery.event_kind.clone(),
            state: delivery.state.as_str(),
            attempts: delivery.attempts,
            retried_at: delivery.retried_at,
            attempts_before_retry: delivery.attempts_before_retry,
            next_attempt_at: delivery.next_attempt_at,
            last_status_code: delivery.last_status_code,
            last_error: delivery.last_error.clone(),
            created_at: delivery.created_at,
            updated_at: delivery.updated_at,
            attempt_log: delivery.attempt_log.iter().map(AttemptView::from).collect(),
        }
    }
}

pub async fn deliveries(
    _: Admin,
    State(state): State<AppState>,
    Query(query): Query<DeliveriesQuery>,
) -> Result<Json<Value>, ApiError> {
    query
        .event
        .as_deref()
        .map(endpoints::check_kind)
        .transpose()?;
    let delivery_state = match query.state.as_deref() {
        Some(text) => Some(DeliveryState::parse(text).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_delivery_state",
                "state must be pending, delivered or failed",
            )
        })?),
        None => None,
    };
    let filter = DeliveryFilter {
        endpoint_id: query.endpoint_id,
        event_kind: query.event,
        event_id: query.event_id,
        state: delivery_state,
        limit: query.limit.unwrap_or(100).clamp(1, 1000),
    };
    let found = state
        .broker
        .store()
        .webhook_deliveries(&filter)
        .await
        .map_err(BrokerError::from)?;
    let views: Vec<DeliveryView> = found.iter().map(DeliveryView::from).collect();
    Ok(Json(json!({ "deliveries": views })))
}

/// What a retry answers: the failed deliveries sent again with a fresh budget, and the
/// pending ones brought forward from a later retry, by id.
fn retried_view(retried: &Retried) -> Value {
    json!({ "retried": retried.failed, "brought_forward": retried.brought_forward })
}

/// `POST /v1/webhooks/deliveries/{id}/retry`: the delivery is sent again at once: with a fresh
/// attempt budget if it had failed for good, or brought forward if it was waiting for a later
/// retry.
pub async fn retry_delivery(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let retried = state.broker.retry_webhook_delivery(&id).await?;
    Ok(Json(retried_view(&retried)))
}

/// A retry's filters. Unknown parameters are refused: a mistyped filter must not widen a
/// retry to the whole endpoint.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryQuery {
    /// Only deliveries of this event kind.
    event: Option<String>,
    /// Only deliveries queued at or after this time (RFC 3339).
    since: Option<DateTime<Utc>>,
}

/// `POST /v1/webhooks/endpoints/{id}/retry[?event=KIND][&since=TIME]`: every failed delivery
/// of the endpoint is sent again at once, each with a fresh attempt budget, and every one
/// waiting for a later retry is brought forward to now.
pub async fn retry_endpoint(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<RetryQuery>,
) -> Result<Json<Value>, ApiError> {
    let retried = state
        .broker
        .retry_endpoint_deliveries(&id, query.event.as_deref(), query.since)
        .await?;
    Ok(Json(retried_view(&retried)))
}
