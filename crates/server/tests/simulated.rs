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
            let watcher = Watcher::new(&broker, &["kordon/v1/alerts/monitoring"]).await;
            for message in &recording.messages {
                watcher
                    .publish(&message.topic, message.payload.clone())
                    .await;
            }
            // Until kordon has gone quiet.
            let mut seen = 0;
            for _ in 0..60 {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let now = watcher.log().len();
                if now == seen && now > 0 {
                    break;
                }
                seen = now;
            }
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
