//! Issue 15's own test: three `kordon run` processes in a cluster, on a
//! nats-server and a Mosquitto of the test's own. Devices publish to
//! Mosquitto; scripted zone breaches are spread over every shard. While
//! the fixes come:
//! 1. the instance serving most shards is killed with SIGKILL: its shards
//!    are served again within 5 s (then it is started again);
//! 2. a rolling restart, one instance after the other (SIGTERM, start):
//!    each one's shards are served again within a lease;
//! 3. one instance is cut off from NATS (through a proxy): it stops serving
//!    before its leases can have expired.
//!
//! Then every breach has reached the police, and nothing reached the
//! police, the monitoring room or a victim's device twice.
//!
//! And `kordon run` with two device brokers in its `kordon.toml`: a device
//! on the second breaches, and the room on the first hears of it.
//!
//! `KORDON_CLUSTER_FIXES` sets how many fixes (default 50,000),
//! `KORDON_CLUSTER_KILLS` how many SIGKILLs in step 1 (default 1; the
//! fail-over's p50 and max are printed). Skipped
//! loudly without `nats-server` or `mosquitto` (failed on CI, which sets
//! `KORDON_REQUIRE_NATS=1` and `KORDON_REQUIRE_MOSQUITTO=1`).

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::proxy::Proxy;
use common::publisher::Publisher;
use common::{fix_json, json, Broker, TestCase, Watcher, ZONE_CENTRE};
use jiff::{SignedDuration, Timestamp};
use kordon_cluster::testkit::{Mosquitto, Nats};

const INSTANCES: [&str; 3] = ["k1", "k2", "k3"];
const SHARDS: usize = 64;
/// Fix time between a device's fixes.
const STEP_S: i64 = 10;

/// One instance's directory and configuration.
struct Member {
    name: &'static str,
    /// Its way to NATS, which the test can cut.
    nats: Proxy,
    config: PathBuf,
    log: PathBuf,
    /// Where the running process's log begins in `log` (appended to at
    /// each start).
    log_start: u64,
    /// Its HTTP address, read from its log once it says it (it listens on
    /// a port of its own choosing: a port picked by the test and released
    /// could be taken by another socket before the instance binds it).
    http: std::sync::Mutex<Option<String>>,
    child: Option<Child>,
}

impl Member {
    async fn new(name: &'static str, nats: &Nats, mqtt: &str) -> Member {
        let port: u16 = nats.url().rsplit(':').next().unwrap().parse().unwrap();
        let proxy = Proxy::start(("127.0.0.1".to_string(), port)).await;
        let dir = common::temp_dir(&format!("cluster-{name}"));
        let text = common::config_text(mqtt, &dir.join("cases"), &format!("kordon-{name}"), 3600);
        let text = format!(
            "{text}\n[journal]\ndir = \"{}\"\n\n[cluster]\nnats_url = \"nats://{}\"\ninstance = \"{name}\"\n",
            dir.join("journal").display(),
            proxy.addr
        );
        let config = dir.join("kordon.toml");
        std::fs::write(&config, text).unwrap();
        Member {
            name,
            nats: proxy,
            config,
            log: dir.join("kordon.log"),
            log_start: 0,
            http: std::sync::Mutex::new(None),
            child: None,
        }
    }

    fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        self.log_start = log.metadata().unwrap().len();
        *self.http.lock().unwrap() = None;
        let child = Command::new(env!("CARGO_BIN_EXE_kordon"))
            .args(["run", "--config"])
            .env("NO_COLOR", "1")
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    /// SIGTERM, and waits for it to leave the cluster and exit.
    fn terminate(&mut self) {
        if let Some(mut child) = self.child.take() {
            let term = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status()
                .unwrap();
            assert!(term.success());
            assert!(
                child.wait().unwrap().success(),
                "{} stops cleanly",
                self.name
            );
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill(); // SIGKILL
            let _ = child.wait();
        }
    }

    /// The HTTP address the running process said it serves on, if it has.
    fn http_url(&self) -> Option<String> {
        self.child.as_ref()?;
        let mut known = self.http.lock().unwrap();
        if known.is_none() {
            let log = std::fs::read(&self.log).unwrap_or_default();
            let since_start = log.get(self.log_start as usize..).unwrap_or_default();
            *known = String::from_utf8_lossy(since_start)
                .lines()
                .find_map(|line| line.split_once("metrics on ").map(|(_, rest)| rest))
                .and_then(|rest| rest.split_whitespace().next())
                .map(str::to_string);
        }
        known.clone()
    }

    /// The shards it serves, from its `/healthz` (none while it is down).
    async fn shards(&self, http: &reqwest::Client) -> usize {
        let Some(url) = self.http_url() else {
            return 0;
        };
        let Ok(response) = http.get(format!("{url}/healthz")).send().await else {
            return 0;
        };
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        body["shards"].as_array().map_or(0, |s| s.len())
    }
}

impl Member {
    /// Its `/metrics` page.
    async fn metrics(&self, http: &reqwest::Client) -> Option<String> {
        let response = http
            .get(format!("{}/metrics", self.http_url()?))
            .bearer_auth(common::MONITORING_TOKEN)
            .send()
            .await
            .ok()?;
        response.text().await.ok()
    }

    /// `kordon_cluster_alert_delivery_delay_seconds` of its one broker,
    /// from its `/metrics`.
    async fn delivery_delay(&self, http: &reqwest::Client) -> Option<f64> {
        let page = self.metrics(http).await?;
        page.lines()
            .find_map(|line| {
                line.strip_prefix("kordon_cluster_alert_delivery_delay_seconds{broker=")
            })
            .and_then(|labelled| labelled.rsplit_once(' '))
            .and_then(|(_, value)| value.trim().parse().ok())
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let status = self.child.as_mut().map(|c| c.try_wait());
            eprintln!(
                "--- {} at the failure: {status:?} (None: not running; Ok(None): running)",
                self.name
            );
        }
        self.kill();
        // A failed test's only witness of what each instance did.
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(60)..];
            eprintln!(
                "--- the last lines of {}'s log ---\n{}",
                self.name,
                tail.join("\n")
            );
        }
    }
}

async fn served(members: &[Member], http: &reqwest::Client) -> Vec<usize> {
    let mut counts = Vec::new();
    for member in members {
        counts.push(member.shards(http).await);
    }
    counts
}

/// Waits until the members serve every shard between them, and returns
/// how long that took.
async fn all_served(members: &[Member], http: &reqwest::Client, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let counts = served(members, http).await;
        if counts.iter().sum::<usize>() == SHARDS {
            return started.elapsed();
        }
        assert!(started.elapsed() < within, "shards served: {counts:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Where an offender is at `step`: far outside, then walking in at 6 m/s
/// from `breach_at - 10`, inside for ten steps, then walking out again.
fn position(step: usize, breach_at: usize) -> (f64, f64) {
    let s = step as i64 - breach_at as i64;
    let metres = match s {
        ..=-10 => 600.0,
        -9..=-1 => -60.0 * s as f64,
        0..=9 => 0.0,
        10..=19 => 60.0 * (s - 9) as f64,
        _ => 600.0,
    };
    // A metre or so east each step: no two fixes alike.
    let (lat, lon) = common::north(ZONE_CENTRE, metres);
    (lat, lon + (step % 7) as f64 * 0.00001)
}

fn put_cases(config: &Path, files: &[PathBuf]) {
    let status = Command::new(env!("CARGO_BIN_EXE_kordon"))
        .args(["cluster", "put-cases", "--config"])
        .arg(config)
        .args(files)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "kordon cluster put-cases");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_survive_a_sigkill_mid_stream() {
    let Some(nats) = Nats::start() else { return };
    let Some(mosquitto) = Mosquitto::start() else {
        return;
    };
    let fixes: usize = std::env::var("KORDON_CLUSTER_FIXES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(50_000);
    let kills: usize = std::env::var("KORDON_CLUSTER_KILLS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1)
        .max(1);
    let mqtt = format!("mqtt://127.0.0.1:{}", mosquitto.port);
    let broker = Broker::External(mqtt.clone());
    let mut members = Vec::new();
    for name in INSTANCES {
        members.push(Member::new(name, &nats, &mqtt).await);
    }

    // Cases: enough that every shard has breaches, each walking in once.
    let case_count = 200;
    let steps = fixes.div_ceil(case_count);
    assert!(steps >= 60, "at least 60 steps a case: {steps}");
    let cases: Vec<TestCase> = (0..case_count).map(|_| TestCase::new("high")).collect();
    let case_dir = common::temp_dir("cluster-cases");
    let files: Vec<PathBuf> = cases
        .iter()
        .map(|c| {
            let path = case_dir.join(format!("{}.json", c.id));
            std::fs::write(&path, c.json().to_string()).unwrap();
            path
        })
        .collect();
    put_cases(&members[0].config, &files);
    let breach_at = |i: usize| 15 + (i * 7919) % (steps - 40);
    // The kills, spread over the second fifth of the stream.
    let kill_steps: Vec<usize> = (0..kills)
        .map(|k| steps / 5 + k * (steps / 5) / kills)
        .collect();

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    for member in &mut members {
        member.start();
    }
    // Every shard served, and every instance serving some (the balance
    // hands shards to instances that joined a moment later).
    let started = Instant::now();
    loop {
        let counts = served(&members, &http).await;
        if counts.iter().sum::<usize>() == SHARDS && counts.iter().all(|n| *n > 0) {
            eprintln!(
                "every shard served and balanced after {:?}: {counts:?}",
                started.elapsed()
            );
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "shards served: {counts:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let watcher = Watcher::new(
        &broker,
        &["kordon/v1/alerts/#", "kordon/v1/devices/+/warning"],
    )
    .await;
    let publisher = Publisher::new(&broker, "devices".into(), 1_000, 10_000).await;
    let t0 = Timestamp::now() - SignedDuration::from_secs(STEP_S * steps as i64 + 600);
    let sending = Instant::now();
    let mut fail_overs = Vec::new();
    for step in 0..steps {
        if kill_steps.contains(&step) {
            fail_overs.push(kill_busiest(&mut members, &http).await);
        }
        if step == 2 * steps / 5 {
            rolling_restart(&mut members, &http).await;
        }
        if step == 3 * steps / 5 {
            partition_one(&mut members, &http).await;
        }
        let ts = t0 + SignedDuration::from_secs(STEP_S * step as i64);
        for (i, case) in cases.iter().enumerate() {
            let (lat, lon) = position(step, breach_at(i));
            publisher
                .client
                .publish(
                    format!("kordon/v1/devices/{}/fix", case.offender),
                    rumqttc::QoS::AtLeastOnce,
                    false,
                    fix_json(lat, lon, 5.0, ts),
                )
                .await
                .unwrap();
        }
        // Devices report every STEP_S; the test compresses that, but not
        // to nothing, so that the faults land mid-stream.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "{} fixes published in {:?}",
        steps * case_count,
        sending.elapsed()
    );
    fail_overs.sort();
    eprintln!(
        "fail-over over {} SIGKILLs: p50 {:?}, max {:?}",
        fail_overs.len(),
        fail_overs[fail_overs.len() / 2],
        fail_overs[fail_overs.len() - 1]
    );

    // Every breach reaches the police.
    let deadline = Instant::now() + Duration::from_secs(120);
    let breaches_for_police = |log: &[(String, Vec<u8>)]| -> HashMap<String, usize> {
        let mut by_case = HashMap::new();
        for (topic, payload) in log {
            if topic != "kordon/v1/alerts/police" {
                continue;
            }
            let body = json(&String::from_utf8_lossy(payload));
            // The episode opens as a warning on the way in and rises to a
            // breach: the police hear of it first at the breach.
            if body["kind"] == "zone_breach" && body["event"] != "cleared" {
                *by_case
                    .entry(body["case"].as_str().unwrap_or("").to_string())
                    .or_insert(0) += 1;
            }
        }
        by_case
    };
    loop {
        let log = watcher.log();
        let opened = breaches_for_police(&log);
        let missing: Vec<&str> = cases
            .iter()
            .filter(|c| !opened.contains_key(&c.id))
            .map(|c| c.id.as_str())
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} breaches never reached the police, e.g. {:?}; logs in {:?}",
            missing.len(),
            &missing[..missing.len().min(5)],
            members.iter().map(|m| &m.log).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    eprintln!("every breach reached the police");
    // Every instance reads, from the stream, that no alert waits for
    // Mosquitto any more (`KordonClusterAlertsUndelivered` stays quiet).
    for member in members.iter().filter(|m| m.child.is_some()) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let delay = member.delivery_delay(&http).await;
            if delay == Some(0.0) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{}: an alert still waits for Mosquitto ({delay:?} s)",
                member.name
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    // Nothing the police or the room received came twice.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let log = watcher.log();
    let stored = stored_alerts(&nats).await;
    // How often the stream holds a message: twice is the shards' fault
    // (message ids), once the deliverer's.
    let times_stored =
        |key: &(String, String, String, String)| stored.iter().filter(|k| *k == key).count();
    let alerts = copies(&log, |topic| {
        topic == "kordon/v1/alerts/police" || topic == "kordon/v1/alerts/monitoring"
    });
    let twice: Vec<_> = alerts
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(key, n)| (key, n, times_stored(key)))
        .collect();
    assert!(
        twice.is_empty(),
        "{} alert messages sent twice, e.g. (message, copies, times stored) {:?}",
        twice.len(),
        &twice[..twice.len().min(3)]
    );

    // No victim device warned twice of one event.
    let warnings = copies(&log, |topic| {
        topic.ends_with("/warning") && cases.iter().any(|c| topic.contains(&c.victim))
    });
    let twice: Vec<_> = warnings.iter().filter(|(_, n)| **n > 1).collect();
    assert!(!warnings.is_empty(), "victims were warned");
    assert!(
        twice.is_empty(),
        "{} victim warnings sent twice, e.g. {:?}",
        twice.len(),
        &twice[..twice.len().min(3)]
    );
    // Nothing the shards stored for the police, the room or a device was
    // lost on the way out.
    let received = copies(&log, |topic| !topic.ends_with("/cap"));
    let lost: Vec<_> = stored
        .iter()
        .filter(|k| !received.contains_key(*k))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} stored alert messages never arrived, e.g. {:?}",
        lost.len(),
        stored.len(),
        &lost[..lost.len().min(3)]
    );
    eprintln!(
        "{} alert messages stored for the police, the room and devices; each arrived",
        stored.len()
    );
    let police = breaches_for_police(&log);
    let police_twice = police.values().filter(|n| **n > 1).count();
    eprintln!(
        "{} victim warnings, none twice; {} police breach messages, {police_twice} cases' twice",
        warnings.len(),
        police.values().sum::<usize>()
    );
}

/// How many copies of each message (by topic, episode id, event and
/// evidence time) arrived on the topics `wanted` picks.
fn copies(
    log: &[(String, Vec<u8>)],
    wanted: impl Fn(&str) -> bool,
) -> HashMap<(String, String, String, String), usize> {
    let mut copies = HashMap::new();
    for (topic, payload) in log.iter().filter(|(t, _)| wanted(t)) {
        let body = json(&String::from_utf8_lossy(payload));
        let key = (
            topic.clone(),
            body["id"].to_string(),
            body["event"].to_string(),
            body["ts"].to_string(),
        );
        *copies.entry(key).or_insert(0) += 1;
    }
    copies
}

/// The alerts' stream's messages on the topics the watcher hears, keyed as
/// [`copies`] keys them.
async fn stored_alerts(nats: &Nats) -> Vec<(String, String, String, String)> {
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let mut stream = js
        .get_stream(kordon_cluster::alerts::ALERT_STREAM)
        .await
        .unwrap();
    let last = stream.info().await.unwrap().state.last_sequence;
    let mut keys = Vec::new();
    for seq in 1..=last {
        let message = stream.get_raw_message(seq).await.unwrap();
        let topic = message
            .headers
            .get(kordon_cluster::routing::TOPIC_HEADER)
            .map(|t| t.to_string())
            .unwrap_or_default();
        let heard = topic.starts_with("kordon/v1/alerts/") && !topic.ends_with("/cap")
            || topic.ends_with("/warning");
        if !heard {
            continue;
        }
        let body = json(&String::from_utf8_lossy(&message.payload));
        keys.push((
            topic,
            body["id"].to_string(),
            body["event"].to_string(),
            body["ts"].to_string(),
        ));
    }
    keys
}

/// The member serving most shards, and what each serves.
async fn busiest(members: &[Member], http: &reqwest::Client) -> (usize, Vec<usize>) {
    let counts = served(members, http).await;
    let busiest = (0..members.len()).max_by_key(|i| counts[*i]).unwrap();
    (busiest, counts)
}

/// SIGKILL of the instance serving most shards; its shards are served
/// again within 5 s (the fail-over time, returned). Then it is started
/// again.
async fn kill_busiest(members: &mut [Member], http: &reqwest::Client) -> Duration {
    let (busiest, counts) = busiest(members, http).await;
    members[busiest].kill();
    let fail_over = all_served(members, http, Duration::from_secs(20)).await;
    eprintln!(
        "SIGKILL of {} ({} of {counts:?} shards): every shard served again {fail_over:?} after (as polled every 50 ms)",
        members[busiest].name, counts[busiest]
    );
    assert!(
        fail_over < Duration::from_secs(5),
        "fail-over took {fail_over:?}"
    );
    members[busiest].start();
    fail_over
}

/// Each instance in turn: SIGTERM (it leaves the cluster cleanly), its
/// shards served by the others within a lease, then started again.
async fn rolling_restart(members: &mut [Member], http: &reqwest::Client) {
    for i in 0..members.len() {
        // Its turn comes once it serves shards (after its start).
        let started = Instant::now();
        while members[i].shards(http).await == 0 && started.elapsed() < Duration::from_secs(20) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let had = members[i].shards(http).await;
        let stopping = Instant::now();
        members[i].terminate();
        all_served(members, http, Duration::from_secs(20)).await;
        let gap = stopping.elapsed();
        eprintln!("rolling restart: {} left with {had} shards; all served again {gap:?} after the SIGTERM", members[i].name);
        assert!(gap < Duration::from_secs(5), "hand-over took {gap:?}");
        members[i].start();
    }
}

/// Cuts the instance serving most shards off from NATS: it stops serving
/// before its leases can have expired (3 s after its last renewal), and
/// the others take its shards over.
async fn partition_one(members: &mut [Member], http: &reqwest::Client) {
    let (busiest, counts) = busiest(members, http).await;
    let cut = Instant::now();
    members[busiest].nats.down();
    loop {
        if members[busiest].shards(http).await == 0 {
            break;
        }
        assert!(
            cut.elapsed() < Duration::from_secs(3),
            "{} still serves shards {:?} after being cut off",
            members[busiest].name,
            cut.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stopped = cut.elapsed();
    all_served(members, http, Duration::from_secs(20)).await;
    let taken = cut.elapsed();
    eprintln!(
        "{} cut off from NATS with {} shards: it served none {stopped:?} after the cut; the others served all {taken:?} after",
        members[busiest].name, counts[busiest]
    );
    members[busiest].nats.up();
}

/// `kordon run` with `[cluster] device_brokers`: the configuration a
/// programme writes reaches both brokers. A device on the second breaches;
/// the room on the first hears of it, and `/metrics` reads how long alerts
/// wait for each broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kordon_run_reads_every_device_broker_and_tells_each_of_every_alert() {
    let Some(nats) = Nats::start() else { return };
    let (Some(first), Some(second)) = (Mosquitto::start(), Mosquitto::start()) else {
        return;
    };
    let urls = [first.port, second.port].map(|port| format!("mqtt://127.0.0.1:{port}"));
    let mut member = Member::new("k1", &nats, &urls[0]).await;
    let mut text = std::fs::read_to_string(&member.config).unwrap();
    text.push_str(&format!(
        "device_brokers = [{:?}, {:?}]\n",
        urls[0], urls[1]
    ));
    std::fs::write(&member.config, text).unwrap();
    let case = TestCase::new("high");
    let file = common::temp_dir("two-brokers-case").join("case.json");
    std::fs::write(&file, case.json().to_string()).unwrap();
    put_cases(&member.config, &[file]);
    let room = Watcher::new(
        &Broker::External(urls[0].clone()),
        &["kordon/v1/alerts/monitoring"],
    )
    .await;
    let device = Watcher::new(&Broker::External(urls[1].clone()), &["kordon-test/none"]).await;

    member.start();
    let http = reqwest::Client::new();
    all_served(
        std::slice::from_ref(&member),
        &http,
        Duration::from_secs(20),
    )
    .await;
    // His fixes, one a step, until the room has heard: broker 1's bridge
    // may take a moment to subscribe, and what comes before is not kept.
    let t0 = Timestamp::now() - SignedDuration::from_mins(30);
    let topic = format!("kordon/v1/devices/{}/fix", case.offender);
    let opened = |t: &str, p: &str| {
        let body = json(p);
        t.ends_with("monitoring") && body["case"] == case.id.as_str() && body["event"] == "opened"
    };
    let mut heard = None;
    for step in 0..40 {
        let at = if step < 20 {
            common::north(ZONE_CENTRE, 600.0)
        } else {
            ZONE_CENTRE
        };
        let ts = t0 + SignedDuration::from_secs(step * STEP_S);
        device.publish(&topic, fix_json(at.0, at.1, 5.0, ts)).await;
        heard = room.wait_for(Duration::from_millis(250), opened).await;
        if heard.is_some() {
            break;
        }
    }
    let log = std::fs::read_to_string(&member.log).unwrap_or_default();
    assert!(
        heard.is_some(),
        "the room on broker 0 heard nothing of a breach on broker 1:\n{log}"
    );

    let page = member.metrics(&http).await.expect("its /metrics");
    for mosquitto in [&first, &second] {
        let series = format!(
            "kordon_cluster_alert_delivery_delay_seconds{{broker=\"127.0.0.1:{}\"}}",
            mosquitto.port
        );
        assert!(page.contains(&series), "{series} in /metrics");
    }
    member.terminate();
}
