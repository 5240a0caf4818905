//! One slow user cannot hold everyone up: a user's calendars share one
//! deadline (2 × fetch.timeout) and one user never has more than a quarter
//! of the fetch slots, so everyone else is fetched at once and the run ends
//! within its bound.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::fetch::{error_of, org_with, user_id};
use crate::fetch_files::run_bounded;
use crate::fetch_secrets::hanging_server;
use crate::support::{http_server, respond_ok};

const ICS: &str = "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:n-1\r\nDTSTART:20261127T150000Z\r\nDTEND:20261127T160000Z\r\nSUMMARY:Normal\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";

/// Each request's target and when it arrived.
type Arrivals = Arc<Mutex<Vec<(String, Instant)>>>;

/// Serves `ICS` on every path, recording when each request arrived.
fn recording_server() -> (u16, Arrivals) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    let port = http_server(move |target, s| {
        s2.lock()
            .unwrap()
            .push((target.to_string(), Instant::now()));
        respond_ok(s, "text/calendar", ICS);
    });
    (port, seen)
}

#[test]
fn a_user_with_many_hanging_calendars_does_not_hold_up_the_others() {
    let hang = hanging_server();
    let (normal, seen) = recording_server();
    // User 0: as many URLs as a user may list (16), each accepting and
    // never answering. Users 1..=8: two good calendars each. User 9: a good
    // calendar and one of user 0's.
    let many = calstatus::org::MAX_CALENDARS_PER_USER;
    let mut users = vec![
        (0..many)
            .map(|i| format!("http://127.0.0.1:{hang}/hang/{i}.ics"))
            .collect::<Vec<_>>(),
    ];
    for u in 1..=8 {
        users.push(vec![
            format!("http://127.0.0.1:{normal}/u{u}/a.ics"),
            format!("http://127.0.0.1:{normal}/u{u}/b.ics"),
        ]);
    }
    users.push(vec![
        format!("http://127.0.0.1:{normal}/u9/a.ics"),
        format!("http://127.0.0.1:{hang}/hang/0.ics"),
    ]);
    let (_dir, cfg) = org_with(
        "allow_http = true\nallow_private_networks = true\ntimeout = \"1s\"\nconcurrency = 4",
        &users,
    );
    let args = crate::support::plan_json_day(&cfg);
    let started = Instant::now();
    let (code, out, err, took) = run_bounded(&args, Duration::from_secs(40));
    assert_eq!(code, Some(1), "after {took:?}: {err}");
    eprintln!("the run took {took:?}");
    // The bound: one user's deadline (2 s) plus one timeout (1 s) plus slack
    // for a loaded machine; before, 64 such URLs took 16 s.
    assert!(took < Duration::from_secs(6), "took {took:?}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();

    // Everyone else is planned, and was fetched at once, not after the slow user.
    for u in 1..=9 {
        let p = v["users"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["user"] == user_id(u).as_str())
            .unwrap();
        assert_eq!(
            p["statuses"][0]["message"], "In a meeting until 16:00",
            "{p}"
        );
    }
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 17, "{seen:?}");
    // Fetched at once: long before the slow user's deadline (2 s) frees its slots.
    let last = seen.iter().map(|(_, t)| *t).max().unwrap();
    assert!(
        last - started < Duration::from_millis(1500),
        "the others waited: {:?}",
        last - started
    );

    // The slow user: a clear error per calendar, most of them the deadline.
    let errors = error_of(&v, 0);
    let per_calendar: Vec<&str> = errors.split("; ").collect();
    assert_eq!(per_calendar.len(), many, "{errors}");
    let deadline = per_calendar
        .iter()
        .filter(|e| e.contains("per-user deadline"))
        .count();
    // One slot for 2 s: two URLs time out on their own, the rest hit the deadline.
    assert!(deadline >= many - 4, "{deadline} of {many}: {errors}");
    eprintln!(
        "{deadline} of {many} at the deadline; first error: {}",
        per_calendar[0]
    );
    // User 9 shares one hanging URL: the source's own result (a timeout), not a deadline.
    assert!(
        error_of(&v, 9).contains("not read within 1s"),
        "{}",
        error_of(&v, 9)
    );
}

/// A source one user gave up at their deadline is not a failure for a
/// reader in a later chunk of users: it is read again, under that reader's
/// own deadline.
#[test]
fn a_source_given_up_by_one_user_is_tried_again_for_a_later_one() {
    let hang = hanging_server();
    let shared = format!("http://127.0.0.1:{hang}/hang/shared.ics");
    // User 0 gives `shared` up (it comes after 15 hanging URLs); users
    // 1..=600 read a good file, so user 601 is planned in a later chunk
    // (calstatus plans 512 users at a time).
    let mut first: Vec<String> = (0..calstatus::org::MAX_CALENDARS_PER_USER - 1)
        .map(|i| format!("http://127.0.0.1:{hang}/hang/{i}.ics"))
        .collect();
    first.push(shared.clone());
    let mut users = vec![first];
    users.extend((1..=600).map(|_| vec!["calendars/ok.ics".to_string()]));
    users.push(vec![shared]);
    let (dir, cfg) = org_with(
        "allow_http = true\nallow_private_networks = true\ntimeout = \"1s\"\nconcurrency = 4",
        &users,
    );
    std::fs::create_dir_all(dir.path().join("calendars")).unwrap();
    std::fs::write(dir.path().join("calendars/ok.ics"), ICS).unwrap();
    let args = crate::support::plan_json_day(&cfg);
    let (code, out, err, took) = run_bounded(&args, Duration::from_secs(40));
    assert_eq!(code, Some(1), "after {took:?}: {err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(
        error_of(&v, 0).contains("per-user deadline"),
        "{}",
        error_of(&v, 0)
    );
    let e = error_of(&v, 601);
    assert!(
        e.contains("not read within 1s") && !e.contains("per-user deadline"),
        "{e}"
    );
    // Two deadlines' worth at most: user 0's, then user 601's read.
    assert!(took < Duration::from_secs(8), "took {took:?}");
}
