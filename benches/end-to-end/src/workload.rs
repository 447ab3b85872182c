//! The workload of issue 13: cases, devices and the fixes they send.
//!
//! Every case has an offender (`OFF-nnnnn`), one protected person with a
//! victim device (`VIC-nnnnn`), a 200 m exclusion zone around her home and a
//! contact ban with a 1,000 m warning and a 500 m alarm radius. Victims live
//! on a grid over Rotterdam; each offender lives 3 km east of his victim.
//! Devices wander on a 50 m (victims) or 100 m (offenders) circle around
//! home, about a metre per fix, far outside every ban.
//!
//! Planted breaches: the last `breach_pool` cases are kept for them. Their
//! offenders send nothing until their one fix 33 m from the victim's home:
//! a first fix has no earlier one to make it implausibly fast, so the
//! breach is certain at once, and each breach uses a fresh case (an episode
//! would otherwise need a minute of clear fixes before the case could be
//! reused). Every other device is active from the start.

use jiff::Timestamp;

/// Microdegrees of latitude per metre (near enough for placing devices).
const LAT_PER_M: f64 = 1.0 / 111_200.0;
const LON_PER_M: f64 = 1.0 / 68_700.0;

#[derive(Clone)]
pub struct World {
    pub cases: usize,
    /// The last this many cases are kept for planted breaches.
    pub breach_pool: usize,
}

/// One device that sends fixes: its fix topic, home and where it is in
/// its walk.
pub struct Device {
    pub name: String,
    pub topic: Vec<u8>,
    pub home: (f64, f64),
    pub radius_m: f64,
    pub phase: f64,
    pub seq: u64,
}

impl Device {
    /// Where the device is at its `seq`-th fix.
    pub fn position(&self) -> (f64, f64) {
        let angle = self.phase + self.seq as f64 * 0.02;
        (
            self.home.0 + self.radius_m * angle.cos() * LAT_PER_M,
            self.home.1 + self.radius_m * angle.sin() * LON_PER_M,
        )
    }
}

pub fn case_id(i: usize) -> String {
    format!("BENCH-{i:05}")
}

pub fn offender(i: usize) -> String {
    format!("OFF-{i:05}")
}

pub fn victim(i: usize) -> String {
    format!("VIC-{i:05}")
}

pub fn fix_topic(device: &str) -> Vec<u8> {
    format!("kordon/v1/devices/{device}/fix").into_bytes()
}

/// The case index of a case id this workload made.
pub fn case_index(id: &str) -> Option<usize> {
    id.strip_prefix("BENCH-")?.parse().ok()
}

impl World {
    pub fn new(cases: usize, breach_pool: usize) -> World {
        World {
            cases,
            breach_pool: breach_pool.min(cases / 2),
        }
    }

    /// Cases below this index have active offenders.
    pub fn first_breach_case(&self) -> usize {
        self.cases - self.breach_pool
    }

    pub fn victim_home(&self, i: usize) -> (f64, f64) {
        (
            51.86 + (i % 100) as f64 * 0.0013,
            4.36 + (i / 100) as f64 * 0.0019,
        )
    }

    pub fn offender_home(&self, i: usize) -> (f64, f64) {
        let (lat, lon) = self.victim_home(i);
        (lat, lon + 3_000.0 * LON_PER_M)
    }

    /// Where a planted breach puts the offender: 33 m north of her home.
    pub fn breach_position(&self, i: usize) -> (f64, f64) {
        let (lat, lon) = self.victim_home(i);
        (lat + 33.0 * LAT_PER_M, lon)
    }

    /// The case file of case `i`, valid from `valid_from`.
    pub fn case_json(&self, i: usize, valid_from: Timestamp) -> String {
        let (lat, lon) = self.victim_home(i);
        serde_json::json!({
            "id": case_id(i), "risk": "medium",
            "offender": {"device": offender(i)},
            "protected": [{"id": "P1", "device": victim(i)}],
            "orders": [
                {"id": "zone-home", "legal_basis": "benchmark", "valid_from": valid_from.to_string(),
                 "rule": {"type": "exclusion_zone", "around": "P1",
                          "geometry": {"type": "Point", "coordinates": [lon, lat], "radius_m": 200.0}}},
                {"id": "contact-ban", "legal_basis": "benchmark", "valid_from": valid_from.to_string(),
                 "rule": {"type": "contact_ban", "protected": "P1",
                          "warning_radius_m": 1000.0, "alarm_radius_m": 500.0}}
            ]
        })
        .to_string()
    }

    /// Every device active from the start: all victims, and the offenders
    /// of the cases not kept for planted breaches.
    pub fn active_devices(&self) -> Vec<Device> {
        let victims = (0..self.cases).map(|i| (victim(i), self.victim_home(i), 50.0));
        let offenders =
            (0..self.first_breach_case()).map(|i| (offender(i), self.offender_home(i), 100.0));
        victims
            .chain(offenders)
            .enumerate()
            .map(|(n, (name, home, radius_m))| Device {
                topic: fix_topic(&name),
                name,
                home,
                radius_m,
                phase: (n % 628) as f64 / 100.0,
                seq: 0,
            })
            .collect()
    }
}

/// A device timestamp as RFC 3339 text with milliseconds, formatted once
/// per millisecond.
pub struct TsCache {
    ms: i64,
    text: Vec<u8>,
}

impl Default for TsCache {
    fn default() -> Self {
        TsCache {
            ms: i64::MIN,
            text: Vec::with_capacity(24),
        }
    }
}

impl TsCache {
    pub fn now(&mut self) -> &[u8] {
        let now = Timestamp::now();
        let ms = now.as_millisecond();
        if ms != self.ms {
            self.ms = ms;
            self.text.clear();
            let ts = Timestamp::from_millisecond(ms).unwrap_or(now);
            let text = ts.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
            self.text.extend_from_slice(text.as_bytes());
        }
        &self.text
    }
}

/// Appends a non-negative integer in decimal.
fn put_u64(buf: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.extend_from_slice(&digits[i..]);
}

/// Appends degrees with six decimals (positive coordinates only: this
/// workload lives in Rotterdam).
fn put_degrees(buf: &mut Vec<u8>, degrees: f64) {
    let micro = (degrees * 1e6).round().max(0.0) as u64;
    put_u64(buf, micro / 1_000_000);
    buf.push(b'.');
    let frac = micro % 1_000_000;
    let start = buf.len();
    put_u64(buf, frac);
    let written = buf.len() - start;
    buf.splice(start..start, std::iter::repeat_n(b'0', 6 - written));
}

/// Appends a fix payload of about 107 bytes: the device's JSON fix with
/// time, position, accuracy, sequence number, speed and battery.
pub fn fix_payload(buf: &mut Vec<u8>, ts: &[u8], position: (f64, f64), seq: u64) {
    buf.extend_from_slice(b"{\"ts\":\"");
    buf.extend_from_slice(ts);
    buf.extend_from_slice(b"\",\"lat\":");
    put_degrees(buf, position.0);
    buf.extend_from_slice(b",\"lon\":");
    put_degrees(buf, position.1);
    buf.extend_from_slice(b",\"acc\":5.0,\"seq\":");
    put_u64(buf, seq);
    buf.extend_from_slice(b",\"speed\":1.0,\"batt\":87}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fix_payload_is_the_json_kordon_reads() {
        let mut buf = Vec::new();
        fix_payload(
            &mut buf,
            b"2026-11-30T10:00:00.123Z",
            (51.9, 4.050007),
            12_345,
        );
        let text = String::from_utf8(buf).unwrap();
        assert_eq!(
            text,
            r#"{"ts":"2026-11-30T10:00:00.123Z","lat":51.900000,"lon":4.050007,"acc":5.0,"seq":12345,"speed":1.0,"batt":87}"#
        );
        assert!(serde_json::from_str::<serde_json::Value>(&text).is_ok());
    }

    #[test]
    fn every_case_file_is_a_valid_case() {
        let world = World::new(10, 3);
        let case = kordon_core::Case::from_json(&world.case_json(9, Timestamp::UNIX_EPOCH));
        let case = case.expect("parses");
        assert!(kordon_core::validate_case(&case).errors.is_empty());
    }

    #[test]
    fn offenders_live_outside_the_warning_radius() {
        let world = World::new(10, 3);
        let (a, b) = (world.victim_home(4), world.offender_home(4));
        let metres = (b.1 - a.1) / LON_PER_M;
        assert!(metres - 100.0 - 50.0 > 1_000.0);
    }
}
