//! The `[cluster]` section of `kordon.toml`: how an instance joins a
//! cluster. Checked whole at load, every problem named, as the rest of the
//! configuration is.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::keeper::ClusterSettings;
use crate::lease::{InstanceId, LeaseTimes};
use crate::retention::{Retention, SnapshotEvery};
use crate::shards::ShardCount;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// The NATS server with JetStream, e.g. `nats://127.0.0.1:4222`.
    pub nats_url: String,
    /// This instance's name, unique in the cluster.
    pub instance: String,
    /// Fixed when the cluster is first set up: instances that disagree on it
    /// would put one case in two shards, so one that does is refused
    /// (`crate::agreement`).
    #[serde(default = "default_shards")]
    pub shards: u32,
    #[serde(default = "default_bucket")]
    pub bucket: String,
    #[serde(default = "default_ttl")]
    pub lease_ttl_ms: u64,
    #[serde(default = "default_renew")]
    pub renew_every_ms: u64,
    #[serde(default = "default_margin")]
    pub margin_ms: u64,
    /// Copies NATS keeps of the cluster's buckets and streams: 3 on a NATS
    /// cluster in production.
    #[serde(default = "default_replicas")]
    pub replicas: usize,
    /// How long the shards' and the alerts' streams keep a message, in
    /// hours. Unset: kordon sets no limit (an existing stream keeps its own).
    #[serde(default)]
    pub stream_max_age_hours: Option<u32>,
    /// A shard's state is saved this often while messages come...
    #[serde(default = "default_snapshot_s")]
    pub snapshot_every_s: u64,
    /// ... or after this many messages, whichever comes first.
    #[serde(default = "default_snapshot_messages")]
    pub snapshot_every_messages: u64,
    /// The devices' brokers when there are several, e.g.
    /// `["mqtts://mq-1:8883", "mqtts://mq-2:8883"]`: the same list, in the
    /// same order, on every instance (the i-th runs under shard i's lease,
    /// `crate::brokers`). Each shares `[broker]`'s credentials and TLS.
    /// Empty: `[broker] url` is the one broker.
    #[serde(default)]
    pub device_brokers: Vec<String>,
}

fn default_snapshot_s() -> u64 {
    SnapshotEvery::default().period.as_secs()
}

fn default_snapshot_messages() -> u64 {
    SnapshotEvery::default().messages
}

fn default_replicas() -> usize {
    1
}

fn default_shards() -> u32 {
    u32::from(ShardCount::DEFAULT.get())
}

fn default_bucket() -> String {
    ClusterSettings::DEFAULT_BUCKET.to_string()
}

fn default_ttl() -> u64 {
    LeaseTimes::default().ttl.as_millis() as u64
}

fn default_renew() -> u64 {
    LeaseTimes::default().renew_every.as_millis() as u64
}

fn default_margin() -> u64 {
    LeaseTimes::default().margin.as_millis() as u64
}

impl ClusterConfig {
    /// The settings, or every problem, one per line, each naming its field.
    pub fn settings(&self) -> Result<ClusterSettings, Vec<String>> {
        let mut problems = Vec::new();
        if !(self.nats_url.starts_with("nats://") || self.nats_url.starts_with("tls://")) {
            problems.push(format!(
                "cluster.nats_url: `{}` is not a nats:// or tls:// address",
                self.nats_url
            ));
        }
        let instance = InstanceId::new(self.instance.clone())
            .map_err(|e| problems.push(format!("cluster.instance: {e}")));
        let shards =
            ShardCount::new(self.shards).map_err(|e| problems.push(format!("cluster.shards: {e}")));
        if !(1..=5).contains(&self.replicas) {
            problems.push(format!(
                "cluster.replicas: 1 to 5 (JetStream's limit), not {}",
                self.replicas
            ));
        }
        let bucket_ok = !self.bucket.is_empty()
            && self
                .bucket
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !bucket_ok {
            problems.push(format!(
                "cluster.bucket: `{}` must be letters, digits, '-' or '_'",
                self.bucket
            ));
        }
        let times = LeaseTimes {
            ttl: Duration::from_millis(self.lease_ttl_ms),
            renew_every: Duration::from_millis(self.renew_every_ms),
            margin: Duration::from_millis(self.margin_ms),
        }
        .checked()
        .map_err(|e| problems.push(format!("cluster: {e}")));
        let retention = Retention {
            stream_max_age: self
                .stream_max_age_hours
                .map(|hours| Duration::from_secs(u64::from(hours) * 3600)),
            snapshot_every: SnapshotEvery {
                messages: self.snapshot_every_messages,
                period: Duration::from_secs(self.snapshot_every_s),
            },
        };
        problems.extend(retention.problems());
        if let Ok(shards) = shards {
            if self.device_brokers.len() > usize::from(shards.get()) {
                problems.push(format!(
                    "cluster.device_brokers: {} brokers for {} shards; broker i runs under shard \
                     i's lease, so there can be no more brokers than shards",
                    self.device_brokers.len(),
                    shards.get()
                ));
            }
        }
        match (instance, shards, times) {
            (Ok(instance), Ok(shards), Ok(times)) if problems.is_empty() => Ok(ClusterSettings {
                nats_url: self.nats_url.clone(),
                bucket: self.bucket.clone(),
                instance,
                shards,
                times,
                replicas: self.replicas,
                retention,
            }),
            _ => Err(problems),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> ClusterConfig {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn the_defaults_need_only_the_server_and_a_name() {
        let config = parse("nats_url = \"nats://127.0.0.1:4222\"\ninstance = \"kordon-a\"\n");
        let settings = config.settings().unwrap();
        assert_eq!(settings.shards, ShardCount::DEFAULT);
        assert_eq!(settings.bucket, "kordon_leases");
        assert_eq!(settings.times, LeaseTimes::default());
        assert_eq!(settings.retention, Retention::default());
    }

    #[test]
    fn the_age_limit_is_given_in_hours_and_the_snapshot_period_in_seconds() {
        let config = parse(
            "nats_url = \"nats://127.0.0.1:4222\"\ninstance = \"kordon-a\"\n\
             stream_max_age_hours = 48\nsnapshot_every_s = 60\nsnapshot_every_messages = 20000\n",
        );
        let retention = config.settings().unwrap().retention;
        assert_eq!(
            retention.stream_max_age,
            Some(Duration::from_secs(48 * 3600))
        );
        assert_eq!(
            retention.snapshot_every,
            SnapshotEvery {
                messages: 20_000,
                period: Duration::from_secs(60)
            }
        );
    }

    #[test]
    fn no_more_device_brokers_than_shards() {
        let config = parse(
            "nats_url = \"nats://127.0.0.1:4222\"\ninstance = \"kordon-a\"\nshards = 1\n\
             device_brokers = [\"mqtt://mq-1:1883\", \"mqtt://mq-2:1883\"]\n",
        );
        let problems = config.settings().unwrap_err();
        assert!(
            problems[0].starts_with("cluster.device_brokers: 2 brokers for 1 shards"),
            "{problems:?}"
        );
    }

    #[test]
    fn every_problem_is_named_at_once() {
        let config = parse(
            "nats_url = \"http://x\"\ninstance = \"a b\"\nshards = 0\nbucket = \"a.b\"\n\
             lease_ttl_ms = 1000\nrenew_every_ms = 750\nreplicas = 0\n\
             stream_max_age_hours = 0\nsnapshot_every_s = 0\n",
        );
        let problems = config.settings().unwrap_err();
        for field in [
            "cluster.nats_url",
            "cluster.instance",
            "cluster.shards",
            "cluster.bucket",
            "cluster.replicas",
            "lease times",
            "cluster.stream_max_age_hours",
            "cluster.snapshot_every_s",
        ] {
            assert!(
                problems.iter().any(|p| p.contains(field)),
                "{field} not named in {problems:?}"
            );
        }
    }

    #[test]
    fn an_unknown_field_is_refused() {
        let parsed: Result<ClusterConfig, _> =
            toml::from_str("nats_url = \"nats://h:1\"\ninstance = \"a\"\nshard = 64\n");
        assert!(parsed.is_err());
    }
}
