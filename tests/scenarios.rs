//! The shipped example cases, driven through the engine by the scripted
//! scenarios in `config/scenarios/`: what the README's run command shows is
//! what these tests pin.

use std::path::{Path, PathBuf};

use kordon_core::{Case, Engine, EngineConfig, Event, EventKind, Input, Phase};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn load_engine() -> Engine {
    let mut engine = Engine::new(EngineConfig::default());
    let start = "2026-11-25T18:00:00Z".parse().unwrap();
    for name in ["rtm-2026-0117.json", "rtm-2026-0342.json"] {
        let text = std::fs::read_to_string(root().join("config/cases").join(name)).unwrap();
        engine
            .upsert_case(Case::from_json(&text).unwrap(), start)
            .unwrap();
    }
    engine
}

fn run(scenario: &str) -> Vec<Event> {
    let mut engine = load_engine();
    let text = std::fs::read_to_string(root().join("config/scenarios").join(scenario)).unwrap();
    let mut events = Vec::new();
    for line in text.lines() {
        let input: Input = serde_json::from_str(line).unwrap();
        events.extend(engine.apply(&input).expect("scripted inputs are valid"));
    }
    events
}

#[test]
fn approach_warns_then_breaches_then_clears_in_order() {
    let events = run("approach-kralingen.jsonl");
    let of = |order: &str| -> Vec<(Phase, EventKind)> {
        events
            .iter()
            .filter(|e| e.order.as_ref().is_some_and(|o| o.as_str() == order))
            .filter(|e| {
                e.phase != Phase::Updated
                    || matches!(e.kind, EventKind::ProximityBreach | EventKind::ZoneBreach)
            })
            .map(|e| (e.phase, e.kind))
            .collect()
    };
    let contact = of("contact-ban-p1");
    assert_eq!(
        contact.first(),
        Some(&(Phase::Opened, EventKind::ProximityWarning))
    );
    assert_eq!(
        contact.get(1),
        Some(&(Phase::Updated, EventKind::ProximityBreach))
    );
    assert_eq!(
        contact.last(),
        Some(&(Phase::Cleared, EventKind::ProximityBreach))
    );
    let home = of("ban-home-kralingen");
    assert_eq!(home.first(), Some(&(Phase::Opened, EventKind::ZoneWarning)));
    assert_eq!(home.get(1), Some(&(Phase::Updated, EventKind::ZoneBreach)));
    assert_eq!(home.last(), Some(&(Phase::Cleared, EventKind::ZoneBreach)));

    // The warning comes well before he is at the door.
    let warned = events
        .iter()
        .find(|e| e.kind == EventKind::ProximityWarning)
        .unwrap();
    assert!(
        warned.distance_m.unwrap() > 900.0,
        "{:?}",
        warned.distance_m
    );
    // He never came near the city centre, the other case is quiet, and all
    // devices reported: no health alarm, nothing left open.
    assert!(events
        .iter()
        .all(|e| e.order.as_ref().is_none_or(|o| o.as_str() != "ban-centrum")));
    assert!(
        events.iter().all(|e| e.case.as_str() == "RTM-2026-0117"),
        "{events:#?}"
    );
    assert!(events.iter().all(|e| e.order.is_some()));
    let opened = events.iter().filter(|e| e.phase == Phase::Opened).count();
    let cleared = events.iter().filter(|e| e.phase == Phase::Cleared).count();
    assert_eq!((opened, cleared), (2, 2));
}

#[test]
fn the_scenario_replays_identically() {
    assert_eq!(
        run("approach-kralingen.jsonl"),
        run("approach-kralingen.jsonl")
    );
}

#[test]
fn the_city_centre_ban_follows_the_real_district_boundary() {
    let mut engine = load_engine();
    let at = "2026-11-25T18:00:00Z".parse().unwrap();
    let ban = |engine: &mut Engine, lat, lon| {
        engine
            .bans_at(lat, lon, at)
            .into_iter()
            .find(|b| b.order.as_str() == "ban-centrum")
    };
    // Metro stations the CBS boundary puts inside Rotterdam Centrum...
    for (name, lat, lon) in [("Beurs", 51.9185, 4.4813), ("Blaak", 51.9200, 4.4893)] {
        let hit = ban(&mut engine, lat, lon).unwrap_or_else(|| panic!("{name} is in the centre"));
        assert!(hit.inside, "{name}");
    }
    // ... and ones it puts outside, in Delfshaven and Feijenoord.
    for (name, lat, lon) in [
        ("Marconiplein", 51.9130, 4.4325),
        ("Wilhelminaplein", 51.9077, 4.4932),
    ] {
        assert!(
            ban(&mut engine, lat, lon).is_none_or(|b| !b.inside),
            "{name}"
        );
    }
}
