//! Snapshot files: the state after a journal record, so recovery replays
//! only the records after it.
//!
//! A snapshot is written to a temporary file, synced, and renamed over the
//! current one, whose predecessor is kept: a crash mid-write leaves the old
//! snapshot, and a damaged current snapshot falls back to the previous one.
//! Each file carries the record number, the chain value there (so a snapshot
//! that does not belong to this journal is refused) and a digest of its state.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::record::{digest, hex, Hash};

const MAGIC: &[u8; 8] = b"KORDONSN";

/// A snapshot as read back. `state` is what the driver stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub seq: u64,
    pub chain: Hash,
    pub state: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct Header {
    seq: u64,
    chain: Hash,
    digest: Hash,
}

/// The snapshot files in a directory.
#[derive(Debug, Clone)]
pub struct SnapshotStore {
    dir: PathBuf,
}

impl SnapshotStore {
    pub fn new(dir: &Path) -> Self {
        SnapshotStore {
            dir: dir.to_path_buf(),
        }
    }

    fn current(&self) -> PathBuf {
        self.dir.join("snapshot.bin")
    }

    fn previous(&self) -> PathBuf {
        self.dir.join("snapshot.previous.bin")
    }

    /// Writes `state` as the snapshot after record `seq`.
    pub fn write(&self, seq: u64, chain: Hash, state: &[u8]) -> std::io::Result<()> {
        fs::create_dir_all(&self.dir)?;
        let tmp = self.dir.join("snapshot.tmp");
        let header = postcard::to_stdvec(&Header {
            seq,
            chain,
            digest: digest(state),
        })
        .expect("headers always serialise");
        {
            let mut f = File::create(&tmp)?;
            f.write_all(MAGIC)?;
            f.write_all(&(header.len() as u32).to_be_bytes())?;
            f.write_all(&header)?;
            f.write_all(state)?;
            f.sync_all()?;
        }
        if self.current().exists() {
            fs::rename(self.current(), self.previous())?;
        }
        fs::rename(&tmp, self.current())?;
        File::open(&self.dir)?.sync_all()
    }

    /// The newest readable snapshot that `accept` takes (it checks the seq
    /// and chain against the journal). Damaged or foreign files are logged
    /// and passed over.
    pub fn load(&self, accept: impl Fn(&Snapshot) -> Result<(), String>) -> Option<Snapshot> {
        for path in [self.current(), self.previous()] {
            if !path.exists() {
                continue;
            }
            match read(&path).and_then(|s| accept(&s).map(|()| s)) {
                Ok(snapshot) => return Some(snapshot),
                Err(problem) => {
                    warn!(path = %path.display(), %problem, "snapshot not used")
                }
            }
        }
        None
    }

    /// The record number of the oldest snapshot kept: retention must not
    /// retire records after it, recovery may replay them.
    pub fn oldest_seq(&self) -> Option<u64> {
        [self.previous(), self.current()]
            .iter()
            .filter_map(|p| read(p).ok())
            .map(|s| s.seq)
            .min()
    }
}

fn read(path: &Path) -> Result<Snapshot, String> {
    let bytes = fs::read(path).map_err(|e| e.to_string())?;
    let rest = bytes
        .strip_prefix(MAGIC)
        .ok_or("not a kordon snapshot file")?;
    let (len, rest) = rest.split_at_checked(4).ok_or("cut short")?;
    let len = u32::from_be_bytes(len.try_into().expect("four bytes")) as usize;
    let (header, state) = rest.split_at_checked(len).ok_or("cut short")?;
    let header: Header = postcard::from_bytes(header).map_err(|e| e.to_string())?;
    if digest(state) != header.digest {
        return Err(format!(
            "its state does not match its digest {}: damaged",
            hex(&header.digest)
        ));
    }
    Ok(Snapshot {
        seq: header.seq,
        chain: header.chain,
        state: state.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_damaged_snapshot_falls_back_to_the_previous_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = SnapshotStore::new(dir.path());
        store.write(10, [1; 32], b"ten").unwrap();
        store.write(20, [2; 32], b"twenty").unwrap();
        let all = |_: &Snapshot| Ok(());
        assert_eq!(store.load(all).unwrap().seq, 20);
        let path = dir.path().join("snapshot.bin");
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        fs::write(&path, bytes).unwrap();
        let s = store.load(all).unwrap();
        assert_eq!((s.seq, s.state.as_slice()), (10, &b"ten"[..]));
        assert_eq!(store.oldest_seq(), Some(10));
        // A snapshot the journal does not vouch for is passed over.
        assert!(store.load(|_| Err("foreign".into())).is_none());
    }
}
