//! Restarts: the state carries on from the journal, and alert messages that
//! were decided before a crash are published once: those the broker had
//! taken not again, those it had not, now.

mod common;

use std::time::Duration;

use common::*;
use jiff::{SignedDuration, Timestamp};
use kordon_journal::{Durability, Entry, Journal, Record};

fn start_time() -> Timestamp {
    Timestamp::now() - SignedDuration::from_hours(1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_breach_survives_a_restart_without_being_raised_again() {
    for_each_broker(|broker| async move {
        let case = TestCase::new("medium");
        let mut kordon = Kordon::start(&broker, &[&case]).await;
        let watcher = Watcher::new(&broker, &["kordon/v1/alerts/monitoring"]).await;
        let fix_topic = format!("kordon/v1/devices/{}/fix", case.offender);
        let t = start_time();
        watcher
            .publish(&fix_topic, fix_json(ZONE_CENTRE.0, ZONE_CENTRE.1, 5.0, t))
            .await;
        let (_, opened) = watcher
            .expect("zone_breach opened", |_, p| {
                p.contains(&case.id) && p.contains(r#""event":"opened""#)
            })
            .await;
        let id = json(&opened)["id"].as_str().unwrap().to_string();

        kordon.shutdown().await;
        kordon.restart().await;

        // Still inside: the episode is known, nothing opens again. Then he
        // leaves for good and it clears under the same id.
        // 1.1 km per 30 s: a plausible speed.
        let away = ZONE_CENTRE.0 + 0.01;
        for (i, lat) in [ZONE_CENTRE.0, away, away, away, away, away]
            .into_iter()
            .enumerate()
        {
            let at = t + SignedDuration::from_secs(30 * (i as i64 + 1));
            watcher
                .publish(&fix_topic, fix_json(lat, ZONE_CENTRE.1, 5.0, at))
                .await;
        }
        let (_, cleared) = watcher
            .expect("cleared after the restart", |_, p| {
                p.contains(&case.id) && p.contains(r#""event":"cleared""#)
            })
            .await;
        assert_eq!(json(&cleared)["id"], id.as_str());
        let reopened = watcher
            .drain(Duration::from_millis(300))
            .await
            .into_iter()
            .chain(watcher.log())
            .filter(|(_, p)| {
                let p = String::from_utf8_lossy(p);
                p.contains(&case.id) && p.contains(r#""event":"opened""#)
            })
            .count();
        assert_eq!(reopened, 1, "opened once, before the restart");
        kordon.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_decided_before_a_crash_are_published_once_after_it() {
    for_each_broker(|broker| async move {
        let case = TestCase::new("medium");
        let mut kordon = Kordon::start(&broker, &[&case]).await;
        kordon.shutdown().await;

        // As a crash would leave it: two warnings journaled as decided, with
        // no confirmation. The broker had taken the first before the crash:
        // it holds its echo in kordon's session.
        let topic = format!("kordon/v1/devices/{}/warning", case.victim);
        let taken = format!(r#"{{"id":"taken-{}"}}"#, case.id);
        let untaken = format!(r#"{{"id":"untaken-{}"}}"#, case.id);
        {
            let (mut journal, _) = Journal::open(&kordon.journal_path(), Durability::Full).unwrap();
            let at = Timestamp::now();
            journal
                .append(&[
                    Entry::new(Record::Outbound {
                        topic: topic.clone(),
                        payload: taken.clone(),
                        at,
                    }),
                    Entry::new(Record::Outbound {
                        topic: topic.clone(),
                        payload: untaken.clone(),
                        at,
                    }),
                ])
                .unwrap();
        }
        // Its own copy back proves the broker has routed it, into kordon's
        // session too, before the victim subscribes (who must not see it).
        let device = Watcher::new(&broker, &[topic.as_str()]).await;
        device.publish(&topic, taken.clone()).await;
        device
            .expect("the taken warning routed by the broker", |_, p| p == taken)
            .await;

        let victim = Watcher::new(&broker, &[topic.as_str()]).await;
        kordon.restart().await;
        victim
            .expect("the untaken warning", |_, p| p == untaken)
            .await;
        // Long enough for a second copy of either to show.
        let later = victim.drain(Duration::from_secs(2)).await;
        let log = victim.log();
        let count = |text: &str| log.iter().filter(|(_, p)| p == text.as_bytes()).count();
        assert_eq!(count(&untaken), 1, "published once: {later:?}");
        assert_eq!(count(&taken), 0, "the broker had it: not published again");

        // The journal now confirms both: a further restart publishes nothing.
        kordon.shutdown().await;
        let mut delivered = 0;
        {
            let (journal, _) = Journal::open(&kordon.journal_path(), Durability::Full).unwrap();
            journal
                .read_after(0, |s| {
                    if let Some(Record::Delivered { .. }) = s.record {
                        delivered += 1;
                    }
                    Ok(())
                })
                .unwrap();
        }
        assert_eq!(delivered, 2);
        kordon.restart().await;
        let again = victim.drain(Duration::from_secs(1)).await;
        assert!(again.is_empty(), "nothing republished: {again:?}");
        kordon.stop().await;
    })
    .await;
}

/// `/healthz` as a probe sees it: status code and body.
async fn health(kordon: &Kordon) -> (reqwest::StatusCode, serde_json::Value) {
    let response = reqwest::get(format!("{}/healthz", kordon.http))
        .await
        .unwrap();
    (response.status(), response.json().await.unwrap())
}

/// Polls `/healthz` until `wanted` holds; panics with the last answer.
async fn health_until(
    kordon: &Kordon,
    what: &str,
    wanted: impl Fn(reqwest::StatusCode, &serde_json::Value) -> bool,
) -> serde_json::Value {
    let mut last = None;
    for _ in 0..300 {
        let (status, body) = health(kordon).await;
        if wanted(status, &body) {
            return body;
        }
        last = Some((status, body));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("/healthz never showed {what}: last {last:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_that_cannot_commit_turns_health_red_alerts_still_go_out_and_nothing_is_skipped()
{
    // The journal does not depend on the broker: the embedded one will do.
    let broker = brokers().remove(0);
    let case = TestCase::new("medium");
    let kordon = Kordon::start(&broker, &[&case]).await;
    let watcher = Watcher::new(&broker, &["kordon/v1/alerts/monitoring"]).await;
    health_until(&kordon, "ok", |status, _| status == reqwest::StatusCode::OK).await;

    // Someone opens the live journal and leaves a write transaction open:
    // kordon's commits wait out SQLite's busy timeout, then fail.
    let intruder = rusqlite::Connection::open(kordon.journal_path()).unwrap();
    intruder.execute_batch("BEGIN IMMEDIATE").unwrap();

    let fix_topic = format!("kordon/v1/devices/{}/fix", case.offender);
    watcher
        .publish(
            &fix_topic,
            fix_json(ZONE_CENTRE.0, ZONE_CENTRE.1, 5.0, start_time()),
        )
        .await;
    let body = health_until(&kordon, "the failing journal", |status, body| {
        status == reqwest::StatusCode::SERVICE_UNAVAILABLE
            && body["problems"]
                .to_string()
                .contains("journal commits failing")
    })
    .await;
    assert_eq!(body["status"], "degraded");
    // A warning not sent is worse than one not on record.
    watcher
        .expect("the breach, though the journal failed", |_, p| {
            p.contains(&case.id) && p.contains(r#""event":"opened""#)
        })
        .await;

    intruder.execute_batch("ROLLBACK").unwrap();
    drop(intruder);
    let body = health_until(&kordon, "ok again", |status, _| {
        status == reqwest::StatusCode::OK
    })
    .await;
    assert_eq!(body["status"], "ok");
    assert_eq!(body["problems"], serde_json::json!([]));
    // The retried commit carried the fix: nothing skipped.
    let journal = rusqlite::Connection::open(kordon.journal_path()).unwrap();
    let fixes: i64 = journal
        .query_row(
            "SELECT count(*) FROM records WHERE kind = 'fix' AND device = ?1",
            [&case.offender],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(fixes, 1);
    kordon.stop().await;
}
