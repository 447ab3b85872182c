//! Test harness: a broker (embedded rumqttd on an ephemeral port, or the
//! Mosquitto named by `KORDON_TEST_MQTT_URL`), a kordon started in-process
//! on it with a test case directory, and an MQTT client that watches topics.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use jiff::Timestamp;
use kordon_server::config::Config;
use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};
use serde_json::Value;
use tokio::sync::mpsc;

pub mod journal;
pub mod proxy;
pub mod publisher;
pub mod xsd;

/// Tests that talk to a shared Mosquitto take turns: they share its topics.
static MOSQUITTO: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[derive(Debug, Clone)]
pub enum Broker {
    Embedded(String),
    External(String),
}

impl Broker {
    pub fn url(&self) -> &str {
        match self {
            Broker::Embedded(url) | Broker::External(url) => url,
        }
    }

    pub fn host_port(&self) -> (String, u16) {
        let address = kordon_ingest::BrokerAddress::parse(self.url()).unwrap();
        (address.host, address.port)
    }
}

/// The brokers every broker test runs against: a fresh embedded one, and
/// Mosquitto when `KORDON_TEST_MQTT_URL` names it.
pub fn brokers() -> Vec<Broker> {
    if std::env::var("KORDON_TEST_LOG").is_ok() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(std::env::var("KORDON_TEST_LOG").unwrap())
            .with_test_writer()
            .try_init();
    }
    let embedded = kordon_server::embedded::start("127.0.0.1:0".parse().unwrap(), None)
        .expect("embedded broker starts");
    let mut brokers = vec![Broker::Embedded(format!("mqtt://{embedded}"))];
    if let Ok(url) = std::env::var("KORDON_TEST_MQTT_URL") {
        if !url.is_empty() {
            brokers.push(Broker::External(url));
        }
    }
    brokers
}

/// Runs `test` once per broker; Mosquitto runs are serialised.
pub async fn for_each_broker<F, Fut>(test: F)
where
    F: Fn(Broker) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for broker in brokers() {
        eprintln!("-- against {broker:?}");
        let _turn = match broker {
            Broker::External(_) => Some(MOSQUITTO.lock().await),
            Broker::Embedded(_) => None,
        };
        test(broker).await;
    }
}

fn unique() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A case and its device ids, unique to one test run.
pub struct TestCase {
    pub id: String,
    pub offender: String,
    pub victim: String,
    pub risk: &'static str,
}

/// The victim's home in Kralingen; the exclusion zone is a square 6 km away.
pub const HOME: (f64, f64) = (51.9200, 4.5470);
pub const ZONE_CENTRE: (f64, f64) = (51.9500, 4.4500);

impl TestCase {
    pub fn new(risk: &'static str) -> Self {
        let tag = unique();
        TestCase {
            id: format!("TEST-{tag}"),
            offender: format!("OFF-{tag}"),
            victim: format!("VIC-{tag}"),
            risk,
        }
    }

    pub fn json(&self) -> Value {
        let (zlat, zlon) = ZONE_CENTRE;
        let d = 0.002;
        serde_json::json!({
            "id": self.id,
            "risk": self.risk,
            "offender": {"device": self.offender},
            "protected": [{"id": "P1", "device": self.victim}],
            "coordinators": [{"organisation": "Reclassering Nederland", "name": "A. Bakker", "phone": "+31 10 000 0000"}],
            "orders": [
                {"id": "contact-ban", "legal_basis": "art. 38v Sr", "valid_from": "2026-01-01T00:00:00+01:00",
                 "rule": {"type": "contact_ban", "protected": "P1", "warning_radius_m": 500, "alarm_radius_m": 200}},
                {"id": "zone-ban", "legal_basis": "art. 38v Sr", "valid_from": "2026-01-01T00:00:00+01:00",
                 "rule": {"type": "exclusion_zone", "warning_buffer_m": 100,
                          "geometry": {"type": "Polygon", "coordinates": [[
                              [zlon - d, zlat - d], [zlon + d, zlat - d], [zlon + d, zlat + d], [zlon - d, zlat + d], [zlon - d, zlat - d]]]}}}
            ]
        })
    }
}

/// A kordon started in-process on `broker`, with its own case directory.
pub struct Kordon {
    pub running: Option<kordon_server::Running>,
    pub http: String,
    pub case_dir: PathBuf,
    pub client_id: String,
    pub broker: Broker,
}

pub const MONITORING_TOKEN: &str = "monitoring-test-token";
pub const POLICE_TOKEN: &str = "police-test-token";
pub const ADMIN_TOKEN: &str = "admin-test-token";

pub fn config_text(
    broker_url: &str,
    case_dir: &std::path::Path,
    client_id: &str,
    escalate_after_s: u32,
) -> String {
    let hash = kordon_server::http::hash_token;
    format!(
        r#"
[broker]
url = "{broker_url}"
client_id = "{client_id}"

[http]
listen = "127.0.0.1:0"
[[http.tokens]]
name = "test monitoring"
role = "monitoring"
sha256 = "{}"
[[http.tokens]]
name = "test police"
role = "police"
sha256 = "{}"
[[http.tokens]]
name = "test admin"
role = "admin"
sha256 = "{}"

[cases]
dir = "{}"

[alerts]
sender = "kordon@test"
escalate_after_s = {escalate_after_s}

# Fixes carry past timestamps so that tests drive time through them;
# the wall-clock tick must not call those devices offline.
[engine]
offline_after_s = 86400
gps_lost_after_s = 86400
position_max_age_s = 86400
clear_min_s = 60
"#,
        hash(MONITORING_TOKEN),
        hash(POLICE_TOKEN),
        hash(ADMIN_TOKEN),
        case_dir.display()
    )
}

/// A new directory for a test, under one per test process
/// (`kordon-test-<pid>`). The first call removes those of test processes
/// that have ended: every run of the suite left some two hundred behind.
/// A test's directory outlives the test (kordon restarted in it, a failed
/// test's journal to look at) until the next run.
pub fn temp_dir(name: &str) -> PathBuf {
    static SWEPT: std::sync::Once = std::sync::Once::new();
    SWEPT.call_once(remove_ended_processes_dirs);
    let dir = std::env::temp_dir()
        .join(format!("kordon-test-{}", std::process::id()))
        .join(format!("{name}-{}", unique()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Removes the `kordon-test-<pid>` directories whose process has ended;
/// where there is no `/proc` to tell, none.
fn remove_ended_processes_dirs() {
    if !std::path::Path::new("/proc/self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let pid = name
            .to_str()
            .and_then(|n| n.strip_prefix("kordon-test-"))
            .and_then(|pid| pid.parse::<u32>().ok());
        let Some(pid) = pid else { continue };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

impl Kordon {
    pub async fn start(broker: &Broker, cases: &[&TestCase]) -> Kordon {
        Self::start_with(broker, cases, 120, None).await
    }

    /// `via` replaces the broker URL kordon dials (a proxy, say).
    pub async fn start_with(
        broker: &Broker,
        cases: &[&TestCase],
        escalate_after_s: u32,
        via: Option<String>,
    ) -> Kordon {
        let files: Vec<(String, String)> = cases
            .iter()
            .map(|case| (case.id.to_lowercase(), case.json().to_string()))
            .collect();
        Self::start_files(broker, &files, escalate_after_s, via).await
    }

    /// Starts kordon with case files given as (name, JSON text).
    pub async fn start_files(
        broker: &Broker,
        files: &[(String, String)],
        escalate_after_s: u32,
        via: Option<String>,
    ) -> Kordon {
        let dir = temp_dir("kordon");
        let case_dir = dir.join("cases");
        std::fs::create_dir_all(&case_dir).unwrap();
        for (name, json) in files {
            std::fs::write(case_dir.join(format!("{name}.json")), json).unwrap();
        }
        let client_id = format!("kordon-test-{}", unique());
        let url = via.unwrap_or_else(|| broker.url().to_string());
        let path = dir.join("kordon.toml");
        std::fs::write(
            &path,
            config_text(&url, &case_dir, &client_id, escalate_after_s),
        )
        .unwrap();
        let config = Config::load(&path).unwrap();
        let running = kordon_server::start(config).await.expect("kordon starts");
        let http = format!("http://{}", running.http_addr);
        let kordon = Kordon {
            running: Some(running),
            http,
            case_dir,
            client_id,
            broker: broker.clone(),
        };
        kordon.wait_online().await;
        kordon
    }

    /// Waits until kordon's subscriptions are in place: a probe message to
    /// an unknown device comes back as a reject.
    async fn wait_online(&self) {
        let watcher = Watcher::new(&self.broker, &["kordon/v1/rejects"]).await;
        let probe = format!("PROBE-{}", unique());
        for _ in 0..100 {
            watcher
                .publish(
                    &format!("kordon/v1/devices/{probe}/fix"),
                    fix_json(51.9, 4.5, 5.0, Timestamp::now()),
                )
                .await;
            if watcher
                .wait_for(Duration::from_millis(200), |t, p| {
                    t == "kordon/v1/rejects" && p.contains(&probe)
                })
                .await
                .is_some()
            {
                return;
            }
        }
        panic!("kordon did not come online");
    }

    /// Stops kordon as SIGTERM would, keeping its broker session and its
    /// journal for [`Kordon::restart`].
    pub async fn shutdown(&mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown().await;
        }
    }

    /// Starts kordon again on the same configuration, cases and journal.
    pub async fn restart(&mut self) {
        let config = Config::load(&self.config_path()).unwrap();
        let running = kordon_server::start(config)
            .await
            .expect("kordon starts again");
        self.http = format!("http://{}", running.http_addr);
        self.running = Some(running);
    }

    pub fn config_path(&self) -> PathBuf {
        self.case_dir.parent().unwrap().join("kordon.toml")
    }

    pub fn journal_path(&self) -> PathBuf {
        self.case_dir
            .parent()
            .unwrap()
            .join("journal")
            .join("journal.db")
    }

    pub async fn stop(mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown().await;
        }
        forget_session(&self.broker, &self.client_id).await;
    }
}

/// Removes a persistent session from the broker, so that a shared
/// Mosquitto does not keep queueing for test clients that are gone.
pub async fn forget_session(broker: &Broker, client_id: &str) {
    kordon_ingest::broker::forget_session(broker.url(), client_id)
        .await
        .unwrap();
}

pub fn fix_json(lat: f64, lon: f64, acc: f64, ts: Timestamp) -> String {
    format!(r#"{{"ts":"{ts}","lat":{lat},"lon":{lon},"acc":{acc}}}"#)
}

/// Metres north of a point, in degrees of latitude.
pub fn north(point: (f64, f64), metres: f64) -> (f64, f64) {
    (point.0 + metres / 111_195.0, point.1)
}

/// Topic and payload of one received message.
pub type Received = (String, Vec<u8>);

/// An MQTT client that records what arrives on its filters.
pub struct Watcher {
    pub client: AsyncClient,
    rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<Received>>,
    seen: std::sync::Mutex<Vec<Received>>,
    log: std::sync::Arc<std::sync::Mutex<Vec<Received>>>,
}

impl Watcher {
    pub async fn new(broker: &Broker, filters: &[&str]) -> Watcher {
        let (host, port) = broker.host_port();
        let mut options = MqttOptions::new(format!("watcher-{}", unique()), host, port);
        options
            .set_keep_alive(Duration::from_secs(5))
            .set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut eventloop) = AsyncClient::new(options, 1000);
        let (tx, rx) = mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let mut pending = Some(ready_tx);
        let wanted = filters.len();
        let mut acked = 0;
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let record = log.clone();
        for filter in filters {
            client.subscribe(*filter, QoS::AtLeastOnce).await.unwrap();
        }
        tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Incoming::Publish(p))) => {
                        record
                            .lock()
                            .unwrap()
                            .push((p.topic.clone(), p.payload.to_vec()));
                        let _ = tx.send((p.topic.clone(), p.payload.to_vec()));
                    }
                    Ok(Event::Incoming(Incoming::SubAck(_))) => {
                        acked += 1;
                        if acked == wanted {
                            if let Some(ready) = pending.take() {
                                let _ = ready.send(());
                            }
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), ready_rx)
            .await
            .expect("subscriptions acknowledged")
            .unwrap();
        Watcher {
            client,
            rx: tokio::sync::Mutex::new(rx),
            seen: std::sync::Mutex::new(Vec::new()),
            log,
        }
    }

    /// A watcher that has already received, and forgotten, the retained
    /// messages on `filters` (an earlier run's engine status, say): a
    /// marker published after subscribing comes back after them.
    pub async fn without_retained(broker: &Broker, filters: &[&str]) -> Watcher {
        let marker = format!("kordon-test/marker/{}", unique());
        let mut all = filters.to_vec();
        all.push(&marker);
        let watcher = Watcher::new(broker, &all).await;
        watcher.publish(&marker, "marker").await;
        watcher.expect("the marker", |t, _| t == marker).await;
        watcher.forget_unconsumed();
        watcher
    }

    /// Forgets what arrived and was not consumed: later expectations see
    /// only what comes after.
    pub fn forget_unconsumed(&self) {
        self.seen.lock().unwrap().clear();
    }

    /// Every message received so far, consumed or not, in arrival order.
    pub fn log(&self) -> Vec<(String, Vec<u8>)> {
        self.log.lock().unwrap().clone()
    }

    pub async fn publish(&self, topic: &str, payload: impl Into<Vec<u8>>) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload.into())
            .await
            .unwrap();
    }

    /// The first message (seen before or arriving within `timeout`) that
    /// matches; it is consumed.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        mut matches: impl FnMut(&str, &str) -> bool,
    ) -> Option<(String, String)> {
        {
            let mut seen = self.seen.lock().unwrap();
            if let Some(i) = seen
                .iter()
                .position(|(t, p)| matches(t, &String::from_utf8_lossy(p)))
            {
                let (t, p) = seen.remove(i);
                return Some((t, String::from_utf8_lossy(&p).into_owned()));
            }
        }
        let deadline = tokio::time::Instant::now() + timeout;
        let mut rx = self.rx.lock().await;
        loop {
            let next = tokio::time::timeout_at(deadline, rx.recv())
                .await
                .ok()
                .flatten()?;
            let text = String::from_utf8_lossy(&next.1).into_owned();
            if matches(&next.0, &text) {
                return Some((next.0, text));
            }
            self.seen.lock().unwrap().push(next);
        }
    }

    /// Like `wait_for`, but a test failure naming what was expected.
    pub async fn expect(
        &self,
        what: &str,
        matches: impl FnMut(&str, &str) -> bool,
    ) -> (String, String) {
        match self.wait_for(Duration::from_secs(10), matches).await {
            Some(found) => found,
            None => {
                let seen = self.seen.lock().unwrap();
                let tail: Vec<String> = seen
                    .iter()
                    .rev()
                    .take(10)
                    .map(|(t, p)| {
                        format!(
                            "{t} {}",
                            String::from_utf8_lossy(p)
                                .chars()
                                .take(200)
                                .collect::<String>()
                        )
                    })
                    .collect();
                panic!("expected {what}; last messages seen:\n{}", tail.join("\n"))
            }
        }
    }

    /// Every message received so far and within `settle`, in order.
    pub async fn drain(&self, settle: Duration) -> Vec<(String, Vec<u8>)> {
        let _ = self.wait_for(settle, |_, _| false).await;
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

pub fn json(payload: &str) -> Value {
    serde_json::from_str(payload).unwrap_or_else(|e| panic!("not JSON ({e}): {payload}"))
}
