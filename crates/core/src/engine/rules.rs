//! Order decisions on a fix (zones, curfews, contact bans), the curfew and
//! unknown-pair deadlines, and the events that report episodes.

use super::*;

/// The open episode's event for an order.
pub(super) fn order_event(
    case: &CaseState,
    order: &OrderState,
    episode: &OpenEpisode,
    transition: Transition,
    at: Timestamp,
    positions: Option<(Option<PositionReport>, Option<PositionReport>)>,
) -> Event {
    let (phase, reason) = match transition {
        Transition::Opened => (Phase::Opened, None),
        Transition::Updated => (Phase::Updated, None),
        Transition::Cleared(reason) => (Phase::Cleared, Some(reason)),
    };
    let (offender, protected) = positions.unwrap_or((None, None));
    Event {
        id: episode.id,
        phase,
        kind: episode.kind,
        severity: episode.kind.severity(case.risk, Role::Offender),
        case: case.id.clone(),
        order: Some(order.id.clone()),
        device: case.offender_id.clone(),
        role: Role::Offender,
        onset: episode.onset,
        at,
        certainty: episode.certainty,
        distance_m: episode.reported_distance_m,
        offender,
        protected,
        reason,
        context: None,
        between_fixes: episode.between_fixes.map(Box::new),
        pattern: None,
    }
}

pub(super) fn open_health(dev: &DeviceState) -> Vec<(EventKind, Timestamp)> {
    [
        dev.tamper.map(|t| (EventKind::Tamper, t)),
        dev.battery,
        dev.gps_lost.map(|t| (EventKind::GpsLost, t)),
        dev.offline.map(|t| (EventKind::DeviceOffline, t)),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// Health episodes are about a device; each case it belongs to hears of them.
pub(super) fn fan_out(
    cases: &Slots<CaseState>,
    dev: &DeviceState,
    kind: EventKind,
    onset: Timestamp,
    phase: Phase,
    at: Timestamp,
    events: &mut Vec<Event>,
) {
    for &(case_slot, role) in &dev.memberships {
        if let Some(case) = cases[case_slot].as_ref() {
            let reason = (phase == Phase::Cleared).then_some(ClearReason::Resolved);
            events.push(health_event(
                case, dev, role, kind, onset, phase, at, reason,
            ));
        }
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) fn health_event(
    case: &CaseState,
    dev: &DeviceState,
    role: Role,
    kind: EventKind,
    onset: Timestamp,
    phase: Phase,
    at: Timestamp,
    reason: Option<ClearReason>,
) -> Event {
    Event {
        id: EpisodeId::derive(&case.id, dev.id.as_str(), kind.family(), onset),
        phase,
        kind,
        severity: kind.severity(case.risk, role),
        case: case.id.clone(),
        order: None,
        device: dev.id.clone(),
        role,
        onset,
        at,
        certainty: None,
        distance_m: None,
        offender: None,
        protected: None,
        reason,
        context: None,
        between_fixes: None,
        pattern: None,
    }
}

/// Feeds one in-order fix of device `slot` to order `i` of `case`.
#[allow(clippy::too_many_arguments)]
pub(super) fn decide_order(
    config: &EngineConfig,
    tz: &TimeZone,
    devices: &Slots<DeviceState>,
    case: &mut CaseState,
    i: usize,
    slot: usize,
    sample: &Sample,
    suspect: bool,
    events: &mut Vec<Event>,
) {
    let at = sample.ts;
    // Curfew evidence is gathered outside the window too: out at 21:50 and
    // still out at 22:05 is out since the window began.
    if let CompiledRule::Inclusion { zone, curfew, .. } = &mut case.orders[i].rule {
        let d = zone.signed_distance_m(&sample.ecef);
        let outside = disc_in_area(-d, sample.accuracy_m);
        curfew.outside = if suspect {
            outside.map(|_| Certainty::Possible)
        } else {
            outside
        };
        if outside.is_some() {
            curfew.outside_streak = curfew.outside_streak.saturating_add(1);
            curfew.outside_since.get_or_insert(at);
        } else {
            curfew.outside_streak = 0;
            curfew.outside_since = None;
        }
        if !suspect && d + sample.accuracy_m <= -config.clear_margin_m {
            curfew.inside_since.get_or_insert(at);
        } else {
            curfew.inside_since = None;
        }
        curfew.last_seen = Some(at);
    }
    let Some(window) = active_window(&mut case.orders[i], tz, at) else {
        // A fix stamped before an episode began (delayed in transit past the
        // tick that opened it) says nothing about the order since then.
        if open_onset(case, i).is_none_or(|onset| onset <= at) {
            close_order(case, i, ClearReason::OrderInactive, at, events);
        }
        return;
    };
    let Some(dev) = devices[slot].as_ref() else {
        return;
    };
    // The other party of a contact ban; reports are built only for an event.
    let mut context = None;
    let (assessment, kinds, observation, other) = match &mut case.orders[i].rule {
        CompiledRule::Exclusion { zone, buffer_m } => {
            let d = zone.signed_distance_m(&sample.ecef);
            (
                Assessment::new(d, *buffer_m, sample.accuracy_m, config.clear_margin_m),
                TrackKinds {
                    warning: EventKind::ZoneWarning,
                    breach: EventKind::ZoneBreach,
                },
                Observation::offender(at, suspect),
                None,
            )
        }
        CompiledRule::Inclusion { .. } => {
            // A fix during the window ends a curfew GPS-lost episode, if it
            // is newer than the silence that opened it.
            let silence_ends = after(at.max(window), config.gps_lost_after_s);
            if case.orders[i]
                .track
                .open
                .as_ref()
                .is_some_and(|e| e.kind == EventKind::GpsLost && silence_ends > e.onset)
            {
                close_order(case, i, ClearReason::Resolved, at, events);
            }
            curfew_deadlines(config, devices, case, i, window, at, events);
            return;
        }
        CompiledRule::ContactBan {
            protected,
            warning_m,
            alarm_m,
            ..
        } => {
            let (warning_m, alarm_m) = (*warning_m, *alarm_m);
            let (own_role, other_slot) = if slot == case.offender {
                (Role::Offender, *protected)
            } else {
                (Role::Protected, case.offender)
            };
            let other_dev = devices.get(other_slot).and_then(Option::as_ref);
            let other = other_dev.and_then(|d| Some((d, d.accepted?)));
            if let (Role::Offender, Some((_, hers))) = (own_role, other) {
                want_her_position(
                    config,
                    &mut case.orders[i],
                    other_slot,
                    sample,
                    &hers,
                    warning_m,
                );
            }
            let Some((other_dev, other)) = other
                .filter(|(_, o)| seconds_between(o.ts, at) <= f64::from(config.position_max_age_s))
            else {
                let known_until = pair_known_until(config, devices, case, i);
                if at >= known_until {
                    open_position_unknown(case, i, known_until, at, events);
                }
                return;
            };
            if let Some(onset) = case.orders[i]
                .track
                .open
                .as_ref()
                .filter(|e| e.kind == EventKind::PositionUnknown)
                .map(|e| e.onset)
            {
                // Only a newer position of the stale party ends it; until
                // then a fix delayed in transit is not judged against it.
                if pair_known_until(config, devices, case, i) <= onset {
                    return;
                }
                close_order(case, i, ClearReason::Resolved, at, events);
            }
            let grown = seconds_between(other.ts, at) * config.stale_position_speed_mps;
            let d = sample.ecef.distance_m(&other.ecef);
            let r = sample.accuracy_m + other.accuracy_m + grown;
            let mut a = Assessment::new(d - alarm_m, warning_m - alarm_m, r, config.clear_margin_m);
            a.distance_m = d;
            let offender_moved = own_role == Role::Offender;
            let (offender_fix, protected_fix) = if offender_moved {
                (at, other.ts)
            } else {
                (other.ts, at)
            };
            let observation = Observation {
                at,
                suspect,
                offender_moved,
                offender_fix: Some(offender_fix),
                protected_fix: Some(protected_fix),
            };
            // Closeness is read where it can matter: near her, or while an
            // episode is open. Elsewhere the last reading is forgotten.
            let engaged = a.warning.is_some() || case.orders[i].track.open.is_some();
            let (his, hers) = if offender_moved {
                ((dev, sample), (other_dev, &other))
            } else {
                ((other_dev, &other), (dev, sample))
            };
            if let Some(last) = last_reading(&mut case.orders[i].rule) {
                if engaged {
                    let places = case.patterns.her_places();
                    context = Some(read_closeness(config, last, his, hers, d, places));
                } else {
                    *last = LastReading::default();
                }
            }
            a.reading = context.map(|c| c.reading);
            let other = Some((other, other_dev, grown, own_role));
            (
                a,
                TrackKinds {
                    warning: EventKind::ProximityWarning,
                    breach: EventKind::ProximityBreach,
                },
                observation,
                other,
            )
        }
    };
    // The line from his previous fix to this one, for a fix of his.
    let his_fix = other.is_none_or(|(.., own_role)| own_role == Role::Offender);
    let passage = (his_fix && !suspect)
        .then(|| {
            let hers = other.map(|(hers, ..)| hers);
            passage_through(config, dev, &case.orders[i].rule, sample, &assessment, hers)
        })
        .flatten();
    let case_id = &case.id;
    let order = &mut case.orders[i];
    let order_id = &order.id;
    let family = kinds.breach.family();
    let derive = |onset| EpisodeId::derive(case_id, order_id.as_str(), family, onset);
    // A line that shows the breach speaks for this fix: the episode
    // begins where the line came closest, not at this fix.
    let passed = passage.and_then(|p| order.track.passed(p, assessment.reading, kinds, at, derive));
    let Some((episode, transition)) = passed.or_else(|| {
        order
            .track
            .step(assessment, observation, kinds, config, derive)
    }) else {
        return;
    };
    let own = sample.report(&dev.id, 0.0);
    let positions = match other {
        None => (Some(own), None),
        Some((other, other_dev, grown, Role::Offender)) => {
            (Some(own), Some(other.report(&other_dev.id, grown)))
        }
        Some((other, other_dev, grown, Role::Protected)) => {
            (Some(other.report(&other_dev.id, grown)), Some(own))
        }
    };
    let order = &case.orders[i];
    let mut event = order_event(case, order, &episode, transition, at, Some(positions));
    if !matches!(transition, Transition::Cleared(_)) {
        event.context = context.map(Box::new);
    }
    events.push(event);
}

/// How far off the straight line a road between two fixes may run, as a
/// share of the line's length: a car does not drive a chord. Granted near
/// her (a possible breach that informs the room), not for a zone (whose
/// breach asks the room to act): on simulated drive-bys past her
/// workplace (200 pairs, seeds 7 to 9) the straight line alone raised 83
/// to 92 % of those between fixes.
const LINE_BEND: f64 = 0.1;

/// The straight line from his previous fix to this one ([`crate::passage`]),
/// judged as a fix would be at its point closest to her (or deepest into an
/// exclusion zone), with the two fixes' accuracy interpolated: a passage
/// when that disc reaches into the breach area (her alarm radius, the
/// zone) and this fix does not show the breach for certain. Her position is
/// her latest, its accuracy grown with its age at that point. Curfews are
/// not judged between fixes: leaving and coming back within a minute is no
/// breach.
fn passage_through(
    config: &EngineConfig,
    his_device: &DeviceState,
    rule: &CompiledRule,
    his: &Sample,
    now: &Assessment,
    hers: Option<Sample>,
) -> Option<Passage> {
    // A fix that shows the breach for certain needs no line; one that
    // shows it only possibly (a stale position of hers) is helped by one.
    if config.between_fixes_note_gap_s == 0 || now.breach == Some(Certainty::Certain) {
        return None;
    }
    let line = his_device.line_to(his, config)?;
    // The signed distance from the breach area, the disc's radius, and the
    // distance to report.
    let (point, gap_m, radius_m, distance_m) = match rule {
        CompiledRule::Exclusion { zone, .. } => {
            // No point's disc is wider than the wider of the two fixes'.
            let widest = line.from.accuracy_m.max(line.to.accuracy_m);
            let (point, d) = line.deepest_into(zone, widest)?;
            (point, d, point.accuracy_m, d)
        }
        CompiledRule::ContactBan { alarm_m, .. } => {
            let hers = hers?;
            // No point of the line is nearer her than this fix less its
            // reach, nor has a wider disc than the wider fix's with her
            // position at its oldest along the line.
            let oldest_s = seconds_between(hers.ts, line.from.ts)
                .abs()
                .max(seconds_between(hers.ts, line.to.ts).abs());
            let bend = LINE_BEND * line.length_m();
            let widest = line.from.accuracy_m.max(line.to.accuracy_m)
                + hers.accuracy_m
                + oldest_s * config.stale_position_speed_mps
                + bend;
            if now.distance_m - line.reach_m() - widest >= *alarm_m {
                return None;
            }
            let point = line.closest_to(hers.lat, hers.lon);
            let d = point.ecef.distance_m(&hers.ecef);
            let grown = seconds_between(hers.ts, point.ts).abs() * config.stale_position_speed_mps;
            let radius = point.accuracy_m + hers.accuracy_m + grown + bend;
            (point, d - alarm_m, radius, d)
        }
        CompiledRule::Inclusion { .. } => return None,
    };
    // At either end the line shows only what that fix showed.
    let between = line.from.ts < point.ts && point.ts < line.to.ts;
    disc_in_area(gap_m, radius_m).filter(|_| between)?;
    Some(Passage {
        from: line.from.ts,
        to: line.to.ts,
        at: point.ts,
        lat: point.lat,
        lon: point.lon,
        distance_m,
        long_gap: line.gap_s() > f64::from(config.between_fixes_max_gap_s),
    })
}

/// Reads how a contact ban's pair is close ([`crate::intent`]) after its
/// `last` reading, which it then updates.
fn read_closeness(
    config: &EngineConfig,
    last: &mut LastReading,
    (his_device, his): (&DeviceState, &Sample),
    (her_device, hers): (&DeviceState, &Sample),
    distance_m: f64,
    her_places: &[HerPlace],
) -> ProximityContext {
    let now = his.ts.max(hers.ts);
    let his_movement = movement_now(config, his_device, his.ts, now);
    let mut context = crate::intent::read(
        his_movement,
        movement_now(config, her_device, hers.ts, now),
        (his.lat, his.lon),
        (hers.lat, hers.lon),
        distance_m,
        *last,
        config,
    );
    context.heading_to = crate::intent::heading_to(&his_movement, (his.lat, his.lon), her_places);
    let moving = his_movement
        .recent
        .is_some_and(|m| m.speed_mps >= STANDING_MPS);
    *last = last.after(&context, moving.then_some(his.ts), now);
    context
}

/// How a party moves at `now` as its fix of `fix` shows it: a fix older
/// than `passing_wait_s` may show it standing (a device that stands
/// reports less often), never moving: it may have stopped since.
fn movement_now(
    config: &EngineConfig,
    device: &DeviceState,
    fix: Timestamp,
    now: Timestamp,
) -> Movement {
    let movement = device.movement_at(fix, config);
    let stale = seconds_between(fix, now) > f64::from(config.passing_wait_s);
    if stale && movement.recent.is_none_or(|m| m.speed_mps >= STANDING_MPS) {
        Movement::default()
    } else {
        movement
    }
}

/// When the police's wait for a contact ban's open breach ends by the
/// clock ([`LastReading::wait_ends`]), if they wait.
pub(super) fn police_wait_ends(
    config: &EngineConfig,
    order: &OrderState,
) -> Option<(Timestamp, Reading)> {
    let waits = order
        .track
        .open
        .as_ref()
        .filter(|e| e.kind == EventKind::ProximityBreach)
        .and_then(|e| e.reported_reading)
        .is_some_and(Reading::waits_for_police);
    let CompiledRule::ContactBan { last_reading, .. } = &order.rule else {
        return None;
    };
    last_reading.wait_ends(config).filter(|_| waits)
}

/// The police's wait ended by the clock: the breach is read anew as
/// unclear (his fixes stopped) or lasting, which pages them.
pub(super) fn end_police_wait(
    config: &EngineConfig,
    case: &mut CaseState,
    i: usize,
    now: Timestamp,
    events: &mut Vec<Event>,
) {
    let Some((ends, reading)) = police_wait_ends(config, &case.orders[i]) else {
        return;
    };
    if now < ends {
        return;
    }
    if let Some(last) = last_reading(&mut case.orders[i].rule) {
        last.released = true;
    }
    let Some(open) = case.orders[i].track.open.as_mut() else {
        return;
    };
    open.reported_reading = Some(reading);
    let episode = open.clone();
    let mut event = order_event(
        case,
        &case.orders[i],
        &episode,
        Transition::Updated,
        now,
        None,
    );
    event.context = Some(Box::new(ProximityContext::without_movement(reading)));
    events.push(event);
}

/// A contact ban's last reading of intent.
pub(super) fn last_reading(rule: &mut CompiledRule) -> Option<&mut LastReading> {
    match rule {
        CompiledRule::ContactBan { last_reading, .. } => Some(last_reading),
        _ => None,
    }
}

/// A zone that comes into force (its window opens, its validity begins,
/// its case is put in force) judges the offender's last known position at
/// once instead of waiting for his next fix: a bracelet that reports on
/// movement sends none while he stands inside. The position's accuracy
/// grows with its age since his GPS last worked (a `gps: ok` status says
/// it still holds); one older than `position_max_age_s` is not judged.
pub(super) fn judge_last_position(
    config: &EngineConfig,
    tz: &TimeZone,
    devices: &Slots<DeviceState>,
    case: &mut CaseState,
    i: usize,
    now: Timestamp,
    events: &mut Vec<Event>,
) {
    let slot = case.offender;
    let Some(dev) = devices.get(slot).and_then(Option::as_ref) else {
        return;
    };
    let Some(last) = dev.accepted.filter(|_| case.orders[i].track.open.is_none()) else {
        return;
    };
    let age = seconds_between(dev.fixed().max(last.ts), now);
    if age > f64::from(config.position_max_age_s) {
        return;
    }
    let sample = Sample {
        ts: now,
        accuracy_m: last.accuracy_m + age * config.stale_position_speed_mps,
        ..last
    };
    decide_order(config, tz, devices, case, i, slot, &sample, false, events);
}

/// Asks for a fresh position of hers when his fix `his` may lie within the
/// warning radius of her last position `hers` and that is old: most false
/// *possible* breaches are judged against a position a minute or two old.
/// At most once a minute per contact ban.
fn want_her_position(
    config: &EngineConfig,
    order: &mut OrderState,
    her_slot: usize,
    his: &Sample,
    hers: &Sample,
    warning_m: f64,
) {
    let after_s = config.request_position_after_s;
    if after_s == 0 || seconds_between(hers.ts, his.ts) < f64::from(after_s) {
        return;
    }
    let gap = his.ecef.distance_m(&hers.ecef) - his.accuracy_m - hers.accuracy_m;
    let asked_recently = order
        .position_requested
        .is_some_and(|asked| seconds_between(asked, his.ts) < 60.0);
    if gap <= warning_m && !asked_recently {
        order.position_requested = Some(his.ts);
        order.position_wanted = Some(her_slot);
    }
}

pub(super) fn open_onset(case: &CaseState, i: usize) -> Option<Timestamp> {
    case.orders[i].track.open.as_ref().map(|e| e.onset)
}

pub(super) fn open_kind(case: &CaseState, i: usize) -> Option<EventKind> {
    case.orders[i].track.open.as_ref().map(|e| e.kind)
}

/// Clears order `i`'s open episode, if any.
pub(super) fn close_order(
    case: &mut CaseState,
    i: usize,
    reason: ClearReason,
    at: Timestamp,
    events: &mut Vec<Event>,
) {
    if let Some((episode, transition)) = case.orders[i].track.close(reason, at) {
        events.push(order_event(
            case,
            &case.orders[i],
            &episode,
            transition,
            at,
            None,
        ));
    }
}

/// Opens an episode that is not decided fix by fix (curfew, unknown, GPS lost).
#[allow(clippy::too_many_arguments)]
pub(super) fn open_order_episode(
    case: &mut CaseState,
    i: usize,
    kind: EventKind,
    onset: Timestamp,
    at: Timestamp,
    certainty: Option<Certainty>,
    positions: Option<(Option<PositionReport>, Option<PositionReport>)>,
    events: &mut Vec<Event>,
) {
    let order = &mut case.orders[i];
    let derive = |onset| EpisodeId::derive(&case.id, order.id.as_str(), kind.family(), onset);
    let opening = Opening {
        kind,
        onset,
        certainty,
        distance_m: None,
        reading: None,
    };
    if let Some((episode, transition)) = order.track.begin(opening, at, derive) {
        events.push(order_event(
            case,
            &case.orders[i],
            &episode,
            transition,
            at,
            positions,
        ));
    }
}

/// Until when both positions of a contact ban's pair are young enough to judge.
pub(super) fn pair_known_until(
    config: &EngineConfig,
    devices: &Slots<DeviceState>,
    case: &CaseState,
    i: usize,
) -> Timestamp {
    let CompiledRule::ContactBan { protected, .. } = case.orders[i].rule else {
        return Timestamp::MAX;
    };
    [case.offender, protected]
        .into_iter()
        .filter_map(|slot| devices.get(slot).and_then(Option::as_ref))
        .map(|dev| {
            let last = dev
                .accepted
                .map_or(case.watched_since, |s| s.ts)
                .max(case.watched_since.max(dev.watched_since));
            after(last, config.position_max_age_s)
        })
        .min()
        .unwrap_or(Timestamp::MAX)
}

/// The pair of a contact ban can no longer be judged: a position is older
/// than `position_max_age_s`. With no episode open, that is a
/// `position_unknown` episode. An open proximity episode stays open (losing
/// sight of a breach does not end it), but it must not go on looking
/// certain on old data: it is updated with neither certainty (CAP
/// `Unknown`) nor distance, carrying the last positions and their ages,
/// until fresh positions judge it again.
pub(super) fn open_position_unknown(
    case: &mut CaseState,
    i: usize,
    onset: Timestamp,
    at: Timestamp,
    events: &mut Vec<Event>,
) {
    match case.orders[i].track.open.as_mut() {
        None => open_order_episode(
            case,
            i,
            EventKind::PositionUnknown,
            onset,
            at,
            None,
            None,
            events,
        ),
        Some(open)
            if open.kind != EventKind::PositionUnknown && open.reported_distance_m.is_some() =>
        {
            open.certainty = None;
            open.reported_distance_m = None;
            let episode = open.clone();
            let order = &case.orders[i];
            events.push(order_event(
                case,
                order,
                &episode,
                Transition::Updated,
                at,
                None,
            ));
        }
        Some(_) => {}
    }
}

/// Opens or clears a curfew episode from the evidence at `at`.
pub(super) fn curfew_deadlines(
    config: &EngineConfig,
    devices: &Slots<DeviceState>,
    case: &mut CaseState,
    i: usize,
    window_start: Timestamp,
    at: Timestamp,
    events: &mut Vec<Event>,
) {
    let offender = devices[case.offender].as_ref();
    let CompiledRule::Inclusion {
        grace_s, curfew, ..
    } = &case.orders[i].rule
    else {
        return;
    };
    let current = open_kind(case, i);
    let confirmed = curfew.is_confirmed_outside(config);
    let deadline = curfew
        .outside_since
        .map(|since| after(since.max(window_start), *grace_s));
    let certainty = curfew.outside;
    let home_since = open_onset(case, i).and_then(|onset| curfew.home_since(onset));

    // Outside, confirmed, past the grace period within the window.
    if let (true, Some(deadline)) = (confirmed, deadline) {
        if at >= deadline && current != Some(EventKind::CurfewBreach) {
            close_order(case, i, ClearReason::Resolved, at, events);
            let positions =
                offender.and_then(|d| Some((Some(d.accepted?.report(&d.id, 0.0)), None)));
            open_order_episode(
                case,
                i,
                EventKind::CurfewBreach,
                deadline,
                at,
                certainty,
                positions,
                events,
            );
            return;
        }
    }
    // Back inside, clear by the margin, for long enough.
    if current == Some(EventKind::CurfewBreach)
        && home_since.is_some_and(|since| at >= after(since, config.clear_min_s))
    {
        close_order(case, i, ClearReason::Resolved, at, events);
    }
    // No fix during the window is not compliance. Judged after a clearing,
    // so one look at an instant is as good as any number of looks. A
    // bracelet already reported offline or without GPS (or due to be, now)
    // is one silence: the room hears of it once, from the device.
    let device_silence_reported = offender.is_some_and(|d| {
        let found = after(
            d.fixed(),
            config.gps_lost_after_s + config.transit_allowance_s,
        );
        d.offline.is_some() || d.gps_lost.is_some() || (d.gps_lost_pending() && at >= found)
    });
    if case.orders[i].track.open.is_none() && !device_silence_reported {
        let last_fix = offender
            .map_or(case.watched_since, DeviceState::fixed)
            .max(case.watched_since);
        let deadline = after(last_fix.max(window_start), config.gps_lost_after_s);
        if at >= after(deadline, config.transit_allowance_s) {
            open_order_episode(
                case,
                i,
                EventKind::GpsLost,
                deadline,
                at,
                None,
                None,
                events,
            );
        }
    }
}

/// Her places as the patterns know them ([`crate::patterns`]): those the
/// case file lists, else the centres of the zones around her; and his
/// registered address.
pub(super) fn known_places(case: &Case, orders: &[OrderState]) -> (Vec<HerPlace>, Option<Ecef>) {
    let at = |[lon, lat]: [f64; 2]| Ecef::from_lat_lon(lat, lon);
    let mut places: Vec<HerPlace> = case
        .protected
        .iter()
        .flat_map(|p| &p.places)
        .map(|p| HerPlace {
            kind: p.kind,
            ecef: at(p.position),
        })
        .collect();
    if places.is_empty() {
        let around_her = case.orders.iter().zip(orders).filter_map(|(order, state)| {
            match (&order.rule, &state.rule) {
                (
                    Rule::ExclusionZone {
                        around: Some(_), ..
                    },
                    CompiledRule::Exclusion { zone, .. },
                ) => Some(*zone.frame().origin()),
                _ => None,
            }
        });
        places.extend(around_her.map(|ecef| HerPlace {
            kind: PlaceKind::Other,
            ecef,
        }));
    }
    (places, case.offender.registered_address.map(at))
}

/// Shows his accepted fix to the case's patterns, and reports what they
/// found as `pattern` events for the case coordinator.
pub(super) fn watch_patterns(
    config: &EngineConfig,
    tz: &TimeZone,
    case: &mut CaseState,
    his: &Sample,
    events: &mut Vec<Event>,
) {
    let band = config.patterns.loiter_band_m;
    let zone_edge_m = case
        .orders
        .iter()
        .filter_map(|o| match &o.rule {
            CompiledRule::Exclusion { zone, .. } if zone.may_touch(&his.ecef, band) => {
                Some(zone.signed_distance_m(&his.ecef))
            }
            _ => None,
        })
        .filter(|d| *d > 0.0 && *d <= band)
        .min_by(f64::total_cmp);
    let open_episodes: SmallVec<[EpisodeId; 4]> = case
        .orders
        .iter()
        .filter_map(|o| o.track.open.as_ref().map(|e| e.id))
        .collect();
    let seen = Sighting {
        ts: his.ts,
        ecef: his.ecef,
        zone_edge_m,
        open_episodes: &open_episodes,
    };
    for news in case.patterns.observe(&config.patterns, tz, seen) {
        events.push(pattern_event(case, news, his.ts));
    }
}

pub(super) fn pattern_event(case: &CaseState, news: News, at: Timestamp) -> Event {
    let (phase, onset, finding) = match news {
        News::Found { onset, finding } => (Phase::Opened, onset, finding),
        News::Grown { onset, finding } => (Phase::Updated, onset, finding),
        News::Lapsed { onset, finding } => (Phase::Cleared, onset, finding),
    };
    let kind = EventKind::Pattern;
    Event {
        id: EpisodeId::derive(&case.id, "pattern", finding.pattern.as_str(), onset),
        phase,
        kind,
        severity: kind.severity(case.risk, Role::Offender),
        case: case.id.clone(),
        order: None,
        device: case.offender_id.clone(),
        role: Role::Offender,
        onset,
        at,
        certainty: None,
        distance_m: finding.stays.last().map(|s| s.closest_m),
        offender: None,
        protected: None,
        // A finding lapses when no stay came for its window.
        reason: (phase == Phase::Cleared).then_some(ClearReason::Resolved),
        context: None,
        between_fixes: None,
        pattern: Some(Box::new(finding)),
    }
}
