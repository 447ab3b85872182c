//! Orders that can work: whether a case's orders, as written, can be kept
//! and enforced where the two parties live and go.
//!
//! A court order can be valid in every field and still not work: the
//! offender's registered address inside his own exclusion zone, the two
//! homes closer than the contact ban's alarm radius, a zone smaller than a
//! bracelet can tell apart, a curfew that ends an hour before a work
//! obligation 40 km away begins. Each such finding is a *warning*, never an
//! error: the order is what the court decided, and kordon enforces it as
//! written. The numbers in each warning (metres, minutes) are there so that
//! the case coordinator can go back to the court or the probation officer.
//!
//! The checks need places the case file may name: the offender's
//! `registered_address` and the protected persons' `places`; without them
//! only the checks of the orders alone run. A part of the case with a
//! validation error is skipped here: its numbers would mean nothing.

use geo::{Area, Distance, Euclidean, LineString, Polygon};

use crate::geodesy::{Ecef, LocalFrame};
use crate::model::{Case, Order, PersonId, PlaceKind, Rule, ZoneGeometry};
use crate::schedule::Schedule;
use crate::validate::{week_occurrences, CaseError, DayName, Occurrence, Problem, WEEK};
use crate::zone::CompiledZone;

/// The accuracy a bracelet usually reports where it spends its time, in
/// metres. Outdoors under open sky a fix is good to 4–12 m; indoors, at home
/// or at work, and in a street canyon it reports 20–60 m (the simulator's
/// noise model follows the same field figures). 25 m is the good end of
/// where a bracelet mostly is, and the margin the engine itself asks before
/// it clears a zone episode: a zone or radius smaller than this cannot be
/// told apart from its surroundings by the fixes that judge it.
pub const USUAL_ACCURACY_M: f64 = 25.0;

/// The speed assumed for getting from one zone to another, door to door:
/// 10 m/s, 36 km/h, what a car averages across a town. It is generous
/// (cycling is 15–20 km/h, public transport slower with the waits), so a
/// warning that there is no time to travel is a certainty, not a guess.
pub const TRAVEL_SPEED_MPS: f64 = 10.0;

/// The findings for `case`, as warnings; `errors` are its validation errors,
/// whose fields are left unchecked.
pub(crate) fn check(case: &Case, errors: &[CaseError]) -> Vec<CaseError> {
    let known = Known::of(case, errors);
    let mut out = Findings {
        case,
        warnings: Vec::new(),
    };
    for zone in &known.zones {
        zone_size(zone, &mut out);
    }
    for ban in &known.bans {
        alarm_radius_size(ban, &mut out);
    }
    if let Some(address) = &known.address {
        for zone in &known.zones {
            address_and_zone(address, zone, &mut out);
        }
        for ban in &known.bans {
            homes_and_ban(address, &known.places, ban, &mut out);
        }
    }
    for place in &known.places {
        for zone in &known.zones {
            place_and_inclusion_zone(place, zone, &known.zones, &mut out);
        }
    }
    travel_between_inclusion_zones(&known.zones, &mut out);
    out.warnings
}

/// The parts of a case that validated, ready for the checks.
struct Known<'a> {
    address: Option<Ecef>,
    places: Vec<Place<'a>>,
    zones: Vec<Zone<'a>>,
    bans: Vec<Ban<'a>>,
}

/// A place of a protected person's.
struct Place<'a> {
    person: &'a PersonId,
    kind: PlaceKind,
    at: Ecef,
    field: String,
}

/// An exclusion or inclusion zone, compiled once for every check.
struct Zone<'a> {
    index: usize,
    order: &'a Order,
    geometry: &'a ZoneGeometry,
    compiled: CompiledZone,
    duty: Duty<'a>,
}

enum Duty<'a> {
    /// Exclusion zone: stay out (always, or during a schedule).
    StayOut {
        warning_buffer_m: f64,
        scheduled: bool,
    },
    /// Inclusion zone: be inside during the schedule.
    BeInside { schedule: &'a Schedule },
}

struct Ban<'a> {
    index: usize,
    order: &'a Order,
    protected: &'a PersonId,
    alarm_radius_m: f64,
}

impl<'a> Known<'a> {
    fn of(case: &'a Case, errors: &[CaseError]) -> Self {
        let sound = |path: &str| {
            !errors.iter().any(|e| {
                e.field
                    .strip_prefix(path)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
            })
        };
        let address = case
            .offender
            .registered_address
            .filter(|_| sound("offender.registered_address"))
            .map(ecef);
        let places = case
            .protected
            .iter()
            .enumerate()
            .flat_map(|(i, person)| {
                person
                    .places
                    .iter()
                    .enumerate()
                    .map(move |(k, place)| Place {
                        person: &person.id,
                        kind: place.kind,
                        at: ecef(place.position),
                        field: format!("protected[{i}].places[{k}].position"),
                    })
            })
            .filter(|place| sound(&place.field))
            .collect();
        let mut zones = Vec::new();
        let mut bans = Vec::new();
        for (index, order) in case.orders.iter().enumerate() {
            if !sound(&format!("orders[{index}].rule")) {
                continue;
            }
            let (geometry, duty) = match &order.rule {
                Rule::ExclusionZone {
                    geometry,
                    warning_buffer_m,
                    schedule,
                    ..
                } => (
                    geometry,
                    Duty::StayOut {
                        warning_buffer_m: warning_buffer_m.unwrap_or(0.0),
                        scheduled: schedule.is_some(),
                    },
                ),
                Rule::InclusionZone {
                    geometry, schedule, ..
                } => (geometry, Duty::BeInside { schedule }),
                Rule::ContactBan {
                    protected,
                    alarm_radius_m,
                    ..
                } => {
                    bans.push(Ban {
                        index,
                        order,
                        protected,
                        alarm_radius_m: *alarm_radius_m,
                    });
                    continue;
                }
            };
            if let Some(compiled) = CompiledZone::compile(geometry) {
                zones.push(Zone {
                    index,
                    order,
                    geometry,
                    compiled,
                    duty,
                });
            }
        }
        Known {
            address,
            places,
            zones,
            bans,
        }
    }
}

struct Findings<'a> {
    case: &'a Case,
    warnings: Vec<CaseError>,
}

impl Findings<'_> {
    fn warn(&mut self, order: &Order, field: String, problem: Problem) {
        self.warnings.push(CaseError {
            case: self.case.id.clone(),
            order: Some(order.id.clone()),
            field,
            problem,
        });
    }
}

/// A zone no bigger than a bracelet's usual error. A polygon's size is the
/// radius of the circle of equal area, each part of a multipolygon on its own.
fn zone_size(zone: &Zone, out: &mut Findings) {
    let at = format!("orders[{}].rule.geometry", zone.index);
    let too_small = |radius_m: f64, equal_area: bool| {
        (radius_m < USUAL_ACCURACY_M).then(|| Problem::ZoneSmallerThanAccuracy {
            radius_m: round_to(radius_m, 1),
            equal_area,
            accuracy_m: USUAL_ACCURACY_M,
        })
    };
    match zone.geometry {
        ZoneGeometry::Circle { radius_m, .. } => {
            if let Some(problem) = too_small(*radius_m, false) {
                out.warn(zone.order, format!("{at}.radius_m"), problem);
            }
        }
        ZoneGeometry::Polygon { .. } | ZoneGeometry::MultiPolygon { .. } => {
            let parts = planar_polygons(zone.geometry, zone.compiled.frame());
            let several = parts.len() > 1;
            for (k, part) in parts.iter().enumerate() {
                let radius_m = (part.unsigned_area() / std::f64::consts::PI).sqrt();
                if let Some(problem) = too_small(radius_m, true) {
                    let field = if several {
                        format!("{at}.coordinates[{k}]")
                    } else {
                        format!("{at}.coordinates")
                    };
                    out.warn(zone.order, field, problem);
                }
            }
        }
    }
}

fn alarm_radius_size(ban: &Ban, out: &mut Findings) {
    if ban.alarm_radius_m < USUAL_ACCURACY_M {
        out.warn(
            ban.order,
            format!("orders[{}].rule.alarm_radius_m", ban.index),
            Problem::AlarmRadiusBelowAccuracy {
                alarm_radius_m: ban.alarm_radius_m,
                accuracy_m: USUAL_ACCURACY_M,
            },
        );
    }
}

/// His registered address inside one of his exclusion zones, or so near it
/// that being at home raises warnings: within its warning buffer, or closer
/// than the bracelet's usual accuracy.
fn address_and_zone(address: &Ecef, zone: &Zone, out: &mut Findings) {
    let Duty::StayOut {
        warning_buffer_m,
        scheduled,
    } = zone.duty
    else {
        return;
    };
    let distance_m = zone.compiled.signed_distance_m(address);
    let problem = if distance_m <= 0.0 {
        Problem::AddressInOwnZone {
            inside_by_m: round_to(-distance_m, 0),
            scheduled,
        }
    } else if distance_m <= warning_buffer_m.max(USUAL_ACCURACY_M) {
        Problem::AddressNearOwnZone {
            distance_m: round_to(distance_m, 0),
            warning_buffer_m,
            scheduled,
        }
    } else {
        return;
    };
    out.warn(zone.order, "offender.registered_address".into(), problem);
}

/// His registered address and her home closer than the contact ban's alarm
/// radius: an alarm whenever both are at home.
fn homes_and_ban(address: &Ecef, places: &[Place], ban: &Ban, out: &mut Findings) {
    let her_homes = places
        .iter()
        .filter(|p| p.person == ban.protected && p.kind == PlaceKind::Home);
    for home in her_homes {
        let distance_m = address.distance_m(&home.at);
        if distance_m < ban.alarm_radius_m {
            out.warn(
                ban.order,
                format!("orders[{}].rule.alarm_radius_m", ban.index),
                Problem::HomesWithinAlarmRadius {
                    person: ban.protected.to_string(),
                    distance_m: round_to(distance_m, 0),
                    alarm_radius_m: ban.alarm_radius_m,
                },
            );
        }
    }
}

/// A place of hers inside a zone he must be in, with no exclusion zone of
/// his around it: the order holds him where she is. (A town-wide area
/// obligation around her banned street is fine; a curfew zone that takes in
/// her home, or her work left open inside it, is not.)
fn place_and_inclusion_zone(place: &Place, zone: &Zone, zones: &[Zone], out: &mut Findings) {
    if !matches!(zone.duty, Duty::BeInside { .. }) {
        return;
    }
    let kept_away = zones.iter().any(|other| {
        matches!(other.duty, Duty::StayOut { .. })
            && other.compiled.signed_distance_m(&place.at) <= 0.0
    });
    let distance_m = zone.compiled.signed_distance_m(&place.at);
    if distance_m <= 0.0 && !kept_away {
        out.warn(
            zone.order,
            place.field.clone(),
            Problem::ProtectedPlaceInInclusionZone {
                person: place.person.to_string(),
                place: place.kind.to_string(),
                inside_by_m: round_to(-distance_m, 0),
            },
        );
    }
}

/// Two zones he must be in, one window after the other, with less time
/// between them than the way from one to the other takes. Each direction
/// is judged at its tightest change of the week.
fn travel_between_inclusion_zones(zones: &[Zone], out: &mut Findings) {
    let obligations: Vec<(&Zone, &Schedule)> = zones
        .iter()
        .filter_map(|zone| match zone.duty {
            Duty::BeInside { schedule } => Some((zone, schedule)),
            Duty::StayOut { .. } => None,
        })
        .collect();
    for (n, &(a, a_schedule)) in obligations.iter().enumerate() {
        for &(b, b_schedule) in &obligations[n + 1..] {
            if !validity_overlaps(a.order, b.order) {
                continue;
            }
            // Touching or overlapping zones need no travel at all.
            let Some(distance_m) = gap_m(a, b).filter(|d| *d > 0.0) else {
                continue;
            };
            for (from, from_schedule, to, to_schedule) in [
                (a, a_schedule, b, b_schedule),
                (b, b_schedule, a, a_schedule),
            ] {
                let Some(change) = tightest_change(from_schedule, to_schedule) else {
                    continue;
                };
                no_time_to_travel(from, to, distance_m, &change, out);
                if change.at_once {
                    // The other way round is the same overlap: one warning.
                    break;
                }
            }
        }
    }
}

fn no_time_to_travel(from: &Zone, to: &Zone, distance_m: f64, change: &Change, out: &mut Findings) {
    let needed_s = distance_m / TRAVEL_SPEED_MPS;
    if needed_s <= f64::from(change.minutes) * 60.0 {
        return;
    }
    out.warn(
        to.order,
        format!("orders[{}].rule.schedule", to.index),
        Problem::NoTimeToTravel {
            from_order: from.order.id.to_string(),
            when: change.describe(),
            distance_km: round_to(distance_m / 1000.0, 1),
            available_min: change.minutes,
            // Whole minutes, rounded up: never fewer than the way takes.
            needed_min: (needed_s / 60.0).ceil() as i32,
            speed_kmh: round_to(TRAVEL_SPEED_MPS * 3.6, 0),
        },
    );
}

fn validity_overlaps(a: &Order, b: &Order) -> bool {
    let before = |order: &Order, t| order.valid_until.is_none_or(|until| t < until);
    before(a, b.valid_from) && before(b, a.valid_from)
}

/// The least time, in the week, between the end of an occurrence of `from`
/// and the next start of `to`.
#[derive(Debug, Clone, Copy)]
struct Change {
    minutes: i32,
    /// Minutes of the week (from Monday 00:00) he must leave and arrive;
    /// equal when both windows are on at once.
    leave: i32,
    arrive: i32,
    /// Both windows are on at once: he would have to be in both zones.
    at_once: bool,
}

impl Change {
    /// Tighter first; at equal minutes, being needed in both zones at once
    /// is the tighter (and it is the same finding either way round), then
    /// the earlier in the week, so that the message names the first day.
    fn is_tighter_than(&self, other: &Change) -> bool {
        let key = |c: &Change| (c.minutes, !c.at_once, c.arrive.rem_euclid(WEEK));
        key(self) < key(other)
    }

    fn describe(&self) -> String {
        let (leave, arrive) = (WeekTime(self.leave), WeekTime(self.arrive));
        if self.at_once {
            format!("{} {}, both at once", leave.day(), leave.clock())
        } else if self.minutes == 0 {
            format!(
                "{} {}, one starts as the other ends",
                arrive.day(),
                arrive.clock()
            )
        } else if leave.day() == arrive.day() {
            format!("{} {} → {}", leave.day(), leave.clock(), arrive.clock())
        } else {
            format!(
                "{} {} → {} {}",
                leave.day(),
                leave.clock(),
                arrive.day(),
                arrive.clock()
            )
        }
    }
}

/// The tightest change from `from`'s windows to `to`'s: zero minutes when
/// an occurrence of each overlaps (he would have to be in both zones at
/// once). `None` when either has no window.
fn tightest_change(from: &Schedule, to: &Schedule) -> Option<Change> {
    let to_occurrences = week_occurrences(to);
    let mut best: Option<Change> = None;
    for a in week_occurrences(from) {
        for b in &to_occurrences {
            let change = change_between(&a, b);
            if best.is_none_or(|best| change.is_tighter_than(&best)) {
                best = Some(change);
            }
        }
    }
    best
}

/// From one occurrence to the next start of another, on the week's circle
/// (a window ending on Sunday night is followed by Monday's). Windows last
/// less than a day, so each is shorter than the week.
fn change_between(from: &Occurrence, to: &Occurrence) -> Change {
    let to_after_from = (to.start - from.start).rem_euclid(WEEK);
    let from_after_to = (from.start - to.start).rem_euclid(WEEK);
    let overlap_from = if to_after_from < from.end - from.start {
        Some(to.start)
    } else if from_after_to < to.end - to.start {
        Some(from.start)
    } else {
        None
    };
    match overlap_from {
        Some(at) => Change {
            minutes: 0,
            leave: at,
            arrive: at,
            at_once: true,
        },
        None => Change {
            minutes: (to.start - from.end).rem_euclid(WEEK),
            leave: from.end,
            arrive: to.start,
            at_once: false,
        },
    }
}

/// A minute of the week from Monday 00:00 local, any week.
struct WeekTime(i32);

impl WeekTime {
    fn day(&self) -> String {
        use crate::schedule::Day::*;
        let days = [Mon, Tue, Wed, Thu, Fri, Sat, Sun];
        let index = self.0.rem_euclid(WEEK) / (24 * 60);
        DayName(days[index as usize % 7]).to_string()
    }

    fn clock(&self) -> String {
        let minute = self.0.rem_euclid(24 * 60);
        format!("{:02}:{:02}", minute / 60, minute % 60)
    }
}

/// Metres between the nearest edges of two zones; zero when they touch or
/// overlap. Judged in the tangent plane at one zone's centre, which
/// shortens 50 km by half a metre and 100 km by 4 m: nothing in minutes of
/// travel.
fn gap_m(a: &Zone, b: &Zone) -> Option<f64> {
    let gap = match (a.geometry, b.geometry) {
        // A disc is as far from anything as its centre, less its radius.
        (
            ZoneGeometry::Circle {
                coordinates,
                radius_m,
            },
            _,
        ) => b.compiled.signed_distance_m(&ecef(*coordinates)) - radius_m,
        (_, ZoneGeometry::Circle { .. }) => return gap_m(b, a),
        _ => {
            let frame = a.compiled.frame();
            let (ours, theirs) = (
                planar_polygons(a.geometry, frame),
                planar_polygons(b.geometry, frame),
            );
            ours.iter()
                .flat_map(|p| theirs.iter().map(move |q| Euclidean.distance(p, q)))
                .fold(f64::INFINITY, f64::min)
        }
    };
    gap.is_finite().then_some(gap.max(0.0))
}

/// The polygons of a zone in metres east and north of `frame`'s origin.
fn planar_polygons(geometry: &ZoneGeometry, frame: &LocalFrame) -> Vec<Polygon> {
    let ring = |ring: &Vec<[f64; 2]>| -> LineString {
        ring.iter()
            .map(|[lon, lat]| {
                let p = frame.project_lat_lon(*lat, *lon);
                (p.east, p.north)
            })
            .collect::<Vec<_>>()
            .into()
    };
    let polygon = |rings: &Vec<Vec<[f64; 2]>>| {
        let mut rings = rings.iter().map(ring);
        let exterior = rings.next()?;
        Some(Polygon::new(exterior, rings.collect()))
    };
    match geometry {
        ZoneGeometry::Circle { .. } => Vec::new(),
        ZoneGeometry::Polygon { coordinates } => polygon(coordinates).into_iter().collect(),
        ZoneGeometry::MultiPolygon { coordinates } => {
            coordinates.iter().filter_map(polygon).collect()
        }
    }
}

fn ecef([lon, lat]: [f64; 2]) -> Ecef {
    Ecef::from_lat_lon(lat, lon)
}

/// `value` rounded to `decimals` places, for messages: whole metres,
/// tenths of a kilometre.
fn round_to(value: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (value * scale).round() / scale
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::validate::validate_case;

    /// His registered address, in Kralingen, Rotterdam.
    const HOME: [f64; 2] = [4.5200, 51.9200];

    /// The position `east_m` and `north_m` metres from `from`.
    fn moved([lon, lat]: [f64; 2], east_m: f64, north_m: f64) -> [f64; 2] {
        let (per_lat, per_lon) = LocalFrame::new(lat, lon).metres_per_degree();
        [lon + east_m / per_lon, lat + north_m / per_lat]
    }

    fn her_home() -> [f64; 2] {
        moved(HOME, 3000.0, 2000.0)
    }

    fn circle(centre: [f64; 2], radius_m: f64) -> Value {
        json!({"type": "Point", "coordinates": centre, "radius_m": radius_m})
    }

    fn square(centre: [f64; 2], half_side_m: f64) -> Value {
        json!({"type": "Polygon", "coordinates": [square_ring(centre, half_side_m)]})
    }

    fn square_ring(centre: [f64; 2], h: f64) -> Value {
        let corner = |e: f64, n: f64| moved(centre, e, n);
        json!([
            corner(-h, -h),
            corner(h, -h),
            corner(h, h),
            corner(-h, h),
            corner(-h, -h)
        ])
    }

    fn order(id: &str, rule: Value) -> Value {
        json!({"id": id, "legal_basis": "art. 38v Sr",
               "valid_from": "2026-01-01T00:00:00+01:00", "rule": rule})
    }

    fn inclusion(geometry: Value, days: &[&str], start: &str, end: &str) -> Value {
        json!({"type": "inclusion_zone", "grace_s": 600, "geometry": geometry,
               "schedule": {"windows": [{"days": days, "start": start, "end": end}]}})
    }

    const EVERY_DAY: &[&str] = &["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    const WEEKDAYS: &[&str] = &["mon", "tue", "wed", "thu", "fri"];

    /// A case whose orders work: her home and work kilometres from his
    /// address, a curfew at home 19:00–07:00 and work 5 km away 08:00–17:00.
    fn workable() -> Value {
        json!({
            "id": "RTM-1", "risk": "high",
            "offender": {"device": "OFF-1", "registered_address": HOME},
            "protected": [{"id": "P1", "device": "VIC-1", "places": [
                {"kind": "home", "position": her_home()},
                {"kind": "work", "position": moved(HOME, -4000.0, 1000.0)}]}],
            "orders": [
                order("ban-her-home", json!({"type": "exclusion_zone", "warning_buffer_m": 200,
                    "around": "P1", "geometry": circle(her_home(), 300.0)})),
                order("curfew", inclusion(circle(HOME, 60.0), EVERY_DAY, "19:00", "07:00")),
                order("work", inclusion(square(moved(HOME, 0.0, 5000.0), 100.0), WEEKDAYS, "08:00", "17:00")),
                order("contact", json!({"type": "contact_ban", "protected": "P1",
                    "warning_radius_m": 1000, "alarm_radius_m": 300})),
            ]
        })
    }

    /// The warnings of a case that has no errors.
    fn warnings(case: Value) -> Vec<CaseError> {
        let case: Case = serde_json::from_value(case).unwrap();
        let report = validate_case(&case);
        assert!(report.errors.is_empty(), "{:#?}", report.errors);
        report.warnings
    }

    fn the_one_warning(case: Value) -> CaseError {
        let mut found = warnings(case);
        assert_eq!(found.len(), 1, "{found:#?}");
        found.remove(0)
    }

    fn with_order(order: Value) -> Value {
        let mut case = workable();
        case["orders"].as_array_mut().unwrap().push(order);
        case
    }

    #[test]
    fn a_workable_case_gives_no_warning() {
        assert_eq!(warnings(workable()), vec![]);
    }

    #[test]
    fn a_case_without_known_places_checks_the_orders_alone() {
        let mut case = workable();
        case["offender"]
            .as_object_mut()
            .unwrap()
            .remove("registered_address");
        case["protected"][0]
            .as_object_mut()
            .unwrap()
            .remove("places");
        case["orders"][1]["rule"]["geometry"]["radius_m"] = json!(20);
        let w = the_one_warning(case);
        assert!(matches!(w.problem, Problem::ZoneSmallerThanAccuracy { .. }));
    }

    #[test]
    fn his_address_inside_his_own_exclusion_zone_is_named_with_its_depth() {
        let ban = |schedule: Option<Value>| {
            let mut rule = json!({"type": "exclusion_zone",
                                  "geometry": circle(moved(HOME, 300.0, 0.0), 500.0)});
            if let Some(s) = schedule {
                rule["schedule"] = s;
            }
            order("ban-centre", rule)
        };
        let w = the_one_warning(with_order(ban(None)));
        assert_eq!(w.field, "offender.registered_address");
        assert_eq!(w.order.as_ref().unwrap().as_str(), "ban-centre");
        assert_eq!(
            w.problem,
            Problem::AddressInOwnZone {
                inside_by_m: 200.0,
                scheduled: false
            }
        );
        assert!(
            w.to_string().contains(
                "inside this exclusion zone, 200 m from its edge: he cannot be at home at all"
            ),
            "{w}"
        );

        let nights = json!({"windows": [{"days": EVERY_DAY, "start": "22:00", "end": "06:00"}]});
        let w = the_one_warning(with_order(ban(Some(nights))));
        assert!(
            w.to_string()
                .contains("cannot be at home while its schedule is on"),
            "{w}"
        );
    }

    #[test]
    fn his_address_within_the_warning_buffer_is_named_with_both_numbers() {
        let ban = |buffer: Option<f64>, centre_east_m: f64| {
            order(
                "ban-centre",
                json!({"type": "exclusion_zone", "warning_buffer_m": buffer,
                       "geometry": circle(moved(HOME, centre_east_m, 0.0), 500.0)}),
            )
        };
        let w = the_one_warning(with_order(ban(Some(150.0), 600.0)));
        assert_eq!(
            w.problem,
            Problem::AddressNearOwnZone {
                distance_m: 100.0,
                warning_buffer_m: 150.0,
                scheduled: false
            }
        );
        assert!(
            w.to_string()
                .contains("100 m outside this exclusion zone, within its 150 m warning buffer"),
            "{w}"
        );
        // Beyond the buffer: nothing to say.
        assert_eq!(warnings(with_order(ban(Some(50.0), 600.0))), vec![]);
        // No buffer, but closer than a bracelet can tell.
        let w = the_one_warning(with_order(ban(None, 515.0)));
        assert!(
            matches!(w.problem, Problem::AddressNearOwnZone { distance_m, .. } if distance_m == 15.0),
            "{w:?}"
        );
        assert!(
            w.to_string()
                .contains("closer than the bracelet's usual accuracy of 25 m"),
            "{w}"
        );
    }

    #[test]
    fn homes_closer_than_the_alarm_radius_are_named_with_both_numbers() {
        let mut case = workable();
        case["protected"][0]["places"][0]["position"] = json!(moved(HOME, 0.0, 250.0));
        let w = the_one_warning(case);
        assert_eq!(w.field, "orders[3].rule.alarm_radius_m");
        assert_eq!(w.order.as_ref().unwrap().as_str(), "contact");
        assert_eq!(
            w.problem,
            Problem::HomesWithinAlarmRadius {
                person: "P1".into(),
                distance_m: 250.0,
                alarm_radius_m: 300.0
            }
        );
        assert!(
            w.to_string().contains(
                "P1's home are 250 m apart, within this contact ban's 300 m alarm radius"
            ),
            "{w}"
        );

        let mut case = workable();
        case["protected"][0]["places"][0]["position"] = json!(moved(HOME, 0.0, 350.0));
        assert_eq!(warnings(case), vec![]);
        // Her work nearby is not her home: the alarm is for where both sleep.
        let mut case = workable();
        case["protected"][0]["places"][1]["position"] = json!(moved(HOME, 0.0, 100.0));
        assert_eq!(warnings(case), vec![]);
    }

    #[test]
    fn her_place_inside_his_curfew_zone_is_named() {
        let mut case = workable();
        case["protected"][0]["places"][1]["position"] = json!(moved(HOME, 30.0, 0.0));
        let w = the_one_warning(case);
        assert_eq!(w.field, "protected[0].places[1].position");
        assert_eq!(w.order.as_ref().unwrap().as_str(), "curfew");
        assert_eq!(
            w.problem,
            Problem::ProtectedPlaceInInclusionZone {
                person: "P1".into(),
                place: "work".into(),
                inside_by_m: 30.0
            }
        );
        assert!(
            w.to_string().contains(
                "P1's work lies inside this inclusion zone, 30 m from its edge, \
                 and no exclusion zone keeps him from it"
            ),
            "{w}"
        );

        // Bound to the town by day: her home has its exclusion zone, her
        // work has none.
        let mut case = workable();
        case["orders"][2]["rule"] = inclusion(circle(HOME, 5000.0), EVERY_DAY, "07:00", "19:00");
        let w = the_one_warning(case);
        assert_eq!(w.field, "protected[0].places[1].position");
        assert_eq!(w.order.as_ref().unwrap().as_str(), "work");
    }

    #[test]
    fn zones_and_radii_below_the_usual_accuracy_are_named_with_their_size() {
        let mut case = workable();
        case["orders"][1]["rule"]["geometry"]["radius_m"] = json!(20);
        let w = the_one_warning(case);
        assert_eq!(w.field, "orders[1].rule.geometry.radius_m");
        assert_eq!(
            w.problem,
            Problem::ZoneSmallerThanAccuracy {
                radius_m: 20.0,
                equal_area: false,
                accuracy_m: USUAL_ACCURACY_M
            }
        );
        assert!(
            w.to_string()
                .starts_with("case RTM-1, order curfew, field `orders[1].rule.geometry.radius_m`: zone radius 20 m is below the bracelet's usual accuracy of 25 m"),
            "{w}"
        );

        // A 30 m square: as large as a circle of radius √(900/π) = 16.9 m.
        let mut case = workable();
        case["orders"][2]["rule"]["geometry"] = square(moved(HOME, 0.0, 5000.0), 15.0);
        let w = the_one_warning(case);
        assert_eq!(w.field, "orders[2].rule.geometry.coordinates");
        assert_eq!(
            w.problem,
            Problem::ZoneSmallerThanAccuracy {
                radius_m: 16.9,
                equal_area: true,
                accuracy_m: USUAL_ACCURACY_M
            }
        );
        assert!(
            w.to_string()
                .contains("zone has the area of a circle of radius 16.9 m"),
            "{w}"
        );

        // Each part of a multipolygon on its own.
        let mut case = workable();
        case["orders"][0]["rule"]["geometry"] = json!({"type": "MultiPolygon", "coordinates": [
            [square_ring(her_home(), 300.0)], [square_ring(moved(her_home(), 1000.0, 0.0), 10.0)]]});
        let w = the_one_warning(case);
        assert_eq!(w.field, "orders[0].rule.geometry.coordinates[1]");

        let mut case = workable();
        case["orders"][3]["rule"]["alarm_radius_m"] = json!(20);
        let w = the_one_warning(case);
        assert_eq!(w.field, "orders[3].rule.alarm_radius_m");
        assert_eq!(
            w.problem,
            Problem::AlarmRadiusBelowAccuracy {
                alarm_radius_m: 20.0,
                accuracy_m: USUAL_ACCURACY_M
            }
        );
    }

    #[test]
    fn a_schedule_without_time_to_travel_names_distance_and_minutes() {
        // Work 40 km north: 39.8 km between the zones' edges is 67 minutes
        // at 36 km/h, and the curfew ends an hour before work begins. The
        // way back (17:00 to 19:00) has time enough.
        let mut case = workable();
        case["orders"][2]["rule"]["geometry"] = square(moved(HOME, 0.0, 40_000.0), 100.0);
        let w = the_one_warning(case);
        assert_eq!(w.field, "orders[2].rule.schedule");
        assert_eq!(w.order.as_ref().unwrap().as_str(), "work");
        assert_eq!(
            w.problem,
            Problem::NoTimeToTravel {
                from_order: "curfew".into(),
                when: "Monday 07:00 → 08:00".into(),
                distance_km: 39.8,
                available_min: 60,
                needed_min: 67,
                speed_kmh: 36.0
            }
        );
        assert!(
            w.to_string().contains(
                "60 min to get from the zone of order `curfew` to this one (Monday 07:00 → 08:00), \
                 but they are 39.8 km apart: 67 min at 36 km/h"
            ),
            "{w}"
        );
        // 20 km: 33 minutes, time enough.
        let mut case = workable();
        case["orders"][2]["rule"]["geometry"] = square(moved(HOME, 0.0, 20_000.0), 100.0);
        assert_eq!(warnings(case), vec![]);
    }

    #[test]
    fn a_window_that_crosses_midnight_and_the_week_is_followed_into_monday() {
        // Sunday 22:00 – Monday 06:00 at home (a polygon), Monday 06:30 at
        // work 20 km away: 30 minutes for 19.85 km, which takes 34.
        let mut case = workable();
        case["orders"][1]["rule"] = inclusion(square(HOME, 50.0), &["sun"], "22:00", "06:00");
        case["orders"][2]["rule"] = inclusion(
            square(moved(HOME, 0.0, 20_000.0), 100.0),
            &["mon"],
            "06:30",
            "15:00",
        );
        let w = the_one_warning(case);
        assert!(
            matches!(&w.problem, Problem::NoTimeToTravel { when, available_min: 30, needed_min: 34, distance_km, .. }
                if when == "Monday 06:00 → 06:30" && *distance_km == 19.9),
            "{w:?}"
        );
    }

    #[test]
    fn windows_on_at_once_in_zones_apart_are_named_once() {
        let mut case = workable();
        case["orders"][2]["rule"]["schedule"]["windows"][0]["start"] = json!("06:00");
        let w = the_one_warning(case);
        assert!(
            matches!(&w.problem, Problem::NoTimeToTravel { when, available_min: 0, .. }
                if when == "Monday 06:00, both at once"),
            "{w:?}"
        );
    }

    #[test]
    fn back_to_back_windows_in_zones_apart_leave_no_time() {
        let mut case = workable();
        case["orders"][2]["rule"]["schedule"]["windows"][0]["start"] = json!("07:00");
        let w = the_one_warning(case);
        assert!(
            matches!(&w.problem, Problem::NoTimeToTravel { when, available_min: 0, needed_min: 9, .. }
                if when == "Monday 07:00, one starts as the other ends"),
            "{w:?}"
        );
    }

    #[test]
    fn zones_that_overlap_need_no_travel_even_back_to_back() {
        // In town by day, at home by night: no gap, and none needed.
        let mut case = workable();
        case["orders"][2]["rule"] = inclusion(circle(HOME, 2000.0), EVERY_DAY, "07:00", "19:00");
        assert_eq!(warnings(case), vec![]);
    }

    #[test]
    fn orders_in_force_at_different_times_are_not_compared() {
        let mut case = workable();
        case["orders"][2]["rule"]["geometry"] = square(moved(HOME, 0.0, 40_000.0), 100.0);
        case["orders"][1]["valid_until"] = json!("2026-06-01T00:00:00+02:00");
        case["orders"][2]["valid_from"] = json!("2026-06-01T00:00:00+02:00");
        assert_eq!(warnings(case), vec![]);
    }

    #[test]
    fn known_places_are_checked_like_zone_positions() {
        let mut case = workable();
        case["offender"]["registered_address"] = json!([HOME[1], HOME[0]]);
        // Paris: a place across the border is a warning, not an error.
        case["protected"][0]["places"][1]["position"] = json!([2.35, 48.86]);
        let case: Case = serde_json::from_value(case).unwrap();
        let report = validate_case(&case);
        let located = |list: &[CaseError]| -> Vec<(String, Problem)> {
            list.iter()
                .map(|e| (e.field.clone(), e.problem.clone()))
                .collect()
        };
        assert_eq!(
            located(&report.errors),
            vec![(
                "offender.registered_address".to_string(),
                Problem::LatLonSwapped {
                    lon: HOME[1],
                    lat: HOME[0]
                }
            )]
        );
        assert_eq!(
            located(&report.warnings),
            vec![(
                "protected[0].places[1].position".to_string(),
                Problem::OutsideNetherlands {
                    lon: 2.35,
                    lat: 48.86
                }
            )]
        );
    }

    #[test]
    fn parts_with_errors_are_not_checked_and_nothing_panics() {
        let mut case: Case = serde_json::from_value(workable()).unwrap();
        case.offender.registered_address = Some([f64::NAN, 51.92]);
        case.protected[0].places[0].position = [f64::INFINITY, f64::NEG_INFINITY];
        for order in &mut case.orders {
            match &mut order.rule {
                Rule::ExclusionZone { geometry, .. } => {
                    *geometry = ZoneGeometry::MultiPolygon {
                        coordinates: vec![vec![], vec![vec![[f64::NAN, 1.0]]]],
                    }
                }
                Rule::InclusionZone { geometry, .. } => {
                    *geometry = ZoneGeometry::Circle {
                        coordinates: HOME,
                        radius_m: f64::NAN,
                    }
                }
                Rule::ContactBan { alarm_radius_m, .. } => *alarm_radius_m = -1.0,
            }
        }
        let report = validate_case(&case);
        assert!(!report.errors.is_empty());
        assert_eq!(check(&case, &report.errors), vec![]);
        // The checks themselves never panic, even unguarded.
        let _ = check(&case, &[]);
    }
}
