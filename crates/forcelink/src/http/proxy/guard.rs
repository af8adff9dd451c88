//! What the proxy may reach: the raw path after the org must be a plain `/services/...` path,
//! and the upstream URL is rebuilt from the connection's instance origin and checked to stay
//! on it. Nothing here does IO.

use axum::http::StatusCode;

use crate::http::error::ApiError;

pub(super) fn invalid_path(message: &str) -> ApiError {
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
}
