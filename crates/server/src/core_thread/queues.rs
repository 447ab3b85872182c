//! The engine thread's two queues, and which it takes from first.
//!
//! - The **intake**: what the broker delivers (fixes, statuses, echoes),
//!   the tick. Whenever kordon is behind, the ingest link keeps this queue
//!   full: that is its backpressure, and the broker holds the rest.
//! - The **desk**: what people ask through the API (an officer
//!   acknowledging an alert, an admin putting a case, a console listing the
//!   alerts), and the outcome of each delivery to the police's webhooks.
//!   Sharing the intake's queue, requests found it full through a whole
//!   overload and were answered "the engine is busy; retry", when the room
//!   needs them most: during a backlog's drain; a delivery's outcome gave
//!   up after a second and went unrecorded.
//!
//! The thread takes from the desk first, so a request waits for at most
//! the command being handled. It is taken ahead of messages that came
//! before it: a case put during a backlog applies to the fixes still
//! queued, as if it had been put a moment earlier, and the journal records
//! the order in which both were handled, which is the order a replay
//! follows.
//!
//! This module never decides anything about a command.

use crossbeam_channel::{Receiver, TryRecvError};

use super::Command;

pub(crate) struct Queues {
    intake: Lane,
    desk: Lane,
}

/// One queue, and whether any sender is left.
struct Lane {
    commands: Receiver<Command>,
    open: bool,
}

impl Lane {
    fn new(commands: Receiver<Command>) -> Lane {
        Lane {
            commands,
            open: true,
        }
    }

    /// A closed lane: for an engine whose requests share the intake.
    fn closed() -> Lane {
        Lane {
            commands: crossbeam_channel::never(),
            open: false,
        }
    }

    fn try_take(&mut self) -> Option<Command> {
        if !self.open {
            return None;
        }
        match self.commands.try_recv() {
            Ok(command) => Some(command),
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => {
                self.open = false;
                None
            }
        }
    }

    /// Waits for a command; `None` once every sender is gone.
    fn wait(&mut self) -> Option<Command> {
        let command = self.commands.recv().ok();
        self.open = command.is_some();
        command
    }
}

impl Queues {
    pub fn new(intake: Receiver<Command>, desk: Option<Receiver<Command>>) -> Queues {
        Queues {
            intake: Lane::new(intake),
            desk: desk.map_or_else(Lane::closed, Lane::new),
        }
    }

    /// The next command, the desk's first; waits while both queues are
    /// empty; `None` once both are closed and empty.
    pub fn next(&mut self) -> Option<Command> {
        loop {
            if let Some(command) = self.desk.try_take().or_else(|| self.intake.try_take()) {
                return Some(command);
            }
            match (self.desk.open, self.intake.open) {
                (false, false) => return None,
                (true, false) => return self.desk.wait(),
                (false, true) => return self.intake.wait(),
                (true, true) => {
                    // Both empty: wait for either, then take in order above.
                    let mut select = crossbeam_channel::Select::new();
                    select.recv(&self.desk.commands);
                    select.recv(&self.intake.commands);
                    select.ready();
                }
            }
        }
    }

    /// Whether nothing waits in either queue.
    pub fn is_empty(&self) -> bool {
        self.intake.commands.is_empty() && self.desk.commands.is_empty()
    }

    /// Commands waiting in the intake's queue.
    pub fn intake_len(&self) -> usize {
        self.intake.commands.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tick(n: i64) -> Command {
        Command::Tick {
            at: jiff::Timestamp::from_second(n).unwrap(),
            intake_held: false,
        }
    }

    fn second(command: &Command) -> i64 {
        match command {
            Command::Tick { at, .. } => at.as_second(),
            _ => panic!("not a tick"),
        }
    }

    #[test]
    fn a_request_is_taken_before_a_full_intake() {
        let (intake, intake_rx) = crossbeam_channel::bounded(4);
        let (desk, desk_rx) = crossbeam_channel::bounded(4);
        for n in 0..4 {
            intake.send(tick(n)).unwrap();
        }
        assert!(intake.is_full());
        let mut queues = Queues::new(intake_rx, Some(desk_rx));
        assert_eq!(second(&queues.next().unwrap()), 0);
        desk.send(tick(100)).unwrap();
        assert_eq!(second(&queues.next().unwrap()), 100, "the desk first");
        let rest: Vec<i64> = (0..3).map(|_| second(&queues.next().unwrap())).collect();
        assert_eq!(rest, [1, 2, 3], "the intake in its order");
        assert!(queues.is_empty());
    }

    #[test]
    fn it_waits_for_either_queue_and_ends_when_both_are_closed() {
        let (intake, intake_rx) = crossbeam_channel::bounded(4);
        let (desk, desk_rx) = crossbeam_channel::bounded(4);
        let mut queues = Queues::new(intake_rx, Some(desk_rx));
        let sender = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            desk.send(tick(7)).unwrap();
            drop(desk);
            std::thread::sleep(std::time::Duration::from_millis(20));
            intake.send(tick(8)).unwrap();
        });
        assert_eq!(second(&queues.next().unwrap()), 7);
        assert_eq!(second(&queues.next().unwrap()), 8);
        assert!(queues.next().is_none(), "both closed");
        sender.join().unwrap();
    }

    #[test]
    fn without_a_desk_it_is_the_intake_alone() {
        let (intake, intake_rx) = crossbeam_channel::bounded(4);
        let mut queues = Queues::new(intake_rx, None);
        intake.send(tick(1)).unwrap();
        drop(intake);
        assert_eq!(second(&queues.next().unwrap()), 1);
        assert!(queues.next().is_none());
    }
}
