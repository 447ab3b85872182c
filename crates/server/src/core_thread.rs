//! The engine's own thread. It owns the [`Engine`], the [`AlertDesk`] and
//! the case directory, takes [`Command`]s from one crossbeam channel (fixes
//! from MQTT, the 1 s tick, API calls) in arrival order, and hands what must
//! be published, and the broker acknowledgements of handled messages, to the
//! publisher. Nothing here waits on the network.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use crossbeam_channel::Receiver;
use jiff::Timestamp;
use kordon_alert::{AckError, Acknowledgement, AlertDesk, AlertRecord, Outbound};
use kordon_core::{BanHit, Case, CaseId, CaseRejected, Disposition, Engine, Event, Phase};
use kordon_ingest::{Message, Reason, Refusal};
use rumqttc::Publish;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use crate::cases;
use crate::metrics as m;

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
        ack: Option<Publish>,
    },
    /// A message the decoder refused. It goes through this thread, not
    /// straight to the publisher, so that broker acknowledgements leave in
    /// the order the messages came (brokers such as rumqttd insist).
    Refused {
        topic: String,
        refusal: Refusal,
        now: Timestamp,
        ack: Option<Publish>,
    },
    Tick(Timestamp),
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
    Alerts(oneshot::Sender<Vec<AlertRecord>>),
    Alert(String, oneshot::Sender<Option<AlertRecord>>),
    Acknowledge {
        id: String,
        operator: String,
        note: Option<String>,
        now: Timestamp,
        reply: oneshot::Sender<Result<Acknowledgement, AckError>>,
    },
    Bans {
        lat: f64,
        lon: f64,
        now: Timestamp,
        reply: oneshot::Sender<Vec<BanHit>>,
    },
    /// Finish what is queued before this, then stop.
    Shutdown,
}

/// What the publisher does, in order.
#[derive(Debug)]
pub enum Envelope {
    Publish {
        message: Outbound,
        retain: bool,
        /// When the message that caused this alert arrived, for the
        /// fix-to-alert latency.
        caused_at: Option<Instant>,
        kind: Option<&'static str>,
    },
    /// Acknowledge a handled message to the broker.
    Ack(Publish),
}

#[derive(Debug, Clone, Serialize)]
pub struct CaseSummary {
    pub id: CaseId,
    pub risk: kordon_core::RiskLevel,
    pub offender: kordon_core::DeviceId,
    pub protected: usize,
    pub orders: usize,
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

pub struct CoreThread {
    engine: Engine,
    desk: AlertDesk,
    cases: HashMap<CaseId, Case>,
    /// The file each case was loaded from or written to.
    sources: HashMap<CaseId, PathBuf>,
    case_dir: PathBuf,
    out: mpsc::UnboundedSender<Envelope>,
}

impl CoreThread {
    pub fn new(
        engine: Engine,
        desk: AlertDesk,
        case_dir: PathBuf,
        out: mpsc::UnboundedSender<Envelope>,
    ) -> Self {
        CoreThread {
            engine,
            desk,
            cases: HashMap::new(),
            sources: HashMap::new(),
            case_dir,
            out,
        }
    }

    /// Loads a case at start; refused cases stop kordon (the caller decides).
    pub fn load_case(
        &mut self,
        case: Case,
        source: PathBuf,
        now: Timestamp,
    ) -> Result<(), CaseRejected> {
        let events = self.engine.upsert_case(case.clone(), now)?;
        self.desk.upsert_case(&case);
        self.sources.insert(case.id.clone(), source);
        self.cases.insert(case.id.clone(), case);
        self.publish_events(&events, now, None);
        Ok(())
    }

    pub fn run(mut self, commands: Receiver<Command>) {
        info!(
            cases = self.cases.len(),
            devices = self.engine.device_count(),
            "engine thread running"
        );
        for command in commands.iter() {
            metrics::gauge!(m::CORE_QUEUE_DEPTH).set(commands.len() as f64);
            match command {
                Command::Message {
                    topic,
                    message,
                    received,
                    now,
                    ack,
                } => {
                    self.message(&topic, message, received, now);
                    if let Some(publish) = ack {
                        self.ack(publish);
                    }
                }
                Command::Refused {
                    topic,
                    refusal,
                    now,
                    ack,
                } => {
                    self.refuse(&topic, refusal, now);
                    if let Some(publish) = ack {
                        self.ack(publish);
                    }
                }
                Command::Tick(now) => {
                    let events = self.engine.tick(now);
                    self.publish_events(&events, now, None);
                    for message in self.desk.tick(now) {
                        metrics::counter!(m::ESCALATIONS).increment(1);
                        self.send(message, None, None);
                    }
                }
                Command::PutCase { case, now, reply } => {
                    let _ = reply.send(self.put_case(*case, now));
                }
                Command::DeleteCase { id, now, reply } => {
                    let _ = reply.send(self.delete_case(&id, now));
                }
                Command::ListCases(reply) => {
                    let mut list: Vec<CaseSummary> = self
                        .cases
                        .values()
                        .map(|c| CaseSummary {
                            id: c.id.clone(),
                            risk: c.risk,
                            offender: c.offender.device.clone(),
                            protected: c.protected.len(),
                            orders: c.orders.len(),
                        })
                        .collect();
                    list.sort_by(|a, b| a.id.cmp(&b.id));
                    let _ = reply.send(list);
                }
                Command::GetCase(id, reply) => {
                    let _ = reply.send(self.cases.get(&id).cloned());
                }
                Command::Alerts(reply) => {
                    let _ = reply.send(self.desk.alerts().into_iter().cloned().collect());
                }
                Command::Alert(id, reply) => {
                    let _ = reply.send(self.desk.alert(&id).cloned());
                }
                Command::Acknowledge {
                    id,
                    operator,
                    note,
                    now,
                    reply,
                } => {
                    let _ = reply.send(self.acknowledge(&id, &operator, note, now));
                }
                Command::Bans {
                    lat,
                    lon,
                    now,
                    reply,
                } => {
                    let _ = reply.send(self.engine.bans_at(lat, lon, now));
                }
                Command::Shutdown => break,
            }
        }
        info!("engine thread stopped");
    }

    fn message(&mut self, topic: &str, message: Message, received: Instant, now: Timestamp) {
        match message {
            Message::Fix(fix) => match self.engine.ingest_fix(&fix) {
                Ok(outcome) => {
                    metrics::counter!(m::FIXES_IN, "disposition" => disposition(outcome.disposition))
                        .increment(1);
                    self.publish_events(&outcome.events, now, Some(received));
                }
                Err(error) => self.refuse(topic, Refusal::from(error), now),
            },
            Message::Status(status) => match self.engine.ingest_status(&status) {
                Ok(events) => {
                    metrics::counter!(m::STATUS_IN).increment(1);
                    self.publish_events(&events, now, Some(received));
                }
                Err(error) => self.refuse(topic, Refusal::from(error), now),
            },
            Message::Ack(ack) => {
                if let Err(error) = self.acknowledge(&ack.id, &ack.operator, ack.note, now) {
                    let reason = match error {
                        AckError::UnknownAlert(_) => Reason::UnknownAlert,
                        AckError::AlreadyAcknowledged { .. } => Reason::AlreadyAcknowledged,
                    };
                    self.refuse(topic, Refusal::new(reason, error.to_string()), now);
                }
            }
        }
    }

    fn acknowledge(
        &mut self,
        id: &str,
        operator: &str,
        note: Option<String>,
        now: Timestamp,
    ) -> Result<Acknowledgement, AckError> {
        let (ack, messages) = self.desk.acknowledge(id, operator, note, now)?;
        info!(
            alert = id,
            operator,
            time_to_ack_s = ack.time_to_ack_s,
            "alert acknowledged"
        );
        metrics::histogram!(m::TIME_TO_ACK).record(ack.time_to_ack_s);
        for message in messages {
            self.send(message, None, None);
        }
        Ok(ack)
    }

    fn refuse(&self, topic: &str, refusal: Refusal, now: Timestamp) {
        let message = reject_message(topic, &refusal, now);
        let _ = self.out.send(Envelope::Publish {
            message,
            retain: false,
            caused_at: None,
            kind: None,
        });
    }

    fn publish_events(&mut self, events: &[Event], now: Timestamp, caused_at: Option<Instant>) {
        for event in events {
            metrics::counter!(m::ALERTS, "kind" => event.kind.as_str(), "phase" => phase(event.phase))
                .increment(1);
            debug!(id = %event.id, kind = %event.kind, phase = phase(event.phase), case = %event.case, "event");
            // Opening and escalating events measure the path a breach takes.
            let timed = matches!(event.phase, Phase::Opened | Phase::Updated)
                .then_some(caused_at)
                .flatten();
            for message in self.desk.route(event, now) {
                self.send(message, timed, Some(event.kind.as_str()));
            }
        }
    }

    fn send(&self, message: Outbound, caused_at: Option<Instant>, kind: Option<&'static str>) {
        // The publisher lives as long as this thread is fed; if it is gone
        // kordon is stopping and nothing more can be published anyway.
        let _ = self.out.send(Envelope::Publish {
            message,
            retain: false,
            caused_at,
            kind,
        });
    }

    /// Hands the broker acknowledgement of a handled message to the
    /// publisher, behind everything the message caused.
    pub fn ack(&self, publish: Publish) {
        let _ = self.out.send(Envelope::Ack(publish));
    }

    fn put_case(&mut self, case: Case, now: Timestamp) -> Result<PutOutcome, PutCaseError> {
        let path = cases::file_of(&self.case_dir, &case.id)
            .map_err(|e| PutCaseError::Storage(e.to_string()))?;
        let events = self
            .engine
            .upsert_case(case.clone(), now)
            .map_err(PutCaseError::Rejected)?;
        // Written after the engine accepted it, so a refused case never
        // reaches the directory; a write failure is reported, and the case
        // runs until restart (the log says so).
        let written = cases::write_case(&self.case_dir, &case);
        if let Some(old) = self.sources.get(&case.id) {
            if *old != path && written.is_ok() {
                let _ = std::fs::remove_file(old);
            }
        }
        self.desk.upsert_case(&case);
        let outcome = if self.cases.insert(case.id.clone(), case.clone()).is_some() {
            PutOutcome::Replaced
        } else {
            PutOutcome::Created
        };
        self.sources.insert(case.id.clone(), path);
        self.publish_events(&events, now, None);
        info!(case = %case.id, ?outcome, "case applied");
        match written {
            Ok(_) => Ok(outcome),
            Err(e) => {
                warn!(case = %case.id, error = %e, "case applied but not stored: it will not survive a restart");
                Err(PutCaseError::Storage(e.to_string()))
            }
        }
    }

    fn delete_case(&mut self, id: &CaseId, now: Timestamp) -> Result<bool, String> {
        if !self.cases.contains_key(id) {
            return Ok(false);
        }
        let source = self.sources.get(id).cloned();
        cases::delete_case(&self.case_dir, id, source.as_deref()).map_err(|e| e.to_string())?;
        let events = self.engine.remove_case(id, now);
        self.publish_events(&events, now, None);
        self.desk.remove_case(id);
        self.cases.remove(id);
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

fn disposition(d: Disposition) -> &'static str {
    match d {
        Disposition::Accepted => "accepted",
        Disposition::Suspect => "suspect",
        Disposition::Duplicate => "duplicate",
        Disposition::Late => "late",
        Disposition::Unusable => "unusable",
    }
}

fn phase(p: Phase) -> &'static str {
    match p {
        Phase::Opened => "opened",
        Phase::Updated => "updated",
        Phase::Cleared => "cleared",
        Phase::LateBreach => "late_breach",
    }
}
