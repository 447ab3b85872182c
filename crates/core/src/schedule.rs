//! Weekly schedules in Europe/Amsterdam local time.
//!
//! A window is a set of weekdays and a local start and end time; an end at or
//! before the start runs into the next day (22:00–06:00). Local times are
//! turned into instants with jiff's bundled time-zone database, so a curfew
//! from 22:00 to 06:00 lasts 7 hours in the night the clocks go forward and 9
//! in the night they go back, as the court meant. A start that falls in the
//! spring-forward gap begins at the first instant after it.

use jiff::civil::{Date, Time, Weekday};
use jiff::tz::TimeZone;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// The time zone every schedule is written in.
pub const SCHEDULE_TIME_ZONE: &str = "Europe/Amsterdam";

/// Loads [`SCHEDULE_TIME_ZONE`] from the database compiled into the binary.
pub fn schedule_time_zone() -> TimeZone {
    // The bundled database always holds Europe/Amsterdam; the fallback only
    // exists so that no code path can panic.
    TimeZone::get(SCHEDULE_TIME_ZONE).unwrap_or(TimeZone::UTC)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    pub windows: Vec<Window>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Window {
    /// The days a window starts on.
    pub days: Vec<Day>,
    pub start: Time,
    pub end: Time,
}

impl Window {
    pub fn is_overnight(&self) -> bool {
        self.end <= self.start
    }

    /// Length in minutes of local clock time, ignoring DST (for validation).
    pub(crate) fn nominal_minutes(&self) -> i32 {
        let minutes = |t: Time| i32::from(t.hour()) * 60 + i32::from(t.minute());
        (minutes(self.end) - minutes(self.start)).rem_euclid(24 * 60)
    }

    pub(crate) fn start_minute_of_day(&self) -> i32 {
        i32::from(self.start.hour()) * 60 + i32::from(self.start.minute())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Day {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

impl Day {
    pub fn index_from_monday(self) -> i32 {
        self as i32
    }

    fn from_weekday(w: Weekday) -> Day {
        match w {
            Weekday::Monday => Day::Mon,
            Weekday::Tuesday => Day::Tue,
            Weekday::Wednesday => Day::Wed,
            Weekday::Thursday => Day::Thu,
            Weekday::Friday => Day::Fri,
            Weekday::Saturday => Day::Sat,
            Weekday::Sunday => Day::Sun,
        }
    }
}

/// One concrete occurrence of a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Interval {
    pub start: Timestamp,
    pub end: Timestamp,
}

impl Interval {
    pub fn contains(&self, t: Timestamp) -> bool {
        self.start <= t && t < self.end
    }
}

/// Whether a schedule is on at an instant, and until when that answer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ScheduleState {
    /// The occurrence the instant lies in, if any.
    pub active: Option<Interval>,
    /// The answer holds from `valid_from` until just before this instant.
    pub valid_until: Timestamp,
    pub valid_from: Timestamp,
}

impl ScheduleState {
    pub fn covers(&self, t: Timestamp) -> bool {
        self.valid_from <= t && t < self.valid_until
    }
}

impl Schedule {
    /// The state at `t`. A window lasts less than a day (plus an hour when the
    /// clocks go back), so occurrences that started three days ago can no
    /// longer reach past midnight two days ago: from then on, the edges
    /// enumerated here are all the changes there are. Any schedule with a
    /// window changes within the next eight days.
    pub fn state_at(&self, tz: &TimeZone, t: Timestamp) -> ScheduleState {
        let today = tz.to_datetime(t).date();
        let days_back = |n: i64| {
            today
                .checked_sub(jiff::Span::new().days(n))
                .unwrap_or(today)
        };
        let horizon = tz
            .to_timestamp(days_back(2).to_datetime(Time::midnight()))
            .unwrap_or(t)
            .min(t);
        let mut active: Option<Interval> = None;
        let mut last_change_before = horizon;
        let mut next_change = Timestamp::MAX;
        let mut day = days_back(3);
        for _ in 0..12 {
            for window in &self.windows {
                if !window.days.contains(&Day::from_weekday(day.weekday())) {
                    continue;
                }
                let Some(interval) = occurrence(tz, day, window) else {
                    continue;
                };
                if interval.contains(t) {
                    // Overlaps are refused by validation; if two windows did
                    // touch, the union still holds: take the later end.
                    active = Some(match active {
                        Some(a) => Interval {
                            start: a.start.min(interval.start),
                            end: a.end.max(interval.end),
                        },
                        None => interval,
                    });
                }
                for edge in [interval.start, interval.end] {
                    if edge > t {
                        next_change = next_change.min(edge);
                    } else {
                        last_change_before = last_change_before.max(edge);
                    }
                }
            }
            match day.tomorrow() {
                Ok(next) => day = next,
                Err(_) => break,
            }
        }
        if let Some(a) = active {
            next_change = next_change.min(a.end);
        }
        ScheduleState {
            active,
            valid_until: next_change,
            valid_from: last_change_before,
        }
    }

    pub fn is_active_at(&self, tz: &TimeZone, t: Timestamp) -> bool {
        self.state_at(tz, t).active.is_some()
    }
}

fn occurrence(tz: &TimeZone, day: Date, window: &Window) -> Option<Interval> {
    let end_day = if window.is_overnight() {
        day.tomorrow().ok()?
    } else {
        day
    };
    let start = tz.to_timestamp(day.to_datetime(window.start)).ok()?;
    let end = tz.to_timestamp(end_day.to_datetime(window.end)).ok()?;
    (start < end).then_some(Interval { start, end })
}
