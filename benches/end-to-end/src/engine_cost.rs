//! The engine's own cost per fix, measured in this run: a
//! `kordon_core::Engine` in this process with the same cases, timing
//! `ingest_fix` over the same devices' wandering fixes (planted breaches
//! left out: they are a few per thousand). The median of several rounds
//! is the yardstick kordon's CPU per fix is divided by.

use std::hint::black_box;
use std::time::Instant;

use jiff::{SignedDuration, Timestamp};
use kordon_core::{Case, DeviceId, Engine, EngineConfig, Fix};

use crate::workload::{Device, World};

pub struct EngineCost {
    pub ns_per_fix: f64,
    pub rounds: Vec<f64>,
    pub fixes_per_round: usize,
}

/// The engine settings kordon runs with in this benchmark.
fn config() -> EngineConfig {
    EngineConfig {
        offline_after_s: 86_400,
        gps_lost_after_s: 86_400,
        ..EngineConfig::default()
    }
}

fn engine(world: &World, now: Timestamp) -> Result<Engine, String> {
    let mut engine = Engine::new(config());
    let valid_from = now - SignedDuration::from_hours(24);
    for i in 0..world.cases {
        let case = Case::from_json(&world.case_json(i, valid_from))
            .map_err(|e| format!("case {i}: {e}"))?;
        engine
            .upsert_case(case, now)
            .map_err(|e| format!("case {i}: {e:?}"))?;
    }
    Ok(engine)
}

/// The next `n` fixes of the workload, `step_us` apart in device time.
fn fixes(devices: &mut [Device], ids: &[DeviceId], n: usize, t: &mut Timestamp) -> Vec<Fix> {
    let step = SignedDuration::from_micros(100);
    (0..n)
        .map(|k| {
            let i = k % devices.len();
            devices[i].seq += 1;
            *t += step;
            let (lat, lon) = devices[i].position();
            let mut fix = Fix::new(ids[i].clone(), *t, lat, lon, 5.0);
            fix.seq = Some(devices[i].seq);
            fix.speed_mps = Some(1.0);
            fix.battery_pct = Some(87);
            fix
        })
        .collect()
}

/// Times `rounds` rounds of `per_round` fixes each.
pub fn measure(world: &World, rounds: usize, per_round: usize) -> Result<EngineCost, String> {
    let rounds = rounds.max(1);
    let now = Timestamp::now() - SignedDuration::from_hours(1);
    let mut engine = engine(world, now)?;
    let mut devices = world.active_devices();
    let ids: Vec<DeviceId> = devices.iter().map(|d| DeviceId::new(&d.name)).collect();
    let mut t = now;
    // One warm-up round: every device's first fix, caches warm.
    let n = devices.len();
    for fix in fixes(&mut devices, &ids, n, &mut t) {
        let _ = engine.ingest_fix(&fix);
    }
    let mut results = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let batch = fixes(&mut devices, &ids, per_round, &mut t);
        let started = Instant::now();
        for fix in &batch {
            let _ = black_box(engine.ingest_fix(black_box(fix)));
        }
        results.push(started.elapsed().as_nanos() as f64 / per_round as f64);
    }
    let mut sorted = results.clone();
    sorted.sort_by(f64::total_cmp);
    Ok(EngineCost {
        ns_per_fix: sorted[sorted.len() / 2],
        rounds: results,
        fixes_per_round: per_round,
    })
}
