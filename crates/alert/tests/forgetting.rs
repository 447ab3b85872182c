//! The desk's memory stays bounded on a day nobody acknowledges anything: a
//! cleared alert nobody acknowledged is forgotten `forget_cleared_after_h`
//! after it cleared (the journal keeps it); an open one never is.

use jiff::{SignedDuration, Timestamp};
use kordon_alert::{AlertDesk, AlertSettings};
use kordon_core::{Case, DeviceId, Engine, EngineConfig, EventKind, Fix, Phase};

const ZONE: (f64, f64) = (51.9500, 4.4500);

fn case() -> Case {
    let d = 0.002;
    let (zlat, zlon) = ZONE;
    serde_json::from_value(serde_json::json!({
        "id": "RTM-9", "risk": "medium",
        "offender": {"device": "OFF-9"},
        "protected": [{"id": "P1", "device": "VIC-9"}],
        "orders": [
            {"id": "zone", "legal_basis": "art. 38v Sr", "valid_from": "2026-01-01T00:00:00Z",
             "rule": {"type": "exclusion_zone", "geometry": {"type": "Polygon", "coordinates": [[
                [zlon - d, zlat - d], [zlon + d, zlat - d], [zlon + d, zlat + d], [zlon - d, zlat + d], [zlon - d, zlat - d]]]}}}
        ]
    }))
    .unwrap()
}

fn t(s: i64) -> Timestamp {
    "2026-11-29T03:00:00Z".parse::<Timestamp>().unwrap() + SignedDuration::from_secs(s)
}

#[test]
fn a_cleared_alert_nobody_acknowledged_is_forgotten_after_a_day_an_open_one_never() {
    let mut engine = Engine::new(EngineConfig::default());
    let mut desk = AlertDesk::new(AlertSettings::default());
    engine.upsert_case(case(), t(0)).unwrap();
    desk.upsert_case(&case());
    let route = |engine: &mut Engine, desk: &mut AlertDesk, s: i64, lat: f64| {
        let fix = Fix::new(DeviceId::new("OFF-9"), t(s), lat, ZONE.1, 5.0);
        let events = engine.ingest_fix(&fix).unwrap().events;
        for event in &events {
            desk.route(event, t(s));
        }
        events
    };
    let opened = route(&mut engine, &mut desk, 0, ZONE.0);
    assert_eq!(opened[0].kind, EventKind::ZoneBreach);
    let id = opened[0].id.to_string();
    // Open and unacknowledged for two days: it stays.
    desk.tick(t(2 * 86_400));
    assert!(desk.alert(&id).is_some_and(|a| a.open));
    // He leaves; it clears, and nobody acknowledges it.
    let away = ZONE.0 + 0.05;
    route(&mut engine, &mut desk, 2 * 86_400 + 10, away);
    let cleared = route(&mut engine, &mut desk, 2 * 86_400 + 100, away);
    assert!(cleared.iter().any(|e| e.phase == Phase::Cleared));
    let cleared_at = 2 * 86_400 + 100;
    desk.tick(t(cleared_at + 23 * 3600));
    assert!(desk.alert(&id).is_some_and(|a| !a.open));
    desk.tick(t(cleared_at + 24 * 3600 + 1));
    assert!(
        desk.alert(&id).is_none(),
        "kept beyond forget_cleared_after_h"
    );
}
