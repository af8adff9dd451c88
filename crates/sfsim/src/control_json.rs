//! JSON shapes of the control API: request bodies (app spec, settings patch, fault) and the
//! renderings of orgs, users, apps, counters and recorded requests. Conversion only; no state.

use std::net::IpAddr;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::faults::{Fault, FaultKind, FaultTarget};
use crate::model::{
    App, AppSettings, AppSpec, Counters, Org, RecordedRequest, RefreshTokenPolicy, SimError, User,
};

#[derive(Debug, Deserialize)]
pub(crate) struct AppBody {
    name: Option<String>,
    #[serde(default)]
    callback_urls: Vec<String>,
    #[serde(default)]
    settings: Option<SettingsPatch>,
}

impl AppBody {
    pub(crate) fn into_spec(self) -> Result<AppSpec, SimError> {
        let mut settings = AppSettings::default();
        if let Some(patch) = self.settings {
            patch.apply(&mut settings)?;
        }
        Ok(AppSpec {
            name: self.name.unwrap_or_else(|| "sfsim app".to_owned()),
            callback_urls: self.callback_urls,
            settings,
        })
    }
}

/// `{"type":"infinite"|"zero"|"specific_inactivity"|"specific_lifetime","seconds":N}`.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum PolicyBody {
    Infinite,
    Zero,
    SpecificInactivity { seconds: u64 },
    SpecificLifetime { seconds: u64 },
}

/// Any subset of the app settings; durations in seconds.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SettingsPatch {
    callback_urls: Option<Vec<String>>,
    pkce_required: Option<bool>,
    allow_plain_pkce: Option<bool>,
    missing_challenge_method_is_plain: Option<bool>,
    rotation: Option<bool>,
    consumer_secret_optional: Option<bool>,
    public_client_secret_rejected: Option<bool>,
    secret_required_for_refresh: Option<bool>,
    refresh_token_policy: Option<PolicyBody>,
    idle_ttl_limit: Option<bool>,
    /// `null` clears it; `[["127.0.0.1","127.0.0.2"], …]` sets inclusive ranges.
    #[serde(default)]
    refresh_ip_allowlist: Option<Value>,
    ip_block_error: Option<(String, String)>,
    session_timeout_seconds: Option<u64>,
    introspect_all_tokens: Option<bool>,
    concurrent_request_revokes_family: Option<bool>,
    max_grants_per_user: Option<usize>,
    code_ttl_seconds: Option<u64>,
}

macro_rules! set_if_some {
    ($settings:ident, $patch:ident, $($field:ident),*) => {
        $(if let Some(value) = $patch.$field { $settings.$field = value; })*
    };
}

impl SettingsPatch {
    pub(crate) fn apply(self, settings: &mut AppSettings) -> Result<(), SimError> {
        let patch = self;
        if let Some(allowlist) = &patch.refresh_ip_allowlist {
            settings.refresh_ip_allowlist = parse_allowlist(allowlist)?;
        }
        if let Some(policy) = &patch.refresh_token_policy {
            settings.refresh_token_policy = match policy {
                PolicyBody::Infinite => RefreshTokenPolicy::Infinite,
                PolicyBody::Zero => RefreshTokenPolicy::Zero,
                PolicyBody::SpecificInactivity { seconds } => {
                    RefreshTokenPolicy::SpecificInactivity(Duration::from_secs(*seconds))
                }
                PolicyBody::SpecificLifetime { seconds } => {
                    RefreshTokenPolicy::SpecificLifetime(Duration::from_secs(*seconds))
                }
            };
        }
        if let Some(seconds) = patch.session_timeout_seconds {
            settings.session_timeout = Duration::from_secs(seconds);
        }
        if let Some(seconds) = patch.code_ttl_seconds {
            settings.code_ttl = Duration::from_secs(seconds);
        }
        set_if_some!(
            settings,
            patch,
            callback_urls,
            pkce_required,
            allow_plain_pkce,
            missing_challenge_method_is_plain,
            rotation,
            consumer_secret_optional,
            public_client_secret_rejected,
            secret_required_for_refresh,
            idle_ttl_limit,
            ip_block_error,
            introspect_all_tokens,
            concurrent_request_revokes_family,
            max_grants_per_user
        );
        Ok(())
    }
}

fn parse_allowlist(value: &Value) -> Result<Option<Vec<(IpAddr, IpAddr)>>, SimError> {
    if value.is_null() {
        return Ok(None);
    }
    serde_json::from_value::<Vec<(IpAddr, IpAddr)>>(value.clone())
        .map(Some)
        .map_err(|error| SimError::Invalid(format!("refresh_ip_allowlist: {error}")))
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum KindBody {
    DelayBeforeProcessing { seconds: f64 },
    DelayAfterProcessing { seconds: f64 },
    Status { status: u16 },
    DelayThenStatus { seconds: f64, status: u16 },
    HoldThenStatus { status: u16 },
    RotateThenHold,
    DropAfterProcessing,
    TamperIdentity,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum TargetBody {
    TokenRefresh,
    TokenAuthorizationCode,
    AnyToken,
    Revoke,
    Rest,
    Identity,
}

#[derive(Debug, Deserialize)]
pub(crate) struct FaultBody {
    target: TargetBody,
    org_id: Option<String>,
    consumer_key: Option<String>,
    kind: KindBody,
    times: Option<u32>,
}

impl FaultBody {
    pub(crate) fn into_fault(self) -> Result<Fault, SimError> {
        let seconds = |seconds: f64| {
            Duration::try_from_secs_f64(seconds)
                .map_err(|_| SimError::Invalid("seconds must be a non-negative number".to_owned()))
        };
        let kind = match self.kind {
            KindBody::DelayBeforeProcessing { seconds: s } => {
                FaultKind::DelayBeforeProcessing(seconds(s)?)
            }
            KindBody::DelayAfterProcessing { seconds: s } => {
                FaultKind::DelayAfterProcessing(seconds(s)?)
            }
            KindBody::Status { status } => FaultKind::Status(status),
            KindBody::HoldThenStatus { status } => FaultKind::HoldThenStatus(status),
            KindBody::RotateThenHold => FaultKind::RotateThenHold,
            KindBody::DelayThenStatus { seconds: s, status } => {
                FaultKind::DelayThenStatus(seconds(s)?, status)
            }
            KindBody::DropAfterProcessing => FaultKind::DropAfterProcessing,
            KindBody::TamperIdentity => FaultKind::TamperIdentity,
        };
        let target = match self.target {
            TargetBody::TokenRefresh => FaultTarget::TokenRefresh,
            TargetBody::TokenAuthorizationCode => FaultTarget::TokenAuthorizationCode,
            TargetBody::AnyToken => FaultTarget::AnyToken,
            TargetBody::Revoke => FaultTarget::Revoke,
            TargetBody::Rest => FaultTarget::Rest,
            TargetBody::Identity => FaultTarget::Identity,
        };
        Ok(Fault {
            target,
            org_id: self.org_id,
            consumer_key: self.consumer_key,
            kind,
            times: self.times,
        })
    }
}

pub(crate) fn org_json(org: &Org) -> Value {
    json!({
        "org_id": org.org_id, "name": org.name, "sandbox": org.sandbox,
        "my_domain": org.my_domain, "instance_url": org.instance_url, "login_url": org.login_url,
    })
}

pub(crate) fn user_json(user: &User) -> Value {
    json!({"user_id": user.user_id, "org_id": user.org_id, "username": user.username})
}

fn policy_json(policy: RefreshTokenPolicy) -> Value {
    match policy {
        RefreshTokenPolicy::Infinite => json!({"type": "infinite"}),
        RefreshTokenPolicy::Zero => json!({"type": "zero"}),
        RefreshTokenPolicy::SpecificInactivity(window) => {
            json!({"type": "specific_inactivity", "seconds": window.as_secs()})
        }
        RefreshTokenPolicy::SpecificLifetime(lifetime) => {
            json!({"type": "specific_lifetime", "seconds": lifetime.as_secs()})
        }
    }
}

pub(crate) fn app_json(app: &App) -> Value {
    let s = &app.settings;
    json!({
        "consumer_key": app.consumer_key,
        "consumer_secret": app.consumer_secret,
        "name": app.name,
        "settings": {
            "callback_urls": s.callback_urls,
            "pkce_required": s.pkce_required,
            "allow_plain_pkce": s.allow_plain_pkce,
            "missing_challenge_method_is_plain": s.missing_challenge_method_is_plain,
            "rotation": s.rotation,
            "consumer_secret_optional": s.consumer_secret_optional,
            "public_client_secret_rejected": s.public_client_secret_rejected,
            "secret_required_for_refresh": s.secret_required_for_refresh,
            "refresh_token_policy": policy_json(s.refresh_token_policy),
            "idle_ttl_limit": s.idle_ttl_limit,
            "refresh_ip_allowlist": s.refresh_ip_allowlist,
            "ip_block_error": s.ip_block_error,
            "session_timeout_seconds": s.session_timeout.as_secs(),
            "introspect_all_tokens": s.introspect_all_tokens,
            "concurrent_request_revokes_family": s.concurrent_request_revokes_family,
            "max_grants_per_user": s.max_grants_per_user,
            "code_ttl_seconds": s.code_ttl.as_secs(),
        },
    })
}

pub(crate) fn counters_json(c: &Counters) -> Value {
    json!({
        "code_exchanges": c.code_exchanges, "refresh_grants": c.refresh_grants,
        "refresh_failures": c.refresh_failures, "reuse_detections": c.reuse_detections,
        "concurrent_rejections": c.concurrent_rejections, "revocations": c.revocations,
        "ip_blocks": c.ip_blocks, "rest_calls": c.rest_calls,
        "rest_unauthorized": c.rest_unauthorized,
    })
}

pub(crate) fn request_json(request: &RecordedRequest) -> Value {
    json!({
        "host": request.host, "method": request.method,
        "path_and_query": request.path_and_query, "headers": request.headers,
        "peer": request.peer.to_string(),
    })
}
