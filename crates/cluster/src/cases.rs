//! The cases of a cluster, in one key-value bucket (`kordon_cases`): every
//! instance follows it for its shards' cases ([`CasesByShard`]), and the
//! bridge for its device → cases map ([`DeviceBook`]). Written where a case
//! is put or deleted (the case API of whichever instance is asked).
//!
//! A key is the case id with each `.` written `=2e` (a dot separates the
//! tokens of a NATS subject, and case ids may hold one). Only plain ids
//! ([`kordon_core::CaseId::is_plain`], as for case files) are stored, and
//! `=` is not among their characters, so the key reads back; a case's id is
//! read from its value all the same.
//!
//! This module decides nothing about a case: it stores, deletes and reads.

use std::collections::HashMap;

use async_nats::jetstream::kv::{self, Operation, Store};
use async_nats::jetstream::{self};
use futures_util::StreamExt;
use kordon_core::Case;
use tokio::sync::watch;
use tracing::warn;

use crate::keeper::ClusterError;
use crate::routing::DeviceBook;
use crate::shards::{Shard, ShardCount};

pub const CASES_BUCKET: &str = "kordon_cases";

pub fn key_of(case_id: &str) -> String {
    case_id.replace('.', "=2e")
}

pub fn case_id_of(key: &str) -> String {
    key.replace("=2e", ".")
}

/// The devices a case's messages come from: its offender's and its
/// protected persons'.
pub fn devices_of(case: &Case) -> Vec<String> {
    let mut devices = vec![case.offender.device.as_str().to_string()];
    devices.extend(
        case.protected
            .iter()
            .filter_map(|p| p.device.as_ref())
            .map(|d| d.as_str().to_string()),
    );
    devices
}

/// Opens (or makes) the cases' bucket: the latest of each case, on disk.
pub async fn open(js: &jetstream::Context, replicas: usize) -> Result<Store, ClusterError> {
    crate::keeper::open_or_create_bucket(js, CASES_BUCKET, "kordon: the cases", replicas).await
}

/// Stores a case (refused if its id is not plain).
pub async fn put(store: &Store, case: &Case) -> Result<u64, ClusterError> {
    if !case.id.is_plain() {
        return Err(ClusterError::Bucket {
            bucket: CASES_BUCKET.to_string(),
            message: format!(
                "case id `{}` must be {}",
                case.id,
                kordon_core::CaseId::PLAIN
            ),
        });
    }
    let value = serde_json::to_vec(case).expect("cases always serialise");
    store
        .put(key_of(case.id.as_str()), value.into())
        .await
        .map_err(|e| ClusterError::Bucket {
            bucket: CASES_BUCKET.to_string(),
            message: e.to_string(),
        })
}

/// What the bucket holds under a case's key now, with the revision a
/// change made over it names ([`put_over`], [`delete_over`]).
#[derive(Debug)]
pub enum Stored {
    /// No case: never stored (revision 0), or deleted at `revision`.
    Missing {
        revision: u64,
    },
    Case {
        case: Case,
        revision: u64,
    },
    /// A value kordon cannot read as a case; it can still be replaced or
    /// deleted.
    Unreadable {
        problem: String,
        revision: u64,
    },
}

impl Stored {
    pub fn revision(&self) -> u64 {
        match self {
            Stored::Missing { revision }
            | Stored::Case { revision, .. }
            | Stored::Unreadable { revision, .. } => *revision,
        }
    }

    pub fn exists(&self) -> bool {
        !matches!(self, Stored::Missing { .. })
    }
}

/// Another writer changed the case between its reading and this change.
#[derive(Debug, PartialEq, Eq)]
pub struct Changed;

fn bucket_error(message: impl ToString) -> ClusterError {
    ClusterError::Bucket {
        bucket: CASES_BUCKET.to_string(),
        message: message.to_string(),
    }
}

/// What the bucket holds under `case_id` now (a plain id: see [`key_of`]).
pub async fn stored(store: &Store, case_id: &str) -> Result<Stored, ClusterError> {
    let Some(entry) = store.entry(key_of(case_id)).await.map_err(bucket_error)? else {
        return Ok(Stored::Missing { revision: 0 });
    };
    let revision = entry.revision;
    if !matches!(entry.operation, Operation::Put) {
        return Ok(Stored::Missing { revision });
    }
    Ok(match serde_json::from_slice::<Case>(&entry.value) {
        Ok(case) => Stored::Case { case, revision },
        Err(e) => Stored::Unreadable {
            problem: e.to_string(),
            revision,
        },
    })
}

/// Stores `case` if its key is still at `revision` (from [`stored`]): two
/// writers never both believe they made or replaced it.
pub async fn put_over(
    store: &Store,
    case: &Case,
    revision: u64,
) -> Result<Result<u64, Changed>, ClusterError> {
    let value = serde_json::to_vec(case).expect("cases always serialise");
    match store
        .update(key_of(case.id.as_str()), value.into(), revision)
        .await
    {
        Ok(revision) => Ok(Ok(revision)),
        Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(Err(Changed)),
        Err(e) => Err(bucket_error(e)),
    }
}

/// Deletes a case if its key is still at `revision` (from [`stored`]).
pub async fn delete_over(
    store: &Store,
    case_id: &str,
    revision: u64,
) -> Result<Result<u64, Changed>, ClusterError> {
    match store
        .delete_expect_revision(key_of(case_id), Some(revision))
        .await
    {
        Ok(()) => {}
        Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => return Ok(Err(Changed)),
        Err(e) => return Err(bucket_error(e)),
    }
    // The deletion's own revision, for a caller waiting to see it.
    Ok(Ok(stored(store, case_id).await?.revision()))
}

pub async fn delete(store: &Store, case_id: &str) -> Result<(), ClusterError> {
    store
        .delete(key_of(case_id))
        .await
        .map_err(|e| ClusterError::Bucket {
            bucket: CASES_BUCKET.to_string(),
            message: e.to_string(),
        })
}

/// Keeps a [`DeviceBook`] up to date with the bucket. It returns once the
/// book holds every case the bucket held when watching began: a bridge
/// started before that would route a case's devices as if they were in no
/// case. The receiver then sees every change (the bridge routes each message
/// by the book as it is when the message comes).
pub async fn watch_book(
    store: Store,
    shards: ShardCount,
) -> Result<watch::Receiver<DeviceBook>, ClusterError> {
    follow(
        store,
        DeviceBook::new(shards),
        |book, change| match change.case {
            Some(case) => book.put_case(case.id.as_str(), devices_of(&case)),
            None => book.remove_case(&change.id),
        },
    )
    .await
}

/// Keeps `state` up to date with the bucket, one [`CaseChange`] at a time:
/// it returns once `state` has been given every case the bucket held when
/// watching began, and the receiver then sees each change after. A case
/// kordon cannot read is not passed on, so `state` keeps what it had of it:
/// such a case is refused where it was written, and forgetting it would
/// lose what it routed.
pub async fn follow<T: Send + Sync + 'static>(
    store: Store,
    mut state: T,
    apply: fn(&mut T, CaseChange),
) -> Result<watch::Receiver<T>, ClusterError> {
    let mut entries = read_current(&store, |entry| {
        if let Some(change) = change_of(entry) {
            apply(&mut state, change);
        }
    })
    .await?;
    let (tx, rx) = watch::channel(state);
    tokio::spawn(async move {
        while let Some(entry) = entries.next().await {
            match entry {
                Ok(entry) => {
                    if let Some(change) = change_of(&entry) {
                        tx.send_modify(|state| apply(state, change));
                    }
                }
                Err(e) => warn!(error = %e, "watching the cases' bucket"),
            }
            if tx.is_closed() {
                return;
            }
        }
        warn!("the cases' bucket watch ended: what follows it stays as it was");
    });
    Ok(rx)
}

/// A change to one case, as the bucket says it.
#[derive(Debug, Clone)]
pub struct CaseChange {
    pub id: String,
    /// The case now (`None`: deleted).
    pub case: Option<Case>,
    /// The bucket's revision of this change: the revisions of all keys
    /// rise together, so a follower that has seen a revision has seen every
    /// change before it.
    pub revision: u64,
}

/// Every case in the bucket that kordon can read, by shard, as the shard
/// host keeps it while it follows the bucket: a take-over takes its shards'
/// cases from here, in memory. Reading them from the bucket instead cost a
/// pass over every case in it at each take-over, whatever was taken (about
/// 4.7 µs per case: 2.3 s at 500,000 cases for a single shard;
/// `benches/take_over.rs`).
///
/// A change kordon cannot read never reaches it ([`change_of`]), so a case
/// keeps its last readable version: the version its shard, if served, goes
/// on deciding with.
pub struct CasesByShard {
    shards: ShardCount,
    by_shard: HashMap<Shard, HashMap<String, Case>>,
}

impl CasesByShard {
    pub fn new(shards: ShardCount) -> CasesByShard {
        CasesByShard {
            shards,
            by_shard: HashMap::new(),
        }
    }

    /// Takes in one change of the bucket.
    pub fn apply(&mut self, change: &CaseChange) {
        let shard = self.shards.shard_of(&change.id);
        match &change.case {
            Some(case) => {
                self.by_shard
                    .entry(shard)
                    .or_default()
                    .insert(change.id.clone(), case.clone());
            }
            None => {
                if let Some(cases) = self.by_shard.get_mut(&shard) {
                    cases.remove(&change.id);
                    if cases.is_empty() {
                        self.by_shard.remove(&shard);
                    }
                }
            }
        }
    }

    /// The shard a case is in.
    pub fn shard_of(&self, case_id: &str) -> Shard {
        self.shards.shard_of(case_id)
    }

    /// The cases of one shard, for a new owner to open it with.
    pub fn of_shard(&self, shard: Shard) -> Vec<Case> {
        self.by_shard
            .get(&shard)
            .map(|cases| cases.values().cloned().collect())
            .unwrap_or_default()
    }

    /// How many cases are known.
    pub fn len(&self) -> usize {
        self.by_shard.values().map(HashMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.by_shard.is_empty()
    }
}

/// Every change to the bucket, in order, after some point.
pub type CaseChanges = std::pin::Pin<Box<dyn futures_util::Stream<Item = CaseChange> + Send>>;

/// The bucket as it is now, by shard, and every change after it, in order,
/// from one watch: applying each change that comes to the cases returned
/// keeps them the bucket's, with no change missed between the read and
/// the watch. Costs a pass over the whole bucket, once.
pub async fn read_and_follow(
    store: &Store,
    shards: ShardCount,
) -> Result<(CasesByShard, CaseChanges), ClusterError> {
    let mut known = CasesByShard::new(shards);
    let entries = read_current(store, |entry| {
        if let Some(change) = change_of(entry) {
            known.apply(&change);
        }
    })
    .await?;
    Ok((known, Box::pin(changes_of(entries))))
}

/// Reads the bucket as it is now, the latest entry of each key (a deletion
/// among them), streamed on one watch rather than a request per key; then
/// returns the watch, which goes on with every change after.
async fn read_current(
    store: &Store,
    mut each: impl FnMut(&kv::Entry),
) -> Result<kv::Watch, ClusterError> {
    let watch_error = |e: &dyn std::fmt::Display| ClusterError::Watch {
        bucket: CASES_BUCKET.to_string(),
        message: e.to_string(),
    };
    let mut entries = store
        .watch_with_history(">")
        .await
        .map_err(|e| watch_error(&e))?;
    // An empty bucket sends nothing to say the watch has caught up.
    let empty = crate::keeper::is_empty(store)
        .await
        .map_err(|e| watch_error(&e))?;
    if empty {
        return Ok(entries);
    }
    loop {
        match entries.next().await {
            Some(Ok(entry)) => {
                each(&entry);
                if entry.seen_current {
                    return Ok(entries);
                }
            }
            Some(Err(e)) => return Err(watch_error(&e)),
            None => return Err(watch_error(&"the watch ended before it caught up")),
        }
    }
}

/// The changes a watch of the bucket sees, in order; an entry kordon
/// cannot read is logged and left out.
fn changes_of(entries: kv::Watch) -> impl futures_util::Stream<Item = CaseChange> + Send {
    entries.filter_map(|entry| async move {
        match entry {
            Ok(entry) => change_of(&entry),
            Err(e) => {
                warn!(error = %e, "watching the cases' bucket");
                None
            }
        }
    })
}

/// What an entry of the bucket says of its case; `None` for a case kordon
/// cannot read (logged).
fn change_of(entry: &kv::Entry) -> Option<CaseChange> {
    let id = case_id_of(&entry.key);
    let revision = entry.revision;
    if !matches!(entry.operation, Operation::Put) {
        return Some(CaseChange {
            id,
            case: None,
            revision,
        });
    }
    match serde_json::from_slice::<Case>(&entry.value) {
        Ok(case) if case.id.as_str() == id => Some(CaseChange {
            id,
            case: Some(case),
            revision,
        }),
        Ok(case) => {
            warn!(case = id, other = %case.id, "a case in the bucket under another case's key: left alone");
            None
        }
        Err(e) => {
            warn!(case = id, error = %e, "a case in the bucket kordon cannot read");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_case_id_with_dots_makes_a_valid_key_and_reads_back() {
        for id in ["RTM-2026-0001", "rtm.2026.1", "a..b", "x.", "under_score"] {
            let key = key_of(id);
            assert!(!key.contains('.'), "{key}");
            assert_eq!(case_id_of(&key), id);
        }
    }
}
