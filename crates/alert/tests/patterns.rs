//! Patterns over days reach the case coordinator alone
//! (`kordon/v1/cases/{case}/patterns`), with their evidence: a man who
//! parks near her home three evenings in a week and never comes within
//! any alarm radius sends nothing to the monitoring room, the police or a
//! device, and is seen all the same.

use jiff::{SignedDuration, Timestamp};
use kordon_alert::{AlertDesk, AlertSettings, Outbound};
use kordon_core::{Case, DeviceId, Engine, EngineConfig, Fix};

/// Her home, in the case file.
const HOME: (f64, f64) = (51.9200, 4.5470);

fn case() -> Case {
    serde_json::from_value(serde_json::json!({
        "id": "RTM-5", "risk": "high",
        "offender": {"device": "OFF-5", "registered_address": [4.4300, 51.9000]},
        "protected": [{"id": "P1", "device": "VIC-5",
                       "places": [{"kind": "home", "position": [HOME.1, HOME.0]}]}],
        "orders": [
            {"id": "home-zone", "legal_basis": "art. 38v Sr", "valid_from": "2026-01-01T00:00:00Z",
             "rule": {"type": "exclusion_zone", "warning_buffer_m": 100, "around": "P1",
                      "geometry": {"type": "Point", "coordinates": [HOME.1, HOME.0], "radius_m": 200}}},
            {"id": "contact-p1", "legal_basis": "art. 38v Sr", "valid_from": "2026-01-01T00:00:00Z",
             "rule": {"type": "contact_ban", "protected": "P1", "warning_radius_m": 500, "alarm_radius_m": 200}}
        ]
    }))
    .unwrap()
}

/// Midnight UTC of day `day`, plus `s` seconds.
fn t(day: i64, s: i64) -> Timestamp {
    "2026-11-30T00:00:00Z".parse::<Timestamp>().unwrap()
        + SignedDuration::from_hours(24 * day)
        + SignedDuration::from_secs(s)
}

/// An engine and an alert desk that know the case.
fn engine_and_desk(case: &Case) -> (Engine, AlertDesk) {
    let mut engine = Engine::new(EngineConfig::default());
    let mut desk = AlertDesk::new(AlertSettings::default());
    engine.upsert_case(case.clone(), t(0, 0)).unwrap();
    desk.upsert_case(case);
    (engine, desk)
}

/// She is at home; on each of `evenings` he parks `north` metres north of
/// her home from 19:00 for 20 minutes, a fix a minute. Every message.
fn evenings(evenings: &[(i64, f64)]) -> Vec<Outbound> {
    let (mut engine, mut desk) = engine_and_desk(&case());
    let mut out = Vec::new();
    for &(day, north) in evenings {
        for minute in 0..=20 {
            let at = t(day, 19 * 3600 + 60 * minute);
            let hers = Fix::new(DeviceId::new("VIC-5"), at, HOME.0, HOME.1, 8.0);
            let his = Fix::new(
                DeviceId::new("OFF-5"),
                at,
                HOME.0 + north / 111_195.0,
                HOME.1,
                8.0,
            );
            for fix in [hers, his] {
                for event in engine.ingest_fix(&fix).unwrap().events {
                    out.extend(desk.route(&event, at));
                }
            }
        }
    }
    out
}

fn payloads(out: &[Outbound], topic: &str) -> Vec<serde_json::Value> {
    out.iter()
        .filter(|m| m.topic == topic)
        .map(|m| serde_json::from_slice(&m.payload).unwrap())
        .collect()
}

#[test]
fn three_evenings_near_her_home_reach_the_coordinator_alone() {
    let out = evenings(&[(0, 900.0), (2, 1100.0), (4, 800.0)]);
    let patterns = payloads(&out, "kordon/v1/cases/RTM-5/patterns");
    assert_eq!(
        patterns.len(),
        1,
        "found on the third evening: {patterns:?}"
    );
    let found = &patterns[0];
    assert_eq!(found["event"], "opened");
    assert_eq!(found["pattern"], "slow_burn");
    let stays = found["stays"].as_array().unwrap();
    assert_eq!(stays.len(), 3);
    assert!(stays.iter().all(|s| s["place"] == "home"), "{found}");
    let closest = stays[2]["closest_m"].as_f64().unwrap();
    assert!((closest - 800.0).abs() < 5.0, "{found}");
    assert_eq!(found["onset"], stays[0]["from"], "from the first evening");
    // Nobody else is told of him: nothing came near enough for an alert.
    // (The room hears of the devices going silent between evenings.)
    let others: Vec<_> = out
        .iter()
        .filter(|m| !m.topic.ends_with("/patterns"))
        .filter(|m| {
            let p: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
            let kind = p["kind"].as_str().unwrap_or_default();
            m.topic != "kordon/v1/alerts/monitoring"
                || kind.ends_with("_breach")
                || kind.ends_with("_warning")
        })
        .map(|m| String::from_utf8_lossy(&m.payload).to_string())
        .collect();
    assert!(others.is_empty(), "{others:?}");
}

#[test]
fn a_fourth_evening_grows_the_same_finding() {
    let out = evenings(&[(0, 900.0), (2, 1100.0), (4, 800.0), (5, 1000.0)]);
    let patterns = payloads(&out, "kordon/v1/cases/RTM-5/patterns");
    assert_eq!(patterns.len(), 2, "{patterns:?}");
    assert_eq!(patterns[1]["event"], "updated");
    assert_eq!(patterns[1]["id"], patterns[0]["id"], "one stable id");
    assert_eq!(patterns[1]["stays"].as_array().unwrap().len(), 4);
}

#[test]
fn evenings_near_his_own_address_are_not_a_pattern() {
    // He lives 1 km north of her, and spends his evenings at home.
    let mut near_him = case();
    near_him.offender.registered_address = Some([HOME.1, HOME.0 + 1000.0 / 111_195.0]);
    let (mut engine, mut desk) = engine_and_desk(&near_him);
    let mut out = Vec::new();
    for day in 0..5 {
        for minute in 0..=20 {
            let at = t(day, 19 * 3600 + 60 * minute);
            let lat = HOME.0 + 1000.0 / 111_195.0;
            let his = Fix::new(DeviceId::new("OFF-5"), at, lat, HOME.1, 8.0);
            for event in engine.ingest_fix(&his).unwrap().events {
                out.extend(desk.route(&event, at));
            }
        }
    }
    assert!(payloads(&out, "kordon/v1/cases/RTM-5/patterns").is_empty());
}

/// On each of `evenings` his bracelet, `north` metres north of her home,
/// loses its fix at 19:00 for half an hour while its status keeps coming
/// (`gps: no_fix`, wrapped in foil). Every message.
fn dark_evenings(evenings: &[(i64, f64)]) -> Vec<Outbound> {
    use kordon_core::{GpsState, Status};
    let (mut engine, mut desk) = engine_and_desk(&case());
    let mut out = Vec::new();
    for &(day, north) in evenings {
        let last = t(day, 19 * 3600);
        let lat = HOME.0 + north / 111_195.0;
        let his = Fix::new(DeviceId::new("OFF-5"), last, lat, HOME.1, 8.0);
        for event in engine.ingest_fix(&his).unwrap().events {
            out.extend(desk.route(&event, last));
        }
        for minute in 1..=30 {
            let at = t(day, 19 * 3600 + 60 * minute);
            let status = Status {
                gps: Some(GpsState::NoFix),
                ..Status::heartbeat(DeviceId::new("OFF-5"), at)
            };
            let mut events = engine.ingest_status(&status).unwrap();
            events.extend(engine.tick(at));
            for event in events {
                out.extend(desk.route(&event, at));
            }
        }
    }
    out
}

#[test]
fn going_dark_near_her_home_on_two_evenings_reaches_the_coordinator() {
    let out = dark_evenings(&[(0, 600.0), (2, 800.0)]);
    let patterns = payloads(&out, "kordon/v1/cases/RTM-5/patterns");
    assert_eq!(patterns.len(), 1, "{patterns:?}");
    let found = &patterns[0];
    assert_eq!(found["pattern"], "going_dark");
    let stays = found["stays"].as_array().unwrap();
    assert_eq!(stays.len(), 2, "{found}");
    // Each outage names his last fix, how near her home it was, and the
    // GPS-lost episode the room was told of.
    assert_eq!(stays[0]["from"], "2026-11-30T19:00:00Z");
    assert!((stays[1]["closest_m"].as_f64().unwrap() - 800.0).abs() < 5.0);
    let lost: Vec<_> = payloads(&out, "kordon/v1/alerts/monitoring")
        .into_iter()
        .filter(|p| p["kind"] == "gps_lost" && p["event"] == "opened")
        .map(|p| p["id"].clone())
        .collect();
    assert_eq!(lost.len(), 2, "{out:?}");
    for (stay, id) in stays.iter().zip(&lost) {
        assert_eq!(stay["episodes"], serde_json::json!([id]), "{found}");
    }
    // Never her device.
    assert!(out.iter().all(|m| !m.topic.contains("VIC-5")), "{out:?}");
}

#[test]
fn going_dark_far_from_her_is_no_pattern() {
    let out = dark_evenings(&[(0, 3000.0), (1, 3000.0), (2, 3000.0)]);
    assert!(payloads(&out, "kordon/v1/cases/RTM-5/patterns").is_empty());
}
