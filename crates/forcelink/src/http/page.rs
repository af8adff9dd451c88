//! The small HTML pages the admin sees after the Salesforce sign-in. Every dynamic value is
//! escaped; no script, no external assets.

use axum::http::StatusCode;
use axum::response::Response;
use forcelink_core::Connected;

use crate::http::connect::html;

pub fn escape(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '&' => "&amp;".to_string(),
            '<' => "&lt;".to_string(),
            '>' => "&gt;".to_string(),
            '"' => "&quot;".to_string(),
            '\'' => "&#39;".to_string(),
            other => other.to_string(),
        })
        .collect()
}

fn layout(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:40rem;margin:4rem auto;padding:0 1rem;line-height:1.5}}\
         h1{{font-size:1.4rem}}dt{{font-weight:600}}</style></head><body>{body}</body></html>",
        title = escape(title)
    )
}

pub fn success(connected: &Connected) -> Response {
    let connection = &connected.connection;
    let headline = if connected.reconnected {
        "Salesforce reconnected"
    } else {
        "Salesforce connected"
    };
    let mut note = String::from("You can close this window.");
    if connected.reconnected {
        note = format!(
            "The earlier grant of this org was replaced{}. {note}",
            if connected.old_grant_revoke_failed {
                " (revoking it at Salesforce failed; it will expire unused)"
            } else {
                " and revoked at Salesforce"
            }
        );
    }
    let body = format!(
        "<h1>{headline}</h1><p>forcelink now holds a connection to your org.</p><dl>\
         <dt>Org</dt><dd>{org}</dd><dt>Authorized by</dt><dd>{user}</dd><dt>Instance</dt><dd>{instance}</dd>\
         <dt>Context</dt><dd>{ctx}</dd></dl><p>{note}</p>",
        org = escape(connection.key.org_id.as_str()),
        user = escape(&connection.username),
        instance = escape(&connection.instance_url),
        ctx = escape(connection.key.context.as_str()),
        note = escape(&note),
    );
    html(StatusCode::OK, layout(headline, &body))
}

pub fn failure(status: StatusCode, title: &str, text: &str) -> Response {
    let body = format!("<h1>{}</h1><p>{}</p>", escape(title), escape(text));
    html(status, layout(title, &body))
}
