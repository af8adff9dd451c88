//! The JSON API: behind the admin key, connections (list, show, revoke), attempts, events and
//! agent keys; behind an agent key with the `token` capability, access tokens.
//!
//! Responses never carry a refresh token or anything sealed. Bad input gets a stable error
//! code and changes nothing.

use axum::Json;
use axum::extract::State;
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use forcelink_core::{BrokerError, Connection, ConnectionContext, ConnectionKey, OrgId};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::http::AppState;
use crate::http::auth::{Admin, Agent, denied};
use crate::http::error::ApiError;
use crate::http::extract::{Body, Path, Query};

/// A connection as the API shows it: no tokens.
#[derive(Debug, Serialize)]
pub struct ConnectionView {
    pub org_id: String,
    pub context: String,
    pub user_id: String,
    pub username: String,
    pub instance_url: String,
    pub login_host: String,
    pub identity_url: String,
    pub scopes: Vec<String>,
    pub state: String,
    pub state_cause: Option<String>,
    pub pkce: bool,
    pub rotation_seen: bool,
    pub signature_verified: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub last_refresh_at: Option<DateTime<Utc>>,
    pub generation: i64,
    pub access_token_expires_at: DateTime<Utc>,
    pub health: String,
    pub health_detail: Option<String>,
    /// A refresh whose outcome is not settled yet (after a crash or a lost answer).
    pub refresh_in_flight: Option<Value>,
    /// Last successful use of the refresh token; the idle TTL runs from here.
    pub refresh_token_used_at: DateTime<Utc>,
    pub heartbeat_due_at: DateTime<Utc>,
    /// Days left before the idle TTL (7, 3 or 1) when the token is at risk.
    pub at_risk_days: Option<i32>,
}

impl From<&Connection> for ConnectionView {
    fn from(c: &Connection) -> Self {
        Self {
            org_id: c.key.org_id.to_string(),
            context: c.key.context.to_string(),
            user_id: c.user_id.to_string(),
            username: c.username.clone(),
            instance_url: c.instance_url.clone(),
            login_host: c.login_host.origin(),
            identity_url: c.identity_url.clone(),
            scopes: c.scopes.clone(),
            state: c.state.to_string(),
            state_cause: c.state_cause.clone(),
            pkce: c.pkce,
            rotation_seen: c.rotation_seen,
            signature_verified: c.signature_verified,
            created_at: c.created_at,
            updated_at: c.updated_at,
            last_refresh_at: c.last_refresh_at,
            generation: c.generation,
            access_token_expires_at: c.tokens.access_expires_at,
            health: c.health.to_string(),
            health_detail: c.health_detail.clone(),
            refresh_in_flight: c.in_flight.as_ref().map(|f| {
                json!({ "attempt_id": f.attempt_id, "instance": f.owner, "started_at": f.started_at, "recovery": f.recovery })
            }),
            refresh_token_used_at: c.refresh_token_used_at,
            heartbeat_due_at: c.heartbeat_due_at,
            at_risk_days: (c.at_risk_level > 0).then_some(c.at_risk_level),
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct ContextQuery {
    ctx: Option<String>,
}

fn connection_key(org_id: &str, ctx: Option<&str>) -> Result<ConnectionKey, ApiError> {
    let org_id =
        OrgId::parse(org_id).map_err(|e| ApiError::bad_request("invalid_org_id", e.to_string()))?;
    let context = match ctx.filter(|c| !c.is_empty()) {
        Some(ctx) => ConnectionContext::parse(ctx)
            .map_err(|e| ApiError::bad_request("invalid_context", e.to_string()))?,
        None => ConnectionContext::api(),
    };
    Ok(ConnectionKey::new(org_id, context))
}

fn reconnect_url(state: &AppState, key: &ConnectionKey) -> String {
    format!(
        "{}/v1/connect/salesforce/start?ctx={}&orgid={}",
        state.public_url.trim_end_matches('/'),
        key.context,
        key.org_id
    )
}

/// Adds the reconnect URL to a needs_reauth error.
pub(crate) fn with_reconnect(state: &AppState, error: BrokerError) -> ApiError {
    let key = match &error {
        BrokerError::NeedsReauth { key, .. } => Some(key.clone()),
        _ => None,
    };
    let mut api = ApiError::from(error);
    match key {
        Some(key) => {
            let url = reconnect_url(state, &key);
            api.message = format!(
                "{}. An org admin must reconnect it: open {url}",
                api.message
            );
            api.with_extra(json!({ "reconnect_url": url }))
        }
        None => api,
    }
}

pub async fn list(_: Admin, State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let connections = state
        .broker
        .store()
        .connections()
        .await
        .map_err(BrokerError::from)?;
    let views: Vec<ConnectionView> = connections.iter().map(ConnectionView::from).collect();
    Ok(Json(json!({ "connections": views })))
}

pub async fn show(
    _: Admin,
    State(state): State<AppState>,
    Path(org_id): Path<String>,
    Query(query): Query<ContextQuery>,
) -> Result<Json<ConnectionView>, ApiError> {
    let key = connection_key(&org_id, query.ctx.as_deref())?;
    let connection = state
        .broker
        .store()
        .connection(&key)
        .await
        .map_err(BrokerError::from)?
        .ok_or(BrokerError::NotFound(key))?;
    Ok(Json(ConnectionView::from(&connection)))
}

pub async fn attempts(
    _: Admin,
    State(state): State<AppState>,
    Path(org_id): Path<String>,
    Query(query): Query<ContextQuery>,
) -> Result<Json<Value>, ApiError> {
    let key = connection_key(&org_id, query.ctx.as_deref())?;
    let attempts = state
        .broker
        .store()
        .attempts(&key, 200)
        .await
        .map_err(BrokerError::from)?;
    let views: Vec<forcelink_core::lineage::AttemptView> =
        attempts.into_iter().map(Into::into).collect();
    Ok(Json(json!({ "attempts": views })))
}

#[derive(Debug, Deserialize)]
pub struct EventsQuery {
    after_id: Option<i64>,
    limit: Option<u32>,
    org_id: Option<String>,
    ctx: Option<String>,
}

pub async fn events(
    _: Admin,
    State(state): State<AppState>,
    Query(query): Query<EventsQuery>,
) -> Result<Json<Value>, ApiError> {
    let key = match query.org_id.as_deref() {
        Some(org) => Some(connection_key(org, query.ctx.as_deref())?),
        None => None,
    };
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let filter = forcelink_core::EventFilter {
        key,
        after_id: query.after_id,
        limit,
    };
    let events = state
        .broker
        .store()
        .events(&filter)
        .await
        .map_err(BrokerError::from)?;
    let views: Vec<Value> = events
        .into_iter()
        .map(|e| {
            json!({
                "id": e.id,
                "at": e.at,
                "kind": e.kind,
                "org_id": e.org_id.map(|o| o.to_string()),
                "context": e.context.map(|c| c.to_string()),
                "detail": serde_json::from_str::<Value>(&e.detail).unwrap_or(Value::Null),
            })
        })
        .collect();
    Ok(Json(json!({ "events": views })))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// An access token Salesforce refused; refresh only if it is still the current one.
    stale_token: Option<String>,
    ctx: Option<String>,
}

pub async fn token(
    agent: Agent,
    State(state): State<AppState>,
    Path(org_id): Path<String>,
    Query(query): Query<ContextQuery>,
    Body(body): Body,
) -> Result<axum::response::Response, ApiError> {
    let request: TokenRequest = if body.iter().all(u8::is_ascii_whitespace) {
        TokenRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::bad_request(
                "invalid_body",
                format!("body must be JSON like {{\"stale_token\": \"…\"}}: {e}"),
            )
        })?
    };
    let key = connection_key(&org_id, request.ctx.as_deref().or(query.ctx.as_deref()))?;
    agent
        .0
        .authorize(&key.org_id, forcelink_core::Capability::Token)
        .map_err(denied)?;
    let issued = state
        .broker
        .access_token(&key, request.stale_token.as_deref())
        .await
        .map_err(|error| with_reconnect(&state, error))?;
    Ok(Json(TokenAnswer {
        access_token: issued.access_token.expose(),
        token_type: "Bearer",
        instance_url: &issued.instance_url,
        issued_at: issued.issued_at,
        expires_at: issued.expires_at,
        generation: issued.generation,
    })
    .into_response())
}

/// The token API's answer, serialized straight from the issued token (the hot path).
#[derive(Serialize)]
struct TokenAnswer<'a> {
    access_token: &'a str,
    token_type: &'static str,
    instance_url: &'a str,
    issued_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    generation: i64,
}

pub async fn revoke(
    _: Admin,
    State(state): State<AppState>,
    Path(org_id): Path<String>,
    Query(query): Query<ContextQuery>,
) -> Result<Json<Value>, ApiError> {
    let key = connection_key(&org_id, query.ctx.as_deref())?;
    let removed = state.broker.disconnect(&key).await?;
    Ok(Json(json!({ "revoked": ConnectionView::from(&removed) })))
}

/// An agent key as the API and CLI show it: never the key, never its hash.
#[derive(Debug, Serialize)]
pub struct AgentView {
    pub id: String,
    pub name: String,
    /// `["*"]` for every org.
    pub orgs: Vec<String>,
    pub capabilities: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
}

impl From<&forcelink_core::AgentKey> for AgentView {
    fn from(key: &forcelink_core::AgentKey) -> Self {
        Self {
            id: key.id.clone(),
            name: key.name.clone(),
            orgs: match &key.scope {
                forcelink_core::AgentScope::AllOrgs => vec!["*".to_owned()],
                forcelink_core::AgentScope::Orgs(orgs) => {
                    orgs.iter().map(ToString::to_string).collect()
                }
            },
            capabilities: key
                .capabilities
                .iter()
                .map(|capability| capability.as_str().to_owned())
                .collect(),
            created_at: key.created_at,
            revoked_at: key.revoked_at,
            last_used_at: key.last_used_at,
        }
    }
}

fn agent_error(error: forcelink_core::AgentKeyError) -> ApiError {
    use forcelink_core::AgentKeyError as E;
    match error {
        E::Invalid(message) => ApiError::bad_request("invalid_agent_key", message),
        E::NameTaken(_) => ApiError::new(
            axum::http::StatusCode::CONFLICT,
            "agent_name_taken",
            error.to_string(),
        ),
        E::NotFound(_) => ApiError::new(
            axum::http::StatusCode::NOT_FOUND,
            "agent_key_not_found",
            error.to_string(),
        ),
        E::Store(store) => ApiError::from(BrokerError::from(store)),
    }
}

pub async fn agents_list(_: Admin, State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let keys = state.agents.list().await.map_err(agent_error)?;
    let views: Vec<AgentView> = keys.iter().map(AgentView::from).collect();
    Ok(Json(json!({ "agents": views })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateAgent {
    name: String,
    /// Org ids, or `["*"]` for every org.
    orgs: Vec<String>,
    /// Defaults to both `token` and `proxy`.
    capabilities: Option<Vec<String>>,
}

/// Parses the org list of a create request: ids, or a lone `*` for every org.
pub fn agent_scope(orgs: &[String]) -> Result<forcelink_core::AgentScope, String> {
    if orgs.len() == 1 && orgs[0].trim() == "*" {
        return Ok(forcelink_core::AgentScope::AllOrgs);
    }
    orgs.iter()
        .map(|org| {
            OrgId::parse(org.trim()).map_err(|error| format!("{org:?} is not an org id: {error}"))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(forcelink_core::AgentScope::Orgs)
}

pub async fn agents_create(
    _: Admin,
    State(state): State<AppState>,
    Body(body): Body,
) -> Result<(axum::http::StatusCode, Json<Value>), ApiError> {
    let request: CreateAgent = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(
            "invalid_body",
            format!(
                "body must be JSON like {{\"name\": \"crm-agent\", \"orgs\": [\"00D…\"], \"capabilities\": [\"token\", \"proxy\"]}}: {e}"
            ),
        )
    })?;
    let scope = agent_scope(&request.orgs)
        .map_err(|message| ApiError::bad_request("invalid_agent_key", message))?;
    let capabilities = match &request.capabilities {
        None => forcelink_core::Capability::ALL.to_vec(),
        Some(names) => names
            .iter()
            .map(|name| forcelink_core::Capability::parse(name))
            .collect::<Result<Vec<_>, _>>()
            .map_err(agent_error)?,
    };
    let spec = forcelink_core::AgentKeySpec {
        name: request.name,
        scope,
        capabilities,
    };
    let (key, secret) = state.agents.create(spec).await.map_err(agent_error)?;
    let mut view = serde_json::to_value(AgentView::from(&key)).unwrap_or(Value::Null);
    if let Some(map) = view.as_object_mut() {
        map.insert("key".to_owned(), Value::String(secret.expose().to_owned()));
    }
    Ok((axum::http::StatusCode::CREATED, Json(view)))
}

pub async fn agents_revoke(
    _: Admin,
    State(state): State<AppState>,
    Path(name_or_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let key = state
        .agents
        .revoke(&name_or_id)
        .await
        .map_err(agent_error)?;
    Ok(Json(json!({ "revoked": AgentView::from(&key) })))
}
