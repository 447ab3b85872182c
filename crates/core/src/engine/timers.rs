//! The timer queue behind `tick`: when each device and order must be looked
//! at again, and what looking finds.

use super::*;

/// What a timer looks at when it comes due.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub(super) enum Subject {
    Device(usize),
    Order { case: usize, order: usize },
}

/// Queues `subject` for `at` unless it is already queued for then or earlier.
/// Deadlines mostly move later (every message postpones "offline"): the
/// earlier entry then comes due, finds nothing, and queues the new time.
pub(super) fn arm(
    timers: &mut BinaryHeap<Reverse<(Timestamp, Subject)>>,
    timer: &mut Option<Timestamp>,
    at: Option<Timestamp>,
    subject: Subject,
) {
    if let Some(at) = at {
        if timer.is_none_or(|queued| at < queued) {
            *timer = Some(at);
            timers.push(Reverse((at, subject)));
        }
    }
}

/// Opens the health episodes of a device that have come due at `now`.
pub(super) fn check_device(
    config: &EngineConfig,
    cases: &Slots<CaseState>,
    dev: &mut DeviceState,
    now: Timestamp,
    events: &mut Vec<Event>,
) {
    let heard = dev.heard();
    let found = |deadline| now >= after(deadline, config.transit_allowance_s);
    if dev.offline.is_none() {
        let deadline = after(heard, config.offline_after_s);
        let admitted = dev.successions.offline.admit(deadline, now);
        if let Some(onset) = admitted.filter(|_| found(deadline)) {
            dev.offline = Some(onset);
            fan_out(
                cases,
                dev,
                EventKind::DeviceOffline,
                onset,
                Phase::Opened,
                now,
                events,
            );
        }
    }
    if dev.offline.is_none() && dev.gps_lost.is_none() {
        let last_fix = dev.fixed();
        let deadline = after(last_fix, config.gps_lost_after_s);
        let admitted = dev.successions.gps_lost.admit(deadline, now);
        if let Some(onset) = admitted.filter(|_| found(deadline) && heard > last_fix) {
            dev.gps_lost = Some(onset);
            fan_out(
                cases,
                dev,
                EventKind::GpsLost,
                onset,
                Phase::Opened,
                now,
                events,
            );
        }
    }
}

/// When `check_device` could next find something.
pub(super) fn device_deadline(dev: &DeviceState, config: &EngineConfig) -> Option<Timestamp> {
    if dev.offline.is_some() {
        // Only a message ends it, and a message queues the device again.
        return None;
    }
    let offline = after(dev.heard(), config.offline_after_s);
    let gps_lost = dev
        .gps_lost_pending()
        .then(|| after(dev.fixed(), config.gps_lost_after_s));
    let deadline = gps_lost.map_or(offline, |g| g.min(offline));
    Some(after(deadline, config.transit_allowance_s))
}

/// Opens or clears what time alone decides for order `i`: validity and
/// windows ending, curfew deadlines, a contact ban's pair going unknown.
pub(super) fn check_order(
    config: &EngineConfig,
    tz: &TimeZone,
    devices: &Slots<DeviceState>,
    case: &mut CaseState,
    i: usize,
    now: Timestamp,
    events: &mut Vec<Event>,
) {
    let Some(window) = active_window(&mut case.orders[i], tz, now) else {
        close_order(case, i, ClearReason::OrderInactive, now, events);
        return;
    };
    match &case.orders[i].rule {
        CompiledRule::Inclusion { .. } => {
            curfew_deadlines(config, devices, case, i, window, now, events);
        }
        CompiledRule::ContactBan { .. } => {
            let known_until = pair_known_until(config, devices, case, i);
            if now >= known_until {
                open_position_unknown(case, i, known_until, now, events);
            }
            end_police_wait(config, case, i, now, events);
        }
        CompiledRule::Exclusion { .. } => {
            if case.orders[i].activation_judged != Some(window) {
                case.orders[i].activation_judged = Some(window);
                judge_last_position(config, tz, devices, case, i, now, events);
            }
        }
    }
}

/// Queues order `i` for the next time `check_order` could find something,
/// judged from the state as of `at`; with `checked`, only deadlines after
/// that time (see `tick`).
#[allow(clippy::too_many_arguments)]
pub(super) fn rearm_order(
    timers: &mut BinaryHeap<Reverse<(Timestamp, Subject)>>,
    config: &EngineConfig,
    tz: &TimeZone,
    devices: &Slots<DeviceState>,
    case: &mut CaseState,
    case_slot: usize,
    i: usize,
    at: Timestamp,
    checked: Option<Timestamp>,
) {
    let window = active_window(&mut case.orders[i], tz, at);
    let order = &case.orders[i];
    let open = order.track.open.as_ref().map(|e| e.kind);
    let mut next: Option<Timestamp> = None;
    let mut consider = |t: Timestamp| {
        if checked.is_none_or(|c| t > c) {
            next = Some(next.map_or(t, |n| n.min(t)));
        }
    };
    if at < order.valid_from {
        consider(order.valid_from);
    }
    if let Some(until) = order.valid_until.filter(|u| at < *u) {
        consider(until);
    }
    // Out of force with an episode still open (a case edited just then, or
    // a fix stamped before the episode): the next look closes it.
    if window.is_none() && order.track.open.is_some() {
        consider(at);
    }
    if let Some((_, Some(state))) = &order.schedule {
        if state.valid_until != Timestamp::MAX {
            consider(state.valid_until);
        }
    }
    match (&order.rule, window) {
        (
            CompiledRule::Inclusion {
                grace_s, curfew, ..
            },
            Some(window),
        ) => {
            if open != Some(EventKind::CurfewBreach) {
                if let Some(since) = curfew.outside_since {
                    consider(after(since.max(window), *grace_s));
                }
            }
            if open.is_none() {
                let last_fix = devices
                    .get(case.offender)
                    .and_then(Option::as_ref)
                    .map_or(case.watched_since, DeviceState::fixed)
                    .max(case.watched_since);
                let deadline = after(last_fix.max(window), config.gps_lost_after_s);
                consider(after(deadline, config.transit_allowance_s));
            }
            if let Some(breach) = order
                .track
                .open
                .as_ref()
                .filter(|e| e.kind == EventKind::CurfewBreach)
            {
                if let Some(since) = curfew.home_since(breach.onset) {
                    consider(after(since, config.clear_min_s));
                }
            }
        }
        (CompiledRule::Exclusion { .. }, Some(window))
            if order.activation_judged != Some(window) =>
        {
            consider(at);
        }
        (CompiledRule::ContactBan { .. }, Some(_)) if open != Some(EventKind::PositionUnknown) => {
            let known_until = pair_known_until(config, devices, case, i);
            if known_until != Timestamp::MAX {
                consider(known_until);
            }
            if let Some((ends, _)) = police_wait_ends(config, order) {
                consider(ends);
            }
        }
        _ => {}
    }
    let order = &mut case.orders[i];
    arm(
        timers,
        &mut order.timer,
        next,
        Subject::Order {
            case: case_slot,
            order: i,
        },
    );
}
