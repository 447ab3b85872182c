//! OwnTracks messages on `owntracks/user/phone` (mapped to VIC-1) through
//! the server's decoder.
#![no_main]

use kordon_fuzz::{check_decode, OWNTRACKS_TOPIC};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|payload: &[u8]| {
    let _ = check_decode(OWNTRACKS_TOPIC, payload);
});
