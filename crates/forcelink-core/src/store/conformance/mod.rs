//! The store conformance suite: behaviour every `Store` adapter must show, as a list of
//! backend-agnostic checks that each adapter's tests run against a fresh, empty store.
//!
//! Compiled only with the `test-support` feature. Checks build their data with a real
//! `KeyRing` and fixed times (never the wall clock) and assert with panics. This module must
//! not know about any database, and must not depend on state left by another check.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod agents;
mod at_risk;
mod commits;
mod events;
mod fixtures;
mod grants;
mod groups;
mod heartbeat;
mod leases;
mod lineage;
mod pending;
mod rotation;
mod sealed;
mod state;
mod webhook_deliveries;
mod webhook_retries;
mod webhooks;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::store::Store;

use agents::*;
use at_risk::*;
use commits::*;
use events::*;
use grants::*;
use groups::*;
use heartbeat::*;
use leases::*;
use lineage::*;
use pending::*;
use rotation::*;
use sealed::*;
use state::*;
use webhook_deliveries::*;
use webhook_retries::*;
use webhooks::*;

/// A boxed check future.
pub type CheckFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// One named behaviour; `run` panics when the store does not show it.
#[derive(Debug, Clone, Copy)]
pub struct Check {
    pub name: &'static str,
    pub run: fn(Arc<dyn Store>) -> CheckFuture,
}

macro_rules! check {
    ($name:ident) => {
        Check {
            name: stringify!($name),
            run: |store| Box::pin($name(store)),
        }
    };
}

/// Every check. Each expects a fresh, empty store of its own.
pub fn checks() -> Vec<Check> {
    vec![
        check!(ping_succeeds_on_a_fresh_store),
        check!(pending_round_trips_and_is_single_use),
        check!(expired_pending_is_removed_and_not_returned),
        check!(concurrent_takes_of_one_pending_yield_exactly_one),
        check!(purge_removes_only_expired_pending),
        check!(first_grant_round_trips_every_field_at_generation_one),
        check!(second_grant_replaces_in_place_and_returns_old_tokens),
        check!(grant_for_another_context_is_a_separate_connection),
        check!(commit_refresh_with_current_generation_commits),
        check!(commit_refresh_without_refresh_token_keeps_the_stored_one),
        check!(commit_refresh_with_stale_generation_changes_nothing),
        check!(commit_refresh_of_missing_connection_reports_missing),
        check!(concurrent_commits_with_one_generation_have_one_winner),
        check!(set_state_honours_expected_generation),
        check!(access_expiry_is_fenced_by_generation),
        check!(delete_returns_the_record_once),
        check!(connections_are_ordered_by_org_then_context_bytewise),
        check!(sealed_values_page_through_every_value_exactly_once),
        check!(replace_sealed_is_a_compare_and_swap),
        check!(stored_tokens_never_contain_the_plaintext),
        check!(fresh_connection_is_healthy_unleased_and_idle),
        check!(lease_is_exclusive_until_it_expires),
        check!(renew_and_release_are_owner_checked),
        check!(concurrent_acquires_by_many_owners_have_one_winner),
        check!(begin_rotation_requires_lease_generation_and_replacing),
        check!(commit_refresh_is_fenced_by_the_in_flight_attempt),
        check!(end_rotation_keeps_or_clears_the_record),
        check!(end_rotation_with_a_state_marks_the_grant_dead),
        check!(reconnect_clears_the_record_and_health_but_not_the_lease),
        check!(set_health_sets_health_and_detail),
        check!(grouped_begins_are_fenced_like_begin_rotation),
        check!(grouped_commits_are_fenced_like_commit_refresh_and_release_the_lease),
        check!(a_group_applies_writes_to_one_connection_in_order),
        check!(record_attempt_upserts_and_both_queries_find_it),
        check!(lineage_and_events_survive_deleting_the_connection),
        check!(events_have_increasing_ids_and_filter_by_key_cursor_and_limit),
        check!(incidents_are_raised_once_and_cleared_once),
        check!(grants_and_refreshes_schedule_the_heartbeat),
        check!(lost_rotations_lists_only_settling_in_flight_records),
        check!(claim_leases_due_active_unleased_connections_oldest_first),
        check!(connections_that_are_not_active_are_never_claimed),
        check!(concurrent_claimers_take_every_due_connection_exactly_once),
        check!(set_heartbeat_due_moves_a_connection_out_of_the_due_set),
        check!(idle_refresh_tokens_are_active_and_least_recently_used_first),
        check!(set_at_risk_level_reports_whether_it_changed),
        check!(count_by_state_counts_each_present_state),
        check!(agent_keys_round_trip_and_names_are_unique),
        check!(revoking_an_agent_key_by_name_or_id_keeps_the_first_time),
        check!(touching_an_agent_key_never_moves_last_use_back),
        check!(webhook_endpoints_are_saved_updated_in_place_listed_and_deleted),
        check!(fan_out_queues_each_later_event_once_per_endpoint_that_wants_it),
        check!(due_deliveries_are_claimed_exclusively_and_attempts_are_owner_checked),
        check!(webhook_backlog_counts_pending_and_failed_per_endpoint),
        check!(claims_lease_at_most_per_endpoint_deliveries_of_one_endpoint),
        check!(racing_claims_together_stay_within_the_per_endpoint_bound),
        check!(failed_deliveries_are_retried_with_a_fresh_budget),
        check!(waiting_deliveries_are_brought_forward_within_the_filters),
    ]
}

/// Runs every check, each through `harness` (which gives it a fresh store and cleans up),
/// at most `concurrency` at a time; panics naming every check that failed.
pub async fn run_checks<H, Fut>(concurrency: usize, harness: H)
where
    H: Fn(Check) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let permits = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let mut running = Vec::new();
    for check in checks() {
        let permits = Arc::clone(&permits);
        let future = harness(check);
        running.push((
            check.name,
            tokio::spawn(async move {
                let _permit = permits.acquire_owned().await;
                future.await;
            }),
        ));
    }
    let mut failed = Vec::new();
    for (name, handle) in running {
        if handle.await.is_err() {
            failed.push(name);
        }
    }
    assert!(
        failed.is_empty(),
        "store conformance checks failed: {failed:?}"
    );
}
