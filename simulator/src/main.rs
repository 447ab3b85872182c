//! `kordon-sim`: record simulated Rotterdam days, or publish them live.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand};
use kordon_sim::sim::default_start;
use kordon_sim::{generate, Recording, Scenario, SimConfig, World};

#[derive(Parser)]
#[command(
    name = "kordon-sim",
    version,
    about = "The Rotterdam simulator for kordon"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct Sim {
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long, default_value_t = 10)]
    pairs: u32,
    #[arg(long, default_value_t = 24, conflicts_with = "days")]
    hours: u32,
    /// Whole days instead of hours (`--days 7`: a week, for weekly patterns).
    #[arg(long)]
    days: Option<u32>,
    /// A scenario file (simulator/scenarios/*.toml); the standard day if none.
    #[arg(long)]
    scenario: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Write every message the devices would publish, and the ground truth.
    Record {
        #[command(flatten)]
        sim: Sim,
        #[arg(long)]
        out: PathBuf,
    },
    /// Publish today's simulation to a broker from the current time of day
    /// on, at real time × `speed` (and record it too, with `--out`). Above
    /// speed 1 kordon's clock must keep pace: see `kordon demo`.
    Run {
        #[command(flatten)]
        sim: Sim,
        #[arg(long, default_value = "mqtt://127.0.0.1:1884")]
        broker: String,
        #[arg(long, default_value_t = 1.0)]
        speed: f64,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Build the road graph and report its connectivity.
    Graph,
}

fn simulate(sim: &Sim, start: jiff::Timestamp) -> Result<Recording, String> {
    let (scenario, text) = match &sim.scenario {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            (
                Scenario::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?,
                text,
            )
        }
        None => (
            Scenario::standard(),
            include_str!("../scenarios/standard_day.toml").to_string(),
        ),
    };
    let started = Instant::now();
    let (world, connectivity) = World::load().map_err(|e| format!("geodata: {e}"))?;
    eprintln!(
        "road graph: {connectivity} ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
    let config = SimConfig {
        seed: sim.seed,
        pairs: sim.pairs,
        hours: sim.days.map_or(sim.hours, |d| d.saturating_mul(24)),
        start,
        scenario,
        scenario_text: text,
    };
    let started = Instant::now();
    let recording = generate(&world, &config);
    eprintln!(
        "scenario {}: {} pairs × {} h: {} messages ({} fixes), {} truth episodes ({:.1} s)",
        recording.scenario,
        recording.pairs,
        recording.hours,
        recording.messages.len(),
        recording.fixes(),
        recording.truth.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(recording)
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Record { sim, out } => simulate(&sim, default_start()).and_then(|r| {
            r.write(&out)
                .map_err(|e| format!("{}: {e}", out.display()))?;
            eprintln!("written to {}", out.display());
            Ok(())
        }),
        Command::Run {
            sim,
            broker,
            speed,
            out,
        } => run(&sim, &broker, speed, out),
        Command::Graph => World::load()
            .map(|(_, c)| println!("{c}"))
            .map_err(|e| e.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kordon-sim: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(sim: &Sim, broker: &str, speed: f64, out: Option<PathBuf>) -> Result<(), String> {
    if !(speed.is_finite() && speed > 0.0) {
        return Err("--speed must be positive".into());
    }
    // Today from local midnight, published from now on: never in the future.
    let now = jiff::Timestamp::now();
    let recording = simulate(sim, kordon_sim::live::midnight_before(now))?;
    if let Some(out) = &out {
        recording
            .write(out)
            .map_err(|e| format!("{}: {e}", out.display()))?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let stop = tokio::sync::watch::channel(false);
        let publishing =
            kordon_sim::live::publish(recording, broker, speed, now.as_millisecond(), stop.1);
        tokio::select! {
            result = publishing => result,
            _ = tokio::signal::ctrl_c() => {
                let _ = stop.0.send(true);
                eprintln!("stopped");
                Ok(())
            }
        }
    })?;
    Ok(())
}
