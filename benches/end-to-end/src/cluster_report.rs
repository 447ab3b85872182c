//! The cluster mode's results (`cluster.rs`): one line per step and
//! instance count, and the single-process line they are compared with;
//! printed as a Markdown table and written as JSON.

use serde_json::{json, Value};

use crate::report::{num, Drain, Latency};

/// One process's share of a step.
#[derive(Default, Clone)]
pub struct ProcFigures {
    pub name: String,
    /// Of one core.
    pub cpu_pct: f64,
    /// CPU µs per handled fix.
    pub us_per_fix: f64,
    /// Largest VmRSS during the step.
    pub rss_mib: f64,
}

/// One step of one instance count (0: single-process kordon).
#[derive(Default)]
pub struct Line {
    pub instances: usize,
    pub rate: u64,
    pub offered_per_s: f64,
    pub handled_per_s: f64,
    /// Fixes acknowledged to the generator and not yet handled, at the
    /// step's end.
    pub backlog_at_end: f64,
    pub drain: Drain,
    pub latency: Latency,
    pub procs: Vec<ProcFigures>,
    pub generator_cpu_pct: f64,
    /// CPU of every other process on the machine meanwhile.
    pub other_cpu_pct: f64,
    /// The instance holding shard 0: it runs the bridge and the deliverer.
    pub bridge: Option<String>,
    /// Shards per instance after the step, and whether any moved in it.
    pub shards: Vec<(String, usize)>,
    pub shards_moved: bool,
    /// Messages stored in the shards' stream and not yet read by their
    /// engines at the step's end (`kordon_cluster_reader_lag_messages`,
    /// summed; the rest of the backlog was still at Mosquitto, before the
    /// bridge).
    pub stream_lag: f64,
}

/// One instance count.
pub struct CountRun {
    pub instances: usize,
    pub put_cases_secs: f64,
    /// From starting the instances until every shard was served, steadily.
    pub ready_secs: f64,
    pub shards_at_start: Vec<(String, usize)>,
    pub lines: Vec<Line>,
    pub rejects: u64,
    pub unplanted_alerts: u64,
}

pub struct ClusterReport {
    pub cases: usize,
    pub devices: usize,
    pub publishers: usize,
    pub step_secs: u64,
    pub single: Line,
    pub runs: Vec<CountRun>,
}

impl Line {
    fn who(&self) -> String {
        match self.instances {
            0 => "single process".into(),
            n => n.to_string(),
        }
    }

    fn drained(&self) -> String {
        match self.drain {
            Drain::Done(secs) => format!("yes ({secs:.1} s)"),
            Drain::TimedOut(waiting) => format!("NO: {waiting:.0} left"),
            Drain::Stalled(waiting, _) => format!("STALLED: {waiting:.0} left"),
        }
    }

    fn latency_text(&self) -> String {
        let l = &self.latency;
        let missing = match l.missing {
            0 => String::new(),
            m => format!(", {m} MISSING"),
        };
        format!("{:.1} / {:.1} (n {}{missing})", l.p50_ms, l.p99_ms, l.n)
    }

    /// The process's name, starred when it holds shard 0.
    fn proc_name(&self, p: &ProcFigures) -> String {
        match self.bridge.as_deref() == Some(p.name.as_str()) {
            true => format!("{}*", p.name),
            false => p.name.clone(),
        }
    }

    fn cpu_text(&self) -> String {
        self.procs
            .iter()
            .map(|p| {
                format!(
                    "{} {:.1} ({:.0} %)",
                    self.proc_name(p),
                    p.us_per_fix,
                    p.cpu_pct
                )
            })
            .collect::<Vec<_>>()
            .join(" · ")
    }

    fn rss_text(&self) -> String {
        self.procs
            .iter()
            .map(|p| format!("{} {:.0}", self.proc_name(p), p.rss_mib))
            .collect::<Vec<_>>()
            .join(" · ")
    }

    /// One line for the progress output.
    pub fn summary(&self) -> String {
        format!(
            "offered {:.0}/s, handled {:.0}/s, fix→police p50/p99 {:.1}/{:.1} ms; {}{}",
            self.offered_per_s,
            self.handled_per_s,
            self.latency.p50_ms,
            self.latency.p99_ms,
            self.drain.describe(),
            match self.shards_moved {
                true => " (shards moved during the step)",
                false => "",
            }
        )
    }

    fn row(&self) -> String {
        format!(
            "| {} | {:.0} | {:.0} | {} | {} | {} | {} | {} | {:.0} / {:.0} |",
            self.who(),
            self.offered_per_s,
            self.handled_per_s,
            self.drained(),
            match self.instances {
                0 => "–".to_string(),
                _ => format!("{:.0}", self.stream_lag),
            },
            self.latency_text(),
            self.cpu_text(),
            self.rss_text(),
            self.generator_cpu_pct,
            self.other_cpu_pct
        )
    }

    fn json(&self) -> Value {
        let procs: Vec<Value> = self
            .procs
            .iter()
            .map(|p| {
                json!({"name": p.name, "cpu_pct": num(p.cpu_pct),
                       "cpu_us_per_fix": num(p.us_per_fix), "rss_mib": num(p.rss_mib)})
            })
            .collect();
        let shards: serde_json::Map<String, Value> = self
            .shards
            .iter()
            .map(|(n, s)| (n.clone(), json!(s)))
            .collect();
        json!({
            "instances": self.instances, "rate": self.rate,
            "offered_per_s": num(self.offered_per_s), "handled_per_s": num(self.handled_per_s),
            "backlog_at_end": num(self.backlog_at_end), "stream_lag_at_end": num(self.stream_lag),
            "drain": self.drain.json(), "fix_to_police": self.latency.json(),
            "processes": procs, "bridge_and_deliverer": self.bridge,
            "shards": shards, "shards_moved": self.shards_moved,
            "generator_cpu_pct": num(self.generator_cpu_pct), "other_cpu_pct": num(self.other_cpu_pct),
        })
    }
}

impl ClusterReport {
    pub fn print(&self) {
        println!();
        println!(
            "kordon cluster mode (issue 15): {} cases, {} devices sending, {} publisher connections, steps of {} s",
            self.cases, self.devices, self.publishers, self.step_secs
        );
        println!();
        println!("| instances | offered/s | handled/s | drained? | in stream at end | fix→police p50 / p99 ms | CPU µs per fix (% of a core) per process | RSS MiB per process | generator / other CPU % |");
        println!("| --- | ---: | ---: | --- | ---: | --- | --- | --- | --- |");
        println!("{}", self.single.row());
        for run in &self.runs {
            for line in &run.lines {
                println!("{}", line.row());
            }
        }
        println!();
        println!("`*`: holds shard 0, so runs the bridge (Mosquitto → JetStream) and the deliverer (JetStream → Mosquitto).");
        println!("handled/s: the sum over the instances of kordon_fixes_total (duplicates excluded) and refusals, from each /metrics.");
        println!("in stream at end: fixes stored in KORDON_SHARDS and not yet read by their shard (kordon_cluster_reader_lag_messages);");
        println!("the rest of a backlog (offered − handled) was still at Mosquitto, waiting for the bridge.");
        for run in &self.runs {
            let moved = run.lines.iter().any(|l| l.shards_moved);
            println!(
                "{} instance(s): cases stored in {:.1} s; every shard served {:.1} s after start, split {:?}{}; rejects {}, police alerts without a planted breach {}",
                run.instances,
                run.put_cases_secs,
                run.ready_secs,
                run.shards_at_start,
                match moved {
                    true => " (shards MOVED during a step: its figures count replays)",
                    false => "",
                },
                run.rejects,
                run.unplanted_alerts
            );
        }
    }

    pub fn json(&self) -> Value {
        let runs: Vec<Value> = self
            .runs
            .iter()
            .map(|r| {
                json!({
                    "instances": r.instances, "put_cases_secs": num(r.put_cases_secs),
                    "ready_secs": num(r.ready_secs),
                    "shards_at_start": r.shards_at_start.iter().map(|(n, s)| json!([n, s])).collect::<Vec<_>>(),
                    "steps": r.lines.iter().map(Line::json).collect::<Vec<_>>(),
                    "rejects": r.rejects, "unplanted_alerts": r.unplanted_alerts,
                })
            })
            .collect();
        json!({
            "mode": "cluster", "cases": self.cases, "devices": self.devices,
            "publishers": self.publishers, "step_secs": self.step_secs,
            "single_process": self.single.json(), "clusters": runs,
        })
    }
}
