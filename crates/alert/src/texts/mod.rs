//! Every word a wearer's device shows, one file per language: the
//! protected person's warnings and the bracelet's instructions. Her
//! language is set in her case (`protected[].language`), his in
//! `offender.language`; Dutch unless the case says otherwise.
//!
//! The texts never contain a position, a distance or a direction: the
//! routing rules of [`crate::desk`] rely on it.

use kordon_core::{EventKind, Language};

use crate::message::AlertEvent;

mod en;
mod nl;

/// What a protected person reads on her device.
pub fn protected_instruction(
    language: Language,
    kind: EventKind,
    event: AlertEvent,
) -> &'static str {
    match language {
        Language::En => en::protected(kind, event),
        Language::Nl => nl::protected(kind, event),
    }
}

/// What an offender's bracelet shows (static zones only).
pub fn offender_instruction(
    language: Language,
    kind: EventKind,
    event: AlertEvent,
) -> &'static str {
    match language {
        Language::En => en::offender(kind, event),
        Language::Nl => nl::offender(kind, event),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use EventKind::*;

    const KINDS: [EventKind; 8] = [
        ProximityBreach,
        ProximityWarning,
        ZoneBreach,
        Tamper,
        DeviceOffline,
        GpsLost,
        BatteryLow,
        BatteryCritical,
    ];

    #[test]
    fn every_text_exists_in_both_languages_and_differs() {
        for kind in KINDS {
            for event in [AlertEvent::Opened, AlertEvent::Cleared] {
                let en = protected_instruction(Language::En, kind, event);
                let nl = protected_instruction(Language::Nl, kind, event);
                assert!(!en.is_empty() && !nl.is_empty());
                assert_ne!(en, nl, "{kind:?} {event:?} is not translated");
                let en = offender_instruction(Language::En, kind, event);
                let nl = offender_instruction(Language::Nl, kind, event);
                assert_ne!(en, nl, "{kind:?} {event:?} (bracelet) is not translated");
            }
        }
    }

    #[test]
    fn a_breach_tells_her_to_call_112_in_her_language() {
        assert!(
            protected_instruction(Language::Nl, ProximityBreach, AlertEvent::Opened)
                .contains("Ga nu naar een veilige plek")
        );
        assert!(
            protected_instruction(Language::Nl, ProximityBreach, AlertEvent::Opened)
                .contains("112")
        );
        assert!(
            protected_instruction(Language::En, ProximityBreach, AlertEvent::Opened)
                .contains("Go to a safe place now")
        );
    }
}
