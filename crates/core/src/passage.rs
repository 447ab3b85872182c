//! Between fixes: the straight line between two consecutive fixes of a
//! moving offender is evidence too.
//!
//! A car at 55 km/h covers 900 m between fixes a minute apart: 450 m south
//! of her, then 450 m north, and neither fix is within a 200 m alarm
//! radius, though the road between them passes her door. This module finds
//! where such a line comes closest to her, or deepest into a zone, and
//! when (at constant speed along it). The engine judges that point as it
//! would a fix and raises at most a *possible* breach: he may have taken
//! another road. By the time it is found he is past, so it is for the
//! monitoring room (the alert desk routes it).
//!
//! Pure geometry on the tangent plane: it never decides whether an episode
//! opens (the engine's track does) and never reads a clock.

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use crate::geodesy::{Ecef, LocalFrame};
use crate::zone::CompiledZone;

/// The closest approach on the straight line between two fixes, as an
/// alert reports it (`between_fixes`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Passage {
    /// The times of the two fixes the line joins.
    pub from: Timestamp,
    pub to: Timestamp,
    /// When and where on the line he came closest, moving at a constant
    /// speed along it.
    pub at: Timestamp,
    pub lat: f64,
    pub lon: f64,
    /// Metres between the parties there (contact ban), or to the zone's
    /// edge (negative inside).
    pub distance_m: f64,
    /// The fixes are further apart than `between_fixes_max_gap_s`: the
    /// line is a guess, and the alert a note for the monitoring room.
    pub long_gap: bool,
}

/// One end of the line: a fix's time, position and accuracy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct End {
    pub ts: Timestamp,
    pub lat: f64,
    pub lon: f64,
    pub accuracy_m: f64,
}

/// A point on the line, with the accuracy of the fixes interpolated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinePoint {
    pub ts: Timestamp,
    pub lat: f64,
    pub lon: f64,
    pub accuracy_m: f64,
    pub ecef: Ecef,
}

/// The straight line from one fix to the next.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Line {
    pub from: End,
    pub to: End,
}

/// Zones are searched at most this many metres apart along the line, and
/// in at most [`MAX_STEPS`] steps: a few metres of a 2 km line are not
/// worth more.
const STEP_M: f64 = 10.0;
const MAX_STEPS: usize = 256;

impl Line {
    pub fn new(from: End, to: End) -> Self {
        Line { from, to }
    }

    pub fn gap_s(&self) -> f64 {
        self.to.ts.duration_since(self.from.ts).as_secs_f64()
    }

    /// Its length in metres.
    pub fn length_m(&self) -> f64 {
        self.start_ecef().distance_m(&self.end_ecef())
    }

    fn start_ecef(&self) -> Ecef {
        Ecef::from_lat_lon(self.from.lat, self.from.lon)
    }

    fn end_ecef(&self) -> Ecef {
        Ecef::from_lat_lon(self.to.lat, self.to.lon)
    }

    /// The point a `fraction` (0 to 1) of the way along.
    pub fn at(&self, fraction: f64) -> LinePoint {
        let f = fraction.clamp(0.0, 1.0);
        let lerp = |a: f64, b: f64| a + f * (b - a);
        let (lat, lon) = (
            lerp(self.from.lat, self.to.lat),
            lerp(self.from.lon, self.to.lon),
        );
        let nanos = self.to.ts.duration_since(self.from.ts).as_nanos() as f64;
        let ts = self
            .from
            .ts
            .checked_add(SignedDuration::from_nanos((nanos * f) as i64))
            .unwrap_or(self.to.ts);
        LinePoint {
            ts,
            lat,
            lon,
            accuracy_m: lerp(self.from.accuracy_m, self.to.accuracy_m),
            ecef: Ecef::from_lat_lon(lat, lon),
        }
    }

    /// The point closest to a position, exact on the tangent plane at the
    /// line's start.
    pub fn closest_to(&self, lat: f64, lon: f64) -> LinePoint {
        let frame = LocalFrame::new(self.from.lat, self.from.lon);
        let end = frame.project(&self.end_ecef());
        let target = frame.project_lat_lon(lat, lon);
        let length_sq = end.east * end.east + end.north * end.north;
        let fraction = if length_sq > 0.0 {
            (target.east * end.east + target.north * end.north) / length_sq
        } else {
            0.0
        };
        self.at(fraction)
    }

    /// The point deepest into a zone (least signed distance to its edge),
    /// searched along the line; `None` when no point of it can come within
    /// `within_m` of the zone, which most lines settle at once.
    pub fn deepest_into(&self, zone: &CompiledZone, within_m: f64) -> Option<(LinePoint, f64)> {
        let length = self.length_m();
        // Every point of the line lies within half its length of an end.
        let (a, b) = (self.start_ecef(), self.end_ecef());
        if !zone.may_touch(&a, within_m + length) && !zone.may_touch(&b, within_m + length) {
            return None;
        }
        let steps = ((length / STEP_M).ceil() as usize).clamp(1, MAX_STEPS);
        (0..=steps)
            .map(|k| {
                let point = self.at(k as f64 / steps as f64);
                (point, zone.signed_distance_m(&point.ecef))
            })
            .min_by(|x, y| x.1.total_cmp(&y.1))
            .filter(|(_, d)| *d <= within_m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ZoneGeometry;

    /// Metres north of a point in Rotterdam, as degrees of latitude.
    const M_PER_DEG_LAT: f64 = 111_250.0;
    const LAT: f64 = 51.92;
    const LON: f64 = 4.47;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_764_000_000 + s).unwrap()
    }

    fn north_of(metres: f64, s: i64) -> End {
        End {
            ts: t(s),
            lat: LAT + metres / M_PER_DEG_LAT,
            lon: LON,
            accuracy_m: 10.0,
        }
    }

    #[test]
    fn a_drive_by_comes_closest_between_the_fixes() {
        // 450 m south, then 450 m north a minute later: past her at 30 s.
        let line = Line::new(north_of(-450.0, 0), north_of(450.0, 60));
        let closest = line.closest_to(LAT, LON);
        let d = closest.ecef.distance_m(&Ecef::from_lat_lon(LAT, LON));
        assert!(d < 2.0, "{d}");
        let at = closest.ts.duration_since(t(0)).as_secs_f64();
        assert!((at - 30.0).abs() < 0.5, "{at}");
        assert!((line.length_m() - 900.0).abs() < 5.0);
    }

    #[test]
    fn the_closest_point_never_leaves_the_line() {
        // Both fixes north of her: the nearer end is the closest point.
        let line = Line::new(north_of(300.0, 0), north_of(900.0, 60));
        let closest = line.closest_to(LAT, LON);
        assert_eq!(closest.ts, t(0));
        let line = Line::new(north_of(300.0, 0), north_of(300.0, 60));
        assert_eq!(line.closest_to(LAT, LON).ts, t(0), "a line of no length");
    }

    #[test]
    fn a_line_through_a_zone_finds_its_middle() {
        let zone = CompiledZone::compile(&ZoneGeometry::Circle {
            coordinates: [LON, LAT],
            radius_m: 200.0,
        })
        .unwrap();
        let line = Line::new(north_of(-450.0, 0), north_of(450.0, 60));
        let (deepest, d) = line.deepest_into(&zone, 0.0).unwrap();
        assert!(d < -190.0, "{d}");
        let at = deepest.ts.duration_since(t(0)).as_secs_f64();
        assert!((at - 30.0).abs() < 1.0, "{at}");
        let far = Line::new(north_of(2_000.0, 0), north_of(3_000.0, 60));
        assert!(far.deepest_into(&zone, 100.0).is_none());
    }
}
