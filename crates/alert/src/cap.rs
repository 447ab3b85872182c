//! OASIS CAP 1.2 messages for police dispatch.
//!
//! One CAP thread per episode: `Alert` when the police first need to act,
//! `Update` for every later change (and an escalation), `Cancel` when it is
//! cleared; each later message `references` the first. Scope is
//! `Restricted`: the message carries the protected person's position. The
//! schema's traps (no `Z` and no fractions in times, fixed element order,
//! circle radius in km) are pinned by a test that validates against the
//! official schema.

use std::fmt::Write;

use jiff::Timestamp;
use kordon_core::{Certainty, EventKind, Severity};

use crate::message::{AlertEvent, AlertMessage};

pub const NAMESPACE: &str = "urn:oasis:names:tc:emergency:cap:1.2";

/// The first message of a CAP thread, which later ones reference.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CapThread {
    pub sender: String,
    pub first_identifier: String,
    pub first_sent: String,
    /// Messages sent so far; numbers the next identifier.
    pub sent_count: u32,
}

/// CAP's dateTime: `YYYY-MM-DDThh:mm:ss+00:00`.
pub fn cap_time(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%S+00:00").to_string()
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

fn element(xml: &mut String, indent: usize, name: &str, text: &str) {
    let _ = writeln!(
        xml,
        "{:indent$}<{name}>{}</{name}>",
        "",
        escape(text),
        indent = indent
    );
}

fn headline(kind: EventKind) -> &'static str {
    match kind {
        EventKind::ProximityBreach => "Contact ban breached: offender within the alarm radius",
        EventKind::ProximityWarning => "Offender approaching a protected person",
        EventKind::ZoneBreach => "Location ban breached: offender inside an exclusion zone",
        EventKind::ZoneWarning => "Offender near an exclusion zone",
        EventKind::CurfewBreach => "Curfew breached: offender outside the curfew area",
        EventKind::Tamper => "Bracelet tamper in a high-risk case",
        EventKind::PositionUnknown => "Positions unknown under a contact ban",
        EventKind::DeviceOffline => "Bracelet offline",
        EventKind::GpsLost => "Bracelet has no GPS fix",
        EventKind::BatteryLow | EventKind::BatteryCritical => "Bracelet battery low",
        // Never sent to the police; named for completeness.
        EventKind::Pattern => "Pattern in the offender's movements over days",
    }
}

fn cap_severity(severity: Severity) -> &'static str {
    match severity {
        Severity::Minor => "Minor",
        Severity::Moderate => "Moderate",
        Severity::Severe => "Severe",
        Severity::Extreme => "Extreme",
    }
}

fn cap_certainty(certainty: Option<Certainty>) -> &'static str {
    match certainty {
        Some(Certainty::Certain) => "Observed",
        Some(Certainty::Possible) => "Likely",
        _ => "Unknown",
    }
}

/// Encodes `alert` as the next message of `thread` (or the first, opening
/// the thread, when `thread` is `None`), sent at `now`.
pub fn encode(
    alert: &AlertMessage,
    thread: &mut Option<CapThread>,
    sender: &str,
    now: Timestamp,
) -> String {
    let sent = cap_time(now);
    let number = thread.as_ref().map_or(1, |t| t.sent_count + 1);
    let identifier = format!("kordon-{}-{number}", alert.id);
    let msg_type = match (&thread, alert.event) {
        (None, _) => "Alert",
        (Some(_), AlertEvent::Cleared) => "Cancel",
        (Some(_), _) => "Update",
    };
    let mut xml = String::with_capacity(2048);
    xml.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(xml, "<alert xmlns=\"{NAMESPACE}\">");
    element(&mut xml, 2, "identifier", &identifier);
    element(&mut xml, 2, "sender", sender);
    element(&mut xml, 2, "sent", &sent);
    element(&mut xml, 2, "status", "Actual");
    element(&mut xml, 2, "msgType", msg_type);
    element(&mut xml, 2, "source", "kordon");
    element(&mut xml, 2, "scope", "Restricted");
    element(
        &mut xml,
        2,
        "restriction",
        "Police dispatch only: contains the location of a protected person",
    );
    if let Some(first) = thread.as_ref() {
        element(
            &mut xml,
            2,
            "references",
            &format!(
                "{},{},{}",
                first.sender, first.first_identifier, first.first_sent
            ),
        );
    }
    element(&mut xml, 2, "incidents", &alert.id.to_string());
    xml.push_str("  <info>\n");
    element(&mut xml, 4, "language", "en");
    element(&mut xml, 4, "category", "Security");
    element(&mut xml, 4, "event", alert.kind.as_str());
    element(
        &mut xml,
        4,
        "responseType",
        if alert.event == AlertEvent::Cleared {
            "AllClear"
        } else {
            "Execute"
        },
    );
    element(
        &mut xml,
        4,
        "urgency",
        if alert.event == AlertEvent::Cleared {
            "Past"
        } else {
            "Immediate"
        },
    );
    element(&mut xml, 4, "severity", cap_severity(alert.severity));
    element(&mut xml, 4, "certainty", cap_certainty(alert.certainty));
    element(&mut xml, 4, "onset", &cap_time(alert.onset));
    element(&mut xml, 4, "senderName", "kordon electronic monitoring");
    let mut head = headline(alert.kind).to_string();
    match alert.event {
        AlertEvent::Escalated => head.push_str(" (escalated)"),
        AlertEvent::Cleared => head.push_str(" (ended)"),
        _ => {}
    }
    element(&mut xml, 4, "headline", &head);
    let mut description = format!(
        "Case {} (risk {:?}), order {}, device {}.",
        alert.case,
        alert.risk,
        alert.order.as_ref().map_or("-", |o| o.as_str()),
        alert.device
    );
    if let Some(d) = alert.distance_m {
        let _ = write!(description, " Distance {d:.0} m.");
    }
    element(&mut xml, 4, "description", &description);
    for (name, value) in [
        ("case", alert.case.to_string()),
        ("risk", format!("{:?}", alert.risk).to_lowercase()),
        (
            "order",
            alert
                .order
                .as_ref()
                .map_or(String::new(), |o| o.to_string()),
        ),
        ("episode", alert.id.to_string()),
        ("event", format!("{:?}", alert.event).to_lowercase()),
    ] {
        if value.is_empty() {
            continue;
        }
        xml.push_str("    <parameter>\n");
        element(&mut xml, 6, "valueName", name);
        element(&mut xml, 6, "value", &value);
        xml.push_str("    </parameter>\n");
    }
    for (description, position) in [
        ("Offender position", &alert.offender),
        ("Protected person position", &alert.protected),
    ] {
        let Some(p) = position else { continue };
        xml.push_str("    <area>\n");
        element(
            &mut xml,
            6,
            "areaDesc",
            &format!("{description} ({}, fix {})", p.device, cap_time(p.ts)),
        );
        element(
            &mut xml,
            6,
            "circle",
            &format!("{:.6},{:.6} {:.3}", p.lat, p.lon, p.acc / 1000.0),
        );
        xml.push_str("    </area>\n");
    }
    xml.push_str("  </info>\n</alert>\n");
    match thread {
        Some(t) => t.sent_count = number,
        None => {
            *thread = Some(CapThread {
                sender: sender.to_string(),
                first_identifier: identifier,
                first_sent: sent,
                sent_count: 1,
            })
        }
    }
    xml
}
