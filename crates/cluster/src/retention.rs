//! How long the cluster keeps what it stores: the age limit of the shards'
//! and the alerts' streams, and how often a shard's state is saved
//! (`docs/cluster.md`, "Retention"). The bounds that keep the two safe
//! together live here and nowhere else.
//!
//! It never touches NATS: `keeper::ensure_stream` applies the age limit.

use std::time::Duration;

/// When a shard's state is saved: after this many messages, or this long
/// after the last save if any message came since. The next owner replays at
/// most this much (and the alerts' stream drops what that decides again).
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
    /// How long the shards' and the alerts' streams keep a message. `None`:
    /// kordon sets no limit, and an existing stream keeps the one its
    /// operator gave it (`nats stream edit`).
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

    /// Every problem with these limits, one per line, each naming its
    /// `[cluster]` field.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Some(age) = self.stream_max_age {
            if age < Self::SHORTEST_STREAM_AGE {
                problems.push(format!(
                    "cluster.stream_max_age_hours: at least {} hour, so that a shard left \
                     unserved is noticed before its fixes are dropped unread",
                    Self::SHORTEST_STREAM_AGE.as_secs() / 3600
                ));
            }
        }
        let period = self.snapshot_every.period;
        if period.is_zero() || period > SnapshotEvery::LONGEST {
            problems.push(format!(
                "cluster.snapshot_every_s: 1 to {}, not {}: a new owner replays what came \
                 since the last snapshot, and the alerts' stream recognises a message \
                 decided again for 15 minutes only",
                SnapshotEvery::LONGEST.as_secs(),
                period.as_secs()
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
}
