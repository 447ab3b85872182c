//! Thresholds of the engine's decisions, with the defaults a pilot starts on.

use serde::{Deserialize, Serialize};

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
    pub battery_low_pct: u8,
    pub battery_critical_pct: u8,
    /// Battery must climb this far above a threshold before its alert clears.
    pub battery_hysteresis_pct: u8,
    /// An open episode reports a new distance only when it changed this much.
    pub update_min_distance_change_m: f64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            possible_confirmations: 2,
            clear_margin_m: 25.0,
            clear_min_s: 60,
            max_plausible_speed_mps: 60.0,
            max_usable_accuracy_m: 500.0,
            stale_position_speed_mps: 2.0,
            position_max_age_s: 600,
            offline_after_s: 300,
            gps_lost_after_s: 300,
            battery_low_pct: 20,
            battery_critical_pct: 10,
            battery_hysteresis_pct: 5,
            update_min_distance_change_m: 25.0,
        }
    }
}
