//! The simulator: its road graph, reproducible recordings, and the scorer
//! on recordings with known answers.

use jiff::Timestamp;
use kordon_sim::graph::Mode;
use kordon_sim::recording::{Message, PairInfo, Truth, TruthKind, FORMAT};
use kordon_sim::score::{read_alerts, score};
use kordon_sim::sim::default_start;
use kordon_sim::{generate, Recording, Scenario, SimConfig, World};
use rand::SeedableRng;

fn world() -> &'static (World, kordon_sim::graph::Connectivity) {
    static WORLD: std::sync::OnceLock<(World, kordon_sim::graph::Connectivity)> =
        std::sync::OnceLock::new();
    WORLD.get_or_init(|| World::load().expect("the shipped geodata loads"))
}

#[test]
fn the_largest_component_covers_most_of_the_road_length_and_random_places_route() {
    let (world, connectivity) = world();
    eprintln!("{connectivity}");
    assert!(connectivity.largest_share > 0.8, "{connectivity}");
    assert!(connectivity.total_length_km > 3000.0, "{connectivity}");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    let mut failures = Vec::new();
    for _ in 0..40 {
        let (a, b) = (world.random_place(&mut rng), world.random_place(&mut rng));
        for mode in [Mode::Car, Mode::Bike] {
            match world.graph.route(a, b, mode) {
                Some(route) => {
                    assert_eq!(route.first().map(|p| p.0), Some(world.point(a)));
                    assert_eq!(route.last().map(|p| p.0), Some(world.point(b)));
                }
                None => failures.push((a, b, mode)),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of 80 routes missing: {failures:?}",
        failures.len()
    );
}

fn config(seed: u64, scenario: &str) -> SimConfig {
    let text = std::fs::read_to_string(format!(
        "{}/scenarios/{scenario}.toml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    SimConfig {
        seed,
        pairs: 4,
        hours: 16,
        start: default_start(),
        scenario: Scenario::parse(&text).unwrap(),
        scenario_text: text,
    }
}

#[test]
fn the_same_seed_gives_byte_identical_recordings() {
    let (world, _) = world();
    let first = generate(world, &config(42, "standard_day")).to_bytes();
    let second = generate(world, &config(42, "standard_day")).to_bytes();
    assert!(first == second, "same seed, different bytes");
    let other = generate(world, &config(43, "standard_day")).to_bytes();
    assert!(first != other, "another seed, the same bytes");
    let back = Recording::from_bytes(&first).unwrap();
    assert_eq!(back.seed, 42);
    assert!(back.fixes() > 1000);
    assert!(
        back.messages.windows(2).all(|w| w[0].at_ms <= w[1].at_ms),
        "in publication order"
    );
}

#[test]
fn every_shipped_scenario_parses_and_a_scripted_approach_has_its_truth() {
    for entry in std::fs::read_dir(format!("{}/scenarios", env!("CARGO_MANIFEST_DIR"))).unwrap() {
        let path = entry.unwrap().path();
        Scenario::parse(&std::fs::read_to_string(&path).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
    let (world, _) = world();
    let r = generate(world, &config(5, "approach_home"));
    assert!(r
        .pair_info
        .iter()
        .all(|p| p.incident.as_deref() == Some("approach_home")));
    for p in &r.pair_info {
        assert!(
            r.truth
                .iter()
                .any(|t| t.case == p.case && t.kind == TruthKind::Zone && t.intent),
            "case {} has no zone truth",
            p.case
        );
    }
}

#[test]
fn a_shared_ride_is_an_encounter_of_minutes_without_intent() {
    let (world, _) = world();
    let r = generate(world, &config(5, "co_travel"));
    let rides = r
        .pair_info
        .iter()
        .filter(|p| {
            r.truth.iter().any(|t| {
                t.case == p.case
                    && t.kind == TruthKind::Encounter
                    && !t.intent
                    && t.end_ms - t.start_ms >= 60_000
            })
        })
        .count();
    assert!(
        rides >= 3,
        "{rides} of 4 pairs shared a ride: {:?}",
        r.truth
    );
    assert!(
        r.truth.iter().all(|t| !t.intent),
        "no intent: {:?}",
        r.truth
    );
}

/// A motorway ride: her errand over the ring, him on it by chance, at a
/// motorway's speed for minutes, no intent.
#[test]
fn a_shared_ride_on_the_ring_is_an_encounter_at_motorway_speed() {
    let (world, _) = world();
    let r = generate(world, &config(5, "ring_co_travel"));
    let mut at_speed = 0;
    for p in &r.pair_info {
        let Some(ride) = r.truth.iter().find(|t| {
            t.case == p.case && t.kind == TruthKind::Encounter && t.end_ms - t.start_ms >= 120_000
        }) else {
            continue;
        };
        let topic = format!("kordon/v1/devices/{}/fix", p.offender);
        let fast = r
            .messages
            .iter()
            .filter(|m| m.topic == topic)
            .filter_map(|m| serde_json::from_slice::<serde_json::Value>(&m.payload).ok())
            .filter(|v| (ride.start_ms..=ride.end_ms).contains(&v["ts"].as_i64().unwrap_or(0)))
            .filter(|v| v["speed"].as_f64().unwrap_or(0.0) > 20.0)
            .count();
        if fast >= 4 {
            at_speed += 1;
        }
    }
    assert!(
        at_speed >= 3,
        "{at_speed} of 4 pairs rode the motorway together: {:?}",
        r.truth
    );
    assert!(
        r.truth.iter().all(|t| !t.intent),
        "no intent: {:?}",
        r.truth
    );
}

#[test]
fn a_motorway_run_goes_on_without_turning_back() {
    let (world, _) = world();
    // Near the Van Brienenoordbrug (A16).
    let run = world
        .graph
        .motorway_run([4.5600, 51.9050], 0.0..6000.0, 4000.0)
        .expect("a motorway within 6 km of the bridge");
    let length: f64 = run
        .windows(2)
        .map(|w| kordon_sim::geodata::distance_m(w[0], w[1]))
        .sum();
    assert!(length >= 4000.0, "{length}");
    let start_to_end = kordon_sim::geodata::distance_m(run[0], run[run.len() - 1]);
    assert!(
        start_to_end > 0.5 * length,
        "straight on, not back: {start_to_end} of {length}"
    );
}

/// Going dark near her: every other evening no fix of his within 1 km of
/// her home while his bracelet keeps saying `gps: no_fix`; each evening a
/// pattern stay.
#[test]
fn going_dark_near_her_leaves_no_fix_near_her_only_statuses() {
    let (world, _) = world();
    let mut config = config(6, "dark_near_her");
    config.hours = 24 * 3;
    let r = generate(world, &config);
    let mut evenings = 0;
    for p in &r.pair_info {
        let case: serde_json::Value = r
            .cases
            .iter()
            .map(|c| serde_json::from_str::<serde_json::Value>(c).unwrap())
            .find(|c| c["id"] == p.case.as_str())
            .unwrap();
        let home = &case["protected"][0]["places"][0]["position"];
        let home = [home[0].as_f64().unwrap(), home[1].as_f64().unwrap()];
        for stay in r
            .truth
            .iter()
            .filter(|t| t.case == p.case && t.kind == TruthKind::PatternStay)
        {
            evenings += 1;
            let during = |m: &&Message| (stay.start_ms..=stay.end_ms).contains(&m.at_ms);
            let fixes = regular_fixes(&r, &p.offender)
                .into_iter()
                .filter(|(ts, ..)| (stay.start_ms..=stay.end_ms).contains(ts))
                .count();
            assert_eq!(fixes, 0, "{}: a fix in the dark", p.case);
            let status = format!("kordon/v1/devices/{}/status", p.offender);
            let no_fix = r
                .messages
                .iter()
                .filter(|m| m.topic == status)
                .filter(during)
                .filter(|m| String::from_utf8_lossy(&m.payload).contains("no_fix"))
                .count();
            assert!(no_fix >= 3, "{}: {no_fix} statuses say no_fix", p.case);
            // His last fix before it was near her.
            let last = regular_fixes(&r, &p.offender)
                .into_iter()
                .rfind(|(ts, ..)| *ts < stay.start_ms)
                .unwrap();
            let d = kordon_sim::geodata::distance_m([last.1, last.2], home);
            assert!(d < 1500.0, "{}: last fix {d:.0} m from her home", p.case);
        }
    }
    assert!(evenings >= 6, "two evenings of four pairs: {evenings}");
}

fn ms(hhmmss: &str) -> i64 {
    format!("2026-11-30T{hhmmss}Z")
        .parse::<Timestamp>()
        .unwrap()
        .as_millisecond()
}

fn truth(kind: TruthKind, from: &str, to: &str, intent: bool) -> Truth {
    Truth {
        case: "SIM-0001".into(),
        kind,
        start_ms: ms(from),
        end_ms: ms(to),
        intent,
        incident: Some("approach_home".into()),
        fix_interval_s: 10.0,
    }
}

fn alert(id: &str, event: &str, kind: &str, ts: &str) -> String {
    format!(
        r#"{{"id":"{id}","event":"{event}","kind":"{kind}","case":"SIM-0001","role":"offender","ts":"2026-11-30T{ts}Z"}}"#
    )
}

#[test]
fn the_scorer_finds_a_missed_breach_a_false_alert_a_late_alert_and_an_encounter() {
    let recording = Recording {
        format: FORMAT,
        seed: 0,
        scenario: "hand-made".into(),
        scenario_toml: String::new(),
        pairs: 1,
        hours: 24,
        start_ms: ms("00:00:00"),
        cases: Vec::new(),
        pair_info: vec![PairInfo {
            case: "SIM-0001".into(),
            offender: "OFF-0001".into(),
            victim: "VIC-0001".into(),
            incident: Some("approach_home".into()),
            curfew: false,
        }],
        messages: Vec::<Message>::new(),
        truth: vec![
            // Caught 20 s late, after a warning that escalated.
            truth(TruthKind::Zone, "10:00:00", "10:10:00", true),
            // Never alerted.
            truth(TruthKind::Proximity, "12:00:00", "12:05:00", true),
            // Close without intent, alerted: an encounter, not false.
            truth(TruthKind::Encounter, "14:00:00", "14:01:00", false),
        ],
        answers: Vec::new(),
    };
    let lines = [
        alert("a", "opened", "zone_warning", "09:59:50"),
        alert("a", "updated", "zone_breach", "10:00:20"),
        alert("a", "cleared", "zone_breach", "10:12:00"),
        alert("b", "opened", "proximity_breach", "14:00:10"),
        alert("c", "opened", "zone_breach", "15:00:00"),
        alert("d", "opened", "gps_lost", "16:00:00"),
    ]
    .join("\n");
    let s = score(&recording, &read_alerts(&lines).unwrap());
    assert_eq!((s.detected, s.missed), (1, 1));
    assert_eq!((s.scripted_detected, s.scripted_missed), (1, 1));
    assert_eq!(s.false_alerts, 1);
    assert_eq!(s.encounter_alerts, 1);
    assert_eq!(s.delay_p50_s, Some(20.0));
    assert_eq!(s.delay_p95_s, Some(20.0));
    assert_eq!(s.delay_p95_fix_intervals, Some(2.0));
    assert!((s.false_alerts_per_pair_day - 1.0).abs() < 1e-9);
    assert_eq!(s.warnings, 1);
    assert!(
        s.missed_list[0].starts_with("SIM-0001 proximity"),
        "{:?}",
        s.missed_list
    );
    let json = serde_json::to_value(&s).unwrap();
    for key in [
        "detected",
        "missed",
        "false_alerts",
        "false_alerts_per_pair_day",
        "delay_p50_s",
        "delay_p95_s",
    ] {
        assert!(json.get(key).is_some(), "{key} in the JSON");
    }
    // A line that is no alert is named.
    assert!(read_alerts("{\"id\":1}")
        .unwrap_err()
        .starts_with("line 1:"));
}

/// The regular fixes of `device`: (time, lon, lat, seq).
fn regular_fixes(r: &Recording, device: &str) -> Vec<(i64, f64, f64, u64)> {
    let topic = format!("kordon/v1/devices/{device}/fix");
    r.messages
        .iter()
        .filter(|m| m.topic == topic)
        .map(|m| {
            let v: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
            (
                v["ts"].as_i64().unwrap(),
                v["lon"].as_f64().unwrap(),
                v["lat"].as_f64().unwrap(),
                v["seq"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// Her device's answers to a request for a fresh position: a sample every
/// 10 s of the day, a fix only where her receiver could get one. With every
/// indoor attempt failing, the night at home answers nothing and the fixes
/// it answers with are where her regular fixes put her, numbered after
/// them; they survive the recording's compact encoding.
#[test]
fn her_device_answers_only_where_it_could_get_a_fix() {
    let (world, _) = world();
    let mut config = config(8, "standard_day");
    config.scenario.noise.indoor_dropout = 1.0;
    let r = generate(world, &config);
    assert_eq!(r.answers.len(), r.pair_info.len());
    let midnight = default_start().as_millisecond();
    for (pair, answers) in r.pair_info.iter().zip(&r.answers) {
        assert_eq!(answers.device, pair.victim);
        assert_eq!(answers.every_s, 10);
        assert_eq!(answers.start_ms, midnight);
        assert_eq!(answers.fixes.len(), 16 * 360);
        // Before 07:00 she is at home, indoors: no fix, no answer.
        let night = 7 * 360;
        assert!(
            answers.fixes[..night].iter().all(Option::is_none),
            "{} answers from indoors",
            pair.victim
        );
        let fixes = regular_fixes(&r, &pair.victim);
        let some: Vec<_> = answers
            .fixes
            .iter()
            .enumerate()
            .filter_map(|(i, f)| f.map(|f| (midnight + i as i64 * 10_000, f)))
            .collect();
        assert!(
            some.len() > 30,
            "{} answers {} times",
            pair.victim,
            some.len()
        );
        for (at, fix) in some {
            // Outdoors every attempt of hers succeeds, at least once a
            // minute: a regular fix of hers lies within a minute, and near.
            let near = fixes
                .iter()
                .filter(|f| (f.0 - at).abs() <= 61_000)
                .map(|f| {
                    kordon_sim::geodata::distance_m([f1(fix.lon_e7), f1(fix.lat_e7)], [f.1, f.2])
                })
                .fold(f64::INFINITY, f64::min);
            assert!(near < 1500.0, "{} at {at}: {near} m", pair.victim);
            let seq = fixes.iter().filter(|f| f.0 <= at).map(|f| f.3).max();
            assert_eq!(fix.seq, seq.unwrap_or(0), "{} at {at}", pair.victim);
            assert!(fix.acc_dm >= 40 && fix.acc_dm <= 120, "outdoor accuracy");
        }
    }
    let back = Recording::from_bytes(&r.to_bytes()).unwrap();
    assert!(back.answers == r.answers, "answers change in the file");
}

fn f1(e7: i32) -> f64 {
    f64::from(e7) / 1e7
}

/// A dead device answers nothing; the answers do not change the messages.
#[test]
fn a_dead_device_answers_nothing_and_answers_leave_the_messages_as_they_were() {
    let (world, _) = world();
    let mut config = config(9, "victim_device_dies");
    config.hours = 24;
    let r = generate(world, &config);
    for (pair, answers) in r.pair_info.iter().zip(&r.answers) {
        let dead = r
            .truth
            .iter()
            .find(|t| t.case == pair.case && t.kind == TruthKind::VictimOffline)
            .expect("her device dies")
            .start_ms;
        let (alive, dead): (Vec<_>, Vec<_>) = answers
            .fixes
            .iter()
            .enumerate()
            .partition(|(i, _)| answers.start_ms + *i as i64 * 10_000 < dead);
        assert!(dead.iter().all(|(_, f)| f.is_none()), "{}", pair.victim);
        assert!(
            alive.iter().filter(|(_, f)| f.is_some()).count() > alive.len() / 2,
            "{} mostly answers while alive",
            pair.victim
        );
    }
    // With the standard noise indoors (some attempts fail), some of the
    // night at home answers and some does not.
    let night = &r.answers[0].fixes[..6 * 360];
    let none = night.iter().filter(|f| f.is_none()).count();
    assert!(none > 0 && none < night.len(), "{none} of {}", night.len());
}
