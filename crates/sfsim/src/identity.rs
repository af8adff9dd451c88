//! Identity endpoints (reference §1.3, §1.4): `/id/{org}/{user}`, `/services/oauth2/userinfo` and
//! `/.well-known/openid-configuration`. A bad token gets 403 `Bad_OAuth_Token` (plain text), as
//! Salesforce answers. Read-only: nothing here issues or revokes tokens.

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::faults::{FaultTarget, FiredFaults};
use crate::oauth::client::bearer_token;
use crate::oauth::token::identity_url;
use crate::oauth::{fault_status_response, json_response};
use crate::server::{AppState, Connection};
use crate::state::{AccessRecord, State as World};

pub(crate) async fn identity(
    State(app_state): State<AppState>,
    Extension(connection): Extension<Connection>,
    Path((org_id, user_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let sim = &app_state.sim;
    let token = bearer_token(&headers).unwrap_or_default();
    let (fired, document) = {
        let mut state = sim.state();
        let consumer_key = state
            .access_tokens
            .get(&token)
            .map(|a| a.consumer_key.clone());
        let fired = state.faults.fire(
            FaultTarget::Identity,
            Some(&org_id),
            consumer_key.as_deref(),
        );
        let document = state
            .live_access(&token, &sim.clock)
            .filter(|access| access.org_id == org_id && access.user_id == user_id)
            .cloned()
            .and_then(|access| identity_document(&state, &access));
        (fired, document)
    };
    respond(&connection, fired, document).await
}

pub(crate) async fn userinfo(
    State(app_state): State<AppState>,
    Extension(connection): Extension<Connection>,
    headers: HeaderMap,
) -> Response {
    let sim = &app_state.sim;
    let token = bearer_token(&headers).unwrap_or_default();
    let (fired, document) = {
        let mut state = sim.state();
        let owner = state
            .access_tokens
            .get(&token)
            .map(|a| (a.org_id.clone(), a.consumer_key.clone()));
        let fired = state.faults.fire(
            FaultTarget::Identity,
            owner.as_ref().map(|(org, _)| org.as_str()),
            owner.as_ref().map(|(_, key)| key.as_str()),
        );
        let document = state
            .live_access(&token, &sim.clock)
            .cloned()
            .and_then(|access| userinfo_document(&state, &access));
        (fired, document)
    };
    respond(&connection, fired, document).await
}

/// Applies the identity faults around an already computed answer.
async fn respond(connection: &Connection, fired: FiredFaults, document: Option<Value>) -> Response {
    if let Some(status) = fired.status {
        return fault_status_response(status);
    }
    if let Some(delay) = fired
        .delay_before
        .into_iter()
        .chain(fired.delay_after)
        .reduce(|a, b| a + b)
    {
        tokio::time::sleep(delay).await;
    }
    if fired.drop_after {
        return connection.drop_without_response().await;
    }
    match document {
        Some(document) => json_response(StatusCode::OK, &document),
        None => bad_oauth_token(),
    }
}

pub(crate) async fn discovery(State(app_state): State<AppState>) -> Response {
    let base = &app_state.host.base_url;
    let document = json!({
        "issuer": base,
        "authorization_endpoint": format!("{base}/services/oauth2/authorize"),
        "token_endpoint": format!("{base}/services/oauth2/token"),
        "revocation_endpoint": format!("{base}/services/oauth2/revoke"),
        "userinfo_endpoint": format!("{base}/services/oauth2/userinfo"),
        "jwks_uri": format!("{base}/id/keys"),
        "registration_endpoint": format!("{base}/services/oauth2/register"),
        "introspection_endpoint": format!("{base}/services/oauth2/introspect"),
        "scopes_supported": ["id", "api", "web", "full", "chatter_api", "visualforce",
            "refresh_token", "openid", "profile", "email", "address", "phone", "offline_access",
            "custom_permissions", "wave_api", "eclair_api"],
        "response_types_supported": ["code", "token", "token id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "display_values_supported": ["page", "popup", "touch"],
        "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic",
            "private_key_jwt"],
        "claims_supported": ["active", "address", "email", "email_verified", "family_name",
            "given_name", "is_app_installed", "language", "locale", "name", "nickname",
            "organization_id", "phone_number", "phone_number_verified", "photos", "picture",
            "preferred_username", "profile", "sub", "updated_at", "urls", "user_id", "user_type",
            "zoneinfo"],
    });
    json_response(StatusCode::OK, &document)
}

/// 403 with the plain-text body Salesforce sends for an unusable token.
pub(crate) fn bad_oauth_token() -> Response {
    let mut response = (StatusCode::FORBIDDEN, "Bad_OAuth_Token").into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain;charset=UTF-8"),
    );
    response
}

fn urls(instance_url: &str, org_id: &str, user_id: &str) -> Value {
    let data = format!("{instance_url}/services/data/v{{version}}");
    json!({
        "enterprise": format!("{instance_url}/services/Soap/c/{{version}}/{org_id}"),
        "metadata": format!("{instance_url}/services/Soap/m/{{version}}/{org_id}"),
        "partner": format!("{instance_url}/services/Soap/u/{{version}}/{org_id}"),
        "rest": format!("{data}/"),
        "sobjects": format!("{data}/sobjects/"),
        "search": format!("{data}/search/"),
        "query": format!("{data}/query/"),
        "recent": format!("{data}/recent/"),
        "tooling_soap": format!("{instance_url}/services/Soap/T/{{version}}/{org_id}"),
        "tooling_rest": format!("{data}/tooling/"),
        "profile": format!("{instance_url}/{user_id}"),
        "feeds": format!("{data}/chatter/feeds"),
        "groups": format!("{data}/chatter/groups"),
        "users": format!("{data}/chatter/users"),
        "feed_items": format!("{data}/chatter/feed-items"),
        "feed_elements": format!("{data}/chatter/feed-elements"),
        "custom_domain": instance_url,
    })
}

fn identity_document(state: &World, access: &AccessRecord) -> Option<Value> {
    let org = state.orgs.get(&access.org_id)?;
    let user = state.users.get(&access.user_id)?;
    let (first_name, last_name) = split_name(&user.display_name);
    Some(json!({
        "id": identity_url(&org.org.login_url, &access.org_id, &access.user_id),
        "asserted_user": true,
        "user_id": access.user_id,
        "organization_id": access.org_id,
        "username": user.user.username,
        "nick_name": user.user.username.split('@').next().unwrap_or_default(),
        "display_name": user.display_name,
        "email": user.email,
        "email_verified": true,
        "first_name": first_name,
        "last_name": last_name,
        "timezone": "America/Los_Angeles",
        "photos": {
            "picture": format!("{}/profilephoto/005/F", org.org.instance_url),
            "thumbnail": format!("{}/profilephoto/005/T", org.org.instance_url),
        },
        "addr_street": null, "addr_city": null, "addr_state": null, "addr_country": "US",
        "addr_zip": null, "mobile_phone": null, "mobile_phone_verified": false,
        "is_lightning_login_user": false,
        "status": {"created_date": null, "body": null},
        "urls": urls(&org.org.instance_url, &access.org_id, &access.user_id),
        "active": user.active,
        "user_type": "STANDARD",
        "language": "en_US",
        "locale": "en_US",
        "utcOffset": -28_800_000,
        "last_modified_date": "2026-01-01T00:00:00Z",
        "is_app_installed": true,
    }))
}

fn userinfo_document(state: &World, access: &AccessRecord) -> Option<Value> {
    let org = state.orgs.get(&access.org_id)?;
    let user = state.users.get(&access.user_id)?;
    let (given_name, family_name) = split_name(&user.display_name);
    Some(json!({
        "sub": identity_url(&org.org.login_url, &access.org_id, &access.user_id),
        "user_id": access.user_id,
        "organization_id": access.org_id,
        "preferred_username": user.user.username,
        "nickname": user.user.username.split('@').next().unwrap_or_default(),
        "name": user.display_name,
        "email": user.email,
        "email_verified": true,
        "given_name": given_name,
        "family_name": family_name,
        "zoneinfo": "America/Los_Angeles",
        "photos": {
            "picture": format!("{}/profilephoto/005/F", org.org.instance_url),
            "thumbnail": format!("{}/profilephoto/005/T", org.org.instance_url),
        },
        "profile": format!("{}/{}", org.org.instance_url, access.user_id),
        "picture": format!("{}/profilephoto/005/F", org.org.instance_url),
        "address": {"country": "US"},
        "is_salesforce_integration_user": false,
        "urls": urls(&org.org.instance_url, &access.org_id, &access.user_id),
        "active": user.active,
        "user_type": "STANDARD",
        "language": "en_US",
        "locale": "en_US",
        "utcOffset": -28_800_000,
        "updated_at": "2026-01-01T00:00:00Z",
        "is_app_installed": true,
    }))
}

fn split_name(display_name: &str) -> (String, String) {
    match display_name.rsplit_once(' ') {
        Some((first, last)) => (first.to_owned(), last.to_owned()),
        None => (String::new(), display_name.to_owned()),
    }
}
