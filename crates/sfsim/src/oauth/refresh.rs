//! `grant_type=refresh_token` (reference §3.2, §5, §6, §10): the check order (client, known token,
//! reuse of a rotated-out token, policy expiry and the 30-day idle cap, inactive user/org, IP
//! allowlist, in-flight), then rotation and a new access token. The in-flight slot is held across
//! `DelayBeforeProcessing`, so a second request on the same token is refused meanwhile.
//! It must not issue anything for a request that failed a check.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::client::{ClientCredentials, SecretRule};
use super::response::Issued;
use super::token::{finish, identity_url, ip_allowed, ip_block_error, other_user_id};
use super::{
    ALREADY_PROCESSING, EXPIRED_TOKEN, INACTIVE_ORGANIZATION, INACTIVE_USER, OAuthError, Params,
    fault_status_response,
};
use crate::clock::duration_ms;
use crate::faults::{FaultTarget, FiredFaults};
use crate::model::{App, AppSettings, DAY, RefreshTokenPolicy};

use crate::server::{AppState, Connection, Inner};
use crate::state::{Grant, RefreshEntry, State as World};

/// The Spring '26 idle cap.
const IDLE_CAP_MS: i64 = 30 * (DAY.as_secs() as i64) * 1000;

/// Removes the token from the in-flight set when the request ends, however it ends.
#[derive(Debug)]
struct InFlight {
    sim: Arc<Inner>,
    token: String,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.sim.state().in_flight.remove(&self.token);
    }
}

/// Who a reserved refresh is for.
#[derive(Debug)]
struct Reserved {
    app: App,
    grant_id: u64,
}

pub(crate) async fn refresh(
    app_state: &AppState,
    connection: &Connection,
    params: &Params,
    credentials: &ClientCredentials,
) -> Response {
    let sim = &app_state.sim;
    let token = params.get("refresh_token").unwrap_or_default().to_owned();
    let fired = {
        let mut state = sim.state();
        let org_id = state
            .refresh_tokens
            .get(&token)
            .and_then(|entry| state.grants.get(&entry.grant_id))
            .map(|grant| grant.org_id.clone());
        state.faults.fire(
            FaultTarget::TokenRefresh,
            org_id.as_deref(),
            credentials.client_id.as_deref(),
        )
    };
    if let Some(status) = fired.status {
        return fault_status_response(status);
    }
    let hold_generation = sim.hold_generation();
    let reserved = {
        let mut state = sim.state();
        let now_ms = sim.clock.now_ms();
        let result = check(&mut state, now_ms, connection, credentials, &token);
        if result.is_err() {
            let org_id = org_of(&state, &token);
            state.count(org_id.as_deref(), credentials.client_id.as_deref(), |c| {
                c.refresh_failures += 1;
            });
        }
        result
    };
    let reserved = match reserved {
        Ok(reserved) => reserved,
        Err(error) => return error.into_response(),
    };
    let _in_flight = InFlight {
        sim: Arc::clone(sim),
        token: token.clone(),
    };
    if let Some(delay) = fired.delay_before {
        tokio::time::sleep(delay).await;
    }
    if let Some((delay, status)) = fired.delay_then_status {
        tokio::time::sleep(delay).await;
        return fault_status_response(status);
    }
    if let Some(status) = fired.hold_then_status {
        sim.wait_release(hold_generation).await;
        return fault_status_response(status);
    }
    let committed = {
        let mut state = sim.state();
        let now_ms = sim.clock.now_ms();
        commit(&mut state, now_ms, &token, &reserved, &fired)
    };
    match committed {
        Ok(body) => {
            if fired.rotate_then_hold {
                sim.wait_release(hold_generation).await;
            }
            finish(connection, &fired, body).await
        }
        Err(error) => error.into_response(),
    }
}

fn org_of(state: &World, token: &str) -> Option<String> {
    let entry = state.refresh_tokens.get(token)?;
    state
        .grants
        .get(&entry.grant_id)
        .map(|grant| grant.org_id.clone())
}

/// Every check, in Salesforce's order; on success the token is marked in flight.
fn check(
    state: &mut World,
    now_ms: i64,
    connection: &Connection,
    credentials: &ClientCredentials,
    token: &str,
) -> Result<Reserved, OAuthError> {
    let app = credentials.app(state)?;
    let rule = if app.settings.secret_required_for_refresh {
        SecretRule::Required
    } else {
        SecretRule::ValidateIfSent
    };
    credentials.check_secret(&app, rule)?;
    let expired = || OAuthError::invalid_grant(EXPIRED_TOKEN);
    let RefreshEntry {
        grant_id,
        rotated_out,
    } = state
        .refresh_tokens
        .get(token)
        .cloned()
        .ok_or_else(expired)?;
    let grant = state.grants.get(&grant_id).cloned().ok_or_else(expired)?;
    if grant.consumer_key != app.consumer_key {
        return Err(expired());
    }
    if rotated_out {
        if !grant.revoked {
            state.revoke_grant(grant_id);
            state.count(Some(&grant.org_id), Some(&app.consumer_key), |c| {
                c.reuse_detections += 1;
            });
        }
        return Err(expired());
    }
    if grant.revoked || policy_expired(&app.settings, &grant, now_ms) {
        return Err(expired());
    }
    if !state
        .users
        .get(&grant.user_id)
        .is_some_and(|user| user.active)
    {
        return Err(OAuthError::invalid_grant(INACTIVE_USER));
    }
    if !state.orgs.get(&grant.org_id).is_some_and(|org| org.active) {
        return Err(OAuthError::invalid_grant(INACTIVE_ORGANIZATION));
    }
    if !ip_allowed(&app.settings, connection.peer.ip()) {
        state.count(Some(&grant.org_id), Some(&app.consumer_key), |c| {
            c.ip_blocks += 1
        });
        return Err(ip_block_error(&app.settings));
    }
    if state.in_flight.contains(token) {
        state.count(Some(&grant.org_id), Some(&app.consumer_key), |c| {
            c.concurrent_rejections += 1;
        });
        if app.settings.concurrent_request_revokes_family {
            state.revoke_grant(grant_id);
        }
        return Err(OAuthError::new(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            ALREADY_PROCESSING,
        ));
    }
    state.in_flight.insert(token.to_owned());
    Ok(Reserved { app, grant_id })
}

/// Whether the refresh-token policy (plus the idle cap) has expired this family.
pub(crate) fn policy_expired(settings: &AppSettings, grant: &Grant, now_ms: i64) -> bool {
    policy_expiry_ms(settings, grant).is_some_and(|expiry| expiry < now_ms)
}

/// The instant after which the family can no longer be refreshed (None = never).
pub(crate) fn policy_expiry_ms(settings: &AppSettings, grant: &Grant) -> Option<i64> {
    let idle_cap = settings
        .idle_ttl_limit
        .then(|| grant.last_used_ms.saturating_add(IDLE_CAP_MS));
    let policy = match settings.refresh_token_policy {
        RefreshTokenPolicy::Infinite => None,
        RefreshTokenPolicy::Zero => Some(i64::MIN),
        RefreshTokenPolicy::SpecificInactivity(window) => {
            Some(grant.last_used_ms.saturating_add(duration_ms(window)))
        }
        RefreshTokenPolicy::SpecificLifetime(lifetime) => {
            Some(grant.created_ms.saturating_add(duration_ms(lifetime)))
        }
    };
    match (policy, idle_cap) {
        (Some(policy), Some(cap)) => Some(policy.min(cap)),
        (policy, cap) => policy.or(cap),
    }
}

/// Rotation (when on) and a new access token; re-checks that nothing revoked the family meanwhile.
fn commit(
    state: &mut World,
    now_ms: i64,
    token: &str,
    reserved: &Reserved,
    fired: &FiredFaults,
) -> Result<serde_json::Value, OAuthError> {
    let expired = || OAuthError::invalid_grant(EXPIRED_TOKEN);
    let app = &reserved.app;
    let grant = state
        .grants
        .get(&reserved.grant_id)
        .filter(|grant| !grant.revoked && grant.current_refresh.as_deref() == Some(token))
        .cloned()
        .ok_or_else(expired)?;
    let new_refresh = if app.settings.rotation {
        let new_token = crate::ids::refresh_token();
        if let Some(old) = state.refresh_tokens.get_mut(token) {
            old.rotated_out = true;
        }
        state.refresh_tokens.insert(
            new_token.clone(),
            RefreshEntry {
                grant_id: reserved.grant_id,
                rotated_out: false,
            },
        );
        Some(new_token)
    } else {
        None
    };
    if let Some(live) = state.grants.get_mut(&reserved.grant_id) {
        live.last_used_ms = now_ms;
        if let Some(new_token) = &new_refresh {
            live.current_refresh = Some(new_token.clone());
        }
    }
    let access_token = state
        .issue_access_token(
            reserved.grant_id,
            now_ms,
            duration_ms(app.settings.session_timeout),
        )
        .ok_or_else(expired)?;
    state.in_flight.remove(token);
    state.count(Some(&grant.org_id), Some(&app.consumer_key), |c| {
        c.refresh_grants += 1
    });
    let org = state
        .orgs
        .get(&grant.org_id)
        .map(|org| org.org.clone())
        .ok_or_else(expired)?;
    let tamper_user_id = fired
        .tamper_identity
        .then(|| other_user_id(state, &org.org_id, &grant.user_id));
    let body = Issued {
        consumer_secret: &app.consumer_secret,
        access_token,
        refresh_token: new_refresh,
        scopes: &grant.scopes,
        instance_url: &org.instance_url,
        identity_url: identity_url(&org.login_url, &org.org_id, &grant.user_id),
        issued_at_ms: now_ms,
        tamper_user_id,
    }
    .into_response();
    serde_json::to_value(body).map_err(|_| expired())
}
