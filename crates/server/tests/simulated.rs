//! End to end: a short simulated Rotterdam day published through a real
//! broker to the `kordon` server, its alerts scored against the ground
//! truth: every scripted breach is detected.

mod common;

use std::time::Duration;

use common::*;
use jiff::SignedDuration;
use kordon_sim::score::{read_alerts, score};
use kordon_sim::{generate, Scenario, SimConfig, World};

const SCENARIO: &str = r#"
name = "end_to_end"
description = "Approaches, follows and curfew breaks for a handful of pairs"
curfew_share = 0.0
[incidents]
approach_home = 0.4
follow = 0.3
curfew_break = 0.3
"#;

/// Messages published between two waits for kordon: well inside the queue
/// a broker keeps for a client (Mosquitto's default is 1,000).
const BATCH: usize = 500;

/// Waits until kordon's engine has handled everything published before: a
/// fix from an unknown device, published after it on the same connection,
/// comes back as a reject (decided by the engine, in order). A barrier, not
/// a guess at how long kordon needs.
async fn engine_has_taken_all(watcher: &Watcher, n: usize) {
    let device = format!("SYNC-{}-{n}", std::process::id());
    watcher
        .publish(
            &format!("kordon/v1/devices/{device}/fix"),
            fix_json(51.9, 4.5, 5.0, jiff::Timestamp::now()),
        )
        .await;
    let found = watcher
        .wait_for(Duration::from_secs(120), |t, p| {
            t == "kordon/v1/rejects" && p.contains(&device)
        })
        .await;
    assert!(found.is_some(), "kordon never took batch {n}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simulated_day_through_a_broker_and_kordon_detects_every_scripted_breach() {
    let (world, _) = World::load().unwrap();
    // Yesterday from local midnight, 20 hours: all of it in the past.
    let start =
        kordon_sim::live::midnight_before(jiff::Timestamp::now()) - SignedDuration::from_hours(24);
    let recording = generate(
        &world,
        &SimConfig {
            seed: 2026,
            pairs: 6,
            hours: 20,
            start,
            scenario: Scenario::parse(SCENARIO).unwrap(),
            scenario_text: SCENARIO.into(),
        },
    );
    let scripted = recording.truth.iter().filter(|t| t.intent).count();
    assert!(scripted >= 6, "the scenario scripts breaches: {scripted}");
    let files: Vec<(String, String)> = recording
        .cases
        .iter()
        .enumerate()
        .map(|(i, json)| (format!("sim-{i}"), json.clone()))
        .collect();

    for_each_broker(|broker| {
        let recording = recording.clone();
        let files = files.clone();
        async move {
            let kordon = Kordon::start_files(&broker, &files, 3600, None).await;
            let watcher = Watcher::new(
                &broker,
                &["kordon/v1/alerts/monitoring", "kordon/v1/rejects"],
            )
            .await;
            // In batches, each waited for: published all at once, the day
            // outruns kordon (it acknowledges a fix once journaled), and
            // Mosquitto drops what exceeds the queue it keeps for a client
            // (1,000 messages), so that which fixes kordon saw depended
            // on the machine's load.
            for (n, batch) in recording.messages.chunks(BATCH).enumerate() {
                for message in batch {
                    watcher
                        .publish(&message.topic, message.payload.clone())
                        .await;
                }
                engine_has_taken_all(&watcher, n).await;
            }
            // The alerts of the last fixes left before the last reject;
            // a moment more for any straggler.
            let _ = watcher.drain(Duration::from_millis(500)).await;
            let lines: Vec<String> = watcher
                .log()
                .into_iter()
                .filter(|(t, _)| t == "kordon/v1/alerts/monitoring")
                .map(|(_, p)| String::from_utf8(p).unwrap())
                .collect();
            let s = score(&recording, &read_alerts(&lines.join("\n")).unwrap());
            eprintln!("{s}");
            assert!(s.scripted_detected > 0);
            assert_eq!(s.scripted_missed, 0, "every scripted breach detected");
            assert_eq!(s.missed, 0, "{:?}", s.missed_list);
            kordon.stop().await;
        }
    })
    .await;
}
