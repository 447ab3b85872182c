//! What people do with an alert once it is raised: notes, a resolution
//! with a disposition, an escalation by hand, the police's own
//! acknowledgement. The engine decides whether an episode is open; this
//! module keeps what the monitoring room and the police did about it.
//!
//! Like the rest of the desk it is pure: operator actions and `now` in,
//! messages out. It never closes an engine episode (a tamper alarm's is
//! closed by the server, which asks the engine) and never routes a position
//! anywhere the routing rules of [`crate::desk`] do not already send it.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::cap;
use crate::desk::{json, AlertDesk, AlertRecord, Outbound, ParseEpisode as _};
use crate::message::{Acknowledgement, AlertEvent, CoordinatorNotice, Level};
use crate::topics;

/// Why an operator closed the room's handling of an alert: the list the
/// dashboard offers. Reports count dispositions, so they are codes, not
/// free text; the note says the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Disposition {
    /// A police unit was sent.
    UnitDispatched,
    /// The offender was reached and told to leave or comply.
    OffenderContacted,
    /// The protected person was reached and is safe.
    VictimContactedSafe,
    /// The positions were wrong (multipath, a stale fix).
    GpsError,
    /// A device fault: a bracelet or phone to be replaced or charged.
    DeviceFault,
    /// The bracelet was checked in person (a tamper alarm).
    BraceletChecked,
    /// Presence the order allows (a court date, an agreed handover).
    AuthorisedPresence,
    /// The same incident is handled under another alert.
    Duplicate,
    /// None of these; the note says what.
    Other,
}

impl Disposition {
    pub const ALL: [Disposition; 9] = [
        Disposition::UnitDispatched,
        Disposition::OffenderContacted,
        Disposition::VictimContactedSafe,
        Disposition::GpsError,
        Disposition::DeviceFault,
        Disposition::BraceletChecked,
        Disposition::AuthorisedPresence,
        Disposition::Duplicate,
        Disposition::Other,
    ];
}

/// A note an operator added to an alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Note {
    pub operator: String,
    pub text: String,
    pub at: Timestamp,
}

/// The monitoring room closed its handling of an alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resolution {
    pub operator: String,
    pub disposition: Disposition,
    pub note: String,
    pub at: Timestamp,
    /// From the alert's first publication to its resolution.
    pub time_to_resolve_s: f64,
}

/// An operator passed an alert to the police and the case coordinators.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManualEscalation {
    pub operator: String,
    pub note: String,
    pub at: Timestamp,
}

/// Everything people did about one alert, kept on its [`AlertRecord`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Handling {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<Note>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<Resolution>,
    /// Resolutions of lower levels the alert has since risen above.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub earlier_resolutions: Vec<Resolution>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manual_escalation: Option<ManualEscalation>,
    /// The police's acknowledgement: their dispatcher took it. It does not
    /// stand for the monitoring room's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub police_acknowledgement: Option<Acknowledgement>,
    /// Its CAP messages' deliveries to police dispatch webhooks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deliveries: Vec<Delivery>,
}

/// Where one CAP message stands with one webhook endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    pub endpoint: String,
    /// The CAP message's identifier.
    pub message: String,
    pub attempts: u32,
    /// The last answer: `200`, `503`, or why there was none.
    pub outcome: String,
    pub delivered: bool,
    pub at: Timestamp,
}

/// An attempt's result, as the dispatcher reports it (in a cluster,
/// through the alert's shard's stream, as JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryAttempt {
    pub endpoint: String,
    pub message: String,
    pub attempt: u32,
    pub status: Option<u16>,
    pub error: Option<String>,
    pub delivered: bool,
    pub at: Timestamp,
}

impl Handling {
    /// The alert rose in level: a resolution of the lower level no longer
    /// covers it.
    pub(crate) fn rose(&mut self) {
        if let Some(resolution) = self.resolution.take() {
            self.earlier_resolutions.push(resolution);
        }
    }
}

/// Why an operator's action was refused; nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HandlingError {
    #[error("no alert with id `{0}`")]
    UnknownAlert(String),
    #[error("alert `{id}` was already resolved by {operator} at {at}")]
    AlreadyResolved {
        id: String,
        operator: String,
        at: Timestamp,
    },
    #[error("alert `{id}` was already escalated at {at}")]
    AlreadyEscalated { id: String, at: Timestamp },
    #[error("alert `{id}` was already acknowledged by the police ({operator} at {at})")]
    PoliceAlreadyAcknowledged {
        id: String,
        operator: String,
        at: Timestamp,
    },
    #[error("alert `{0}` is not a police alert")]
    NotPolice(String),
}

impl AlertDesk {
    /// The alert `id`, marked changed: every handling action changes it.
    fn record_mut(&mut self, id: &str) -> Result<&mut AlertRecord, HandlingError> {
        let episode = id
            .parse_episode()
            .filter(|e| self.alerts.contains_key(e))
            .ok_or_else(|| HandlingError::UnknownAlert(id.to_string()))?;
        self.touch(episode);
        Ok(self.alerts.get_mut(&episode).expect("checked above"))
    }

    /// Adds an operator's note; every console sees it, nobody else is told.
    pub fn note(
        &mut self,
        id: &str,
        operator: &str,
        text: &str,
        now: Timestamp,
    ) -> Result<Note, HandlingError> {
        let record = self.record_mut(id)?;
        let note = Note {
            operator: operator.to_string(),
            text: text.to_string(),
            at: now,
        };
        record.handling.notes.push(note.clone());
        Ok(note)
    }

    /// The monitoring room closes its handling of an alert. Resolving is
    /// handling, so an alert nobody acknowledged is acknowledged with it
    /// (its escalation stops). An episode still open in the engine stays
    /// open and returns to the queue if it rises in level.
    pub fn resolve(
        &mut self,
        id: &str,
        operator: &str,
        disposition: Disposition,
        note: &str,
        now: Timestamp,
    ) -> Result<(Resolution, Vec<Outbound>), HandlingError> {
        let record = self.record_mut(id)?;
        if let Some(done) = &record.handling.resolution {
            return Err(HandlingError::AlreadyResolved {
                id: id.to_string(),
                operator: done.operator.clone(),
                at: done.at,
            });
        }
        let resolution = Resolution {
            operator: operator.to_string(),
            disposition,
            note: note.to_string(),
            at: now,
            time_to_resolve_s: now.duration_since(record.raised_at).as_secs_f64().max(0.0),
        };
        record.handling.resolution = Some(resolution.clone());
        let out = match record.acknowledgement {
            Some(_) => Vec::new(),
            None => {
                let ack = Acknowledgement {
                    operator: operator.to_string(),
                    note: Some(format!("resolved: {note}")),
                    at: now,
                    time_to_ack_s: now
                        .duration_since(record.attention_since)
                        .as_secs_f64()
                        .max(0.0),
                    level: Some(Level::of(&record.latest)),
                };
                self.acknowledge_with(id, ack)
            }
        };
        Ok((resolution, out))
    }

    /// An operator passes an alert to the police and the case coordinators
    /// now, whatever its kind: the police hear it (JSON and CAP) and every
    /// later material change, as for the alerts routed to them.
    pub fn escalate_by_hand(
        &mut self,
        id: &str,
        operator: &str,
        note: &str,
        now: Timestamp,
    ) -> Result<(ManualEscalation, Vec<Outbound>), HandlingError> {
        let sender = self.settings().sender.clone();
        let case = self.record_mut(id)?.latest.case.clone();
        let (risk, coordinators) = self.case_contacts(&case).unzip();
        let record = self.record_mut(id)?;
        if let Some(done) = &record.handling.manual_escalation {
            return Err(HandlingError::AlreadyEscalated {
                id: id.to_string(),
                at: done.at,
            });
        }
        let escalation = ManualEscalation {
            operator: operator.to_string(),
            note: note.to_string(),
            at: now,
        };
        record.handling.manual_escalation = Some(escalation.clone());
        record.escalated_at.get_or_insert(now);
        record.needs_police = true;
        let mut message = record.latest.clone();
        message.event = AlertEvent::Escalated;
        message.ts = now;
        record.police_told = record.police_told.after(&message, now);
        let xml = cap::encode(&message, &mut record.cap, &sender, now);
        let notice = CoordinatorNotice {
            id: message.id,
            event: AlertEvent::Escalated,
            kind: message.kind,
            severity: message.severity,
            case: message.case.clone(),
            risk: risk.unwrap_or(message.risk),
            ts: now,
            unacknowledged_for_s: now.duration_since(record.attention_since).as_secs_f64(),
            coordinators: coordinators.unwrap_or_default(),
        };
        let out = vec![
            json(topics::MONITORING, &message),
            json(topics::POLICE, &message),
            Outbound {
                topic: topics::POLICE_CAP.to_string(),
                payload: xml.into_bytes(),
            },
            json(&topics::case_coordinators(message.case.as_str()), &notice),
        ];
        Ok((escalation, out))
    }

    /// Records a webhook delivery attempt on its alert, for every console
    /// to see; an alert the desk has forgotten has nothing to show it on.
    pub fn delivery_attempt(&mut self, id: &str, attempt: &DeliveryAttempt) {
        let Ok(record) = self.record_mut(id) else {
            return;
        };
        let outcome = match (attempt.status, &attempt.error) {
            (Some(status), _) => status.to_string(),
            (None, Some(error)) => error.clone(),
            (None, None) => "no answer".to_string(),
        };
        let deliveries = &mut record.handling.deliveries;
        match deliveries
            .iter_mut()
            .find(|d| d.endpoint == attempt.endpoint && d.message == attempt.message)
        {
            Some(d) => {
                d.attempts = d.attempts.max(attempt.attempt);
                d.outcome = outcome;
                d.delivered |= attempt.delivered;
                d.at = attempt.at;
            }
            None => deliveries.push(Delivery {
                endpoint: attempt.endpoint.clone(),
                message: attempt.message.clone(),
                attempts: attempt.attempt,
                outcome,
                delivered: attempt.delivered,
                at: attempt.at,
            }),
        }
    }

    /// The police dispatcher acknowledges a police alert: their own record,
    /// beside (never instead of) the monitoring room's.
    pub fn acknowledge_for_police(
        &mut self,
        id: &str,
        operator: &str,
        note: Option<String>,
        now: Timestamp,
    ) -> Result<(Acknowledgement, Vec<Outbound>), HandlingError> {
        let record = self.record_mut(id)?;
        if !record.needs_police {
            return Err(HandlingError::NotPolice(id.to_string()));
        }
        if let Some(done) = &record.handling.police_acknowledgement {
            return Err(HandlingError::PoliceAlreadyAcknowledged {
                id: id.to_string(),
                operator: done.operator.clone(),
                at: done.at,
            });
        }
        let ack = Acknowledgement {
            operator: operator.to_string(),
            note,
            at: now,
            time_to_ack_s: now.duration_since(record.raised_at).as_secs_f64().max(0.0),
            level: Some(Level::of(&record.latest)),
        };
        record.handling.police_acknowledgement = Some(ack.clone());
        record.latest.police_acknowledged = Some(ack.clone());
        let mut message = record.latest.clone();
        message.event = AlertEvent::Acknowledged;
        message.ts = now;
        let out = vec![
            json(topics::MONITORING, &message),
            json(topics::POLICE, &message),
        ];
        Ok((ack, out))
    }
}

/// Alerts still unacknowledged past their deadline (see [`ack_deadline`]):
/// by the room, and, of those that went to the police, by the police. What
/// the `kordon_alerts_overdue` gauge shows and an operator's alert rule
/// watches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Overdue {
    pub monitoring: usize,
    pub police: usize,
}

impl Overdue {
    pub fn count<'a>(
        records: impl Iterator<Item = &'a AlertRecord>,
        escalate_after_s: u32,
        now: Timestamp,
    ) -> Overdue {
        let mut overdue = Overdue::default();
        let limit = jiff::SignedDuration::from_secs(escalate_after_s.into());
        for record in records {
            if ack_deadline(record, escalate_after_s).is_some_and(|deadline| deadline < now) {
                overdue.monitoring += 1;
            }
            if record.open
                && record.needs_police
                && record.handling.police_acknowledgement.is_none()
                && record.attention_since + limit < now
            {
                overdue.police += 1;
            }
        }
        overdue
    }
}

/// When an unacknowledged alert that asks for someone is escalated.
pub fn ack_deadline(record: &AlertRecord, escalate_after_s: u32) -> Option<Timestamp> {
    let asks = record.needs_police || record.latest.attention == crate::Attention::Action;
    (record.open && asks && record.acknowledgement.is_none())
        .then(|| record.attention_since + jiff::SignedDuration::from_secs(escalate_after_s.into()))
}
