//! Shard snapshots in JetStream: the state of one shard's engine, with the
//! stream sequence it covers, so that a new owner restores it and reads the
//! shards' stream on from the next sequence (`docs/cluster.md`, "How a
//! shard is served").
//!
//! A snapshot goes to the object store `kordon_snapshots`, one object per
//! shard, compressed with zstd. An object store rather than a key-value
//! entry because a shard's state can outgrow NATS's largest message
//! (`max_payload`, 1 MiB by default): the object store cuts it into chunks.
//!
//! A snapshot stands on its own: it is the state after every message up to
//! the sequence it names, whoever took it. So an owner writes one only
//! while its tenure holds (the caller checks), and a late one from a
//! deposed owner would only mean more to replay, never a wrong state. This
//! module does no checking of leases and decides nothing about a case.

use std::io::Read;

use async_nats::jetstream::{self, object_store::ObjectStore};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;

use crate::keeper::{made_or_taken, ClusterError};
use crate::lease::Epoch;
use crate::shards::Shard;

pub const SNAPSHOT_BUCKET: &str = "kordon_snapshots";

/// zstd's level for snapshots: fast, and cases compress well at it.
const LEVEL: i32 = 3;

/// The largest snapshot read back, uncompressed: far above any shard's
/// state, so that a corrupt object cannot make a shard's new owner take all
/// its memory.
const MAX_STATE: u64 = 1 << 30;

/// One shard's saved state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardSnapshot {
    /// The state covers every message of the shard up to this sequence of
    /// the shards' stream (0: none).
    pub covered: u64,
    /// The tenure it was taken under (for the record; not checked on restore).
    pub epoch: Epoch,
    /// The engine thread's state, as it serialises it.
    pub state: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct Stored {
    shard: u16,
    covered: u64,
    epoch: u64,
    state: Vec<u8>,
}

/// The shards' snapshots.
#[derive(Clone)]
pub struct ShardSnapshots {
    store: ObjectStore,
}

fn object_name(shard: Shard) -> String {
    format!("shard.{shard}")
}

fn error(e: &dyn std::fmt::Display) -> ClusterError {
    ClusterError::Bucket {
        bucket: SNAPSHOT_BUCKET.to_string(),
        message: e.to_string(),
    }
}

impl ShardSnapshots {
    /// Opens (or makes) the snapshots' object store.
    pub async fn open(
        js: &jetstream::Context,
        replicas: usize,
    ) -> Result<ShardSnapshots, ClusterError> {
        if let Ok(store) = js.get_object_store(SNAPSHOT_BUCKET).await {
            return Ok(ShardSnapshots { store });
        }
        let made = js
            .create_object_store(jetstream::object_store::Config {
                bucket: SNAPSHOT_BUCKET.to_string(),
                description: Some("kordon: each shard's latest state".to_string()),
                storage: jetstream::stream::StorageType::File,
                num_replicas: replicas,
                ..Default::default()
            })
            .await;
        let store = made_or_taken(made, || js.get_object_store(SNAPSHOT_BUCKET))
            .await
            .map_err(|e| error(&e))?;
        Ok(ShardSnapshots { store })
    }

    /// Saves `snapshot` as `shard`'s latest, replacing the one before.
    pub async fn save(&self, shard: Shard, snapshot: ShardSnapshot) -> Result<usize, ClusterError> {
        let stored = Stored {
            shard: shard.0,
            covered: snapshot.covered,
            epoch: snapshot.epoch.0,
            state: snapshot.state,
        };
        let bytes = tokio::task::spawn_blocking(move || {
            let plain = postcard::to_stdvec(&stored).expect("a snapshot serialises");
            zstd::bulk::compress(&plain, LEVEL)
        })
        .await
        .map_err(|e| error(&e))?
        .map_err(|e| error(&e))?;
        let size = bytes.len();
        let mut reader = std::io::Cursor::new(bytes);
        self.store
            .put(object_name(shard).as_str(), &mut reader)
            .await
            .map_err(|e| error(&e))?;
        Ok(size)
    }

    /// `shard`'s latest snapshot, if it has one.
    pub async fn load(&self, shard: Shard) -> Result<Option<ShardSnapshot>, ClusterError> {
        let mut object = match self.store.get(object_name(shard)).await {
            Ok(object) => object,
            Err(e) if e.kind() == jetstream::object_store::GetErrorKind::NotFound => {
                return Ok(None)
            }
            Err(e) => return Err(error(&e)),
        };
        let mut bytes = Vec::new();
        object
            .read_to_end(&mut bytes)
            .await
            .map_err(|e| error(&e))?;
        let stored: Stored = tokio::task::spawn_blocking(move || {
            let mut plain = Vec::new();
            zstd::stream::read::Decoder::new(bytes.as_slice())
                .and_then(|d| d.take(MAX_STATE).read_to_end(&mut plain))
                .map_err(|e| e.to_string())?;
            postcard::from_bytes(&plain).map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| error(&e))?
        .map_err(|e| error(&format!("shard {shard}'s snapshot: {e}")))?;
        if stored.shard != shard.0 {
            return Err(error(&format!(
                "the snapshot stored as shard {shard}'s says it is shard {}'s",
                stored.shard
            )));
        }
        Ok(Some(ShardSnapshot {
            covered: stored.covered,
            epoch: Epoch(stored.epoch),
            state: stored.state,
        }))
    }
}
