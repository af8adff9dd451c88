//! The connect flow's two public endpoints: the canonical start URL and the OAuth callback.
//!
//! Input is validated here into core's types; bad input gets a clear error and stores nothing.
//! The callback answers with a page that tells the admin plainly what happened.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use forcelink_core::{
    AuthorizationCode, BrokerError, CallbackOutcome, ConnectionContext, OrgId, StartRequest,
};
use serde::Deserialize;

use crate::http::AppState;
use crate::http::error::ApiError;
use crate::http::extract::Query;
use crate::http::page;

#[derive(Debug, Deserialize)]
pub struct StartQuery {
    ctx: Option<String>,
    orgid: Option<String>,
    env: Option<String>,
    domain: Option<String>,
    login_hint: Option<String>,
}

/// `GET /v1/connect/salesforce/start?ctx=api&orgid=…` → 302 to Salesforce.
pub async fn start(
    State(state): State<AppState>,
    Query(query): Query<StartQuery>,
) -> Result<Response, ApiError> {
    let context = match query.ctx.as_deref().filter(|c| !c.is_empty()) {
        Some(ctx) => ConnectionContext::parse(ctx)
            .map_err(|e| ApiError::bad_request("invalid_context", e.to_string()))?,
        None => ConnectionContext::api(),
    };
    let expected_org = match query
        .orgid
        .as_deref()
        .map(str::trim)
        .filter(|o| !o.is_empty())
    {
        Some(org) => Some(
            OrgId::parse(org)
                .map_err(|e| ApiError::bad_request("invalid_org_id", e.to_string()))?,
        ),
        None => None,
    };
    let login_host = state
        .hosts
        .choose(query.env.as_deref(), query.domain.as_deref())
        .map_err(|(code, message)| ApiError::bad_request(code, message))?;
    let login_hint = query.login_hint.filter(|h| !h.is_empty() && h.len() <= 256);
    let broker = &state.broker;
    if let Err(error) = broker
        .store()
        .purge_expired_pending(broker.clock().now())
        .await
    {
        tracing::warn!(%error, "purging expired authorizations failed");
    }
    let started = broker
        .start_authorization(StartRequest {
            expected_org,
            context,
            login_host,
            login_hint,
        })
        .await?;
    Ok((
        StatusCode::FOUND,
        [
            (header::LOCATION, started.authorize_url),
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// `GET /v1/connect/salesforce/callback?code=…&state=…` (or `error=…`).
pub async fn callback(
    State(state): State<AppState>,
    Query(query): Query<CallbackQuery>,
) -> Response {
    let Some(flow_state) = query.state.filter(|s| !s.is_empty()) else {
        return page::failure(
            StatusCode::BAD_REQUEST,
            "This link is incomplete",
            "The sign-in answer from Salesforce carried no state. Start the connection again from your app.",
        );
    };
    let outcome = match (query.code, query.error) {
        (_, Some(error)) => CallbackOutcome::Error {
            error,
            description: query.error_description.unwrap_or_default(),
        },
        (Some(code), None) => CallbackOutcome::Code(AuthorizationCode::new(code)),
        (None, None) => {
            return page::failure(
                StatusCode::BAD_REQUEST,
                "This link is incomplete",
                "Salesforce sent neither a code nor an error. Start the connection again.",
            );
        }
    };
    match state
        .broker
        .complete_authorization(&flow_state, outcome)
        .await
    {
        Ok(connected) => page::success(&connected),
        Err(error) => failure_page(&error),
    }
}

fn failure_page(error: &BrokerError) -> Response {
    let status = ApiError::from_ref(error);
    let (title, text) = match error {
        BrokerError::InvalidState => ("This sign-in link has expired or was already used", "Links are valid for 10 minutes and work once. Start the connection again.".to_string()),
        BrokerError::AuthorizationDenied { error, description } => ("Salesforce did not authorize the connection", format!("Salesforce answered {error}: {description}. Nothing was stored. If you denied access by mistake, start again.")),
        BrokerError::OrgMismatch { expected, actual } => ("You signed in to a different org", format!("This link was made for org {expected}, but you signed in to org {actual}. Nothing was stored and the new grant was revoked. Sign in with a user of org {expected}.")),
        BrokerError::SignatureInvalid => ("Salesforce's answer failed verification", "The token response signature did not verify, so nothing was stored. Try again; if it persists, contact support.".to_string()),
        BrokerError::MissingRefreshToken => ("The app lacks the refresh_token scope", "Salesforce granted no refresh token. The app's OAuth scopes must include refresh_token. Nothing was stored.".to_string()),
        _ => ("The connection could not be completed", format!("{error}. Nothing was stored; please try again.")),
    };
    page::failure(status, title, &text)
}

impl ApiError {
    /// The status a broker error maps to, without consuming it.
    fn from_ref(error: &BrokerError) -> StatusCode {
        match error {
            BrokerError::InvalidState
            | BrokerError::AuthorizationDenied { .. }
            | BrokerError::MissingRefreshToken => StatusCode::BAD_REQUEST,
            BrokerError::OrgMismatch { .. } => StatusCode::CONFLICT,
            BrokerError::Unavailable { .. }
            | BrokerError::OutcomeUnknown { .. }
            | BrokerError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_GATEWAY,
        }
    }
}

/// Keeps the HTML helpers in one place.
pub fn html(status: StatusCode, body: String) -> Response {
    (status, [(header::CACHE_CONTROL, "no-store")], Html(body)).into_response()
}
