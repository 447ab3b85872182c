//! Operators' acknowledgements on `kordon/v1/alerts/ack` through the server's decoder.
#![no_main]

use kordon_fuzz::{check_decode, ACK_TOPIC};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|payload: &[u8]| {
    let _ = check_decode(ACK_TOPIC, payload);
});
