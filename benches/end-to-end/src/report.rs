//! The run's results: what each phase measured, the targets judged, the
//! table printed for people and the same as JSON.

use std::collections::BTreeMap;

use serde_json::{json, Value};

/// How a wait for kordon to take the backlog ended.
#[derive(Clone, Copy, Debug)]
pub enum Drain {
    /// Taken, after this many seconds.
    Done(f64),
    /// This many fixes still waiting at the broker when time was up.
    TimedOut(f64),
    /// kordon took no new fix for so many seconds (the second figure)
    /// with this many fixes waiting.
    Stalled(f64, f64),
}

impl Drain {
    pub fn secs(&self) -> Option<f64> {
        match self {
            Drain::Done(secs) => Some(*secs),
            _ => None,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Drain::Done(secs) => format!("drained in {secs:.1} s"),
            Drain::TimedOut(waiting) => {
                format!("NOT drained in time: {waiting:.0} fixes still waiting at the broker")
            }
            Drain::Stalled(waiting, secs) => format!(
                "STALLED: kordon took no new fix for {secs:.0} s with {waiting:.0} waiting at the broker"
            ),
        }
    }

    pub fn json(&self) -> Value {
        match self {
            Drain::Done(secs) => json!({"drained_secs": num(*secs)}),
            Drain::TimedOut(waiting) => json!({"timed_out_waiting": num(*waiting)}),
            Drain::Stalled(waiting, secs) => {
                json!({"stalled_waiting": num(*waiting), "stalled_secs": num(*secs)})
            }
        }
    }
}

#[derive(Default, Clone)]
pub struct Latency {
    pub n: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Planted breaches of the phase whose alert never came.
    pub missing: u64,
}

impl Latency {
    pub fn of(mut ms: Vec<f64>, planted: u64) -> Latency {
        ms.sort_by(f64::total_cmp);
        let at = |p: f64| {
            ms.get(((ms.len() as f64 - 1.0) * p).round() as usize)
                .copied()
                .unwrap_or(f64::NAN)
        };
        Latency {
            n: ms.len(),
            p50_ms: at(0.5),
            p99_ms: at(0.99),
            max_ms: ms.last().copied().unwrap_or(f64::NAN),
            missing: planted.saturating_sub(ms.len() as u64),
        }
    }

    pub fn json(&self) -> Value {
        json!({"n": self.n, "p50_ms": num(self.p50_ms), "p99_ms": num(self.p99_ms),
               "max_ms": num(self.max_ms), "missing": self.missing})
    }
}

/// NaN (nothing measured) as JSON null.
pub fn num(x: f64) -> Value {
    if x.is_finite() {
        json!((x * 1000.0).round() / 1000.0)
    } else {
        Value::Null
    }
}

#[derive(Default)]
pub struct Ceiling {
    pub asked_per_s: f64,
    pub offered_per_s: f64,
    pub delivered_per_s: f64,
    pub secs: f64,
    pub generator_cpu_pct: f64,
    pub broker_cpu_pct: f64,
}

#[derive(Default)]
pub struct Step {
    pub rate: u64,
    pub offered_per_s: f64,
    pub handled_per_s: f64,
    pub duplicates: f64,
    /// Fixes waiting at the broker at the end of the step.
    pub backlog_at_end: f64,
    pub latency: Latency,
    pub cpu_us_per_fix: BTreeMap<String, f64>,
    pub cpu_total_us_per_fix: f64,
    /// How often each group of kordon's threads went to sleep, a second:
    /// what kordon pays per wake-up rather than per fix.
    pub wakeups_per_s: BTreeMap<String, f64>,
    pub kordon_cpu_pct: f64,
    pub broker_cpu_pct: f64,
    pub generator_cpu_pct: f64,
    pub generator_us_per_fix: f64,
    /// CPU the rest of the machine used meanwhile (other processes): a
    /// busy neighbour makes every figure worse.
    pub other_cpu_pct: f64,
    pub rss_mib: f64,
    pub drain: Drain,
    /// Seconds after the drain until the broker had taken kordon's
    /// acknowledgements and was idle; `None`: not within a minute.
    pub broker_caught_up: Option<f64>,
    /// kordon's own share (fix decoded → alert handed to its publishing
    /// link): police alerts in the step and its drain, and those that took
    /// more than 5 ms of it.
    pub own_alerts: f64,
    pub own_over_5ms: f64,
    /// What each dashboard console received (`--consoles`).
    pub console: Option<ConsoleFigures>,
}

/// What one dashboard console received in a step, on average over the
/// consoles: what a monitoring room's screen is sent.
#[derive(Debug, Clone, Copy)]
pub struct ConsoleFigures {
    pub consoles: usize,
    pub events_per_s: f64,
    pub positions_per_s: f64,
    pub alerts_per_s: f64,
    pub kib_per_s: f64,
}

impl ConsoleFigures {
    pub fn of(
        received: &crate::console::Received,
        consoles: usize,
        from: &std::time::Instant,
        to: &std::time::Instant,
    ) -> ConsoleFigures {
        let per_s = to.duration_since(*from).as_secs_f64().max(1e-3) * consoles.max(1) as f64;
        ConsoleFigures {
            consoles,
            events_per_s: received.events as f64 / per_s,
            positions_per_s: received.positions as f64 / per_s,
            alerts_per_s: received.alerts as f64 / per_s,
            kib_per_s: received.bytes as f64 / 1024.0 / per_s,
        }
    }
}

impl Default for Drain {
    fn default() -> Self {
        Drain::Done(0.0)
    }
}

impl Step {
    pub fn backlog_growth_per_s(&self) -> f64 {
        self.offered_per_s - self.handled_per_s
    }

    /// Kept up: handled at least 95 % of what was offered.
    pub fn kept_up(&self) -> bool {
        self.handled_per_s >= 0.95 * self.offered_per_s
    }
}

/// A rate step run while `dd` filled the disk kordon's journal is on
/// (gigabytes of dirty pages for the kernel to write back): alerts must
/// not wait for the journal's fsync.
pub struct BusyDisk {
    /// What `dd` was asked to write, and wrote before the step ended.
    pub asked_mib: u64,
    pub written_mib: f64,
    /// `dd` had finished (its own fsync included) by the end of the step
    /// and its drain: the disk may have been busy for only part of it.
    pub finished_early: bool,
    /// kordon's own share (fix decoded → alert handed to its publishing
    /// link): police alerts in the step, and those that took more than 20
    /// ms of it. Tells a stall in kordon's engine and journal hand-over from
    /// one in the broker, the machine or kordon's MQTT links (its reads
    /// waiting, its publishing link's queue and socket), which it leaves
    /// out.
    pub own_alerts: f64,
    pub own_over_20ms: f64,
    /// Fix → alert in the seconds at the step's rate before `dd` started:
    /// the broker's first seconds back at work after the steps before.
    pub broker_warm_up: Latency,
    pub step: Step,
}

#[derive(Default)]
pub struct Overload {
    pub offered_per_s: f64,
    pub secs: f64,
    pub handled_per_s: f64,
    pub half_rate: u64,
    /// Fixes the generator could not send in time (the broker did not
    /// acknowledge its publishes fast enough).
    pub skipped_fixes: u64,
    pub broker_peak_rss_mib: f64,
    pub broker_errors: f64,
    pub steady_rss_mib: f64,
    pub peak_rss_mib: f64,
    pub most_waiting: f64,
    /// `None` when the overload was not run (kordon stalled before it).
    pub drain: Option<Drain>,
    pub not_run: Option<String>,
    pub latency: Latency,
    pub health_problems: Vec<String>,
    /// A case asked for through the API at each sample of the overload and
    /// its drain.
    pub requests: crate::phases::Requests,
}

#[derive(Default)]
pub struct Totals {
    pub offered: u64,
    pub published: u64,
    pub skipped: u64,
    pub journal_records: u64,
    pub journal_distinct: u64,
    pub planted: u64,
    pub alerts_delivered: u64,
    pub unplanted_alerts: u64,
    pub rejects: u64,
    pub first_reject: Option<String>,
    pub pool_exhausted: u64,
    pub stopped_cleanly: bool,
    pub stop_secs: f64,
    /// kordon's connections to the broker over the whole run (Mosquitto's
    /// log): its ingest link's, and its publishing link's.
    pub connections: usize,
    pub publishing_connections: usize,
    pub broker_log: Vec<String>,
    pub kordon_log: Vec<LogGroup>,
}

/// kordon's warnings and errors of one kind: how many, and the first.
pub struct LogGroup {
    pub count: usize,
    pub first: String,
}

pub struct Target {
    pub name: String,
    pub pass: bool,
    /// Correctness (fails the run) rather than performance.
    pub correctness: bool,
    pub detail: String,
}

pub struct Report {
    pub mode: &'static str,
    pub cases: usize,
    pub devices: usize,
    pub publishers: usize,
    pub ceiling: Ceiling,
    pub engine_ns_per_fix: f64,
    pub engine_rounds: Vec<f64>,
    pub engine_fixes_per_round: usize,
    pub steps: Vec<Step>,
    pub busy_disk: Option<BusyDisk>,
    pub overload: Overload,
    pub totals: Totals,
    pub targets: Vec<Target>,
}

impl Report {
    /// A report with nothing measured yet (filled in with `..`).
    pub fn empty() -> Report {
        Report {
            mode: "",
            cases: 0,
            devices: 0,
            publishers: 0,
            ceiling: Ceiling::default(),
            engine_ns_per_fix: f64::NAN,
            engine_rounds: Vec::new(),
            engine_fixes_per_round: 0,
            steps: Vec::new(),
            busy_disk: None,
            overload: Overload::default(),
            totals: Totals::default(),
            targets: Vec::new(),
        }
    }

    pub fn ratio(&self, handled: f64) -> f64 {
        handled / self.ceiling.delivered_per_s
    }

    pub fn times_engine(&self, us_per_fix: f64) -> f64 {
        us_per_fix * 1000.0 / self.engine_ns_per_fix
    }

    pub fn failed_correctness(&self) -> bool {
        self.targets.iter().any(|t| t.correctness && !t.pass)
    }

    pub fn print(&self) {
        println!("{}", self.head());
        println!("{}", self.step_table());
        println!("{}", self.thread_table());
        println!("{}", self.busy_disk_text());
        println!("{}", self.overload_text());
        println!("{}", self.totals_text());
        println!("{}", self.target_text());
    }

    fn head(&self) -> String {
        let c = &self.ceiling;
        format!(
            "kordon end-to-end benchmark ({} mode): {} cases, {} devices sending, {} publisher connections, QoS 1\n\
             broker-only ceiling: {:.0} fixes/s delivered to a plain subscriber (offered {:.0}/s for {:.0} s; \
             generator {:.0} % of a core, mosquitto {:.0} %)\n\
             {}engine alone: ingest_fix {:.0} ns per fix (median of {} rounds of {} fixes, half before kordon ran and half after: {} ns)\n",
            self.mode, self.cases, self.devices, self.publishers,
            c.delivered_per_s, c.offered_per_s, c.secs, c.generator_cpu_pct, c.broker_cpu_pct,
            self.ceiling_note(), self.engine_ns_per_fix, self.engine_rounds.len(), self.engine_fixes_per_round,
            self.engine_rounds.iter().map(|r| format!("{r:.0}")).collect::<Vec<_>>().join(", "),
        )
    }

    /// Whether the broker delivered all the generator was asked to offer:
    /// then its ceiling is at least this, not this.
    pub fn ceiling_is_lower_bound(&self) -> bool {
        let c = &self.ceiling;
        c.delivered_per_s >= 0.95 * c.offered_per_s && c.offered_per_s >= 0.95 * c.asked_per_s
    }

    fn ceiling_note(&self) -> &'static str {
        let c = &self.ceiling;
        let all_delivered = c.delivered_per_s >= 0.95 * c.offered_per_s;
        if self.ceiling_is_lower_bound() {
            "NOTE: the broker delivered all the generator offered: the ceiling is at least this (raise --ceiling-rate)\n"
        } else if all_delivered {
            "  (the broker took publishes no faster than this: its intake is the limit)\n"
        } else {
            ""
        }
    }

    fn step_table(&self) -> String {
        let mut out = format!(
            "{:>7} {:>9} {:>9} {:>10} {:>9} | {:>7} {:>7} {:>8} {:>6} | {:>7} {:>8} {:>5} | {:>7} | {:>5} {:>4} {:>6} {:>6} | {:>5}\n",
            "rate", "offered/s", "handled/s", "backlog+/s", "at end", "p50 ms", "p99 ms", "max ms",
            "n", "µs/fix", "×ingest", "cores", "RSS MiB", "mosq%", "gen%", "gen µs", "other%", "÷ceil"
        );
        for s in &self.steps {
            let l = &s.latency;
            out += &format!(
                "{:>7} {:>9.0} {:>9.0} {:>10.0} {:>9.0} | {:>7.2} {:>7.2} {:>8.2} {:>6} | {:>7.1} {:>7.0}× {:>5.2} | {:>7.0} | {:>5.0} {:>4.0} {:>6.2} {:>6.0} | {:>5.2}\n",
                s.rate, s.offered_per_s, s.handled_per_s, s.backlog_growth_per_s(), s.backlog_at_end,
                l.p50_ms, l.p99_ms, l.max_ms, n_text(l),
                s.cpu_total_us_per_fix, self.times_engine(s.cpu_total_us_per_fix), s.kordon_cpu_pct / 100.0,
                s.rss_mib, s.broker_cpu_pct, s.generator_cpu_pct, s.generator_us_per_fix, s.other_cpu_pct,
                self.ratio(s.handled_per_s),
            );
        }
        out += "  (backlog+/s: offered − handled; at end: fixes waiting at the broker when the step ended;\n   \
                 n: alerts measured, +k when k planted breaches got none; cores: kordon's CPU in cores; gen: this generator;\n   \
                 other%: CPU of every other process on the machine, in % of one core)\n";
        out += "  kordon's own share over 5 ms (fix decoded → alert handed to its publishing link), police alerts:";
        for s in &self.steps {
            out += &format!(
                " {}/s {:.0} of {:.0};",
                s.rate, s.own_over_5ms, s.own_alerts
            );
        }
        out += "\n";
        if let Some(c) = self.steps.iter().find_map(|s| s.console) {
            out += &format!(
                "  each of {} dashboard consoles received (events/s, positions/s, alerts/s, KiB/s):",
                c.consoles
            );
            for s in &self.steps {
                let Some(c) = s.console else { continue };
                out += &format!(
                    " {}/s {:.0}, {:.0}, {:.1}, {:.0};",
                    s.rate, c.events_per_s, c.positions_per_s, c.alerts_per_s, c.kib_per_s
                );
            }
            out += "\n";
        }
        for s in &self.steps {
            match s.drain {
                Drain::Done(secs) if secs <= 1.0 => {}
                drain => out += &format!("  after {}/s: {}\n", s.rate, drain.describe()),
            }
            match s.broker_caught_up {
                // kordon shows what the broker has yet to take once a
                // second: up to about that is no catching up.
                Some(secs) if secs <= 2.0 => {}
                caught_up => {
                    out += &format!("  after {}/s: {}\n", s.rate, caught_up_text(caught_up))
                }
            }
        }
        out
    }

    /// kordon's CPU per fix and wake-ups a second, each by thread and step.
    fn thread_table(&self) -> String {
        let mut out = self.by_thread(
            "kordon CPU µs per handled fix, by thread",
            |s| &s.cpu_us_per_fix,
            2,
        );
        out += &format!("{:<18}", "total");
        for s in &self.steps {
            out += &format!(" {:>8.2}", s.cpu_total_us_per_fix);
        }
        out.push('\n');
        out += &self.by_thread(
            "kordon's wake-ups a second (times a thread went to sleep), by thread",
            |s| &s.wakeups_per_s,
            0,
        );
        out
    }

    /// One row per thread group found in any step, one column per step.
    fn by_thread(
        &self,
        title: &str,
        figures: impl Fn(&Step) -> &BTreeMap<String, f64>,
        decimals: usize,
    ) -> String {
        let mut groups: Vec<&String> = self.steps.iter().flat_map(|s| figures(s).keys()).collect();
        groups.sort();
        groups.dedup();
        let mut out = format!("{title}\n{:<18}", "thread");
        for s in &self.steps {
            out += &format!(" {:>8}", format!("{}/s", s.rate));
        }
        out.push('\n');
        for g in groups {
            out += &format!("{g:<18}");
            for s in &self.steps {
                let figure = figures(s).get(g).copied().unwrap_or(0.0);
                out += &format!(" {figure:>8.decimals$}");
            }
            out.push('\n');
        }
        out
    }

    fn busy_disk_text(&self) -> String {
        let Some(b) = &self.busy_disk else {
            return "busy disk: not run\n".to_string();
        };
        let (s, l, w) = (&b.step, &b.step.latency, &b.broker_warm_up);
        format!(
            "busy disk: {}/s for the step's length while dd wrote {:.0} of {} MiB beside the journal{}\n  \
             handled {:.0}/s; fix→alert p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, n {}; {}\n  \
             kordon's own share (decoded → handed to its publishing link): {:.0} of {:.0} police alerts over 20 ms\n  \
             before dd, the broker's first seconds back at work after the steps before (not in the target): \
             fix→alert p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, n {}\n",
            s.rate, b.written_mib, b.asked_mib,
            if b.finished_early { " (dd had finished by the end of the step and its drain)" } else { "" },
            s.handled_per_s, l.p50_ms, l.p99_ms, l.max_ms, n_text(l), s.drain.describe(),
            b.own_over_20ms, b.own_alerts,
            w.p50_ms, w.p99_ms, w.max_ms, n_text(w),
        )
    }

    fn overload_text(&self) -> String {
        let o = &self.overload;
        let Some(drain) = o.drain else {
            let why = o.not_run.as_deref().unwrap_or("not run");
            return format!("overload: not run: {why}\n");
        };
        let mut out = String::new();
        if o.handled_per_s >= 0.95 * o.offered_per_s {
            out += "NOTE: kordon kept up with the \"overload\": neither 2× the best handled rate nor the broker's ceiling was above its capacity\n";
        }
        out += &format!(
            "overload: {:.0} fixes/s offered for {:.0} s (2× the best handled rate, at least the ceiling), kordon handled {:.0}/s; then {}/s: {}\n  \
             most fixes waiting at the broker: {:.0}; RSS steady {:.0} MiB, peak {:.0} MiB ({:.2}×); Mosquitto's peak RSS {:.0} MiB\n  \
             broker connection errors (kordon's metric) during it: {:.0}\n  \
             fix→alert during overload and drain: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms, n {}\n",
            o.offered_per_s, o.secs, o.handled_per_s, o.half_rate, drain.describe(),
            o.most_waiting, o.steady_rss_mib, o.peak_rss_mib, o.peak_rss_mib / o.steady_rss_mib, o.broker_peak_rss_mib,
            o.broker_errors,
            o.latency.p50_ms, o.latency.p99_ms, o.latency.max_ms, n_text(&o.latency),
        );
        if o.skipped_fixes > 0 {
            out += &format!(
                "  the generator could not send {} fixes in time: the broker did not acknowledge its publishes fast enough\n",
                o.skipped_fixes
            );
        }
        let r = &o.requests;
        out += &format!(
            "  a case asked for through the API twice a second: {} of {} answered, slowest {:.1} ms{}\n",
            r.asked - r.refused,
            r.asked,
            r.slowest_ms,
            r.first_refusal.as_ref().map_or(String::new(), |f| format!("; first refusal: {f}")),
        );
        for p in &o.health_problems {
            out += &format!("  /healthz said: {p}\n");
        }
        out
    }

    fn totals_text(&self) -> String {
        let t = &self.totals;
        let mut out = format!(
            "whole run: kordon's connections to the broker: {} (ingest link), {} (publishing link)\n  \
             journal: {} fix records, {} distinct; {} distinct fixes offered (acknowledged by the broker; {} published, {} skipped by the generator)\n  \
             planted breaches: {} expected, {} delivered to the police topic; {} police messages about cases with no planted breach; {} rejects\n  \
             kordon stopped {} in {:.1} s after SIGTERM\n",
            t.connections, t.publishing_connections, t.journal_records, t.journal_distinct, t.offered, t.published, t.skipped,
            t.planted, t.alerts_delivered, t.unplanted_alerts, t.rejects,
            if t.stopped_cleanly { "cleanly" } else { "NOT cleanly" }, t.stop_secs,
        );
        if t.pool_exhausted > 0 {
            out += &format!(
                "  ({} breaches not planted: the pool of fresh cases ran out)\n",
                t.pool_exhausted
            );
        }
        if let Some(reject) = &t.first_reject {
            out += &format!("  first reject: {reject}\n");
        }
        for line in t.broker_log.iter().take(16) {
            out += &format!("  mosquitto: {line}\n");
        }
        let total: usize = t.kordon_log.iter().map(|g| g.count).sum();
        if total > 0 {
            out += &format!("  kordon logged {total} warnings/errors, by kind (count, first):\n");
        }
        for g in t.kordon_log.iter().take(12) {
            out += &format!(
                "  {:>8}× {}\n",
                g.count,
                g.first.chars().take(200).collect::<String>()
            );
        }
        out
    }

    fn target_text(&self) -> String {
        let mut out = String::from("targets (issue 13)\n");
        for t in &self.targets {
            out += &format!(
                "  {} {:<52} {}{}\n",
                if t.pass { "PASS" } else { "FAIL" },
                t.name,
                t.detail,
                if t.correctness { "" } else { "  [performance]" }
            );
        }
        out
    }

    pub fn json(&self) -> Value {
        let c = &self.ceiling;
        let o = &self.overload;
        let t = &self.totals;
        json!({
            "mode": self.mode, "cases": self.cases, "devices": self.devices, "publishers": self.publishers,
            "ceiling": {"offered_per_s": num(c.offered_per_s), "delivered_per_s": num(c.delivered_per_s),
                        "secs": num(c.secs), "generator_cpu_pct": num(c.generator_cpu_pct),
                        "broker_cpu_pct": num(c.broker_cpu_pct)},
            "engine": {"ingest_fix_ns": num(self.engine_ns_per_fix),
                       "rounds_ns": self.engine_rounds.iter().map(|r| num(*r)).collect::<Vec<_>>(),
                       "fixes_per_round": self.engine_fixes_per_round},
            "steps": self.steps.iter().map(|s| self.step_json(s)).collect::<Vec<_>>(),
            "busy_disk": self.busy_disk.as_ref().map(|b| json!({
                "asked_mib": b.asked_mib, "written_mib": num(b.written_mib),
                "finished_early": b.finished_early, "step": self.step_json(&b.step),
                "kordon_own_police_alerts": num(b.own_alerts), "kordon_own_over_20ms": num(b.own_over_20ms),
                "broker_warm_up_latency": b.broker_warm_up.json(),
            })),
            "overload": {
                "offered_per_s": num(o.offered_per_s), "secs": num(o.secs), "handled_per_s": num(o.handled_per_s),
                "half_rate": o.half_rate, "generator_skipped": o.skipped_fixes,
                "broker_peak_rss_mib": num(o.broker_peak_rss_mib), "broker_connection_errors": num(o.broker_errors),
                "steady_rss_mib": num(o.steady_rss_mib),
                "peak_rss_mib": num(o.peak_rss_mib), "most_waiting": num(o.most_waiting),
                "drain": o.drain.map(|d| d.json()), "not_run": o.not_run, "latency": o.latency.json(),
                "health_problems": o.health_problems,
                "api_requests": {
                    "asked": o.requests.asked, "refused": o.requests.refused,
                    "first_refusal": o.requests.first_refusal, "slowest_ms": num(o.requests.slowest_ms),
                },
            },
            "totals": {
                "fixes_offered": t.offered, "published": t.published, "skipped": t.skipped,
                "journal_fix_records": t.journal_records, "journal_distinct_fixes": t.journal_distinct,
                "planted_breaches": t.planted, "alerts_delivered": t.alerts_delivered,
                "unplanted_alerts": t.unplanted_alerts, "rejects": t.rejects, "first_reject": t.first_reject,
                "breach_pool_exhausted": t.pool_exhausted, "stopped_cleanly": t.stopped_cleanly,
                "stop_secs": num(t.stop_secs), "kordon_broker_connections": t.connections,
                "kordon_publishing_connections": t.publishing_connections,
                "broker_log": t.broker_log,
                "kordon_log": t.kordon_log.iter().map(|g| json!({"count": g.count, "first": g.first})).collect::<Vec<_>>(),
            },
            "targets": self.targets.iter().map(|t| json!({
                "name": t.name, "pass": t.pass, "correctness": t.correctness, "detail": t.detail
            })).collect::<Vec<_>>(),
        })
    }

    fn step_json(&self, s: &Step) -> Value {
        json!({
            "rate": s.rate, "offered_per_s": num(s.offered_per_s), "handled_per_s": num(s.handled_per_s),
            "backlog_growth_per_s": num(s.backlog_growth_per_s()), "backlog_at_end": num(s.backlog_at_end),
            "duplicates": num(s.duplicates), "latency": s.latency.json(),
            "cpu_us_per_fix": s.cpu_us_per_fix.iter().map(|(k, v)| (k.clone(), num(*v))).collect::<serde_json::Map<_, _>>(),
            "cpu_total_us_per_fix": num(s.cpu_total_us_per_fix),
            "wakeups_per_s": s.wakeups_per_s.iter().map(|(k, v)| (k.clone(), num(*v))).collect::<serde_json::Map<_, _>>(),
            "times_ingest_fix": num(self.times_engine(s.cpu_total_us_per_fix)),
            "kordon_cpu_pct": num(s.kordon_cpu_pct), "broker_cpu_pct": num(s.broker_cpu_pct),
            "generator_cpu_pct": num(s.generator_cpu_pct), "generator_us_per_fix": num(s.generator_us_per_fix),
            "other_processes_cpu_pct": num(s.other_cpu_pct),
            "rss_mib": num(s.rss_mib), "ratio_to_ceiling": num(self.ratio(s.handled_per_s)),
            "drain": s.drain.json(), "broker_caught_up_secs": s.broker_caught_up.map(num),
            "kordon_own_police_alerts": num(s.own_alerts), "kordon_own_over_5ms": num(s.own_over_5ms),
            "console": s.console.map(|c| json!({
                "consoles": c.consoles, "events_per_s": num(c.events_per_s),
                "positions_per_s": num(c.positions_per_s), "alerts_per_s": num(c.alerts_per_s),
                "kib_per_s": num(c.kib_per_s),
            })),
        })
    }
}

/// When the broker had taken kordon's acknowledgements, after a drain.
fn caught_up_text(caught_up: Option<f64>) -> String {
    match caught_up {
        Some(secs) => format!(
            "the broker took kordon's acknowledgements and was idle {secs:.1} s after the drain (the next step began then)"
        ),
        None => "the broker was still busy a minute after the drain (the next step began all the same)".into(),
    }
}

fn n_text(l: &Latency) -> String {
    if l.missing > 0 {
        format!("{}+{}", l.n, l.missing)
    } else {
        l.n.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(rate: u64, engine_us: f64, engine_wakeups: f64, link_wakeups: f64) -> Step {
        Step {
            rate,
            cpu_us_per_fix: [("kordon-engine".to_string(), engine_us)]
                .into_iter()
                .collect(),
            cpu_total_us_per_fix: engine_us,
            wakeups_per_s: [
                ("kordon-engine".to_string(), engine_wakeups),
                ("tokio-rt-worker".to_string(), link_wakeups),
            ]
            .into_iter()
            .collect(),
            ..Step::default()
        }
    }

    #[test]
    fn the_thread_table_has_a_column_per_step_for_cpu_and_for_wake_ups() {
        let report = Report {
            steps: vec![
                step(10_000, 5.25, 566.4, 851.0),
                step(60_000, 3.19, 990.0, 0.0),
            ],
            ..Report::empty()
        };
        let table = report.thread_table();
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], "kordon CPU µs per handled fix, by thread");
        assert!(lines[1].ends_with("10000/s  60000/s"), "{table}");
        assert!(lines[2].starts_with("kordon-engine") && lines[2].ends_with("5.25     3.19"));
        assert!(lines[3].starts_with("total"));
        assert!(lines[4].starts_with("kordon's wake-ups a second"));
        assert!(lines[6].starts_with("kordon-engine") && lines[6].ends_with("566      990"));
        // A group with no wake-ups in a step shows 0 there.
        assert!(lines[7].starts_with("tokio-rt-worker") && lines[7].ends_with("851        0"));
        assert_eq!(lines.len(), 8, "{table}");
    }
}
