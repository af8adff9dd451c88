//! `forcelink doctor`: checks the live configuration and says what is wrong and how to fix it.
//!
//! Each check yields findings (ok / warn / fail, a summary and a fix). The command exits 1 when
//! any finding fails. Checks read the store and reach the login hosts through the declared
//! egress; they change nothing.

mod checks;
mod webhooks;

use std::sync::Arc;

use forcelink_core::{Clock, StoreError};
use serde::Serialize;

use crate::app;
use crate::config::Config;

/// How a check came out, in rising severity (so the worst of several is their `max`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

/// One thing the doctor found.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub check: &'static str,
    pub status: Status,
    pub summary: String,
    pub fix: Option<String>,
}

impl Finding {
    pub fn ok(check: &'static str, summary: impl Into<String>) -> Self {
        Self {
            check,
            status: Status::Ok,
            summary: summary.into(),
            fix: None,
        }
    }
    pub fn warn(check: &'static str, summary: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            check,
            status: Status::Warn,
            summary: summary.into(),
            fix: Some(fix.into()),
        }
    }
    pub fn fail(check: &'static str, summary: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            check,
            status: Status::Fail,
            summary: summary.into(),
            fix: Some(fix.into()),
        }
    }
}

/// Runs every check. Stops early when the config or the store is unusable.
pub async fn run(config: &Config, clock: Arc<dyn Clock>) -> Vec<Finding> {
    let mut findings = Vec::new();
    if let Err(error) = config.validate_for_serve() {
        findings.push(Finding::fail(
            "config",
            format!("{error:#}"),
            "fix the setting named above",
        ));
        return findings;
    }
    findings.push(Finding::ok("config", "the configuration is valid"));
    // As found: the doctor creates no file and migrates nothing.
    let wiring = match app::wire_for(config, clock.clone(), app::StoreOpening::AsFound).await {
        Ok(wiring) => wiring,
        Err(error) => {
            let newer = error
                .chain()
                .any(|cause| matches!(cause.downcast_ref(), Some(StoreError::Migration(_))));
            findings.push(Finding::fail(
                "store",
                format!("{error:#}"),
                if newer {
                    "run the doctor of the build that migrated the store, or a later one"
                } else {
                    "check store.url and that the database is up"
                },
            ));
            return findings;
        }
    };
    let broker = wiring.broker.clone();
    match broker.store().ping().await {
        Ok(()) => findings.push(Finding::ok("store", "the store is reachable and migrated")),
        Err(error) => {
            findings.push(Finding::fail(
                "store",
                error.to_string(),
                "start `forcelink serve` of this build once to migrate the store (doctor never \
                 changes it), or check store.url",
            ));
            return findings;
        }
    }
    findings.push(checks::key_ring(&broker).await);
    let reachability = checks::login_hosts(config, &broker).await;
    findings.extend(reachability.findings);
    findings.push(checks::clock_skew(&reachability.skews));
    findings.push(checks::egress(config));
    findings.push(checks::heartbeat(config));
    let connections = broker.store().connections().await.unwrap_or_default();
    findings.push(checks::pkce_and_rotation(&connections));
    findings.push(checks::ip_blocks(&broker, &connections).await);
    findings.push(checks::at_risk(config, clock.now(), &connections));
    findings.push(checks::incidents(&broker).await);
    findings.push(webhooks::webhooks(config, &broker, clock.now()).await);
    findings
}

/// 1 when anything failed.
pub fn exit_code(findings: &[Finding]) -> u8 {
    u8::from(findings.iter().any(|f| f.status == Status::Fail))
}

/// Human-readable report.
pub fn print(findings: &[Finding]) {
    for finding in findings {
        let mark = match finding.status {
            Status::Ok => "ok  ",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        };
        println!("[{mark}] {:<18} {}", finding.check, finding.summary);
        if let Some(fix) = finding
            .fix
            .as_ref()
            .filter(|_| finding.status != Status::Ok)
        {
            println!("       {:<18} fix: {fix}", "");
        }
    }
}
