//! CPU time and wake-ups per thread group and resident memory of a
//! process, from `/proc/<pid>/task/*/stat` (utime + stime, grouped by the
//! thread's name), `/proc/<pid>/task/*/status` (voluntary context
//! switches) and `/proc/<pid>/status` (VmRSS).

use std::collections::BTreeMap;
use std::sync::OnceLock;

/// CPU time of a process: its total (exited threads included) and per
/// thread name, in microseconds; and per thread name, how often its
/// threads went to sleep (each sleep ends in a wake-up, which on a virtual
/// machine costs tens of microseconds: at a low rate kordon pays more per
/// wake-up than per fix).
#[derive(Clone, Debug, Default)]
pub struct Cpu {
    pub total_us: u64,
    pub groups: BTreeMap<String, u64>,
    pub wakeups: BTreeMap<String, u64>,
}

/// Clock ticks per second of `utime`/`stime` (`getconf CLK_TCK`, else 100).
fn ticks_per_s() -> u64 {
    static TICKS: OnceLock<u64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .filter(|t| *t > 0)
            .unwrap_or(100)
    })
}

/// The name and utime + stime (µs) of one `stat` line.
fn parse_stat(text: &str) -> Option<(String, u64)> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let name = text[open + 1..close].to_string();
    // After ")": state is field 3; utime and stime are fields 14 and 15.
    let fields: Vec<&str> = text[close + 1..].split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((name, (utime + stime) * 1_000_000 / ticks_per_s()))
}

/// The CPU time of `pid`, its threads grouped by name.
pub fn cpu(pid: u32) -> Result<Cpu, String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| format!("/proc/{pid}/stat: {e}"))?;
    let (_, total_us) = parse_stat(&stat).ok_or("unreadable /proc stat")?;
    let mut groups = BTreeMap::new();
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
        .map_err(|e| format!("/proc/{pid}/task: {e}"))?;
    let mut wakeups = BTreeMap::new();
    for task in tasks.flatten() {
        let text = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        let Some((name, us)) = parse_stat(&text) else {
            continue;
        };
        *groups.entry(name.clone()).or_default() += us;
        let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
        *wakeups.entry(name).or_default() += voluntary_switches(&status).unwrap_or(0);
    }
    Ok(Cpu {
        total_us,
        groups,
        wakeups,
    })
}

/// `voluntary_ctxt_switches` of a task's `status`: how often it gave up
/// its core to wait (a futex, `epoll_wait`, a sleep), not counting being
/// preempted.
fn voluntary_switches(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))?
        .trim()
        .parse()
        .ok()
}

impl Cpu {
    /// The CPU used and the wake-ups between `earlier` and `self`, per
    /// group; threads that exited in between are in the total CPU only
    /// ("(exited)").
    pub fn since(&self, earlier: &Cpu) -> Cpu {
        let mut groups = per_group_since(&self.groups, &earlier.groups);
        let total_us = self.total_us.saturating_sub(earlier.total_us);
        let named: u64 = groups.values().sum();
        if total_us > named {
            groups.insert("(exited)".into(), total_us - named);
        }
        Cpu {
            total_us,
            groups,
            wakeups: per_group_since(&self.wakeups, &earlier.wakeups),
        }
    }

    /// The CPU of the groups whose name starts with `prefix`.
    pub fn of(&self, prefix: &str) -> u64 {
        self.groups
            .iter()
            .filter(|(name, _)| name.starts_with(prefix))
            .map(|(_, us)| us)
            .sum()
    }
}

/// Each group's count now less its count `earlier` (0 for a group new
/// since).
fn per_group_since(
    now: &BTreeMap<String, u64>,
    earlier: &BTreeMap<String, u64>,
) -> BTreeMap<String, u64> {
    now.iter()
        .map(|(name, n)| {
            let before = earlier.get(name).copied().unwrap_or(0);
            (name.clone(), n.saturating_sub(before))
        })
        .collect()
}

/// CPU time the whole machine spent busy (not idle, not waiting for IO),
/// in microseconds summed over its cores, from `/proc/stat`.
pub fn machine_busy_us() -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return 0;
    };
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest is in user).
    let busy: u64 = ticks.iter().take(8).sum::<u64>()
        - ticks.get(3).copied().unwrap_or(0)
        - ticks.get(4).copied().unwrap_or(0);
    busy * 1_000_000 / ticks_per_s()
}

/// Resident memory of `pid` in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_name_with_spaces_and_parentheses_is_read_whole() {
        let line = "12 (tokio (w) 1) S 1 2 3 4 5 6 7 8 9 10 300 200 0 0";
        let (name, us) = parse_stat(line).unwrap();
        assert_eq!(name, "tokio (w) 1");
        assert_eq!(us, 500 * 1_000_000 / ticks_per_s());
    }

    #[test]
    fn voluntary_switches_are_read_and_preemptions_are_not() {
        let status = "Name:\tkordon-engine\nnonvoluntary_ctxt_switches:\t139\n\
                      voluntary_ctxt_switches:\t5660\n";
        assert_eq!(voluntary_switches(status), Some(5660));
        assert_eq!(voluntary_switches("Name:\tgone\n"), None);
    }

    #[test]
    fn wake_ups_between_two_samples_are_per_thread_name() {
        let sample = |engine: u64, journal: u64| Cpu {
            total_us: 0,
            groups: BTreeMap::new(),
            wakeups: [
                ("kordon-engine".to_string(), engine),
                ("kordon-journal".to_string(), journal),
            ]
            .into_iter()
            .collect(),
        };
        let step = sample(5_700, 1_700).since(&sample(100, 60));
        assert_eq!(step.wakeups["kordon-engine"], 5_600);
        assert_eq!(step.wakeups["kordon-journal"], 1_640);
    }
}
