//! `kordon demo`: one process with everything a first look needs: the
//! embedded broker, kordon with its journal and HTTP API, and the Rotterdam
//! simulator publishing a few hundred pairs of devices, with simulated time
//! running faster than real time (kordon's clock keeps pace). It prints
//! where to look and a live line of fixes/s and alerts; Ctrl-C stops it.

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
    for (i, case) in recording.cases.iter().enumerate() {
        let path = dir.join("cases").join(format!("sim-{:04}.json", i + 1));
        std::fs::write(&path, case).map_err(|e| format!("{}: {e}", path.display()))?;
    }

    let config_path = dir.join("kordon.toml");
    std::fs::write(&config_path, config_text(&settings, &dir)).map_err(|e| e.to_string())?;
    let mut config = Config::load(&config_path).map_err(|e| e.to_string())?;
    let now = Timestamp::now();
    config.clock = Clock::scaled(now, settings.speed);
    let running = crate::start(config).await.map_err(|e| e.to_string())?;
    let broker = running.broker_url.clone();

    // Count what the monitoring room sees.
    let alerts = Arc::new(AtomicU64::new(0));
    let breaches = Arc::new(AtomicU64::new(0));
    let address = kordon_ingest::BrokerAddress::parse(&broker).map_err(|e| e.to_string())?;
    let (watcher, mut events) = AsyncClient::new(
        MqttOptions::new(
            format!("kordon-demo-watch-{}", std::process::id()),
            address.host,
            address.port,
        ),
        100,
    );
    watcher
        .subscribe(kordon_alert::topics::MONITORING, QoS::AtLeastOnce)
        .await
        .map_err(|e| e.to_string())?;
    let (a, b) = (alerts.clone(), breaches.clone());
    let watching = tokio::spawn(async move {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Incoming::Publish(p))) => {
                    a.fetch_add(1, Ordering::Relaxed);
                    let text = String::from_utf8_lossy(&p.payload);
                    if text.contains(r#""event":"opened""#) && text.contains("_breach") {
                        b.fetch_add(1, Ordering::Relaxed);
                    }
                }
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
         \n  HTTP API     http://{}/api/v1/alerts  (Authorization: Bearer monitoring-demo-token)\
         \n  metrics      http://{}/metrics\
         \n  files        {}\
         \n\nCtrl-C stops it.\n",
        settings.pairs,
        settings.speed,
        address_port(&broker),
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
                    "\r{} Rotterdam · {:>5.0} fixes/s · {} fixes · {} alert messages · {} breaches   ",
                    local.strftime("%a %H:%M"),
                    (p.fixes - last.fixes) as f64 / 2.0,
                    p.fixes,
                    alerts.load(Ordering::Relaxed),
                    breaches.load(Ordering::Relaxed),
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

fn address_port(url: &str) -> u16 {
    kordon_ingest::BrokerAddress::parse(url).map_or(1884, |a| a.port)
}
