//! Scenario files (`simulator/scenarios/*.toml`): which incidents happen to
//! what share of the pairs, and the GPS noise model.

use serde::{Deserialize, Serialize};

/// The scripted incidents, each with a ground truth.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Incident {
    /// He goes to her home, stays a few minutes at her door, leaves.
    ApproachHome,
    /// He follows her on her way home, some 20 s behind.
    Follow,
    /// He drives past her workplace while she is there: close, no intent.
    PassBy,
    /// He waits half an hour just outside the exclusion zone, on each of
    /// the first three days. Required: a `loitering` pattern by the third.
    LoiterEdge,
    /// He is out for an hour during his curfew.
    CurfewBreak,
    /// He cuts the strap and drives off.
    TamperFlee,
    /// Her device's battery runs out.
    VictimDeviceDies,
    /// On his way to work he rides the middle of her morning journey with
    /// her (the same tram, road or cycle path, seconds apart), by chance,
    /// and they part before she arrives: close, no intent.
    CoTravel,
    /// He drives past her workplace while she is there, with a bracelet
    /// that reports once a minute while moving (`sparse_moving_s`): the
    /// road takes him within the alarm radius of her, mostly between two
    /// fixes. Required to be raised (a possible breach), not to page the
    /// police.
    DriveBy,
    /// Slow-burn stalking that never breaches: on every other evening he
    /// parks 700 m to 1.3 km from her home for 15 to 40 minutes, outside
    /// every warning radius. Required: a `slow_burn` pattern by the third
    /// evening.
    SlowBurn,
    /// Following at a distance: on every other day he waits near her
    /// workplace until she has left and drives her way home seven to ten
    /// minutes behind her, turning off before she arrives. Never within
    /// a warning radius. Required: a `following` pattern by the third.
    FollowFar,
    /// Going dark near her: on every other evening he drives to a spot
    /// 350 to 700 m from her home with his bracelet wrapped in foil from
    /// half a minute before he parks until a minute after he leaves, 20 to
    /// 45 minutes (it still reports its status: `gps: no_fix`). Not one
    /// fix near her. Required: a `going_dark` pattern by the third.
    DarkNearHer,
    /// On the first day at midday she drives from her workplace onto the
    /// nearest motorway (Rotterdam's A15/A16/A20 ring and its spurs) for 4
    /// km and back, an errand; he drives the same stretch by chance a few
    /// seconds behind or ahead of her, at 100 km/h. Close for minutes, no
    /// intent: the monitoring room's to judge, not the police's.
    RingCoTravel,
}

impl Incident {
    pub const ALL: [Incident; 13] = [
        Incident::ApproachHome,
        Incident::Follow,
        Incident::PassBy,
        Incident::LoiterEdge,
        Incident::CurfewBreak,
        Incident::TamperFlee,
        Incident::VictimDeviceDies,
        Incident::CoTravel,
        Incident::DriveBy,
        Incident::SlowBurn,
        Incident::FollowFar,
        Incident::DarkNearHer,
        Incident::RingCoTravel,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Incident::ApproachHome => "approach_home",
            Incident::Follow => "follow",
            Incident::PassBy => "pass_by",
            Incident::LoiterEdge => "loiter_edge",
            Incident::CurfewBreak => "curfew_break",
            Incident::TamperFlee => "tamper_flee",
            Incident::VictimDeviceDies => "victim_device_dies",
            Incident::CoTravel => "co_travel",
            Incident::DriveBy => "drive_by",
            Incident::SlowBurn => "slow_burn",
            Incident::FollowFar => "follow_far",
            Incident::DarkNearHer => "dark_near_her",
            Incident::RingCoTravel => "ring_co_travel",
        }
    }
}

/// The GPS error model (see `gps.rs`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Noise {
    /// Reported accuracy outdoors, metres (uniform between the two).
    pub outdoor_accuracy_m: [f64; 2],
    pub indoor_accuracy_m: [f64; 2],
    /// Chance per indoor fix that there is none (the device says so).
    pub indoor_dropout: f64,
    /// Chance per fix of a multipath outlier in the high-rise centre, and
    /// elsewhere; its error (metres) while the accuracy claims the usual.
    pub canyon_multipath: f64,
    pub open_multipath: f64,
    pub multipath_error_m: [f64; 2],
    /// Standard deviation of the slow drift, metres; its time constant.
    pub drift_m: f64,
    pub drift_tau_s: f64,
    /// After this long without a fix the next one may be a cold start…
    pub cold_start_after_s: f64,
    /// …with this chance and this error.
    pub cold_start_chance: f64,
    pub cold_start_error_m: [f64; 2],
}

impl Default for Noise {
    fn default() -> Self {
        Noise {
            outdoor_accuracy_m: [4.0, 12.0],
            indoor_accuracy_m: [20.0, 60.0],
            indoor_dropout: 0.3,
            canyon_multipath: 0.03,
            open_multipath: 0.003,
            multipath_error_m: [60.0, 250.0],
            drift_m: 3.0,
            drift_tau_s: 300.0,
            cold_start_after_s: 900.0,
            cold_start_chance: 0.5,
            cold_start_error_m: [100.0, 400.0],
        }
    }
}

/// Fix intervals, seconds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Intervals {
    pub idle_s: f64,
    pub moving_s: f64,
    /// A bracelet within `pursuit_within_m` of an exclusion zone reports this often.
    pub pursuit_s: f64,
    pub pursuit_within_m: f64,
    pub status_s: f64,
    /// A low-power bracelet's interval while moving (the `drive_by`
    /// incident): a car covers 500 to 900 m between its fixes.
    pub sparse_moving_s: f64,
}

impl Default for Intervals {
    fn default() -> Self {
        Intervals {
            idle_s: 60.0,
            moving_s: 15.0,
            pursuit_s: 5.0,
            pursuit_within_m: 1000.0,
            status_s: 300.0,
            sparse_moving_s: 60.0,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Share of pairs per incident (the rest have an ordinary day).
    #[serde(default)]
    pub incidents: std::collections::BTreeMap<Incident, f64>,
    /// Share of pairs whose offender has a curfew (all with `curfew_break`).
    #[serde(default = "default_curfew_share")]
    pub curfew_share: f64,
    #[serde(default)]
    pub noise: Noise,
    #[serde(default)]
    pub intervals: Intervals,
}

fn default_curfew_share() -> f64 {
    0.3
}

impl Scenario {
    pub fn parse(text: &str) -> Result<Scenario, String> {
        let s: Scenario = toml::from_str(text).map_err(|e| e.to_string())?;
        let total: f64 = s.incidents.values().sum();
        if s.incidents.values().any(|v| !(0.0..=1.0).contains(v)) || total > 1.0 + 1e-9 {
            return Err(format!(
                "incident shares must be between 0 and 1 and add up to at most 1 (they add up to {total})"
            ));
        }
        Ok(s)
    }

    /// The standard day: every incident kind among ordinary days.
    pub fn standard() -> Scenario {
        Scenario::parse(include_str!("../scenarios/standard_day.toml"))
            .expect("the shipped standard scenario parses")
    }
}
