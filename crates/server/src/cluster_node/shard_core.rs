//! One shard of a cluster, served by this instance while it holds the
//! shard's lease: an engine thread of its own ([`CoreThread`]) restored from
//! the shard's latest snapshot, fed the shard's messages in stream order
//! from where that snapshot leaves off, with its output stored in the
//! alerts' stream (`docs/cluster.md`).
//!
//! What it never does: act after its tenure ends. Each alert message is
//! stored only after the tenure is checked at that moment, and so is each
//! snapshot. (A store under way when the tenure ends, or held by the NATS
//! client through a reconnect, can still land after: the stream then keeps
//! whichever copy of a message came first, and the deliverer sends it.) A snapshot is saved only once every message decided before it
//! is stored: the next owner, restoring it, would not decide those again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use crossbeam_channel::TrySendError;
use jiff::Timestamp;
use kordon_alert::AlertSettings;
use kordon_cluster::reader::{Origin, ShardMessage, ShardReader};
use kordon_cluster::snapshots::{ShardSnapshot, ShardSnapshots};
use kordon_cluster::{alerts, ClusterError, Shard, SnapshotEvery, Tenure, Tenures};
use kordon_core::{CaseId, DeviceId, Engine, EngineConfig};
use kordon_ingest::Decoder;
use kordon_journal::{JobSender, SnapshotGate};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::clock::Clock;
use crate::core_thread::{AfterCommit, Command, CoreThread, Envelope, Outlets, StateCopy, Upkeep};
use crate::dispatch::Dispatch;
use kordon_alert::AlertDesk;

/// Messages read ahead of the engine thread.
const READ_AHEAD: usize = 1_024;
/// Alert messages waiting to be stored.
const OUTBOX: usize = 4_096;
/// Case changes waiting for the shard's feeder.
const CASE_CHANGES: usize = 1_024;
/// Between attempts to store an alert message while NATS refuses.
const STORE_RETRY: Duration = Duration::from_millis(200);
/// The longest a shard's clock waits for its replay to end.
const CATCH_UP_MAX: Duration = Duration::from_secs(60);

/// What every shard core of an instance shares.
#[derive(Clone)]
pub struct ShardParts {
    pub js: jetstream::Context,
    pub snapshots: ShardSnapshots,
    pub tenures: watch::Receiver<Tenures>,
    /// The instance's journal: its audit copy of what its shards handled.
    pub journal: JobSender<Vec<AfterCommit>>,
    /// That journal writer's gate for local snapshots (a shard's state
    /// goes to the cluster's snapshots instead, so its engine thread takes
    /// none; the outlets carry it all the same).
    pub journal_snapshots: SnapshotGate,
    pub dispatch: Dispatch,
    pub engine: EngineConfig,
    pub alerts: AlertSettings,
    pub decoder: Arc<Decoder>,
    pub owntracks: HashMap<String, DeviceId>,
    pub clock: Clock,
    pub snapshot_every: SnapshotEvery,
    /// Retention of the instance's journal, as `[journal]` sets it.
    pub retention_days: Option<u32>,
    pub keep_around_episode_s: i64,
    /// Whether a console watches anywhere (positions go out only then).
    pub watching: super::dashboard::Watching,
}

/// A shard being served.
pub struct ShardCore {
    pub tenure: Tenure,
    commands: crossbeam_channel::Sender<Command>,
    /// Its engine's queue for questions, taken before the stream's
    /// messages (`core_thread::queues`).
    desk: crossbeam_channel::Sender<Command>,
    /// What the shard's dashboard feed shows; its positions are asked of it.
    feed: crate::live::Feed,
    /// Whether its engine has every message stored before it opened: until
    /// then its desk is not complete, and it answers no question about it.
    caught_up: watch::Receiver<bool>,
    /// Case changes, handed on by the feeder in the order they came.
    case_changes: mpsc::Sender<Command>,
    engine_thread: Option<std::thread::JoinHandle<()>>,
    reader: ShardReader,
    tasks: Vec<JoinHandle<()>>,
    stop: watch::Sender<bool>,
}

impl ShardCore {
    /// Restores the shard, brings its cases in line with the bucket's
    /// (`cases`), and starts reading after the sequence its state covers.
    pub async fn open(
        parts: &ShardParts,
        tenure: Tenure,
        cases: Vec<kordon_core::Case>,
    ) -> Result<ShardCore, ClusterError> {
        let shard = tenure.shard;
        let (mut core, covered) = restore(parts, shard).await?;
        let (out_tx, out_rx) = mpsc::channel(OUTBOX);
        core.serve_shard();
        core.set_owntracks_phones(&parts.owntracks);
        let feed = crate::live::Feed::new(parts.alerts.escalate_after_s);
        core.attach_feed(feed.clone());
        core.go_live(Outlets {
            journal: parts.journal.clone(),
            publisher: out_tx,
            dispatch: parts.dispatch.clone(),
            snapshots: parts.journal_snapshots.clone(),
        });
        let now = parts.clock.now();
        let in_force = core.case_ids();
        let (commands, commands_rx) = crossbeam_channel::bounded(crate::mqtt::ENGINE_QUEUE);
        let (desk, desk_rx) = crossbeam_channel::bounded(crate::mqtt::DESK_QUEUE);
        let engine_thread = std::thread::Builder::new()
            .name(format!("kordon-shard-{shard}"))
            .spawn(move || core.run(commands_rx, Some(desk_rx)))
            .map_err(|e| shard_error(shard, &e))?;
        for command in case_sync(in_force, cases, now) {
            let _ = commands.send(command);
        }
        let (stop, stopping) = watch::channel(false);
        let (snapshot_tx, snapshot_rx) = mpsc::channel(1);
        let (messages_tx, messages_rx) = mpsc::channel(READ_AHEAD);
        let (case_changes, case_changes_rx) = mpsc::channel(CASE_CHANGES);
        let reader = ShardReader::start(
            &parts.js,
            tenure,
            covered + 1,
            parts.tenures.clone(),
            messages_tx,
        )
        .await?;
        let stored = Arc::new(AtomicU64::new(0));
        let (caught_up, caught_up_rx) = watch::channel(reader.backlog == 0);
        let replayed = caught_up_rx.clone();
        let feeder = Feeder {
            caught_up,
            shard,
            epoch: tenure.epoch,
            nats: parts.js.client(),
            commands: commands.clone(),
            decoder: parts.decoder.clone(),
            snapshots: snapshot_tx,
            every: parts.snapshot_every,
            covered,
            stored: stored.clone(),
        };
        let outbox = Outbox {
            js: parts.js.clone(),
            snapshots: parts.snapshots.clone(),
            tenure,
            tenures: parts.tenures.clone(),
            stored,
        };
        let tasks = vec![
            tokio::spawn(feeder.run(messages_rx, case_changes_rx)),
            tokio::spawn(outbox.run(out_rx, snapshot_rx)),
            tokio::spawn(tick_once_caught_up(
                shard,
                commands.clone(),
                parts.clock,
                stopping,
                caught_up_rx,
            )),
            tokio::spawn(super::dashboard::forward(
                tenure,
                feed.clone(),
                parts.js.client(),
                parts.watching.clone(),
            )),
        ];
        info!(%shard, epoch = %tenure.epoch, covered, "serving the shard");
        Ok(ShardCore {
            tenure,
            commands,
            desk,
            feed,
            caught_up: replayed,
            case_changes,
            engine_thread: Some(engine_thread),
            reader,
            tasks,
            stop,
        })
    }

    /// Hands a case change to the shard's engine, waiting (rarely: case
    /// changes are an operator's, a few a minute) while its queue is full.
    pub async fn sync_case(&self, id: CaseId, case: Option<kordon_core::Case>, now: Timestamp) {
        let command = Command::SyncCase {
            id,
            case: case.map(Box::new),
            now,
        };
        let _ = self.case_changes.send(command).await;
    }

    /// Its engine thread, for questions about its alert desk.
    pub fn served(&self) -> super::ServedEngine {
        super::ServedEngine {
            tenure: self.tenure,
            commands: self.desk.clone(),
            feed: self.feed.clone(),
            caught_up: self.caught_up.clone(),
        }
    }

    /// Whether it stopped by itself (its reader or its outbox ended).
    pub fn is_finished(&self) -> bool {
        self.reader.is_finished() || self.tasks.iter().any(|t| t.is_finished())
    }

    /// Stops serving the shard: reads nothing more, lets the engine thread
    /// end, and drops its state (the next owner restores the snapshot).
    pub async fn close(mut self) {
        let _ = self.stop.send(true);
        self.reader.abort();
        for task in self.tasks.drain(..) {
            task.abort();
        }
        let commands = self.commands.clone();
        let thread = self.engine_thread.take();
        let _ = tokio::task::spawn_blocking(move || {
            let _ = commands.send(Command::Shutdown);
            if let Some(thread) = thread {
                let _ = thread.join();
            }
        })
        .await;
        info!(shard = %self.tenure.shard, "stopped serving the shard");
    }
}

/// A shard that could not be opened for a reason of this instance's own
/// (its engine thread did not start), named as NATS errors are.
fn shard_error(shard: Shard, e: &dyn std::fmt::Display) -> ClusterError {
    ClusterError::Bucket {
        bucket: format!("shard {shard}"),
        message: format!("starting its engine thread: {e}"),
    }
}

/// The shard's engine thread as its latest snapshot left it (or new), and
/// the stream sequence that state covers.
async fn restore(parts: &ShardParts, shard: Shard) -> Result<(CoreThread, u64), ClusterError> {
    let upkeep = Upkeep {
        snapshot_every_records: u64::MAX,
        snapshot_every_s: i64::MAX,
        retention_days: parts.retention_days,
        keep_around_episode_s: parts.keep_around_episode_s,
    };
    // Cluster cases live in the bucket; no case directory is written.
    let no_dir = std::path::PathBuf::new();
    let fresh = || {
        CoreThread::new(
            Engine::new(parts.engine.clone()),
            AlertDesk::new(parts.alerts.clone()),
            no_dir.clone(),
            upkeep.clone(),
        )
    };
    let Some(snapshot) = parts.snapshots.load(shard).await? else {
        return Ok((fresh(), 0));
    };
    let restored = CoreThread::restore(
        &snapshot.state,
        parts.alerts.clone(),
        no_dir.clone(),
        upkeep.clone(),
    );
    match restored {
        Ok(mut core) => {
            core.apply_engine_config(&parts.engine, parts.clock.now());
            Ok((core, snapshot.covered))
        }
        Err(e) => {
            warn!(%shard, error = %e, "the shard's snapshot is unusable (another kordon version?); replaying its whole stream");
            Ok((fresh(), 0))
        }
    }
}

/// The commands that make a restored shard's cases the bucket's.
fn case_sync(
    in_force: Vec<CaseId>,
    bucket: Vec<kordon_core::Case>,
    now: Timestamp,
) -> Vec<Command> {
    let kept: std::collections::HashSet<CaseId> = bucket.iter().map(|c| c.id.clone()).collect();
    let gone = in_force
        .into_iter()
        .filter(|id| !kept.contains(id))
        .map(|id| Command::SyncCase {
            id,
            case: None,
            now,
        });
    let put = bucket.into_iter().map(|case| Command::SyncCase {
        id: case.id.clone(),
        case: Some(Box::new(case)),
        now,
    });
    gone.chain(put).collect()
}

/// Runs the shard's clock once its engine has been handed every message
/// stored before the shard opened (or after [`CATCH_UP_MAX`]). A tick
/// before that would judge deadlines by the wall clock against a state
/// that has not heard yet of what came after its snapshot (an operator's
/// acknowledgement, say), and decide what the last owner never did: an
/// escalation of an alert already acknowledged.
async fn tick_once_caught_up(
    shard: Shard,
    commands: crossbeam_channel::Sender<Command>,
    clock: Clock,
    stopping: watch::Receiver<bool>,
    mut caught_up: watch::Receiver<bool>,
) {
    let waited = Instant::now();
    match tokio::time::timeout(CATCH_UP_MAX, caught_up.wait_for(|done| *done)).await {
        Ok(_) => {
            tracing::debug!(%shard, waited = ?waited.elapsed(), "the shard's replay is done: its clock runs")
        }
        Err(_) => {
            warn!(%shard, "the shard's replay is not done after a minute: its clock runs anyway")
        }
    }
    // A shard's messages come from JetStream as the shard takes them: no
    // pause in them is kordon's own, so its ticks never hear of any held.
    let never_held = crate::ingest_link::Unacknowledged::default();
    crate::mqtt::run_ticker(commands, clock, never_held, stopping).await;
}

/// A snapshot asked of the engine thread: its copy, and the stream
/// sequence it covers.
struct SnapshotDue {
    copy: oneshot::Receiver<StateCopy>,
    covered: u64,
}

/// Hands the reader's messages to the engine thread, and asks for a
/// snapshot when one is due.
struct Feeder {
    /// Set once the messages stored before the shard opened are all
    /// queued: the shard's clock waits for it.
    caught_up: watch::Sender<bool>,
    shard: Shard,
    epoch: kordon_cluster::Epoch,
    /// Where operators' actions are answered.
    nats: async_nats::Client,
    commands: crossbeam_channel::Sender<Command>,
    decoder: Arc<Decoder>,
    snapshots: mpsc::Sender<SnapshotDue>,
    every: SnapshotEvery,
    covered: u64,
    /// Alert messages the outbox has stored: what the clock decides changes
    /// the state with no message read, and a snapshot from before it would
    /// have a new owner decide it again, maybe past the alerts' duplicate
    /// window in a quiet shard.
    stored: Arc<AtomicU64>,
}

impl Feeder {
    async fn run(
        self,
        mut messages: mpsc::Receiver<ShardMessage>,
        mut case_changes: mpsc::Receiver<Command>,
    ) {
        let mut since_snapshot = 0u64;
        let mut stored_at_snapshot = 0u64;
        let mut last_snapshot = Instant::now();
        let mut last_seq = self.covered;
        let mut check = tokio::time::interval(self.every.period.min(Duration::from_secs(1)));
        let lag = metrics::gauge!(crate::metrics::READER_LAG, "shard" => self.shard.to_string());
        loop {
            tokio::select! {
                message = messages.recv() => {
                    let Some(message) = message else { return };
                    last_seq = message.seq;
                    since_snapshot += 1;
                    lag.set(message.pending as f64);
                    let last = message.pending == 0;
                    if !self.hand_on(message).await {
                        return;
                    }
                    if last {
                        self.caught_up.send_if_modified(|done| !std::mem::replace(done, true));
                    }
                }
                change = case_changes.recv() => {
                    let Some(change) = change else { return };
                    if !self.queue(change).await {
                        return;
                    }
                }
                _ = check.tick() => {}
            }
            let stored = self.stored.load(Ordering::Relaxed);
            let changed = since_snapshot > 0 || stored != stored_at_snapshot;
            let due = since_snapshot >= self.every.messages
                || (changed && last_snapshot.elapsed() >= self.every.period);
            if due && self.ask_snapshot(last_seq) {
                since_snapshot = 0;
                stored_at_snapshot = stored;
                last_snapshot = Instant::now();
            }
        }
    }

    /// Decodes a message as the broker's intake would (or an operator's
    /// action as the API would hand it on, or a webhook attempt's outcome
    /// as one process's deliverer would), at the time the stream stored it
    /// (the same for every owner), and queues it.
    async fn hand_on(&self, message: ShardMessage) -> bool {
        let now = Timestamp::try_from(message.stored).unwrap_or(Timestamp::UNIX_EPOCH);
        let carried = match message.origin {
            Origin::Device => {
                let command = self.decoded(message.topic, &message.payload, now);
                return self.queue(command).await;
            }
            Origin::Operator { reply } => {
                let nats = self.nats.clone();
                super::alert_api::carried_command(&message.payload, nats, reply, now)
            }
            Origin::WebhookAttempt => super::webhooks::carried_attempt(&message.payload),
        };
        let Some(command) = carried else {
            return true;
        };
        // The clock's decisions up to the action's time first, the same for
        // every owner: an alert the clock opened (a bracelet gone offline)
        // after the last snapshot exists for a next owner replaying the
        // action too, whenever its own ticks come.
        self.queue(Command::Tick {
            at: now,
            intake_held: false,
        })
        .await
            && self.queue(command).await
    }

    /// A device's message, decoded as the broker's intake would.
    fn decoded(&self, topic: String, payload: &[u8], now: Timestamp) -> Command {
        match self.decoder.decode(&topic, payload, now) {
            Ok(decoded) => Command::Message {
                topic,
                message: decoded,
                received: Instant::now(),
                now,
                ack: None,
            },
            Err(refusal) => Command::Refused {
                topic,
                refusal,
                now,
                ack: None,
            },
        }
    }

    /// Waits for room in the engine thread's queue; false once it is gone.
    async fn queue(&self, mut command: Command) -> bool {
        loop {
            match self.commands.try_send(command) {
                Ok(()) => return true,
                Err(TrySendError::Full(back)) => {
                    command = back;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err(TrySendError::Disconnected(_)) => return false,
            }
        }
    }

    /// Asks the engine thread for a copy of its state after the messages
    /// up to `covered`; false when one is still being saved.
    fn ask_snapshot(&self, covered: u64) -> bool {
        let Ok(permit) = self.snapshots.try_reserve() else {
            return false;
        };
        let (reply, copy) = oneshot::channel();
        if self.commands.try_send(Command::CopyState(reply)).is_err() {
            return false; // a full queue: asked again at the next check
        }
        tracing::debug!(shard = %self.shard, epoch = %self.epoch, covered, "shard snapshot asked");
        permit.send(SnapshotDue { copy, covered });
        true
    }
}

/// Stores what the shard's engine decides in the alerts' stream, and saves
/// its snapshots, each while the tenure holds.
struct Outbox {
    js: jetstream::Context,
    snapshots: ShardSnapshots,
    tenure: Tenure,
    tenures: watch::Receiver<Tenures>,
    /// Counts the messages stored, for the feeder.
    stored: Arc<AtomicU64>,
}

impl Outbox {
    async fn run(
        self,
        mut envelopes: mpsc::Receiver<Envelope>,
        mut due: mpsc::Receiver<SnapshotDue>,
    ) {
        let mut pending: Option<SnapshotDue> = None;
        loop {
            tokio::select! {
                envelope = envelopes.recv() => {
                    let Some(envelope) = envelope else { return };
                    if !self.store(envelope).await {
                        return;
                    }
                }
                copy = async { (&mut pending.as_mut().expect("guarded").copy).await }, if pending.is_some() => {
                    let covered = pending.take().expect("guarded").covered;
                    let Ok(copy) = copy else { return };
                    // Every message decided before the copy is queued by
                    // now: stored first, so that the snapshot never covers
                    // an alert the stream does not hold. Only those: under
                    // steady output, draining until empty might never end.
                    for _ in 0..envelopes.len() {
                        let Ok(envelope) = envelopes.try_recv() else { break };
                        if !self.store(envelope).await {
                            return;
                        }
                    }
                    self.save(copy, covered).await;
                }
                next = due.recv(), if pending.is_none() => {
                    let Some(next) = next else { return };
                    pending = Some(next);
                }
            }
        }
    }

    fn holds(&self) -> bool {
        self.tenures
            .borrow()
            .may_act(self.tenure.shard, Instant::now())
            .is_some_and(|t| t.epoch == self.tenure.epoch)
    }

    /// Stores one message, retrying while the tenure holds; false once it
    /// no longer does (the next owner decides the message again).
    async fn store(&self, envelope: Envelope) -> bool {
        let shard = self.tenure.shard;
        let topic = envelope.message.topic;
        let payload = envelope.message.payload;
        loop {
            if !self.holds() {
                info!(%shard, "the tenure ended: storing nothing more for the shard");
                return false;
            }
            match alerts::store(&self.js, shard, self.tenure.epoch, &topic, payload.clone()).await {
                Ok(outcome) => {
                    let counter = match outcome {
                        alerts::Stored::New(_) => crate::metrics::PUBLISHED,
                        alerts::Stored::Duplicate => crate::metrics::ALREADY_STORED,
                    };
                    metrics::counter!(counter).increment(1);
                    self.stored.fetch_add(1, Ordering::Relaxed);
                    return true;
                }
                Err(e) => {
                    warn!(%shard, topic, error = %e, "storing an alert message; trying again");
                    tokio::time::sleep(STORE_RETRY).await;
                }
            }
        }
    }

    async fn save(&self, copy: StateCopy, covered: u64) {
        let shard = self.tenure.shard;
        let state = match tokio::task::spawn_blocking(move || copy.serialise()).await {
            Ok(state) => state,
            Err(e) => {
                warn!(%shard, error = %e, "serialising the shard's state");
                return;
            }
        };
        if !self.holds() {
            return;
        }
        let snapshot = ShardSnapshot {
            covered,
            epoch: self.tenure.epoch,
            state,
        };
        match self.snapshots.save(shard, snapshot).await {
            Ok(bytes) => tracing::debug!(%shard, covered, bytes, "shard snapshot saved"),
            // The next one is due soon; until then a new owner replays more.
            Err(e) => warn!(%shard, error = %e, "saving the shard's snapshot"),
        }
    }
}
