//! The journal's writer thread: group commit off the hot path.
//!
//! The engine's thread hands over [`Job`]s and never waits. The writer takes
//! every job that is waiting (up to `max_records`), writes them in one
//! transaction, commits once, and only then passes each job's `then` on, in
//! order. Under load the batches grow while a commit is in flight, which is
//! what keeps the disk from being the limit; at rest a record is committed
//! as soon as it arrives.

use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use jiff::Timestamp;
use tracing::{error, info, warn};

use crate::snapshot::SnapshotStore;
use crate::store::{Entry, Journal};

pub const COMMIT_SECONDS: &str = "kordon_journal_commit_seconds";
pub const BATCH_RECORDS: &str = "kordon_journal_batch_records";
pub const BYTES: &str = "kordon_journal_bytes_total";
pub const RECORDS: &str = "kordon_journal_records_total";
pub const BEHIND: &str = "kordon_journal_jobs_behind";
pub const FAILURES: &str = "kordon_journal_commit_failures_total";
pub const RETIRED: &str = "kordon_journal_retired_fixes_total";

/// Work for the writer.
pub enum Job<T> {
    /// Records to make durable; `then` is passed on after the commit.
    Append { entries: Vec<Entry>, then: T },
    /// The state after everything handed over before it.
    Snapshot { state: Vec<u8> },
    /// A retention pass.
    Retire {
        cutoff: Timestamp,
        margin_s: i64,
        now: Timestamp,
    },
}

/// Whether the records before a `then` are on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Durable {
    Yes,
    /// The commit failed; the records are not journaled.
    No(String),
}

#[derive(Debug, Clone, Copy)]
pub struct GroupCommit {
    /// The most records in one commit.
    pub max_records: usize,
    /// How long to wait for more work after the first job; zero commits
    /// at once (batches then form only while a commit is in flight).
    pub linger: Duration,
}

impl Default for GroupCommit {
    fn default() -> Self {
        GroupCommit {
            max_records: 4096,
            linger: Duration::ZERO,
        }
    }
}

pub struct Writer<T> {
    jobs: Sender<Job<T>>,
    thread: JoinHandle<Journal>,
}

impl<T: Send + 'static> Writer<T> {
    /// Starts the writer. `on_commit` gets each committed batch's `then`s in
    /// the order their jobs came, with whether they are durable.
    pub fn spawn(
        mut journal: Journal,
        snapshots: SnapshotStore,
        settings: GroupCommit,
        mut on_commit: impl FnMut(Durable, Vec<T>) + Send + 'static,
    ) -> Writer<T> {
        let (jobs, rx) = crossbeam_channel::unbounded::<Job<T>>();
        let thread = std::thread::Builder::new()
            .name("kordon-journal".into())
            .spawn(move || {
                let mut batch = Batch::default();
                while let Some(first) = next(&rx, &mut batch, settings) {
                    for job in
                        std::iter::once(first).chain(batch.more.drain(..).collect::<Vec<_>>())
                    {
                        match job {
                            Job::Append { entries, then } => {
                                batch.entries.extend(entries);
                                batch.thens.push(then);
                            }
                            Job::Snapshot { state } => {
                                commit(&mut journal, &mut batch, &mut on_commit);
                                let (seq, chain) = journal.head();
                                match snapshots.write(seq, chain, &state) {
                                    Ok(()) => info!(seq, bytes = state.len(), "snapshot written"),
                                    Err(e) => error!(error = %e, "snapshot not written"),
                                }
                            }
                            Job::Retire {
                                cutoff,
                                margin_s,
                                now,
                            } => {
                                commit(&mut journal, &mut batch, &mut on_commit);
                                let keep_after = snapshots.oldest_seq().unwrap_or(0);
                                match journal.retire(cutoff, margin_s, keep_after, now) {
                                    Ok(n) => {
                                        metrics::counter!(RETIRED).increment(n);
                                        info!(retired = n, %cutoff, "retention pass");
                                    }
                                    Err(e) => error!(error = %e, "retention pass failed"),
                                }
                            }
                        }
                    }
                    commit(&mut journal, &mut batch, &mut on_commit);
                    metrics::gauge!(BEHIND).set(rx.len() as f64);
                }
                if let Err(e) = journal.checkpoint() {
                    warn!(error = %e, "journal checkpoint at shutdown failed");
                }
                journal
            })
            .expect("spawning the journal writer");
        Writer { jobs, thread }
    }

    pub fn sender(&self) -> Sender<Job<T>> {
        self.jobs.clone()
    }

    /// Stops after every job handed over so far (all senders must be
    /// dropped) and gives the journal back.
    pub fn finish(self) -> Journal {
        drop(self.jobs);
        self.thread
            .join()
            .expect("the journal writer does not panic")
    }
}

struct Batch<T> {
    entries: Vec<Entry>,
    thens: Vec<T>,
    more: Vec<Job<T>>,
}

impl<T> Default for Batch<T> {
    fn default() -> Self {
        Batch {
            entries: Vec::new(),
            thens: Vec::new(),
            more: Vec::new(),
        }
    }
}

/// Blocks for the next job, then gathers what else is waiting.
fn next<T>(rx: &Receiver<Job<T>>, batch: &mut Batch<T>, settings: GroupCommit) -> Option<Job<T>> {
    let first = rx.recv().ok()?;
    let mut records = job_records(&first);
    let deadline = Instant::now() + settings.linger;
    while records < settings.max_records {
        let job = if settings.linger.is_zero() {
            rx.try_recv().ok()
        } else {
            rx.recv_deadline(deadline).ok()
        };
        let Some(job) = job else { break };
        records += job_records(&job);
        batch.more.push(job);
    }
    Some(first)
}

fn job_records<T>(job: &Job<T>) -> usize {
    match job {
        Job::Append { entries, .. } => entries.len().max(1),
        _ => 1,
    }
}

fn commit<T>(
    journal: &mut Journal,
    batch: &mut Batch<T>,
    on_commit: &mut impl FnMut(Durable, Vec<T>),
) {
    if batch.thens.is_empty() {
        return;
    }
    let started = Instant::now();
    let outcome = if batch.entries.is_empty() {
        Durable::Yes
    } else {
        match journal.append(&batch.entries) {
            Ok(bytes) => {
                metrics::histogram!(COMMIT_SECONDS).record(started.elapsed().as_secs_f64());
                metrics::histogram!(BATCH_RECORDS).record(batch.entries.len() as f64);
                metrics::counter!(BYTES).increment(bytes);
                metrics::counter!(RECORDS).increment(batch.entries.len() as u64);
                Durable::Yes
            }
            Err(e) => {
                metrics::counter!(FAILURES).increment(1);
                error!(error = %e, records = batch.entries.len(), "journal commit failed: these messages will not be acknowledged");
                Durable::No(e.to_string())
            }
        }
    };
    batch.entries.clear();
    on_commit(outcome, std::mem::take(&mut batch.thens));
}
