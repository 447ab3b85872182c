//! English.

use kordon_core::EventKind::{self, *};

use crate::message::AlertEvent;

pub fn protected(kind: EventKind, event: AlertEvent) -> &'static str {
    if event == AlertEvent::Cleared {
        return match kind {
            BatteryLow | BatteryCritical => "Your device's battery is charged enough again.",
            GpsLost => "Your device's location is coming in again.",
            _ => "The alert has ended. If you feel unsafe, call 112.",
        };
    }
    match kind {
        ProximityBreach | ZoneBreach => {
            "Go to a safe place now. The police and the monitoring room have been informed. In danger, call 112."
        }
        ProximityWarning => {
            "Be alert and stay where other people are. The monitoring room has been informed."
        }
        Tamper => {
            "The offender's bracelet reports tampering. The monitoring room has been informed; be alert."
        }
        DeviceOffline => {
            "The offender's bracelet has lost contact. The monitoring room has been informed; be alert."
        }
        GpsLost => {
            "Your device has had no location for a while, so kordon cannot warn you if he comes near. Check that location is switched on."
        }
        BatteryLow => "Your device's battery is low. Charge it soon so that you stay protected.",
        BatteryCritical => {
            "Your device's battery is almost empty. Charge it now: without it you are not protected."
        }
        _ => "The monitoring room has been informed.",
    }
}

pub fn offender(kind: EventKind, event: AlertEvent) -> &'static str {
    match (kind, event) {
        (_, AlertEvent::Cleared) => "You are no longer in breach of your order.",
        (ZoneWarning, _) => "You are near an area you may not enter. Turn back.",
        (ZoneBreach, _) => {
            "You are inside an area you may not enter. Leave it now; your probation officer has been informed."
        }
        (CurfewBreach, _) => {
            "You must be at your curfew address now. Return immediately; your probation officer has been informed."
        }
        _ => "Contact your probation officer.",
    }
}
