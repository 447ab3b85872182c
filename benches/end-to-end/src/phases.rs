//! The benchmark's phases against one Mosquitto, in order: the broker-only
//! ceiling, kordon started and warmed up, the rate steps, the overload and
//! its drain, and kordon stopped with its journal counted.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::args::Args;
use crate::console::{Consoles, Received};
use crate::generator::{Generator, Planted};
use crate::kordon::{Kordon, Metrics};
use crate::mqtt;
use crate::procstat::{self, Cpu};
use crate::report::{BusyDisk, Ceiling, ConsoleFigures, Drain, Latency, Overload, Step, Totals};
use crate::subscriber::{self, Police, Subscriber};
use crate::workload::{fix_payload, fix_topic, TsCache, World};

pub const PHASE_WARM_UP: u32 = 1;
const PHASE_OVERLOAD: u32 = 100;
const PHASE_DRAIN: u32 = 101;
const PHASE_BUSY_DISK: u32 = 102;
const PHASE_BEFORE_BUSY_DISK: u32 = 103;

/// What a watch saw: kordon's largest RSS, the most fixes waiting for it
/// at the broker, and the problems `/healthz` named.
#[derive(Default)]
struct Watched {
    peak_rss: f64,
    broker_peak_rss: f64,
    most_waiting: f64,
    health: Vec<String>,
    requests: Requests,
}

/// People's requests through the API while kordon is watched: one case
/// asked for at each sample.
#[derive(Default, Clone)]
pub struct Requests {
    pub asked: u32,
    /// Answered with anything but 200 (or not at all): how many, and the
    /// first answer.
    pub refused: u32,
    pub first_refusal: Option<String>,
    pub slowest_ms: f64,
}

impl Requests {
    fn note(&mut self, answer: Result<(u16, Duration), String>) {
        self.asked += 1;
        let refusal = match answer {
            Ok((200, took)) => {
                self.slowest_ms = self.slowest_ms.max(took.as_secs_f64() * 1e3);
                return;
            }
            Ok((code, _)) => format!("HTTP {code}"),
            Err(e) => e,
        };
        self.refused += 1;
        self.first_refusal.get_or_insert(refusal);
    }
}

/// Publishes a fix of an unknown device on the broker on `port` until
/// kordon's reject of it comes back to the police console (`police`): kordon
/// (in a cluster, the bridge, a shard and the deliverer) is subscribed.
/// Waits a second more for the probes still on their way.
pub fn probe(port: u16, police: &Police, timeout: Duration) -> Result<(), String> {
    let session = mqtt::open(port, "bench-probe", true, 30)?;
    let mut writer = session.writer;
    let (mut ts, mut buf, mut payload) = (TsCache::default(), Vec::new(), Vec::new());
    let deadline = Instant::now() + timeout;
    while police.probe_rejects.load(Relaxed) == 0 {
        if Instant::now() > deadline {
            return Err("kordon did not subscribe (no reject of the probe fix)".into());
        }
        payload.clear();
        buf.clear();
        fix_payload(&mut payload, ts.now(), (51.9, 4.5), 1);
        mqtt::publish(&mut buf, &fix_topic("PROBE"), 0, &payload);
        std::io::Write::write_all(&mut writer, &buf).map_err(|e| format!("probe: {e}"))?;
        sleep_s(0.2);
    }
    let _ = std::io::Write::write_all(&mut writer, &mqtt::DISCONNECT);
    sleep_s(1.0);
    Ok(())
}

/// Waits (at most `timeout`) for the alerts of breaches planted in
/// `phases`.
pub fn wait_alerts(planted: &Planted, phases: &[u32], timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let waiting = planted.waiting.lock().map_or(0, |w| {
            w.values().filter(|(_, p)| phases.contains(p)).count()
        });
        if waiting == 0 {
            return;
        }
        sleep_s(0.1);
    }
}

/// Fix → police alert of the breaches planted in `phases`, as the police
/// console saw them.
pub fn latency(police: &Police, planted: &Planted, phases: &[u32]) -> Latency {
    let ms: Vec<f64> = police.latencies.lock().map_or(Vec::new(), |l| {
        l.iter()
            .filter(|(p, _)| phases.contains(p))
            .map(|(_, ms)| *ms)
            .collect()
    });
    let planted: u64 = planted
        .per_phase
        .lock()
        .map_or(0, |p| phases.iter().filter_map(|ph| p.get(ph)).sum());
    Latency::of(ms, planted)
}

pub fn step_phase(i: usize) -> u32 {
    10 + i as u32
}

pub fn sleep_s(secs: f64) {
    std::thread::sleep(Duration::from_secs_f64(secs.max(0.0)));
}

pub fn mib(kib: Option<u64>) -> f64 {
    kib.unwrap_or(0) as f64 / 1024.0
}

/// The same generator to a plain subscriber: what the broker delivers at
/// an offered rate above what it can.
pub fn ceiling(args: &Args, world: &World, port: u16, broker_pid: u32) -> Result<Ceiling, String> {
    let delivered = Arc::new(AtomicU64::new(0));
    let subscriber = subscriber::ceiling(port, delivered.clone())?;
    let generator = Generator::start(port, args.publishers, world, "bench-ceiling-pub")?;
    generator.offer(args.ceiling_rate, 0, 0);
    sleep_s(2.0);
    let (t0, d0, p0) = (
        Instant::now(),
        delivered.load(Relaxed),
        generator.counters.published.load(Relaxed),
    );
    let (me0, broker0) = (
        procstat::cpu(std::process::id())?,
        procstat::cpu(broker_pid)?,
    );
    sleep_s(args.ceiling_secs as f64);
    let secs = t0.elapsed().as_secs_f64();
    let (d1, p1) = (
        delivered.load(Relaxed),
        generator.counters.published.load(Relaxed),
    );
    let (me1, broker1) = (
        procstat::cpu(std::process::id())?,
        procstat::cpu(broker_pid)?,
    );
    generator.offer(0, 0, 0);
    subscriber.stop()?;
    generator.stop();
    subscriber::forget_ceiling_session(port)?;
    let pct = |us: u64| us as f64 / secs / 1e4;
    Ok(Ceiling {
        asked_per_s: args.ceiling_rate as f64,
        offered_per_s: (p1 - p0) as f64 / secs,
        delivered_per_s: (d1 - d0) as f64 / secs,
        secs,
        generator_cpu_pct: pct(me1.since(&me0).of("gen-")),
        broker_cpu_pct: pct(broker1.since(&broker0).total_us),
    })
}

/// kordon running on the broker, with the generator and police console
/// connected to the same broker.
pub struct Live {
    pub kordon: Kordon,
    pub generator: Generator,
    pub police: Arc<Police>,
    police_sub: Subscriber,
    broker_pid: u32,
    port: u16,
    /// Messages kordon refused before the load began (the probes).
    refused_before: f64,
    stall_secs: f64,
    /// Dashboard consoles on the live stream (`--consoles`).
    consoles: Option<Consoles>,
}

/// One look at everything the per-step figures are computed from.
struct Sample {
    at: Instant,
    handled: f64,
    duplicates: f64,
    broker_errors: f64,
    kordon: Cpu,
    me: Cpu,
    broker_us: u64,
    machine_us: u64,
    published: u64,
    acked: u64,
    skipped: u64,
    consoles: Received,
}

impl Live {
    pub fn start(
        binary: &std::path::Path,
        dir: &std::path::Path,
        port: u16,
        broker_pid: u32,
        world: &World,
        args: &Args,
    ) -> Result<Live, String> {
        crate::kordon::write_cases(dir, world)?;
        let mut kordon = Kordon::start(binary, dir, port)?;
        kordon.wait_ready(world.cases, Duration::from_secs(180))?;
        let generator = Generator::start(port, args.publishers, world, "bench-pub")?;
        let police = Arc::new(Police {
            first_breach_case: world.first_breach_case(),
            ..Police::default()
        });
        let police_sub = subscriber::police(port, generator.planted.clone(), police.clone())?;
        let mut live = Live {
            kordon,
            generator,
            police,
            police_sub,
            broker_pid,
            port,
            refused_before: 0.0,
            stall_secs: args.stall_secs as f64,
            consoles: None,
        };
        live.probe(Duration::from_secs(60))?;
        if args.consoles > 0 {
            live.consoles = Some(live.kordon.consoles(args.consoles)?);
        }
        Ok(live)
    }

    /// Publishes a fix of an unknown device until kordon's reject of it
    /// shows that kordon subscribed (fixes before that would be lost).
    fn probe(&mut self, timeout: Duration) -> Result<(), String> {
        probe(self.port, &self.police, timeout)?;
        self.refused_before = self.kordon.metrics()?.refused();
        Ok(())
    }

    fn handled(&self, m: &Metrics) -> f64 {
        m.fixes() + m.refused() - self.refused_before
    }

    fn sample(&self) -> Result<Sample, String> {
        let m = self.kordon.metrics()?;
        Ok(Sample {
            at: Instant::now(),
            handled: self.handled(&m),
            duplicates: m.duplicates(),
            broker_errors: m.broker_errors(),
            kordon: procstat::cpu(self.kordon.pid)?,
            me: procstat::cpu(std::process::id())?,
            broker_us: procstat::cpu(self.broker_pid)?.total_us,
            machine_us: procstat::machine_busy_us(),
            published: self.generator.counters.published.load(Relaxed),
            acked: self.generator.counters.acked.load(Relaxed),
            skipped: self.generator.counters.skipped.load(Relaxed),
            consoles: self
                .consoles
                .as_ref()
                .map_or_else(Received::default, Consoles::received),
        })
    }

    fn rss_mib(&self) -> f64 {
        mib(procstat::rss_kib(self.kordon.pid))
    }

    /// Waits until the backlog is at most `slack` (see [`Live::watch`]).
    fn wait_drained(&mut self, timeout: Duration, slack: f64) -> Result<Drain, String> {
        self.watch(&mut Watched::default(), timeout, Some(slack))
    }

    /// Samples twice a second for at most `length` (RSS, backlog,
    /// `/healthz` every 5 s) until the backlog is at most `slack`; ends
    /// early when kordon took no new fix for `stall_secs` with fixes
    /// waiting (redelivered ones it recognises do not count).
    fn watch(
        &mut self,
        w: &mut Watched,
        length: Duration,
        slack: Option<f64>,
    ) -> Result<Drain, String> {
        let started = Instant::now();
        let (mut last_handled, mut last_progress) = (f64::NEG_INFINITY, Instant::now());
        let mut next_health = Instant::now() + Duration::from_secs(5);
        let mut backlog = 0.0;
        while started.elapsed() < length {
            if !self.kordon.running() {
                return Err("kordon exited during the run".into());
            }
            let m = self.kordon.metrics()?;
            let handled = self.handled(&m);
            backlog = self.generator.counters.acked.load(Relaxed) as f64 - handled;
            w.peak_rss = w.peak_rss.max(self.rss_mib());
            w.broker_peak_rss = w
                .broker_peak_rss
                .max(mib(procstat::rss_kib(self.broker_pid)));
            w.most_waiting = w.most_waiting.max(backlog);
            w.requests
                .note(self.kordon.ask_case(&crate::workload::case_id(0)));
            if slack.is_some_and(|slack| backlog <= slack) {
                return Ok(Drain::Done(started.elapsed().as_secs_f64()));
            }
            if handled > last_handled {
                (last_handled, last_progress) = (handled, Instant::now());
            } else if backlog > 0.0 && last_progress.elapsed().as_secs_f64() > self.stall_secs {
                return Ok(Drain::Stalled(backlog, self.stall_secs));
            }
            if Instant::now() > next_health {
                self.note_health(&mut w.health);
                next_health += Duration::from_secs(5);
            }
            sleep_s(0.5);
        }
        Ok(Drain::TimedOut(backlog))
    }

    /// Waits (at most `timeout`) for the alerts of breaches planted in
    /// `phases`.
    fn wait_alerts(&self, phases: &[u32], timeout: Duration) {
        wait_alerts(&self.generator.planted, phases, timeout);
    }

    fn latency(&self, phases: &[u32]) -> Latency {
        latency(&self.police, &self.generator.planted, phases)
    }

    /// Every active device's first fix, so that victims have a position
    /// before any breach is planted.
    pub fn warm_up(&mut self, args: &Args, devices: usize) -> Result<(), String> {
        let rate = args.rates[0].clamp(1_000, 5_000);
        self.generator.offer(rate, 0, PHASE_WARM_UP);
        sleep_s(devices as f64 / rate as f64 + 1.0);
        self.generator.offer(0, 0, PHASE_WARM_UP);
        self.generator.settle(Duration::from_secs(30));
        match self.wait_drained(Duration::from_secs(args.drain_timeout_secs), 0.0)? {
            Drain::Done(_) => Ok(()),
            other => Err(format!("the warm-up's fixes: {}", other.describe())),
        }
    }

    /// One rate step: offered for `step_secs`, measured after the first
    /// seconds, then drained.
    pub fn step(&mut self, args: &Args, rate: u64, phase: u32) -> Result<Step, String> {
        let own_before = self.kordon.metrics()?.police_alerts_and_over(OWN_BOUND);
        self.generator.offer(rate, args.breaches_per_s, phase);
        let settle = (args.step_secs as f64 / 4.0).clamp(1.0, 3.0);
        sleep_s(settle);
        let a = self.sample()?;
        let mut rss = self.rss_mib();
        let end = a.at + Duration::from_secs_f64(args.step_secs as f64 - settle);
        while Instant::now() < end {
            sleep_s((end - Instant::now()).as_secs_f64().min(1.0));
            rss = rss.max(self.rss_mib());
        }
        let b = self.sample()?;
        self.generator.offer(0, 0, phase);
        let drain = self.wait_drained(Duration::from_secs(args.drain_timeout_secs), 0.0)?;
        let broker_caught_up = self.wait_broker_caught_up(BROKER_PATIENCE)?;
        self.wait_alerts(&[phase], Duration::from_secs(5));
        let own_after = self.kordon.metrics()?.police_alerts_and_over(OWN_BOUND);
        let mut step = step_figures(&a, &b, rate);
        step.own_alerts = own_after.0 - own_before.0;
        step.own_over_5ms = own_after.1 - own_before.1;
        step.rss_mib = rss;
        step.drain = drain;
        step.broker_caught_up = broker_caught_up;
        step.latency = self.latency(&[phase]);
        step.console = self
            .consoles
            .as_ref()
            .map(|c| ConsoleFigures::of(&b.consoles.since(&a.consoles), c.count(), &a.at, &b.at));
        Ok(step)
    }

    /// After a drain, with nothing offered: waits until the broker has
    /// taken every acknowledgement kordon wrote and is idle again, so that
    /// the next step does not begin in this one's aftermath. Mosquitto
    /// reads one packet per connection per turn of its loop, so under
    /// overload it reads kordon's acknowledgements about as fast as one
    /// publisher's messages; after a step above capacity a million of them
    /// can wait, and reading them kept it at a full core for 6–8 s, during
    /// which the next step's alerts took 25–60 ms (2026-12-05). Seconds
    /// after the drain; `None` if the broker had not caught up within
    /// `patience`.
    fn wait_broker_caught_up(&mut self, patience: Duration) -> Result<Option<f64>, String> {
        let started = Instant::now();
        let mut last = (Instant::now(), procstat::cpu(self.broker_pid)?.total_us);
        while started.elapsed() < patience {
            sleep_s(0.25);
            let now = (Instant::now(), procstat::cpu(self.broker_pid)?.total_us);
            let wall_us = now.0.duration_since(last.0).as_micros().max(1) as f64;
            let cores = now.1.saturating_sub(last.1) as f64 / wall_us;
            last = now;
            let unsent = self.kordon.metrics()?.ingest_unsent_bytes();
            if unsent == 0.0 && cores < IDLE_BROKER_CORES {
                return Ok(Some(started.elapsed().as_secs_f64()));
            }
        }
        Ok(None)
    }
}

/// How long the busy-disk step's rate runs before `dd` starts
/// ([`Live::broker_warm_up`]).
const BROKER_WARM_UP_SECS: f64 = 5.0;
/// How long [`Live::wait_broker_caught_up`] waits at most.
const BROKER_PATIENCE: Duration = Duration::from_secs(60);
/// A broker using less than this share of a core over a quarter of a
/// second, with nothing offered, has nothing left to catch up on.
const IDLE_BROKER_CORES: f64 = 0.2;

/// The bound of kordon's own share a step counts alerts over: 5 ms, the
/// fix → alert target up to 10,000 fixes/s, so that a step's p99 over it
/// says whether the time went in kordon or outside it (broker, generator,
/// the host).
const OWN_BOUND: &str = "0.005";
/// The same for the busy-disk step: 20 ms, its fix → alert target.
const BUSY_DISK_BOUND: &str = "0.02";

impl Live {
    /// A rate step while `dd` writes `args.busy_disk_mib` into `dir`, on
    /// the journal's disk: the kernel's write-back of its dirty pages makes
    /// every fsync slow, as a large build or a backup would.
    pub fn busy_disk(
        &mut self,
        args: &Args,
        rate: u64,
        dir: &std::path::Path,
    ) -> Result<BusyDisk, String> {
        let broker_warm_up = self.broker_warm_up(args, rate);
        let before = self
            .kordon
            .metrics()?
            .police_alerts_and_over(BUSY_DISK_BOUND);
        let path = dir.join("busy-disk.bin");
        let mut dd = std::process::Command::new("dd")
            .arg("if=/dev/zero")
            .arg(format!("of={}", path.display()))
            .args([
                "bs=1M",
                &format!("count={}", args.busy_disk_mib),
                "conv=fsync",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| format!("starting dd: {e}"))?;
        // Dirty pages first, so that the step meets the write-back.
        sleep_s(1.0);
        let step = self.step(args, rate, PHASE_BUSY_DISK);
        let after = self
            .kordon
            .metrics()
            .map(|m| m.police_alerts_and_over(BUSY_DISK_BOUND));
        let written_mib = std::fs::metadata(&path).map_or(0.0, |m| m.len() as f64 / 1_048_576.0);
        let finished_early = matches!(dd.try_wait(), Ok(Some(_)));
        let _ = dd.kill();
        let _ = dd.wait();
        let _ = std::fs::remove_file(&path);
        let after = after?;
        Ok(BusyDisk {
            asked_mib: args.busy_disk_mib,
            written_mib,
            finished_early,
            own_alerts: after.0 - before.0,
            own_over_20ms: after.1 - before.1,
            broker_warm_up,
            step: step?,
        })
    }

    /// The step's rate for [`BROKER_WARM_UP_SECS`] before `dd` starts: the
    /// fix → alert latency of the broker's first seconds back at work. The
    /// busy-disk step follows the steps above capacity, and a Mosquitto
    /// that held a million messages then spends its first second back at
    /// work in glibc's `malloc_consolidate` (a perf profile of it,
    /// 2026-12-05: 41 % of 4 s in `malloc_consolidate` and
    /// `unlink_chunk`), delivering nothing for half a second: measured in
    /// the busy-disk step, that hiccup was taken for the disk's.
    fn broker_warm_up(&mut self, args: &Args, rate: u64) -> Latency {
        self.generator
            .offer(rate, args.breaches_per_s, PHASE_BEFORE_BUSY_DISK);
        sleep_s(BROKER_WARM_UP_SECS);
        self.wait_alerts(&[PHASE_BEFORE_BUSY_DISK], Duration::from_secs(5));
        self.latency(&[PHASE_BEFORE_BUSY_DISK])
    }
}

/// The per-step figures between two samples.
fn step_figures(a: &Sample, b: &Sample, rate: u64) -> Step {
    let secs = b.at.duration_since(a.at).as_secs_f64();
    let handled = (b.handled - a.handled).max(1.0);
    let kordon = b.kordon.since(&a.kordon);
    let me = b.me.since(&a.me);
    let published = (b.published - a.published) as f64;
    let cpu_us_per_fix: BTreeMap<String, f64> = kordon
        .groups
        .iter()
        .filter(|(_, us)| **us > 0)
        .map(|(name, us)| (name.clone(), *us as f64 / handled))
        .collect();
    let wakeups_per_s = kordon
        .wakeups
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(name, n)| (name.clone(), *n as f64 / secs))
        .collect();
    Step {
        rate,
        offered_per_s: published / secs,
        handled_per_s: (b.handled - a.handled) / secs,
        duplicates: b.duplicates - a.duplicates,
        backlog_at_end: b.acked as f64 - b.handled,
        cpu_total_us_per_fix: kordon.total_us as f64 / handled,
        cpu_us_per_fix,
        wakeups_per_s,
        kordon_cpu_pct: kordon.total_us as f64 / secs / 1e4,
        broker_cpu_pct: (b.broker_us - a.broker_us) as f64 / secs / 1e4,
        generator_cpu_pct: me.of("gen-") as f64 / secs / 1e4,
        generator_us_per_fix: me.of("gen-") as f64 / published.max(1.0),
        other_cpu_pct: (b.machine_us - a.machine_us)
            .saturating_sub(kordon.total_us + me.total_us + (b.broker_us - a.broker_us))
            as f64
            / secs
            / 1e4,
        ..Step::default()
    }
}

impl Live {
    /// `offered` fixes a second for `overload_secs`, then `half_rate` (half
    /// the best handled rate) until the backlog is gone.
    pub fn overload(
        &mut self,
        args: &Args,
        offered: f64,
        half_rate: f64,
        steady_rss: f64,
    ) -> Result<Overload, String> {
        let over = offered.round() as u64;
        let half = half_rate.round() as u64;
        let mut w = Watched::default();
        let a = self.sample()?;
        self.generator
            .offer(over, args.breaches_per_s, PHASE_OVERLOAD);
        let length = Duration::from_secs(args.overload_secs);
        let during = self.watch(&mut w, length, None)?;
        let b = self.sample()?;
        let secs = b.at.duration_since(a.at).as_secs_f64();
        self.generator
            .offer(half, args.breaches_per_s / 2, PHASE_DRAIN);
        let slack = (half as f64 * 0.5).max(1_000.0);
        let drain = match during {
            Drain::Stalled(..) => during,
            _ => self.watch(
                &mut w,
                Duration::from_secs(args.drain_timeout_secs),
                Some(slack),
            )?,
        };
        self.generator.offer(0, 0, PHASE_DRAIN);
        self.generator.settle(Duration::from_secs(30));
        if let Drain::Done(_) = drain {
            self.wait_drained(Duration::from_secs(args.drain_timeout_secs), 0.0)?;
        }
        self.wait_alerts(&[PHASE_OVERLOAD, PHASE_DRAIN], Duration::from_secs(10));
        Ok(Overload {
            offered_per_s: (b.published - a.published) as f64 / secs,
            secs,
            handled_per_s: (b.handled - a.handled) / secs,
            half_rate: half,
            skipped_fixes: b.skipped - a.skipped,
            broker_peak_rss_mib: w.broker_peak_rss,
            broker_errors: self.sample()?.broker_errors - a.broker_errors,
            steady_rss_mib: steady_rss,
            peak_rss_mib: w.peak_rss,
            most_waiting: w.most_waiting,
            drain: Some(drain),
            latency: self.latency(&[PHASE_OVERLOAD, PHASE_DRAIN]),
            health_problems: w.health,
            requests: w.requests,
            ..Overload::default()
        })
    }

    fn note_health(&self, seen: &mut Vec<String>) {
        for problem in self.kordon.problems() {
            let key: String = problem.chars().take(24).collect();
            if seen.len() < 10 && !seen.iter().any(|p| p.starts_with(&key)) {
                seen.push(problem);
            }
        }
    }

    /// Stops the load and kordon, and counts what reached the journal.
    pub fn finish(self, args: &Args) -> Result<Totals, String> {
        let Live {
            mut kordon,
            generator,
            police,
            police_sub,
            ..
        } = self;
        let counters = generator.counters.clone();
        let planted = generator.planted.clone();
        generator.stop();
        if !kordon.running() {
            return Err("kordon exited during the run".into());
        }
        sleep_s(2.0);
        police_sub.stop()?;
        let (journal, log) = (kordon.journal.clone(), kordon.log.clone());
        let (stopped_cleanly, took) = kordon.stop(Duration::from_secs(args.drain_timeout_secs))?;
        let count = crate::journal::count(&journal)?;
        let alerts_delivered = police.latencies.lock().map_or(0, |l| l.len() as u64);
        let planted_total: u64 = planted.per_phase.lock().map_or(0, |p| p.values().sum());
        let first_reject = police.first_reject.lock().ok().and_then(|r| r.clone());
        Ok(Totals {
            offered: counters.acked.load(Relaxed),
            published: counters.published.load(Relaxed),
            skipped: counters.skipped.load(Relaxed),
            journal_records: count.fix_records,
            journal_distinct: count.distinct_fixes,
            planted: planted_total,
            alerts_delivered,
            unplanted_alerts: police.unplanted.load(Relaxed),
            rejects: police.rejects.load(Relaxed),
            first_reject,
            pool_exhausted: planted.exhausted.load(Relaxed),
            stopped_cleanly,
            stop_secs: took.as_secs_f64(),
            kordon_log: crate::kordon::log_problems(&log),
            connections: 0,
            publishing_connections: 0,
            broker_log: Vec::new(),
        })
    }
}
