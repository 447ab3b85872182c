//! What the engine keeps per case, order and device, and the small
//! helpers that read it.

use super::*;

/// Fixes kept per device to recognise redelivered duplicates and to judge
/// late fixes of the other party of a contact ban.
const HISTORY_LEN: usize = 8;

/// One case as the engine decides with it: devices by slot, orders compiled.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(super) struct CaseState {
    pub(super) id: CaseId,
    pub(super) risk: RiskLevel,
    pub(super) offender: usize,
    pub(super) offender_id: DeviceId,
    /// Device slots of the case with their roles, the offender first.
    pub(super) members: Vec<(usize, Role)>,
    /// Which orders a fix bears on, kept with the case so that most fixes
    /// decide without touching the orders themselves.
    pub(super) plan: SmallVec<[OrderPlan; 4]>,
    pub(super) orders: Vec<OrderState>,
    /// When the engine began watching: the reference for "never heard of".
    pub(super) watched_since: Timestamp,
    /// His stays near her places and along the zones' edges, over days.
    pub(super) patterns: PatternWatch,
}

/// The few facts needed to skip an order for a fix, one per order.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub(super) enum OrderPlan {
    /// An exclusion zone: a fix farther than `reach_m` (plus its accuracy and
    /// the clearing margin) from `centre` cannot touch it. `engaged` is true
    /// whenever its track may hold evidence or an open episode.
    Zone {
        centre: Ecef,
        reach_m: f64,
        engaged: bool,
    },
    Curfew,
    ContactBan {
        protected: usize,
    },
}

impl OrderPlan {
    pub(super) fn of(rule: &CompiledRule) -> Self {
        match rule {
            CompiledRule::Exclusion { zone, buffer_m } => OrderPlan::Zone {
                centre: *zone.frame().origin(),
                reach_m: zone.reach_m() + buffer_m,
                engaged: true,
            },
            CompiledRule::Inclusion { .. } => OrderPlan::Curfew,
            CompiledRule::ContactBan { protected, .. } => OrderPlan::ContactBan {
                protected: *protected,
            },
        }
    }
}

/// One order: its compiled rule, when it is in force, and its episode.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub(super) struct OrderState {
    pub(super) id: OrderId,
    pub(super) valid_from: Timestamp,
    pub(super) valid_until: Option<Timestamp>,
    pub(super) schedule: Option<(Schedule, Option<ScheduleState>)>,
    pub(super) rule: CompiledRule,
    pub(super) track: Track,
    /// The earliest time this order is queued to be looked at again.
    pub(super) timer: Option<Timestamp>,
    /// The start of the window (or validity) in which a zone last judged
    /// the offender's last known position on coming into force.
    pub(super) activation_judged: Option<Timestamp>,
    /// When this contact ban last asked her device for a fresh position.
    pub(super) position_requested: Option<Timestamp>,
    /// Her device's slot, when the fix just decided wants a fresh position
    /// of hers; the engine collects it into its requests.
    #[serde(skip)]
    pub(super) position_wanted: Option<usize>,
}

impl OrderState {
    /// What decides which deadlines an order has: its open episode's kind;
    /// for a curfew, whether he is seen out (and how surely) or home; for a
    /// contact ban, whether its open episode has lost its certainty and
    /// whether the police wait ([`crate::intent`]).
    pub(super) fn deadline_marks(&self, config: &EngineConfig) -> (Option<EventKind>, u8, bool) {
        let open = self.track.open.as_ref();
        let kind = open.map(|e| e.kind);
        match &self.rule {
            CompiledRule::Inclusion { curfew, .. } => (
                kind,
                match (curfew.outside_since, curfew.is_confirmed_outside(config)) {
                    (None, _) => 0,
                    (Some(_), false) => 1,
                    (Some(_), true) => 2,
                },
                open.is_some_and(|e| curfew.home_since(e.onset).is_some()),
            ),
            // An open proximity episode waits for its pair to go unknown
            // only while it is judged (has a distance), and for the end of
            // the police's wait only while they wait by a clock. A fix
            // that turns a wait's end from `lasting` into `unclear` (his
            // first fix showing him moving) brings it earlier: a new mark.
            CompiledRule::ContactBan { .. } => (
                kind,
                match police_wait_ends(config, self) {
                    None => 0,
                    Some((_, Reading::Unclear)) => 1,
                    Some(_) => 2,
                },
                open.is_some_and(|e| e.reported_distance_m.is_none()),
            ),
            CompiledRule::Exclusion { .. } => (kind, 0, false),
        }
    }
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub(super) enum CompiledRule {
    Exclusion {
        zone: CompiledZone,
        buffer_m: f64,
    },
    Inclusion {
        zone: CompiledZone,
        grace_s: u32,
        curfew: CurfewEvidence,
    },
    ContactBan {
        protected: usize,
        protected_id: DeviceId,
        warning_m: f64,
        alarm_m: f64,
        /// What the pair's last reading of intent left for the next one
        /// ([`crate::intent`]); kept while the pair is close.
        last_reading: LastReading,
    },
}

impl CompiledRule {
    pub(super) fn same_kind(&self, rule: &Rule) -> bool {
        matches!(
            (self, rule),
            (CompiledRule::Exclusion { .. }, Rule::ExclusionZone { .. })
                | (CompiledRule::Inclusion { .. }, Rule::InclusionZone { .. })
                | (CompiledRule::ContactBan { .. }, Rule::ContactBan { .. })
        )
    }
}

/// What the latest fixes say about an offender and an inclusion zone.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub(super) struct CurfewEvidence {
    pub(super) outside: Option<Certainty>,
    pub(super) outside_streak: u8,
    pub(super) outside_since: Option<Timestamp>,
    pub(super) inside_since: Option<Timestamp>,
    /// Time of the latest fix judged.
    pub(super) last_seen: Option<Timestamp>,
}

impl CurfewEvidence {
    /// Out for certain, or possibly out on enough consecutive fixes.
    pub(super) fn is_confirmed_outside(&self, config: &EngineConfig) -> bool {
        match self.outside {
            Some(Certainty::Certain) => true,
            Some(Certainty::Possible) => {
                self.outside_streak >= config.possible_confirmations.max(1)
            }
            None => false,
        }
    }

    /// From when he counts as home again for a breach that began at `onset`:
    /// only a fix after the onset shows him home since then. A fix stamped
    /// earlier, delivered late, cannot take back a breach on its own.
    pub(super) fn home_since(&self, onset: Timestamp) -> Option<Timestamp> {
        let since = self.inside_since?;
        self.last_seen
            .is_some_and(|seen| seen >= onset)
            .then(|| since.max(onset))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub(super) struct Sample {
    pub(super) ts: Timestamp,
    pub(super) lat: f64,
    pub(super) lon: f64,
    pub(super) accuracy_m: f64,
    pub(super) ecef: Ecef,
}

impl Sample {
    pub(super) fn end(&self) -> End {
        End {
            ts: self.ts,
            lat: self.lat,
            lon: self.lon,
            accuracy_m: self.accuracy_m,
            velocity: None,
        }
    }

    pub(super) fn report(&self, device: &DeviceId, extra_uncertainty_m: f64) -> PositionReport {
        PositionReport {
            device: device.clone(),
            lat: self.lat,
            lon: self.lon,
            accuracy_m: self.accuracy_m + extra_uncertainty_m,
            ts: self.ts,
        }
    }
}

/// What any message of a device says about its health.
#[derive(Debug, Clone, Copy)]
pub(super) struct Heard {
    pub(super) ts: Timestamp,
    pub(super) strap: Option<StrapState>,
    pub(super) battery_pct: Option<u8>,
    pub(super) charging: Option<bool>,
    pub(super) gps: Option<GpsState>,
}

/// The successions of a device's health episodes, one per family.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub(super) struct HealthSuccessions {
    pub(super) tamper: Succession,
    pub(super) battery: Succession,
    pub(super) gps_lost: Succession,
    pub(super) offline: Succession,
}

/// One device: what it last said, where it was, and its health episodes.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(super) struct DeviceState {
    pub(super) id: DeviceId,
    /// The cases the device is part of; almost always one.
    pub(super) memberships: SmallVec<[(usize, Role); 2]>,
    pub(super) watched_since: Timestamp,
    pub(super) last_message: Option<Timestamp>,
    /// Time of the newest fix, usable or not: the line between live and late.
    pub(super) latest_fix: Option<Timestamp>,
    /// Time of the newest usable fix, suspect or not: the GPS works.
    pub(super) last_usable_fix: Option<Timestamp>,
    /// The newest status saying its GPS has a fix.
    #[serde(default)]
    pub(super) gps_ok: Option<Timestamp>,
    /// Whether it is charging, as its newest status said: fixes carry a
    /// battery level but not this.
    #[serde(default)]
    pub(super) charging: Option<bool>,
    /// Newest plausible position.
    pub(super) accepted: Option<Sample>,
    /// A suspect position waiting for the next fix to confirm it.
    pub(super) pending: Option<Sample>,
    pub(super) history: History,
    /// Sequence numbers taken recently: a fix redelivered after it left
    /// `history` is still known for a duplicate.
    pub(super) seqs: SeqWindow,
    pub(super) tamper: Option<Timestamp>,
    pub(super) battery: Option<(EventKind, Timestamp)>,
    pub(super) gps_lost: Option<Timestamp>,
    pub(super) offline: Option<Timestamp>,
    /// Which health episodes may still begin (see [`Succession`]).
    pub(super) successions: HealthSuccessions,
    /// The earliest time this device is queued to be looked at again.
    pub(super) timer: Option<Timestamp>,
}

impl DeviceState {
    pub(super) fn new(id: DeviceId, now: Timestamp) -> Self {
        DeviceState {
            id,
            memberships: SmallVec::new(),
            watched_since: now,
            last_message: None,
            latest_fix: None,
            last_usable_fix: None,
            gps_ok: None,
            charging: None,
            accepted: None,
            pending: None,
            history: History::default(),
            seqs: SeqWindow::default(),
            tamper: None,
            battery: None,
            gps_lost: None,
            offline: None,
            successions: HealthSuccessions::default(),
            timer: None,
        }
    }

    /// The last message, or when watching began if that is later: a message
    /// stamped before the engine watched cannot bring a deadline forward.
    pub(super) fn heard(&self) -> Timestamp {
        self.last_message
            .map_or(self.watched_since, |t| t.max(self.watched_since))
    }

    /// When the GPS last worked: the last usable fix, or a later status
    /// saying `gps: ok` (a device that reports on movement sends no fixes
    /// while it stands still: it is where it was last fixed), or when
    /// watching began if that is later.
    pub(super) fn fixed(&self) -> Timestamp {
        self.last_usable_fix
            .max(self.gps_ok)
            .map_or(self.watched_since, |t| t.max(self.watched_since))
    }

    /// Messages have come since the last usable fix: GPS lost is counting.
    pub(super) fn gps_lost_pending(&self) -> bool {
        self.gps_lost.is_none() && self.offline.is_none() && self.heard() > self.fixed()
    }

    /// A redelivered fix carries its original time, so a fix newer than
    /// every fix seen is new, whatever its sequence number (a device that
    /// restarts counts from the beginning again).
    pub(super) fn is_duplicate(&self, fix: &Fix) -> bool {
        if self.latest_fix.is_none_or(|latest| fix.ts > latest) {
            return false;
        }
        fix.seq.is_some_and(|seq| self.seqs.contains(seq))
            || self.history.entries().any(|e| {
                (fix.seq.is_some() && e.seq == fix.seq)
                    || (e.ts == fix.ts && e.lat == fix.lat && e.lon == fix.lon)
            })
    }

    /// Notes a fix that was not a duplicate.
    pub(super) fn note_taken(&mut self, fix: &Fix) {
        if let Some(seq) = fix.seq {
            let newest = self.latest_fix.is_none_or(|latest| fix.ts > latest);
            self.seqs.insert(seq, newest);
        }
    }

    /// Whether `sample` implies an impossible speed from the remembered fix
    /// nearest to it in time.
    pub(super) fn implausible_among_neighbours(
        &self,
        sample: &Sample,
        config: &EngineConfig,
    ) -> bool {
        self.history
            .entries()
            .filter(|e| e.ts != sample.ts)
            .min_by_key(|e| sample.ts.duration_since(e.ts).as_millis().abs())
            .is_some_and(|e| {
                implied_speed_mps(&e.sample(), sample) > config.max_plausible_speed_mps
            })
    }

    /// How the device moved at its fix of `at` ([`crate::intent::movement`]).
    pub(super) fn movement_at(&self, at: Timestamp, config: &EngineConfig) -> Movement {
        // A device's own speed beyond any plausible one is a glitch: the
        // positions tell then.
        let point = |e: &Remembered| {
            let mut p = e.track_point();
            p.speed_mps = p
                .speed_mps
                .filter(|v| v.is_finite() && *v <= config.max_plausible_speed_mps);
            p
        };
        let Some(now) = self.history.entries().find(|e| e.ts == at).map(point) else {
            return Movement::default();
        };
        let mut earlier: SmallVec<[TrackPoint; HISTORY_LEN]> = self
            .history
            .entries()
            .filter(|e| e.trusted && e.ts < at)
            .map(point)
            .collect();
        earlier.sort_unstable_by_key(|p| std::cmp::Reverse(p.ts));
        crate::intent::movement(&earlier, &now, f64::from(config.motion_max_gap_s))
    }

    /// The trusted remembered fix nearest in time to `t`: an outlier or an
    /// unusable fix must not make a late fix of the other party a breach.
    /// The straight line from the device's previous trusted fix to
    /// `sample` ([`crate::passage`]), if that fix is at most `between_fixes_note_gap_s`
    /// older.
    ///
    /// Each end carries the device's own velocity when it sent a plausible
    /// one, so the line can follow a bend.
    pub(super) fn line_to(&self, sample: &Sample, config: &EngineConfig) -> Option<Line> {
        let previous = self
            .history
            .entries()
            .filter(|e| e.trusted && e.ts < sample.ts)
            .max_by_key(|e| e.ts)?;
        if seconds_between(previous.ts, sample.ts) > f64::from(config.between_fixes_note_gap_s) {
            return None;
        }
        let velocity = self
            .history
            .entries()
            .find(|e| e.ts == sample.ts)
            .and_then(|e| e.velocity(config));
        let to = End {
            velocity,
            ..sample.end()
        };
        Some(Line::new(previous.end(config), to))
    }

    pub(super) fn sample_near(&self, t: Timestamp) -> Option<Sample> {
        self.history
            .entries()
            .filter(|e| e.trusted)
            .min_by_key(|e| t.duration_since(e.ts).as_millis().abs())
            .map(Remembered::sample)
    }
}

/// Which of a device's last [`SeqWindow::SPAN`] sequence numbers have been
/// taken (the anti-replay window of IPsec and DTLS): a broker redelivering a
/// backlog after a reconnect can bring back fixes far older than `history`
/// holds, and each must be known for a duplicate, not journaled twice or
/// judged again as a late breach. 136 bytes a device.
#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
pub(super) struct SeqWindow {
    highest: Option<u64>,
    /// Bit `seq % SPAN` is set when `seq` was taken; only seqs within
    /// `SPAN` of `highest` are meaningful.
    taken: [u64; 16],
}

impl SeqWindow {
    pub(super) const SPAN: u64 = 1024;

    pub(super) fn contains(&self, seq: u64) -> bool {
        self.highest
            .is_some_and(|h| seq <= h && h - seq < Self::SPAN && self.bit(seq))
    }

    /// Notes `seq` as taken; `newest` when its fix is newer than every fix
    /// of the device. A newest fix with a lower number than before means
    /// the device counts afresh (a restart): the window starts over.
    pub(super) fn insert(&mut self, seq: u64, newest: bool) {
        match self.highest {
            Some(h) if seq > h => {
                if seq - h >= Self::SPAN {
                    self.taken = [0; 16];
                } else {
                    for cleared in h + 1..seq {
                        self.set(cleared, false);
                    }
                }
                self.highest = Some(seq);
            }
            Some(h) if !newest && h - seq < Self::SPAN => {}
            Some(_) if !newest => return,
            _ => {
                self.taken = [0; 16];
                self.highest = Some(seq);
            }
        }
        self.set(seq, true);
    }

    fn bit(&self, seq: u64) -> bool {
        let i = seq % Self::SPAN;
        self.taken[(i / 64) as usize] & (1 << (i % 64)) != 0
    }

    fn set(&mut self, seq: u64, on: bool) {
        let i = seq % Self::SPAN;
        let word = &mut self.taken[(i / 64) as usize];
        if on {
            *word |= 1 << (i % 64);
        } else {
            *word &= !(1 << (i % 64));
        }
    }
}

/// The last fixes of a device, kept inline so that remembering one touches
/// no other memory.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub(super) struct History {
    pub(super) entries: [Option<Remembered>; HISTORY_LEN],
    pub(super) next: usize,
}

#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub(super) struct Remembered {
    pub(super) seq: Option<u64>,
    pub(super) ts: Timestamp,
    pub(super) lat: f64,
    pub(super) lon: f64,
    pub(super) accuracy_m: f64,
    /// Usable accuracy and not suspect: fit to judge the other party's late
    /// fix against.
    pub(super) trusted: bool,
    /// The device's own speed and heading, when it sent them.
    pub(super) speed_mps: Option<f32>,
    pub(super) heading_deg: Option<f32>,
}

impl Remembered {
    pub(super) fn track_point(&self) -> TrackPoint {
        TrackPoint {
            ts: self.ts,
            lat: self.lat,
            lon: self.lon,
            accuracy_m: self.accuracy_m,
            speed_mps: self.speed_mps.map(f64::from),
            heading_deg: self.heading_deg.map(f64::from),
        }
    }

    /// The device's own velocity, when it sent a plausible one: a speed
    /// beyond any plausible one is a glitch, and a device standing still
    /// often sends no heading.
    pub(super) fn velocity(&self, config: &EngineConfig) -> Option<Velocity> {
        let speed = f64::from(self.speed_mps?);
        if !speed.is_finite() || speed < 0.0 || speed > config.max_plausible_speed_mps {
            return None;
        }
        match self.heading_deg.map(f64::from) {
            Some(heading) if heading.is_finite() => {
                Some(Velocity::from_speed_heading(speed, heading))
            }
            _ if speed < STANDING_MPS => Some(Velocity::from_speed_heading(0.0, 0.0)),
            _ => None,
        }
    }

    pub(super) fn end(&self, config: &EngineConfig) -> End {
        End {
            velocity: self.velocity(config),
            ..self.sample().end()
        }
    }

    pub(super) fn sample(&self) -> Sample {
        Sample {
            ts: self.ts,
            lat: self.lat,
            lon: self.lon,
            accuracy_m: self.accuracy_m,
            ecef: Ecef::from_lat_lon(self.lat, self.lon),
        }
    }
}

impl History {
    pub(super) fn remember(&mut self, fix: &Fix, trusted: bool) {
        self.entries[self.next] = Some(Remembered {
            seq: fix.seq,
            ts: fix.ts,
            lat: fix.lat,
            lon: fix.lon,
            accuracy_m: fix.accuracy_m,
            trusted,
            speed_mps: fix.speed_mps.map(|v| v as f32),
            heading_deg: fix.heading_deg.map(|v| v as f32),
        });
        self.next = (self.next + 1) % HISTORY_LEN;
    }

    /// The fix remembered last turned out suspect.
    pub(super) fn distrust_latest(&mut self) {
        let latest = (self.next + HISTORY_LEN - 1) % HISTORY_LEN;
        if let Some(entry) = self.entries[latest].as_mut() {
            entry.trusted = false;
        }
    }

    pub(super) fn entries(&self) -> impl Iterator<Item = &Remembered> {
        self.entries.iter().flatten()
    }
}

/// The speed a move between two fixes implies once both accuracies are
/// granted: noise is not speed.
pub(super) fn implied_speed_mps(from: &Sample, to: &Sample) -> f64 {
    let gap = (from.ecef.distance_m(&to.ecef) - from.accuracy_m - to.accuracy_m).max(0.0);
    let dt = seconds_between(from.ts, to.ts);
    if gap == 0.0 {
        0.0
    } else if dt == 0.0 {
        f64::INFINITY
    } else {
        gap / dt
    }
}

pub(super) fn seconds_between(a: Timestamp, b: Timestamp) -> f64 {
    b.duration_since(a).as_secs_f64().abs()
}

pub(super) fn after(t: Timestamp, seconds: u32) -> Timestamp {
    t.checked_add(jiff::SignedDuration::from_secs(i64::from(seconds)))
        .unwrap_or(Timestamp::MAX)
}

/// When an order is in force at `t`: the start of its current window (or of
/// its validity, for orders without a schedule), `None` when it is not.
pub(super) fn active_window(
    order: &mut OrderState,
    tz: &TimeZone,
    t: Timestamp,
) -> Option<Timestamp> {
    if t < order.valid_from || order.valid_until.is_some_and(|until| t >= until) {
        return None;
    }
    let Some((schedule, cache)) = &mut order.schedule else {
        return Some(order.valid_from);
    };
    let state = match cache {
        Some(state) if state.covers(t) => *state,
        _ => {
            let state = schedule.state_at(tz, t);
            *cache = Some(state);
            state
        }
    };
    state.active.map(|w| w.start.max(order.valid_from))
}
