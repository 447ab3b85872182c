//! Shards: which shard a case belongs to, and which instance a shard would
//! rather be with.
//!
//! Every case lives in exactly one shard, for good: the shard is a hash of the
//! case id, never a table that could disagree between instances. There are
//! many more shards than instances (64 by default), so that a shard is the
//! unit that moves when an instance comes or goes, and no decision ever needs
//! two shards (DESIGN.md, "Growing past one machine").
//!
//! This module never does IO and never reads a clock.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The shards of a cluster are numbered `0..count`. The count is part of a
/// cluster's identity: instances that disagree on it would put one case in
/// two shards, so it is fixed when the cluster is first set up, and an
/// instance with another is refused ([`crate::agreement`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShardCount(u16);

/// One shard of the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Shard(pub u16);

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("a cluster has 1 to {max} shards, not {0}", max = ShardCount::MAX)]
pub struct BadShardCount(pub u32);

impl ShardCount {
    /// Enough for a national programme on many machines; small enough that the
    /// whole lease table is read in one watch.
    pub const MAX: u16 = 1024;
    pub const DEFAULT: ShardCount = ShardCount(64);

    pub fn new(count: u32) -> Result<ShardCount, BadShardCount> {
        match u16::try_from(count) {
            Ok(n) if (1..=Self::MAX).contains(&n) => Ok(ShardCount(n)),
            _ => Err(BadShardCount(count)),
        }
    }

    pub fn get(self) -> u16 {
        self.0
    }

    pub fn all(self) -> impl Iterator<Item = Shard> {
        (0..self.0).map(Shard)
    }

    /// The shard a case belongs to: SHA-256 of its id, so that every
    /// instance, build and platform agrees (a `std` hasher is seeded per
    /// process, and its algorithm may change between Rust releases).
    pub fn shard_of(self, case_id: &str) -> Shard {
        let digest = Sha256::digest(case_id.as_bytes());
        let head = u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"));
        Shard((head % u64::from(self.0)) as u16)
    }
}

/// How much an instance is suited to a shard: the instance that ranks
/// highest among those alive is the shard's preferred owner (rendezvous
/// hashing). When an instance comes or goes, only the shards it ranks
/// highest for change hands, about one in the number of instances.
pub fn rank(shard: Shard, instance: &str) -> u64 {
    let mut hasher = Sha256::new();
    hasher.update(shard.0.to_be_bytes());
    hasher.update(instance.as_bytes());
    let digest = hasher.finalize();
    u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
}

/// The preferred owner of `shard` among `instances` (none when there are none).
pub fn preferred<'a>(
    shard: Shard,
    instances: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    instances
        .into_iter()
        .max_by_key(|instance| (rank(shard, instance), *instance))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_case_always_falls_in_the_same_shard() {
        // Fixed values: a change here moves every case of a running cluster.
        let shards = ShardCount::DEFAULT;
        assert_eq!(
            shards.shard_of("RTM-2026-0001"),
            shards.shard_of("RTM-2026-0001")
        );
        let golden: Vec<u16> = ["RTM-2026-0001", "RTM-2026-0002", "case-a", ""]
            .iter()
            .map(|c| shards.shard_of(c).0)
            .collect();
        assert_eq!(golden, GOLDEN);
    }

    // Checked against Python: int.from_bytes(sha256(id).digest()[:8], "big") % 64.
    const GOLDEN: [u16; 4] = [38, 17, 22, 20];

    #[test]
    fn cases_spread_over_every_shard() {
        let shards = ShardCount::DEFAULT;
        let mut per_shard = vec![0u32; 64];
        for n in 0..64_000 {
            per_shard[shards.shard_of(&format!("RTM-{n:06}")).0 as usize] += 1;
        }
        // 1,000 expected per shard; a fair hash stays well within ±15 %.
        assert!(
            per_shard.iter().all(|&n| (850..=1150).contains(&n)),
            "{per_shard:?}"
        );
    }

    #[test]
    fn a_shard_count_outside_1_to_1024_is_refused() {
        assert_eq!(ShardCount::new(0), Err(BadShardCount(0)));
        assert_eq!(ShardCount::new(1025), Err(BadShardCount(1025)));
        assert_eq!(ShardCount::new(70_000), Err(BadShardCount(70_000)));
        assert_eq!(ShardCount::new(1).map(ShardCount::get), Ok(1));
    }

    #[test]
    fn a_new_instance_takes_about_its_share_and_moves_nothing_else() {
        let shards = ShardCount::DEFAULT;
        let before = ["a", "b", "c"];
        let after = ["a", "b", "c", "d"];
        let mut moved = 0;
        for shard in shards.all() {
            let old = preferred(shard, before).unwrap();
            let new = preferred(shard, after).unwrap();
            if old != new {
                assert_eq!(new, "d", "shard {shard} moved between old instances");
                moved += 1;
            }
        }
        assert!(
            (8..=24).contains(&moved),
            "{moved} of 64 shards moved to the new instance"
        );
    }
}
