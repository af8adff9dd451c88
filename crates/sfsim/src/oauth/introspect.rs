//! `POST /services/oauth2/introspect` (reference §6.7): authenticated by the app's credentials
//! (body or Basic; a bad client gets 401 `invalid_client`), answers `{"active":false}` for dead or
//! foreign tokens unless the app may introspect all tokens. Read-only.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::client::{ClientCredentials, SecretRule};
use super::refresh::{policy_expired, policy_expiry_ms};
use super::token::identity_url;
use super::{INVALID_CLIENT_CREDENTIALS, OAuthError, Params, json_response};
use crate::server::AppState;
use crate::state::State as World;

pub(crate) async fn handle(
    State(app_state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params = Params::parse(&body);
    let credentials = ClientCredentials::from_request(&headers, &params);
    let sim = &app_state.sim;
    let state = sim.state();
    let authenticated = credentials.app(&state).and_then(|app| {
        let rule = if app.settings.consumer_secret_optional {
            SecretRule::ValidateIfSent
        } else {
            SecretRule::Required
        };
        credentials.check_secret(&app, rule).map(|()| app)
    });
    let app = match authenticated {
        Ok(app) => app,
        Err(_) => {
            return OAuthError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                INVALID_CLIENT_CREDENTIALS,
            )
            .into_response();
        }
    };
    let token = params.get("token").unwrap_or_default();
    let now_ms = sim.clock.now_ms();
    let answer = describe(&state, token, now_ms, sim)
        .filter(|(consumer_key, _)| {
            app.settings.introspect_all_tokens || *consumer_key == app.consumer_key
        })
        .map(|(_, body)| body)
        .unwrap_or_else(|| json!({"active": false}));
    json_response(StatusCode::OK, &answer)
}

/// (owning consumer key, active description) of a live token.
fn describe(
    state: &World,
    token: &str,
    now_ms: i64,
    sim: &crate::server::Inner,
) -> Option<(String, serde_json::Value)> {
    if let Some(access) = state.live_access(token, &sim.clock) {
        let body = active_body(
            state,
            &access.consumer_key,
            &access.org_id,
            &access.user_id,
            &access.scopes,
            "access_token",
            access.issued_ms,
            Some(access.expires_ms),
        )?;
        return Some((access.consumer_key.clone(), body));
    }
    let entry = state.refresh_tokens.get(token)?;
    let grant = state.grants.get(&entry.grant_id)?;
    let app = state.apps.get(&grant.consumer_key)?;
    let dead = entry.rotated_out
        || grant.revoked
        || policy_expired(&app.settings, grant, now_ms)
        || !state
            .users
            .get(&grant.user_id)
            .is_some_and(|user| user.active)
        || !state.orgs.get(&grant.org_id).is_some_and(|org| org.active);
    if dead {
        return None;
    }
    let body = active_body(
        state,
        &grant.consumer_key,
        &grant.org_id,
        &grant.user_id,
        &grant.scopes,
        "refresh_token",
        grant.created_ms,
        policy_expiry_ms(&app.settings, grant),
    )?;
    Some((grant.consumer_key.clone(), body))
}

#[allow(clippy::too_many_arguments)]
fn active_body(
    state: &World,
    consumer_key: &str,
    org_id: &str,
    user_id: &str,
    scopes: &[String],
    token_type: &str,
    issued_ms: i64,
    expires_ms: Option<i64>,
) -> Option<serde_json::Value> {
    let org = state.orgs.get(org_id)?;
    let user = state.users.get(user_id)?;
    let mut body = json!({
        "active": true,
        "scope": scopes.join(" "),
        "client_id": consumer_key,
        "username": user.user.username,
        "sub": identity_url(&org.org.login_url, org_id, user_id),
        "token_type": token_type,
        "iat": issued_ms / 1000,
        "nbf": issued_ms / 1000,
    });
    if let (Some(expires_ms), Some(object)) = (expires_ms, body.as_object_mut()) {
        object.insert("exp".to_owned(), json!(expires_ms / 1000));
    }
    Some(body)
}
