//! Raw MQTT subscribers: the plain one that sets the broker-only ceiling
//! (QoS 1, a persistent session like kordon's, every message acknowledged at
//! once), and the police console that matches alerts to planted breaches.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::generator::Planted;
use crate::mqtt::{self, Session};
use crate::workload::case_index;

/// A subscriber thread; `stop` ends it.
pub struct Subscriber {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<(), String>>>,
}

impl Subscriber {
    /// Connects, subscribes and hands every message to `each` on a thread
    /// of its own, acknowledging QoS 1 messages after `each` returns. With
    /// `gather`, it waits that long whenever it has read everything, so
    /// that one read takes many messages (cheaper, but later).
    pub fn start(
        port: u16,
        client_id: &str,
        clean: bool,
        filters: &[&str],
        gather: Option<Duration>,
        mut each: impl FnMut(&[u8], &[u8]) + Send + 'static,
    ) -> Result<Subscriber, String> {
        let mut session = mqtt::open(port, client_id, clean, 30)?;
        session.subscribe(filters)?;
        let _ = session
            .writer
            .set_read_timeout(Some(Duration::from_millis(200)));
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name(format!("sub-{}", &client_id[..client_id.len().min(10)]))
            .spawn(move || receive(session, &flag, gather, &mut each))
            .map_err(|e| format!("spawning a subscriber: {e}"))?;
        Ok(Subscriber {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops the thread; an error it ended with is returned.
    pub fn stop(mut self) -> Result<(), String> {
        self.stop.store(true, Relaxed);
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err("a subscriber thread panicked".into()),
            None => Ok(()),
        }
    }
}

fn receive(
    mut session: Session,
    stop: &AtomicBool,
    gather: Option<Duration>,
    each: &mut dyn FnMut(&[u8], &[u8]),
) -> Result<(), String> {
    let mut acks = Vec::with_capacity(64 * 1024);
    let mut last_ping = Instant::now();
    while !stop.load(Relaxed) {
        match session.reader.next() {
            Ok(packet) if packet.kind == mqtt::PUBLISH => {
                if let Some((topic, id, payload)) = packet.publish() {
                    each(topic, payload);
                    if id != 0 {
                        mqtt::puback(&mut acks, id);
                    }
                }
            }
            Ok(_) => {}
            Err(e) if mqtt::is_timeout(&e) => {}
            Err(e) => return Err(format!("subscriber connection lost: {e}")),
        }
        if last_ping.elapsed() > Duration::from_secs(10) {
            acks.extend_from_slice(&mqtt::PINGREQ);
            last_ping = Instant::now();
        }
        if session.reader.has_buffered() && acks.len() < 60_000 {
            continue;
        }
        if !acks.is_empty() {
            session
                .writer
                .write_all(&acks)
                .map_err(|e| format!("subscriber acks: {e}"))?;
            acks.clear();
        }
        if let Some(gather) = gather {
            std::thread::sleep(gather);
        }
    }
    session.close();
    Ok(())
}

/// The plain subscriber on the fix topics: counts what it is delivered.
pub fn ceiling(port: u16, delivered: Arc<AtomicU64>) -> Result<Subscriber, String> {
    Subscriber::start(
        port,
        "bench-ceiling",
        false,
        &["kordon/v1/devices/+/fix"],
        // The broker keeps up to 20,000 messages in flight to it.
        Some(Duration::from_micros(500)),
        move |_, _| {
            delivered.fetch_add(1, Relaxed);
        },
    )
}

/// Deletes the ceiling subscriber's persistent session, so the broker stops
/// queueing fixes for it.
pub fn forget_ceiling_session(port: u16) -> Result<(), String> {
    mqtt::open(port, "bench-ceiling", true, 30)?.close();
    Ok(())
}

/// Fix → police alert latencies, with the phase of their planted breach.
#[derive(Default)]
pub struct Police {
    /// Cases from here on are kept for planted breaches.
    pub first_breach_case: usize,
    pub latencies: Mutex<Vec<(u32, f64)>>,
    pub alerts: AtomicU64,
    /// Later messages about a planted case (its zone breach, updates).
    pub repeats: AtomicU64,
    /// Police messages about a case no breach was planted in: false alerts.
    pub unplanted: AtomicU64,
    /// Rejects kordon published: any but the probe's is a fault of the
    /// workload (or of kordon).
    pub rejects: AtomicU64,
    pub probe_rejects: AtomicU64,
    pub first_reject: Mutex<Option<String>>,
}

/// The police console (and a listener on kordon's rejects).
pub fn police(port: u16, planted: Arc<Planted>, police: Arc<Police>) -> Result<Subscriber, String> {
    Subscriber::start(
        port,
        "bench-police",
        true,
        &["kordon/v1/alerts/police", "kordon/v1/rejects"],
        None,
        move |topic, payload| {
            let arrived = Instant::now();
            if topic == b"kordon/v1/rejects" {
                note_reject(&police, payload);
            } else {
                police.alerts.fetch_add(1, Relaxed);
                match_alert(&planted, &police, payload, arrived);
            }
        },
    )
}

fn note_reject(police: &Police, payload: &[u8]) {
    let text = String::from_utf8_lossy(payload);
    if text.contains("PROBE") {
        police.probe_rejects.fetch_add(1, Relaxed);
        return;
    }
    police.rejects.fetch_add(1, Relaxed);
    if let Ok(mut first) = police.first_reject.lock() {
        first.get_or_insert_with(|| text.chars().take(300).collect());
    }
}

/// The first police message of a planted case, whatever its event, ends
/// that breach's wait.
fn match_alert(planted: &Planted, police: &Police, payload: &[u8], arrived: Instant) {
    let case = serde_json::from_slice::<serde_json::Value>(payload)
        .ok()
        .and_then(|alert| alert["case"].as_str().and_then(case_index));
    let Some(case) = case.filter(|c| *c >= police.first_breach_case) else {
        police.unplanted.fetch_add(1, Relaxed);
        return;
    };
    let sent = planted
        .waiting
        .lock()
        .ok()
        .and_then(|mut w| w.remove(&case));
    match sent {
        Some((at, phase)) => {
            let ms = arrived.duration_since(at).as_secs_f64() * 1000.0;
            if let Ok(mut latencies) = police.latencies.lock() {
                latencies.push((phase, ms));
            }
        }
        None => {
            police.repeats.fetch_add(1, Relaxed);
        }
    }
}
