//! Which headers cross the proxy: hop-by-hop headers (and those named in `Connection`) never
//! do; the agent's credentials, cookies and forwarding headers do not go up; `Set-Cookie`
//! does not come back.

use axum::http::header::{self, HeaderMap, HeaderName};

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

/// `headers` without the hop-by-hop ones and without those `also_dropped` names.
fn end_to_end(headers: &HeaderMap, also_dropped: impl Fn(&str) -> bool) -> HeaderMap {
    let listed = connection_listed(headers);
    let mut out = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        let text = name.as_str();
        let dropped =
            is_hop_by_hop(name) || listed.iter().any(|listed| listed == text) || also_dropped(text);
        if !dropped {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

/// What of the agent's request goes upstream.
pub(super) fn forwarded_request_headers(incoming: &HeaderMap) -> HeaderMap {
    end_to_end(incoming, |name| {
        matches!(
            name,
            "host" | "authorization" | "cookie" | "x-sfdc-session" | "expect" | "forwarded"
        ) || name.starts_with("x-forwarded-")
            || name.starts_with("x-forcelink-")
    })
}

/// What of Salesforce's answer goes back.
pub(super) fn returned_response_headers(upstream: &HeaderMap) -> HeaderMap {
    end_to_end(upstream, |name| name == "set-cookie")
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

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
