//! sObject record endpoints: `GET|PATCH|DELETE …/sobjects/{Type}/{id}` and
//! `POST …/sobjects/{Type}` for Account and Contact, with Salesforce's status codes and error
//! bodies. Small but real; it must not accept unknown fields.

use axum::Extension;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Map, Value, json};

use super::data::{SObject, new_record};
use super::{gate, not_found, parse_version, rest_error, rest_json};
use crate::oauth::Params;
use crate::server::{AppState, Connection};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/services/data/{version}/sobjects/{object}", post(create))
        .route(
            "/services/data/{version}/sobjects/{object}/{id}",
            get(read).patch(update).delete(remove),
        )
}

fn required_field(object: SObject) -> &'static str {
    match object {
        SObject::Account => "Name",
        SObject::Contact => "LastName",
    }
}

/// (errorCode, message) of a rejected body.
type FieldError = (&'static str, String);

/// Validates a JSON body's fields; returns them with canonical names.
fn parse_fields(object: SObject, body: &[u8]) -> Result<Vec<(&'static str, Value)>, FieldError> {
    let parsed: Map<String, Value> = serde_json::from_slice(body).map_err(|_| {
        (
            "JSON_PARSER_ERROR",
            "Unexpected character in the request body".to_owned(),
        )
    })?;
    let mut fields = Vec::new();
    for (name, value) in parsed {
        if name == "attributes" {
            continue;
        }
        match object.field(&name) {
            Some(field) if field != "Id" && field != "CreatedDate" => fields.push((field, value)),
            Some(field) => {
                return Err((
                    "INVALID_FIELD_FOR_INSERT_UPDATE",
                    format!(
                        "Unable to create/update fields: {field}. Please check the security settings of this field and verify that it is read/write for your profile or permission set."
                    ),
                ));
            }
            None => {
                return Err((
                    "INVALID_FIELD",
                    format!(
                        "No such column '{name}' on sobject of type {}",
                        object.name()
                    ),
                ));
            }
        }
    }
    Ok(fields)
}

async fn create(
    State(app_state): State<AppState>,
    Extension(connection): Extension<Connection>,
    Path((version, object)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (Some(_), Some(object)) = (parse_version(&version), SObject::parse(&object)) else {
        return not_found();
    };
    let authorized = match gate(&app_state, &headers).await {
        Ok(authorized) => authorized,
        Err(response) => return response,
    };
    let response = match parse_fields(object, &body) {
        Err((code, message)) => rest_error(StatusCode::BAD_REQUEST, code, &message),
        Ok(fields)
            if !fields
                .iter()
                .any(|(name, value)| *name == required_field(object) && !value.is_null()) =>
        {
            rest_error(
                StatusCode::BAD_REQUEST,
                "REQUIRED_FIELD_MISSING",
                &format!("Required fields are missing: [{}]", required_field(object)),
            )
        }
        Ok(fields) => {
            let now_ms = app_state.sim.clock.now_ms();
            let record = new_record(object, &fields, now_ms);
            let id = record.id.clone();
            let mut state = app_state.sim.state();
            match state.orgs.get_mut(&authorized.org_id) {
                None => not_found(),
                Some(org) => {
                    org.data.records.push(record);
                    rest_json(
                        StatusCode::CREATED,
                        &json!({"id": id, "success": true, "errors": []}),
                    )
                }
            }
        }
    };
    authorized.finish(&connection, response).await
}

async fn read(
    State(app_state): State<AppState>,
    Extension(connection): Extension<Connection>,
    Path((version, object, id)): Path<(String, String, String)>,
    RawQuery(raw_query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let (Some(version), Some(object)) = (parse_version(&version), SObject::parse(&object)) else {
        return not_found();
    };
    let authorized = match gate(&app_state, &headers).await {
        Ok(authorized) => authorized,
        Err(response) => return response,
    };
    let params = Params::parse(raw_query.unwrap_or_default().as_bytes());
    let wanted: Option<Vec<&'static str>> = params.get("fields").map(|list| {
        list.split(',')
            .filter_map(|name| object.field(name.trim()))
            .collect()
    });
    let response = {
        let state = app_state.sim.state();
        let record = state
            .orgs
            .get(&authorized.org_id)
            .and_then(|org| org.data.find(object, &id));
        match record {
            None => not_found(),
            Some(record) => {
                let fields = wanted.unwrap_or_else(|| object.fields().to_vec());
                rest_json(StatusCode::OK, &record.to_json(&version, &fields))
            }
        }
    };
    authorized.finish(&connection, response).await
}

async fn update(
    State(app_state): State<AppState>,
    Extension(connection): Extension<Connection>,
    Path((version, object, id)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (Some(_), Some(object)) = (parse_version(&version), SObject::parse(&object)) else {
        return not_found();
    };
    let authorized = match gate(&app_state, &headers).await {
        Ok(authorized) => authorized,
        Err(response) => return response,
    };
    let response = match parse_fields(object, &body) {
        Err((code, message)) => rest_error(StatusCode::BAD_REQUEST, code, &message),
        Ok(fields) => {
            let mut state = app_state.sim.state();
            let record = state
                .orgs
                .get_mut(&authorized.org_id)
                .and_then(|org| org.data.find_mut(object, &id));
            match record {
                None => not_found(),
                Some(record) => {
                    for (name, value) in fields {
                        record.fields.insert(name.to_owned(), value);
                    }
                    StatusCode::NO_CONTENT.into_response()
                }
            }
        }
    };
    authorized.finish(&connection, response).await
}

async fn remove(
    State(app_state): State<AppState>,
    Extension(connection): Extension<Connection>,
    Path((version, object, id)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let (Some(_), Some(object)) = (parse_version(&version), SObject::parse(&object)) else {
        return not_found();
    };
    let authorized = match gate(&app_state, &headers).await {
        Ok(authorized) => authorized,
        Err(response) => return response,
    };
    let response = {
        let mut state = app_state.sim.state();
        let removed = state.orgs.get_mut(&authorized.org_id).is_some_and(|org| {
            let before = org.data.records.len();
            org.data.records.retain(|record| {
                !(record.object == object
                    && record.id.starts_with(&id)
                    && (id.len() == 15 || id.len() == 18))
            });
            org.data.records.len() < before
        });
        if removed {
            StatusCode::NO_CONTENT.into_response()
        } else {
            not_found()
        }
    };
    authorized.finish(&connection, response).await
}
