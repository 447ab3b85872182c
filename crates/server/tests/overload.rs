//! Overload without harm: fixes offered faster than kordon can journal them
//! (QoS 1, four device connections publishing as fast as the broker takes
//! them). kordon keeps its broker connection throughout (keep-alives are
//! answered whatever the engine's backlog), takes what it can, lets the
//! broker hold the rest, and in the end has every fix in its journal exactly
//! once; nothing is dropped on the way.
//!
//! It runs on the embedded broker and on a Mosquitto of its own with the
//! queue settings of `deploy/mosquitto/kordon.conf`: the machine's Mosquitto
//! keeps its default `max_queued_messages 1000` per client and drops QoS 1
//! messages beyond it (a broker setting, which the shipped configuration
//! raises), and it is shared with other tests' traffic.

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::journal::{journal_fix_count, journaled_fixes};
use common::publisher::Publisher;
use common::*;
use jiff::{SignedDuration, Timestamp};
use rumqttc::QoS;

const CASES: usize = 40;
const PUBLISHERS: usize = 4;
const FIXES_PER_PUBLISHER: usize = 8_000;

/// A metric's value from `/metrics` text (summed over its labels).
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter(|l| l[name.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// `/healthz`'s body, whatever its status.
async fn health_text(http: &reqwest::Client, kordon: &Kordon) -> String {
    let response = http.get(format!("{}/healthz", kordon.http)).send().await;
    response.unwrap().text().await.unwrap()
}

/// A Mosquitto of the test's own on a free port, configured for kordon's
/// queues as in `deploy/mosquitto/kordon.conf` (without persistence, users
/// and TLS). Killed on drop.
struct OwnMosquitto {
    child: std::process::Child,
    port: u16,
    _dir: std::path::PathBuf,
}

impl OwnMosquitto {
    /// With `window` messages in flight to each client (Mosquitto's
    /// `max_inflight_messages`).
    fn start(window: u32) -> Option<OwnMosquitto> {
        let binary = ["/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"]
            .into_iter()
            .map(std::path::PathBuf::from)
            .find(|p| p.is_file());
        let Some(binary) = binary else {
            assert!(
                std::env::var("KORDON_REQUIRE_MOSQUITTO").as_deref() != Ok("1"),
                "KORDON_REQUIRE_MOSQUITTO=1 but no mosquitto binary"
            );
            eprintln!("*** overload: no mosquitto binary: only the embedded broker was tested");
            return None;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = temp_dir("overload-mosquitto");
        let config = dir.join("mosquitto.conf");
        std::fs::write(
            &config,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\nuser root\n\
                 set_tcp_nodelay true\nmax_queued_messages 200000\n\
                 max_inflight_messages {window}\nmax_packet_size 262144\n"
            ),
        )
        .unwrap();
        let child = std::process::Command::new(binary)
            .arg("-c")
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("mosquitto starts");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "own mosquitto not listening");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(OwnMosquitto {
            child,
            port,
            _dir: dir,
        })
    }
}

impl Drop for OwnMosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offered_load_above_capacity_keeps_the_connection_and_loses_nothing() {
    let embedded = kordon_server::embedded::start("127.0.0.1:0".parse().unwrap(), None)
        .expect("embedded broker starts");
    let own = OwnMosquitto::start(1000);
    let mut brokers = vec![Broker::Embedded(format!("mqtt://{embedded}"))];
    if let Some(own) = &own {
        brokers.push(Broker::External(format!("mqtt://127.0.0.1:{}", own.port)));
    }
    for broker in brokers {
        eprintln!("-- against {broker:?}");
        overload(broker).await;
    }
}

async fn overload(broker: Broker) {
    {
        let cases: Vec<TestCase> = (0..CASES).map(|_| TestCase::new("medium")).collect();
        let all: Vec<&TestCase> = cases.iter().collect();
        let kordon = Kordon::start(&broker, &all).await;
        let http = reqwest::Client::new();
        let scrape = || async {
            http.get(format!("{}/metrics", kordon.http))
                .bearer_auth(MONITORING_TOKEN)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        };
        // The metrics are the process's: earlier runs in it counted too.
        let before = scrape().await;
        let errors_before = metric(&before, "kordon_broker_connection_errors_total");

        // Far from everyone, so the load is fixes, not alerts.
        let (lat, lon) = north(HOME, 20_000.0);
        let base = Timestamp::now() - SignedDuration::from_mins(20);
        let started = Instant::now();
        let mut acks = Vec::new();
        let mut tasks = Vec::new();
        for p in 0..PUBLISHERS {
            let Publisher { client, acked } =
                Publisher::new(&broker, format!("overload-{}-{p}", cases[0].id), 1000, 1000).await;
            acks.push(acked);
            let devices: Vec<String> = cases.iter().map(|c| c.offender.clone()).collect();
            tasks.push(tokio::spawn(async move {
                for n in 0..FIXES_PER_PUBLISHER {
                    // Each publisher its own slice of sequence numbers and
                    // time, so every fix is distinct and moves forward.
                    let seq = (n * PUBLISHERS + p) as u64;
                    let ts = base + SignedDuration::from_millis(seq as i64 * 10);
                    let device = &devices[n % devices.len()];
                    let payload = format!(
                        r#"{{"ts":"{ts}","lat":{lat:.7},"lon":{lon:.7},"acc":5.0,"seq":{seq}}}"#
                    );
                    client
                        .publish(
                            format!("kordon/v1/devices/{device}/fix"),
                            QoS::AtLeastOnce,
                            false,
                            payload,
                        )
                        .await
                        .unwrap();
                }
            }));
        }
        let offered = (PUBLISHERS * FIXES_PER_PUBLISHER) as u64;
        let journal = kordon.journal_path();
        let mut most_waiting = 0u64;
        let mut overloaded_seen = false;
        // People's requests while the engine's intake is full: each must be
        // answered, not refused as "busy".
        let mut requests = 0u32;
        let mut refused = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(240);
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let taken = journal_fix_count(&journal);
            let broker_took: u64 = acks.iter().map(|a| a.load(Ordering::Relaxed)).sum();
            most_waiting = most_waiting.max(broker_took.saturating_sub(taken));
            let health = health_text(&http, &kordon).await;
            overloaded_seen |= health.contains("overloaded since");
            if health.contains("the engine did not answer") {
                refused.push(format!("/healthz: {health}"));
            }
            let cases = http
                .get(format!("{}/api/v1/cases", kordon.http))
                .bearer_auth(MONITORING_TOKEN)
                .send()
                .await
                .unwrap();
            requests += 1;
            if !cases.status().is_success() {
                let status = cases.status();
                refused.push(format!(
                    "/api/v1/cases: {status} {}",
                    cases.text().await.unwrap()
                ));
            }
            if taken >= offered {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "only {taken} of {offered} fixes journaled in 240 s"
            );
        }
        let took = started.elapsed();
        for task in tasks {
            task.await.unwrap();
        }
        let text = scrape().await;
        eprintln!(
            "{offered} fixes in {took:?} ({:.0}/s); at most {most_waiting} waited at the broker; \
             overloaded reported: {overloaded_seen}; engine found busy {} times; \
             the ingest link waited {:.1} s for room",
            offered as f64 / took.as_secs_f64(),
            metric(&text, "kordon_engine_busy_total"),
            metric(&text, "kordon_ingest_paused_microseconds_total") / 1e6,
        );
        assert_eq!(
            metric(&text, "kordon_broker_connection_errors_total"),
            errors_before,
            "kordon lost its broker connection under load"
        );
        assert!(
            refused.is_empty(),
            "{} of {requests} requests during the overload refused, as: {:?}",
            refused.len(),
            &refused[..refused.len().min(3)]
        );
        kordon.stop().await;

        // Every fix once: none lost, none journaled twice.
        let fixes = journaled_fixes(&journal);
        let ours: Vec<_> = fixes
            .iter()
            .filter(|((device, _), _)| cases.iter().any(|c| &c.offender == device))
            .collect();
        assert_eq!(ours.len() as u64, offered, "fixes missing from the journal");
        let twice: Vec<_> = ours.iter().filter(|(_, n)| **n > 1).take(5).collect();
        assert!(twice.is_empty(), "journaled more than once: {twice:?}");
    }
}

/// An officer's request while the engine's intake is full. The journal is
/// held by another writer, so nothing is acknowledged: the journal's queue
/// fills, the engine's thread waits on it, and its intake fills behind (a
/// window of 60,000 lets the broker send more than both queues hold). The
/// request then waits for the engine on a queue of its own and is answered
/// once the journal moves again; sharing the intake's queue, it was refused
/// at once ("the engine is busy; retry").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_is_answered_while_the_engines_intake_is_full() {
    let Some(own) = OwnMosquitto::start(60_000) else {
        return;
    };
    let broker = Broker::External(format!("mqtt://127.0.0.1:{}", own.port));
    let cases: Vec<TestCase> = (0..CASES).map(|_| TestCase::new("medium")).collect();
    let all: Vec<&TestCase> = cases.iter().collect();
    let kordon = Kordon::start(&broker, &all).await;
    let http = reqwest::Client::new();
    let intruder = rusqlite::Connection::open(kordon.journal_path()).unwrap();
    intruder.execute_batch("BEGIN IMMEDIATE").unwrap();

    let (lat, lon) = north(HOME, 20_000.0);
    let base = Timestamp::now() - SignedDuration::from_mins(20);
    let Publisher { client, .. } =
        Publisher::new(&broker, format!("full-{}", cases[0].id), 1000, 1000).await;
    let devices: Vec<String> = cases.iter().map(|c| c.offender.clone()).collect();
    let publishing = tokio::spawn(async move {
        for n in 0..40_000usize {
            let ts = base + SignedDuration::from_millis(n as i64 * 10);
            let payload = format!(r#"{{"ts":"{ts}","lat":{lat:.7},"lon":{lon:.7},"acc":5.0}}"#);
            let topic = format!("kordon/v1/devices/{}/fix", devices[n % devices.len()]);
            client
                .publish(topic, QoS::AtLeastOnce, false, payload)
                .await
                .unwrap();
        }
    });
    // The ingest link found the intake full: `/healthz` says so (within
    // a second, the engine held up or not).
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let health = health_text(&http, &kordon).await;
        if health.contains("overloaded since") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the engine's intake never filled: {health}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let asked = Instant::now();
    let request = tokio::spawn({
        let url = format!("{}/api/v1/cases/{}", kordon.http, cases[0].id);
        let http = http.clone();
        async move {
            let response = http
                .get(url)
                .bearer_auth(MONITORING_TOKEN)
                .send()
                .await
                .unwrap();
            let status = response.status();
            (status, response.text().await.unwrap(), asked.elapsed())
        }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    intruder.execute_batch("ROLLBACK").unwrap();
    drop(intruder);
    let (status, body, took) = request.await.unwrap();
    assert_eq!(status, reqwest::StatusCode::OK, "{body}");
    assert!(body.contains(&cases[0].id), "{body}");
    assert!(
        took >= Duration::from_millis(900),
        "answered in {took:?}, while the engine waited on the journal: was the intake full?"
    );
    publishing.await.unwrap();
    kordon.stop().await;
}
