//! Benchmarks of the engine's hot path and spatial queries, and a measured
//! memory cost per case.
//!
//! Every case has two 50-vertex exclusion polygons with warning buffers (her
//! home and her work) and a contact ban; homes, work places and offenders are
//! spread over a 30 × 30 km box around Rotterdam. Each device reports every
//! 15 s from near its last position, offenders and protected persons alike,
//! so every fix runs the plausibility check, both zones' quick rejection (or
//! exact test when near) and a contact-ban distance.
//!
//! ```text
//! cargo bench -p kordon-benches --bench engine
//! ```

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use jiff::{SignedDuration, Timestamp};
use kordon_core::{
    Case, CaseId, DeviceId, Engine, EngineConfig, Fix, Offender, Order, OrderId, PersonId,
    ProtectedPerson, RiskLevel, Rule, ZoneGeometry,
};

/// Counts live heap bytes, so memory per case is measured, not estimated.
#[path = "shared/counting_alloc.rs"]
mod counting_alloc;

/// Rotterdam: the 30 km × 30 km box of the ingest benchmark.
const ROTTERDAM: Area = Area {
    centre: (51.92, 4.47),
    half_m: 15_000.0,
};
/// A national spread: 240 km × 240 km around the middle of the Netherlands.
const NETHERLANDS: Area = Area {
    centre: (52.2, 5.3),
    half_m: 120_000.0,
};
const INTERVAL_S: i64 = 15;

#[derive(Clone, Copy)]
struct Area {
    centre: (f64, f64),
    half_m: f64,
}

/// A small deterministic generator (SplitMix64): benchmarks must not vary.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }
    fn point_in(&mut self, area: Area) -> (f64, f64) {
        let half_lat = area.half_m / 111_200.0;
        let half_lon = area.half_m / (111_320.0 * area.centre.0.to_radians().cos());
        (
            area.centre.0 + self.range(-half_lat, half_lat),
            area.centre.1 + self.range(-half_lon, half_lon),
        )
    }
}

fn t0() -> Timestamp {
    "2026-11-25T10:00:00Z".parse().unwrap()
}

/// A star-shaped 50-vertex polygon (51 positions, closed) around `centre`.
fn polygon(rng: &mut Rng, centre: (f64, f64)) -> ZoneGeometry {
    let scale = rng.range(150.0, 600.0);
    let mut ring: Vec<[f64; 2]> = (0..50)
        .map(|i| {
            let angle = i as f64 / 50.0 * std::f64::consts::TAU;
            let r = scale * rng.range(0.6, 1.0);
            [
                centre.1 + r * angle.sin() / 68_700.0,
                centre.0 + r * angle.cos() / 111_200.0,
            ]
        })
        .collect();
    ring.push(ring[0]);
    ZoneGeometry::Polygon {
        coordinates: vec![ring],
    }
}

struct World {
    cases: Vec<Case>,
    /// Every device and where it lives.
    devices: Vec<(DeviceId, (f64, f64))>,
}

fn world(n: usize, area: Area) -> World {
    let mut rng = Rng(42);
    let mut cases = Vec::with_capacity(n);
    let mut devices = Vec::with_capacity(2 * n);
    let order = |id: &str, rule: Rule| Order {
        id: OrderId::from(id),
        legal_basis: "art. 38v Sr".into(),
        valid_from: "2026-01-01T00:00:00Z".parse().unwrap(),
        valid_until: Some("2028-01-01T00:00:00Z".parse().unwrap()),
        rule,
    };
    for i in 0..n {
        let offender = DeviceId::new(format!("OFF-{i:06}"));
        let victim = DeviceId::new(format!("VIC-{i:06}"));
        let her_home = rng.point_in(area);
        let her_work = rng.point_in(area);
        devices.push((offender.clone(), rng.point_in(area)));
        devices.push((victim.clone(), her_home));
        cases.push(Case {
            id: CaseId::new(format!("RTM-{i:06}")),
            risk: RiskLevel::Medium,
            offender: Offender {
                device: offender,
                language: Default::default(),
                registered_address: None,
            },
            protected: vec![ProtectedPerson {
                id: PersonId::from("P1"),
                device: Some(victim),
                language: Default::default(),
                places: Vec::new(),
            }],
            coordinators: vec![],
            orders: vec![
                order(
                    "home",
                    Rule::ExclusionZone {
                        geometry: polygon(&mut rng, her_home),
                        warning_buffer_m: Some(250.0),
                        schedule: None,
                        around: Some(PersonId::from("P1")),
                        bracelet_warnings: None,
                    },
                ),
                order(
                    "work",
                    Rule::ExclusionZone {
                        geometry: polygon(&mut rng, her_work),
                        warning_buffer_m: Some(200.0),
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
                        alarm_radius_m: 300.0,
                    },
                ),
            ],
        });
    }
    World { cases, devices }
}

/// An engine with the world's cases, after `rounds` rounds of fixes, and
/// the stream to go on with.
fn load(world: &World, rounds: usize) -> (Engine, FixStream<'_>) {
    let mut engine = Engine::new(EngineConfig::default());
    for case in &world.cases {
        engine.upsert_case(case.clone(), t0()).expect("valid case");
    }
    let mut stream = FixStream {
        devices: &world.devices,
        next: 0,
        rng: Rng(7),
    };
    for _ in 0..rounds {
        for fix in stream.take(world.devices.len() as u64) {
            engine.ingest_fix(&fix).expect("accepted");
        }
    }
    (engine, stream)
}

/// Fixes in arrival order: device after device, every device once per
/// 15 s round, each within 20 m of where it lives.
struct FixStream<'a> {
    devices: &'a [(DeviceId, (f64, f64))],
    next: u64,
    rng: Rng,
}

impl FixStream<'_> {
    fn take(&mut self, count: u64) -> Vec<Fix> {
        let n = self.devices.len() as u64;
        (0..count)
            .map(|_| {
                let k = self.next;
                self.next += 1;
                let (device, (lat, lon)) = &self.devices[(k % n) as usize];
                let round = (k / n) as i64;
                let ts = t0()
                    .checked_add(SignedDuration::from_secs(round * INTERVAL_S))
                    .unwrap()
                    .checked_add(SignedDuration::from_millis((k % n) as i64 % 14_000))
                    .unwrap();
                let jitter = 20.0;
                let mut fix = Fix::new(
                    device.clone(),
                    ts,
                    lat + self.rng.range(-jitter, jitter) / 111_200.0,
                    lon + self.rng.range(-jitter, jitter) / 68_700.0,
                    self.rng.range(5.0, 25.0),
                );
                fix.seq = Some(round as u64);
                fix
            })
            .collect()
    }
}

fn bench_ingest(c: &mut Criterion, sizes: &[usize]) {
    let mut group = c.benchmark_group("ingest_fix");
    group.throughput(Throughput::Elements(1));
    let mut ticks = Vec::new();
    for &n in sizes {
        let world = world(n, ROTTERDAM);
        // One round so every device has a position to be judged from.
        let (mut engine, mut stream) = load(&world, 1);
        group.bench_function(BenchmarkId::new("cases", n), |b| {
            b.iter_custom(|iters| {
                let fixes = stream.take(iters);
                let start = Instant::now();
                for fix in &fixes {
                    let _ = black_box(engine.ingest_fix(black_box(fix)));
                }
                start.elapsed()
            })
        });
        // The once-a-second sweep over every device and order, at the time
        // of the latest fix, so nothing is due: the steady-state cost.
        let now = stream.take(1)[0].ts;
        ticks.push((n, engine, now));
    }
    group.finish();
    let mut group = c.benchmark_group("tick");
    for (n, mut engine, now) in ticks {
        group.bench_function(BenchmarkId::new("nothing_due", n), |b| {
            b.iter(|| black_box(engine.tick(now)).len())
        });
        // The worst second there is: every device falls silent at once and
        // all of them come due in one tick.
        let silence = now.checked_add(SignedDuration::from_secs(3600)).unwrap();
        let start = Instant::now();
        let events = engine.tick(silence).len();
        println!(
            "tick/all_due/{n}: {:.1} ms for the tick in which all {} devices fell silent ({events} events)",
            start.elapsed().as_secs_f64() * 1e3,
            engine.device_count(),
        );
    }
    group.finish();
}

fn bench_queries(c: &mut Criterion, n: usize) {
    let mut group = c.benchmark_group("queries");
    for (name, area) in [("netherlands", NETHERLANDS), ("rotterdam", ROTTERDAM)] {
        let world = world(n, area);
        let (mut engine, _) = load(&world, 1);
        let mut rng = Rng(99);
        let points: Vec<(f64, f64)> = (0..4096).map(|_| rng.point_in(area)).collect();
        let bans: usize = points
            .iter()
            .map(|&(lat, lon)| engine.bans_at(lat, lon, t0()).len())
            .sum();
        let near: usize = points
            .iter()
            .map(|&(lat, lon)| engine.devices_near(lat, lon, 500.0).len())
            .sum();
        println!(
            "queries/{name}: {} zones, {} devices; a point has on average {:.1} bans and {:.1} devices within 500 m",
            2 * n,
            engine.device_count(),
            bans as f64 / points.len() as f64,
            near as f64 / points.len() as f64,
        );
        let mut i = 0;
        group.bench_function(
            BenchmarkId::new("bans_at", format!("{name}/{}_zones", 2 * n)),
            |b| {
                b.iter(|| {
                    let (lat, lon) = points[i % points.len()];
                    i += 1;
                    black_box(engine.bans_at(lat, lon, t0()))
                })
            },
        );
        group.bench_function(
            BenchmarkId::new(
                "devices_near_500m",
                format!("{name}/{}_devices", engine.device_count()),
            ),
            |b| {
                b.iter(|| {
                    let (lat, lon) = points[i % points.len()];
                    i += 1;
                    black_box(engine.devices_near(lat, lon, 500.0))
                })
            },
        );
    }
    group.finish();
}

/// Live heap bytes per case, cases and device positions included.
fn report_memory(n: usize) {
    let world = world(n, ROTTERDAM);
    // Ten rounds fill every device's history, as in steady operation.
    let ((engine, _), bytes) = counting_alloc::held_by(|| load(&world, 10));
    println!(
        "memory: {n} cases, {} devices: {} bytes live in the engine, {} bytes per case",
        engine.device_count(),
        bytes,
        bytes / n
    );
    drop(engine);
}

/// `KORDON_BENCH_QUICK=1` runs tiny worlds briefly (CI proves the bench
/// runs); `KORDON_BENCH_CASES=10000,100000` picks the ingest sizes.
fn main() {
    let quick = std::env::var_os("KORDON_BENCH_QUICK").is_some();
    let sizes: Vec<usize> = match std::env::var("KORDON_BENCH_CASES") {
        Ok(list) => list
            .split(',')
            .filter_map(|n| n.trim().parse().ok())
            .collect(),
        Err(_) if quick => vec![1_000],
        Err(_) => vec![10_000, 100_000],
    };
    let query_n = if quick { 1_000 } else { 50_000 };
    report_memory(*sizes.iter().max().unwrap_or(&1_000));
    let mut c = Criterion::default()
        .measurement_time(Duration::from_secs(if quick { 1 } else { 8 }))
        .configure_from_args();
    bench_ingest(&mut c, &sizes);
    bench_queries(&mut c, query_n);
    c.final_summary();
}
