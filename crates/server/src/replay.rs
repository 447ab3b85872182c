//! `kordon replay`: a recording through the same engine and alert desk as
//! the server, in-process, on virtual time: each message is decoded as the
//! broker connection decodes it, stamped with the time the device sent it,
//! and the engine ticks once per virtual second between messages.
//!
//! Every message the alert desk decides to publish comes out, one JSON
//! object a line, in the order decided: a message of the monitoring topic
//! as the topic carries it (the format files had before other audiences
//! were written, so they still score), and a message of any other topic
//! as `{"topic": "<topic>", "message": <its JSON payload>}`: the police
//! JSON feed, warnings to victim devices and bracelets, notices to a case's
//! coordinators. The CAP XML feed, one to one with the police JSON feed, is
//! left out. `kordon score` reads both shapes.
//!
//! When the engine asks a victim device for a fresh position
//! ([`Engine::take_position_requests`], taken after every engine call), the
//! device answers as the recording says it would ([`kordon_sim::answer`]):
//! a fix from its answer sample at or after the moment asked plus 5 to 15 s
//! (the same every replay), decoded like every recorded fix and taken at
//! its time among the recorded messages; no answer where the sample says
//! the device could not get a fix. Its later recorded fixes carry the
//! sequence numbers its one counter gives them after the answer.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use kordon_alert::{topics, AlertDesk, AlertSettings, Outbound};
use kordon_core::{Case, Disposition, Engine, EngineConfig, Event};
use kordon_ingest::{Decoder, Limits, Message};
use kordon_sim::answer::{Answer, Answerer};
use kordon_sim::recording::Message as Recorded;
use kordon_sim::Recording;

/// How fast virtual time runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    /// As fast as the engine goes.
    Fast,
    /// This many times real time.
    Speed(f64),
}

#[derive(Debug, Clone, Default)]
pub struct Replayed {
    /// Recorded messages replayed.
    pub messages: u64,
    /// Fixes the engine took, answers included; duplicates among them.
    pub fixes: u64,
    pub duplicates: u64,
    pub refused: u64,
    /// Lines for the monitoring topic.
    pub alert_messages: u64,
    /// Lines for every other topic (police JSON, devices, coordinators).
    pub other_messages: u64,
    /// Requests for a fresh position the engine made.
    pub position_requests: u64,
    /// Fixes devices published answering them (a request while an answer
    /// is on its way shares it), and those the engine took as her newest
    /// position.
    pub position_answers: u64,
    pub answers_taken: u64,
    /// Requests the device could not answer: no fix then (indoors without
    /// GPS, dead), or a device the recording has no answers for.
    pub position_requests_unanswered: u64,
    pub took: Duration,
}

/// Answers on their way, by the time they arrive (and the order asked).
type Pending = BTreeMap<(i64, u64), Recorded>;

pub struct Replay {
    engine: Engine,
    desk: AlertDesk,
    decoder: Decoder,
}

impl Replay {
    pub fn new(engine: EngineConfig, alerts: AlertSettings, limits: Limits) -> Replay {
        Replay {
            engine: Engine::new(engine),
            desk: AlertDesk::new(alerts),
            decoder: Decoder::new(limits, Default::default()),
        }
    }

    /// Writes every message decided, one line each (see the module
    /// documentation).
    fn emit(
        messages: Vec<Outbound>,
        out: &mut impl Write,
        done: &mut Replayed,
    ) -> std::io::Result<()> {
        for message in messages {
            if message.topic == topics::MONITORING {
                out.write_all(&message.payload)?;
                done.alert_messages += 1;
            } else if message.topic == topics::POLICE_CAP {
                continue;
            } else {
                let topic =
                    serde_json::to_string(&message.topic).expect("a string always serialises");
                write!(out, "{{\"topic\":{topic},\"message\":")?;
                if serde_json::from_slice::<serde::de::IgnoredAny>(&message.payload).is_ok() {
                    out.write_all(&message.payload)?;
                } else {
                    // Not JSON (no such topic today): kept, as a string.
                    let text = String::from_utf8_lossy(&message.payload);
                    let text = serde_json::to_string(&text).expect("a string always serialises");
                    out.write_all(text.as_bytes())?;
                }
                out.write_all(b"}")?;
                done.other_messages += 1;
            }
            out.write_all(b"\n")?;
        }
        Ok(())
    }

    fn route(
        &mut self,
        events: &[Event],
        now: Timestamp,
        out: &mut impl Write,
        done: &mut Replayed,
    ) -> std::io::Result<()> {
        for event in events {
            Self::emit(self.desk.route(event, now), out, done)?;
        }
        Ok(())
    }

    fn tick(
        &mut self,
        now: Timestamp,
        out: &mut impl Write,
        done: &mut Replayed,
    ) -> std::io::Result<()> {
        let events = self.engine.tick(now);
        self.route(&events, now, out, done)?;
        Self::emit(self.desk.tick(now), out, done)
    }

    /// Takes the engine's requests for a fresh position, asked at `now`,
    /// and puts the devices' answers on their way.
    fn ask(
        &mut self,
        now: Timestamp,
        answerer: &mut Answerer,
        pending: &mut Pending,
        done: &mut Replayed,
    ) {
        for request in self.engine.take_position_requests() {
            done.position_requests += 1;
            match answerer.ask(request.device.as_str(), now.as_millisecond()) {
                Answer::Fix(fix) => {
                    done.position_answers += 1;
                    pending.insert((fix.at_ms, done.position_answers), fix);
                }
                Answer::OnItsWay => {}
                Answer::Unable => done.position_requests_unanswered += 1,
            }
        }
    }

    /// Runs the whole recording, writing the messages to `out`. `progress`
    /// is told how many messages are done.
    pub fn run(
        mut self,
        recording: &Recording,
        pace: Pace,
        out: &mut impl Write,
        mut progress: impl FnMut(u64),
    ) -> Result<Replayed, String> {
        let started = Instant::now();
        let start = Timestamp::from_millisecond(recording.start_ms).map_err(|e| e.to_string())?;
        let mut done = Replayed::default();
        let mut answerer = Answerer::new(&recording.answers);
        let mut pending = Pending::new();
        let io = |e: std::io::Error| format!("writing alerts: {e}");
        for (i, text) in recording.cases.iter().enumerate() {
            let case = Case::from_json(text).map_err(|e| format!("case {}: {e}", i + 1))?;
            self.desk.upsert_case(&case);
            let events = self
                .engine
                .upsert_case(case, start)
                .map_err(|e| format!("case {}: {e}", i + 1))?;
            self.route(&events, start, out, &mut done).map_err(io)?;
        }
        self.ask(start, &mut answerer, &mut pending, &mut done);
        let end = start + SignedDuration::from_hours(i64::from(recording.hours));
        let mut next_tick = start + SignedDuration::from_secs(1);
        let mut recorded = recording.messages.iter().peekable();
        loop {
            // The recorded messages and the answers, in time order (a
            // recorded message first at the same millisecond).
            let answer_first = match (recorded.peek(), pending.first_key_value()) {
                (None, None) => {
                    // Ticks to the end; an answer asked for on the way is
                    // taken at its time (before the end: devices have no
                    // answers past it).
                    while next_tick <= end && pending.is_empty() {
                        self.tick(next_tick, out, &mut done).map_err(io)?;
                        self.ask(next_tick, &mut answerer, &mut pending, &mut done);
                        next_tick += SignedDuration::from_secs(1);
                    }
                    if pending.is_empty() {
                        break;
                    }
                    continue;
                }
                (Some(m), Some(((at, _), _))) => *at < m.at_ms,
                (None, Some(_)) => true,
                (Some(_), None) => false,
            };
            let answer;
            let message = if answer_first {
                answer = pending.pop_first().expect("an answer is due").1;
                &answer
            } else {
                recorded.next().expect("a message is due")
            };
            let now = Timestamp::from_millisecond(message.at_ms).map_err(|e| e.to_string())?;
            while next_tick <= now {
                self.tick(next_tick, out, &mut done).map_err(io)?;
                self.ask(next_tick, &mut answerer, &mut pending, &mut done);
                next_tick += SignedDuration::from_secs(1);
            }
            if let Pace::Speed(speed) = pace {
                let due = now.duration_since(start).as_secs_f64() / speed;
                let ahead = due - started.elapsed().as_secs_f64();
                if ahead > 0.0 {
                    std::thread::sleep(Duration::from_secs_f64(ahead));
                }
            }
            done.messages += u64::from(!answer_first);
            match self.decoder.decode(&message.topic, &message.payload, now) {
                Ok(Message::Fix(mut fix)) => {
                    if !answer_first && answerer.any_given() {
                        // Numbered as the device numbers them after answering.
                        fix.seq = fix.seq.map(|seq| {
                            answerer.renumbered(fix.device.as_str(), fix.ts.as_millisecond(), seq)
                        });
                    }
                    match self.engine.ingest_fix(&fix) {
                        Ok(outcome) => {
                            done.fixes += 1;
                            done.duplicates +=
                                u64::from(outcome.disposition == Disposition::Duplicate);
                            done.answers_taken += u64::from(
                                answer_first
                                    && matches!(
                                        outcome.disposition,
                                        Disposition::Accepted | Disposition::Suspect
                                    ),
                            );
                            self.route(&outcome.events, now, out, &mut done)
                                .map_err(io)?;
                        }
                        Err(_) => done.refused += 1,
                    }
                }
                Ok(Message::Status(status)) => match self.engine.ingest_status(&status) {
                    Ok(events) => self.route(&events, now, out, &mut done).map_err(io)?,
                    Err(_) => done.refused += 1,
                },
                Ok(Message::Ack(_)) | Err(_) => done.refused += 1,
            }
            self.ask(now, &mut answerer, &mut pending, &mut done);
            if !answer_first && done.messages % 10_000 == 0 {
                progress(done.messages);
            }
        }
        progress(done.messages);
        out.flush().map_err(io)?;
        done.took = started.elapsed();
        Ok(done)
    }
}
