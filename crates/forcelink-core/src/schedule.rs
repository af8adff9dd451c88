//! When each connection's heartbeat falls due. A new grant's first heartbeat is placed by a
//! hash of its key somewhere in the first interval, so a bulk of connections made at once is
//! spread evenly instead of bursting a round later; after every successful use of the refresh
//! token (by an agent or the heartbeat) the next one is one interval later minus the key's
//! share of up to 10 % jitter. Pure arithmetic; no IO.

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
fn next_due(interval: Duration, key: &ConnectionKey, used_at: DateTime<Utc>) -> DateTime<Utc> {
    used_at + scaled(interval, 1.0 - JITTER * phase(key))
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
                after >= Duration::minutes(24 * 54) && after < interval,
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
}
