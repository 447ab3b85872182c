//! kordon-cluster: kordon on several instances, each acting for the shards
//! it holds a lease on (issue 15; `docs/cluster.md`).
//!
//! - [`shards`]: which shard a case is in, and which instance a shard prefers.
//! - [`lease`]: the lease table and its rules, without IO or a clock.
//!
//! Single-process kordon needs none of this.

pub mod lease;
pub mod shards;

pub use lease::{
    Epoch, InstanceId, Key, LeaseDesk, LeaseTimes, LeaseValue, Observation, Outcome, Revision,
    Tenure, Write,
};
pub use shards::{Shard, ShardCount};
