//! The journal writer's queue of jobs, bounded by the records the jobs
//! hold rather than by their number.
//!
//! A job holds one message's records or a whole batch of them (the engine's
//! thread hands over everything it handled while more commands were
//! waiting), so a bound on jobs bounds nothing: 4,096 jobs let two million
//! records (1 GB) wait under overload, and a stop then took 73 s to commit
//! them. Counted in records, the queue holds a known amount of memory and a
//! known time of commits. It never drops a job: a sender finding it full
//! waits, and the broker holds the rest.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError};

use crate::writer::Job;

/// A queue that holds up to `max_records` records (a job larger than that
/// goes alone, into an empty queue).
pub fn bounded<T>(max_records: usize) -> (JobSender<T>, JobReceiver<T>) {
    let (jobs, rx) = crossbeam_channel::unbounded();
    let room = Arc::new(Room {
        state: Mutex::new(RoomState::default()),
        freed: Condvar::new(),
        max_records: max_records.max(1),
    });
    (
        JobSender {
            jobs,
            room: room.clone(),
        },
        JobReceiver { rx, room },
    )
}

/// The records a job counts for: its entries, and at least one.
pub fn records<T>(job: &Job<T>) -> usize {
    match job {
        Job::Append { entries, .. } => entries.len().max(1),
        _ => 1,
    }
}

pub struct JobSender<T> {
    jobs: Sender<Job<T>>,
    room: Arc<Room>,
}

impl<T> Clone for JobSender<T> {
    fn clone(&self) -> Self {
        JobSender {
            jobs: self.jobs.clone(),
            room: self.room.clone(),
        }
    }
}

impl<T> JobSender<T> {
    /// Queues `job`, first waiting while the queue has no room for its
    /// records.
    pub fn send(&self, job: Job<T>) -> Result<(), WriterGone> {
        let n = records(&job);
        if !self.room.take(n) {
            return Err(WriterGone);
        }
        self.jobs.send(job).map_err(|_| {
            self.room.give_back(n);
            WriterGone
        })
    }
}

/// The writer has stopped: the job was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterGone;

pub struct JobReceiver<T> {
    rx: Receiver<Job<T>>,
    room: Arc<Room>,
}

impl<T> JobReceiver<T> {
    /// The next job, waiting for one; `None` once every sender is gone.
    pub fn recv(&self) -> Option<Job<T>> {
        self.rx.recv().ok().map(|job| self.taken(job))
    }

    /// The next job if one comes by `deadline`.
    pub fn recv_deadline(&self, deadline: Instant) -> Result<Job<T>, RecvTimeoutError> {
        self.rx.recv_deadline(deadline).map(|job| self.taken(job))
    }

    /// A job already waiting.
    pub fn try_recv(&self) -> Result<Job<T>, TryRecvError> {
        self.rx.try_recv().map(|job| self.taken(job))
    }

    /// Records waiting, in the jobs not yet taken.
    pub fn records_waiting(&self) -> usize {
        self.room.lock().waiting_records
    }

    /// Jobs waiting.
    pub fn len(&self) -> usize {
        self.rx.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }

    fn taken(&self, job: Job<T>) -> Job<T> {
        self.room.give_back(records(&job));
        job
    }
}

impl<T> Drop for JobReceiver<T> {
    /// A sender waiting for room would wait for ever once the writer is
    /// gone (it panicked): it is let go, its job not queued.
    fn drop(&mut self) {
        self.room.close();
    }
}

struct Room {
    state: Mutex<RoomState>,
    freed: Condvar,
    max_records: usize,
}

#[derive(Default)]
struct RoomState {
    waiting_records: usize,
    /// Senders waiting for room.
    senders_waiting: usize,
    closed: bool,
}

impl Room {
    fn lock(&self) -> MutexGuard<'_, RoomState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for room for `n` records and takes it; false when the writer
    /// is gone.
    fn take(&self, n: usize) -> bool {
        let mut state = self.lock();
        while !state.closed
            && state.waiting_records > 0
            && state.waiting_records + n > self.max_records
        {
            state.senders_waiting += 1;
            state = self.freed.wait(state).unwrap_or_else(|e| e.into_inner());
            state.senders_waiting -= 1;
        }
        if state.closed {
            return false;
        }
        state.waiting_records += n;
        true
    }

    fn give_back(&self, n: usize) {
        let mut state = self.lock();
        state.waiting_records = state.waiting_records.saturating_sub(n);
        let senders_waiting = state.senders_waiting > 0;
        drop(state);
        if senders_waiting {
            self.freed.notify_all();
        }
    }

    fn close(&self) {
        self.lock().closed = true;
        self.freed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn job(records: usize) -> Job<()> {
        Job::Append {
            entries: (0..records)
                .map(|_| {
                    crate::Entry::new(crate::Record::Tick {
                        at: jiff::Timestamp::UNIX_EPOCH,
                        engine: crate::EngineTick::AtTick,
                    })
                })
                .collect(),
            then: (),
        }
    }

    #[test]
    fn a_sender_waits_while_the_records_waiting_fill_the_queue() {
        let (tx, rx) = bounded::<()>(10);
        tx.send(job(6)).unwrap();
        tx.send(job(4)).unwrap();
        let (sent_tx, sent) = std::sync::mpsc::channel();
        let sender = tx.clone();
        let waiting = std::thread::spawn(move || {
            let sent = sender.send(job(3)).is_ok();
            sent_tx.send(sent).unwrap();
        });
        assert!(
            sent.recv_timeout(Duration::from_millis(200)).is_err(),
            "10 records wait: no room for 3 more"
        );
        assert!(rx.try_recv().is_ok(), "the writer takes 6");
        assert_eq!(sent.recv_timeout(Duration::from_secs(5)), Ok(true));
        waiting.join().unwrap();
        assert_eq!(rx.len(), 2);
        assert_eq!(rx.records_waiting(), 7, "4 and 3 records wait");
    }

    #[test]
    fn a_job_larger_than_the_queue_goes_alone() {
        let (tx, rx) = bounded::<()>(10);
        tx.send(job(50)).unwrap();
        assert_eq!(rx.len(), 1);
    }

    #[test]
    fn a_waiting_sender_is_let_go_when_the_writer_is_gone() {
        let (tx, rx) = bounded::<()>(1);
        tx.send(job(1)).unwrap();
        let sender = std::thread::spawn(move || tx.send(job(1)).is_err());
        std::thread::sleep(Duration::from_millis(50));
        drop(rx);
        assert!(sender.join().unwrap(), "the sender is let go");
    }
}
