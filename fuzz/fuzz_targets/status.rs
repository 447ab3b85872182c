//! Status messages on `kordon/v1/devices/OFF-1/status` through the server's decoder.
#![no_main]

use kordon_fuzz::{check_decode, STATUS_TOPIC};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|payload: &[u8]| {
    let _ = check_decode(STATUS_TOPIC, payload);
});
