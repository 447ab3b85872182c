//! Routing of a breach seen only between two fixes
//! (`kordon_core::passage`): the monitoring room sees it, with where the
//! line came closest; no device is told and no police unit is paged, since
//! he was past when it was found. A later fix that shows the breach is an
//! ordinary breach again.

use jiff::{SignedDuration, Timestamp};
use kordon_alert::{AlertDesk, AlertSettings, Outbound};
use kordon_core::{Case, DeviceId, Engine, EngineConfig, Fix};

const HER: (f64, f64) = (51.9200, 4.5470);
const MONITORING: &str = "kordon/v1/alerts/monitoring";
const POLICE: &str = "kordon/v1/alerts/police";

fn case() -> Case {
    serde_json::from_value(serde_json::json!({
        "id": "RTM-4", "risk": "high",
        "offender": {"device": "OFF-4"},
        "protected": [{"id": "P1", "device": "VIC-4"}],
        "orders": [
            {"id": "home-zone", "legal_basis": "art. 38v Sr", "valid_from": "2026-01-01T00:00:00Z",
             "rule": {"type": "exclusion_zone", "warning_buffer_m": 100, "around": "P1",
                      "geometry": {"type": "Point", "coordinates": [4.5470, 51.9200], "radius_m": 200}}},
            {"id": "contact-p1", "legal_basis": "art. 38v Sr", "valid_from": "2026-01-01T00:00:00Z",
             "rule": {"type": "contact_ban", "protected": "P1", "warning_radius_m": 500, "alarm_radius_m": 200}}
        ]
    }))
    .unwrap()
}

fn t(s: i64) -> Timestamp {
    "2026-11-29T13:00:00Z".parse::<Timestamp>().unwrap() + SignedDuration::from_secs(s)
}

/// His fix `north` metres north of her home, 30 m east of it.
fn his(s: i64, north: f64) -> Fix {
    let lat = HER.0 + north / 111_195.0;
    let lon = HER.1 + 30.0 / 68_800.0;
    Fix::new(DeviceId::new("OFF-4"), t(s), lat, lon, 8.0)
}

/// She is at home; his fixes are `(seconds, metres north)`. Every message
/// sent.
fn run(fixes: &[(i64, f64)]) -> Vec<Outbound> {
    let mut engine = Engine::new(EngineConfig::default());
    let mut desk = AlertDesk::new(AlertSettings::default());
    engine.upsert_case(case(), t(0)).unwrap();
    desk.upsert_case(&case());
    let mut out = Vec::new();
    let mut send = |fix: Fix| {
        let s = fix.ts;
        for event in engine.ingest_fix(&fix).unwrap().events {
            out.extend(desk.route(&event, s));
        }
    };
    send(Fix::new(DeviceId::new("VIC-4"), t(0), HER.0, HER.1, 8.0));
    for &(s, north) in fixes {
        send(his(s, north));
    }
    out
}

fn on(out: &[Outbound], topic: &str) -> Vec<serde_json::Value> {
    out.iter()
        .filter(|m| m.topic == topic)
        .map(|m| serde_json::from_slice(&m.payload).unwrap())
        .collect()
}

fn breaches(messages: &[serde_json::Value]) -> Vec<&serde_json::Value> {
    messages
        .iter()
        .filter(|m| m["kind"].as_str().is_some_and(|k| k.ends_with("_breach")))
        .collect()
}

#[test]
fn a_drive_by_between_fixes_reaches_the_room_alone() {
    // 700 m south, then 700 m north a minute later: through her street.
    let out = run(&[(10, -700.0), (70, 700.0)]);
    let room = on(&out, MONITORING);
    let seen = breaches(&room);
    assert_eq!(seen.len(), 2, "the zone and the contact ban: {room:?}");
    for breach in &seen {
        assert_eq!(breach["certainty"], "possible", "{breach}");
        let line = &breach["between_fixes"];
        assert!(line["at"].is_string() && line["lat"].is_f64(), "{breach}");
        assert_eq!(line["long_gap"], false);
    }
    let zone = seen.iter().find(|m| m["kind"] == "zone_breach").unwrap();
    assert_eq!(zone["attention"], "action", "a zone crossed asks the room");
    assert!(
        on(&out, POLICE).is_empty(),
        "no police: {:?}",
        on(&out, POLICE)
    );
    let devices: Vec<_> = out
        .iter()
        .filter(|m| m.topic.starts_with("kordon/v1/devices/"))
        .map(|m| m.topic.clone())
        .collect();
    assert!(devices.is_empty(), "no device is told: {devices:?}");
}

#[test]
fn a_fix_that_then_shows_him_at_her_home_pages_the_police() {
    let out = run(&[(10, -700.0), (70, 700.0), (85, 20.0)]);
    let police = on(&out, POLICE);
    assert!(!police.is_empty(), "he came back and stands at her door");
    assert!(police.iter().all(|m| m.get("between_fixes").is_none()));
    let room = on(&out, MONITORING);
    let zone: Vec<_> = room.iter().filter(|m| m["kind"] == "zone_breach").collect();
    assert_eq!(zone[0]["id"], zone.last().unwrap()["id"], "one episode");
}

#[test]
fn a_zone_crossed_between_fixes_far_apart_is_a_note() {
    // Five minutes between fixes 1.5 km either side of her home.
    let out = run(&[(10, -1500.0), (310, 1500.0)]);
    let room = on(&out, MONITORING);
    let zone = room
        .iter()
        .find(|m| m["kind"] == "zone_breach")
        .expect("a note on the zone");
    assert_eq!(zone["between_fixes"]["long_gap"], true);
    assert_eq!(zone["attention"], "information");
    assert!(on(&out, POLICE).is_empty());
}
