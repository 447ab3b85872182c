//! A recording: every message the devices would publish, in publication
//! order, with the cases and the ground truth, the seed and the scenario
//! that made it. Stored with postcard; the same seed and scenario give the
//! same bytes.

use serde::{Deserialize, Serialize};

/// Bumped whenever the layout changes.
pub const FORMAT: u32 = 1;

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
