//! Publishing a simulation to a broker as it happens, at real time × a
//! speed factor. The simulated day starts at local midnight and publishing
//! starts at the current time of day, so fixes carry true times of day. A
//! kordon on the wall clock takes them at speed 1; faster runs need kordon's
//! clock to run as fast, which `kordon demo` arranges.
//!
//! The victim devices answer kordon's requests for a fresh position
//! ([`crate::answer`]): subscribed to `kordon/v1/devices/+/request`, a
//! device asked publishes its answer fix on its fix topic when the
//! simulated time of the answer comes.

use std::collections::BTreeMap;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::answer::{self, Answer, Answerer};
use crate::recording::Message;
use crate::Recording;

/// Counts of what was published, for a live status line.
#[derive(Debug, Default, Clone, Copy)]
pub struct Progress {
    /// Recorded messages published, and fixes among them and the answers.
    pub messages: u64,
    pub fixes: u64,
    /// Requests for a fresh position received, and the fixes answering them.
    pub requests: u64,
    pub answers: u64,
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
/// times real time from now. Requests for a fresh position are answered
/// from the recording's answers at the simulated time they arrive. Stops
/// early when `stop` turns true. `progress` sees the counts.
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
    // Requests come in on the connection's event loop: their devices go to
    // the publisher. Subscribed again on every (re)connection. Bounded: a
    // request that finds it full is dropped, as a phone busy elsewhere
    // would miss it (kordon asks again a minute later).
    let (requests_tx, mut requests) = mpsc::channel::<String>(1024);
    let subscriber = client.clone();
    let poller = tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                    let _ = subscriber.try_subscribe(answer::REQUEST_TOPICS, QoS::AtLeastOnce);
                }
                Ok(Event::Incoming(Incoming::Publish(p))) => {
                    if let Some(device) = answer::request_device(&p.topic) {
                        if answer::is_report_location(&p.payload) {
                            let _ = requests_tx.try_send(device.to_string());
                        }
                    }
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    });
    let origin = Instant::now();
    let mut answerer = Answerer::new(&recording.answers);
    let messages = &recording.messages;
    // In publication order: the first one due from `from_ms` on.
    let mut next = messages.partition_point(|m| m.at_ms < from_ms);
    // Answers to publish, by their time.
    let mut pending: BTreeMap<(i64, u64), Message> = BTreeMap::new();
    let mut answered = 0u64;
    let mut counts = Progress::default();
    loop {
        let next_recorded = messages.get(next).map(|m| m.at_ms);
        let next_answer = pending.first_key_value().map(|(k, _)| k.0);
        let (at_ms, is_answer) = match (next_recorded, next_answer) {
            (None, None) => break,
            (Some(r), Some(a)) => (r.min(a), a < r),
            (Some(r), None) => (r, false),
            (None, Some(a)) => (a, true),
        };
        let due =
            origin + Duration::from_secs_f64(((at_ms - from_ms).max(0) as f64 / 1000.0) / speed);
        tokio::select! {
            _ = tokio::time::sleep_until(due) => {}
            Some(device) = requests.recv() => {
                counts.requests += 1;
                let now = from_ms + (origin.elapsed().as_secs_f64() * speed * 1000.0) as i64;
                if let Answer::Fix(fix) = answerer.ask(&device, now) {
                    answered += 1;
                    pending.insert((fix.at_ms, answered), fix);
                }
                progress.send_replace(counts);
                continue;
            }
            _ = stop.wait_for(|s| *s) => break,
        }
        let (topic, payload) = if is_answer {
            let (_, fix) = pending.pop_first().expect("an answer is due");
            counts.answers += 1;
            (fix.topic, fix.payload)
        } else {
            let message = &messages[next];
            next += 1;
            let payload = answerer
                .renumber_payload(&message.topic, &message.payload)
                .unwrap_or_else(|| message.payload.clone());
            (message.topic.clone(), payload)
        };
        let fix = topic.ends_with("/fix");
        client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await
            .map_err(|e| e.to_string())?;
        counts.messages += u64::from(!is_answer);
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
                "published {} of {total} messages; {:.0} fixes/s; {} requests for a fresh position, {} answered",
                now.messages,
                (now.fixes - last.fixes) as f64 / 10.0,
                now.requests,
                now.answers,
            );
            last = now;
        }
    });
    let result = publish_with(recording, broker, speed, from_ms, stop, tx).await;
    printer.abort();
    result
}
