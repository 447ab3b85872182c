//! A fix is a disc, not a point: the three-valued decision against an area.

use serde::{Deserialize, Serialize};

use crate::intent::Reading;

/// How sure a decision is. A clear decision is `None` where it appears as an
/// `Option<Certainty>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Certainty {
    /// The disc overlaps the area.
    Possible,
    /// The disc lies wholly inside the area.
    Certain,
}

/// Decides a disc of `radius_m` against the area of points whose signed
/// distance to a boundary is at most zero, given the disc centre's signed
/// distance `signed_distance_m` (negative inside).
#[inline]
pub fn disc_in_area(signed_distance_m: f64, radius_m: f64) -> Option<Certainty> {
    if signed_distance_m + radius_m <= 0.0 {
        Some(Certainty::Certain)
    } else if signed_distance_m - radius_m < 0.0 {
        Some(Certainty::Possible)
    } else {
        None
    }
}

/// The decision of one fix against one order, at both alert levels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Assessment {
    /// Inside the order's breach area (zone, alarm radius, outside curfew zone).
    pub breach: Option<Certainty>,
    /// Inside the warning area (buffer, warning radius); `breach` implies it.
    pub warning: Option<Certainty>,
    /// Clear of the warning area by the hysteresis margin.
    pub clear_with_margin: bool,
    /// Metres: distance between the parties, or to the zone boundary (negative inside).
    pub distance_m: f64,
    /// For a contact ban: what the closeness looks like ([`crate::intent`]).
    pub reading: Option<Reading>,
}

impl Assessment {
    /// `signed_distance_m` from the breach area, `warning_m` the extra
    /// distance of the warning area beyond it, `radius_m` the disc.
    pub fn new(signed_distance_m: f64, warning_m: f64, radius_m: f64, margin_m: f64) -> Self {
        Assessment {
            breach: disc_in_area(signed_distance_m, radius_m),
            warning: disc_in_area(signed_distance_m - warning_m, radius_m),
            clear_with_margin: disc_in_area(signed_distance_m - warning_m - margin_m, radius_m)
                .is_none(),
            distance_m: signed_distance_m,
            reading: None,
        }
    }

    /// A suspect fix may raise a possible decision, never a certain one.
    pub fn capped_at_possible(self) -> Self {
        let cap = |c: Option<Certainty>| c.map(|_| Certainty::Possible);
        Assessment {
            breach: cap(self.breach),
            warning: cap(self.warning),
            clear_with_margin: self.clear_with_margin,
            distance_m: self.distance_m,
            reading: self.reading,
        }
    }
}
