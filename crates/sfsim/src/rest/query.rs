//! `GET …/query?q=` and `…/queryAll?q=`, and their continuation `…/query/{locator}-{offset}`:
//! runs the SOQL subset, pages results by the `Sforce-Query-Options: batchSize=N` header (default
//! 2000) and hands out RELATIVE `nextRecordsUrl`s. Query cursors are snapshots; this file must not
//! change records.

use axum::Extension;
use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use serde_json::{Value, json};

use super::{gate, not_found, parse_version, rest_error, rest_json, soql};
use crate::oauth::Params;
use crate::server::{AppState, Connection};

const DEFAULT_BATCH_SIZE: usize = 2000;

/// The rest of a query result, waiting for `nextRecordsUrl` calls.
#[derive(Debug, Clone)]
pub(crate) struct Cursor {
    org_id: String,
    records: Vec<Value>,
    batch_size: usize,
}

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/services/data/{version}/query", get(query))
        .route("/services/data/{version}/query/", get(query))
        .route("/services/data/{version}/queryAll", get(query))
        .route("/services/data/{version}/queryAll/", get(query))
        .route("/services/data/{version}/query/{locator}", get(next_page))
        .route(
            "/services/data/{version}/queryAll/{locator}",
            get(next_page),
        )
}

fn batch_size(headers: &HeaderMap) -> usize {
    headers
        .get("sforce-query-options")
        .and_then(|value| value.to_str().ok())
        .and_then(|options| {
            options.split(',').find_map(|option| {
                let (key, value) = option.split_once('=')?;
                key.trim()
                    .eq_ignore_ascii_case("batchSize")
                    .then(|| value.trim().parse::<usize>().ok())
                    .flatten()
            })
        })
        .filter(|size| *size >= 1)
        .unwrap_or(DEFAULT_BATCH_SIZE)
}

async fn query(
    State(app_state): State<AppState>,
    Extension(connection): Extension<Connection>,
    Path(version): Path<String>,
    RawQuery(raw_query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let Some(version) = parse_version(&version) else {
        return not_found();
    };
    let authorized = match gate(&app_state, &headers).await {
        Ok(authorized) => authorized,
        Err(response) => return response,
    };
    let params = Params::parse(raw_query.unwrap_or_default().as_bytes());
    let Some(soql_text) = params.get("q") else {
        let response = rest_error(
            StatusCode::BAD_REQUEST,
            "MALFORMED_QUERY",
            "A query string has to be specified",
        );
        return authorized.finish(&connection, response).await;
    };
    let response = match soql::parse(soql_text) {
        Err((code, message)) => rest_error(StatusCode::BAD_REQUEST, code, &message),
        Ok(parsed) => {
            let mut state = app_state.sim.state();
            match state.orgs.get(&authorized.org_id) {
                None => not_found(),
                Some(org) => {
                    let rows = soql::run(&parsed, &org.data);
                    match &parsed.fields {
                        None => rest_json(
                            StatusCode::OK,
                            &json!({"totalSize": rows.len(), "done": true, "records": []}),
                        ),
                        Some(fields) => {
                            let records: Vec<Value> = rows
                                .iter()
                                .map(|row| row.to_json(&version, fields))
                                .collect();
                            let cursor = Cursor {
                                org_id: authorized.org_id.clone(),
                                records,
                                batch_size: batch_size(&headers),
                            };
                            let locator = crate::ids::record_id("01g");
                            let page = page(&cursor, &version, &locator, 0);
                            if page.get("nextRecordsUrl").is_some() {
                                state.query_cursors.insert(locator, cursor);
                            }
                            rest_json(StatusCode::OK, &page)
                        }
                    }
                }
            }
        }
    };
    authorized.finish(&connection, response).await
}

fn page(cursor: &Cursor, version: &str, locator: &str, offset: usize) -> Value {
    let total = cursor.records.len();
    let end = offset.saturating_add(cursor.batch_size).min(total);
    let records: Vec<Value> = cursor.records.get(offset..end).unwrap_or_default().to_vec();
    let mut body = json!({"totalSize": total, "done": end >= total, "records": records});
    if end < total
        && let Some(object) = body.as_object_mut()
    {
        object.insert(
            "nextRecordsUrl".to_owned(),
            json!(format!("/services/data/v{version}/query/{locator}-{end}")),
        );
    }
    body
}

async fn next_page(
    State(app_state): State<AppState>,
    Extension(connection): Extension<Connection>,
    Path((version, locator)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let Some(version) = parse_version(&version) else {
        return not_found();
    };
    let authorized = match gate(&app_state, &headers).await {
        Ok(authorized) => authorized,
        Err(response) => return response,
    };
    let invalid = || {
        rest_error(
            StatusCode::BAD_REQUEST,
            "INVALID_QUERY_LOCATOR",
            "invalid query locator",
        )
    };
    let parsed = locator
        .rsplit_once('-')
        .and_then(|(id, offset)| Some((id.to_owned(), offset.parse::<usize>().ok()?)));
    let response = match parsed {
        None => invalid(),
        Some((id, offset)) => {
            let mut state = app_state.sim.state();
            match state
                .query_cursors
                .get(&id)
                .filter(|cursor| cursor.org_id == authorized.org_id)
            {
                None => invalid(),
                Some(cursor) => {
                    let body = page(cursor, &version, &id, offset);
                    if body.get("nextRecordsUrl").is_none() {
                        state.query_cursors.remove(&id);
                    }
                    rest_json(StatusCode::OK, &body)
                }
            }
        }
    };
    authorized.finish(&connection, response).await
}
