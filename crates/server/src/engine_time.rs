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
//! everyone else: after [`EngineTime::MAX_BACKLOG`] of wall time the wall
//! clock takes over again.
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
    last_tick: Option<Timestamp>,
    /// Wall time when draining the current backlog began.
    backlog_since: Option<Timestamp>,
    /// The current backlog outlasted [`Self::MAX_BACKLOG`] (said once: it
    /// was a warning a second, 210 of them in one benchmark's drain).
    backlog_too_long: bool,
}

impl EngineTime {
    /// Messages older than this on arrival, all of them, are a backlog.
    pub const BACKLOG_LAG: SignedDuration = SignedDuration::from_secs(10);
    /// The longest a backlog holds the engine's time behind the wall clock.
    pub const MAX_BACKLOG: SignedDuration = SignedDuration::from_secs(120);
    /// No message for this long ends a backlog: everyone is silent, and the
    /// wall clock must go on to find devices offline.
    pub const QUIET: SignedDuration = SignedDuration::from_secs(5);

    /// A device message stamped `ts` (never after its arrival) was received
    /// at wall time `wall`.
    pub fn received(&mut self, ts: Timestamp, wall: Timestamp) {
        self.frontier = Some(self.frontier.map_or(ts, |f| f.max(ts)));
        self.last_arrival = Some(wall);
    }

    /// What the tick at wall time `wall` carries to the engine.
    pub fn tick(&mut self, wall: Timestamp) -> EngineTick {
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
            .is_some_and(|at| wall.duration_since(at) < Self::QUIET);
        let draining = match self.frontier {
            Some(frontier) if flowing && wall.duration_since(frontier) > Self::BACKLOG_LAG => {
                Some(frontier)
            }
            _ => None,
        };
        let at = match (draining, self.backlog_since) {
            (Some(frontier), None) => {
                info!(
                    behind_s = wall.duration_since(frontier).as_secs(),
                    "draining a backlog: ticks follow the messages' own time"
                );
                self.backlog_since = Some(wall);
                frontier
            }
            (Some(frontier), Some(since)) if wall.duration_since(since) <= Self::MAX_BACKLOG => {
                frontier
            }
            (Some(frontier), Some(_)) => {
                if !std::mem::replace(&mut self.backlog_too_long, true) {
                    warn!(%frontier, "messages keep arriving far behind the clock: ticks follow the wall clock again");
                }
                wall
            }
            (None, since) => {
                if since.is_some() {
                    info!("backlog drained: ticks follow the wall clock");
                }
                self.backlog_since = None;
                self.backlog_too_long = false;
                wall
            }
        };
        if self.last_tick.is_some_and(|last| at <= last) {
            return None;
        }
        self.last_tick = Some(at);
        Some(at)
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
}
