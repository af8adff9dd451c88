//! `POST /services/oauth2/token`: grant dispatch and the authorization-code exchange (§3.1):
//! client and secret rules, single-use codes bound to client/redirect/challenge, PKCE S256,
//! the refresh-token IP allowlist, grant creation with the per-user cap, and faults.
//! The refresh grant lives in `refresh.rs`; this file must not touch refresh-token families.

use std::net::IpAddr;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use super::client::{ClientCredentials, SecretRule};
use super::response::Issued;
use super::{
    AUTHENTICATION_FAILURE, EXPIRED_CODE, GRANT_TYPE_NOT_SUPPORTED, INACTIVE_ORGANIZATION,
    INACTIVE_USER, INVALID_VERIFIER, OAuthError, Params, fault_status_response,
    grants_refresh_token, json_response,
};
use crate::clock::duration_ms;
use crate::faults::{FaultTarget, FiredFaults};
use crate::model::AppSettings;
use crate::server::{AppState, Connection};
use crate::state::{Grant, State as World};

pub(crate) async fn handle(
    State(app_state): State<AppState>,
    Extension(connection): Extension<Connection>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params = Params::parse(&body);
    let credentials = ClientCredentials::from_request(&headers, &params);
    match params.get("grant_type") {
        Some("authorization_code") => {
            exchange_code(&app_state, &connection, &params, &credentials).await
        }
        Some("refresh_token") => {
            super::refresh::refresh(&app_state, &connection, &params, &credentials).await
        }
        _ => OAuthError::new(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            GRANT_TYPE_NOT_SUPPORTED,
        )
        .into_response(),
    }
}

async fn exchange_code(
    app_state: &AppState,
    connection: &Connection,
    params: &Params,
    credentials: &ClientCredentials,
) -> Response {
    let sim = &app_state.sim;
    let code = params.get("code").unwrap_or_default().to_owned();
    let fired = {
        let mut state = sim.state();
        let org_id = state.codes.get(&code).map(|record| record.org_id.clone());
        state.faults.fire(
            FaultTarget::TokenAuthorizationCode,
            org_id.as_deref(),
            credentials.client_id.as_deref(),
        )
    };
    if let Some(status) = fired.status {
        return fault_status_response(status);
    }
    if let Some(delay) = fired.delay_before {
        tokio::time::sleep(delay).await;
    }
    let result = {
        let mut state = sim.state();
        let now_ms = sim.clock.now_ms();
        exchange_locked(
            app_state,
            &mut state,
            now_ms,
            connection,
            params,
            credentials,
            &code,
            &fired,
        )
    };
    match result {
        Ok(body) => finish(connection, &fired, body).await,
        Err(error) => error.into_response(),
    }
}

#[allow(clippy::too_many_arguments)]
fn exchange_locked(
    app_state: &AppState,
    state: &mut World,
    now_ms: i64,
    connection: &Connection,
    params: &Params,
    credentials: &ClientCredentials,
    code: &str,
    fired: &FiredFaults,
) -> Result<serde_json::Value, OAuthError> {
    let app = credentials.app(state)?;
    let secret_rule = match (
        app.settings.consumer_secret_optional,
        app.settings.public_client_secret_rejected,
    ) {
        (false, _) => SecretRule::Required,
        (true, false) => SecretRule::ValidateIfSent,
        (true, true) => SecretRule::RejectIfSent,
    };
    credentials.check_secret(&app, secret_rule)?;
    let record = state
        .codes
        .get(code)
        .filter(|record| {
            !record.used && record.expires_ms > now_ms && record.consumer_key == app.consumer_key
        })
        .cloned()
        .ok_or_else(|| OAuthError::invalid_grant(EXPIRED_CODE))?;
    if params.get("redirect_uri") != Some(record.redirect_uri.as_str()) {
        return Err(OAuthError::new(
            StatusCode::BAD_REQUEST,
            "redirect_uri_mismatch",
            "redirect_uri must match configuration",
        ));
    }
    check_verifier(record.challenge.as_ref(), params.get("code_verifier"))?;
    let (org, org_active) = state
        .orgs
        .get(&record.org_id)
        .map(|org| (org.org.clone(), org.active))
        .ok_or_else(|| OAuthError::invalid_grant(AUTHENTICATION_FAILURE))?;
    if !app_state.host.serves(&org) {
        return Err(OAuthError::invalid_grant(AUTHENTICATION_FAILURE));
    }
    let user_active = state
        .users
        .get(&record.user_id)
        .is_some_and(|user| user.active);
    if !user_active {
        return Err(OAuthError::invalid_grant(INACTIVE_USER));
    }
    if !org_active {
        return Err(OAuthError::invalid_grant(INACTIVE_ORGANIZATION));
    }
    if !ip_allowed(&app.settings, connection.peer.ip()) {
        state.count(Some(&org.org_id), Some(&app.consumer_key), |c| {
            c.ip_blocks += 1
        });
        return Err(ip_block_error(&app.settings));
    }
    if let Some(used) = state.codes.get_mut(code) {
        used.used = true;
    }
    let refresh_token = grants_refresh_token(&record.scopes).then(crate::ids::refresh_token);
    let grant_id = state.create_grant(
        Grant {
            org_id: org.org_id.clone(),
            user_id: record.user_id.clone(),
            consumer_key: app.consumer_key.clone(),
            scopes: record.scopes.clone(),
            current_refresh: refresh_token.clone(),
            created_ms: now_ms,
            last_used_ms: now_ms,
            revoked: false,
        },
        app.settings.max_grants_per_user,
    );
    let access_token = state
        .issue_access_token(grant_id, now_ms, duration_ms(app.settings.session_timeout))
        .ok_or_else(|| OAuthError::invalid_grant(AUTHENTICATION_FAILURE))?;
    state.count(Some(&org.org_id), Some(&app.consumer_key), |c| {
        c.code_exchanges += 1
    });
    let tamper_user_id = fired
        .tamper_identity
        .then(|| other_user_id(state, &org.org_id, &record.user_id));
    let body = Issued {
        consumer_secret: &app.consumer_secret,
        access_token,
        refresh_token,
        scopes: &record.scopes,
        instance_url: &org.instance_url,
        identity_url: identity_url(&org.login_url, &org.org_id, &record.user_id),
        issued_at_ms: now_ms,
        tamper_user_id,
    }
    .into_response();
    serde_json::to_value(body).map_err(|_| OAuthError::invalid_grant(AUTHENTICATION_FAILURE))
}

/// PKCE: a stored challenge needs a matching verifier; a verifier without a challenge is refused.
fn check_verifier(
    challenge: Option<&(String, String)>,
    verifier: Option<&str>,
) -> Result<(), OAuthError> {
    let matches = match (challenge, verifier) {
        (None, None) => true,
        (Some((challenge, method)), Some(verifier)) => {
            if method == "plain" {
                verifier == challenge
            } else {
                URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())) == *challenge
            }
        }
        _ => false,
    };
    if matches {
        Ok(())
    } else {
        Err(OAuthError::invalid_grant(INVALID_VERIFIER))
    }
}

/// `{login host}/id/{org}/{user}` (§1.4): always the login host, never the My Domain.
pub(crate) fn identity_url(login_url: &str, org_id: &str, user_id: &str) -> String {
    format!("{login_url}/id/{org_id}/{user_id}")
}

pub(crate) fn ip_allowed(settings: &AppSettings, peer: IpAddr) -> bool {
    match &settings.refresh_ip_allowlist {
        None => true,
        Some(ranges) => ranges
            .iter()
            .any(|(start, end)| in_range(peer, *start, *end)),
    }
}

fn in_range(address: IpAddr, start: IpAddr, end: IpAddr) -> bool {
    match (address, start, end) {
        (IpAddr::V4(a), IpAddr::V4(s), IpAddr::V4(e)) => s <= a && a <= e,
        (IpAddr::V6(a), IpAddr::V6(s), IpAddr::V6(e)) => s <= a && a <= e,
        (IpAddr::V4(a), IpAddr::V6(_), IpAddr::V6(_)) => {
            in_range(IpAddr::V6(a.to_ipv6_mapped()), start, end)
        }
        (IpAddr::V6(a), IpAddr::V4(_), IpAddr::V4(_)) => a
            .to_ipv4_mapped()
            .is_some_and(|v4| in_range(IpAddr::V4(v4), start, end)),
        _ => false,
    }
}

pub(crate) fn ip_block_error(settings: &AppSettings) -> OAuthError {
    OAuthError::new(
        StatusCode::BAD_REQUEST,
        &settings.ip_block_error.0,
        &settings.ip_block_error.1,
    )
}

/// Another user of the org for `TamperIdentity`, or a made-up `005…` id.
pub(crate) fn other_user_id(state: &World, org_id: &str, user_id: &str) -> String {
    let mut others: Vec<&String> = state
        .users
        .values()
        .filter(|user| user.user.org_id == org_id && user.user.user_id != user_id)
        .map(|user| &user.user.user_id)
        .collect();
    others.sort();
    others
        .first()
        .map(|id| (*id).clone())
        .unwrap_or_else(|| crate::ids::record_id("005"))
}

/// Applies the after-processing faults, then answers.
pub(crate) async fn finish(
    connection: &Connection,
    fired: &FiredFaults,
    body: serde_json::Value,
) -> Response {
    if let Some(delay) = fired.delay_after {
        tokio::time::sleep(delay).await;
    }
    if fired.drop_after {
        return connection.drop_without_response().await;
    }
    json_response(StatusCode::OK, &body)
}
