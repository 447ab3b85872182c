//! The JSON payloads kordon publishes about alerts. Which payload goes to
//! whom is [`crate::desk`]'s decision; this module only shapes them, and the
//! victim's and offender's payload types have no field that could carry a
//! position, a distance or a direction.

use jiff::Timestamp;
use kordon_core::{
    CaseId, Certainty, ClearReason, DeviceId, EpisodeId, Event, EventKind, Finding, OrderId,
    Passage, PositionReport, ProximityContext, RiskLevel, Role, Severity,
};
use serde::{Deserialize, Serialize};

use crate::attention::Attention;

/// What happened to an alert, as published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertEvent {
    Opened,
    Updated,
    Cleared,
    /// A late fix shows a past breach: evidence, no one is warned.
    LateBreach,
    /// Not acknowledged in time; police and the case coordinators are told.
    Escalated,
    Acknowledged,
}

/// A position as it appears in an alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Position {
    pub device: DeviceId,
    pub lat: f64,
    pub lon: f64,
    /// Accuracy radius in metres, grown with age for a stale position.
    pub acc: f64,
    pub ts: Timestamp,
    /// How old the position was when the alert was decided, in seconds.
    #[serde(default)]
    pub age_s: f64,
}

impl Position {
    /// `p` as an alert decided at `at` reports it.
    pub fn of(p: &PositionReport, at: Timestamp) -> Self {
        Position {
            device: p.device.clone(),
            lat: p.lat,
            lon: p.lon,
            acc: p.accuracy_m,
            ts: p.ts,
            age_s: at.duration_since(p.ts).as_secs_f64().max(0.0),
        }
    }
}

/// Who acknowledged an alert, when, at what level, and how long it took.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Acknowledgement {
    pub operator: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub at: Timestamp,
    /// From when the alert demanded attention at this level (its first
    /// publication, or its last rise in level) to this acknowledgement.
    pub time_to_ack_s: f64,
    /// The level the operator acknowledged; a rise above it demands a new
    /// acknowledgement. Absent in acknowledgements from before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<Level>,
}

/// How much attention an alert demands: its kind and certainty. A warning
/// becoming a breach, or a possible breach becoming certain, is a rise: a
/// new demand for attention that needs its own acknowledgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Level {
    pub kind: EventKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certainty: Option<Certainty>,
}

impl Level {
    pub fn of(message: &AlertMessage) -> Level {
        Level {
            kind: message.kind,
            certainty: message.certainty,
        }
    }

    /// Whether this level demands more than `before` did.
    pub fn rose_from(self, before: Level) -> bool {
        let breach = |kind| matches!(kind, EventKind::ProximityBreach | EventKind::ZoneBreach);
        let certain = |c| c == Some(Certainty::Certain);
        (breach(self.kind) && !breach(before.kind))
            || (breach(self.kind) == breach(before.kind)
                && certain(self.certainty)
                && !certain(before.certainty))
    }
}

/// The alert payload of the monitoring and police topics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertMessage {
    /// The stable episode id.
    pub id: EpisodeId,
    pub event: AlertEvent,
    pub kind: EventKind,
    pub severity: Severity,
    pub case: CaseId,
    pub risk: RiskLevel,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<OrderId>,
    /// The device the episode is about.
    pub device: DeviceId,
    pub role: Role,
    pub onset: Timestamp,
    /// The time of the evidence (a fix's time) or of the decision.
    pub ts: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certainty: Option<Certainty>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distance_m: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offender: Option<Position>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protected: Option<Position>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<ClearReason>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledged: Option<Acknowledgement>,
    /// The police dispatcher's own acknowledgement: never the room's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub police_acknowledged: Option<Acknowledgement>,
    /// What it asks of the monitoring room (see [`crate::attention`]).
    #[serde(default)]
    pub attention: Attention,
    /// For a contact ban: how the two move ([`kordon_core::intent`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Box<ProximityContext>>,
    /// A breach seen only on the straight line between two fixes
    /// ([`kordon_core::passage`]): for the monitoring room alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub between_fixes: Option<Box<Passage>>,
}

impl AlertMessage {
    pub fn from_event(event: &Event, risk: RiskLevel) -> Self {
        AlertMessage {
            id: event.id,
            event: match event.phase {
                kordon_core::Phase::Opened => AlertEvent::Opened,
                kordon_core::Phase::Updated => AlertEvent::Updated,
                kordon_core::Phase::Cleared => AlertEvent::Cleared,
                kordon_core::Phase::LateBreach => AlertEvent::LateBreach,
            },
            kind: event.kind,
            severity: event.severity,
            case: event.case.clone(),
            risk,
            order: event.order.clone(),
            device: event.device.clone(),
            role: event.role,
            onset: event.onset,
            ts: event.at,
            certainty: event.certainty,
            distance_m: event.distance_m,
            offender: event.offender.as_ref().map(|p| Position::of(p, event.at)),
            protected: event.protected.as_ref().map(|p| Position::of(p, event.at)),
            reason: event.reason,
            acknowledged: None,
            police_acknowledged: None,
            attention: Attention::Information,
            context: event.context.clone(),
            between_fixes: event.between_fixes.clone(),
        }
    }

    /// Seen only between two fixes: no device is told of it, and it pages
    /// no police by itself (he was past when it was found).
    pub fn is_between_fixes(&self) -> bool {
        self.between_fixes.is_some()
    }

    /// The same alert without the protected person's position, for readers
    /// who may not see it.
    pub fn without_protected_position(mut self) -> Self {
        self.protected = None;
        if self.kind.family() == "proximity" {
            // Distance to her and her position together locate her; so do
            // his course and speed relative to her.
            self.distance_m = None;
            self.context = None;
            self.between_fixes = None;
        }
        self
    }
}

/// A pattern over days, on `kordon/v1/cases/{case}/patterns` for the case
/// coordinator: what was found and its evidence (each stay's times, her
/// place it was near, the closest distance, the alert episodes open
/// meanwhile). `opened` when found, `updated` with each new stay,
/// `cleared` when no stay came for the pattern's window. The id is stable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatternMessage {
    pub id: EpisodeId,
    pub event: AlertEvent,
    pub case: CaseId,
    pub risk: RiskLevel,
    pub device: DeviceId,
    /// The first stay's start.
    pub onset: Timestamp,
    pub ts: Timestamp,
    #[serde(flatten)]
    pub finding: Finding,
}

impl PatternMessage {
    /// The message of a `pattern` event; `None` for any other.
    pub fn from_event(event: &Event, risk: RiskLevel) -> Option<Self> {
        let finding = event.pattern.as_deref()?.clone();
        let AlertMessage { event: phase, .. } = AlertMessage::from_event(event, risk);
        Some(PatternMessage {
            id: event.id,
            event: phase,
            case: event.case.clone(),
            risk,
            device: event.device.clone(),
            onset: event.onset,
            ts: event.at,
            finding,
        })
    }
}

/// What a device's wearer is told, on `kordon/v1/devices/{device}/warning`.
/// Deliberately without any position, distance or direction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceWarning {
    /// The episode id, so the device can show one warning per episode.
    pub id: EpisodeId,
    pub event: AlertEvent,
    pub kind: EventKind,
    pub severity: Severity,
    pub ts: Timestamp,
    /// In the wearer's language, from [`crate::texts`].
    pub instruction: String,
    /// The language of `instruction` (ISO 639-1).
    pub language: kordon_core::Language,
}

/// Escalation notice for a case's coordinators (a paging gateway reads it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CoordinatorNotice {
    pub id: EpisodeId,
    pub event: AlertEvent,
    pub kind: EventKind,
    pub severity: Severity,
    pub case: CaseId,
    pub risk: RiskLevel,
    pub ts: Timestamp,
    pub unacknowledged_for_s: f64,
    pub coordinators: Vec<kordon_core::Coordinator>,
}
