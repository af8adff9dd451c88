//! `Sim`, the public Rust control surface: start the hosts, create orgs/users/apps, flip switches,
//! move the clock, inject faults and read counters and recorded requests. Every method is a thin
//! locked edit of the shared state; no OAuth decision is made here.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use crate::clock::SimClock;
use crate::faults::Fault;
use crate::model::{
    App, AppSettings, AppSpec, Counters, Org, OrgSpec, RecordedRequest, SimError, User, UserSpec,
};
use crate::rest::data::OrgData;
use crate::server::{self, Host, HostKind, Inner};
use crate::state::{OrgRecord, State, UserRecord};

/// A running simulator. Cheap to clone; all clones drive the same world.
#[derive(Debug, Clone)]
pub struct Sim {
    inner: Arc<Inner>,
}

impl Sim {
    /// Binds the production and sandbox login hosts on 127.0.0.1 ephemeral ports.
    pub async fn start() -> std::io::Result<Sim> {
        let (production_listener, production_url) = server::bind().await?;
        let (sandbox_listener, sandbox_url) = server::bind().await?;
        let (shutdown, _) = watch::channel(false);
        let inner = Arc::new(Inner {
            state: Mutex::new(State::default()),
            clock: SimClock::default(),
            production_url: production_url.clone(),
            sandbox_url: sandbox_url.clone(),
            shutdown,
            tasks: Mutex::new(Vec::new()),
            holds: watch::channel(0).0,
        });
        server::serve(
            &inner,
            production_listener,
            Host {
                kind: HostKind::Production,
                base_url: production_url,
            },
        );
        server::serve(
            &inner,
            sandbox_listener,
            Host {
                kind: HostKind::Sandbox,
                base_url: sandbox_url,
            },
        );
        Ok(Sim { inner })
    }

    pub(crate) fn from_inner(inner: Arc<Inner>) -> Sim {
        Sim { inner }
    }

    /// Stands for https://login.salesforce.com.
    pub fn production_login_url(&self) -> String {
        self.inner.production_url.clone()
    }

    /// Stands for https://test.salesforce.com.
    pub fn sandbox_login_url(&self) -> String {
        self.inner.sandbox_url.clone()
    }

    /// Creates an org, seeds its data and starts its My Domain listener.
    pub async fn create_org(&self, spec: OrgSpec) -> std::io::Result<Org> {
        let (listener, instance_url) = server::bind().await?;
        let org_id = crate::ids::record_id("00D");
        let login_url = if spec.sandbox {
            self.sandbox_login_url()
        } else {
            self.production_login_url()
        };
        let org = Org {
            org_id: org_id.clone(),
            name: spec.name.clone(),
            sandbox: spec.sandbox,
            my_domain: spec.my_domain.clone(),
            instance_url: instance_url.clone(),
            login_url,
        };
        let data = OrgData::seed(
            spec.seed_accounts,
            spec.seed_contacts_per_account,
            self.inner.clock.now_ms(),
        );
        self.inner.state().orgs.insert(
            org_id.clone(),
            OrgRecord {
                org: org.clone(),
                active: true,
                data,
            },
        );
        server::serve(
            &self.inner,
            listener,
            Host {
                kind: HostKind::MyDomain(org_id),
                base_url: instance_url,
            },
        );
        Ok(org)
    }

    pub fn org(&self, org_id: &str) -> Option<Org> {
        self.inner
            .state()
            .orgs
            .get(org_id)
            .map(|record| record.org.clone())
    }

    pub fn orgs(&self) -> Vec<Org> {
        let mut orgs: Vec<Org> = self
            .inner
            .state()
            .orgs
            .values()
            .map(|record| record.org.clone())
            .collect();
        orgs.sort_by(|a, b| a.name.cmp(&b.name));
        orgs
    }

    /// Creates a user in an org. Usernames are unique across the whole sim, as on Salesforce.
    pub fn create_user(&self, org_id: &str, spec: UserSpec) -> Result<User, SimError> {
        let mut state = self.inner.state();
        if !state.orgs.contains_key(org_id) {
            return Err(SimError::UnknownOrg(org_id.to_owned()));
        }
        if spec.username.is_empty() {
            return Err(SimError::Invalid("username is empty".to_owned()));
        }
        if state.user_by_username(&spec.username).is_some() {
            return Err(SimError::DuplicateUsername(spec.username));
        }
        let user = User {
            user_id: crate::ids::record_id("005"),
            org_id: org_id.to_owned(),
            username: spec.username.clone(),
        };
        let display_name = if spec.display_name.is_empty() {
            spec.username
                .split('@')
                .next()
                .unwrap_or_default()
                .to_owned()
        } else {
            spec.display_name
        };
        let email = if spec.email.is_empty() {
            spec.username.clone()
        } else {
            spec.email
        };
        state.users.insert(
            user.user_id.clone(),
            UserRecord {
                user: user.clone(),
                display_name,
                email,
                active: true,
            },
        );
        Ok(user)
    }

    /// Creates an app with fresh consumer key and secret; it is installed in every org.
    pub fn create_app(&self, spec: AppSpec) -> App {
        let mut settings = spec.settings;
        if settings.callback_urls.is_empty() {
            settings.callback_urls = spec.callback_urls;
        }
        let app = App {
            consumer_key: crate::ids::consumer_key(),
            consumer_secret: crate::ids::consumer_secret(),
            name: spec.name,
            settings,
        };
        self.inner
            .state()
            .apps
            .insert(app.consumer_key.clone(), app.clone());
        app
    }

    /// Changes an app's settings; takes effect on the next request.
    pub fn update_app(
        &self,
        consumer_key: &str,
        change: impl FnOnce(&mut AppSettings),
    ) -> Result<(), SimError> {
        let mut state = self.inner.state();
        let app = state
            .apps
            .get_mut(consumer_key)
            .ok_or_else(|| SimError::UnknownApp(consumer_key.to_owned()))?;
        change(&mut app.settings);
        Ok(())
    }

    pub fn app(&self, consumer_key: &str) -> Option<App> {
        self.inner.state().apps.get(consumer_key).cloned()
    }

    pub fn set_user_active(&self, user_id: &str, active: bool) -> Result<(), SimError> {
        let mut state = self.inner.state();
        let user = state
            .users
            .get_mut(user_id)
            .ok_or_else(|| SimError::UnknownUser(user_id.to_owned()))?;
        user.active = active;
        Ok(())
    }

    pub fn set_org_active(&self, org_id: &str, active: bool) -> Result<(), SimError> {
        let mut state = self.inner.state();
        let org = state
            .orgs
            .get_mut(org_id)
            .ok_or_else(|| SimError::UnknownOrg(org_id.to_owned()))?;
        org.active = active;
        Ok(())
    }

    /// Who "logs in" at authorize when the request has no `login_hint`.
    pub fn set_default_approver(&self, username: Option<&str>) {
        self.inner.state().default_approver = username.map(str::to_owned);
    }

    /// The next authorize request redirects with `error=access_denied`.
    pub fn set_next_authorize_denied(&self, denied: bool) {
        self.inner.state().next_authorize_denied = denied;
    }

    pub fn advance_clock(&self, by: Duration) {
        self.inner.clock.advance(by);
    }

    /// The sim clock, epoch milliseconds.
    pub fn now_ms(&self) -> i64 {
        self.inner.clock.now_ms()
    }

    /// Adds a fault; returns its id.
    pub fn add_fault(&self, fault: Fault) -> u64 {
        self.inner.state().faults.add(fault)
    }

    /// Lets every request held by a `HoldThenStatus` or `RotateThenHold` fault go on.
    pub fn release_holds(&self) {
        self.inner.holds.send_modify(|generation| *generation += 1);
    }

    pub fn clear_faults(&self) {
        self.inner.state().faults.clear();
    }

    /// Totals over all orgs and apps.
    pub fn counters(&self) -> Counters {
        self.inner.state().counters
    }

    pub fn counters_for(&self, org_id: &str, consumer_key: &str) -> Counters {
        self.inner
            .state()
            .counters_by
            .get(&(org_id.to_owned(), consumer_key.to_owned()))
            .copied()
            .unwrap_or_default()
    }

    /// The most recent requests (up to 10,000), oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.inner.state().requests.iter().cloned().collect()
    }

    /// Live grants holding a refresh token for (org, app).
    pub fn active_refresh_tokens(&self, org_id: &str, consumer_key: &str) -> usize {
        self.inner
            .state()
            .grants
            .values()
            .filter(|grant| {
                !grant.revoked
                    && grant.current_refresh.is_some()
                    && grant.org_id == org_id
                    && grant.consumer_key == consumer_key
            })
            .count()
    }

    /// Refresh requests currently holding their in-flight slot (for tests that must act during
    /// a `DelayBeforeProcessing`).
    pub fn refreshes_in_flight(&self) -> usize {
        self.inner.state().in_flight.len()
    }

    /// Stops accepting and closes open connections on every host.
    pub fn shutdown(&self) {
        let _ = self.inner.shutdown.send(true);
        let tasks = std::mem::take(
            &mut *self
                .inner
                .tasks
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        for task in tasks {
            task.abort();
        }
    }
}
