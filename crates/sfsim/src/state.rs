//! The simulator's whole mutable world behind one mutex: orgs, users, apps, authorization codes,
//! grants (token families), access tokens, counters, recorded requests and faults.
//! Plain synchronous data and bookkeeping helpers; the lock is never held across an await and
//! nothing here does IO.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Mutex, MutexGuard};

use crate::clock::SimClock;
use crate::faults::FaultBook;
use crate::model::{App, Counters, Org, RecordedRequest, User};
use crate::rest::data::OrgData;

/// How many requests `requests()` keeps.
pub(crate) const REQUEST_LOG_CAP: usize = 10_000;

#[derive(Debug)]
pub(crate) struct OrgRecord {
    pub(crate) org: Org,
    pub(crate) active: bool,
    pub(crate) data: OrgData,
}

#[derive(Debug, Clone)]
pub(crate) struct UserRecord {
    pub(crate) user: User,
    pub(crate) display_name: String,
    pub(crate) email: String,
    pub(crate) active: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct CodeRecord {
    pub(crate) consumer_key: String,
    pub(crate) redirect_uri: String,
    /// (challenge, method) where method is `S256` or `plain`.
    pub(crate) challenge: Option<(String, String)>,
    pub(crate) user_id: String,
    pub(crate) org_id: String,
    pub(crate) scopes: Vec<String>,
    pub(crate) expires_ms: i64,
    pub(crate) used: bool,
}

/// One approval: a refresh-token family and the access tokens issued from it.
#[derive(Debug, Clone)]
pub(crate) struct Grant {
    pub(crate) org_id: String,
    pub(crate) user_id: String,
    pub(crate) consumer_key: String,
    pub(crate) scopes: Vec<String>,
    pub(crate) current_refresh: Option<String>,
    pub(crate) created_ms: i64,
    pub(crate) last_used_ms: i64,
    pub(crate) revoked: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct RefreshEntry {
    pub(crate) grant_id: u64,
    /// Replaced by rotation; presenting it again is reuse.
    pub(crate) rotated_out: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct AccessRecord {
    pub(crate) grant_id: u64,
    pub(crate) org_id: String,
    pub(crate) user_id: String,
    pub(crate) consumer_key: String,
    pub(crate) scopes: Vec<String>,
    pub(crate) issued_ms: i64,
    pub(crate) expires_ms: i64,
    pub(crate) revoked: bool,
}

#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) orgs: HashMap<String, OrgRecord>,
    pub(crate) users: HashMap<String, UserRecord>,
    pub(crate) apps: HashMap<String, App>,
    pub(crate) codes: HashMap<String, CodeRecord>,
    pub(crate) grants: HashMap<u64, Grant>,
    pub(crate) next_grant_id: u64,
    pub(crate) refresh_tokens: HashMap<String, RefreshEntry>,
    pub(crate) access_tokens: HashMap<String, AccessRecord>,
    /// Refresh tokens whose refresh request is being processed right now.
    pub(crate) in_flight: HashSet<String>,
    pub(crate) counters: Counters,
    pub(crate) counters_by: HashMap<(String, String), Counters>,
    pub(crate) requests: VecDeque<RecordedRequest>,
    pub(crate) faults: FaultBook,
    pub(crate) default_approver: Option<String>,
    pub(crate) next_authorize_denied: bool,
    pub(crate) query_cursors: HashMap<String, crate::rest::query::Cursor>,
}

impl State {
    /// Bumps a counter in the totals and, when both are known, for (org, app).
    pub(crate) fn count(
        &mut self,
        org_id: Option<&str>,
        consumer_key: Option<&str>,
        bump: impl Fn(&mut Counters),
    ) {
        bump(&mut self.counters);
        if let (Some(org_id), Some(consumer_key)) = (org_id, consumer_key) {
            let entry = self
                .counters_by
                .entry((org_id.to_owned(), consumer_key.to_owned()))
                .or_default();
            bump(entry);
        }
    }

    pub(crate) fn user_by_username(&self, username: &str) -> Option<&UserRecord> {
        self.users
            .values()
            .find(|record| record.user.username.eq_ignore_ascii_case(username))
    }

    /// Revokes a whole family: its current refresh token and every access token issued from it.
    pub(crate) fn revoke_grant(&mut self, grant_id: u64) {
        if let Some(grant) = self.grants.get_mut(&grant_id) {
            grant.revoked = true;
            grant.current_refresh = None;
        }
        for access in self.access_tokens.values_mut() {
            if access.grant_id == grant_id {
                access.revoked = true;
            }
        }
    }

    /// Creates a grant and returns its id; enforces the per-(user, app) cap by revoking the
    /// oldest live grants that hold a refresh token.
    pub(crate) fn create_grant(&mut self, grant: Grant, max_grants_per_user: usize) -> u64 {
        let holds_refresh = grant.current_refresh.is_some();
        let (user_id, consumer_key) = (grant.user_id.clone(), grant.consumer_key.clone());
        self.next_grant_id += 1;
        let grant_id = self.next_grant_id;
        if let Some(refresh) = &grant.current_refresh {
            self.refresh_tokens.insert(
                refresh.clone(),
                RefreshEntry {
                    grant_id,
                    rotated_out: false,
                },
            );
        }
        self.grants.insert(grant_id, grant);
        if holds_refresh {
            let mut live: Vec<u64> = self
                .grants
                .iter()
                .filter(|(_, g)| {
                    !g.revoked
                        && g.current_refresh.is_some()
                        && g.user_id == user_id
                        && g.consumer_key == consumer_key
                })
                .map(|(id, _)| *id)
                .collect();
            live.sort_unstable();
            let cap = max_grants_per_user.max(1);
            while live.len() > cap {
                let oldest = live.remove(0);
                self.revoke_grant(oldest);
            }
        }
        grant_id
    }

    /// Issues an access token for a grant.
    pub(crate) fn issue_access_token(
        &mut self,
        grant_id: u64,
        now_ms: i64,
        lifetime_ms: i64,
    ) -> Option<String> {
        let grant = self.grants.get(&grant_id)?;
        let token = crate::ids::access_token(&grant.org_id);
        let record = AccessRecord {
            grant_id,
            org_id: grant.org_id.clone(),
            user_id: grant.user_id.clone(),
            consumer_key: grant.consumer_key.clone(),
            scopes: grant.scopes.clone(),
            issued_ms: now_ms,
            expires_ms: now_ms.saturating_add(lifetime_ms),
            revoked: false,
        };
        self.access_tokens.insert(token.clone(), record);
        Some(token)
    }

    /// A live access token (known, not revoked, not expired, its org active).
    pub(crate) fn live_access(&self, token: &str, clock: &SimClock) -> Option<&AccessRecord> {
        let record = self.access_tokens.get(token)?;
        let org_active = self.orgs.get(&record.org_id).is_some_and(|org| org.active);
        let user_active = self
            .users
            .get(&record.user_id)
            .is_some_and(|user| user.active);
        (!record.revoked && record.expires_ms > clock.now_ms() && org_active && user_active)
            .then_some(record)
    }

    pub(crate) fn record_request(&mut self, request: RecordedRequest) {
        if self.requests.len() >= REQUEST_LOG_CAP {
            self.requests.pop_front();
        }
        self.requests.push_back(request);
    }
}

/// Locks the state, recovering from a poisoned lock (a panicking test thread must not wedge it).
pub(crate) fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
