//! `kordon demo`: one process with everything a first look needs: the
//! embedded broker, kordon with its journal and HTTP API, and the Rotterdam
//! simulator publishing a few hundred pairs of devices, with simulated time
//! running faster than real time (kordon's clock keeps pace). Simulated
//! time starts 90 s before the day's first scripted incident, so
//! the dashboard has something to show at once. It prints the dashboard's
//! address and sign-in tokens, and a live line of what each audience has
//! received; Ctrl-C stops it.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};
use tokio::sync::watch;

use crate::clock::Clock;
use crate::config::Config;

#[derive(Debug, Clone)]
pub struct DemoSettings {
    pub pairs: u32,
    pub speed: f64,
    pub seed: u64,
    pub mqtt: SocketAddr,
    pub http: SocketAddr,
}

/// The demo's configuration: the demo tokens of `config/kordon.toml`.
fn config_text(settings: &DemoSettings, dir: &std::path::Path) -> String {
    format!(
        r#"
[broker]
embedded = true
embedded_listen = "{mqtt}"
client_id = "kordon-demo"

[http]
listen = "{http}"
[[http.tokens]]
name = "demo monitoring room"
role = "monitoring"
sha256 = "f867dad95b04b4672eff2f8170d06334646fbcfab4ee5ab467f6381f9b5bf39e"
[[http.tokens]]
name = "demo police dispatch"
role = "police"
sha256 = "fa8cc18f7af2c93c21f3049ad34bc6c5e10306f7e29297dd933cd60040281ff2"
[[http.tokens]]
name = "demo case administrator"
role = "admin"
sha256 = "9c588b0babd6a996be956ccc040751f16fb7f1c2cef21d40b265621d37b0a8bc"

[cases]
dir = "{cases}"

[journal]
dir = "{journal}"
durability = "process"

# As config/kordon.toml: tuned on simulated days.
[engine]
possible_confirmations = 1
stale_position_speed_mps = 1.0
"#,
        mqtt = settings.mqtt,
        http = settings.http,
        cases = dir.join("cases").display(),
        journal = dir.join("journal").display(),
    )
}

pub fn run(settings: DemoSettings) -> ExitCode {
    if !(settings.speed > 0.0 && settings.speed <= 100.0) || settings.pairs == 0 {
        eprintln!("kordon demo: --speed must be in (0, 100] and --pairs at least 1");
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("kordon demo: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(demo(settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kordon demo: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn demo(settings: DemoSettings) -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("kordon-demo-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("cases")).map_err(|e| format!("{}: {e}", dir.display()))?;

    eprintln!(
        "building the Rotterdam road graph and simulating {} pairs…",
        settings.pairs
    );
    let now = Timestamp::now();
    let start = kordon_sim::live::midnight_before(now);
    let pairs = settings.pairs;
    let seed = settings.seed;
    let recording = tokio::task::spawn_blocking(move || {
        let (world, connectivity) = kordon_sim::World::load().map_err(|e| e.to_string())?;
        eprintln!("road graph: {connectivity}");
        let config = kordon_sim::SimConfig {
            seed,
            pairs,
            hours: 48,
            start,
            scenario: kordon_sim::Scenario::standard(),
            scenario_text: String::new(),
        };
        Ok::<_, String>(kordon_sim::generate(&world, &config))
    })
    .await
    .map_err(|e| e.to_string())??;
    let start_ms = first_scene_ms(&recording).unwrap_or(now.as_millisecond());
    let now = Timestamp::from_millisecond(start_ms).map_err(|e| e.to_string())?;
    for (i, case) in recording.cases.iter().enumerate() {
        let path = dir.join("cases").join(format!("sim-{:04}.json", i + 1));
        std::fs::write(&path, case).map_err(|e| format!("{}: {e}", path.display()))?;
    }

    let config_path = dir.join("kordon.toml");
    std::fs::write(&config_path, config_text(&settings, &dir)).map_err(|e| e.to_string())?;
    let mut config = Config::load(&config_path).map_err(|e| e.to_string())?;
    config.clock = Clock::scaled(now, settings.speed);
    let running = crate::start(config).await.map_err(|e| e.to_string())?;
    let broker = running.broker_url.clone();

    // Count what each audience receives.
    let received = Arc::new(Received::default());
    let address = kordon_ingest::BrokerAddress::parse(&broker).map_err(|e| e.to_string())?;
    let (watcher, mut events) = AsyncClient::new(
        MqttOptions::new(
            format!("kordon-demo-watch-{}", std::process::id()),
            address.host,
            address.port,
        ),
        100,
    );
    for topic in [
        kordon_alert::topics::MONITORING,
        kordon_alert::topics::POLICE,
        "kordon/v1/devices/+/warning",
    ] {
        watcher
            .subscribe(topic, QoS::AtLeastOnce)
            .await
            .map_err(|e| e.to_string())?;
    }
    let counts = received.clone();
    let watching = tokio::spawn(async move {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Incoming::Publish(p))) => counts.count(&p.topic, &p.payload),
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    });

    println!(
        "\nkordon demo: {} pairs of devices in Rotterdam, simulated time at {}× real time\n\
         \n  MQTT broker  {broker}   (mosquitto_sub -p {} -t 'kordon/v1/#' -v)\
         \n  alerts       kordon/v1/alerts/monitoring, kordon/v1/alerts/police, kordon/v1/alerts/police/cap\
         \n  victims      kordon/v1/devices/VIC-0001/warning …\
         \n  devices      kordon/v1/devices/OFF-0001/fix … (the simulator publishes these)\
         \n  requests     kordon/v1/devices/VIC-0001/request … (kordon asks for a fresh position; the simulated phones answer on their fix topic)\
         \n  dashboard    http://{}/   sign in with monitoring-demo-token, police-demo-token or admin-demo-token\
         \n  HTTP API     http://{}/api/v1/alerts  (Authorization: Bearer monitoring-demo-token)\
         \n  metrics      http://{}/metrics\
         \n  files        {}\
         \n\nCtrl-C stops it.\n",
        settings.pairs,
        settings.speed,
        address_port(&broker),
        running.http_addr,
        running.http_addr,
        running.http_addr,
        dir.display(),
    );

    let (stop_tx, stop_rx) = watch::channel(false);
    let (progress_tx, mut progress_rx) = watch::channel(kordon_sim::live::Progress::default());
    let from = now.as_millisecond();
    let speed = settings.speed;
    let publisher = tokio::spawn(async move {
        kordon_sim::live::publish_with(recording, &broker, speed, from, stop_rx, progress_tx).await
    });
    let clock = Clock::scaled(now, settings.speed);
    let mut last = kordon_sim::live::Progress::default();
    let mut status = tokio::time::interval(Duration::from_secs(2));
    let result = loop {
        tokio::select! {
            _ = status.tick() => {
                let p = *progress_rx.borrow_and_update();
                let local = kordon_core::schedule::schedule_time_zone().to_datetime(clock.now());
                eprint!(
                    "\r{} Rotterdam · {:>5.0} fixes/s · {}   ",
                    local.strftime("%a %H:%M"),
                    (p.fixes - last.fixes) as f64 / 2.0,
                    received.line(),
                );
                last = p;
            }
            _ = tokio::signal::ctrl_c() => break Ok(()),
        }
        if publisher.is_finished() {
            break Ok(());
        }
    };
    eprintln!("\nstopping…");
    let _ = stop_tx.send(true);
    let _ = publisher.await;
    watching.abort();
    running.shutdown().await;
    eprintln!(
        "stopped; the journal is in {}",
        dir.join("journal").display()
    );
    result
}

/// A few simulated minutes before the first scripted approach or zone
/// breach of the day (one that means it, not a pass-by).
fn first_scene_ms(recording: &kordon_sim::Recording) -> Option<i64> {
    use kordon_sim::recording::TruthKind;
    recording
        .truth
        .iter()
        .filter(|t| t.intent && matches!(t.kind, TruthKind::Proximity | TruthKind::Zone))
        .map(|t| t.start_ms)
        .min()
        .map(|ms| (ms - LEAD_MS).max(recording.start_ms))
}

/// How long before the first scene the demo starts: long enough for both
/// devices to have reported, short enough that at 10× the alert is on the
/// dashboard within 30 s of starting `kordon demo` (road graph included).
const LEAD_MS: i64 = 90_000;

/// What each audience has received, as the live line shows it: the
/// monitoring room's alerts asking for action, the police's breach
/// episodes and messages, the warnings victims' phones received.
#[derive(Default)]
struct Received {
    seen: std::sync::Mutex<ReceivedSets>,
    police_messages: AtomicU64,
    room_messages: AtomicU64,
    victim_warnings: AtomicU64,
}

#[derive(Default)]
struct ReceivedSets {
    room_action: std::collections::HashSet<String>,
    police_breaches: std::collections::HashSet<String>,
}

impl Received {
    fn count(&self, topic: &str, payload: &[u8]) {
        let Ok(message) = serde_json::from_slice::<serde_json::Value>(payload) else {
            return;
        };
        let id = message["id"].as_str().unwrap_or_default().to_string();
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if topic == kordon_alert::topics::MONITORING {
            self.room_messages.fetch_add(1, Ordering::Relaxed);
            if message["attention"] == "action" {
                seen.room_action.insert(id);
            }
        } else if topic == kordon_alert::topics::POLICE {
            self.police_messages.fetch_add(1, Ordering::Relaxed);
            // A warning risen to a breach arrives as an update.
            if message["kind"]
                .as_str()
                .is_some_and(|k| k.ends_with("_breach"))
            {
                seen.police_breaches.insert(id);
            }
        } else if topic.ends_with("/warning") && topic.contains("/VIC-") {
            self.victim_warnings.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn line(&self) -> String {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        format!(
            "room: {} to act on ({} messages) · police: {} breaches ({} messages) · victims: {} warnings",
            seen.room_action.len(),
            self.room_messages.load(Ordering::Relaxed),
            seen.police_breaches.len(),
            self.police_messages.load(Ordering::Relaxed),
            self.victim_warnings.load(Ordering::Relaxed),
        )
    }
}

fn address_port(url: &str) -> u16 {
    kordon_ingest::BrokerAddress::parse(url).map_or(1884, |a| a.port)
}
