//! The control HTTP API under `/sfsim/` on the production login host: JSON mirrors of the `Sim`
//! methods for the `sfsim` binary and non-Rust clients. Durations are seconds. It translates JSON
//! to `Sim` calls and back; it must not reach into the state on its own.

use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::control_json::{
    AppBody, FaultBody, SettingsPatch, app_json, counters_json, org_json, request_json, user_json,
};
use crate::model::{OrgSpec, SimError, UserSpec};
use crate::server::AppState;
use crate::sim::Sim;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/sfsim/orgs", post(create_org).get(list_orgs))
        .route("/sfsim/orgs/{org_id}/users", post(create_user))
        .route("/sfsim/orgs/{org_id}/active", post(set_org_active))
        .route("/sfsim/users/{user_id}/active", post(set_user_active))
        .route("/sfsim/apps", post(create_app))
        .route(
            "/sfsim/apps/{consumer_key}",
            get(read_app).patch(update_app),
        )
        .route("/sfsim/approver", post(set_approver))
        .route("/sfsim/authorize/deny-next", post(deny_next))
        .route("/sfsim/clock", get(clock))
        .route("/sfsim/clock/advance", post(advance_clock))
        .route("/sfsim/faults", post(add_fault).delete(clear_faults))
        .route("/sfsim/holds/release", post(release_holds))
        .route("/sfsim/counters", get(counters))
        .route("/sfsim/requests", get(requests))
}

fn sim(app_state: &AppState) -> Sim {
    Sim::from_inner(app_state.sim.clone())
}

fn ok(body: Value) -> Response {
    (StatusCode::OK, Json(body)).into_response()
}

fn failure(error: &SimError) -> Response {
    let status = match error {
        SimError::Invalid(_) | SimError::DuplicateUsername(_) => StatusCode::BAD_REQUEST,
        _ => StatusCode::NOT_FOUND,
    };
    let code = match error {
        SimError::UnknownOrg(_) => "unknown_org",
        SimError::UnknownUser(_) => "unknown_user",
        SimError::UnknownApp(_) => "unknown_app",
        SimError::DuplicateUsername(_) => "duplicate_username",
        SimError::Invalid(_) => "invalid_request",
    };
    (
        status,
        Json(json!({"error": code, "message": error.to_string()})),
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
struct OrgBody {
    name: Option<String>,
    #[serde(default)]
    sandbox: bool,
    my_domain: Option<String>,
    seed_accounts: Option<usize>,
    seed_contacts_per_account: Option<usize>,
}

async fn create_org(State(app_state): State<AppState>, Json(body): Json<OrgBody>) -> Response {
    let defaults = OrgSpec::default();
    let name = body.name.unwrap_or(defaults.name);
    let spec = OrgSpec {
        my_domain: body
            .my_domain
            .unwrap_or_else(|| name.to_lowercase().replace(' ', "-")),
        name,
        sandbox: body.sandbox,
        seed_accounts: body.seed_accounts.unwrap_or(defaults.seed_accounts),
        seed_contacts_per_account: body
            .seed_contacts_per_account
            .unwrap_or(defaults.seed_contacts_per_account),
    };
    match sim(&app_state).create_org(spec).await {
        Ok(org) => ok(org_json(&org)),
        Err(error) => failure(&SimError::Invalid(error.to_string())),
    }
}

async fn list_orgs(State(app_state): State<AppState>) -> Response {
    ok(Value::Array(
        sim(&app_state).orgs().iter().map(org_json).collect(),
    ))
}

#[derive(Debug, Deserialize)]
struct UserBody {
    username: String,
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    email: String,
}

async fn create_user(
    State(app_state): State<AppState>,
    Path(org_id): Path<String>,
    Json(body): Json<UserBody>,
) -> Response {
    let spec = UserSpec {
        username: body.username,
        display_name: body.display_name,
        email: body.email,
    };
    match sim(&app_state).create_user(&org_id, spec) {
        Ok(user) => ok(user_json(&user)),
        Err(error) => failure(&error),
    }
}

#[derive(Debug, Deserialize)]
struct ActiveBody {
    active: bool,
}

async fn set_org_active(
    State(app_state): State<AppState>,
    Path(org_id): Path<String>,
    Json(body): Json<ActiveBody>,
) -> Response {
    match sim(&app_state).set_org_active(&org_id, body.active) {
        Ok(()) => ok(json!({"org_id": org_id, "active": body.active})),
        Err(error) => failure(&error),
    }
}

async fn set_user_active(
    State(app_state): State<AppState>,
    Path(user_id): Path<String>,
    Json(body): Json<ActiveBody>,
) -> Response {
    match sim(&app_state).set_user_active(&user_id, body.active) {
        Ok(()) => ok(json!({"user_id": user_id, "active": body.active})),
        Err(error) => failure(&error),
    }
}

async fn create_app(State(app_state): State<AppState>, Json(body): Json<AppBody>) -> Response {
    match body.into_spec() {
        Ok(spec) => ok(app_json(&sim(&app_state).create_app(spec))),
        Err(error) => failure(&error),
    }
}

async fn read_app(State(app_state): State<AppState>, Path(consumer_key): Path<String>) -> Response {
    match sim(&app_state).app(&consumer_key) {
        Some(app) => ok(app_json(&app)),
        None => failure(&SimError::UnknownApp(consumer_key)),
    }
}

async fn update_app(
    State(app_state): State<AppState>,
    Path(consumer_key): Path<String>,
    Json(patch): Json<SettingsPatch>,
) -> Response {
    let sim = sim(&app_state);
    let Some(mut settings) = sim.app(&consumer_key).map(|app| app.settings) else {
        return failure(&SimError::UnknownApp(consumer_key));
    };
    if let Err(error) = patch.apply(&mut settings) {
        return failure(&error);
    }
    match sim.update_app(&consumer_key, |current| *current = settings) {
        Ok(()) => match sim.app(&consumer_key) {
            Some(app) => ok(app_json(&app)),
            None => failure(&SimError::UnknownApp(consumer_key)),
        },
        Err(error) => failure(&error),
    }
}

#[derive(Debug, Deserialize)]
struct ApproverBody {
    username: Option<String>,
}

async fn set_approver(
    State(app_state): State<AppState>,
    Json(body): Json<ApproverBody>,
) -> Response {
    sim(&app_state).set_default_approver(body.username.as_deref());
    ok(json!({"username": body.username}))
}

#[derive(Debug, Deserialize)]
struct DenyBody {
    #[serde(default = "yes")]
    denied: bool,
}

fn yes() -> bool {
    true
}

async fn deny_next(State(app_state): State<AppState>, Json(body): Json<DenyBody>) -> Response {
    sim(&app_state).set_next_authorize_denied(body.denied);
    ok(json!({"denied": body.denied}))
}

async fn clock(State(app_state): State<AppState>) -> Response {
    ok(json!({"now_ms": sim(&app_state).now_ms()}))
}

#[derive(Debug, Deserialize)]
struct AdvanceBody {
    seconds: f64,
}

async fn advance_clock(
    State(app_state): State<AppState>,
    Json(body): Json<AdvanceBody>,
) -> Response {
    let Ok(by) = Duration::try_from_secs_f64(body.seconds) else {
        return failure(&SimError::Invalid(
            "seconds must be a non-negative number".to_owned(),
        ));
    };
    let sim = sim(&app_state);
    sim.advance_clock(by);
    ok(json!({"now_ms": sim.now_ms()}))
}

async fn add_fault(State(app_state): State<AppState>, Json(body): Json<FaultBody>) -> Response {
    match body.into_fault() {
        Ok(fault) => ok(json!({"id": sim(&app_state).add_fault(fault)})),
        Err(error) => failure(&error),
    }
}

async fn clear_faults(State(app_state): State<AppState>) -> Response {
    sim(&app_state).clear_faults();
    ok(json!({"cleared": true}))
}

async fn release_holds(State(app_state): State<AppState>) -> Response {
    sim(&app_state).release_holds();
    ok(json!({"released": true}))
}

#[derive(Debug, Deserialize)]
struct CountersQuery {
    org_id: Option<String>,
    consumer_key: Option<String>,
}

async fn counters(
    State(app_state): State<AppState>,
    Query(query): Query<CountersQuery>,
) -> Response {
    let sim = sim(&app_state);
    let counters = match (query.org_id, query.consumer_key) {
        (Some(org_id), Some(consumer_key)) => sim.counters_for(&org_id, &consumer_key),
        (None, None) => sim.counters(),
        _ => {
            return failure(&SimError::Invalid(
                "give both org_id and consumer_key, or neither".to_owned(),
            ));
        }
    };
    ok(counters_json(&counters))
}

async fn requests(State(app_state): State<AppState>) -> Response {
    ok(Value::Array(
        sim(&app_state)
            .requests()
            .iter()
            .map(request_json)
            .collect(),
    ))
}
