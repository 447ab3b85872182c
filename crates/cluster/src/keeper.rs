//! The lease keeper: drives a [`LeaseDesk`] over a NATS JetStream key-value
//! bucket, and tells the rest of kordon which shards it may act for.
//!
//! One tokio task per instance. It watches the whole bucket (the latest entry
//! of every key, then every change), makes the writes the desk asks for,
//! each with a deadline, and publishes the instance's [`Tenures`] on a
//! `watch` channel whenever they change. It never decides anything itself:
//! the rules are the desk's, and the desk never sees a socket.
//!
//! Self-fencing does not depend on this task being scheduled: every
//! [`Tenure`] carries the instant it ends, and whoever acts for a shard checks
//! it against its own clock at the moment of acting ([`Tenures::may_act`]).

use std::time::{Duration, Instant};

use async_nats::jetstream::kv::{self, Operation, Store};
use async_nats::jetstream::{self};
use futures_util::StreamExt;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::lease::{
    InstanceId, Key, LeaseDesk, LeaseTimes, LeaseValue, Observation, Outcome, Tenure, Write,
};
use crate::retention::Retention;
use crate::shards::{Shard, ShardCount};
use crate::status::KeyState;

/// How an instance joins a cluster (the `[cluster]` section of kordon's
/// configuration).
#[derive(Clone, Debug)]
pub struct ClusterSettings {
    /// The NATS server, e.g. `nats://127.0.0.1:4222`.
    pub nats_url: String,
    /// The key-value bucket of leases and members.
    pub bucket: String,
    pub instance: InstanceId,
    pub shards: ShardCount,
    pub times: LeaseTimes,
    /// Copies NATS keeps of the cluster's buckets and streams: 1 on one
    /// server, 3 on a NATS cluster in production. Set when a bucket or
    /// stream is made; an existing one keeps its own.
    pub replicas: usize,
    /// The streams' age limit and the shards' snapshot period.
    pub retention: Retention,
}

impl ClusterSettings {
    pub const DEFAULT_BUCKET: &'static str = "kordon_leases";
}

/// What went wrong with NATS. `bucket` names the key-value bucket or the
/// stream concerned (the leases', the cases', the shards' stream).
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot reach NATS at {url}: {message}")]
    Connect { url: String, message: String },
    #[error("NATS {bucket:?}: {message}")]
    Bucket { bucket: String, message: String },
    #[error("reading NATS {bucket:?}: {message}")]
    Watch { bucket: String, message: String },
    /// This instance's configuration differs from the cluster's on what
    /// every instance must share (`crate::agreement`).
    #[error("this instance disagrees with the cluster: {0}")]
    Disagreement(String),
}

/// The shards this instance may act for, and who holds the others.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tenures {
    /// This instance's tenures, by shard.
    pub held: Vec<Tenure>,
    /// Every shard's holder as far as this instance knows (`None`: free, or
    /// not known yet).
    pub holders: Vec<Option<InstanceId>>,
    /// The members alive as far as this instance knows, itself first.
    pub members: Vec<InstanceId>,
}

impl Tenures {
    /// The tenure to act under for `shard` at `now`, if this instance has one
    /// that has not run out.
    pub fn may_act(&self, shard: Shard, now: Instant) -> Option<Tenure> {
        self.held
            .iter()
            .find(|t| t.shard == shard && now < t.valid_until)
            .copied()
    }
}

/// A running lease keeper.
pub struct LeaseKeeper {
    tenures: watch::Receiver<Tenures>,
    leave: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl LeaseKeeper {
    /// Connects, opens (or creates) the bucket, and starts keeping leases.
    pub async fn start(settings: ClusterSettings) -> Result<LeaseKeeper, ClusterError> {
        let store = open_bucket(&settings).await?;
        let watch = store
            .watch_with_history(">")
            .await
            .map_err(|e| ClusterError::Watch {
                bucket: settings.bucket.clone(),
                message: e.to_string(),
            })?;
        // An empty bucket sends nothing to say the watch has caught up.
        let empty = is_empty(&store).await.unwrap_or(false);
        let desk = LeaseDesk::new(settings.instance.clone(), settings.shards, settings.times);
        let (tenures_tx, tenures) = watch::channel(Tenures::default());
        let (leave_tx, leave_rx) = oneshot::channel();
        let driver = Driver {
            settings,
            store,
            desk,
            tenures: tenures_tx,
        };
        let task = tokio::spawn(driver.run(watch, empty, leave_rx));
        Ok(LeaseKeeper {
            tenures,
            leave: Some(leave_tx),
            task,
        })
    }

    /// This instance's tenures, updated as they change.
    pub fn tenures(&self) -> watch::Receiver<Tenures> {
        self.tenures.clone()
    }

    /// Leaves the cluster cleanly: stops acting for every shard at once,
    /// frees its membership, and frees each shard once the tenure it handed
    /// out has ended (the others then take it without waiting out a lease).
    /// Returns when it has, or a lease after (NATS unreachable).
    pub async fn leave(mut self) {
        if let Some(leave) = self.leave.take() {
            let _ = leave.send(());
        }
        let _ = (&mut self.task).await;
    }

    /// Stops at once, freeing nothing: what a crash leaves behind (for tests).
    pub fn abort(self) {
        self.task.abort();
    }
}

pub async fn connect(url: &str) -> Result<async_nats::Client, ClusterError> {
    async_nats::ConnectOptions::new()
        .name("kordon-lease-keeper")
        .connection_timeout(Duration::from_secs(2))
        // Back within a second of NATS: a lease lasts three.
        .reconnect_delay_callback(|attempts| {
            Duration::from_millis((attempts as u64 * 100).min(1_000))
        })
        .connect(url)
        .await
        .map_err(|e| ClusterError::Connect {
            url: url.to_string(),
            message: e.to_string(),
        })
}

/// The lease bucket: one value per key (leases are decided on the latest),
/// on disk, so that a restarted NATS still knows who holds what.
pub async fn open_bucket(settings: &ClusterSettings) -> Result<Store, ClusterError> {
    let client = connect(&settings.nats_url).await?;
    let js = jetstream::new(client);
    open_or_create_bucket(
        &js,
        &settings.bucket,
        "kordon: shard leases and members",
        settings.replicas,
    )
    .await
}

/// A key-value bucket keeping the latest value of each key, on disk, made if
/// it does not exist.
pub async fn open_or_create_bucket(
    js: &jetstream::Context,
    bucket: &str,
    description: &str,
    replicas: usize,
) -> Result<Store, ClusterError> {
    if let Ok(store) = js.get_key_value(bucket).await {
        return Ok(store);
    }
    // The bucket's stream, made the way the client library makes a bucket:
    // its own `create_key_value` first asks for the account's details, in a
    // form that NATS 2.9 (Debian's) does not answer, so it cannot be used.
    let bucket_error = |e: &dyn std::fmt::Display| ClusterError::Bucket {
        bucket: bucket.to_string(),
        message: e.to_string(),
    };
    let name = format!("KV_{bucket}");
    let made = js
        .get_or_create_stream(jetstream::stream::Config {
            name: name.clone(),
            description: Some(description.to_string()),
            subjects: vec![format!("$KV.{bucket}.>")],
            max_messages_per_subject: 1,
            max_messages: -1,
            max_bytes: -1,
            max_consumers: -1,
            storage: jetstream::stream::StorageType::File,
            num_replicas: replicas,
            allow_rollup: true,
            deny_delete: true,
            allow_direct: true,
            discard: jetstream::stream::DiscardPolicy::New,
            ..Default::default()
        })
        .await;
    made_or_taken(made, || js.get_stream(&name))
        .await
        .map_err(|e| bucket_error(&e))?;
    js.get_key_value(bucket).await.map_err(|e| bucket_error(&e))
}

/// What this instance made, or, when the server refused to make it, the
/// one the server kept. Instances first starting at once all find no
/// stream (bucket, store) and all make it; the server keeps one maker's and
/// refuses the others ("subjects overlap with an existing stream", or the
/// name in use with another configuration), which then take that one. Only
/// when there is none to take is the refusal the answer.
pub(crate) async fn made_or_taken<T, E, F, Fut, TakeError>(
    made: Result<T, E>,
    take: F,
) -> Result<T, E>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<T, TakeError>>,
{
    match made {
        Ok(made) => Ok(made),
        Err(refused) => take().await.map_err(|_| refused),
    }
}

/// One of kordon's own streams, as it is made: on disk, limited only by its
/// duplicate window and, if one is given, an age limit.
pub struct OwnStream<'a> {
    pub name: &'a str,
    pub description: &'a str,
    pub subjects: &'a str,
    pub duplicate_window: Duration,
}

/// Makes `stream` if it does not exist. With `max_age`, the stream has that
/// age limit, an existing one too; with none, an existing stream keeps the
/// age limit it has (its operator's).
pub async fn ensure_stream(
    js: &jetstream::Context,
    stream: &OwnStream<'_>,
    replicas: usize,
    max_age: Option<Duration>,
) -> Result<(), ClusterError> {
    let err = |e: &dyn std::fmt::Display| ClusterError::Bucket {
        bucket: stream.name.to_string(),
        message: e.to_string(),
    };
    let config = jetstream::stream::Config {
        name: stream.name.to_string(),
        description: Some(stream.description.to_string()),
        subjects: vec![stream.subjects.to_string()],
        max_messages: -1,
        max_bytes: -1,
        max_consumers: -1,
        max_age: max_age.unwrap_or(Duration::ZERO),
        storage: jetstream::stream::StorageType::File,
        num_replicas: replicas,
        duplicate_window: stream.duplicate_window,
        ..Default::default()
    };
    let made = made_or_taken(js.get_or_create_stream(config).await, || {
        js.get_stream(stream.name)
    })
    .await
    .map_err(|e| err(&e))?;
    match max_age {
        Some(age) => bring_age_limit(js, &made.cached_info().config, age)
            .await
            .map_err(|e| err(&e)),
        None => Ok(()),
    }
}

/// Gives an existing stream the age limit `age`, changing nothing else. A
/// shorter limit than before drops the messages older than it at once.
async fn bring_age_limit(
    js: &jetstream::Context,
    config: &jetstream::stream::Config,
    age: Duration,
) -> Result<(), jetstream::context::UpdateStreamError> {
    if config.max_age == age {
        return Ok(());
    }
    info!(
        stream = config.name,
        from_s = config.max_age.as_secs(),
        to_s = age.as_secs(),
        "setting the stream's age limit"
    );
    let config = jetstream::stream::Config {
        max_age: age,
        ..config.clone()
    };
    js.update_stream(config).await.map(|_| ())
}

/// Whether the bucket holds nothing (deletes count as something): asked of
/// the server, as the store's own `status` answers from what it read when it
/// was opened.
pub async fn is_empty(store: &Store) -> Result<bool, String> {
    let mut stream = store.stream.clone();
    let info = stream.info().await.map_err(|e| e.to_string())?;
    Ok(info.state.messages == 0)
}

/// What a bucket entry says, for the desk. A lease value that cannot be read
/// counts as held by someone unknown: it is waited out like any lease.
pub fn observation(entry: &kv::Entry) -> Option<Observation> {
    let present = matches!(entry.operation, Operation::Put);
    match Key::parse(&entry.key)? {
        Key::Shard(shard) => {
            let value = present.then(|| {
                serde_json::from_slice::<LeaseValue>(&entry.value).unwrap_or_else(|e| {
                    warn!(key = %entry.key, error = %e, "a lease value kordon cannot read");
                    LeaseValue {
                        owner: InstanceId::new("unreadable").expect("a valid id"),
                        epoch: None,
                    }
                })
            });
            Some(Observation::Lease {
                shard,
                revision: entry.revision,
                value,
            })
        }
        Key::Member(instance) => Some(Observation::Member {
            instance,
            revision: entry.revision,
            present,
        }),
    }
}

/// The bucket as it stands, every key's latest entry (for `kordon cluster
/// status`), in key order.
pub async fn shard_map(settings: &ClusterSettings) -> Result<Vec<KeyState>, ClusterError> {
    let store = open_bucket(settings).await?;
    let err = |e: &dyn std::fmt::Display| ClusterError::Watch {
        bucket: settings.bucket.clone(),
        message: e.to_string(),
    };
    let mut keys = store.keys().await.map_err(|e| err(&e))?;
    let mut map = Vec::new();
    while let Some(key) = keys.next().await {
        let key = key.map_err(|e| err(&e))?;
        let Some(entry) = store.entry(key.clone()).await.map_err(|e| err(&e))? else {
            continue;
        };
        let Some(parsed) = Key::parse(&key) else {
            continue;
        };
        let value = matches!(entry.operation, Operation::Put)
            .then(|| serde_json::from_slice(&entry.value).ok())
            .flatten();
        map.push(KeyState {
            key: parsed,
            revision: entry.revision,
            value,
            written_unix_ms: (entry.created.unix_timestamp_nanos() / 1_000_000) as i64,
        });
    }
    map.sort_by_key(|state| state.key.clone());
    Ok(map)
}

/// A write's result, back from its task.
struct Done {
    write: Write,
    sent: Instant,
    outcome: Outcome,
}

struct Driver {
    settings: ClusterSettings,
    store: Store,
    desk: LeaseDesk,
    tenures: watch::Sender<Tenures>,
}

impl Driver {
    async fn run(mut self, mut watch: kv::Watch, empty: bool, mut leave: oneshot::Receiver<()>) {
        // At most one write per shard and the membership's are in flight
        // (the desk's rule), so this never fills.
        let (done_tx, mut done_rx) =
            mpsc::channel::<Done>(usize::from(self.settings.shards.get()) + 4);
        if empty {
            self.desk.observe(Observation::CaughtUp, Instant::now());
        }
        let mut tick = self.ticks();
        info!(instance = %self.settings.instance, shards = self.settings.shards.get(), "lease keeper running");
        loop {
            tokio::select! {
                entry = watch.next() => match entry {
                    Some(Ok(entry)) => self.take_in(&entry),
                    Some(Err(e)) => warn!(error = %e, "lease bucket watch"),
                    None => {
                        warn!("the lease bucket watch ended; watching again");
                        match self.rewatch(&mut leave).await {
                            Some(again) => watch = again,
                            None => break,
                        }
                    }
                },
                Some(done) = done_rx.recv() => {
                    self.desk.written(&done.write, done.sent, done.outcome, Instant::now());
                }
                _ = tick.tick() => {}
                _ = &mut leave => break,
            }
            self.step(&done_tx);
        }
        self.leave(&done_tx, &mut done_rx).await;
    }

    fn ticks(&self) -> tokio::time::Interval {
        let mut tick = tokio::time::interval(self.settings.times.renew_every / 5);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick
    }

    fn take_in(&mut self, entry: &kv::Entry) {
        let now = Instant::now();
        if let Some(observation) = observation(entry) {
            self.desk.observe(observation, now);
        }
        if entry.seen_current {
            self.desk.observe(Observation::CaughtUp, now);
        }
    }

    /// Makes the writes the desk asks for now, and tells the rest of kordon
    /// of any change in its tenures.
    fn step(&mut self, done: &mpsc::Sender<Done>) {
        let now = Instant::now();
        // A lease given up is deleted only once its tenure has run out
        // (the desk's rule), so copies of it are over by then too.
        for write in self.desk.poll(now) {
            self.spawn_write(write, now, done.clone());
        }
        self.publish(now);
    }

    /// Watches the bucket again; `None` if asked to leave meanwhile.
    async fn rewatch(&self, leave: &mut oneshot::Receiver<()>) -> Option<kv::Watch> {
        loop {
            match self.store.watch_with_history(">").await {
                Ok(watch) => return Some(watch),
                Err(e) => warn!(error = %e, "watching the lease bucket again"),
            }
            tokio::select! {
                _ = tokio::time::sleep(self.settings.times.renew_every / 5) => {}
                _ = &mut *leave => return None,
            }
        }
    }

    fn spawn_write(&self, write: Write, sent: Instant, done: mpsc::Sender<Done>) {
        let store = self.store.clone();
        let me = self.settings.instance.clone();
        let deadline = self.settings.times.renew_every;
        tokio::spawn(async move {
            let outcome = tokio::time::timeout(deadline, perform(&store, &me, &write))
                .await
                .unwrap_or(Outcome::Failed);
            debug!(?write, ?outcome, "lease write");
            let _ = done
                .send(Done {
                    write,
                    sent,
                    outcome,
                })
                .await;
        });
    }

    /// A clean leave: stops acting at once (the empty tenures are published
    /// before anything is written), deletes the membership, and deletes each
    /// lease once the tenure handed out for it has run out, so that nobody
    /// acting on a copy of one overlaps the next owner. Gives up a lease
    /// after that plus one more lease (NATS unreachable): it then runs out
    /// like any other.
    async fn leave(&mut self, done_tx: &mpsc::Sender<Done>, done_rx: &mut mpsc::Receiver<Done>) {
        let now = Instant::now();
        self.desk.leave();
        self.publish(now);
        let give_up = self.desk.last_delete_at().unwrap_or(now).max(now) + self.settings.times.ttl;
        let mut tick = self.ticks();
        while !self.desk.has_left() && Instant::now() < give_up {
            self.step(done_tx);
            tokio::select! {
                Some(done) = done_rx.recv() => {
                    self.desk.written(&done.write, done.sent, done.outcome, Instant::now());
                }
                _ = tick.tick() => {}
            }
        }
        if self.desk.has_left() {
            info!(instance = %self.settings.instance, "left the cluster");
        } else {
            warn!(instance = %self.settings.instance, "left the cluster with leases not freed: they run out on their own");
        }
    }

    fn publish(&self, now: Instant) {
        let next = Tenures {
            held: self.desk.tenures(now),
            holders: self
                .desk
                .holders()
                .into_iter()
                .map(|h| h.cloned())
                .collect(),
            members: self.desk.members(now),
        };
        self.tenures.send_if_modified(|current| {
            if *current == next {
                return false;
            }
            *current = next;
            true
        });
    }
}

/// Makes one write to the bucket.
async fn perform(store: &Store, me: &InstanceId, write: &Write) -> Outcome {
    let key = write.key(me).to_string();
    let value = || {
        let value = write.value(me).expect("a write with a value");
        serde_json::to_vec(&value)
            .expect("a lease value serialises")
            .into()
    };
    match write {
        Write::Claim { expect, .. } | Write::Renew { expect, .. } => {
            match store.update(&key, value(), *expect).await {
                Ok(revision) => Outcome::Written(revision),
                Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Outcome::Conflict,
                Err(e) => {
                    debug!(%key, error = %e, "lease write failed");
                    Outcome::Failed
                }
            }
        }
        Write::Heartbeat => match store.put(&key, value()).await {
            Ok(revision) => Outcome::Written(revision),
            Err(_) => Outcome::Failed,
        },
        Write::Release { expect, .. } => {
            match store.delete_expect_revision(&key, Some(*expect)).await {
                Ok(()) => Outcome::Written(0),
                Err(_) => Outcome::Failed,
            }
        }
        Write::Leave => match store.delete(&key).await {
            Ok(()) => Outcome::Written(0),
            Err(_) => Outcome::Failed,
        },
    }
}
