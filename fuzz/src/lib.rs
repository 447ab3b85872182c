//! Shared harness code of kordon's fuzz targets: the decoder the server
//! builds, a fixed "now", and the invariants every decoded message must keep.
//!
//! Every target must never panic; beyond that, the checks here assert what
//! the rest of kordon relies on after a message is decoded: an accepted fix
//! passes the engine's own `check_fix` and the ingest limits, is stamped no
//! later than its arrival, its device is the one the topic names, and it
//! survives the journal (what crash recovery replays) unchanged.
//!
//! `KORDON_FUZZ_STRICT=1` also checks what the fuzzer found and was reported
//! but is arguable or minor (see fuzz/README.md, "Findings"), so that those
//! do not stop every run until they are settled; the reproducers under
//! fuzz/regressions/ that need it say so.

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

use jiff::{SignedDuration, Timestamp};
use kordon_core::{check_fix, ClearReason, DeviceId, EpisodeId, Event, Phase};
use kordon_ingest::{Decoder, InboundTopic, Limits, Message, Reason, Refusal};
use kordon_journal::Record;

pub const FIX_TOPIC: &str = "kordon/v1/devices/OFF-1/fix";
pub const FIX_BIN_TOPIC: &str = "kordon/v1/devices/OFF-1/fix.bin";
pub const STATUS_TOPIC: &str = "kordon/v1/devices/OFF-1/status";
pub const OWNTRACKS_TOPIC: &str = "owntracks/user/phone";
pub const ACK_TOPIC: &str = "kordon/v1/alerts/ack";

/// The server clock of every decoding: 2026-11-29T08:00:30Z, thirty seconds
/// after the timestamps of the examples in docs/mqtt.md, so that the seeds
/// pass the time checks and the fuzzer can reach what follows them.
pub fn now() -> Timestamp {
    Timestamp::from_second(1_795_939_230).unwrap()
}

/// Whether the checks of reported, arguable findings are on
/// (`KORDON_FUZZ_STRICT=1`).
pub fn strict() -> bool {
    static STRICT: OnceLock<bool> = OnceLock::new();
    *STRICT.get_or_init(|| std::env::var("KORDON_FUZZ_STRICT").is_ok_and(|v| v == "1"))
}

/// The OwnTracks map, as `Config::owntracks_map` builds it from
/// `[owntracks.devices]` (config/kordon.toml maps `p1/phone`).
pub fn owntracks_map() -> HashMap<String, DeviceId> {
    [("user/phone", "VIC-1"), ("p1/phone", "VIC-0001")]
        .into_iter()
        .map(|(key, device)| (key.to_string(), DeviceId::new(device)))
        .collect()
}

/// The decoder the server builds: `Config::ingest` defaults to
/// `Limits::default()` (the same numbers as config/kordon.toml's `[ingest]`).
pub fn decoder() -> &'static Decoder {
    static DECODER: OnceLock<Decoder> = OnceLock::new();
    DECODER.get_or_init(|| Decoder::new(Limits::default(), owntracks_map()))
}

/// Decodes `payload` on `topic` at [`now`] and checks the result.
pub fn check_decode(topic: &str, payload: &[u8]) -> Result<Message, Refusal> {
    let decoder = decoder();
    let result = decoder.decode(topic, payload, now());
    let inbound = InboundTopic::parse(topic);
    match (&result, &inbound) {
        (Ok(message), Ok(inbound)) => check_message(decoder.limits(), inbound, payload, message),
        (Ok(message), Err(refusal)) => {
            panic!("decoded {message:?} from a topic its parser refuses: {refusal}")
        }
        (Err(refusal), Err(topic_refusal)) => {
            assert_eq!(refusal, topic_refusal, "a refused topic is refused as such");
        }
        (Err(refusal), Ok(inbound)) => check_refusal(decoder.limits(), inbound, payload, refusal),
    }
    result
}

fn in_window(limits: &Limits, ts: Timestamp) -> bool {
    let now = now();
    let ahead = ts.duration_since(now);
    let behind = now.duration_since(ts);
    ahead <= SignedDuration::from_secs(i64::from(limits.max_clock_skew_s))
        && behind <= SignedDuration::from_hours(24 * i64::from(limits.retention_days))
}

/// The device an accepted message on `inbound` must be about.
fn topic_device(inbound: &InboundTopic) -> Option<DeviceId> {
    match inbound {
        InboundTopic::Fix(d) | InboundTopic::BinaryFix(d) | InboundTopic::Status(d) => {
            Some(d.clone())
        }
        InboundTopic::OwnTracks { user, device, .. } => {
            owntracks_map().get(&format!("{user}/{device}")).cloned()
        }
        InboundTopic::Ack => None,
    }
}

fn check_message(limits: &Limits, inbound: &InboundTopic, payload: &[u8], message: &Message) {
    assert!(payload.len() <= limits.max_payload_bytes);
    let received = now();
    match message {
        Message::Fix(fix) => {
            assert!(
                matches!(
                    inbound,
                    InboundTopic::Fix(_)
                        | InboundTopic::BinaryFix(_)
                        | InboundTopic::OwnTracks { rest: false, .. }
                ),
                "a fix from {inbound:?}"
            );
            assert_eq!(Some(&fix.device), topic_device(inbound).as_ref());
            assert!(
                kordon_ingest::topic::device_id(fix.device.as_str()).is_ok(),
                "device id {:?} is not a plain id",
                fix.device
            );
            if let Err(e) = check_fix(fix) {
                panic!("accepted fix fails the engine's check_fix ({e}): {fix:?}");
            }
            assert!(fix.accuracy_m <= limits.max_accuracy_m, "{fix:?}");
            assert!(
                in_window(limits, fix.ts),
                "accepted fix out of the time window: {fix:?}"
            );
            // A fix stamped ahead is taken as stamped at its arrival.
            assert!(
                fix.ts <= received,
                "accepted fix stamped after its arrival: {fix:?}"
            );
            // What the journal stores is what recovery replays.
            let record = Record::Fix {
                fix: fix.clone(),
                received,
            };
            journal_roundtrip(&record);
        }
        Message::Status(status) => {
            assert!(
                matches!(inbound, InboundTopic::Status(_)),
                "a status from {inbound:?}"
            );
            assert_eq!(Some(&status.device), topic_device(inbound).as_ref());
            // Nothing in a status is required (a cut strap must get through);
            // without a usable time it is stamped with its arrival.
            assert!(
                in_window(limits, status.ts) && status.ts <= received,
                "accepted status stamped outside the window or after its arrival: {status:?}"
            );
            assert!(status.battery_pct.is_none_or(|b| b <= 100), "{status:?}");
            let record = Record::Status {
                status: status.clone(),
                received,
            };
            journal_roundtrip(&record);
        }
        Message::Ack(ack) => {
            assert!(
                matches!(inbound, InboundTopic::Ack),
                "an ack from {inbound:?}"
            );
            assert!(!ack.operator.trim().is_empty(), "{ack:?}");
            let record = Record::Ack {
                alert: ack.id.clone(),
                operator: ack.operator.clone(),
                note: ack.note.clone(),
                at: received,
                police: false,
            };
            journal_roundtrip(&record);
        }
    }
}

fn check_refusal(limits: &Limits, inbound: &InboundTopic, payload: &[u8], refusal: &Refusal) {
    if payload.len() > limits.max_payload_bytes {
        assert_eq!(refusal.reason, Reason::PayloadTooLarge, "{refusal}");
    } else {
        assert_ne!(refusal.reason, Reason::PayloadTooLarge, "{refusal}");
    }
    // Rejects name the device the topic says (`kordon/v1/rejects`).
    match inbound {
        InboundTopic::Fix(_) | InboundTopic::BinaryFix(_) | InboundTopic::Status(_) => {
            assert_eq!(refusal.device, topic_device(inbound), "{refusal:?}");
        }
        InboundTopic::OwnTracks { .. } if topic_device(inbound).is_some() => {
            // A refusal names the mapped device or none; strict: it names it
            // always (parse errors do, range and time refusals do not), but
            // for a payload too large, refused before the map is looked at.
            let named = refusal.device.is_some() || refusal.reason == Reason::PayloadTooLarge;
            if refusal.device.is_some() || (strict() && !named) {
                assert_eq!(refusal.device, topic_device(inbound), "{refusal:?}");
            }
        }
        _ => {}
    }
    // The reject message the server publishes always serialises.
    serde_json::to_vec(refusal).expect("a refusal serialises");
}

/// A record's body read back is the record (`Record::body` / `from_body`).
pub fn journal_roundtrip(record: &Record) {
    let body = record.body();
    match Record::from_body(&body) {
        Ok(back) => assert_eq!(
            &back,
            record,
            "journal body {}",
            String::from_utf8_lossy(&body)
        ),
        Err(e) => panic!(
            "journal body does not read back ({e}): {}",
            String::from_utf8_lossy(&body)
        ),
    }
}

/// The episode invariants of crates/core/tests/common/mod.rs over a stream
/// of events: an episode opens once and is updated and cleared only while
/// open; one open episode per order (or per device and kind family for
/// health); an id that ended is never opened again, except one withdrawn
/// with its order or case, which may return with it. Beyond those: a clearing
/// says why and nothing else does, and every number reported is finite.
pub fn episode_invariants(events: &[Event]) -> Result<(), String> {
    let key = |e: &Event| match &e.order {
        Some(order) => format!("{}/{}", e.case, order),
        None => format!("{}/{}/{}", e.case, e.device, e.kind.family()),
    };
    let mut open: HashMap<String, EpisodeId> = HashMap::new();
    let mut ended = HashSet::new();
    for (n, e) in events.iter().enumerate() {
        let k = key(e);
        let broken = match e.phase {
            Phase::Opened if open.contains_key(&k) => Some("two open episodes"),
            Phase::Opened if ended.contains(&e.id) => Some("reopened an ended episode"),
            Phase::Opened => {
                open.insert(k, e.id);
                None
            }
            Phase::Updated if open.get(&k) != Some(&e.id) => Some("update of a closed episode"),
            Phase::Cleared if open.remove(&k) != Some(e.id) => Some("cleared without being open"),
            Phase::Cleared => {
                if e.reason != Some(ClearReason::OrderWithdrawn) {
                    ended.insert(e.id);
                }
                None
            }
            _ => None,
        };
        let broken = broken.or_else(|| {
            let cleared = e.phase == Phase::Cleared;
            (cleared != e.reason.is_some())
                .then_some("a reason on an event that is no clearing, or none on a clearing")
        });
        let numbers = [e.distance_m].into_iter().flatten().chain(
            [&e.offender, &e.protected]
                .into_iter()
                .flatten()
                .flat_map(|p| [p.lat, p.lon, p.accuracy_m]),
        );
        let broken = broken.or_else(|| {
            numbers
                .clone()
                .any(|v| !v.is_finite())
                .then_some("a number that is not finite")
        });
        if let Some(broken) = broken {
            return Err(format!("{broken} at event {n} of: {}", summary(events)));
        }
    }
    Ok(())
}

/// One line per event, for failure messages.
pub fn summary(events: &[Event]) -> String {
    events
        .iter()
        .map(|e| {
            format!(
                "\n{} {:?} {:?} {:?} {} {} onset={} at={} reason={:?}",
                &e.id.to_string()[..8],
                e.phase,
                e.kind,
                e.order,
                e.case,
                e.device,
                e.onset,
                e.at,
                e.reason
            )
        })
        .collect()
}
