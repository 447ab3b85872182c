//! Validation of cases and orders before the engine accepts them.
//!
//! A broken order file must never half-load: every problem is reported at
//! once, each naming the case, the order and the field, so that whoever
//! wrote the file can fix all of it in one go. Positions outside the
//! Netherlands are warnings (a case may reach across a border), positions
//! that only make sense with latitude and longitude swapped are errors.
//! Orders that are valid but cannot work as written (his address in his own
//! exclusion zone, no time to travel between two zones) are warnings too,
//! found by [`crate::order_checks`].

use std::collections::BTreeSet;
use std::fmt;

use geo::{LineString, MultiPolygon, Polygon, Validation};
use serde::Serialize;
use thiserror::Error;

use crate::model::{Case, CaseId, DeviceId, OrderId, Role, Rule, ZoneGeometry};
use crate::order_checks::USUAL_ACCURACY_M;
use crate::schedule::{Day, Schedule};

/// Radii and buffers beyond this are a typo, not an order.
pub const MAX_RADIUS_M: f64 = 50_000.0;
/// Generous bounds of the Netherlands (lat, lon), with its coastal waters.
const NL_LAT: (f64, f64) = (50.6, 53.7);
const NL_LON: (f64, f64) = (3.2, 7.3);

/// A device stays on one side in every case it is in: an offender's
/// bracelet is never also a protected person's device elsewhere, since a fix
/// would then be judged as his in one case and as hers in another. The other
/// cases come from `memberships`, each with the device's role there (the
/// case itself among them is skipped): one engine's cases in one process,
/// every case of the bucket in a cluster.
pub fn check_device_roles<M>(
    case: &Case,
    mut memberships: impl FnMut(&DeviceId) -> M,
    report: &mut ValidationReport,
) where
    M: IntoIterator<Item = (CaseId, Role)>,
{
    let mut check = |device: &DeviceId, role: Role, field: String| {
        for (other_case, existing) in memberships(device) {
            if other_case != case.id && existing != role {
                report.errors.push(CaseError {
                    case: case.id.clone(),
                    order: None,
                    field: field.clone(),
                    problem: Problem::DeviceRoleConflict {
                        device: device.to_string(),
                        existing: match existing {
                            Role::Offender => "the offender's bracelet".into(),
                            Role::Protected => "a protected person's device".into(),
                        },
                        other_case: other_case.to_string(),
                    },
                });
            }
        }
    };
    check(
        &case.offender.device,
        Role::Offender,
        "offender.device".into(),
    );
    for (i, p) in case.protected.iter().enumerate() {
        if let Some(device) = &p.device {
            check(device, Role::Protected, format!("protected[{i}].device"));
        }
    }
}

/// Everything found wrong with one case.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ValidationReport {
    pub errors: Vec<CaseError>,
    pub warnings: Vec<CaseError>,
}

impl ValidationReport {
    pub fn is_ok(&self) -> bool {
        self.errors.is_empty()
    }
}

/// One problem, located: case, order (if any) and the field's path.
#[derive(Debug, Clone, PartialEq, Serialize, Error)]
#[error("case {case}{}, field `{field}`: {problem}", order_suffix(.order))]
pub struct CaseError {
    pub case: CaseId,
    pub order: Option<OrderId>,
    pub field: String,
    pub problem: Problem,
}

fn order_suffix(order: &Option<OrderId>) -> String {
    order
        .as_ref()
        .map(|o| format!(", order {o}"))
        .unwrap_or_default()
}

#[derive(Debug, Clone, PartialEq, Serialize, Error)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum Problem {
    #[error("ring is not closed: first point {first:?} differs from last {last:?}")]
    RingNotClosed { first: [f64; 2], last: [f64; 2] },
    #[error("ring has {found} points; a closed ring needs at least 4")]
    TooFewRingPoints { found: usize },
    #[error("invalid polygon: {detail}")]
    InvalidPolygon { detail: String },
    #[error("geometry has no polygon")]
    EmptyGeometry,
    #[error("zone reaches {reach_m} m from its centre; no zone may exceed {max} m")]
    ZoneTooLarge { reach_m: f64, max: f64 },
    #[error("value {value} is not a finite number")]
    NotFinite { value: f64 },
    #[error("latitude {lat} is outside -90..90")]
    LatitudeOutOfRange { lat: f64 },
    #[error("longitude {lon} is outside -180..180")]
    LongitudeOutOfRange { lon: f64 },
    #[error("position [{lon}, {lat}] looks like [lat, lon]; GeoJSON positions are [lon, lat]")]
    LatLonSwapped { lon: f64, lat: f64 },
    #[error("position [{lon}, {lat}] lies outside the Netherlands")]
    OutsideNetherlands { lon: f64, lat: f64 },
    #[error("{value} m must be greater than zero")]
    NotPositive { value: f64 },
    #[error("{value} m must not be negative")]
    Negative { value: f64 },
    #[error("{value} m is more than the {max} m any order can mean")]
    Absurd { value: f64, max: f64 },
    #[error("alarm radius {alarm_m} m is larger than warning radius {warning_m} m")]
    AlarmExceedsWarning { alarm_m: f64, warning_m: f64 },
    #[error("schedule has no windows")]
    NoWindows,
    #[error("window has no days")]
    NoDays,
    #[error("window starts and ends at the same time")]
    EmptyWindow,
    #[error("window overlaps window {other} on {day}")]
    OverlappingWindows { other: usize, day: String },
    #[error("grace of {value} s is longer than a day")]
    GraceTooLong { value: u32 },
    #[error("validity ends ({until}) before it starts ({from})")]
    ValidityEndsBeforeStart { from: String, until: String },
    #[error("identifier is empty")]
    EmptyId,
    #[error("order id `{id}` is used twice")]
    DuplicateOrder { id: String },
    #[error("protected person `{id}` is listed twice")]
    DuplicateProtectedPerson { id: String },
    #[error("unknown protected person `{id}`")]
    UnknownProtectedPerson { id: String },
    #[error("protected person `{id}` has no device, which a contact ban needs")]
    ProtectedPersonWithoutDevice { id: String },
    #[error("device `{device}` is used for more than one person in this case")]
    DeviceUsedTwice { device: String },
    #[error("device `{device}` is {existing} in case {other_case}")]
    DeviceRoleConflict {
        device: String,
        existing: String,
        other_case: String,
    },
    // Orders that cannot work as written (crate::order_checks): warnings only.
    #[error(
        "the offender's registered address lies inside this exclusion zone, \
         {inside_by_m} m from its edge: he cannot be at home {}",
        while_on(.scheduled, "at all")
    )]
    AddressInOwnZone { inside_by_m: f64, scheduled: bool },
    #[error(
        "the offender's registered address lies {distance_m} m outside this exclusion zone, {}",
        near_zone(.distance_m, .warning_buffer_m, .scheduled)
    )]
    AddressNearOwnZone {
        distance_m: f64,
        warning_buffer_m: f64,
        scheduled: bool,
    },
    #[error(
        "the offender's registered address and {person}'s home are {distance_m} m apart, \
         within this contact ban's {alarm_radius_m} m alarm radius: \
         both being at home is a breach"
    )]
    HomesWithinAlarmRadius {
        person: String,
        distance_m: f64,
        alarm_radius_m: f64,
    },
    #[error(
        "{person}'s {place} lies inside this inclusion zone, {inside_by_m} m from its edge, \
         and no exclusion zone keeps him from it"
    )]
    ProtectedPlaceInInclusionZone {
        person: String,
        place: String,
        inside_by_m: f64,
    },
    #[error(
        "{} {radius_m} m is below the bracelet's usual accuracy of {accuracy_m} m: \
         its fixes cannot tell inside the zone from outside",
        zone_size(.equal_area)
    )]
    ZoneSmallerThanAccuracy {
        radius_m: f64,
        /// A polygon's size, given as the radius of the circle of equal area.
        equal_area: bool,
        accuracy_m: f64,
    },
    #[error(
        "alarm radius {alarm_radius_m} m is below the bracelet's usual accuracy of \
         {accuracy_m} m: a breach cannot be told from a near miss"
    )]
    AlarmRadiusBelowAccuracy {
        alarm_radius_m: f64,
        accuracy_m: f64,
    },
    #[error(
        "{available_min} min to get from the zone of order `{from_order}` to this one \
         ({when}), but they are {distance_km} km apart: {needed_min} min at {speed_kmh} km/h"
    )]
    NoTimeToTravel {
        from_order: String,
        /// The tightest change of zones in the week, e.g. "Monday 07:00 → 08:00".
        when: String,
        distance_km: f64,
        available_min: i32,
        needed_min: i32,
        speed_kmh: f64,
    },
}

fn while_on(scheduled: &bool, otherwise: &str) -> String {
    if *scheduled {
        "while its schedule is on".to_string()
    } else {
        otherwise.to_string()
    }
}

fn near_zone(distance_m: &f64, warning_buffer_m: &f64, scheduled: &bool) -> String {
    let at_home = if *scheduled {
        " while its schedule is on"
    } else {
        ""
    };
    if distance_m <= warning_buffer_m {
        format!(
            "within its {warning_buffer_m} m warning buffer: \
             being at home raises a zone warning{at_home}"
        )
    } else {
        format!(
            "closer than the bracelet's usual accuracy of {USUAL_ACCURACY_M} m: \
             being at home raises possible breaches{at_home}"
        )
    }
}

fn zone_size(equal_area: &bool) -> &'static str {
    if *equal_area {
        "zone has the area of a circle of radius"
    } else {
        "zone radius"
    }
}

/// Checks one case on its own. Cross-case checks (a device that is an
/// offender here and protected elsewhere) belong to the engine, which knows
/// the other cases.
pub fn validate_case(case: &Case) -> ValidationReport {
    let mut v = Validator {
        case: case.id.clone(),
        order: None,
        report: ValidationReport::default(),
    };
    if case.id.as_str().trim().is_empty() {
        v.error("id", Problem::EmptyId);
    }
    if case.offender.device.as_str().trim().is_empty() {
        v.error("offender.device", Problem::EmptyId);
    }
    if let Some(address) = case.offender.registered_address {
        v.position("offender.registered_address", address);
    }
    let mut people = BTreeSet::new();
    let mut devices = BTreeSet::from([case.offender.device.as_str()]);
    for (i, person) in case.protected.iter().enumerate() {
        if person.id.as_str().trim().is_empty() {
            v.error(format!("protected[{i}].id"), Problem::EmptyId);
        }
        if !people.insert(person.id.as_str()) {
            v.error(
                format!("protected[{i}].id"),
                Problem::DuplicateProtectedPerson {
                    id: person.id.to_string(),
                },
            );
        }
        if let Some(device) = &person.device {
            if device.as_str().trim().is_empty() {
                v.error(format!("protected[{i}].device"), Problem::EmptyId);
            } else if !devices.insert(device.as_str()) {
                v.error(
                    format!("protected[{i}].device"),
                    Problem::DeviceUsedTwice {
                        device: device.to_string(),
                    },
                );
            }
        }
        for (k, place) in person.places.iter().enumerate() {
            v.position(
                &format!("protected[{i}].places[{k}].position"),
                place.position,
            );
        }
    }
    let mut order_ids = BTreeSet::new();
    for (i, order) in case.orders.iter().enumerate() {
        v.order = Some(order.id.clone());
        let at = |field: &str| format!("orders[{i}].{field}");
        if order.id.as_str().trim().is_empty() {
            v.error(at("id"), Problem::EmptyId);
        }
        if !order_ids.insert(order.id.as_str()) {
            v.error(
                at("id"),
                Problem::DuplicateOrder {
                    id: order.id.to_string(),
                },
            );
        }
        if let Some(until) = order.valid_until {
            if until <= order.valid_from {
                v.error(
                    at("valid_until"),
                    Problem::ValidityEndsBeforeStart {
                        from: order.valid_from.to_string(),
                        until: until.to_string(),
                    },
                );
            }
        }
        match &order.rule {
            Rule::ExclusionZone {
                geometry,
                warning_buffer_m,
                schedule,
                around,
                ..
            } => {
                v.geometry(&at("rule.geometry"), geometry);
                if let Some(person) = around {
                    if !case.protected.iter().any(|p| &p.id == person) {
                        v.error(
                            at("rule.around"),
                            Problem::UnknownProtectedPerson {
                                id: person.to_string(),
                            },
                        );
                    }
                }
                if let Some(buffer) = warning_buffer_m {
                    v.distance(&at("rule.warning_buffer_m"), *buffer, true);
                }
                if let Some(schedule) = schedule {
                    v.schedule(&at("rule.schedule"), schedule);
                }
            }
            Rule::InclusionZone {
                geometry,
                schedule,
                grace_s,
            } => {
                v.geometry(&at("rule.geometry"), geometry);
                v.schedule(&at("rule.schedule"), schedule);
                if *grace_s > 24 * 3600 {
                    v.error(
                        at("rule.grace_s"),
                        Problem::GraceTooLong { value: *grace_s },
                    );
                }
            }
            Rule::ContactBan {
                protected,
                warning_radius_m,
                alarm_radius_m,
            } => {
                match case.protected.iter().find(|p| &p.id == protected) {
                    None => v.error(
                        at("rule.protected"),
                        Problem::UnknownProtectedPerson {
                            id: protected.to_string(),
                        },
                    ),
                    Some(p) if p.device.is_none() => v.error(
                        at("rule.protected"),
                        Problem::ProtectedPersonWithoutDevice {
                            id: protected.to_string(),
                        },
                    ),
                    Some(_) => {}
                }
                let warning_ok = v.distance(&at("rule.warning_radius_m"), *warning_radius_m, false);
                let alarm_ok = v.distance(&at("rule.alarm_radius_m"), *alarm_radius_m, false);
                if warning_ok && alarm_ok && alarm_radius_m > warning_radius_m {
                    v.error(
                        at("rule.alarm_radius_m"),
                        Problem::AlarmExceedsWarning {
                            alarm_m: *alarm_radius_m,
                            warning_m: *warning_radius_m,
                        },
                    );
                }
            }
        }
    }
    let findings = crate::order_checks::check(case, &v.report.errors);
    v.report.warnings.extend(findings);
    v.report
}

struct Validator {
    case: CaseId,
    order: Option<OrderId>,
    report: ValidationReport,
}

impl Validator {
    fn error(&mut self, field: impl Into<String>, problem: Problem) {
        let e = self.located(field.into(), problem);
        self.report.errors.push(e);
    }

    fn warning(&mut self, field: impl Into<String>, problem: Problem) {
        let e = self.located(field.into(), problem);
        self.report.warnings.push(e);
    }

    fn located(&self, field: String, problem: Problem) -> CaseError {
        CaseError {
            case: self.case.clone(),
            order: self.order.clone(),
            field,
            problem,
        }
    }

    /// Checks a radius or buffer; returns whether it is usable.
    fn distance(&mut self, field: &str, value: f64, zero_allowed: bool) -> bool {
        let problem = if !value.is_finite() {
            Some(Problem::NotFinite { value })
        } else if zero_allowed && value < 0.0 {
            Some(Problem::Negative { value })
        } else if !zero_allowed && value <= 0.0 {
            Some(Problem::NotPositive { value })
        } else if value > MAX_RADIUS_M {
            Some(Problem::Absurd {
                value,
                max: MAX_RADIUS_M,
            })
        } else {
            None
        };
        match problem {
            Some(p) => {
                self.error(field, p);
                false
            }
            None => true,
        }
    }

    /// Checks a GeoJSON `[lon, lat]` position; returns whether it is usable.
    fn position(&mut self, field: &str, [lon, lat]: [f64; 2]) -> bool {
        if !lon.is_finite() || !lat.is_finite() {
            let value = if lon.is_finite() { lat } else { lon };
            self.error(field, Problem::NotFinite { value });
            return false;
        }
        let in_nl = |lat: f64, lon: f64| {
            (NL_LAT.0..=NL_LAT.1).contains(&lat) && (NL_LON.0..=NL_LON.1).contains(&lon)
        };
        if !in_nl(lat, lon) && in_nl(lon, lat) {
            self.error(field, Problem::LatLonSwapped { lon, lat });
            return false;
        }
        if !(-90.0..=90.0).contains(&lat) {
            self.error(field, Problem::LatitudeOutOfRange { lat });
            return false;
        }
        if !(-180.0..=180.0).contains(&lon) {
            self.error(field, Problem::LongitudeOutOfRange { lon });
            return false;
        }
        if !in_nl(lat, lon) {
            self.warning(field, Problem::OutsideNetherlands { lon, lat });
        }
        true
    }

    fn geometry(&mut self, field: &str, geometry: &ZoneGeometry) {
        self.extent(field, geometry);
        match geometry {
            ZoneGeometry::Circle {
                coordinates,
                radius_m,
            } => {
                self.position(&format!("{field}.coordinates"), *coordinates);
                self.distance(&format!("{field}.radius_m"), *radius_m, false);
            }
            ZoneGeometry::Polygon { coordinates } => {
                if let Some(polygon) = self.polygon(&format!("{field}.coordinates"), coordinates) {
                    if let Err(e) = polygon.check_validation() {
                        self.error(
                            format!("{field}.coordinates"),
                            Problem::InvalidPolygon {
                                detail: e.to_string(),
                            },
                        );
                    }
                }
            }
            ZoneGeometry::MultiPolygon { coordinates } => {
                if coordinates.is_empty() {
                    self.error(format!("{field}.coordinates"), Problem::EmptyGeometry);
                }
                let polygons: Vec<Polygon> = coordinates
                    .iter()
                    .enumerate()
                    .filter_map(|(i, rings)| {
                        let polygon = self.polygon(&format!("{field}.coordinates[{i}]"), rings);
                        if let Some(Err(e)) = polygon.as_ref().map(|p| p.check_validation()) {
                            self.error(
                                format!("{field}.coordinates[{i}]"),
                                Problem::InvalidPolygon {
                                    detail: e.to_string(),
                                },
                            );
                            return None;
                        }
                        polygon
                    })
                    .collect();
                if polygons.len() == coordinates.len() && polygons.len() > 1 {
                    if let Err(e) = MultiPolygon::new(polygons).check_validation() {
                        self.error(
                            format!("{field}.coordinates"),
                            Problem::InvalidPolygon {
                                detail: e.to_string(),
                            },
                        );
                    }
                }
            }
        }
    }

    /// A zone is judged in the tangent plane at its centre, which is exact
    /// to centimetres within 50 km of it; a larger zone is a mistake anyway.
    fn extent(&mut self, field: &str, geometry: &ZoneGeometry) {
        let positions: Vec<[f64; 2]> = match geometry {
            ZoneGeometry::Circle { .. } => return,
            ZoneGeometry::Polygon { coordinates } => {
                coordinates.iter().flatten().copied().collect()
            }
            ZoneGeometry::MultiPolygon { coordinates } => {
                coordinates.iter().flatten().flatten().copied().collect()
            }
        };
        let usable =
            |p: &&[f64; 2]| (-180.0..=180.0).contains(&p[0]) && (-90.0..=90.0).contains(&p[1]);
        let mut min = [f64::INFINITY; 2];
        let mut max = [f64::NEG_INFINITY; 2];
        for p in positions.iter().filter(usable) {
            for i in 0..2 {
                min[i] = min[i].min(p[i]);
                max[i] = max[i].max(p[i]);
            }
        }
        if !min[0].is_finite() {
            return;
        }
        let (lat, lon) = ((min[1] + max[1]) / 2.0, (min[0] + max[0]) / 2.0);
        let reach = positions
            .iter()
            .filter(usable)
            .map(|p| crate::geodesy::distance_m(lat, lon, p[1], p[0]))
            .fold(0.0, f64::max);
        if reach > MAX_RADIUS_M {
            self.error(
                format!("{field}.coordinates"),
                Problem::ZoneTooLarge {
                    reach_m: reach.round(),
                    max: MAX_RADIUS_M,
                },
            );
        }
    }

    /// Checks the rings of one polygon; the polygon if every ring is usable.
    fn polygon(&mut self, field: &str, rings: &[Vec<[f64; 2]>]) -> Option<Polygon> {
        if rings.is_empty() {
            self.error(field, Problem::EmptyGeometry);
            return None;
        }
        let mut usable = true;
        let mut line_strings = Vec::with_capacity(rings.len());
        for (r, ring) in rings.iter().enumerate() {
            let ring_field = format!("{field}[{r}]");
            let mut ring_ok = true;
            for (p, position) in ring.iter().enumerate() {
                ring_ok &= self.position(&format!("{ring_field}[{p}]"), *position);
            }
            if ring.len() < 4 {
                self.error(&ring_field, Problem::TooFewRingPoints { found: ring.len() });
                ring_ok = false;
            } else if ring.first() != ring.last() {
                self.error(
                    &ring_field,
                    Problem::RingNotClosed {
                        first: ring[0],
                        last: ring[ring.len() - 1],
                    },
                );
                ring_ok = false;
            }
            usable &= ring_ok;
            line_strings.push(LineString::from(
                ring.iter().map(|[x, y]| (*x, *y)).collect::<Vec<_>>(),
            ));
        }
        if !usable {
            return None;
        }
        let exterior = line_strings.remove(0);
        Some(Polygon::new(exterior, line_strings))
    }

    fn schedule(&mut self, field: &str, schedule: &Schedule) {
        if schedule.windows.is_empty() {
            self.error(format!("{field}.windows"), Problem::NoWindows);
        }
        for (i, window) in schedule.windows.iter().enumerate() {
            let wf = format!("{field}.windows[{i}]");
            if window.days.is_empty() {
                self.error(format!("{wf}.days"), Problem::NoDays);
            }
            if window.start == window.end {
                self.error(&wf, Problem::EmptyWindow);
            }
        }
        let occurrences = week_occurrences(schedule);
        let mut reported = BTreeSet::new();
        for (n, a) in occurrences.iter().enumerate() {
            for b in &occurrences[n + 1..] {
                // Compare with b shifted by a week either way: Sunday night
                // runs into Monday morning.
                let overlaps = [-WEEK, 0, WEEK]
                    .iter()
                    .any(|shift| a.start < b.end + shift && b.start + shift < a.end);
                if overlaps && reported.insert((a.window.min(b.window), a.window.max(b.window))) {
                    self.error(
                        format!("{field}.windows[{}]", a.window.max(b.window)),
                        Problem::OverlappingWindows {
                            other: a.window.min(b.window),
                            day: DayName(a.day).to_string(),
                        },
                    );
                }
            }
        }
    }
}

/// Minutes in a week.
pub(crate) const WEEK: i32 = 7 * 24 * 60;

/// One weekly occurrence of a window, in minutes of local clock time from
/// Monday 00:00 (DST ignored); `end` may pass the week's end on a Sunday night.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Occurrence {
    pub start: i32,
    pub end: i32,
    /// The window's index in the schedule.
    pub window: usize,
    pub day: Day,
}

/// Every occurrence of every non-empty window, in window and day order.
pub(crate) fn week_occurrences(schedule: &Schedule) -> Vec<Occurrence> {
    let mut occurrences = Vec::new();
    for (i, window) in schedule.windows.iter().enumerate() {
        if window.start == window.end {
            continue;
        }
        for day in &window.days {
            let start = day.index_from_monday() * 24 * 60 + window.start_minute_of_day();
            occurrences.push(Occurrence {
                start,
                end: start + window.nominal_minutes(),
                window: i,
                day: *day,
            });
        }
    }
    occurrences
}

pub(crate) struct DayName(pub Day);

impl fmt::Display for DayName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use crate::schedule::Day::*;
        f.write_str(match self.0 {
            Mon => "Monday",
            Tue => "Tuesday",
            Wed => "Wednesday",
            Thu => "Thursday",
            Fri => "Friday",
            Sat => "Saturday",
            Sun => "Sunday",
        })
    }
}
