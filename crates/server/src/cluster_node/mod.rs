//! kordon as one instance of a cluster (`docs/cluster.md`): it serves the
//! shards whose leases it holds, one [`ShardCore`] each, opening a shard
//! when a tenure begins and closing it when the tenure ends. It follows the
//! cases' bucket: it keeps every case by shard, so that a shard opens with
//! its cases at once, and passes each change to the shard the case is in.
//!
//! What it never does: serve a shard without a tenure. The tenures come from
//! the lease keeper (`kordon_cluster::keeper`); each shard core checks its
//! own again before it stores anything.

pub mod alert_api;
pub mod case_api;
pub mod dashboard;
pub mod duties;
pub mod history_api;
mod shard_core;
pub mod status_http;
pub mod webhooks;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::kv;
use futures_util::StreamExt;
use kordon_cluster::agreement::Agreement;
use kordon_cluster::cases::{self, CaseChange, CaseChanges, CasesByShard};
use kordon_cluster::snapshots::ShardSnapshots;
use kordon_cluster::{ClusterError, ClusterSettings, LeaseKeeper, Shard, ShardCount, Tenure};
use kordon_ingest::Decoder;
use kordon_journal::{Durable, GroupCommit, Journal, SnapshotStore, Writer};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use shard_core::ShardCore;
pub use shard_core::ShardParts;

use crate::config::Config;
use crate::core_thread::AfterCommit;
use crate::dispatch::Dispatch;

/// How often the host looks again at its tenures with no word from the
/// keeper (a tenure runs out by itself), and retries a shard that failed
/// to open.
const RECHECK: Duration = Duration::from_millis(250);

/// The shards an instance serves, as they come and go.
pub struct ShardHost {
    task: JoinHandle<()>,
    stop: Option<oneshot::Sender<()>>,
    serving: watch::Receiver<Vec<Tenure>>,
    engines: watch::Receiver<Vec<ServedEngine>>,
}

/// The engine thread of a shard being served, for questions about its
/// alert desk ([`alert_api`]).
#[derive(Clone)]
pub struct ServedEngine {
    pub tenure: Tenure,
    /// For questions: its engine takes them before the stream's messages.
    pub commands: crossbeam_channel::Sender<crate::core_thread::Command>,
    pub feed: crate::live::Feed,
    /// Whether the shard's replay is done (its desk complete).
    pub caught_up: watch::Receiver<bool>,
}

impl ShardHost {
    /// Starts following the tenures of `parts.tenures`, with the cluster's
    /// cases as `known` holds them and every `change` to them after
    /// ([`cases::read_and_follow`]).
    pub fn start(parts: ShardParts, known: CasesByShard, changes: CaseChanges) -> ShardHost {
        let (stop, stopping) = oneshot::channel();
        let (serving_tx, serving) = watch::channel(Vec::new());
        let (engines_tx, engines) = watch::channel(Vec::new());
        let host = Host {
            parts,
            known,
            cores: HashMap::new(),
            serving: serving_tx,
            engines: engines_tx,
        };
        ShardHost {
            task: tokio::spawn(host.run(changes, stopping)),
            stop: Some(stop),
            serving,
            engines,
        }
    }

    /// The tenures of the shards being served.
    pub fn serving(&self) -> watch::Receiver<Vec<Tenure>> {
        self.serving.clone()
    }

    /// The engine threads of the shards being served.
    pub fn engines(&self) -> watch::Receiver<Vec<ServedEngine>> {
        self.engines.clone()
    }

    /// Closes every shard and stops.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }

    /// Stops at once, closing nothing: what a crash leaves (for tests).
    pub fn abort(self) {
        self.task.abort();
    }
}

struct Host {
    parts: ShardParts,
    /// Every case, kept the bucket's by the changes this host passes on:
    /// one follower for both, so a shard opening between two changes has
    /// the first and is passed the second.
    known: CasesByShard,
    cores: HashMap<Shard, ShardCore>,
    serving: watch::Sender<Vec<Tenure>>,
    engines: watch::Sender<Vec<ServedEngine>>,
}

impl Host {
    async fn run(mut self, mut changes: CaseChanges, mut stopping: oneshot::Receiver<()>) {
        let mut tenures = self.parts.tenures.clone();
        let mut watching = true;
        loop {
            self.follow_tenures().await;
            tokio::select! {
                _ = &mut stopping => break,
                changed = tenures.changed() => if changed.is_err() {
                    break; // the keeper is gone: no tenure will hold
                },
                change = changes.next(), if watching => match change {
                    Some(change) => {
                        self.known.apply(&change);
                        self.pass_on(change).await;
                    }
                    None => {
                        watching = false;
                        tracing::error!("the cases' bucket watch ended: case changes no longer reach the shards until a restart");
                    }
                },
                _ = tokio::time::sleep(RECHECK) => {}
            }
        }
        for (_, core) in self.cores.drain() {
            core.close().await;
        }
    }

    /// Closes the shards whose tenure ended, and opens those newly held.
    async fn follow_tenures(&mut self) {
        let now = Instant::now();
        let held: Vec<Tenure> = {
            let tenures = self.parts.tenures.borrow();
            tenures
                .held
                .iter()
                .filter_map(|t| tenures.may_act(t.shard, now))
                .collect()
        };
        let ended: Vec<Shard> = self
            .cores
            .iter()
            .filter(|(shard, core)| {
                core.is_finished()
                    || !held
                        .iter()
                        .any(|t| t.shard == **shard && t.epoch == core.tenure.epoch)
            })
            .map(|(shard, _)| *shard)
            .collect();
        for shard in ended {
            let label = shard.to_string();
            metrics::gauge!(crate::metrics::TENURE_LEFT, "shard" => label.clone()).set(0.0);
            metrics::gauge!(crate::metrics::READER_LAG, "shard" => label).set(0.0);
            if let Some(core) = self.cores.remove(&shard) {
                core.close().await;
            }
        }
        let mut gained = Vec::new();
        for tenure in held {
            match self.cores.get_mut(&tenure.shard) {
                Some(core) => core.tenure = tenure, // renewed: the same epoch, a later end
                None => gained.push(tenure),
            }
        }
        for (tenure, opened) in self.open_all(&gained).await {
            match opened {
                Ok(core) => {
                    self.cores.insert(tenure.shard, core);
                }
                Err(e) => {
                    warn!(shard = %tenure.shard, error = %e, "opening the shard; trying again")
                }
            }
        }
        let mut serving: Vec<Tenure> = self.cores.values().map(|c| c.tenure).collect();
        serving.sort_by_key(|t| t.shard);
        show_tenures(&serving, now);
        let changed = self.serving.send_if_modified(|old| {
            let changed = *old != serving;
            *old = serving;
            changed
        });
        if changed {
            let engines = self.cores.values().map(ShardCore::served).collect();
            self.engines.send_replace(engines);
        }
    }

    /// Opens the shards newly held, all at once: their cases are in memory,
    /// and each opening waits mostly on NATS (its snapshot, its consumer),
    /// so a take-over of dozens of shards takes about as long as one.
    async fn open_all(&self, gained: &[Tenure]) -> Vec<(Tenure, Result<ShardCore, ClusterError>)> {
        let opening = gained.iter().map(|tenure| {
            let shard_cases = self.known.of_shard(tenure.shard);
            async move {
                let opened = ShardCore::open(&self.parts, *tenure, shard_cases).await;
                (*tenure, opened)
            }
        });
        futures_util::future::join_all(opening).await
    }

    async fn pass_on(&self, change: CaseChange) {
        let shard = self.known.shard_of(&change.id);
        let Some(core) = self.cores.get(&shard) else {
            return; // another instance's
        };
        let id = kordon_core::CaseId::new(change.id.clone());
        if !id.is_plain() {
            warn!(
                case = change.id,
                "a case id in the bucket that is not plain: left alone"
            );
            return;
        }
        core.sync_case(id, change.case, self.parts.clock.now())
            .await;
    }
}

/// The served shards in `/metrics`.
fn show_tenures(serving: &[Tenure], now: Instant) {
    metrics::gauge!(crate::metrics::SHARDS_SERVED).set(serving.len() as f64);
    for tenure in serving {
        let left = tenure.valid_until.saturating_duration_since(now);
        metrics::gauge!(crate::metrics::TENURE_LEFT, "shard" => tenure.shard.to_string())
            .set(left.as_secs_f64());
    }
}

/// One member of a cluster, running: its lease keeper, the shards it
/// serves, and its journal (its audit copy of what those shards handled).
pub struct Instance {
    keeper: LeaseKeeper,
    host: ShardHost,
    writer: Writer<Vec<AfterCommit>>,
    duties: Option<JoinHandle<()>>,
    webhooks: Option<JoinHandle<()>>,
    delivery_watch: JoinHandle<()>,
    desk_answers: JoinHandle<()>,
    journal_answers: JoinHandle<()>,
    live_relay: JoinHandle<()>,
    cases: kv::Store,
    js: async_nats::jetstream::Context,
    shards: ShardCount,
    access: crate::http::Access,
    feed: crate::live::Feed,
    history: history_api::HistorySettings,
}

impl Instance {
    /// Joins the cluster `settings` name, with the engine, alert and journal
    /// settings of `config`; with `duties`, this instance runs a device
    /// broker's bridge and deliverer whenever it holds the broker's shard
    /// ([`duties`]). It runs the police webhooks' deliverers of `config`
    /// whenever it holds shard 0 ([`webhooks`]).
    pub async fn start(
        config: &Config,
        settings: ClusterSettings,
        duties: Option<duties::DutiesSettings>,
    ) -> Result<Instance, InstanceError> {
        let client = kordon_cluster::keeper::connect(&settings.nats_url).await?;
        let js = async_nats::jetstream::new(client);
        let retention = settings.retention;
        let replicas = settings.replicas;
        let brokers = duties.iter().flat_map(|d| &d.brokers).map(|b| b.label());
        let view = Agreement::new(settings.shards, brokers.collect());
        kordon_cluster::agreement::join(&js, replicas, &view).await?;
        kordon_cluster::bridge::ensure_shard_stream(&js, replicas, retention.shard_stream_age())
            .await?;
        kordon_cluster::alerts::ensure_alert_stream(
            &js,
            replicas,
            alert_stream_age(config, &settings),
        )
        .await?;
        let snapshots = ShardSnapshots::open(&js, settings.replicas).await?;
        let cases = cases::open(&js, settings.replicas).await?;
        let (journal, _) =
            Journal::open(&config.journal.journal_file(), config.journal.durability)?;
        let writer = Writer::spawn(
            journal,
            SnapshotStore::new(&config.journal.dir),
            GroupCommit {
                max_records: config.journal.max_batch,
                linger: Duration::from_millis(config.journal.linger_ms),
                ..GroupCommit::default()
            },
            answer_when_durable,
        );
        // Every case is in memory before a lease is taken: a shard taken
        // before could not be opened until the whole bucket had been read.
        // Said in the log: at 500,000 cases the read takes seconds, and an
        // instance that has not taken a lease yet is otherwise silent.
        let reading = Instant::now();
        info!("reading the cluster's cases before taking any shard");
        let (known_cases, case_changes) = cases::read_and_follow(&cases, settings.shards).await?;
        info!(
            cases = known_cases.len(),
            took_ms = reading.elapsed().as_millis() as u64,
            "the cluster's cases read"
        );
        let keeper = LeaseKeeper::start(settings.clone()).await?;
        let watching = dashboard::Watching::default();
        let parts = ShardParts {
            js,
            snapshots,
            tenures: keeper.tenures(),
            journal: writer.sender(),
            journal_snapshots: writer.snapshot_gate(),
            dispatch: Dispatch::new(&config.alerts.sender, None),
            engine: config.engine.clone(),
            alerts: config.alerts.clone(),
            decoder: Arc::new(Decoder::new(config.ingest.clone(), config.owntracks_map())),
            owntracks: config.owntracks_map(),
            clock: config.clock,
            snapshot_every: settings.retention.snapshot_every,
            retention_days: (config.journal.retention_days > 0)
                .then_some(config.journal.retention_days),
            keep_around_episode_s: i64::from(config.journal.keep_around_episode_minutes) * 60,
            watching: watching.clone(),
        };
        let brokers = duties.iter().flat_map(|d| &d.brokers);
        let delivery = Deliveries {
            brokers: brokers.map(|b| (b.label(), b.consumer())).collect(),
            endpoints: config
                .dispatch
                .webhooks
                .iter()
                .map(|w| w.name.clone())
                .collect(),
        };
        let duties = match duties {
            Some(duties) => {
                let book = cases::watch_book(cases.clone(), settings.shards).await?;
                Some(tokio::spawn(duties::run(
                    duties,
                    parts.js.clone(),
                    book,
                    keeper.tenures(),
                )))
            }
            None => None,
        };
        // Not with the other duties: the webhooks need no Mosquitto.
        let webhooks = (!config.dispatch.webhooks.is_empty()).then(|| {
            let settings = webhooks::WebhookSettings {
                dispatch: config.dispatch.clone(),
                clock: config.clock,
            };
            tokio::spawn(webhooks::run(settings, parts.js.clone(), keeper.tenures()))
        });
        let delivery_watch = tokio::spawn(watch_delivery(parts.js.clone(), delivery));
        let js = parts.js.clone();
        let host = ShardHost::start(parts, known_cases, case_changes);
        let feed = crate::live::Feed::new(config.alerts.escalate_after_s);
        let live_relay = tokio::spawn(dashboard::relay(js.client(), feed.clone(), watching));
        let desk_answers = tokio::spawn(alert_api::answer_questions(
            js.client(),
            host.engines(),
            alert_api::Asked {
                escalate_after_s: config.alerts.escalate_after_s,
                clock: config.clock,
            },
        ));
        let journal_answers = tokio::spawn(history_api::answer_questions(
            js.client(),
            settings.instance.clone(),
            config.journal.journal_file(),
        ));
        metrics::gauge!(crate::metrics::SHARDS).set(f64::from(settings.shards.get()));
        Ok(Instance {
            keeper,
            host,
            writer,
            duties,
            webhooks,
            delivery_watch,
            desk_answers,
            journal_answers,
            live_relay,
            cases,
            js,
            shards: settings.shards,
            access: crate::http::Access::new(&config.http.tokens),
            feed,
            history: history_api::HistorySettings {
                clock: config.clock,
                targets: config.reports.targets.clone(),
                sender: config.alerts.sender.clone(),
            },
        })
    }

    /// The tenures of the shards being served.
    pub fn serving(&self) -> watch::Receiver<Vec<Tenure>> {
        self.host.serving()
    }

    /// The cluster's case bucket, which the case API reads and writes.
    pub fn case_bucket(&self) -> kv::Store {
        self.cases.clone()
    }

    /// Who may call this instance's API and dashboard: its configured
    /// tokens and the sessions signed in here.
    pub fn access(&self) -> crate::http::Access {
        self.access.clone()
    }

    /// The alert routes, over every shard's desk.
    pub fn alert_api(&self) -> alert_api::AlertApi {
        alert_api::AlertApi::new(self.js.clone(), self.shards, self.access())
    }

    /// A case's timeline, an alert's playback, the reports and the police's
    /// CAP feed, from every instance's journal.
    pub fn history_api(&self) -> history_api::HistoryApi {
        history_api::HistoryApi::new(
            self.js.client(),
            self.keeper.tenures(),
            self.alert_api(),
            self.history.clone(),
        )
    }

    /// The dashboard's files, sign-in and live stream of every shard.
    pub fn dashboard(&self) -> dashboard::ClusterDashboard {
        dashboard::ClusterDashboard::new(self.access(), self.feed.clone(), self.history.clock)
    }

    /// Leaves cleanly: closes every shard, gives the leases up, and commits
    /// the last records.
    pub async fn leave(self) {
        if let Some(duties) = &self.duties {
            duties.abort();
        }
        if let Some(webhooks) = &self.webhooks {
            webhooks.abort();
        }
        self.delivery_watch.abort();
        self.desk_answers.abort();
        self.journal_answers.abort();
        self.live_relay.abort();
        self.host.stop().await;
        self.keeper.leave().await;
        let writer = self.writer;
        let _ = tokio::task::spawn_blocking(move || drop(writer.finish())).await;
    }

    /// Stops at once, giving nothing up: what a crash leaves behind, for
    /// tests (the shards' parts still running stop as their tenures run
    /// out, as a process cut off would).
    pub fn crash(self) {
        if let Some(duties) = &self.duties {
            duties.abort();
        }
        if let Some(webhooks) = &self.webhooks {
            webhooks.abort();
        }
        self.delivery_watch.abort();
        self.desk_answers.abort();
        self.journal_answers.abort();
        self.live_relay.abort();
        self.host.abort();
        self.keeper.abort();
    }
}

/// The alerts' stream's age limit: the retention's, but never shorter than
/// a police webhook's retries (`give_up_after_s` and a last back-off), which
/// the stream holds: a message dropped by age would end them unseen.
fn alert_stream_age(config: &Config, settings: &ClusterSettings) -> Option<Duration> {
    let age = settings.retention.alert_stream_age()?;
    if config.dispatch.webhooks.is_empty() {
        return Some(age);
    }
    let retried = Duration::from_secs(config.dispatch.give_up_after_s) + Duration::from_secs(3600);
    Some(age.max(retried.min(kordon_cluster::Retention::LONGEST_STREAM_AGE)))
}

/// How often an instance reads how long alerts wait for Mosquitto.
const DELIVERY_CHECK: Duration = Duration::from_secs(5);

/// Where alerts leave the cluster, each read for how long its oldest
/// waits.
struct Deliveries {
    /// Each device broker's label and the alerts' consumer delivering to it.
    brokers: Vec<(String, String)>,
    /// The police webhooks' names.
    endpoints: Vec<String>,
}

/// Keeps `kordon_cluster_alert_delivery_delay_seconds` for each device
/// broker and `kordon_cluster_webhook_delivery_delay_seconds` for each
/// police webhook current. Every instance reads them, not only the holders
/// of the deliverers' shards: a deliverer that stalls, or whose instance is
/// stuck, cannot be trusted to say so.
async fn watch_delivery(js: async_nats::jetstream::Context, deliveries: Deliveries) {
    use kordon_cluster::{deliverer, webhooks};
    let mut check = tokio::time::interval(DELIVERY_CHECK);
    loop {
        check.tick().await;
        let now = std::time::SystemTime::now();
        for (broker, consumer) in &deliveries.brokers {
            match deliverer::delivery_delay(&js, consumer, now).await {
                Ok(waited) => {
                    metrics::gauge!(crate::metrics::DELIVERY_DELAY, "broker" => broker.clone())
                        .set(waited.as_secs_f64())
                }
                Err(e) => warn!(broker, error = %e, "reading how long alerts wait for Mosquitto"),
            }
        }
        for endpoint in &deliveries.endpoints {
            match webhooks::delivery_delay(&js, endpoint, now).await {
                Ok(waited) => {
                    metrics::gauge!(crate::metrics::WEBHOOK_DELAY, "endpoint" => endpoint.clone())
                        .set(waited.as_secs_f64())
                }
                Err(e) => {
                    warn!(endpoint, error = %e, "reading how long CAP messages wait for a police webhook")
                }
            }
        }
    }
}

/// What stops an instance from joining its cluster.
#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    #[error("{0}")]
    Nats(#[from] kordon_cluster::ClusterError),
    #[error("{0}")]
    Journal(#[from] kordon_journal::JournalError),
}

/// After a commit, answers the callers whose changes are now durable. A
/// shard's messages need no broker acknowledgement (the stream holds them).
fn answer_when_durable(durable: Durable, batches: Vec<Vec<AfterCommit>>) -> Vec<Vec<AfterCommit>> {
    if durable != Durable::Yes {
        return batches;
    }
    for waiting in batches.into_iter().flatten() {
        if let AfterCommit::Reply(reply) = waiting {
            reply.send();
        }
    }
    Vec::new()
}
