//! Wiring: starts the embedded broker (if asked), the engine's thread, the
//! broker connection, the publisher, the 1 s tick and the HTTP API, and
//! stops them in the order that loses nothing.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use jiff::Timestamp;
use kordon_alert::AlertDesk;
use kordon_core::Engine;
use kordon_ingest::Decoder;
use thiserror::Error;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::cases;
use crate::config::Config;
use crate::core_thread::{Command, CoreThread};
use crate::http::{self, ApiState};
use crate::mqtt;

/// Queued commands for the engine's thread before senders wait.
const CORE_QUEUE: usize = 65_536;
/// Requests rumqttc buffers while the connection is busy or down.
const MQTT_REQUESTS: usize = 65_536;

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
    connection: JoinHandle<()>,
    publisher: JoinHandle<()>,
    ticker: JoinHandle<()>,
    http: JoinHandle<()>,
}

/// Starts kordon. Cases that fail validation stop the start, each named.
pub async fn start(config: Config) -> Result<Running, StartError> {
    let metrics = crate::metrics::handle();

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

    let (out_tx, out_rx) = mpsc::unbounded_channel();
    let mut core = CoreThread::new(
        Engine::new(config.engine.clone()),
        AlertDesk::new(config.alerts.clone()),
        config.cases.dir.clone(),
        out_tx,
    );
    load_cases(&mut core, &config.cases.dir)?;

    let (core_tx, core_rx) = crossbeam_channel::bounded(CORE_QUEUE);
    let core_thread = std::thread::Builder::new()
        .name("kordon-engine".into())
        .spawn(move || core.run(core_rx))
        .map_err(StartError::Thread)?;

    let (stop, stopping) = watch::channel(false);
    let (client, eventloop) =
        kordon_ingest::connect(&config.broker_settings(broker_url.clone()), MQTT_REQUESTS)?;
    let decoder = Decoder::new(config.ingest.clone(), config.owntracks_map());
    let connection = tokio::spawn(mqtt::run_connection(
        client.clone(),
        eventloop,
        decoder,
        core_tx.clone(),
        stopping.clone(),
    ));
    let publisher = tokio::spawn(mqtt::run_publisher(client, out_rx));
    let ticker = tokio::spawn(tick(core_tx.clone(), stopping.clone()));

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
    let app = http::router(ApiState::new(core_tx.clone(), &config.http.tokens, metrics));
    let mut http_stopping = stopping.clone();
    let http = tokio::spawn(async move {
        let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
            let _ = http_stopping.wait_for(|stop| *stop).await;
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
        connection,
        publisher,
        ticker,
        http,
    })
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

fn load_cases(core: &mut CoreThread, dir: &std::path::Path) -> Result<(), StartError> {
    let files = cases::case_files(dir).map_err(|e| StartError::Cases(e.to_string()))?;
    let now = Timestamp::now();
    let mut problems = Vec::new();
    for path in files {
        match cases::read_case_file(&path) {
            Ok(case) => {
                let id = case.id.clone();
                if let Err(rejected) = core.load_case(case, PathBuf::from(&path), now) {
                    problems.push(format!("{}: case {id}: {rejected}", path.display()));
                }
            }
            Err(e) => problems.push(e.to_string()),
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(StartError::Cases(problems.join("\n")))
    }
}

/// The 1 s tick: offline devices, lost GPS, curfew deadlines, escalations.
async fn tick(core: crossbeam_channel::Sender<Command>, mut stopping: watch::Receiver<bool>) {
    let mut interval = tokio::time::interval(Duration::from_secs(1));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {
                if core.try_send(Command::Tick(Timestamp::now())).is_err() {
                    warn!("engine queue full or gone; tick skipped");
                }
            }
            _ = stopping.wait_for(|stop| *stop) => return,
        }
    }
}

impl Running {
    /// Stops taking messages, lets the engine finish what is queued,
    /// publishes what that caused, then `offline`, and disconnects.
    pub async fn shutdown(self) {
        info!("shutting down");
        let _ = self.stop.send(true);
        let _ = self.ticker.await;
        let _ = self.http.await;
        // Everything queued before this is handled first.
        let _ = self.core.send(Command::Shutdown);
        drop(self.core);
        let core_thread = self.core_thread;
        let _ = tokio::task::spawn_blocking(move || core_thread.join()).await;
        let drained = tokio::time::timeout(Duration::from_secs(10), async {
            let _ = self.publisher.await;
            let _ = self.connection.await;
        })
        .await;
        if drained.is_err() {
            warn!("the broker did not take the last messages within 10 s");
        }
        info!("stopped");
    }
}
