//! The `kordon` binary as an operator runs it: signals, the retained engine
//! status and its last will, and `check-cases`.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;

fn kordon() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kordon"))
}

fn spawn(broker: &Broker) -> (Child, String) {
    let dir = temp_dir("process");
    let case_dir = dir.join("cases");
    std::fs::create_dir_all(&case_dir).unwrap();
    let case = TestCase::new("low");
    std::fs::write(case_dir.join("case.json"), case.json().to_string()).unwrap();
    let client_id = format!("kordon-process-{}", std::process::id());
    let path = dir.join("kordon.toml");
    std::fs::write(&path, config_text(broker.url(), &case_dir, &client_id, 120)).unwrap();
    let child = kordon()
        .args(["run", "--config"])
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    (child, client_id)
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
        let watcher = Watcher::new(&broker, &["kordon/v1/engine/status"]).await;

        let (mut child, client_id) = spawn(&broker);
        status_becomes(&watcher, "online").await;
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

        let (mut child, _) = spawn(&broker);
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
