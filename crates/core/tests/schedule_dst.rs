//! Weekly windows in Europe/Amsterdam local time across the 2026 DST changes.

mod common;

use common::every_day;
use jiff::Timestamp;
use kordon_core::schedule::{schedule_time_zone, Schedule};
use kordon_core::{Day, Window};

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

#[test]
fn overnight_window_runs_into_the_next_day() {
    let tz = schedule_time_zone();
    let s = every_day("22:00", "06:00");
    // Winter: CET = UTC+1.
    assert!(!s.is_active_at(&tz, ts("2026-11-25T20:59:59Z")));
    assert!(s.is_active_at(&tz, ts("2026-11-25T21:00:00Z")));
    assert!(s.is_active_at(&tz, ts("2026-11-26T04:59:59Z")));
    assert!(!s.is_active_at(&tz, ts("2026-11-26T05:00:00Z")));
    let state = s.state_at(&tz, ts("2026-11-26T02:00:00Z"));
    let w = state.active.unwrap();
    assert_eq!(
        (w.start, w.end),
        (ts("2026-11-25T21:00:00Z"), ts("2026-11-26T05:00:00Z"))
    );
    assert_eq!(state.valid_until, ts("2026-11-26T05:00:00Z"));
}

#[test]
fn spring_forward_night_is_seven_hours() {
    // 2026-03-29 02:00 CET becomes 03:00 CEST.
    let tz = schedule_time_zone();
    let s = every_day("22:00", "06:00");
    let w = s.state_at(&tz, ts("2026-03-29T00:00:00Z")).active.unwrap();
    assert_eq!(w.start, ts("2026-03-28T21:00:00Z"), "22:00 CET");
    assert_eq!(w.end, ts("2026-03-29T04:00:00Z"), "06:00 CEST");
    assert_eq!(w.end.duration_since(w.start).as_hours(), 7);
    // The next night is in summer time.
    let next = s.state_at(&tz, ts("2026-03-29T21:00:00Z")).active.unwrap();
    assert_eq!(next.start, ts("2026-03-29T20:00:00Z"), "22:00 CEST");
}

#[test]
fn fall_back_night_is_nine_hours() {
    // 2026-10-25 03:00 CEST becomes 02:00 CET.
    let tz = schedule_time_zone();
    let s = every_day("22:00", "06:00");
    let w = s.state_at(&tz, ts("2026-10-25T01:30:00Z")).active.unwrap();
    assert_eq!(w.start, ts("2026-10-24T20:00:00Z"), "22:00 CEST");
    assert_eq!(w.end, ts("2026-10-25T05:00:00Z"), "06:00 CET");
    assert_eq!(w.end.duration_since(w.start).as_hours(), 9);
}

#[test]
fn a_start_in_the_spring_gap_begins_after_it() {
    let tz = schedule_time_zone();
    let s = every_day("02:30", "05:00");
    let w = s.state_at(&tz, ts("2026-03-29T02:00:00Z")).active.unwrap();
    assert_eq!(
        w.start,
        ts("2026-03-29T01:30:00Z"),
        "03:30 CEST, after the gap"
    );
}

#[test]
fn weekday_windows_follow_local_days() {
    let tz = schedule_time_zone();
    let s = Schedule {
        windows: vec![Window {
            days: vec![Day::Fri],
            start: "23:00".parse().unwrap(),
            end: "07:00".parse().unwrap(),
        }],
    };
    // Friday 2026-11-27 23:30 local = 22:30 UTC; Saturday 06:30 local runs on.
    assert!(s.is_active_at(&tz, ts("2026-11-27T22:30:00Z")));
    assert!(s.is_active_at(&tz, ts("2026-11-28T05:30:00Z")));
    assert!(
        !s.is_active_at(&tz, ts("2026-11-28T22:30:00Z")),
        "Saturday night is free"
    );
    let state = s.state_at(&tz, ts("2026-11-25T12:00:00Z"));
    assert_eq!(state.active, None);
    assert_eq!(state.valid_until, ts("2026-11-27T22:00:00Z"));
}

#[test]
fn cached_state_answers_like_a_fresh_one() {
    let tz = schedule_time_zone();
    let s = Schedule {
        windows: vec![
            Window {
                days: vec![Day::Sun, Day::Mon, Day::Tue, Day::Wed, Day::Thu],
                start: "22:00".parse().unwrap(),
                end: "06:00".parse().unwrap(),
            },
            Window {
                days: vec![Day::Fri, Day::Sat],
                start: "23:00".parse().unwrap(),
                end: "07:00".parse().unwrap(),
            },
        ],
    };
    // Walk through both 2026 DST changes in 7-minute steps.
    for (from, to) in [
        (ts("2026-03-25T00:00:00Z"), ts("2026-04-02T00:00:00Z")),
        (ts("2026-10-22T00:00:00Z"), ts("2026-10-29T00:00:00Z")),
    ] {
        let mut t = from;
        let mut cache = s.state_at(&tz, t);
        while t < to {
            if !cache.covers(t) {
                cache = s.state_at(&tz, t);
            }
            let fresh = s.state_at(&tz, t);
            assert_eq!(cache.active, fresh.active, "at {t}");
            assert!(fresh.valid_from <= t && t < fresh.valid_until, "at {t}");
            t = t.checked_add(jiff::SignedDuration::from_mins(7)).unwrap();
        }
    }
}
