//! Payload codecs: from a topic and its bytes to a [`Fix`], a [`Status`] or
//! an alert acknowledgement, or to a [`Refusal`] that says exactly why not.
//!
//! Decoding is pure: the current time comes in as an argument (to refuse
//! timestamps from the future or from before the retention window), so the
//! same bytes at the same time always give the same answer.

use std::collections::HashMap;

use jiff::{SignedDuration, Timestamp};
use kordon_core::{check_fix, DeviceId, Fix, GpsState, Status, StrapState};
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};

use crate::refusal::{Reason, Refusal};
use crate::topic::InboundTopic;

/// Bounds on what a device may send.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Larger payloads are refused unread.
    pub max_payload_bytes: usize,
    /// A device clock this far ahead of ours is wrong, and a fix from the
    /// future would make every later fix of the device look late.
    pub max_clock_skew_s: u32,
    /// Fixes older than the retention window are no longer evidence anyone
    /// may keep; a bracelet that buffered days offline is still within it.
    pub retention_days: u32,
    /// Reported accuracy beyond this is a fault, not a position (cell-tower
    /// fallbacks report a few kilometres).
    pub max_accuracy_m: f64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_payload_bytes: 4096,
            max_clock_skew_s: 60,
            retention_days: 30,
            max_accuracy_m: 10_000.0,
        }
    }
}

/// An operator's acknowledgement of an alert, from `kordon/v1/alerts/ack`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertAck {
    /// The episode id the alert carries.
    pub id: String,
    pub operator: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// What a message decodes to.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    Fix(Fix),
    Status(Status),
    Ack(AlertAck),
}

impl Message {
    pub fn device(&self) -> Option<&DeviceId> {
        match self {
            Message::Fix(fix) => Some(&fix.device),
            Message::Status(status) => Some(&status.device),
            Message::Ack(_) => None,
        }
    }
}

/// Decodes inbound messages; holds the limits and the OwnTracks device map.
#[derive(Debug, Clone, Default)]
pub struct Decoder {
    limits: Limits,
    /// `"{user}/{device}"` of an OwnTracks topic → kordon device id.
    owntracks: HashMap<String, DeviceId>,
}

impl Decoder {
    pub fn new(limits: Limits, owntracks: HashMap<String, DeviceId>) -> Self {
        Decoder { limits, owntracks }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Decodes one message received at `now`.
    ///
    /// Device clocks drift and jump. A message stamped ahead of its arrival
    /// (by up to `max_clock_skew_s`; further is refused) is taken as stamped
    /// at its arrival: nothing can have happened after it arrived, and a fix
    /// left in the future would make the device's next genuine fixes look
    /// late, demoting their breaches to evidence. So the live state follows
    /// the order fixes arrive in whenever a clock runs ahead.
    pub fn decode(&self, topic: &str, payload: &[u8], now: Timestamp) -> Result<Message, Refusal> {
        let inbound = InboundTopic::parse(topic)?;
        // Every refusal names the device its topic is about, so that the
        // monitoring room sees which bracelet or phone sends faulty data.
        let device = match &inbound {
            InboundTopic::Fix(device)
            | InboundTopic::BinaryFix(device)
            | InboundTopic::Status(device) => Some(device.clone()),
            InboundTopic::OwnTracks { user, device, .. } => {
                self.owntracks.get(&format!("{user}/{device}")).cloned()
            }
            InboundTopic::Ack => None,
        };
        let result = self.decode_topic(inbound, payload, now);
        result.map_err(|refusal| match (&refusal.device, &device) {
            (None, Some(device)) => refusal.about(device),
            _ => refusal,
        })
    }

    fn decode_topic(
        &self,
        inbound: InboundTopic,
        payload: &[u8],
        now: Timestamp,
    ) -> Result<Message, Refusal> {
        if payload.len() > self.limits.max_payload_bytes {
            return Err(Refusal::new(
                Reason::PayloadTooLarge,
                format!(
                    "{} bytes; the limit is {}",
                    payload.len(),
                    self.limits.max_payload_bytes
                ),
            ));
        }
        let mut message = match inbound {
            InboundTopic::Fix(device) => Message::Fix(json_fix(device, payload)?),
            InboundTopic::BinaryFix(device) => {
                Message::Fix(BinaryFix::decode(payload)?.into_fix(device))
            }
            InboundTopic::Status(device) => {
                let (mut status, stamped) = json_status(device, payload)?;
                if !stamped || self.check_time(status.ts, now).is_err() {
                    // A status needs no position: one without a usable time
                    // (a missing field, a clock reset to 1970) still says
                    // what the strap is doing now.
                    status.ts = now;
                }
                Message::Status(status)
            }
            InboundTopic::OwnTracks { user, device, rest } => {
                let key = format!("{user}/{device}");
                let mapped = self.owntracks.get(&key).cloned();
                if rest {
                    return Err(with_device(
                        Refusal::new(
                            Reason::UnsupportedMessage,
                            "OwnTracks sub-topics (events, commands, cards) carry no positions kordon uses",
                        ),
                        mapped,
                    ));
                }
                let Some(mapped) = mapped else {
                    return Err(Refusal::new(
                        Reason::UnknownDevice,
                        format!("OwnTracks device `{key}` is not mapped to a kordon device in the configuration"),
                    ));
                };
                let fix = owntracks_fix(mapped.clone(), payload).map_err(|r| r.about(&mapped))?;
                Message::Fix(fix)
            }
            InboundTopic::Ack => Message::Ack(json_ack(payload)?),
        };
        match &mut message {
            Message::Fix(fix) => {
                drop_impossible_readings(fix);
                check_fix(fix)?;
                if fix.accuracy_m > self.limits.max_accuracy_m {
                    return Err(Refusal::new(
                        Reason::AccuracyAbsurd,
                        format!(
                            "accuracy {} m is above the limit of {} m",
                            fix.accuracy_m, self.limits.max_accuracy_m
                        ),
                    ));
                }
                self.check_time(fix.ts, now)?;
                fix.ts = fix.ts.min(now);
            }
            Message::Status(status) => status.ts = status.ts.min(now),
            Message::Ack(_) => {}
        }
        Ok(message)
    }

    fn check_time(&self, ts: Timestamp, now: Timestamp) -> Result<(), Refusal> {
        let ahead = ts.duration_since(now);
        if ahead > SignedDuration::from_secs(i64::from(self.limits.max_clock_skew_s)) {
            return Err(Refusal::new(
                Reason::TimestampInFuture,
                format!(
                    "ts {ts} is {:.0} s ahead of the server clock ({now}); at most {} s is tolerated",
                    ahead.as_secs_f64(),
                    self.limits.max_clock_skew_s
                ),
            ));
        }
        let window = SignedDuration::from_hours(24 * i64::from(self.limits.retention_days));
        if now.duration_since(ts) > window {
            return Err(Refusal::new(
                Reason::TimestampTooOld,
                format!(
                    "ts {ts} is older than the retention window of {} days",
                    self.limits.retention_days
                ),
            ));
        }
        Ok(())
    }
}

fn with_device(refusal: Refusal, device: Option<DeviceId>) -> Refusal {
    match device {
        Some(device) => refusal.about(&device),
        None => refusal,
    }
}

/// Maps a serde_json error to the reason a person can act on. JSON has no
/// NaN or infinity, but devices send them anyway (Python's `NaN`, overflowing
/// exponents): those are named as such, not as generic syntax errors.
fn json_refusal(error: serde_json::Error, payload: &[u8]) -> Refusal {
    use serde_json::error::Category;
    let non_finite_literal = || {
        [&b"NaN"[..], b"Infinity"]
            .iter()
            .any(|word| payload.windows(word.len()).any(|w| w == *word))
    };
    if error.to_string().starts_with("number out of range")
        || (error.classify() == Category::Syntax && non_finite_literal())
    {
        return Refusal::new(
            Reason::NotFinite,
            format!("a number is not finite: {error}"),
        );
    }
    match error.classify() {
        Category::Data => {
            let text = error.to_string();
            if text.starts_with("missing field") {
                Refusal::new(Reason::MissingField, text)
            } else {
                Refusal::new(Reason::InvalidField, text)
            }
        }
        Category::Syntax | Category::Eof | Category::Io => {
            Refusal::new(Reason::MalformedPayload, format!("not valid JSON: {error}"))
        }
    }
}

fn require<T>(value: Option<T>, field: &str) -> Result<T, Refusal> {
    value.ok_or_else(|| Refusal::new(Reason::MissingField, format!("missing field `{field}`")))
}

/// A device timestamp: epoch milliseconds or RFC 3339 text.
#[derive(Debug, Clone, Copy)]
struct DeviceTime(Timestamp);

impl<'de> Deserialize<'de> for DeviceTime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct TimeVisitor;
        impl Visitor<'_> for TimeVisitor {
            type Value = DeviceTime;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("epoch milliseconds or an RFC 3339 timestamp")
            }
            fn visit_u64<E: de::Error>(self, ms: u64) -> Result<DeviceTime, E> {
                let ms = i64::try_from(ms).map_err(|_| E::custom("ts out of range"))?;
                self.visit_i64(ms)
            }
            fn visit_i64<E: de::Error>(self, ms: i64) -> Result<DeviceTime, E> {
                Timestamp::from_millisecond(ms)
                    .map(DeviceTime)
                    .map_err(|e| E::custom(format!("ts {ms} ms: {e}")))
            }
            fn visit_f64<E: de::Error>(self, ms: f64) -> Result<DeviceTime, E> {
                if !ms.is_finite() || ms.fract() != 0.0 {
                    return Err(E::custom(format!(
                        "ts {ms} is not whole epoch milliseconds"
                    )));
                }
                self.visit_i64(ms as i64)
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<DeviceTime, E> {
                kordon_core::rfc3339::read(text)
                    .map(DeviceTime)
                    .map_err(|e| E::custom(format!("ts `{text}`: {e}")))
            }
        }
        d.deserialize_any(TimeVisitor)
    }
}

/// `kordon/v1/devices/{device}/fix`. Unknown fields are ignored (firmware
/// adds fields); every field a decision needs (`ts`, `lat`, `lon`, `acc`)
/// must be present and well-typed. The optional ones are taken when they
/// make sense and dropped when they do not: a position is never lost to a
/// bad battery reading.
#[derive(Deserialize)]
struct JsonFix {
    device: Option<String>,
    ts: Option<DeviceTime>,
    lat: Option<f64>,
    lon: Option<f64>,
    acc: Option<f64>,
    #[serde(default, deserialize_with = "lenient_number")]
    seq: Option<u64>,
    #[serde(default, deserialize_with = "lenient_number")]
    speed: Option<f64>,
    #[serde(default, deserialize_with = "lenient_number")]
    heading: Option<f64>,
    #[serde(default, deserialize_with = "lenient_number")]
    batt: Option<u8>,
}

/// An optional field: its value when it has the expected type, else none.
fn lenient<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    let value = serde_json::Value::deserialize(d)?;
    Ok(serde_json::from_value(value).ok())
}

/// [`lenient`] for a number: its value when `T` takes the JSON number
/// there, else none. It builds no `serde_json::Value`: every fix has three
/// or four such fields, and their `Value` round trips were a tenth of the
/// fix's decoding (callgrind). Whatever is not a number (a string, `null`,
/// an array, an object) is skipped and gives none, as through a `Value`.
fn lenient_number<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    d.deserialize_any(LenientNumber(std::marker::PhantomData))
}

struct LenientNumber<T>(std::marker::PhantomData<T>);

impl<'de, T: Deserialize<'de>> LenientNumber<T> {
    /// `T` from a number, as `serde_json::from_value` gives it from a
    /// `Value::Number` (which hands on the same `u64`, `i64` or `f64`).
    fn take<N>(number: N) -> Option<T>
    where
        N: de::IntoDeserializer<'de, de::value::Error>,
    {
        T::deserialize(number.into_deserializer()).ok()
    }
}

impl<'de, T: Deserialize<'de>> Visitor<'de> for LenientNumber<T> {
    type Value = Option<T>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Option<T>, E> {
        Ok(Self::take(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Option<T>, E> {
        Ok(Self::take(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Option<T>, E> {
        Ok(Self::take(v))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Option<T>, E> {
        Ok(None)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Option<T>, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Option<T>, E> {
        Ok(None)
    }

    fn visit_none<E: de::Error>(self) -> Result<Option<T>, E> {
        Ok(None)
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Option<T>, A::Error> {
        while seq.next_element::<de::IgnoredAny>()?.is_some() {}
        Ok(None)
    }

    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Option<T>, A::Error> {
        while map
            .next_entry::<de::IgnoredAny, de::IgnoredAny>()?
            .is_some()
        {}
        Ok(None)
    }
}

/// Drops optional readings no device can have made (negative speed, a
/// heading outside the compass, a battery above 100 %): the position and
/// time that decisions need stay.
fn drop_impossible_readings(fix: &mut Fix) {
    fix.speed_mps = fix.speed_mps.filter(|v| v.is_finite() && *v >= 0.0);
    fix.heading_deg = fix
        .heading_deg
        .filter(|v| v.is_finite() && (0.0..=360.0).contains(v));
    fix.battery_pct = fix.battery_pct.filter(|b| *b <= 100);
}

fn check_claimed_device(claimed: Option<&str>, device: &DeviceId) -> Result<(), Refusal> {
    match claimed {
        Some(claimed) if claimed != device.as_str() => Err(Refusal::new(
            Reason::DeviceMismatch,
            format!(
                "payload names device `{claimed}` but was published on the topic of `{device}`"
            ),
        )),
        _ => Ok(()),
    }
}

fn json_fix(device: DeviceId, payload: &[u8]) -> Result<Fix, Refusal> {
    let raw: JsonFix = serde_json::from_slice(payload).map_err(|e| json_refusal(e, payload))?;
    check_claimed_device(raw.device.as_deref(), &device)?;
    let mut fix = Fix::new(
        device,
        require(raw.ts, "ts")?.0,
        require(raw.lat, "lat")?,
        require(raw.lon, "lon")?,
        require(raw.acc, "acc")?,
    );
    fix.seq = raw.seq;
    fix.speed_mps = raw.speed;
    fix.heading_deg = raw.heading;
    fix.battery_pct = raw.batt;
    Ok(fix)
}

/// `kordon/v1/devices/{device}/status`. A status carries the most urgent
/// signal a bracelet sends (a cut strap), so nothing in it is required: a
/// field that is missing, ill-typed or unknown is left out and the rest is
/// taken. Without a usable `ts` the status is stamped with its arrival (see
/// [`Decoder::decode`]); a status without any field is a heartbeat.
#[derive(Deserialize)]
struct JsonStatus {
    #[serde(default, deserialize_with = "lenient")]
    device: Option<String>,
    #[serde(default, deserialize_with = "lenient_time")]
    ts: Option<DeviceTime>,
    #[serde(default, deserialize_with = "lenient_strap")]
    strap: Option<StrapState>,
    #[serde(default, deserialize_with = "lenient")]
    batt: Option<u8>,
    #[serde(default, deserialize_with = "lenient")]
    charging: Option<bool>,
    #[serde(default, deserialize_with = "lenient")]
    gps: Option<GpsState>,
}

fn lenient_time<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DeviceTime>, D::Error> {
    let value = serde_json::Value::deserialize(d)?;
    Ok(DeviceTime::deserialize(value).ok())
}

/// The strap's state, in the words firmware uses for it. A word kordon does
/// not know says nothing about the strap; it never hides a known one.
fn lenient_strap<'de, D: Deserializer<'de>>(d: D) -> Result<Option<StrapState>, D::Error> {
    let value = serde_json::Value::deserialize(d)?;
    let word = value.as_str().map(str::to_ascii_lowercase);
    Ok(match word.as_deref() {
        Some("tampered" | "tamper" | "cut" | "open" | "opened" | "removed" | "broken") => {
            Some(StrapState::Tampered)
        }
        Some("ok" | "closed" | "intact" | "fastened") => Some(StrapState::Ok),
        _ => None,
    })
}

/// A status with the time it was stamped, or none when it has no usable time.
fn json_status(device: DeviceId, payload: &[u8]) -> Result<(Status, bool), Refusal> {
    let raw: JsonStatus = serde_json::from_slice(payload).map_err(|e| json_refusal(e, payload))?;
    check_claimed_device(raw.device.as_deref(), &device)?;
    let stamped = raw.ts.is_some();
    let status = Status {
        device,
        ts: raw.ts.map_or(Timestamp::UNIX_EPOCH, |t| t.0),
        strap: raw.strap,
        battery_pct: raw.batt.filter(|b| *b <= 100),
        charging: raw.charging,
        gps: raw.gps,
    };
    Ok((status, stamped))
}

/// An OwnTracks message; only `_type: "location"` carries a fix.
#[derive(Deserialize)]
struct OwnTracksMessage {
    #[serde(rename = "_type")]
    kind: Option<String>,
    /// UNIX epoch seconds.
    tst: Option<i64>,
    lat: Option<f64>,
    lon: Option<f64>,
    acc: Option<f64>,
    #[serde(default, deserialize_with = "lenient_number")]
    batt: Option<u8>,
    /// km/h
    #[serde(default, deserialize_with = "lenient_number")]
    vel: Option<f64>,
    #[serde(default, deserialize_with = "lenient_number")]
    cog: Option<f64>,
}

fn owntracks_fix(device: DeviceId, payload: &[u8]) -> Result<Fix, Refusal> {
    let raw: OwnTracksMessage =
        serde_json::from_slice(payload).map_err(|e| json_refusal(e, payload))?;
    match raw.kind.as_deref() {
        Some("location") => {}
        Some(other) => {
            return Err(Refusal::new(
                Reason::UnsupportedMessage,
                format!(
                    "OwnTracks `_type` \"{other}\" carries no position; only \"location\" is used"
                ),
            ))
        }
        None => return Err(Refusal::new(Reason::MissingField, "missing field `_type`")),
    }
    let tst = require(raw.tst, "tst")?;
    let ts = Timestamp::from_second(tst)
        .map_err(|e| Refusal::new(Reason::InvalidField, format!("tst {tst}: {e}")))?;
    let mut fix = Fix::new(
        device,
        ts,
        require(raw.lat, "lat")?,
        require(raw.lon, "lon")?,
        require(raw.acc, "acc")?,
    );
    fix.battery_pct = raw.batt;
    fix.speed_mps = raw.vel.map(|kmh| kmh / 3.6);
    fix.heading_deg = raw.cog;
    Ok(fix)
}

fn json_ack(payload: &[u8]) -> Result<AlertAck, Refusal> {
    #[derive(Deserialize)]
    struct RawAck {
        id: Option<String>,
        operator: Option<String>,
        note: Option<String>,
    }
    let raw: RawAck = serde_json::from_slice(payload).map_err(|e| json_refusal(e, payload))?;
    let operator = require(raw.operator, "operator")?;
    if operator.trim().is_empty() {
        return Err(Refusal::new(
            Reason::InvalidField,
            "`operator` is empty: an acknowledgement names who made it",
        ));
    }
    Ok(AlertAck {
        id: require(raw.id, "id")?,
        operator,
        note: raw.note,
    })
}

/// The compact binary fix on `kordon/v1/devices/{device}/fix.bin`, encoded
/// with postcard. Fields in this order, integers as postcard varints (signed
/// ones zig-zag), options as a 0/1 tag byte followed by the value:
///
/// | field | type | unit |
/// | --- | --- | --- |
/// | `ts_ms` | i64 | epoch milliseconds, UTC |
/// | `lat_e7` | i32 | degrees × 10⁷ |
/// | `lon_e7` | i32 | degrees × 10⁷ |
/// | `acc_dm` | u32 | accuracy in decimetres |
/// | `seq` | Option<u64> | message counter |
/// | `speed_cm_s` | Option<u32> | cm/s |
/// | `heading_cdeg` | Option<u16> | hundredths of a degree |
/// | `batt` | Option<u8> | percent |
///
/// A typical fix is 22 to 30 bytes, against ~110 for the JSON form.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BinaryFix {
    pub ts_ms: i64,
    pub lat_e7: i32,
    pub lon_e7: i32,
    pub acc_dm: u32,
    pub seq: Option<u64>,
    pub speed_cm_s: Option<u32>,
    pub heading_cdeg: Option<u16>,
    pub batt: Option<u8>,
}

impl BinaryFix {
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).expect("a BinaryFix always serialises")
    }

    pub fn decode(payload: &[u8]) -> Result<BinaryFix, Refusal> {
        let (fix, rest) = postcard::take_from_bytes::<BinaryFix>(payload).map_err(|e| {
            Refusal::new(
                Reason::MalformedPayload,
                format!("not a postcard BinaryFix: {e}"),
            )
        })?;
        if !rest.is_empty() {
            return Err(Refusal::new(
                Reason::MalformedPayload,
                format!("{} bytes after the end of a BinaryFix", rest.len()),
            ));
        }
        Ok(fix)
    }

    fn into_fix(self, device: DeviceId) -> Fix {
        // from_millisecond fails only beyond year ±9999; the time check that
        // follows refuses such a fix as too old or in the future anyway.
        let ts = Timestamp::from_millisecond(self.ts_ms).unwrap_or(Timestamp::MIN);
        let mut fix = Fix::new(
            device,
            ts,
            f64::from(self.lat_e7) / 1e7,
            f64::from(self.lon_e7) / 1e7,
            f64::from(self.acc_dm) / 10.0,
        );
        fix.seq = self.seq;
        fix.speed_mps = self.speed_cm_s.map(|v| f64::from(v) / 100.0);
        fix.heading_deg = self.heading_cdeg.map(|v| f64::from(v) / 100.0);
        fix.battery_pct = self.batt;
        fix
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same JSON value through [`lenient`] (the `Value` round trip) and
    /// [`lenient_number`].
    #[derive(Deserialize)]
    #[serde(bound = "T: serde::de::DeserializeOwned")]
    struct Both<T> {
        #[serde(default, deserialize_with = "lenient")]
        value: Option<T>,
        #[serde(default, deserialize_with = "lenient_number")]
        number: Option<T>,
        after: u8,
    }

    const VALUES: &[&str] = &[
        "0",
        "1",
        "87",
        "255",
        "256",
        "-1",
        "-0",
        "-0.0",
        "1.0",
        "1.5",
        "-12.25",
        "1e3",
        "1e300",
        "18446744073709551615",
        "-9223372036854775808",
        "0.1",
        "\"7\"",
        "\"\\u0037\"",
        "true",
        "null",
        "[]",
        "[1, [2, {\"a\": 3}]]",
        "{}",
        "{\"a\": [1, 2], \"b\": {\"c\": null}}",
    ];

    fn same_as_value<T>(show: fn(&T) -> String)
    where
        T: serde::de::DeserializeOwned + std::fmt::Debug,
    {
        for text in VALUES {
            let json = format!(r#"{{"value": {text}, "number": {text}, "after": 9}}"#);
            let both: Both<T> = serde_json::from_str(&json).expect(&json);
            assert_eq!(
                both.value.as_ref().map(show),
                both.number.as_ref().map(show),
                "{} from {text}",
                std::any::type_name::<T>()
            );
            assert_eq!(both.after, 9, "what follows {text} is read");
        }
    }

    #[test]
    fn a_lenient_number_is_what_the_value_round_trip_gives() {
        same_as_value::<u64>(u64::to_string);
        same_as_value::<u8>(u8::to_string);
        // Bits: -0.0 and 0.0 differ, and must come out alike.
        same_as_value::<f64>(|v| format!("{:x}", v.to_bits()));
    }

    #[test]
    fn a_missing_lenient_number_is_none() {
        let both: Both<u64> = serde_json::from_str(r#"{"after": 1}"#).unwrap();
        assert_eq!((both.value, both.number), (None, None));
    }
}
