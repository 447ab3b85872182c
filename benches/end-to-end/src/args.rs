//! Command-line flags, and the two sizes of the run (full and `--short`).

use std::path::PathBuf;

pub struct Args {
    pub short: bool,
    pub kordon: Option<PathBuf>,
    pub rates: Vec<u64>,
    pub step_secs: u64,
    pub out: Option<PathBuf>,
    pub cases: usize,
    /// Cases kept for planted breaches (each used once).
    pub breach_pool: usize,
    /// Planted breaches per second while load is offered.
    pub breaches_per_s: u64,
    pub publishers: usize,
    pub ceiling_rate: u64,
    pub ceiling_secs: u64,
    pub overload_secs: u64,
    /// How long a backlog may take to drain, between steps and after the
    /// overload.
    pub drain_timeout_secs: u64,
    /// kordon taking no new fix this long with fixes waiting is a stall.
    pub stall_secs: u64,
    pub engine_rounds: usize,
    pub engine_fixes: usize,
    /// MiB a concurrent `dd` writes during the busy-disk step (0: no such
    /// step).
    pub busy_disk_mib: u64,
    pub keep: bool,
    /// Dashboard consoles following the live stream through the run
    /// (`console.rs`); none unless asked for, so that the figures stay
    /// comparable with runs before this flag.
    pub consoles: usize,
    /// Cluster mode (`--cluster 1,2,3`): the instance counts to measure,
    /// instead of the single-process run (`cluster.rs`).
    pub cluster: Option<Vec<usize>>,
}

const USAGE: &str = "kordon-bench [--short] [--kordon PATH] [--rates 2000,5000,...] \
[--step-secs N] [--out FILE.json] [--cases N] [--breaches-per-s N] [--ceiling-rate N] \
[--overload-secs N] [--busy-disk-mib N] [--consoles N] [--keep] [--cluster 1,2,3]";

impl Args {
    fn full() -> Args {
        Args {
            short: false,
            kordon: None,
            rates: vec![2_000, 5_000, 10_000, 20_000, 30_000, 45_000, 60_000],
            step_secs: 20,
            out: None,
            cases: 10_000,
            breach_pool: 3_000,
            breaches_per_s: 10,
            publishers: 4,
            ceiling_rate: 200_000,
            ceiling_secs: 15,
            overload_secs: 60,
            drain_timeout_secs: 300,
            stall_secs: 60,
            engine_rounds: 5,
            engine_fixes: 200_000,
            busy_disk_mib: 4_096,
            keep: false,
            consoles: 0,
            cluster: None,
        }
    }

    fn short() -> Args {
        Args {
            short: true,
            rates: vec![1_000, 3_000, 20_000],
            step_secs: 5,
            cases: 2_000,
            breach_pool: 600,
            breaches_per_s: 10,
            ceiling_rate: 60_000,
            ceiling_secs: 5,
            overload_secs: 10,
            drain_timeout_secs: 60,
            stall_secs: 30,
            engine_rounds: 3,
            engine_fixes: 50_000,
            busy_disk_mib: 1_024,
            ..Args::full()
        }
    }

    /// Parses the command line; `--short` first sets the short sizes, the
    /// other flags then override them.
    pub fn parse() -> Result<Args, String> {
        let raw: Vec<String> = std::env::args().skip(1).collect();
        let mut args = if raw.iter().any(|a| a == "--short") {
            Args::short()
        } else {
            Args::full()
        };
        let mut it = raw.into_iter();
        while let Some(flag) = it.next() {
            if flag == "--short" || flag == "--keep" {
                args.keep |= flag == "--keep";
                continue;
            }
            if flag == "--help" || flag == "-h" {
                return Err(USAGE.to_string());
            }
            let value = it.next().ok_or(format!("{flag} needs a value\n{USAGE}"))?;
            args.set(&flag, &value)?;
        }
        if args.rates.is_empty() {
            return Err("--rates: at least one rate".into());
        }
        Ok(args)
    }

    fn set(&mut self, flag: &str, value: &str) -> Result<(), String> {
        let number = |v: &str| -> Result<u64, String> {
            v.trim()
                .parse()
                .map_err(|_| format!("{flag}: `{v}` is not a whole number"))
        };
        match flag {
            "--kordon" => self.kordon = Some(PathBuf::from(value)),
            "--out" => self.out = Some(PathBuf::from(value)),
            "--rates" => {
                self.rates = value.split(',').map(number).collect::<Result<_, _>>()?;
            }
            "--step-secs" => self.step_secs = number(value)?.max(2),
            "--cases" => {
                self.cases = number(value)?.max(10) as usize;
                self.breach_pool = self.cases * 3 / 10;
            }
            "--breaches-per-s" => self.breaches_per_s = number(value)?,
            "--ceiling-rate" => self.ceiling_rate = number(value)?,
            "--overload-secs" => self.overload_secs = number(value)?.max(1),
            "--busy-disk-mib" => self.busy_disk_mib = number(value)?,
            "--consoles" => self.consoles = number(value)?.min(16) as usize,
            "--cluster" => {
                let counts: Vec<usize> = value
                    .split(',')
                    .map(|v| number(v).map(|n| n as usize))
                    .collect::<Result<_, _>>()?;
                if counts.iter().any(|n| !(1..=16).contains(n)) {
                    return Err("--cluster: instance counts from 1 to 16".into());
                }
                self.cluster = Some(counts);
            }
            other => return Err(format!("unknown flag {other}\n{USAGE}")),
        }
        Ok(())
    }
}
