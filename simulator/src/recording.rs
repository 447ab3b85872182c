//! A recording: every message the devices would publish, in publication
//! order, with the cases and the ground truth, the seed and the scenario
//! that made it, and what each victim device would answer if kordon asked
//! it for a fresh position ([`DeviceAnswers`]). Stored with postcard; the
//! same seed and scenario give the same bytes.

use serde::{Deserialize, Serialize};

/// Bumped whenever the layout changes.
pub const FORMAT: u32 = 2;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recording {
    pub format: u32,
    pub seed: u64,
    pub scenario: String,
    /// The scenario file's text, so a recording says exactly how it was made.
    pub scenario_toml: String,
    pub pairs: u32,
    pub hours: u32,
    /// Milliseconds since 1970 of the simulation's start (local midnight).
    pub start_ms: i64,
    /// Case files (JSON), one per pair.
    pub cases: Vec<String>,
    pub pair_info: Vec<PairInfo>,
    pub messages: Vec<Message>,
    pub truth: Vec<Truth>,
    /// For each victim device, the fix it would publish if asked for one
    /// (see [`crate::answer`]).
    pub answers: Vec<DeviceAnswers>,
}

/// What one device would answer to a request for a fresh position, sampled
/// along its owner's true path every `every_s` seconds from `start_ms`:
/// the fix it would get, with the simulator's GPS noise and its own "can I
/// get a fix now" (none indoors where the receiver has lost the sky, none
/// once the device is dead), or `None`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceAnswers {
    pub device: String,
    pub every_s: u32,
    pub start_ms: i64,
    /// Stored as differences from the previous fix, so that a day of
    /// samples takes a few bytes each.
    #[serde(with = "delta")]
    pub fixes: Vec<Option<AnswerFix>>,
}

/// One fix a device would answer with, in the units of its fix messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnswerFix {
    /// Degrees × 10⁷, as the fix messages round them.
    pub lat_e7: i32,
    pub lon_e7: i32,
    /// Reported accuracy, decimetres.
    pub acc_dm: u16,
    /// Battery, percent.
    pub batt: u8,
    /// The device's regular fixes so far: the sequence number of the last
    /// one (an answer takes the next).
    pub seq: u64,
}

impl DeviceAnswers {
    /// The first sample at or after `at_ms`: its time, and the fix if the
    /// device could get one then. `None` past the end of the samples.
    pub fn at_or_after(&self, at_ms: i64) -> Option<(i64, Option<AnswerFix>)> {
        let every = i64::from(self.every_s.max(1)) * 1000;
        let i = ((at_ms - self.start_ms).max(0) + every - 1) / every;
        let fix = self.fixes.get(usize::try_from(i).ok()?)?;
        Some((self.start_ms + i * every, *fix))
    }
}

/// The payload of a device's fix message, as every simulated fix carries it.
pub fn fix_payload(
    ts_ms: i64,
    lat_e7: i32,
    lon_e7: i32,
    acc_dm: u16,
    seq: u64,
    batt: u8,
) -> Vec<u8> {
    fix_json(ts_ms, lat_e7, lon_e7, acc_dm, seq, batt)
        .to_string()
        .into_bytes()
}

/// A fix with the receiver's own (Doppler) speed, m/s, and its heading,
/// degrees from north, when it moves: what a bracelet's GPS chip reports.
#[allow(clippy::too_many_arguments)]
pub fn fix_payload_with_velocity(
    ts_ms: i64,
    lat_e7: i32,
    lon_e7: i32,
    acc_dm: u16,
    seq: u64,
    batt: u8,
    speed_mps: f64,
    heading_deg: Option<f64>,
) -> Vec<u8> {
    let mut fix = fix_json(ts_ms, lat_e7, lon_e7, acc_dm, seq, batt);
    fix["speed"] = serde_json::json!((speed_mps * 10.0).round() / 10.0);
    if let Some(heading) = heading_deg {
        fix["heading"] = serde_json::json!(heading.round());
    }
    fix.to_string().into_bytes()
}

fn fix_json(
    ts_ms: i64,
    lat_e7: i32,
    lon_e7: i32,
    acc_dm: u16,
    seq: u64,
    batt: u8,
) -> serde_json::Value {
    serde_json::json!({
        "ts": ts_ms,
        "lat": f64::from(lat_e7) / 1e7,
        "lon": f64::from(lon_e7) / 1e7,
        "acc": f64::from(acc_dm) / 10.0,
        "seq": seq,
        "batt": batt,
    })
}

/// [`DeviceAnswers::fixes`] on disk: each fix as its differences from the
/// previous fix of the device (position, accuracy, battery, sequence), so
/// that postcard's variable-length integers keep them short.
mod delta {
    use super::AnswerFix;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    type Diff = Option<(i32, i32, i32, i16, u64)>;

    pub fn serialize<S: Serializer>(fixes: &[Option<AnswerFix>], s: S) -> Result<S::Ok, S::Error> {
        let mut last = AnswerFix {
            lat_e7: 0,
            lon_e7: 0,
            acc_dm: 0,
            batt: 0,
            seq: 0,
        };
        let diffs: Vec<Diff> = fixes
            .iter()
            .map(|f| {
                f.map(|f| {
                    let d = (
                        f.lat_e7.wrapping_sub(last.lat_e7),
                        f.lon_e7.wrapping_sub(last.lon_e7),
                        i32::from(f.acc_dm) - i32::from(last.acc_dm),
                        i16::from(f.batt) - i16::from(last.batt),
                        f.seq.wrapping_sub(last.seq),
                    );
                    last = f;
                    d
                })
            })
            .collect();
        diffs.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Vec<Option<AnswerFix>>, D::Error> {
        let diffs = Vec::<Diff>::deserialize(d)?;
        let mut last = AnswerFix {
            lat_e7: 0,
            lon_e7: 0,
            acc_dm: 0,
            batt: 0,
            seq: 0,
        };
        let mut out = Vec::with_capacity(diffs.len());
        for diff in diffs {
            out.push(match diff {
                None => None,
                Some((lat, lon, acc, batt, seq)) => {
                    let acc = i32::from(last.acc_dm) + acc;
                    let batt = i16::from(last.batt) + batt;
                    last = AnswerFix {
                        lat_e7: last.lat_e7.wrapping_add(lat),
                        lon_e7: last.lon_e7.wrapping_add(lon),
                        acc_dm: u16::try_from(acc).map_err(serde::de::Error::custom)?,
                        batt: u8::try_from(batt).map_err(serde::de::Error::custom)?,
                        seq: last.seq.wrapping_add(seq),
                    };
                    Some(last)
                }
            });
        }
        Ok(out)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairInfo {
    pub case: String,
    pub offender: String,
    pub victim: String,
    /// The scripted incident, if the pair has one.
    pub incident: Option<String>,
    pub curfew: bool,
}

/// One MQTT publish: when the device sends it, where, what.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub at_ms: i64,
    pub topic: String,
    pub payload: Vec<u8>,
}

/// What really happened, from the true positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum TruthKind {
    /// He was inside her exclusion zone.
    Zone,
    /// He was within the contact ban's alarm radius of her.
    Proximity,
    /// He was out of his curfew zone in curfew hours, beyond the grace.
    Curfew,
    /// Close to her without intent (passing by): the scorer labels alerts
    /// for it as encounters, neither false nor required.
    Encounter,
    /// The strap was cut.
    Tamper,
    /// Her device died.
    VictimOffline,
    /// One stay of a scripted pattern (`slow_burn`, `loiter_edge`): no
    /// alert is due for it alone; the scorer asks for the pattern by the
    /// third.
    PatternStay,
}

impl TruthKind {
    pub fn name(self) -> &'static str {
        match self {
            TruthKind::Zone => "zone",
            TruthKind::Proximity => "proximity",
            TruthKind::Curfew => "curfew",
            TruthKind::Encounter => "encounter",
            TruthKind::Tamper => "tamper",
            TruthKind::VictimOffline => "victim_offline",
            TruthKind::PatternStay => "pattern_stay",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Truth {
    pub case: String,
    pub kind: TruthKind,
    pub start_ms: i64,
    pub end_ms: i64,
    /// Part of a scripted approach, follow or curfew break.
    pub intent: bool,
    /// The pair's scripted incident, for per-scenario figures.
    pub incident: Option<String>,
    /// The fix interval at the onset, seconds: the yardstick for detection
    /// delay (the bracelet's; for proximity the slower of both devices').
    pub fix_interval_s: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum RecordingError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("not a kordon recording, or a damaged one: {0}")]
    Decode(#[from] postcard::Error),
    #[error("recording format {0} is not this kordon's format {FORMAT}")]
    Format(u32),
}

impl Recording {
    pub fn to_bytes(&self) -> Vec<u8> {
        postcard::to_stdvec(self).expect("recordings serialise")
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Recording, RecordingError> {
        let r: Recording = postcard::from_bytes(bytes)?;
        if r.format != FORMAT {
            return Err(RecordingError::Format(r.format));
        }
        Ok(r)
    }

    pub fn write(&self, path: &std::path::Path) -> Result<(), RecordingError> {
        Ok(std::fs::write(path, self.to_bytes())?)
    }

    pub fn read(path: &std::path::Path) -> Result<Recording, RecordingError> {
        Recording::from_bytes(&std::fs::read(path)?)
    }

    pub fn fixes(&self) -> usize {
        self.messages
            .iter()
            .filter(|m| m.topic.ends_with("/fix"))
            .count()
    }
}
