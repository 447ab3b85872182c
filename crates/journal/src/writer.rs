//! The journal's writer thread: group commit off the hot path.
//!
//! The engine's thread hands over [`Job`]s and waits only when the queue
//! holds `max_records_waiting` records already (backpressure, see
//! [`crate::queue`]). The writer takes
//! every job that is waiting (up to `max_records`), writes them in one
//! transaction, commits once, and only then passes each job's `then` on, in
//! order. Under load the batches grow while a commit is in flight, which is
//! what keeps the disk from being the limit. A batch also waits up to
//! `GroupCommit::linger` for more work (less when records come fast, and
//! no longer once a part of the wait brought nothing: see
//! [`linger_for_more`]), since fewer, larger commits cost less CPU per
//! record; with no linger a record at rest is committed as soon as it
//! arrives.
//!
//! A commit that fails (disk full, I/O error, a lock held too long) is
//! retried, with everything after it, until it succeeds: the journal never
//! skips a record. Meanwhile the writer's owner decides which `then`s wait
//! for the retry (kordon's: all of them, acknowledgements and answers; the
//! broker keeps those messages, and stops sending more once its in-flight
//! window is full). Alerts never wait for the writer.

use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use jiff::Timestamp;
use tracing::{error, info, warn};

use crate::queue::{self, JobReceiver, JobSender};
use crate::snapshot::SnapshotStore;
use crate::snapshot_gate::{SnapshotGate, SnapshotPass};
use crate::store::{Entry, Journal};

pub const COMMIT_SECONDS: &str = "kordon_journal_commit_seconds";
pub const BATCH_RECORDS: &str = "kordon_journal_batch_records";
pub const BYTES: &str = "kordon_journal_bytes_total";
pub const RECORDS: &str = "kordon_journal_records_total";
pub const BEHIND: &str = "kordon_journal_jobs_behind";
pub const RECORDS_WAITING: &str = "kordon_journal_records_waiting";
pub const FAILURES: &str = "kordon_journal_commit_failures_total";
pub const RETIRED: &str = "kordon_journal_retired_fixes_total";
pub const UNCOMMITTED: &str = "kordon_journal_records_uncommitted";

/// How long after a failed commit the next attempt is made. Work that comes
/// meanwhile joins the waiting records; attempting on every arrival would
/// rewrite an ever longer batch at the rate messages come.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Work for the writer.
pub enum Job<T> {
    /// Records to make durable; `then` is passed on after the commit.
    Append { entries: Vec<Entry>, then: T },
    /// The state after everything handed over before it.
    Snapshot { state: PendingState },
    /// A retention pass.
    Retire {
        cutoff: Timestamp,
        margin_s: i64,
        now: Timestamp,
    },
}

/// A snapshot's state, turned into bytes on the snapshot thread: its owner
/// hands over a cheap copy and goes on, and neither it nor the writer waits
/// for the serialisation or the snapshot file's fsync.
pub struct PendingState {
    build: Box<dyn FnOnce() -> Vec<u8> + Send>,
    /// The owner's pass ([`crate::snapshot_gate`]), given back once the
    /// state is written or dropped.
    pass: Option<SnapshotPass>,
}

impl PendingState {
    pub fn new(build: impl FnOnce() -> Vec<u8> + Send + 'static) -> Self {
        PendingState {
            build: Box::new(build),
            pass: None,
        }
    }

    /// A state built under `pass`: the owner's gate opens again when this
    /// snapshot is written, or dropped unwritten.
    pub fn with_pass(pass: SnapshotPass, build: impl FnOnce() -> Vec<u8> + Send + 'static) -> Self {
        PendingState {
            pass: Some(pass),
            ..PendingState::new(build)
        }
    }

    /// A state already in bytes.
    pub fn ready(bytes: Vec<u8>) -> Self {
        PendingState::new(move || bytes)
    }
}

/// Writes snapshots on their own thread. One waits while another is being
/// written; a third is skipped (the next one comes soon, and recovery
/// replays a little more meanwhile). An owner holding a
/// [`crate::SnapshotGate`] sends only one at a time.
struct Snapshotter {
    queue: Option<Sender<(u64, crate::record::Hash, PendingState)>>,
    thread: Option<JoinHandle<()>>,
}

/// Lowers the calling thread's priority as far as it goes (nice 19): a
/// snapshot takes a core for a few hundred milliseconds, and on a busy box
/// it should take it from no thread that an alert or an acknowledgement
/// waits on (the engine's, the journal's, the broker links'). A snapshot
/// that comes later costs only a little more replay at the next start.
/// On Linux the nice value is per thread, so only this thread gives way.
#[cfg(target_os = "linux")]
fn give_way() {
    // SAFETY: plain system calls on the calling thread, no pointers.
    let status = unsafe {
        let me = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, me as libc::id_t, 19)
    };
    if status != 0 {
        warn!(
            error = %std::io::Error::last_os_error(),
            "the snapshot thread keeps its priority: snapshots compete with alerts for the CPU"
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn give_way() {}

impl Snapshotter {
    fn spawn(store: SnapshotStore) -> Snapshotter {
        let (queue, rx) = crossbeam_channel::bounded::<(u64, crate::record::Hash, PendingState)>(1);
        let thread = std::thread::Builder::new()
            .name("kordon-snapshot".into())
            .spawn(move || {
                give_way();
                for (seq, chain, pending) in rx {
                    let started = Instant::now();
                    let PendingState { build, pass } = pending;
                    let state = build();
                    let built = started.elapsed();
                    match store.write(seq, chain, &state) {
                        Ok(stored) => info!(
                            seq,
                            bytes = state.len(),
                            stored_bytes = stored,
                            built_ms = built.as_millis() as u64,
                            took_ms = started.elapsed().as_millis() as u64,
                            "snapshot written"
                        ),
                        Err(e) => error!(error = %e, "snapshot not written"),
                    }
                    // The state's memory is given back before the gate
                    // lets the next copy be made.
                    drop(state);
                    drop(pass);
                }
            })
            .expect("spawning the snapshot thread");
        Snapshotter {
            queue: Some(queue),
            thread: Some(thread),
        }
    }

    fn offer(&self, seq: u64, chain: crate::record::Hash, state: PendingState) {
        let Some(queue) = &self.queue else { return };
        if queue.try_send((seq, chain, state)).is_err() {
            warn!(seq, "snapshot skipped: two are being written already");
        }
    }

    /// Waits for the snapshots handed over.
    fn finish(&mut self) {
        self.queue = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Whether the records before a `then` are on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Durable {
    Yes,
    /// The commit failed; the records are not on disk yet and are retried.
    No(String),
}

#[derive(Debug, Clone, Copy)]
pub struct GroupCommit {
    /// The most records in one commit.
    pub max_records: usize,
    /// The longest a commit waits for more work after the first job; zero
    /// commits at once (batches then form only while a commit is in
    /// flight). It waits less when records come fast: see `fill_records`.
    pub linger: Duration,
    /// A commit lingers no longer than about this many records take to
    /// come at the rate of the last commits. The broker sends no more than
    /// its in-flight window (Mosquitto's `max_inflight_messages`, 20,000 in
    /// kordon's config; 1,000 or less in many a broker's) before they are
    /// acknowledged, after the commit: a linger that gathers more than the
    /// window stalls intake instead.
    pub fill_records: usize,
    /// Records handed over and not yet taken. A sender finding the queue
    /// full waits: the engine's thread then stops taking input, and the
    /// broker holds the rest, instead of memory growing without bound.
    pub max_records_waiting: usize,
}

impl Default for GroupCommit {
    fn default() -> Self {
        GroupCommit {
            max_records: 4096,
            linger: Duration::ZERO,
            // Half a window of 1,000: the rest covers what arrives while
            // the commit runs.
            fill_records: 500,
            // Under overload this queue fills first (the journal is the
            // slowest stage): a few MB, and over a second of commits at
            // 10,000 fixes/s. (65,536 did not shorten the alerts' tail
            // beside a disk-filling writer, and held more memory.)
            max_records_waiting: 16_384,
        }
    }
}

pub struct Writer<T> {
    jobs: JobSender<T>,
    /// One snapshot at a time through this writer's snapshot thread.
    snapshots: SnapshotGate,
    thread: JoinHandle<Journal>,
}

impl<T: Send + 'static> Writer<T> {
    /// Starts the writer. `on_commit` gets each batch's `then`s in the order
    /// their jobs came, with whether their records are durable. After a
    /// failed commit it returns the `then`s that must wait for the records
    /// to be on disk: they come again, first, with the retry that succeeds.
    pub fn spawn(
        mut journal: Journal,
        snapshots: SnapshotStore,
        settings: GroupCommit,
        mut on_commit: impl FnMut(Durable, Vec<T>) -> Vec<T> + Send + 'static,
    ) -> Writer<T> {
        let (jobs, rx) = queue::bounded::<T>(settings.max_records_waiting);
        let thread = std::thread::Builder::new()
            .name("kordon-journal".into())
            .spawn(move || {
                let mut batch = Batch::default();
                let mut snapshotter = Snapshotter::spawn(snapshots.clone());
                loop {
                    let first = match next(&rx, &mut batch, settings) {
                        Next::Job(job) => job,
                        Next::Retry => {
                            commit(&mut journal, &mut batch, &mut on_commit);
                            continue;
                        }
                        Next::Closed => break,
                    };
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
                                if batch.failing.is_some() {
                                    // The state includes records not on disk:
                                    // recovery would apply them twice.
                                    warn!("snapshot skipped: journal commits are failing");
                                    continue;
                                }
                                let (seq, chain) = journal.head();
                                snapshotter.offer(seq, chain, state);
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
                    metrics::gauge!(RECORDS_WAITING).set(rx.records_waiting() as f64);
                }
                // The last chance for what a failed commit left waiting.
                batch.retry_at = Instant::now();
                commit(&mut journal, &mut batch, &mut on_commit);
                if let Some(reason) = &batch.failing {
                    error!(
                        %reason,
                        records = batch.entries.len(),
                        "stopping with records the journal could not take: their messages were not acknowledged, and the broker delivers them again"
                    );
                }
                if let Err(e) = journal.checkpoint() {
                    warn!(error = %e, "journal checkpoint at shutdown failed");
                }
                snapshotter.finish();
                journal
            })
            .expect("spawning the journal writer");
        Writer {
            jobs,
            snapshots: SnapshotGate::new(),
            thread,
        }
    }

    pub fn sender(&self) -> JobSender<T> {
        self.jobs.clone()
    }

    /// The gate a job sender takes a pass from before it copies its state
    /// for a [`Job::Snapshot`] ([`crate::snapshot_gate`]).
    pub fn snapshot_gate(&self) -> SnapshotGate {
        self.snapshots.clone()
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
    /// Records not yet on disk: those of a failed commit come first.
    entries: Vec<Entry>,
    /// `then`s waiting for `entries`.
    thens: Vec<T>,
    more: Vec<Job<T>>,
    /// Why the last commit failed, while it has not been retried with success.
    failing: Option<String>,
    /// When to try again while failing.
    retry_at: Instant,
    arrivals: Arrivals,
}

/// How fast records come, measured over the writer's gathers: what keeps a
/// linger to about `GroupCommit::fill_records`.
#[derive(Default)]
struct Arrivals {
    /// When the last gather began, and the records it took.
    last: Option<(Instant, usize)>,
    /// Records a second, smoothed over the last few gathers.
    per_s: f64,
}

impl Arrivals {
    /// A gather begins at `at`: the last one's records came in the time
    /// since it began.
    fn begin(&mut self, at: Instant) {
        if let Some((then, records)) = self.last {
            let secs = at.duration_since(then).as_secs_f64().max(1e-6);
            self.per_s = (self.per_s + records as f64 / secs) / 2.0;
        }
        self.last = Some((at, 0));
    }

    /// The gather that began last took `records`.
    fn took(&mut self, records: usize) {
        if let Some((_, taken)) = &mut self.last {
            *taken = records;
        }
    }

    /// How long a gather beginning now lingers.
    fn linger(&self, settings: GroupCommit) -> Duration {
        if self.per_s <= 0.0 {
            return settings.linger;
        }
        let fill = Duration::from_secs_f64(settings.fill_records as f64 / self.per_s);
        settings.linger.min(fill)
    }
}

impl<T> Default for Batch<T> {
    fn default() -> Self {
        Batch {
            entries: Vec::new(),
            thens: Vec::new(),
            more: Vec::new(),
            failing: None,
            retry_at: Instant::now(),
            arrivals: Arrivals::default(),
        }
    }
}

enum Next<T> {
    Job(Job<T>),
    /// No new work, and a failed commit waits to be retried.
    Retry,
    Closed,
}

/// Blocks for the next job (while a commit is failing, only until it is time
/// to retry), then gathers what else is waiting.
fn next<T>(rx: &JobReceiver<T>, batch: &mut Batch<T>, settings: GroupCommit) -> Next<T> {
    let first = if batch.failing.is_some() {
        match rx.recv_deadline(batch.retry_at) {
            Ok(job) => job,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => return Next::Retry,
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return Next::Closed,
        }
    } else {
        match rx.recv() {
            Some(job) => job,
            None => return Next::Closed,
        }
    };
    batch.arrivals.begin(Instant::now());
    let linger = batch.arrivals.linger(settings);
    let first_records = queue::records(&first);
    let room = settings.max_records.saturating_sub(first_records);
    let waiting = take_waiting(rx, batch, room);
    // Lingering sleeps rather than waiting on the queue: a thread woken for
    // every job (10,000 a second at full load) spent more CPU on the wake-ups
    // than on committing.
    let lingered = linger_for_more(
        linger,
        room.saturating_sub(waiting.records),
        std::thread::sleep,
        |room| take_waiting(rx, batch, room),
    );
    batch
        .arrivals
        .took(first_records + waiting.records + lingered);
    Next::Job(first)
}

/// A gather's linger is cut into this many naps (the docs say "a fifth
/// of the linger": `linger_ms` in `docs/operations.md` and the server's
/// `JournalConfig`).
const LINGER_NAPS: u32 = 5;

/// Lingers up to `linger` for more work, in [`LINGER_NAPS`] naps, taking
/// what came after each (`take`, up to the records there is room for);
/// returns the records taken. A batch already full lingers no more, and
/// neither does one whose last nap brought nothing: what it waits for
/// may be waiting for this very commit (a broker sends no more than its
/// in-flight window before kordon acknowledges, and kordon acknowledges
/// after the commit), or the devices have fallen quiet. With a window
/// smaller than a commit's worth of records, every fix would otherwise
/// wait at the broker for a whole linger: with Mosquitto's default window
/// of 20 and a 50 ms linger, fix → alert p99 was 32–37 ms, and 20–23 ms
/// with the linger ending early (`docs/operations.md`,
/// `max_inflight_messages`).
fn linger_for_more(
    linger: Duration,
    room: usize,
    mut nap: impl FnMut(Duration),
    mut take: impl FnMut(usize) -> Taken,
) -> usize {
    if linger.is_zero() {
        return 0;
    }
    let mut records = 0;
    for _ in 0..LINGER_NAPS {
        if records >= room {
            break;
        }
        nap(linger / LINGER_NAPS);
        let taken = take(room - records);
        records += taken.records;
        if taken.jobs == 0 {
            break;
        }
    }
    records
}

/// What [`take_waiting`] took.
#[derive(Debug, Clone, Copy, Default)]
struct Taken {
    jobs: usize,
    records: usize,
}

/// Takes jobs already queued, up to about `max_records` records.
fn take_waiting<T>(rx: &JobReceiver<T>, batch: &mut Batch<T>, max_records: usize) -> Taken {
    let mut taken = Taken::default();
    while taken.records < max_records {
        let Ok(job) = rx.try_recv() else { break };
        taken.records += queue::records(&job);
        taken.jobs += 1;
        batch.more.push(job);
    }
    taken
}

/// Commits what the batch holds and hands its `then`s on; after a failure
/// the records and the `then`s `on_commit` holds back stay for the retry.
fn commit<T>(
    journal: &mut Journal,
    batch: &mut Batch<T>,
    on_commit: &mut impl FnMut(Durable, Vec<T>) -> Vec<T>,
) {
    if batch.thens.is_empty() && batch.entries.is_empty() {
        return;
    }
    let started = Instant::now();
    let outcome = if batch.entries.is_empty() {
        Ok(0)
    } else if let Some(reason) = batch.failing.as_ref().filter(|_| started < batch.retry_at) {
        // Not yet time to try again: still failing for the same reason.
        Err(reason.clone())
    } else {
        let attempt = journal.append(&batch.entries).map_err(|e| e.to_string());
        if attempt.is_err() {
            metrics::counter!(FAILURES).increment(1);
            batch.retry_at = Instant::now() + RETRY_AFTER;
        }
        attempt
    };
    match outcome {
        Ok(bytes) => {
            if !batch.entries.is_empty() {
                metrics::histogram!(COMMIT_SECONDS).record(started.elapsed().as_secs_f64());
                metrics::histogram!(BATCH_RECORDS).record(batch.entries.len() as f64);
                metrics::counter!(BYTES).increment(bytes);
                metrics::counter!(RECORDS).increment(batch.entries.len() as u64);
            }
            if batch.failing.take().is_some() {
                info!(
                    records = batch.entries.len(),
                    "journal commits again: the held records are on disk"
                );
            }
            batch.entries.clear();
            metrics::gauge!(UNCOMMITTED).set(0.0);
            let held = on_commit(Durable::Yes, std::mem::take(&mut batch.thens));
            debug_assert!(held.is_empty(), "nothing waits after a commit");
        }
        Err(reason) => {
            metrics::gauge!(UNCOMMITTED).set(batch.entries.len() as f64);
            if batch.failing.is_none() {
                error!(error = %reason, records = batch.entries.len(), "journal commit failed: retrying; messages are not acknowledged until it succeeds");
            }
            batch.failing = Some(reason.clone());
            batch.thens = on_commit(Durable::No(reason), std::mem::take(&mut batch.thens));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> GroupCommit {
        GroupCommit {
            linger: Duration::from_millis(20),
            fill_records: 500,
            ..GroupCommit::default()
        }
    }

    /// Gathers `records` every `every`, `n` times, from `start`; returns
    /// when the next would begin.
    fn gathers(
        a: &mut Arrivals,
        start: Instant,
        every: Duration,
        records: usize,
        n: u32,
    ) -> Instant {
        let mut at = start;
        for _ in 0..n {
            a.begin(at);
            a.took(records);
            at += every;
        }
        at
    }

    #[test]
    fn a_first_commit_lingers_the_longest() {
        assert_eq!(
            Arrivals::default().linger(settings()),
            Duration::from_millis(20)
        );
    }

    #[test]
    fn a_linger_shortens_when_records_come_fast_and_grows_back_when_they_slow() {
        let mut a = Arrivals::default();
        let ms = Duration::from_millis;
        // 10,000 records a second: 500 take 50 ms, longer than the most.
        let now = gathers(&mut a, Instant::now(), ms(20), 200, 10);
        a.begin(now);
        assert_eq!(a.linger(settings()), ms(20));
        // 100,000 a second: 500 come in 5 ms.
        let now = gathers(&mut a, now, ms(5), 500, 10);
        a.begin(now);
        let fast = a.linger(settings());
        assert!(fast >= ms(4) && fast <= ms(6), "{fast:?}");
        // Then quiet: one record a second.
        let now = gathers(&mut a, now, ms(1000), 1, 10);
        a.begin(now);
        assert_eq!(a.linger(settings()), ms(20));
    }

    /// Lingers with `arrivals[i]` jobs of 10 records each coming during
    /// nap i (none after the last given); returns the naps taken and the
    /// records gathered. No clock: the naps are only counted.
    fn linger_with(linger: Duration, room: usize, arrivals: &[usize]) -> (Vec<Duration>, usize) {
        let naps = std::cell::RefCell::new(Vec::new());
        let records = linger_for_more(
            linger,
            room,
            |d| naps.borrow_mut().push(d),
            |room| {
                let nap = naps.borrow().len() - 1;
                let jobs = arrivals.get(nap).copied().unwrap_or(0);
                let records = (jobs * 10).min(room);
                Taken { jobs, records }
            },
        );
        (naps.into_inner(), records)
    }

    #[test]
    fn a_steady_stream_is_gathered_for_the_whole_linger() {
        let ms = Duration::from_millis;
        let (naps, records) = linger_with(ms(100), 4096, &[5; 6]);
        assert_eq!(naps, vec![ms(20); 5]);
        assert_eq!(records, 250);
    }

    #[test]
    fn a_linger_ends_after_a_nap_that_brought_nothing() {
        let ms = Duration::from_millis;
        // A broker's in-flight window sent everything it allows before the
        // first nap ended: the rest waits for this commit's acknowledgements.
        let (naps, records) = linger_with(ms(100), 4096, &[2, 0, 7]);
        assert_eq!(naps, vec![ms(20), ms(20)]);
        assert_eq!(records, 20);
        // Nothing at all came after the first job.
        let (naps, records) = linger_with(ms(100), 4096, &[]);
        assert_eq!(naps, vec![ms(20)]);
        assert_eq!(records, 0);
    }

    #[test]
    fn a_full_batch_lingers_no_more() {
        let ms = Duration::from_millis;
        let (naps, records) = linger_with(ms(100), 25, &[2, 2, 2]);
        assert_eq!(naps, vec![ms(20), ms(20)]);
        assert_eq!(records, 25);
        let (naps, _) = linger_with(ms(100), 0, &[2, 2, 2]);
        assert!(naps.is_empty(), "{naps:?}");
    }

    #[test]
    fn no_linger_takes_no_nap() {
        let (naps, records) = linger_with(Duration::ZERO, 4096, &[2]);
        assert!(naps.is_empty(), "{naps:?}");
        assert_eq!(records, 0);
    }

    /// The nice value of the calling thread (field 19 of its `stat`).
    #[cfg(target_os = "linux")]
    fn own_nice() -> i64 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("readable stat");
        // The fields after the command, which may hold spaces, in brackets.
        let after_comm = &stat[stat.rfind(')').expect("a command in brackets") + 1..];
        let field = after_comm
            .split_whitespace()
            .nth(19 - 3)
            .expect("a nice field");
        field.parse().expect("a number")
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_snapshot_is_serialised_at_the_lowest_priority_and_written() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = SnapshotStore::new(dir.path());
        let ours = own_nice();
        let mut snapshotter = Snapshotter::spawn(store.clone());
        let gate = SnapshotGate::new();
        let pass = gate.pass().expect("an open gate");
        let (tx, rx) = std::sync::mpsc::channel();
        snapshotter.offer(
            7,
            [0; 32],
            PendingState::with_pass(pass, move || {
                let _ = tx.send(own_nice());
                b"state".to_vec()
            }),
        );
        snapshotter.finish();
        assert_eq!(rx.recv().expect("the state was built"), 19);
        assert_eq!(own_nice(), ours, "only the snapshot thread gives way");
        assert_eq!(store.oldest_seq(), Some(7));
        assert!(!gate.is_taken(), "the written snapshot gave its pass back");
    }

    #[test]
    fn a_snapshot_sent_through_the_writer_gives_its_pass_back_once_written() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("journal.sqlite");
        let (journal, _) = Journal::open(&path, crate::Durability::Full).expect("a journal");
        let writer: Writer<()> = Writer::spawn(
            journal,
            SnapshotStore::new(dir.path()),
            settings(),
            |_, _| Vec::new(),
        );
        let gate = writer.snapshot_gate();
        let pass = gate.pass().expect("an open gate");
        assert!(writer.snapshot_gate().pass().is_none(), "one at a time");
        writer
            .sender()
            .send(Job::Snapshot {
                state: PendingState::with_pass(pass, || b"state".to_vec()),
            })
            .expect("the writer takes jobs");
        writer.finish();
        assert!(!gate.is_taken());
        assert!(
            SnapshotStore::new(dir.path()).oldest_seq().is_some(),
            "written"
        );
    }
}
