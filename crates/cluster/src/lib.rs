//! kordon-cluster: kordon on several instances, each acting for the shards
//! it holds a lease on (issue 15; `docs/cluster.md`).
//!
//! - [`shards`]: which shard a case is in, and which instance a shard prefers.
//! - [`agreement`]: what every instance must agree on (the shard count, the
//!   device brokers), checked as it joins.
//! - [`lease`]: the lease table and its rules, without IO or a clock.
//! - [`cases`]: the cluster's cases in a key-value bucket, and the device
//!   map derived from them.
//! - [`routing`]: which shards a device's message goes to, under which id.
//! - [`bridge`]: devices' messages from Mosquitto into the shards' stream.
//! - [`brokers`]: the devices' brokers, each with a bridge and a deliverer
//!   under a shard's lease.
//! - [`reader`]: one shard's messages, read by its owner while its lease holds.
//! - [`snapshots`]: each shard's latest state, for its next owner.
//! - [`retention`]: how long the streams keep a message, and how often a
//!   shard's state is saved.
//! - [`desks`]: the shards' alert desks, read and acted on from any
//!   instance.
//! - [`journals`]: the instances' journals, read from any instance.
//! - [`questions`]: a question to every instance, over core NATS.
//! - [`alerts`]: what the shards decide to publish, stored once each.
//! - [`deliverer`]: the alerts' stream out to Mosquitto.
//! - [`webhooks`]: the police's CAP messages out to their webhooks.
//! - [`config`]: the `[cluster]` section of `kordon.toml`.
//! - [`status`]: `kordon cluster status`.
//! - [`keeper`]: the task that keeps this instance's leases in a NATS
//!   JetStream key-value bucket.
//!
//! Single-process kordon needs none of this.

pub mod agreement;
pub mod alerts;
pub mod bridge;
pub mod brokers;
pub mod cases;
pub mod config;
pub mod deliverer;
pub mod desks;
pub mod journals;
pub mod keeper;
pub mod lease;
pub mod questions;
pub mod reader;
pub mod retention;
pub mod routing;
pub mod shards;
pub mod snapshots;
pub mod status;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod webhooks;

pub use config::ClusterConfig;
pub use keeper::{ClusterError, ClusterSettings, LeaseKeeper, Tenures};
pub use lease::{
    Epoch, InstanceId, Key, LeaseDesk, LeaseTimes, LeaseValue, Observation, Outcome, Revision,
    Tenure, Write,
};
pub use retention::{Retention, SnapshotEvery};
pub use shards::{Shard, ShardCount};
