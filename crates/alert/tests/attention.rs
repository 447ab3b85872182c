//! The health policy: breaches and tamper ask the monitoring room for
//! action at once; warnings and device health only inform, until a
//! condition lasts `health_action_after_s` (twice that in a low-risk case).

use jiff::{SignedDuration, Timestamp};
use kordon_alert::{AlertDesk, AlertEvent, AlertMessage, AlertSettings, Attention, Outbound};
use kordon_core::{Case, DeviceId, Engine, EngineConfig, Fix, Status};

const HOME: (f64, f64) = (51.9200, 4.5470);
/// An exclusion zone's centre north of her home, within her alarm radius.
const ZONE_NORTH_M: f64 = 150.0;

fn case(risk: &str) -> Case {
    serde_json::from_value(serde_json::json!({
        "id": "RTM-2", "risk": risk,
        "offender": {"device": "OFF-2"},
        "protected": [{"id": "P1", "device": "VIC-2"}],
        "orders": [
            {"id": "contact-p1", "legal_basis": "art. 38v Sr", "valid_from": "2026-01-01T00:00:00Z",
             "rule": {"type": "contact_ban", "protected": "P1", "warning_radius_m": 1000, "alarm_radius_m": 200}}
        ]
    }))
    .unwrap()
}

fn t(s: i64) -> Timestamp {
    "2026-11-29T03:00:00Z".parse::<Timestamp>().unwrap() + SignedDuration::from_secs(s)
}

struct Room {
    engine: Engine,
    desk: AlertDesk,
    out: Vec<Outbound>,
}

impl Room {
    fn new(risk: &str) -> Room {
        Room::with_case(case(risk))
    }

    /// Her contact ban and an exclusion zone `ZONE_NORTH_M` north of her.
    fn new_with_zone(risk: &str) -> Room {
        let mut json = serde_json::to_value(case(risk)).unwrap();
        let lat = HOME.0 + ZONE_NORTH_M / 111_195.0;
        json["orders"].as_array_mut().unwrap().push(serde_json::json!(
            {"id": "zone", "legal_basis": "art. 38v Sr", "valid_from": "2026-01-01T00:00:00Z",
             "rule": {"type": "exclusion_zone",
                      "geometry": {"type": "Point", "coordinates": [HOME.1, lat], "radius_m": 50}}}));
        Room::with_case(serde_json::from_value(json).unwrap())
    }

    fn with_case(case: Case) -> Room {
        let mut engine = Engine::new(EngineConfig::default());
        let mut desk = AlertDesk::new(AlertSettings::default());
        engine.upsert_case(case.clone(), t(0)).unwrap();
        desk.upsert_case(&case);
        Room {
            engine,
            desk,
            out: Vec::new(),
        }
    }

    fn fix(&mut self, device: &str, north_m: f64, s: i64) {
        self.fix_with_accuracy(device, north_m, 5.0, s);
    }

    fn fix_with_accuracy(&mut self, device: &str, north_m: f64, accuracy_m: f64, s: i64) {
        let lat = HOME.0 + north_m / 111_195.0;
        self.send(
            Fix::new(DeviceId::new(device), t(s), lat, HOME.1, accuracy_m),
            s,
        );
    }

    /// A fix whose receiver says it stands still: he arrived (kordon does
    /// not read a standing man as passing by, however fast he came).
    fn fix_standing(&mut self, device: &str, north_m: f64, s: i64) {
        let lat = HOME.0 + north_m / 111_195.0;
        let mut fix = Fix::new(DeviceId::new(device), t(s), lat, HOME.1, 5.0);
        fix.speed_mps = Some(0.0);
        self.send(fix, s);
    }

    fn send(&mut self, fix: Fix, s: i64) {
        for event in self.engine.ingest_fix(&fix).unwrap().events {
            self.out.extend(self.desk.route(&event, t(s)));
        }
    }

    /// Heartbeats without a fix from both devices, and ticks, every minute
    /// from `from` to `to` seconds.
    fn silent_minutes(&mut self, from: i64, to: i64) {
        for s in (from..=to).step_by(60) {
            for device in ["OFF-2", "VIC-2"] {
                let status = Status::heartbeat(DeviceId::new(device), t(s));
                for event in self.engine.ingest_status(&status).unwrap() {
                    self.out.extend(self.desk.route(&event, t(s)));
                }
            }
            for event in self.engine.tick(t(s)) {
                self.out.extend(self.desk.route(&event, t(s)));
            }
            self.out.extend(self.desk.tick(t(s)));
        }
    }

    /// Statuses from `devices` only (the others silent), and ticks, every
    /// minute from `from` to `to` seconds.
    fn minutes_hearing(&mut self, devices: &[&str], from: i64, to: i64) {
        for s in (from..=to).step_by(60) {
            for device in devices {
                let status = Status::heartbeat(DeviceId::new(*device), t(s));
                for event in self.engine.ingest_status(&status).unwrap() {
                    self.out.extend(self.desk.route(&event, t(s)));
                }
            }
            for event in self.engine.tick(t(s)) {
                self.out.extend(self.desk.route(&event, t(s)));
            }
            self.out.extend(self.desk.tick(t(s)));
        }
    }

    /// Her fixes at home (his bracelet silent), and ticks, every minute.
    fn minutes_with_her_fixes(&mut self, from: i64, to: i64) {
        for s in (from..=to).step_by(60) {
            self.fix("VIC-2", 0.0, s);
            self.minutes_hearing(&[], s, s);
        }
    }

    fn to_device(&self, device: &str) -> Vec<serde_json::Value> {
        let topic = format!("kordon/v1/devices/{device}/warning");
        self.out
            .iter()
            .filter(|m| m.topic == topic)
            .map(|m| serde_json::from_slice(&m.payload).unwrap())
            .collect()
    }

    fn on(&self, topic: &str) -> usize {
        self.out.iter().filter(|m| m.topic == topic).count()
    }

    fn monitoring(&self) -> Vec<AlertMessage> {
        self.out
            .iter()
            .filter(|m| m.topic == "kordon/v1/alerts/monitoring")
            .map(|m| serde_json::from_slice(&m.payload).unwrap())
            .collect()
    }
}

/// A warning informs; a contact-ban breach informs until it has been
/// certain for a minute (the police and her device are told at once), then
/// asks the room for action.
#[test]
fn a_contact_ban_breach_asks_for_action_once_certain_for_a_minute() {
    let mut room = Room::new("medium");
    room.fix("VIC-2", 0.0, 0);
    room.fix("OFF-2", 600.0, 10);
    room.fix_standing("OFF-2", 50.0, 20);
    assert_eq!(room.on("kordon/v1/alerts/police"), 1, "the police at once");
    assert_eq!(room.to_device("VIC-2").len(), 1, "she at once");
    room.out.extend(room.desk.tick(t(79)));
    room.out.extend(room.desk.tick(t(80)));
    let kinds: Vec<_> = room
        .monitoring()
        .iter()
        .map(|m| (m.kind.as_str(), m.event, m.attention))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (
                "proximity_warning",
                AlertEvent::Opened,
                Attention::Information
            ),
            (
                "proximity_breach",
                AlertEvent::Updated,
                Attention::Information
            ),
            ("proximity_breach", AlertEvent::Updated, Attention::Action)
        ]
    );
    let text = String::from_utf8_lossy(&room.out[0].payload).into_owned();
    assert!(text.contains("\"attention\":\"information\""), "{text}");
}

/// A possible breach (a disc on the alarm radius) that never turns certain
/// informs the room, tells the police, and does not buzz her phone.
#[test]
fn a_possible_only_breach_informs_and_does_not_buzz_her() {
    let mut room = Room::new("medium");
    room.fix("VIC-2", 0.0, 0);
    for s in (10..300).step_by(10) {
        room.fix_with_accuracy("OFF-2", 230.0, 40.0, s);
        room.out.extend(room.desk.tick(t(s)));
    }
    let monitoring = room.monitoring();
    assert!(monitoring
        .iter()
        .any(|m| m.kind.as_str() == "proximity_breach"));
    assert!(monitoring
        .iter()
        .all(|m| m.attention == Attention::Information));
    assert!(
        room.to_device("VIC-2").is_empty(),
        "{:?}",
        room.to_device("VIC-2")
    );
    assert_eq!(room.on("kordon/v1/alerts/police"), 1);
}

/// One incident, one call: he follows her and breaches a zone as well;
/// the zone breach joins the incident the contact-ban breach opened.
#[test]
fn a_second_breach_of_the_same_case_joins_the_incident() {
    let mut room = Room::new_with_zone("high");
    room.fix("VIC-2", 0.0, 0);
    for s in (10..=120).step_by(10) {
        room.fix("OFF-2", 30.0, s);
        room.out.extend(room.desk.tick(t(s)));
    }
    room.fix("OFF-2", ZONE_NORTH_M, 130);
    room.out.extend(room.desk.tick(t(130)));
    let first_asking = |kind: &str| {
        room.monitoring()
            .iter()
            .any(|m| m.kind.as_str() == kind && m.attention == Attention::Action)
    };
    assert!(first_asking("proximity_breach"));
    assert!(
        room.monitoring()
            .iter()
            .any(|m| m.kind.as_str() == "zone_breach"),
        "{:?}",
        room.monitoring()
    );
    assert!(!first_asking("zone_breach"), "joined the incident");
}

#[test]
fn gps_lost_informs_and_asks_for_action_once_it_has_lasted_half_an_hour() {
    let mut room = Room::new("medium");
    room.fix("VIC-2", 3000.0, 0);
    room.fix("OFF-2", 0.0, 0);
    room.silent_minutes(60, 45 * 60);
    let lost: Vec<_> = room
        .monitoring()
        .into_iter()
        .filter(|m| m.kind.as_str() == "gps_lost" && m.device.as_str() == "OFF-2")
        .collect();
    assert!(lost.len() >= 2, "{lost:?}");
    assert_eq!(lost[0].attention, Attention::Information);
    let onset = lost[0].onset;
    let asked: Vec<_> = lost
        .iter()
        .filter(|m| m.attention == Attention::Action && m.event == AlertEvent::Updated)
        .collect();
    assert_eq!(asked.len(), 1, "asked once: {lost:?}");
    let lasted = asked[0].ts.duration_since(onset).as_secs();
    assert!((1800..1860).contains(&lasted), "after {lasted} s");
    // Its fix ends it; the clearing still says it asked for action.
    room.fix("OFF-2", 10.0, 45 * 60 + 30);
    let last = room.monitoring().pop().unwrap();
    assert_eq!(last.kind.as_str(), "gps_lost");
    assert_eq!(last.attention, Attention::Action);
}

#[test]
fn in_a_low_risk_case_a_condition_asks_for_action_after_twice_as_long() {
    let mut room = Room::new("low");
    room.fix("VIC-2", 3000.0, 0);
    room.fix("OFF-2", 0.0, 0);
    room.silent_minutes(60, 45 * 60);
    assert!(room
        .monitoring()
        .iter()
        .all(|m| m.attention == Attention::Information));
    room.silent_minutes(46 * 60, 70 * 60);
    assert!(room
        .monitoring()
        .iter()
        .any(|m| m.kind.as_str() == "gps_lost" && m.attention == Attention::Action));
}

/// Degraded protection: his bracelet goes silent in a high-risk case while
/// he is 3 km from her. She is not buzzed at once (she can do nothing about
/// a bracelet across town); after half an hour she is told once, and told
/// when it ends. Asking for action unacknowledged, it goes to the
/// coordinators, never to the police.
#[test]
fn his_bracelet_silent_far_from_her_reaches_her_only_once_it_lasts_and_escalates_to_coordinators() {
    let mut room = Room::new("high");
    room.fix("VIC-2", 0.0, 0);
    room.fix("OFF-2", 3000.0, 0);
    room.minutes_with_her_fixes(60, 20 * 60);
    assert!(
        room.to_device("VIC-2").is_empty(),
        "{:?}",
        room.to_device("VIC-2")
    );
    assert_eq!(room.on("kordon/v1/alerts/police"), 0);
    let opened = room
        .monitoring()
        .into_iter()
        .find(|m| m.kind.as_str() == "device_offline")
        .unwrap();
    assert_eq!(opened.attention, Attention::Information);
    room.minutes_with_her_fixes(21 * 60, 45 * 60);
    let told = room.to_device("VIC-2");
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(told[0]["kind"], "device_offline");
    room.fix("OFF-2", 3000.0, 45 * 60 + 30);
    let told = room.to_device("VIC-2");
    assert_eq!(told.len(), 2, "{told:?}");
    assert_eq!(told[1]["event"], "cleared");
    assert_eq!(room.on("kordon/v1/alerts/police"), 0);
    assert_eq!(
        room.on("kordon/v1/cases/RTM-2/coordinators"),
        1,
        "asking for action unacknowledged, it was escalated to the coordinators"
    );
}

/// The same silence while he was last seen 900 m from her, inside her
/// 1000 m warning radius: she is warned at once, and the room asked to act.
#[test]
fn his_bracelet_silent_near_her_warns_her_at_once() {
    let mut room = Room::new("high");
    room.fix("VIC-2", 0.0, 0);
    room.fix("OFF-2", 1400.0, 0);
    room.fix("OFF-2", 900.0, 30);
    room.minutes_hearing(&["VIC-2"], 60, 10 * 60);
    let told: Vec<_> = room
        .to_device("VIC-2")
        .into_iter()
        .filter(|w| w["kind"] == "device_offline")
        .collect();
    assert_eq!(told.len(), 1, "{told:?}");
}

/// Her own phone without a position for half an hour: she is told that
/// kordon cannot warn her, once, and when it is back.
#[test]
fn her_device_without_a_position_for_long_tells_her_she_is_not_protected() {
    let mut room = Room::new("medium");
    room.fix("VIC-2", 0.0, 0);
    room.fix("OFF-2", 5000.0, 0);
    for s in (60..=50 * 60).step_by(60) {
        room.fix("OFF-2", 5000.0, s);
        room.minutes_hearing(&["VIC-2"], s, s);
    }
    let told = room.to_device("VIC-2");
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(told[0]["kind"], "gps_lost");
    // In her language: Dutch unless her case says otherwise.
    assert_eq!(told[0]["language"], "nl");
    assert!(told[0]["instruction"]
        .as_str()
        .unwrap()
        .contains("kan u niet waarschuwen"));
    room.fix("VIC-2", 0.0, 50 * 60 + 30);
    let told = room.to_device("VIC-2");
    assert_eq!(told.len(), 2, "{told:?}");
    assert_eq!(told[1]["event"], "cleared");
}
