//! The domain model: devices, fixes, status messages, cases and their orders.
//!
//! These are the serde types of case files (JSON) and of the inputs the engine
//! takes. They hold what was said, not what it means: a case is checked by
//! [`crate::validate`] and compiled by the engine before it decides anything.

use std::fmt;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use smol_str::SmolStr;

use crate::schedule::Schedule;

/// Identifiers are short strings kept inline (up to 23 bytes): comparing or
/// cloning one on the hot path touches no other memory.
macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(SmolStr);

        impl $name {
            pub fn new(id: impl AsRef<str>) -> Self {
                $name(SmolStr::new(id))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:?}", &*self.0)
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl From<&str> for $name {
            fn from(id: &str) -> Self {
                $name(SmolStr::new(id))
            }
        }
    };
}

id_type!(
    /// A bracelet or victim device, e.g. `OFF-0001`, `VIC-0001`.
    DeviceId
);
id_type!(
    /// A case, e.g. `RTM-2026-0117`.
    CaseId
);
impl CaseId {
    /// What [`CaseId::is_plain`] asks of an id, for whoever refuses one.
    pub const PLAIN: &'static str = "1 to 64 of A-Z a-z 0-9 . _ -, not starting with '.'";

    /// Whether the id can name a file and a key: 1 to 64 of `A-Z a-z 0-9 . _ -`,
    /// not starting with `.`. Case files (kordon-server) and the cluster's
    /// cases' bucket (kordon-cluster) hold only such ids.
    pub fn is_plain(&self) -> bool {
        let id = self.as_str();
        !id.is_empty()
            && id.len() <= 64
            && !id.starts_with('.')
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    }
}

id_type!(
    /// An order within its case, e.g. `location-ban-home`.
    OrderId
);
id_type!(
    /// A protected person within their case, e.g. `P1`. Never a name.
    PersonId
);

/// One GPS position report from a device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fix {
    pub device: DeviceId,
    /// Event time from the device's clock (UTC).
    #[serde(serialize_with = "crate::rfc3339::serialize")]
    pub ts: Timestamp,
    pub lat: f64,
    pub lon: f64,
    /// Horizontal accuracy: radius in metres of the disc the device is in.
    pub accuracy_m: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speed_mps: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heading_deg: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub battery_pct: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strap: Option<StrapState>,
    /// The device's own message counter; equal numbers are the same fix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
}

impl Fix {
    /// A fix with only the fields every device sends.
    pub fn new(device: DeviceId, ts: Timestamp, lat: f64, lon: f64, accuracy_m: f64) -> Self {
        Fix {
            device,
            ts,
            lat,
            lon,
            accuracy_m,
            speed_mps: None,
            heading_deg: None,
            battery_pct: None,
            strap: None,
            seq: None,
        }
    }

    pub fn with_seq(mut self, seq: u64) -> Self {
        self.seq = Some(seq);
        self
    }
}

/// One input to the engine, in the form the journal, recordings and
/// scripted scenarios store it (JSON lines, `"input"` names the variant).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "input", rename_all = "snake_case")]
pub enum Input {
    Fix(Fix),
    Status(Status),
    Tick { now: Timestamp },
}

/// A heartbeat: the device is alive, with or without a position.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Status {
    pub device: DeviceId,
    #[serde(serialize_with = "crate::rfc3339::serialize")]
    pub ts: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strap: Option<StrapState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub battery_pct: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub charging: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gps: Option<GpsState>,
}

impl Status {
    pub fn heartbeat(device: DeviceId, ts: Timestamp) -> Self {
        Status {
            device,
            ts,
            strap: None,
            battery_pct: None,
            charging: None,
            gps: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StrapState {
    Ok,
    Tampered,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GpsState {
    Ok,
    NoFix,
}

/// SASH risk level of a case; it raises the severity of its alerts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RiskLevel {
    Low,
    Medium,
    High,
}

/// Which side of a case a device is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Offender,
    Protected,
}

/// One offender, the people they must stay away from, and the orders.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub id: CaseId,
    pub risk: RiskLevel,
    pub offender: Offender,
    #[serde(default)]
    pub protected: Vec<ProtectedPerson>,
    /// Who answers for the case in each organisation (probation, police).
    #[serde(default)]
    pub coordinators: Vec<Coordinator>,
    pub orders: Vec<Order>,
}

impl Case {
    /// Parses a case file. Structure only; [`crate::validate::validate_case`]
    /// checks the meaning.
    pub fn from_json(text: &str) -> Result<Case, serde_json::Error> {
        serde_json::from_str(text)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Offender {
    pub device: DeviceId,
    /// The language his bracelet's texts are written in.
    #[serde(default, skip_serializing_if = "Language::is_default")]
    pub language: Language,
    /// Where he is registered to live, a GeoJSON `[lon, lat]` position.
    /// Optional; with it, intake checks that his orders let him live there
    /// ([`crate::order_checks`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registered_address: Option<[f64; 2]>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProtectedPerson {
    pub id: PersonId,
    /// A victim device is optional; without one only static zones protect her.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<DeviceId>,
    /// The language her device's warnings are written in.
    #[serde(default, skip_serializing_if = "Language::is_default")]
    pub language: Language,
    /// The places she is known to be: home, work, school. They are the case
    /// coordinator's and the engine's knowledge, used to check that the
    /// orders can protect her there ([`crate::order_checks`]); they are
    /// never sent to any device and never shown to the offender's side.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub places: Vec<KnownPlace>,
}

/// A place a protected person is known to be. Hers only: never sent to a
/// device, never shown to the offender's side.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KnownPlace {
    pub kind: PlaceKind,
    /// A GeoJSON `[lon, lat]` position.
    pub position: [f64; 2],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlaceKind {
    Home,
    Work,
    School,
    Other,
}

impl PlaceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PlaceKind::Home => "home",
            PlaceKind::Work => "work",
            PlaceKind::School => "school",
            PlaceKind::Other => "other",
        }
    }
}

impl fmt::Display for PlaceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A language kordon writes device texts in (ISO 639-1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    /// Dutch, the default of a Dutch monitoring programme.
    #[default]
    Nl,
    En,
}

impl Language {
    pub fn is_default(&self) -> bool {
        *self == Language::default()
    }

    pub fn code(self) -> &'static str {
        match self {
            Language::Nl => "nl",
            Language::En => "en",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Coordinator {
    pub organisation: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

/// A court or prosecutor's order within a case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Order {
    pub id: OrderId,
    /// The article and decision the order rests on, e.g. "art. 38v Sr, ECLI:…".
    pub legal_basis: String,
    pub valid_from: Timestamp,
    /// Open-ended when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_until: Option<Timestamp>,
    pub rule: Rule,
}

impl Order {
    pub fn is_valid_at(&self, t: Timestamp) -> bool {
        self.valid_from <= t && self.valid_until.is_none_or(|until| t < until)
    }
}

/// What an order forbids or requires.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Rule {
    /// Location ban: stay out of the zone (during the schedule, if any).
    ExclusionZone {
        geometry: ZoneGeometry,
        /// A warning is raised this many metres before the zone.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        warning_buffer_m: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        schedule: Option<Schedule>,
        /// The protected person whose address (home, shelter, work) the
        /// zone surrounds. Its edge then reveals where she is: the
        /// bracelet is not warned of it unless `bracelet_warnings` says so.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        around: Option<PersonId>,
        /// Whether the bracelet is told when it nears or enters the zone
        /// ("Turn back"). Default: yes, unless the zone is `around` a
        /// protected person's address, where walking the warning buffer
        /// would let him map the edge, and so find her.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        bracelet_warnings: Option<bool>,
    },
    /// Area obligation or curfew: be inside the zone during the schedule.
    InclusionZone {
        geometry: ZoneGeometry,
        schedule: Schedule,
        /// Seconds outside, within a window, before it is a breach.
        grace_s: u32,
    },
    /// Stay away from a protected person, wherever she is.
    ContactBan {
        protected: PersonId,
        warning_radius_m: f64,
        alarm_radius_m: f64,
    },
}

impl Rule {
    /// Whether the offender's bracelet may be warned of this order: static
    /// zones, except those around a protected person's address unless the
    /// order says so; never a contact ban (it would be derived from her
    /// position).
    pub fn warns_bracelet(&self) -> bool {
        match self {
            Rule::ExclusionZone {
                around,
                bracelet_warnings,
                ..
            } => bracelet_warnings.unwrap_or(around.is_none()),
            Rule::InclusionZone { .. } => true,
            Rule::ContactBan { .. } => false,
        }
    }
}

/// A zone as GeoJSON (positions are `[lon, lat]`), or a circle written as a
/// GeoJSON `Point` with a `radius_m` member.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", deny_unknown_fields)]
pub enum ZoneGeometry {
    Polygon {
        coordinates: Vec<Vec<[f64; 2]>>,
    },
    MultiPolygon {
        coordinates: Vec<Vec<Vec<[f64; 2]>>>,
    },
    #[serde(rename = "Point")]
    Circle {
        coordinates: [f64; 2],
        radius_m: f64,
    },
}
