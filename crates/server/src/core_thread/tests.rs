//! The engine thread's upkeep, driven by hand: no thread, no broker, no
//! journal writer.

use super::*;
use kordon_core::EngineConfig;
use kordon_journal::queue::{self, JobReceiver};

/// A live engine thread whose journal jobs land in the returned queue, with
/// a snapshot due every 10 records.
fn live_core(dir: &std::path::Path) -> (CoreThread, JobReceiver<Vec<AfterCommit>>, SnapshotGate) {
    let mut core = CoreThread::new(
        Engine::new(EngineConfig::default()),
        AlertDesk::new(AlertSettings::default()),
        dir.join("cases"),
        Upkeep {
            snapshot_every_records: 10,
            snapshot_every_s: i64::MAX,
            retention_days: None,
            keep_around_episode_s: 0,
        },
    );
    let (journal, jobs) = queue::bounded(1_024);
    let (publisher, _) = tokio::sync::mpsc::channel(16);
    let gate = SnapshotGate::new();
    core.go_live(Outlets {
        journal,
        publisher,
        dispatch: crate::dispatch::Dispatch::new("kordon@test", None),
        snapshots: gate.clone(),
    });
    (core, jobs, gate)
}

fn snapshots_sent(jobs: &JobReceiver<Vec<AfterCommit>>) -> usize {
    std::iter::from_fn(|| jobs.try_recv().ok())
        .filter(|job| matches!(job, Job::Snapshot { .. }))
        .count()
}

#[test]
fn a_snapshot_due_while_the_last_is_still_being_written_waits_for_it() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (mut core, jobs, gate) = live_core(dir.path());
    let now = Timestamp::from_second(1_800_000_000).expect("a time");
    // The last snapshot, still on the snapshot thread.
    let being_written = gate.pass().expect("an open gate");
    core.records_since_snapshot = 25;
    core.upkeep(now);
    assert_eq!(snapshots_sent(&jobs), 0, "no second copy of the state");
    assert_eq!(core.records_since_snapshot, 25, "still due");

    drop(being_written);
    core.upkeep(now + jiff::SignedDuration::from_secs(1));
    assert_eq!(
        snapshots_sent(&jobs),
        1,
        "taken once the last one is written"
    );
    assert_eq!(core.records_since_snapshot, 0);
    // The queue dropped the job (nobody writes it here), and with it the
    // pass: the gate is open for the next one.
    assert!(!gate.is_taken());
}
