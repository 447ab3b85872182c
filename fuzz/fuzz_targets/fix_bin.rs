//! Postcard fixes: `BinaryFix::decode` on its own and through the server's
//! decoder on `kordon/v1/devices/OFF-1/fix.bin`.
//!
//! Invariants: what decodes encodes to bytes that decode to the same fix, no
//! longer than the input (postcard accepts over-long varints, so the input
//! itself need not come back); the decoder accepts only what `BinaryFix`
//! decodes, and its fix is the documented scaling of the binary fields
//! (impossible optional readings dropped, a time ahead taken as the arrival).
#![no_main]

use kordon_core::Fix;
use kordon_fuzz::{check_decode, now, FIX_BIN_TOPIC};
use kordon_ingest::{BinaryFix, Message};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|payload: &[u8]| {
    let binary = BinaryFix::decode(payload);
    if let Ok(fix) = &binary {
        let bytes = fix.encode();
        assert_eq!(BinaryFix::decode(&bytes).as_ref(), Ok(fix), "{bytes:02x?}");
        assert!(
            bytes.len() <= payload.len(),
            "{bytes:02x?} from {payload:02x?}"
        );
    }
    match check_decode(FIX_BIN_TOPIC, payload) {
        Ok(Message::Fix(fix)) => {
            let Ok(b) = binary else {
                panic!("the decoder took {fix:?} that BinaryFix::decode refuses");
            };
            let Fix {
                ts,
                lat,
                lon,
                accuracy_m,
                speed_mps,
                heading_deg,
                battery_pct,
                strap,
                seq,
                device: _,
            } = fix;
            // Stamped ahead: taken at its arrival.
            assert_eq!(ts.as_millisecond(), b.ts_ms.min(now().as_millisecond()));
            assert_eq!(lat, f64::from(b.lat_e7) / 1e7);
            assert_eq!(lon, f64::from(b.lon_e7) / 1e7);
            assert_eq!(accuracy_m, f64::from(b.acc_dm) / 10.0);
            // Impossible optional readings are dropped, the position kept.
            assert_eq!(speed_mps, b.speed_cm_s.map(|v| f64::from(v) / 100.0));
            let heading = b.heading_cdeg.map(|v| f64::from(v) / 100.0);
            assert_eq!(heading_deg, heading.filter(|h| *h <= 360.0));
            assert_eq!(battery_pct, b.batt.filter(|b| *b <= 100));
            assert_eq!(strap, None);
            assert_eq!(seq, b.seq);
        }
        Ok(other) => panic!("{other:?} from a binary fix topic"),
        Err(_) => {}
    }
});
