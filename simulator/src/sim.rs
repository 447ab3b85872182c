//! The generator: pairs of an offender and the person he must stay away
//! from, their days through Rotterdam, the incidents the scenario scripts,
//! what their devices would publish, and the ground truth.
//!
//! Everything is drawn from one seed: each pair from its own generator
//! derived from the seed and its number, so the same seed gives the same
//! bytes and adding pairs does not change the others. What her device would
//! answer to a request for a fresh position ([`DeviceAnswers`]) is drawn
//! from a second stream of the pair's generator, so that the messages are
//! the same with or without it.

use jiff::Timestamp;
use petgraph::graph::NodeIndex;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use serde_json::json;

use crate::geodata::{distance_m, offset, LonLat};
use crate::graph::Mode;
use crate::recording::{
    fix_payload_with_velocity, AnswerFix, DeviceAnswers, Message, PairInfo, Recording, Truth,
    TruthKind, FORMAT,
};
use crate::scenario::{Incident, Noise, Scenario};
use crate::world::{Plan, State, World};

/// The orders every generated case has.
pub const ZONE_RADIUS_M: f64 = 200.0;
pub const ZONE_BUFFER_M: f64 = 100.0;
pub const ALARM_M: f64 = 200.0;
pub const WARNING_M: f64 = 500.0;
pub const CURFEW_RADIUS_M: f64 = 150.0;
pub const CURFEW_GRACE_S: f64 = 600.0;
/// Curfew hours, every night, local time.
pub const CURFEW_FROM_H: f64 = 23.0;
pub const CURFEW_TO_H: f64 = 6.0;

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub seed: u64,
    pub pairs: u32,
    pub hours: u32,
    /// Local midnight (Europe/Amsterdam) the simulation starts at.
    pub start: Timestamp,
    pub scenario: Scenario,
    pub scenario_text: String,
}

/// The default start: midnight of Monday 30 November 2026 in Rotterdam.
pub fn default_start() -> Timestamp {
    // Midnight in Rotterdam is 23:00 UTC in winter (CET).
    "2026-11-29T23:00:00Z".parse().expect("a valid time")
}

struct Person {
    plan: Plan,
    home: LonLat,
}

/// How often the answers of a victim device are sampled, seconds.
pub const ANSWER_EVERY_S: u32 = 10;

/// Generates a whole recording.
pub fn generate(world: &World, config: &SimConfig) -> Recording {
    let horizon = f64::from(config.hours) * 3600.0;
    let mut messages = Vec::new();
    let mut truth = Vec::new();
    let mut cases = Vec::new();
    let mut pairs = Vec::new();
    let mut answers = Vec::new();
    for i in 0..config.pairs {
        let pair_seed = config.seed ^ (u64::from(i) + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut rng = ChaCha8Rng::seed_from_u64(pair_seed);
        let pair = make_pair(world, config, i, &mut rng, horizon);
        cases.push(pair.case_json.clone());
        let start_ms = config.start.as_millisecond();
        for device in [&pair.offender_device, &pair.victim_device] {
            let (person, is_offender) = if device.id == pair.info.offender {
                (&pair.offender, true)
            } else {
                (&pair.victim, false)
            };
            let attempts = emit_device(
                world,
                config,
                &mut rng,
                device,
                person,
                is_offender.then_some(pair.victim.home),
                horizon,
                start_ms,
                &mut messages,
            );
            if !is_offender {
                let mut answer_rng = ChaCha8Rng::seed_from_u64(pair_seed);
                answer_rng.set_stream(1);
                answers.push(device_answers(
                    world,
                    config,
                    &mut answer_rng,
                    device,
                    person,
                    &attempts,
                    horizon,
                    start_ms,
                ));
            }
        }
        truth.extend(pair_truth(config, &pair, horizon));
        pairs.push(pair.info);
    }
    messages.sort_by(|a: &Message, b: &Message| a.at_ms.cmp(&b.at_ms).then(a.topic.cmp(&b.topic)));
    Recording {
        format: FORMAT,
        seed: config.seed,
        scenario: config.scenario.name.clone(),
        scenario_toml: config.scenario_text.clone(),
        pairs: config.pairs,
        hours: config.hours,
        start_ms: config.start.as_millisecond(),
        cases,
        pair_info: pairs,
        messages,
        truth,
        answers,
    }
}

struct Device {
    id: String,
    /// When it dies (battery), seconds; none for most.
    dies_at: Option<f64>,
    /// When the strap is cut.
    tampered_at: Option<f64>,
    battery_start: f64,
    /// When it reports only every `sparse_moving_s` while moving, seconds.
    sparse: Option<(f64, f64)>,
    /// When it is wrapped in foil and finds no satellite, seconds.
    shielded: Vec<(f64, f64)>,
}

impl Device {
    /// How often it reports while moving at `t`.
    fn moving_interval(&self, iv: &crate::scenario::Intervals, t: f64) -> f64 {
        if self
            .sparse
            .is_some_and(|(from, to)| (from..=to).contains(&t))
        {
            iv.sparse_moving_s
        } else {
            iv.moving_s
        }
    }

    fn shielded_at(&self, t: f64) -> bool {
        self.shielded
            .iter()
            .any(|(from, to)| (*from..=*to).contains(&t))
    }
}

struct Pair {
    info: PairInfo,
    case_json: String,
    offender: Person,
    victim: Person,
    offender_device: Device,
    victim_device: Device,
    curfew: bool,
    /// The scripted window of intent, seconds.
    script: Option<(f64, f64)>,
    /// The stays of a scripted pattern (slow burn, loitering, following,
    /// the evenings in the dark), seconds.
    stays: Vec<(f64, f64)>,
}

fn hours(h: f64) -> f64 {
    h * 3600.0
}

fn pick_mode(rng: &mut ChaCha8Rng) -> Mode {
    match rng.random_range(0..100) {
        0..40 => Mode::Car,
        40..75 => Mode::Bike,
        _ => Mode::Transit,
    }
}

/// An ordinary day from `day` midnight: home, work, maybe a shop, home,
/// maybe an evening visit. `interrupt` is called at work (for incidents).
#[allow(clippy::too_many_arguments)]
fn ordinary_day(
    world: &World,
    rng: &mut ChaCha8Rng,
    plan: &mut Plan,
    day: f64,
    home: NodeIndex,
    work: NodeIndex,
    shop: NodeIndex,
    visit: NodeIndex,
    mode: Mode,
    mut at_work: impl FnMut(&mut Plan, &mut ChaCha8Rng, f64),
) {
    let leave = day + hours(rng.random_range(7.0..9.0));
    plan.stay_until(leave, true);
    plan.go(world, work, mode);
    let off = day + hours(rng.random_range(16.0..18.0));
    at_work(plan, rng, off);
    plan.stay_until(off, true);
    if rng.random_bool(0.5) {
        plan.go(world, shop, mode);
        let until = plan.end() + rng.random_range(600.0..1800.0);
        plan.stay_until(until, true);
    }
    plan.go(world, home, mode);
    if rng.random_bool(0.3) {
        plan.stay_until(day + hours(rng.random_range(19.0..20.0)), true);
        plan.go(world, visit, mode);
        plan.stay_until(day + hours(rng.random_range(21.5..22.5)), true);
        plan.go(world, home, mode);
    }
}

fn make_pair(
    world: &World,
    config: &SimConfig,
    i: u32,
    rng: &mut ChaCha8Rng,
    horizon: f64,
) -> Pair {
    let days = (horizon / 86_400.0).ceil() as usize;
    // Places: hers, then his far from hers.
    let v_home = world.random_place(rng);
    let vh = world.point(v_home);
    let v_work = world.place_near(rng, vh, 2000.0, 8000.0);
    let v_shop = world.place_near(rng, vh, 300.0, 1500.0);
    let v_visit = world.place_near(rng, vh, 1000.0, 6000.0);
    let far_from_her = |world: &World, rng: &mut ChaCha8Rng, near: LonLat, min: f64, max: f64| {
        for _ in 0..200 {
            let n = world.place_near(rng, near, min, max);
            let p = world.point(n);
            if distance_m(p, vh) > 2000.0 && distance_m(p, world.point(v_work)) > 1500.0 {
                return n;
            }
        }
        world.place_near(rng, near, min, max)
    };
    let o_home = far_from_her(world, rng, vh, 4000.0, 10_000.0);
    let oh = world.point(o_home);
    let o_work = far_from_her(world, rng, oh, 1500.0, 8000.0);
    let o_shop = far_from_her(world, rng, oh, 300.0, 1500.0);
    let o_visit = far_from_her(world, rng, oh, 1000.0, 5000.0);
    let (v_mode, o_mode) = (pick_mode(rng), pick_mode(rng));

    // The incident, by the scenario's shares.
    let u: f64 = rng.random();
    let mut acc = 0.0;
    let incident = config.scenario.incidents.iter().find_map(|(k, share)| {
        acc += share;
        (u < acc).then_some(*k)
    });
    // A pattern's late evenings are not the curfew's breaches.
    let evenings_out = matches!(incident, Some(Incident::SlowBurn | Incident::DarkNearHer));
    let curfew = incident == Some(Incident::CurfewBreak)
        || (!evenings_out && rng.random_bool(config.scenario.curfew_share));

    // Her days.
    let mut victim = Plan::default();
    victim.legs.push(crate::world::Leg::Stay {
        from: 0.0,
        to: 0.0,
        at: vh,
        indoor: true,
    });
    let mut ring_ride = None;
    for d in 0..days {
        let day = d as f64 * 86_400.0;
        let errand = d == 0 && incident == Some(Incident::RingCoTravel);
        ordinary_day(
            world,
            rng,
            &mut victim,
            day,
            v_home,
            v_work,
            v_shop,
            v_visit,
            v_mode,
            |plan, rng, _| {
                if errand {
                    ring_ride = errand_on_the_ring(world, rng, plan, day, v_work);
                }
            },
        );
    }
    victim.stay_until(horizon + 3600.0, true);

    // His days, with the incident on the first.
    let mut offender = Plan::default();
    offender.legs.push(crate::world::Leg::Stay {
        from: 0.0,
        to: 0.0,
        at: oh,
        indoor: true,
    });
    let mut script = None;
    let mut stays = Vec::new();
    let mut tampered_at = None;
    let mut victim_dies = None;
    if incident == Some(Incident::CurfewBreak) {
        // Out from 00:30 for about an hour, in his curfew.
        offender.stay_until(hours(0.5), true);
        let start = offender.end();
        offender.go(world, o_visit, Mode::Car);
        let back = offender.end() + rng.random_range(1800.0..3000.0);
        offender.stay_until(back, true);
        offender.go(world, o_home, Mode::Car);
        script = Some((start, offender.end()));
    }
    for d in 0..days {
        let day = d as f64 * 86_400.0;
        let first = d == 0;
        let at_work = |plan: &mut Plan, rng: &mut ChaCha8Rng, off: f64| {
            if incident == Some(Incident::LoiterEdge) && d < 3 {
                plan.stay_until(day + hours(rng.random_range(11.0..14.0)), true);
                let start = plan.end();
                if let Some(edge) = world.node_at_distance(vh, ZONE_RADIUS_M + 60.0) {
                    plan.go(world, edge, Mode::Car);
                    let arrive = plan.end();
                    plan.stay_until(arrive + 1800.0, false);
                    stays.push((arrive, plan.end()));
                }
                plan.go(world, o_work, Mode::Car);
                if first {
                    script = Some((start, plan.end()));
                }
                return;
            }
            if !first {
                return;
            }
            match incident {
                Some(Incident::ApproachHome) => {
                    plan.stay_until(day + hours(rng.random_range(11.0..14.0)), true);
                    let start = plan.end();
                    plan.go(world, v_home, Mode::Car);
                    let door = offset(
                        vh,
                        rng.random_range(-20.0..20.0),
                        rng.random_range(-20.0..20.0),
                    );
                    plan.travel(vec![plan.position(), door], &[0.0, 1.4], Mode::Foot);
                    let leave = plan.end() + rng.random_range(300.0..900.0);
                    plan.stay_until(leave, false);
                    plan.go(world, o_work, Mode::Car);
                    script = Some((start, plan.end()));
                }
                Some(Incident::PassBy) => {
                    plan.stay_until(day + hours(rng.random_range(10.5..14.0)), true);
                    let start = plan.end();
                    let vw = world.point(v_work);
                    let a = world.place_near(rng, vw, 1200.0, 2000.0);
                    let b = world.place_near(rng, vw, 1200.0, 2000.0);
                    drive_past(world, plan, v_work, a, b);
                    plan.go(world, o_work, Mode::Car);
                    script = Some((start, plan.end()));
                }
                Some(Incident::DriveBy) => {
                    plan.stay_until(day + hours(rng.random_range(10.5..14.0)), true);
                    let start = plan.end();
                    // From one side of her workplace to the other: through,
                    // not there and back.
                    let vw = world.point(v_work);
                    let a = world.place_near(rng, vw, 1500.0, 2500.0);
                    let aw = world.point(a);
                    let across = [2.0 * vw[0] - aw[0], 2.0 * vw[1] - aw[1]];
                    let b = world.place_near(rng, across, 0.0, 400.0);
                    drive_past(world, plan, v_work, a, b);
                    let passed = plan.end();
                    plan.go(world, o_work, Mode::Car);
                    script = Some((start, passed));
                }
                Some(Incident::TamperFlee) => {
                    let t = day + hours(rng.random_range(11.0..14.0));
                    plan.stay_until(t, true);
                    tampered_at = Some(t);
                    let away = world.place_near(rng, plan.position(), 5000.0, 8000.0);
                    plan.go(world, away, Mode::Car);
                    plan.stay_until(off.max(plan.end() + 600.0), true);
                    script = Some((t, t + 60.0));
                }
                Some(Incident::VictimDeviceDies) => {
                    victim_dies = Some(day + hours(rng.random_range(13.0..17.0)));
                }
                _ => {}
            }
        };
        if first && matches!(incident, Some(Incident::CoTravel | Incident::RingCoTravel)) {
            let ride = if incident == Some(Incident::RingCoTravel) {
                ring_ride.take()
            } else {
                shared_ride(&victim, hours(6.0))
            };
            if let Some(ride) = ride {
                ride_along(world, rng, &mut offender, &ride, o_work, o_home, day);
                script = Some((ride.times[0], *ride.times.last().unwrap_or(&ride.times[0])));
                continue;
            }
        }
        if incident == Some(Incident::FollowFar) && d % 2 == 0 {
            if let Some(run) = follow_far(world, rng, &mut offender, &victim, day, o_work, o_home) {
                script.get_or_insert(run);
                stays.push(run);
                continue;
            }
        }
        if first && incident == Some(Incident::Follow) {
            // Wait outside her work and follow her home, 20 s behind.
            if let Some((leave, end)) = first_journey_after(&victim, hours(15.0)) {
                offender.stay_until(hours(rng.random_range(7.0..8.5)), true);
                offender.go(world, o_work, o_mode);
                offender.stay_until(leave - 3600.0, true);
                offender.go(world, v_work, Mode::Car);
                offender.stay_until(leave + 20.0, false);
                for leg in victim.legs.iter().filter(|l| matches!(l, crate::world::Leg::Move { from, .. } if *from >= leave && *from < end)) {
                    if let crate::world::Leg::Move { points, times, mode, .. } = leg {
                        offender.stay_until(times[0] + 20.0, false);
                        offender.travel(points.clone(), &speeds_along(points, times), *mode);
                    }
                }
                offender.stay_until(offender.end() + 120.0, false);
                offender.go(world, o_home, Mode::Car);
                script = Some((leave, offender.end()));
                continue;
            }
        }
        ordinary_day(
            world,
            rng,
            &mut offender,
            day,
            o_home,
            o_work,
            o_shop,
            o_visit,
            o_mode,
            at_work,
        );
        let evening = match incident {
            Some(Incident::SlowBurn) => Some(watch_her_home as Evening),
            Some(Incident::DarkNearHer) => Some(wait_near_her_in_the_dark as Evening),
            _ => None,
        };
        if let Some(evening) = evening.filter(|_| d % 2 == 0) {
            let stay = evening(world, rng, &mut offender, day, vh, o_home);
            script.get_or_insert(stay);
            stays.push(stay);
        }
    }
    offender.stay_until(horizon + 3600.0, true);

    let tag = format!("{:04}", i + 1);
    let case_id = format!("SIM-{tag}");
    let offender_id = format!("OFF-{tag}");
    let victim_id = format!("VIC-{tag}");
    let mut orders = vec![
        json!({"id": "home-zone", "legal_basis": "simulated", "valid_from": "2026-01-01T00:00:00Z",
               "rule": {"type": "exclusion_zone", "warning_buffer_m": ZONE_BUFFER_M, "around": "P1",
                        "geometry": {"type": "Point", "coordinates": [vh[0], vh[1]], "radius_m": ZONE_RADIUS_M}}}),
        json!({"id": "contact-ban", "legal_basis": "simulated", "valid_from": "2026-01-01T00:00:00Z",
               "rule": {"type": "contact_ban", "protected": "P1", "warning_radius_m": WARNING_M, "alarm_radius_m": ALARM_M}}),
    ];
    if curfew {
        orders.push(json!({"id": "curfew", "legal_basis": "simulated", "valid_from": "2026-01-01T00:00:00Z",
            "rule": {"type": "inclusion_zone", "grace_s": CURFEW_GRACE_S as u32,
                     "geometry": {"type": "Point", "coordinates": [oh[0], oh[1]], "radius_m": CURFEW_RADIUS_M},
                     "schedule": {"windows": [{"days": ["mon","tue","wed","thu","fri","sat","sun"], "start": "23:00", "end": "06:00"}]}}}));
    }
    // Their known places, as a case file holds them.
    let vw = world.point(v_work);
    let case_json = json!({
        "id": case_id, "risk": "high",
        "offender": {"device": offender_id, "registered_address": [oh[0], oh[1]]},
        "protected": [{"id": "P1", "device": victim_id, "places": [
            {"kind": "home", "position": [vh[0], vh[1]]},
            {"kind": "work", "position": [vw[0], vw[1]]},
        ]}],
        "orders": orders,
    })
    .to_string();
    Pair {
        info: PairInfo {
            case: case_id,
            offender: offender_id.clone(),
            victim: victim_id.clone(),
            incident: incident.map(|k| k.name().to_string()),
            curfew,
        },
        case_json,
        offender: Person {
            plan: offender,
            home: oh,
        },
        victim: Person {
            plan: victim,
            home: vh,
        },
        offender_device: Device {
            id: offender_id,
            dies_at: None,
            tampered_at,
            battery_start: rng.random_range(60.0..100.0),
            sparse: script.filter(|_| incident == Some(Incident::DriveBy)),
            shielded: if incident == Some(Incident::DarkNearHer) {
                stays.clone()
            } else {
                Vec::new()
            },
        },
        victim_device: Device {
            id: victim_id,
            dies_at: victim_dies,
            tampered_at: None,
            battery_start: rng.random_range(60.0..100.0),
            sparse: None,
            shielded: Vec::new(),
        },
        curfew,
        script,
        stays,
    }
}

/// A day of following at a distance: to work as any day; to her
/// workplace, arriving a minute before he sets off after her; her way home
/// at her pace, seven to ten minutes behind her, for the first 70 % of her
/// journey; home. The following, seconds; none if she has no journey home.
fn follow_far(
    world: &World,
    rng: &mut ChaCha8Rng,
    plan: &mut Plan,
    her: &Plan,
    day: f64,
    work: NodeIndex,
    home: NodeIndex,
) -> Option<(f64, f64)> {
    let (leave, arrive) = first_journey_after(her, day + hours(15.0))?;
    let lag = rng.random_range(420.0..600.0);
    let turn_off = leave + 0.7 * (arrive - leave);
    let her_work = world.graph.nearest_drivable(her.state_at(leave).position)?;
    plan.stay_until(day + hours(rng.random_range(7.0..8.5)), true);
    plan.go(world, work, Mode::Car);
    let mut trial = plan.clone();
    let set_off = trial.end();
    trial.go(world, her_work, Mode::Car);
    let journey = trial.end() - set_off;
    plan.stay_until(leave + lag - 60.0 - journey, true);
    plan.go(world, her_work, Mode::Car);
    plan.stay_until(leave + lag, false);
    let from = plan.end();
    for leg in &her.legs {
        let crate::world::Leg::Move {
            from: start,
            points,
            times,
            mode,
            ..
        } = leg
        else {
            continue;
        };
        if *start < leave || *start >= turn_off {
            continue;
        }
        let keep = times.iter().take_while(|t| **t <= turn_off).count();
        if keep < 2 {
            break;
        }
        plan.stay_until(times[0] + lag, false);
        plan.travel(
            points[..keep].to_vec(),
            &speeds_along(&points[..keep], &times[..keep]),
            *mode,
        );
    }
    let to = plan.end();
    plan.go(world, home, Mode::Car);
    Some((from, to))
}

/// An evening of a pattern near her home: the plan's stay, seconds.
type Evening = fn(&World, &mut ChaCha8Rng, &mut Plan, f64, LonLat, NodeIndex) -> (f64, f64);

/// Where and how long an evening near her home is spent.
struct EveningOut {
    /// When he sets off, hours into the day.
    leave_h: std::ops::Range<f64>,
    /// How far from her home he parks, metres.
    spot_m: std::ops::Range<f64>,
    /// How long he stays, seconds.
    stay_s: std::ops::Range<f64>,
}

/// By car to a spot near her home, a while parked there, home again: when
/// he arrived and when he left, seconds.
fn park_near_her(
    world: &World,
    rng: &mut ChaCha8Rng,
    plan: &mut Plan,
    (day, her_home, home): (f64, LonLat, NodeIndex),
    out: EveningOut,
) -> (f64, f64) {
    plan.stay_until(day + hours(rng.random_range(out.leave_h)), true);
    let spot = world.place_near(rng, her_home, out.spot_m.start, out.spot_m.end);
    plan.go(world, spot, Mode::Car);
    let arrive = plan.end();
    plan.stay_until(arrive + rng.random_range(out.stay_s), false);
    let leave = plan.end();
    plan.go(world, home, Mode::Car);
    (arrive, leave)
}

/// An evening of a slow burn: by car to a spot 700 m to 1.3 km from her
/// home (outside every warning radius while she is in), 15 to 40 minutes
/// parked there, home again. The stay, seconds.
fn watch_her_home(
    world: &World,
    rng: &mut ChaCha8Rng,
    plan: &mut Plan,
    day: f64,
    her_home: LonLat,
    home: NodeIndex,
) -> (f64, f64) {
    let out = EveningOut {
        leave_h: 19.0..20.5,
        spot_m: 700.0..1300.0,
        stay_s: 900.0..2400.0,
    };
    park_near_her(world, rng, plan, (day, her_home, home), out)
}

/// An evening in the dark: by car to a spot 350 to 700 m from her home,
/// 20 to 45 minutes there, home again, the bracelet in foil from half a
/// minute before he parks until a minute after he leaves. The time it is
/// shielded, seconds.
fn wait_near_her_in_the_dark(
    world: &World,
    rng: &mut ChaCha8Rng,
    plan: &mut Plan,
    day: f64,
    her_home: LonLat,
    home: NodeIndex,
) -> (f64, f64) {
    let out = EveningOut {
        leave_h: 19.0..21.0,
        spot_m: 350.0..700.0,
        stay_s: 1200.0..2700.0,
    };
    let (arrive, leave) = park_near_her(world, rng, plan, (day, her_home, home), out);
    (arrive - 30.0, leave + 60.0)
}

/// By car from `a` past her workplace to `b`, on the road nearest it: a
/// car routed to the place itself would be walked down a cycle path at her
/// door (see `RoadGraph::route`).
fn drive_past(world: &World, plan: &mut Plan, her_work: NodeIndex, a: NodeIndex, b: NodeIndex) {
    let past = world
        .graph
        .nearest_drivable(world.point(her_work))
        .unwrap_or(her_work);
    plan.go(world, a, Mode::Car);
    plan.go(world, past, Mode::Car);
    plan.go(world, b, Mode::Car);
}

/// The middle of the longest stretch of her first journey after `after`
/// that moves faster than a walk: where a stranger could share her tram,
/// road or cycle path for a while.
struct Ride {
    points: Vec<LonLat>,
    times: Vec<f64>,
    mode: Mode,
}

fn shared_ride(plan: &Plan, after: f64) -> Option<Ride> {
    let (leave, arrive) = first_journey_after(plan, after)?;
    // Her stretches in a vehicle (segments faster than 4 m/s), the longest.
    let mut best: Option<Ride> = None;
    let span = |times: &[f64]| times.last().map_or(0.0, |l| l - times[0]);
    for leg in &plan.legs {
        let crate::world::Leg::Move {
            from,
            to,
            points,
            times,
            mode,
        } = leg
        else {
            continue;
        };
        if *from < leave || *to > arrive || *mode == Mode::Foot {
            continue;
        }
        // A slow end after the last point closes the last run.
        let speeds = speeds_along(points, times).into_iter().chain([0.0]);
        let mut run: Vec<usize> = Vec::new();
        for (k, speed) in speeds.enumerate().skip(1) {
            if speed > 4.0 {
                if run.is_empty() {
                    run.push(k - 1);
                }
                run.push(k);
                continue;
            }
            let run_times: Vec<f64> = run.iter().map(|&i| times[i]).collect();
            if span(&run_times) > best.as_ref().map_or(0.0, |b| span(&b.times)) {
                best = Some(Ride {
                    points: run.iter().map(|&i| points[i]).collect(),
                    times: run_times,
                    mode: *mode,
                });
            }
            run.clear();
        }
    }
    // Its middle half: he joins after she set off and leaves before she
    // arrives.
    let ride = best.filter(|r| span(&r.times) >= 300.0)?;
    let (start, end) = (ride.times[0], ride.times[ride.times.len() - 1]);
    let (a, b) = (start + 0.25 * (end - start), start + 0.75 * (end - start));
    let keep: Vec<usize> = (0..ride.points.len())
        .filter(|&i| ride.times[i] >= a && ride.times[i] <= b)
        .collect();
    (keep.len() >= 3).then(|| Ride {
        points: keep.iter().map(|&i| ride.points[i]).collect(),
        times: keep.iter().map(|&i| ride.times[i]).collect(),
        mode: ride.mode,
    })
}

/// Her errand from work at midday over the motorway nearest it (1 to 6 km
/// away: not the road past her door): on at the nearest junction, 4 km or
/// more along it, back to work. The motorway stretch, as a ride to share.
fn errand_on_the_ring(
    world: &World,
    rng: &mut ChaCha8Rng,
    plan: &mut Plan,
    day: f64,
    work: NodeIndex,
) -> Option<Ride> {
    plan.stay_until(day + hours(rng.random_range(11.0..14.0)), true);
    let run = world
        .graph
        .motorway_run(plan.position(), 1000.0..6000.0, 4000.0)?;
    let entry = world.graph.nearest(run[0])?;
    plan.go(world, entry, Mode::Car);
    let speeds: Vec<f64> = run
        .iter()
        .map(|_| Mode::Car.speed_mps(crate::geodata::WayClass::Motorway))
        .collect();
    plan.travel(run, &speeds, Mode::Car);
    let ride = match plan.legs.last() {
        Some(crate::world::Leg::Move { points, times, .. }) => Ride {
            points: points.clone(),
            times: times.clone(),
            mode: Mode::Car,
        },
        _ => return None,
    };
    plan.go(world, work, Mode::Car);
    Some(ride)
}

/// His first day with a shared ride: to the ride's start (for a tram or
/// metro a few minutes early, waiting at the stop; on a road as she comes
/// by: nobody waits on a motorway), along it a few seconds behind or ahead
/// of her, then to work and home as any day.
fn ride_along(
    world: &World,
    rng: &mut ChaCha8Rng,
    plan: &mut Plan,
    ride: &Ride,
    work: NodeIndex,
    home: NodeIndex,
    day: f64,
) {
    // Seconds behind or ahead of her: up to 8 on a tram, 120 m at speed.
    let length: f64 = ride.points.windows(2).map(|w| distance_m(w[0], w[1])).sum();
    let duration = ride.times[ride.times.len() - 1] - ride.times[0];
    let spread_s = (120.0 * duration / length.max(1.0)).min(8.0);
    let start = ride.times[0] + rng.random_range(-spread_s..spread_s);
    // Setting off in time to be where he joins her route when she is.
    // To a tram stop by car and on foot; onto a road or cycle path the
    // way she rides it, not walking up to it as she comes by.
    let by = if ride.mode == Mode::Transit {
        Mode::Car
    } else {
        ride.mode
    };
    let to_the_stop = |plan: &mut Plan| {
        if let Some(stop) = world.graph.nearest(ride.points[0]) {
            plan.go(world, stop, by);
        }
        plan.travel(
            vec![plan.position(), ride.points[0]],
            &[0.0, 1.4],
            Mode::Foot,
        );
    };
    let mut trial = plan.clone();
    let set_off = trial.end();
    to_the_stop(&mut trial);
    let journey = trial.end() - set_off;
    // On a road he arrives as he would join it, moving: a stop would let
    // the bracelet fall back to its idle interval for the first minute.
    let early = if ride.mode == Mode::Transit {
        rng.random_range(60.0..240.0)
    } else {
        0.0
    };
    plan.stay_until(start - journey - early, true);
    to_the_stop(plan);
    plan.stay_until(start, false);
    plan.travel(
        ride.points.clone(),
        &speeds_along(&ride.points, &ride.times),
        ride.mode,
    );
    plan.go(world, work, Mode::Car);
    plan.stay_until(day + hours(rng.random_range(16.0..18.0)), true);
    plan.go(world, home, Mode::Car);
}

/// The speed on the way leading to each point of a timed path (the
/// first is unused), as [`Plan::travel`] takes it: to follow someone's path
/// at their pace.
fn speeds_along(points: &[LonLat], times: &[f64]) -> Vec<f64> {
    std::iter::once(0.0)
        .chain(
            (1..points.len()).map(|k| {
                distance_m(points[k - 1], points[k]) / (times[k] - times[k - 1]).max(0.05)
            }),
        )
        .collect()
}

/// Her first journey after `after`: when she sets off, and when she
/// arrives (the next stay longer than five minutes).
fn first_journey_after(plan: &Plan, after: f64) -> Option<(f64, f64)> {
    let mut start = None;
    for leg in &plan.legs {
        match leg {
            crate::world::Leg::Move { from, .. } if *from >= after && start.is_none() => {
                start = Some(*from)
            }
            crate::world::Leg::Stay { from, to, .. } if start.is_some() && to - from > 300.0 => {
                return start.map(|s| (s, *from));
            }
            _ => {}
        }
    }
    None
}

/// Local time of day in hours for `t` seconds after the start (midnight).
fn local_hour(t: f64) -> f64 {
    (t / 3600.0).rem_euclid(24.0)
}

fn in_curfew(t: f64) -> bool {
    let h = local_hour(t);
    !(CURFEW_TO_H..CURFEW_FROM_H).contains(&h)
}

/// One attempt of a device's receiver at a regular fix, and its state
/// after it: what an answer between two attempts starts from.
#[derive(Debug, Clone, Copy)]
struct Attempt {
    t: f64,
    drift: [f64; 2],
    failed: bool,
    /// The sequence number of its last fix.
    seq: u64,
    /// When it last had a fix.
    last_fix: Option<f64>,
}

/// One device's messages over the horizon, and its receiver's attempts.
#[allow(clippy::too_many_arguments)]
fn emit_device(
    world: &World,
    config: &SimConfig,
    rng: &mut ChaCha8Rng,
    device: &Device,
    person: &Person,
    her_home: Option<LonLat>,
    horizon: f64,
    start_ms: i64,
    out: &mut Vec<Message>,
) -> Vec<Attempt> {
    let mut attempts = Vec::new();
    let noise = &config.scenario.noise;
    let iv = &config.scenario.intervals;
    let unit = Normal::new(0.0, 1.0).expect("a valid normal");
    let fix_topic = format!("kordon/v1/devices/{}/fix", device.id);
    let status_topic = format!("kordon/v1/devices/{}/status", device.id);
    let mut drift = [0.0f64; 2];
    let mut last_fix: Option<f64> = None;
    let mut last_drift_t = 0.0;
    let mut seq = 0u64;
    let mut tamper_reported = false;
    let mut last_attempt_failed = false;
    let mut t = rng.random_range(0.0..iv.idle_s);
    let mut next_status = rng.random_range(0.0..iv.status_s);
    let end = device.dies_at.unwrap_or(horizon).min(horizon);
    let curve = battery_curve(device, person, her_home.is_some(), horizon);
    let battery = |t: f64| -> u8 { curve.level(t) };
    let publish_delay = |rng: &mut ChaCha8Rng| rng.random_range(200.0..2500.0);
    // Doppler noise from a stream of its own, so that adding speeds to the
    // fixes left every position and time as it was.
    let mut doppler_rng = ChaCha8Rng::seed_from_u64(
        config.seed
            ^ device
                .id
                .bytes()
                .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b))),
    );
    doppler_rng.set_stream(2);
    while t < end {
        // Statuses on their own schedule, before the fix they precede.
        while next_status <= t {
            let strap = if device.tampered_at.is_some_and(|at| next_status >= at) {
                "tampered"
            } else {
                "ok"
            };
            let payload = json!({
                "ts": start_ms + (next_status * 1000.0) as i64,
                "strap": strap,
                "gps": if last_attempt_failed { "no_fix" } else { "ok" },
                "batt": battery(next_status),
                "charging": curve.charging(next_status),
            });
            out.push(Message {
                at_ms: start_ms + (next_status * 1000.0 + publish_delay(rng)) as i64,
                topic: status_topic.clone(),
                payload: payload.to_string().into_bytes(),
            });
            next_status += iv.status_s;
        }
        // The strap cut is reported at once.
        if let Some(at) = device.tampered_at.filter(|at| !tamper_reported && *at <= t) {
            tamper_reported = true;
            out.push(Message {
                at_ms: start_ms + (at * 1000.0 + publish_delay(rng)) as i64,
                topic: status_topic.clone(),
                payload: json!({"ts": start_ms + (at * 1000.0) as i64, "strap": "tampered", "gps": "ok", "batt": battery(at)})
                    .to_string()
                    .into_bytes(),
            });
        }
        let state = person.plan.state_at(t);
        // Slow drift: an Ornstein-Uhlenbeck walk.
        let dt = (t - last_drift_t).max(0.0);
        let keep = (-dt / noise.drift_tau_s).exp();
        let step = noise.drift_m * (1.0 - keep * keep).sqrt();
        drift = [
            drift[0] * keep + step * unit.sample(rng),
            drift[1] * keep + step * unit.sample(rng),
        ];
        last_drift_t = t;
        let fix = if device.shielded_at(t) {
            None
        } else {
            gps_fix(world, rng, noise, &unit, state, drift, t, last_fix)
        };
        last_attempt_failed = fix.is_none();
        if let Some((position, accuracy)) = fix {
            seq += 1;
            last_fix = Some(t);
            let (lat_e7, lon_e7, acc_dm) = fix_units(position, accuracy);
            let (speed, heading) = doppler(&person.plan, t, &mut doppler_rng, &unit);
            out.push(Message {
                at_ms: start_ms + (t * 1000.0 + publish_delay(rng)) as i64,
                topic: fix_topic.clone(),
                payload: fix_payload_with_velocity(
                    start_ms + (t * 1000.0) as i64,
                    lat_e7,
                    lon_e7,
                    acc_dm,
                    seq,
                    battery(t),
                    speed,
                    heading,
                ),
            });
        }
        attempts.push(Attempt {
            t,
            drift,
            failed: last_attempt_failed,
            seq,
            last_fix,
        });
        let pursuit = her_home.is_some_and(|home| {
            distance_m(state.position, home) < iv.pursuit_within_m + ZONE_RADIUS_M
        });
        t += if pursuit {
            iv.pursuit_s
        } else if state.moving {
            device.moving_interval(iv, t)
        } else {
            iv.idle_s
        };
    }
    attempts
}

/// What the receiver measures of its own movement at `t` (Doppler): the
/// true speed over the two seconds around it, within about 0.3 m/s, and
/// the heading within a few degrees once it moves at walking pace.
fn doppler(plan: &Plan, t: f64, rng: &mut ChaCha8Rng, unit: &Normal<f64>) -> (f64, Option<f64>) {
    let (a, b) = (
        plan.state_at((t - 1.0).max(0.0)).position,
        plan.state_at(t + 1.0).position,
    );
    let metres = distance_m(a, b);
    let speed = (metres / 2.0 + 0.3 * unit.sample(rng)).max(0.0);
    let heading = (metres >= 2.0).then(|| {
        // Degrees of longitude shrink with the cosine of latitude.
        let east = (b[0] - a[0]) * a[1].to_radians().cos();
        let north = b[1] - a[1];
        (east.atan2(north).to_degrees() + 4.0 * unit.sample(rng)).rem_euclid(360.0)
    });
    (speed, heading)
}

/// A fix in the units of the messages: degrees × 10⁷, decimetres.
fn fix_units(position: LonLat, accuracy: f64) -> (i32, i32, u16) {
    (
        (position[1] * 1e7).round() as i32,
        (position[0] * 1e7).round() as i32,
        (accuracy * 10.0).round().clamp(0.0, f64::from(u16::MAX)) as u16,
    )
}

/// What her device would answer if asked for a fresh position, every
/// [`ANSWER_EVERY_S`] along her true path: the same receiver as her regular
/// fixes. Nothing once the device is dead or past the horizon; nothing
/// indoors when its last regular attempt found no fix (her status says
/// `gps: no_fix`; a request does not bring the sky back), and otherwise
/// indoors the same chance of none as any attempt. The slow drift goes on
/// from its value at her last attempt, cold starts count from her last
/// fix, and the multipath of where she is applies.
#[allow(clippy::too_many_arguments)]
fn device_answers(
    world: &World,
    config: &SimConfig,
    rng: &mut ChaCha8Rng,
    device: &Device,
    person: &Person,
    attempts: &[Attempt],
    horizon: f64,
    start_ms: i64,
) -> DeviceAnswers {
    let noise = &config.scenario.noise;
    let unit = Normal::new(0.0, 1.0).expect("a valid normal");
    let curve = battery_curve(device, person, false, horizon);
    let end = device.dies_at.unwrap_or(horizon).min(horizon);
    let every = f64::from(ANSWER_EVERY_S);
    let samples = (horizon / every).ceil() as usize;
    let mut fixes = Vec::with_capacity(samples);
    let mut next = 0;
    for k in 0..samples {
        let t = k as f64 * every;
        while next < attempts.len() && attempts[next].t <= t {
            next += 1;
        }
        let before = next.checked_sub(1).map_or(
            Attempt {
                t: 0.0,
                drift: [0.0; 2],
                failed: false,
                seq: 0,
                last_fix: None,
            },
            |i| attempts[i],
        );
        let batt = curve.level(t);
        if t >= end {
            fixes.push(None);
            continue;
        }
        let state = person.plan.state_at(t);
        if state.indoor && before.failed {
            fixes.push(None);
            continue;
        }
        let keep = (-(t - before.t).max(0.0) / noise.drift_tau_s).exp();
        let step = noise.drift_m * (1.0 - keep * keep).sqrt();
        let drift = [
            before.drift[0] * keep + step * unit.sample(rng),
            before.drift[1] * keep + step * unit.sample(rng),
        ];
        let fix = gps_fix(world, rng, noise, &unit, state, drift, t, before.last_fix);
        fixes.push(fix.map(|(position, accuracy)| {
            let (lat_e7, lon_e7, acc_dm) = fix_units(position, accuracy);
            AnswerFix {
                lat_e7,
                lon_e7,
                acc_dm,
                batt,
                seq: before.seq,
            }
        }));
    }
    DeviceAnswers {
        device: device.id.clone(),
        every_s: ANSWER_EVERY_S,
        start_ms,
        fixes,
    }
}

/// A device's battery, minute by minute: it drains while worn (faster on
/// the move) and charges on the charger at home in its owner's charging
/// hours (a bracelet 21:00–23:00, a phone overnight); a dying device is
/// never charged and runs out at its time.
struct BatteryCurve {
    levels: Vec<f64>,
    charging: Vec<bool>,
}

impl BatteryCurve {
    fn index(&self, t: f64) -> usize {
        ((t / 60.0) as usize).min(self.levels.len().saturating_sub(1))
    }

    fn level(&self, t: f64) -> u8 {
        self.levels[self.index(t)].round().clamp(0.0, 100.0) as u8
    }

    fn charging(&self, t: f64) -> bool {
        self.charging[self.index(t)]
    }
}

fn battery_curve(device: &Device, person: &Person, bracelet: bool, horizon: f64) -> BatteryCurve {
    let minutes = (horizon / 60.0) as usize + 2;
    let mut levels = Vec::with_capacity(minutes);
    let mut charging = Vec::with_capacity(minutes);
    let mut level = device.battery_start;
    for m in 0..minutes {
        let t = m as f64 * 60.0;
        let state = person.plan.state_at(t);
        let hour = local_hour(t);
        let charge_hours = if bracelet {
            (21.0..23.0).contains(&hour)
        } else {
            !(7.0..23.0).contains(&hour)
        };
        let at_home = distance_m(state.position, person.home) < 50.0;
        let on_charger = device.dies_at.is_none() && charge_hours && at_home;
        match device.dies_at {
            Some(dies) => level = device.battery_start * (1.0 - t / dies).max(0.0),
            None if on_charger => level = (level + 40.0 / 60.0).min(100.0),
            None => {
                let per_hour = if state.moving { 3.0 } else { 1.5 };
                level = (level - per_hour / 60.0).max(1.0);
            }
        }
        levels.push(level);
        charging.push(on_charger && level < 100.0);
    }
    BatteryCurve { levels, charging }
}

/// What the receiver reports for a true state, or nothing (indoors).
#[allow(clippy::too_many_arguments)]
fn gps_fix(
    world: &World,
    rng: &mut ChaCha8Rng,
    noise: &Noise,
    unit: &Normal<f64>,
    state: State,
    drift: [f64; 2],
    t: f64,
    last_fix: Option<f64>,
) -> Option<(LonLat, f64)> {
    if state.indoor && rng.random_bool(noise.indoor_dropout) {
        return None;
    }
    let range = if state.indoor {
        noise.indoor_accuracy_m
    } else {
        noise.outdoor_accuracy_m
    };
    let accuracy = rng.random_range(range[0]..range[1]);
    // The reported accuracy is the 68 % radius: per-axis sigma = acc / 1.51.
    let sigma = accuracy / 1.509;
    let mut east = sigma * unit.sample(rng) + drift[0];
    let mut north = sigma * unit.sample(rng) + drift[1];
    let cold = last_fix.is_none_or(|l| t - l > noise.cold_start_after_s)
        && rng.random_bool(noise.cold_start_chance);
    let multipath_rate = if world.is_canyon(state.position) {
        noise.canyon_multipath
    } else {
        noise.open_multipath
    };
    let outlier = if cold {
        Some(noise.cold_start_error_m)
    } else if rng.random_bool(multipath_rate) {
        Some(noise.multipath_error_m)
    } else {
        None
    };
    if let Some([lo, hi]) = outlier {
        let r = rng.random_range(lo..hi);
        let a = rng.random_range(0.0..std::f64::consts::TAU);
        east += r * a.cos();
        north += r * a.sin();
    }
    Some((offset(state.position, east, north), accuracy))
}

/// The ground truth of a pair, from the true positions every 2 s.
fn pair_truth(config: &SimConfig, pair: &Pair, horizon: f64) -> Vec<Truth> {
    let step = 2.0;
    let mut out = Vec::new();
    let label = pair.info.incident.clone();
    // What each script means to do: an approach is about her home (and
    // her, if she is in), a follow about her, a curfew break about curfew.
    let she_is_in = |t: f64| {
        distance_m(pair.victim.plan.state_at(t).position, pair.victim.home) <= ZONE_RADIUS_M
    };
    let intent = |kind: TruthKind, from: f64, to: f64| {
        let meant = match pair.info.incident.as_deref() {
            // Driving past her on his way there is not the approach.
            Some("approach_home") => {
                kind == TruthKind::Zone || (kind == TruthKind::Proximity && she_is_in(from))
            }
            Some("follow") => matches!(kind, TruthKind::Proximity | TruthKind::Zone),
            Some("curfew_break") => kind == TruthKind::Curfew,
            _ => false,
        };
        meant && pair.script.is_some_and(|(a, b)| from <= b && to >= a)
    };
    let iv = &config.scenario.intervals;
    // The yardstick for delay: the bracelet's fix interval around the onset
    // (someone who arrives and stops reports at the idle rate from then);
    // for a contact ban the slower of both devices', as both fixes count.
    let interval_around = |kind: TruthKind, t: f64| {
        let s = pair.offender.plan.state_at(t);
        let bracelet =
            if distance_m(s.position, pair.victim.home) < iv.pursuit_within_m + ZONE_RADIUS_M {
                iv.pursuit_s
            } else if s.moving {
                pair.offender_device.moving_interval(iv, t)
            } else {
                iv.idle_s
            };
        if matches!(kind, TruthKind::Proximity | TruthKind::Encounter) {
            let hers = if pair.victim.plan.state_at(t).moving {
                iv.moving_s
            } else {
                iv.idle_s
            };
            bracelet.max(hers)
        } else {
            bracelet
        }
    };
    let push = |kind: TruthKind, from: f64, to: f64, intent: bool, out: &mut Vec<Truth>| {
        out.push(Truth {
            fix_interval_s: interval_around(kind, from).max(interval_around(kind, from + 30.0)),
            case: pair.info.case.clone(),
            kind,
            start_ms: config.start.as_millisecond() + (from * 1000.0) as i64,
            end_ms: config.start.as_millisecond() + (to * 1000.0) as i64,
            intent,
            incident: label.clone(),
        });
    };
    // Intervals per kind, gaps under a minute merged: someone hovering at
    // 200 m is one episode, as for the engine.
    let mut spans: [Vec<(f64, f64)>; 3] = Default::default();
    let mut since: [Option<f64>; 3] = [None; 3];
    let mut t = 0.0;
    while t <= horizon + step {
        let o = pair.offender.plan.state_at(t).position;
        let v = pair.victim.plan.state_at(t).position;
        let flags = [
            t <= horizon && distance_m(o, pair.victim.home) <= ZONE_RADIUS_M,
            t <= horizon && distance_m(o, v) <= ALARM_M,
            t <= horizon
                && pair.curfew
                && in_curfew(t)
                && distance_m(o, pair.offender.home) > CURFEW_RADIUS_M,
        ];
        for k in 0..3 {
            match (flags[k], since[k]) {
                (true, None) => since[k] = Some(t),
                (false, Some(from)) => {
                    since[k] = None;
                    match spans[k].last_mut() {
                        Some(last) if from - last.1 < 60.0 => last.1 = t,
                        _ => spans[k].push((from, t)),
                    }
                }
                _ => {}
            }
        }
        t += step;
    }
    for (k, kind) in [TruthKind::Zone, TruthKind::Proximity, TruthKind::Curfew]
        .into_iter()
        .enumerate()
    {
        for &(from, to) in &spans[k] {
            let (from, to) = (from, to.min(horizon));
            // Out of curfew only counts after the grace.
            let from = if kind == TruthKind::Curfew {
                from + CURFEW_GRACE_S
            } else {
                from
            };
            if to <= from {
                continue;
            }
            let meant = intent(kind, from, to);
            // The scripted passing-by or shared ride, not a chance meeting
            // on another day of the same pair.
            let scripted = pair.script.is_some_and(|(a, b)| from <= b && to >= a);
            let kind = if kind == TruthKind::Proximity
                && !meant
                && scripted
                && matches!(
                    pair.info.incident.as_deref(),
                    Some("pass_by" | "co_travel" | "ring_co_travel")
                ) {
                TruthKind::Encounter
            } else {
                kind
            };
            push(kind, from, to, meant, &mut out);
        }
    }
    if let Some(at) = pair.offender_device.tampered_at {
        push(TruthKind::Tamper, at, at + 60.0, true, &mut out);
    }
    for &(from, to) in pair.stays.iter().filter(|(from, _)| *from < horizon) {
        push(
            TruthKind::PatternStay,
            from,
            to.min(horizon),
            true,
            &mut out,
        );
    }
    if let Some(at) = pair.victim_device.dies_at {
        if at < horizon {
            push(TruthKind::VictimOffline, at, horizon, false, &mut out);
        }
    }
    out
}
