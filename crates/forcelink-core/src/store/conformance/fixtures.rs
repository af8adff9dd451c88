//! Shared fixtures of the conformance checks: a key ring, fixed times, ids, and builders for
//! pending authorizations, grants, refresh writes, rotation records and lineage entries. Also
//! re-exports what every check uses.

pub(super) use std::sync::Arc;

pub(super) use chrono::{DateTime, Duration, TimeZone, Utc};

pub(super) use crate::connection::{
    Connection, ConnectionHealth, ConnectionState, Lease, RotationInFlight, SealedTokens,
};
pub(super) use crate::ids::{ConnectionContext, ConnectionKey, OrgId, UserId};
pub(super) use crate::salesforce::LoginHost;
pub(super) use crate::store::{
    CommitOutcome, EventFilter, GrantWrite, LeaseOutcome, NewEvent, PendingAuthorization,
    RefreshAttempt, RefreshWrite, RotationEnd, SealedField, SealedRef, SealedValue, Store,
};
pub(super) use crate::vault::{KeyRing, Sealed};

/// How far after a grant or refresh the fixtures schedule the next heartbeat.
pub(super) const HEARTBEAT: Duration = Duration::days(14);

pub(super) fn ring() -> KeyRing {
    let key = KeyRing::generate_key();
    KeyRing::new([("k1", &key)], "k1").unwrap()
}

/// A fixed instant with a millisecond part, `seconds` after it.
pub(super) fn at(seconds: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(1_800_000_000_123).unwrap() + Duration::seconds(seconds)
}

pub(super) fn org(raw15: &str) -> OrgId {
    OrgId::parse(raw15).unwrap()
}

pub(super) fn key(org_raw: &str, context: &str) -> ConnectionKey {
    ConnectionKey::new(org(org_raw), ConnectionContext::parse(context).unwrap())
}

pub(super) fn host(url: &str) -> LoginHost {
    LoginHost::parse(url).unwrap()
}

pub(super) fn seal_for(
    ring: &KeyRing,
    key: &ConnectionKey,
    field: SealedField,
    plain: &str,
) -> Sealed {
    ring.seal(plain.as_bytes(), &SealedRef::connection(key, field).aad())
}

pub(super) fn open_text(ring: &KeyRing, reference: &SealedRef, sealed: &Sealed) -> String {
    ring.open(sealed, &reference.aad())
        .unwrap()
        .into_string()
        .unwrap()
}

pub(super) fn pending(
    ring: &KeyRing,
    hash: &str,
    created: DateTime<Utc>,
    expires: DateTime<Utc>,
) -> PendingAuthorization {
    PendingAuthorization {
        state_hash: hash.to_string(),
        verifier: ring.seal(b"verifier-plaintext", &SealedRef::pending(hash).aad()),
        expected_org: Some(org("00D000000000062")),
        context: ConnectionContext::api(),
        login_host: host("https://login.salesforce.com"),
        redirect_uri: "https://broker.example/callback".to_string(),
        created_at: created,
        expires_at: expires,
    }
}

pub(super) fn grant(
    ring: &KeyRing,
    key: &ConnectionKey,
    tag: &str,
    now: DateTime<Utc>,
) -> GrantWrite {
    GrantWrite {
        key: key.clone(),
        user_id: UserId::parse("005000000000001").unwrap(),
        username: format!("admin-{tag}@example.com"),
        instance_url: format!("https://{tag}.my.salesforce.com"),
        login_host: host("https://test.salesforce.com:8443"),
        identity_url: format!(
            "https://login.salesforce.com/id/{}/005000000000001AAA",
            key.org_id
        ),
        scopes: vec!["api".to_string(), "refresh_token".to_string()],
        pkce: true,
        signature_verified: true,
        tokens: SealedTokens {
            access_token: seal_for(
                ring,
                key,
                SealedField::AccessToken,
                &format!("access-{tag}"),
            ),
            access_issued_at: now,
            access_expires_at: now + Duration::hours(2),
            refresh_token: Some(seal_for(
                ring,
                key,
                SealedField::RefreshToken,
                &format!("refresh-{tag}"),
            )),
        },
        now,
        heartbeat_due_at: now + HEARTBEAT,
    }
}

pub(super) fn refresh(
    ring: &KeyRing,
    key: &ConnectionKey,
    tag: &str,
    rotated: bool,
    now: DateTime<Utc>,
) -> RefreshWrite {
    RefreshWrite {
        access_token: seal_for(
            ring,
            key,
            SealedField::AccessToken,
            &format!("access-{tag}"),
        ),
        access_issued_at: now,
        access_expires_at: now + Duration::hours(2),
        refresh_token: rotated.then(|| {
            seal_for(
                ring,
                key,
                SealedField::RefreshToken,
                &format!("refresh-{tag}"),
            )
        }),
        instance_url: format!("https://{tag}.my.salesforce.com"),
        refreshed_at: now,
        heartbeat_due_at: now + HEARTBEAT,
    }
}

pub(super) fn committed(outcome: CommitOutcome) -> Connection {
    match outcome {
        CommitOutcome::Committed(connection) => connection,
        other => panic!("expected a commit, got {other:?}"),
    }
}

pub(super) fn acquired(outcome: LeaseOutcome) -> Connection {
    match outcome {
        LeaseOutcome::Acquired(connection) => connection,
        other => panic!("expected the lease, got {other:?}"),
    }
}

/// Saves a first grant for `key` at `at(0)` and returns it.
pub(super) async fn connected(
    store: &Arc<dyn Store>,
    ring: &KeyRing,
    key: &ConnectionKey,
) -> Connection {
    store
        .save_grant(&grant(ring, key, "one", at(0)))
        .await
        .unwrap()
        .connection
}

/// The stored connection, which must exist.
pub(super) async fn stored(store: &Arc<dyn Store>, key: &ConnectionKey) -> Connection {
    store.connection(key).await.unwrap().unwrap()
}

pub(super) fn flight(attempt_id: &str, owner: &str, started_at: DateTime<Utc>) -> RotationInFlight {
    RotationInFlight {
        attempt_id: attempt_id.to_string(),
        owner: owner.to_string(),
        started_at,
        old_refresh_hash: format!("sha256-presented-by-{attempt_id}"),
        recovery: false,
    }
}

pub(super) fn ending(
    health: ConnectionHealth,
    keep_in_flight: bool,
    now: DateTime<Utc>,
) -> RotationEnd {
    RotationEnd {
        health,
        health_detail: Some(format!("{health} detail")),
        state: None,
        keep_in_flight,
        now,
    }
}

/// A finished lineage entry with every optional field set.
pub(super) fn attempt(
    attempt_id: &str,
    key: &ConnectionKey,
    old_hash: &str,
    started_at: DateTime<Utc>,
) -> RefreshAttempt {
    RefreshAttempt {
        attempt_id: attempt_id.to_string(),
        org_id: key.org_id.clone(),
        context: key.context.clone(),
        instance: "forcelink-a".to_string(),
        started_at,
        finished_at: Some(started_at + Duration::milliseconds(250)),
        old_refresh_hash: old_hash.to_string(),
        new_refresh_hash: Some(format!("{old_hash}-next")),
        latency_ms: Some(250),
        outcome: "rotated".to_string(),
        detail: Some("{\"status\":200}".to_string()),
        egress: Some("203.0.113.7".to_string()),
        recovery: true,
    }
}
