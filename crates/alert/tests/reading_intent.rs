//! Routing by the reading of intent (`kordon_core::intent`): a car passing
//! her is the monitoring room's to see, not a police unit's; the same car
//! stopping beside her pages the police at the fix that shows it stopped.
//! The room sees both at once, with the context.

use jiff::{SignedDuration, Timestamp};
use kordon_alert::{AlertDesk, AlertSettings, Outbound};
use kordon_core::{Case, DeviceId, Engine, EngineConfig, Fix};

const HER: (f64, f64) = (51.9200, 4.5470);
const MONITORING: &str = "kordon/v1/alerts/monitoring";
const POLICE: &str = "kordon/v1/alerts/police";
const POLICE_CAP: &str = "kordon/v1/alerts/police/cap";

fn case() -> Case {
    serde_json::from_value(serde_json::json!({
        "id": "RTM-3", "risk": "high",
        "offender": {"device": "OFF-3"},
        "protected": [{"id": "P1", "device": "VIC-3"}],
        "orders": [
            {"id": "contact-p1", "legal_basis": "art. 38v Sr", "valid_from": "2026-01-01T00:00:00Z",
             "rule": {"type": "contact_ban", "protected": "P1", "warning_radius_m": 500, "alarm_radius_m": 200}}
        ]
    }))
    .unwrap()
}

fn t(s: i64) -> Timestamp {
    "2026-11-29T13:00:00Z".parse::<Timestamp>().unwrap() + SignedDuration::from_secs(s)
}

/// She stands; he drives north along a road 30 m east of her at 12 m/s, a
/// fix every 10 s with the receiver's own speed, and stops `stop` metres
/// past her, if at all. Returns every message and the time of each.
fn drive(stop: Option<f64>) -> Vec<(i64, Outbound)> {
    let mut engine = Engine::new(EngineConfig::default());
    let mut desk = AlertDesk::new(AlertSettings::default());
    engine.upsert_case(case(), t(0)).unwrap();
    desk.upsert_case(&case());
    let mut out = Vec::new();
    let mut send = |fix: Fix, s: i64| {
        for event in engine.ingest_fix(&fix).unwrap().events {
            out.extend(desk.route(&event, t(s)).into_iter().map(|m| (s, m)));
        }
    };
    send(Fix::new(DeviceId::new("VIC-3"), t(0), HER.0, HER.1, 8.0), 0);
    let mut north = -900.0;
    for k in 0..25 {
        let s = 5 + 10 * k;
        let parked = stop.is_some_and(|at| north >= at);
        let lat = HER.0 + north / 111_195.0;
        let lon = HER.1 + 30.0 / 68_800.0;
        let mut fix = Fix::new(DeviceId::new("OFF-3"), t(s), lat, lon, 6.0);
        fix.speed_mps = Some(if parked { 0.0 } else { 12.0 });
        fix.heading_deg = (!parked).then_some(0.0);
        send(fix, s);
        if !parked {
            north += 120.0;
        }
    }
    out
}

fn on(out: &[(i64, Outbound)], topic: &str) -> Vec<(i64, serde_json::Value)> {
    out.iter()
        .filter(|(_, m)| m.topic == topic)
        .map(|(s, m)| (*s, serde_json::from_slice(&m.payload).unwrap()))
        .collect()
}

fn cap_count(out: &[(i64, Outbound)]) -> usize {
    out.iter().filter(|(_, m)| m.topic == POLICE_CAP).count()
}

#[test]
fn a_car_passing_her_reaches_the_room_with_its_context_and_not_the_police() {
    let out = drive(None);
    let room = on(&out, MONITORING);
    let breach: Vec<_> = room
        .iter()
        .filter(|(_, m)| m["kind"] == "proximity_breach")
        .collect();
    assert!(!breach.is_empty(), "the room sees the breach");
    let context = &breach[0].1["context"];
    assert_eq!(context["reading"], "passing", "{context}");
    assert!(context["offender_speed_mps"].as_f64().unwrap() > 10.0);
    assert!(
        room.iter().any(|(_, m)| m["event"] == "cleared"),
        "he is gone: the episode cleared"
    );
    // Not even by its clearing: the police never heard of it.
    assert!(on(&out, POLICE).is_empty(), "{:?}", on(&out, POLICE));
    assert_eq!(cap_count(&out), 0);
}

#[test]
fn a_car_stopping_beside_her_pages_the_police_at_the_fix_that_shows_it() {
    let out = drive(Some(40.0));
    let police = on(&out, POLICE);
    assert!(!police.is_empty(), "the police are paged");
    let (when, first) = &police[0];
    assert_eq!(first["kind"], "proximity_breach");
    assert_ne!(first["context"]["reading"], "passing", "{first}");
    // Parked at 60 m past her from the fix at 85 s: the fix at 85 s shows
    // him standing.
    assert_eq!(*when, 85, "{police:?}");
    let room_first = on(&out, MONITORING)
        .into_iter()
        .find(|(_, m)| m["kind"] == "proximity_breach")
        .unwrap();
    assert!(room_first.0 < *when, "the room saw it first, as passing");
    assert_eq!(cap_count(&out), police.len(), "JSON and CAP go together");
}

#[test]
fn her_device_hears_nothing_of_his_movement() {
    for out in [drive(None), drive(Some(40.0))] {
        for (_, m) in &out {
            if m.topic.starts_with("kordon/v1/devices/") {
                let text = String::from_utf8_lossy(&m.payload);
                assert!(!text.contains("context"), "{}: {text}", m.topic);
                assert!(!text.contains("speed"), "{}: {text}", m.topic);
            }
        }
    }
}
