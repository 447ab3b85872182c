//! What the journal holds: one [`Record`] per accepted input, alert event,
//! published message, delivery confirmation and retention pass.
//!
//! A record's body is its JSON: readable with any SQLite client, and the
//! form the evidence export writes and re-hashes. Inputs (fixes, status
//! messages, case changes, ticks, and what people did: acknowledgements,
//! resolutions, notes, escalations by hand, webhook answers) are what
//! recovery replays; events and messages are what kordon decided and sent,
//! kept as evidence and to publish each message once.

use jiff::Timestamp;
use kordon_core::{Case, CaseId, DeviceId, Event, Fix, Status};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// A SHA-256 value: record digests, chain and case-link hashes.
pub type Hash = [u8; 32];

/// The chain's value before the first record.
pub const GENESIS: Hash = [0; 32];

/// The time a tick carries to the engine's deadlines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EngineTick {
    /// The tick's own time (live; every record before this field existed).
    #[default]
    AtTick,
    /// The newest event time of a backlog being drained.
    At(Timestamp),
    /// Not ticked: the backlog has not reached the engine's last tick yet.
    Skipped,
}

impl EngineTick {
    pub fn is_at_tick(&self) -> bool {
        *self == EngineTick::AtTick
    }

    /// The engine's time for a tick at `at`, if it ticks at all.
    pub fn time(self, at: Timestamp) -> Option<Timestamp> {
        match self {
            EngineTick::AtTick => Some(at),
            EngineTick::At(t) => Some(t),
            EngineTick::Skipped => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Record {
    /// A fix the engine took, with when kordon received it.
    Fix {
        fix: Fix,
        #[serde(serialize_with = "kordon_core::rfc3339::serialize")]
        received: Timestamp,
    },
    Status {
        status: Status,
        #[serde(serialize_with = "kordon_core::rfc3339::serialize")]
        received: Timestamp,
    },
    /// A case put in force or replaced (from the case directory or the API).
    CaseUpsert {
        case: Case,
        at: Timestamp,
    },
    CaseRemove {
        case: CaseId,
        at: Timestamp,
    },
    /// The clocks advanced: kordon's own (`at`: escalations, delivery
    /// checks) and the engine's (deadlines: offline, curfew, position
    /// unknown), which differs while a backlog is drained.
    Tick {
        #[serde(serialize_with = "kordon_core::rfc3339::serialize")]
        at: Timestamp,
        #[serde(default, skip_serializing_if = "EngineTick::is_at_tick")]
        engine: EngineTick,
    },
    /// An operator acknowledged an alert: the monitoring room, or (with
    /// `police`) a police dispatcher, whose acknowledgement is their own.
    Ack {
        alert: String,
        operator: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
        at: Timestamp,
        #[serde(default, skip_serializing_if = "is_false")]
        police: bool,
    },
    /// An operator resolved an alert (`alert`, about `device`) with a
    /// disposition (its code; absent in records from before dispositions,
    /// which were tamper alarms only) at `at`. A tamper alarm's episode
    /// closed at `at` too; replay resolves it again at `at`.
    Resolve {
        alert: String,
        device: DeviceId,
        operator: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
        at: Timestamp,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        disposition: Option<String>,
    },
    /// An operator added a note to an alert.
    Note {
        alert: String,
        operator: String,
        text: String,
        at: Timestamp,
    },
    /// One attempt to deliver a CAP message (`message`, its identifier) of
    /// alert `alert` to a police dispatch webhook (`endpoint`, its name):
    /// the HTTP status it answered, or why there was none.
    Webhook {
        alert: String,
        endpoint: String,
        message: String,
        attempt: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        status: Option<u16>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        delivered: bool,
        at: Timestamp,
    },
    /// An operator passed an alert to the police and the coordinators.
    Escalate {
        alert: String,
        operator: String,
        note: String,
        at: Timestamp,
    },
    /// An alert event as the engine decided it, with both positions.
    Event {
        event: Event,
        at: Timestamp,
    },
    /// A message kordon decided to publish. `payload` is UTF-8 (JSON or CAP XML).
    Outbound {
        topic: String,
        payload: String,
        at: Timestamp,
    },
    /// The broker confirmed an outbound message (kordon read it back).
    Delivered {
        message: String,
        at: Timestamp,
    },
    /// A retention pass retired the bodies of old fixes; the rows, their
    /// digests and the chain stay.
    Retention {
        cutoff: Timestamp,
        retired: u64,
        at: Timestamp,
    },
}

impl Record {
    /// The name stored in the `kind` column.
    pub fn kind(&self) -> &'static str {
        match self {
            Record::Fix { .. } => "fix",
            Record::Status { .. } => "status",
            Record::CaseUpsert { .. } => "case_upsert",
            Record::CaseRemove { .. } => "case_remove",
            Record::Tick { .. } => "tick",
            Record::Ack { .. } => "ack",
            Record::Resolve { .. } => "resolve",
            Record::Note { .. } => "note",
            Record::Escalate { .. } => "escalate",
            Record::Webhook { .. } => "webhook",
            Record::Event { .. } => "event",
            Record::Outbound { .. } => "outbound",
            Record::Delivered { .. } => "delivered",
            Record::Retention { .. } => "retention",
        }
    }

    /// When kordon journaled it (its own clock, not the device's).
    pub fn at(&self) -> Timestamp {
        match self {
            Record::Fix { received, .. } | Record::Status { received, .. } => *received,
            Record::CaseUpsert { at, .. }
            | Record::CaseRemove { at, .. }
            | Record::Tick { at, .. }
            | Record::Ack { at, .. }
            | Record::Resolve { at, .. }
            | Record::Note { at, .. }
            | Record::Escalate { at, .. }
            | Record::Webhook { at, .. }
            | Record::Event { at, .. }
            | Record::Outbound { at, .. }
            | Record::Delivered { at, .. }
            | Record::Retention { at, .. } => *at,
        }
    }

    /// The device it is about, for the `device` column.
    pub fn device(&self) -> Option<&DeviceId> {
        match self {
            Record::Fix { fix, .. } => Some(&fix.device),
            Record::Status { status, .. } => Some(&status.device),
            Record::Event { event, .. } => Some(&event.device),
            Record::Resolve { device, .. } => Some(device),
            _ => None,
        }
    }

    pub fn body(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("records always serialise")
    }

    /// [`Record::body`] into `out`, after what it holds: the journal
    /// writes every record of a commit through one buffer instead of
    /// allocating (and growing) a body for each.
    pub fn write_body(&self, out: &mut Vec<u8>) {
        serde_json::to_writer(out, self).expect("records always serialise");
    }

    pub fn from_body(body: &[u8]) -> Result<Record, serde_json::Error> {
        serde_json::from_slice(body)
    }
}

fn is_false(value: &bool) -> bool {
    !value
}

/// The identity of an outbound message: what the broker echoes back.
pub fn message_digest(topic: &str, payload: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(topic.as_bytes());
    h.update([0]);
    h.update(payload);
    hex(&h.finalize().into())
}

pub fn digest(body: &[u8]) -> Hash {
    Sha256::digest(body).into()
}

/// The chain (and a case's link) after a record: SHA-256 of the previous
/// value, the record's number and its digest. The number makes a moved
/// record break the chain even where its neighbours hash alike.
pub fn link(previous: &Hash, seq: u64, digest: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update(previous);
    h.update(seq.to_be_bytes());
    h.update(digest);
    h.finalize().into()
}

pub fn hex(hash: &Hash) -> String {
    use std::fmt::Write;
    hash.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

pub fn parse_hex(text: &str) -> Option<Hash> {
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips() {
        let h = digest(b"kordon");
        assert_eq!(parse_hex(&hex(&h)), Some(h));
        assert_eq!(parse_hex("zz"), None);
    }

    #[test]
    fn a_record_body_round_trips() {
        let fix = Fix::new(
            DeviceId::from("OFF-1"),
            "2026-11-29T03:00:00Z".parse().unwrap(),
            51.92,
            4.47,
            5.0,
        );
        let r = Record::Fix {
            fix,
            received: "2026-11-29T03:00:01Z".parse().unwrap(),
        };
        assert_eq!(Record::from_body(&r.body()).unwrap(), r);
        assert_eq!(r.kind(), "fix");
    }

    #[test]
    fn a_body_written_into_a_used_buffer_is_the_body() {
        let r = Record::Tick {
            at: "2026-11-29T03:00:01Z".parse().unwrap(),
            engine: EngineTick::Skipped,
        };
        let mut out = b"left over".to_vec();
        out.clear();
        r.write_body(&mut out);
        assert_eq!(out, r.body());
    }

    #[test]
    fn a_resolve_record_round_trips_and_names_its_device() {
        let r = Record::Resolve {
            alert: "0123456789abcdef0123456789abcdef".into(),
            device: DeviceId::from("OFF-1"),
            operator: "monitoring room".into(),
            note: Some("strap checked at home".into()),
            at: "2026-11-29T03:00:01Z".parse().unwrap(),
            disposition: Some("bracelet_checked".into()),
        };
        assert_eq!(Record::from_body(&r.body()).unwrap(), r);
        assert_eq!(r.kind(), "resolve");
        assert_eq!(r.device().map(DeviceId::as_str), Some("OFF-1"));
        let body = String::from_utf8(r.body()).unwrap();
        assert!(body.starts_with(r#"{"kind":"resolve","alert":"#), "{body}");
    }

    #[test]
    fn a_resolve_record_from_before_dispositions_still_reads() {
        let old = br#"{"kind":"resolve","alert":"a","device":"OFF-1","operator":"room","at":"2026-11-29T03:00:01Z"}"#;
        let Record::Resolve { disposition, .. } = Record::from_body(old).unwrap() else {
            panic!("not a resolve record")
        };
        assert_eq!(disposition, None);
        let ack = br#"{"kind":"ack","alert":"a","operator":"room","at":"2026-11-29T03:00:01Z"}"#;
        assert!(matches!(
            Record::from_body(ack).unwrap(),
            Record::Ack { police: false, .. }
        ));
    }
}
