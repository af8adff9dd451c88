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
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::{Method, StatusCode, Version};
use axum::response::{IntoResponse, Response};
use forcelink_core::{
    AccessToken, Capability, ConnectionContext, ConnectionKey, IssuedToken, OrgId,
};
use futures_util::StreamExt;
use tokio::sync::Mutex;

use crate::config::Config;
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

fn invalid_path(message: &str) -> ApiError {
    ApiError::bad_request("invalid_proxy_path", message)
}

/// Checks the raw (still percent-encoded) path that follows the org: `/services/...` made of
/// plain segments only.
pub fn check_path(raw: &str) -> Result<(), ApiError> {
    if !raw.starts_with("/services/") {
        return Err(invalid_path(
            "only Salesforce API paths under /services/ are proxied",
        ));
    }
    let segments: Vec<&str> = raw.split('/').skip(1).collect();
    let last = segments.len().saturating_sub(1);
    for (position, segment) in segments.into_iter().enumerate() {
        if segment.is_empty() && position != last {
            return Err(invalid_path("empty path segments (//) are not allowed"));
        }
        if segment == "." || segment == ".." {
            return Err(invalid_path("dot segments (. and ..) are not allowed"));
        }
        if segment.contains('\\') {
            return Err(invalid_path("backslashes are not allowed in the path"));
        }
        let bytes = segment.as_bytes();
        let mut index = 0;
        while let Some(offset) = bytes[index..].iter().position(|&b| b == b'%') {
            let at = index + offset;
            let hex = bytes.get(at + 1..at + 3).ok_or_else(|| {
                invalid_path("a % in the path must start a percent-encoding (%XX)")
            })?;
            let decoded = std::str::from_utf8(hex)
                .ok()
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                .ok_or_else(|| {
                    invalid_path("a % in the path must start a percent-encoding (%XX)")
                })?;
            if matches!(decoded, b'/' | b'\\' | b'.' | b'%') || decoded < 0x20 || decoded == 0x7f {
                return Err(invalid_path(
                    "encoded slashes, backslashes, dots, percent signs and control characters \
                     are not allowed in the path",
                ));
            }
            index = at + 3;
        }
    }
    Ok(())
}

/// The full upstream URL: the instance's origin, the checked path, the query as sent. Refuses
/// anything that would not stay on that origin under that path.
pub fn target_url(
    instance_url: &str,
    path: &str,
    query: Option<&str>,
) -> Result<url::Url, ApiError> {
    let base = url::Url::parse(instance_url).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            "invalid_instance_url",
            "the connection's instance URL is not a URL",
        )
    })?;
    let origin = base.origin().ascii_serialization();
    let mut text = format!("{origin}{path}");
    if let Some(query) = query {
        text.push('?');
        text.push_str(query);
    }
    let target = url::Url::parse(&text).map_err(|_| invalid_path("the path is not valid"))?;
    if target.origin() != base.origin() || target.path() != path {
        return Err(invalid_path(
            "the path would leave the connection's instance",
        ));
    }
    Ok(target)
}

fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

/// Header names listed in `Connection`, which are hop-by-hop too.
fn connection_listed(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|name| name.trim().to_ascii_lowercase())
        .filter(|name| !name.is_empty())
        .collect()
}

/// What of the agent's request goes upstream.
fn forwarded_request_headers(incoming: &HeaderMap) -> HeaderMap {
    let listed = connection_listed(incoming);
    let mut out = HeaderMap::with_capacity(incoming.len());
    for (name, value) in incoming {
        let text = name.as_str();
        let dropped = is_hop_by_hop(name)
            || listed.iter().any(|listed| listed == text)
            || matches!(
                text,
                "host" | "authorization" | "cookie" | "x-sfdc-session" | "expect" | "forwarded"
            )
            || text.starts_with("x-forwarded-")
            || text.starts_with("x-forcelink-");
        if !dropped {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

/// What of Salesforce's answer goes back.
fn returned_response_headers(upstream: &HeaderMap) -> HeaderMap {
    let listed = connection_listed(upstream);
    let mut out = HeaderMap::with_capacity(upstream.len());
    for (name, value) in upstream {
        let text = name.as_str();
        let dropped = is_hop_by_hop(name)
            || listed.iter().any(|listed| listed == text)
            || text == "set-cookie";
        if !dropped {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

/// The request body, kept while it streams so it can be sent again once.
#[derive(Debug)]
struct Replay {
    state: Mutex<ReplayState>,
    limit: u64,
}

#[derive(Debug)]
struct ReplayState {
    source: Option<axum::body::BodyDataStream>,
    chunks: Vec<Bytes>,
    total: u64,
    exceeded: bool,
}

impl Replay {
    fn new(body: Body, limit: u64) -> Arc<Replay> {
        Arc::new(Replay {
            state: Mutex::new(ReplayState {
                source: Some(body.into_data_stream()),
                chunks: Vec::new(),
                total: 0,
                exceeded: false,
            }),
            limit,
        })
    }

    /// A body that yields what was kept, then goes on reading the agent's request.
    fn body(self: &Arc<Replay>) -> reqwest::Body {
        let stream =
            futures_util::stream::unfold((self.clone(), 0usize), |(replay, index)| async move {
                let mut state = replay.state.lock().await;
                if let Some(chunk) = state.chunks.get(index).cloned() {
                    drop(state);
                    return Some((Ok(chunk), (replay, index + 1)));
                }
                let next = state.source.as_mut()?.next().await;
                match next {
                    Some(Ok(chunk)) => {
                        state.total += chunk.len() as u64;
                        if state.total > replay.limit {
                            state.exceeded = true;
                            state.source = None;
                            drop(state);
                            return Some((
                                Err(std::io::Error::other("request body too large")),
                                (replay, index),
                            ));
                        }
                        state.chunks.push(chunk.clone());
                        drop(state);
                        Some((Ok(chunk), (replay, index + 1)))
                    }
                    Some(Err(error)) => {
                        state.source = None;
                        drop(state);
                        Some((Err(std::io::Error::other(error)), (replay, index)))
                    }
                    None => {
                        state.source = None;
                        None
                    }
                }
            });
        reqwest::Body::wrap_stream(stream)
    }

    async fn exceeded(&self) -> bool {
        self.state.lock().await.exceeded
    }
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
    let body = Body::from_stream(upstream.bytes_stream());
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

fn buffered(status: StatusCode, headers: &HeaderMap, body: Vec<u8>) -> Response {
    let mut headers = returned_response_headers(headers);
    headers.remove(header::CONTENT_LENGTH);
    let mut response = Response::new(Body::from(body));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_services_paths_pass() {
        for path in [
            "/services/data/v59.0/query",
            "/services/data/v59.0/query/",
            "/services/data/v59.0/sobjects/Account/001000000000001AAA",
            "/services/data/v59.0/query/01gXX-2000",
            "/services/apexrest/My%20Class/x",
            "/services/data/v59.0/sobjects/Account/Name:Acme",
        ] {
            check_path(path).unwrap_or_else(|error| panic!("{path}: {}", error.message));
        }
    }

    #[test]
    fn escapes_and_other_prefixes_are_refused() {
        for path in [
            "/services/../secret",
            "/services/data/../../x",
            "/services/./data",
            "/services/%2e%2e/x",
            "/services/%2E%2E/x",
            "/services/data%2fv59.0",
            "/services/data%2F..%2Fx",
            "/services/data%5cx",
            "/services/data\\x",
            "/services//evil.example.com/x",
            "/services/data//x/",
            "/services/data%252e%252e",
            "/services/data%00",
            "/services/data%zz",
            "/services/data%2",
            "/other/data",
            "/servicesx/data",
            "//evil.example.com/services/data",
            "",
        ] {
            assert!(check_path(path).is_err(), "{path} should be refused");
        }
    }

    #[test]
    fn the_target_stays_on_the_instance_origin() {
        let url = target_url(
            "https://acme.my.salesforce.com/ignored/path",
            "/services/data/v59.0/query",
            Some("q=SELECT+Id+FROM+Account"),
        )
        .unwrap();
        assert_eq!(
            url.as_str(),
            "https://acme.my.salesforce.com/services/data/v59.0/query?q=SELECT+Id+FROM+Account"
        );
        let url = target_url("http://127.0.0.1:4000", "/services/data", None).unwrap();
        assert_eq!(url.as_str(), "http://127.0.0.1:4000/services/data");
        // Userinfo or a host in the "path" never moves the origin.
        assert!(target_url("https://a.example", "@evil.example/services", None).is_err());
    }

    #[test]
    fn hop_by_hop_credentials_and_cookies_are_dropped() {
        let mut incoming = HeaderMap::new();
        for (name, value) in [
            ("authorization", "Bearer flk_agent_x"),
            ("cookie", "sid=1"),
            ("host", "forcelink"),
            ("connection", "keep-alive, x-custom-hop"),
            ("x-custom-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("x-forwarded-for", "10.0.0.1"),
            ("x-forcelink-context", "api"),
            ("x-sfdc-session", "flk_agent_x"),
            ("accept", "application/json"),
            ("sforce-query-options", "batchSize=200"),
            ("content-type", "application/json"),
        ] {
            incoming.append(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        let out = forwarded_request_headers(&incoming);
        let names: Vec<&str> = out.keys().map(HeaderName::as_str).collect();
        assert_eq!(names, ["accept", "sforce-query-options", "content-type"]);

        let mut upstream = HeaderMap::new();
        upstream.append("set-cookie", HeaderValue::from_static("BrowserId=1"));
        upstream.append("transfer-encoding", HeaderValue::from_static("chunked"));
        upstream.append(
            "sforce-limit-info",
            HeaderValue::from_static("api-usage=1/15000"),
        );
        let back = returned_response_headers(&upstream);
        let names: Vec<&str> = back.keys().map(HeaderName::as_str).collect();
        assert_eq!(names, ["sforce-limit-info"]);
    }
}
