//! Between fixes: the line between two consecutive fixes of a moving
//! offender is evidence too (straight, or bent along the velocities the
//! bracelet reported at each fix).
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

use crate::geodesy::{Ecef, LocalFrame, Planar};
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

/// One end of the line: a fix's time, position, accuracy and, when the
/// device sent them, its own speed and heading.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct End {
    pub ts: Timestamp,
    pub lat: f64,
    pub lon: f64,
    pub accuracy_m: f64,
    pub velocity: Option<Velocity>,
}

/// A device's own movement at a fix (its receiver's Doppler), metres per
/// second east and north.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Velocity {
    pub east_mps: f64,
    pub north_mps: f64,
}

impl Velocity {
    /// From a speed and a heading in degrees clockwise from north.
    pub fn from_speed_heading(speed_mps: f64, heading_deg: f64) -> Self {
        let (sin, cos) = heading_deg.to_radians().sin_cos();
        Velocity {
            east_mps: speed_mps * sin,
            north_mps: speed_mps * cos,
        }
    }
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

/// The way he went from one fix to the next, at the times between them.
///
/// Straight, unless both fixes carry the device's own velocity: then the
/// curve that leaves the first fix and reaches the second along them (a
/// cubic Hermite curve, parametrised by time). Roads bend; a car that
/// heads east at one fix and north at the next turned a corner between
/// them, and the corner lies off the straight line, toward where both
/// headings point. On simulated drive-bys past her workplace, where the
/// route turns near her, the curve comes about twice as close to the
/// corner as the straight line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Line {
    pub from: End,
    pub to: End,
    frame: LocalFrame,
    /// The second fix on the tangent plane at the first.
    end: Planar,
    /// The curve's tangents at each end, metres (velocity × gap).
    tangents: Option<[Planar; 2]>,
}

/// Zones and curves are searched at most this many metres apart along the
/// line, and in at most [`MAX_STEPS`] steps: a few metres of a 2 km line
/// are not worth more.
const STEP_M: f64 = 10.0;
const MAX_STEPS: usize = 256;

impl Line {
    pub fn new(from: End, to: End) -> Self {
        let frame = LocalFrame::new(from.lat, from.lon);
        let end = frame.project_lat_lon(to.lat, to.lon);
        let gap_s = to.ts.duration_since(from.ts).as_secs_f64().max(0.0);
        let tangent = |v: Velocity| Planar {
            east: v.east_mps * gap_s,
            north: v.north_mps * gap_s,
        };
        let tangents = from
            .velocity
            .zip(to.velocity)
            .map(|(a, b)| [tangent(a), tangent(b)]);
        Line {
            from,
            to,
            frame,
            end,
            tangents,
        }
    }

    pub fn gap_s(&self) -> f64 {
        self.to.ts.duration_since(self.from.ts).as_secs_f64()
    }

    /// The straight distance between the fixes, metres.
    pub fn length_m(&self) -> f64 {
        self.end.east.hypot(self.end.north)
    }

    /// No point of the line is further than this from the second fix,
    /// metres: the curve lies within the hull of its Bézier control points.
    pub fn reach_m(&self) -> f64 {
        let Some([m0, m1]) = self.tangents else {
            return self.length_m();
        };
        let (e, n) = (self.end.east, self.end.north);
        let second = (e - m0.east / 3.0).hypot(n - m0.north / 3.0);
        let third = m1.east.hypot(m1.north) / 3.0;
        self.length_m().max(second).max(third)
    }

    /// Metres east and north of the first fix, a `fraction` of the time
    /// between the fixes.
    fn planar_at(&self, f: f64) -> Planar {
        let straight = Planar {
            east: self.end.east * f,
            north: self.end.north * f,
        };
        let off = self.off_straight(f);
        Planar {
            east: straight.east + off.east,
            north: straight.north + off.north,
        }
    }

    /// How far the curve is from the straight line at `f`, metres; zero at
    /// both ends.
    fn off_straight(&self, f: f64) -> Planar {
        let Some([m0, m1]) = self.tangents else {
            return Planar {
                east: 0.0,
                north: 0.0,
            };
        };
        let (f2, f3) = (f * f, f * f * f);
        let h10 = f3 - 2.0 * f2 + f;
        let h11 = f3 - f2;
        let h01 = -2.0 * f3 + 3.0 * f2;
        let p1 = h01 - f;
        Planar {
            east: h10 * m0.east + h11 * m1.east + p1 * self.end.east,
            north: h10 * m0.north + h11 * m1.north + p1 * self.end.north,
        }
    }

    /// The point a `fraction` (0 to 1) of the time along.
    pub fn at(&self, fraction: f64) -> LinePoint {
        let f = fraction.clamp(0.0, 1.0);
        let lerp = |a: f64, b: f64| a + f * (b - a);
        // The straight line in degrees, exact at both ends; the curve's
        // offset from it, at most a few hundred metres, converted at the
        // first fix's scale (centimetres of error).
        let off = self.off_straight(f);
        let (m_per_deg_lat, m_per_deg_lon) = self.frame.metres_per_degree();
        let lat = lerp(self.from.lat, self.to.lat) + off.north / m_per_deg_lat;
        let lon = lerp(self.from.lon, self.to.lon) + off.east / m_per_deg_lon;
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

    /// How many steps search the line finely enough.
    fn steps(&self) -> usize {
        ((self.reach_m() / STEP_M).ceil() as usize).clamp(1, MAX_STEPS)
    }

    /// The point closest to a position: exact on the tangent plane at the
    /// line's start for a straight line, searched for a curve.
    pub fn closest_to(&self, lat: f64, lon: f64) -> LinePoint {
        let target = self.frame.project_lat_lon(lat, lon);
        if self.tangents.is_none() {
            let end = self.end;
            let length_sq = end.east * end.east + end.north * end.north;
            let fraction = if length_sq > 0.0 {
                (target.east * end.east + target.north * end.north) / length_sq
            } else {
                0.0
            };
            return self.at(fraction);
        }
        let steps = self.steps();
        let distance_sq = |f: f64| {
            let p = self.planar_at(f);
            (p.east - target.east).powi(2) + (p.north - target.north).powi(2)
        };
        let best = (0..=steps)
            .map(|k| k as f64 / steps as f64)
            .min_by(|a, b| distance_sq(*a).total_cmp(&distance_sq(*b)))
            .unwrap_or(0.0);
        self.at(best)
    }

    /// The point deepest into a zone (least signed distance to its edge),
    /// searched along the line; `None` when no point of it can come within
    /// `within_m` of the zone, which most lines settle at once.
    pub fn deepest_into(&self, zone: &CompiledZone, within_m: f64) -> Option<(LinePoint, f64)> {
        let end = Ecef::from_lat_lon(self.to.lat, self.to.lon);
        if !zone.may_touch(&end, within_m + self.reach_m()) {
            return None;
        }
        let steps = self.steps();
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
            velocity: None,
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

    fn east_of(metres: f64, end: End) -> End {
        let frame = LocalFrame::new(end.lat, end.lon);
        End {
            lon: end.lon + metres / frame.metres_per_degree().1,
            ..end
        }
    }

    #[test]
    fn a_line_bends_along_the_velocities_at_its_ends() {
        // A corner at her door: 420 m west of it heading east, then 420 m
        // north of it heading north, 14 m/s all the way.
        let moving = |heading| Some(Velocity::from_speed_heading(14.0, heading));
        let from = End {
            velocity: moving(90.0),
            ..east_of(-420.0, north_of(0.0, 0))
        };
        let to = End {
            velocity: moving(0.0),
            ..north_of(420.0, 60)
        };
        let straight = Line::new(
            End {
                velocity: None,
                ..from
            },
            End {
                velocity: None,
                ..to
            },
        );
        let curve = Line::new(from, to);
        let her = Ecef::from_lat_lon(LAT, LON);
        let by_line = straight.closest_to(LAT, LON).ecef.distance_m(&her);
        let by_curve = curve.closest_to(LAT, LON).ecef.distance_m(&her);
        assert!((by_line - 297.0).abs() < 3.0, "{by_line}");
        assert!(by_curve < 160.0, "{by_curve}");
        // Both reach each fix, and the curve stays within its reach.
        for line in [straight, curve] {
            let start = line
                .at(0.0)
                .ecef
                .distance_m(&Ecef::from_lat_lon(from.lat, from.lon));
            let end = line
                .at(1.0)
                .ecef
                .distance_m(&Ecef::from_lat_lon(to.lat, to.lon));
            assert!(start < 0.01 && end < 0.01, "{start} {end}");
            let furthest = (0..=100)
                .map(|k| {
                    line.at(f64::from(k) / 100.0)
                        .ecef
                        .distance_m(&Ecef::from_lat_lon(to.lat, to.lon))
                })
                .fold(0.0, f64::max);
            assert!(furthest <= line.reach_m() + 0.01, "{furthest}");
        }
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
