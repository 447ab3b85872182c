//! The health policy: breaches and tamper ask the monitoring room for
//! action at once; warnings and device health only inform, until a
//! condition lasts `health_action_after_s` (twice that in a low-risk case).

use jiff::{SignedDuration, Timestamp};
use kordon_alert::{AlertDesk, AlertEvent, AlertMessage, AlertSettings, Attention, Outbound};
use kordon_core::{Case, DeviceId, Engine, EngineConfig, Fix, Status};

const HOME: (f64, f64) = (51.9200, 4.5470);

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
        let mut engine = Engine::new(EngineConfig::default());
        let mut desk = AlertDesk::new(AlertSettings::default());
        engine.upsert_case(case(risk), t(0)).unwrap();
        desk.upsert_case(&case(risk));
        Room {
            engine,
            desk,
            out: Vec::new(),
        }
    }

    fn fix(&mut self, device: &str, north_m: f64, s: i64) {
        let lat = HOME.0 + north_m / 111_195.0;
        let fix = Fix::new(DeviceId::new(device), t(s), lat, HOME.1, 5.0);
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

#[test]
fn a_breach_asks_for_action_and_a_warning_only_informs() {
    let mut room = Room::new("medium");
    room.fix("VIC-2", 0.0, 0);
    room.fix("OFF-2", 600.0, 10);
    room.fix("OFF-2", 50.0, 20);
    let messages = room.monitoring();
    let kinds: Vec<_> = messages
        .iter()
        .map(|m| (m.kind.as_str(), m.attention))
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("proximity_warning", Attention::Information),
            ("proximity_breach", Attention::Action)
        ]
    );
    let text = String::from_utf8_lossy(&room.out[0].payload).into_owned();
    assert!(text.contains("\"attention\":\"information\""), "{text}");
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
    assert!(told[0]["instruction"]
        .as_str()
        .unwrap()
        .contains("cannot warn you"));
    room.fix("VIC-2", 0.0, 50 * 60 + 30);
    let told = room.to_device("VIC-2");
    assert_eq!(told.len(), 2, "{told:?}");
    assert_eq!(told[1]["event"], "cleared");
}
