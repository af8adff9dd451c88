//! `GET|POST /services/oauth2/revoke` (reference §4.3, §11.6): a refresh token revokes its whole
//! family, an access token only itself; unknown tokens get 400 `invalid_token`. No client
//! authentication, as on Salesforce. It must not touch other families.

use axum::Extension;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use super::{OAuthError, Params, fault_status_response};
use crate::faults::FaultTarget;
use crate::server::{AppState, Connection};

pub(crate) async fn handle(
    State(app_state): State<AppState>,
    Extension(connection): Extension<Connection>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> Response {
    let mut params = Params::parse(uri.query().unwrap_or("").as_bytes());
    if method == Method::POST {
        params.merge(Params::parse(&body));
    }
    let token = params.get("token").unwrap_or_default().to_owned();
    let sim = &app_state.sim;
    let fired = {
        let mut state = sim.state();
        let owner = owner_of(&state, &token);
        state.faults.fire(
            FaultTarget::Revoke,
            owner.as_ref().map(|(org, _)| org.as_str()),
            owner.as_ref().map(|(_, key)| key.as_str()),
        )
    };
    if let Some(status) = fired.status {
        return fault_status_response(status);
    }
    if let Some(delay) = fired.delay_before {
        tokio::time::sleep(delay).await;
    }
    let revoked = revoke(&app_state, &token);
    if let Some(delay) = fired.delay_after {
        tokio::time::sleep(delay).await;
    }
    if fired.drop_after {
        return connection.drop_without_response().await;
    }
    if revoked {
        StatusCode::OK.into_response()
    } else {
        OAuthError::new(StatusCode::BAD_REQUEST, "invalid_token", "invalid token").into_response()
    }
}

/// (org, consumer key) of a refresh or access token.
fn owner_of(state: &crate::state::State, token: &str) -> Option<(String, String)> {
    if let Some(entry) = state.refresh_tokens.get(token) {
        let grant = state.grants.get(&entry.grant_id)?;
        return Some((grant.org_id.clone(), grant.consumer_key.clone()));
    }
    let access = state.access_tokens.get(token)?;
    Some((access.org_id.clone(), access.consumer_key.clone()))
}

fn revoke(app_state: &AppState, token: &str) -> bool {
    let mut state = app_state.sim.state();
    let family = state.refresh_tokens.get(token).and_then(|entry| {
        let grant = state.grants.get(&entry.grant_id)?;
        let live = !entry.rotated_out && !grant.revoked;
        live.then(|| {
            (
                entry.grant_id,
                grant.org_id.clone(),
                grant.consumer_key.clone(),
            )
        })
    });
    if let Some((grant_id, org_id, consumer_key)) = family {
        state.revoke_grant(grant_id);
        state.count(Some(&org_id), Some(&consumer_key), |c| c.revocations += 1);
        return true;
    }
    let access = state
        .access_tokens
        .get_mut(token)
        .filter(|access| !access.revoked)
        .map(|access| {
            access.revoked = true;
            (access.org_id.clone(), access.consumer_key.clone())
        });
    match access {
        Some((org_id, consumer_key)) => {
            state.count(Some(&org_id), Some(&consumer_key), |c| c.revocations += 1);
            true
        }
        None => false,
    }
}
