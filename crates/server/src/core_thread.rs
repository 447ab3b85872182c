//! The engine's own thread. It owns the [`Engine`], the [`AlertDesk`], the
//! case directory and the [`Deliveries`], takes [`Command`]s from two
//! crossbeam channels: the intake's (fixes from MQTT, the 1 s tick) in
//! arrival order, and the API's requests ahead of it ([`queues`]). What a
//! command decides to publish (alerts, refusals) goes to the publisher at
//! once; its journal records go to the journal writer together
//! with the broker acknowledgements and API answers that must wait for
//! them. The writer passes those on once the records are committed: nothing
//! is acknowledged to the broker, and no API change confirmed, before it is
//! durable, and no alert waits for the disk (see `docs/mqtt.md`, "When an
//! alert leaves"). Nothing here waits on the disk or the network, only,
//! when the writer or the publisher is a full queue behind, for room in
//! that queue (backpressure: the thread's own queue then fills, and the
//! broker holds the rest).
//!
//! The same code replays the journal at start ([`Sink::Replay`]): the
//! records rebuild the state, and nothing is journaled or published again.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::Receiver;
use jiff::Timestamp;
use kordon_alert::{topics, AlertDesk, AlertRecord, AlertSettings, Outbound};
use kordon_core::{
    BanHit, Case, CaseId, CaseRejected, ClearReason, DeviceId, Disposition, Engine, Event, Phase,
};
use kordon_ingest::{Message, Reason, Refusal};
use kordon_journal::{
    EngineTick, Entry, Job, JobSender, PendingState, Record, SnapshotGate, SnapshotPass,
};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tracing::{debug, error, info, warn};

use crate::cases;
use crate::live::{DevicePosition, Feed};

mod operator;
mod queues;
#[cfg(test)]
mod tests;
use crate::delivery::{Actions, Deliveries, Expected};
use crate::engine_time::EngineTime;
use crate::metrics as m;
use crate::mqtt::Receipt;
pub use operator::{OperatorAction, OperatorError, OperatorReply};

/// What the engine's thread is asked to do. `now` is stamped by the sender:
/// the thread itself never reads the clock for decisions.
pub enum Command {
    /// A decoded device or operator message, with the MQTT publish to
    /// acknowledge once it is handled.
    Message {
        topic: String,
        message: Message,
        received: Instant,
        now: Timestamp,
        ack: Option<Receipt>,
    },
    /// A message the decoder refused. It goes through this thread, not
    /// straight to the publisher, so that broker acknowledgements leave in
    /// the order the messages came (brokers such as rumqttd insist).
    Refused {
        topic: String,
        refusal: Refusal,
        now: Timestamp,
        ack: Option<Receipt>,
    },
    /// One of kordon's own alert messages, read back from the broker.
    Echo {
        topic: String,
        payload: Vec<u8>,
        now: Timestamp,
        ack: Option<Receipt>,
    },
    /// The broker connection is (again) up; `session_present`: the broker
    /// kept kordon's session (its subscriptions and queued messages).
    Connected {
        now: Timestamp,
        session_present: bool,
    },
    /// Kordon's clock advanced to `at`; the engine's follows as the
    /// messages so far say (see [`crate::engine_time`]).
    Tick {
        at: Timestamp,
        /// Messages kordon has read wait for their acknowledgement: a pause
        /// in what arrives is kordon's, not the devices' silence.
        intake_held: bool,
    },
    PutCase {
        case: Box<Case>,
        now: Timestamp,
        reply: oneshot::Sender<Result<PutOutcome, PutCaseError>>,
    },
    DeleteCase {
        id: CaseId,
        now: Timestamp,
        reply: oneshot::Sender<Result<bool, String>>,
    },
    ListCases(oneshot::Sender<Vec<CaseSummary>>),
    GetCase(CaseId, oneshot::Sender<Option<Case>>),
    AllCases(oneshot::Sender<Vec<Case>>),
    Alerts(oneshot::Sender<Vec<AlertRecord>>),
    Alert(String, oneshot::Sender<Option<AlertRecord>>),
    /// An operator acts on an alert (see [`OperatorAction`]). The answer
    /// comes once what it did is durable; a refusal at once.
    Operator {
        id: String,
        operator: String,
        action: OperatorAction,
        now: Timestamp,
        reply: oneshot::Sender<Result<OperatorReply, OperatorError>>,
    },
    Bans {
        lat: f64,
        lon: f64,
        now: Timestamp,
        reply: oneshot::Sender<Vec<BanHit>>,
    },
    /// An attempt to deliver a CAP message of `alert` to a webhook.
    Webhook {
        alert: String,
        attempt: kordon_alert::DeliveryAttempt,
    },
    /// Cluster mode: a case as the cluster's case bucket now holds it
    /// (`None`: deleted). The bucket, not a directory, stores cluster
    /// cases, so nothing is written to disk here but the journal.
    SyncCase {
        id: CaseId,
        case: Option<Box<Case>>,
        now: Timestamp,
    },
    /// Cluster mode: a copy of the state after every command queued before
    /// this one, for the shard's snapshot.
    CopyState(oneshot::Sender<StateCopy>),
    /// Finish what is queued before this, then stop.
    Shutdown,
}

impl Command {
    /// When kordon took the command in, for the commands that carry it.
    fn now(&self) -> Option<Timestamp> {
        match self {
            Command::Message { now, .. }
            | Command::Refused { now, .. }
            | Command::Echo { now, .. }
            | Command::PutCase { now, .. }
            | Command::DeleteCase { now, .. }
            | Command::Operator { now, .. }
            | Command::SyncCase { now, .. }
            | Command::Bans { now, .. }
            | Command::Connected { now, .. }
            | Command::Tick { at: now, .. } => Some(*now),
            _ => None,
        }
    }

    /// The event time of a device message: what it says about when things
    /// happened (see [`crate::engine_time`]).
    pub fn event_time(&self) -> Option<Timestamp> {
        match self {
            Command::Message { message, .. } => match message {
                Message::Fix(fix) => Some(fix.ts),
                Message::Status(status) => Some(status.ts),
                Message::Ack(_) => None,
            },
            _ => None,
        }
    }

    /// The command, with the broker's receipt to acknowledge once the
    /// command is handled (and what it caused is durable).
    pub fn acknowledging(mut self, receipt: Receipt) -> Self {
        match &mut self {
            Command::Message { ack, .. }
            | Command::Refused { ack, .. }
            | Command::Echo { ack, .. } => *ack = Some(receipt),
            _ => {}
        }
        self
    }
}

/// An alert message (or a reject, a position request) for the publisher,
/// which publishes them in order, as they are decided.
#[derive(Debug)]
pub struct Envelope {
    pub message: Outbound,
    pub retain: bool,
    /// When the message that caused this alert arrived, for the
    /// fix-to-alert latency.
    pub caused_at: Option<Instant>,
    pub kind: Option<&'static str>,
}

/// What waits for a command's records to be durable.
#[derive(Debug)]
pub enum AfterCommit {
    /// Acknowledge a handled message to the broker (on the connection it
    /// came on only, see [`Receipt`]); the ingest link writes it.
    Ack(Receipt),
    /// Answer a caller whose change is now durable (held, like `Ack`,
    /// while the journal cannot commit).
    Reply(Reply),
}

/// An answer to give once the records before it are committed.
pub struct Reply(Box<dyn FnOnce() + Send>);

impl Reply {
    pub fn new(answer: impl FnOnce() + Send + 'static) -> Self {
        Reply(Box::new(answer))
    }

    pub fn send(self) {
        (self.0)()
    }
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Reply")
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct CaseSummary {
    pub id: CaseId,
    pub risk: kordon_core::RiskLevel,
    pub offender: kordon_core::DeviceId,
    pub protected: usize,
    pub orders: usize,
}

impl CaseSummary {
    pub fn of(case: &Case) -> Self {
        CaseSummary {
            id: case.id.clone(),
            risk: case.risk,
            offender: case.offender.device.clone(),
            protected: case.protected.len(),
            orders: case.orders.len(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PutOutcome {
    Created,
    Replaced,
}

#[derive(Debug)]
pub enum PutCaseError {
    Rejected(CaseRejected),
    Storage(String),
}

/// Where a command's records and messages go.
pub enum Sink {
    /// Replaying the journal: the state is rebuilt, nothing leaves.
    Replay,
    Live(Outlets),
}

/// Where a live command's output goes.
pub struct Outlets {
    /// Records, with the acknowledgements and answers that wait for them.
    pub journal: JobSender<Vec<AfterCommit>>,
    /// Alert messages and refusals, as soon as they are decided. A crash
    /// before their records are committed leaves the broker's message
    /// unacknowledged: it comes again, is decided again, and the same
    /// message (same episode id and phase) is sent again.
    pub publisher: tokio::sync::mpsc::Sender<Envelope>,
    /// Police CAP messages for the webhooks.
    pub dispatch: crate::dispatch::Dispatch,
    /// The journal writer's: a snapshot is copied only while no other is
    /// being written ([`kordon_journal::snapshot_gate`]).
    pub snapshots: SnapshotGate,
}

/// When the engine's thread asks for snapshots and retention passes.
#[derive(Debug, Clone)]
pub struct Upkeep {
    pub snapshot_every_records: u64,
    pub snapshot_every_s: i64,
    /// Fixes older than this many days are retired; `None` keeps all.
    pub retention_days: Option<u32>,
    /// Fixes this close to an alert episode are kept regardless.
    pub keep_around_episode_s: i64,
}

/// The thread's state as one snapshot: the engine in postcard, the rest in
/// JSON (cases and alert messages have optional and tagged fields, which
/// postcard cannot read back).
#[derive(Serialize, Deserialize)]
struct State {
    engine: Vec<u8>,
    desk: Vec<u8>,
    cases: Vec<u8>,
    deliveries: Vec<u8>,
}

/// A copy of the thread's state for a snapshot (see
/// [`CoreThread::state_copy`]).
pub struct StateCopy {
    engine: Engine,
    cases: Vec<Arc<Case>>,
    desk: Vec<u8>,
    deliveries: Vec<u8>,
}

impl StateCopy {
    fn state(self) -> State {
        // In the order of their ids, so that equal states are equal bytes;
        // sorted here, off the engine's thread.
        let mut cases: Vec<&Case> = self.cases.iter().map(|c| &**c).collect();
        cases.sort_by(|a, b| a.id.cmp(&b.id));
        State {
            engine: self.engine.snapshot(),
            desk: self.desk,
            cases: serde_json::to_vec(&cases).expect("cases serialise"),
            deliveries: self.deliveries,
        }
    }

    /// The bytes [`CoreThread::restore`] reads.
    pub fn serialise(self) -> Vec<u8> {
        postcard::to_stdvec(&self.state()).expect("state serialises")
    }
}

/// The most records (and acknowledgements) in one journal job while
/// commands keep coming: a job waits for the queue to empty, and this
/// bounds how long acknowledgements wait with it.
const JOURNAL_JOB_RECORDS: usize = 512;

pub struct CoreThread {
    engine: Engine,
    desk: AlertDesk,
    /// Shared with the snapshots' copies: a case is replaced, never changed.
    cases: HashMap<CaseId, Arc<Case>>,
    /// The file each case was loaded from or written to.
    sources: HashMap<CaseId, PathBuf>,
    case_dir: PathBuf,
    deliveries: Deliveries,
    sink: Sink,
    /// What the command being handled journals, and then sends.
    entries: Vec<Entry>,
    envelopes: Vec<Envelope>,
    /// What waits for `entries` to be durable (acknowledgements, answers):
    /// the commands handled since the last journal job.
    after_commit: Vec<AfterCommit>,
    upkeep: Upkeep,
    records_since_snapshot: u64,
    last_snapshot: Option<Timestamp>,
    last_retention: Option<Timestamp>,
    /// The time the engine's deadlines last ran at (see
    /// [`crate::engine_time`]): case changes happen at it, so that none is
    /// ahead of the ticks that follow while a backlog is drained.
    engine_time: Option<Timestamp>,
    /// What each tick carries to the engine, from the event times of the
    /// messages before it: kept here, where the messages and ticks meet in
    /// the order they were queued.
    ticks: EngineTime,
    /// OwnTracks phones by device id, as `"user/device"`: they are asked
    /// for a fresh fix on their command topic, other devices on kordon's.
    owntracks_phones: HashMap<DeviceId, String>,
    /// The dashboard's live stream (see [`crate::live`]).
    feed: Option<Feed>,
    fixes_in: FixesIn,
    /// Serving one shard of a cluster (see [`CoreThread::serve_shard`]).
    shard_mode: bool,
}

/// Empties the engine's queue as its thread ends, however it ends: the
/// ingest link and the ticker wait for room in it, and a queue left full
/// would keep them waiting for good instead of finding the engine gone.
struct EmptiedOnExit(Receiver<Command>);

impl Drop for EmptiedOnExit {
    fn drop(&mut self) {
        while self.0.try_recv().is_ok() {}
    }
}

/// `kordon_fixes_total` by disposition, looked up once rather than by name
/// for every fix.
struct FixesIn([metrics::Counter; 5]);

impl FixesIn {
    const DISPOSITIONS: [Disposition; 5] = [
        Disposition::Accepted,
        Disposition::Suspect,
        Disposition::Duplicate,
        Disposition::Late,
        Disposition::Unusable,
    ];

    fn new() -> Self {
        FixesIn(
            Self::DISPOSITIONS
                .map(|d| metrics::counter!(m::FIXES_IN, "disposition" => disposition(d))),
        )
    }

    fn count(&self, d: Disposition) {
        let i = Self::DISPOSITIONS.iter().position(|x| *x == d);
        if let Some(counter) = i.and_then(|i| self.0.get(i)) {
            counter.increment(1);
        }
    }
}

impl CoreThread {
    /// A thread in replay mode; [`CoreThread::go_live`] connects it.
    pub fn new(engine: Engine, desk: AlertDesk, case_dir: PathBuf, upkeep: Upkeep) -> Self {
        CoreThread {
            engine,
            desk,
            cases: HashMap::new(),
            sources: HashMap::new(),
            case_dir,
            deliveries: Deliveries::default(),
            sink: Sink::Replay,
            entries: Vec::new(),
            envelopes: Vec::new(),
            after_commit: Vec::new(),
            upkeep,
            records_since_snapshot: 0,
            last_snapshot: None,
            last_retention: None,
            engine_time: None,
            ticks: EngineTime::default(),
            owntracks_phones: HashMap::new(),
            fixes_in: FixesIn::new(),
            feed: None,
            shard_mode: false,
        }
    }

    /// The thread as a snapshot left it, still in replay mode.
    pub fn restore(
        state: &[u8],
        settings: AlertSettings,
        case_dir: PathBuf,
        upkeep: Upkeep,
    ) -> Result<Self, String> {
        let state: State = postcard::from_bytes(state).map_err(|e| format!("snapshot: {e}"))?;
        let engine = Engine::restore(&state.engine).map_err(|e| format!("engine snapshot: {e}"))?;
        let cases: Vec<Case> =
            serde_json::from_slice(&state.cases).map_err(|e| format!("case snapshot: {e}"))?;
        let desk = AlertDesk::restore(settings, &cases, &state.desk)
            .map_err(|e| format!("alert desk snapshot: {e}"))?;
        let deliveries: Deliveries = serde_json::from_slice(&state.deliveries)
            .map_err(|e| format!("delivery snapshot: {e}"))?;
        let mut thread = CoreThread::new(engine, desk, case_dir, upkeep);
        thread.cases = cases
            .into_iter()
            .map(|c| (c.id.clone(), Arc::new(c)))
            .collect();
        thread.deliveries = deliveries;
        Ok(thread)
    }

    /// The state as a snapshot holds it ([`CoreThread::restore`] reads it).
    pub fn snapshot_state(&self) -> Vec<u8> {
        self.state_copy().serialise()
    }

    /// What a snapshot holds, copied so that it can be serialised off this
    /// thread: the engine is cloned, sharing its cases and devices with
    /// this thread's until either changes them (`kordon_core`'s
    /// `engine::slots`), and the cases are shared (this thread stops only
    /// for that); the alert desk and the deliveries, which hold only what
    /// is open, are serialised here.
    pub fn state_copy(&self) -> StateCopy {
        StateCopy {
            engine: self.engine.clone(),
            cases: self.cases.values().cloned().collect(),
            desk: self.desk.snapshot(),
            deliveries: serde_json::to_vec(&self.deliveries).expect("deliveries serialise"),
        }
    }

    /// The size of each part of [`CoreThread::snapshot_state`], for the
    /// snapshot benchmark.
    pub fn snapshot_parts(&self) -> Vec<(&'static str, usize)> {
        let state = self.state_copy().state();
        vec![
            ("engine", state.engine.len()),
            ("desk", state.desk.len()),
            ("cases", state.cases.len()),
            ("deliveries", state.deliveries.len()),
        ]
    }

    /// Rebuilds state from one journal record.
    pub fn replay(&mut self, record: Record) {
        match record {
            Record::Fix { fix, received } => {
                if let Ok(outcome) = self.engine.ingest_fix(&fix) {
                    if self.feed.is_some() {
                        let memberships = self.engine.memberships_of(fix.device.as_str());
                        self.show_position(&fix, memberships.first(), None);
                    }
                    self.publish_events(&outcome.events, received, None);
                }
                self.request_positions(received);
            }
            Record::Status { status, received } => {
                if let Ok(events) = self.engine.ingest_status(&status) {
                    self.publish_events(&events, received, None);
                }
            }
            Record::CaseUpsert { case, at } => {
                if let Err(e) = self.apply_case(case, at) {
                    warn!(error = %e, "a journaled case is refused on replay");
                }
            }
            Record::CaseRemove { case, at } => self.remove_case_state(&case, at),
            Record::Tick { at, engine } => self.tick(at, engine),
            // At the time they were done at live, so that the same
            // episodes close at the same time.
            record @ (Record::Ack { .. }
            | Record::Resolve { .. }
            | Record::Note { .. }
            | Record::Escalate { .. }
            | Record::Webhook { .. }) => self.replay_operator(record),
            Record::Outbound { topic, payload, at } => {
                self.deliveries.expect(
                    &Outbound {
                        topic,
                        payload: payload.into_bytes(),
                    },
                    at,
                );
            }
            Record::Delivered { message, .. } => self.deliveries.forget(&message),
            Record::Event { .. } | Record::Retention { .. } => {}
        }
        self.entries.clear();
        self.envelopes.clear();
    }

    /// Thresholds from kordon.toml that differ from those the restored
    /// engine ran on take effect now; the journal replayed on the old ones,
    /// as they were in force then.
    pub fn apply_engine_config(&mut self, config: &kordon_core::EngineConfig, now: Timestamp) {
        if self.engine.config() != config {
            warn!("engine thresholds in the configuration differ from the ones the journal ran on; the new ones apply from now");
            self.engine.reconfigure(config.clone(), now);
        }
    }

    /// Ends replay: from here on records go to the journal writer, and
    /// alert messages whose delivery the journal does not confirm are
    /// uncertain until the broker is asked (see [`crate::delivery`]).
    /// The OwnTracks phones of `[owntracks.devices]` (`"user/device"` →
    /// device id), so that requests for a fresh fix reach them.
    pub fn set_owntracks_phones(&mut self, phones: &HashMap<String, DeviceId>) {
        self.owntracks_phones = phones
            .iter()
            .map(|(user_device, device)| (device.clone(), user_device.clone()))
            .collect();
    }

    /// Feeds `feed` from now on: positions as the journal is replayed,
    /// everything once live.
    /// Feeds the dashboard from now on; its map starts where the engine
    /// last saw each device (a restored engine knows devices that have
    /// not reported since its snapshot: one silent since is the one to
    /// look for).
    pub fn attach_feed(&mut self, feed: Feed) {
        for last in self.engine.last_positions() {
            feed.remember_position(DevicePosition {
                device: last.device,
                case: last.case,
                role: last.role,
                lat: last.lat,
                lon: last.lon,
                acc_m: last.accuracy_m,
                ts: last.ts,
                speed_mps: None,
                heading_deg: None,
            });
        }
        self.feed = Some(feed);
    }

    /// Serves one shard of a cluster (`docs/cluster.md`): its snapshots are
    /// taken by whoever asks ([`Command::CopyState`]) and go to JetStream,
    /// not to the journal, and what it publishes goes to the alerts' stream,
    /// whose message ids keep one copy of each; so the echo and fences of
    /// [`Deliveries`] have nothing to confirm here.
    pub fn serve_shard(&mut self) {
        self.shard_mode = true;
        self.deliveries = Deliveries::default();
    }

    /// The ids of the cases in force.
    pub fn case_ids(&self) -> Vec<CaseId> {
        self.cases.keys().cloned().collect()
    }

    pub fn go_live(&mut self, outlets: Outlets) {
        self.sink = Sink::Live(outlets);
        self.deliveries.begin_recovery();
        // What the replay changed is the state consoles fetch, not news.
        self.desk.take_changed();
    }

    /// Makes the running cases those of the case directory, journaling
    /// each change. Refused cases are returned, each named, and stop kordon.
    pub fn reconcile_cases(
        &mut self,
        files: Vec<(PathBuf, Case)>,
        now: Timestamp,
    ) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (path, case) in files {
            seen.insert(case.id.clone());
            self.sources.insert(case.id.clone(), path.clone());
            if self.cases.get(&case.id).map(|c| &**c) == Some(&case) {
                continue;
            }
            let id = case.id.clone();
            match self.apply_case(case.clone(), now) {
                Ok(_) => self.entries.push(Entry::for_cases(
                    Record::CaseUpsert { case, at: now },
                    vec![id],
                )),
                Err(rejected) => {
                    problems.push(format!("{}: case {id}: {rejected}", path.display()))
                }
            }
        }
        let gone: Vec<CaseId> = self
            .cases
            .keys()
            .filter(|id| !seen.contains(*id))
            .cloned()
            .collect();
        for id in gone {
            info!(case = %id, "case file gone since the last run: case removed");
            self.remove_case_state(&id, now);
            self.entries.push(Entry::for_cases(
                Record::CaseRemove {
                    case: id.clone(),
                    at: now,
                },
                vec![id],
            ));
        }
        self.flush();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    /// Runs until both queues are closed or [`Command::Shutdown`]: the
    /// intake's, and the desk's for people's requests (`None`: they come on
    /// the intake's), taken first ([`queues`]).
    pub fn run(mut self, commands: Receiver<Command>, desk: Option<Receiver<Command>>) {
        info!(
            cases = self.cases.len(),
            devices = self.engine.device_count(),
            "engine thread running"
        );
        let _emptied = EmptiedOnExit(commands.clone());
        let mut queues = queues::Queues::new(commands, desk);
        // Looked up once: by name, per command, it cost 3 % of the thread.
        let queue_depth = metrics::gauge!(m::CORE_QUEUE_DEPTH);
        // Woken once per batch the ingest link hands on: it reads the
        // broker at most once every half millisecond
        // (`ingest_link::READ_PERIOD`).
        while let Some(command) = queues.next() {
            queue_depth.set(queues.intake_len() as f64);
            let now = command.now();
            if self.handle(command).is_break() {
                break;
            }
            self.after_command(&queues, now);
        }
        self.hand_to_journal();
        // A last snapshot, so the next start replays little.
        if self.is_live() && !self.shard_mode {
            let copy = self.state_copy();
            self.send_to_journal(Job::Snapshot {
                state: PendingState::new(move || copy.serialise()),
            });
        }
        info!("engine thread stopped");
    }

    /// Handles one command; `Break` once told to stop.
    fn handle(&mut self, command: Command) -> ControlFlow<()> {
        if let (Some(ts), Command::Message { now, .. }) = (command.event_time(), &command) {
            self.ticks.received(ts, *now);
        }
        match command {
            Command::Message {
                topic,
                message,
                received,
                now,
                ack,
            } => {
                self.message_or_refusal(&topic, message, received, now);
                self.ack(ack);
            }
            Command::Refused {
                topic,
                refusal,
                now,
                ack,
            } => {
                self.refuse(&topic, refusal, now);
                self.ack(ack);
            }
            Command::Echo {
                topic,
                payload,
                now,
                ack,
            } => {
                let actions = self.deliveries.echo(&topic, &payload);
                self.act(actions, now);
                self.ack(ack);
            }
            Command::Connected {
                now,
                session_present,
            } => {
                let actions = self.deliveries.connected(now, session_present);
                self.act(actions, now);
            }
            Command::Tick { at, intake_held } => self.on_tick(at, intake_held),
            Command::PutCase { case, now, reply } => {
                let _ = reply.send(self.on_put_case(*case, now));
            }
            Command::DeleteCase { id, now, reply } => {
                let _ = reply.send(self.on_delete_case(id, now));
            }
            Command::ListCases(reply) => {
                let _ = reply.send(self.case_list());
            }
            Command::GetCase(id, reply) => {
                let _ = reply.send(self.cases.get(&id).map(|c| Case::clone(c)));
            }
            Command::AllCases(reply) => {
                let _ = reply.send(self.cases.values().map(|c| Case::clone(c)).collect());
            }
            Command::Alerts(reply) => {
                let _ = reply.send(self.desk.alerts().into_iter().cloned().collect());
            }
            Command::Alert(id, reply) => {
                let _ = reply.send(self.desk.alert(&id).cloned());
            }
            Command::Operator {
                id,
                operator,
                action,
                now,
                reply,
            } => self.on_operator(&id, &operator, action, now, reply),
            Command::Bans {
                lat,
                lon,
                now,
                reply,
            } => {
                let _ = reply.send(self.engine.bans_at(lat, lon, now));
            }
            Command::Webhook { alert, attempt } => self.delivery_attempt(alert, attempt),
            Command::SyncCase { id, case, now } => {
                let at = self.case_time(now);
                self.sync_case(id, case.map(|c| *c), at);
            }
            Command::CopyState(reply) => {
                let _ = reply.send(self.state_copy());
            }
            Command::Shutdown => return ControlFlow::Break(()),
        }
        ControlFlow::Continue(())
    }

    /// The clock's tick: what is due by now (GPS lost, curfews, deliveries
    /// unconfirmed), and the dashboard's held-back positions.
    fn on_tick(&mut self, at: Timestamp, intake_held: bool) {
        let engine = self.ticks.tick(at, intake_held);
        self.entries.push(Entry::new(Record::Tick { at, engine }));
        self.tick(at, engine);
        let actions = self.deliveries.tick(at);
        self.act(actions, at);
        if let Some(feed) = &self.feed {
            feed.flush_positions(Instant::now());
        }
    }

    fn on_put_case(&mut self, case: Case, now: Timestamp) -> Result<PutOutcome, PutCaseError> {
        let at = self.case_time(now);
        let id = case.id.clone();
        let result = self.put_case(case, at);
        if let (Ok(_), Some(feed)) = (&result, &self.feed) {
            feed.case(id);
        }
        result
    }

    fn on_delete_case(&mut self, id: CaseId, now: Timestamp) -> Result<bool, String> {
        let at = self.case_time(now);
        let result = self.delete_case(&id, at);
        if let (Ok(true), Some(feed)) = (&result, &self.feed) {
            let engine = &self.engine;
            feed.forget_devices(|d| engine.has_device(d.as_str()));
            feed.case(id);
        }
        result
    }

    /// Every case in force, by id.
    fn case_list(&self) -> Vec<CaseSummary> {
        let mut list: Vec<CaseSummary> = self.cases.values().map(|c| CaseSummary::of(c)).collect();
        list.sort_by(|a, b| a.id.cmp(&b.id));
        list
    }

    /// An operator's action on an alert. A refusal is answered at once;
    /// what was done only once its records are committed (see
    /// `AfterCommit::Reply`): a 200 means it survives a crash.
    fn on_operator(
        &mut self,
        id: &str,
        operator: &str,
        action: OperatorAction,
        now: Timestamp,
        reply: oneshot::Sender<Result<OperatorReply, OperatorError>>,
    ) {
        match self.operate(id, operator, action, now) {
            Ok(done) => self
                .after_commit
                .push(AfterCommit::Reply(Reply::new(move || {
                    let _ = reply.send(Ok(done));
                }))),
            Err(e) => {
                let _ = reply.send(Err(e));
            }
        }
    }

    /// What follows every command: what it decided to publish goes out, its
    /// records go to the journal once the queues are empty (or enough have
    /// gathered), consoles hear of changed alerts (and, with the records,
    /// of the positions since the last job), and upkeep runs when due.
    fn after_command(&mut self, queues: &queues::Queues, now: Option<Timestamp>) {
        self.flush();
        // Acks count too: commands that journal nothing (refusals,
        // duplicates) must not hold their acknowledgements back.
        let gathered = self.entries.len() + self.after_commit.len();
        let batch_ends = queues.is_empty() || gathered >= JOURNAL_JOB_RECORDS;
        if batch_ends {
            self.hand_to_journal();
        }
        self.show_changes();
        if let (true, Some(feed)) = (batch_ends, &self.feed) {
            feed.send_positions();
        }
        if let Some(now) = now {
            self.upkeep(now);
        }
    }

    /// Tells the dashboard's consoles of every alert this command changed.
    fn show_changes(&mut self) {
        let changed = self.desk.take_changed();
        let Some(feed) = &self.feed else { return };
        for id in changed {
            if let Some(record) = self.desk.alert(&id.to_string()) {
                feed.alert(record.clone());
            }
        }
    }

    /// Where the dashboard shows a device that sent `fix`, in the first of
    /// its cases and with its role there (both from the engine: looking the
    /// role up in the case cost a cold case on every fix).
    fn show_position(
        &self,
        fix: &kordon_core::Fix,
        membership: Option<&(CaseId, kordon_core::Role)>,
        received: Option<Instant>,
    ) {
        let (Some(feed), Some((case, role))) = (&self.feed, membership) else {
            return;
        };
        let position = DevicePosition::of(fix, case.clone(), *role);
        match received {
            Some(received) if self.is_live() => feed.position(position, received),
            _ => feed.remember_position(position),
        }
    }

    /// Sends what this command decided to publish, at once, and keeps what
    /// waits for its records for the next journal job.
    fn flush(&mut self) {
        let Sink::Live(outlets) = &self.sink else {
            self.entries.clear();
            self.envelopes.clear();
            self.after_commit.clear();
            return;
        };
        for envelope in self.envelopes.drain(..) {
            if envelope.message.topic == topics::POLICE_CAP {
                crate::dispatch::offer(&outlets.dispatch, &envelope.message.payload);
            }
            // Waits while the publisher is a full queue behind (the broker
            // is slow or away): this thread, then the intake, slow down,
            // and the broker holds the rest. Gone only when kordon stops.
            let _ = outlets.publisher.blocking_send(envelope);
        }
    }

    /// Hands the records of the commands handled since the last job, with
    /// what waits for them, to the journal writer. One job for all the
    /// commands that were queued together: a job per command woke the
    /// writer for each.
    fn hand_to_journal(&mut self) {
        if self.entries.is_empty() && self.after_commit.is_empty() {
            return;
        }
        self.records_since_snapshot += self.entries.len() as u64;
        let job = Job::Append {
            entries: taken_with_room(&mut self.entries),
            then: taken_with_room(&mut self.after_commit),
        };
        self.send_to_journal(job);
    }

    /// Snapshots and retention passes, when due.
    fn upkeep(&mut self, now: Timestamp) {
        if !self.is_live() {
            return;
        }
        let last = *self.last_snapshot.get_or_insert(now);
        let due = !self.shard_mode
            && self.records_since_snapshot >= self.upkeep.snapshot_every_records
            || (self.records_since_snapshot > 0
                && now.duration_since(last).as_secs() >= self.upkeep.snapshot_every_s);
        // While the last snapshot is still being written (its thread gives
        // way to all others, and falls behind on a full host), this one is
        // put off: its copy would only wait, and memory grow.
        let pass = due.then(|| self.snapshot_pass()).flatten();
        if let Some(pass) = pass {
            // The snapshot follows every record of the state it holds.
            self.hand_to_journal();
            let started = Instant::now();
            let copy = self.state_copy();
            debug!(
                took_ms = started.elapsed().as_millis() as u64,
                "state copied for a snapshot"
            );
            self.send_to_journal(Job::Snapshot {
                state: PendingState::with_pass(pass, move || copy.serialise()),
            });
            self.records_since_snapshot = 0;
            self.last_snapshot = Some(now);
        }
        if let Some(days) = self.upkeep.retention_days {
            let hourly = self
                .last_retention
                .is_none_or(|t| now.duration_since(t).as_secs() >= 3600);
            if hourly {
                self.last_retention = Some(now);
                let cutoff = now
                    .checked_sub(jiff::SignedDuration::from_hours(i64::from(days) * 24))
                    .unwrap_or(Timestamp::MIN);
                self.send_to_journal(Job::Retire {
                    cutoff,
                    margin_s: self.upkeep.keep_around_episode_s,
                    now,
                });
            }
        }
    }

    fn send_to_journal(&self, job: Job<Vec<AfterCommit>>) {
        if let Sink::Live(outlets) = &self.sink {
            // The writer outlives this thread; if it is gone kordon is
            // stopping and nothing more can be made durable anyway.
            let _ = outlets.journal.send(job);
        }
    }

    fn snapshot_pass(&self) -> Option<SnapshotPass> {
        match &self.sink {
            Sink::Live(outlets) => outlets.snapshots.pass(),
            Sink::Replay => None,
        }
    }

    fn is_live(&self) -> bool {
        matches!(self.sink, Sink::Live(_))
    }

    fn record(&mut self, record: Record, cases: impl IntoIterator<Item = CaseId>) {
        if self.is_live() {
            self.entries.push(Entry::for_cases(record, cases));
        }
    }

    fn act(&mut self, actions: Actions, now: Timestamp) {
        if let Some(digest) = actions.confirmed {
            self.record(
                Record::Delivered {
                    message: digest,
                    at: now,
                },
                Vec::new(),
            );
        }
        for message in actions.publish {
            self.envelopes.push(Envelope {
                message,
                retain: false,
                caused_at: None,
                kind: None,
            });
        }
    }

    /// Deadlines of the engine on its time, escalations on kordon's: an
    /// operator's time to acknowledge is wall-clock time, whatever backlog
    /// the engine is working through.
    fn tick(&mut self, now: Timestamp, engine: EngineTick) {
        if let Some(engine_now) = engine.time(now) {
            self.engine_time = Some(engine_now);
            let events = self.engine.tick(engine_now);
            self.publish_events(&events, now, None);
        }
        for message in self.desk.tick(now) {
            metrics::counter!(m::ESCALATIONS).increment(1);
            self.send(message, None, None, now);
        }
        if self.is_live() {
            let overdue = self.desk.overdue(now);
            metrics::gauge!(m::ALERTS_OVERDUE, "audience" => "monitoring")
                .set(overdue.monitoring as f64);
            metrics::gauge!(m::ALERTS_OVERDUE, "audience" => "police").set(overdue.police as f64);
        }
    }

    /// When a case change made at `now` happens for the engine: not after
    /// the engine's time, which lags the wall clock while a backlog is
    /// drained (and by under a second live).
    fn case_time(&self, now: Timestamp) -> Timestamp {
        self.engine_time.map_or(now, |t| t.min(now))
    }

    /// Handles a message; if that fails (a bug: a panic), the message is
    /// refused as `handling_failed` and acknowledged, and nothing it did is
    /// journaled, so that neither the live stream nor the replay at the
    /// next start trips over it again.
    fn message_or_refusal(
        &mut self,
        topic: &str,
        message: Message,
        received: Instant,
        now: Timestamp,
    ) {
        let (entries, envelopes) = (self.entries.len(), self.envelopes.len());
        let handled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.message(topic, message, received, now)
        }));
        if handled.is_err() {
            self.entries.truncate(entries);
            self.envelopes.truncate(envelopes);
            metrics::counter!(m::HANDLING_FAILED).increment(1);
            error!(
                topic,
                "handling this message panicked: refused, and the engine carries on"
            );
            let refusal = Refusal::new(
                Reason::HandlingFailed,
                "kordon failed while handling this message; it is refused and the fault logged",
            );
            self.refuse(topic, refusal, now);
        }
    }

    fn message(&mut self, topic: &str, message: Message, received: Instant, now: Timestamp) {
        match message {
            Message::Fix(fix) => match self.engine.ingest_fix(&fix) {
                Ok(outcome) => {
                    self.fixes_in.count(outcome.disposition);
                    // A redelivered fix is on record already.
                    if outcome.disposition != Disposition::Duplicate {
                        let memberships = self.engine.memberships_of(fix.device.as_str());
                        self.show_position(&fix, memberships.first(), Some(received));
                        let cases = memberships.into_iter().map(|(case, _)| case);
                        self.record(Record::Fix { fix, received: now }, cases);
                    }
                    self.publish_events(&outcome.events, now, Some(received));
                    self.request_positions(now);
                }
                Err(error) => self.refuse(topic, Refusal::from(error), now),
            },
            Message::Status(status) => match self.engine.ingest_status(&status) {
                Ok(events) => {
                    metrics::counter!(m::STATUS_IN).increment(1);
                    let cases = self.engine.cases_of(status.device.as_str());
                    self.record(
                        Record::Status {
                            status,
                            received: now,
                        },
                        cases,
                    );
                    self.publish_events(&events, now, Some(received));
                }
                Err(error) => self.refuse(topic, Refusal::from(error), now),
            },
            Message::Ack(ack) => {
                if let Err(error) = self.acknowledge(&ack.id, &ack.operator, ack.note, false, now) {
                    let reason = match error {
                        OperatorError::UnknownAlert(_) => Reason::UnknownAlert,
                        _ => Reason::AlreadyAcknowledged,
                    };
                    self.refuse(topic, Refusal::new(reason, error.to_string()), now);
                }
            }
        }
    }

    /// Asks victims' devices for the fresh fixes the engine wants (see
    /// `Engine::take_position_requests`): fire and forget, like a reject.
    /// A request is neither journaled nor awaited back: one lost in a
    /// crash is asked again within a minute, and one replayed from the
    /// journal is long stale.
    fn request_positions(&mut self, now: Timestamp) {
        let requests = self.engine.take_position_requests();
        if !self.is_live() {
            return;
        }
        for request in requests {
            let message = match self.owntracks_phones.get(&request.device) {
                Some(user_device) => Outbound {
                    topic: topics::owntracks_cmd(user_device),
                    payload: br#"{"_type":"cmd","action":"reportLocation"}"#.to_vec(),
                },
                None => Outbound {
                    topic: topics::position_request(request.device.as_str()),
                    payload: serde_json::to_vec(
                        &serde_json::json!({"action": "report_location", "ts": now}),
                    )
                    .expect("a request serialises"),
                },
            };
            metrics::counter!(m::POSITION_REQUESTS).increment(1);
            self.envelopes.push(Envelope {
                message,
                retain: false,
                caused_at: None,
                kind: None,
            });
        }
    }

    fn refuse(&mut self, topic: &str, refusal: Refusal, now: Timestamp) {
        let message = reject_message(topic, &refusal, now);
        self.envelopes.push(Envelope {
            message,
            retain: false,
            caused_at: None,
            kind: None,
        });
    }

    fn publish_events(&mut self, events: &[Event], now: Timestamp, caused_at: Option<Instant>) {
        for event in events {
            if self.is_live() {
                metrics::counter!(m::ALERTS, "kind" => event.kind.as_str(), "phase" => phase(event.phase))
                    .increment(1);
                debug!(id = %event.id, kind = %event.kind, phase = phase(event.phase), case = %event.case, "event");
            }
            self.record(
                Record::Event {
                    event: event.clone(),
                    at: now,
                },
                vec![event.case.clone()],
            );
            // Opening and escalating events measure the path a breach takes.
            let timed = matches!(event.phase, Phase::Opened | Phase::Updated)
                .then_some(caused_at)
                .flatten();
            for message in self.desk.route(event, now) {
                self.send(message, timed, Some(event.kind.as_str()), now);
            }
        }
    }

    /// An alert message: published as it is decided (or, just after a
    /// restart, once kordon knows the broker does not have it already:
    /// [`crate::delivery`]), journaled, and awaited back from the broker.
    fn send(
        &mut self,
        message: Outbound,
        caused_at: Option<Instant>,
        kind: Option<&'static str>,
        now: Timestamp,
    ) {
        if !self.is_live() {
            return;
        }
        let expected = if self.shard_mode {
            Expected::Publish
        } else {
            self.deliveries.expect(&message, now)
        };
        self.entries.push(Entry::new(Record::Outbound {
            topic: message.topic.clone(),
            payload: String::from_utf8_lossy(&message.payload).into_owned(),
            at: now,
        }));
        match expected {
            Expected::Publish => {}
            Expected::Held => return,
            Expected::Delivered(digest) => {
                // After its Outbound record, so that a replay confirms it.
                self.record(
                    Record::Delivered {
                        message: digest,
                        at: now,
                    },
                    Vec::new(),
                );
                return;
            }
        }
        self.envelopes.push(Envelope {
            message,
            retain: false,
            caused_at,
            kind,
        });
    }

    /// The broker acknowledgement of a handled message goes out once the
    /// message's records, and those of what it caused, are durable.
    fn ack(&mut self, receipt: Option<Receipt>) {
        if let Some(receipt) = receipt {
            self.after_commit.push(AfterCommit::Ack(receipt));
        }
    }

    /// Puts a case in force (engine and desk); the caller journals it.
    fn apply_case(&mut self, case: Case, now: Timestamp) -> Result<(), CaseRejected> {
        let events = self.engine.upsert_case(case.clone(), now)?;
        self.desk.upsert_case(&case);
        self.cases.insert(case.id.clone(), Arc::new(case));
        self.publish_events(&events, now, None);
        Ok(())
    }

    fn remove_case_state(&mut self, id: &CaseId, now: Timestamp) {
        let events = self.engine.remove_case(id, now);
        self.publish_events(&events, now, None);
        self.desk.remove_case(id);
        self.cases.remove(id);
    }

    fn put_case(&mut self, case: Case, now: Timestamp) -> Result<PutOutcome, PutCaseError> {
        let path = cases::file_of(&self.case_dir, &case.id)
            .map_err(|e| PutCaseError::Storage(e.to_string()))?;
        let existed = self.cases.contains_key(&case.id);
        self.apply_case(case.clone(), now)
            .map_err(PutCaseError::Rejected)?;
        self.record(
            Record::CaseUpsert {
                case: case.clone(),
                at: now,
            },
            vec![case.id.clone()],
        );
        // Written after the engine accepted it, so a refused case never
        // reaches the directory; a write failure is reported, and the case
        // runs until restart (the log says so).
        let written = cases::write_case(&self.case_dir, &case);
        if let Some(old) = self.sources.get(&case.id) {
            if *old != path && written.is_ok() {
                let _ = std::fs::remove_file(old);
            }
        }
        let outcome = if existed {
            PutOutcome::Replaced
        } else {
            PutOutcome::Created
        };
        self.sources.insert(case.id.clone(), path);
        info!(case = %case.id, ?outcome, "case applied");
        match written {
            Ok(_) => Ok(outcome),
            Err(e) => {
                warn!(case = %case.id, error = %e, "case applied but not stored: it will not survive a restart");
                Err(PutCaseError::Storage(e.to_string()))
            }
        }
    }

    /// Makes `id` as the cluster's case bucket holds it, journaling the
    /// change. A case the engine refuses stays as it was (it was checked
    /// where it was written; a newer kordon may have written it).
    fn sync_case(&mut self, id: CaseId, case: Option<Case>, now: Timestamp) {
        match case {
            Some(case) if self.cases.get(&id).map(|c| &**c) == Some(&case) => {}
            Some(case) => match self.apply_case(case.clone(), now) {
                Ok(()) => {
                    info!(case = %id, "case from the cluster's bucket applied");
                    self.record(Record::CaseUpsert { case, at: now }, vec![id]);
                }
                Err(rejected) => {
                    warn!(case = %id, error = %rejected, "a case in the cluster's bucket is refused; the one in force stays")
                }
            },
            None if self.cases.contains_key(&id) => {
                self.remove_case_state(&id, now);
                info!(case = %id, "case deleted from the cluster's bucket: removed");
                self.record(
                    Record::CaseRemove {
                        case: id.clone(),
                        at: now,
                    },
                    vec![id],
                );
            }
            None => {}
        }
    }

    fn delete_case(&mut self, id: &CaseId, now: Timestamp) -> Result<bool, String> {
        if !self.cases.contains_key(id) {
            return Ok(false);
        }
        let source = self.sources.get(id).cloned();
        cases::delete_case(&self.case_dir, id, source.as_deref()).map_err(|e| e.to_string())?;
        self.remove_case_state(id, now);
        self.record(
            Record::CaseRemove {
                case: id.clone(),
                at: now,
            },
            vec![id.clone()],
        );
        self.sources.remove(id);
        info!(case = %id, "case removed");
        Ok(true)
    }
}

/// The payload of `kordon/v1/rejects`.
pub fn reject_message(topic: &str, refusal: &Refusal, now: Timestamp) -> Outbound {
    metrics::counter!(m::REFUSED, "reason" => refusal.reason.code()).increment(1);
    warn!(topic, reason = refusal.reason.code(), detail = %refusal.detail, "message refused");
    #[derive(Serialize)]
    struct Reject<'a> {
        topic: &'a str,
        reason: Reason,
        detail: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        device: Option<&'a str>,
        ts: Timestamp,
    }
    let payload = serde_json::to_vec(&Reject {
        topic,
        reason: refusal.reason,
        detail: &refusal.detail,
        device: refusal.device.as_ref().map(|d| d.as_str()),
        ts: now,
    })
    .expect("rejects always serialise");
    Outbound {
        topic: kordon_ingest::topic::REJECTS.to_string(),
        payload,
    }
}

/// What `gathered` holds, leaving it room for as many again: the next job
/// is about as large (the commands of one read of the broker). Grown from
/// empty, each job's lists were reallocated and copied five or six times
/// on the engine's thread.
fn taken_with_room<T>(gathered: &mut Vec<T>) -> Vec<T> {
    let room = gathered.len().min(JOURNAL_JOB_RECORDS);
    std::mem::replace(gathered, Vec::with_capacity(room))
}

fn disposition(d: Disposition) -> &'static str {
    match d {
        Disposition::Accepted => "accepted",
        Disposition::Suspect => "suspect",
        Disposition::Duplicate => "duplicate",
        Disposition::Late => "late",
        Disposition::Unusable => "unusable",
    }
}

/// A clearing reason as the alert messages spell it.
fn clear_reason(r: ClearReason) -> String {
    serde_json::to_value(r)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{r:?}"))
}

fn phase(p: Phase) -> &'static str {
    match p {
        Phase::Opened => "opened",
        Phase::Updated => "updated",
        Phase::Cleared => "cleared",
        Phase::LateBreach => "late_breach",
    }
}
