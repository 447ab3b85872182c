//! The engine's own cost per fix, measured in this run: a
//! `kordon_core::Engine` in this process with the same cases, timing
//! `ingest_fix` over the same devices' wandering fixes (planted breaches
//! left out: they are a few per thousand). The median of several rounds
//! is the yardstick kordon's CPU per fix is divided by.
//!
//! The rounds are taken twice, before kordon's part of the run and after
//! it, with nothing else of the benchmark running: on a shared host the
//! same rounds measured 467 and 1,064 ns ten minutes apart (2026-12-05),
//! so a yardstick taken only at the start moved the ratio of one binary
//! from 14× to 31×.

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

impl EngineCost {
    /// This measurement's rounds followed by `after`'s, and the median of
    /// all of them.
    pub fn and_after(mut self, after: EngineCost) -> EngineCost {
        debug_assert_eq!(self.fixes_per_round, after.fixes_per_round);
        self.rounds.extend(after.rounds);
        self.ns_per_fix = median(&self.rounds);
        self
    }
}

/// The middle round, or the mean of the middle two: the upper one of an
/// even count would lean every ratio towards the slower half.
fn median(rounds: &[f64]) -> f64 {
    let mut sorted = rounds.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    match sorted.len() % 2 {
        1 => sorted[mid],
        _ => (sorted[mid - 1] + sorted[mid]) / 2.0,
    }
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
    Ok(EngineCost {
        ns_per_fix: median(&results),
        rounds: results,
        fixes_per_round: per_round,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_yardstick_is_the_median_of_the_rounds_before_and_after() {
        let cost = |rounds: &[f64]| EngineCost {
            ns_per_fix: median(rounds),
            rounds: rounds.to_vec(),
            fixes_per_round: 10,
        };
        let before = cost(&[470.0, 450.0, 520.0]);
        assert_eq!(before.ns_per_fix, 470.0);
        let both = before.and_after(cost(&[1_060.0, 990.0, 1_100.0]));
        assert_eq!(
            both.rounds[..2],
            [470.0, 450.0],
            "the rounds before come first"
        );
        assert_eq!(both.rounds.len(), 6);
        assert_eq!(both.ns_per_fix, 755.0, "between 520 and 990");
    }
}
