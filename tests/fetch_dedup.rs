//! One calendar under many spellings is one source: fetched and parsed
//! once for everyone, and read once (with a warning) by a user who lists
//! it several times.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::fetch::{org_with, run, user_id};
use crate::support::{http_server, respond_ok};

const ICS: &str = "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:d-1\r\nDTSTART:20261127T150000Z\r\nDTEND:20261127T160000Z\r\nSUMMARY:Shared\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";

/// Serves `ICS` on every path, counting requests per request target.
pub fn counting_server() -> (u16, Arc<Mutex<HashMap<String, usize>>>) {
    let counts = Arc::new(Mutex::new(HashMap::new()));
    let c = counts.clone();
    let port = http_server(move |target, s| {
        *c.lock().unwrap().entry(target.to_string()).or_insert(0) += 1;
        respond_ok(s, "text/calendar", ICS);
    });
    (port, counts)
}

fn user(v: &serde_json::Value, i: usize) -> &serde_json::Value {
    v["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["user"] == user_id(i).as_str())
        .unwrap()
}

#[test]
fn one_calendar_under_many_spellings_is_fetched_and_parsed_once() {
    let (port, counts) = counting_server();
    let b = format!("127.0.0.1:{port}");
    let file_spellings: Vec<String> = [
        "calendars/x.ics",
        "calendars/../calendars/x.ics",
        "./calendars/x.ics",
        "calendars//x.ics",
        "calendars/./x.ics",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let users = vec![
        // 0: one URL four ways
        vec![
            format!("http://{b}/cal.ics"),
            format!("HTTP://{b}/x/../cal.ics"),
            format!("http://{b}/%63al.ics#work"),
            format!("http://{b}/./cal.ics?"),
        ],
        // 1, 2: the same URL, spelt differently again
        vec![format!("http://{b}/y/./../cal.ics")],
        vec![format!("http://{b}/cal.ics/../%2e/cal.ics#home")],
        // 3: one file five ways
        file_spellings.clone(),
        // 4: the same file once
        vec!["calendars/sub/../x.ics".to_string()],
        // 5: the same file through a link, and directly
        vec![
            "calendars/link.ics".to_string(),
            "calendars/x.ics".to_string(),
        ],
        // 6: the same file through two links
        vec![
            "calendars/link.ics".to_string(),
            "calendars/sub/link.ics".to_string(),
        ],
    ];
    let (dir, cfg) = org_with("allow_http = true\nallow_private_networks = true", &users);
    std::fs::create_dir_all(dir.path().join("calendars/sub")).unwrap();
    std::fs::write(dir.path().join("calendars/x.ics"), ICS).unwrap();
    std::os::unix::fs::symlink("x.ics", dir.path().join("calendars/link.ics")).unwrap();
    std::os::unix::fs::symlink("../x.ics", dir.path().join("calendars/sub/link.ics")).unwrap();

    let (code, out, err) = run(
        &crate::support::plan_json_day(&cfg),
        &[("RUST_LOG", "calstatus=debug")],
    );
    assert_eq!(code, Some(0), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    // Fetched once: one request, two reads (the URL and the file, whatever
    // its spelling or the link it is read through).
    let counts = counts.lock().unwrap().clone();
    assert_eq!(counts.values().sum::<usize>(), 1, "{counts:?}");
    assert_eq!(err.matches("Read a calendar.").count(), 2, "{err}");
    // Every user has the one meeting once.
    for i in 0..users.len() {
        let u = user(&v, i);
        assert_eq!(
            u["occurrences"].as_array().unwrap().len(),
            1,
            "user {i}: {u}"
        );
        assert_eq!(u["statuses"].as_array().unwrap().len(), 1, "user {i}: {u}");
    }
    // Those who listed it several times are told.
    let warnings = |i| user(&v, i)["warnings"].to_string();
    assert!(warnings(0).contains("listed 4 times"), "{}", warnings(0));
    assert!(warnings(3).contains("listed 5 times"), "{}", warnings(3));
    assert!(warnings(5).contains("the same file as"), "{}", warnings(5));
    assert!(warnings(6).contains("the same file as"), "{}", warnings(6));
    assert_eq!(user(&v, 1)["warnings"].as_array().unwrap().len(), 0);
}
