//! Curfews (inclusion zones) and device health from `tick`.

mod common;

use common::*;
use kordon_core::{
    ClearReason, DeviceId, EventKind, GpsState, Phase, RiskLevel, Role, Rule, Status, StrapState,
    ZoneGeometry,
};

/// Curfew 22:00–06:00 every night, 60 m around HOME, 10 minutes' grace.
fn curfew_case() -> kordon_core::Case {
    let rule = Rule::InclusionZone {
        geometry: ZoneGeometry::Circle {
            coordinates: [HOME.1, HOME.0],
            radius_m: 60.0,
        },
        schedule: every_day("22:00", "06:00"),
        grace_s: 600,
    };
    case("RTM-3", RiskLevel::Medium, vec![order("curfew", rule)])
}

/// Seconds from t0 (Wed 11:00 Amsterdam) to Wed 22:00 Amsterdam.
const WINDOW: i64 = 11 * 3600;

#[test]
fn outside_after_grace_is_a_curfew_breach() {
    let mut e = engine_with(vec![curfew_case()]);
    // Out in town at 21:50, still out at 22:05: grace runs to 22:10.
    let mut events = feed(
        &mut e,
        fix("OFF-3", WINDOW - 600, offset(2000.0, 0.0), 10.0),
    );
    events.extend(feed(
        &mut e,
        fix("OFF-3", WINDOW + 300, offset(1500.0, 0.0), 10.0),
    ));
    events.extend(e.tick(at(WINDOW + 590)));
    assert!(events.iter().all(|ev| ev.kind != EventKind::CurfewBreach));
    let breach: Vec<_> = e
        .tick(at(WINDOW + 600))
        .into_iter()
        .filter(|ev| ev.kind == EventKind::CurfewBreach)
        .collect();
    assert_eq!(breach.len(), 1);
    assert_eq!(breach[0].phase, Phase::Opened);
    assert_eq!(breach[0].onset, at(WINDOW + 600));
    // Home at 22:30, and a minute later: cleared.
    feed(&mut e, fix("OFF-3", WINDOW + 1800, offset(0.0, 0.0), 10.0));
    let home = feed(&mut e, fix("OFF-3", WINDOW + 1860, offset(0.0, 0.0), 10.0));
    assert_eq!(
        kinds(&home),
        vec![(Phase::Cleared, EventKind::CurfewBreach)]
    );
}

#[test]
fn home_in_time_is_no_breach() {
    let mut e = engine_with(vec![curfew_case()]);
    feed(
        &mut e,
        fix("OFF-3", WINDOW - 600, offset(2000.0, 0.0), 10.0),
    );
    feed(&mut e, fix("OFF-3", WINDOW + 300, offset(0.0, 0.0), 10.0));
    let mut events = Vec::new();
    for i in 1..20 {
        events.extend(feed(
            &mut e,
            fix("OFF-3", WINDOW + 300 + i * 60, offset(3.0, 0.0), 10.0),
        ));
        events.extend(e.tick(at(WINDOW + 300 + i * 60)));
    }
    // The victim device never reported, so it is offline; the curfew is kept.
    assert!(events.iter().all(|ev| ev.order.is_none()), "{events:?}");
}

/// One silence, one alert: the bracelet's own `gps_lost` (open since an
/// hour before the window) says it; the curfew does not open another.
#[test]
fn no_fix_during_the_window_is_gps_lost_not_compliance_and_is_reported_once() {
    let mut e = engine_with(vec![curfew_case()]);
    feed(&mut e, fix("OFF-3", WINDOW - 3600, offset(0.0, 0.0), 10.0));
    // Heartbeats keep coming, but no fix.
    let mut events = Vec::new();
    for i in 0..12 {
        let t = WINDOW + i * 60;
        events.extend(
            e.ingest_status(&Status::heartbeat(DeviceId::from("OFF-3"), at(t)))
                .unwrap(),
        );
        events.extend(e.tick(at(t)));
    }
    let lost: Vec<_> = events
        .iter()
        .filter(|ev| ev.kind == EventKind::GpsLost)
        .collect();
    assert_eq!(lost.len(), 1, "{events:?}");
    assert_eq!(lost[0].order, None);
    let back = feed(&mut e, fix("OFF-3", WINDOW + 800, offset(0.0, 0.0), 10.0));
    assert!(back.iter().any(|ev| ev.kind == EventKind::GpsLost
        && ev.order.is_none()
        && ev.phase == Phase::Cleared));
}

/// A bracelet silent altogether, not yet offline (a long offline
/// threshold): the curfew's own GPS-lost says the window is not kept.
#[test]
fn a_silent_bracelet_not_yet_offline_is_gps_lost_for_the_curfew() {
    let config = kordon_core::EngineConfig {
        offline_after_s: 4 * 3600,
        ..Default::default()
    };
    let mut e = engine_with_config(config, vec![curfew_case()]);
    feed(&mut e, fix("OFF-3", WINDOW - 3600, offset(0.0, 0.0), 10.0));
    // Found `transit_allowance_s` after its deadline, with the deadline
    // for its onset.
    assert!(e.tick(at(WINDOW + 309)).iter().all(|ev| ev.order.is_none()));
    let lost = e.tick(at(WINDOW + 310));
    let curfew: Vec<_> = lost
        .iter()
        .filter(|ev| ev.kind == EventKind::GpsLost && ev.order.is_some())
        .collect();
    assert_eq!(curfew.len(), 1, "{lost:?}");
    assert_eq!(curfew[0].onset, at(WINDOW + 300));
    let back = feed(&mut e, fix("OFF-3", WINDOW + 800, offset(0.0, 0.0), 10.0));
    assert!(back.iter().any(|ev| ev.kind == EventKind::GpsLost
        && ev.order.is_some()
        && ev.phase == Phase::Cleared));
}

#[test]
fn curfew_window_end_clears_the_breach() {
    let mut e = engine_with(vec![curfew_case()]);
    feed(&mut e, fix("OFF-3", WINDOW + 60, offset(2000.0, 0.0), 10.0));
    feed(
        &mut e,
        fix("OFF-3", WINDOW + 120, offset(2000.0, 0.0), 10.0),
    );
    let opened = e.tick(at(WINDOW + 700));
    assert!(opened.iter().any(|ev| ev.kind == EventKind::CurfewBreach));
    // 06:00 next morning.
    let ended = e.tick(at(WINDOW + 8 * 3600));
    assert!(ended.iter().any(|ev| ev.kind == EventKind::CurfewBreach
        && ev.phase == Phase::Cleared
        && ev.reason == Some(ClearReason::OrderInactive)));
}

#[test]
fn silent_devices_go_offline_victims_too() {
    let mut e = engine_with(vec![case(
        "RTM-4",
        RiskLevel::High,
        vec![order("ban", contact_ban(1000.0, 300.0))],
    )]);
    feed(&mut e, fix("OFF-4", 0, offset(5000.0, 0.0), 10.0));
    feed(&mut e, fix("VIC-4", 0, offset(0.0, 0.0), 10.0));
    assert!(e
        .tick(at(299))
        .iter()
        .all(|ev| ev.kind != EventKind::DeviceOffline));
    feed(&mut e, fix("OFF-4", 200, offset(5000.0, 0.0), 10.0));
    let events = e.tick(at(310));
    let offline: Vec<_> = events
        .iter()
        .filter(|ev| ev.kind == EventKind::DeviceOffline)
        .collect();
    assert_eq!(offline.len(), 1);
    assert_eq!(offline[0].device.as_str(), "VIC-4");
    assert_eq!(offline[0].role, Role::Protected);
    assert_eq!(offline[0].onset, at(300));
    // Any message brings it back.
    let back = e
        .ingest_status(&Status::heartbeat(DeviceId::from("VIC-4"), at(400)))
        .unwrap();
    assert_eq!(
        kinds(&back),
        vec![(Phase::Cleared, EventKind::DeviceOffline)]
    );
    assert_eq!(back[0].id, offline[0].id);
}

#[test]
fn heartbeats_without_fixes_mean_gps_lost() {
    let mut e = engine_with(vec![case(
        "RTM-5",
        RiskLevel::Low,
        vec![order("ban", square_zone(100.0, None))],
    )]);
    feed(&mut e, fix("OFF-5", 0, offset(5000.0, 0.0), 10.0));
    let mut events = Vec::new();
    for i in 1..=10 {
        let mut s = Status::heartbeat(DeviceId::from("OFF-5"), at(i * 60));
        s.gps = Some(GpsState::NoFix);
        events.extend(e.ingest_status(&s).unwrap());
        events.extend(e.tick(at(i * 60)));
    }
    let lost: Vec<_> = events
        .iter()
        .filter(|ev| ev.kind == EventKind::GpsLost)
        .collect();
    assert_eq!(lost.len(), 1);
    assert_eq!(lost[0].onset, at(300));
    assert!(lost[0].order.is_none());
    let back = feed(&mut e, fix("OFF-5", 700, offset(5000.0, 0.0), 10.0));
    assert_eq!(kinds(&back), vec![(Phase::Cleared, EventKind::GpsLost)]);
}

#[test]
fn battery_low_escalates_to_critical_and_clears_on_charging() {
    let mut e = engine_with(vec![case(
        "RTM-5",
        RiskLevel::Low,
        vec![order("ban", square_zone(100.0, None))],
    )]);
    let status = |t: i64, pct: u8, charging: bool| Status {
        battery_pct: Some(pct),
        charging: Some(charging),
        ..Status::heartbeat(DeviceId::from("OFF-5"), at(t))
    };
    assert!(e.ingest_status(&status(0, 50, false)).unwrap().is_empty());
    let low = e.ingest_status(&status(60, 19, false)).unwrap();
    assert_eq!(kinds(&low), vec![(Phase::Opened, EventKind::BatteryLow)]);
    let critical = e.ingest_status(&status(120, 9, false)).unwrap();
    assert_eq!(
        kinds(&critical),
        vec![(Phase::Updated, EventKind::BatteryCritical)]
    );
    assert_eq!(critical[0].id, low[0].id);
    let charging = e.ingest_status(&status(180, 9, true)).unwrap();
    assert_eq!(
        kinds(&charging),
        vec![(Phase::Cleared, EventKind::BatteryCritical)]
    );
}

#[test]
fn battery_alert_needs_hysteresis_to_clear() {
    let mut e = engine_with(vec![case(
        "RTM-5",
        RiskLevel::Low,
        vec![order("ban", square_zone(100.0, None))],
    )]);
    let status = |t: i64, pct: u8| Status {
        battery_pct: Some(pct),
        ..Status::heartbeat(DeviceId::from("OFF-5"), at(t))
    };
    assert_eq!(e.ingest_status(&status(0, 20)).unwrap().len(), 1);
    assert!(e.ingest_status(&status(60, 22)).unwrap().is_empty());
    assert_eq!(e.ingest_status(&status(120, 26)).unwrap().len(), 1);
}

#[test]
fn strap_tamper_opens_stays_open_through_flaps_and_only_an_operator_resolves_it() {
    let mut e = engine_with(vec![case(
        "RTM-6",
        RiskLevel::High,
        vec![order("ban", square_zone(100.0, None))],
    )]);
    let strap = |t: i64, s: StrapState| Status {
        strap: Some(s),
        ..Status::heartbeat(DeviceId::from("OFF-6"), at(t))
    };
    let opened = e.ingest_status(&strap(0, StrapState::Tampered)).unwrap();
    assert_eq!(kinds(&opened), vec![(Phase::Opened, EventKind::Tamper)]);
    assert_eq!(opened[0].severity, kordon_core::Severity::Extreme);
    assert!(e
        .ingest_status(&strap(10, StrapState::Tampered))
        .unwrap()
        .is_empty());
    // Flapping: closed, cut, closed again: still the one episode.
    for (t, s) in [
        (20, StrapState::Ok),
        (30, StrapState::Tampered),
        (40, StrapState::Ok),
    ] {
        let flap = e.ingest_status(&strap(t, s)).unwrap();
        assert!(flap.is_empty(), "{flap:?}");
    }
    let resolved = e.resolve_tamper(&DeviceId::from("OFF-6"), at(50)).unwrap();
    assert_eq!(kinds(&resolved), vec![(Phase::Cleared, EventKind::Tamper)]);
    assert_eq!(resolved[0].reason, Some(ClearReason::OperatorResolved));
    assert!(e
        .resolve_tamper(&DeviceId::from("OFF-6"), at(55))
        .unwrap()
        .is_empty());
    // Cut again after the operator's check: a new alarm.
    let again = e.ingest_status(&strap(60, StrapState::Tampered)).unwrap();
    assert_eq!(kinds(&again), vec![(Phase::Opened, EventKind::Tamper)]);
    assert_ne!(again[0].id, opened[0].id);
}

/// A cut strap is never lost to a clock glitch or a bad reading: reported
/// late (behind a newer message) it still opens the alarm, and a battery
/// reading no device can make is left out rather than refusing the status.
#[test]
fn a_tamper_reported_late_or_with_an_impossible_battery_still_raises_the_alarm() {
    let mut e = engine_with(vec![case(
        "RTM-6",
        RiskLevel::High,
        vec![order("ban", square_zone(100.0, None))],
    )]);
    let heartbeat = Status::heartbeat(DeviceId::from("OFF-6"), at(60));
    assert!(e.ingest_status(&heartbeat).unwrap().is_empty());
    let late_tamper = Status {
        strap: Some(StrapState::Tampered),
        battery_pct: Some(180),
        ..Status::heartbeat(DeviceId::from("OFF-6"), at(30))
    };
    let opened = e.ingest_status(&late_tamper).unwrap();
    assert_eq!(kinds(&opened), vec![(Phase::Opened, EventKind::Tamper)]);
    // A late "ok" says nothing about the strap now.
    let late_ok = Status {
        strap: Some(StrapState::Ok),
        ..Status::heartbeat(DeviceId::from("OFF-6"), at(40))
    };
    assert!(e.ingest_status(&late_ok).unwrap().is_empty());
}

/// Found by the many-cases property: a case edited at the very instant its
/// curfew window ended kept its GPS-lost episode open, with no timer left
/// to close it.
#[test]
fn a_case_edited_as_its_window_ends_still_closes_the_window_episode() {
    // Not yet offline, so that the curfew's own GPS-lost opens.
    let config = kordon_core::EngineConfig {
        offline_after_s: 4 * 3600,
        ..Default::default()
    };
    let mut e = engine_with_config(config, vec![curfew_case()]);
    feed(&mut e, fix("OFF-3", WINDOW - 3600, offset(0.0, 0.0), 10.0));
    let lost = e.tick(at(WINDOW + 310));
    assert!(lost
        .iter()
        .any(|ev| ev.kind == EventKind::GpsLost && ev.order.is_some()));
    let end = WINDOW + 8 * 3600;
    assert!(e.upsert_case(curfew_case(), at(end)).unwrap().is_empty());
    let closed = e.tick(at(end + 1));
    assert!(closed.iter().any(|ev| ev.kind == EventKind::GpsLost
        && ev.order.is_some()
        && ev.phase == Phase::Cleared
        && ev.reason == Some(ClearReason::OrderInactive)));
}
