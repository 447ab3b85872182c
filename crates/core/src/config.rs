//! Thresholds of the engine's decisions, with the defaults a pilot starts on.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::patterns::PatternConfig;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineConfig {
    /// Consecutive *possible* fixes before a possible breach or warning opens
    /// an episode. A *certain* fix opens at once.
    pub possible_confirmations: u8,
    /// To clear, a fix's disc must be this many metres clear of the area.
    pub clear_margin_m: f64,
    /// ... and stay clear this many seconds (measured between fixes).
    pub clear_min_s: u32,
    /// A fix implying a faster move from the last accepted position is suspect.
    pub max_plausible_speed_mps: f64,
    /// … and so is one implying a harder speed-up than this from the speed
    /// the device was last seen moving at: a bracelet standing still does
    /// not cover 80 m in 5 s, though 80 m in 5 s is no speed for a car.
    /// Multipath outliers jump like that.
    pub max_acceleration_mps2: f64,
    /// A fix with a worse reported accuracy is no position at all.
    pub max_usable_accuracy_m: f64,
    /// The uncertainty of the other party's last position grows with its age
    /// at this speed.
    pub stale_position_speed_mps: f64,
    /// Past this age the other party's position is unknown.
    pub position_max_age_s: u32,
    /// No message at all for this long: device offline.
    pub offline_after_s: u32,
    /// Messages but no usable fix for this long: GPS lost.
    pub gps_lost_after_s: u32,
    /// Offline and GPS lost are found this long after their deadline: a
    /// fix stamped a second before the deadline arrives a second or two
    /// after it, and would end at once an episode that never was. The
    /// onset stays the deadline.
    pub transit_allowance_s: u32,
    pub battery_low_pct: u8,
    pub battery_critical_pct: u8,
    /// Battery must climb this far above a threshold before its alert clears.
    pub battery_hysteresis_pct: u8,
    /// An open episode reports a new distance only when it changed this much.
    pub update_min_distance_change_m: f64,
    /// The offender within a contact ban's warning radius of her last
    /// position, and that position this old: kordon asks her device for a
    /// fresh fix ([`crate::Engine::take_position_requests`]), at most once
    /// a minute per pair. 0 turns requests off.
    pub request_position_after_s: u32,
    /// Reading intent ([`crate::intent`]): a contact-ban alert whose two
    /// parties pass each other at least this fast (not travelling together)
    /// reads as *passing*, and the police wait for the next fix. 6 m/s is
    /// 22 km/h: a vehicle, faster than anyone runs or most cycle in town.
    /// (At 4 m/s a man cycling straight at her at 6 m/s read as passing
    /// until he stopped beside her: a real approach, delayed.)
    pub passing_speed_mps: f64,
    /// … and stays *passing* until they pass each other slower than this: a
    /// car slowing at a corner near her still passes, one that stops does
    /// not.
    pub passing_slowest_mps: f64,
    /// The police wait (passing, co-travel) only while his fixes keep
    /// coming: none for this long, and the reading is *unclear* and pages
    /// them. A bracelet that stops reports less often; so does one that
    /// is shielded or switched off.
    pub passing_wait_s: u32,
    /// … and while they pass each other, at most this long in all: ten
    /// minutes of passing is no moment's coincidence (a car circling her
    /// block), and the police are paged (reading *lasting*). Travelling
    /// together is the monitoring room's to judge while it lasts.
    pub police_max_wait_s: u32,
    /// Both parties moving at least this fast, in directions at most
    /// `co_travel_max_course_deg` apart, the faster at most
    /// `co_travel_speed_ratio` times the slower, read as *co-travel*.
    pub co_travel_min_speed_mps: f64,
    pub co_travel_max_course_deg: f64,
    pub co_travel_speed_ratio: f64,
    /// A party's movement is read from its previous fix only when that is
    /// at most this old; else from the device's own speed, or not at all.
    pub motion_max_gap_s: u32,
    /// Between fixes ([`crate::passage`]): the straight line from his
    /// previous fix to this one, at most this many seconds apart, that
    /// passes into an exclusion zone or within a contact ban's alarm
    /// radius (by more than its fixes' accuracy) while both fixes are
    /// outside raises a *possible* breach for the monitoring room. A
    /// minute at 55 km/h is 900 m: a drive-by.
    pub between_fixes_max_gap_s: u32,
    /// … and up to this many seconds apart, a note for the room: the line
    /// is a guess. 0 turns reading between fixes off.
    pub between_fixes_note_gap_s: u32,
    /// Patterns over days for the case coordinator ([`crate::patterns`]).
    pub patterns: PatternConfig,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            possible_confirmations: 2,
            clear_margin_m: 25.0,
            clear_min_s: 60,
            max_plausible_speed_mps: 60.0,
            max_acceleration_mps2: 4.0,
            max_usable_accuracy_m: 500.0,
            stale_position_speed_mps: 2.0,
            position_max_age_s: 600,
            offline_after_s: 300,
            gps_lost_after_s: 300,
            transit_allowance_s: 10,
            battery_low_pct: 20,
            battery_critical_pct: 10,
            battery_hysteresis_pct: 5,
            update_min_distance_change_m: 25.0,
            request_position_after_s: 60,
            passing_speed_mps: 6.0,
            passing_slowest_mps: 2.5,
            passing_wait_s: 30,
            police_max_wait_s: 600,
            co_travel_min_speed_mps: 2.0,
            co_travel_max_course_deg: 30.0,
            co_travel_speed_ratio: 1.5,
            motion_max_gap_s: 120,
            between_fixes_max_gap_s: 120,
            between_fixes_note_gap_s: 600,
            patterns: PatternConfig::default(),
        }
    }
}

/// A threshold that cannot be meant, named by its field.
#[derive(Debug, Clone, PartialEq, Error)]
#[error("engine setting `{field}` = {value}: {problem}")]
pub struct ConfigError {
    pub field: &'static str,
    pub value: String,
    pub problem: &'static str,
}

impl EngineConfig {
    /// Every setting that would make the engine decide nonsense: distances
    /// and speeds must be positive and finite, times non-zero, battery
    /// thresholds ordered.
    pub fn validate(&self) -> Result<(), Vec<ConfigError>> {
        let mut errors = Vec::new();
        let mut check = |ok: bool, field: &'static str, value: String, problem: &'static str| {
            if !ok {
                errors.push(ConfigError {
                    field,
                    value,
                    problem,
                });
            }
        };
        let positive = |v: f64| v.is_finite() && v > 0.0;
        let non_negative = |v: f64| v.is_finite() && v >= 0.0;
        check(
            self.possible_confirmations >= 1,
            "possible_confirmations",
            self.possible_confirmations.to_string(),
            "must be at least 1",
        );
        for (field, value) in [
            ("max_plausible_speed_mps", self.max_plausible_speed_mps),
            ("max_acceleration_mps2", self.max_acceleration_mps2),
            ("max_usable_accuracy_m", self.max_usable_accuracy_m),
            ("passing_speed_mps", self.passing_speed_mps),
            ("passing_slowest_mps", self.passing_slowest_mps),
            ("co_travel_min_speed_mps", self.co_travel_min_speed_mps),
            ("co_travel_max_course_deg", self.co_travel_max_course_deg),
        ] {
            check(
                positive(value),
                field,
                value.to_string(),
                "must be a positive number",
            );
        }
        for (field, value) in [
            ("clear_margin_m", self.clear_margin_m),
            ("stale_position_speed_mps", self.stale_position_speed_mps),
            (
                "update_min_distance_change_m",
                self.update_min_distance_change_m,
            ),
        ] {
            check(
                non_negative(value),
                field,
                value.to_string(),
                "must be zero or more",
            );
        }
        for (field, value) in [
            ("position_max_age_s", self.position_max_age_s),
            ("offline_after_s", self.offline_after_s),
            ("gps_lost_after_s", self.gps_lost_after_s),
            ("motion_max_gap_s", self.motion_max_gap_s),
            ("passing_wait_s", self.passing_wait_s),
            ("police_max_wait_s", self.police_max_wait_s),
        ] {
            check(
                value > 0,
                field,
                value.to_string(),
                "must be more than zero seconds",
            );
        }
        check(
            self.between_fixes_note_gap_s == 0
                || self.between_fixes_max_gap_s <= self.between_fixes_note_gap_s,
            "between_fixes_max_gap_s",
            self.between_fixes_max_gap_s.to_string(),
            "must not be above between_fixes_note_gap_s (a note is for longer gaps)",
        );
        for (field, value) in self.patterns.nonsense() {
            check(false, field, value, "must be a positive number");
        }
        check(
            self.passing_slowest_mps <= self.passing_speed_mps,
            "passing_slowest_mps",
            self.passing_slowest_mps.to_string(),
            "must not be above passing_speed_mps (it only prolongs a wait)",
        );
        check(
            self.co_travel_max_course_deg <= 180.0,
            "co_travel_max_course_deg",
            self.co_travel_max_course_deg.to_string(),
            "is an angle between two courses: 180 at most",
        );
        check(
            self.co_travel_speed_ratio.is_finite() && self.co_travel_speed_ratio >= 1.0,
            "co_travel_speed_ratio",
            self.co_travel_speed_ratio.to_string(),
            "must be 1 or more (the faster party's speed over the slower's)",
        );
        check(
            self.battery_low_pct <= 100,
            "battery_low_pct",
            self.battery_low_pct.to_string(),
            "is a percentage",
        );
        check(
            self.battery_critical_pct < self.battery_low_pct,
            "battery_critical_pct",
            self.battery_critical_pct.to_string(),
            "must be below battery_low_pct",
        );
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid() {
        assert_eq!(EngineConfig::default().validate(), Ok(()));
    }

    #[test]
    fn nonsense_settings_are_named() {
        let config = EngineConfig {
            possible_confirmations: 0,
            max_plausible_speed_mps: f64::NAN,
            offline_after_s: 0,
            battery_critical_pct: 30,
            ..EngineConfig::default()
        };
        let fields: Vec<_> = config
            .validate()
            .unwrap_err()
            .iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(
            fields,
            [
                "possible_confirmations",
                "max_plausible_speed_mps",
                "offline_after_s",
                "battery_critical_pct"
            ]
        );
    }
}
