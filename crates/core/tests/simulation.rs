//! Simulation: the real engine driven through noisy, faulty fix streams,
//! checked against what must hold whatever the faults.
//!
//! - GPS noise and isolated multipath outliers (a fix far off whose reported
//!   accuracy claims a few metres) never open an episode for an offender who
//!   stays well away: a false alert frightens a victim.
//! - An offender who really walks into a zone and stays is always caught,
//!   even when the network duplicates, delays and reorders his fixes.

mod common;

use common::*;
use kordon_core::{Engine, EngineConfig, EventKind, Fix, Phase, RiskLevel};
use proptest::prelude::*;

fn zone_and_ban_engine() -> Engine {
    zone_and_ban_engine_with(EngineConfig::default())
}

fn zone_and_ban_engine_with(config: EngineConfig) -> Engine {
    engine_with_config(
        config,
        vec![case(
            "RTM-1",
            RiskLevel::High,
            vec![
                order("home", square_zone(150.0, Some(250.0))),
                order("contact", contact_ban(1000.0, 300.0)),
            ],
        )],
    )
}

/// Gaussian-ish noise from two uniforms, so the tests need no extra crate.
fn noise(a: f64, b: f64, sigma: f64) -> f64 {
    (a + b - 1.0) * sigma * 2.45
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(200)))]

    #[test]
    fn noise_and_isolated_outliers_raise_nothing_for_a_distant_offender(
        draws in prop::collection::vec((0.0f64..1.0, 0.0f64..1.0, 0.0f64..1.0, 0.0f64..1.0), 40..240),
        outlier_every in 5usize..30,
        outlier_east in -1800.0f64..-1200.0,
    ) {
        let mut e = zone_and_ban_engine();
        feed(&mut e, fix("VIC-1", 0, offset(0.0, 0.0), 15.0));
        // He lives 2.5 km east of her; she is home, her device reports each minute.
        let mut events = Vec::new();
        for (i, (a, b, c, d)) in draws.iter().enumerate() {
            let t = 15 * (i as i64 + 1);
            let accuracy = 8.0 + 20.0 * c;
            let (east, north) = if i % outlier_every == outlier_every - 1 {
                // Multipath: a jump towards her home, claiming 5 m accuracy.
                (2500.0 + outlier_east - 900.0 * d, 0.0)
            } else {
                (2500.0 + noise(*a, *b, accuracy / 2.0), noise(*b, *c, accuracy / 2.0))
            };
            let mut f = fix("OFF-1", t, offset(east, north), accuracy);
            if i % outlier_every == outlier_every - 1 {
                f.accuracy_m = 5.0;
            }
            events.extend(e.ingest_fix(&f).unwrap().events);
            if i % 4 == 0 {
                events.extend(feed(&mut e, fix("VIC-1", t + 3, offset(noise(*c, *d, 7.0), 0.0), 15.0)));
            }
            events.extend(e.tick(at(t + 5)));
        }
        let alerts: Vec<_> = events.iter().filter(|ev| ev.order.is_some()).collect();
        prop_assert!(alerts.is_empty(), "{alerts:#?}");
    }

    #[test]
    fn a_real_intrusion_is_caught_through_duplicates_delays_and_reordering(
        faults in prop::collection::vec((0u8..10, 0.0f64..1.0, 0.0f64..1.0), 30),
        stay in 3usize..10,
    ) {
        let mut e = zone_and_ban_engine();
        // He walks from 2 km east into her home zone at 1.5 m/s, a fix every
        // 15 s, stays `stay` fixes inside, and walks out again.
        let mut track: Vec<Fix> = Vec::new();
        let mut t = 0;
        let mut east = 2000.0;
        let mut seq = 0;
        while east > 0.0 {
            seq += 1;
            track.push(fix("OFF-1", t, offset(east, 0.0), 10.0).with_seq(seq));
            east -= 22.5;
            t += 15;
        }
        for _ in 0..stay {
            seq += 1;
            track.push(fix("OFF-1", t, offset(0.0, 10.0), 10.0).with_seq(seq));
            t += 15;
        }
        // The network: some fixes arrive twice, some swap with the next.
        let mut arrivals: Vec<Fix> = Vec::new();
        for (i, f) in track.iter().enumerate() {
            let (kind, _, _) = faults[i % faults.len()];
            arrivals.push(f.clone());
            if kind == 0 {
                arrivals.push(f.clone());
            }
        }
        for i in 0..arrivals.len().saturating_sub(1) {
            if faults[i % faults.len()].0 == 1 {
                arrivals.swap(i, i + 1);
            }
        }
        let victim = fix("VIC-1", 0, offset(0.0, 30.0), 15.0);
        feed(&mut e, victim);
        let mut events = Vec::new();
        for f in &arrivals {
            events.extend(e.ingest_fix(f).unwrap().events);
        }
        let caught = events.iter().any(|ev| {
            ev.kind == EventKind::ZoneBreach && matches!(ev.phase, Phase::Opened | Phase::Updated | Phase::LateBreach)
        });
        prop_assert!(caught, "{events:#?}");
        let proximity = events.iter().any(|ev| ev.kind == EventKind::ProximityBreach);
        prop_assert!(proximity);
        // Whatever the faults, one episode per order.
        let opened = events.iter().filter(|ev| ev.phase == Phase::Opened).count();
        prop_assert!(opened <= 2, "{events:#?}");
    }
}

/// Found by the Rotterdam simulator (`kordon score`, loiter_edge): an
/// offender standing 60 m outside a zone, reporting every 5 s, got one
/// multipath fix 25 m inside with a claimed accuracy of 9 m. 85 m in 5 s is
/// no speed for a car, so the speed check let it through and it opened a
/// certain breach; from a standstill nothing covers 85 m in 5 s.
#[test]
fn seed_a_multipath_jump_from_standstill_at_a_zone_edge_is_no_breach() {
    // Also where a single possible fix opens an episode (the pilot's
    // setting): a suspect fix never confirms itself.
    for confirmations in [2, 1] {
        multipath_jump_at_the_edge(EngineConfig {
            possible_confirmations: confirmations,
            ..EngineConfig::default()
        });
    }
}

fn multipath_jump_at_the_edge(config: EngineConfig) {
    let mut e = zone_and_ban_engine_with(config);
    // The zone is a square of 150 m half side around HOME; stand 60 m east of its edge.
    let outside = offset(210.0, 0.0);
    let mut events = Vec::new();
    for i in 0..12 {
        events.extend(feed(&mut e, fix("OFF-1", i * 5, outside, 6.0)));
    }
    let outcome = e
        .ingest_fix(&fix("OFF-1", 60, offset(125.0, 0.0), 9.0))
        .unwrap();
    assert_eq!(outcome.disposition, kordon_core::Disposition::Suspect);
    events.extend(outcome.events);
    for i in 13..20 {
        events.extend(feed(&mut e, fix("OFF-1", i * 5, outside, 6.0)));
    }
    assert!(
        !events.iter().any(|ev| ev.kind == EventKind::ZoneBreach),
        "{}",
        summary(&events)
    );
    // Walking in for real is still a breach (the open warning escalates).
    let mut walk = Vec::new();
    for (i, east) in [
        200.0, 190.0, 180.0, 170.0, 160.0, 150.0, 140.0, 130.0, 120.0,
    ]
    .iter()
    .enumerate()
    {
        walk.extend(feed(
            &mut e,
            fix("OFF-1", 100 + i as i64 * 5, offset(*east, 0.0), 6.0),
        ));
    }
    assert!(
        walk.iter().any(|ev| ev.kind == EventKind::ZoneBreach),
        "{}",
        summary(&walk)
    );
}
