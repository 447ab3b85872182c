//! Where kordon's drivers read the time. The engine never does; the
//! connection, the tick and the API stamp what they hand it with this
//! clock. It is the wall clock, except in `kordon demo`, where simulated
//! time runs faster than real time and kordon must keep pace with it.

use std::time::Instant;

use jiff::{SignedDuration, Timestamp};

#[derive(Debug, Clone, Copy)]
pub struct Clock {
    scaled: Option<(Instant, Timestamp, f64)>,
}

impl Default for Clock {
    fn default() -> Self {
        Clock::wall()
    }
}

impl Clock {
    pub fn wall() -> Clock {
        Clock { scaled: None }
    }

    /// Time that starts at `origin` now and runs `speed` times as fast.
    pub fn scaled(origin: Timestamp, speed: f64) -> Clock {
        Clock {
            scaled: Some((Instant::now(), origin, speed)),
        }
    }

    pub fn now(&self) -> Timestamp {
        match self.scaled {
            None => Timestamp::now(),
            Some((since, origin, speed)) => {
                let elapsed = since.elapsed().as_secs_f64() * speed;
                origin
                    .checked_add(SignedDuration::from_secs_f64(elapsed))
                    .unwrap_or(Timestamp::MAX)
            }
        }
    }

    /// How fast it runs against real time.
    pub fn speed(&self) -> f64 {
        self.scaled.map_or(1.0, |(_, _, s)| s)
    }
}
