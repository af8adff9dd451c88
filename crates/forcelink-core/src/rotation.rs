//! What happens after a refresh request returns: commit the new tokens, or sort the failure
//! into its class, each with its own state change, event and log line.
//!
//! | class | connection | retried |
//! |---|---|---|
//! | dead grant (expired/revoked, inactive user/org) | needs_reauth | never |
//! | `token request is already being processed` | unchanged | after backoff, re-reading the store |
//! | IP block | health ip_blocked, still active | when asked again |
//! | 5xx / unreachable | health degraded | with backoff, a few times |
//! | timeout / lost answer | health outcome_unknown, in-flight kept | once, by recovery |
//! | `invalid_client` & co. | unchanged; one app-wide incident | no |

use std::time::Duration as StdDuration;

use chrono::Duration;
use serde_json::json;

use crate::broker::{Broker, BrokerError};
use crate::cache::IssuedToken;
use crate::connection::{Connection, ConnectionHealth, ConnectionState, RotationInFlight};
use crate::refresh::{Step, token_hash};
use crate::salesforce::{DeadGrantReason, SalesforceError, TokenResponse, verify_signature};
use crate::store::{
    CommitWrite, RefreshWrite, RotationEnd, RotationWrite, RotationWritten, SealedField, SealedRef,
};

/// Incident kind for an app-wide client misconfiguration.
pub const APP_MISCONFIGURED: &str = "app_misconfigured";
/// The cause recorded when a rotation's outcome was lost and the grant with it.
pub const ROTATION_OUTCOME_LOST: &str = "rotation outcome lost";

impl Broker {
    pub(crate) async fn rotated(
        &self,
        connection: &Connection,
        attempt: &RotationInFlight,
        response: TokenResponse,
        latency: StdDuration,
        heartbeat: bool,
    ) -> Step {
        let key = &connection.key;
        if !self.refresh_response_matches(connection, &response) {
            tracing::error!(connection = %key, "refresh response failed verification; tokens not stored");
            let cause = "refresh response failed verification";
            self.finish_attempt(
                connection,
                attempt,
                "verification_failed",
                None,
                Some(cause),
                latency,
            )
            .await;
            return Step::Fail(self.end_dead(connection, attempt, cause).await);
        }
        let now = self.clock.now();
        let issued_at = response.issued_at_time().unwrap_or(now);
        let expires_at = issued_at + self.settings.session_timeout;
        let write = RefreshWrite {
            access_token: self.seal(
                &SealedRef::connection(key, SealedField::AccessToken),
                response.access_token.expose(),
            ),
            access_issued_at: issued_at,
            access_expires_at: expires_at,
            refresh_token: response.refresh_token.as_ref().map(|token| {
                self.seal(
                    &SealedRef::connection(key, SealedField::RefreshToken),
                    token.expose(),
                )
            }),
            instance_url: response.instance_url.trim_end_matches('/').to_string(),
            refreshed_at: now,
            heartbeat_due_at: self.next_heartbeat_due(key, now),
        };
        let new_hash = response
            .refresh_token
            .as_ref()
            .map(|token| token_hash(token.expose()));
        let outcome = if new_hash.is_some() {
            "rotated"
        } else {
            "refreshed"
        };
        let instance_url = write.instance_url.clone();
        // The finished lineage entry and the lease release go with the commit, in its group.
        let commit = CommitWrite {
            key: key.clone(),
            expected_generation: connection.generation,
            attempt_id: attempt.attempt_id.clone(),
            lease_owner: self.settings.instance_id.clone(),
            attempt: self.finished_record(
                connection,
                attempt,
                outcome,
                new_hash.clone(),
                None,
                latency,
            ),
            write,
        };
        match self.rotations.write(RotationWrite::Commit(commit)).await {
            Ok(RotationWritten::Committed { generation }) => {
                crate::lineage::count_attempt(outcome, latency);
                if heartbeat {
                    tracing::debug!(
                        connection = %key,
                        generation,
                        rotated = response.refresh_token.is_some(),
                        latency_ms = latency.as_millis() as u64,
                        "heartbeat refreshed"
                    );
                } else {
                    tracing::info!(
                        connection = %key,
                        generation,
                        rotated = response.refresh_token.is_some(),
                        recovery = attempt.recovery,
                        latency_ms = latency.as_millis() as u64,
                        "refreshed"
                    );
                }
                if attempt.recovery || connection.health != ConnectionHealth::Ok {
                    self.emit(
                        "connection.recovered",
                        Some(key),
                        json!({ "generation": generation, "after": connection.health.as_str() }),
                    )
                    .await;
                }
                if self.incident_check_due()
                    && let Ok(true) = self.store.clear_incident(APP_MISCONFIGURED, now).await
                {
                    self.emit(
                        "app.recovered",
                        None,
                        json!({ "incident": APP_MISCONFIGURED }),
                    )
                    .await;
                }
                let token = IssuedToken {
                    access_token: response.access_token,
                    instance_url,
                    issued_at,
                    expires_at,
                    generation,
                };
                self.cache.put(key, &token);
                // Nobody waits for a heartbeat's access token: its expiry need not be learnt.
                if !heartbeat {
                    self.learn_expiry(
                        key,
                        generation,
                        &connection.login_host,
                        token.access_token.clone(),
                    );
                }
                Step::Committed(token)
            }
            Ok(other) => {
                // We held the lease and the in-flight record: this must not happen. The new
                // refresh token is not stored; recovery will find the record and settle it.
                tracing::error!(connection = %key, outcome = ?other, "commit of refreshed tokens was refused");
                self.finish_attempt(
                    connection,
                    attempt,
                    "commit_refused",
                    new_hash,
                    None,
                    latency,
                )
                .await;
                Step::Fail(BrokerError::OutcomeUnknown {
                    detail: "the refreshed tokens could not be committed".into(),
                })
            }
            Err(error) => {
                tracing::error!(connection = %key, %error, "commit of refreshed tokens failed");
                self.finish_attempt(
                    connection,
                    attempt,
                    "commit_failed",
                    new_hash,
                    None,
                    latency,
                )
                .await;
                Step::Fail(error.into())
            }
        }
    }

    fn refresh_response_matches(&self, connection: &Connection, response: &TokenResponse) -> bool {
        let ids_match = response
            .identity_ids()
            .is_some_and(|(org, user)| org == connection.key.org_id && user == connection.user_id);
        let signature_ok = match (&self.settings.client.client_secret, &response.signature) {
            (Some(secret), Some(signature)) => {
                verify_signature(secret, &response.id, &response.issued_at, signature)
            }
            (Some(_), None) => false,
            (None, _) => true,
        };
        ids_match && signature_ok
    }

    pub(crate) async fn rotation_failed(
        &self,
        connection: &Connection,
        attempt: &RotationInFlight,
        error: SalesforceError,
        latency: StdDuration,
    ) -> Step {
        let key = &connection.key;
        let class = error.class();
        tracing::warn!(connection = %key, class, recovery = attempt.recovery, %error, "refresh failed");
        self.finish_attempt(
            connection,
            attempt,
            class,
            None,
            Some(&error.to_string()),
            latency,
        )
        .await;
        match error {
            SalesforceError::GrantDead {
                reason,
                description,
            } => {
                let cause = if attempt.recovery && reason == DeadGrantReason::ExpiredOrRevoked {
                    ROTATION_OUTCOME_LOST.to_string()
                } else {
                    format!("{}: {description}", reason.code())
                };
                if !attempt.recovery && reason == DeadGrantReason::ExpiredOrRevoked {
                    self.check_compromise(connection, attempt).await;
                }
                Step::Fail(self.end_dead(connection, attempt, &cause).await)
            }
            SalesforceError::ConcurrentRequest => {
                // Not a failure: someone's request with this token is still at Salesforce. The
                // token was not consumed by ours; a recovery probe keeps its lost record.
                self.end(
                    connection,
                    attempt,
                    connection.health,
                    None,
                    attempt.recovery,
                )
                .await;
                Step::Concurrent
            }
            SalesforceError::IpBlocked { description } => {
                self.end(
                    connection,
                    attempt,
                    ConnectionHealth::IpBlocked,
                    Some(&description),
                    attempt.recovery,
                )
                .await;
                if connection.health != ConnectionHealth::IpBlocked {
                    self.emit(
                        "connection.ip_blocked",
                        Some(key),
                        json!({ "description": description, "egress": self.settings.egress }),
                    )
                    .await;
                }
                Step::Fail(BrokerError::IpBlocked {
                    key: key.clone(),
                    description,
                })
            }
            SalesforceError::AppMisconfigured { error, description } => {
                self.end(
                    connection,
                    attempt,
                    connection.health,
                    None,
                    attempt.recovery,
                )
                .await;
                let detail = format!("{error}: {description}");
                self.suspect_incident();
                if let Ok(true) = self
                    .store
                    .raise_incident(APP_MISCONFIGURED, &detail, self.clock.now())
                    .await
                {
                    tracing::error!(%detail, "salesforce refuses the app's client credentials: fix salesforce.client_id / client_secret");
                    self.emit(
                        "app.misconfigured",
                        None,
                        json!({ "error": error, "description": description }),
                    )
                    .await;
                }
                Step::Fail(BrokerError::AppMisconfigured { detail })
            }
            SalesforceError::OutcomeUnknown { detail } => {
                self.end(
                    connection,
                    attempt,
                    ConnectionHealth::OutcomeUnknown,
                    Some(&detail),
                    true,
                )
                .await;
                if connection.health != ConnectionHealth::OutcomeUnknown {
                    self.emit(
                        "connection.outcome_unknown",
                        Some(key),
                        json!({ "attempt_id": attempt.attempt_id, "detail": detail }),
                    )
                    .await;
                }
                Step::Retry {
                    after: self.settings.in_flight_window,
                    why: "the outcome of a refresh is unknown",
                }
            }
            SalesforceError::Unavailable { detail, .. } => {
                self.end(
                    connection,
                    attempt,
                    ConnectionHealth::Degraded,
                    Some(&detail),
                    attempt.recovery,
                )
                .await;
                if connection.health == ConnectionHealth::Ok {
                    self.emit(
                        "connection.refresh_failed",
                        Some(key),
                        json!({ "class": class, "detail": detail }),
                    )
                    .await;
                }
                Step::Transient(BrokerError::Unavailable { detail })
            }
            other => {
                let detail = other.to_string();
                self.end(
                    connection,
                    attempt,
                    ConnectionHealth::Degraded,
                    Some(&detail),
                    attempt.recovery,
                )
                .await;
                Step::Fail(BrokerError::Protocol { detail })
            }
        }
    }

    /// Ends a rotation without tokens; a recovery probe that did not settle keeps its record.
    async fn end(
        &self,
        connection: &Connection,
        attempt: &RotationInFlight,
        health: ConnectionHealth,
        detail: Option<&str>,
        keep_in_flight: bool,
    ) {
        let end = RotationEnd {
            health,
            health_detail: detail.map(str::to_string),
            state: None,
            keep_in_flight,
            now: self.clock.now(),
        };
        if let Err(error) = self
            .store
            .end_rotation(&connection.key, &attempt.attempt_id, &end)
            .await
        {
            tracing::error!(connection = %connection.key, %error, "ending a rotation failed; recovery will settle it");
        }
    }

    /// Marks the grant dead (clearing the in-flight record) and says so.
    async fn end_dead(
        &self,
        connection: &Connection,
        attempt: &RotationInFlight,
        cause: &str,
    ) -> BrokerError {
        let key = &connection.key;
        let end = RotationEnd {
            health: ConnectionHealth::Ok,
            health_detail: None,
            state: Some((ConnectionState::NeedsReauth, cause.to_string())),
            keep_in_flight: false,
            now: self.clock.now(),
        };
        if let Err(error) = self
            .store
            .end_rotation(key, &attempt.attempt_id, &end)
            .await
        {
            return BrokerError::Store(error);
        }
        self.cache.forget(key);
        tracing::warn!(connection = %key, cause, "connection needs re-authorization");
        self.emit(
            "connection.needs_reauth",
            Some(key),
            json!({ "cause": cause }),
        )
        .await;
        BrokerError::NeedsReauth {
            key: key.clone(),
            cause: cause.to_string(),
        }
    }

    /// Marks a connection dead outside a rotation.
    pub(crate) async fn mark_dead_now(&self, connection: &Connection, cause: &str) -> BrokerError {
        let now = self.clock.now();
        let key = &connection.key;
        match self
            .store
            .set_state(
                key,
                Some(connection.generation),
                ConnectionState::NeedsReauth,
                Some(cause),
                now,
            )
            .await
        {
            Ok(_) => {
                self.cache.forget(key);
                self.emit(
                    "connection.needs_reauth",
                    Some(key),
                    json!({ "cause": cause }),
                )
                .await;
                BrokerError::NeedsReauth {
                    key: key.clone(),
                    cause: cause.to_string(),
                }
            }
            Err(error) => BrokerError::Store(error),
        }
    }

    /// How long ago the refresh token was last used successfully.
    pub(crate) fn idle_for(&self, connection: &Connection) -> Duration {
        self.clock.now() - connection.last_refresh_at.unwrap_or(connection.created_at)
    }
}
