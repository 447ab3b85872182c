//! The topics alerts are published on (see `docs/mqtt.md`).

/// The filters kordon reads its own messages back on, and the fence topic
/// each one also matches. `~` cannot occur in a device id, so no device
/// listens on a fence topic, and alert consumers subscribe to exact topics.
pub const ECHO_FILTERS: &[(&str, &str)] = &[
    ("kordon/v1/alerts/+", "kordon/v1/alerts/~fence"),
    (
        "kordon/v1/alerts/police/+",
        "kordon/v1/alerts/police/~fence",
    ),
    (
        "kordon/v1/devices/+/warning",
        "kordon/v1/devices/~fence/warning",
    ),
    (
        "kordon/v1/cases/+/coordinators",
        "kordon/v1/cases/~fence/coordinators",
    ),
];

/// Every alert event, with both positions.
pub const MONITORING: &str = "kordon/v1/alerts/monitoring";
/// Alerts that need a police unit, as JSON.
pub const POLICE: &str = "kordon/v1/alerts/police";
/// The same as OASIS CAP 1.2 XML.
pub const POLICE_CAP: &str = "kordon/v1/alerts/police/cap";

/// A warning for the person carrying `device` (victim device or bracelet).
pub fn device_warning(device: &str) -> String {
    format!("kordon/v1/devices/{device}/warning")
}

/// Escalations for the coordinators of `case`, for a paging gateway.
pub fn case_coordinators(case: &str) -> String {
    format!("kordon/v1/cases/{case}/coordinators")
}

/// Patterns over days found in a case ([`kordon_core::patterns`]), for its
/// coordinators: never for a device.
pub fn case_patterns(case: &str) -> String {
    format!("kordon/v1/cases/{case}/patterns")
}

/// A request to a native victim device for a fresh fix (docs/mqtt.md,
/// "Requests for a fresh position").
pub fn position_request(device: &str) -> String {
    format!("kordon/v1/devices/{device}/request")
}

/// The command topic of an OwnTracks phone published under
/// `owntracks/{user}/{device}` (`user_device` is `"user/device"`).
pub fn owntracks_cmd(user_device: &str) -> String {
    format!("owntracks/{user_device}/cmd")
}
