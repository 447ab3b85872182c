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
//! A broker may be added at the end of the list by a rolling restart: a
//! longer list agrees with a shorter one, and the cluster keeps the longer.
//! An instance with a shorter list is let in (it may be one not yet
//! restarted) but never shortens what the cluster holds. Taking a broker
//! off, or putting another in its place, is an operator's explicit step,
//! [`rewrite`] (`kordon cluster agree`). What this module never does is
//! stop or change an instance already running.

use async_nats::jetstream::{self, kv};
use serde::{Deserialize, Serialize};
use tracing::warn;

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
        let mut problems: Vec<String> = self.other_shard_count(stored).into_iter().collect();
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

    fn other_shard_count(&self, stored: &Agreement) -> Option<String> {
        (self.shards != stored.shards).then(|| {
            format!(
                "cluster.shards: {} here, {} in the cluster (fixed when the cluster was set up: \
                 another count would put a case in two shards)",
                self.shards, stored.shards
            )
        })
    }

    /// What the cluster holds once this instance has joined: its own view,
    /// with the stored brokers beyond the end of its list (a list is never
    /// shortened by joining).
    fn joined(&self, stored: &Agreement) -> Agreement {
        let mut joined = self.clone();
        let beyond = stored.device_brokers.iter().skip(self.device_brokers.len());
        joined.device_brokers.extend(beyond.cloned());
        joined
    }
}

/// Joins the cluster's agreement with this instance's view: writes it if
/// the cluster has none yet (or extends the cluster's list), and refuses
/// with [`ClusterError::Disagreement`] if the cluster holds another.
pub async fn join(
    js: &jetstream::Context,
    replicas: usize,
    ours: &Agreement,
) -> Result<(), ClusterError> {
    let store = open(js, replicas).await?;
    // Another instance joining at the same moment can write between the
    // read and the write: then read again.
    for _ in 0..10 {
        let written = match current(&store).await? {
            None => write(&store, ours, None).await?,
            Some((stored, revision)) => {
                if let Some(why) = ours.disagreement(&stored) {
                    return Err(ClusterError::Disagreement(why));
                }
                let shorter = ours.device_brokers.len() < stored.device_brokers.len();
                if shorter && !ours.device_brokers.is_empty() {
                    warn!(ours = ?ours.device_brokers, cluster = ?stored.device_brokers, "this instance names fewer device brokers than the cluster: it leaves the others unread while it holds their shards (`kordon cluster agree` takes a broker off)");
                }
                let joined = ours.joined(&stored);
                if joined == stored {
                    return Ok(());
                }
                write(&store, &joined, Some(revision)).await?
            }
        };
        if written {
            return Ok(());
        }
    }
    Err(bucket_error(
        "the agreement kept changing while this instance joined",
    ))
}

/// The brokers an explicit rewrite took off or replaced: each one's place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewritten {
    pub before: Option<Agreement>,
    /// The places whose broker is gone or another now: their deliverers'
    /// consumers are to be removed, so that a broker later put in the place
    /// starts a few minutes back, not where the old one stopped.
    pub replaced: Vec<u16>,
}

/// Makes `ours` the cluster's agreement, whatever brokers it held: the
/// operator's step to take a broker off the list or put another in its
/// place (`kordon cluster agree`), once the devices have left it. The
/// shard count cannot change this way: it is fixed with the cluster.
pub async fn rewrite(
    js: &jetstream::Context,
    replicas: usize,
    ours: &Agreement,
) -> Result<Rewritten, ClusterError> {
    let store = open(js, replicas).await?;
    for _ in 0..10 {
        let stored = current(&store).await?;
        let other_count = stored
            .as_ref()
            .and_then(|(before, _)| ours.other_shard_count(before));
        if let Some(why) = other_count {
            return Err(ClusterError::Disagreement(why));
        }
        let revision = stored.as_ref().map(|(_, revision)| *revision);
        if write(&store, ours, revision).await? {
            let before = stored.map(|(before, _)| before);
            let replaced = before.as_ref().map_or_else(Vec::new, |b| replaced(b, ours));
            return Ok(Rewritten { before, replaced });
        }
    }
    Err(bucket_error(
        "the agreement kept changing while it was rewritten",
    ))
}

/// The places of `before`'s brokers that `after` drops or names another.
fn replaced(before: &Agreement, after: &Agreement) -> Vec<u16> {
    let places = before.device_brokers.iter().zip(0u16..);
    places
        .filter(|(broker, i)| after.device_brokers.get(usize::from(*i)) != Some(*broker))
        .map(|(_, i)| i)
        .collect()
}

fn bucket_error(e: impl std::fmt::Display) -> ClusterError {
    ClusterError::Bucket {
        bucket: AGREEMENT_BUCKET.to_string(),
        message: e.to_string(),
    }
}

async fn open(js: &jetstream::Context, replicas: usize) -> Result<kv::Store, ClusterError> {
    let description = "kordon: what every instance of the cluster must agree on";
    open_or_create_bucket(js, AGREEMENT_BUCKET, description, replicas).await
}

/// The agreement the bucket holds, and its revision.
async fn current(store: &kv::Store) -> Result<Option<(Agreement, u64)>, ClusterError> {
    let entry = store.entry(KEY).await.map_err(bucket_error)?;
    let Some(entry) = entry.filter(|e| e.operation == kv::Operation::Put) else {
        return Ok(None);
    };
    let stored = serde_json::from_slice(&entry.value).map_err(bucket_error)?;
    Ok(Some((stored, entry.revision)))
}

/// What the cluster holds, for `kordon cluster status`; `None` before any
/// instance has joined.
pub async fn read(nats_url: &str) -> Result<Option<Agreement>, ClusterError> {
    let js = jetstream::new(crate::keeper::connect(nats_url).await?);
    match js.get_key_value(AGREEMENT_BUCKET).await {
        Ok(store) => Ok(current(&store).await?.map(|(agreement, _)| agreement)),
        Err(e) if e.kind() == jetstream::context::KeyValueErrorKind::GetBucket => Ok(None),
        Err(e) => Err(bucket_error(e)),
    }
}

/// Writes `agreement` over `revision` (or as the first); false if another
/// instance wrote first.
async fn write(
    store: &kv::Store,
    agreement: &Agreement,
    revision: Option<u64>,
) -> Result<bool, ClusterError> {
    let value = serde_json::to_vec(agreement).expect("an agreement serialises");
    let written = match revision {
        None => match store.create(KEY, value.into()).await {
            Ok(_) => true,
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => false,
            Err(e) => return Err(bucket_error(e)),
        },
        Some(revision) => match store.update(KEY, value.into(), revision).await {
            Ok(_) => true,
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => false,
            Err(e) => return Err(bucket_error(e)),
        },
    };
    Ok(written)
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
    fn a_broker_added_at_the_end_is_agreed_and_a_shorter_list_shortens_nothing() {
        let stored = view(64, &["mq-1:8883", "mq-2:8883"]);
        let added = view(64, &["mq-1:8883", "mq-2:8883", "mq-3:8883"]);
        assert_eq!(added.disagreement(&stored), None);
        assert_eq!(added.joined(&stored), added);
        // An instance not yet restarted with the longer list.
        let shorter = view(64, &["mq-1:8883"]);
        assert_eq!(shorter.disagreement(&stored), None);
        assert_eq!(shorter.joined(&stored), stored);
        // So a stale list cannot open the way for a conflicting one.
        let conflicting = view(64, &["mq-1:8883", "mq-9:8883"]);
        assert!(conflicting.disagreement(&shorter.joined(&stored)).is_some());
    }

    #[test]
    fn a_rewrite_names_the_places_whose_broker_is_gone_or_another() {
        let before = view(64, &["mq-1:8883", "mq-2:8883", "mq-3:8883"]);
        assert_eq!(
            replaced(&before, &view(64, &["mq-1:8883", "mq-2:8883"])),
            [2]
        );
        assert_eq!(
            replaced(&before, &view(64, &["mq-1:8883", "mq-3:8883"])),
            [1, 2]
        );
        assert_eq!(replaced(&before, &before), Vec::<u16>::new());
    }

    #[test]
    fn an_instance_without_brokers_keeps_the_cluster_s() {
        let stored = view(64, &["mq-1:8883"]);
        let without = view(64, &[]);
        assert_eq!(without.disagreement(&stored), None);
        assert_eq!(without.joined(&stored), stored);
    }
}
