//! Calendar files: only regular files are read. A FIFO, a device or a
//! directory named as a calendar costs that user that calendar, with a
//! clear error, and never holds up the run.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::fetch::{error_of, org_with, user_id};

const ICS: &str = "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:f-1\r\nDTSTART:20261127T150000Z\r\nDTEND:20261127T160000Z\r\nSUMMARY:From a file\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";

/// Runs `calstatus args`, killing it after `limit`; returns the exit code
/// (None when it had to be killed), stdout, stderr and the time taken.
pub fn run_bounded(args: &[&str], limit: Duration) -> (Option<i32>, String, String, Duration) {
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_calstatus"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Drain both pipes while waiting, or a large output would block the child.
    let drain = |mut r: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = started.elapsed();
    (code, out.join().unwrap(), err.join().unwrap(), took)
}

fn mkfifo(path: &Path) {
    let ok = Command::new("mkfifo").arg(path).status().unwrap().success();
    assert!(ok, "mkfifo {}", path.display());
}

#[test]
fn fifos_devices_and_directories_are_refused_promptly() {
    let users = vec![
        vec!["calendars/pipe.ics".to_string()],
        vec!["calendars/ok.ics".to_string()],
        vec!["/dev/zero".to_string()],
        vec!["calendars/zero.ics".to_string()],
        vec!["calendars/dir.ics".to_string()],
        vec!["calendars/to-pipe.ics".to_string()],
    ];
    let (dir, cfg) = org_with("timeout = \"1s\"\nfile_roots = [\".\", \"/dev\"]", &users);
    let cals = dir.path().join("calendars");
    std::fs::create_dir_all(cals.join("dir.ics")).unwrap();
    std::fs::write(cals.join("ok.ics"), ICS).unwrap();
    mkfifo(&cals.join("pipe.ics"));
    std::os::unix::fs::symlink("/dev/zero", cals.join("zero.ics")).unwrap();
    std::os::unix::fs::symlink(cals.join("pipe.ics"), cals.join("to-pipe.ics")).unwrap();

    let window = [
        "--from",
        "2026-11-27T00:00:00Z",
        "--to",
        "2026-11-28T00:00:00Z",
    ];
    let mut args = vec!["plan", "--config", &cfg, "--format", "json"];
    args.extend(window);
    let (code, out, err, took) = run_bounded(&args, Duration::from_secs(20));
    assert_eq!(code, Some(1), "killed after {took:?} (a hang?): {err}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let u1 = v["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["user"] == user_id(1).as_str())
        .unwrap();
    assert_eq!(
        u1["statuses"][0]["message"], "In a meeting until 16:00",
        "{v}"
    );
    for (i, what) in [
        (0, "a FIFO"),
        (2, "a character device"),
        (3, "a character device"),
        (4, "a directory"),
        (5, "a FIFO"),
    ] {
        let e = error_of(&v, i);
        assert!(
            e.contains("not a regular file") && e.contains(what),
            "user {i}: {e}"
        );
    }

    // `check` reads every calendar too.
    let (code, _, err, took) = run_bounded(&["check", "--config", &cfg], Duration::from_secs(20));
    assert_eq!(code, Some(3), "killed after {took:?} (a hang?): {err}");
    assert!(err.contains("pipe.ics") && err.contains("a FIFO"), "{err}");
}
