//! Issue 13's targets judged on a run's figures. Correctness targets
//! (disconnects, the journal, lost or false alerts) fail the run;
//! performance targets are reported only, since a shared box is noisy.

use crate::report::{Report, Step, Target};

fn target(name: &str, pass: bool, correctness: bool, detail: String) -> Target {
    Target {
        name: name.to_string(),
        pass,
        correctness,
        detail,
    }
}

/// The step at 10k fixes/s, or the fastest below it, or the first.
fn step_near_10k(steps: &[Step]) -> Option<&Step> {
    steps
        .iter()
        .filter(|s| s.rate <= 10_000)
        .max_by_key(|s| s.rate)
        .or(steps.first())
}

pub fn judge(r: &Report) -> Vec<Target> {
    let mut targets = performance(r);
    targets.extend(correctness(r));
    targets
}

/// The fastest rate kordon kept up for a whole phase: a step's, or the
/// overload's intake (offered more than it can take, it takes what it can
/// for the overload's whole length); and where it was measured.
fn sustained(r: &Report) -> (f64, String) {
    let best_step = r
        .steps
        .iter()
        .max_by(|a, b| a.handled_per_s.total_cmp(&b.handled_per_s));
    let o = &r.overload;
    match best_step {
        Some(s) if s.handled_per_s >= o.handled_per_s || o.not_run.is_some() => {
            (s.handled_per_s, format!("the {}/s step", s.rate))
        }
        _ => (o.handled_per_s, format!("the overload's {:.0} s", o.secs)),
    }
}

fn performance(r: &Report) -> Vec<Target> {
    let (best, phase) = sustained(r);
    // A ceiling the generator could not push the broker to is a lower
    // bound, and a ratio against it flatters kordon: not a pass.
    let bound = if r.ceiling_is_lower_bound() {
        " (the ceiling is only a lower bound: raise --ceiling-rate)"
    } else {
        ""
    };
    let mut out = vec![target(
        "sustained rate ≥ 80 % of the broker-only ceiling",
        r.ratio(best) >= 0.8 && bound.is_empty(),
        false,
        format!(
            "{best:.0}/s in {phase} of {:.0}/s = {:.2}{bound}",
            r.ceiling.delivered_per_s,
            r.ratio(best)
        ),
    )];
    let low: Vec<&Step> = r.steps.iter().filter(|s| s.rate <= 10_000).collect();
    let worst = low.iter().map(|s| s.latency.p99_ms).fold(0.0, f64::max);
    out.push(target(
        "fix → alert p99 ≤ 5 ms up to 10k fixes/s",
        !low.is_empty() && worst <= 5.0,
        false,
        format!("worst p99 {worst:.2} ms over {} steps", low.len()),
    ));
    if let Some(s) = step_near_10k(&r.steps) {
        out.push(target(
            "kordon CPU per fix ≤ 10 µs at 10k fixes/s",
            s.cpu_total_us_per_fix <= 10.0,
            false,
            format!("{:.1} µs at {}/s", s.cpu_total_us_per_fix, s.rate),
        ));
        let times = r.times_engine(s.cpu_total_us_per_fix);
        out.push(target(
            "kordon CPU per fix ≤ 30× ingest_fix",
            times <= 30.0,
            false,
            format!("{times:.0}× ({:.0} ns)", r.engine_ns_per_fix),
        ));
    }
    let (pass, detail) = match &r.busy_disk {
        Some(b) => (
            b.step.latency.n > 0 && b.step.latency.p99_ms <= 20.0,
            format!(
                "p99 {:.2} ms at {}/s, dd wrote {:.0} MiB",
                b.step.latency.p99_ms, b.step.rate, b.written_mib
            ),
        ),
        None => (false, "not run".into()),
    };
    out.push(target(
        "fix → alert p99 ≤ 20 ms beside a disk-filling dd",
        pass,
        false,
        detail,
    ));
    let o = &r.overload;
    let skipped = || o.not_run.clone().unwrap_or("not run".into());
    let ratio = o.peak_rss_mib / o.steady_rss_mib;
    out.push(target(
        "overload: RSS ≤ 1.5× steady state",
        o.drain.is_some() && ratio <= 1.5,
        false,
        match o.drain {
            Some(_) => format!(
                "{:.0} / {:.0} MiB = {ratio:.2}",
                o.peak_rss_mib, o.steady_rss_mib
            ),
            None => skipped(),
        },
    ));
    out.push(target(
        "overload: backlog drained at half the rate",
        o.drain.and_then(|d| d.secs()).is_some(),
        false,
        o.drain.map_or_else(skipped, |d| d.describe()),
    ));
    out
}

fn correctness(r: &Report) -> Vec<Target> {
    let o = &r.overload;
    let t = &r.totals;
    vec![
        target(
            "0 broker disconnects (overload and whole run)",
            o.broker_errors == 0.0 && t.connections == 1 && t.publishing_connections == 1,
            true,
            format!(
                "{:.0} connection errors in the overload; connections in the run: {} ingest, {} publishing",
                o.broker_errors, t.connections, t.publishing_connections
            ),
        ),
        target(
            "journal fix records = distinct fixes offered",
            t.journal_records == t.offered && t.journal_distinct == t.offered,
            true,
            journal_detail(t),
        ),
        target(
            "overload: every API request answered (a case, twice a second)",
            // Not run (a step left a backlog): nothing was asked, and the
            // overload's other targets say why.
            o.requests.refused == 0,
            true,
            match &o.not_run {
                Some(why) => format!("overload not run ({why})"),
                None => format!(
                    "{} of {} answered, slowest {:.1} ms{}",
                    o.requests.asked - o.requests.refused,
                    o.requests.asked,
                    o.requests.slowest_ms,
                    o.requests
                        .first_refusal
                        .as_ref()
                        .map_or(String::new(), |f| format!("; first refusal: {f}"))
                ),
            },
        ),
        target(
            "every planted breach's alert delivered",
            t.alerts_delivered == t.planted && t.planted > 0,
            true,
            format!("{} of {}", t.alerts_delivered, t.planted),
        ),
        target(
            "no police alert without a planted breach, no reject",
            t.unplanted_alerts == 0 && t.rejects == 0,
            true,
            format!(
                "{} unplanted alerts, {} rejects",
                t.unplanted_alerts, t.rejects
            ),
        ),
    ]
}

/// The journal's count against what was offered: duplicates and fixes
/// never journaled, named.
fn journal_detail(t: &crate::report::Totals) -> String {
    let twice = t.journal_records.saturating_sub(t.journal_distinct);
    let missing = t.offered.saturating_sub(t.journal_distinct);
    let mut detail = format!(
        "{} records, {} distinct, {} offered",
        t.journal_records, t.journal_distinct, t.offered
    );
    if twice > 0 {
        detail += &format!("; {twice} journaled more than once");
    }
    if missing > 0 {
        detail += &format!(
            "; {missing} not in the journal when kordon stopped (kordon had not taken them)"
        );
    }
    detail
}
