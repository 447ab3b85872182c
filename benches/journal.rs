//! Journal figures, printed:
//!
//! 1. Group commit under an offered load of 100,000 fixes/s: one job per
//!    fix (its record and its broker ack), as the engine's thread sends
//!    them, through the real writer thread; commit latency (from handing
//!    the job over to its commit) p50/p99/max, achieved records/s, and
//!    records per commit; with `durability = full` (fsync per commit) and
//!    `process`.
//! 2. The cost of appending, by commit size: CPU per fix and bytes written
//!    per fix (`/proc/self/io`, WAL and checkpoints) for fixes of 10,000
//!    cases, each fix a record and a case link, `durability = full`, in
//!    commits of 30 (about 10,000 fixes/s committed as fast as fsync allows)
//!    and 300. This is the figure behind `[journal] linger_ms`.
//! 3. Recovery: the time from opening a journal (verifying every record and
//!    both chains) through restoring a snapshot and replaying 1,000,000
//!    records after it, with kordon's own recovery code.
//!
//! `KORDON_BENCH_QUICK=1` runs small (CI proves the bench runs).
//! `KORDON_BENCH_APPEND_ONLY=1` runs only 30,000 fixes in commits of 200
//! (about 10,000 fixes/s at the default 20 ms linger), for counting
//! instructions: `valgrind --tool=callgrind
//! --toggle-collect='kordon_journal::store::Journal::append'` (valgrind's
//! CPU has no SHA extensions, so SHA-256 counts there far above its cost).

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use kordon_alert::AlertDesk;
use kordon_core::{Case, CaseId, DeviceId, Engine, EngineConfig, Fix};
use kordon_journal::{Durability, Entry, GroupCommit, Job, Journal, Record, SnapshotStore, Writer};
use kordon_server::core_thread::{CoreThread, Upkeep};
use kordon_server::{recover_state, Config, OnDamagedJournal};

fn t0() -> Timestamp {
    "2026-11-29T03:00:00Z".parse().unwrap()
}

fn fix_record(n: u64, devices: u64) -> Entry {
    let device = n % devices;
    let step = n / devices;
    let ts = t0() + SignedDuration::from_secs(step as i64 * 15);
    // Wandering 2 to 4 km north of the home on the grid: no alerts.
    let (lat, lon) = home(device);
    let lat = lat + (2000.0 + (step % 100) as f64 * 20.0) / 111_195.0;
    Entry::for_cases(
        Record::Fix {
            fix: Fix::new(DeviceId::new(format!("OFF-{device:05}")), ts, lat, lon, 6.5)
                .with_seq(step),
            received: ts + SignedDuration::from_millis(180),
        },
        vec![CaseId::new(format!("RTM-{device:05}"))],
    )
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
        r#"{{"id": "RTM-{n:05}", "risk": "medium",
            "offender": {{"device": "OFF-{n:05}"}},
            "protected": [{{"id": "P1", "device": "VIC-{n:05}"}}],
            "orders": [{{"id": "home", "legal_basis": "bench", "valid_from": "2026-01-01T00:00:00Z",
                "rule": {{"type": "exclusion_zone", "warning_buffer_m": 100,
                          "geometry": {{"type": "Point", "coordinates": [{lon}, {lat}], "radius_m": 200}}}}}}]}}"#
    ))
    .unwrap()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn group_commit(dir: &Path, durability: Durability, offered_per_s: u64, secs: u64) {
    let path = dir.join(format!("load-{durability:?}.db"));
    let (journal, _) = Journal::open(&path, durability).unwrap();
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(
        (offered_per_s * secs) as usize,
    )));
    let commits = Arc::new(Mutex::new(0u64));
    let (lat, com) = (latencies.clone(), commits.clone());
    let writer = Writer::spawn(
        journal,
        SnapshotStore::new(dir),
        GroupCommit::default(),
        move |_, sent: Vec<Instant>| {
            let now = Instant::now();
            *com.lock().unwrap() += 1;
            lat.lock()
                .unwrap()
                .extend(sent.iter().map(|s| now.duration_since(*s).as_secs_f64()));
            Vec::new()
        },
    );
    let jobs = writer.sender();
    let total = offered_per_s * secs;
    let started = Instant::now();
    // Paced in 1 ms slots: 100 jobs each at 100,000/s.
    let per_slot = (offered_per_s / 1000).max(1);
    let mut n = 0;
    while n < total {
        let slot = Instant::now();
        for _ in 0..per_slot.min(total - n) {
            jobs.send(Job::Append {
                entries: vec![fix_record(n, 1000)],
                then: Instant::now(),
            })
            .unwrap();
            n += 1;
        }
        let due = started + Duration::from_micros(n * 1_000_000 / offered_per_s);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let _ = slot;
    }
    drop(jobs);
    let journal = writer.finish();
    let elapsed = started.elapsed();
    let mut l = latencies.lock().unwrap().clone();
    l.sort_by(f64::total_cmp);
    let commits = *commits.lock().unwrap();
    println!(
        "group commit, durability {durability:?}: offered {offered_per_s} fixes/s for {secs} s → {:.0} records/s journaled; \
         commit latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; {commits} commits, {:.0} records per commit; {} bytes on disk",
        journal.head().0 as f64 / elapsed.as_secs_f64(),
        percentile(&l, 0.5) * 1e3,
        percentile(&l, 0.99) * 1e3,
        l.last().unwrap() * 1e3,
        journal.head().0 as f64 / commits as f64,
        std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0)
            + std::fs::metadata(path.with_extension("db-wal")).map(|m| m.len()).unwrap_or(0),
    );
}

fn recovery(dir: &Path, cases: u64, records: u64) {
    let journal_dir = dir.join("recovery");
    let config_path = dir.join("kordon.toml");
    std::fs::write(
        &config_path,
        "[broker]\nembedded = true\n[http]\nlisten = \"127.0.0.1:0\"\n[cases]\ndir = \"cases\"\n\
         [journal]\ndir = \"recovery\"\ndurability = \"process\"\n",
    )
    .unwrap();
    let config = Config::load(&config_path).unwrap();

    // The cases, journaled, and a snapshot after them.
    let (mut journal, _) =
        Journal::open(&journal_dir.join("journal.db"), Durability::Process).unwrap();
    let mut core = CoreThread::new(
        Engine::new(EngineConfig::default()),
        AlertDesk::new(config.alerts.clone()),
        dir.join("cases"),
        Upkeep {
            snapshot_every_records: u64::MAX,
            snapshot_every_s: i64::MAX,
            retention_days: None,
            keep_around_episode_s: 0,
        },
    );
    let upserts: Vec<Entry> = (0..cases)
        .map(|n| {
            let record = Record::CaseUpsert {
                case: case(n),
                at: t0(),
            };
            core.replay(record.clone());
            Entry::for_cases(record, vec![CaseId::new(format!("RTM-{n:05}"))])
        })
        .collect();
    journal.append(&upserts).unwrap();
    let (seq, chain) = journal.head();
    SnapshotStore::new(&journal_dir)
        .write(seq, chain, &core.snapshot_state())
        .unwrap();
    // The records after it: fixes, with a tick every 1,000.
    let mut batch = Vec::with_capacity(10_000);
    for n in 0..records {
        batch.push(if n % 1000 == 999 {
            Entry::new(Record::Tick {
                at: t0() + SignedDuration::from_secs((n / cases) as i64 * 15),
                engine: Default::default(),
            })
        } else {
            fix_record(n, cases)
        });
        if batch.len() == 10_000 {
            journal.append(&batch).unwrap();
            batch.clear();
        }
    }
    journal.append(&batch).unwrap();
    journal.checkpoint().unwrap();
    drop(journal);

    let started = Instant::now();
    let (core, _journal, stats) = recover_state(&config, OnDamagedJournal::Refuse, None).unwrap();
    let total = started.elapsed();
    drop(core);
    println!(
        "recovery: {} records ({cases} cases): {:.2} s in all = verify {:.2} s ({:.0} records/s) + snapshot and replay of {} records {:.2} s ({:.0} records/s)",
        stats.records,
        total.as_secs_f64(),
        stats.verify.as_secs_f64(),
        stats.records as f64 / stats.verify.as_secs_f64(),
        stats.replayed,
        stats.restore.as_secs_f64(),
        stats.replayed as f64 / stats.restore.as_secs_f64(),
    );
}

/// This thread's CPU time (user and system) in seconds.
fn thread_cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// Bytes this process caused to be written to storage.
fn written_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("write_bytes: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn append_cost(dir: &Path, cases: u64, fixes: u64, per_commit: u64) {
    let path = dir.join(format!("append-{per_commit}.db"));
    let (mut journal, _) = Journal::open(&path, Durability::Full).unwrap();
    let (cpu, written, started) = (thread_cpu_secs(), written_bytes(), Instant::now());
    let mut n = 0;
    while n < fixes {
        let batch: Vec<Entry> = (n..n + per_commit).map(|k| fix_record(k, cases)).collect();
        journal.append(&batch).unwrap();
        n += per_commit;
    }
    println!(
        "appending, {cases} cases, commits of {per_commit} fixes: {:.1} µs CPU per fix, {:.0} bytes written per fix, {:.0} fixes/s",
        (thread_cpu_secs() - cpu) * 1e6 / fixes as f64,
        (written_bytes() - written) as f64 / fixes as f64,
        fixes as f64 / started.elapsed().as_secs_f64(),
    );
}

fn main() {
    let quick = std::env::var_os("KORDON_BENCH_QUICK").is_some();
    let dir = tempfile::tempdir().unwrap();
    let (secs, records, appended) = if quick {
        (1, 20_000, 3_000)
    } else {
        (10, 1_000_000, 300_000)
    };
    if std::env::var_os("KORDON_BENCH_APPEND_ONLY").is_some() {
        append_cost(dir.path(), 10_000, 30_000, 200);
        return;
    }
    group_commit(dir.path(), Durability::Full, 100_000, secs);
    group_commit(dir.path(), Durability::Process, 100_000, secs);
    for per_commit in [30, 300] {
        append_cost(dir.path(), 10_000, appended, per_commit);
    }
    recovery(dir.path(), 1000, records);
}
