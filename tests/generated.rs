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
        detail: orggen::Detail::Full,
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

/// A "published" org carries the same meetings with less detail (the
/// owner's reply only, no description): the default rules read neither, so
/// the statuses are the same; the files are smaller.
#[tokio::test(flavor = "multi_thread")]
async fn a_published_org_plans_the_same_statuses_from_smaller_files() {
    let tmp = tempfile::tempdir().unwrap();
    let window = Window {
        from: t(orggen::WINDOW_FROM),
        to: t(orggen::WINDOW_TO),
    };
    let mut plans = Vec::new();
    for detail in [orggen::Detail::Full, orggen::Detail::Published] {
        let dir = tmp.path().join(format!("{detail:?}"));
        let spec = orggen::Spec {
            users: 20,
            events: 30,
            seed: 11,
            detail,
        };
        let (_, stats) = orggen::generate(&dir, spec, &[], &root().join("rules")).unwrap();
        let org = calstatus::org::load(&dir.join("calstatus.toml")).unwrap();
        let plan = calstatus::pipeline::build_plan(&org, window, &[])
            .await
            .unwrap();
        let statuses: Vec<String> = plan
            .users
            .iter()
            .flat_map(|u| u.statuses.iter().map(move |s| format!("{} {s:?}", u.user)))
            .collect();
        let text: String = (0..20)
            .map(|i| std::fs::read_to_string(dir.join(format!("calendars/u{i:05}.ics"))).unwrap())
            .collect();
        plans.push((statuses, stats.files_bytes, text));
    }
    let (full, published) = (&plans[0], &plans[1]);
    assert!(!full.0.is_empty());
    assert_eq!(full.0, published.0, "the same statuses");
    assert!(
        published.1 * 10 < full.1 * 8,
        "{} vs {} bytes",
        published.1,
        full.1
    );
    // The Teams description (an alarm's DESCRIPTION:Reminder stays).
    assert!(full.2.contains("DESCRIPTION:_") && !published.2.contains("DESCRIPTION:_"));
}
