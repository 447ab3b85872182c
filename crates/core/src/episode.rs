//! Episodes and the events that report them.
//!
//! An episode is one breach (or one health condition) from onset until it is
//! cleared: it is opened once, updated when it changes in a way a person
//! acting on it must know, and cleared once. Its id is derived from what it
//! is about and its onset, so the same inputs give the same id in a replay,
//! after a restart, or on another machine: downstream, an id seen twice is the
//! same alert.

use std::fmt;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::decision::Certainty;
use crate::intent::ProximityContext;
use crate::model::{CaseId, DeviceId, OrderId, RiskLevel, Role};
use crate::passage::Passage;
use crate::patterns::Finding;

/// Stable identifier of an episode: 128 bits of SHA-256 over its subject and
/// onset, written as 32 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EpisodeId([u8; 16]);

impl EpisodeId {
    /// `subject` names the order (or the device, for health episodes).
    pub fn derive(case: &CaseId, subject: &str, track: &str, onset: Timestamp) -> Self {
        let mut h = Sha256::new();
        for part in [case.as_str(), subject, track] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        h.update(onset.as_nanosecond().to_le_bytes());
        let digest = h.finalize();
        let mut id = [0u8; 16];
        id.copy_from_slice(&digest[..16]);
        EpisodeId(id)
    }
}

impl fmt::Display for EpisodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for EpisodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EpisodeId({self})")
    }
}

impl Serialize for EpisodeId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for EpisodeId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        let bytes = text.as_bytes();
        if bytes.len() != 32 {
            return Err(serde::de::Error::custom("episode id must be 32 hex digits"));
        }
        let mut id = [0u8; 16];
        for (i, pair) in bytes.chunks(2).enumerate() {
            let pair = std::str::from_utf8(pair).map_err(serde::de::Error::custom)?;
            id[i] = u8::from_str_radix(pair, 16).map_err(serde::de::Error::custom)?;
        }
        Ok(EpisodeId(id))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    ZoneWarning,
    ZoneBreach,
    CurfewBreach,
    ProximityWarning,
    ProximityBreach,
    /// A contact ban's pair cannot be judged: a position is too old.
    PositionUnknown,
    Tamper,
    BatteryLow,
    BatteryCritical,
    GpsLost,
    DeviceOffline,
    /// A pattern over days found in the offender's stays
    /// ([`crate::patterns`]): for the case coordinator.
    Pattern,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::ZoneWarning => "zone_warning",
            EventKind::ZoneBreach => "zone_breach",
            EventKind::CurfewBreach => "curfew_breach",
            EventKind::ProximityWarning => "proximity_warning",
            EventKind::ProximityBreach => "proximity_breach",
            EventKind::PositionUnknown => "position_unknown",
            EventKind::Tamper => "tamper",
            EventKind::BatteryLow => "battery_low",
            EventKind::BatteryCritical => "battery_critical",
            EventKind::GpsLost => "gps_lost",
            EventKind::DeviceOffline => "device_offline",
            EventKind::Pattern => "pattern",
        }
    }

    /// Kinds one episode can pass through share a family (a warning that
    /// becomes a breach, a low battery that becomes critical); episode ids
    /// derive from it, so episodes of different families never share an id.
    pub fn family(self) -> &'static str {
        match self {
            EventKind::ZoneWarning | EventKind::ZoneBreach => "zone",
            EventKind::ProximityWarning | EventKind::ProximityBreach => "proximity",
            EventKind::BatteryLow | EventKind::BatteryCritical => "battery",
            other => other.as_str(),
        }
    }

    /// The severity of this kind of alert in a case of `risk`, on a device of `role`.
    pub fn severity(self, risk: RiskLevel, role: Role) -> Severity {
        use EventKind::*;
        use Severity::*;
        let high = risk == RiskLevel::High;
        let low = risk == RiskLevel::Low;
        match self {
            ProximityBreach if low => Severe,
            ProximityBreach => Extreme,
            ZoneBreach | Tamper if high => Extreme,
            ZoneBreach | Tamper => Severe,
            CurfewBreach | ZoneWarning | ProximityWarning | PositionUnknown if high => Severe,
            CurfewBreach | ZoneWarning | ProximityWarning | PositionUnknown => Moderate,
            DeviceOffline if high && role == Role::Offender => Severe,
            DeviceOffline | GpsLost | BatteryCritical if !low => Moderate,
            DeviceOffline | GpsLost | BatteryCritical | BatteryLow => Minor,
            // Nobody needs to move now; the coordinator needs to know.
            Pattern => Moderate,
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// CAP 1.2 severities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Minor,
    Moderate,
    Severe,
    Extreme,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Opened,
    /// The episode changed: a warning became a breach, certainty rose or fell,
    /// or the distance moved by more than the configured step.
    Updated,
    Cleared,
    /// A fix that arrived after newer ones shows a breach in the past. It is
    /// evidence for the monitoring room; it opens nothing and warns no one.
    LateBreach,
}

/// Why an episode was cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClearReason {
    /// Fixes show the device clear of the area, by the margin, long enough.
    Resolved,
    /// The order is outside its validity or its schedule window ended.
    OrderInactive,
    /// The order or the case was removed or changed.
    OrderWithdrawn,
    /// An operator checked and resolved it (a tamper alarm).
    OperatorResolved,
}

/// Where a device was, as reported with an alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PositionReport {
    pub device: DeviceId,
    pub lat: f64,
    pub lon: f64,
    /// Accuracy in metres, grown with age where the position is stale.
    pub accuracy_m: f64,
    pub ts: Timestamp,
}

/// What the engine tells the world. Routing (who may see which field) is the
/// alert crate's job; the engine reports everything it knows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub id: EpisodeId,
    pub phase: Phase,
    pub kind: EventKind,
    pub severity: Severity,
    pub case: CaseId,
    /// `None` for device health episodes.
    pub order: Option<OrderId>,
    /// The device the episode is about: the offender for order episodes.
    pub device: DeviceId,
    pub role: Role,
    pub onset: Timestamp,
    /// The event's own time: the fix's time, or `now` of a tick.
    pub at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certainty: Option<Certainty>,
    /// Between the parties (contact ban) or to the zone boundary, negative inside.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distance_m: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offender: Option<PositionReport>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protected: Option<PositionReport>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<ClearReason>,
    /// For a contact ban: how the two move, at the fix that decided this
    /// event ([`crate::intent`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// Boxed: most events have none, and journal records hold events.
    pub context: Option<Box<ProximityContext>>,
    /// The breach was seen only on the straight line between two fixes
    /// ([`crate::passage`]), and no fix has shown it since: a *possible*
    /// breach for the monitoring room.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub between_fixes: Option<Box<Passage>>,
    /// For a `pattern` event: what was found, with its evidence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<Box<Finding>>,
}

/// The episodes of one subject (an order, or one kind of a device's health)
/// follow each other: this is the one place that enforces that **an episode
/// id is never reused and a closed episode never reopens from the past**.
///
/// Ids derive from onsets, so a new episode whose onset is at or before the
/// last one's would take its id, or claim time the ended one already
/// accounts for. Every opening asks [`Succession::admit`] first, and every
/// closing tells [`Succession::ended`]. The engine keeps a subject's
/// succession when the subject goes away (an order withdrawn, a device no
/// case needs) and gives it back if it returns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Succession {
    last: Option<Ended>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct Ended {
    onset: Timestamp,
    closed_at: Timestamp,
}

impl Succession {
    /// The onset an episode found at `at`, with evidence since `onset`, may
    /// open with, or `None` when it may not open.
    ///
    /// - Found before the last episode closed (an input stamped before the
    ///   tick or fix that closed it, arriving after): that time was judged
    ///   already, and the closed episode stays closed.
    /// - Found after, with evidence reaching back to or before the last
    ///   episode (a threshold lowered since, an order withdrawn and given
    ///   again): a new episode, counted from when it was found.
    pub fn admit(&self, onset: Timestamp, at: Timestamp) -> Option<Timestamp> {
        let Some(last) = self.last else {
            return Some(onset);
        };
        if at < last.closed_at {
            return None;
        }
        if onset > last.onset && onset >= last.closed_at {
            return Some(onset);
        }
        let just_after = last
            .onset
            .checked_add(jiff::SignedDuration::from_secs(1))
            .unwrap_or(Timestamp::MAX);
        Some(at.max(just_after))
    }

    /// Records that the episode with `onset` closed at `at`.
    pub fn ended(&mut self, onset: Timestamp, at: Timestamp) {
        self.last = Some(Ended {
            onset,
            closed_at: at.max(onset),
        });
    }
}
