//! Which alerts a monitoring officer must act on, and which only inform:
//! the health policy, in one place.
//!
//! A monitoring room that is asked to act on everything acts on nothing
//! (field programmes report operators who stop looking at 1.25 alerts per
//! pair per day). Every message on the monitoring topic says what it asks
//! for in `attention`:
//!
//! - **`action`**: someone must look now, and acknowledge.
//!   - a strap tamper, always;
//!   - a zone or curfew breach;
//!   - a contact-ban breach that is *certain* `proximity_action_after_s`
//!     (60 s) after it was first certain: most brief or possible-only
//!     breaches are people passing within 200 m of each other or a stale
//!     position's grown disc; the police are told of a breach at once, as
//!     before, without waiting for the room;
//!   - a certain late contact-ban breach (she may have met him);
//!   - the bracelet going offline when he was last seen within her contact
//!     ban's warning radius;
//!   - GPS lost or a device offline that has lasted `health_action_after_s`
//!     (30 min) in a medium- or high-risk case, twice that in a low-risk
//!     one;
//!   - a zone crossed on the line between two fixes
//!     ([`kordon_core::passage`]), unless they were more than
//!     `between_fixes_max_gap_s` apart (then it is a note). A contact
//!     ban's breach seen between fixes is *possible*, and informs.
//! - **`information`**: on the screen and in the record, no acknowledgement
//!   asked. Warnings (the breach, if it comes, asks for action), low
//!   batteries, a contact ban's pair unknown (a position is unknown because
//!   a device is silent, and that device's own episode speaks for it), GPS
//!   lost and devices offline until they last (most are a bracelet indoors,
//!   on a charger or standing still, and end within minutes; one that says
//!   `gps: ok` is not GPS-lost at all), and breaches that join an incident.
//!
//! **One incident, one call on the operator.** A zone, curfew or
//! contact-ban breach of a case that already has such a breach asking for
//! action, open or cleared less than `incident_join_s` (30 min) ago, is part
//! of that incident (a follow is a contact-ban and a zone breach; an
//! approach comes and goes): it informs, on the same screen.
//!
//! An alert that comes to ask for action is published again as `updated`
//! with `attention: action`, keeps asking until it ends, and is
//! acknowledged and escalated like any other. This never reads a clock:
//! events and the desk's `tick` bring the time.
//!
//! This module decides only the label; routing to other audiences is the
//! desk's.

use jiff::{SignedDuration, Timestamp};
use kordon_core::{EventKind, RiskLevel, Role};
use serde::{Deserialize, Serialize};

use crate::message::{AlertEvent, AlertMessage};

/// What an alert asks of the monitoring room.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Attention {
    /// Look now and acknowledge.
    Action,
    /// On the screen and in the record; no acknowledgement asked.
    #[default]
    Information,
}

/// What the policy reads besides the alert's own message.
#[derive(Debug, Clone, Copy)]
pub struct Context {
    /// The offender was last seen within the case's contact-ban warning
    /// radius of the protected person.
    pub near_her: bool,
    /// Since when a contact-ban breach has been certain, if it has been.
    pub certain_since: Option<Timestamp>,
    /// Another breach of the same case asks for action, open or cleared
    /// within `incident_join_s`: this one is part of that incident.
    pub incident_open: bool,
}

/// The policy's durations, from the alert settings.
#[derive(Debug, Clone, Copy)]
pub struct Durations {
    pub health_action_after_s: u32,
    pub proximity_action_after_s: u32,
}

/// What an open alert asks of the monitoring room at `now` (see the module
/// documentation). The desk keeps `action` once given, until the alert ends.
pub fn attention(
    message: &AlertMessage,
    context: Context,
    now: Timestamp,
    durations: Durations,
) -> Attention {
    use EventKind::*;
    let lasted = |onset: Timestamp, seconds: u32| {
        now.duration_since(onset) >= SignedDuration::from_secs(i64::from(seconds))
    };
    let certain = message.certainty == Some(kordon_core::Certainty::Certain);
    let action = match message.kind {
        Tamper => return Attention::Action,
        _ if message.event == AlertEvent::LateBreach => {
            message.kind == ProximityBreach && certain && !context.incident_open
        }
        // A zone crossed between fixes far apart is a note: the line
        // between them is a guess.
        ZoneBreach if message.between_fixes.as_ref().is_some_and(|p| p.long_gap) => false,
        ZoneBreach | CurfewBreach => !context.incident_open,
        ProximityBreach => {
            // Certain now, and first certain long enough ago.
            !context.incident_open
                && certain
                && context
                    .certain_since
                    .is_some_and(|since| lasted(since, durations.proximity_action_after_s))
        }
        DeviceOffline if message.role == Role::Offender && context.near_her => true,
        GpsLost | DeviceOffline => {
            let factor = if message.risk == RiskLevel::Low { 2 } else { 1 };
            lasted(message.onset, durations.health_action_after_s * factor)
        }
        _ => false,
    };
    if action {
        Attention::Action
    } else {
        Attention::Information
    }
}

/// Whether this kind of alert, asking for action, makes an incident of its
/// case that later breaches join.
pub fn makes_an_incident(kind: EventKind) -> bool {
    matches!(
        kind,
        EventKind::ZoneBreach | EventKind::ProximityBreach | EventKind::CurfewBreach
    )
}
