//! Reading intent in the engine: a contact-ban alert says how the two
//! move (`context`), and says it again when the police's wait begins or
//! ends: a car that passes her and one that stops at her.

mod common;

use common::*;
use kordon_core::{Event, EventKind, Phase, Reading, RiskLevel};

fn ban_case() -> kordon_core::Case {
    case(
        "RTM-7",
        RiskLevel::High,
        vec![order("contact-ban-p1", contact_ban(500.0, 200.0))],
    )
}

fn breaches(events: &[Event]) -> Vec<&Event> {
    events
        .iter()
        .filter(|e| e.kind == EventKind::ProximityBreach && e.phase != Phase::Cleared)
        .collect()
}

/// Every one of `events` read as `expected`, or the readings shown.
fn assert_read_throughout(events: &[&Event], expected: Reading) {
    assert!(
        events.iter().all(|e| reading(e) == expected),
        "{:?}",
        events
            .iter()
            .map(|e| (e.at, e.context.clone()))
            .collect::<Vec<_>>()
    );
}

fn reading(event: &Event) -> Reading {
    event
        .context
        .as_ref()
        .expect("a contact-ban alert carries its context")
        .reading
}

/// Fix `k` of a shared tram ride east at 10 m/s, his 110 m behind hers,
/// fixes every 15 s, hers 5 s after his, both with the receiver's speed.
fn ride_on(e: &mut kordon_core::Engine, k: i64) -> Vec<Event> {
    let t = 15 * k;
    let east = 10.0 * t as f64;
    let mut his = fix("OFF-7", t, offset(east - 60.0, 0.0), 5.0);
    his.speed_mps = Some(10.0);
    his.heading_deg = Some(90.0);
    let mut hers = fix("VIC-7", t + 5, offset(east + 50.0, 0.0), 5.0);
    hers.speed_mps = Some(10.0);
    hers.heading_deg = Some(90.0);
    let mut events = feed(e, his);
    events.extend(feed(e, hers));
    events
}

/// Her standing at the origin; him driving north at 12.5 m/s along a road
/// 30 m east of her, a fix every 10 s, with or without a stop beside her.
fn drive_past(stop_beside_her: bool) -> Vec<Event> {
    let mut e = engine_with(vec![ban_case()]);
    feed(&mut e, fix("VIC-7", 0, offset(0.0, 0.0), 8.0));
    let mut events = Vec::new();
    let mut north = -800.0;
    for k in 0..12 {
        let t = 5 + k * 10;
        events.extend(feed(&mut e, fix("OFF-7", t, offset(30.0, north), 6.0)));
        // The first position past her is where he parks.
        if !(stop_beside_her && north > 0.0) {
            north += 125.0;
        }
    }
    events
}

#[test]
fn a_car_passing_her_reads_as_passing_throughout() {
    let events = drive_past(false);
    let breach = breaches(&events);
    assert!(!breach.is_empty(), "he came within 200 m: a breach");
    assert_read_throughout(&breach, Reading::Passing);
    let context = breach[0].context.clone().unwrap();
    assert!(context.offender_speed_mps.unwrap() > 10.0, "{context:?}");
    assert!(
        context.closing_speed_mps.unwrap() > 5.0,
        "he still closes on her: {context:?}"
    );
    assert!(context.time_to_contact_s.is_some());
}

#[test]
fn a_car_that_stops_beside_her_is_read_anew_at_once() {
    let events = drive_past(true);
    let breach = breaches(&events);
    assert_eq!(reading(breach[0]), Reading::Passing);
    // The first fix standing beside her updates the alert: the police's
    // wait is over.
    let anew = breach
        .iter()
        .find(|e| !reading(e).waits_for_police())
        .expect("a reading that pages the police");
    assert_eq!(anew.phase, Phase::Updated);
    assert!(matches!(
        reading(anew),
        Reading::Together | Reading::Approach
    ));
    assert_eq!(anew.id, breach[0].id, "the same episode");
    // At 75 m north of her from his eighth fix on: the ninth shows him still.
    let first_stop = 5 + 10 * 8;
    assert!(
        anew.at <= at(first_stop),
        "read anew at {}, he stood still from {}",
        anew.at,
        at(first_stop)
    );
}

#[test]
fn walking_up_to_her_is_an_approach_from_the_first_breach() {
    let mut e = engine_with(vec![ban_case()]);
    feed(&mut e, fix("VIC-7", 0, offset(0.0, 0.0), 8.0));
    let mut events = Vec::new();
    for k in 0..30 {
        let north = -400.0 + 14.0 * k as f64;
        events.extend(feed(
            &mut e,
            fix("OFF-7", 5 + k * 10, offset(0.0, north), 5.0),
        ));
    }
    let breach = breaches(&events);
    assert_eq!(
        reading(breach[0]),
        Reading::Approach,
        "{:?}",
        breach[0].context
    );
    let bearing = breach[0].context.as_ref().unwrap().bearing_off_deg.unwrap();
    assert!(bearing < 5.0, "straight at her: {bearing}");
}

#[test]
fn the_same_tram_is_co_travel_counted_over_fixes_and_ends_when_they_get_off_together() {
    let mut e = engine_with(vec![ban_case()]);
    let mut events = Vec::new();
    // Both on a tram going east at 10 m/s, 60 m apart, fixes every 15 s,
    // hers 5 s after his; then the tram stops and they walk off together.
    for k in 0..10 {
        let riding = k < 7;
        let (speed, t) = (if riding { 10.0 } else { 1.2 }, 15 * k);
        let east = if riding {
            10.0 * t as f64
        } else {
            10.0 * 90.0 + 1.2 * (t - 90) as f64
        };
        let mut his = fix("OFF-7", t, offset(east - 60.0, 0.0), 5.0);
        his.speed_mps = Some(speed);
        his.heading_deg = Some(90.0);
        let mut hers = fix("VIC-7", t + 5, offset(east + 5.0 * speed, 0.0), 5.0);
        hers.speed_mps = Some(speed);
        hers.heading_deg = Some(90.0);
        events.extend(feed(&mut e, his));
        events.extend(feed(&mut e, hers));
    }
    let breach = breaches(&events);
    assert_eq!(reading(breach[0]), Reading::CoTravel);
    let most = breach
        .iter()
        .filter_map(|e| e.context.as_ref())
        .map(|c| c.co_travel_fixes)
        .max()
        .unwrap();
    assert!(most >= 1, "counted over fixes");
    let off = breach
        .iter()
        .find(|e| !reading(e).waits_for_police())
        .expect("read anew");
    // Walking behind her towards her: an approach, and the police hear of it.
    assert_eq!(reading(off), Reading::Approach);
    assert!(off.at >= at(105), "not before they got off: {}", off.at);
}

#[test]
fn zones_carry_no_context() {
    let mut e = engine_with(vec![case(
        "RTM-8",
        RiskLevel::High,
        vec![order("zone", square_zone(100.0, Some(50.0)))],
    )]);
    let mut events = Vec::new();
    for k in 0..10 {
        events.extend(feed(
            &mut e,
            fix("OFF-8", k * 10, offset(0.0, 300.0 - 40.0 * k as f64), 5.0),
        ));
    }
    assert!(events.iter().any(|e| e.kind == EventKind::ZoneBreach));
    assert!(events.iter().all(|e| e.context.is_none()));
}

#[test]
fn a_car_that_goes_silent_beside_her_pages_the_police_by_the_clock() {
    // He drives at her at 12.5 m/s with fixes every 10 s; the last fix is
    // 70 m from her, still moving; then nothing (his bracelet idles, or is
    // shielded). The police's wait ends `passing_wait_s` after that fix.
    let mut e = engine_with(vec![ban_case()]);
    feed(&mut e, fix("VIC-7", 0, offset(0.0, 0.0), 8.0));
    let mut events = Vec::new();
    for k in 0..6 {
        let north = -695.0 + 125.0 * k as f64;
        events.extend(feed(
            &mut e,
            fix("OFF-7", 5 + k * 10, offset(30.0, north), 6.0),
        ));
    }
    let last_fix = 5 + 5 * 10;
    assert_eq!(reading(breaches(&events).last().unwrap()), Reading::Passing);
    let wait = i64::from(kordon_core::EngineConfig::default().passing_wait_s);
    assert!(e
        .tick(at(last_fix + wait - 1))
        .iter()
        .all(|e| e.context.is_none()));
    let ticked = e.tick(at(last_fix + wait));
    let anew = breaches(&ticked);
    assert_eq!(anew.len(), 1, "{ticked:?}");
    assert_eq!(reading(anew[0]), Reading::Unclear);
    assert_eq!(anew[0].phase, Phase::Updated);
    assert!(
        anew[0].offender.is_some() && anew[0].protected.is_some(),
        "both positions for the police"
    );
    // Her next fix does not make him passing again on his old fix.
    let hers = feed(
        &mut e,
        fix("VIC-7", last_fix + wait + 5, offset(0.0, 0.0), 8.0),
    );
    assert!(
        breaches(&hers)
            .iter()
            .all(|e| !reading(e).waits_for_police()),
        "{hers:?}"
    );
}

#[test]
fn a_man_standing_at_a_stop_while_her_moped_passes_is_not_paged_by_the_clock() {
    // He stands (his bracelet reports once a minute, Doppler speed 0); she
    // rides past him at 7 m/s, a fix every 15 s.
    let mut e = engine_with(vec![ban_case()]);
    let mut events = Vec::new();
    let standing = |e: &mut kordon_core::Engine, t: i64| {
        let mut f = fix("OFF-7", t, offset(0.0, 0.0), 6.0);
        f.speed_mps = Some(0.0);
        feed(e, f)
    };
    events.extend(standing(&mut e, 0));
    for k in 0..12 {
        let t = 5 + 15 * k;
        let mut f = fix("VIC-7", t, offset(30.0, -600.0 + 105.0 * k as f64), 6.0);
        f.speed_mps = Some(7.0);
        f.heading_deg = Some(0.0);
        events.extend(feed(&mut e, f));
        events.extend(e.tick(at(t + 10)));
        if t % 60 < 15 {
            events.extend(standing(&mut e, t + 1));
        }
    }
    let breach = breaches(&events);
    assert!(!breach.is_empty(), "she passed within 200 m");
    assert_read_throughout(&breach, Reading::Passing);
}

#[test]
fn a_car_circling_her_for_ten_minutes_pages_the_police_as_lasting_and_a_shared_ride_does_not() {
    let config = kordon_core::EngineConfig::default();
    let wait = i64::from(config.police_max_wait_s);
    // Him driving round her at 100 m, 8 m/s, a fix every 15 s; she stands.
    let mut e = engine_with(vec![ban_case()]);
    let mut events = Vec::new();
    feed(&mut e, fix("VIC-7", 0, offset(0.0, 0.0), 5.0));
    for k in 0..60 {
        let t = 5 + 15 * k;
        let angle = 1.2 * k as f64;
        let mut his = fix(
            "OFF-7",
            t,
            offset(100.0 * angle.cos(), 100.0 * angle.sin()),
            5.0,
        );
        his.speed_mps = Some(8.0);
        his.heading_deg = Some((90.0 - angle.to_degrees() + 90.0).rem_euclid(360.0));
        events.extend(feed(&mut e, his));
        if k % 4 == 0 {
            let mut hers = fix("VIC-7", t + 2, offset(0.0, 0.0), 5.0);
            hers.speed_mps = Some(0.0);
            events.extend(feed(&mut e, hers));
        }
        events.extend(e.tick(at(t + 10)));
    }
    let breach = breaches(&events);
    assert_eq!(reading(breach[0]), Reading::Passing);
    let lasting = breach
        .iter()
        .find(|e| reading(e) == Reading::Lasting)
        .expect("paged as lasting");
    let waited = lasting.at.duration_since(breach[0].at).as_secs();
    assert!(waited <= wait + 15, "paged after {waited} s");
    assert_eq!(
        breach
            .iter()
            .filter(|e| reading(e) == Reading::Lasting)
            .count(),
        1,
        "once, not at every later fix"
    );

    // The same tram for fifteen minutes: the room's to judge throughout.
    let mut e = engine_with(vec![ban_case()]);
    let mut events = Vec::new();
    for k in 0..60 {
        events.extend(ride_on(&mut e, k));
        events.extend(e.tick(at(15 * k + 10)));
    }
    let breach = breaches(&events);
    assert_read_throughout(&breach, Reading::CoTravel);
}

#[test]
fn her_old_fix_does_not_keep_them_passing_once_they_got_off() {
    // They ride together; she gets off and her phone goes quiet; he walks
    // after her. Her last fix says 10 m/s, but it is old.
    let mut e = engine_with(vec![ban_case()]);
    let mut events = Vec::new();
    for k in 0..4 {
        events.extend(ride_on(&mut e, k));
    }
    for k in 0..8 {
        let t = 60 + 10 * k;
        let mut his = fix("OFF-7", t, offset(540.0 + 1.4 * (t - 60) as f64, 0.0), 5.0);
        his.speed_mps = Some(1.4);
        his.heading_deg = Some(90.0);
        events.extend(feed(&mut e, his));
    }
    let last = *breaches(&events).last().unwrap();
    assert!(!reading(last).waits_for_police(), "{:?}", last.context);
}
