//! How long the cluster keeps what it stores: the age limit of the shards'
//! and the alerts' streams, and how often a shard's state is saved
//! (`docs/cluster.md`, "Retention"). The bounds that keep the two safe
//! together live here and nowhere else.
//!
//! It never touches NATS: `keeper::ensure_stream` applies the age limit.

use std::time::Duration;

/// When a shard's state is saved: after this many messages, or this long
/// after the last save if a message came or an alert was stored since (the
/// clock's decisions change the state with no message). The next owner
/// replays at most this much (and the alerts' stream drops what that
/// decides again).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotEvery {
    pub messages: u64,
    pub period: Duration,
}

impl SnapshotEvery {
    /// The longest period: a third of the alerts' duplicate window
    /// (`alerts::DUPLICATE_WINDOW`), so that what a new owner replays after
    /// the last snapshot, plus a fail-over, is still recognised there as
    /// sent.
    pub const LONGEST: Duration = Duration::from_secs(5 * 60);
}

impl Default for SnapshotEvery {
    fn default() -> Self {
        SnapshotEvery {
            messages: 5_000,
            period: Duration::from_secs(10),
        }
    }
}

/// What the cluster keeps, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Retention {
    /// How long the shards' stream keeps a message, and the alerts' stream
    /// (at least [`Retention::SHORTEST_ALERTS_AGE`]). `None`: kordon sets no
    /// limit, and an existing stream keeps the one its operator gave it
    /// (`nats stream edit`).
    pub stream_max_age: Option<Duration>,
    pub snapshot_every: SnapshotEvery,
}

impl Retention {
    /// The shortest age limit. JetStream refuses one shorter than a
    /// stream's duplicate window (15 minutes for the alerts), and a shard
    /// left unserved that long raises `KordonClusterShardsUnserved` after a
    /// minute: an hour leaves the operator time to act before the stream
    /// drops a fix no shard has read.
    pub const SHORTEST_STREAM_AGE: Duration = Duration::from_secs(60 * 60);

    /// The longest age limit: ten years. JetStream takes it in nanoseconds
    /// as an `i64`, where a larger one would wrap round to a short limit.
    pub const LONGEST_STREAM_AGE: Duration = Duration::from_secs(87_600 * 3600);

    /// The shortest age limit of the alerts' stream. An alert waits there
    /// until the deliverer hands it to Mosquitto: a night with Mosquitto
    /// down must not cost the alerts it held. The stream is small (a
    /// message per alert, not per fix).
    pub const SHORTEST_ALERTS_AGE: Duration = Duration::from_secs(24 * 3600);

    /// The age limit of the shards' stream.
    pub fn shard_stream_age(&self) -> Option<Duration> {
        self.stream_max_age
    }

    /// The age limit of the alerts' stream.
    pub fn alert_stream_age(&self) -> Option<Duration> {
        self.stream_max_age
            .map(|age| age.max(Self::SHORTEST_ALERTS_AGE))
    }

    /// Every problem with these limits, one per line, each naming its
    /// `[cluster]` field.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Some(age) = self.stream_max_age {
            if !(Self::SHORTEST_STREAM_AGE..=Self::LONGEST_STREAM_AGE).contains(&age) {
                problems.push(format!(
                    "cluster.stream_max_age_hours: {} to {}, not {}: at least an hour, so that \
                     a shard left unserved is noticed before its fixes are dropped unread",
                    Self::SHORTEST_STREAM_AGE.as_secs() / 3600,
                    Self::LONGEST_STREAM_AGE.as_secs() / 3600,
                    age.as_secs() / 3600
                ));
            }
        }
        let period = self.snapshot_every.period;
        if period.is_zero() || period > SnapshotEvery::LONGEST {
            problems.push(format!(
                "cluster.snapshot_every_s: 1 to {}, not {}: a new owner replays what came \
                 since the last snapshot, and the alerts' stream recognises a message \
                 decided again for {} minutes only",
                SnapshotEvery::LONGEST.as_secs(),
                period.as_secs(),
                crate::alerts::DUPLICATE_WINDOW.as_secs() / 60
            ));
        }
        if self.snapshot_every.messages == 0 {
            problems.push("cluster.snapshot_every_messages: at least 1".to_string());
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_set_no_age_limit_and_snapshot_every_ten_seconds() {
        let retention = Retention::default();
        assert_eq!(retention.stream_max_age, None);
        assert_eq!(retention.snapshot_every.period, Duration::from_secs(10));
        assert_eq!(retention.snapshot_every.messages, 5_000);
        assert!(retention.problems().is_empty());
    }

    #[test]
    fn the_longest_snapshot_period_fits_three_times_in_the_alerts_window() {
        assert!(SnapshotEvery::LONGEST * 3 <= crate::alerts::DUPLICATE_WINDOW);
        assert!(Retention::SHORTEST_STREAM_AGE >= crate::alerts::DUPLICATE_WINDOW);
        assert!(Retention::SHORTEST_STREAM_AGE >= crate::bridge::DUPLICATE_WINDOW);
    }

    #[test]
    fn limits_out_of_bounds_are_each_named() {
        let retention = Retention {
            stream_max_age: Some(Duration::from_secs(59 * 60)),
            snapshot_every: SnapshotEvery {
                messages: 0,
                period: Duration::from_secs(301),
            },
        };
        let problems = retention.problems();
        for field in [
            "cluster.stream_max_age_hours",
            "cluster.snapshot_every_s",
            "cluster.snapshot_every_messages",
        ] {
            assert!(
                problems.iter().any(|p| p.starts_with(field)),
                "{field} not named in {problems:?}"
            );
        }
        assert_eq!(problems.len(), 3);
    }

    #[test]
    fn an_age_limit_that_would_wrap_round_in_nanoseconds_is_refused() {
        let hours = |h: u64| Retention {
            stream_max_age: Some(Duration::from_secs(h * 3600)),
            ..Retention::default()
        };
        assert!(hours(87_600).problems().is_empty());
        assert!(Retention::LONGEST_STREAM_AGE.as_nanos() < i64::MAX as u128);
        assert_eq!(hours(5_124_096).problems().len(), 1);
    }

    #[test]
    fn the_alerts_keep_a_day_at_least_and_the_shards_what_is_set() {
        let six = Retention {
            stream_max_age: Some(Duration::from_secs(6 * 3600)),
            ..Retention::default()
        };
        assert_eq!(six.shard_stream_age(), Some(Duration::from_secs(6 * 3600)));
        assert_eq!(six.alert_stream_age(), Some(Retention::SHORTEST_ALERTS_AGE));
        let week = Duration::from_secs(7 * 24 * 3600);
        let long = Retention {
            stream_max_age: Some(week),
            ..Retention::default()
        };
        assert_eq!(long.alert_stream_age(), Some(week));
        assert_eq!(Retention::default().alert_stream_age(), None);
    }
}
