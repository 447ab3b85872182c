//! Exclusion zones: certainty from the accuracy disc, debounce, hysteresis,
//! suspect fixes, schedules and validity.

mod common;

use common::*;
use kordon_core::{Certainty, ClearReason, EngineConfig, EventKind, Phase, RiskLevel, Severity};

fn zone_case() -> kordon_core::Case {
    case(
        "RTM-1",
        RiskLevel::Medium,
        vec![order("ban-home", square_zone(100.0, Some(200.0)))],
    )
}

#[test]
fn certain_breach_opens_at_once() {
    let mut e = engine_with(vec![zone_case()]);
    let events = feed(&mut e, fix("OFF-1", 0, offset(0.0, 0.0), 10.0));
    assert_eq!(kinds(&events), vec![(Phase::Opened, EventKind::ZoneBreach)]);
    assert_eq!(events[0].certainty, Some(Certainty::Certain));
    assert_eq!(events[0].severity, Severity::Severe);
    assert!(
        events[0].distance_m.unwrap() < -89.0,
        "{:?}",
        events[0].distance_m
    );
    assert_eq!(
        events[0].offender.as_ref().unwrap().device.as_str(),
        "OFF-1"
    );
}

#[test]
fn possible_breach_needs_two_consecutive_possible_fixes() {
    let mut e = engine_with(vec![zone_case()]);
    // 120 m east of centre: 20 m outside the zone, accuracy 30 m overlaps it,
    // and the disc lies wholly in the 200 m warning buffer.
    let events = feed(&mut e, fix("OFF-1", 0, offset(120.0, 0.0), 30.0));
    assert_eq!(
        kinds(&events),
        vec![(Phase::Opened, EventKind::ZoneWarning)]
    );
    assert_eq!(events[0].certainty, Some(Certainty::Certain));
    let events = feed(&mut e, fix("OFF-1", 15, offset(121.0, 0.0), 30.0));
    assert_eq!(
        kinds(&events),
        vec![(Phase::Updated, EventKind::ZoneBreach)]
    );
    assert_eq!(events[0].certainty, Some(Certainty::Possible));
}

#[test]
fn a_single_possible_fix_raises_nothing() {
    let mut e = engine_with(vec![case(
        "RTM-1",
        RiskLevel::Medium,
        vec![order("ban-home", square_zone(100.0, None))],
    )]);
    assert!(feed(&mut e, fix("OFF-1", 0, offset(120.0, 0.0), 30.0)).is_empty());
    assert!(feed(&mut e, fix("OFF-1", 15, offset(300.0, 0.0), 10.0)).is_empty());
    assert!(feed(&mut e, fix("OFF-1", 30, offset(120.0, 0.0), 30.0)).is_empty());
}

#[test]
fn debounce_is_configurable() {
    let config = EngineConfig {
        possible_confirmations: 1,
        ..EngineConfig::default()
    };
    let mut e = engine_with_config(
        config,
        vec![case(
            "RTM-1",
            RiskLevel::Medium,
            vec![order("ban", square_zone(100.0, None))],
        )],
    );
    let events = feed(&mut e, fix("OFF-1", 0, offset(120.0, 0.0), 30.0));
    assert_eq!(kinds(&events), vec![(Phase::Opened, EventKind::ZoneBreach)]);
}

#[test]
fn clearing_needs_the_margin_and_the_minimum_time() {
    let mut e = engine_with(vec![case(
        "RTM-1",
        RiskLevel::Medium,
        vec![order("ban", square_zone(100.0, None))],
    )]);
    let opened = feed(&mut e, fix("OFF-1", 0, offset(50.0, 0.0), 10.0));
    assert_eq!(kinds(&opened), vec![(Phase::Opened, EventKind::ZoneBreach)]);
    // Just outside but within the 25 m margin: stays open, however long.
    assert!(feed(&mut e, fix("OFF-1", 30, offset(120.0, 0.0), 5.0))
        .iter()
        .all(|ev| ev.phase != Phase::Cleared));
    assert!(feed(&mut e, fix("OFF-1", 200, offset(121.0, 0.0), 5.0))
        .iter()
        .all(|ev| ev.phase != Phase::Cleared));
    // Clear by the margin, but only for 30 s of the required 60.
    assert!(feed(&mut e, fix("OFF-1", 230, offset(200.0, 0.0), 5.0))
        .iter()
        .all(|ev| ev.phase != Phase::Cleared));
    assert!(feed(&mut e, fix("OFF-1", 260, offset(210.0, 0.0), 5.0))
        .iter()
        .all(|ev| ev.phase != Phase::Cleared));
    let cleared = feed(&mut e, fix("OFF-1", 290, offset(220.0, 0.0), 5.0));
    assert_eq!(
        kinds(&cleared),
        vec![(Phase::Cleared, EventKind::ZoneBreach)]
    );
    assert_eq!(cleared[0].reason, Some(ClearReason::Resolved));
    assert_eq!(cleared[0].id, opened[0].id);
}

#[test]
fn noise_on_a_boundary_does_not_flap() {
    let mut e = engine_with(vec![case(
        "RTM-1",
        RiskLevel::Medium,
        vec![order("ban", square_zone(100.0, None))],
    )]);
    let mut opened = 0;
    let mut cleared = 0;
    for i in 0..200 {
        // Alternate 8 m either side of the boundary, 10 m accuracy.
        let east = if i % 2 == 0 { 92.0 } else { 108.0 };
        for ev in feed(&mut e, fix("OFF-1", i * 10, offset(east, 0.0), 10.0)) {
            match ev.phase {
                Phase::Opened => opened += 1,
                Phase::Cleared => cleared += 1,
                _ => {}
            }
        }
    }
    assert_eq!((opened, cleared), (1, 0));
}

#[test]
fn suspect_fix_raises_possible_never_certain() {
    let mut e = engine_with(vec![case(
        "RTM-1",
        RiskLevel::Medium,
        vec![order("ban", square_zone(100.0, None))],
    )]);
    // 3 km away, then 10 s later deep inside the zone: 300 m/s.
    assert!(feed(&mut e, fix("OFF-1", 0, offset(3000.0, 0.0), 10.0)).is_empty());
    let outcome = e
        .ingest_fix(&fix("OFF-1", 10, offset(0.0, 0.0), 10.0))
        .unwrap();
    assert_eq!(outcome.disposition, kordon_core::Disposition::Suspect);
    assert!(outcome.events.is_empty(), "a lone outlier alerts no one");
    // The next fix, far away again, is plausible from the old position: the
    // outlier stays an outlier.
    let outcome = e
        .ingest_fix(&fix("OFF-1", 20, offset(3000.0, 0.0), 10.0))
        .unwrap();
    assert_eq!(outcome.disposition, kordon_core::Disposition::Accepted);
    assert!(outcome.events.is_empty());
}

#[test]
fn suspect_fix_confirmed_by_the_next_fix_alerts() {
    let mut e = engine_with(vec![case(
        "RTM-1",
        RiskLevel::Medium,
        vec![order("ban", square_zone(100.0, None))],
    )]);
    feed(&mut e, fix("OFF-1", 0, offset(3000.0, 0.0), 10.0));
    let first = e
        .ingest_fix(&fix("OFF-1", 10, offset(0.0, 0.0), 10.0))
        .unwrap();
    assert_eq!(first.disposition, kordon_core::Disposition::Suspect);
    let second = e
        .ingest_fix(&fix("OFF-1", 20, offset(5.0, 5.0), 10.0))
        .unwrap();
    assert_eq!(second.disposition, kordon_core::Disposition::Accepted);
    assert_eq!(
        kinds(&second.events),
        vec![(Phase::Opened, EventKind::ZoneBreach)]
    );
    assert_eq!(second.events[0].certainty, Some(Certainty::Certain));
    assert_eq!(
        second.events[0].onset,
        at(10),
        "onset is the first fix of the run"
    );
}

#[test]
fn fix_with_unusable_accuracy_decides_nothing() {
    let mut e = engine_with(vec![zone_case()]);
    let outcome = e
        .ingest_fix(&fix("OFF-1", 0, offset(0.0, 0.0), 2000.0))
        .unwrap();
    assert_eq!(outcome.disposition, kordon_core::Disposition::Unusable);
    assert!(outcome.events.is_empty());
}

#[test]
fn scheduled_zone_is_enforced_only_in_its_window_and_clears_when_it_ends() {
    use kordon_core::{Day, Rule, Schedule, Window};
    let Rule::ExclusionZone { geometry, .. } = square_zone(100.0, None) else {
        unreachable!()
    };
    // t0 is Wednesday 11:00 Amsterdam time; the school window is 08:00–16:30.
    let schedule = Schedule {
        windows: vec![Window {
            days: vec![Day::Mon, Day::Tue, Day::Wed, Day::Thu, Day::Fri],
            start: "08:00".parse().unwrap(),
            end: "16:30".parse().unwrap(),
        }],
    };
    let rule = Rule::ExclusionZone {
        geometry,
        warning_buffer_m: None,
        schedule: Some(schedule),
        around: None,
        bracelet_warnings: None,
    };
    let mut e = engine_with(vec![case(
        "RTM-1",
        RiskLevel::Low,
        vec![order("school", rule)],
    )]);
    let opened = feed(&mut e, fix("OFF-1", 0, offset(0.0, 0.0), 10.0));
    assert_eq!(kinds(&opened), vec![(Phase::Opened, EventKind::ZoneBreach)]);
    assert!(e
        .tick(at(5 * 3600 + 1700))
        .iter()
        .all(|ev| ev.kind != EventKind::ZoneBreach));
    // 16:30 local is 15:30 UTC, 5.5 h after t0.
    let ended = e.tick(at(5 * 3600 + 1800));
    let zone: Vec<_> = ended
        .iter()
        .filter(|ev| ev.kind == EventKind::ZoneBreach)
        .collect();
    assert_eq!(zone.len(), 1);
    assert_eq!(zone[0].phase, Phase::Cleared);
    assert_eq!(zone[0].reason, Some(ClearReason::OrderInactive));
    // Inside again in the evening: no longer a breach.
    assert!(feed(&mut e, fix("OFF-1", 6 * 3600, offset(0.0, 0.0), 10.0))
        .iter()
        .all(|ev| ev.kind != EventKind::ZoneBreach));
}

#[test]
fn order_outside_its_validity_is_not_enforced() {
    let mut o = order("ban", square_zone(100.0, None));
    o.valid_until = Some(at(60));
    let mut e = engine_with(vec![case("RTM-1", RiskLevel::Medium, vec![o])]);
    assert_eq!(
        feed(&mut e, fix("OFF-1", 0, offset(0.0, 0.0), 10.0)).len(),
        1
    );
    let expired = e.tick(at(61));
    assert!(expired
        .iter()
        .any(|ev| ev.phase == Phase::Cleared && ev.reason == Some(ClearReason::OrderInactive)));
    assert!(feed(&mut e, fix("OFF-1", 120, offset(1.0, 0.0), 10.0)).is_empty());
}

#[test]
fn polygon_with_a_hole_allows_the_hole() {
    use kordon_core::{Rule, ZoneGeometry};
    let ring = |half: f64| -> Vec<[f64; 2]> {
        [
            (-1.0, -1.0),
            (1.0, -1.0),
            (1.0, 1.0),
            (-1.0, 1.0),
            (-1.0, -1.0),
        ]
        .iter()
        .map(|(e, n)| {
            let (lat, lon) = offset(e * half, n * half);
            [lon, lat]
        })
        .collect()
    };
    let rule = Rule::ExclusionZone {
        geometry: ZoneGeometry::Polygon {
            coordinates: vec![ring(500.0), ring(100.0)],
        },
        warning_buffer_m: None,
        schedule: None,
        around: None,
        bracelet_warnings: None,
    };
    let mut e = engine_with(vec![case(
        "RTM-1",
        RiskLevel::Medium,
        vec![order("park", rule)],
    )]);
    assert!(feed(&mut e, fix("OFF-1", 0, offset(0.0, 0.0), 10.0)).is_empty());
    let ev = feed(&mut e, fix("OFF-1", 30, offset(300.0, 0.0), 10.0));
    assert_eq!(kinds(&ev), vec![(Phase::Opened, EventKind::ZoneBreach)]);
}

#[test]
fn severity_follows_kind_and_risk() {
    use kordon_core::Role;
    assert_eq!(
        EventKind::ProximityBreach.severity(RiskLevel::High, Role::Offender),
        Severity::Extreme
    );
    assert_eq!(
        EventKind::ZoneBreach.severity(RiskLevel::High, Role::Offender),
        Severity::Extreme
    );
    assert_eq!(
        EventKind::ZoneBreach.severity(RiskLevel::Low, Role::Offender),
        Severity::Severe
    );
    assert_eq!(
        EventKind::BatteryLow.severity(RiskLevel::High, Role::Protected),
        Severity::Minor
    );
}

#[test]
fn a_late_fix_inside_the_zone_is_evidence_even_while_a_warning_is_open() {
    let mut e = engine_with(vec![zone_case()]);
    // In the warning buffer from t=0: a warning episode opens.
    let warned = feed(&mut e, fix("OFF-1", 0, offset(200.0, 0.0), 10.0));
    assert_eq!(
        kinds(&warned),
        vec![(Phase::Opened, EventKind::ZoneWarning)]
    );
    feed(&mut e, fix("OFF-1", 60, offset(200.0, 0.0), 10.0));
    // A fix from t=30, delivered late, puts him inside the zone.
    let late = e
        .ingest_fix(&fix("OFF-1", 30, offset(0.0, 0.0), 10.0))
        .unwrap();
    assert_eq!(
        kinds(&late.events),
        vec![(Phase::LateBreach, EventKind::ZoneBreach)]
    );
    assert_eq!(late.events[0].certainty, Some(Certainty::Certain));
    // The open warning goes on as it was.
    let next = feed(&mut e, fix("OFF-1", 75, offset(200.0, 0.0), 10.0));
    assert!(next.is_empty(), "{next:?}");
}
