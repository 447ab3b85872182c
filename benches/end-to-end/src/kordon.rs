//! kordon as a child process: its case files and configuration (the bench's
//! Mosquitto, a journal with `durability = "full"`, the API on a free
//! port), start, readiness, `/metrics`, its log, and a stop by SIGTERM.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};

use crate::http;
use crate::mosquitto::free_port;
use crate::report::LogGroup;
use crate::workload::World;

/// The monitoring demo token of `config/kordon.toml` and its SHA-256: the
/// API listens on 127.0.0.1 only, for this run only.
const TOKEN: &str = "monitoring-demo-token";
const TOKEN_SHA256: &str = "f867dad95b04b4672eff2f8170d06334646fbcfab4ee5ab467f6381f9b5bf39e";
pub const CLIENT_ID: &str = "kordon-bench";

pub struct Kordon {
    child: Child,
    pub pid: u32,
    pub http_port: u16,
    pub journal: PathBuf,
    pub log: PathBuf,
}

/// Writes one case file per case into `dir/cases`.
pub fn write_cases(dir: &Path, world: &World) -> Result<(), String> {
    let cases = dir.join("cases");
    std::fs::create_dir_all(&cases).map_err(|e| format!("{}: {e}", cases.display()))?;
    let valid_from = Timestamp::now() - SignedDuration::from_hours(24);
    for i in 0..world.cases {
        let path = cases.join(format!("bench-{i:05}.json"));
        std::fs::write(&path, world.case_json(i, valid_from))
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

/// kordon's configuration for the benchmark. Health timeouts are a day:
/// the benchmark's pauses (and the planted breaches' silent offenders)
/// would otherwise open thousands of "offline" episodes that are no part
/// of the workload.
fn config_text(mqtt_port: u16, http_port: u16) -> String {
    format!(
        r#"[broker]
embedded = false
url = "mqtt://127.0.0.1:{mqtt_port}"
client_id = "{CLIENT_ID}"

[http]
listen = "127.0.0.1:{http_port}"

[[http.tokens]]
name = "benchmark"
role = "monitoring"
sha256 = "{TOKEN_SHA256}"

[cases]
dir = "cases"

[engine]
offline_after_s = 86400
gps_lost_after_s = 86400

[journal]
dir = "journal"
durability = "full"
"#
    )
}

/// A cluster instance's configuration (`docs/cluster.md`): the benchmark's,
/// with a broker client id of its own and a `[cluster]` section naming the
/// run's `nats-server` and the instance.
pub fn cluster_config_text(
    mqtt_port: u16,
    http_port: u16,
    nats_port: u16,
    instance: &str,
) -> String {
    let text = config_text(mqtt_port, http_port).replace(
        &format!("client_id = \"{CLIENT_ID}\""),
        &format!("client_id = \"{CLIENT_ID}-{instance}\""),
    );
    format!(
        "{text}\n[cluster]\nnats_url = \"nats://127.0.0.1:{nats_port}\"\ninstance = \"{instance}\"\n"
    )
}

impl Kordon {
    /// Starts `binary run --config` in `dir` (cases already written).
    pub fn start(binary: &Path, dir: &Path, mqtt_port: u16) -> Result<Kordon, String> {
        let http_port = free_port()?;
        Kordon::start_with(binary, dir, &config_text(mqtt_port, http_port), http_port)
    }

    /// Starts `binary run --config` in `dir` with the configuration `text`
    /// (written to `dir/kordon.toml`), whose API listens on `http_port`.
    pub fn start_with(
        binary: &Path,
        dir: &Path,
        text: &str,
        http_port: u16,
    ) -> Result<Kordon, String> {
        let config = dir.join("kordon.toml");
        std::fs::write(&config, text).map_err(|e| format!("{}: {e}", config.display()))?;
        let log = dir.join("kordon.log");
        let out = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new(binary)
            .arg("run")
            .arg("--config")
            .arg(&config)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", binary.display()))?;
        Ok(Kordon {
            pid: child.id(),
            child,
            http_port,
            journal: dir.join("journal").join("journal.db"),
            log,
        })
    }

    /// Waits until `/healthz` is 200 with every case loaded.
    pub fn wait_ready(&mut self, cases: usize, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        let mut last = String::from("no answer");
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "kordon exited at start ({status}); its log: {}",
                    self.log.display()
                ));
            }
            if let Ok((code, body)) = http::get(self.http_port, "/healthz", None) {
                let loaded = serde_json::from_str::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v["cases"].as_u64());
                if code == 200 && loaded == Some(cases as u64) {
                    return Ok(());
                }
                last = format!("{code} {body}");
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        Err(format!(
            "kordon not ready in {timeout:?} (last /healthz: {last})"
        ))
    }

    /// `/healthz`'s status and body, parsed.
    pub fn health(&self) -> Result<(u16, serde_json::Value), String> {
        let (code, body) = http::get(self.http_port, "/healthz", None)?;
        let value = serde_json::from_str(&body).map_err(|e| format!("/healthz: {e}: {body}"))?;
        Ok((code, value))
    }

    /// Asks for case `id` through the API, as an officer's console would
    /// (the engine's thread answers it): the HTTP status and how long the
    /// answer took.
    pub fn ask_case(&self, id: &str) -> Result<(u16, Duration), String> {
        let started = Instant::now();
        let (code, _) = http::get(self.http_port, &format!("/api/v1/cases/{id}"), Some(TOKEN))?;
        Ok((code, started.elapsed()))
    }

    /// `n` dashboard consoles of the monitoring room on the live stream.
    pub fn consoles(&self, n: usize) -> Result<crate::console::Consoles, String> {
        crate::console::Consoles::open(self.http_port, TOKEN, n)
    }

    pub fn metrics(&self) -> Result<Metrics, String> {
        match http::get(self.http_port, "/metrics", Some(TOKEN))? {
            (200, text) => Ok(Metrics(text)),
            (code, body) => Err(format!("/metrics answered {code}: {body}")),
        }
    }

    /// `/healthz`'s problems (empty when all is well).
    pub fn problems(&self) -> Vec<String> {
        let Ok((_, body)) = http::get(self.http_port, "/healthz", None) else {
            return vec!["/healthz did not answer".into()];
        };
        serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["problems"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|p| p.as_str().map(str::to_string))
            .collect()
    }

    /// Whether the process still runs.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Stops kordon with SIGTERM and waits for it (SIGKILL after
    /// `timeout`): whether it stopped cleanly and how long it took.
    pub fn stop(mut self, timeout: Duration) -> Result<(bool, Duration), String> {
        let started = Instant::now();
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status();
        while started.elapsed() < timeout {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Ok((status.success(), started.elapsed()));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        Ok((false, started.elapsed()))
    }
}

/// kordon's warnings and errors, grouped by kind (level, target and
/// message, without the time and the fields), in order of first sight;
/// the refusals of the benchmark's own probe left out.
pub fn log_problems(log: &Path) -> Vec<LogGroup> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut groups: Vec<(String, LogGroup)> = Vec::new();
    for line in text.lines().map(strip_ansi) {
        if !(line.contains(" WARN ") || line.contains(" ERROR ")) || line.contains("devices/PROBE/")
        {
            continue;
        }
        let key = log_kind(&line);
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, group)) => group.count += 1,
            None => groups.push((
                key,
                LogGroup {
                    count: 1,
                    first: line,
                },
            )),
        }
    }
    groups.into_iter().map(|(_, g)| g).collect()
}

/// A log line's kind: its words after the time, up to the first `key=value`.
fn log_kind(line: &str) -> String {
    line.split_whitespace()
        .skip(1)
        .take_while(|word| !word.contains('='))
        .collect::<Vec<_>>()
        .join(" ")
}

impl Drop for Kordon {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A `/metrics` scrape (Prometheus text).
pub struct Metrics(pub String);

impl Metrics {
    /// The sum of a metric over those of its series whose labels contain
    /// `label` (every series with `""`).
    pub fn sum(&self, name: &str, label: &str) -> f64 {
        self.0
            .lines()
            .filter(|l| !l.starts_with('#') && l.starts_with(name))
            .filter(|l| l[name.len()..].starts_with([' ', '{']))
            .filter(|l| l.contains(label))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Fixes the engine took, redeliveries it recognised excluded.
    pub fn fixes(&self) -> f64 {
        self.sum("kordon_fixes_total", "") - self.duplicates()
    }

    pub fn duplicates(&self) -> f64 {
        self.sum("kordon_fixes_total", "disposition=\"duplicate\"")
    }

    pub fn refused(&self) -> f64 {
        self.sum("kordon_messages_refused_total", "")
    }

    /// Police alerts kordon published, and how many of them took longer
    /// than `bound`, one of the histogram's bucket bounds in seconds as
    /// kordon prints it ("0.005", "0.02"), from receiving their fix (its own
    /// share of fix → alert, `kordon_fix_to_alert_seconds`).
    pub fn police_alerts_and_over(&self, bound: &str) -> (f64, f64) {
        let name = "kordon_fix_to_alert_seconds";
        let police = "topic=\"police\"";
        let le = format!("le=\"{bound}\"");
        let count = self.sum(&format!("{name}_count"), police);
        let within = self
            .0
            .lines()
            .filter(|l| l.starts_with(&format!("{name}_bucket")))
            .filter(|l| l.contains(police) && l.contains(&le))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>();
        (count, count - within)
    }

    /// Bytes kordon wrote on its ingest link that the broker has yet to
    /// take (acknowledgements, mostly).
    pub fn ingest_unsent_bytes(&self) -> f64 {
        self.sum("kordon_ingest_unsent_bytes", "")
    }

    pub fn broker_errors(&self) -> f64 {
        self.sum("kordon_broker_connection_errors_total", "")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_metric_is_summed_over_its_series_and_no_other() {
        let m = Metrics(
            "# TYPE kordon_fixes_total counter\n\
             kordon_fixes_total{disposition=\"accepted\"} 10\n\
             kordon_fixes_total{disposition=\"duplicate\"} 3\n\
             kordon_fixes_total_other 100\n"
                .into(),
        );
        assert_eq!(m.fixes(), 10.0);
        assert_eq!(m.duplicates(), 3.0);
    }

    #[test]
    fn a_cluster_instance_has_its_own_client_id_and_names_the_nats_server() {
        let text = cluster_config_text(1883, 8080, 4222, "k2");
        assert!(text.contains("client_id = \"kordon-bench-k2\""));
        assert!(!text.contains("client_id = \"kordon-bench\""));
        assert!(
            text.contains("[cluster]\nnats_url = \"nats://127.0.0.1:4222\"\ninstance = \"k2\"\n")
        );
        assert!(text.contains("embedded = false"));
    }

    #[test]
    fn colours_are_stripped() {
        assert_eq!(strip_ansi("\u{1b}[33m WARN \u{1b}[0m x"), " WARN  x");
    }
}
