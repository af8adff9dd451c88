//! The REST API on each org's instance URL (reference §4.4, §11.8): the bearer-token gate with
//! Salesforce's 401 bodies, version list, limits, and the routes of `query.rs` and `records.rs`.
//! It must not accept a token of another org or one without the `api` (or `full`) scope.

pub(crate) mod data;
pub(crate) mod query;
pub(crate) mod records;
pub(crate) mod soql;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use crate::faults::{FaultTarget, FiredFaults};
use crate::oauth::client::bearer_token;
use crate::oauth::fault_status_response;
use crate::server::{AppState, Connection, HostKind};

/// Oldest and newest API versions served.
const OLDEST_VERSION: u32 = 20;
const NEWEST_VERSION: u32 = 66;
const DAILY_API_REQUESTS: u64 = 100_000;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/services/data", get(versions))
        .route("/services/data/", get(versions))
        .route("/services/data/{version}", get(resources))
        .route("/services/data/{version}/", get(resources))
        .route("/services/data/{version}/limits", get(limits))
        .route("/services/data/{version}/limits/", get(limits))
        .merge(query::routes())
        .merge(records::routes())
}

/// A REST JSON answer.
pub(crate) fn rest_json(status: StatusCode, body: &Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json;charset=UTF-8"),
    );
    response
}

/// A REST error: a JSON array of one `{"message","errorCode"}`.
pub(crate) fn rest_error(status: StatusCode, error_code: &str, message: &str) -> Response {
    rest_json(
        status,
        &json!([{"message": message, "errorCode": error_code}]),
    )
}

pub(crate) fn not_found() -> Response {
    rest_json(
        StatusCode::NOT_FOUND,
        &json!([{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}]),
    )
}

/// `v66.0` → `66.0`, if served.
pub(crate) fn parse_version(segment: &str) -> Option<String> {
    let number = segment.strip_prefix('v')?;
    let (major, minor) = number.split_once('.')?;
    let major: u32 = major.parse().ok()?;
    (minor == "0" && (OLDEST_VERSION..=NEWEST_VERSION).contains(&major))
        .then(|| format!("{major}.0"))
}

/// A request that passed the bearer-token gate.
#[derive(Debug)]
pub(crate) struct Authorized {
    pub(crate) org_id: String,
    fired: FiredFaults,
}

impl Authorized {
    /// Applies after-processing faults, then answers.
    pub(crate) async fn finish(self, connection: &Connection, response: Response) -> Response {
        if let Some(delay) = self.fired.delay_after {
            tokio::time::sleep(delay).await;
        }
        if self.fired.drop_after {
            return connection.drop_without_response().await;
        }
        response
    }
}

/// Checks the bearer token against this instance's org; counts the call.
pub(crate) async fn gate(
    app_state: &AppState,
    headers: &HeaderMap,
) -> Result<Authorized, Response> {
    let HostKind::MyDomain(org_id) = &app_state.host.kind else {
        return Err(not_found());
    };
    let sim = &app_state.sim;
    let token = bearer_token(headers).unwrap_or_default();
    let (fired, outcome) = {
        let mut state = sim.state();
        let consumer_key = state
            .access_tokens
            .get(&token)
            .map(|a| a.consumer_key.clone());
        let fired = state
            .faults
            .fire(FaultTarget::Rest, Some(org_id), consumer_key.as_deref());
        if let Some(status) = fired.status {
            return Err(fault_status_response(status));
        }
        let live = state
            .live_access(&token, &sim.clock)
            .filter(|access| access.org_id == *org_id)
            .cloned();
        let outcome = match live {
            None => Err("Session expired or invalid"),
            Some(access)
                if !access
                    .scopes
                    .iter()
                    .any(|scope| scope == "api" || scope == "full") =>
            {
                Err("This session is not valid for use with the REST API")
            }
            Some(access) => Ok(access),
        };
        match &outcome {
            Ok(access) => state.count(Some(org_id), Some(&access.consumer_key), |c| {
                c.rest_calls += 1
            }),
            Err(_) => state.count(Some(org_id), consumer_key.as_deref(), |c| {
                c.rest_unauthorized += 1
            }),
        }
        (fired, outcome)
    };
    outcome
        .map_err(|message| rest_error(StatusCode::UNAUTHORIZED, "INVALID_SESSION_ID", message))?;
    if let Some(delay) = fired.delay_before {
        tokio::time::sleep(delay).await;
    }
    Ok(Authorized {
        org_id: org_id.clone(),
        fired,
    })
}

/// `GET /services/data`: public, like Salesforce's.
async fn versions() -> Response {
    let list: Vec<Value> = (OLDEST_VERSION..=NEWEST_VERSION)
        .map(|major| {
            json!({
                "label": release_label(major),
                "url": format!("/services/data/v{major}.0"),
                "version": format!("{major}.0"),
            })
        })
        .collect();
    rest_json(StatusCode::OK, &Value::Array(list))
}

/// Release name of an API version (v66.0 = Spring '26; three releases a year).
fn release_label(major: u32) -> String {
    let index = major.saturating_sub(20);
    let season = ["Winter", "Spring", "Summer"][usize::try_from(index % 3).unwrap_or(0)];
    let year = 11 + index / 3;
    format!("{season} '{year:02}")
}

async fn resources(
    State(app_state): State<AppState>,
    axum::Extension(connection): axum::Extension<Connection>,
    Path(version): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(version) = parse_version(&version) else {
        return not_found();
    };
    let authorized = match gate(&app_state, &headers).await {
        Ok(authorized) => authorized,
        Err(response) => return response,
    };
    let base = format!("/services/data/v{version}");
    let body = json!({
        "limits": format!("{base}/limits"),
        "query": format!("{base}/query"),
        "queryAll": format!("{base}/queryAll"),
        "sobjects": format!("{base}/sobjects"),
    });
    authorized
        .finish(&connection, rest_json(StatusCode::OK, &body))
        .await
}

async fn limits(
    State(app_state): State<AppState>,
    axum::Extension(connection): axum::Extension<Connection>,
    Path(version): Path<String>,
    headers: HeaderMap,
) -> Response {
    if parse_version(&version).is_none() {
        return not_found();
    }
    let authorized = match gate(&app_state, &headers).await {
        Ok(authorized) => authorized,
        Err(response) => return response,
    };
    let used: u64 = app_state
        .sim
        .state()
        .counters_by
        .iter()
        .filter(|((org_id, _), _)| *org_id == authorized.org_id)
        .map(|(_, counters)| counters.rest_calls)
        .sum();
    let pair = |max: u64, remaining: u64| json!({"Max": max, "Remaining": remaining});
    let body = json!({
        "ConcurrentAsyncGetReportInstances": pair(200, 200),
        "ConcurrentSyncReportRuns": pair(20, 20),
        "DailyApiRequests": pair(DAILY_API_REQUESTS, DAILY_API_REQUESTS.saturating_sub(used)),
        "DailyAsyncApexExecutions": pair(250_000, 250_000),
        "DailyBulkApiBatches": pair(15_000, 15_000),
        "DailyBulkV2QueryJobs": pair(10_000, 10_000),
        "DataStorageMB": pair(5, 5),
        "FileStorageMB": pair(20, 20),
        "HourlyODataCallout": pair(20_000, 20_000),
        "SingleEmail": pair(5_000, 5_000),
    });
    authorized
        .finish(&connection, rest_json(StatusCode::OK, &body))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_in_range_parse_and_others_do_not() {
        assert_eq!(parse_version("v59.0").as_deref(), Some("59.0"));
        assert_eq!(parse_version("v67.0"), None);
        assert_eq!(parse_version("v19.0"), None);
        assert_eq!(parse_version("59.0"), None);
    }

    #[test]
    fn version_66_is_spring_26() {
        assert_eq!(release_label(66), "Spring '26");
        assert_eq!(release_label(59), "Winter '24");
    }
}
