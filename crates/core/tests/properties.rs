//! Property tests: decisions against brute-force `geo`, determinism, and the
//! episode invariants over random input sequences.

mod common;

use common::*;
use geo::{Contains, Distance, Euclidean, Geodesic, LineString, Point, Polygon};
use kordon_core::decision::disc_in_area;
use kordon_core::geodesy::{distance_m, LocalFrame};
use kordon_core::zone::CompiledZone;
use kordon_core::{
    DeviceId, Engine, EngineConfig, Event, Phase, RiskLevel, Rule, Status, StrapState, ZoneGeometry,
};
use proptest::prelude::*;

/// Anywhere in the Netherlands.
fn nl_point() -> impl Strategy<Value = (f64, f64)> {
    (50.75f64..53.55, 3.35f64..7.2)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(2000)))]

    #[test]
    fn distance_agrees_with_the_geodesic(
        (lat, lon) in nl_point(),
        bearing in 0.0f64..360.0,
        d in 0.0f64..50_000.0,
    ) {
        use geo::Destination;
        let to = Geodesic.destination(Point::new(lon, lat), bearing, d);
        let ours = distance_m(lat, lon, to.y(), to.x());
        let err = (ours - d).abs();
        prop_assert!(err <= d * 0.001, "{err} m at {d} m");
        if d <= 10_000.0 {
            prop_assert!(err < 1.0, "{err} m at {d} m");
        }
        // What the engine actually achieves, so a regression shows.
        prop_assert!(err < 0.01, "{err} m at {d} m");
    }

    #[test]
    fn tangent_plane_distances_agree_with_the_geodesic(
        (lat, lon) in nl_point(),
        b1 in 0.0f64..360.0, d1 in 0.0f64..10_000.0,
        b2 in 0.0f64..360.0, d2 in 0.0f64..10_000.0,
    ) {
        use geo::Destination;
        let origin = Point::new(lon, lat);
        let p1 = Geodesic.destination(origin, b1, d1);
        let p2 = Geodesic.destination(origin, b2, d2);
        let frame = LocalFrame::new(lat, lon);
        let (a, b) = (frame.project_lat_lon(p1.y(), p1.x()), frame.project_lat_lon(p2.y(), p2.x()));
        let planar = (a.east - b.east).hypot(a.north - b.north);
        let truth = Geodesic.distance(p1, p2);
        prop_assert!((planar - truth).abs() < 1.0, "{planar} vs {truth}");
    }

    #[test]
    fn zone_decisions_agree_with_brute_force_geo(
        (lat, lon) in (51.85f64..51.98, 4.35f64..4.60),
        radii in prop::collection::vec(0.3f64..1.0, 3..160),
        scale in 100.0f64..3000.0,
        (px, py) in (-1.6f64..1.6, -1.6f64..1.6),
        accuracy in 1.0f64..300.0,
    ) {
        // A star-shaped polygon: always simple.
        let n = radii.len();
        let mut ring: Vec<[f64; 2]> = radii.iter().enumerate().map(|(i, r)| {
            let angle = i as f64 / n as f64 * std::f64::consts::TAU;
            let (la, lo) = offset_from((lat, lon), r * scale * angle.cos(), r * scale * angle.sin());
            [lo, la]
        }).collect();
        ring.push(ring[0]);
        let zone = CompiledZone::compile(&ZoneGeometry::Polygon { coordinates: vec![ring.clone()] }).unwrap();
        let (qlat, qlon) = offset_from((lat, lon), px * scale, py * scale);
        let frame = zone.frame();
        let planar_ring: Vec<(f64, f64)> = ring.iter().map(|[lo, la]| {
            let p = frame.project_lat_lon(*la, *lo);
            (p.east, p.north)
        }).collect();
        let polygon = Polygon::new(LineString::from(planar_ring.clone()), vec![]);
        let q = frame.project_lat_lon(qlat, qlon);
        let q = Point::new(q.east, q.north);
        let boundary = Euclidean.distance(&q, &LineString::from(planar_ring));
        let truth = if polygon.contains(&q) { -boundary } else { boundary };
        let ours = zone.signed_distance_m(&kordon_core::geodesy::Ecef::from_lat_lon(qlat, qlon));
        prop_assert!((ours - truth).abs() < 1e-6, "ours {ours} truth {truth}");
        // The three-valued decision, away from ties.
        if (truth.abs() - accuracy).abs() > 1e-6 && truth.abs() > 1e-6 {
            prop_assert_eq!(disc_in_area(ours, accuracy), disc_in_area(truth, accuracy));
        }
    }

    #[test]
    fn contact_ban_distance_agrees_with_the_geodesic(
        (lat, lon) in (51.85f64..51.98, 4.35f64..4.60),
        bearing in 0.0f64..360.0,
        d in 1.0f64..3000.0,
    ) {
        use geo::Destination;
        let mut e = engine_with(vec![case("RTM-1", RiskLevel::Low, vec![order("c", contact_ban(1000.0, 300.0))])]);
        let to = Geodesic.destination(Point::new(lon, lat), bearing, d);
        feed(&mut e, fix("VIC-1", 0, (lat, lon), 1.0));
        let mut events = feed(&mut e, fix("OFF-1", 1, (to.y(), to.x()), 1.0));
        events.extend(feed(&mut e, fix("OFF-1", 2, (to.y(), to.x()), 1.0)));
        // 1 m + 1 m accuracy plus 1 s of ageing at 2 m/s: 4 m either side.
        if d < 1000.0 - 5.0 {
            prop_assert!(!events.is_empty());
            let reported = events[0].distance_m.unwrap();
            prop_assert!((reported - d).abs() < 0.01, "{reported} vs {d}");
        } else if d > 1000.0 + 5.0 {
            prop_assert!(events.is_empty());
        }
    }
}

/// One step of a random scenario.
#[derive(Debug, Clone)]
enum Op {
    Fix {
        victim: bool,
        east: f64,
        north: f64,
        accuracy: f64,
        dt: i64,
        seq: u64,
    },
    Late {
        east: f64,
        north: f64,
        back: i64,
    },
    Tick {
        dt: i64,
    },
    Strap {
        tampered: bool,
        dt: i64,
    },
    Battery {
        pct: u8,
        dt: i64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (any::<bool>(), -1500.0f64..1500.0, -1500.0f64..1500.0, 3.0f64..200.0, 1i64..120, 0u64..4)
            .prop_map(|(victim, east, north, accuracy, dt, seq)| Op::Fix { victim, east, north, accuracy, dt, seq }),
        1 => (-1500.0f64..1500.0, -1500.0f64..1500.0, 1i64..600)
            .prop_map(|(east, north, back)| Op::Late { east, north, back }),
        2 => (1i64..900).prop_map(|dt| Op::Tick { dt }),
        1 => (any::<bool>(), 1i64..60).prop_map(|(tampered, dt)| Op::Strap { tampered, dt }),
        1 => (0u8..=100, 1i64..60).prop_map(|(pct, dt)| Op::Battery { pct, dt }),
    ]
}

/// A case with every kind of order around HOME.
fn full_case() -> kordon_core::Case {
    let curfew = Rule::InclusionZone {
        geometry: ZoneGeometry::Circle {
            coordinates: [HOME.1, HOME.0],
            radius_m: 300.0,
        },
        schedule: every_day("11:30", "13:00"),
        grace_s: 120,
    };
    case(
        "RTM-1",
        RiskLevel::High,
        vec![
            order("zone", square_zone(200.0, Some(150.0))),
            order("curfew", curfew),
            order("contact", contact_ban(600.0, 200.0)),
        ],
    )
}

/// A 3 m fix `dt` seconds after the previous op, first of its sequence number.
fn fix_op(victim: bool, east: f64, north: f64, dt: i64) -> Op {
    Op::Fix {
        victim,
        east,
        north,
        accuracy: 3.0,
        dt,
        seq: 0,
    }
}

fn run(ops: &[Op]) -> Vec<Event> {
    run_restoring_at(ops, &[])
}

/// Runs `ops`; before op `cut` the engine is restored from its snapshot
/// and given `config`.
fn run_reconfiguring_at(ops: &[Op], cut: usize, config: EngineConfig) -> Vec<Event> {
    let mut events = Vec::new();
    let (first, rest) = ops.split_at(cut.min(ops.len()));
    let mut e = Engine::new(EngineConfig::default());
    e.upsert_case(full_case(), t0()).unwrap();
    let mut now = 0i64;
    let mut seq = 0u64;
    for op in first {
        events.extend(apply(&mut e, op, &mut now, &mut seq));
    }
    let mut e = Engine::restore(&e.snapshot()).unwrap();
    e.reconfigure(config, at(now));
    // Ticks close together, so that a deadline the queue lost under the
    // new thresholds shows before an old one covers it.
    for _ in 0..90 {
        now += 10;
        events.extend(e.tick(at(now)));
    }
    for op in rest {
        events.extend(apply(&mut e, op, &mut now, &mut seq));
    }
    events
}

/// Runs `ops`, replacing the engine by one restored from its snapshot
/// before each op whose index is in `restore_before`: what a restart does.
fn run_restoring_at(ops: &[Op], restore_before: &[usize]) -> Vec<Event> {
    let mut e = Engine::new(EngineConfig::default());
    e.upsert_case(full_case(), t0()).unwrap();
    let mut now = 0i64;
    let mut seq = 0u64;
    let mut events = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        if restore_before.contains(&i) {
            e = Engine::restore(&e.snapshot()).unwrap();
        }
        events.extend(apply(&mut e, op, &mut now, &mut seq));
    }
    events
}

/// Runs `ops`, taking a copy of the engine (as a snapshot does) before op
/// `cut`. Gives the snapshot at the cut, the copy's snapshot once the
/// engine has run every op, and the events of the ops after the cut, from
/// the engine and from the copy given them afterwards.
fn run_copying_at(ops: &[Op], cut: usize) -> (Vec<u8>, Vec<u8>, Vec<Event>, Vec<Event>) {
    let (first, rest) = ops.split_at(cut.min(ops.len()));
    let mut e = Engine::new(EngineConfig::default());
    e.upsert_case(full_case(), t0()).unwrap();
    let (mut now, mut seq) = (0i64, 0u64);
    for op in first {
        apply(&mut e, op, &mut now, &mut seq);
    }
    let mut copy = e.clone();
    let at_cut = e.snapshot();
    let (mut copy_now, mut copy_seq) = (now, seq);
    let engine_events: Vec<Event> = rest
        .iter()
        .flat_map(|op| apply(&mut e, op, &mut now, &mut seq))
        .collect();
    let copy_after = copy.snapshot();
    let copy_events = rest
        .iter()
        .flat_map(|op| apply(&mut copy, op, &mut copy_now, &mut copy_seq))
        .collect();
    (at_cut, copy_after, engine_events, copy_events)
}

/// One op against the engine; `now` and `seq` carry the run's clock and
/// sequence numbers.
fn apply(e: &mut Engine, op: &Op, now: &mut i64, seq: &mut u64) -> Vec<Event> {
    match op {
        Op::Fix {
            victim,
            east,
            north,
            accuracy,
            dt,
            seq: repeat,
        } => {
            *now += dt;
            // Now and then reuse a sequence number: a redelivery.
            if *repeat != 0 {
                *seq += 1;
            }
            let device = if *victim { "VIC-1" } else { "OFF-1" };
            let f = fix(device, *now, offset(*east, *north), *accuracy).with_seq(*seq);
            e.ingest_fix(&f).unwrap().events
        }
        Op::Late { east, north, back } => {
            let f = fix("OFF-1", *now - back, offset(*east, *north), 10.0);
            e.ingest_fix(&f).unwrap().events
        }
        Op::Tick { dt } => {
            *now += dt;
            e.tick(at(*now))
        }
        Op::Strap { tampered, dt } => {
            *now += dt;
            let s = Status {
                strap: Some(if *tampered {
                    StrapState::Tampered
                } else {
                    StrapState::Ok
                }),
                ..Status::heartbeat(DeviceId::from("OFF-1"), at(*now))
            };
            e.ingest_status(&s).unwrap()
        }
        Op::Battery { pct, dt } => {
            *now += dt;
            let s = Status {
                battery_pct: Some(*pct),
                ..Status::heartbeat(DeviceId::from("VIC-1"), at(*now))
            };
            e.ingest_status(&s).unwrap()
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(300)))]

    #[test]
    fn the_same_inputs_give_the_same_events(ops in prop::collection::vec(op(), 1..150)) {
        let first = run(&ops);
        let second = run(&ops);
        prop_assert_eq!(first, second);
    }

    #[test]
    fn a_restored_snapshot_carries_on_as_the_original(
        ops in prop::collection::vec(op(), 1..150),
        cuts in prop::collection::vec(0usize..150, 1..4),
    ) {
        prop_assert_eq!(run(&ops), run_restoring_at(&ops, &cuts));
    }

    /// A snapshot's copy shares the engine's cases and devices until the
    /// engine changes them: nothing the engine does afterwards reaches it.
    #[test]
    fn a_copy_keeps_the_state_it_was_taken_in_while_the_engine_goes_on(
        ops in prop::collection::vec(op(), 1..150),
        cut in 0usize..150,
    ) {
        let (at_cut, copy_after, engine_events, copy_events) = run_copying_at(&ops, cut);
        prop_assert_eq!(at_cut, copy_after);
        prop_assert_eq!(engine_events, copy_events);
    }

    #[test]
    fn a_restored_engine_takes_new_thresholds_without_missing_a_deadline(
        ops in prop::collection::vec(op(), 1..120),
        cut in 0usize..120,
        offline_after_s in 60u32..280,
        position_max_age_s in 60u32..900,
    ) {
        // Debug builds check at every tick that the timer queue missed
        // nothing: deadlines under the new thresholds must all be queued.
        let config = EngineConfig {
            offline_after_s,
            gps_lost_after_s: offline_after_s / 2 + 30,
            position_max_age_s,
            ..EngineConfig::default()
        };
        let events = run_reconfiguring_at(&ops, cut, config);
        if let Err(broken) = episode_invariants(&events) {
            return Err(TestCaseError::fail(broken));
        }
    }

    #[test]
    fn episodes_open_once_and_clear_once(ops in prop::collection::vec(op(), 1..200)) {
        let events = run(&ops);
        if let Err(broken) = episode_invariants(&events) {
            return Err(TestCaseError::fail(broken));
        }
    }
}

// Seeds from failures the properties above found; each stays as a test.

/// The offender's first fix, stamped 10:02:53, arrived at 10:06:58, after the
/// tick that found the bracelet offline since 10:05:00 (watching began at
/// 10:00 and the threshold was 300 s), and ended that episode. Lowering the
/// threshold to 127 s then found it offline since 10:02:53 + 127 s = 10:05:00
/// again: a new episode under the ended one's id.
#[test]
fn seed_a_lowered_threshold_does_not_reopen_an_ended_offline_episode() {
    let ops = [
        Op::Tick { dt: 418 },
        Op::Late {
            east: 0.0,
            north: 0.0,
            back: 245,
        },
    ];
    let config = EngineConfig {
        offline_after_s: 127,
        gps_lost_after_s: 127 / 2 + 30,
        ..EngineConfig::default()
    };
    let events = run_reconfiguring_at(&ops, 2, config);
    episode_invariants(&events).unwrap();
    let offline: Vec<&Event> = events
        .iter()
        .filter(|ev| {
            ev.device.as_str() == "OFF-1" && ev.kind == kordon_core::EventKind::DeviceOffline
        })
        .collect();
    let phases: Vec<Phase> = offline.iter().map(|ev| ev.phase).collect();
    assert_eq!(phases, [Phase::Opened, Phase::Cleared, Phase::Opened]);
    assert_ne!(offline[0].id, offline[2].id);
    // Counted from when it was found: the first tick under the new threshold.
    assert_eq!(offline[2].onset, at(428));
}

/// rstar's `nearest_neighbor` pruned away the nearest edge of a spiky polygon
/// with an edge index (georust/rstar#13).
#[test]
fn seed_edge_index_finds_the_nearest_segment() {
    let (lat, lon) = (51.876641166416725, 4.374770773958141);
    let n = 160;
    let mut ring: Vec<[f64; 2]> = (0..n)
        .map(|i| {
            let r = match i {
                2 => 0.999,
                25 => 0.93,
                _ => 0.3,
            };
            let angle = i as f64 / n as f64 * std::f64::consts::TAU;
            let (la, lo) = offset_from(
                (lat, lon),
                r * 1000.0 * angle.cos(),
                r * 1000.0 * angle.sin(),
            );
            [lo, la]
        })
        .collect();
    ring.push(ring[0]);
    let zone = CompiledZone::compile(&ZoneGeometry::Polygon {
        coordinates: vec![ring.clone()],
    })
    .unwrap();
    let frame = zone.frame();
    let planar: Vec<(f64, f64)> = ring
        .iter()
        .map(|[lo, la]| {
            let p = frame.project_lat_lon(*la, *lo);
            (p.east, p.north)
        })
        .collect();
    for (px, py) in [
        (1.2, 0.3),
        (0.9, 1.1),
        (-1.5, 0.2),
        (0.1, -1.4),
        (1.0, 0.05),
    ] {
        let (qlat, qlon) = offset_from((lat, lon), px * 1000.0, py * 1000.0);
        let q = frame.project_lat_lon(qlat, qlon);
        let truth = Euclidean.distance(
            &Point::new(q.east, q.north),
            &LineString::from(planar.clone()),
        );
        let ours = zone.signed_distance_m(&kordon_core::geodesy::Ecef::from_lat_lon(qlat, qlon));
        assert!((ours.abs() - truth).abs() < 1e-6, "{ours} vs {truth}");
    }
}

/// A tick closed the curfew episode at the window's end; a fix stamped one
/// second earlier, arriving after the tick, opened it again under the same id.
#[test]
fn seed_fix_stamped_before_the_closing_tick_does_not_reopen() {
    let mut e = Engine::new(EngineConfig::default());
    e.upsert_case(full_case(), t0()).unwrap();
    // The curfew window runs 10:30–12:00 UTC; t0 is 10:00 UTC.
    feed(&mut e, fix("OFF-1", 5400, offset(2000.0, 0.0), 5.0));
    feed(&mut e, fix("OFF-1", 5410, offset(2000.0, 0.0), 5.0));
    let opened = e.tick(at(5600));
    assert!(opened
        .iter()
        .any(|ev| ev.kind == kordon_core::EventKind::CurfewBreach));
    let closed = e.tick(at(7200));
    assert!(closed
        .iter()
        .any(|ev| ev.kind == kordon_core::EventKind::CurfewBreach && ev.phase == Phase::Cleared));
    let late = feed(&mut e, fix("OFF-1", 7199, offset(2000.0, 0.0), 5.0));
    assert!(
        late.iter()
            .all(|ev| ev.kind != kordon_core::EventKind::CurfewBreach),
        "{late:?}"
    );
}

/// A fix of the fresh party, stamped before the tick that found the pair
/// unknown, cleared the unknown episode, which the next fix reopened.
#[test]
fn seed_fresh_party_does_not_end_position_unknown() {
    let mut e = Engine::new(EngineConfig::default());
    e.upsert_case(full_case(), t0()).unwrap();
    feed(&mut e, fix("VIC-1", 1, offset(0.0, 0.0), 3.0));
    feed(&mut e, fix("OFF-1", 2, offset(0.0, -805.0), 3.0));
    let unknown = e.tick(at(601));
    assert!(unknown
        .iter()
        .any(|ev| ev.kind == kordon_core::EventKind::PositionUnknown));
    let mut later = feed(&mut e, fix("OFF-1", 600, offset(0.0, -1487.0), 3.0));
    later.extend(feed(&mut e, fix("OFF-1", 602, offset(0.0, -1400.0), 3.0)));
    assert!(
        later
            .iter()
            .all(|ev| ev.kind != kordon_core::EventKind::PositionUnknown),
        "{later:?}"
    );
}

/// The pair went unknown at 10:10:13 under the 600 s position age and a
/// victim fix at 10:10:16 ended that. Lowering the age to 488 s put the
/// offender's last fix (10:02:05) out of date at 10:10:13 again: the same id,
/// so the episode was refused, and the order lost its unknown deadline; the
/// pair's next unknown spell (10:33:25) went unreported.
#[test]
fn seed_a_shorter_position_age_keeps_the_unknown_deadline_queued() {
    let at_east = |victim, east, dt| fix_op(victim, east, 0.0, dt);
    let mut ops = vec![fix_op(false, 0.0, 0.0, 1); 12];
    ops.extend([
        at_east(true, -822.2555012224999, 1),
        at_east(false, 0.0, 18),
        at_east(false, 0.0, 94),
        Op::Tick { dt: 488 },
        Op::Strap {
            tampered: false,
            dt: 1,
        },
        Op::Strap {
            tampered: false,
            dt: 1,
        },
        at_east(true, 0.0, 1),
        at_east(true, 0.0, 1),
        at_east(false, 1441.3137657901204, 1),
        Op::Tick { dt: 487 },
    ]);
    let config = EngineConfig {
        offline_after_s: 60,
        gps_lost_after_s: 60,
        position_max_age_s: 488,
        ..EngineConfig::default()
    };
    let events = run_reconfiguring_at(&ops, 19, config);
    episode_invariants(&events).unwrap();
    let unknown: Vec<(Phase, jiff::Timestamp)> = events
        .iter()
        .filter(|ev| ev.kind == kordon_core::EventKind::PositionUnknown)
        .map(|ev| (ev.phase, ev.onset))
        .collect();
    assert_eq!(
        unknown,
        [
            (Phase::Opened, at(613)),
            (Phase::Cleared, at(613)),
            // Found at the first tick under the new age.
            (Phase::Opened, at(626)),
            (Phase::Cleared, at(626)),
            (Phase::Opened, at(2005)),
        ]
    );
}

/// Sequences the invariants above once broke (timers, renewal, id families).
#[test]
fn seed_sequences_keep_the_episode_invariants() {
    let fix = |victim, east, dt| fix_op(victim, east, 0.0, dt);
    let north = |north, dt| fix_op(false, 0.0, north, dt);
    let seeds = [
        // A message stamped when watching began did not renew "offline".
        vec![
            Op::Tick { dt: 559 },
            Op::Late {
                east: 0.0,
                north: 0.0,
                back: 559,
            },
            Op::Tick { dt: 1 },
        ],
        // A fix cleared GPS lost after the device had been queued.
        vec![
            Op::Tick { dt: 153 },
            Op::Strap {
                tampered: false,
                dt: 18,
            },
            Op::Tick { dt: 129 },
            Op::Late {
                east: 0.0,
                north: 0.0,
                back: 170,
            },
            Op::Tick { dt: 130 },
        ],
        // Unknown and proximity episodes with one onset shared an id.
        vec![
            fix(false, 0.0, 7),
            Op::Tick { dt: 699 },
            Op::Late {
                east: 0.0,
                north: 0.0,
                back: 395,
            },
            fix(true, 0.0, 105),
            fix(true, 0.0, 101),
            Op::Late {
                east: 0.0,
                north: 0.0,
                back: 312,
            },
            fix(true, 0.0, 1),
        ],
        // A fix stamped before a curfew window, delivered late, took back a
        // breach that a later fix then opened again under the same id.
        vec![
            fix(false, 0.0, 96),
            Op::Battery { pct: 0, dt: 26 },
            fix(false, 0.0, 24),
            Op::Strap {
                tampered: false,
                dt: 47,
            },
            fix(false, 0.0, 67),
            fix(false, 0.0, 69),
            fix(false, 0.0, 47),
            fix(false, 0.0, 28),
            fix(false, 0.0, 47),
            north(-580.44, 85),
            Op::Tick { dt: 692 },
            Op::Tick { dt: 283 },
            Op::Tick { dt: 409 },
            Op::Late {
                east: 0.0,
                north: 0.0,
                back: 265,
            },
            Op::Tick { dt: 247 },
            Op::Late {
                east: 0.0,
                north: 781.89,
                back: 367,
            },
            Op::Late {
                east: 0.0,
                north: -1420.39,
                back: 1,
            },
        ],
        // A confirming fix arrived after the curfew deadline had passed
        // unconfirmed; no timer was left to open the breach.
        vec![
            Op::Tick { dt: 697 },
            Op::Tick { dt: 663 },
            fix(false, 0.0, 36),
            north(1202.58, 11),
            Op::Tick { dt: 184 },
            Op::Tick { dt: 509 },
            Op::Late {
                east: 0.0,
                north: 1275.21,
                back: 300,
            },
            Op::Tick { dt: 1 },
        ],
    ];
    for ops in seeds {
        // `run` ticks, and every tick checks the timers missed nothing.
        episode_invariants(&run(&ops)).unwrap();
    }
}

/// Found by `a_restored_snapshot_carries_on_as_the_original`: a possible
/// breach read as passing (her fix jumped 820 m in a second) waited for
/// the police until `police_max_wait_s`; his next fix showed him moving,
/// which ends the wait half a minute later as `unclear`, but the order's
/// timer still held the later deadline (a fix was taken to only postpone
/// deadlines), and a sweep found the end no timer held.
#[test]
fn seed_a_police_wait_that_ends_by_the_clock_is_queued() {
    let wide = |east: f64, accuracy: f64| Op::Fix {
        victim: false,
        east,
        north: 0.0,
        accuracy,
        dt: 1,
        seq: 0,
    };
    let ops = [
        wide(381.0070274801229, 99.7090911314179),
        wide(322.58226655072826, 187.68207038178505),
        fix_op(true, 820.7266262894767, 0.0, 54),
        fix_op(true, 0.0, 0.0, 1),
        fix_op(false, 0.0, 0.0, 1),
        Op::Tick { dt: 30 },
    ];
    // The tick's sweep (debug builds) finds nothing the timers missed, and
    // the wait ended by the clock, as `unclear`, half a minute after his
    // fix.
    let events = run(&ops);
    let unclear = events
        .iter()
        .find(|e| e.context.as_ref().map(|c| c.reading) == Some(kordon_core::Reading::Unclear))
        .expect("the wait ended by the clock");
    assert_eq!(unclear.at, at(88));
}
