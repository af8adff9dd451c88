//! Test harness: a fresh sim with one production org, one user and one app per test, and small
//! HTTP helpers that drive the real endpoints with reqwest (no redirects followed). Helpers only;
//! no assertions about behaviour live here.

use std::net::IpAddr;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::StatusCode;
use serde_json::Value;
use sfsim::{App, AppSettings, AppSpec, Org, OrgSpec, Sim, User, UserSpec};
use sha2::{Digest, Sha256};

pub const CALLBACK: &str = "https://broker.example.com/oauth/callback";

#[derive(Debug)]
pub struct World {
    pub sim: Sim,
    pub org: Org,
    pub user: User,
    pub app: App,
    pub client: reqwest::Client,
}

pub fn client() -> reqwest::Client {
    client_from(None)
}

pub fn client_from(local_address: Option<IpAddr>) -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .local_address(local_address)
        .build()
        .unwrap()
}

pub async fn world() -> World {
    world_with(AppSettings::default()).await
}

pub async fn world_with(settings: AppSettings) -> World {
    let sim = Sim::start().await.unwrap();
    let org = sim
        .create_org(OrgSpec {
            name: "Acme".to_owned(),
            my_domain: "acme".to_owned(),
            seed_accounts: 7,
            seed_contacts_per_account: 2,
            ..OrgSpec::default()
        })
        .await
        .unwrap();
    let user = sim
        .create_user(&org.org_id, UserSpec::named("admin@acme.example.com"))
        .unwrap();
    let app = sim.create_app(AppSpec {
        name: "Broker".to_owned(),
        callback_urls: vec![CALLBACK.to_owned()],
        settings,
    });
    World {
        sim,
        org,
        user,
        app,
        client: client(),
    }
}

/// A PKCE pair (verifier, S256 challenge).
pub fn pkce() -> (String, String) {
    let verifier = format!("verifier-{}", uuid_like());
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

fn uuid_like() -> String {
    use rand::RngExt;
    let mut rng = rand::rng();
    (0..48)
        .map(|_| char::from(b"abcdefghijklmnopqrstuvwxyz0123456789"[rng.random_range(0..36)]))
        .collect()
}

/// Query parameters of a Location header.
pub fn location_params(response: &reqwest::Response) -> Vec<(String, String)> {
    let location = response
        .headers()
        .get("location")
        .unwrap()
        .to_str()
        .unwrap();
    url::Url::parse(location)
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

pub fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

impl World {
    /// GET authorize on `host` with these extra parameters (client_id and redirect_uri added).
    pub async fn authorize_raw(&self, host: &str, extra: &[(&str, &str)]) -> reqwest::Response {
        let mut query: Vec<(&str, &str)> = vec![
            ("response_type", "code"),
            ("client_id", &self.app.consumer_key),
            ("redirect_uri", CALLBACK),
        ];
        query.extend_from_slice(extra);
        self.client
            .get(format!("{host}/services/oauth2/authorize"))
            .query(&query)
            .send()
            .await
            .unwrap()
    }

    /// A code for `username` on `host` with PKCE; returns (code, verifier).
    pub async fn code_as(&self, host: &str, username: &str, scope: &str) -> (String, String) {
        let (verifier, challenge) = pkce();
        let response = self
            .authorize_raw(
                host,
                &[
                    ("scope", scope),
                    ("state", "xyz"),
                    ("login_hint", username),
                    ("code_challenge", &challenge),
                    ("code_challenge_method", "S256"),
                ],
            )
            .await;
        assert_eq!(response.status(), StatusCode::FOUND);
        let params = location_params(&response);
        assert_eq!(param(&params, "state"), Some("xyz"));
        (param(&params, "code").unwrap().to_owned(), verifier)
    }

    pub async fn code(&self) -> (String, String) {
        self.code_as(
            &self.sim.production_login_url(),
            &self.user.username,
            "api refresh_token",
        )
        .await
    }

    /// POST the token endpoint with a form.
    pub async fn token_with(
        &self,
        client: &reqwest::Client,
        host: &str,
        form: &[(&str, &str)],
    ) -> (StatusCode, Value) {
        let response = client
            .post(format!("{host}/services/oauth2/token"))
            .form(form)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body = response.json::<Value>().await.unwrap_or(Value::Null);
        (status, body)
    }

    pub async fn exchange(&self, code: &str, verifier: &str) -> (StatusCode, Value) {
        self.exchange_with(&self.client, code, verifier).await
    }

    pub async fn exchange_with(
        &self,
        client: &reqwest::Client,
        code: &str,
        verifier: &str,
    ) -> (StatusCode, Value) {
        self.token_with(
            client,
            &self.sim.production_login_url(),
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("client_id", &self.app.consumer_key),
                ("client_secret", &self.app.consumer_secret),
                ("redirect_uri", CALLBACK),
                ("code_verifier", verifier),
            ],
        )
        .await
    }

    /// Authorize + exchange; returns the token response.
    pub async fn tokens(&self) -> Value {
        let (code, verifier) = self.code().await;
        let (status, body) = self.exchange(&code, &verifier).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    pub async fn refresh(&self, refresh_token: &str) -> (StatusCode, Value) {
        self.refresh_with(&self.client, refresh_token).await
    }

    pub async fn refresh_with(
        &self,
        client: &reqwest::Client,
        refresh_token: &str,
    ) -> (StatusCode, Value) {
        self.token_with(
            client,
            &self.sim.production_login_url(),
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
                ("client_id", &self.app.consumer_key),
                ("client_secret", &self.app.consumer_secret),
            ],
        )
        .await
    }

    /// GET on the org's instance with a bearer token.
    pub async fn rest(&self, path: &str, access_token: &str) -> (StatusCode, Value) {
        let response = self
            .client
            .get(format!("{}{path}", self.org.instance_url))
            .bearer_auth(access_token)
            .send()
            .await
            .unwrap();
        let status = response.status();
        (
            status,
            response.json::<Value>().await.unwrap_or(Value::Null),
        )
    }
}

pub fn text<'a>(body: &'a Value, field: &str) -> &'a str {
    body[field].as_str().unwrap_or_default()
}

/// Asserts an OAuth error body.
pub fn assert_oauth_error(status: StatusCode, body: &Value, error: &str, description: &str) {
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(text(body, "error"), error, "{body}");
    assert_eq!(text(body, "error_description"), description, "{body}");
}
