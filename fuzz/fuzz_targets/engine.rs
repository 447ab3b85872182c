//! The engine fed an arbitrary sequence of operations: fixes of both devices
//! of one or two cases (near a zone, near the other party, far away, at the
//! poles and the date line; any accuracy; timestamps moving forward, late,
//! very late, and ahead, which the decoder stamps as arrived), raw
//! fixes with any floats, status messages, ticks (also a wall clock stepping
//! back, with `KORDON_FUZZ_STRICT=1`), case upserts (synthetic cases and the
//! shipped config/cases, with their validity, risk, radii and schedules
//! varied) and removals, threshold changes, police queries, and
//! snapshot/restore.
//!
//! Invariants, after crates/core/tests/properties.rs:
//! - no panic, including the debug-build check at every tick that the timer
//!   queue missed nothing (`cargo fuzz` builds with debug assertions);
//! - the episode invariants of crates/core/tests/common/mod.rs (open once,
//!   update and clear only while open, one open episode per order, an ended
//!   id never reopens), plus: only clearings carry a reason, numbers finite;
//! - a restored snapshot carries on as the original: the scenario runs twice,
//!   once replacing the engine by `Engine::restore(&engine.snapshot())` at
//!   every `Restore` op, and both runs give the same outcomes and events
//!   (which also checks determinism);
//! - every event survives the journal (`Record::Event`) unchanged.
#![no_main]

use std::collections::HashMap;
use std::sync::OnceLock;

use arbitrary::Arbitrary;
use jiff::{SignedDuration, Timestamp};
use kordon_core::{
    Case, CaseId, Day, DeviceId, Disposition, Engine, EngineConfig, Event, Fix, GpsState,
    InputError, Offender, Order, OrderId, PersonId, ProtectedPerson, RiskLevel, Rule, Schedule,
    Status, StrapState, Window, ZoneGeometry,
};
use kordon_fuzz::{episode_invariants, journal_roundtrip};
use kordon_journal::Record;
use libfuzzer_sys::fuzz_target;

const MAX_OPS: usize = 192;

/// Kralingen (the synthetic cases and rtm-2026-0117), Charlois (the curfew
/// of rtm-2026-0342), the city centre (the ban of rtm-2026-0117).
const ANCHORS: [(f64, f64); 3] = [(51.9210, 4.5160), (51.8826, 4.4852), (51.9225, 4.4792)];

/// Far from everything, and where geodesy gets hard.
const FAR: [(f64, f64); 8] = [
    (52.3676, 4.9041),
    (89.9999, 10.0),
    (90.0, 180.0),
    (-90.0, -180.0),
    (-16.5, 179.9999),
    (-16.5, -179.9999),
    (0.0, 1e-9),
    (51.9210, -175.0),
];

/// Start instants: an ordinary Wednesday, the day before the clocks go
/// forward, the day before they go back (Europe/Amsterdam).
const STARTS: [&str; 3] = [
    "2026-11-25T10:00:00Z",
    "2027-03-27T12:00:00Z",
    "2027-10-30T12:00:00Z",
];

#[derive(Debug, Clone, Copy, Arbitrary)]
enum Dev {
    Off1,
    Vic1,
    Off2,
    Vic2,
    Unknown,
}

impl Dev {
    fn id(self) -> &'static str {
        match self {
            Dev::Off1 => "OFF-1",
            Dev::Vic1 => "VIC-1",
            Dev::Off2 => "OFF-2",
            Dev::Vic2 => "VIC-2",
            Dev::Unknown => "OFF-9",
        }
    }

    /// The party on the other side of its contact ban.
    fn other(self) -> &'static str {
        match self {
            Dev::Off1 => "VIC-1",
            Dev::Vic1 => "OFF-1",
            Dev::Off2 => "VIC-2",
            Dev::Vic2 => "OFF-2",
            Dev::Unknown => "VIC-1",
        }
    }
}

#[derive(Debug, Clone, Copy, Arbitrary)]
enum Pos {
    /// Decimetres east and north of an anchor.
    Near {
        anchor: u8,
        east: i16,
        north: i16,
    },
    /// Four-metre steps from the other party's last position.
    NearOther {
        east: i8,
        north: i8,
    },
    /// The device's own last position, again.
    Same,
    Far(u8),
}

#[derive(Debug, Clone, Copy, Arbitrary)]
enum When {
    /// The device clock is the server clock.
    Now,
    /// Delivered late by this many seconds.
    Late(u16),
    /// Buffered offline for this many minutes (the decoder takes 30 days).
    VeryLate(u16),
    /// Ahead of the server clock (the decoder takes 60 s, stamped as arrived).
    Ahead(#[allow(dead_code)] u8),
}

#[derive(Debug, Clone, Arbitrary)]
struct FixOp {
    dev: Dev,
    pos: Pos,
    acc_dm: u16,
    advance_s: u8,
    when: When,
    seq: Option<u8>,
    speed_cm_s: Option<u16>,
    heading_cdeg: Option<u16>,
    batt: Option<u8>,
    strap: Option<bool>,
}

#[derive(Debug, Clone, Arbitrary)]
struct StatusOp {
    dev: Dev,
    advance_s: u8,
    when: When,
    strap: Option<bool>,
    gps: Option<bool>,
    batt: Option<u8>,
    charging: Option<bool>,
}

#[derive(Debug, Clone, Copy)]
enum Template {
    /// Exclusion zone with a buffer, curfew, contact ban (properties.rs).
    Full,
    ContactOnly,
    /// A scheduled multipolygon ban with a hole and a polygon curfew.
    Zones,
    Shipped0117,
    Shipped0342,
}

/// rtm-2026-0117 holds a city-centre ban of a thousand vertices, which
/// takes milliseconds to validate and compile: one upsert in 32 uses it,
/// so that scenarios stay fast (the case_file target takes it every time).
impl<'a> Arbitrary<'a> for Template {
    fn arbitrary(u: &mut arbitrary::Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(match u8::arbitrary(u)? % 32 {
            0 => Template::Shipped0117,
            n => [
                Template::Full,
                Template::ContactOnly,
                Template::Zones,
                Template::Shipped0342,
            ][usize::from(n % 4)],
        })
    }

    fn size_hint(depth: usize) -> (usize, Option<usize>) {
        u8::size_hint(depth)
    }
}

#[derive(Debug, Clone, Arbitrary)]
struct Tweak {
    risk: u8,
    /// New order ids: the old orders are withdrawn, not carried on.
    rename: bool,
    /// Radii and buffers × (0.25 + n/64).
    scale: Option<u8>,
    /// Orders start this many minutes after the clock …
    from_min: Option<u8>,
    /// … or end this many minutes after it.
    until_min: Option<u16>,
    /// The curfew window: start hour, end hour, quarter hours.
    window: Option<(u8, u8, u8)>,
    grace_s: Option<u16>,
    /// The second case protects VIC-1 too, or has OFF-1 as its offender.
    share_victim: bool,
    share_offender: bool,
}

#[derive(Debug, Clone, Arbitrary)]
struct Thresholds {
    possible_confirmations: u8,
    clear_margin_m: u8,
    clear_min_s: u16,
    max_usable_accuracy_m: u16,
    stale_speed_dm_s: u8,
    position_max_age_s: u16,
    offline_after_s: u16,
    gps_lost_after_s: u16,
    battery_low_pct: u8,
    battery_critical_pct: u8,
    update_min_distance_change_m: u8,
}

impl Thresholds {
    /// `None` where the driver's validation would refuse it.
    fn config(&self) -> Option<EngineConfig> {
        let config = EngineConfig {
            possible_confirmations: self.possible_confirmations % 5,
            clear_margin_m: f64::from(self.clear_margin_m),
            clear_min_s: u32::from(self.clear_min_s % 1200),
            max_usable_accuracy_m: f64::from(self.max_usable_accuracy_m),
            stale_position_speed_mps: f64::from(self.stale_speed_dm_s) / 10.0,
            position_max_age_s: u32::from(self.position_max_age_s % 3600),
            offline_after_s: u32::from(self.offline_after_s % 3600),
            gps_lost_after_s: u32::from(self.gps_lost_after_s % 3600),
            battery_low_pct: self.battery_low_pct,
            battery_critical_pct: self.battery_critical_pct,
            update_min_distance_change_m: f64::from(self.update_min_distance_change_m),
            ..EngineConfig::default()
        };
        config.validate().is_ok().then_some(config)
    }
}

#[derive(Debug, Clone, Arbitrary)]
enum InitialConfig {
    Default,
    /// config/kordon.toml's `[engine]`.
    Shipped,
    Custom(Thresholds),
}

#[derive(Debug, Clone, Arbitrary)]
enum Op {
    Fix(FixOp),
    RawFix {
        dev: Dev,
        lat: f64,
        lon: f64,
        acc: f64,
        speed: Option<f64>,
        heading: Option<f64>,
        advance_s: u8,
    },
    Status(StatusOp),
    Tick {
        dt_s: u16,
    },
    /// The wall clock stepped back: a tick earlier than the last one. Only
    /// with `KORDON_FUZZ_STRICT=1` (fuzz/README.md, "Findings"); else a
    /// second tick at the same time.
    TickBack {
        back_s: u8,
    },
    Upsert {
        second: bool,
        template: Template,
        tweak: Tweak,
    },
    Remove {
        second: bool,
    },
    Reconfigure(Thresholds),
    /// Police on the street: bans at a point, devices near it.
    Query {
        pos: Pos,
        radius_m: u16,
    },
    Restore,
}

#[derive(Debug, Clone, Arbitrary)]
struct Scenario {
    start: u8,
    config: InitialConfig,
    first: (Template, Tweak),
    second: Option<(Template, Tweak)>,
    ops: Vec<Op>,
}

fn offset(origin: (f64, f64), east: f64, north: f64) -> (f64, f64) {
    let lat = origin.0 + north / 111_195.0;
    let lon = origin.1 + east / (111_195.0 * origin.0.to_radians().cos());
    (lat, lon)
}

fn ring(center: (f64, f64), half_side: f64) -> Vec<[f64; 2]> {
    let corners = [
        (-1.0, -1.0),
        (1.0, -1.0),
        (1.0, 1.0),
        (-1.0, 1.0),
        (-1.0, -1.0),
    ];
    corners
        .iter()
        .map(|(e, n)| {
            let (lat, lon) = offset(center, e * half_side, n * half_side);
            [lon, lat]
        })
        .collect()
}

fn every_day(start: (u8, u8), end: (u8, u8)) -> Schedule {
    use Day::*;
    let time = |(h, m): (u8, u8)| jiff::civil::Time::new(h as i8, m as i8, 0, 0).unwrap();
    Schedule {
        windows: vec![Window {
            days: vec![Mon, Tue, Wed, Thu, Fri, Sat, Sun],
            start: time(start),
            end: time(end),
        }],
    }
}

fn order(id: &str, rule: Rule) -> Order {
    Order {
        id: OrderId::from(id),
        legal_basis: "art. 38v Sr".into(),
        valid_from: "2026-01-01T00:00:00Z".parse().unwrap(),
        valid_until: Some("2028-01-01T00:00:00Z".parse().unwrap()),
        rule,
    }
}

fn contact_ban(warning: f64, alarm: f64) -> Rule {
    Rule::ContactBan {
        protected: PersonId::from("P1"),
        warning_radius_m: warning,
        alarm_radius_m: alarm,
    }
}

fn shipped(file: &'static str) -> &'static Case {
    static CASES: OnceLock<HashMap<&'static str, Case>> = OnceLock::new();
    let cases = CASES.get_or_init(|| {
        [
            (
                "0117",
                include_str!("../../config/cases/rtm-2026-0117.json"),
            ),
            (
                "0342",
                include_str!("../../config/cases/rtm-2026-0342.json"),
            ),
        ]
        .into_iter()
        .map(|(name, text)| (name, Case::from_json(text).expect("a shipped case")))
        .collect()
    });
    &cases[file]
}

fn build_case(second: bool, template: Template, tweak: &Tweak, clock: Timestamp) -> Case {
    let home = ANCHORS[0];
    let window = tweak
        .window
        .map(|(s, e, q)| ((s % 24, (q % 4) * 15), (e % 24, ((q / 4) % 4) * 15)))
        .unwrap_or(((11, 30), (13, 0)));
    let grace_s = tweak.grace_s.map_or(120, |g| u32::from(g % 3600));
    let mut case = match template {
        Template::Full => Case {
            id: CaseId::from("X"),
            risk: RiskLevel::High,
            offender: Offender {
                device: DeviceId::from("X"),
                language: Default::default(),
                registered_address: None,
            },
            protected: vec![],
            coordinators: vec![],
            orders: vec![
                order(
                    "zone",
                    Rule::ExclusionZone {
                        geometry: ZoneGeometry::Polygon {
                            coordinates: vec![ring(home, 200.0)],
                        },
                        warning_buffer_m: Some(150.0),
                        schedule: None,
                        around: None,
                        bracelet_warnings: None,
                    },
                ),
                order(
                    "curfew",
                    Rule::InclusionZone {
                        geometry: ZoneGeometry::Circle {
                            coordinates: [home.1, home.0],
                            radius_m: 300.0,
                        },
                        schedule: every_day(window.0, window.1),
                        grace_s,
                    },
                ),
                order("contact", contact_ban(600.0, 200.0)),
            ],
        },
        Template::ContactOnly => Case {
            id: CaseId::from("X"),
            risk: RiskLevel::Medium,
            offender: Offender {
                device: DeviceId::from("X"),
                language: Default::default(),
                registered_address: None,
            },
            protected: vec![],
            coordinators: vec![],
            orders: vec![order("contact", contact_ban(1000.0, 300.0))],
        },
        Template::Zones => {
            let outer = ring(ANCHORS[2], 400.0);
            let mut hole = ring(ANCHORS[2], 100.0);
            // GeoJSON: the outer ring counter-clockwise, holes clockwise.
            hole.reverse();
            Case {
                id: CaseId::from("X"),
                risk: RiskLevel::Low,
                offender: Offender {
                    device: DeviceId::from("X"),
                    language: Default::default(),
                    registered_address: None,
                },
                protected: vec![],
                coordinators: vec![],
                orders: vec![
                    order(
                        "ban-night",
                        Rule::ExclusionZone {
                            geometry: ZoneGeometry::MultiPolygon {
                                coordinates: vec![
                                    vec![outer, hole],
                                    vec![ring(offset(home, 1500.0, 0.0), 150.0)],
                                ],
                            },
                            warning_buffer_m: Some(100.0),
                            schedule: Some(every_day(window.1, window.0)),
                            around: None,
                            bracelet_warnings: None,
                        },
                    ),
                    order(
                        "curfew-square",
                        Rule::InclusionZone {
                            geometry: ZoneGeometry::Polygon {
                                coordinates: vec![ring(ANCHORS[1], 250.0)],
                            },
                            schedule: every_day(window.0, window.1),
                            grace_s,
                        },
                    ),
                ],
            }
        }
        Template::Shipped0117 => shipped("0117").clone(),
        Template::Shipped0342 => shipped("0342").clone(),
    };
    let n = if second { 2 } else { 1 };
    case.id = CaseId::new(format!("RTM-{n}"));
    let offender = if second && !tweak.share_offender {
        2
    } else {
        1
    };
    let victim = if second && !tweak.share_victim { 2 } else { 1 };
    case.offender.device = DeviceId::new(format!("OFF-{offender}"));
    if case.protected.is_empty() {
        case.protected.push(ProtectedPerson {
            id: PersonId::from("P1"),
            device: None,
            language: Default::default(),
            places: Vec::new(),
        });
    }
    case.protected[0].device = Some(DeviceId::new(format!("VIC-{victim}")));
    case.risk = [RiskLevel::Low, RiskLevel::Medium, RiskLevel::High][usize::from(tweak.risk % 3)];
    let minutes = |m: i64| clock.checked_add(SignedDuration::from_mins(m)).unwrap();
    for o in &mut case.orders {
        if tweak.rename {
            o.id = OrderId::new(format!("{}-b", o.id));
        }
        if let Some(m) = tweak.from_min {
            o.valid_from = minutes(i64::from(m));
        }
        if let Some(m) = tweak.until_min {
            o.valid_until = Some(minutes(i64::from(m)));
        }
        if let Some(s) = tweak.scale {
            let f = 0.25 + f64::from(s) / 64.0;
            match &mut o.rule {
                Rule::ContactBan {
                    warning_radius_m,
                    alarm_radius_m,
                    ..
                } => {
                    *warning_radius_m *= f;
                    *alarm_radius_m *= f;
                }
                Rule::ExclusionZone {
                    geometry,
                    warning_buffer_m,
                    ..
                } => {
                    if let Some(b) = warning_buffer_m {
                        *b *= f;
                    }
                    if let ZoneGeometry::Circle { radius_m, .. } = geometry {
                        *radius_m *= f;
                    }
                }
                Rule::InclusionZone { geometry, .. } => {
                    if let ZoneGeometry::Circle { radius_m, .. } = geometry {
                        *radius_m *= f;
                    }
                }
            }
        }
    }
    case
}

#[derive(Debug, PartialEq)]
enum Outcome {
    Fix(Result<Disposition, InputError>),
    Status(Result<(), InputError>),
    Case(Result<(), String>),
    Query(usize, usize),
    Other,
}

/// One run of the scenario; `restore` honours the `Restore` ops.
fn run(s: &Scenario, restore: bool) -> (Vec<Outcome>, Vec<Event>) {
    let start: Timestamp = STARTS[usize::from(s.start) % STARTS.len()].parse().unwrap();
    let at = |secs: i64| start.checked_add(SignedDuration::from_secs(secs)).unwrap();
    let config = match &s.config {
        InitialConfig::Default => EngineConfig::default(),
        InitialConfig::Shipped => EngineConfig {
            possible_confirmations: 1,
            stale_position_speed_mps: 1.0,
            offline_after_s: 300,
            ..EngineConfig::default()
        },
        InitialConfig::Custom(t) => t.config().unwrap_or_default(),
    };
    let mut engine = Engine::new(config);
    let mut outcomes = Vec::new();
    let mut events = Vec::new();
    let mut clock = 0i64;
    let mut last: HashMap<&'static str, (f64, f64)> = HashMap::new();

    let mut initial = vec![(false, s.first.0, &s.first.1)];
    if let Some((template, tweak)) = &s.second {
        initial.push((true, *template, tweak));
    }
    for (second, template, tweak) in initial {
        let case = build_case(second, template, tweak, at(clock));
        let result = engine.upsert_case(case, at(clock));
        outcomes.push(Outcome::Case(
            result.map(|e| events.extend(e)).map_err(|e| e.to_string()),
        ));
    }

    let position = |pos: Pos, dev: Dev, last: &HashMap<&'static str, (f64, f64)>| match pos {
        Pos::Near {
            anchor,
            east,
            north,
        } => offset(
            ANCHORS[usize::from(anchor) % ANCHORS.len()],
            f64::from(east) / 10.0,
            f64::from(north) / 10.0,
        ),
        Pos::NearOther { east, north } => offset(
            last.get(dev.other()).copied().unwrap_or(ANCHORS[0]),
            f64::from(east) * 4.0,
            f64::from(north) * 4.0,
        ),
        Pos::Same => last.get(dev.id()).copied().unwrap_or(ANCHORS[0]),
        Pos::Far(i) => FAR[usize::from(i) % FAR.len()],
    };
    let stamp = |clock: i64, when: When| match when {
        When::Now => at(clock),
        When::Late(s) => at(clock - i64::from(s)),
        When::VeryLate(m) => at(clock - i64::from(m % (30 * 24 * 60)) * 60),
        When::Ahead(_) => at(clock),
    };

    for op in s.ops.iter().take(MAX_OPS) {
        let outcome = match op {
            Op::Fix(f) => {
                clock += i64::from(f.advance_s);
                let (lat, lon) = position(f.pos, f.dev, &last);
                let mut fix = Fix::new(
                    DeviceId::from(f.dev.id()),
                    stamp(clock, f.when),
                    lat,
                    lon,
                    (f64::from(f.acc_dm) + 1.0) / 10.0,
                );
                fix.seq = f.seq.map(u64::from);
                fix.speed_mps = f.speed_cm_s.map(|v| f64::from(v) / 100.0);
                fix.heading_deg = f.heading_cdeg.map(|v| f64::from(v % 36_001) / 100.0);
                fix.battery_pct = f.batt.map(|b| b % 101);
                fix.strap = f.strap.map(|t| {
                    if t {
                        StrapState::Tampered
                    } else {
                        StrapState::Ok
                    }
                });
                let result = engine.ingest_fix(&fix);
                if result.is_ok() {
                    last.insert(f.dev.id(), (lat, lon));
                }
                Outcome::Fix(result.map(|o| {
                    events.extend(o.events);
                    o.disposition
                }))
            }
            Op::RawFix {
                dev,
                lat,
                lon,
                acc,
                speed,
                heading,
                advance_s,
            } => {
                clock += i64::from(*advance_s);
                let mut fix = Fix::new(DeviceId::from(dev.id()), at(clock), *lat, *lon, *acc);
                fix.speed_mps = *speed;
                fix.heading_deg = *heading;
                let result = engine.ingest_fix(&fix);
                Outcome::Fix(result.map(|o| {
                    events.extend(o.events);
                    o.disposition
                }))
            }
            Op::Status(st) => {
                clock += i64::from(st.advance_s);
                let status = Status {
                    device: DeviceId::from(st.dev.id()),
                    ts: stamp(clock, st.when),
                    strap: st.strap.map(|t| {
                        if t {
                            StrapState::Tampered
                        } else {
                            StrapState::Ok
                        }
                    }),
                    // The decoder drops a battery above 100 %.
                    battery_pct: st.batt.filter(|b| *b <= 100),
                    charging: st.charging,
                    gps: st
                        .gps
                        .map(|ok| if ok { GpsState::Ok } else { GpsState::NoFix }),
                };
                Outcome::Status(engine.ingest_status(&status).map(|e| events.extend(e)))
            }
            Op::Tick { dt_s } => {
                clock += i64::from(*dt_s);
                events.extend(engine.tick(at(clock)));
                Outcome::Other
            }
            Op::TickBack { back_s } => {
                let back = if kordon_fuzz::strict() {
                    i64::from(*back_s)
                } else {
                    0
                };
                events.extend(engine.tick(at(clock - back)));
                Outcome::Other
            }
            Op::Upsert {
                second,
                template,
                tweak,
            } => {
                let case = build_case(*second, *template, tweak, at(clock));
                let result = engine.upsert_case(case, at(clock));
                Outcome::Case(result.map(|e| events.extend(e)).map_err(|e| e.to_string()))
            }
            Op::Remove { second } => {
                let id = CaseId::new(format!("RTM-{}", if *second { 2 } else { 1 }));
                events.extend(engine.remove_case(&id, at(clock)));
                Outcome::Other
            }
            Op::Reconfigure(t) => {
                if let Some(config) = t.config() {
                    engine.reconfigure(config, at(clock));
                }
                Outcome::Other
            }
            Op::Query { pos, radius_m } => {
                let (lat, lon) = position(*pos, Dev::Off1, &last);
                let bans = engine.bans_at(lat, lon, at(clock));
                let near = engine.devices_near(lat, lon, f64::from(*radius_m));
                for hit in &bans {
                    assert!(hit.distance_m.is_finite(), "{hit:?}");
                }
                for d in &near {
                    assert!(d.distance_m.is_finite(), "{d:?}");
                    assert!(d.distance_m <= f64::from(*radius_m) + 1e-6, "{d:?}");
                }
                Outcome::Query(bans.len(), near.len())
            }
            Op::Restore => {
                if restore {
                    engine = Engine::restore(&engine.snapshot()).expect("a snapshot restores");
                }
                Outcome::Other
            }
        };
        outcomes.push(outcome);
    }
    (outcomes, events)
}

fuzz_target!(|scenario: Scenario| {
    let (outcomes, events) = run(&scenario, false);
    if let Err(broken) = episode_invariants(&events) {
        panic!("{broken}");
    }
    for event in &events {
        journal_roundtrip(&Record::Event {
            event: event.clone(),
            at: event.at,
        });
    }
    if scenario
        .ops
        .iter()
        .take(MAX_OPS)
        .any(|op| matches!(op, Op::Restore))
    {
        let (restored_outcomes, restored_events) = run(&scenario, true);
        assert_eq!(
            outcomes, restored_outcomes,
            "a restored engine answers otherwise"
        );
        assert!(
            events == restored_events,
            "a restored engine decides otherwise:\noriginal: {}\nrestored: {}",
            kordon_fuzz::summary(&events),
            kordon_fuzz::summary(&restored_events)
        );
    }
});
