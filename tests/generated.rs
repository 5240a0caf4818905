//! `calstatus plan` on a generated Outlook-style org (`support::orggen`):
//! every streamed format is the report of the whole plan, byte for byte.

use calstatus::calendar::Window;
use calstatus::report::{Format, render};

use crate::support::{calstatus, orggen, root, t};

#[tokio::test(flavor = "multi_thread")]
async fn streamed_reports_equal_the_whole_plan_rendered() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("org");
    let spec = orggen::Spec {
        users: 40,
        events: 30,
        seed: 7,
    };
    orggen::generate(&dir, spec, &[], &root().join("rules")).unwrap();
    let config = dir.join("calstatus.toml");
    let org = calstatus::org::load(&config).unwrap();
    let window = Window {
        from: t(orggen::WINDOW_FROM),
        to: t(orggen::WINDOW_TO),
    };
    let plan = calstatus::pipeline::build_plan(&org, window, &[])
        .await
        .unwrap();
    assert_eq!(plan.users.len(), 40);
    for (format, name) in [
        (Format::Json, "json"),
        (Format::Csv, "csv"),
        (Format::Table, "table"),
        (Format::Html, "html"),
    ] {
        let out = dir.join(format!("plan.{name}"));
        let o = calstatus(&[
            "plan",
            "--config",
            config.to_str().unwrap(),
            "--from",
            orggen::WINDOW_FROM,
            "--to",
            orggen::WINDOW_TO,
            "--format",
            name,
            "--output",
            out.to_str().unwrap(),
        ]);
        assert_eq!(o.status.code(), Some(0), "{name}");
        let written = std::fs::read_to_string(&out).unwrap();
        assert!(written == render(&plan, format), "{name} differs");
        assert!(!dir.join("plan.calstatus-tmp").exists());
    }
}
