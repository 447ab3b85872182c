//! Arbitrary topics (and payloads) through the server's decoder. The input is
//! split at its first NUL byte: the topic (as UTF-8, lossily, as MQTT topics
//! are strings) before it, the payload after it.
#![no_main]

use kordon_fuzz::check_decode;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (topic, payload) = match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let topic = String::from_utf8_lossy(topic);
    let _ = check_decode(&topic, payload);
});
