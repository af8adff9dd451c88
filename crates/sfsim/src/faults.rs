//! Fault injection: the public `Fault` description and the book that matches and consumes faults
//! for one request. Handlers ask the book which faults fire and apply them themselves; this module
//! must not do IO or know HTTP.

use std::time::Duration;

/// Which endpoint a fault applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultTarget {
    /// `grant_type=refresh_token` on the token endpoint.
    TokenRefresh,
    /// `grant_type=authorization_code` on the token endpoint.
    TokenAuthorizationCode,
    /// Any grant on the token endpoint.
    AnyToken,
    Revoke,
    /// The REST API on an instance URL.
    Rest,
    /// `/id/…` and `/services/oauth2/userinfo`.
    Identity,
}

/// What happens to a matching request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultKind {
    /// Wait before processing; a refresh holds its in-flight slot while waiting.
    DelayBeforeProcessing(Duration),
    /// Process and commit, then wait before answering.
    DelayAfterProcessing(Duration),
    /// Answer this status without processing anything.
    Status(u16),
    /// Hold the request (a refresh keeps its in-flight slot), then answer this status without
    /// processing anything: a request that was in flight but never rotated.
    DelayThenStatus(Duration, u16),
    /// Hold the request in flight until `Sim::release_holds`, then answer this status without
    /// processing (refresh only).
    HoldThenStatus(u16),
    /// Process and commit, then hold the answer until `Sim::release_holds` (refresh only).
    RotateThenHold,
    /// Process and commit, then close the TCP connection without any HTTP response.
    DropAfterProcessing,
    /// Replace the user id in a token response's `id` without re-signing it.
    TamperIdentity,
}

/// One injected fault.
#[derive(Debug, Clone)]
pub struct Fault {
    pub target: FaultTarget,
    /// Only requests about this org (None = any).
    pub org_id: Option<String>,
    /// Only requests of this app (None = any).
    pub consumer_key: Option<String>,
    pub kind: FaultKind,
    /// How many requests it fires for (None = until cleared).
    pub times: Option<u32>,
}

impl Fault {
    /// A fault on any org and app, firing once.
    pub fn once(target: FaultTarget, kind: FaultKind) -> Fault {
        Fault {
            target,
            org_id: None,
            consumer_key: None,
            kind,
            times: Some(1),
        }
    }
}

/// The faults that fired for one request, in a handy shape.
#[derive(Debug, Clone, Default)]
pub(crate) struct FiredFaults {
    pub(crate) delay_before: Option<Duration>,
    pub(crate) delay_after: Option<Duration>,
    pub(crate) status: Option<u16>,
    pub(crate) delay_then_status: Option<(Duration, u16)>,
    pub(crate) hold_then_status: Option<u16>,
    pub(crate) rotate_then_hold: bool,
    pub(crate) drop_after: bool,
    pub(crate) tamper_identity: bool,
}

#[derive(Debug, Default)]
pub(crate) struct FaultBook {
    next_id: u64,
    faults: Vec<(u64, Fault)>,
}

impl FaultBook {
    pub(crate) fn add(&mut self, fault: Fault) -> u64 {
        self.next_id += 1;
        self.faults.push((self.next_id, fault));
        self.next_id
    }

    pub(crate) fn clear(&mut self) {
        self.faults.clear();
    }

    /// Matches and consumes the faults for a request on `target`.
    pub(crate) fn fire(
        &mut self,
        target: FaultTarget,
        org_id: Option<&str>,
        consumer_key: Option<&str>,
    ) -> FiredFaults {
        let mut fired = FiredFaults::default();
        for (_, fault) in &mut self.faults {
            if !target_matches(fault.target, target)
                || !filter_matches(fault.org_id.as_deref(), org_id)
                || !filter_matches(fault.consumer_key.as_deref(), consumer_key)
                || fault.times == Some(0)
            {
                continue;
            }
            if let Some(remaining) = fault.times.as_mut() {
                *remaining -= 1;
            }
            match &fault.kind {
                FaultKind::DelayBeforeProcessing(delay) => fired.delay_before = Some(*delay),
                FaultKind::DelayAfterProcessing(delay) => fired.delay_after = Some(*delay),
                FaultKind::Status(status) => fired.status = Some(*status),
                FaultKind::HoldThenStatus(status) => fired.hold_then_status = Some(*status),
                FaultKind::RotateThenHold => fired.rotate_then_hold = true,
                FaultKind::DelayThenStatus(delay, status) => {
                    fired.delay_then_status = Some((*delay, *status));
                }
                FaultKind::DropAfterProcessing => fired.drop_after = true,
                FaultKind::TamperIdentity => fired.tamper_identity = true,
            }
        }
        self.faults.retain(|(_, fault)| fault.times != Some(0));
        fired
    }
}

fn target_matches(fault_target: FaultTarget, request_target: FaultTarget) -> bool {
    fault_target == request_target
        || (fault_target == FaultTarget::AnyToken
            && matches!(
                request_target,
                FaultTarget::TokenRefresh | FaultTarget::TokenAuthorizationCode
            ))
}

fn filter_matches(wanted: Option<&str>, actual: Option<&str>) -> bool {
    match wanted {
        None => true,
        Some(wanted) => actual == Some(wanted),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fault_with_times_fires_that_many_times_then_disappears() {
        let mut book = FaultBook::default();
        book.add(Fault::once(FaultTarget::AnyToken, FaultKind::Status(503)));
        assert_eq!(
            book.fire(FaultTarget::TokenRefresh, None, None).status,
            Some(503)
        );
        assert_eq!(
            book.fire(FaultTarget::TokenRefresh, None, None).status,
            None
        );
    }

    #[test]
    fn an_org_filter_skips_other_orgs() {
        let mut book = FaultBook::default();
        let mut fault = Fault::once(FaultTarget::Rest, FaultKind::Status(500));
        fault.org_id = Some("00Dx".to_owned());
        book.add(fault);
        assert_eq!(
            book.fire(FaultTarget::Rest, Some("00Dy"), None).status,
            None
        );
        assert_eq!(
            book.fire(FaultTarget::Rest, Some("00Dx"), None).status,
            Some(500)
        );
    }
}
