//! Wiring: starts the embedded broker (if asked), the engine's thread, the
//! broker connection, the publisher, the 1 s tick and the HTTP API, and
//! stops them in the order that loses nothing.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use kordon_alert::AlertDesk;
use kordon_core::Engine;
use kordon_ingest::broker::Dialer;
use kordon_ingest::Decoder;
use kordon_journal::{Durable, GroupCommit, Journal, JournalError, SnapshotStore, Writer};
use thiserror::Error;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::cases;
use crate::config::Config;
use crate::core_thread::{AfterCommit, Command, CoreThread, Envelope, Outlets, Upkeep};
use crate::dispatch::{self, Dispatch};
use crate::health::Health;
use crate::http::{self, ApiParts, ApiState};
use crate::ingest_link::{IngestLink, Session};
use crate::live::Feed;
use crate::mqtt::{self, Receipt};

// Every queue between the broker and the broker again is bounded; when one
// is full its sender waits, the ingest link reads no further, and in the end
// the broker holds the messages kordon has not acknowledged.

/// Alert messages waiting for the publisher.
const PUBLISH_QUEUE: usize = 16_384;
/// Requests rumqttc buffers while the publishing link is busy or down.
const MQTT_REQUESTS: usize = 65_536;
/// Commits whose acknowledgements are on their way from the journal writer
/// to the ingest link, which writes them whatever it reads (so this rarely
/// holds more than one).
const RECEIPT_BATCHES: usize = 1_024;

#[derive(Debug, Error)]
pub enum StartError {
    #[error("configuration:\n{0}")]
    Config(String),
    #[error("case files:\n{0}")]
    Cases(String),
    #[error("embedded broker: {0}")]
    EmbeddedBroker(std::io::Error),
    #[error("broker: {0}")]
    Broker(#[from] kordon_ingest::BrokerError),
    #[error("HTTP listener on {addr}: {source}")]
    Http {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("starting the engine thread: {0}")]
    Thread(std::io::Error),
    #[error("{0}")]
    Journal(#[from] JournalError),
    #[error("recovery: {0}")]
    Recovery(String),
}

/// How to treat a journal that fails verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnDamagedJournal {
    /// Refuse to start, naming the first bad record.
    #[default]
    Refuse,
    /// Keep the records before it (the damaged file is set aside) and run.
    TruncateToLastGood,
}

/// A running kordon. Stop it with [`Running::shutdown`].
pub struct Running {
    /// The broker kordon is connected to.
    pub broker_url: String,
    /// Where the HTTP API listens.
    pub http_addr: SocketAddr,
    stop: watch::Sender<bool>,
    core: crossbeam_channel::Sender<Command>,
    core_thread: std::thread::JoinHandle<()>,
    writer: Writer<Vec<AfterCommit>>,
    ingest_link: JoinHandle<()>,
    publishing_link: JoinHandle<()>,
    ticker: JoinHandle<()>,
    /// Resolves once the ingest link queues no more commands.
    intake_closed: oneshot::Receiver<()>,
    publisher: JoinHandle<()>,
    http: JoinHandle<()>,
    /// Webhook deliveries (only with `[[dispatch.webhooks]]`); deliveries
    /// under way when kordon stops resume at the next start.
    deliverer: Option<JoinHandle<()>>,
}

/// Starts kordon. Cases that fail validation stop the start, each named; so
/// does a journal that fails verification.
pub async fn start(config: Config) -> Result<Running, StartError> {
    start_with(config, OnDamagedJournal::Refuse).await
}

pub async fn start_with(
    config: Config,
    on_damage: OnDamagedJournal,
) -> Result<Running, StartError> {
    let metrics = crate::metrics::handle();
    crate::metrics::describe_all();

    // `Config::load` checks too; a configuration built in code is checked here.
    config.check().map_err(StartError::Config)?;
    let broker_url = match (&config.broker.url, config.broker.embedded) {
        (_, true) => embedded_broker(&config)?,
        (Some(url), false) => url.clone(),
        (None, false) => {
            return Err(StartError::Config(
                "broker: set `embedded = true` or a `url`".into(),
            ))
        }
    };

    let health = Health::default();
    let feed = Feed::new(config.alerts.escalate_after_s);
    let (webhook_tx, webhook_rx) = match config.dispatch.webhooks.is_empty() {
        true => (None, None),
        false => {
            let (tx, rx) = mpsc::channel(dispatch::QUEUE);
            (Some(tx), Some(rx))
        }
    };
    let dispatch = Dispatch::new(&config.alerts.sender, webhook_tx.clone());
    let (receipts_tx, receipts_rx) = mpsc::channel(RECEIPT_BATCHES);
    let committed = Committed {
        receipts: receipts_tx,
        health: health.clone(),
        clock: config.clock,
    };
    let (core, writer, out_rx) = recover(
        &config,
        on_damage,
        committed,
        feed.clone(),
        dispatch.clone(),
    )?;
    let undelivered = restore_dispatch(&config, &dispatch);
    let (core_tx, core_rx) = crossbeam_channel::bounded(mqtt::ENGINE_QUEUE);
    let (desk_tx, desk_rx) = crossbeam_channel::bounded(mqtt::DESK_QUEUE);
    let core_thread = std::thread::Builder::new()
        .name("kordon-engine".into())
        .spawn(move || core.run(core_rx, Some(desk_rx)))
        .map_err(StartError::Thread)?;

    let (stop, stopping) = watch::channel(false);
    let broker = config.broker_settings(broker_url.clone());
    let (client, eventloop) = kordon_ingest::connect(&broker, MQTT_REQUESTS)?;
    let decoder = Decoder::new(config.ingest.clone(), config.owntracks_map());
    let unacknowledged = crate::ingest_link::Unacknowledged::default();
    let ticker = tokio::spawn(mqtt::run_ticker(
        core_tx.clone(),
        config.clock,
        unacknowledged.clone(),
        stopping.clone(),
    ));
    let mut intake = mqtt::Intake::new(core_tx.clone(), decoder);
    let intake_closed = intake.on_close();
    let ingest_link = tokio::spawn(
        IngestLink {
            dialer: Dialer::new(&broker)?,
            session: Session::of(&broker),
            intake,
            receipts: receipts_rx,
            status: client.clone(),
            clock: config.clock,
            health: health.clone(),
            stopping: stopping.clone(),
            unacknowledged,
        }
        .run(),
    );
    let publishing_link = tokio::spawn(mqtt::run_publishing_link(
        client.clone(),
        eventloop,
        config.clock,
        health.clone(),
        stopping.clone(),
    ));
    let publisher = tokio::spawn(mqtt::run_publisher(client, out_rx));
    tokio::spawn(crate::live::watch_health(
        feed.clone(),
        health.clone(),
        config.clock,
        stopping.clone(),
    ));
    let deliverer = webhook_rx.map(|queue| {
        let deliverer = dispatch::webhook::Deliverer {
            dispatch: config.dispatch.clone(),
            core: desk_tx.clone(),
            clock: config.clock,
        };
        tokio::spawn(deliverer.run(queue))
    });
    if let Some(queue) = &webhook_tx {
        for message in undelivered {
            let _ = queue.try_send(message);
        }
    }

    let listener = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .map_err(|source| StartError::Http {
            addr: config.http.listen,
            source,
        })?;
    let http_addr = listener.local_addr().map_err(|source| StartError::Http {
        addr: config.http.listen,
        source,
    })?;
    if config.http.tokens.is_empty() {
        warn!("no API tokens configured: every API route but /healthz answers 401");
    }
    let app = http::router(ApiState::new(
        desk_tx,
        &config.http.tokens,
        ApiParts {
            metrics,
            clock: config.clock,
            health,
            feed: feed.clone(),
            escalate_after_s: config.alerts.escalate_after_s,
            journal: config.journal.journal_file(),
            targets: config.reports.targets.clone(),
            dispatch,
        },
    ));
    let mut http_stopping = stopping.clone();
    let consoles = feed.clone();
    let http = tokio::spawn(async move {
        let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
            let _ = http_stopping.wait_for(|stop| *stop).await;
            // Their streams would never end, and this server waits for them.
            consoles.close();
        });
        if let Err(e) = serve.await {
            warn!(error = %e, "HTTP server stopped");
        }
    });
    info!(broker = %broker_url, http = %http_addr, "kordon running");
    Ok(Running {
        broker_url,
        http_addr,
        stop,
        core: core_tx,
        core_thread,
        writer,
        ingest_link,
        publishing_link,
        ticker,
        intake_closed,
        publisher,
        http,
        deliverer,
    })
}

/// The police's CAP messages read back from the journal into the Atom
/// feed, and those a webhook has not acknowledged yet (to deliver again).
fn restore_dispatch(config: &Config, dispatch: &Dispatch) -> Vec<dispatch::CapMessage> {
    let records = kordon_journal::Reader::open(&config.journal.journal_file())
        .and_then(|r| r.recent_dispatch(kordon_alert::topics::POLICE_CAP, dispatch::FEED_LENGTH));
    match records {
        Ok(records) => dispatch.restore(records, &config.dispatch, config.clock.now()),
        Err(e) => {
            warn!(error = %e, "the police's CAP feed could not be read back from the journal");
            Vec::new()
        }
    }
}

#[cfg(feature = "embedded-broker")]
fn embedded_broker(config: &Config) -> Result<String, StartError> {
    let credentials = config
        .broker
        .username
        .as_deref()
        .map(|user| (user, config.broker.password.as_deref().unwrap_or("")));
    let addr = crate::embedded::start(config.broker.embedded_listen, credentials)
        .map_err(StartError::EmbeddedBroker)?;
    Ok(format!("mqtt://{addr}"))
}

#[cfg(not(feature = "embedded-broker"))]
fn embedded_broker(_config: &Config) -> Result<String, StartError> {
    Err(StartError::EmbeddedBroker(std::io::Error::other(
        "built without the `embedded-broker` feature",
    )))
}

/// The engine's thread ready to run, the journal writer it feeds, and
/// what the publisher takes (the alerts the thread decides).
type Recovered = (
    CoreThread,
    Writer<Vec<AfterCommit>>,
    mpsc::Receiver<Envelope>,
);

/// What recovery found and how long it took.
#[derive(Debug, Clone)]
pub struct RecoveryStats {
    /// Records in the journal, all verified.
    pub records: u64,
    pub verify: Duration,
    /// The record the snapshot was taken after (0: none used).
    pub snapshot_after: u64,
    pub replayed: u64,
    /// Restoring the snapshot and replaying the records after it.
    pub restore: Duration,
}

/// The journal verified, and the engine's thread rebuilt from the newest
/// snapshot the journal vouches for plus the records after it (still in
/// replay mode: nothing is journaled or published).
pub fn recover_state(
    config: &Config,
    on_damage: OnDamagedJournal,
    feed: Option<Feed>,
) -> Result<(CoreThread, Journal, RecoveryStats), StartError> {
    let path = config.journal.journal_file();
    let durability = config.journal.durability;
    let (journal, verified) = match on_damage {
        OnDamagedJournal::Refuse => Journal::open(&path, durability)?,
        OnDamagedJournal::TruncateToLastGood => {
            let (journal, verified, _) = Journal::open_truncating(&path, durability)?;
            (journal, verified)
        }
    };
    let started = std::time::Instant::now();
    let upkeep = Upkeep {
        snapshot_every_records: config.journal.snapshot_every_records,
        snapshot_every_s: i64::from(config.journal.snapshot_every_s),
        retention_days: (config.journal.retention_days > 0)
            .then_some(config.journal.retention_days),
        keep_around_episode_s: i64::from(config.journal.keep_around_episode_minutes) * 60,
    };
    let snapshots = SnapshotStore::new(&config.journal.dir);
    let snapshot = snapshots.load(|s| match journal.chain_at(s.seq) {
        Ok(Some(chain)) if chain == s.chain => Ok(()),
        Ok(_) => Err(format!(
            "it was taken after record {} but the journal does not hold that record as it was",
            s.seq
        )),
        Err(e) => Err(e.to_string()),
    });
    let fresh = || {
        CoreThread::new(
            Engine::new(config.engine.clone()),
            AlertDesk::new(config.alerts.clone()),
            config.cases.dir.clone(),
            upkeep.clone(),
        )
    };
    let (mut core, after) = match snapshot {
        Some(s) => match CoreThread::restore(
            &s.state,
            config.alerts.clone(),
            config.cases.dir.clone(),
            upkeep.clone(),
        ) {
            Ok(core) => (core, s.seq),
            Err(e) => {
                warn!(error = %e, "snapshot unusable (another kordon version?); replaying the whole journal");
                (fresh(), 0)
            }
        },
        None => (fresh(), 0),
    };
    if let Some(feed) = feed {
        core.attach_feed(feed);
    }
    let mut replayed = 0u64;
    let mut retired = 0u64;
    journal.read_after(after, |stored| {
        match stored.record {
            Some(record) => core.replay(record),
            None => retired += 1,
        }
        replayed += 1;
        Ok(())
    })?;
    if retired > 0 {
        warn!(
            retired,
            "records retired by retention were replayed without their content: the state may differ from before"
        );
    }
    core.apply_engine_config(&config.engine, config.clock.now());
    let stats = RecoveryStats {
        records: verified.records,
        verify: verified.took,
        snapshot_after: after,
        replayed,
        restore: started.elapsed(),
    };
    info!(
        snapshot_after = after,
        replayed,
        took_ms = stats.restore.as_millis() as u64,
        "state recovered from the journal"
    );
    Ok((core, journal, stats))
}

/// Opens and verifies the journal, restores the engine's thread from the
/// newest snapshot the journal vouches for, replays the records after it,
/// starts the journal writer, and brings the cases in line with the case
/// directory.
fn recover(
    config: &Config,
    on_damage: OnDamagedJournal,
    committed: Committed,
    feed: Feed,
    dispatch: Dispatch,
) -> Result<Recovered, StartError> {
    let (mut core, journal, _) = recover_state(config, on_damage, Some(feed))?;
    let snapshots = SnapshotStore::new(&config.journal.dir);
    let (out_tx, out_rx) = mpsc::channel(PUBLISH_QUEUE);
    let writer = Writer::spawn(
        journal,
        snapshots,
        GroupCommit {
            max_records: config.journal.max_batch,
            linger: Duration::from_millis(config.journal.linger_ms),
            ..GroupCommit::default()
        },
        move |durable, batches| committed.hand_on(durable, batches),
    );
    core.set_owntracks_phones(&config.owntracks_map());
    core.go_live(Outlets {
        journal: writer.sender(),
        publisher: out_tx,
        dispatch,
        snapshots: writer.snapshot_gate(),
    });
    let files =
        cases::case_files(&config.cases.dir).map_err(|e| StartError::Cases(e.to_string()))?;
    let mut problems = Vec::new();
    let mut loaded = Vec::new();
    for path in files {
        match cases::read_case_file(&path) {
            Ok(case) => loaded.push((PathBuf::from(&path), case)),
            Err(e) => problems.push(e.to_string()),
        }
    }
    if let Err(refused) = core.reconcile_cases(loaded, config.clock.now()) {
        problems.extend(refused);
    }
    if !problems.is_empty() {
        return Err(StartError::Cases(problems.join("\n")));
    }
    Ok((core, writer, out_rx))
}

/// What the journal writer does after a commit: hands the committed
/// messages' acknowledgements to the ingest link, one batch per commit, and
/// answers callers whose changes are now durable.
struct Committed {
    receipts: mpsc::Sender<Vec<Receipt>>,
    health: Health,
    clock: crate::clock::Clock,
}

impl Committed {
    /// Returns what must wait for the retry when the commit failed: acks
    /// wait for their records to be durable (until then the broker keeps
    /// those messages), and so does a caller's answer (a resolved tamper
    /// alarm). Alerts never come this way: they left when they were decided.
    fn hand_on(&self, durable: Durable, batches: Vec<Vec<AfterCommit>>) -> Vec<Vec<AfterCommit>> {
        let outcome = match &durable {
            Durable::Yes => Ok(()),
            Durable::No(reason) => Err(reason.as_str()),
        };
        self.health.journal_committed(outcome, self.clock.now());
        if durable != Durable::Yes {
            return batches;
        }
        let mut receipts = Vec::new();
        for waiting in batches.into_iter().flatten() {
            match waiting {
                AfterCommit::Ack(receipt) => receipts.push(receipt),
                AfterCommit::Reply(reply) => reply.send(),
            }
        }
        // Waits while the link is a full queue behind (it writes whatever
        // it reads, so only for a moment); gone only when kordon stops.
        if !receipts.is_empty() {
            let _ = self.receipts.blocking_send(receipts);
        }
        Vec::new()
    }
}

impl Running {
    /// Stops taking messages, lets the engine finish what is queued,
    /// publishes what that caused, then `offline`, and disconnects.
    pub async fn shutdown(self) {
        info!("shutting down");
        let _ = self.stop.send(true);
        if let Some(deliverer) = &self.deliverer {
            deliverer.abort();
        }
        let _ = self.http.await;
        // The ingest link and the ticker have stopped queueing: what they
        // queued is handled before `Shutdown`.
        let _ = self.intake_closed.await;
        let _ = self.ticker.await;
        // Everything queued before this is handled first.
        let _ = self.core.send(Command::Shutdown);
        drop(self.core);
        let core_thread = self.core_thread;
        let writer = self.writer;
        // The engine's thread hands its last records to the writer and, as
        // it ends, lets the publisher go; the writer commits them, hands on
        // their acknowledgements and, as it ends, lets the ingest link go.
        let _ = tokio::task::spawn_blocking(move || {
            let _ = core_thread.join();
            drop(writer.finish());
        })
        .await;
        let drained = tokio::time::timeout(Duration::from_secs(10), async {
            let _ = self.publisher.await;
            let _ = self.ingest_link.await;
            let _ = self.publishing_link.await;
        })
        .await;
        if drained.is_err() {
            warn!("the broker did not take the last messages within 10 s");
        }
        info!("stopped");
    }
}
