//! What a monitoring room would call wrong in a day of alerts, one test per
//! defect (issue 11): each names what must hold.

mod common;

use common::*;
use kordon_core::{ClearReason, EventKind, Phase, RiskLevel, Rule};

/// An exclusion zone around `HOME` in force on weekdays 08:00–16:30
/// Amsterdam time; `t0` is a Wednesday 11:00 there, so it ends at
/// `at(5 * 3600 + 1800)`.
fn school_zone() -> Rule {
    let Rule::ExclusionZone { geometry, .. } = square_zone(100.0, None) else {
        unreachable!()
    };
    Rule::ExclusionZone {
        geometry,
        warning_buffer_m: None,
        schedule: Some(kordon_core::Schedule {
            windows: vec![kordon_core::Window {
                days: {
                    use kordon_core::Day::*;
                    vec![Mon, Tue, Wed, Thu, Fri]
                },
                start: "08:00".parse().unwrap(),
                end: "16:30".parse().unwrap(),
            }],
        }),
        around: None,
        bracelet_warnings: None,
    }
}

const WINDOW_ENDS: i64 = 5 * 3600 + 1800;

/// The zone's events among `events` (a silent bracelet also goes offline).
fn zone_events(events: Vec<kordon_core::Event>) -> Vec<kordon_core::Event> {
    events
        .into_iter()
        .filter(|ev| matches!(ev.kind, EventKind::ZoneBreach | EventKind::ZoneWarning))
        .collect()
}

#[test]
fn a_zone_breach_closed_when_its_window_ended_does_not_reopen_from_a_fix_stamped_before() {
    let mut e = engine_with(vec![case(
        "RTM-1",
        RiskLevel::High,
        vec![order("school", school_zone())],
    )]);
    let opened = feed(
        &mut e,
        fix("OFF-1", WINDOW_ENDS - 60, offset(0.0, 0.0), 10.0),
    );
    assert_eq!(kinds(&opened), vec![(Phase::Opened, EventKind::ZoneBreach)]);
    let ended = zone_events(e.tick(at(WINDOW_ENDS)));
    assert_eq!(kinds(&ended), vec![(Phase::Cleared, EventKind::ZoneBreach)]);
    assert_eq!(ended[0].reason, Some(ClearReason::OrderInactive));
    // Half a second before the window ended, delivered after the tick.
    let mut late = fix("OFF-1", 0, offset(0.0, 0.0), 10.0);
    late.ts = at(WINDOW_ENDS) - jiff::SignedDuration::from_millis(500);
    let events = zone_events(feed(&mut e, late));
    assert!(
        events.iter().all(|ev| ev.phase != Phase::Opened),
        "{}",
        summary(&events)
    );
    // And the evening is not a breach either.
    assert!(zone_events(feed(
        &mut e,
        fix("OFF-1", WINDOW_ENDS + 60, offset(0.0, 0.0), 10.0)
    ))
    .is_empty());
}

#[test]
fn a_zone_breach_closed_at_the_end_of_validity_does_not_reopen_from_a_fix_stamped_before() {
    let mut o = order("ban", square_zone(100.0, None));
    o.valid_until = Some(at(600));
    let mut e = engine_with(vec![case("RTM-1", RiskLevel::High, vec![o])]);
    assert_eq!(
        feed(&mut e, fix("OFF-1", 540, offset(0.0, 0.0), 10.0)).len(),
        1
    );
    let ended = zone_events(e.tick(at(600)));
    assert_eq!(ended[0].reason, Some(ClearReason::OrderInactive));
    let events = zone_events(feed(&mut e, fix("OFF-1", 599, offset(1.0, 0.0), 10.0)));
    assert!(events.is_empty(), "{}", summary(&events));
}

/// The fuzz finding `fuzz/regressions/engine/position-unknown-reopened-after-order-inactive`:
/// a contact ban's `position_unknown` ends when the order goes out of force;
/// the order withdrawn and given again, still unknown, must open a *new*
/// episode, never one under the ended one's id.
#[test]
fn a_withdrawn_and_returned_order_never_reuses_an_episode_id() {
    let mut ban = order("contact", contact_ban(1000.0, 200.0));
    ban.valid_until = Some(at(3600));
    let mut e = engine_with(vec![case("RTM-1", RiskLevel::High, vec![ban.clone()])]);
    let mut events = e.tick(at(3000));
    let unknown: Vec<_> = events
        .iter()
        .filter(|ev| ev.kind == EventKind::PositionUnknown)
        .cloned()
        .collect();
    assert_eq!(unknown.len(), 1, "{}", summary(&events));
    events.extend(e.tick(at(3600)));
    // Withdrawn, then given again with a longer validity.
    let mut without = case("RTM-1", RiskLevel::High, vec![]);
    without.orders.clear();
    events.extend(e.upsert_case(without, at(3700)).unwrap());
    ban.valid_until = Some(at(9000));
    events.extend(
        e.upsert_case(case("RTM-1", RiskLevel::High, vec![ban]), at(3800))
            .unwrap(),
    );
    events.extend(e.tick(at(3900)));
    let reopened: Vec<_> = events
        .iter()
        .filter(|ev| ev.kind == EventKind::PositionUnknown && ev.phase == Phase::Opened)
        .collect();
    assert_eq!(reopened.len(), 2, "{}", summary(&events));
    assert_ne!(reopened[0].id, reopened[1].id);
    assert!(reopened[1].onset >= at(3600), "{}", summary(&events));
    episode_invariants(&events).unwrap();
}

fn contact_case() -> kordon_core::Case {
    case(
        "RTM-1",
        RiskLevel::High,
        vec![order("contact", contact_ban(1000.0, 200.0))],
    )
}

/// His fix 230 m north with 50 m accuracy: a *possible* breach of the 200 m
/// alarm radius. Her next fix, at home, must not confirm it by reading his
/// one fix again; his next fix does.
#[test]
fn one_bad_fix_of_his_read_again_with_her_next_fix_does_not_meet_the_debounce() {
    let mut e = engine_with(vec![contact_case()]);
    feed(&mut e, fix("VIC-1", 0, HOME, 10.0));
    let first = feed(&mut e, fix("OFF-1", 10, offset(0.0, 230.0), 50.0));
    assert_eq!(
        kinds(&first),
        vec![(Phase::Opened, EventKind::ProximityWarning)]
    );
    let hers = feed(&mut e, fix("VIC-1", 20, HOME, 10.0));
    assert!(
        hers.iter().all(|ev| ev.kind != EventKind::ProximityBreach),
        "{}",
        summary(&hers)
    );
    let his = feed(&mut e, fix("OFF-1", 40, offset(0.0, 231.0), 50.0));
    assert_eq!(
        kinds(&his),
        vec![(Phase::Updated, EventKind::ProximityBreach)]
    );
}

/// She walks towards him while his bracelet, standing still, is quiet:
/// her own fixes are independent evidence.
#[test]
fn her_own_consecutive_fixes_confirm_a_possible_breach() {
    let mut e = engine_with(vec![contact_case()]);
    feed(&mut e, fix("OFF-1", 0, offset(0.0, 230.0), 50.0));
    feed(&mut e, fix("VIC-1", 5, HOME, 10.0));
    let second = feed(&mut e, fix("VIC-1", 15, offset(0.0, 1.0), 10.0));
    assert!(
        second
            .iter()
            .any(|ev| ev.kind == EventKind::ProximityBreach),
        "{}",
        summary(&second)
    );
}

/// Her device jumps 5 km for one fix (an outlier, suspect); his fix from
/// that second arrives late, right where her outlier was. Paired with the
/// outlier it would be a *certain* late breach; her trusted fixes put her
/// at home.
#[test]
fn a_late_fix_is_never_paired_with_an_outlier_of_the_other_party() {
    let mut e = engine_with(vec![contact_case()]);
    let far = offset(0.0, 5000.0);
    feed(&mut e, fix("OFF-1", 0, far, 10.0));
    feed(&mut e, fix("VIC-1", 0, HOME, 10.0));
    feed(&mut e, fix("VIC-1", 30, far, 10.0));
    feed(&mut e, fix("VIC-1", 60, HOME, 10.0));
    feed(&mut e, fix("OFF-1", 100, far, 10.0));
    let late = feed(&mut e, fix("OFF-1", 31, far, 10.0));
    assert!(
        late.iter().all(|ev| ev.phase != Phase::LateBreach),
        "{}",
        summary(&late)
    );
}

/// Police ask which bans cover a point: 500 m from her is inside the 1000 m
/// warning radius of her contact ban (not only the 200 m alarm radius), and
/// only while her position is young enough to judge by.
#[test]
fn bans_at_finds_her_warning_radius_and_ignores_her_stale_position() {
    let mut e = engine_with(vec![contact_case()]);
    feed(&mut e, fix("VIC-1", 0, HOME, 10.0));
    let (lat, lon) = offset(0.0, 500.0);
    let hits = e.bans_at(lat, lon, at(10));
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert!(!hits[0].inside);
    assert!((hits[0].distance_m - 500.0).abs() < 1.0, "{hits:?}");
    let max_age = i64::from(kordon_core::EngineConfig::default().position_max_age_s);
    let (lat, lon) = offset(0.0, 100.0);
    assert!(e.bans_at(lat, lon, at(max_age + 10)).is_empty());
}

/// A bracelet that reports on movement sends no fixes while it stands
/// still, and says `gps: ok` in its heartbeats: its GPS is not lost.
#[test]
fn heartbeats_saying_gps_ok_keep_a_still_bracelet_from_gps_lost() {
    use kordon_core::{DeviceId, GpsState, Status};
    let mut e = engine_with(vec![contact_case()]);
    feed(&mut e, fix("OFF-1", 0, offset(0.0, 3000.0), 10.0));
    let mut events = Vec::new();
    for i in 1..=20 {
        let status = Status {
            gps: Some(GpsState::Ok),
            ..Status::heartbeat(DeviceId::from("OFF-1"), at(i * 60))
        };
        events.extend(e.ingest_status(&status).unwrap());
        events.extend(e.tick(at(i * 60)));
    }
    assert!(
        events
            .iter()
            .all(|ev| !(ev.kind == EventKind::GpsLost && ev.device.as_str() == "OFF-1")),
        "{}",
        summary(&events)
    );
    // Saying `no_fix` from then on is GPS lost.
    let mut events = Vec::new();
    for i in 21..=30 {
        let status = Status {
            gps: Some(GpsState::NoFix),
            ..Status::heartbeat(DeviceId::from("OFF-1"), at(i * 60))
        };
        events.extend(e.ingest_status(&status).unwrap());
        events.extend(e.tick(at(i * 60)));
    }
    assert!(
        events
            .iter()
            .any(|ev| ev.kind == EventKind::GpsLost && ev.phase == Phase::Opened),
        "{}",
        summary(&events)
    );
}

/// On the charger at 12 %: the statuses say charging, the fixes between
/// them carry the level but not the charging. The battery episode must not
/// open with every fix and clear with every status.
#[test]
fn a_battery_on_the_charger_does_not_flap_between_fixes_and_statuses() {
    use kordon_core::{DeviceId, Status};
    let mut e = engine_with(vec![contact_case()]);
    let mut events = Vec::new();
    for i in 0..10 {
        let status = Status {
            battery_pct: Some(12),
            charging: Some(true),
            ..Status::heartbeat(DeviceId::from("VIC-1"), at(i * 60))
        };
        events.extend(e.ingest_status(&status).unwrap());
        let mut f = fix("VIC-1", i * 60 + 30, HOME, 10.0);
        f.battery_pct = Some(12);
        events.extend(feed(&mut e, f));
    }
    assert!(
        events
            .iter()
            .all(|ev| !matches!(ev.kind, EventKind::BatteryLow | EventKind::BatteryCritical)),
        "{}",
        summary(&events)
    );
    // Off the charger, the next reading opens it once.
    let status = Status {
        battery_pct: Some(12),
        charging: Some(false),
        ..Status::heartbeat(DeviceId::from("VIC-1"), at(700))
    };
    let off = e.ingest_status(&status).unwrap();
    assert_eq!(
        off.iter()
            .filter(|ev| matches!(ev.kind, EventKind::BatteryLow | EventKind::BatteryCritical))
            .count(),
        1,
        "{}",
        summary(&off)
    );
}

/// A tamper, a zone breach and GPS lost all carry the latest known
/// positions of both parties, each with its own time.
#[test]
fn every_alert_carries_both_latest_positions_where_they_exist() {
    use kordon_core::{DeviceId, Status, StrapState};
    let mut e = engine_with(vec![case(
        "RTM-1",
        RiskLevel::High,
        vec![
            order("contact", contact_ban(1000.0, 200.0)),
            order("zone", square_zone(100.0, None)),
        ],
    )]);
    let far = offset(0.0, 3000.0);
    feed(&mut e, fix("VIC-1", 0, far, 10.0));
    let breach = feed(&mut e, fix("OFF-1", 10, HOME, 10.0));
    let zone = breach
        .iter()
        .find(|ev| ev.kind == EventKind::ZoneBreach)
        .unwrap();
    assert_eq!(zone.protected.as_ref().unwrap().ts, at(0));
    let tamper = e
        .ingest_status(&Status {
            strap: Some(StrapState::Tampered),
            ..Status::heartbeat(DeviceId::from("OFF-1"), at(20))
        })
        .unwrap();
    assert_eq!(tamper[0].kind, EventKind::Tamper);
    assert_eq!(tamper[0].offender.as_ref().unwrap().ts, at(10));
    assert_eq!(tamper[0].protected.as_ref().unwrap().ts, at(0));
}

/// He stands inside the school zone before it comes into force at 08:00,
/// his bracelet quiet (it reports on movement) but saying `gps: ok`: the
/// zone judges his last position when its window opens, not at his next
/// fix, minutes later.
#[test]
fn a_zone_coming_into_force_with_him_inside_judges_his_last_position_at_once() {
    use kordon_core::{DeviceId, GpsState, Status};
    // t0 is 11:00 Amsterdam time; the window opens at 08:00 the next day,
    // 21 hours later.
    let opens = 21 * 3600;
    let mut e = engine_with(vec![case(
        "RTM-1",
        RiskLevel::High,
        vec![order("school", school_zone())],
    )]);
    feed(&mut e, fix("OFF-1", opens - 1800, offset(0.0, 0.0), 10.0));
    let mut events = Vec::new();
    for s in (opens - 1740..=opens + 60).step_by(60) {
        let status = Status {
            gps: Some(GpsState::Ok),
            ..Status::heartbeat(DeviceId::from("OFF-1"), at(s))
        };
        events.extend(e.ingest_status(&status).unwrap());
        events.extend(e.tick(at(s)));
    }
    let zone = zone_events(events);
    assert_eq!(kinds(&zone), vec![(Phase::Opened, EventKind::ZoneBreach)]);
    assert!(zone[0].at <= at(opens + 60), "{}", summary(&zone));
}

/// He is at her door (a certain breach); then her phone falls silent. When
/// her position passes `position_max_age_s` the breach says it no longer
/// knows (no certainty) instead of freezing as certain; her next fix judges
/// it again.
#[test]
fn an_open_breach_whose_positions_go_stale_says_so() {
    let mut e = engine_with(vec![contact_case()]);
    feed(&mut e, fix("VIC-1", 0, HOME, 5.0));
    let opened = feed(&mut e, fix("OFF-1", 10, offset(0.0, 20.0), 5.0));
    assert_eq!(
        kinds(&opened),
        vec![(Phase::Opened, EventKind::ProximityBreach)]
    );
    let max_age = i64::from(kordon_core::EngineConfig::default().position_max_age_s);
    let mut events = Vec::new();
    for s in (40..=max_age + 60).step_by(30) {
        events.extend(feed(&mut e, fix("OFF-1", s, offset(0.0, 20.0), 5.0)));
        events.extend(e.tick(at(s)));
    }
    // (Her ageing position grows its accuracy: certain becomes possible
    // before it becomes unknown.)
    let breach: Vec<_> = events
        .iter()
        .filter(|ev| ev.kind == EventKind::ProximityBreach && ev.distance_m.is_none())
        .collect();
    assert_eq!(breach.len(), 1, "{}", summary(&events));
    assert_eq!(breach[0].phase, Phase::Updated);
    assert_eq!(breach[0].certainty, None);
    assert!(breach[0].at >= at(max_age));
    assert_eq!(breach[0].protected.as_ref().unwrap().ts, at(0));
    let back: Vec<_> = feed(&mut e, fix("VIC-1", max_age + 70, HOME, 5.0))
        .into_iter()
        .filter(|ev| ev.kind == EventKind::ProximityBreach)
        .collect();
    assert_eq!(
        kinds(&back),
        vec![(Phase::Updated, EventKind::ProximityBreach)]
    );
    assert_eq!(back[0].certainty, Some(kordon_core::Certainty::Certain));
}

/// He comes within her warning radius while her last position is a minute
/// and a half old: kordon asks her device (and only hers) for a fresh fix,
/// at most once a minute, and not when her position is fresh or he is far.
#[test]
fn a_stale_position_of_hers_with_him_near_is_asked_for_at_most_once_a_minute() {
    let mut e = engine_with(vec![contact_case()]);
    feed(&mut e, fix("VIC-1", 0, HOME, 10.0));
    feed(&mut e, fix("OFF-1", 30, offset(0.0, 5000.0), 10.0));
    assert!(e.take_position_requests().is_empty(), "he is far");
    feed(&mut e, fix("OFF-1", 90, offset(0.0, 800.0), 10.0));
    let asked = e.take_position_requests();
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0].device.as_str(), "VIC-1");
    assert_eq!(asked[0].at, at(90));
    feed(&mut e, fix("OFF-1", 100, offset(0.0, 790.0), 10.0));
    assert!(e.take_position_requests().is_empty(), "asked 10 s ago");
    feed(&mut e, fix("OFF-1", 155, offset(0.0, 780.0), 10.0));
    assert_eq!(e.take_position_requests().len(), 1, "a minute later");
    feed(&mut e, fix("VIC-1", 160, HOME, 10.0));
    feed(&mut e, fix("OFF-1", 200, offset(0.0, 770.0), 10.0));
    assert!(e.take_position_requests().is_empty(), "hers is fresh");
}

/// A fix stamped a second before the GPS-lost deadline arrives two seconds
/// after it: no episode that opens and ends at once.
#[test]
fn a_fix_in_transit_at_the_gps_lost_deadline_opens_no_episode() {
    use kordon_core::{DeviceId, Status};
    let mut e = engine_with(vec![contact_case()]);
    feed(&mut e, fix("OFF-1", 0, offset(0.0, 3000.0), 10.0));
    let mut events = Vec::new();
    for s in (30..300).step_by(30) {
        let status = Status::heartbeat(DeviceId::from("OFF-1"), at(s));
        events.extend(e.ingest_status(&status).unwrap());
        events.extend(e.tick(at(s)));
    }
    events.extend(e.tick(at(302)));
    events.extend(feed(&mut e, fix("OFF-1", 299, offset(0.0, 3000.0), 10.0)));
    events.extend(e.tick(at(320)));
    assert!(
        events
            .iter()
            .all(|ev| !(ev.kind == EventKind::GpsLost && ev.device.as_str() == "OFF-1")),
        "{}",
        summary(&events)
    );
}
