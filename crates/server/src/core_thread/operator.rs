//! What people do to alerts, on the engine's thread: acknowledge (the
//! monitoring room's or the police's own), resolve with a disposition, add
//! a note, escalate by hand; and what police dispatch webhooks answered. Each is journaled ahead of the messages it
//! causes and replayed from the journal the same way, at the same time, so
//! that a restart rebuilds the same desk. Nothing here reads a clock.

use jiff::Timestamp;
use kordon_alert::{
    Acknowledgement, DeliveryAttempt, Disposition, HandlingError, ManualEscalation, Note,
};
use kordon_core::{CaseId, DeviceId, EventKind};
use kordon_journal::Record;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::{clear_reason, CoreThread};
use crate::metrics as m;

/// What an operator does. (Serialised only where a cluster carries it to
/// the shard that holds the alert.)
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "do", rename_all = "snake_case")]
pub enum OperatorAction {
    /// `police`: a police dispatcher's acknowledgement, kept beside the
    /// monitoring room's and never instead of it.
    Acknowledge {
        note: Option<String>,
        police: bool,
    },
    /// A tamper alarm may be resolved without a disposition (the bracelet
    /// was checked); every other alert needs a disposition and a note.
    Resolve {
        disposition: Option<Disposition>,
        note: Option<String>,
    },
    Note {
        text: String,
    },
    Escalate {
        note: String,
    },
}

/// What an operator's action did.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum OperatorReply {
    Acknowledged(Acknowledgement),
    Resolved(Resolution),
    Noted(Note),
    Escalated(ManualEscalation),
}

/// An alert an operator resolved.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Resolution {
    /// The alert the operator named.
    pub alert: String,
    /// The device the alert is about.
    pub device: DeviceId,
    pub operator: String,
    pub disposition: Disposition,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// When it was resolved (for a tamper alarm the engine's time, at
    /// which its episode closed; see [`crate::engine_time`]).
    pub at: Timestamp,
    /// Every alert a tamper resolution cleared: the bracelet's tamper
    /// alarm in each case it is part of.
    pub cleared: Vec<String>,
}

/// Why an operator's action was refused; nothing was journaled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "refused", content = "message", rename_all = "snake_case")]
pub enum OperatorError {
    #[error("no alert with id `{0}`")]
    UnknownAlert(String),
    /// Done already, or the state it needs has passed.
    #[error("{0}")]
    Conflict(String),
    /// The action does not apply to this alert, or lacks what it needs.
    #[error("{0}")]
    Unprocessable(String),
}

impl From<HandlingError> for OperatorError {
    fn from(e: HandlingError) -> Self {
        match e {
            HandlingError::UnknownAlert(id) => OperatorError::UnknownAlert(id),
            HandlingError::NotPolice(_) => OperatorError::Unprocessable(e.to_string()),
            other => OperatorError::Conflict(other.to_string()),
        }
    }
}

impl CoreThread {
    pub(super) fn operate(
        &mut self,
        id: &str,
        operator: &str,
        action: OperatorAction,
        now: Timestamp,
    ) -> Result<OperatorReply, OperatorError> {
        match action {
            OperatorAction::Acknowledge { note, police } => self
                .acknowledge(id, operator, note, police, now)
                .map(OperatorReply::Acknowledged),
            OperatorAction::Resolve { disposition, note } => self
                .resolve(id, operator, disposition, note, now)
                .map(OperatorReply::Resolved),
            OperatorAction::Note { text } => {
                let note = self.desk.note(id, operator, &text, now)?;
                self.record_for_alert(
                    id,
                    Record::Note {
                        alert: id.to_string(),
                        operator: operator.to_string(),
                        text,
                        at: now,
                    },
                );
                Ok(OperatorReply::Noted(note))
            }
            OperatorAction::Escalate { note } => {
                let (escalation, messages) =
                    self.desk.escalate_by_hand(id, operator, &note, now)?;
                self.record_for_alert(
                    id,
                    Record::Escalate {
                        alert: id.to_string(),
                        operator: operator.to_string(),
                        note,
                        at: now,
                    },
                );
                info!(alert = id, operator, "alert escalated by hand");
                for message in messages {
                    self.send(message, None, None, now);
                }
                Ok(OperatorReply::Escalated(escalation))
            }
        }
    }

    /// Journals an operator's record in the case of alert `id`.
    fn record_for_alert(&mut self, id: &str, record: Record) {
        let case: Option<CaseId> = self.desk.alert(id).map(|a| a.latest.case.clone());
        self.record(record, case);
    }

    pub(super) fn acknowledge(
        &mut self,
        id: &str,
        operator: &str,
        note: Option<String>,
        police: bool,
        now: Timestamp,
    ) -> Result<Acknowledgement, OperatorError> {
        let (ack, messages) = if police {
            self.desk
                .acknowledge_for_police(id, operator, note.clone(), now)?
        } else {
            self.desk
                .acknowledge(id, operator, note.clone(), now)
                .map_err(|e| match e {
                    kordon_alert::AckError::UnknownAlert(id) => OperatorError::UnknownAlert(id),
                    other => OperatorError::Conflict(other.to_string()),
                })?
        };
        if self.is_live() {
            info!(
                alert = id,
                operator,
                police,
                time_to_ack_s = ack.time_to_ack_s,
                "alert acknowledged"
            );
            if !police {
                metrics::histogram!(m::TIME_TO_ACK).record(ack.time_to_ack_s);
            }
        }
        self.record_for_alert(
            id,
            Record::Ack {
                alert: id.to_string(),
                operator: operator.to_string(),
                note,
                at: now,
                police,
            },
        );
        for message in messages {
            self.send(message, None, None, now);
        }
        Ok(ack)
    }

    /// An operator resolves alert `id`. A tamper alarm still open closes
    /// (`operator_resolved`) in every case its bracelet is in, at the time
    /// case changes take effect now ([`CoreThread::case_time`]); any other
    /// episode stays as the engine has it. Journaled as
    /// [`Record::Resolve`] ahead of the events it causes.
    fn resolve(
        &mut self,
        id: &str,
        operator: &str,
        disposition: Option<Disposition>,
        note: Option<String>,
        now: Timestamp,
    ) -> Result<Resolution, OperatorError> {
        let alert = self
            .desk
            .alert(id)
            .ok_or_else(|| OperatorError::UnknownAlert(id.to_string()))?;
        let latest = &alert.latest;
        let tamper = latest.kind == EventKind::Tamper;
        let note = note.filter(|n| !n.trim().is_empty());
        let explicit = disposition.is_some();
        let disposition = match (disposition, &note) {
            (Some(d), Some(_)) => d,
            (None, _) | (Some(Disposition::BraceletChecked), None) if tamper => {
                Disposition::BraceletChecked
            }
            _ => {
                return Err(OperatorError::Unprocessable(format!(
                    "resolving a {} alert needs a `disposition` and a `note` saying what was done",
                    latest.kind
                )))
            }
        };
        // A tamper alarm resolved through the API of old (no disposition)
        // is a request to close its episode: refused once it is closed.
        let legacy_on_closed_tamper = tamper && !alert.open && !explicit;
        let cleared_at = || {
            format!(
                "the tamper alarm `{id}` was already cleared at {} ({})",
                latest.ts,
                latest
                    .reason
                    .map_or_else(|| "no reason recorded".to_string(), clear_reason)
            )
        };
        if let Some(done) = &alert.handling.resolution {
            let resolved = format!("resolved by {} at {}", done.operator, done.at);
            return Err(OperatorError::Conflict(if tamper && !alert.open {
                format!("{}; {resolved}", cleared_at())
            } else {
                format!("alert `{id}` was already {resolved}")
            }));
        }
        if legacy_on_closed_tamper {
            return Err(OperatorError::Conflict(cleared_at()));
        }
        let device = latest.device.clone();
        let closes_tamper = tamper && alert.open;
        let at = if closes_tamper {
            self.case_time(now)
        } else {
            now
        };
        let events = if closes_tamper {
            self.engine
                .resolve_tamper(&device, at)
                .map_err(|e| e.to_string())
                .and_then(|events| {
                    if events.is_empty() {
                        Err("it has ended already".to_string())
                    } else {
                        Ok(events)
                    }
                })
                .map_err(|detail| {
                    OperatorError::Conflict(format!(
                        "the engine holds no open tamper alarm for {device} (alert `{id}`): {detail}"
                    ))
                })?
        } else {
            Vec::new()
        };
        let cleared: Vec<String> = events.iter().map(|e| e.id.to_string()).collect();
        let mut cases: Vec<CaseId> = events.iter().map(|e| e.case.clone()).collect();
        cases.extend(self.desk.alert(id).map(|a| a.latest.case.clone()));
        cases.sort();
        cases.dedup();
        self.record(
            Record::Resolve {
                alert: id.to_string(),
                device: device.clone(),
                operator: operator.to_string(),
                note: note.clone(),
                at,
                disposition: Some(code(disposition)),
            },
            cases,
        );
        self.publish_events(&events, at, None);
        self.resolve_on_desk(id, operator, disposition, note.as_deref(), at);
        info!(alert = id, device = %device, operator, ?disposition, "alert resolved by an operator");
        Ok(Resolution {
            alert: id.to_string(),
            device,
            operator: operator.to_string(),
            disposition,
            note,
            at,
            cleared,
        })
    }

    fn resolve_on_desk(
        &mut self,
        id: &str,
        operator: &str,
        disposition: Disposition,
        note: Option<&str>,
        at: Timestamp,
    ) {
        match self
            .desk
            .resolve(id, operator, disposition, note.unwrap_or(""), at)
        {
            Ok((_, messages)) => {
                for message in messages {
                    self.send(message, None, None, at);
                }
            }
            // The alert may have been forgotten by the desk in between
            // (replay of an old journal); the engine's part stands.
            Err(e) => warn!(alert = id, error = %e, "a resolution found no alert on the desk"),
        }
    }

    /// Journals a webhook delivery attempt and shows it on its alert.
    pub(super) fn delivery_attempt(&mut self, alert: String, attempt: DeliveryAttempt) {
        self.desk.delivery_attempt(&alert, &attempt);
        self.record_for_alert(
            &alert,
            Record::Webhook {
                alert: alert.clone(),
                endpoint: attempt.endpoint,
                message: attempt.message,
                attempt: attempt.attempt,
                status: attempt.status,
                error: attempt.error,
                delivered: attempt.delivered,
                at: attempt.at,
            },
        );
    }

    /// Replays an operator's journaled action at its own time.
    pub(super) fn replay_operator(&mut self, record: Record) {
        match record {
            Record::Ack {
                alert,
                operator,
                note,
                at,
                police,
            } => {
                let _ = self.acknowledge(&alert, &operator, note, police, at);
            }
            Record::Resolve {
                alert,
                device,
                operator,
                note,
                at,
                disposition,
            } => {
                let open_tamper = self
                    .desk
                    .alert(&alert)
                    .is_some_and(|a| a.latest.kind == EventKind::Tamper && a.open);
                // Records from before dispositions were tamper resolutions.
                if open_tamper || disposition.is_none() {
                    match self.engine.resolve_tamper(&device, at) {
                        Ok(events) => self.publish_events(&events, at, None),
                        Err(e) => {
                            warn!(error = %e, device = %device, "a journaled tamper resolution is refused on replay")
                        }
                    }
                }
                if let Some(disposition) = disposition.as_deref().and_then(parse_code) {
                    self.resolve_on_desk(&alert, &operator, disposition, note.as_deref(), at);
                }
            }
            Record::Note {
                alert,
                operator,
                text,
                at,
            } => {
                let _ = self.desk.note(&alert, &operator, &text, at);
            }
            Record::Escalate {
                alert,
                operator,
                note,
                at,
            } => {
                let _ = self.desk.escalate_by_hand(&alert, &operator, &note, at);
            }
            Record::Webhook {
                alert,
                endpoint,
                message,
                attempt,
                status,
                error,
                delivered,
                at,
            } => self.desk.delivery_attempt(
                &alert,
                &DeliveryAttempt {
                    endpoint,
                    message,
                    attempt,
                    status,
                    error,
                    delivered,
                    at,
                },
            ),
            _ => {}
        }
    }
}

/// A disposition's code as the API and the journal spell it.
pub fn code(disposition: Disposition) -> String {
    serde_json::to_value(disposition)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn parse_code(code: &str) -> Option<Disposition> {
    serde_json::from_value(serde_json::Value::String(code.to_string())).ok()
}
