//! Cluster mode (`--cluster 1,2,3`, issue 15): the fixes/s 1, 2 and 3
//! kordon instances take on this box, the CPU and memory of each process,
//! and the fix → police alert latency against single-process kordon, in
//! the same run.
//!
//! First single-process kordon at the lowest rate of `--rates` (the
//! default mode's own phases: [`Live`]), the line the latency is compared
//! with. Then for each instance count: a Mosquitto and a `nats-server -js`
//! of its own (no backlog, session or stream shared between counts), the
//! workload's cases stored with `kordon cluster put-cases`, N `kordon run`
//! with a `[cluster]` section, ready once their `/healthz` together list
//! every shard and the split has stayed the same for two leases. Then the
//! generator, a probe (its reject comes back through the bridge, a shard
//! and the deliverer), a warm-up and the rate steps, as in the default mode.
//!
//! Handled fixes are the sum over the instances of `kordon_fixes_total`
//! (redeliveries the engines recognised excluded) and of refusals: each
//! shard's engine counts what it takes, and in this workload a device is
//! in one case, so each fix reaches one shard once.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::args::Args;
use crate::cluster_report::{ClusterReport, CountRun, Line, ProcFigures};
use crate::generator::Generator;
use crate::kordon::{self, Kordon};
use crate::mosquitto::{free_port, Mosquitto};
use crate::nats::NatsServer;
use crate::phases::{self, mib, sleep_s, Live};
use crate::procstat::{self, Cpu};
use crate::report::Drain;
use crate::subscriber::{self, Police, Subscriber};
use crate::workload::World;

/// Shards of a cluster (`[cluster] shards`, its default).
const SHARDS: usize = 64;
/// How long the split of the shards must stay the same before the load
/// begins: two leases, so that hand-overs to preferred instances are done.
const STEADY: Duration = Duration::from_secs(6);

/// The whole cluster mode: single-process line, then each instance count.
pub fn run(
    args: &Args,
    dir: &Path,
    binary: &Path,
    counts: &[usize],
) -> Result<ClusterReport, String> {
    let world = World::new(args.cases, args.breach_pool);
    let rate = args.rates.iter().copied().min().unwrap_or(1_000);
    eprintln!(
        "single-process kordon: {rate} fixes/s for {} s",
        args.step_secs
    );
    let single = single_process(args, &dir.join("single"), binary, &world, rate)?;
    eprintln!("  {}", single.summary());
    kordon::write_cases(dir, &world)?;
    let mut runs = Vec::new();
    for n in counts {
        eprintln!("cluster of {n}:");
        let run_dir = dir.join(format!("cluster-{n}"));
        runs.push(cluster_of(
            args,
            &run_dir,
            binary,
            &world,
            *n,
            &dir.join("cases"),
        )?);
    }
    Ok(ClusterReport {
        cases: world.cases,
        devices: world.active_devices().len(),
        publishers: args.publishers,
        step_secs: args.step_secs,
        single,
        runs,
    })
}

/// Single-process kordon on a Mosquitto of its own, one step at `rate`.
fn single_process(
    args: &Args,
    dir: &Path,
    binary: &Path,
    world: &World,
    rate: u64,
) -> Result<Line, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let broker = Mosquitto::start(dir)?;
    let mut live = Live::start(binary, dir, broker.port, broker.pid(), world, args)?;
    live.warm_up(args, world.active_devices().len())?;
    let step = live.step(args, rate, phases::step_phase(0))?;
    let broker_rss = mib(procstat::rss_kib(broker.pid()));
    live.finish(args)?;
    let per_fix = |pct: f64| pct * 1e4 / step.handled_per_s.max(1.0);
    Ok(Line {
        instances: 0,
        rate,
        offered_per_s: step.offered_per_s,
        handled_per_s: step.handled_per_s,
        backlog_at_end: step.backlog_at_end,
        drain: step.drain,
        latency: step.latency.clone(),
        procs: vec![
            ProcFigures {
                name: "kordon".into(),
                cpu_pct: step.kordon_cpu_pct,
                us_per_fix: step.cpu_total_us_per_fix,
                rss_mib: step.rss_mib,
            },
            ProcFigures {
                name: "mosquitto".into(),
                cpu_pct: step.broker_cpu_pct,
                us_per_fix: per_fix(step.broker_cpu_pct),
                rss_mib: broker_rss,
            },
        ],
        generator_cpu_pct: step.generator_cpu_pct,
        other_cpu_pct: step.other_cpu_pct,
        ..Line::default()
    })
}

/// One instance count: its own brokers, the cases stored, the instances
/// started and served every shard, the warm-up and the steps.
fn cluster_of(
    args: &Args,
    dir: &Path,
    binary: &Path,
    world: &World,
    n: usize,
    cases: &Path,
) -> Result<CountRun, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let broker = Mosquitto::start(dir)?;
    let nats = NatsServer::start(dir)?;
    let configs = write_configs(dir, n, broker.port, nats.port)?;
    let started = Instant::now();
    put_cases(binary, &configs[0].1, cases)?;
    let put_secs = started.elapsed().as_secs_f64();
    eprintln!("  {} cases stored in {put_secs:.1} s", world.cases);
    let mut instances = Vec::new();
    for (name, config, http_port) in configs.iter().map(|(n, c, p)| (n, c, *p)) {
        let text = std::fs::read_to_string(config).map_err(|e| e.to_string())?;
        let kordon = Kordon::start_with(binary, config.parent().unwrap_or(dir), &text, http_port)?;
        instances.push((name.clone(), kordon));
    }
    let started = Instant::now();
    let mut live = ClusterLive::start(args, broker, nats, instances)?;
    let split = live.wait_served(Duration::from_secs(180))?;
    let ready_secs = started.elapsed().as_secs_f64();
    eprintln!("  every shard served after {ready_secs:.1} s: {split:?}");
    live.start_load(args, world)?;
    live.warm_up(args, world.active_devices().len())?;
    let mut lines = Vec::new();
    for (i, rate) in args.rates.iter().enumerate() {
        eprintln!(
            "  step {}/{}: {rate} fixes/s for {} s",
            i + 1,
            args.rates.len(),
            args.step_secs
        );
        let line = live.step(args, *rate, phases::step_phase(i))?;
        eprintln!("    {}", line.summary());
        let drained = line.drain.secs().is_some();
        lines.push(line);
        if !drained {
            eprintln!("    the backlog was not taken: no further steps");
            break;
        }
    }
    let (rejects, unplanted) = live.finish();
    Ok(CountRun {
        instances: n,
        put_cases_secs: put_secs,
        ready_secs,
        shards_at_start: split,
        lines,
        rejects,
        unplanted_alerts: unplanted,
    })
}

/// Each instance's directory and configuration: (name, config path, HTTP
/// port).
fn write_configs(
    dir: &Path,
    n: usize,
    mqtt_port: u16,
    nats_port: u16,
) -> Result<Vec<(String, PathBuf, u16)>, String> {
    let mut configs = Vec::new();
    for i in 1..=n {
        let name = format!("k{i}");
        let home = dir.join(&name);
        // `[cases] dir`: unused in a cluster (the cases' bucket has them).
        std::fs::create_dir_all(home.join("cases"))
            .map_err(|e| format!("{}: {e}", home.display()))?;
        let http_port = free_port()?;
        let config = home.join("kordon.toml");
        let text = kordon::cluster_config_text(mqtt_port, http_port, nats_port, &name);
        std::fs::write(&config, text).map_err(|e| format!("{}: {e}", config.display()))?;
        configs.push((name, config, http_port));
    }
    Ok(configs)
}

/// `kordon cluster put-cases --config` with every case file in `cases`, a
/// thousand files a call.
fn put_cases(binary: &Path, config: &Path, cases: &Path) -> Result<(), String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(cases)
        .map_err(|e| format!("{}: {e}", cases.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.sort();
    for chunk in files.chunks(1_000) {
        let out = Command::new(binary)
            .args(["cluster", "put-cases", "--config"])
            .arg(config)
            .args(chunk)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| format!("running kordon cluster put-cases: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "kordon cluster put-cases: {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    Ok(())
}

/// The instances of one count, on their brokers, with (once started) the
/// generator and the police console.
struct ClusterLive {
    instances: Vec<(String, Kordon)>,
    load: Option<Load>,
    /// Refusals (the probes') before the load began.
    refused_before: f64,
    stall_secs: f64,
    drain_timeout: Duration,
    // Dropped (killed) after the instances.
    nats: NatsServer,
    broker: Mosquitto,
}

struct Load {
    generator: Generator,
    police: Arc<Police>,
    police_sub: Subscriber,
}

/// One look at what a step's figures are computed from.
struct Sample {
    at: Instant,
    handled: f64,
    /// CPU µs of each process of [`ClusterLive::processes`].
    cpu_us: Vec<u64>,
    me: Cpu,
    machine_us: u64,
    published: u64,
    acked: u64,
}

impl ClusterLive {
    fn start(
        args: &Args,
        broker: Mosquitto,
        nats: NatsServer,
        instances: Vec<(String, Kordon)>,
    ) -> Result<ClusterLive, String> {
        Ok(ClusterLive {
            instances,
            load: None,
            refused_before: 0.0,
            stall_secs: args.stall_secs as f64,
            drain_timeout: Duration::from_secs(args.drain_timeout_secs),
            nats,
            broker,
        })
    }

    fn load(&self) -> Result<&Load, String> {
        self.load.as_ref().ok_or_else(|| "no load started".into())
    }

    /// The processes measured: the instances, nats-server and Mosquitto.
    fn processes(&self) -> Vec<(String, u32)> {
        let instances = self.instances.iter().map(|(n, k)| (n.clone(), k.pid));
        instances
            .chain([
                ("nats-server".to_string(), self.nats.pid()),
                ("mosquitto".to_string(), self.broker.pid()),
            ])
            .collect()
    }

    fn check_running(&mut self) -> Result<(), String> {
        for (name, kordon) in &mut self.instances {
            if !kordon.running() {
                return Err(format!(
                    "instance {name} exited; its log: {}",
                    kordon.log.display()
                ));
            }
        }
        Ok(())
    }

    /// The shards each instance's `/healthz` lists (none when it does not
    /// answer).
    fn served(&self) -> Vec<Vec<u64>> {
        self.instances
            .iter()
            .map(|(_, kordon)| {
                kordon.health().ok().map_or(Vec::new(), |(_, body)| {
                    body["shards"].as_array().map_or(Vec::new(), |s| {
                        s.iter().filter_map(|t| t["shard"].as_u64()).collect()
                    })
                })
            })
            .collect()
    }

    /// Shards per instance, and the instance holding shard 0 (it runs the
    /// bridge and the deliverer).
    fn split(&self) -> (Vec<(String, usize)>, Option<String>) {
        let served = self.served();
        let names = self.instances.iter().map(|(n, _)| n.clone());
        let bridge = names
            .clone()
            .zip(&served)
            .find(|(_, s)| s.contains(&0))
            .map(|(n, _)| n);
        (names.zip(served.iter().map(Vec::len)).collect(), bridge)
    }

    /// Waits until the instances serve every shard between them, each some,
    /// with the split unchanged for [`STEADY`].
    fn wait_served(&mut self, timeout: Duration) -> Result<Vec<(String, usize)>, String> {
        let deadline = Instant::now() + timeout;
        let (mut last, mut since) = (Vec::new(), Instant::now());
        while Instant::now() < deadline {
            self.check_running()?;
            let (split, _) = self.split();
            if split != last {
                (last, since) = (split, Instant::now());
            }
            let total: usize = last.iter().map(|(_, n)| n).sum();
            if total == SHARDS && last.iter().all(|(_, n)| *n > 0) && since.elapsed() >= STEADY {
                return Ok(last);
            }
            sleep_s(0.25);
        }
        Err(format!(
            "the instances did not serve every shard in {timeout:?}: {last:?}"
        ))
    }

    /// The generator and the police console connected, and the probe's
    /// reject back: the bridge, a shard and the deliverer run.
    fn start_load(&mut self, args: &Args, world: &World) -> Result<(), String> {
        let port = self.broker.port;
        let generator = Generator::start(port, args.publishers, world, "bench-pub")?;
        let police = Arc::new(Police {
            first_breach_case: world.first_breach_case(),
            ..Police::default()
        });
        let police_sub = subscriber::police(port, generator.planted.clone(), police.clone())?;
        phases::probe(port, &police, Duration::from_secs(60))?;
        self.refused_before = self.total("kordon_messages_refused_total")?;
        self.load = Some(Load {
            generator,
            police,
            police_sub,
        });
        Ok(())
    }

    /// A metric summed over the instances.
    fn total(&self, name: &str) -> Result<f64, String> {
        let mut sum = 0.0;
        for (instance, kordon) in &self.instances {
            let m = kordon.metrics().map_err(|e| format!("{instance}: {e}"))?;
            sum += m.sum(name, "");
        }
        Ok(sum)
    }

    /// Fixes the instances' engines took (redeliveries they recognised
    /// excluded) and refused, since the load began.
    fn handled(&self) -> Result<f64, String> {
        let mut sum = 0.0;
        for (instance, kordon) in &self.instances {
            let m = kordon.metrics().map_err(|e| format!("{instance}: {e}"))?;
            sum += m.fixes() + m.refused();
        }
        Ok(sum - self.refused_before)
    }

    fn sample(&self) -> Result<Sample, String> {
        let counters = &self.load()?.generator.counters;
        let mut cpu_us = Vec::new();
        for (name, pid) in self.processes() {
            cpu_us.push(
                procstat::cpu(pid)
                    .map_err(|e| format!("{name}: {e}"))?
                    .total_us,
            );
        }
        Ok(Sample {
            at: Instant::now(),
            handled: self.handled()?,
            cpu_us,
            me: procstat::cpu(std::process::id())?,
            machine_us: procstat::machine_busy_us(),
            published: counters.published.load(Relaxed),
            acked: counters.acked.load(Relaxed),
        })
    }

    fn rss(&self) -> Vec<f64> {
        self.processes()
            .iter()
            .map(|(_, pid)| mib(procstat::rss_kib(*pid)))
            .collect()
    }

    /// Every active device's first fix, as in the default mode.
    fn warm_up(&mut self, args: &Args, devices: usize) -> Result<(), String> {
        let rate = args
            .rates
            .iter()
            .copied()
            .min()
            .unwrap_or(1_000)
            .clamp(1_000, 5_000);
        let generator = &self.load()?.generator;
        generator.offer(rate, 0, phases::PHASE_WARM_UP);
        sleep_s(devices as f64 / rate as f64 + 1.0);
        generator.offer(0, 0, phases::PHASE_WARM_UP);
        generator.settle(Duration::from_secs(30));
        match self.wait_drained()? {
            Drain::Done(secs) => {
                eprintln!("  warm-up: {devices} first fixes taken ({secs:.1} s to drain)");
                Ok(())
            }
            other => Err(format!("the warm-up's fixes: {}", other.describe())),
        }
    }

    /// Waits until the instances have handled every fix the broker
    /// acknowledged; ends early when they take no new fix for
    /// `stall_secs` with fixes waiting.
    fn wait_drained(&mut self) -> Result<Drain, String> {
        let started = Instant::now();
        let (mut last_handled, mut last_progress) = (f64::NEG_INFINITY, Instant::now());
        let mut backlog = 0.0;
        while started.elapsed() < self.drain_timeout {
            self.check_running()?;
            let handled = self.handled()?;
            backlog = self.load()?.generator.counters.acked.load(Relaxed) as f64 - handled;
            if backlog <= 0.0 {
                return Ok(Drain::Done(started.elapsed().as_secs_f64()));
            }
            if handled > last_handled {
                (last_handled, last_progress) = (handled, Instant::now());
            } else if last_progress.elapsed().as_secs_f64() > self.stall_secs {
                return Ok(Drain::Stalled(backlog, self.stall_secs));
            }
            sleep_s(0.5);
        }
        Ok(Drain::TimedOut(backlog))
    }

    /// One rate step: offered for `step_secs`, measured after the first
    /// seconds, then drained.
    fn step(&mut self, args: &Args, rate: u64, phase: u32) -> Result<Line, String> {
        let (split_before, _) = self.split();
        self.load()?
            .generator
            .offer(rate, args.breaches_per_s, phase);
        let settle = (args.step_secs as f64 / 4.0).clamp(1.0, 3.0);
        sleep_s(settle);
        let a = self.sample()?;
        let mut rss = self.rss();
        let end = a.at + Duration::from_secs_f64(args.step_secs as f64 - settle);
        while Instant::now() < end {
            sleep_s((end - Instant::now()).as_secs_f64().min(1.0));
            for (peak, now) in rss.iter_mut().zip(self.rss()) {
                *peak = peak.max(now);
            }
        }
        let b = self.sample()?;
        let stream_lag = self.total("kordon_cluster_reader_lag_messages")?;
        self.load()?.generator.offer(0, 0, phase);
        let drain = self.wait_drained()?;
        let load = self.load()?;
        phases::wait_alerts(&load.generator.planted, &[phase], Duration::from_secs(5));
        let (split, bridge) = self.split();
        let mut line = self.figures(&a, &b, &rss);
        line.rate = rate;
        line.drain = drain;
        line.latency = phases::latency(&load.police, &load.generator.planted, &[phase]);
        line.stream_lag = stream_lag;
        line.shards_moved = split != split_before;
        line.shards = split;
        line.bridge = bridge;
        Ok(line)
    }

    /// The per-step figures between two samples.
    fn figures(&self, a: &Sample, b: &Sample, rss: &[f64]) -> Line {
        let secs = b.at.duration_since(a.at).as_secs_f64();
        let handled = b.handled - a.handled;
        let used: Vec<u64> = b
            .cpu_us
            .iter()
            .zip(&a.cpu_us)
            .map(|(b, a)| b.saturating_sub(*a))
            .collect();
        let procs = self
            .processes()
            .into_iter()
            .zip(&used)
            .zip(rss)
            .map(|(((name, _), us), rss_mib)| ProcFigures {
                name,
                cpu_pct: *us as f64 / secs / 1e4,
                us_per_fix: *us as f64 / handled.max(1.0),
                rss_mib: *rss_mib,
            })
            .collect();
        let me = b.me.since(&a.me);
        let measured: u64 = used.iter().sum::<u64>() + me.total_us;
        Line {
            instances: self.instances.len(),
            offered_per_s: (b.published - a.published) as f64 / secs,
            handled_per_s: handled / secs,
            backlog_at_end: b.acked as f64 - b.handled,
            procs,
            generator_cpu_pct: me.of("gen-") as f64 / secs / 1e4,
            other_cpu_pct: (b.machine_us - a.machine_us).saturating_sub(measured) as f64
                / secs
                / 1e4,
            ..Line::default()
        }
    }

    /// Stops the load and the instances (SIGTERM, in reverse order): the
    /// rejects and the police alerts without a planted breach seen.
    fn finish(mut self) -> (u64, u64) {
        let mut seen = (0, 0);
        if let Some(load) = self.load.take() {
            load.generator.stop();
            sleep_s(1.0);
            if let Err(e) = load.police_sub.stop() {
                eprintln!("  police console: {e}");
            }
            seen = (
                load.police.rejects.load(Relaxed),
                load.police.unplanted.load(Relaxed),
            );
        }
        while let Some((name, kordon)) = self.instances.pop() {
            match kordon.stop(Duration::from_secs(30)) {
                Ok((true, _)) => {}
                Ok((false, took)) => eprintln!("  {name} did not stop cleanly ({took:?})"),
                Err(e) => eprintln!("  stopping {name}: {e}"),
            }
        }
        seen
    }
}
