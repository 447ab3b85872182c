//! Contact bans: both parties' fixes, true distances, ageing positions and
//! the unknown state.

mod common;

use common::*;
use kordon_core::{Certainty, ClearReason, EngineConfig, EventKind, Phase, RiskLevel, Severity};

fn ban_case() -> kordon_core::Case {
    case(
        "RTM-7",
        RiskLevel::High,
        vec![order("contact-ban-p1", contact_ban(1000.0, 300.0))],
    )
}

#[test]
fn offender_approaching_raises_warning_then_breach_then_clears() {
    let mut e = engine_with(vec![ban_case()]);
    feed(&mut e, fix("VIC-7", 0, offset(0.0, 0.0), 10.0));
    let mut seen = Vec::new();
    for (i, d) in [2000.0, 1500.0, 900.0, 850.0, 600.0, 250.0, 200.0]
        .iter()
        .enumerate()
    {
        let t = 5 + i as i64 * 15;
        seen.extend(feed(&mut e, fix("OFF-7", t, offset(*d, 0.0), 10.0)));
    }
    let phases = kinds(&seen);
    assert_eq!(phases[0], (Phase::Opened, EventKind::ProximityWarning));
    let breach = seen
        .iter()
        .position(|ev| ev.kind == EventKind::ProximityBreach)
        .expect("breach");
    assert_eq!(seen[breach].phase, Phase::Updated);
    assert_eq!(seen[breach].severity, Severity::Extreme);
    let protected = seen[breach].protected.as_ref().expect("both positions");
    assert_eq!(protected.device.as_str(), "VIC-7");
    assert!(seen.iter().all(|ev| ev.id == seen[0].id), "one episode");
    // The victim stays put and reports; he leaves.
    feed(&mut e, fix("VIC-7", 100, offset(0.0, 0.0), 10.0));
    let mut cleared = Vec::new();
    for i in 0..6 {
        cleared.extend(feed(
            &mut e,
            fix("OFF-7", 120 + i * 15, offset(3000.0, 0.0), 10.0),
        ));
    }
    let cleared: Vec<_> = cleared
        .iter()
        .filter(|ev| ev.phase == Phase::Cleared)
        .collect();
    assert_eq!(cleared.len(), 1);
    assert_eq!(cleared[0].id, seen[0].id);
}

#[test]
fn protected_person_walking_to_a_standing_offender_raises_the_alert() {
    let mut e = engine_with(vec![ban_case()]);
    feed(&mut e, fix("OFF-7", 0, offset(0.0, 0.0), 10.0));
    let mut events = Vec::new();
    for (i, d) in [800.0, 500.0, 200.0].iter().enumerate() {
        events.extend(feed(
            &mut e,
            fix("VIC-7", 10 + i as i64 * 10, offset(0.0, *d), 10.0),
        ));
    }
    assert!(events.iter().any(
        |ev| ev.kind == EventKind::ProximityBreach && ev.certainty == Some(Certainty::Certain)
    ));
    let ev = events.last().unwrap();
    assert_eq!(
        ev.device.as_str(),
        "OFF-7",
        "the episode is about the offender"
    );
    assert!(
        (ev.distance_m.unwrap() - 200.0).abs() < 1.0,
        "{:?}",
        ev.distance_m
    );
}

#[test]
fn distance_is_a_circle_not_a_bounding_square() {
    let mut e = engine_with(vec![ban_case()]);
    feed(&mut e, fix("VIC-7", 0, offset(0.0, 0.0), 5.0));
    // 280 m east and 280 m north: inside a 300 m square, 396 m away.
    let corner = offset(280.0, 280.0);
    let a = feed(&mut e, fix("OFF-7", 10, corner, 5.0));
    let b = feed(&mut e, fix("OFF-7", 20, corner, 5.0));
    let all: Vec<_> = a.iter().chain(&b).collect();
    assert!(
        all.iter().all(|ev| ev.kind == EventKind::ProximityWarning),
        "{all:?}"
    );
    assert!((all[0].distance_m.unwrap() - 396.0).abs() < 1.0);
}

#[test]
fn stale_protected_position_grows_uncertain() {
    let config = EngineConfig {
        stale_position_speed_mps: 2.0,
        ..EngineConfig::default()
    };
    let mut e = engine_with_config(config, vec![ban_case()]);
    feed(&mut e, fix("VIC-7", 0, offset(0.0, 0.0), 10.0));
    // 1100 m away, right after: clear of the warning radius.
    assert!(feed(&mut e, fix("OFF-7", 1, offset(1100.0, 0.0), 10.0)).is_empty());
    // Same distance 200 s later: she may have moved 400 m: a possible warning.
    let ev = feed(&mut e, fix("OFF-7", 200, offset(1100.0, 0.0), 10.0));
    let ev2 = feed(&mut e, fix("OFF-7", 215, offset(1100.0, 0.0), 10.0));
    let all: Vec<_> = ev.iter().chain(&ev2).collect();
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0].kind, EventKind::ProximityWarning);
    assert_eq!(all[0].certainty, Some(Certainty::Possible));
    let p = all[0].protected.as_ref().unwrap();
    // Opened by the second fix, 215 s after her last.
    assert!(
        (p.accuracy_m - (10.0 + 215.0 * 2.0)).abs() < 1.0,
        "{}",
        p.accuracy_m
    );
}

#[test]
fn position_unknown_past_max_age_is_an_event_and_clears_when_known() {
    let mut e = engine_with(vec![ban_case()]);
    feed(&mut e, fix("VIC-7", 0, offset(0.0, 0.0), 10.0));
    feed(&mut e, fix("OFF-7", 0, offset(5000.0, 0.0), 10.0));
    // The offender keeps reporting; the victim device goes quiet.
    let mut unknown = Vec::new();
    for i in 1..=50 {
        unknown.extend(feed(
            &mut e,
            fix("OFF-7", i * 15, offset(5000.0, 0.0), 10.0),
        ));
        unknown.extend(e.tick(at(i * 15)));
    }
    let opened: Vec<_> = unknown
        .iter()
        .filter(|ev| ev.kind == EventKind::PositionUnknown)
        .collect();
    assert_eq!(opened.len(), 1, "{opened:?}");
    assert_eq!(opened[0].phase, Phase::Opened);
    assert_eq!(
        opened[0].onset,
        at(600),
        "onset is when the position became too old"
    );
    let back = feed(&mut e, fix("VIC-7", 800, offset(0.0, 0.0), 10.0));
    assert!(back.iter().any(|ev| ev.kind == EventKind::PositionUnknown
        && ev.phase == Phase::Cleared
        && ev.reason == Some(ClearReason::Resolved)));
}

#[test]
fn an_open_breach_stays_open_when_the_victim_goes_quiet() {
    let mut e = engine_with(vec![ban_case()]);
    feed(&mut e, fix("VIC-7", 0, offset(0.0, 0.0), 10.0));
    let opened = feed(&mut e, fix("OFF-7", 5, offset(100.0, 0.0), 10.0));
    assert_eq!(
        kinds(&opened),
        vec![(Phase::Opened, EventKind::ProximityBreach)]
    );
    let later = e.tick(at(2000));
    assert!(later
        .iter()
        .all(|ev| ev.order.is_none() || ev.phase != Phase::Cleared));
    assert!(later.iter().all(|ev| ev.kind != EventKind::PositionUnknown));
}

#[test]
fn late_fix_reports_a_past_breach_and_moves_nothing() {
    let mut e = engine_with(vec![ban_case()]);
    feed(&mut e, fix("VIC-7", 0, offset(0.0, 0.0), 10.0));
    feed(&mut e, fix("OFF-7", 0, offset(4000.0, 0.0), 10.0));
    feed(&mut e, fix("OFF-7", 120, offset(4000.0, 0.0), 10.0));
    // A buffered fix from t=60 s shows him 100 m from her.
    let outcome = e
        .ingest_fix(&fix("OFF-7", 60, offset(100.0, 0.0), 10.0))
        .unwrap();
    assert_eq!(outcome.disposition, kordon_core::Disposition::Late);
    assert_eq!(
        kinds(&outcome.events),
        vec![(Phase::LateBreach, EventKind::ProximityBreach)]
    );
    assert_eq!(outcome.events[0].at, at(60));
    // Live state did not move: the next live fix, far away, raises nothing.
    assert!(feed(&mut e, fix("OFF-7", 135, offset(4000.0, 0.0), 10.0)).is_empty());
    let near = e.devices_near(HOME.0, HOME.1, 500.0);
    assert!(near.iter().all(|d| d.device.as_str() != "OFF-7"));
}

#[test]
fn duplicates_are_idempotent() {
    let mut e = engine_with(vec![ban_case()]);
    feed(&mut e, fix("VIC-7", 0, offset(0.0, 0.0), 10.0));
    let first = e
        .ingest_fix(&fix("OFF-7", 5, offset(100.0, 0.0), 10.0).with_seq(41))
        .unwrap();
    assert_eq!(first.events.len(), 1);
    // Same sequence number, redelivered.
    let again = e
        .ingest_fix(&fix("OFF-7", 5, offset(100.0, 0.0), 10.0).with_seq(41))
        .unwrap();
    assert_eq!(again.disposition, kordon_core::Disposition::Duplicate);
    assert!(again.events.is_empty());
    // Same time and position without a sequence number.
    let same = e
        .ingest_fix(&fix("OFF-7", 5, offset(100.0, 0.0), 10.0))
        .unwrap();
    assert_eq!(same.disposition, kordon_core::Disposition::Duplicate);
}

/// Measured under overload: after a reconnect the broker redelivered
/// fixes far older than the eight a device remembers, and each was taken a
/// second time (journaled twice, and judged again as a late breach).
#[test]
fn a_redelivery_older_than_the_history_is_a_duplicate_by_its_sequence_number() {
    let mut e = engine_with(vec![ban_case()]);
    feed(&mut e, fix("VIC-7", 0, offset(0.0, 0.0), 10.0));
    // He passes her (a late breach would follow a second look), then 500
    // more fixes far away.
    let near = fix("OFF-7", 10, offset(100.0, 0.0), 10.0).with_seq(10);
    assert_eq!(
        e.ingest_fix(&near).unwrap().disposition,
        kordon_core::Disposition::Accepted
    );
    for i in 1..=500 {
        let far = fix("OFF-7", 10 + 5 * i, offset(4000.0, 0.0), 10.0).with_seq(10 + i as u64);
        e.ingest_fix(&far).unwrap();
    }
    let again = e.ingest_fix(&near).unwrap();
    assert_eq!(again.disposition, kordon_core::Disposition::Duplicate);
    assert!(again.events.is_empty());
    // A genuinely late fix with a number never seen is still judged.
    let late = e
        .ingest_fix(&fix("OFF-7", 11, offset(90.0, 0.0), 10.0).with_seq(5))
        .unwrap();
    assert_eq!(late.disposition, kordon_core::Disposition::Late);
    // A device that restarts counts from 1 again: its new fixes are new.
    let restarted = e
        .ingest_fix(&fix("OFF-7", 5000, offset(4000.0, 0.0), 10.0).with_seq(1))
        .unwrap();
    assert_eq!(restarted.disposition, kordon_core::Disposition::Accepted);
    let next = e
        .ingest_fix(&fix("OFF-7", 5005, offset(4000.0, 0.0), 10.0).with_seq(2))
        .unwrap();
    assert_eq!(next.disposition, kordon_core::Disposition::Accepted);
    let replayed = e
        .ingest_fix(&fix("OFF-7", 5000, offset(4000.0, 0.0), 10.0).with_seq(1))
        .unwrap();
    assert_eq!(replayed.disposition, kordon_core::Disposition::Duplicate);
}

#[test]
fn an_implausible_late_fix_is_only_possible_evidence() {
    let mut e = engine_with(vec![ban_case()]);
    feed(&mut e, fix("VIC-7", 0, offset(0.0, 0.0), 10.0));
    feed(&mut e, fix("OFF-7", 0, offset(4000.0, 0.0), 10.0));
    feed(&mut e, fix("OFF-7", 30, offset(4000.0, 0.0), 10.0));
    // A buffered multipath outlier: 4 km in 15 s.
    let late = e
        .ingest_fix(&fix("OFF-7", 15, offset(50.0, 0.0), 5.0))
        .unwrap();
    assert_eq!(
        kinds(&late.events),
        vec![(Phase::LateBreach, EventKind::ProximityBreach)]
    );
    assert_eq!(late.events[0].certainty, Some(Certainty::Possible));
}
