//! The HTTP face of forcelink: router and shared state. Handlers live in the submodules; this
//! module only assembles them.

pub mod api;
pub mod auth;
pub mod connect;
pub mod error;
pub mod extract;
pub mod health;
pub mod metrics;
mod page;
pub mod proxy;
pub mod webhooks;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{any, delete, get, post};
use forcelink_core::{AgentKeys, Broker};
use tower_http::trace::TraceLayer;

use crate::hosts::LoginHostPolicy;

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    pub broker: Arc<Broker>,
    pub hosts: Arc<LoginHostPolicy>,
    pub admin_key_hash: [u8; 32],
    /// Shared, not copied: the state is cloned for every request.
    pub public_url: Arc<str>,
    pub agents: Arc<AgentKeys>,
    pub proxy: Arc<proxy::Upstream>,
}

pub fn router(state: AppState) -> Router {
    // The proxy streams bodies under its own cap (`proxy.max_body_bytes`), so it sits outside
    // the limit the other routes read bodies under (`extract::Body`).
    let proxy = Router::new()
        .route("/v1/proxy/{org_id}/{*rest}", any(proxy::by_org))
        .route("/services/{*rest}", any(proxy::at_root))
        .layer(DefaultBodyLimit::disable());
    Router::new()
        .route("/v1/connect/salesforce/start", get(connect::start))
        .route("/v1/connect/salesforce/callback", get(connect::callback))
        .route("/v1/connections", get(api::list))
        .route(
            "/v1/connections/{org_id}",
            get(api::show).delete(api::revoke),
        )
        .route("/v1/connections/{org_id}/token", post(api::token))
        .route("/v1/connections/{org_id}/attempts", get(api::attempts))
        .route("/v1/events", get(api::events))
        .route("/v1/agents", get(api::agents_list).post(api::agents_create))
        .route("/v1/agents/{name_or_id}", delete(api::agents_revoke))
        .route(
            "/v1/webhooks/endpoints",
            get(webhooks::list_endpoints).post(webhooks::create_endpoint),
        )
        .route(
            "/v1/webhooks/endpoints/{id}",
            axum::routing::delete(webhooks::delete_endpoint),
        )
        .route(
            "/v1/webhooks/endpoints/{id}/retry",
            axum::routing::post(webhooks::retry_endpoint),
        )
        .route("/v1/webhooks/deliveries", get(webhooks::deliveries))
        .route(
            "/v1/webhooks/deliveries/{id}/retry",
            axum::routing::post(webhooks::retry_delivery),
        )
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics::render))
        .layer(DefaultBodyLimit::max(extract::BODY_LIMIT))
        .merge(proxy)
        // After every route: JSON errors, not axum's empty 404 / 405.
        .fallback(error::no_route)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}
