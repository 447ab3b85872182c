//! The `kordon` binary as an operator runs it: signals, the retained engine
//! status and its last will, and `check-cases`.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;

fn kordon() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kordon"))
}

fn spawn(broker: &Broker) -> (Child, String) {
    let (child, client_id, _) = spawn_with(broker, &TestCase::new("low"));
    (child, client_id)
}

/// Starts the binary on a fresh directory holding `case`; returns the
/// child, its client id and its configuration file.
fn spawn_with(broker: &Broker, case: &TestCase) -> (Child, String, PathBuf) {
    let dir = temp_dir("process");
    let case_dir = dir.join("cases");
    std::fs::create_dir_all(&case_dir).unwrap();
    std::fs::write(case_dir.join("case.json"), case.json().to_string()).unwrap();
    let client_id = format!("kordon-process-{}-{}", std::process::id(), case.id);
    let path = dir.join("kordon.toml");
    std::fs::write(&path, config_text(broker.url(), &case_dir, &client_id, 120)).unwrap();
    (run(&path, &[]), client_id, path)
}

fn run(config: &Path, extra: &[&str]) -> Child {
    kordon()
        .args(["run", "--config"])
        .arg(config)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn terminate(mut child: Child) {
    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    assert!(child.wait().unwrap().success(), "a SIGTERM is a clean stop");
}

/// Waits until `child` says it is running: only then does it handle
/// SIGTERM. Its "online" comes earlier (from its broker links, while
/// `start` is still under way), and a SIGTERM sent then ends it by the
/// signal's default action ("signal: 15 (SIGTERM)", not a clean stop).
/// Its stderr is read to the end on a thread, so the pipe never fills.
async fn handling_signals(child: &mut Child) {
    use std::io::BufRead;
    let stderr = child.stderr.take().expect("stderr is piped");
    let (running_tx, running_rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut running_tx = Some(running_tx);
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if line.contains("kordon is running") {
                if let Some(tx) = running_tx.take() {
                    let _ = tx.send(());
                }
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(60), running_rx)
        .await
        .expect("kordon says it is running")
        .expect("kordon says it is running before its stderr closes");
}

async fn status_becomes(watcher: &Watcher, status: &str) {
    watcher
        .expect(&format!("engine status {status}"), |t, p| {
            t == "kordon/v1/engine/status" && p == status
        })
        .await;
    // A retained status from an earlier run must not satisfy the next step.
    watcher.forget_unconsumed();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_is_published_on_shutdown_and_by_the_last_will_on_a_kill() {
    for_each_broker(|broker| async move {
        // Not an earlier run's retained status: a retained "online" would
        // pass for this kordon's before it is up to handle SIGTERM.
        let watcher = Watcher::without_retained(&broker, &["kordon/v1/engine/status"]).await;

        let (mut child, client_id) = spawn(&broker);
        status_becomes(&watcher, "online").await;
        handling_signals(&mut child).await;
        let term = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(term.success());
        status_becomes(&watcher, "offline").await;
        let exit = tokio::task::spawn_blocking(move || child.wait())
            .await
            .unwrap()
            .unwrap();
        assert!(exit.success(), "a SIGTERM is a clean stop: {exit}");

        let (mut child, killed_id) = spawn(&broker);
        status_becomes(&watcher, "online").await;
        child.kill().unwrap(); // SIGKILL: no chance to say goodbye
        let _ = child.wait();
        status_becomes(&watcher, "offline").await;

        // Retained: a dashboard that connects now learns it at once.
        let late = Watcher::new(&broker, &["kordon/v1/engine/status"]).await;
        let (_, retained) = late
            .wait_for(Duration::from_secs(5), |t, _| {
                t == "kordon/v1/engine/status"
            })
            .await
            .expect("a retained engine status");
        assert_eq!(retained, "offline");
        forget_session(&broker, &client_id).await;
        // The killed one's too: left behind, Mosquitto (persistent across
        // runs) queued every later test's fixes for it, 1,000 at a time.
        forget_session(&broker, &killed_id).await;
    })
    .await;
}

#[test]
fn check_cases_accepts_the_shipped_cases_and_names_every_error_with_exit_code_1() {
    let shipped: Vec<_> =
        std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/cases"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
    assert!(shipped.len() >= 2);
    let good = kordon().arg("check-cases").args(&shipped).output().unwrap();
    assert!(
        good.status.success(),
        "{}",
        String::from_utf8_lossy(&good.stdout)
    );

    let dir = temp_dir("check");
    let mut case = TestCase::new("medium").json();
    case["orders"][0]["rule"]["alarm_radius_m"] = 900.into();
    case["orders"][1]["valid_until"] = "2025-01-01T00:00:00Z".into();
    let broken = dir.join("broken.json");
    std::fs::write(&broken, case.to_string()).unwrap();
    let garbage = dir.join("garbage.json");
    std::fs::write(&garbage, "{\"id\": ").unwrap();
    let output = kordon()
        .arg("check-cases")
        .args([&shipped[0], &broken, &garbage])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("is valid"), "{text}");
    assert!(
        text.contains("contact-ban") && text.contains("alarm"),
        "{text}"
    );
    assert!(
        text.contains("zone-ban") && text.contains("valid_until"),
        "{text}"
    );
    assert!(
        text.contains("garbage.json") && text.contains("not a case file"),
        "{text}"
    );
}

#[test]
fn check_cases_warns_of_orders_that_cannot_work_with_their_numbers() {
    // He is registered in the middle of his own exclusion zone, 150 m from
    // her home, and the contact ban's alarm radius is 200 m. The court's
    // orders stand (the case is valid), but the coordinator is told.
    let (lat, lon) = ZONE_CENTRE;
    let (her_lat, her_lon) = north(ZONE_CENTRE, 150.0);
    let mut case = TestCase::new("high").json();
    case["offender"]["registered_address"] = serde_json::json!([lon, lat]);
    case["protected"][0]["places"] =
        serde_json::json!([{"kind": "home", "position": [her_lon, her_lat]}]);
    let dir = temp_dir("check-orders");
    let path = dir.join("case.json");
    std::fs::write(&path, case.to_string()).unwrap();

    let output = kordon().arg("check-cases").arg(&path).output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}");
    assert!(text.contains("is valid"), "{text}");
    let warnings: Vec<&str> = text.lines().filter(|l| l.contains(": warning: ")).collect();
    assert_eq!(warnings.len(), 2, "{text}");
    assert!(
        warnings.iter().any(|w| w.contains("order zone-ban")
            && w.contains("field `offender.registered_address`")
            && w.contains("registered address lies inside this exclusion zone")),
        "{text}"
    );
    assert!(
        warnings.iter().any(|w| w.contains("order contact-ban")
            && w.contains(
                "P1's home are 150 m apart, within this contact ban's 200 m alarm radius"
            )),
        "{text}"
    );
}

#[test]
fn a_broken_configuration_stops_kordon_at_start_naming_the_problem() {
    let dir = temp_dir("badconfig");
    let path = dir.join("kordon.toml");
    std::fs::write(
        &path,
        "[broker]\nembeded = true\n[http]\nlisten = \"127.0.0.1:0\"\n[cases]\ndir = \"cases\"\n",
    )
    .unwrap();
    let output = kordon()
        .args(["run", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let text = String::from_utf8_lossy(&output.stderr);
    assert!(text.contains("embeded"), "the typo is named: {text}");
}

/// A breach journaled by the binary, exported as evidence, verified, then
/// tampered with; and the same journal damaged on disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evidence_is_exported_and_verified_and_a_damaged_journal_stops_kordon() {
    let broker = brokers().remove(0);
    let watcher = Watcher::without_retained(
        &broker,
        &["kordon/v1/engine/status", "kordon/v1/alerts/monitoring"],
    )
    .await;
    let case = TestCase::new("high");
    let (mut child, client_id, config) = spawn_with(&broker, &case);
    status_becomes(&watcher, "online").await;
    handling_signals(&mut child).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Walk into the zone at a plausible pace; the last fix, the first one
    // inside, carries a coordinate to find on disk. It must be the one the
    // breach follows: a fix sent after it may still be unjournaled when
    // SIGTERM stops kordon (the broker redelivers it at the next start).
    let t = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(1);
    for (i, lat) in [51.9700, 51.9600, 51.9500123].into_iter().enumerate() {
        let at = t + jiff::SignedDuration::from_secs(60 * i as i64);
        watcher
            .publish(
                &format!("kordon/v1/devices/{}/fix", case.offender),
                fix_json(lat, ZONE_CENTRE.1, 5.0, at),
            )
            .await;
    }
    watcher
        .expect("the breach", |t, p| {
            t == "kordon/v1/alerts/monitoring" && p.contains(&case.id) && p.contains("zone_breach")
        })
        .await;
    terminate(child);

    let out = config.with_file_name("evidence");
    let export = kordon()
        .args(["evidence", "export", "--config"])
        .arg(&config)
        .args(["--case", &case.id, "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        export.status.success(),
        "{}",
        String::from_utf8_lossy(&export.stderr)
    );
    let verify = |dir: &Path| {
        kordon()
            .args(["evidence", "verify"])
            .arg(dir)
            .output()
            .unwrap()
    };
    let intact = verify(&out);
    let text = String::from_utf8_lossy(&intact.stdout).into_owned();
    assert!(
        intact.status.success() && text.contains("intact: "),
        "{text}"
    );

    let csv = std::fs::read_to_string(out.join("fixes.csv")).unwrap();
    let row = csv.lines().find(|l| l.contains("51.9500123")).unwrap();
    let seq = row.split(',').next().unwrap();
    std::fs::write(
        out.join("fixes.csv"),
        csv.replace("51.9500123", "51.9600123"),
    )
    .unwrap();
    let tampered = verify(&out);
    let text = String::from_utf8_lossy(&tampered.stdout).into_owned();
    assert_eq!(tampered.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!(
            "fixes.csv: record {seq}: its content does not match its digest: edited"
        )),
        "{text}"
    );

    // The fix's coordinate altered on disk: kordon refuses to start, naming
    // the record. The coordinate is also in the breach's records (after the
    // fix's) and in tables outside the chain, so every copy is altered.
    let journal = config.with_file_name("journal").join("journal.db");
    let mut bytes = std::fs::read(&journal).unwrap();
    let copies: Vec<usize> = (0..bytes.len().saturating_sub(9))
        .filter(|&at| &bytes[at..at + 10] == b"51.9500123")
        .collect();
    assert!(!copies.is_empty(), "the fix is in the file");
    for at in copies {
        bytes[at + 9] ^= 0x01;
    }
    std::fs::write(&journal, bytes).unwrap();
    let mut refused = run(&config, &[]);
    let pid = refused.id();
    let stopped = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::task::spawn_blocking(move || {
            let status = refused.wait().unwrap();
            let mut stderr = String::new();
            refused
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut stderr)
                .unwrap();
            (status, stderr)
        }),
    )
    .await;
    let Ok(status) = stopped else {
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
        panic!("kordon started on a damaged journal");
    };
    let status = status.unwrap();
    assert!(!status.0.success());
    assert!(
        status.1.contains(&format!("is damaged at record {seq}"))
            && status.1.contains("--truncate-journal"),
        "{}",
        status.1
    );
    // Told to, it keeps the good part and runs.
    let mut truncated = run(&config, &["--truncate-journal"]);
    status_becomes(&watcher, "online").await;
    handling_signals(&mut truncated).await;
    terminate(truncated);
    let kept = std::fs::read_dir(journal.parent().unwrap())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains(".damaged-")
        })
        .count();
    assert!(kept >= 1, "the damaged journal is kept");
    forget_session(&broker, &client_id).await;
}
