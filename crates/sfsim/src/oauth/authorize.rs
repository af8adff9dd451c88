//! `GET|POST /services/oauth2/authorize` (reference §2): validates the client and redirect URI
//! (error page, never a redirect, when they are wrong), PKCE, and "logs in" the user named by
//! `login_hint` or the default approver, then redirects with a single-use code or an error.
//! There is no browser and no consent screen; it must not issue tokens.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{Html, IntoResponse, Response};

use super::{
    END_USER_DENIED, INACTIVE_ORGANIZATION, INACTIVE_USER, MISSING_CODE_CHALLENGE, Params,
    UNSUPPORTED_CHALLENGE_METHOD, split_scopes,
};
use crate::clock::duration_ms;
use crate::server::AppState;
use crate::state::CodeRecord;

/// Scopes granted when the request names none (the app is configured with these).
pub(crate) const DEFAULT_SCOPES: &str = "api id refresh_token";

pub(crate) async fn handle(
    State(app_state): State<AppState>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> Response {
    let mut params = Params::parse(uri.query().unwrap_or("").as_bytes());
    if method == Method::POST {
        params.merge(Params::parse(&body));
    }
    match authorize(&app_state, &params) {
        Ok(redirect) | Err(Outcome::Redirect(redirect)) => found(&redirect),
        Err(Outcome::Page(title, detail)) => error_page(&title, &detail),
    }
}

#[derive(Debug)]
enum Outcome {
    Redirect(String),
    Page(String, String),
}

fn page(title: &str, detail: &str) -> Outcome {
    Outcome::Page(title.to_owned(), detail.to_owned())
}

fn authorize(app_state: &AppState, params: &Params) -> Result<String, Outcome> {
    let sim = &app_state.sim;
    let now_ms = sim.clock.now_ms();
    let mut state = sim.state();
    let app = params
        .get("client_id")
        .and_then(|client_id| state.apps.get(client_id))
        .cloned()
        .ok_or_else(|| page("invalid_client_id", "client identifier invalid"))?;
    let redirect_uri = params
        .get("redirect_uri")
        .filter(|uri| app.settings.callback_urls.iter().any(|url| url == uri))
        .ok_or_else(|| {
            page(
                "redirect_uri_mismatch",
                "redirect_uri must match configuration",
            )
        })?
        .to_owned();
    let client_state = params.get("state").map(str::to_owned);
    let error_redirect = |error: &str, description: &str| {
        Outcome::Redirect(redirect_with(
            &redirect_uri,
            &[("error", error), ("error_description", description)],
            client_state.as_deref(),
        ))
    };
    if params.get("response_type") != Some("code") {
        return Err(error_redirect(
            "unsupported_response_type",
            "response type not supported",
        ));
    }
    let challenge = match params.get("code_challenge") {
        None if app.settings.pkce_required => {
            return Err(error_redirect("invalid_request", MISSING_CODE_CHALLENGE));
        }
        None => None,
        Some(challenge) => {
            let method = match params.get("code_challenge_method") {
                Some(method) => method,
                None if app.settings.missing_challenge_method_is_plain => "plain",
                None => "S256",
            };
            let accepted = method == "S256" || (method == "plain" && app.settings.allow_plain_pkce);
            if !accepted {
                return Err(error_redirect(
                    "invalid_request",
                    UNSUPPORTED_CHALLENGE_METHOD,
                ));
            }
            Some((challenge.to_owned(), method.to_owned()))
        }
    };
    let username = params
        .get("login_hint")
        .map(str::to_owned)
        .or_else(|| state.default_approver.clone())
        .ok_or_else(|| page("login required", "no login_hint and no default approver"))?;
    let user = state
        .user_by_username(&username)
        .cloned()
        .ok_or_else(|| page("authentication failure", "unknown username"))?;
    let org = state
        .orgs
        .get(&user.user.org_id)
        .ok_or_else(|| page("authentication failure", "unknown org"))?;
    if !app_state.host.serves(&org.org) {
        return Err(page(
            "authentication failure",
            "this user cannot log in on this host",
        ));
    }
    let org_active = org.active;
    if state.next_authorize_denied {
        state.next_authorize_denied = false;
        return Err(error_redirect("access_denied", END_USER_DENIED));
    }
    if !user.active {
        return Err(error_redirect("access_denied", INACTIVE_USER));
    }
    if !org_active {
        return Err(error_redirect("access_denied", INACTIVE_ORGANIZATION));
    }
    let scopes = split_scopes(params.get("scope").unwrap_or(DEFAULT_SCOPES));
    let code = crate::ids::authorization_code();
    state.codes.insert(
        code.clone(),
        CodeRecord {
            consumer_key: app.consumer_key.clone(),
            redirect_uri: redirect_uri.clone(),
            challenge,
            user_id: user.user.user_id.clone(),
            org_id: user.user.org_id.clone(),
            scopes,
            expires_ms: now_ms.saturating_add(duration_ms(app.settings.code_ttl)),
            used: false,
        },
    );
    Ok(redirect_with(
        &redirect_uri,
        &[("code", &code)],
        client_state.as_deref(),
    ))
}

/// The redirect URI with parameters appended (URL-encoded) and `state` echoed last.
fn redirect_with(redirect_uri: &str, pairs: &[(&str, &str)], state: Option<&str>) -> String {
    match url::Url::parse(redirect_uri) {
        Ok(mut url) => {
            {
                let mut query = url.query_pairs_mut();
                for (key, value) in pairs {
                    query.append_pair(key, value);
                }
                if let Some(state) = state {
                    query.append_pair("state", state);
                }
            }
            url.to_string()
        }
        Err(_) => redirect_uri.to_owned(),
    }
}

fn found(location: &str) -> Response {
    let mut response = StatusCode::FOUND.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

fn error_page(title: &str, detail: &str) -> Response {
    let body = format!(
        "<html><head><title>Error</title></head><body><h1>{}</h1><p>{}</p></body></html>",
        escape(title),
        escape(detail)
    );
    (StatusCode::BAD_REQUEST, Html(body)).into_response()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
