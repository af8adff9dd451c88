//! When each connection's heartbeat falls due. A new grant's first heartbeat is placed by a
//! hash of its key somewhere in the first interval, so a bulk of connections made at once is
//! spread evenly instead of bursting a round later; after every successful use of the refresh
//! token (by an agent or the heartbeat) the next one is one interval later minus up to 10 %
//! jitter. Pure arithmetic; no IO.

use chrono::{DateTime, Duration, Utc};
use rand::RngExt;
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

fn scaled(interval: Duration, fraction: f64) -> Duration {
    Duration::milliseconds((interval.num_milliseconds() as f64 * fraction) as i64)
}

impl Broker {
    pub(crate) fn first_heartbeat_due(
        &self,
        key: &ConnectionKey,
        now: DateTime<Utc>,
    ) -> DateTime<Utc> {
        now + scaled(self.settings.heartbeat_interval, phase(key))
    }

    pub(crate) fn next_heartbeat_due(&self, used_at: DateTime<Utc>) -> DateTime<Utc> {
        let jitter: f64 = rand::rng().random_range(0.0..0.1);
        used_at + scaled(self.settings.heartbeat_interval, 1.0 - jitter)
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
}
