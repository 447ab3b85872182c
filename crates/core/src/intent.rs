//! Reading intent: how the two parties of a contact ban move relative to
//! each other when they are close.
//!
//! Two people inside the alarm radius may be there because he came for her,
//! or because his car, bus or tram happens to pass her, or because they sit
//! on the same tram. Field centres page the police for all three; this
//! module reads which it looks like from the fixes the engine already holds,
//! so that the alert can say so ([`ProximityContext`], the alert's
//! `context`) and the alert desk can route by it.
//!
//! It never decides whether a ban is breached (the accuracy disc does that,
//! in the engine's rules) and never delays the monitoring room: a reading
//! only says whether the police should wait for the next fix
//! ([`Reading::waits_for_police`]).
//!
//! Speeds are what the fixes prove: the device's own (Doppler) speed when it
//! reports one, else the move between its last two fixes *less both
//! accuracies*, so GPS noise never reads as speed. A reading that waits for
//! the police needs proven speed; when in doubt the reading is one that
//! pages them.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::config::EngineConfig;
use crate::geodesy::{Ecef, LocalFrame};
use crate::model::PlaceKind;
use crate::patterns::HerPlace;

/// What the closeness of the two parties looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reading {
    /// He moves towards her.
    Approach,
    /// Close, and he is not passing at speed, nor moving with her: standing,
    /// walking about, or she came to him.
    Together,
    /// They pass each other at a vehicle's speed (`passing_speed_mps`), not
    /// travelling together: his car or bus going by her, or hers by him,
    /// unless a later fix shows them slowing down near each other. Also
    /// two riding onto the same way at a cyclist's pace ([`merging`]), he
    /// not heading at her: the next fix tells riding on together from
    /// turning to her.
    Passing,
    /// Both move the same way at the same speed (`co_travel_*` settings):
    /// the same tram, bus or motorway, or following her.
    CoTravel,
    /// His movement is not known: no earlier fix of his recent enough to
    /// read it from, or no fix of his for `passing_wait_s` after one that
    /// showed him moving (a wait for the police ends then: he may have
    /// stopped beside her).
    Unclear,
    /// Passing each other for `police_max_wait_s`: no longer a moment's
    /// coincidence (a car circling her block), and the police are paged.
    Lasting,
}

impl Reading {
    /// Whether the police wait for the next fix before they are paged:
    /// while he passes at speed or travels with her. A reading that
    /// becomes any other one pages them at once (see the alert desk).
    pub fn waits_for_police(self) -> bool {
        matches!(self, Reading::Passing | Reading::CoTravel)
    }
}

/// How a contact-ban episode's two parties move, at the fix that decided
/// it: carried in the alert for the monitoring room and the police (never
/// for a device: it is derived from her position).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ProximityContext {
    pub reading: Reading,
    /// His speed over ground, m/s (see the module documentation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offender_speed_mps: Option<f64>,
    /// Degrees clockwise from north.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offender_course_deg: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protected_speed_mps: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protected_course_deg: Option<f64>,
    /// How fast the distance between them shrinks, m/s (negative: grows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closing_speed_mps: Option<f64>,
    /// The angle between his course and the direction from him to her:
    /// 0 straight at her, 180 straight away.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearing_off_deg: Option<f64>,
    /// At the closing speed, seconds until they meet; none when not closing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_to_contact_s: Option<f64>,
    /// Consecutive fixes (of either party) on which both moved together.
    pub co_travel_fixes: u32,
    /// The known place of hers (the case file's home, work, school) his
    /// course points at, if any ([`heading_to`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heading_to: Option<PlaceAhead>,
}

/// One of her known places that his course points at, and how far ahead.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PlaceAhead {
    pub place: PlaceKind,
    pub distance_m: f64,
}

/// His course points at a place when it is within this angle of the
/// direction to it, and the place within this distance: a kilometre is a
/// minute or two by car, and further off a course says little.
pub const HEADING_TO_DEG: f64 = 20.0;
pub const HEADING_TO_WITHIN_M: f64 = 1000.0;

/// The nearest of her known places his course points at, while he moves:
/// for whoever reads the alert, where he may be going. It does not change
/// the reading (a car on the road past her workplace heads at it as much
/// as one driving to it, until a fix shows it stop).
pub fn heading_to(
    his: &Movement,
    his_position: (f64, f64),
    places: &[HerPlace],
) -> Option<PlaceAhead> {
    let moving = his.best().filter(|m| m.speed_mps >= STANDING_MPS)?;
    let course = moving.course_deg?;
    let frame = LocalFrame::new(his_position.0, his_position.1);
    places
        .iter()
        .filter_map(|p| {
            let to = frame.project(&p.ecef);
            let distance_m = to.east.hypot(to.north);
            let bearing = to.east.atan2(to.north).to_degrees();
            let ahead = distance_m <= HEADING_TO_WITHIN_M
                && distance_m > 0.0
                && angle_between(course, bearing) <= HEADING_TO_DEG;
            ahead.then_some(PlaceAhead {
                place: p.kind,
                distance_m,
            })
        })
        .min_by(|a, b| a.distance_m.total_cmp(&b.distance_m))
}

/// One fix as intent reads it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrackPoint {
    pub ts: Timestamp,
    pub lat: f64,
    pub lon: f64,
    pub accuracy_m: f64,
    /// The device's own measure, when it sends one.
    pub speed_mps: Option<f64>,
    pub heading_deg: Option<f64>,
}

/// A party's movement at a fix: speed (m/s) and course (degrees from
/// north), the course unknown when it does not move.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Motion {
    pub speed_mps: f64,
    pub course_deg: Option<f64>,
}

impl Motion {
    /// Velocity east and north, m/s; zero without a course.
    fn velocity(&self) -> (f64, f64) {
        self.course_deg.map_or((0.0, 0.0), |c| {
            let (sin, cos) = c.to_radians().sin_cos();
            (self.speed_mps * sin, self.speed_mps * cos)
        })
    }
}

/// Below this a course means nothing, m/s.
pub const STANDING_MPS: f64 = 0.5;

/// A party's movement at a fix, read two ways: over the last interval
/// (`recent`: what it does now, the only one that may make the police
/// wait) and over the earliest fix within `motion_max_gap_s` (`sustained`:
/// a walk too slow for one interval's noise to prove).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Movement {
    pub recent: Option<Motion>,
    pub sustained: Option<Motion>,
}

impl Movement {
    /// The movement to report: the recent one when it shows a course, else
    /// the sustained one.
    pub fn best(&self) -> Option<Motion> {
        match (self.recent, self.sustained) {
            (Some(r), _) if r.course_deg.is_some() => Some(r),
            (r, s) => s.or(r),
        }
    }
}

/// The movement at `now` (see [`Movement`]) from `earlier`, the device's
/// trusted fixes before it, newest first. The device's own speed and
/// heading are taken when it reports them.
pub fn movement(earlier: &[TrackPoint], now: &TrackPoint, max_gap_s: f64) -> Movement {
    let in_reach = |b: &&TrackPoint| {
        let dt = now.ts.duration_since(b.ts).as_secs_f64();
        dt > 0.0 && dt <= max_gap_s
    };
    let newest = earlier.iter().find(in_reach);
    let oldest = earlier.iter().rev().find(in_reach);
    let recent = motion(newest, now);
    let sustained = match (now.speed_mps, oldest) {
        (None, Some(o)) if Some(o) != newest => motion(Some(o), now),
        _ => None,
    };
    Movement { recent, sustained }
}

/// The movement from `before` to `now`, or from the device's own speed.
fn motion(before: Option<&TrackPoint>, now: &TrackPoint) -> Option<Motion> {
    // East/north of `now` from `before`, and the move's lower bound.
    let moved = before.map(|b| {
        let frame = LocalFrame::new(b.lat, b.lon);
        let p = frame.project(&Ecef::from_lat_lon(now.lat, now.lon));
        let dt = now.ts.duration_since(b.ts).as_secs_f64();
        let proven = ((p.east.hypot(p.north) - b.accuracy_m - now.accuracy_m) / dt).max(0.0);
        (p.east.atan2(p.north), proven)
    });
    let (speed, course) = match (now.speed_mps, moved) {
        (Some(speed), _) => {
            let course = now
                .heading_deg
                .map(|h| h.to_radians())
                .or(moved.filter(|(_, proven)| *proven > 0.0).map(|(c, _)| c));
            (speed, course)
        }
        (None, Some((course, proven))) => (proven, Some(course)),
        (None, None) => return None,
    };
    let course = course
        .filter(|_| speed >= STANDING_MPS)
        .map(|c| c.to_degrees().rem_euclid(360.0));
    Some(Motion {
        speed_mps: speed,
        course_deg: course,
    })
}

/// The smaller angle between two courses, degrees.
fn angle_between(a: f64, b: f64) -> f64 {
    let d = (a - b).rem_euclid(360.0);
    d.min(360.0 - d)
}

/// Whether both move the same way at about the same speed. Once they do
/// (`already`), twice the course and half again the speed ratio keep them
/// together: their fixes are seconds apart on a winding road or track.
fn moving_together(his: &Motion, hers: &Motion, already: bool, config: &EngineConfig) -> bool {
    let (Some(a), Some(b)) = (his.course_deg, hers.course_deg) else {
        return false;
    };
    let (slow, fast) = if his.speed_mps < hers.speed_mps {
        (his.speed_mps, hers.speed_mps)
    } else {
        (hers.speed_mps, his.speed_mps)
    };
    let (course, ratio) = if already {
        (
            2.0 * config.co_travel_max_course_deg,
            1.5 * config.co_travel_speed_ratio,
        )
    } else {
        (
            config.co_travel_max_course_deg,
            config.co_travel_speed_ratio,
        )
    };
    slow >= config.co_travel_min_speed_mps && fast <= slow * ratio && angle_between(a, b) <= course
}

/// Faster than anyone walks: a cyclist's pace, m/s.
pub const MERGING_MIN_MPS: f64 = 3.0;
/// His course at least this far off the direction to her: not riding at
/// her (a man cycling straight at her is an approach, never a wait).
pub const MERGING_MIN_OFF_DEG: f64 = 30.0;

/// Whether two riders close in on each other as two riding onto the same
/// way do, rather than him riding at her: both at a cyclist's pace or more
/// and much the same speed, courses at most a right angle apart (merging,
/// not meeting head-on), his course `bearing_off_deg` well off the
/// direction to her. Where one path joins another two cyclists converge
/// for a fix before they ride together, and that fix would otherwise read
/// as an approach and page the police.
fn merging(
    his: &Motion,
    hers: &Motion,
    bearing_off_deg: Option<f64>,
    config: &EngineConfig,
) -> bool {
    let (Some(a), Some(b), Some(off)) = (his.course_deg, hers.course_deg, bearing_off_deg) else {
        return false;
    };
    let (slow, fast) = if his.speed_mps < hers.speed_mps {
        (his.speed_mps, hers.speed_mps)
    } else {
        (hers.speed_mps, his.speed_mps)
    };
    slow >= MERGING_MIN_MPS
        && fast <= slow * config.co_travel_speed_ratio
        && angle_between(a, b) <= 90.0
        && off >= MERGING_MIN_OFF_DEG
}

/// What the last reading of a pair left for the next one: a count of
/// fixes travelling together, whether they were passing each other, the
/// time of his fix it read when that showed him moving, and since when the
/// police wait. A wait ends by the clock ([`LastReading::wait_ends`]) when
/// a moving man's fixes stop (`passing_wait_s`; a man standing while she
/// passes reports less often) or when they have been passing each other
/// for `police_max_wait_s`; `released` then, until the readings stop
/// waiting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastReading {
    pub co_travel_fixes: u32,
    pub passing: bool,
    pub his_moving_fix: Option<Timestamp>,
    pub wait_since: Option<Timestamp>,
    pub released: bool,
}

impl LastReading {
    /// What `context`, read at `now`, leaves for the next reading.
    pub fn after(
        self,
        context: &ProximityContext,
        his_moving_fix: Option<Timestamp>,
        now: Timestamp,
    ) -> Self {
        let waits = context.reading.waits_for_police();
        LastReading {
            co_travel_fixes: context.co_travel_fixes,
            passing: context.reading == Reading::Passing,
            his_moving_fix,
            // Passing for minutes (a car circling her block) ends the wait;
            // travelling together is the monitoring room's to judge, as
            // long as it lasts (it asks them for action).
            wait_since: (context.reading == Reading::Passing)
                .then(|| self.wait_since.unwrap_or(now)),
            released: waits && self.released,
        }
    }

    /// When the police's wait ends by the clock, and as what: `unclear`
    /// when his fixes stopped, `lasting` when it lasted too long.
    pub fn wait_ends(&self, config: &EngineConfig) -> Option<(Timestamp, Reading)> {
        if self.released {
            return None;
        }
        let later = |t: Timestamp, s: u32| {
            t.checked_add(jiff::SignedDuration::from_secs(i64::from(s)))
                .unwrap_or(Timestamp::MAX)
        };
        let silence = self
            .his_moving_fix
            .map(|t| (later(t, config.passing_wait_s), Reading::Unclear));
        let length = self
            .wait_since
            .map(|t| (later(t, config.police_max_wait_s), Reading::Lasting));
        match (silence, length) {
            (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
            (a, b) => a.or(b),
        }
    }
}

impl ProximityContext {
    /// A reading made by the clock, without a fix to read movement from.
    pub fn without_movement(reading: Reading) -> Self {
        ProximityContext {
            reading,
            offender_speed_mps: None,
            offender_course_deg: None,
            protected_speed_mps: None,
            protected_course_deg: None,
            closing_speed_mps: None,
            bearing_off_deg: None,
            time_to_contact_s: None,
            co_travel_fixes: 0,
            heading_to: None,
        }
    }
}

/// Reads the closeness of him at `his_position` and her at `her_position`,
/// after the pair's `last` reading. Only recent movement makes the police
/// wait: passing (they pass each other at a vehicle's speed; once waiting,
/// until it falls below `passing_slowest_mps`: a car slowing at a corner
/// is still passing, one that stops is not) or co-travel.
pub fn read(
    his: Movement,
    hers: Movement,
    his_position: (f64, f64),
    her_position: (f64, f64),
    distance_m: f64,
    last: LastReading,
    config: &EngineConfig,
) -> ProximityContext {
    let together = match (&his.recent, &hers.recent) {
        (Some(h), Some(v)) => moving_together(h, v, last.co_travel_fixes > 0, config),
        _ => false,
    };
    let co_travel_fixes = if together {
        last.co_travel_fixes.saturating_add(1)
    } else {
        0
    };
    let (his_best, her_best) = (his.best(), hers.best());
    let mut context = ProximityContext {
        reading: Reading::Unclear,
        offender_speed_mps: his_best.map(|m| m.speed_mps),
        offender_course_deg: his_best.and_then(|m| m.course_deg),
        protected_speed_mps: her_best.map(|m| m.speed_mps),
        protected_course_deg: her_best.and_then(|m| m.course_deg),
        closing_speed_mps: None,
        bearing_off_deg: None,
        time_to_contact_s: None,
        co_travel_fixes,
        heading_to: None,
    };
    let Some(his_best) = his_best else {
        return context;
    };
    // Her direction from him, on the tangent plane at his position.
    let frame = LocalFrame::new(his_position.0, his_position.1);
    let to_her = frame.project(&Ecef::from_lat_lon(her_position.0, her_position.1));
    let length = to_her.east.hypot(to_her.north);
    let unit = if length > 0.0 {
        (to_her.east / length, to_her.north / length)
    } else {
        (0.0, 0.0)
    };
    let (he, hn) = his_best.velocity();
    let (ve, vn) = her_best.map_or((0.0, 0.0), |m| m.velocity());
    let his_closing = he * unit.0 + hn * unit.1;
    let closing = his_closing - (ve * unit.0 + vn * unit.1);
    context.closing_speed_mps = Some(closing);
    if let Some(course) = his_best.course_deg.filter(|_| length > 0.0) {
        let bearing = to_her.east.atan2(to_her.north).to_degrees();
        context.bearing_off_deg = Some(angle_between(course, bearing));
    }
    if closing > STANDING_MPS {
        context.time_to_contact_s = Some(distance_m.max(0.0) / closing);
    }
    // Once the police wait (passing, or travelling together until a car
    // overtakes a bike), they go on waiting until the two slow down.
    let passing_speed = if last.passing || last.co_travel_fixes > 0 {
        config.passing_slowest_mps
    } else {
        config.passing_speed_mps
    };
    let passing = his.recent.is_some_and(|h| {
        let (he, hn) = h.velocity();
        let (ve, vn) = hers.recent.map_or((0.0, 0.0), |m| m.velocity());
        // A course unknown below walking pace: the speed alone then.
        let relative = if h.course_deg.is_some() {
            (he - ve).hypot(hn - vn)
        } else {
            hers.recent.map_or(0.0, |m| m.speed_mps).max(h.speed_mps)
        };
        // One of them at a vehicle's speed: a jogger meeting a walker is
        // not a car passing by.
        let vehicle = h.speed_mps.max(hers.recent.map_or(0.0, |m| m.speed_mps)) >= passing_speed;
        relative >= passing_speed && vehicle
    });
    let merging = match (&his.recent, &hers.recent) {
        (Some(h), Some(v)) => merging(h, v, context.bearing_off_deg, config),
        _ => false,
    };
    context.reading = if together {
        Reading::CoTravel
    } else if passing || merging {
        Reading::Passing
    } else if his_closing >= STANDING_MPS {
        Reading::Approach
    } else {
        Reading::Together
    };
    context
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Metres east and north of a point in Rotterdam, as lat/lon.
    fn at(east: f64, north: f64) -> (f64, f64) {
        let (lat, lon) = (51.92, 4.48);
        (lat + north / 111_250.0, lon + east / 68_700.0)
    }

    fn point(secs: i64, east: f64, north: f64, accuracy_m: f64) -> TrackPoint {
        let (lat, lon) = at(east, north);
        TrackPoint {
            ts: Timestamp::from_second(1_800_000_000 + secs).unwrap(),
            lat,
            lon,
            accuracy_m,
            speed_mps: None,
            heading_deg: None,
        }
    }

    #[test]
    fn noise_is_not_speed() {
        // 30 m apart in 10 s, each fix good to 20 m: nothing is proven.
        let m = motion(Some(&point(0, 0.0, 0.0, 20.0)), &point(10, 30.0, 0.0, 20.0)).unwrap();
        assert_eq!(m.speed_mps, 0.0);
        assert_eq!(m.course_deg, None);
        // 150 m north in 10 s with 5 m fixes: at least 14 m/s, heading north.
        let m = motion(Some(&point(0, 0.0, 0.0, 5.0)), &point(10, 0.0, 150.0, 5.0)).unwrap();
        assert!((m.speed_mps - 14.0).abs() < 0.1, "{m:?}");
        assert!(angle_between(m.course_deg.unwrap(), 0.0) < 1.0, "{m:?}");
    }

    #[test]
    fn a_reported_speed_is_taken_and_an_old_fix_is_not() {
        let mut now = point(10, 0.0, 150.0, 5.0);
        now.speed_mps = Some(3.0);
        now.heading_deg = Some(90.0);
        let m = movement(&[point(0, 0.0, 0.0, 5.0)], &now, 120.0);
        let recent = m.recent.unwrap();
        assert_eq!((recent.speed_mps, recent.course_deg), (3.0, Some(90.0)));
        assert_eq!(m.sustained, None, "the device's own speed is its speed now");
        let m = movement(
            &[point(0, 0.0, 0.0, 5.0)],
            &point(600, 0.0, 150.0, 5.0),
            120.0,
        );
        assert_eq!(m, Movement::default());
    }

    #[test]
    fn a_walk_is_proven_over_the_window_when_one_interval_cannot() {
        // 1.4 m/s north, fixes every 10 s good to 5 m.
        let earlier: Vec<_> = (0..6)
            .rev()
            .map(|k| point(10 * k, 0.0, 14.0 * k as f64, 5.0))
            .collect();
        let m = movement(&earlier, &point(60, 0.0, 84.0, 5.0), 120.0);
        assert!(m.recent.unwrap().speed_mps < 0.5, "{m:?}");
        let walk = m.best().unwrap();
        assert!((walk.speed_mps - 74.0 / 60.0).abs() < 0.01, "{m:?}");
        assert!(angle_between(walk.course_deg.unwrap(), 0.0) < 1.0);
    }

    fn moving(speed_mps: f64, course_deg: f64) -> Movement {
        let m = Motion {
            speed_mps,
            course_deg: Some(course_deg),
        };
        Movement {
            recent: Some(m),
            sustained: None,
        }
    }

    fn still() -> Movement {
        Movement {
            recent: Some(Motion {
                speed_mps: 0.0,
                course_deg: None,
            }),
            sustained: None,
        }
    }

    fn reading_of(his: Movement, hers: Movement, co_travel_before: u32) -> ProximityContext {
        let last = LastReading {
            co_travel_fixes: co_travel_before,
            ..LastReading::default()
        };
        reading_after(his, hers, last)
    }

    fn reading_after(his: Movement, hers: Movement, last: LastReading) -> ProximityContext {
        // She is 150 m north of him.
        read(
            his,
            hers,
            at(0.0, 0.0),
            at(0.0, 150.0),
            150.0,
            last,
            &EngineConfig::default(),
        )
    }

    #[test]
    fn his_course_names_the_place_of_hers_it_points_at() {
        let place = |kind, east, north| {
            let (lat, lon) = at(east, north);
            HerPlace {
                kind,
                ecef: Ecef::from_lat_lon(lat, lon),
            }
        };
        // Her home 600 m east and a bit north, her work 300 m north.
        let places = [
            place(PlaceKind::Home, 600.0, 100.0),
            place(PlaceKind::Work, 0.0, 300.0),
        ];
        let east = heading_to(&moving(12.0, 90.0), at(0.0, 0.0), &places).unwrap();
        assert_eq!(east.place, PlaceKind::Home);
        assert!((east.distance_m - 608.0).abs() < 3.0, "{east:?}");
        let north = heading_to(&moving(1.4, 0.0), at(0.0, 0.0), &places).unwrap();
        assert_eq!(north.place, PlaceKind::Work);
        // Away from both, standing, or too far: none.
        assert_eq!(
            heading_to(&moving(12.0, 200.0), at(0.0, 0.0), &places),
            None
        );
        assert_eq!(heading_to(&still(), at(0.0, 0.0), &places), None);
        assert_eq!(
            heading_to(&moving(12.0, 90.0), at(-1300.0, 100.0), &places),
            None
        );
    }

    #[test]
    fn passing_lasts_through_a_corner_and_ends_at_a_stop() {
        let passing = LastReading {
            passing: true,
            ..LastReading::default()
        };
        assert_eq!(
            reading_after(moving(3.0, 90.0), still(), passing).reading,
            Reading::Passing
        );
        assert_eq!(
            reading_of(moving(3.0, 90.0), still(), 0).reading,
            Reading::Together
        );
        assert_eq!(
            reading_after(moving(1.0, 0.0), still(), passing).reading,
            Reading::Approach
        );
        assert_eq!(
            reading_after(still(), still(), passing).reading,
            Reading::Together
        );
    }

    #[test]
    fn a_car_overtaking_her_bike_after_riding_with_her_still_waits() {
        let riding = LastReading {
            co_travel_fixes: 4,
            ..LastReading::default()
        };
        // 12 and 5 m/s the same way: not together, 7 m/s apart.
        let c = reading_after(moving(12.0, 160.0), moving(5.0, 170.0), riding);
        assert_eq!(c.reading, Reading::Passing);
        // 6 and 3.5 m/s: too far apart in speed to start travelling
        // together, too close to start passing; the wait goes on.
        let c = reading_after(moving(6.0, 160.0), moving(3.5, 165.0), riding);
        assert!(c.reading.waits_for_police(), "{c:?}");
        assert_eq!(
            reading_of(moving(6.0, 160.0), moving(3.5, 165.0), 0).reading,
            Reading::Together
        );
        // Riding on a winding road, their fixes seconds apart: still together.
        let c = reading_after(moving(4.3, 271.0), moving(3.8, 310.0), riding);
        assert_eq!((c.reading, c.co_travel_fixes), (Reading::CoTravel, 5));
        // Without the ride behind them, two riders that far apart in course
        // are not yet together; he is not riding at her, so it waits.
        assert_eq!(
            reading_of(moving(4.3, 271.0), moving(3.8, 310.0), 0).reading,
            Reading::Passing
        );
    }

    #[test]
    fn her_car_passing_him_is_passing_too() {
        let c = reading_of(still(), moving(12.0, 90.0), 0);
        assert_eq!(c.reading, Reading::Passing);
    }

    #[test]
    fn walking_towards_her_is_an_approach() {
        let c = reading_of(moving(1.4, 10.0), still(), 0);
        assert_eq!(c.reading, Reading::Approach);
        assert!(c.bearing_off_deg.unwrap() < 11.0);
        assert!((c.closing_speed_mps.unwrap() - 1.4 * 10f64.to_radians().cos()).abs() < 0.01);
        assert!((c.time_to_contact_s.unwrap() - 150.0 / c.closing_speed_mps.unwrap()).abs() < 0.01);
    }

    #[test]
    fn riding_onto_her_path_waits_and_riding_at_her_does_not() {
        // She cycles east 150 m north of him; he rides north-east, onto
        // her way: a wait for the next fix.
        let c = reading_of(moving(4.3, 45.0), moving(4.3, 90.0), 0);
        assert_eq!(c.reading, Reading::Passing);
        assert!(c.reading.waits_for_police());
        // Straight at her, or walking briskly her way: an approach.
        let c = reading_of(moving(4.3, 10.0), moving(4.3, 90.0), 0);
        assert_eq!(c.reading, Reading::Approach);
        let c = reading_of(moving(2.0, 45.0), moving(4.3, 90.0), 0);
        assert_eq!(c.reading, Reading::Approach);
    }

    #[test]
    fn a_car_at_speed_is_passing_until_it_slows() {
        let c = reading_of(moving(13.0, 0.0), Movement::default(), 0);
        assert_eq!(c.reading, Reading::Passing);
        assert!(c.reading.waits_for_police());
        let c = reading_of(moving(1.0, 0.0), Movement::default(), 0);
        assert_eq!(c.reading, Reading::Approach);
        assert!(!c.reading.waits_for_police());
    }

    #[test]
    fn standing_close_or_walking_away_is_together() {
        assert_eq!(reading_of(still(), still(), 0).reading, Reading::Together);
        assert_eq!(
            reading_of(moving(1.2, 180.0), still(), 0).reading,
            Reading::Together
        );
        let away = reading_of(moving(1.2, 180.0), still(), 0)
            .closing_speed_mps
            .unwrap();
        assert!((away + 1.2).abs() < 1e-9, "{away}");
    }

    #[test]
    fn the_same_tram_is_co_travel_and_counted() {
        let c = reading_of(moving(11.0, 80.0), moving(10.0, 95.0), 2);
        assert_eq!(c.reading, Reading::CoTravel);
        assert_eq!(c.co_travel_fixes, 3);
        // Different speeds or directions are not travelling together.
        let c = reading_of(moving(11.0, 80.0), moving(4.0, 80.0), 2);
        assert_eq!((c.reading, c.co_travel_fixes), (Reading::Passing, 0));
        let c = reading_of(moving(11.0, 80.0), moving(11.0, 260.0), 2);
        assert_eq!(c.reading, Reading::Passing);
        // Off the tram, walking with her: together, and the police hear of it.
        let c = reading_of(moving(1.3, 80.0), moving(1.3, 85.0), 5);
        assert_eq!((c.reading, c.co_travel_fixes), (Reading::Together, 0));
    }

    #[test]
    fn without_his_movement_the_reading_is_unclear_and_pages() {
        let c = reading_of(Movement::default(), moving(10.0, 0.0), 0);
        assert_eq!(c.reading, Reading::Unclear);
        assert!(!c.reading.waits_for_police());
    }
}
