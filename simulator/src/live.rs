//! Publishing a simulation to a broker as it happens, at real time × a
//! speed factor. The simulated day starts at local midnight and publishing
//! starts at the current time of day, so fixes carry true times of day. A
//! kordon on the wall clock takes them at speed 1; faster runs need kordon's
//! clock to run as fast, which `kordon demo` arranges.

use std::time::Duration;

use rumqttc::{AsyncClient, MqttOptions, QoS};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::Recording;

/// Counts of what was published, for a live status line.
#[derive(Debug, Default, Clone, Copy)]
pub struct Progress {
    pub messages: u64,
    pub fixes: u64,
}

/// Local midnight (Europe/Amsterdam) before `now`: a simulated day that
/// starts there keeps the recording's times of day true to the clock.
pub fn midnight_before(now: jiff::Timestamp) -> jiff::Timestamp {
    let tz = kordon_core::schedule::schedule_time_zone();
    tz.to_timestamp(
        tz.to_datetime(now)
            .date()
            .to_datetime(jiff::civil::Time::midnight()),
    )
    .unwrap_or(now)
}

/// Publishes the messages of `recording` from simulated time `from_ms` on,
/// each when its time comes: simulated time runs from `from_ms` at `speed`
/// times real time from now. Stops early when `stop` turns true.
/// `progress` sees the counts.
pub async fn publish_with(
    recording: Recording,
    broker: &str,
    speed: f64,
    from_ms: i64,
    mut stop: watch::Receiver<bool>,
    progress: watch::Sender<Progress>,
) -> Result<(), String> {
    let address = kordon_ingest::BrokerAddress::parse(broker).map_err(|e| e.to_string())?;
    if address.tls {
        return Err("the simulator publishes over plain mqtt:// (it runs beside kordon)".into());
    }
    let mut options = MqttOptions::new(
        format!("kordon-sim-{}", std::process::id()),
        address.host,
        address.port,
    );
    options.set_keep_alive(Duration::from_secs(10));
    let (client, mut eventloop) = AsyncClient::new(options, 10_000);
    let poller = tokio::spawn(async move {
        loop {
            if eventloop.poll().await.is_err() {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    });
    let origin = Instant::now();
    let mut counts = Progress::default();
    for message in recording
        .messages
        .into_iter()
        .filter(|m| m.at_ms >= from_ms)
    {
        let due =
            origin + Duration::from_secs_f64(((message.at_ms - from_ms) as f64 / 1000.0) / speed);
        tokio::select! {
            _ = tokio::time::sleep_until(due) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        let fix = message.topic.ends_with("/fix");
        client
            .publish(message.topic, QoS::AtLeastOnce, false, message.payload)
            .await
            .map_err(|e| e.to_string())?;
        counts.messages += 1;
        counts.fixes += u64::from(fix);
        progress.send_replace(counts);
    }
    // Let the last publishes leave.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = client.disconnect().await;
    poller.abort();
    Ok(())
}

/// [`publish_with`], printing a status line every 10 s.
pub async fn publish(
    recording: Recording,
    broker: &str,
    speed: f64,
    from_ms: i64,
    stop: watch::Receiver<bool>,
) -> Result<(), String> {
    let (tx, mut rx) = watch::channel(Progress::default());
    let total = recording.messages.len();
    let printer = tokio::spawn(async move {
        let mut last = Progress::default();
        loop {
            tokio::time::sleep(Duration::from_secs(10)).await;
            let now = *rx.borrow_and_update();
            eprintln!(
                "published {} of {total} messages; {:.0} fixes/s",
                now.messages,
                (now.fixes - last.fixes) as f64 / 10.0
            );
            last = now;
        }
    });
    let result = publish_with(recording, broker, speed, from_ms, stop, tx).await;
    printer.abort();
    result
}
