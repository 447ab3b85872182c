//! Case files, parsed as `kordon_server::cases::read_case_file` parses them
//! (UTF-8 text, `Case::from_json`, `validate_case`), then put into a fresh
//! engine with `Engine::upsert_case`, which validates again, checks device
//! roles and compiles the zones. A case the engine takes is then exercised:
//! a fix of each device on each of its zones, ticks across its schedules, a
//! snapshot and restore, a replacement by itself, and its removal.
//!
//! Invariants: no panic; the case survives the journal (`Record::CaseUpsert`)
//! and the file kordon writes for it (`cases::write_case`) unchanged; the
//! engine refuses what validation refuses; the episode invariants hold.
#![no_main]

use jiff::SignedDuration;
use kordon_core::{validate_case, Case, DeviceId, Engine, EngineConfig, Fix, Rule, ZoneGeometry};
use kordon_fuzz::{episode_invariants, journal_roundtrip, now};
use kordon_journal::Record;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // `read_case_file` reads with `read_to_string`, which refuses non-UTF-8.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(case) = Case::from_json(text) else {
        return;
    };
    let report = validate_case(&case);
    let _ = report.errors.iter().map(ToString::to_string).count();
    let _ = serde_json::to_string(&report).expect("a validation report serialises");

    // The journal and the case directory keep it.
    let now = now();
    journal_roundtrip(&Record::CaseUpsert {
        case: case.clone(),
        at: now,
    });
    let pretty = serde_json::to_string_pretty(&case).expect("cases always serialise");
    match Case::from_json(&pretty) {
        Ok(back) => assert_eq!(back, case, "the written case file reads back otherwise"),
        Err(e) => panic!("the written case file does not read back ({e}):\n{pretty}"),
    }
    let _ = kordon_server::cases::file_of(std::path::Path::new("/cases"), &case.id);

    let mut engine = Engine::new(EngineConfig::default());
    let events = match engine.upsert_case(case.clone(), now) {
        Ok(events) => events,
        Err(rejected) => {
            let _ = rejected.to_string();
            return;
        }
    };
    assert!(
        report.errors.is_empty(),
        "the engine took a case validation refuses: {:?}",
        report.errors
    );
    assert!(
        events.is_empty(),
        "a new case on a fresh engine: {events:?}"
    );
    let mut all = events;

    // A fix of every device of the case on a point of every zone.
    let mut devices = vec![case.offender.device.clone()];
    devices.extend(case.protected.iter().filter_map(|p| p.device.clone()));
    let points: Vec<(f64, f64)> = case
        .orders
        .iter()
        .filter_map(|o| match &o.rule {
            Rule::ExclusionZone { geometry, .. } | Rule::InclusionZone { geometry, .. } => {
                Some(geometry)
            }
            Rule::ContactBan { .. } => None,
        })
        .filter_map(|g| match g {
            ZoneGeometry::Polygon { coordinates } => coordinates.first()?.first().copied(),
            ZoneGeometry::MultiPolygon { coordinates } => {
                coordinates.first()?.first()?.first().copied()
            }
            ZoneGeometry::Circle { coordinates, .. } => Some(*coordinates),
        })
        .map(|[lon, lat]| (lat, lon))
        .take(8)
        .collect();
    let mut t = now;
    let step = |t: &mut jiff::Timestamp, s: i64| {
        *t = t.checked_add(SignedDuration::from_secs(s)).unwrap();
    };
    for &(lat, lon) in points.iter().chain([(51.9210, 4.5160)].iter()) {
        for device in &devices {
            step(&mut t, 5);
            let fix = Fix::new(DeviceId::new(device.as_str()), t, lat, lon, 5.0);
            if let Ok(outcome) = engine.ingest_fix(&fix) {
                all.extend(outcome.events);
            }
        }
        all.extend(engine.tick(t));
    }
    // Across a day and a week of schedules and validity.
    for s in [600, 3600 * 6, 3600 * 12, 86_400 * 3, 86_400 * 4] {
        step(&mut t, s);
        all.extend(engine.tick(t));
    }
    let mut engine = Engine::restore(&engine.snapshot()).expect("a snapshot restores");
    all.extend(
        engine
            .upsert_case(case.clone(), t)
            .expect("a case the engine took is taken again"),
    );
    all.extend(engine.remove_case(&case.id, t));
    assert_eq!(engine.case_count(), 0);
    if let Err(broken) = episode_invariants(&all) {
        panic!("{broken}");
    }
});
