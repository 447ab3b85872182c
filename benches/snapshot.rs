//! The engine thread's snapshot: how large it is per case, and how long the
//! engine's thread stops for it.
//!
//! The workload is the end-to-end benchmark's (issue 13): every case has a
//! 200 m exclusion zone around her home and a contact ban (warning 1,000 m,
//! alarm 500 m); both devices have sent a few rounds of fixes, so tracks,
//! histories and sequence windows are filled as they are in service.
//!
//! ```text
//! cargo bench -p kordon-benches --bench snapshot
//! ```
//!
//! `KORDON_BENCH_QUICK=1` takes 1,000 cases instead of 10,000.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use kordon_alert::{AlertDesk, AlertSettings};
use kordon_core::{
    Case, CaseId, DeviceId, Engine, EngineConfig, Fix, Offender, Order, OrderId, PersonId,
    ProtectedPerson, RiskLevel, Rule, ZoneGeometry,
};
use kordon_journal::Record;
use kordon_server::core_thread::{CoreThread, Upkeep};

fn t0() -> Timestamp {
    "2026-11-25T10:00:00Z".parse().expect("a timestamp")
}

/// Her home for case `i`: a grid over Rotterdam, 300 m apart.
fn home(i: usize) -> (f64, f64) {
    (
        51.85 + (i % 100) as f64 * 0.0027,
        4.35 + (i / 100) as f64 * 0.0044,
    )
}

fn case(i: usize) -> Case {
    let (lat, lon) = home(i);
    let order = |id: &str, rule: Rule| Order {
        id: OrderId::from(id),
        legal_basis: "art. 38v Sr".into(),
        valid_from: "2026-01-01T00:00:00Z".parse().expect("a timestamp"),
        valid_until: None,
        rule,
    };
    Case {
        id: CaseId::new(format!("RTM-{i:06}")),
        risk: RiskLevel::Medium,
        offender: Offender {
            device: DeviceId::new(format!("OFF-{i:06}")),
            language: Default::default(),
            registered_address: None,
        },
        protected: vec![ProtectedPerson {
            id: PersonId::from("P1"),
            device: Some(DeviceId::new(format!("VIC-{i:06}"))),
            language: Default::default(),
            places: Vec::new(),
        }],
        coordinators: vec![],
        orders: vec![
            order(
                "home",
                Rule::ExclusionZone {
                    geometry: ZoneGeometry::Circle {
                        coordinates: [lon, lat],
                        radius_m: 200.0,
                    },
                    warning_buffer_m: Some(250.0),
                    schedule: None,
                    around: Some(PersonId::from("P1")),
                    bracelet_warnings: None,
                },
            ),
            order(
                "contact",
                Rule::ContactBan {
                    protected: PersonId::from("P1"),
                    warning_radius_m: 1000.0,
                    alarm_radius_m: 500.0,
                },
            ),
        ],
    }
}

/// A thread state with `n` cases after `rounds` fixes from each device: the
/// victim at home, the offender 3 km east of her.
fn state(n: usize, rounds: usize) -> CoreThread {
    let upkeep = Upkeep {
        snapshot_every_records: u64::MAX,
        snapshot_every_s: i64::MAX,
        retention_days: None,
        keep_around_episode_s: 0,
    };
    let config = EngineConfig::default();
    let desk = AlertDesk::new(AlertSettings::default());
    let mut thread = CoreThread::new(Engine::new(config), desk, PathBuf::from("cases"), upkeep);
    for i in 0..n {
        thread.replay(Record::CaseUpsert {
            case: case(i),
            at: t0(),
        });
    }
    for round in 0..rounds {
        let ts = t0() + SignedDuration::from_secs(15 * (round as i64 + 1));
        for i in 0..n {
            let (lat, lon) = home(i);
            let wobble = round as f64 * 0.00001;
            for (device, lon) in [
                (format!("VIC-{i:06}"), lon),
                (format!("OFF-{i:06}"), lon + 0.044),
            ] {
                let fix = Fix {
                    device: DeviceId::new(device),
                    ts,
                    lat: lat + wobble,
                    lon,
                    accuracy_m: 8.0,
                    speed_mps: Some(1.2),
                    heading_deg: Some(90.0),
                    battery_pct: Some(80),
                    strap: None,
                    seq: Some(round as u64 + 1),
                };
                thread.replay(Record::Fix { fix, received: ts });
            }
        }
    }
    thread
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    let quick = std::env::var_os("KORDON_BENCH_QUICK").is_some();
    let n = if quick { 1_000 } else { 10_000 };
    let thread = state(n, 10);
    let mut bytes = 0;
    let mut copied = Vec::new();
    let mut serialised = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let copy = thread.state_copy();
        copied.push(started.elapsed());
        let started = Instant::now();
        bytes = copy.serialise().len();
        serialised.push(started.elapsed());
    }
    let (copied, serialised) = (median(copied), median(serialised));
    println!(
        "snapshot of {n} cases, {} devices: {bytes} bytes ({:.0} bytes per case); medians of 5: the engine's thread stops {:.2} ms to copy the state, the snapshot thread serialises it in {:.2} ms",
        2 * n,
        bytes as f64 / n as f64,
        copied.as_secs_f64() * 1e3,
        serialised.as_secs_f64() * 1e3,
    );
    // As the journal stores it: compressed, on the snapshot thread.
    let dir = tempfile::tempdir().expect("a temporary directory");
    let state = thread.state_copy().serialise();
    let started = Instant::now();
    let stored = kordon_journal::SnapshotStore::new(dir.path())
        .write(1, [0; 32], &state)
        .expect("the snapshot is written");
    println!(
        "  stored compressed: {stored} bytes ({:.0} bytes per case), written in {:.0} ms",
        stored as f64 / n as f64,
        started.elapsed().as_secs_f64() * 1e3,
    );
    for (part, size) in thread.snapshot_parts() {
        println!(
            "  {part}: {size} bytes ({:.0} per case)",
            size as f64 / n as f64
        );
    }
}
