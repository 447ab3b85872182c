//! Cases coming and going, refused input, and the spatial queries.

mod common;

use common::*;
use kordon_core::{
    BanKind, CaseId, ClearReason, DeviceId, Disposition, EventKind, Fix, InputError, Phase,
    Problem, RiskLevel, Status,
};

fn zone_and_ban() -> kordon_core::Case {
    case(
        "RTM-1",
        RiskLevel::High,
        vec![
            order("zone", square_zone(100.0, Some(100.0))),
            order("contact", contact_ban(1000.0, 300.0)),
        ],
    )
}

#[test]
fn an_invalid_case_is_refused_and_changes_nothing() {
    let mut e = engine_with(vec![]);
    let mut bad = zone_and_ban();
    bad.orders[1].rule = contact_ban(100.0, 300.0);
    let err = e.upsert_case(bad, t0()).unwrap_err();
    assert!(matches!(
        err.report.errors[0].problem,
        Problem::AlarmExceedsWarning { .. }
    ));
    assert_eq!((e.case_count(), e.device_count()), (0, 0));
    assert!(err.to_string().contains("order contact"), "{err}");
}

#[test]
fn a_device_cannot_be_offender_here_and_protected_there() {
    let mut e = engine_with(vec![zone_and_ban()]);
    let mut other = case(
        "RTM-2",
        RiskLevel::Low,
        vec![order("zone", square_zone(50.0, None))],
    );
    other.offender.device = DeviceId::from("VIC-1");
    let err = e.upsert_case(other, t0()).unwrap_err();
    assert!(matches!(
        err.report.errors[0].problem,
        Problem::DeviceRoleConflict { .. }
    ));
    assert_eq!(err.report.errors[0].field, "offender.device");
}

#[test]
fn unknown_devices_and_impossible_fixes_are_refused() {
    let mut e = engine_with(vec![zone_and_ban()]);
    let refused = |e: &mut kordon_core::Engine, f: Fix| e.ingest_fix(&f).unwrap_err();
    assert_eq!(
        refused(&mut e, fix("OFF-404", 0, HOME, 10.0)),
        InputError::UnknownDevice(DeviceId::from("OFF-404"))
    );
    assert_eq!(
        refused(&mut e, fix("OFF-1", 0, (f64::NAN, 4.5), 10.0)),
        InputError::NotFinite { field: "lat" }
    );
    assert_eq!(
        refused(&mut e, fix("OFF-1", 0, (91.0, 4.5), 10.0)),
        InputError::LatitudeOutOfRange(91.0)
    );
    assert_eq!(
        refused(&mut e, fix("OFF-1", 0, (51.9, 181.0), 10.0)),
        InputError::LongitudeOutOfRange(181.0)
    );
    assert_eq!(
        refused(&mut e, fix("OFF-1", 0, (0.0, 0.0), 10.0)),
        InputError::NullIsland
    );
    assert_eq!(
        refused(&mut e, fix("OFF-1", 0, HOME, 0.0)),
        InputError::AccuracyNotPositive(0.0)
    );
    let mut f = fix("OFF-1", 0, HOME, 10.0);
    f.battery_pct = Some(140);
    assert_eq!(refused(&mut e, f), InputError::BatteryOutOfRange(140));
    let status = Status::heartbeat(DeviceId::from("nobody"), t0());
    assert!(e.ingest_status(&status).is_err());
    // Nothing refused touched the engine: the first real fix still opens.
    let events = feed(&mut e, fix("OFF-1", 1, HOME, 10.0));
    assert_eq!(kinds(&events), vec![(Phase::Opened, EventKind::ZoneBreach)]);
}

#[test]
fn replacing_a_case_keeps_open_episodes_of_kept_orders() {
    let mut e = engine_with(vec![zone_and_ban()]);
    let opened = feed(&mut e, fix("OFF-1", 0, HOME, 10.0));
    assert_eq!(opened.len(), 1);
    let mut edited = zone_and_ban();
    edited.risk = RiskLevel::Medium;
    assert!(e.upsert_case(edited, at(10)).unwrap().is_empty());
    // Still inside: no new episode, the same one goes on.
    let events = feed(&mut e, fix("OFF-1", 20, HOME, 10.0));
    assert!(
        events.iter().all(|ev| ev.phase != Phase::Opened),
        "{events:?}"
    );
}

#[test]
fn removing_an_order_or_a_case_clears_its_episodes() {
    let mut e = engine_with(vec![zone_and_ban()]);
    let opened = feed(&mut e, fix("OFF-1", 0, HOME, 10.0));
    let mut edited = zone_and_ban();
    edited.orders.remove(0);
    let cleared = e.upsert_case(edited, at(10)).unwrap();
    assert_eq!(
        kinds(&cleared),
        vec![(Phase::Cleared, EventKind::ZoneBreach)]
    );
    assert_eq!(cleared[0].reason, Some(ClearReason::OrderWithdrawn));
    assert_eq!(cleared[0].id, opened[0].id);

    let tamper = Status {
        strap: Some(kordon_core::StrapState::Tampered),
        ..Status::heartbeat(DeviceId::from("OFF-1"), at(20))
    };
    assert_eq!(e.ingest_status(&tamper).unwrap().len(), 1);
    let removed = e.remove_case(&CaseId::from("RTM-1"), at(30));
    assert!(removed
        .iter()
        .any(|ev| ev.kind == EventKind::Tamper && ev.phase == Phase::Cleared));
    assert_eq!((e.case_count(), e.device_count()), (0, 0));
    assert!(e.ingest_fix(&fix("OFF-1", 40, HOME, 10.0)).is_err());
}

#[test]
fn bans_at_names_the_zones_and_contact_bans_covering_a_point() {
    let mut e = engine_with(vec![zone_and_ban()]);
    let inside = e.bans_at(HOME.0, HOME.1, at(0));
    assert_eq!(inside.len(), 1);
    assert_eq!(inside[0].kind, BanKind::ExclusionZone);
    assert!(inside[0].inside);
    let (lat, lon) = offset(150.0, 0.0);
    let buffer = e.bans_at(lat, lon, at(0));
    assert_eq!(buffer.len(), 1);
    assert!(!buffer[0].inside);
    let (lat, lon) = offset(400.0, 0.0);
    assert!(e.bans_at(lat, lon, at(0)).is_empty());
    // Where the protected person is, her contact ban covers the ground.
    feed(&mut e, fix("VIC-1", 0, offset(3000.0, 0.0), 10.0));
    let (lat, lon) = offset(3100.0, 0.0);
    let near_her = e.bans_at(lat, lon, at(0));
    assert_eq!(near_her.len(), 1);
    assert_eq!(near_her[0].kind, BanKind::ContactBan);
    assert!(near_her[0].inside);
    assert!((near_her[0].distance_m - 100.0).abs() < 0.5);
    // Outside the order's validity, nothing.
    assert!(e
        .bans_at(HOME.0, HOME.1, "2029-01-01T00:00:00Z".parse().unwrap())
        .is_empty());
}

#[test]
fn devices_near_uses_true_distance_and_live_positions() {
    let mut e = engine_with(vec![zone_and_ban()]);
    feed(&mut e, fix("OFF-1", 0, offset(0.0, 500.0), 10.0));
    feed(&mut e, fix("VIC-1", 0, offset(300.0, 300.0), 10.0));
    let near = e.devices_near(HOME.0, HOME.1, 450.0);
    assert_eq!(near.len(), 1, "{near:?}");
    assert_eq!(near[0].device.as_str(), "VIC-1");
    assert!((near[0].distance_m - 424.26).abs() < 0.5);
    // Small moves stay within the anchor slack; the answer follows the fix.
    feed(&mut e, fix("OFF-1", 30, offset(0.0, 440.0), 10.0));
    let near = e.devices_near(HOME.0, HOME.1, 450.0);
    assert_eq!(near.len(), 2);
    assert_eq!(near[0].device.as_str(), "VIC-1", "nearest first");
    assert_eq!(near[1].device.as_str(), "OFF-1");
    // A big move re-anchors.
    feed(&mut e, fix("OFF-1", 600, offset(0.0, 5000.0), 10.0));
    assert_eq!(e.devices_near(HOME.0, HOME.1, 450.0).len(), 1);
}

#[test]
fn the_same_case_gives_the_same_episode_ids_in_another_engine() {
    let run = || {
        let mut e = engine_with(vec![zone_and_ban()]);
        feed(&mut e, fix("OFF-1", 0, HOME, 10.0))
    };
    assert_eq!(run()[0].id, run()[0].id);
    assert_eq!(run()[0].id.to_string().len(), 32);
}

#[test]
fn late_fix_outcome_is_reported() {
    let mut e = engine_with(vec![zone_and_ban()]);
    feed(&mut e, fix("OFF-1", 100, offset(5000.0, 0.0), 10.0));
    let late = e.ingest_fix(&fix("OFF-1", 50, HOME, 10.0)).unwrap();
    assert_eq!(late.disposition, Disposition::Late);
    assert_eq!(
        kinds(&late.events),
        vec![(Phase::LateBreach, EventKind::ZoneBreach)]
    );
}
