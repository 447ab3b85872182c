//! `kordon.toml`, as `Config::load` reads it after the file: `toml::from_str`,
//! relative paths taken from the file's directory, then `Config::check`. A
//! configuration that passes is then used as the server uses it at start:
//! the OwnTracks map into a decoder, the broker settings, the engine.
//!
//! Built without the embedded broker (`default-features = false`), so
//! `embedded = true` is a problem `check` reports, not a panic.
#![no_main]

use std::path::Path;

use kordon_core::Engine;
use kordon_ingest::{BrokerAddress, Decoder};
use kordon_server::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // `Config::load` reads with `read_to_string`, which refuses non-UTF-8.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut config: Config = match toml::from_str(text) {
        Ok(config) => config,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    let base = Path::new("/etc/kordon");
    config.cases.dir = base.join(&config.cases.dir);
    config.journal.dir = base.join(&config.journal.dir);
    if let Some(ca) = &config.broker.ca_file {
        config.broker.ca_file = Some(base.join(ca));
    }
    let _ = config.journal.journal_file();
    if let Err(problems) = config.check() {
        assert!(!problems.is_empty(), "an empty problem report");
        return;
    }
    let owntracks = config.owntracks_map();
    assert_eq!(owntracks.len(), config.owntracks.devices.len());
    let decoder = Decoder::new(config.ingest.clone(), owntracks);
    let _ = decoder.decode(
        "kordon/v1/devices/OFF-0001/fix",
        br#"{"ts":1795939200000,"lat":51.9199,"lon":4.5468,"acc":8}"#,
        kordon_fuzz::now(),
    );
    if let Some(url) = &config.broker.url {
        assert!(BrokerAddress::parse(url).is_ok(), "check passed a bad url");
        let _ = config.broker_settings(url.clone());
    }
    let _ = Engine::new(config.engine.clone());
});
