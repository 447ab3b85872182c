//! Nederlands.

use kordon_core::EventKind::{self, *};

use crate::message::AlertEvent;

pub fn protected(kind: EventKind, event: AlertEvent) -> &'static str {
    if event == AlertEvent::Cleared {
        return match kind {
            BatteryLow | BatteryCritical => {
                "De batterij van uw toestel is weer voldoende opgeladen."
            }
            GpsLost => "De locatie van uw toestel komt weer binnen.",
            _ => "Het alarm is voorbij. Voelt u zich niet veilig, bel dan 112.",
        };
    }
    match kind {
        ProximityBreach | ZoneBreach => {
            "Ga nu naar een veilige plek. De politie en de meldkamer zijn ingelicht. Bent u in gevaar, bel 112."
        }
        ProximityWarning => {
            "Let goed op en blijf waar andere mensen zijn. De meldkamer is ingelicht."
        }
        Tamper => {
            "Er wordt geknoeid met de enkelband van de dader. De meldkamer is ingelicht; let goed op."
        }
        DeviceOffline => {
            "De enkelband van de dader heeft geen verbinding meer. De meldkamer is ingelicht; let goed op."
        }
        GpsLost => {
            "Uw toestel heeft al een tijd geen locatie, dus kordon kan u niet waarschuwen als hij in de buurt komt. Controleer of locatie aanstaat."
        }
        BatteryLow => "De batterij van uw toestel is bijna leeg. Laad hem snel op, zodat u beschermd blijft.",
        BatteryCritical => {
            "De batterij van uw toestel is vrijwel leeg. Laad hem nu op: zonder toestel bent u niet beschermd."
        }
        _ => "De meldkamer is ingelicht.",
    }
}

pub fn offender(kind: EventKind, event: AlertEvent) -> &'static str {
    match (kind, event) {
        (_, AlertEvent::Cleared) => "U overtreedt uw voorwaarden niet meer.",
        (ZoneWarning, _) => "U bent dicht bij een gebied waar u niet mag komen. Keer om.",
        (ZoneBreach, _) => {
            "U bent in een gebied waar u niet mag komen. Verlaat het nu; uw reclasseringswerker is ingelicht."
        }
        (CurfewBreach, _) => {
            "U moet nu op uw adres zijn. Ga direct terug; uw reclasseringswerker is ingelicht."
        }
        _ => "Neem contact op met uw reclasseringswerker.",
    }
}
