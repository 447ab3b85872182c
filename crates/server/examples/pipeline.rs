//! The server's path for a fix without the network, to profile kordon's
//! CPU per fix (issue 13) under `valgrind --tool=callgrind` or `perf stat`:
//! MQTT PUBLISH packets as the broker sends them (QoS 1, the end-to-end
//! benchmark's payloads) are read from a buffer with the ingest link's
//! codec, turned into commands by the same [`Intake`], handled by the real
//! engine's thread ([`CoreThread::run`], dashboard feed attached, metrics
//! recorder installed), journaled by the real writer (`durability =
//! full`), and acknowledged with PUBACKs written as the link writes them.
//!
//! ```text
//! cargo run --release -p kordon-server --example pipeline -- [--fixes 100000] [--cases 2000] [--rate 0]
//! ```
//!
//! `--rate N` offers N fixes a second (in 1 ms slots) instead of as fast as
//! the engine's thread takes them: the threads then sleep and wake as they
//! do at that load, which CPU per fix includes. It prints the fixes handled, the PUBACKs written, the wall time and the
//! process's CPU per fix. The devices wander far from every ban, as in the
//! end-to-end benchmark's steady load: no alerts.

use std::collections::HashMap;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use jiff::Timestamp;
use kordon_alert::{AlertDesk, AlertSettings};
use kordon_core::{Case, Engine, EngineConfig};
use kordon_ingest::broker::MAX_MQTT_PACKET;
use kordon_ingest::{Decoder, Limits};
use kordon_journal::{Durability, GroupCommit, Journal, Record, SnapshotStore, Writer};
use kordon_server::core_thread::{AfterCommit, Command, CoreThread, Outlets, Upkeep};
use kordon_server::dispatch::Dispatch;
use kordon_server::live::Feed;
use kordon_server::mqtt::{Intake, Receipt, ENGINE_QUEUE};
use rumqttc::mqttbytes::v4::{Packet, Publish};
use rumqttc::QoS;

/// The ingest link's first (and only) connection.
const CONNECTION: u64 = 1;

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().expect("a number"))
        .unwrap_or(default)
}

fn home(case: u64) -> (f64, f64) {
    (
        51.85 + (case / 40) as f64 * 0.004,
        4.35 + (case % 40) as f64 * 0.006,
    )
}

fn case(n: u64) -> Case {
    let (lat, lon) = home(n);
    Case::from_json(&format!(
        r#"{{"id": "BENCH-{n:05}", "risk": "medium",
            "offender": {{"device": "OFF-{n:05}"}},
            "protected": [{{"id": "P1", "device": "VIC-{n:05}"}}],
            "orders": [{{"id": "home", "legal_basis": "bench", "valid_from": "2026-01-01T00:00:00Z",
                "rule": {{"type": "exclusion_zone", "warning_buffer_m": 100,
                          "geometry": {{"type": "Point", "coordinates": [{lon}, {lat}], "radius_m": 200}}}}}}]}}"#
    ))
    .expect("a case")
}

/// The broker's bytes for `fixes` fixes of the cases' devices, offenders
/// and victims in turn, each about a metre on from its last and 3 km
/// north of its home, stamped `now`.
fn wire(fixes: u64, cases: u64, now: Timestamp) -> BytesMut {
    let mut out = BytesMut::new();
    let ts = now.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
    for n in 0..fixes {
        let device = n % (2 * cases);
        let seq = n / (2 * cases);
        let (role, case) = if device < cases {
            ("OFF", device)
        } else {
            ("VIC", device - cases)
        };
        let (lat, lon) = home(case);
        let lat = lat + (3000.0 + (seq % 100) as f64) / 111_195.0;
        let payload = format!(
            r#"{{"ts":"{ts}","lat":{lat:.6},"lon":{lon:.6},"acc":5.0,"seq":{seq},"speed":1.0,"batt":87}}"#
        );
        let topic = format!("kordon/v1/devices/{role}-{case:05}/fix");
        let mut publish = Publish::new(topic, QoS::AtLeastOnce, payload);
        publish.pkid = (n % 65_535 + 1) as u16;
        Packet::Publish(publish)
            .write(&mut out, MAX_MQTT_PACKET)
            .expect("a publish encodes");
    }
    out
}

fn process_cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
    (ticks(11).unwrap_or(0.0) + ticks(12).unwrap_or(0.0)) / 100.0
}

fn main() {
    let fixes = arg("--fixes", 100_000);
    let cases = arg("--cases", 2_000);
    let rate = arg("--rate", 0);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let _ = kordon_server::metrics::handle();

    let start = Timestamp::now();
    let mut core = engine_with_cases(cases, start, dir.path());
    let (receipts_tx, receipts_rx) = std_mpsc::channel::<Vec<Receipt>>();
    let writer = journal_writer(dir.path(), receipts_tx);
    let (publisher, mut published) = tokio::sync::mpsc::channel(16_384);
    let drain = named(
        "publisher",
        move || while published.blocking_recv().is_some() {},
    );
    core.go_live(Outlets {
        journal: writer.sender(),
        publisher,
        dispatch: Dispatch::new("kordon@bench", None),
        snapshots: writer.snapshot_gate(),
    });
    let (core_tx, core_rx) = crossbeam_channel::bounded(ENGINE_QUEUE);
    let core_thread = named("engine", move || core.run(core_rx, None));

    let mut read = wire(fixes, cases, start);
    let mut intake = Intake::new(
        core_tx.clone(),
        Decoder::new(Limits::default(), HashMap::new()),
    );
    intake.connected(CONNECTION, &kordon_server::health::Health::default());
    let acker = named("acks", move || write_acks(receipts_rx));

    let (cpu, threads, started) = (process_cpu_secs(), thread_cpu_secs(), Instant::now());
    let mut handled = 0u64;
    while let Ok(packet) = Packet::read(&mut read, MAX_MQTT_PACKET) {
        let Packet::Publish(publish) = packet else {
            panic!("only publishes were written");
        };
        let command = intake.command(publish, Timestamp::now());
        core_tx.send(command).expect("the engine's thread runs");
        handled += 1;
        pace(rate, handled, started);
        if handled.is_multiple_of(10_000) {
            let at = Timestamp::now();
            core_tx
                .send(Command::Tick {
                    at,
                    intake_held: false,
                })
                .expect("the engine's thread runs");
        }
    }
    drop((core_tx, intake));
    // Read while the threads still run (an ended thread's figures go with
    // it): flat out, what is still queued is left out of them.
    let threads = thread_cpu_secs()
        .into_iter()
        .map(|(name, secs)| {
            let before = threads.get(&name).copied().unwrap_or(0.0);
            (name, secs - before)
        })
        .collect::<Vec<_>>();
    core_thread.join().expect("the engine's thread ends");
    let journal = writer.finish();
    let acks = acker.join().expect("the acknowledgements end");
    drain.join().expect("the publisher ends");
    let (wall, cpu) = (started.elapsed(), process_cpu_secs() - cpu);
    println!(
        "{handled} fixes, {acks} PUBACKs, {} records; {:.2} s wall ({:.0} fixes/s), {:.1} µs CPU per fix",
        journal.head().0,
        wall.as_secs_f64(),
        handled as f64 / wall.max(Duration::from_micros(1)).as_secs_f64(),
        cpu * 1e6 / handled as f64,
    );
    let per_fix = threads
        .iter()
        .map(|(name, secs)| format!("{name} {:.1}", secs * 1e6 / handled as f64))
        .collect::<Vec<_>>();
    println!("µs CPU per fix by thread: {}", per_fix.join(", "));
}

fn named<T: Send + 'static>(
    name: &str,
    run: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(run)
        .expect("a thread")
}

/// Each thread's CPU time so far (user and system) in seconds, by name.
fn thread_cpu_secs() -> std::collections::BTreeMap<String, f64> {
    let mut by_name = std::collections::BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return by_name;
    };
    for task in tasks.flatten() {
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
        let secs = (ticks(11).unwrap_or(0.0) + ticks(12).unwrap_or(0.0)) / 100.0;
        *by_name
            .entry(stat[open + 1..close].to_string())
            .or_insert(0.0) += secs;
    }
    by_name
}

/// The engine's thread with `cases` cases in force and the dashboard's
/// feed attached, as the server starts it (not yet live).
fn engine_with_cases(cases: u64, start: Timestamp, dir: &std::path::Path) -> CoreThread {
    let mut core = CoreThread::new(
        Engine::new(EngineConfig::default()),
        AlertDesk::new(AlertSettings::default()),
        dir.join("cases"),
        Upkeep {
            snapshot_every_records: u64::MAX,
            snapshot_every_s: i64::MAX,
            retention_days: None,
            keep_around_episode_s: 0,
        },
    );
    for n in 0..cases {
        core.replay(Record::CaseUpsert {
            case: case(n),
            at: start,
        });
    }
    core.attach_feed(Feed::new(120));
    core
}

/// The journal writer with `[journal]`'s defaults (`durability = full`),
/// handing each commit's receipts to `receipts` as the server does.
fn journal_writer(
    dir: &std::path::Path,
    receipts: std_mpsc::Sender<Vec<Receipt>>,
) -> Writer<Vec<AfterCommit>> {
    let (journal, _) = Journal::open(&dir.join("journal.db"), Durability::Full).expect("a journal");
    Writer::spawn(
        journal,
        SnapshotStore::new(dir),
        GroupCommit {
            max_records: 4096,
            linger: Duration::from_millis(
                kordon_server::config::JournalConfig::default().linger_ms,
            ),
            ..GroupCommit::default()
        },
        move |_, batches: Vec<Vec<AfterCommit>>| {
            let batch = batches
                .into_iter()
                .flatten()
                .filter_map(|waiting| match waiting {
                    AfterCommit::Ack(receipt) => Some(receipt),
                    AfterCommit::Reply(reply) => {
                        reply.send();
                        None
                    }
                })
                .collect();
            let _ = receipts.send(batch);
            Vec::new()
        },
    )
}

/// At `rate` fixes a second (none: no pause), waits at the end of each
/// millisecond's share until that millisecond is over.
fn pace(rate: u64, handled: u64, started: Instant) {
    let per_slot = (rate / 1000).max(1);
    if rate == 0 || !handled.is_multiple_of(per_slot) {
        return;
    }
    let due = started + Duration::from_micros(handled * 1_000_000 / rate);
    if let Some(wait) = due.checked_duration_since(Instant::now()) {
        std::thread::sleep(wait);
    }
}

/// Writes each commit's PUBACKs into a buffer as the ingest link does;
/// returns how many.
fn write_acks(receipts: std_mpsc::Receiver<Vec<Receipt>>) -> u64 {
    let mut out = BytesMut::new();
    let mut acks = 0;
    for batch in receipts {
        for receipt in batch {
            if let Some(ack) = receipt.acknowledgement(CONNECTION) {
                ack.write(&mut out, MAX_MQTT_PACKET)
                    .expect("an ack encodes");
                acks += 1;
            }
        }
        out.clear();
    }
    acks
}
