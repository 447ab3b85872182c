//! The time each tick carries: the one place that decides what "now" is for
//! the engine's deadlines (offline, GPS lost, position unknown, curfews,
//! escalations).
//!
//! Live, a tick carries the wall clock. After a broker outage kordon
//! receives minutes of buffered messages at once; a tick at the wall clock
//! would then judge those devices by a time their messages have not reached
//! yet (her position "unknown", his bracelet "offline"), and where such a
//! tick fell among the messages would change the decisions from run to run.
//! So while kordon drains a backlog (messages arriving, the newest event
//! time among them lagging the wall clock by more than
//! [`EngineTime::BACKLOG_LAG`], with no pause of [`EngineTime::QUIET`]), ticks
//! carry that newest event time to the engine instead, as they would have
//! carried live; the engine's time never goes back, and a tick that would
//! take it back leaves the engine alone. The engine derives onsets from
//! deadlines, not from tick times, so what it decides on a backlog is what
//! it decided live. Escalations and delivery checks stay on the wall clock:
//! how long an operator takes to acknowledge is wall-clock time.
//!
//! A stream that never catches up (a device whose clock is stuck hours
//! behind, on an otherwise quiet system) must not freeze the deadlines of
//! everyone else: a backlog must gain on the wall clock by
//! [`EngineTime::MIN_GAIN`] in every [`EngineTime::CATCH_UP_WINDOW`] of wall
//! time, or the wall clock takes over again. A real backlog may take many
//! minutes to drain (ten minutes of outage for 100,000 devices is six
//! million fixes); as long as it gains, it is judged at its own time
//! (before, a fixed two minutes cut a slow drain in half, and the rest was
//! judged at the wall clock: her position "unknown", his breach late).
//!
//! Pure: times come in as arguments.

use jiff::{SignedDuration, Timestamp};
use kordon_journal::EngineTick;
use tracing::{info, warn};

#[derive(Debug, Default)]
pub struct EngineTime {
    /// The newest event time among the messages received.
    frontier: Option<Timestamp>,
    /// Wall time of the last message with an event time.
    last_arrival: Option<Timestamp>,
    /// Wall time of the last tick at which kordon held messages it had not
    /// yet acknowledged (the broker may then hold the rest back).
    last_held: Option<Timestamp>,
    last_tick: Option<Timestamp>,
    /// The backlog being drained, if any.
    backlog: Option<Drain>,
}

/// How a backlog is draining: where it stood at the start of the current
/// [`EngineTime::CATCH_UP_WINDOW`], and whether it was given up on.
#[derive(Debug, Clone, Copy)]
struct Drain {
    /// Wall time at the start of the window.
    window_start: Timestamp,
    /// How far the messages lagged the wall clock then.
    lag_at_start: SignedDuration,
    /// It did not gain enough in a window: ticks follow the wall clock until
    /// it is drained (said once: it was a warning a second, 210 of them in
    /// one benchmark's drain).
    given_up: bool,
}

impl EngineTime {
    /// Messages older than this on arrival, all of them, are a backlog.
    pub const BACKLOG_LAG: SignedDuration = SignedDuration::from_secs(10);
    /// A backlog is looked at once per this much wall time: has it gained?
    pub const CATCH_UP_WINDOW: SignedDuration = SignedDuration::from_secs(120);
    /// How much a backlog must gain on the wall clock in each window to go
    /// on holding the engine's time: a tenth (draining at 1.1 times real
    /// time or faster). A device with a clock stuck behind gains nothing.
    pub const MIN_GAIN: SignedDuration = SignedDuration::from_secs(12);
    /// No message for this long ends a backlog: everyone is silent, and the
    /// wall clock must go on to find devices offline. Counted from the last
    /// message, or from when kordon last held messages unacknowledged if
    /// later: a commit held up by a busy disk pauses what the broker sends,
    /// and that pause is not the devices' silence.
    pub const QUIET: SignedDuration = SignedDuration::from_secs(5);

    /// A device message stamped `ts` (never after its arrival) was received
    /// at wall time `wall`.
    pub fn received(&mut self, ts: Timestamp, wall: Timestamp) {
        self.frontier = Some(self.frontier.map_or(ts, |f| f.max(ts)));
        self.last_arrival = Some(wall);
    }

    /// What the tick at wall time `wall` carries to the engine;
    /// `intake_held`: kordon held messages it had read and not yet
    /// acknowledged then.
    pub fn tick(&mut self, wall: Timestamp, intake_held: bool) -> EngineTick {
        if intake_held {
            self.last_held = Some(wall);
        }
        match self.engine_time(wall) {
            Some(at) if at == wall => EngineTick::AtTick,
            Some(at) => EngineTick::At(at),
            None => EngineTick::Skipped,
        }
    }

    /// The engine's time for the tick at `wall`, or `None` to skip it (the
    /// backlog has not reached the last tick's time yet).
    fn engine_time(&mut self, wall: Timestamp) -> Option<Timestamp> {
        let flowing = self
            .last_arrival
            .max(self.last_held)
            .is_some_and(|at| wall.duration_since(at) < Self::QUIET);
        let draining = match self.frontier {
            Some(frontier) if flowing && wall.duration_since(frontier) > Self::BACKLOG_LAG => {
                Some(frontier)
            }
            _ => None,
        };
        let at = match draining {
            Some(frontier) => self.follow(frontier, wall),
            None => {
                if self.backlog.take().is_some() {
                    info!("backlog drained: ticks follow the wall clock");
                }
                wall
            }
        };
        if self.last_tick.is_some_and(|last| at <= last) {
            return None;
        }
        self.last_tick = Some(at);
        Some(at)
    }

    /// The time a tick carries while messages arrive lagging at `frontier`:
    /// theirs while the backlog gains on the wall clock, the wall clock once
    /// it has not.
    fn follow(&mut self, frontier: Timestamp, wall: Timestamp) -> Timestamp {
        let lag = wall.duration_since(frontier);
        let Some(drain) = self.backlog.as_mut() else {
            info!(
                behind_s = lag.as_secs(),
                "draining a backlog: ticks follow the messages' own time"
            );
            self.backlog = Some(Drain {
                window_start: wall,
                lag_at_start: lag,
                given_up: false,
            });
            return frontier;
        };
        if drain.given_up {
            return wall;
        }
        if wall.duration_since(drain.window_start) <= Self::CATCH_UP_WINDOW {
            return frontier;
        }
        if drain.lag_at_start - lag >= Self::MIN_GAIN {
            drain.window_start = wall;
            drain.lag_at_start = lag;
            return frontier;
        }
        drain.given_up = true;
        warn!(%frontier, behind_s = lag.as_secs(), "messages keep arriving far behind the clock and do not catch up: ticks follow the wall clock again");
        wall
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    #[test]
    fn live_ticks_carry_the_wall_clock_also_when_all_is_quiet() {
        let mut time = EngineTime::default();
        assert_eq!(time.engine_time(t(0)), Some(t(0)));
        time.received(t(0), t(0));
        assert_eq!(time.engine_time(t(1)), Some(t(1)));
        // Nothing arrives: the clock goes on (devices can go offline).
        assert_eq!(time.engine_time(t(2)), Some(t(2)));
        assert_eq!(time.engine_time(t(300)), Some(t(300)));
    }

    #[test]
    fn a_backlog_is_ticked_at_its_own_time_and_never_backwards() {
        let mut time = EngineTime::default();
        assert_eq!(time.engine_time(t(0)), Some(t(0)));
        // Ten minutes of outage: the wall clock ticks on.
        assert_eq!(time.engine_time(t(600)), Some(t(600)));
        // The backlog from the outage arrives: still behind the last tick.
        time.received(t(10), t(600));
        time.received(t(300), t(601));
        assert_eq!(time.engine_time(t(601)), None);
        // Caught up to within the lag: live again.
        time.received(t(599), t(602));
        assert_eq!(time.engine_time(t(602)), Some(t(602)));
        // A backlog that began after the last tick: its own time.
        let mut time = EngineTime::default();
        time.engine_time(t(0));
        time.received(t(100), t(700));
        assert_eq!(time.engine_time(t(700)), Some(t(100)));
        // A tick with nothing new since, while still flowing: no advance.
        assert_eq!(time.engine_time(t(701)), None);
        time.received(t(130), t(701));
        assert_eq!(time.engine_time(t(702)), Some(t(130)));
        // Caught up: the wall clock again.
        time.received(t(699), t(703));
        assert_eq!(time.engine_time(t(703)), Some(t(703)));
    }

    #[test]
    fn a_pause_of_quiet_ends_a_backlog() {
        let mut time = EngineTime::default();
        time.engine_time(t(0));
        time.received(t(100), t(700));
        assert_eq!(time.engine_time(t(701)), Some(t(100)));
        assert_eq!(time.engine_time(t(704)), None, "4 s without a message");
        assert_eq!(time.engine_time(t(705)), Some(t(705)), "5 s: quiet");
    }

    #[test]
    fn a_backlog_that_never_catches_up_lets_the_wall_clock_take_over() {
        let mut time = EngineTime::default();
        time.engine_time(t(0));
        for s in 1..=200 {
            time.received(t(s), t(3600 + s));
            let at = time.engine_time(t(3600 + s)).unwrap();
            if s <= 121 {
                assert_eq!(at, t(s));
            } else {
                assert_eq!(at, t(3600 + s));
            }
        }
    }

    #[test]
    fn a_long_backlog_is_followed_as_long_as_it_catches_up() {
        // An hour of outage drained at twice real time: half an hour of
        // wall time, all of it judged at the messages' own time.
        let mut time = EngineTime::default();
        time.engine_time(t(0));
        for k in 1..=3600 {
            time.received(t(2 * k), t(3600 + k));
            let at = time.engine_time(t(3600 + k)).unwrap();
            if 3600 - k > EngineTime::BACKLOG_LAG.as_secs() {
                assert_eq!(at, t(2 * k), "{k} s into the drain");
            } else {
                assert_eq!(at, t(3600 + k), "caught up: live");
            }
        }
    }

    #[test]
    fn a_backlog_that_stops_gaining_lets_the_wall_clock_take_over() {
        let mut time = EngineTime::default();
        time.engine_time(t(0));
        // Two windows of fast draining, then the messages arrive only as
        // fast as the clock runs.
        let mut frontier = 0;
        for wall in 3601..=4200 {
            frontier += if wall <= 3841 { 3 } else { 1 };
            time.received(t(frontier), t(wall));
            let at = time.engine_time(t(wall)).unwrap();
            if wall <= 3841 + 121 {
                assert_eq!(at, t(frontier), "at {wall}");
            } else if wall > 3841 + 122 {
                assert_eq!(at, t(wall), "at {wall}");
            }
        }
    }

    #[test]
    fn a_pause_while_kordon_holds_messages_unacknowledged_is_not_quiet() {
        // A commit stalled by a busy disk: nothing arrives for 8 s, but
        // kordon holds what it read unacknowledged, so the broker waits.
        let mut time = EngineTime::default();
        time.engine_time(t(0));
        time.received(t(100), t(700));
        assert_eq!(time.tick(t(701), true), EngineTick::At(t(100)));
        for wall in 702..=708 {
            assert_eq!(time.tick(t(wall), true), EngineTick::Skipped, "at {wall}");
        }
        // The commit is through, the acknowledgements go, the rest comes.
        assert_eq!(time.tick(t(709), false), EngineTick::Skipped);
        time.received(t(130), t(709));
        assert_eq!(time.tick(t(710), false), EngineTick::At(t(130)));
        // Truly quiet: 5 s after the last message and the last hold.
        assert_eq!(time.tick(t(713), false), EngineTick::Skipped);
        assert_eq!(time.tick(t(714), false), EngineTick::AtTick);
    }
}
