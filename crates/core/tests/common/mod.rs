//! Builders shared by the engine tests: a Rotterdam case, fixes at offsets in
//! metres, and times counted in seconds from a fixed instant.
#![allow(dead_code)]

use std::collections::{HashMap, HashSet};

use jiff::Timestamp;

use kordon_core::{
    Case, CaseId, ClearReason, DeviceId, Engine, EngineConfig, EpisodeId, Event, EventKind, Fix,
    Offender, Order, OrderId, PersonId, Phase, ProtectedPerson, RiskLevel, Rule, ZoneGeometry,
};

/// Wednesday 2026-11-25 10:00 UTC: no DST change near, inside every validity.
pub fn t0() -> Timestamp {
    "2026-11-25T10:00:00Z".parse().unwrap()
}

pub fn at(seconds: i64) -> Timestamp {
    t0().checked_add(jiff::SignedDuration::from_secs(seconds))
        .unwrap()
}

/// Kralingen, Rotterdam.
pub const HOME: (f64, f64) = (51.9210, 4.5160);

/// Position `east`, `north` metres from `HOME`, exact on the ellipsoid.
pub fn offset(east: f64, north: f64) -> (f64, f64) {
    offset_from(HOME, east, north)
}

pub fn offset_from(origin: (f64, f64), east: f64, north: f64) -> (f64, f64) {
    use geo::{Destination, Geodesic, Point};
    let start = Point::new(origin.1, origin.0);
    let distance = east.hypot(north);
    if distance == 0.0 {
        return origin;
    }
    let bearing = east.atan2(north).to_degrees();
    let p = Geodesic.destination(start, bearing, distance);
    (p.y(), p.x())
}

pub fn order(id: &str, rule: Rule) -> Order {
    Order {
        id: OrderId::from(id),
        legal_basis: "art. 38v Sr".into(),
        valid_from: "2026-01-01T00:00:00Z".parse().unwrap(),
        valid_until: Some("2028-01-01T00:00:00Z".parse().unwrap()),
        rule,
    }
}

/// A square exclusion zone of `half_side` metres around `HOME`.
pub fn square_zone(half_side: f64, buffer: Option<f64>) -> Rule {
    let corners = [
        (-1.0, -1.0),
        (1.0, -1.0),
        (1.0, 1.0),
        (-1.0, 1.0),
        (-1.0, -1.0),
    ];
    let ring = corners
        .iter()
        .map(|(e, n)| {
            let (lat, lon) = offset(e * half_side, n * half_side);
            [lon, lat]
        })
        .collect();
    Rule::ExclusionZone {
        geometry: ZoneGeometry::Polygon {
            coordinates: vec![ring],
        },
        warning_buffer_m: buffer,
        schedule: None,
        around: None,
        bracelet_warnings: None,
    }
}

/// One window on every day of the week, e.g. a curfew from 22:00 to 06:00.
pub fn every_day(start: &str, end: &str) -> kordon_core::Schedule {
    use kordon_core::Day::*;
    kordon_core::Schedule {
        windows: vec![kordon_core::Window {
            days: vec![Mon, Tue, Wed, Thu, Fri, Sat, Sun],
            start: start.parse().unwrap(),
            end: end.parse().unwrap(),
        }],
    }
}

pub fn contact_ban(warning: f64, alarm: f64) -> Rule {
    Rule::ContactBan {
        protected: PersonId::from("P1"),
        warning_radius_m: warning,
        alarm_radius_m: alarm,
    }
}

pub fn case(id: &str, risk: RiskLevel, orders: Vec<Order>) -> Case {
    let n = id.trim_start_matches(|c: char| !c.is_ascii_digit());
    Case {
        id: CaseId::from(id),
        risk,
        offender: Offender {
            device: DeviceId::new(format!("OFF-{n}")),
            language: Default::default(),
            registered_address: None,
        },
        protected: vec![ProtectedPerson {
            id: PersonId::from("P1"),
            device: Some(DeviceId::new(format!("VIC-{n}"))),
            language: Default::default(),
            places: Vec::new(),
        }],
        coordinators: vec![],
        orders,
    }
}

pub fn engine_with(cases: Vec<Case>) -> Engine {
    engine_with_config(EngineConfig::default(), cases)
}

pub fn engine_with_config(config: EngineConfig, cases: Vec<Case>) -> Engine {
    let mut engine = Engine::new(config);
    for c in cases {
        engine.upsert_case(c, t0()).expect("valid test case");
    }
    engine
}

pub fn fix(device: &str, seconds: i64, pos: (f64, f64), accuracy: f64) -> Fix {
    Fix::new(DeviceId::from(device), at(seconds), pos.0, pos.1, accuracy)
}

/// Feeds a fix and returns its events, panicking on refusal.
pub fn feed(engine: &mut Engine, f: Fix) -> Vec<Event> {
    engine.ingest_fix(&f).expect("fix accepted").events
}

pub fn kinds(events: &[Event]) -> Vec<(Phase, EventKind)> {
    events.iter().map(|e| (e.phase, e.kind)).collect()
}

/// Property-test cases: the default given, or `PROPTEST_CASES` for a longer
/// hunt (`PROPTEST_CASES=20000 cargo test --release -p kordon-core`).
pub fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The episode invariants over a stream of events: an episode opens once
/// and is updated and cleared only while open; one open episode per order
/// (or per device and kind family for health); an id that ended is never
/// opened again, except one withdrawn with its order or case, which may
/// return with it.
pub fn episode_invariants(events: &[Event]) -> Result<(), String> {
    let key = |e: &Event| match &e.order {
        Some(order) => format!("{}/{}", e.case, order),
        None => format!("{}/{}/{}", e.case, e.device, e.kind.family()),
    };
    let mut open: HashMap<String, EpisodeId> = HashMap::new();
    let mut ended = HashSet::new();
    for (n, e) in events.iter().enumerate() {
        let k = key(e);
        let broken = match e.phase {
            Phase::Opened if open.contains_key(&k) => Some("two open episodes"),
            Phase::Opened if ended.contains(&e.id) => Some("reopened an ended episode"),
            Phase::Opened => {
                open.insert(k, e.id);
                None
            }
            Phase::Updated if open.get(&k) != Some(&e.id) => Some("update of a closed episode"),
            Phase::Cleared if open.remove(&k) != Some(e.id) => Some("cleared without being open"),
            Phase::Cleared => {
                if e.reason != Some(ClearReason::OrderWithdrawn) {
                    ended.insert(e.id);
                }
                None
            }
            _ => None,
        };
        if let Some(broken) = broken {
            return Err(format!("{broken} at event {n} of: {}", summary(events)));
        }
    }
    Ok(())
}

/// One line per event, for failure messages.
pub fn summary(events: &[Event]) -> String {
    events
        .iter()
        .map(|e| {
            format!(
                "\n{} {:?} {:?} {:?} {} onset={} at={}",
                &e.id.to_string()[..8],
                e.phase,
                e.kind,
                e.order,
                e.device,
                e.onset,
                e.at
            )
        })
        .collect()
}
