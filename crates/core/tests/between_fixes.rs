//! Between fixes: a drive-by whose fixes a minute apart both lie outside
//! the alarm radius (450 m south of her, then 450 m north) is a *possible*
//! breach at the interpolated closest approach, which a later fix that
//! shows the breach makes an ordinary one.

mod common;

use common::*;
use kordon_core::{Certainty, EngineConfig, Event, EventKind, Phase, RiskLevel};

fn ban_case() -> kordon_core::Case {
    case(
        "RTM-8",
        RiskLevel::High,
        vec![order("contact-ban-p1", contact_ban(500.0, 200.0))],
    )
}

fn zone_case() -> kordon_core::Case {
    case(
        "RTM-9",
        RiskLevel::High,
        vec![order("home-zone", square_zone(150.0, Some(100.0)))],
    )
}

fn opened(events: &[Event]) -> Vec<&Event> {
    events
        .iter()
        .filter(|e| e.phase != Phase::Cleared)
        .collect()
}

/// Her standing at `HOME`; him 450 m south (600 m if he drives on to
/// `north_m` < 450 m), then `north_m` north a minute later, 30 m east of
/// her.
fn drive_by(config: EngineConfig, north_m: f64) -> Vec<Event> {
    let south = if north_m < 450.0 { -600.0 } else { -450.0 };
    let mut e = engine_with_config(config, vec![ban_case()]);
    feed(&mut e, fix("VIC-8", 0, offset(0.0, 0.0), 10.0));
    let mut events = feed(&mut e, fix("OFF-8", 10, offset(30.0, south), 10.0));
    events.extend(feed(&mut e, fix("OFF-8", 70, offset(30.0, north_m), 10.0)));
    events
}

#[test]
fn a_drive_by_between_two_fixes_is_a_possible_breach_at_its_closest_point() {
    let events = drive_by(EngineConfig::default(), 450.0);
    let breach = events
        .iter()
        .find(|e| e.kind == EventKind::ProximityBreach)
        .expect("the line between his fixes passes 30 m from her");
    assert_eq!(breach.certainty, Some(Certainty::Possible));
    let passage = breach
        .between_fixes
        .as_ref()
        .expect("marked as between fixes");
    assert!(
        (passage.distance_m - 30.0).abs() < 3.0,
        "the closest approach is 30 m: {passage:?}"
    );
    assert_eq!((passage.from, passage.to), (at(10), at(70)));
    // Half way along the line, in time too.
    let middle = passage.at.duration_since(at(10)).as_secs_f64();
    assert!((middle - 30.0).abs() < 1.0, "{middle}");
    assert!(!passage.long_gap);
    // Both fixes are within the warning radius: the warning the first
    // opened became the breach.
    assert_eq!(breach.phase, Phase::Updated);
    assert_eq!(breach.onset, at(10), "the episode began as a warning");
}

#[test]
fn a_warning_the_later_fix_opens_opens_as_the_breach() {
    // 600 m south (outside the warning radius), then 300 m north.
    let events = drive_by(EngineConfig::default(), 300.0);
    let opened = opened(&events);
    assert_eq!(opened.len(), 1, "one event: {}", summary(&events));
    let breach = opened[0];
    assert_eq!(
        (breach.phase, breach.kind),
        (Phase::Opened, EventKind::ProximityBreach)
    );
    let passage = breach.between_fixes.as_ref().unwrap();
    assert_eq!(breach.onset, passage.at, "the breach began on the line");
}

#[test]
fn nothing_is_read_between_fixes_when_it_is_switched_off() {
    let config = EngineConfig {
        between_fixes_note_gap_s: 0,
        ..EngineConfig::default()
    };
    let events = drive_by(config, 450.0);
    assert!(
        events.iter().all(|e| e.kind != EventKind::ProximityBreach),
        "{}",
        summary(&events)
    );
}

#[test]
fn a_line_that_misses_her_raises_nothing_more_than_a_warning() {
    // He turns back: 600 m south, then 300 m south.
    let events = drive_by(EngineConfig::default(), -300.0);
    assert!(
        events.iter().all(|e| e.kind != EventKind::ProximityBreach),
        "{}",
        summary(&events)
    );
}

#[test]
fn a_fix_that_shows_the_breach_ends_the_between_fixes_mark() {
    let mut e = engine_with(vec![ban_case()]);
    feed(&mut e, fix("VIC-8", 0, offset(0.0, 0.0), 10.0));
    feed(&mut e, fix("OFF-8", 10, offset(30.0, -450.0), 10.0));
    let first = feed(&mut e, fix("OFF-8", 70, offset(30.0, 450.0), 10.0));
    assert!(first.iter().any(|e| e.between_fixes.is_some()));
    // He turns back and stops beside her; her device tells where she is.
    feed(&mut e, fix("VIC-8", 84, offset(0.0, 0.0), 10.0));
    let back = feed(&mut e, fix("OFF-8", 85, offset(20.0, 60.0), 10.0));
    let update = back
        .iter()
        .find(|e| e.kind == EventKind::ProximityBreach)
        .expect("the fix beside her is news");
    assert_eq!(update.phase, Phase::Updated);
    assert_eq!(update.id, first[0].id, "the same episode");
    assert!(update.between_fixes.is_none(), "a fix shows it now");
    assert_eq!(update.certainty, Some(Certainty::Certain));
}

#[test]
fn a_long_gap_is_a_note() {
    let mut e = engine_with(vec![ban_case()]);
    feed(&mut e, fix("VIC-8", 0, offset(0.0, 0.0), 10.0));
    feed(&mut e, fix("OFF-8", 10, offset(30.0, -1500.0), 10.0));
    // Her position stays young enough to judge.
    feed(&mut e, fix("VIC-8", 200, offset(0.0, 0.0), 10.0));
    let events = feed(&mut e, fix("OFF-8", 310, offset(30.0, 1500.0), 10.0));
    let breach = events
        .iter()
        .find(|e| e.kind == EventKind::ProximityBreach)
        .expect("a five-minute line past her");
    let passage = breach.between_fixes.as_ref().unwrap();
    assert!(passage.long_gap, "{passage:?}");
    // Beyond the note's gap nothing is read.
    let mut e = engine_with(vec![ban_case()]);
    feed(&mut e, fix("VIC-8", 0, offset(0.0, 0.0), 10.0));
    feed(&mut e, fix("OFF-8", 10, offset(30.0, -1500.0), 10.0));
    feed(&mut e, fix("VIC-8", 600, offset(0.0, 0.0), 10.0));
    let events = feed(&mut e, fix("OFF-8", 700, offset(30.0, 1500.0), 10.0));
    assert!(events.iter().all(|e| e.kind != EventKind::ProximityBreach));
}

#[test]
fn a_line_through_an_exclusion_zone_is_a_possible_zone_breach() {
    let mut e = engine_with(vec![zone_case()]);
    // 600 m west, then 600 m east a minute later, straight through it.
    feed(&mut e, fix("OFF-9", 0, offset(-600.0, 10.0), 10.0));
    let events = feed(&mut e, fix("OFF-9", 60, offset(600.0, 10.0), 10.0));
    let breach = events
        .iter()
        .find(|e| e.kind == EventKind::ZoneBreach)
        .expect("the line crosses the zone");
    assert_eq!(breach.certainty, Some(Certainty::Possible));
    let passage = breach.between_fixes.as_ref().unwrap();
    assert!(passage.distance_m < -100.0, "deep inside: {passage:?}");
    // One that only cuts a corner of the buffer is no breach.
    let mut e = engine_with(vec![zone_case()]);
    feed(&mut e, fix("OFF-9", 0, offset(-600.0, 200.0), 10.0));
    let events = feed(&mut e, fix("OFF-9", 60, offset(600.0, 200.0), 10.0));
    assert!(events.iter().all(|e| e.kind != EventKind::ZoneBreach));
}

#[test]
fn a_drive_by_episode_clears_as_any_other() {
    let mut e = engine_with(vec![ban_case()]);
    feed(&mut e, fix("VIC-8", 0, offset(0.0, 0.0), 10.0));
    let mut events = feed(&mut e, fix("OFF-8", 10, offset(30.0, -450.0), 10.0));
    events.extend(feed(&mut e, fix("OFF-8", 70, offset(30.0, 450.0), 10.0)));
    for k in 1..6 {
        events.extend(feed(
            &mut e,
            fix("VIC-8", 70 + 30 * k, offset(0.0, 0.0), 10.0),
        ));
        events.extend(feed(
            &mut e,
            fix(
                "OFF-8",
                70 + 30 * k,
                offset(30.0, 450.0 + 300.0 * k as f64),
                10.0,
            ),
        ));
    }
    assert!(
        events
            .iter()
            .any(|e| e.kind == EventKind::ProximityBreach && e.phase == Phase::Cleared),
        "{}",
        summary(&events)
    );
    episode_invariants(&events).unwrap();
}

/// A corner near her: 420 m west of her heading east, then 420 m north of
/// her heading north a minute later, at 14 m/s; the fixes with the
/// bracelet's own speed and heading if `velocities`.
fn round_the_corner(velocities: bool) -> Vec<Event> {
    let mut e = engine_with(vec![ban_case()]);
    feed(&mut e, fix("VIC-8", 0, offset(0.0, 0.0), 10.0));
    let moving = |f: kordon_core::Fix, heading: f64| kordon_core::Fix {
        speed_mps: velocities.then_some(14.0),
        heading_deg: velocities.then_some(heading),
        ..f
    };
    let mut events = feed(
        &mut e,
        moving(fix("OFF-8", 10, offset(-420.0, 0.0), 10.0), 90.0),
    );
    // Her position is fresh: no growth for its age.
    events.extend(feed(&mut e, fix("VIC-8", 40, offset(0.0, 0.0), 10.0)));
    events.extend(feed(
        &mut e,
        moving(fix("OFF-8", 70, offset(0.0, 420.0), 10.0), 0.0),
    ));
    events
}

#[test]
fn a_corner_between_fixes_is_followed_along_the_bracelets_own_velocity() {
    // The straight line passes 297 m from her: outside the alarm radius
    // even with a road's bend.
    let straight = round_the_corner(false);
    assert!(
        straight
            .iter()
            .all(|e| e.kind != EventKind::ProximityBreach),
        "{}",
        summary(&straight)
    );
    // Heading east, then north: the road turned toward her between them.
    let curved = round_the_corner(true);
    let breach = curved
        .iter()
        .find(|e| e.kind == EventKind::ProximityBreach)
        .expect("the curve along his headings passes within 200 m of her");
    assert_eq!(breach.certainty, Some(Certainty::Possible));
    let passage = breach.between_fixes.as_ref().unwrap();
    assert!(passage.distance_m < 160.0, "{passage:?}");
    let middle = passage.at.duration_since(at(10)).as_secs_f64();
    assert!((middle - 30.0).abs() < 3.0, "{middle}");
}
