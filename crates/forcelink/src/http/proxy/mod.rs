//! The Salesforce API proxy: `/v1/proxy/{orgid}/services/...` and, for an agent key bound to a
//! single org, `/services/...` at forcelink's root (what simple-salesforce builds).
//!
//! A request is forwarded only to its connection's own `instance_url`, with the current access
//! token in place of the agent's key. The path must be a plain `/services/...` path: absolute
//! request targets, empty or dot segments, and percent-encoded slashes, backslashes, dots,
//! percent signs or control characters are refused before anything is sent. Bodies stream
//! both ways; the request body is kept (up to `proxy.max_body_bytes`, 413 beyond) while it
//! streams, so that a `401 INVALID_SESSION_ID` can be answered by one refresh through the
//! exactly-once path and one replay. Hop-by-hop headers, cookies and the agent's credentials
//! never cross; the access token is marked sensitive and never logged.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::{Method, StatusCode, Version};
use axum::response::{IntoResponse, Response};
use forcelink_core::{
    AccessToken, Capability, ConnectionContext, ConnectionKey, IssuedToken, OrgId,
};
use futures_util::StreamExt;

use crate::config::Config;
use guard::{check_path, invalid_path, target_url};
use headers::{forwarded_request_headers, returned_response_headers};
use replay::Replay;

mod guard;
mod headers;
mod replay;

use crate::http::AppState;
use crate::http::api::with_reconnect;
use crate::http::auth::{Agent, denied};
use crate::http::error::ApiError;

/// The header an agent may send to pick a connection context other than `api`.
pub const CONTEXT_HEADER: &str = "x-forcelink-context";
/// How much of a 401 body is read to look for `INVALID_SESSION_ID`.
const UNAUTHORIZED_BODY_LIMIT: usize = 64 * 1024;

/// The HTTP client and limits of the proxy.
#[derive(Debug)]
pub struct Upstream {
    client: reqwest::Client,
    max_body_bytes: u64,
    timeout: Duration,
}

impl Upstream {
    /// Builds the proxy's client: no redirects followed, no proxy unless `egress.api_traffic`
    /// says API traffic leaves like token traffic.
    pub fn from_config(config: &Config) -> anyhow::Result<Upstream> {
        let proxy = &config.proxy;
        let timeout = Duration::from_secs(u64::from(proxy.timeout_seconds.max(1)));
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(u64::from(
                proxy.connect_timeout_seconds.max(1),
            )))
            .read_timeout(timeout)
            .pool_max_idle_per_host(256)
            .tcp_nodelay(true);
        if config.egress.api_traffic {
            builder = builder.local_address(config.egress.bind_address);
            builder = match &config.egress.proxy {
                Some(url) => builder.proxy(
                    reqwest::Proxy::all(url.as_str())
                        .map_err(|_| anyhow!("egress.proxy is not a valid proxy URL"))?,
                ),
                None => builder.no_proxy(),
            };
        } else {
            builder = builder.no_proxy();
        }
        let client = builder
            .build()
            .map_err(|error| anyhow!("cannot build the proxy's http client: {error}"))?;
        Ok(Upstream {
            client,
            max_body_bytes: proxy.max_body_bytes,
            timeout,
        })
    }
}

/// `/v1/proxy/{orgid}/services/...`
pub async fn by_org(State(state): State<AppState>, agent: Agent, request: Request) -> Response {
    let path = request.uri().path();
    let Some(rest) = path.strip_prefix("/v1/proxy/") else {
        return invalid_path("the proxy path is /v1/proxy/{orgid}/services/...").into_response();
    };
    let (org, services) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let org = match OrgId::parse(org) {
        Ok(org) => org,
        Err(error) => {
            return ApiError::bad_request("invalid_org_id", error.to_string()).into_response();
        }
    };
    let services = services.to_owned();
    forward(state, agent, org, services, request).await
}

/// `/services/...` at the root, for agent keys bound to exactly one org.
pub async fn at_root(State(state): State<AppState>, agent: Agent, request: Request) -> Response {
    let Some(org) = agent.0.scope.single_org().cloned() else {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "org_required",
            "this agent key reaches more than one org: call /v1/proxy/{orgid}/services/... \
             (only a key bound to a single org may use forcelink's root as its instance URL)",
        )
        .into_response();
    };
    let services = request.uri().path().to_owned();
    forward(state, agent, org, services, request).await
}

fn too_large(limit: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        format!("the request body is larger than proxy.max_body_bytes ({limit} bytes)"),
    )
}

fn outcome(label: &'static str, started: Instant) {
    metrics::counter!("forcelink_proxy_requests_total", "outcome" => label).increment(1);
    metrics::histogram!("forcelink_proxy_request_seconds", "outcome" => label)
        .record(started.elapsed().as_secs_f64());
}

async fn forward(
    state: AppState,
    agent: Agent,
    org: OrgId,
    path: String,
    request: Request,
) -> Response {
    let started = Instant::now();
    match forward_inner(&state, &agent, org, &path, request).await {
        Ok(response) => {
            outcome("forwarded", started);
            response
        }
        Err(error) => {
            outcome(error.code, started);
            error.into_response()
        }
    }
}

async fn forward_inner(
    state: &AppState,
    agent: &Agent,
    org: OrgId,
    path: &str,
    request: Request,
) -> Result<Response, ApiError> {
    let upstream = &state.proxy;
    agent.0.authorize(&org, Capability::Proxy).map_err(denied)?;
    let (parts, body) = request.into_parts();
    if parts.version <= Version::HTTP_11
        && (parts.uri.scheme().is_some() || parts.uri.authority().is_some())
    {
        return Err(ApiError::bad_request(
            "absolute_url_refused",
            "absolute request targets are refused: send the path only",
        ));
    }
    check_path(path)?;
    let context = match parts.headers.get(CONTEXT_HEADER) {
        Some(value) => {
            let text = value
                .to_str()
                .map_err(|_| ApiError::bad_request("invalid_context", "bad x-forcelink-context"))?;
            ConnectionContext::parse(text)
                .map_err(|error| ApiError::bad_request("invalid_context", error.to_string()))?
        }
        None => ConnectionContext::api(),
    };
    let key = ConnectionKey::new(org, context);
    let limit = upstream.max_body_bytes;
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(too_large(limit));
    }
    let issued = state
        .broker
        .access_token(&key, None)
        .await
        .map_err(|error| with_reconnect(state, error))?;
    let has_body = declared.is_some_and(|length| length > 0)
        || (declared.is_none() && !axum::body::HttpBody::is_end_stream(&body));
    let replay = has_body.then(|| Replay::new(body, limit));
    let headers = forwarded_request_headers(&parts.headers);
    let query = parts.uri.query();

    let first = send(
        upstream,
        &parts.method,
        &issued,
        path,
        query,
        &headers,
        replay.as_ref(),
    )
    .await;
    let first = settle(first, replay.as_ref(), limit).await?;
    if first.status() != StatusCode::UNAUTHORIZED {
        return Ok(relay(first));
    }
    // A 401: only an invalid session is worth one refresh and one replay.
    let status = first.status();
    let first_headers = first.headers().clone();
    let body = read_limited(first, UNAUTHORIZED_BODY_LIMIT).await;
    if !body
        .windows(18)
        .any(|window| window == b"INVALID_SESSION_ID")
    {
        return Ok(buffered(status, &first_headers, body));
    }
    tracing::info!(connection = %key, agent = %agent.0.name, "Salesforce refused the access token; refreshing once and retrying");
    let renewed = state
        .broker
        .access_token(&key, Some(issued.access_token.expose()))
        .await
        .map_err(|error| with_reconnect(state, error))?;
    metrics::counter!("forcelink_proxy_retries_total").increment(1);
    let second = send(
        upstream,
        &parts.method,
        &renewed,
        path,
        query,
        &headers,
        replay.as_ref(),
    )
    .await;
    let second = settle(second, replay.as_ref(), limit).await?;
    Ok(relay(second))
}

async fn send(
    upstream: &Upstream,
    method: &Method,
    issued: &IssuedToken,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    replay: Option<&Arc<Replay>>,
) -> Result<reqwest::Response, SendError> {
    let target = target_url(&issued.instance_url, path, query).map_err(SendError::Refused)?;
    let mut request = upstream
        .client
        .request(method.clone(), target)
        .headers(headers.clone())
        .header(header::AUTHORIZATION, bearer_value(&issued.access_token));
    if let Some(replay) = replay {
        request = request.body(replay.body());
    }
    match tokio::time::timeout(upstream.timeout, request.send()).await {
        Err(_) => Err(SendError::Timeout),
        Ok(Err(error)) if error.is_timeout() => Err(SendError::Timeout),
        Ok(Err(error)) => Err(SendError::Failed(error)),
        Ok(Ok(response)) => Ok(response),
    }
}

fn bearer_value(token: &AccessToken) -> HeaderValue {
    let mut value = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
        .unwrap_or_else(|_| HeaderValue::from_static("Bearer invalid"));
    value.set_sensitive(true);
    value
}

#[derive(Debug)]
enum SendError {
    Refused(ApiError),
    Timeout,
    Failed(reqwest::Error),
}

/// Turns a failed send into the agent's error: 413 when the body ran over the cap while
/// streaming, 504 on a timeout, 502 otherwise. Never carries the upstream URL's query.
async fn settle(
    sent: Result<reqwest::Response, SendError>,
    replay: Option<&Arc<Replay>>,
    limit: u64,
) -> Result<reqwest::Response, ApiError> {
    let error = match sent {
        Ok(response) => return Ok(response),
        Err(error) => error,
    };
    if let Some(replay) = replay
        && replay.exceeded().await
    {
        return Err(too_large(limit));
    }
    Err(match error {
        SendError::Refused(error) => error,
        SendError::Timeout => ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "upstream_timeout",
            "Salesforce did not answer within proxy.timeout_seconds",
        ),
        SendError::Failed(error) => {
            tracing::warn!(error = %error.without_url(), "proxy call to Salesforce failed");
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                "upstream_unreachable",
                "could not reach the org's Salesforce instance",
            )
        }
    })
}

/// Streams Salesforce's answer back.
fn relay(upstream: reqwest::Response) -> Response {
    let status = upstream.status();
    let headers = returned_response_headers(upstream.headers());
    respond(status, headers, Body::from_stream(upstream.bytes_stream()))
}

/// An answer whose body was read here (to look into a 401).
fn buffered(status: StatusCode, headers: &HeaderMap, body: Vec<u8>) -> Response {
    let mut headers = returned_response_headers(headers);
    headers.remove(header::CONTENT_LENGTH);
    respond(status, headers, Body::from(body))
}

fn respond(status: StatusCode, headers: HeaderMap, body: Body) -> Response {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

async fn read_limited(response: reqwest::Response, limit: usize) -> Vec<u8> {
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(Ok(chunk)) = stream.next().await {
        let room = limit.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= limit {
            break;
        }
    }
    body
}
