//! The life of one order's episode: debounce, escalation and hysteresis.
//!
//! A track turns a stream of per-fix [`Assessment`]s into at most one open
//! episode at a time. Certain evidence opens at once; possible evidence must
//! repeat on consecutive fixes; clearing needs the disc clear of the area by a
//! margin for a minimum time, so a device standing on a boundary does not flap.

use jiff::Timestamp;

use crate::config::EngineConfig;
use crate::decision::{Assessment, Certainty};
use crate::episode::{ClearReason, EpisodeId, EventKind, Succession};
use crate::intent::Reading;
use crate::passage::Passage;

/// The episode an order currently has open.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OpenEpisode {
    pub id: EpisodeId,
    pub kind: EventKind,
    pub onset: Timestamp,
    pub certainty: Option<Certainty>,
    pub reported_distance_m: Option<f64>,
    /// The reading last reported, for a contact ban ([`crate::intent`]).
    pub reported_reading: Option<Reading>,
    /// A breach seen only on the line between two fixes, until a fix
    /// shows it ([`Track::passed`]).
    pub between_fixes: Option<Passage>,
}

/// What an episode would open with, before its succession settles its onset.
#[derive(Debug, Clone, Copy)]
pub struct Opening {
    pub kind: EventKind,
    /// Where the evidence begins.
    pub onset: Timestamp,
    pub certainty: Option<Certainty>,
    pub distance_m: Option<f64>,
    pub reading: Option<Reading>,
}

/// What a step did to the episode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Opened,
    Updated,
    Cleared(ClearReason),
}

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Track {
    pub open: Option<OpenEpisode>,
    warning_streak: u8,
    breach_streak: u8,
    /// First fix of the current unbroken run inside the warning area.
    run_start: Option<Timestamp>,
    /// First fix of the current unbroken run clear by the margin.
    clear_since: Option<Timestamp>,
    /// Which episodes may still begin (see [`Succession`]).
    pub succession: Succession,
    /// The fixes behind the last assessment the streaks counted.
    #[serde(default)]
    counted: Option<Observation>,
}

/// The fix an assessment comes from and the fixes it rests on: the fix just
/// taken and, for a contact ban, the other party's latest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Observation {
    /// The time of the fix just taken.
    pub at: Timestamp,
    /// It implies an impossible move: it may raise possible evidence but
    /// never clears anything, and never confirms evidence alone.
    pub suspect: bool,
    /// Whether the fix just taken is the offender's.
    pub offender_moved: bool,
    pub offender_fix: Option<Timestamp>,
    pub protected_fix: Option<Timestamp>,
}

impl Observation {
    /// A fix of the offender for an order about him alone (zones).
    pub fn offender(at: Timestamp, suspect: bool) -> Self {
        Observation {
            at,
            suspect,
            offender_moved: true,
            offender_fix: Some(at),
            protected_fix: None,
        }
    }

    /// Whether this is evidence independent of `last`: a new fix of the
    /// party whose fix `last` counted, or new fixes of both. One outlier of
    /// his, read again when her next fix arrives, is not two fixes.
    fn independent_of(&self, last: &Observation) -> bool {
        self.offender_moved == last.offender_moved
            || (self.offender_fix != last.offender_fix && self.protected_fix != last.protected_fix)
    }
}

/// The two kinds an order's episode can have, and how its id is derived.
#[derive(Debug, Clone, Copy)]
pub struct TrackKinds {
    pub warning: EventKind,
    pub breach: EventKind,
}

impl Track {
    /// A new track for an order whose earlier episodes `succession` knows.
    pub fn after(succession: Succession) -> Self {
        Track {
            succession,
            ..Track::default()
        }
    }

    /// No open episode and no evidence towards one.
    pub fn is_idle(&self) -> bool {
        self.open.is_none()
            && self.warning_streak == 0
            && self.breach_streak == 0
            && self.run_start.is_none()
            && self.clear_since.is_none()
    }

    /// Forgets the evidence gathered so far; used when an order goes inactive.
    pub fn reset_evidence(&mut self) {
        self.warning_streak = 0;
        self.breach_streak = 0;
        self.run_start = None;
        self.clear_since = None;
        self.counted = None;
    }

    /// Closes the open episode, if any, at `at`.
    pub fn close(
        &mut self,
        reason: ClearReason,
        at: Timestamp,
    ) -> Option<(OpenEpisode, Transition)> {
        self.reset_evidence();
        let episode = self.open.take()?;
        self.succession.ended(episode.onset, at);
        Some((episode, Transition::Cleared(reason)))
    }

    /// Opens an episode of `kind` found at `at` with evidence since `onset`,
    /// if the succession of episodes admits it; `derive_id` names it once its
    /// onset is settled. The one place an order's episode begins.
    pub fn begin(
        &mut self,
        opening: Opening,
        at: Timestamp,
        derive_id: impl FnOnce(Timestamp) -> EpisodeId,
    ) -> Option<(OpenEpisode, Transition)> {
        if self.open.is_some() {
            return None;
        }
        let onset = self.succession.admit(opening.onset, at)?;
        let episode = OpenEpisode {
            id: derive_id(onset),
            kind: opening.kind,
            onset,
            certainty: opening.certainty,
            reported_distance_m: opening.distance_m,
            reported_reading: opening.reading,
            between_fixes: None,
        };
        self.clear_since = None;
        self.open = Some(episode.clone());
        Some((episode, Transition::Opened))
    }

    /// A breach seen on the straight line between his last two fixes
    /// ([`crate::passage`]), `at` the later fix's time: opens a *possible*
    /// breach at the line's closest point, or makes an open warning one.
    /// One look at a line is enough (there is no second look at it), and
    /// never more than possible: he may have taken another road.
    pub fn passed(
        &mut self,
        passage: Passage,
        reading: Option<Reading>,
        kinds: TrackKinds,
        at: Timestamp,
        derive_id: impl FnOnce(Timestamp) -> EpisodeId,
    ) -> Option<(OpenEpisode, Transition)> {
        let (episode, transition) = match &mut self.open {
            None => {
                let opening = Opening {
                    kind: kinds.breach,
                    onset: passage.at,
                    certainty: Some(Certainty::Possible),
                    distance_m: Some(passage.distance_m),
                    reading,
                };
                self.begin(opening, at, derive_id)?
            }
            Some(open) if open.kind == kinds.warning => {
                open.kind = kinds.breach;
                open.certainty = Some(Certainty::Possible);
                open.reported_distance_m = Some(passage.distance_m);
                open.reported_reading = reading;
                (open.clone(), Transition::Updated)
            }
            Some(_) => return None,
        };
        // He was in the breach area since the fix before: clearing starts
        // again from the next fix.
        self.clear_since = None;
        let open = self.open.as_mut()?;
        open.between_fixes = Some(passage);
        Some((
            OpenEpisode {
                between_fixes: Some(passage),
                ..episode
            },
            transition,
        ))
    }

    /// Feeds one in-order fix's assessment. `suspect` fixes may raise possible
    /// evidence but never clear anything, and never confirm it alone, even
    /// where one possible fix would do: an outlier is one fix. `derive_id` names the episode once
    /// its onset is known. Returns the episode as the event should report it.
    pub fn step(
        &mut self,
        a: Assessment,
        observation: Observation,
        kinds: TrackKinds,
        config: &EngineConfig,
        derive_id: impl FnOnce(Timestamp) -> EpisodeId,
    ) -> Option<(OpenEpisode, Transition)> {
        let (at, suspect) = (observation.at, observation.suspect);
        let a = if suspect { a.capped_at_possible() } else { a };
        // Evidence that is not independent of what was counted last neither
        // adds to a streak nor breaks it.
        let counts = self
            .counted
            .is_none_or(|last| observation.independent_of(&last));
        if counts {
            self.counted = Some(observation);
        }
        if counts || a.warning.is_none() {
            bump(&mut self.warning_streak, a.warning.is_some());
        }
        if counts || a.breach.is_none() {
            bump(&mut self.breach_streak, a.breach.is_some());
        }
        if a.warning.is_some() {
            self.run_start.get_or_insert(at);
        } else {
            self.run_start = None;
        }
        let needed = config
            .possible_confirmations
            .max(if suspect { 2 } else { 1 });
        let confirmed = |c: Option<Certainty>, streak: u8| match c {
            Some(Certainty::Certain) => true,
            Some(Certainty::Possible) => streak >= needed,
            None => false,
        };
        let breach = confirmed(a.breach, self.breach_streak);
        let warning = confirmed(a.warning, self.warning_streak);

        let Some(open) = &mut self.open else {
            let (kind, certainty) = if breach {
                (kinds.breach, a.breach)
            } else if warning {
                (kinds.warning, a.warning)
            } else {
                return None;
            };
            let opening = Opening {
                kind,
                onset: self.run_start.unwrap_or(at),
                certainty,
                distance_m: Some(a.distance_m),
                reading: a.reading,
            };
            return self.begin(opening, at, derive_id);
        };

        if a.clear_with_margin {
            if !suspect {
                let since = *self.clear_since.get_or_insert(at);
                if at.duration_since(since).as_secs() >= i64::from(config.clear_min_s) {
                    open.reported_distance_m = Some(a.distance_m);
                    open.certainty = None;
                    return self.close(ClearReason::Resolved, at);
                }
            }
            return None;
        }
        self.clear_since = None;

        let escalated = breach && open.kind == kinds.warning;
        if escalated {
            open.kind = kinds.breach;
        }
        let certainty = if open.kind == kinds.breach {
            a.breach
        } else {
            a.warning
        };
        let moved = open
            .reported_distance_m
            .is_none_or(|d| (d - a.distance_m).abs() >= config.update_min_distance_change_m);
        // Whether the police should wait is news for them both ways.
        let waits = |r: Option<Reading>| r.is_some_and(Reading::waits_for_police);
        let read_anew = waits(open.reported_reading) != waits(a.reading);
        // A breach seen between fixes that a fix now shows is news: it is
        // no longer the room's alone.
        let seen_at_a_fix = a.breach.is_some() && open.between_fixes.take().is_some();
        if escalated || certainty != open.certainty || moved || read_anew || seen_at_a_fix {
            open.certainty = certainty;
            open.reported_distance_m = Some(a.distance_m);
            open.reported_reading = a.reading;
            return Some((open.clone(), Transition::Updated));
        }
        None
    }
}

fn bump(streak: &mut u8, hit: bool) {
    *streak = if hit { streak.saturating_add(1) } else { 0 };
}
