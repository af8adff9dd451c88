//! The individual doctor checks. Each reads, never writes, and phrases its fix for an operator.

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use forcelink_core::{Broker, Connection, ConnectionHealth, ConnectionState, LoginHost};

use super::Finding;
use crate::config::Config;

pub(super) async fn key_ring(broker: &Arc<Broker>) -> Finding {
    match broker.ring_health().await {
        Ok(health) if health.unopenable > 0 => Finding::fail(
            "key_ring",
            format!(
                "{} of {} sealed values cannot be opened",
                health.unopenable, health.examined
            ),
            "a key that sealed them is missing from [keys.ring]: add it back",
        ),
        Ok(health) if health.old_key > 0 => Finding::warn(
            "key_ring",
            format!(
                "{} of {} sealed values are under an older key",
                health.old_key, health.examined
            ),
            "run `forcelink keys rotate`, then remove the old key",
        ),
        Ok(health) => Finding::ok(
            "key_ring",
            format!(
                "all {} sealed values open under the active key",
                health.examined
            ),
        ),
        Err(error) => Finding::fail(
            "key_ring",
            error.to_string(),
            "check the store and the key ring",
        ),
    }
}

/// What reaching the login hosts found, and the clock skew each answer showed.
pub(super) struct Reachability {
    pub findings: Vec<Finding>,
    pub skews: Vec<(String, Duration)>,
}

pub(super) async fn login_hosts(config: &Config, broker: &Arc<Broker>) -> Reachability {
    let mut hosts: BTreeSet<String> = BTreeSet::new();
    let salesforce = &config.salesforce;
    for url in [
        &salesforce.production_login_url,
        &salesforce.sandbox_login_url,
    ]
    .into_iter()
    .chain(&salesforce.extra_login_urls)
    {
        if let Some(host) = LoginHost::parse(url) {
            hosts.insert(host.origin());
        }
    }
    for connection in broker.store().connections().await.unwrap_or_default() {
        hosts.insert(connection.login_host.origin());
    }
    let egress = crate::app::egress_label(config).unwrap_or_else(|| "the default route".into());
    let mut builder = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .local_address(config.egress.bind_address);
    if let Some(proxy) = config
        .egress
        .proxy
        .as_deref()
        .and_then(|p| reqwest::Proxy::all(p).ok())
    {
        builder = builder.proxy(proxy);
    }
    let mut reachability = Reachability {
        findings: Vec::new(),
        skews: Vec::new(),
    };
    let Ok(client) = builder.build() else {
        reachability.findings.push(Finding::fail(
            "login_hosts",
            "cannot build an HTTP client for the egress",
            "check [egress]",
        ));
        return reachability;
    };
    let mut unreachable = Vec::new();
    for host in &hosts {
        let sent_at = broker.clock().now();
        match client
            .get(format!("{host}/.well-known/openid-configuration"))
            .send()
            .await
        {
            Ok(response) => {
                let date = response
                    .headers()
                    .get("date")
                    .and_then(|d| d.to_str().ok())
                    .and_then(|d| DateTime::parse_from_rfc2822(d).ok());
                if let Some(date) = date {
                    reachability
                        .skews
                        .push((host.clone(), date.with_timezone(&Utc) - sent_at));
                }
            }
            Err(error) => unreachable.push(format!(
                "{host} ({})",
                if error.is_timeout() {
                    "timeout"
                } else {
                    "no connection"
                }
            )),
        }
    }
    reachability.findings.push(if unreachable.is_empty() {
        Finding::ok("login_hosts", format!("{} login hosts reachable via {egress}", hosts.len()))
    } else {
        Finding::fail(
            "login_hosts",
            format!("unreachable via {egress}: {}", unreachable.join(", ")),
            "check DNS, firewall and [egress] (bind_address must be an address of this host; proxy must accept CONNECT)",
        )
    });
    reachability
}

pub(super) fn clock_skew(skews: &[(String, Duration)]) -> Finding {
    let Some((host, worst)) = skews
        .iter()
        .max_by_key(|(_, skew)| skew.num_seconds().abs())
    else {
        return Finding::warn(
            "clock_skew",
            "no Date header seen from any login host",
            "make a login host reachable",
        );
    };
    let seconds = worst.num_seconds();
    let summary = format!("largest skew {seconds:+} s against {host}");
    match seconds.abs() {
        0..=30 => Finding::ok("clock_skew", summary),
        31..=300 => Finding::warn("clock_skew", summary, "synchronize this host's clock (NTP)"),
        _ => Finding::fail(
            "clock_skew",
            summary,
            "synchronize this host's clock (NTP): expiry and heartbeat math depend on it",
        ),
    }
}

pub(super) fn egress(config: &Config) -> Finding {
    let egress = &config.egress;
    let mut parts = Vec::new();
    if let Some(address) = egress.bind_address {
        parts.push(format!("bound to {address}"));
    }
    if let Some(proxy) = &egress.proxy {
        parts.push(format!("through proxy {proxy}"));
    }
    if egress.declared_ips.is_empty() {
        Finding::warn(
            "egress",
            format!(
                "token traffic leaves {}; no public egress IPs declared",
                if parts.is_empty() {
                    "by the default route".into()
                } else {
                    parts.join(", ")
                }
            ),
            "set egress.declared_ips to the public IPs org admins must put in the refresh-token IP allow list",
        )
    } else {
        Finding::ok(
            "egress",
            format!(
                "admins must allow: {} ({})",
                egress.declared_ips.join(", "),
                parts.join(", ")
            ),
        )
    }
}

pub(super) fn heartbeat(config: &Config) -> Finding {
    if let Err(error) = config.validate_heartbeat() {
        return Finding::fail(
            "heartbeat",
            format!("{error:#}"),
            "lower heartbeat.interval_hours",
        );
    }
    if !config.heartbeat.enabled {
        return Finding::warn(
            "heartbeat",
            "the heartbeat is disabled: refresh tokens unused for the idle TTL will die",
            "set heartbeat.enabled = true on at least one instance",
        );
    }
    Finding::ok(
        "heartbeat",
        format!(
            "every {} h, idle TTL {} days",
            config.heartbeat.interval_hours, config.refresh.idle_ttl_days
        ),
    )
}

pub(super) fn pkce_and_rotation(connections: &[Connection]) -> Finding {
    let without_pkce = connections.iter().filter(|c| !c.pkce).count();
    let refreshed: Vec<&Connection> = connections
        .iter()
        .filter(|c| c.last_refresh_at.is_some())
        .collect();
    let unrotated: Vec<&str> = refreshed
        .iter()
        .filter(|c| !c.rotation_seen)
        .map(|c| c.key.org_id.as_str())
        .collect();
    if without_pkce > 0 {
        return Finding::fail(
            "pkce_rotation",
            format!("{without_pkce} connections were granted without PKCE"),
            "reconnect them",
        );
    }
    if !unrotated.is_empty() {
        return Finding::fail(
            "pkce_rotation",
            format!(
                "Salesforce refreshed without rotating the refresh token for {} connections ({})",
                unrotated.len(),
                unrotated.join(", ")
            ),
            "enable Refresh Token Rotation on the Connected App / External Client App (required since 2026)",
        );
    }
    if refreshed.is_empty() {
        return Finding::ok(
            "pkce_rotation",
            format!(
                "PKCE on all {} grants; no refresh seen yet to observe rotation",
                connections.len()
            ),
        );
    }
    Finding::ok(
        "pkce_rotation",
        format!(
            "PKCE on all grants; rotation observed on all {} refreshed",
            refreshed.len()
        ),
    )
}

pub(super) async fn ip_blocks(broker: &Arc<Broker>, connections: &[Connection]) -> Finding {
    let blocked: Vec<&Connection> = connections
        .iter()
        .filter(|c| c.health == ConnectionHealth::IpBlocked)
        .collect();
    if blocked.is_empty() {
        return Finding::ok("ip_allow_list", "no refresh blocked by an IP allow list");
    }
    let mut named = Vec::new();
    for connection in &blocked {
        let egress = broker
            .store()
            .attempts(&connection.key, 1)
            .await
            .ok()
            .and_then(|attempts| attempts.into_iter().next())
            .and_then(|attempt| attempt.egress)
            .unwrap_or_else(|| "the default route".into());
        let detail = connection
            .health_detail
            .as_deref()
            .unwrap_or("ip restricted");
        named.push(format!(
            "{} ({detail}, from {egress})",
            connection.key.org_id
        ));
    }
    Finding::fail(
        "ip_allow_list",
        format!(
            "refreshes blocked by IP for {} connections: {}",
            blocked.len(),
            named.join("; ")
        ),
        "ask each org admin to add forcelink's egress IPs to the External Client App's refresh-token IP allow list, or restore the egress they allow; the grants recover without reconnecting",
    )
}

pub(super) fn at_risk(config: &Config, now: DateTime<Utc>, connections: &[Connection]) -> Finding {
    let idle_ttl = Duration::days(i64::from(config.refresh.idle_ttl_days));
    let dead = connections
        .iter()
        .filter(|c| c.state == ConnectionState::NeedsReauth)
        .count();
    let risky: Vec<String> = connections
        .iter()
        .filter(|c| {
            c.state == ConnectionState::Active
                && now - c.refresh_token_used_at > idle_ttl - Duration::days(7)
        })
        .map(|c| {
            format!(
                "{} ({} days idle)",
                c.key.org_id,
                (now - c.refresh_token_used_at).num_days()
            )
        })
        .collect();
    if !risky.is_empty() {
        return Finding::warn(
            "at_risk",
            format!(
                "{} connections within 7 days of the idle TTL: {}",
                risky.len(),
                risky.join(", ")
            ),
            "check the heartbeat is running and not blocked (ip_allow_list); their tokens die unused",
        );
    }
    if dead > 0 {
        return Finding::warn(
            "at_risk",
            format!("{dead} connections need re-authorization"),
            "send their admins the reconnect URL",
        );
    }
    Finding::ok(
        "at_risk",
        format!("{} connections, none at risk", connections.len()),
    )
}

pub(super) async fn incidents(broker: &Arc<Broker>) -> Finding {
    let active: Vec<String> = broker
        .store()
        .incidents()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|i| i.active)
        .map(|i| {
            format!(
                "{} since {} ({})",
                i.kind,
                i.since.format("%Y-%m-%d %H:%M"),
                i.detail
            )
        })
        .collect();
    if active.is_empty() {
        Finding::ok("incidents", "no app-wide incident")
    } else {
        Finding::fail(
            "incidents",
            active.join("; "),
            "fix salesforce.client_id / client_secret to match the app",
        )
    }
}
