//! The `kordon` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use kordon_server::{cases, config::Config, http::hash_token};

#[derive(Parser)]
#[command(
    name = "kordon",
    version,
    about = "Real-time proximity alerting for GPS electronic monitoring"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service until SIGTERM or Ctrl-C.
    Run {
        #[arg(long, default_value = "config/kordon.toml")]
        config: PathBuf,
        /// Log format.
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        log: LogFormat,
        /// If the journal fails verification, keep the records before the
        /// first bad one (the damaged file is kept beside it) and run.
        #[arg(long)]
        truncate_journal: bool,
    },
    /// Run a recording (`kordon-sim record`) through the engine on virtual
    /// time and write every message it would publish, one JSON object a
    /// line: monitoring alerts as the topic carries them, the others as
    /// {"topic": ..., "message": ...} (the CAP feed left out).
    Replay {
        recording: PathBuf,
        /// Virtual time runs this many times real time.
        #[arg(long, conflicts_with = "fast")]
        speed: Option<f64>,
        /// As fast as the engine goes.
        #[arg(long)]
        fast: bool,
        #[arg(long)]
        out: PathBuf,
        /// Engine and alert thresholds from this kordon.toml (defaults otherwise).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Compare the alerts of a replay with the recording's ground truth,
    /// and count what the monitoring room, police and devices received.
    Score {
        recording: PathBuf,
        alerts: PathBuf,
        /// Also write the figures as JSON, and a plot beside it (.svg).
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Everything in one process: embedded broker, kordon, the HTTP API and
    /// the Rotterdam simulator publishing a few hundred pairs, faster than
    /// real time. Ctrl-C stops it.
    Demo {
        #[arg(long, default_value_t = 300)]
        pairs: u32,
        /// Simulated time runs this many times real time.
        #[arg(long, default_value_t = 10.0)]
        speed: f64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long, default_value = "127.0.0.1:1884")]
        mqtt: std::net::SocketAddr,
        #[arg(long, default_value = "127.0.0.1:8080")]
        http: std::net::SocketAddr,
    },
    /// A cluster of kordon instances (`docs/cluster.md`).
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
    },
    /// Export or verify the evidence of a case.
    Evidence {
        #[command(subcommand)]
        command: EvidenceCommand,
    },
    /// Validate case files; exit code 1 with every error if any is wrong.
    CheckCases {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print the SHA-256 to put in `http.tokens` for a token read from stdin.
    HashToken,
}

#[derive(Subcommand)]
enum ClusterCommand {
    /// Who holds each shard, under which epoch and since when, the members
    /// and when each was last heard from, and the shards nobody holds, as
    /// the lease bucket of the configuration's `[cluster]` has them.
    Status {
        #[arg(long, default_value = "config/kordon.toml")]
        config: PathBuf,
    },
    /// Stores case files in the cluster's case bucket; the instance serving
    /// each case's shard applies it at once. Every file is read and checked
    /// first (as `kordon check-cases`): one refused file stores none.
    PutCases {
        #[arg(long, default_value = "config/kordon.toml")]
        config: PathBuf,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Deletes cases from the cluster's case bucket; the instances serving
    /// them remove them at once.
    DeleteCases {
        #[arg(long, default_value = "config/kordon.toml")]
        config: PathBuf,
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Makes the configuration's device brokers the cluster's list, to take
    /// a broker off it or put another in its place once its devices have
    /// left it (adding one at the end needs no command). Removes the
    /// alerts' consumer of each place whose broker goes.
    Agree {
        #[arg(long, default_value = "config/kordon.toml")]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum EvidenceCommand {
    /// Write a case's fixes, alerts, acknowledgements, resolutions, notes,
    /// escalations by hand, webhook deliveries, status messages and case
    /// changes (CSV, GeoJSON, JSON lines) and a manifest with their hash
    /// chain to a directory.
    Export {
        #[arg(long, default_value = "config/kordon.toml")]
        config: PathBuf,
        #[arg(long)]
        case: String,
        /// Records journaled at or after this time (RFC 3339).
        #[arg(long)]
        from: Option<jiff::Timestamp>,
        /// Records journaled at or before this time (RFC 3339).
        #[arg(long)]
        to: Option<jiff::Timestamp>,
        #[arg(long)]
        out: PathBuf,
    },
    /// Check an export against its manifest: exit code 1 naming every
    /// edited, removed or reordered record.
    Verify { dir: PathBuf },
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rumqttd=off"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Run {
            config,
            log,
            truncate_journal,
        } => {
            init_logging(log);
            let on_damage = if truncate_journal {
                kordon_server::OnDamagedJournal::TruncateToLastGood
            } else {
                kordon_server::OnDamagedJournal::Refuse
            };
            run(config, on_damage)
        }
        Command::Evidence { command } => evidence(command),
        Command::Cluster { command } => cluster(command),
        Command::Replay {
            recording,
            speed,
            fast,
            out,
            config,
        } => replay(&recording, speed, fast, &out, config.as_deref()),
        Command::Score {
            recording,
            alerts,
            json,
        } => score(&recording, &alerts, json.as_deref()),
        Command::Demo {
            pairs,
            speed,
            seed,
            mqtt,
            http,
        } => {
            init_logging(LogFormat::Text);
            kordon_server::demo::run(kordon_server::demo::DemoSettings {
                pairs,
                speed,
                seed,
                mqtt,
                http,
            })
        }
        Command::CheckCases { files } => check_cases(&files),
        Command::HashToken => {
            let mut token = String::new();
            if std::io::stdin().read_line(&mut token).is_err() || token.trim().is_empty() {
                eprintln!("kordon hash-token: give the token on stdin");
                return ExitCode::FAILURE;
            }
            println!("{}", hash_token(&token));
            ExitCode::SUCCESS
        }
    }
}

fn run(path: PathBuf, on_damage: kordon_server::OnDamagedJournal) -> ExitCode {
    let config = match Config::load(&path) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("kordon: {e}");
            return ExitCode::FAILURE;
        }
    };
    if config.cluster.is_some() {
        return run_in_cluster(&path, config);
    }
    let Some(runtime) = server_runtime() else {
        return ExitCode::FAILURE;
    };
    runtime.block_on(async move {
        // Listening before starting: a SIGTERM during start-up (a
        // supervisor stopping kordon as it comes up) is a clean stop, not
        // the default action that kills the process outright.
        let Some(stop) = StopSignals::install_or_say() else {
            return ExitCode::FAILURE;
        };
        let running = match kordon_server::start_with(config, on_damage).await {
            Ok(running) => running,
            Err(e) => {
                tracing::error!("{e}");
                eprintln!("kordon: {e}");
                return ExitCode::FAILURE;
            }
        };
        eprintln!(
            "kordon is running: broker {} · API http://{} · Ctrl-C stops it",
            running.broker_url, running.http_addr
        );
        stop.wait().await;
        running.shutdown().await;
        ExitCode::SUCCESS
    })
}

/// The devices' brokers a cluster's instance reads and writes: the
/// Mosquittos the devices use (`[cluster] device_brokers`, or `[broker]
/// url`), never a broker of its own; each with kordon's credentials and TLS
/// from `[broker]`, as for a single kordon.
fn cluster_device_brokers(
    config: &Config,
    shards: kordon_cluster::ShardCount,
) -> Result<Vec<kordon_cluster::brokers::DeviceBroker>, String> {
    let urls = config.device_broker_urls();
    if config.broker.embedded || urls.is_empty() {
        return Err(
            "in a cluster, [broker] must name the devices' Mosquitto with `url` \
             (or [cluster] `device_brokers`) and `embedded = false`"
                .to_string(),
        );
    }
    let options = urls
        .into_iter()
        .map(|url| {
            let settings = config.broker_settings(url.clone());
            kordon_ingest::broker::client_options(&settings, &config.broker.client_id)
                .map_err(|e| format!("the device broker {url}: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    kordon_cluster::brokers::DeviceBroker::list(options, shards).map_err(|e| e.to_string())
}

/// `kordon run` with a `[cluster]` section: joins the cluster, serves the
/// shards it gets leases for, and leaves cleanly on SIGTERM or Ctrl-C
/// (`docs/cluster.md`).
fn run_in_cluster(path: &std::path::Path, config: Config) -> ExitCode {
    use kordon_server::cluster_node::{
        case_api::CaseApi, duties::DutiesSettings, status_http, Instance,
    };
    let cluster = config.cluster.clone().expect("called with [cluster]");
    let settings = cluster.settings().expect("checked at load");
    let brokers = match cluster_device_brokers(&config, settings.shards) {
        Ok(brokers) => brokers,
        Err(problem) => {
            eprintln!("kordon: {}: {problem}", path.display());
            return ExitCode::FAILURE;
        }
    };
    let Some(runtime) = server_runtime() else {
        return ExitCode::FAILURE;
    };
    runtime.block_on(async move {
        let Some(stop) = StopSignals::install_or_say() else {
            return ExitCode::FAILURE;
        };
        let metrics = kordon_server::metrics::handle();
        kordon_server::metrics::describe_all();
        let instance_name = settings.instance.to_string();
        let duties = DutiesSettings { brokers };
        let instance =
            match Instance::start(&config, settings, Some(duties)).await {
                Ok(instance) => instance,
                Err(e) => {
                    tracing::error!("{e}");
                    eprintln!("kordon: joining the cluster: {e}");
                    return ExitCode::FAILURE;
                }
            };
        let case_api = match CaseApi::start(
            instance.case_bucket(),
            instance.access(),
            config.engine.clone(),
        )
        .await
        {
            Ok(case_api) => case_api,
            Err(e) => {
                eprintln!("kordon: reading the cluster's cases: {e}");
                instance.leave().await;
                return ExitCode::FAILURE;
            }
        };
        let listener = match tokio::net::TcpListener::bind(config.http.listen).await {
            Ok(listener) => listener,
            Err(e) => {
                eprintln!("kordon: HTTP listener on {}: {e}", config.http.listen);
                instance.leave().await;
                return ExitCode::FAILURE;
            }
        };
        let http_addr = listener.local_addr().ok();
        let app = status_http::router(
            instance_name.clone(),
            instance.serving(),
            metrics,
            &config.http.tokens,
        )
        .merge(case_api.router())
        .merge(instance.alert_api().router())
        .merge(instance.history_api().router())
        .merge(instance.dashboard().router());
        let http = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        eprintln!(
            "kordon is running as instance {instance_name} of a cluster: dashboard, API, health and metrics on http://{} · Ctrl-C leaves the cluster",
            http_addr.map(|a| a.to_string()).unwrap_or_default()
        );
        stop.wait().await;
        eprintln!("kordon: leaving the cluster");
        instance.leave().await;
        http.abort();
        ExitCode::SUCCESS
    })
}

/// The multi-threaded runtime `kordon run` serves on; `None` (said on
/// stderr) if it cannot start.
fn server_runtime() -> Option<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| eprintln!("kordon: starting the runtime: {e}"))
        .ok()
}

/// SIGTERM and Ctrl-C (SIGINT), each a request to stop cleanly.
struct StopSignals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
}

impl StopSignals {
    /// Installs the handlers; `None` (said on stderr) if they cannot be.
    fn install_or_say() -> Option<StopSignals> {
        StopSignals::install()
            .map_err(|e| eprintln!("kordon: installing the signal handlers: {e}"))
            .ok()
    }

    fn install() -> std::io::Result<StopSignals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(StopSignals {
                term: signal(SignalKind::terminate())?,
                interrupt: signal(SignalKind::interrupt())?,
            })
        }
        #[cfg(not(unix))]
        Ok(StopSignals {})
    }

    async fn wait(mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.interrupt.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn replay(
    path: &std::path::Path,
    speed: Option<f64>,
    fast: bool,
    out: &std::path::Path,
    config: Option<&std::path::Path>,
) -> ExitCode {
    use kordon_server::replay::{Pace, Replay};
    let pace = match (speed, fast) {
        (Some(s), _) if s > 0.0 && s.is_finite() => Pace::Speed(s),
        (Some(s), _) => {
            eprintln!("kordon replay: --speed {s} must be a positive number");
            return ExitCode::FAILURE;
        }
        (None, true) => Pace::Fast,
        (None, false) => Pace::Speed(1.0),
    };
    let recording = match kordon_sim::Recording::read(path) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("kordon replay: {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    };
    let (engine, alerts, limits) = match config.map(Config::load).transpose() {
        Ok(Some(c)) => (c.engine, c.alerts, c.ingest),
        Ok(None) => Default::default(),
        Err(e) => {
            eprintln!("kordon replay: {e}");
            return ExitCode::FAILURE;
        }
    };
    let file = match std::fs::File::create(out) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("kordon replay: {}: {e}", out.display());
            return ExitCode::FAILURE;
        }
    };
    let mut writer = std::io::BufWriter::new(file);
    let bar = indicatif::ProgressBar::new(recording.messages.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} messages {per_sec} eta {eta}",
        )
        .expect("a valid template"),
    );
    let result = Replay::new(engine, alerts, limits)
        .run(&recording, pace, &mut writer, |n| bar.set_position(n));
    bar.finish_and_clear();
    match result {
        Ok(done) => {
            println!(
                "{}: {} messages ({} fixes, {} refused) in {:.2} s: {:.0} fixes/s; {} monitoring alert messages and {} for police, devices and coordinators written to {}",
                path.display(),
                done.messages,
                done.fixes,
                done.refused,
                done.took.as_secs_f64(),
                done.fixes as f64 / done.took.as_secs_f64(),
                done.alert_messages,
                done.other_messages,
                out.display()
            );
            println!(
                "requests for a fresh position: {}; answered with {} fixes ({} taken), {} could not be (no fix then)",
                done.position_requests,
                done.position_answers,
                done.answers_taken,
                done.position_requests_unanswered,
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("kordon replay: {e}");
            ExitCode::FAILURE
        }
    }
}

fn score(
    recording: &std::path::Path,
    alerts: &std::path::Path,
    json: Option<&std::path::Path>,
) -> ExitCode {
    let recording = match kordon_sim::Recording::read(recording) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("kordon score: {}: {e}", recording.display());
            return ExitCode::FAILURE;
        }
    };
    let lines = match std::fs::read_to_string(alerts)
        .map_err(|e| e.to_string())
        .and_then(|t| kordon_sim::score::read_alerts(&t))
    {
        Ok(lines) => lines,
        Err(e) => {
            eprintln!("kordon score: {}: {e}", alerts.display());
            return ExitCode::FAILURE;
        }
    };
    let score = kordon_sim::score::score(&recording, &lines);
    print!("{score}");
    if let Some(path) = json {
        let text = serde_json::to_string_pretty(&score).expect("scores serialise");
        if let Err(e) = std::fs::write(path, text) {
            eprintln!("kordon score: {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
        let plot = path.with_extension("svg");
        if let Err(e) = kordon_sim::score::plot(&score, &plot) {
            eprintln!("kordon score: {}: {e}", plot.display());
            return ExitCode::FAILURE;
        }
        println!("written {} and {}", path.display(), plot.display());
    }
    ExitCode::SUCCESS
}

fn evidence(command: EvidenceCommand) -> ExitCode {
    use kordon_journal::evidence;
    match command {
        EvidenceCommand::Export {
            config,
            case,
            from,
            to,
            out,
        } => {
            let config = match Config::load(&config) {
                Ok(config) => config,
                Err(e) => {
                    eprintln!("kordon: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let request = evidence::ExportRequest { case, from, to };
            match evidence::export(&config.journal.journal_file(), &request, &out) {
                Ok(manifest) => {
                    println!(
                        "case {}: {} records written to {}; chain head {}",
                        manifest.case,
                        manifest.records.len(),
                        out.display(),
                        manifest.chain.head
                    );
                    println!("keep the chain head with the case file: it is what the export is verified against");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("kordon evidence export: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        EvidenceCommand::Verify { dir } => match evidence::verify(&dir) {
            Ok(v) if v.findings.is_empty() => {
                println!(
                    "{}: intact: {} records ({} retired by retention), chain head {}",
                    dir.display(),
                    v.records,
                    v.retired,
                    v.head
                );
                ExitCode::SUCCESS
            }
            Ok(v) => {
                for finding in &v.findings {
                    println!("{finding}");
                }
                println!(
                    "{}: NOT intact: {} finding(s) over {} records",
                    dir.display(),
                    v.findings.len(),
                    v.records
                );
                ExitCode::FAILURE
            }
            Err(e) => {
                eprintln!("kordon evidence verify: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

fn check_cases(files: &[PathBuf]) -> ExitCode {
    let mut failed = false;
    for path in files {
        match cases::read_case_file(path) {
            Ok(case) => {
                let report = kordon_core::validate_case(&case);
                for warning in &report.warnings {
                    println!("{}: warning: {warning}", path.display());
                }
                println!(
                    "{}: case {} is valid ({} orders)",
                    path.display(),
                    case.id,
                    case.orders.len()
                );
            }
            Err(e) => {
                failed = true;
                println!("{e}");
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn cluster(command: ClusterCommand) -> ExitCode {
    let path = match &command {
        ClusterCommand::Status { config }
        | ClusterCommand::PutCases { config, .. }
        | ClusterCommand::DeleteCases { config, .. }
        | ClusterCommand::Agree { config } => config.clone(),
    };
    let config = match Config::load(&path) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("kordon: {e}");
            return ExitCode::FAILURE;
        }
    };
    let Some(cluster) = config.cluster.clone() else {
        eprintln!(
            "kordon: {}: no [cluster] section: this kordon runs alone",
            path.display()
        );
        return ExitCode::FAILURE;
    };
    let settings = cluster.settings().expect("checked at load");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match command {
        ClusterCommand::Status { .. } => cluster_status(&runtime, &settings),
        ClusterCommand::PutCases { files, .. } => {
            put_cases(&runtime, &settings, &config.engine, &files)
        }
        ClusterCommand::DeleteCases { ids, .. } => delete_cases(&runtime, &settings, &ids),
        ClusterCommand::Agree { .. } => cluster_agree(&runtime, &config, &settings),
    }
}

/// Removes the alerts' consumers of the deliverers to the brokers in
/// `places`; the names of those it removed (one never made is not there).
async fn remove_deliverers_consumers(
    js: &async_nats::jetstream::Context,
    places: &[u16],
) -> Vec<String> {
    let Ok(alerts) = js.get_stream(kordon_cluster::alerts::ALERT_STREAM).await else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for place in places {
        let consumer = kordon_cluster::brokers::consumer_of(*place);
        if alerts.delete_consumer(&consumer).await.is_ok() {
            removed.push(consumer);
        }
    }
    removed
}

/// `kordon cluster agree`: the configuration's device brokers become the
/// cluster's list (`kordon_cluster::agreement::rewrite`), and the alerts'
/// consumer of each place whose broker went is removed, so that a broker
/// put there later starts a few minutes back.
fn cluster_agree(
    runtime: &tokio::runtime::Runtime,
    config: &Config,
    settings: &kordon_cluster::ClusterSettings,
) -> ExitCode {
    use kordon_cluster::agreement::{self, Agreement};
    let brokers = match cluster_device_brokers(config, settings.shards) {
        Ok(brokers) => brokers,
        Err(problem) => {
            eprintln!("kordon cluster agree: {problem}");
            return ExitCode::FAILURE;
        }
    };
    let labels: Vec<String> = brokers.iter().map(|b| b.label()).collect();
    let view = Agreement::new(settings.shards, labels.clone());
    let rewrite = async {
        let client = kordon_cluster::keeper::connect(&settings.nats_url).await?;
        let js = async_nats::jetstream::new(client);
        let rewritten = agreement::rewrite(&js, settings.replicas, &view).await?;
        let removed = remove_deliverers_consumers(&js, &rewritten.replaced).await;
        Ok::<_, kordon_cluster::ClusterError>((rewritten, removed))
    };
    match runtime.block_on(rewrite) {
        Ok((rewritten, removed)) => {
            let before = rewritten.before.map(|b| b.device_brokers);
            println!(
                "device brokers were: {}",
                before.map_or("(none agreed yet)".into(), |b| b.join(", "))
            );
            println!("device brokers now:  {}", labels.join(", "));
            if !removed.is_empty() {
                println!("removed the alerts' consumers {}", removed.join(", "));
            }
            println!("restart each instance with this list; until then, one with another list is refused or leaves brokers unread");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("kordon cluster agree: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The cluster's case bucket, on its own connection.
async fn case_bucket(
    settings: &kordon_cluster::ClusterSettings,
) -> Result<async_nats::jetstream::kv::Store, kordon_cluster::ClusterError> {
    let client = kordon_cluster::keeper::connect(&settings.nats_url).await?;
    let js = async_nats::jetstream::new(client);
    kordon_cluster::cases::open(&js, settings.replicas).await
}

/// Stores case files in the bucket, none of them unless every one passes
/// the check a case passes through the API (`case_api::check_case`),
/// against the cluster's cases and the files before it.
fn put_cases(
    runtime: &tokio::runtime::Runtime,
    settings: &kordon_cluster::ClusterSettings,
    engine: &kordon_core::EngineConfig,
    files: &[PathBuf],
) -> ExitCode {
    use kordon_server::cluster_node::case_api::{check_case, CaseDirectory};
    let mut read = Vec::new();
    for path in files {
        match cases::read_case_file(path) {
            Ok(case) if case.id.is_plain() => read.push((path, case)),
            Ok(case) => {
                eprintln!(
                    "{}: case id `{}` must be {}",
                    path.display(),
                    case.id,
                    kordon_core::CaseId::PLAIN
                );
                return ExitCode::FAILURE;
            }
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let stored = runtime.block_on(async {
        let bucket = case_bucket(settings).await?;
        let mut directory = CaseDirectory::follow(bucket.clone())
            .await?
            .borrow()
            .clone();
        let mut refused = false;
        for (path, case) in &read {
            match check_case(case, engine, |device| directory.memberships(device)) {
                Ok(()) => directory.list(case),
                Err(rejected) => {
                    refused = true;
                    eprintln!("{}: refused:", path.display());
                    for error in &rejected.report.errors {
                        eprintln!("  error: {error}");
                    }
                }
            }
        }
        if refused {
            eprintln!("kordon cluster put-cases: nothing stored");
            return Ok(false);
        }
        for (_, case) in &read {
            kordon_cluster::cases::put(&bucket, case).await?;
            println!(
                "case {} stored (shard {})",
                case.id,
                settings.shards.shard_of(case.id.as_str())
            );
        }
        Ok::<_, kordon_cluster::ClusterError>(true)
    });
    match stored {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("kordon cluster put-cases: {e}");
            ExitCode::FAILURE
        }
    }
}

fn delete_cases(
    runtime: &tokio::runtime::Runtime,
    settings: &kordon_cluster::ClusterSettings,
    ids: &[String],
) -> ExitCode {
    let deleted = runtime.block_on(async {
        let bucket = case_bucket(settings).await?;
        for id in ids {
            kordon_cluster::cases::delete(&bucket, id).await?;
            println!("case {id} deleted");
        }
        Ok::<_, kordon_cluster::ClusterError>(())
    });
    match deleted {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kordon cluster delete-cases: {e}");
            ExitCode::FAILURE
        }
    }
}

fn cluster_status(
    runtime: &tokio::runtime::Runtime,
    settings: &kordon_cluster::ClusterSettings,
) -> ExitCode {
    let read = async {
        let states = kordon_cluster::keeper::shard_map(settings).await?;
        // The leases are shown even when the agreement cannot be read.
        let agreed = kordon_cluster::agreement::read(&settings.nats_url).await;
        Ok::<_, kordon_cluster::ClusterError>((states, agreed))
    };
    match runtime.block_on(read) {
        Ok((states, agreed)) => {
            let now_ms = jiff::Timestamp::now().as_millisecond();
            println!(
                "cluster: {} (bucket {})",
                settings.nats_url, settings.bucket
            );
            print!(
                "{}",
                kordon_cluster::status::render(&states, settings.shards, now_ms)
            );
            let brokers = match agreed {
                Ok(agreed) => agreed.map(|a| a.device_brokers).unwrap_or_default(),
                Err(e) => {
                    println!("device brokers: unknown ({e})");
                    Vec::new()
                }
            };
            print!(
                "{}",
                kordon_cluster::status::render_brokers(&brokers, &states)
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("kordon cluster status: {e}");
            ExitCode::FAILURE
        }
    }
}
