//! Which alerts a monitoring officer must act on, and which only inform:
//! the health policy, in one place.
//!
//! A monitoring room that is asked to act on everything acts on nothing
//! (field programmes report operators who stop looking at 1.25 alerts per
//! pair per day). Every message on the monitoring topic says what it asks
//! for in `attention`:
//!
//! - **`action`**: someone must look now, and acknowledge. Every breach
//!   (zone, contact ban, curfew), a strap tamper, a certain late contact-ban
//!   breach (she may have met him), and the bracelet going offline when he
//!   was last seen within her contact ban's warning radius.
//! - **`information`**: on the screen and in the record, no acknowledgement
//!   asked. Warnings (the breach, if it comes, asks for action; she has
//!   already been warned), low batteries, and device-health and unknown
//!   positions at first: most are a bracelet indoors, on a charger or
//!   standing still (a bracelet that says `gps: ok` is not GPS-lost at all),
//!   and end within minutes.
//!
//! A condition that lasts turns into action: GPS lost or a device offline
//! for `health_action_after_s` (default 30 minutes) in a medium- or
//! high-risk case, or for twice that in a low-risk one. A contact ban's
//! pair unknown stays information: a position is unknown because a device
//! is silent, and that device's own episode asks for action (one silence,
//! one call on the operator). The episode is then published again as `updated` with
//! `attention: action`, and it is acknowledged like any other alert. This
//! never reads a clock: the desk's `tick` brings the time.
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

/// What an alert asks for when it is raised or changes; `near_her`: the
/// offender was last seen within the case's contact-ban warning radius of
/// the protected person.
pub fn on_event(message: &AlertMessage, near_her: bool) -> Attention {
    use EventKind::*;
    let certain = message.certainty == Some(kordon_core::Certainty::Certain);
    match message.kind {
        ZoneBreach | ProximityBreach | CurfewBreach if message.event == AlertEvent::LateBreach => {
            if message.kind == ProximityBreach && certain {
                Attention::Action
            } else {
                Attention::Information
            }
        }
        ZoneBreach | ProximityBreach | CurfewBreach | Tamper => Attention::Action,
        DeviceOffline if message.role == Role::Offender && near_her => Attention::Action,
        _ => Attention::Information,
    }
}

/// Whether an informational alert, open since its onset, has lasted long
/// enough at `now` to ask for action (see the module documentation).
pub fn lasted_into_action(
    message: &AlertMessage,
    now: Timestamp,
    health_action_after_s: u32,
) -> bool {
    use EventKind::*;
    if !matches!(message.kind, GpsLost | DeviceOffline) {
        return false;
    }
    let factor = if message.risk == RiskLevel::Low { 2 } else { 1 };
    let after = SignedDuration::from_secs(i64::from(health_action_after_s) * factor);
    message.attention == Attention::Information && now.duration_since(message.onset) >= after
}
