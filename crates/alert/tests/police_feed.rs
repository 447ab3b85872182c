//! The police feed carries a breach and its material changes, not a
//! stream: an update goes to the police (JSON and CAP) when the level
//! changes, or when he moved at least `police_update_min_move_m` and the
//! last police message is `police_update_min_interval_s` old; the
//! monitoring room still sees every update.

use jiff::{SignedDuration, Timestamp};
use kordon_alert::{AlertDesk, AlertSettings, Outbound};
use kordon_core::{Case, DeviceId, Engine, EngineConfig, Fix};

const HOME: (f64, f64) = (51.9200, 4.5470);

fn case() -> Case {
    serde_json::from_value(serde_json::json!({
        "id": "RTM-2", "risk": "medium",
        "offender": {"device": "OFF-2"},
        "protected": [{"id": "P1", "device": "VIC-2"}],
        "orders": [
            {"id": "contact-p1", "legal_basis": "art. 38v Sr", "valid_from": "2026-01-01T00:00:00Z",
             "rule": {"type": "contact_ban", "protected": "P1", "warning_radius_m": 1000, "alarm_radius_m": 500}}
        ]
    }))
    .unwrap()
}

fn t(s: i64) -> Timestamp {
    "2026-11-29T03:00:00Z".parse::<Timestamp>().unwrap() + SignedDuration::from_secs(s)
}

#[test]
fn police_updates_go_out_on_material_changes_only() {
    let mut engine = Engine::new(EngineConfig::default());
    let mut desk = AlertDesk::new(AlertSettings::default());
    engine.upsert_case(case(), t(0)).unwrap();
    desk.upsert_case(&case());
    let mut out: Vec<Outbound> = Vec::new();
    let mut fix = |device: &str, north_m: f64, s: i64| {
        let lat = HOME.0 + north_m / 111_195.0;
        let fix = Fix::new(DeviceId::new(device), t(s), lat, HOME.1, 5.0);
        for event in engine.ingest_fix(&fix).unwrap().events {
            out.extend(desk.route(&event, t(s)));
        }
    };
    fix("VIC-2", 0.0, 0);
    // He walks around inside the alarm radius for five minutes, a fix every
    // 5 s, 30 m apart: 60 updates of the distance.
    for i in 0..60 {
        let metres = 400.0 - 30.0 * f64::from(i % 12);
        fix("OFF-2", metres, 5 + 5 * i64::from(i));
    }
    // Then he leaves for good.
    for i in 0..5 {
        fix(
            "OFF-2",
            5000.0 + 10.0 * f64::from(i),
            400 + 30 * i64::from(i),
        );
    }
    let on = |topic: &str| out.iter().filter(|m| m.topic == topic).count();
    let monitoring = on("kordon/v1/alerts/monitoring");
    let police = on("kordon/v1/alerts/police");
    let cap = on("kordon/v1/alerts/police/cap");
    eprintln!("monitoring {monitoring}, police {police}, CAP {cap}");
    assert!(monitoring > 20, "the monitoring room sees the updates");
    // Opened, at most one update a minute over its five minutes and the
    // clearing time, cleared: against 60 updates before.
    assert!(police <= 2 + 6, "{police} police messages for one episode");
    assert_eq!(police, cap, "JSON and CAP go together");
    let last = out
        .iter()
        .rev()
        .find(|m| m.topic == "kordon/v1/alerts/police")
        .unwrap();
    assert!(String::from_utf8_lossy(&last.payload).contains("\"event\":\"cleared\""));
}

/// A breach whose positions go stale (her phone silent) tells the police at
/// once that it no longer knows: an update without certainty, CAP
/// `Unknown`, even within the update interval.
#[test]
fn the_police_hear_at_once_when_a_breach_rests_on_stale_positions() {
    let mut engine = Engine::new(EngineConfig::default());
    let mut desk = AlertDesk::new(AlertSettings::default());
    engine.upsert_case(case(), t(0)).unwrap();
    desk.upsert_case(&case());
    let mut out: Vec<Outbound> = Vec::new();
    let fix = |engine: &mut Engine, device: &str, north_m: f64, s: i64| {
        let lat = HOME.0 + north_m / 111_195.0;
        let fix = Fix::new(DeviceId::new(device), t(s), lat, HOME.1, 5.0);
        engine.ingest_fix(&fix).unwrap().events
    };
    for event in fix(&mut engine, "VIC-2", 0.0, 0) {
        out.extend(desk.route(&event, t(0)));
    }
    let max_age = i64::from(EngineConfig::default().position_max_age_s);
    for s in (10..=max_age + 30).step_by(10) {
        for event in fix(&mut engine, "OFF-2", 20.0, s) {
            out.extend(desk.route(&event, t(s)));
        }
        for event in engine.tick(t(s)) {
            out.extend(desk.route(&event, t(s)));
        }
    }
    let police: Vec<serde_json::Value> = out
        .iter()
        .filter(|m| m.topic == "kordon/v1/alerts/police")
        .map(|m| serde_json::from_slice(&m.payload).unwrap())
        .collect();
    let last = police.last().unwrap();
    assert_eq!(last["kind"], "proximity_breach");
    assert_eq!(last["event"], "updated");
    assert!(last.get("certainty").is_none(), "{last}");
    let cap = out
        .iter()
        .rev()
        .find(|m| m.topic == "kordon/v1/alerts/police/cap")
        .unwrap();
    assert!(String::from_utf8_lossy(&cap.payload).contains("<certainty>Unknown</certainty>"));
}

/// A follow on the alarm radius: certainty flips between certain and
/// possible with every other fix for five minutes. The police hear the
/// breach, its rise to certain, and its end; not the flicker.
#[test]
fn a_breach_flickering_between_certain_and_possible_is_not_a_stream_for_the_police() {
    let mut engine = Engine::new(EngineConfig::default());
    let mut desk = AlertDesk::new(AlertSettings::default());
    engine.upsert_case(case(), t(0)).unwrap();
    desk.upsert_case(&case());
    let mut out: Vec<Outbound> = Vec::new();
    let mut fix = |device: &str, north_m: f64, accuracy_m: f64, s: i64| {
        let lat = HOME.0 + north_m / 111_195.0;
        let fix = Fix::new(DeviceId::new(device), t(s), lat, HOME.1, accuracy_m);
        for event in engine.ingest_fix(&fix).unwrap().events {
            out.extend(desk.route(&event, t(s)));
        }
    };
    fix("VIC-2", 0.0, 5.0, 0);
    for i in 0..60 {
        let s = 5 + 5 * i64::from(i);
        if i % 2 == 0 {
            fix("OFF-2", 480.0, 5.0, s); // certain: 480 m inside the 500 m radius
        } else {
            fix("OFF-2", 490.0, 30.0, s); // possible
        }
        fix("VIC-2", 0.0, 5.0, s + 1);
    }
    for i in 0..5 {
        fix("OFF-2", 5000.0, 5.0, 400 + 30 * i64::from(i));
    }
    let police: Vec<serde_json::Value> = out
        .iter()
        .filter(|m| m.topic == "kordon/v1/alerts/police")
        .map(|m| serde_json::from_slice(&m.payload).unwrap())
        .collect();
    let events: Vec<_> = police.iter().map(|m| m["event"].clone()).collect();
    assert!(police.len() <= 3, "{events:?}");
    assert_eq!(police.last().unwrap()["event"], "cleared");
}
