//! When each connection's heartbeat falls due. A new grant's first heartbeat is placed by a
//! hash of its key somewhere in the first interval, so a bulk of connections made at once is
//! spread evenly instead of bursting a round later; after every successful use of the refresh
//! token (by an agent or the heartbeat) the next one is one interval later minus the key's
//! share of up to 10 % jitter, chosen so that the spread survives every later round.
//! Pure arithmetic; no IO.

use chrono::{DateTime, Duration, Utc};
use sha2::{Digest, Sha256};

use crate::broker::Broker;
use crate::ids::ConnectionKey;

/// A stable fraction in (0, 1] from a connection key.
pub fn phase(key: &ConnectionKey) -> f64 {
    let digest = Sha256::digest(format!("{}/{}", key.org_id, key.context).as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(bytes) as f64 + 1.0) / (u64::MAX as f64 + 1.0)
}

/// The widest jitter, as a fraction of the interval.
const JITTER: f64 = 0.1;

fn scaled(interval: Duration, fraction: f64) -> Duration {
    Duration::milliseconds((interval.num_milliseconds() as f64 * fraction) as i64)
}

/// One interval after `used_at`, less the key's own share of the jitter (up to 10 %). The share
/// is fixed per connection, not drawn anew: connections used together still fall due spread
/// over the jitter's width, and a round that refreshes them in due order gives each its next
/// due time in that same order, so the due index grows at one end instead of at random places
/// (BENCHMARKS.md, "Heartbeat jitter by key").
///
/// The share is `1 − phase`, the complement of the fraction that placed the first beat: a key
/// placed later in the first interval comes back sooner by less. Taking `phase` itself would
/// bring a bulk of connections made together back to one instant after ten intervals: beat
/// `k` of key `p` would fall at `kI + pI(1 − 0.1k)`. With the complement it falls at
/// `0.9kI + pI(1 + 0.1k)`, and the spread only widens.
fn next_due(interval: Duration, key: &ConnectionKey, used_at: DateTime<Utc>) -> DateTime<Utc> {
    used_at + scaled(interval, 1.0 - JITTER * (1.0 - phase(key)))
}

impl Broker {
    pub(crate) fn first_heartbeat_due(
        &self,
        key: &ConnectionKey,
        now: DateTime<Utc>,
    ) -> DateTime<Utc> {
        now + scaled(self.settings.heartbeat_interval, phase(key))
    }

    pub(crate) fn next_heartbeat_due(
        &self,
        key: &ConnectionKey,
        used_at: DateTime<Utc>,
    ) -> DateTime<Utc> {
        next_due(self.settings.heartbeat_interval, key, used_at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{ConnectionContext, OrgId};

    #[test]
    fn phases_spread_evenly_over_the_interval() {
        let org = OrgId::parse("00D000000000062").unwrap();
        let mut buckets = [0u32; 10];
        for n in 0..10_000 {
            let key = ConnectionKey::new(
                org.clone(),
                ConnectionContext::parse(&format!("u{n}")).unwrap(),
            );
            let p = phase(&key);
            assert!(p > 0.0 && p <= 1.0);
            buckets[((p * 10.0) as usize).min(9)] += 1;
        }
        for count in buckets {
            assert!((850..=1150).contains(&count), "{buckets:?}");
        }
    }

    #[test]
    fn the_next_beat_is_one_interval_less_a_fixed_share_of_ten_percent() {
        let org = OrgId::parse("00D000000000062").unwrap();
        let interval = Duration::hours(24);
        let used = DateTime::from_timestamp(1_790_000_000, 0).unwrap();
        let mut buckets = [0u32; 10];
        for n in 0..10_000 {
            let key = ConnectionKey::new(
                org.clone(),
                ConnectionContext::parse(&format!("u{n}")).unwrap(),
            );
            let due = next_due(interval, &key, used);
            let after = due - used;
            assert!(
                after >= Duration::minutes(24 * 54) && after <= interval,
                "{n}: due {after} after use"
            );
            assert_eq!(
                next_due(interval, &key, used),
                due,
                "the same for the same key"
            );
            let share = (interval - after).num_milliseconds() as f64
                / (interval.num_milliseconds() as f64 * JITTER);
            buckets[((share * 10.0) as usize).min(9)] += 1;
        }
        for count in buckets {
            assert!(
                (850..=1150).contains(&count),
                "spread over the jitter: {buckets:?}"
            );
        }
    }

    /// Connections made together (a bulk import) and then used only by the heartbeat, each
    /// refreshed when due: their beats must stay spread over the interval in every round, not
    /// drift together into a burst. 10,000 keys, 40 rounds; in every round no hundredth of the
    /// interval holds more than 3× its even share of the round's beats.
    #[test]
    fn a_bulk_of_connections_made_together_stays_spread_round_after_round() {
        let org = OrgId::parse("00D000000000062").unwrap();
        let interval = Duration::hours(24);
        let made = DateTime::from_timestamp(1_790_000_000, 0).unwrap();
        let keys: Vec<ConnectionKey> = (0..10_000)
            .map(|n| {
                ConnectionKey::new(
                    org.clone(),
                    ConnectionContext::parse(&format!("u{n}")).unwrap(),
                )
            })
            .collect();
        let mut due: Vec<DateTime<Utc>> = keys
            .iter()
            .map(|key| made + scaled(interval, phase(key)))
            .collect();
        let slot = interval.num_milliseconds() / 100;
        for round in 0..40 {
            let mut per_slot = std::collections::HashMap::new();
            for at in &due {
                *per_slot
                    .entry(at.timestamp_millis().div_euclid(slot))
                    .or_insert(0u32) += 1;
            }
            let busiest = per_slot.values().copied().max().unwrap();
            assert!(
                busiest <= 300,
                "round {round}: {busiest} of 10,000 beats in one hundredth of the interval"
            );
            for (key, at) in keys.iter().zip(due.iter_mut()) {
                *at = next_due(interval, key, *at);
            }
        }
    }
}
