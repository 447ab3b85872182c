//! `kordon.toml`: where the broker is, where the cases are, who may call the
//! API, and the thresholds. Everything is checked at load, so a typo stops
//! kordon at start with the file and field named, instead of being obeyed.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use kordon_alert::AlertSettings;
use kordon_core::{DeviceId, EngineConfig};
use kordon_ingest::{BrokerSettings, Limits};
use serde::{Deserialize, Serialize};
use thiserror::Error;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub broker: BrokerConfig,
    pub http: HttpConfig,
    pub cases: CasesConfig,
    #[serde(default)]
    pub ingest: Limits,
    #[serde(default)]
    pub owntracks: OwnTracksConfig,
    #[serde(default)]
    pub alerts: AlertSettings,
    #[serde(default)]
    pub engine: EngineConfig,
    #[serde(default)]
    pub journal: JournalConfig,
    /// The deadline report's targets.
    #[serde(default)]
    pub reports: ReportsConfig,
    /// The police's CAP messages as webhook deliveries.
    #[serde(default)]
    pub dispatch: crate::dispatch::DispatchConfig,
    /// Several instances sharing the cases (`docs/cluster.md`); none: one
    /// process, the default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<kordon_cluster::ClusterConfig>,
    /// The wall clock, except for `kordon demo`.
    #[serde(skip)]
    pub clock: crate::clock::Clock,
}

/// What the deadline report measures against.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportsConfig {
    #[serde(default)]
    pub targets: DeadlineTargets,
}

/// Per partner: how soon an alert should be acknowledged and resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeadlineTargets {
    /// The monitoring room acknowledges an alert within this.
    pub acknowledge_s: u32,
    /// … and resolves it within this.
    pub resolve_s: u32,
    /// The police acknowledge a police alert within this.
    pub police_acknowledge_s: u32,
    /// The share of alerts a partner handles within target, per week.
    pub share: f64,
}

impl Default for DeadlineTargets {
    fn default() -> Self {
        DeadlineTargets {
            acknowledge_s: 120,
            resolve_s: 3600,
            police_acknowledge_s: 300,
            share: 0.95,
        }
    }
}

/// The durable journal: where it lives, how hard it syncs, how long fixes
/// are kept.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JournalConfig {
    /// Holds `journal.db` and the snapshots.
    #[serde(default = "default_journal_dir")]
    pub dir: PathBuf,
    /// `full`: every commit reaches the disk (survives power loss);
    /// `process`: survives a crash of kordon, not of the machine.
    #[serde(default)]
    pub durability: kordon_journal::Durability,
    /// Fixes received more than this many days ago are retired (their
    /// content deleted, their place in the chain kept) unless they lie near
    /// an alert episode. 0 keeps everything.
    #[serde(default = "default_retention_days")]
    pub retention_days: u32,
    /// Fixes this close in time to an alert episode are evidence and kept.
    #[serde(default = "default_keep_around_episode_minutes")]
    pub keep_around_episode_minutes: u32,
    /// A snapshot after this many records …
    #[serde(default = "default_snapshot_every_records")]
    pub snapshot_every_records: u64,
    /// … or after this many seconds with any record.
    #[serde(default = "default_snapshot_every_s")]
    pub snapshot_every_s: u32,
    /// The most records in one commit.
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
    /// The longest a commit waits for more records; 0 commits at once.
    /// When records come fast it waits less: only as long as about 500
    /// take to come (`GroupCommit::fill_records`), half a 1,000-message
    /// in-flight window (kordon's Mosquitto config has 20,000).
    /// Only broker acknowledgements and API answers wait for a commit, not
    /// alerts, and fewer, larger commits cost less: 5 ms cut kordon's CPU
    /// per fix by a third at 3,000 fixes/s (113 → 78 µs) and the busy-disk
    /// p99 from 42.5 to 3.4 ms in the short benchmark (one run each); 10 ms
    /// took another 1.8 µs off the 17.8 at 10,000 fixes/s (half the
    /// commits: journal 8.0 → 6.8 µs, `kordon-bench --rates 10000`, two
    /// runs each, 2026-12-02), and 20 ms another 1.4–1.8 (11.7–12.1 →
    /// 10.3–10.5 µs, journal 5.4–5.5 → 4.4–4.5; same command and day),
    /// and 50 ms another 1.1 at 10,000 (medians of four runs, 13.9 →
    /// 12.8 µs; journal 4.9–5.4 → 4.2–5.1) and 4 at 2,000 fixes/s (35.0
    /// and 38.3 → 30.4 and 34.8 µs; 2026-12-05, runs alternating).
    /// It also holds each acknowledgement back that long, so a broker's
    /// in-flight window of N messages allows at most N per commit; a
    /// linger ends early once a fifth of it brought nothing, as when that
    /// window is full (`docs/operations.md`: `max_inflight_messages`).
    #[serde(default = "default_linger_ms")]
    pub linger_ms: u64,
}

impl Default for JournalConfig {
    fn default() -> Self {
        JournalConfig {
            dir: default_journal_dir(),
            durability: kordon_journal::Durability::Full,
            retention_days: default_retention_days(),
            keep_around_episode_minutes: default_keep_around_episode_minutes(),
            snapshot_every_records: default_snapshot_every_records(),
            snapshot_every_s: default_snapshot_every_s(),
            max_batch: default_max_batch(),
            linger_ms: default_linger_ms(),
        }
    }
}

fn default_journal_dir() -> PathBuf {
    PathBuf::from("journal")
}
fn default_retention_days() -> u32 {
    30
}
fn default_keep_around_episode_minutes() -> u32 {
    60
}
/// A start replays about this many records at most after the last snapshot
/// (about 2.5 s at the 0.4 million a second measured); a snapshot of
/// 10,000 cases costs about 0.35 s of CPU, off the engine's thread, which
/// every 100,000 records was 3.5 µs per fix at 10,000 fixes/s.
fn default_snapshot_every_records() -> u64 {
    1_000_000
}
fn default_snapshot_every_s() -> u32 {
    300
}
fn default_max_batch() -> usize {
    4096
}
fn default_linger_ms() -> u64 {
    50
}

impl JournalConfig {
    pub fn journal_file(&self) -> PathBuf {
        self.dir.join("journal.db")
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerConfig {
    /// Run rumqttd inside kordon (development and demos; production uses
    /// Mosquitto or a clustered broker).
    #[serde(default)]
    pub embedded: bool,
    /// Where the embedded broker listens; port 0 picks a free one.
    #[serde(default = "default_embedded_listen")]
    pub embedded_listen: SocketAddr,
    /// The external broker when `embedded` is false.
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default = "default_client_id")]
    pub client_id: String,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

fn default_embedded_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 1884))
}

fn default_client_id() -> String {
    "kordon".to_string()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// Bearer tokens, stored as SHA-256 hex (`kordon hash-token`).
    #[serde(default)]
    pub tokens: Vec<TokenConfig>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Who holds it, for the log.
    pub name: String,
    pub role: Role,
    pub sha256: String,
}

/// What a caller of the API may see and do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The probation monitoring room: all alerts with both positions, acks.
    Monitoring,
    /// Police dispatch: police alerts with both positions, acks, bans.
    Police,
    /// Case administration: case edits; never a victim's position.
    Admin,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CasesConfig {
    /// Directory of case files (`*.json`); API edits are written back here.
    pub dir: PathBuf,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OwnTracksConfig {
    /// `"user/device"` of the OwnTracks topic → kordon device id.
    #[serde(default)]
    pub devices: BTreeMap<String, String>,
}

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("{path}: {problem}")]
    Invalid { path: PathBuf, problem: String },
}

impl Config {
    /// Loads and checks `path`; relative paths inside are taken from the
    /// file's directory, so kordon runs the same from any working directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut config: Config = toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.cases.dir = base.join(&config.cases.dir);
        config.journal.dir = base.join(&config.journal.dir);
        if let Some(ca) = &config.broker.ca_file {
            config.broker.ca_file = Some(base.join(ca));
        }
        config.check().map_err(|problem| ConfigError::Invalid {
            path: path.to_path_buf(),
            problem,
        })?;
        Ok(config)
    }

    /// Every problem at once, one per line.
    pub fn check(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        if !self.broker.embedded && self.device_broker_urls().is_empty() {
            problems.push("broker: set `embedded = true` or a `url`".to_string());
        }
        if self.broker.embedded && !cfg!(feature = "embedded-broker") {
            problems.push(
                "broker.embedded: this kordon was built without the `embedded-broker` feature"
                    .to_string(),
            );
        }
        if let Some(url) = &self.broker.url {
            if let Err(e) = kordon_ingest::BrokerAddress::parse(url) {
                problems.push(format!("broker.url: {e}"));
            }
        }
        for (i, token) in self.http.tokens.iter().enumerate() {
            let hex =
                token.sha256.len() == 64 && token.sha256.bytes().all(|b| b.is_ascii_hexdigit());
            if !hex {
                problems.push(format!(
                    "http.tokens[{i}] ({}): sha256 must be 64 hex digits (`kordon hash-token`)",
                    token.name
                ));
            }
        }
        problems.extend(self.dispatch.check());
        if let Some(cluster) = &self.cluster {
            if let Err(cluster) = cluster.settings() {
                problems.extend(cluster);
            }
            problems.extend(self.device_broker_problems(cluster));
        }
        for (key, device) in &self.owntracks.devices {
            if key.split('/').count() != 2 {
                problems.push(format!(
                    "owntracks.devices: `{key}` must be \"user/device\""
                ));
            }
            if let Err(refusal) = kordon_ingest::topic::device_id(device) {
                problems.push(format!("owntracks.devices.\"{key}\": {}", refusal.detail));
            }
        }
        if let Err(problem) = self.alerts.validate() {
            problems.push(problem);
        }
        if let Err(errors) = self.engine.validate() {
            problems.extend(errors.iter().map(|e| format!("engine: {e}")));
        }
        let accuracy_limit_ok =
            self.ingest.max_accuracy_m.is_finite() && self.ingest.max_accuracy_m > 0.0;
        if self.ingest.max_payload_bytes == 0 || !accuracy_limit_ok {
            problems.push("ingest: max_payload_bytes and max_accuracy_m must be positive".into());
        }
        if self.journal.snapshot_every_records == 0
            || self.journal.snapshot_every_s == 0
            || self.journal.max_batch == 0
        {
            problems.push(
                "journal: snapshot_every_records, snapshot_every_s and max_batch must be positive"
                    .into(),
            );
        }
        if self.journal.retention_days != 0
            && self.journal.retention_days < self.ingest.retention_days
        {
            problems.push(format!(
                "journal.retention_days ({}) is shorter than ingest.retention_days ({}): fixes kordon accepts would be retired at once",
                self.journal.retention_days, self.ingest.retention_days
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("\n"))
        }
    }

    /// The devices' brokers of a cluster, in their configured order:
    /// `[cluster] device_brokers`, or else `[broker] url` alone.
    pub fn device_broker_urls(&self) -> Vec<String> {
        match &self.cluster {
            Some(cluster) if !cluster.device_brokers.is_empty() => cluster.device_brokers.clone(),
            _ => self.broker.url.iter().cloned().collect(),
        }
    }

    fn device_broker_problems(&self, cluster: &kordon_cluster::ClusterConfig) -> Vec<String> {
        let mut problems = Vec::new();
        for (i, url) in cluster.device_brokers.iter().enumerate() {
            if let Err(e) = kordon_ingest::BrokerAddress::parse(url) {
                problems.push(format!("cluster.device_brokers[{i}]: {e}"));
            }
        }
        let first = cluster.device_brokers.first();
        if let (Some(first), Some(url)) = (first, &self.broker.url) {
            if first != url {
                problems.push(format!(
                    "cluster.device_brokers: broker.url `{url}` is not the first of them \
                     (`{first}`); leave broker.url out, or make it the first"
                ));
            }
        }
        problems
    }

    pub fn broker_settings(&self, url: String) -> BrokerSettings {
        BrokerSettings {
            url,
            client_id: self.broker.client_id.clone(),
            username: self.broker.username.clone(),
            password: self.broker.password.clone(),
            ca_file: self.broker.ca_file.clone(),
            keep_alive_s: kordon_ingest::broker::KEEP_ALIVE_S,
        }
    }

    pub fn owntracks_map(&self) -> HashMap<String, DeviceId> {
        self.owntracks
            .devices
            .iter()
            .map(|(key, device)| (key.clone(), DeviceId::new(device)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_configuration_loads_and_checks() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/kordon.toml");
        let config = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert!(config.check().is_ok());
        assert_eq!(config.alerts.police_update_min_interval_s, 60);
    }

    /// The shipped configuration with `[broker] url` and a `[cluster]`.
    fn in_a_cluster(url: Option<&str>, device_brokers: &str) -> Config {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/kordon.toml");
        let mut config = Config::load(&path).unwrap();
        config.broker.embedded = false;
        config.broker.url = url.map(str::to_string);
        let cluster = format!(
            "nats_url = \"nats://127.0.0.1:4222\"\ninstance = \"kordon-a\"\n{device_brokers}\n"
        );
        config.cluster = Some(toml::from_str(&cluster).unwrap());
        config
    }

    #[test]
    fn a_cluster_s_device_brokers_are_listed_or_broker_url_alone() {
        let one = in_a_cluster(Some("mqtt://mq-1:1883"), "");
        assert!(one.check().is_ok());
        assert_eq!(one.device_broker_urls(), ["mqtt://mq-1:1883"]);

        let list = "device_brokers = [\"mqtts://mq-1:8883\", \"mqtts://mq-2:8883\"]";
        let several = in_a_cluster(None, list);
        assert!(several.check().is_ok(), "{:?}", several.check());
        assert_eq!(several.device_broker_urls().len(), 2);
        assert!(in_a_cluster(Some("mqtts://mq-1:8883"), list)
            .check()
            .is_ok());

        let problems = in_a_cluster(Some("mqtts://mq-2:8883"), list)
            .check()
            .unwrap_err();
        assert!(problems.contains("is not the first of them"), "{problems}");
        let problems = in_a_cluster(None, "device_brokers = [\"http://mq-1\"]")
            .check()
            .unwrap_err();
        assert!(problems.contains("cluster.device_brokers[0]"), "{problems}");
    }
}
