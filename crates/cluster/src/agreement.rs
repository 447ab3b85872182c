//! What every instance of a cluster must agree on, checked as it joins: the
//! shard count (a case's shard is its id's hash modulo the count) and the
//! device brokers (broker *i* is named by its place in the list,
//! [`crate::brokers`]).
//!
//! Each instance reads both from its own `kordon.toml`. Two instances that
//! disagree on the shard count would put one case in two shards, each with
//! an engine telling the room of its breaches; two that disagree on which
//! broker is the *i*-th would each read their own under shard *i*'s lease,
//! and leave the other's devices unread while they hold it. So the first
//! instance to join writes its view in the key-value bucket
//! `kordon_agreement`, and every later one compares its own and refuses to
//! join, naming the difference.
//!
//! Brokers may be added at the end of the list, or taken off its end, by a
//! rolling restart: the instances then agree on every broker both lists
//! name, and the latest to join writes its list. What this module never
//! does is stop or change an instance already running.

use async_nats::jetstream::{self, kv};
use serde::{Deserialize, Serialize};

use crate::keeper::{open_or_create_bucket, ClusterError};
use crate::shards::ShardCount;

pub const AGREEMENT_BUCKET: &str = "kordon_agreement";
const KEY: &str = "cluster";

/// One instance's view of what the cluster must agree on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Agreement {
    pub shards: u16,
    /// The device brokers by their host:port, in order; empty when this
    /// instance runs no broker's bridge (it then has no view of them).
    pub device_brokers: Vec<String>,
}

impl Agreement {
    pub fn new(shards: ShardCount, device_brokers: Vec<String>) -> Agreement {
        Agreement {
            shards: shards.get(),
            device_brokers,
        }
    }

    /// Why an instance with this view may not join a cluster that holds
    /// `stored`, naming each difference; `None` when it may.
    pub fn disagreement(&self, stored: &Agreement) -> Option<String> {
        let mut problems = Vec::new();
        if self.shards != stored.shards {
            problems.push(format!(
                "cluster.shards: {} here, {} in the cluster (fixed when the cluster was set up: \
                 another count would put a case in two shards)",
                self.shards, stored.shards
            ));
        }
        let pairs = self.device_brokers.iter().zip(&stored.device_brokers);
        for (i, (ours, theirs)) in pairs.enumerate() {
            if ours != theirs {
                problems.push(format!(
                    "cluster.device_brokers[{i}]: {ours} here, {theirs} in the cluster (the \
                     list must be the same, in the same order, on every instance; a broker is \
                     added at the end)"
                ));
            }
        }
        (!problems.is_empty()).then(|| problems.join("; "))
    }

    /// What the cluster holds once this instance has joined: its own view,
    /// keeping the stored brokers when it has none.
    fn joined(&self, stored: &Agreement) -> Agreement {
        let mut joined = self.clone();
        if joined.device_brokers.is_empty() {
            joined.device_brokers = stored.device_brokers.clone();
        }
        joined
    }
}

/// Joins the cluster's agreement with this instance's view: writes it if
/// the cluster has none yet (or a compatible older one), and refuses with
/// [`ClusterError::Disagreement`] if the cluster holds another.
pub async fn join(
    js: &jetstream::Context,
    replicas: usize,
    ours: &Agreement,
) -> Result<(), ClusterError> {
    let description = "kordon: what every instance of the cluster must agree on";
    let store = open_or_create_bucket(js, AGREEMENT_BUCKET, description, replicas).await?;
    let error = |e: &dyn std::fmt::Display| ClusterError::Bucket {
        bucket: AGREEMENT_BUCKET.to_string(),
        message: e.to_string(),
    };
    // Another instance joining at the same moment can write between the
    // read and the write: then read again.
    for _ in 0..10 {
        let entry = store.entry(KEY).await.map_err(|e| error(&e))?;
        let written = match entry.filter(|e| e.operation == kv::Operation::Put) {
            None => write(&store, ours, None).await,
            Some(entry) => {
                let stored: Agreement =
                    serde_json::from_slice(&entry.value).map_err(|e| error(&e))?;
                if let Some(why) = ours.disagreement(&stored) {
                    return Err(ClusterError::Disagreement(why));
                }
                let joined = ours.joined(&stored);
                if joined == stored {
                    return Ok(());
                }
                write(&store, &joined, Some(entry.revision)).await
            }
        };
        if written {
            return Ok(());
        }
    }
    Err(error(
        &"the agreement kept changing while this instance joined",
    ))
}

/// What the cluster holds, for `kordon cluster status`; `None` before any
/// instance has joined.
pub async fn read(nats_url: &str) -> Result<Option<Agreement>, ClusterError> {
    let js = jetstream::new(crate::keeper::connect(nats_url).await?);
    let error = |e: &dyn std::fmt::Display| ClusterError::Watch {
        bucket: AGREEMENT_BUCKET.to_string(),
        message: e.to_string(),
    };
    let Ok(store) = js.get_key_value(AGREEMENT_BUCKET).await else {
        return Ok(None);
    };
    let entry = store.entry(KEY).await.map_err(|e| error(&e))?;
    match entry.filter(|e| e.operation == kv::Operation::Put) {
        Some(entry) => serde_json::from_slice(&entry.value).map_err(|e| error(&e)),
        None => Ok(None),
    }
}

/// Writes `agreement` over `revision` (or as the first); false if another
/// instance wrote first.
async fn write(store: &kv::Store, agreement: &Agreement, revision: Option<u64>) -> bool {
    let value = serde_json::to_vec(agreement).expect("an agreement serialises");
    match revision {
        None => store.create(KEY, value.into()).await.is_ok(),
        Some(revision) => store.update(KEY, value.into(), revision).await.is_ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(shards: u16, brokers: &[&str]) -> Agreement {
        Agreement {
            shards,
            device_brokers: brokers.iter().map(|b| b.to_string()).collect(),
        }
    }

    #[test]
    fn another_shard_count_or_another_broker_in_a_place_is_refused() {
        let stored = view(64, &["mq-1:8883", "mq-2:8883"]);
        let shards = view(32, &["mq-1:8883", "mq-2:8883"]).disagreement(&stored);
        assert!(shards
            .unwrap()
            .starts_with("cluster.shards: 32 here, 64 in the cluster"));
        let swapped = view(64, &["mq-2:8883", "mq-1:8883"]).disagreement(&stored);
        let swapped = swapped.unwrap();
        assert!(swapped.contains("device_brokers[0]: mq-2:8883 here, mq-1:8883"));
        assert!(swapped.contains("device_brokers[1]: mq-1:8883 here, mq-2:8883"));
    }

    #[test]
    fn a_broker_added_or_taken_off_at_the_end_is_agreed_and_written() {
        let stored = view(64, &["mq-1:8883", "mq-2:8883"]);
        let added = view(64, &["mq-1:8883", "mq-2:8883", "mq-3:8883"]);
        assert_eq!(added.disagreement(&stored), None);
        assert_eq!(added.joined(&stored), added);
        let taken_off = view(64, &["mq-1:8883"]);
        assert_eq!(taken_off.disagreement(&stored), None);
        assert_eq!(taken_off.joined(&stored), taken_off);
    }

    #[test]
    fn an_instance_without_brokers_keeps_the_cluster_s() {
        let stored = view(64, &["mq-1:8883"]);
        let without = view(64, &[]);
        assert_eq!(without.disagreement(&stored), None);
        assert_eq!(without.joined(&stored), stored);
    }
}
