//! Asking her device for a fresh position when it matters (docs/mqtt.md,
//! "Requests for a fresh position"): over a real broker, the request goes
//! to her device's request topic, names nothing but the request, and comes
//! at most once a minute.

mod common;

use std::time::Duration;

use common::*;
use jiff::{SignedDuration, Timestamp};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn her_stale_position_with_him_near_is_asked_for_once_a_minute_and_says_nothing_of_him() {
    for_each_broker(|broker| async move {
        let case = TestCase::new("high");
        let kordon = Kordon::start(&broker, &[&case]).await;
        let requests = format!("kordon/v1/devices/{}/request", case.victim);
        let his_requests = format!("kordon/v1/devices/{}/request", case.offender);
        let watcher = Watcher::new(&broker, &[&requests, &his_requests]).await;
        let mut t = Timestamp::now() - SignedDuration::from_mins(30);
        watcher
            .publish(
                &format!("kordon/v1/devices/{}/fix", case.victim),
                fix_json(HOME.0, HOME.1, 5.0, t),
            )
            .await;
        // He comes within 450 m (her warning radius is 500 m) of her 90 s
        // old position, then keeps coming, a fix every 10 s, for half a
        // minute.
        t += SignedDuration::from_secs(90);
        for metres in [450.0, 440.0, 430.0, 420.0] {
            let (lat, lon) = north(HOME, metres);
            watcher
                .publish(
                    &format!("kordon/v1/devices/{}/fix", case.offender),
                    fix_json(lat, lon, 5.0, t),
                )
                .await;
            t += SignedDuration::from_secs(10);
        }
        let (_, request) = watcher
            .expect("a request to her device", |t, _| t == requests)
            .await;
        let request: serde_json::Value = serde_json::from_str(&request).unwrap();
        let keys: Vec<&String> = request.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["action", "ts"], "{request}");
        assert_eq!(request["action"], "report_location");
        let rest = watcher.drain(Duration::from_millis(500)).await;
        assert!(
            rest.iter().all(|(t, _)| *t != requests),
            "asked once within the minute: {rest:?}"
        );
        assert!(
            watcher.log().iter().all(|(t, _)| *t != his_requests),
            "a bracelet is never asked"
        );
        kordon.stop().await;
    })
    .await;
}
