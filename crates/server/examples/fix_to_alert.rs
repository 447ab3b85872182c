//! Fix-to-alert latency over a real broker: publishes fixes at a steady rate
//! (QoS 1, as a bracelet would), some of which bring an offender into his
//! victim's alarm radius, and measures from the publish call to the alert's
//! arrival on `kordon/v1/alerts/police`.
//!
//! ```text
//! cargo run --release -p kordon-server --example fix_to_alert -- [--broker mqtt://127.0.0.1:1883] [--rate 1000] [--secs 30]
//! ```
//!
//! Without `--broker`, an embedded broker on an ephemeral port. kordon runs
//! in this process, on its own connection, as `kordon run` would.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use kordon_server::config::Config;
use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};

struct Args {
    broker: Option<String>,
    rate: u32,
    secs: u32,
    /// One fix in this many brings an offender to his victim.
    trigger_every: u32,
}

fn args() -> Args {
    let mut args = Args {
        broker: None,
        rate: 1000,
        secs: 30,
        trigger_every: 50,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--broker" => args.broker = Some(value),
            "--rate" => args.rate = value.parse().expect("--rate N"),
            "--secs" => args.secs = value.parse().expect("--secs N"),
            "--trigger-every" => args.trigger_every = value.parse().expect("--trigger-every N"),
            other => panic!("unknown flag {other}"),
        }
    }
    args
}

/// Victims spread over Rotterdam; each offender lives 5 km east of his victim.
fn victim_home(i: usize) -> (f64, f64) {
    (
        51.88 + (i % 50) as f64 * 0.002,
        4.40 + (i / 50) as f64 * 0.002,
    )
}

fn offender_home(i: usize) -> (f64, f64) {
    let (lat, lon) = victim_home(i);
    (lat, lon + 0.073)
}

fn case_json(i: usize) -> String {
    serde_json::json!({
        "id": format!("LAT-{i:05}"), "risk": "medium",
        "offender": {"device": format!("OFF-{i:05}")},
        "protected": [{"id": "P1", "device": format!("VIC-{i:05}")}],
        "orders": [{"id": "contact-ban", "legal_basis": "test", "valid_from": "2026-01-01T00:00:00Z",
                    "rule": {"type": "contact_ban", "protected": "P1", "warning_radius_m": 500, "alarm_radius_m": 200}}]
    })
    .to_string()
}

fn fix(lat: f64, lon: f64) -> String {
    format!(
        r#"{{"ts":"{}","lat":{lat:.6},"lon":{lon:.6},"acc":5}}"#,
        Timestamp::now()
    )
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main]
async fn main() {
    let args = args();
    let triggers = (args.rate * args.secs / args.trigger_every) as usize;
    // Offenders of the first `triggers` cases send nothing until their one
    // fix at the victim's door: a first fix has no previous one to make it
    // implausibly fast (which would only make it *possible*, debounced).
    // The other cases' offenders report from 5 km away all along.
    let cases = triggers + 1000;

    let dir = std::env::temp_dir().join(format!("kordon-latency-{}", std::process::id()));
    let case_dir = dir.join("cases");
    std::fs::create_dir_all(&case_dir).unwrap();
    for i in 0..cases {
        std::fs::write(case_dir.join(format!("lat-{i:05}.json")), case_json(i)).unwrap();
    }
    let broker = match &args.broker {
        Some(url) => format!("url = \"{url}\""),
        None => "embedded = true\nembedded_listen = \"127.0.0.1:0\"".to_string(),
    };
    let config_path = dir.join("kordon.toml");
    std::fs::write(
        &config_path,
        format!(
            "[broker]\n{broker}\nclient_id = \"kordon-latency-{}\"\n[http]\nlisten = \"127.0.0.1:0\"\n[cases]\ndir = \"cases\"\n",
            std::process::id()
        ),
    )
    .unwrap();
    let config = Config::load(&config_path).unwrap();
    let client_id = format!("kordon-latency-{}", std::process::id());
    let running = kordon_server::start(config).await.unwrap();
    let running_broker = running.broker_url.clone();
    let address = kordon_ingest::BrokerAddress::parse(&running.broker_url).unwrap();
    eprintln!("kordon on {} with {cases} cases", running.broker_url);

    // The police console.
    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let latencies: Arc<Mutex<Vec<f64>>> = Arc::default();
    let mut options = MqttOptions::new(
        format!("police-{}", std::process::id()),
        address.host.clone(),
        address.port,
    );
    options
        .set_keep_alive(Duration::from_secs(10))
        .set_max_packet_size(1 << 20, 1 << 20);
    let (police, mut police_loop) = AsyncClient::new(options, 1000);
    police
        .subscribe("kordon/v1/alerts/police", QoS::AtLeastOnce)
        .await
        .unwrap();
    {
        let sent = sent.clone();
        let latencies = latencies.clone();
        tokio::spawn(async move {
            loop {
                match police_loop.poll().await {
                    Ok(Event::Incoming(Incoming::Publish(p))) => {
                        let arrived = Instant::now();
                        let alert: serde_json::Value = serde_json::from_slice(&p.payload).unwrap();
                        // The first police message of the case, whatever its event.
                        let case = alert["case"].as_str().unwrap_or_default().to_string();
                        if let Some(at) = sent.lock().unwrap().remove(&case) {
                            latencies
                                .lock()
                                .unwrap()
                                .push(arrived.duration_since(at).as_secs_f64() * 1000.0);
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        eprintln!("police console: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        });
    }

    // The devices, on one connection like a gateway would use.
    let mut options = MqttOptions::new(
        format!("devices-{}", std::process::id()),
        address.host.clone(),
        address.port,
    );
    options
        .set_keep_alive(Duration::from_secs(10))
        .set_inflight(1000);
    let (devices, mut devices_loop) = AsyncClient::new(options, 100_000);
    let mut network = rumqttc::NetworkOptions::new();
    network.set_tcp_nodelay(true);
    devices_loop.set_network_options(network);
    tokio::spawn(async move {
        loop {
            if devices_loop.poll().await.is_err() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    // Wait until kordon's subscriptions are in place: a fix from an unknown
    // device comes back as a reject. Anything published before would not
    // reach kordon at all.
    let mut options = MqttOptions::new(
        format!("probe-{}", std::process::id()),
        address.host.clone(),
        address.port,
    );
    options.set_keep_alive(Duration::from_secs(10));
    let (probe, mut probe_loop) = AsyncClient::new(options, 100);
    probe
        .subscribe("kordon/v1/rejects", QoS::AtLeastOnce)
        .await
        .unwrap();
    let subscribed = tokio::time::timeout(Duration::from_secs(30), async {
        let mut ticker = tokio::time::interval(Duration::from_millis(200));
        loop {
            tokio::select! {
                _ = ticker.tick() => {
                    let _ = probe.try_publish("kordon/v1/devices/PROBE/fix", QoS::AtLeastOnce, false, fix(51.9, 4.5));
                }
                event = probe_loop.poll() => {
                    if let Ok(Event::Incoming(Incoming::Publish(p))) = event {
                        if p.topic == "kordon/v1/rejects" && String::from_utf8_lossy(&p.payload).contains("PROBE") {
                            return;
                        }
                    }
                }
            }
        }
    })
    .await;
    assert!(subscribed.is_ok(), "kordon did not subscribe within 30 s");
    for i in 0..cases {
        let (lat, lon) = victim_home(i);
        devices
            .publish(
                format!("kordon/v1/devices/VIC-{i:05}/fix"),
                QoS::AtLeastOnce,
                false,
                fix(lat, lon),
            )
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    eprintln!(
        "publishing {} fixes/s for {} s; one in {} brings an offender to his victim",
        args.rate, args.secs, args.trigger_every
    );
    let total = u64::from(args.rate) * u64::from(args.secs);
    let start = Instant::now();
    let mut next_trigger = 0usize;
    for n in 0..total {
        let due = start + Duration::from_secs_f64(n as f64 / f64::from(args.rate));
        tokio::time::sleep_until(due.into()).await;
        if n % u64::from(args.trigger_every) == 0 && next_trigger < triggers {
            let i = next_trigger;
            next_trigger += 1;
            let (lat, lon) = victim_home(i);
            let payload = fix(lat + 0.0003, lon);
            sent.lock()
                .unwrap()
                .insert(format!("LAT-{i:05}"), Instant::now());
            devices
                .publish(
                    format!("kordon/v1/devices/OFF-{i:05}/fix"),
                    QoS::AtLeastOnce,
                    false,
                    payload,
                )
                .await
                .unwrap();
        } else {
            let i = (n as usize * 7919) % cases;
            let (topic, (lat, lon)) = if n % 2 == 0 {
                (format!("kordon/v1/devices/VIC-{i:05}/fix"), victim_home(i))
            } else if i >= triggers {
                (
                    format!("kordon/v1/devices/OFF-{i:05}/fix"),
                    offender_home(i),
                )
            } else {
                (format!("kordon/v1/devices/VIC-{i:05}/fix"), victim_home(i))
            };
            devices
                .publish(topic, QoS::AtLeastOnce, false, fix(lat, lon))
                .await
                .unwrap();
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(10)).await;

    let mut ms = latencies.lock().unwrap().clone();
    ms.sort_by(f64::total_cmp);
    let missing = sent.lock().unwrap().len();
    println!(
        "fix-to-alert (publish → police topic), {} alerts, offered {:.0} fixes/s over {:.1} s, broker {}:",
        ms.len(),
        total as f64 / elapsed,
        elapsed,
        args.broker.as_deref().unwrap_or("embedded rumqttd")
    );
    if !ms.is_empty() {
        println!(
            "  p50 {:.2} ms   p90 {:.2} ms   p99 {:.2} ms   max {:.2} ms",
            percentile(&ms, 0.50),
            percentile(&ms, 0.90),
            percentile(&ms, 0.99),
            ms[ms.len() - 1]
        );
    }
    if missing > 0 {
        println!("  {missing} expected alerts did not arrive");
    }
    if std::env::var("KORDON_LATENCY_METRICS").is_ok() {
        for line in kordon_server::metrics::handle().render().lines() {
            if !line.starts_with('#')
                && (line.contains("opened")
                    || line.contains("refused")
                    || line.contains("failed")
                    || line.contains("fix_to_alert_seconds_sum")
                    || line.contains("fix_to_alert_seconds_count")
                    || line.contains("queue_depth")
                    || line.contains("disposition")
                    || line.contains("received_total")
                    || line.contains("published")
                    || line.contains("connection_errors"))
            {
                println!("  {line}");
            }
        }
    }
    running.shutdown().await;
    // kordon's session is persistent; this run's must not keep queueing.
    let _ = kordon_ingest::broker::forget_session(&running_broker, &client_id).await;
    let _ = std::fs::remove_dir_all(&dir);
}
