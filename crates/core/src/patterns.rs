//! Patterns over days, for the case coordinator: "the pattern must be seen".
//!
//! Single alerts miss a man who never breaches: he parks a kilometre from
//! her home three evenings in a week, or waits just outside the zone around
//! it, again and again. This module keeps, per case, the stays of the
//! offender that matter and reports a *finding* once they repeat:
//!
//! - **`slow_burn`**: visits near her places (a stay of at least
//!   `visit_min_s` within `near_place_m` of her home, work or school, or of
//!   the centre of a zone around her), on `slow_burn_days` different days
//!   within `window_days`. Stays near his own registered address do not
//!   count: where he lives is the order checks' concern.
//! - **`loitering`**: stays of at least `loiter_min_s` outside an exclusion
//!   zone but within `loiter_band_m` of its edge, `loitering_stays` times
//!   within `window_days`.
//! - **`following`**: his track repeats hers a few minutes later (each of
//!   his fixes within `follow_match_m` of where she was `follow_min_lag_s`
//!   to `follow_max_lag_s` before, while he is further than
//!   `follow_apart_m` from her now: too far for any alert) for at least
//!   `follow_min_s` and `follow_min_path_m`, `following_runs` times within
//!   `window_days`.
//! - **`going_dark`**: his bracelet lost GPS, went offline or reported its
//!   strap cut within `dark_near_place_m` of one of her places (by his last
//!   fix), on `going_dark_days` different days within `window_days`: a
//!   shielded bracelet, or one taken off, where she lives.
//!
//! A finding names its evidence: each stay's times, the place, the closest
//! distance and the alert episodes open meanwhile. It stays one finding
//! (one stable id, derived from its first stay) while stays keep coming
//! within `window_days`, and is reported again with each new one.
//!
//! Pure bookkeeping on the fixes the engine accepted: it never reads a
//! clock, never sees her device's positions (only her places in the case
//! file), and never decides an order's episode.

use jiff::tz::TimeZone;
use jiff::{civil::Date, SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use crate::episode::EpisodeId;
use crate::geodesy::Ecef;
use crate::model::PlaceKind;

/// Thresholds of the patterns (`[engine.patterns]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PatternConfig {
    /// A finding looks back this far, and lapses after this long without a
    /// new stay.
    pub window_days: u32,
    /// Near one of her places: within this many metres. 1.5 km is a short
    /// walk, further than any alarm radius, and clear of most commutes
    /// (which pass by without stopping).
    pub near_place_m: f64,
    /// A stay: fixes within `stay_radius_m` of where it began, for at least
    /// this long.
    pub visit_min_s: u32,
    pub stay_radius_m: f64,
    /// Visits on this many different days (local time) make `slow_burn`.
    pub slow_burn_days: u32,
    /// Outside a zone, within this many metres of its edge.
    pub loiter_band_m: f64,
    pub loiter_min_s: u32,
    /// This many stays along a zone's edge make `loitering`.
    pub loitering_stays: u32,
    /// Stays within this many metres of his registered address are his
    /// own life, not visits.
    pub own_address_m: f64,
    /// Following: where she was this long before (a lag of minutes keeps
    /// him out of every radius), within this many metres, while this far
    /// from her now; for at least this long and this far, this many times.
    pub follow_min_lag_s: u32,
    pub follow_max_lag_s: u32,
    pub follow_match_m: f64,
    pub follow_apart_m: f64,
    pub follow_min_s: u32,
    pub follow_min_path_m: f64,
    pub following_runs: u32,
    /// Going dark: his last fix within this many metres of her place, on
    /// this many different days.
    pub dark_near_place_m: f64,
    pub going_dark_days: u32,
}

impl Default for PatternConfig {
    fn default() -> Self {
        PatternConfig {
            window_days: 7,
            near_place_m: 1500.0,
            visit_min_s: 300,
            stay_radius_m: 150.0,
            slow_burn_days: 3,
            loiter_band_m: 250.0,
            loiter_min_s: 600,
            loitering_stays: 2,
            own_address_m: 300.0,
            follow_min_lag_s: 60,
            follow_max_lag_s: 900,
            follow_match_m: 100.0,
            follow_apart_m: 500.0,
            follow_min_s: 180,
            follow_min_path_m: 1000.0,
            following_runs: 2,
            dark_near_place_m: 1000.0,
            going_dark_days: 2,
        }
    }
}

impl PatternConfig {
    /// The settings that cannot be meant, as (field, value).
    pub fn nonsense(&self) -> Vec<(&'static str, String)> {
        let mut bad = Vec::new();
        for (field, value) in [
            ("patterns.near_place_m", self.near_place_m),
            ("patterns.stay_radius_m", self.stay_radius_m),
            ("patterns.loiter_band_m", self.loiter_band_m),
            ("patterns.follow_match_m", self.follow_match_m),
            ("patterns.follow_apart_m", self.follow_apart_m),
            ("patterns.follow_min_path_m", self.follow_min_path_m),
            ("patterns.dark_near_place_m", self.dark_near_place_m),
        ] {
            if !(value.is_finite() && value > 0.0) {
                bad.push((field, value.to_string()));
            }
        }
        if !(self.own_address_m.is_finite() && self.own_address_m >= 0.0) {
            bad.push(("patterns.own_address_m", self.own_address_m.to_string()));
        }
        for (field, value) in [
            ("patterns.window_days", self.window_days),
            ("patterns.slow_burn_days", self.slow_burn_days),
            ("patterns.loitering_stays", self.loitering_stays),
            ("patterns.following_runs", self.following_runs),
            ("patterns.follow_max_lag_s", self.follow_max_lag_s),
            ("patterns.going_dark_days", self.going_dark_days),
        ] {
            if value == 0 {
                bad.push((field, value.to_string()));
            }
        }
        bad
    }
}

/// What a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PatternKind {
    SlowBurn,
    Loitering,
    Following,
    GoingDark,
}

impl PatternKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PatternKind::SlowBurn => "slow_burn",
            PatternKind::Loitering => "loitering",
            PatternKind::Following => "following",
            PatternKind::GoingDark => "going_dark",
        }
    }
}

/// One stay in a finding's evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stay {
    pub from: Timestamp,
    pub to: Timestamp,
    /// Her place it was near (`slow_burn`, `going_dark`); none for a zone's
    /// edge or a following.
    /// (No field is skipped when empty: stays are kept in the engine's
    /// snapshots, whose format does not describe itself.)
    pub place: Option<PlaceKind>,
    /// Metres: the closest it came to her place, to the zone's edge, or
    /// (following) to her.
    pub closest_m: f64,
    /// Alert episodes of the case open during it (a zone warning, say).
    pub episodes: Vec<EpisodeId>,
}

/// A pattern found, with its evidence: what the coordinator is sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub pattern: PatternKind,
    /// Oldest first, within `window_days` of the newest.
    pub stays: Vec<Stay>,
}

/// One of her places, as the case file gives it (or the centre of a zone
/// around her).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct HerPlace {
    pub kind: PlaceKind,
    pub ecef: Ecef,
}

/// His fix, as the patterns see it: where, when, and what it was near.
#[derive(Debug, Clone, Copy)]
pub struct Sighting<'a> {
    pub ts: Timestamp,
    pub ecef: Ecef,
    /// The least signed distance to the edge of an exclusion zone of the
    /// case that it came within `loiter_band_m` of, if any.
    pub zone_edge_m: Option<f64>,
    /// The case's alert episodes open now.
    pub open_episodes: &'a [EpisodeId],
}

/// His bracelet went dark: a GPS-lost, offline or tamper episode of his
/// opened, and where his last fix before it was.
#[derive(Debug, Clone, Copy)]
pub struct Darkness {
    pub episode: EpisodeId,
    pub onset: Timestamp,
    pub last_fix: Timestamp,
    pub last_seen: Ecef,
}

/// What a sighting changed: a finding to report, new or grown, or lapsed.
#[derive(Debug, Clone, PartialEq)]
pub enum News {
    Found { onset: Timestamp, finding: Finding },
    Grown { onset: Timestamp, finding: Finding },
    Lapsed { onset: Timestamp, finding: Finding },
}

/// A stay in progress: where it began and what it has seen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Candidate {
    anchor: Ecef,
    stay: Stay,
    /// Whether it has lasted long enough to be evidence.
    counted: bool,
}

/// One pattern's stays and whether its finding has been reported.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Track {
    current: Option<Candidate>,
    stays: Vec<Stay>,
    /// The onset of the finding reported, while it holds.
    reported: Option<Timestamp>,
}

/// A case's patterns.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PatternWatch {
    her_places: Vec<HerPlace>,
    his_address: Option<Ecef>,
    slow_burn: Track,
    loitering: Track,
    following: Track,
    going_dark: Track,
    /// Her recent fixes, oldest first, at most one per
    /// [`HER_TRACK_STEP`], back to `follow_max_lag_s`.
    her_track: std::collections::VecDeque<(Timestamp, Ecef)>,
}

/// Her track is kept at this spacing: enough to match a road, bounded.
const HER_TRACK_STEP: SignedDuration = SignedDuration::from_secs(10);

impl PatternWatch {
    pub fn new(her_places: Vec<HerPlace>, his_address: Option<Ecef>) -> Self {
        PatternWatch {
            her_places,
            his_address,
            ..PatternWatch::default()
        }
    }

    /// The same watch for a case whose file changed: its places anew, the
    /// stays kept (a corrected address does not erase last week).
    pub fn with_places(self, her_places: Vec<HerPlace>, his_address: Option<Ecef>) -> Self {
        PatternWatch {
            her_places,
            his_address,
            ..self
        }
    }

    /// Her places: the case file's, else the centres of zones around her.
    pub fn her_places(&self) -> &[HerPlace] {
        &self.her_places
    }

    /// Takes one accepted fix of hers, in time order: her recent track, to
    /// see whether his repeats it.
    pub fn note_hers(&mut self, config: &PatternConfig, ts: Timestamp, ecef: Ecef) {
        let spaced = self
            .her_track
            .back()
            .is_none_or(|(last, _)| ts.duration_since(*last) >= HER_TRACK_STEP);
        if spaced {
            self.her_track.push_back((ts, ecef));
        }
        let horizon = SignedDuration::from_secs(i64::from(config.follow_max_lag_s));
        while self
            .her_track
            .front()
            .is_some_and(|(t, _)| ts.duration_since(*t) > horizon)
        {
            self.her_track.pop_front();
        }
    }

    /// Whether his fix repeats where she was a few minutes before (see
    /// `following`): `Some(Some(distance to her now))` if it does, `None`
    /// while he is within `follow_apart_m` of her (neither repeating nor
    /// not: waiting behind her at a stop she is still at, or beside her,
    /// which the contact ban judges), `Some(None)` otherwise.
    fn repeats_her(&self, config: &PatternConfig, seen: &Sighting) -> Option<Option<f64>> {
        let Some((_, now)) = self.her_track.back() else {
            return Some(None);
        };
        let apart = now.distance_m(&seen.ecef);
        if apart <= config.follow_apart_m {
            return None;
        }
        let lag = |t: &Timestamp| seen.ts.duration_since(*t).as_secs();
        let (min, max) = (
            i64::from(config.follow_min_lag_s),
            i64::from(config.follow_max_lag_s),
        );
        let repeats = self
            .her_track
            .iter()
            .filter(|(t, _)| (min..=max).contains(&lag(t)))
            .any(|(_, there)| there.distance_m(&seen.ecef) <= config.follow_match_m);
        Some(repeats.then_some(apart))
    }

    /// Her place nearest to a position of his within `within_m`, and how
    /// far: none near his own address, where he lives.
    fn near_her(
        &self,
        config: &PatternConfig,
        ecef: &Ecef,
        within_m: f64,
    ) -> Option<(PlaceKind, f64)> {
        let at_home = self
            .his_address
            .is_some_and(|home| home.distance_m(ecef) <= config.own_address_m);
        self.her_places
            .iter()
            .map(|p| (p.kind, p.ecef.distance_m(ecef)))
            .filter(|(_, d)| *d <= within_m)
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .filter(|_| !at_home)
    }

    /// Takes one of his episodes that means his bracelet went dark (see
    /// `going_dark`), in time order.
    pub fn went_dark(
        &mut self,
        config: &PatternConfig,
        tz: &TimeZone,
        dark: &Darkness,
    ) -> Vec<News> {
        let near = self.near_her(config, &dark.last_seen, config.dark_near_place_m);
        let track = &mut self.going_dark;
        let mut news: Vec<News> = track
            .lapse(config, PatternKind::GoingDark, dark.onset)
            .into_iter()
            .collect();
        let Some((place, distance)) = near else {
            return news;
        };
        // One outage is one stay, however many episodes it opens (GPS
        // lost, then offline): they share his last fix.
        if let Some(same) = track.stays.last_mut().filter(|s| s.from == dark.last_fix) {
            same.to = same.to.max(dark.onset);
            if !same.episodes.contains(&dark.episode) {
                same.episodes.push(dark.episode);
            }
            return news;
        }
        track.stays.push(Stay {
            from: dark.last_fix,
            to: dark.onset,
            place: Some(place),
            closest_m: distance,
            episodes: vec![dark.episode],
        });
        news.extend(track.judge(config, tz, PatternKind::GoingDark));
        news
    }

    /// Takes one accepted fix of his, in time order.
    pub fn observe(&mut self, config: &PatternConfig, tz: &TimeZone, seen: Sighting) -> Vec<News> {
        let mut news = Vec::new();
        let near_her = self.near_her(config, &seen.ecef, config.near_place_m);
        let visit = near_her.map(|(kind, d)| (Some(kind), d));
        let loiter = seen.zone_edge_m.map(|d| (None, d));
        let follow = self
            .repeats_her(config, &seen)
            .map(|apart| apart.map(|d| (None, d)));
        for (pattern, near) in [
            (PatternKind::SlowBurn, Some(visit)),
            (PatternKind::Loitering, Some(loiter)),
            (PatternKind::Following, follow),
        ] {
            // Near her, a following neither grows nor ends.
            let Some(near) = near else {
                continue;
            };
            let track = self.track_mut(pattern);
            let counted = track.follow(config, pattern, &seen, near);
            if let Some(n) = track.lapse(config, pattern, seen.ts) {
                news.push(n);
            }
            if counted {
                news.extend(track.judge(config, tz, pattern));
            }
        }
        // A finding of going dark lapses as time passes, whatever he does.
        news.extend(
            self.going_dark
                .lapse(config, PatternKind::GoingDark, seen.ts),
        );
        news
    }

    fn track_mut(&mut self, pattern: PatternKind) -> &mut Track {
        match pattern {
            PatternKind::SlowBurn => &mut self.slow_burn,
            PatternKind::Loitering => &mut self.loitering,
            PatternKind::Following => &mut self.following,
            PatternKind::GoingDark => &mut self.going_dark,
        }
    }
}

/// A stay is what the fixes show: silence longer than this ends it (a
/// bracelet that stands still reports every minute or so).
const MAX_SILENCE_IN_STAY: SignedDuration = SignedDuration::from_secs(600);
/// A following survives fixes that miss her track for this long.
const FOLLOW_MISS: SignedDuration = SignedDuration::from_secs(60);

fn min_stay_s(config: &PatternConfig, pattern: PatternKind) -> u32 {
    match pattern {
        PatternKind::SlowBurn => config.visit_min_s,
        PatternKind::Loitering => config.loiter_min_s,
        PatternKind::Following => config.follow_min_s,
        // Not a stay of his fixes: an outage is evidence at once.
        PatternKind::GoingDark => 0,
    }
}

fn window(config: &PatternConfig) -> SignedDuration {
    SignedDuration::from_hours(24 * i64::from(config.window_days))
}

impl Track {
    /// Extends the stay in progress with a sighting `near` (place, metres),
    /// or ends it. True when the stay has just become evidence or grew as
    /// evidence (a new stay or a longer one to report).
    fn follow(
        &mut self,
        config: &PatternConfig,
        pattern: PatternKind,
        seen: &Sighting,
        near: Option<(Option<PlaceKind>, f64)>,
    ) -> bool {
        let Some((place, distance)) = near else {
            // A fix that misses her track (a different lane, a light) does
            // not end a following; a minute of them does.
            let keeps = pattern == PatternKind::Following
                && self
                    .current
                    .as_ref()
                    .is_some_and(|c| seen.ts.duration_since(c.stay.to) <= FOLLOW_MISS);
            if !keeps {
                self.current = None;
            }
            return false;
        };
        let stays_put = self.current.as_ref().is_some_and(|c| {
            let unbroken = seen.ts.duration_since(c.stay.to) <= MAX_SILENCE_IN_STAY;
            let in_place = match pattern {
                PatternKind::SlowBurn => c.anchor.distance_m(&seen.ecef) <= config.stay_radius_m,
                PatternKind::Loitering | PatternKind::Following | PatternKind::GoingDark => true,
            };
            unbroken && in_place
        });
        if !stays_put {
            self.current = Some(Candidate {
                anchor: seen.ecef,
                stay: Stay {
                    from: seen.ts,
                    to: seen.ts,
                    place,
                    closest_m: distance,
                    episodes: Vec::new(),
                },
                counted: false,
            });
        }
        let Some(current) = self.current.as_mut() else {
            return false;
        };
        let stay = &mut current.stay;
        stay.to = seen.ts;
        stay.closest_m = stay.closest_m.min(distance);
        for id in seen.open_episodes {
            if !stay.episodes.contains(id) {
                stay.episodes.push(*id);
            }
        }
        // A following is a journey: far enough from where it began.
        let far_enough = pattern != PatternKind::Following
            || current.anchor.distance_m(&seen.ecef) >= config.follow_min_path_m;
        let long_enough = far_enough
            && stay.to.duration_since(stay.from)
                >= SignedDuration::from_secs(i64::from(min_stay_s(config, pattern)));
        if !long_enough {
            return false;
        }
        let first = !current.counted;
        current.counted = true;
        match self
            .stays
            .last_mut()
            .filter(|s| s.from == current.stay.from && !first)
        {
            Some(last) => *last = current.stay.clone(),
            None => self.stays.push(current.stay.clone()),
        }
        // Reported once as it becomes evidence; the rest of it is in the
        // record with the next report.
        first
    }

    /// Forgets stays older than the window, and a reported finding whose
    /// newest stay is that old: it lapsed.
    fn lapse(
        &mut self,
        config: &PatternConfig,
        pattern: PatternKind,
        now: Timestamp,
    ) -> Option<News> {
        let since = now.checked_sub(window(config)).unwrap_or(Timestamp::MIN);
        let lapsed = self
            .reported
            .filter(|_| self.stays.last().is_none_or(|s| s.to < since))
            .map(|onset| News::Lapsed {
                onset,
                finding: Finding {
                    pattern,
                    stays: self.stays.clone(),
                },
            });
        if lapsed.is_some() {
            self.reported = None;
        }
        self.stays.retain(|s| s.to >= since);
        lapsed
    }

    /// Whether the stays within the window make the pattern, and what to
    /// report if they do.
    fn judge(
        &mut self,
        config: &PatternConfig,
        tz: &TimeZone,
        pattern: PatternKind,
    ) -> Option<News> {
        let days = || {
            let mut days: Vec<Date> = self
                .stays
                .iter()
                .map(|s| tz.to_datetime(s.from).date())
                .collect();
            days.dedup();
            days.len()
        };
        let enough = match pattern {
            PatternKind::SlowBurn => days() >= config.slow_burn_days as usize,
            PatternKind::GoingDark => days() >= config.going_dark_days as usize,
            PatternKind::Loitering => self.stays.len() >= config.loitering_stays as usize,
            PatternKind::Following => self.stays.len() >= config.following_runs as usize,
        };
        if !enough {
            return None;
        }
        let finding = Finding {
            pattern,
            stays: self.stays.clone(),
        };
        Some(match self.reported {
            Some(onset) => News::Grown { onset, finding },
            None => {
                let onset = self.stays.first()?.from;
                self.reported = Some(onset);
                News::Found { onset, finding }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOME: (f64, f64) = (51.9210, 4.5160);

    fn t(hours: f64) -> Timestamp {
        let base: Timestamp = "2026-11-30T00:00:00Z".parse().unwrap();
        base.checked_add(SignedDuration::from_secs((hours * 3600.0) as i64))
            .unwrap()
    }

    /// A point `north` metres north of her home.
    fn north(metres: f64) -> Ecef {
        Ecef::from_lat_lon(HOME.0 + metres / 111_250.0, HOME.1)
    }

    fn watch() -> PatternWatch {
        let home = HerPlace {
            kind: PlaceKind::Home,
            ecef: Ecef::from_lat_lon(HOME.0, HOME.1),
        };
        PatternWatch::new(vec![home], None)
    }

    /// Parks `metres` north of her home from `from_h` for `minutes`, a fix
    /// a minute; the news.
    fn park(w: &mut PatternWatch, from_h: f64, minutes: u32, metres: f64) -> Vec<News> {
        let config = PatternConfig::default();
        let tz = TimeZone::get("Europe/Amsterdam").unwrap();
        (0..=minutes)
            .flat_map(|m| {
                let seen = Sighting {
                    ts: t(from_h + f64::from(m) / 60.0),
                    ecef: north(metres),
                    zone_edge_m: None,
                    open_episodes: &[],
                };
                w.observe(&config, &tz, seen)
            })
            .collect()
    }

    #[test]
    fn three_evenings_near_her_home_make_a_slow_burn() {
        let mut w = watch();
        assert!(park(&mut w, 19.0, 20, 900.0).is_empty());
        assert!(park(&mut w, 24.0 + 19.0, 20, 1100.0).is_empty());
        let news = park(&mut w, 72.0 + 20.0, 20, 800.0);
        let [News::Found { onset, finding }] = news.as_slice() else {
            panic!("{news:?}");
        };
        assert_eq!(*onset, t(19.0), "from the first evening");
        assert_eq!(finding.pattern, PatternKind::SlowBurn);
        assert_eq!(finding.stays.len(), 3);
        assert_eq!(finding.stays[2].place, Some(PlaceKind::Home));
        assert!((finding.stays[2].closest_m - 800.0).abs() < 5.0);
        // A fourth evening grows the same finding.
        let news = park(&mut w, 96.0 + 20.0, 20, 800.0);
        assert!(matches!(news.as_slice(), [News::Grown { onset: o, .. }] if *o == t(19.0)));
    }

    #[test]
    fn driving_past_or_stopping_briefly_is_no_visit() {
        let mut w = watch();
        for day in 0..5 {
            // Four minutes at a red light and a shop, every day.
            assert!(park(&mut w, 24.0 * f64::from(day) + 18.0, 4, 700.0).is_empty());
        }
        assert!(w.slow_burn.stays.is_empty());
    }

    #[test]
    fn visits_on_one_day_are_one_day() {
        let mut w = watch();
        assert!(park(&mut w, 10.0, 20, 900.0).is_empty());
        assert!(park(&mut w, 14.0, 20, 700.0).is_empty());
        assert!(park(&mut w, 19.0, 20, 1200.0).is_empty());
        assert_eq!(w.slow_burn.stays.len(), 3);
    }

    #[test]
    fn stays_at_his_own_address_are_his_life() {
        let home = HerPlace {
            kind: PlaceKind::Home,
            ecef: Ecef::from_lat_lon(HOME.0, HOME.1),
        };
        let mut w = PatternWatch::new(vec![home], Some(north(1000.0)));
        for day in 0..4 {
            assert!(park(&mut w, 24.0 * f64::from(day) + 19.0, 60, 1000.0).is_empty());
        }
    }

    #[test]
    fn a_finding_lapses_after_a_quiet_window() {
        let mut w = watch();
        for day in 0..3 {
            park(&mut w, 24.0 * f64::from(day) + 19.0, 20, 900.0);
        }
        assert!(w.slow_burn.reported.is_some());
        let news = park(&mut w, 24.0 * 12.0, 1, 1400.0);
        assert!(matches!(news.as_slice(), [News::Lapsed { .. }]), "{news:?}");
        assert!(w.slow_burn.reported.is_none());
    }

    /// She walks north at 1.5 m/s from her home for `minutes`, a fix every
    /// 15 s; he walks the same way `lag_s` behind, `offset_m` to the east.
    fn walk_behind(
        w: &mut PatternWatch,
        from_h: f64,
        minutes: i64,
        lag_s: i64,
        offset_m: f64,
    ) -> Vec<News> {
        let config = PatternConfig::default();
        let tz = TimeZone::get("Europe/Amsterdam").unwrap();
        let start = t(from_h);
        let at = |s: i64| start.checked_add(SignedDuration::from_secs(s)).unwrap();
        let east = |m: f64| m / (111_320.0 * HOME.0.to_radians().cos());
        let mut news = Vec::new();
        for k in 0..(minutes * 4 + lag_s / 15) {
            let s = 15 * k;
            w.note_hers(&config, at(s), north(1.5 * s as f64));
            if s >= lag_s {
                let walked = 1.5 * (s - lag_s) as f64;
                let his = Ecef::from_lat_lon(HOME.0 + walked / 111_250.0, HOME.1 + east(offset_m));
                let seen = Sighting {
                    ts: at(s),
                    ecef: his,
                    zone_edge_m: None,
                    open_episodes: &[],
                };
                news.extend(w.observe(&config, &tz, seen));
            }
        }
        news
    }

    #[test]
    fn walking_her_way_minutes_behind_her_twice_is_following() {
        let mut w = PatternWatch::new(Vec::new(), None);
        assert!(walk_behind(&mut w, 8.0, 30, 420, 20.0).is_empty());
        let news = walk_behind(&mut w, 32.0, 30, 420, 20.0);
        let [News::Found { finding, .. }] = news.as_slice() else {
            panic!("{news:?}");
        };
        assert_eq!(finding.pattern, PatternKind::Following);
        assert_eq!(finding.stays.len(), 2);
        assert!(finding.stays[0].closest_m > 500.0, "never near her");
    }

    #[test]
    fn a_parallel_street_is_no_following() {
        let mut w = PatternWatch::new(Vec::new(), None);
        for day in 0..3 {
            let news = walk_behind(&mut w, 8.0 + 24.0 * f64::from(day), 30, 420, 400.0);
            assert!(news.is_empty(), "{news:?}");
        }
        assert!(w.following.stays.is_empty());
    }

    #[test]
    fn two_long_waits_along_a_zone_edge_are_loitering() {
        let config = PatternConfig::default();
        let tz = TimeZone::get("Europe/Amsterdam").unwrap();
        let mut w = PatternWatch::new(Vec::new(), None);
        let mut wait = |from_h: f64| -> Vec<News> {
            (0..=15)
                .flat_map(|m| {
                    let seen = Sighting {
                        ts: t(from_h + f64::from(m) / 60.0),
                        ecef: north(300.0 + 10.0 * f64::from(m % 3)),
                        zone_edge_m: Some(60.0),
                        open_episodes: &[],
                    };
                    w.observe(&config, &tz, seen)
                })
                .collect()
        };
        assert!(wait(12.0).is_empty());
        let news = wait(24.0 + 12.0);
        assert!(
            matches!(news.as_slice(), [News::Found { finding, .. }] if finding.pattern == PatternKind::Loitering),
            "{news:?}"
        );
    }

    /// His bracelet goes dark `metres` north of her home at `hours`, its
    /// last fix 10 minutes before.
    fn go_dark(w: &mut PatternWatch, hours: f64, metres: f64) -> Vec<News> {
        dark_episode(w, hours - 1.0 / 6.0, hours, metres)
    }

    fn dark_episode(w: &mut PatternWatch, last_fix_h: f64, hours: f64, metres: f64) -> Vec<News> {
        let config = PatternConfig::default();
        let tz = TimeZone::get("Europe/Amsterdam").unwrap();
        let case = crate::model::CaseId::new("RTM-1");
        let dark = Darkness {
            episode: EpisodeId::derive(&case, "OFF-1", "gps_lost", t(hours)),
            onset: t(hours),
            last_fix: t(last_fix_h),
            last_seen: north(metres),
        };
        w.went_dark(&config, &tz, &dark)
    }

    #[test]
    fn going_dark_near_her_home_on_two_days_is_a_pattern() {
        let mut w = watch();
        assert!(go_dark(&mut w, 20.0, 600.0).is_empty());
        // Offline too, in the same outage: one stay, not a second day.
        assert!(dark_episode(&mut w, 20.0 - 1.0 / 6.0, 20.5, 600.0).is_empty());
        assert_eq!(w.going_dark.stays.len(), 1);
        assert_eq!(w.going_dark.stays[0].episodes.len(), 2);
        let news = go_dark(&mut w, 24.0 + 21.0, 800.0);
        let [News::Found { onset, finding }] = news.as_slice() else {
            panic!("{news:?}");
        };
        assert_eq!(finding.pattern, PatternKind::GoingDark);
        assert_eq!(
            *onset,
            t(20.0 - 1.0 / 6.0),
            "from his last fix before the first"
        );
        assert_eq!(finding.stays[1].place, Some(PlaceKind::Home));
        assert!((finding.stays[1].closest_m - 800.0).abs() < 5.0);
    }

    #[test]
    fn going_dark_far_from_her_or_at_his_own_address_is_no_pattern() {
        let mut w = watch();
        for day in 0..4 {
            assert!(go_dark(&mut w, 24.0 * f64::from(day) + 20.0, 2500.0).is_empty());
        }
        let home = HerPlace {
            kind: PlaceKind::Home,
            ecef: Ecef::from_lat_lon(HOME.0, HOME.1),
        };
        let mut w = PatternWatch::new(vec![home], Some(north(700.0)));
        for day in 0..4 {
            assert!(go_dark(&mut w, 24.0 * f64::from(day) + 20.0, 700.0).is_empty());
        }
        assert!(w.going_dark.stays.is_empty());
    }
}
