//! The standard reporter set fed synthetic runs; the files it writes are read back
//! (junit.xml parsed with quick-junit) and their content checked.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

use chrono::{TimeZone, Utc};
use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};
use serde_json::Value;

use super::fixtures::{Stream, stats, unit};
use super::*;
use crate::events::{Event, StepOutcome, UnitId, UnitOutcome};

/// A writer tests can read back.
#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl Write for Buf {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Buf {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

struct Ran {
    _root: tempfile::TempDir,
    dir: RunDir,
    term: Buf,
}

impl Ran {
    fn junit(&self) -> Report {
        let xml = fs::read_to_string(self.dir.join("junit.xml")).unwrap();
        Report::deserialize_from_str(&xml).unwrap_or_else(|e| panic!("{e}\n{xml}"))
    }
    fn summary(&self) -> Value {
        serde_json::from_slice(&fs::read(self.dir.join("summary.json")).unwrap()).unwrap()
    }
    fn html(&self) -> String {
        fs::read_to_string(self.dir.join("index.html")).unwrap()
    }
}

fn new_run() -> (tempfile::TempDir, RunDir) {
    let root = tempfile::tempdir().unwrap();
    let dir = RunDir::create(
        root.path(),
        Utc.with_ymd_and_hms(2025, 3, 4, 5, 6, 7).unwrap(),
    )
    .unwrap();
    (root, dir)
}

/// Feeds `build`'s stream to the standard set (human terminal into a buffer).
fn run(build: impl FnOnce(&mut Stream, &Path)) -> Ran {
    let (root, dir) = new_run();
    let mut s = Stream::new(dir.path());
    build(&mut s, dir.path());
    let term = Buf::default();
    let opts = TerminalOptions {
        format: OutputFormat::Human,
        color: false,
        progress: false,
    };
    let mut f = Fanout::standard_with(
        &dir,
        TerminalReporter::with_writer(opts, Box::new(term.clone())),
    )
    .unwrap();
    for ev in &s.events {
        f.event(ev).unwrap();
    }
    Ran {
        _root: root,
        dir,
        term,
    }
}

fn suite<'a>(r: &'a Report, name: &str) -> &'a TestSuite {
    r.test_suites
        .iter()
        .find(|s| s.name.as_str() == name)
        .unwrap_or_else(|| panic!("no suite {name}"))
}

fn case<'a>(s: &'a TestSuite, name: &str) -> &'a TestCase {
    s.test_cases
        .iter()
        .find(|c| c.name.as_str() == name)
        .unwrap_or_else(|| panic!("no case {name} in {}", s.name.as_str()))
}

fn prop<'a>(props: &'a [quick_junit::Property], name: &str) -> Option<&'a str> {
    props
        .iter()
        .find(|p| p.name.as_str() == name)
        .map(|p| p.value.as_str())
}

fn message(c: &TestCase) -> &str {
    match &c.status {
        TestCaseStatus::NonSuccess {
            message: Some(m), ..
        }
        | TestCaseStatus::Skipped {
            message: Some(m), ..
        } => m.as_str(),
        s => panic!("{} has no message: {s:?}", c.name.as_str()),
    }
}

#[test]
fn a_passing_run_writes_every_file() {
    let units = [
        unit("stress", "win11", 1),
        unit("stress", "win11", 2),
        unit("unload", "win11", 1),
    ];
    let r = run(|s, _| {
        s.start(&units);
        for u in &units {
            s.pass(u, "hvlab-vm-1");
        }
        s.end(stats(3, 3, 0, 0, 0, 0), 0, false);
    });
    let j = r.junit();
    assert_eq!((j.tests, j.failures, j.errors, j.skipped), (3, 0, 0, 0));
    assert!(!j.name.as_ref().unwrap().as_str().contains("interrupted"));
    let s = suite(&j, "stress@win11");
    assert_eq!(prop(&s.properties, "interrupted"), Some("false"));
    assert_eq!(prop(&s.properties, "run-complete"), Some("true"));
    let c = case(s, "iter-2");
    assert!(matches!(c.status, TestCaseStatus::Success { .. }));
    assert_eq!(prop(&c.properties, "vm"), Some("hvlab-vm-1"));
    assert_eq!(prop(&c.properties, "seed"), Some("1002"));
    assert_eq!(prop(&c.properties, "iteration"), Some("2"));
    let out = c.system_out.as_ref().unwrap().as_str();
    assert!(
        out.contains("[+1.500s] steps[0] install driver: passed in 1.500s"),
        "{out}"
    );
    assert!(out.contains("steps[1] stress maps: passed"), "{out}");

    let sum = r.summary();
    assert_eq!(sum["run_id"], "20250304-050607-beef");
    assert_eq!(sum["finished"], true);
    assert_eq!(sum["exit_code"], 0);
    assert_eq!(sum["stats"]["passed"], 3);
    assert_eq!(sum["units"][2]["outcome"], "passed");
    assert_eq!(sum["units"][2]["dir"], "unload/win11/iter-1");

    let lines = fs::read_to_string(r.dir.join("events.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), 3 * 6 + 2);
    for l in lines.lines() {
        let _: crate::events::Envelope = serde_json::from_str(l).unwrap();
    }
    assert!(r.html().contains("<td class=\"PASS\">PASS</td>"));
    let term = r.term.text();
    assert_eq!(term.matches(" PASS [").count(), 3, "{term}");
    assert!(term.contains("Exit code 0: all passed"), "{term}");
}

#[test]
fn a_crash_fails_the_unit_naming_bugcheck_bucket_and_dump() {
    let (ok, bad) = (unit("stress", "win11", 1), unit("stress", "win11", 2));
    let r = run(|s, _| {
        s.start(&[ok.clone(), bad.clone()])
            .pass(&ok, "vm-1")
            .crash(&bad, "vm-2");
        s.end(stats(2, 1, 1, 0, 0, 1), 1, false);
    });
    let j = r.junit();
    assert_eq!((j.tests, j.failures), (2, 1));
    let c = case(suite(&j, "stress@win11"), "iter-2");
    let TestCaseStatus::NonSuccess {
        kind,
        ty,
        description,
        ..
    } = &c.status
    else {
        panic!("{:?}", c.status)
    };
    assert_eq!(*kind, NonSuccessKind::Failure);
    assert_eq!(ty.as_ref().unwrap().as_str(), "bugcheck");
    let msg = message(c);
    for want in [
        "0x00000050",
        "PAGE_FAULT_IN_NONPAGED_AREA",
        "sample_ebpf_ext.sys",
        "bucket 0x50-sample_ebpf_ext.sys-map_find_entry",
    ] {
        assert!(msg.contains(want), "{msg:?} lacks {want}");
    }
    assert!(
        description
            .as_ref()
            .unwrap()
            .as_str()
            .contains("0xFFFF8000DEAD0000")
    );
    assert_eq!(prop(&c.properties, "bugcheck"), Some("0x00000050"));
    assert_eq!(
        prop(&c.properties, "bucket"),
        Some("0x50-sample_ebpf_ext.sys-map_find_entry")
    );
    let dump = r.dir.join("stress/win11/iter-2/MEMORY.DMP");
    let out = c.system_out.as_ref().unwrap().as_str();
    assert!(
        out.contains(&format!("[[ATTACHMENT|{}]]", dump.display())),
        "{out}"
    );
    assert_eq!(
        out.matches("[[ATTACHMENT|").count(),
        1,
        "dump listed once: {out}"
    );
    assert!(
        out.contains("steps[1] stress maps: crashed") && out.contains("  | lookup failed"),
        "{out}"
    );
    assert!(
        c.system_err
            .as_ref()
            .unwrap()
            .as_str()
            .contains("key 7 missing")
    );

    let sum = r.summary();
    assert_eq!(sum["exit_code"], 1);
    assert_eq!(sum["units"][1]["outcome"], "failed");
    assert_eq!(
        sum["units"][1]["bucket"],
        "0x50-sample_ebpf_ext.sys-map_find_entry"
    );
    assert_eq!(sum["units"][1]["crash"]["bugcheck"]["code"], 0x50);
    let b = &sum["crash_buckets"][0];
    assert_eq!(
        (b["count"].as_u64(), b["units"][0]["iteration"].as_u64()),
        (Some(1), Some(2))
    );

    let html = r.html();
    assert!(
        html.contains("href=\"stress/win11/iter-2/MEMORY.DMP\""),
        "{html}"
    );
    assert!(html.contains("bugcheck 0x00000050 PAGE_FAULT_IN_NONPAGED_AREA"));
    let term = r.term.text();
    assert!(
        term.contains(
            "CRASH stress@win11#2 on vm-2: guest crashed in step steps[1]: bugcheck 0x00000050"
        ),
        "{term}"
    );
    assert!(
        term.contains(" FAIL [   4.321s] stress@win11#2  bugcheck 0x00000050"),
        "{term}"
    );
}

#[test]
fn expectation_failures_lab_errors_and_infra_errors_are_told_apart() {
    let (a, b) = (unit("s", "t", 1), unit("s", "t", 2));
    let r = run(|s, _| {
        s.start(&[a.clone(), b.clone()])
            .steps(
                &a,
                "vm",
                &[(
                    "check",
                    StepOutcome::Failed {
                        message: "count 3 != 4".into(),
                    },
                )],
            )
            .finish(
                &a,
                "vm",
                UnitOutcome::Failed {
                    message: "expected count 4, got 3".into(),
                    crash: None,
                },
                &[],
            )
            .finish(
                &b,
                "vm",
                UnitOutcome::Errored {
                    message: "transport: connection refused".into(),
                    causes: vec![],
                },
                &[],
            )
            .push(Event::InfraError {
                vm: Some("vm".into()),
                message: "vm did not boot".into(),
                causes: vec![],
            })
            .end(stats(2, 0, 1, 1, 0, 0), 3, false);
    });
    let j = r.junit();
    let s = suite(&j, "s@t");
    assert_eq!(message(case(s, "iter-1")), "expected count 4, got 3");
    let TestCaseStatus::NonSuccess { kind, .. } = &case(s, "iter-2").status else {
        panic!()
    };
    assert_eq!(*kind, NonSuccessKind::Error);
    let lab = suite(&j, "hvlab@lab");
    assert_eq!(message(case(lab, "infra-error-1")), "vm: vm did not boot");
    assert_eq!((j.failures, j.errors), (1, 2));
    assert_eq!(r.summary()["infra_errors"][0], "vm: vm did not boot");
}

#[test]
fn an_interrupted_run_says_so_and_skips_what_did_not_run() {
    let us = [unit("s", "t", 1), unit("s", "t", 2), unit("s", "t", 3)];
    let r = run(|s, _| {
        s.start(&us).pass(&us[0], "vm");
        s.steps(&us[1], "vm", &[("stress", StepOutcome::Cancelled)])
            .push(Event::Interrupted { count: 1 })
            .finish(&us[1], "vm", UnitOutcome::Cancelled, &[])
            .push(Event::Leftover {
                what: "VM hvlab-x".into(),
                how_to_remove: "hvlab lab gc".into(),
            })
            .end(stats(3, 1, 0, 0, 1, 0), 130, true);
    });
    let j = r.junit();
    assert!(j.name.as_ref().unwrap().as_str().ends_with("(interrupted)"));
    assert_eq!((j.tests, j.skipped), (3, 2));
    let s = suite(&j, "s@t");
    assert_eq!(prop(&s.properties, "interrupted"), Some("true"));
    assert!(
        s.system_out
            .as_ref()
            .unwrap()
            .as_str()
            .contains("run interrupted: 1 of 3 units did not finish")
    );
    assert_eq!(message(case(s, "iter-2")), "run interrupted");
    assert!(message(case(s, "iter-3")).starts_with("run interrupted"));
    let sum = r.summary();
    assert_eq!(
        (sum["interrupted"].as_bool(), sum["exit_code"].as_i64()),
        (Some(true), Some(130))
    );
    assert_eq!(sum["units"][2]["outcome"], "not_run");
    assert_eq!(sum["leftovers"][0]["how_to_remove"], "hvlab lab gc");
    let term = r.term.text();
    assert!(
        term.contains("interrupted: stopping after the current steps"),
        "{term}"
    );
    assert!(term.contains("Exit code 130: interrupted"), "{term}");
}

#[test]
fn a_killed_run_leaves_a_valid_junit_that_says_it_did_not_finish() {
    let us = [unit("s", "t", 1), unit("s", "t", 2)];
    // The stream stops after the first unit: nothing else is ever written.
    let r = run(|s, _| {
        s.start(&us)
            .pass(&us[0], "vm")
            .steps(&us[1], "vm", &[("stress", StepOutcome::Passed)]);
    });
    let j = r.junit();
    assert!(j.name.as_ref().unwrap().as_str().contains("did not finish"));
    let s = suite(&j, "s@t");
    assert_eq!(prop(&s.properties, "run-complete"), Some("false"));
    assert_eq!(prop(&s.properties, "interrupted"), Some("true"));
    assert!(matches!(
        case(s, "iter-1").status,
        TestCaseStatus::Success { .. }
    ));
    assert!(message(case(s, "iter-2")).starts_with("run interrupted"));
    assert_eq!(r.summary()["finished"], false);
    assert!(r.html().contains("has not finished"));
}

#[test]
fn guest_junit_files_are_merged_and_a_malformed_one_fails_a_case() {
    let u = unit("catch2", "win11", 1);
    let r = run(|s, dir| {
        let rel = crate::results::RunDir::unit_rel(&u);
        fs::create_dir_all(dir.join(&rel)).unwrap();
        fs::write(
            dir.join(rel.join("tests.xml")),
            r#"<testsuites><testsuite name="maps" tests="2"><testcase classname="maps.global" name="insert"/>
               <testcase name="delete"><failure message="REQUIRE( ok )"/></testcase></testsuite></testsuites>"#,
        )
        .unwrap();
        fs::write(
            dir.join(rel.join("broken.xml")),
            "<testsuites><testsuite name=\"x\">",
        )
        .unwrap();
        let g1 = rel.join("tests.xml").display().to_string();
        let g2 = rel.join("broken.xml").display().to_string();
        s.start(std::slice::from_ref(&u))
            .steps(&u, "vm", &[("catch2", StepOutcome::Passed)])
            .finish(&u, "vm", UnitOutcome::Passed, &[&g1, &g2])
            .end(stats(1, 1, 0, 0, 0, 0), 0, false);
    });
    let j = r.junit();
    let s = suite(&j, "catch2@win11");
    assert_eq!(s.test_cases.len(), 4);
    assert!(matches!(
        case(s, "iter-1/maps/insert").status,
        TestCaseStatus::Success { .. }
    ));
    assert_eq!(message(case(s, "iter-1/maps/delete")), "REQUIRE( ok )");
    let insert = &case(s, "iter-1/maps/insert").properties;
    assert_eq!(prop(insert, "guest-classname"), Some("maps.global"));
    assert_eq!(prop(insert, "vm"), Some("vm"));
    assert_eq!(prop(insert, "iteration"), Some("1"));
    let broken = message(case(s, "iter-1/guest-junit/broken.xml"));
    assert!(
        broken.contains("malformed guest junit file catch2/win11/iter-1/broken.xml"),
        "{broken}"
    );
    assert_eq!((j.tests, j.failures), (4, 2));
}

#[test]
fn the_same_seed_passing_and_failing_is_flaky_and_failing_twice_is_a_rerun() {
    let us = [
        unit("flaky", "t", 1),
        unit("flaky", "t", 2),
        unit("bad", "t", 1),
        unit("bad", "t", 2),
        unit("good", "t", 1),
        unit("good", "t", 2),
    ];
    let r = run(|s, _| {
        s.fixed_seed = Some(7);
        s.start(&us)
            .crash(&us[0], "vm")
            .pass(&us[1], "vm")
            .crash(&us[2], "vm")
            .crash(&us[3], "vm")
            .pass(&us[4], "vm")
            .pass(&us[5], "vm");
        s.end(stats(6, 3, 3, 0, 0, 3), 1, false);
    });
    let j = r.junit();
    let good = suite(&j, "good@t");
    assert_eq!(
        good.test_cases.len(),
        2,
        "same-seed passes stay one case each"
    );
    let flaky = suite(&j, "flaky@t");
    assert_eq!(flaky.test_cases.len(), 1);
    let c = &flaky.test_cases[0];
    assert_eq!(c.name.as_str(), "iter-2");
    assert_eq!(prop(&c.properties, "runs"), Some("1,2"));
    let TestCaseStatus::Success { flaky_runs } = &c.status else {
        panic!("{:?}", c.status)
    };
    assert_eq!(flaky_runs.len(), 1);
    assert!(
        flaky_runs[0]
            .message
            .as_ref()
            .unwrap()
            .as_str()
            .contains("0x00000050")
    );

    let bad = &suite(&j, "bad@t").test_cases[0];
    let TestCaseStatus::NonSuccess { reruns, .. } = &bad.status else {
        panic!()
    };
    assert_eq!(
        (reruns.kind, reruns.runs.len()),
        (quick_junit::FlakyOrRerun::Rerun, 1)
    );
    let xml = fs::read_to_string(r.dir.join("junit.xml")).unwrap();
    assert!(xml.contains("<flakyFailure") && xml.contains("<rerunFailure"));
}

#[test]
fn html_escapes_every_string_from_the_run() {
    let u = unit("<script>alert(1)</script>", "t&\"x\"", 1);
    let hostile_step = "\"><img src=x onerror=alert(2)></pre><script>x</script>";
    let r = run(|s, _| {
        s.start(std::slice::from_ref(&u))
            .steps(
                &u,
                "vm<1>",
                &[(
                    hostile_step,
                    StepOutcome::Failed {
                        message: "</pre><b>".into(),
                    },
                )],
            )
            .finish(
                &u,
                "vm<1>",
                UnitOutcome::Failed {
                    message: "a < b & 'c'".into(),
                    crash: None,
                },
                &[],
            )
            .end(stats(1, 0, 1, 0, 0, 0), 1, false);
    });
    let html = r.html();
    assert!(!html.contains("<script>"), "{html}");
    assert!(!html.contains("<img"), "{html}");
    assert!(!html.contains("<b>"), "{html}");
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;@t&amp;&quot;x&quot;#1"));
    assert!(html.contains("a &lt; b &amp; 'c'"));
    assert!(html.contains("vm&lt;1&gt;"));
    // The hostile step is in the timeline (title attribute) and the step log, escaped.
    assert!(
        html.contains("&quot;&gt;&lt;img src=x onerror=alert(2)&gt;"),
        "{html}"
    );
    // Every tag that opens is one the template wrote: count a few against their closers.
    for tag in ["pre", "table", "main", "details"] {
        assert_eq!(
            html.matches(&format!("<{tag}")).count(),
            html.matches(&format!("</{tag}>")).count(),
            "{tag}: {html}"
        );
    }
    // The folder link is percent-encoded, then escaped.
    assert!(html.contains("href=\"_script_alert_1___script_-"), "{html}");
}

#[test]
fn json_mode_writes_each_event_as_a_line_and_nothing_else() {
    let out = Buf::default();
    let opts = TerminalOptions {
        format: OutputFormat::Json,
        color: true,
        progress: true,
    };
    let mut t = TerminalReporter::with_writer(opts, Box::new(out.clone()));
    let (_root, dir) = new_run();
    let mut s = Stream::new(dir.path());
    let u = unit("s", "t", 1);
    s.start(std::slice::from_ref(&u))
        .pass(&u, "vm")
        .end(stats(1, 1, 0, 0, 0, 0), 0, false);
    for ev in &s.events {
        t.event(ev).unwrap();
    }
    let text = out.text();
    assert_eq!(text.lines().count(), s.events.len());
    let last: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(last["event"], "run_finished");
    assert_eq!(last["exit_code"], 0);
}

#[test]
fn human_mode_colours_only_when_asked() {
    let run_with = |color| {
        let out = Buf::default();
        let opts = TerminalOptions {
            format: OutputFormat::Human,
            color,
            progress: false,
        };
        let mut t = TerminalReporter::with_writer(opts, Box::new(out.clone()));
        let mut s = Stream::new(Path::new("/r"));
        let u = unit("s", "t", 1);
        s.start(std::slice::from_ref(&u)).pass(&u, "vm");
        for ev in &s.events {
            t.event(ev).unwrap();
        }
        out.text()
    };
    assert!(run_with(true).contains("\x1b[32m PASS\x1b[0m"));
    assert!(!run_with(false).contains('\x1b'));
}

struct Failing;
impl Reporter for Failing {
    fn event(&mut self, _: &Envelope) -> Result<(), ReportError> {
        Err(ReportError::Terminal(io::Error::other("disk on fire")))
    }
}

struct Count(Arc<Mutex<usize>>);
impl Reporter for Count {
    fn event(&mut self, _: &Envelope) -> Result<(), ReportError> {
        *self.0.lock().unwrap() += 1;
        Ok(())
    }
}

#[test]
fn fanout_feeds_everyone_and_collects_the_failures() {
    let n = Arc::new(Mutex::new(0));
    let mut f = Fanout::new();
    f.push("broken", Failing).push("count", Count(n.clone()));
    let mut s = Stream::new(Path::new("/r"));
    s.start(&[]).end(stats(0, 0, 0, 0, 0, 0), 0, false);
    for ev in &s.events {
        let e = f.event(ev).unwrap_err().to_string();
        assert_eq!(
            e,
            "report to 1 of 2 reporters: broken: write to the terminal: disk on fire"
        );
    }
    // The two events, plus the failure announced once as an InfraError (the same failure
    // on the second event is not announced again).
    assert_eq!(*n.lock().unwrap(), 3);
    assert!(f.failed());
    assert_eq!(
        f.failures(),
        ["record results: broken: write to the terminal: disk on fire"]
    );
}

/// Fails its second and later writes with ENOSPC, like a junit.xml on a disk that filled.
struct FullAfterFirst(usize);
impl Reporter for FullAfterFirst {
    fn event(&mut self, _: &Envelope) -> Result<(), ReportError> {
        self.0 += 1;
        if self.0 == 1 {
            return Ok(());
        }
        Err(ReportError::Io {
            path: "/r/run/junit.xml".into(),
            source: io::Error::from_raw_os_error(28),
        })
    }
}

#[test]
fn a_results_write_failure_reaches_every_reporter_as_an_infra_error() {
    let (_root, dir) = new_run();
    let term = Buf::default();
    let opts = TerminalOptions {
        format: OutputFormat::Human,
        color: false,
        progress: false,
    };
    let mut f = Fanout::new();
    f.push(
        "terminal",
        TerminalReporter::with_writer(opts, Box::new(term.clone())),
    )
    .push("junit.xml", FullAfterFirst(0))
    .push("summary.json", SummaryReporter::new(dir.path()));
    let mut s = Stream::new(dir.path());
    // The runner's verdict was 1; the final junit.xml then failed, so the run ends as 3
    // and the summary (written after the announcement) says so.
    s.start(&[]).end(stats(0, 0, 0, 0, 0, 0), 1, false);
    for ev in &s.events {
        let _ = f.event(ev);
    }
    let msg = "record results: junit.xml: write /r/run/junit.xml: No space left on device \
               (os error 28)";
    assert_eq!(f.failures(), [msg]);
    assert!(
        term.text().contains(&format!("ERROR {msg}")),
        "{}",
        term.text()
    );
    let summary: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["infra_errors"][0], msg);
    assert_eq!(summary["exit_code"], 3);
}

#[test]
fn the_standard_set_never_reuses_an_events_file() {
    let (_root, dir) = new_run();
    fs::write(dir.join("events.jsonl"), "old\n").unwrap();
    let opts = TerminalOptions {
        format: OutputFormat::Human,
        color: false,
        progress: false,
    };
    let e = Fanout::standard(&dir, opts).unwrap_err().to_string();
    assert!(e.contains("events.jsonl"), "{e}");
    assert_eq!(
        fs::read_to_string(dir.join("events.jsonl")).unwrap(),
        "old\n"
    );
}

#[test]
fn an_errored_attempt_is_a_flaky_error_under_a_pass_and_a_rerun_error_under_an_error() {
    let (a, b) = (unit("s", "t", 1), unit("s", "t", 2));
    let lost = || {
        UnitOutcome::errored_msg(
            "the VM restarted without a bugcheck record or dump: its process died",
        )
    };
    let retried = |s: &mut Stream, u: &UnitId, vm: &str| {
        s.steps(u, vm, &[("work", StepOutcome::Crashed)])
            .push(Event::UnitRetried {
                unit: u.clone(),
                vm: vm.into(),
                attempt: 1,
                outcome: lost(),
                duration: std::time::Duration::from_secs(2),
            });
    };
    let r = run(|s, _| {
        s.start(&[a.clone(), b.clone()]);
        retried(s, &a, "vm-0");
        s.pass(&a, "vm-1");
        retried(s, &b, "vm-2");
        s.steps(&b, "vm-3", &[("work", StepOutcome::Crashed)])
            .finish(&b, "vm-3", lost(), &[]);
        let mut st = stats(2, 1, 0, 1, 0, 0);
        st.retried = 2;
        s.end(st, 3, false);
    });
    let j = r.junit();
    let s = suite(&j, "s@t");
    let TestCaseStatus::Success { flaky_runs } = &case(s, "iter-1").status else {
        panic!("the retry passed")
    };
    assert_eq!(flaky_runs.len(), 1);
    assert_eq!(flaky_runs[0].kind, NonSuccessKind::Error);
    assert_eq!(prop(&case(s, "iter-1").properties, "attempts"), Some("2"));
    let TestCaseStatus::NonSuccess { kind, reruns, .. } = &case(s, "iter-2").status else {
        panic!("every attempt errored")
    };
    assert_eq!(*kind, NonSuccessKind::Error);
    assert_eq!(reruns.kind, quick_junit::FlakyOrRerun::Rerun);
    assert_eq!(reruns.runs.len(), 1);
    assert!(
        reruns.runs[0]
            .message
            .as_ref()
            .unwrap()
            .as_str()
            .starts_with("attempt 1: the VM restarted"),
        "{:?}",
        reruns.runs[0].message
    );
    // Each attempt's timeline stays with its attempt.
    let out = case(s, "iter-2").system_out.as_ref().unwrap().as_str();
    assert_eq!(out.matches("steps[0] work").count(), 1, "{out}");
    let sum = r.summary();
    assert_eq!(sum["stats"]["retried"], 2);
    assert_eq!(sum["units"][0]["retries"][0]["vm"], "vm-0");
    assert!(
        sum["units"][1]["retries"][0]["message"]
            .as_str()
            .unwrap()
            .contains("without a bugcheck record")
    );
    let term = r.term.text();
    assert!(
        term.contains("2 retried after an infrastructure error"),
        "{term}"
    );
    assert!(term.contains("attempt 1: the VM restarted"), "{term}");
}

#[test]
fn a_failed_attempt_is_a_flaky_failure_under_a_pass_and_a_rerun_failure_under_a_failure() {
    let (a, b) = (unit("s", "t", 1), unit("s", "t", 2));
    let failed = || UnitOutcome::Failed {
        message: "counter ops: 0 below min 1".into(),
        crash: None,
    };
    let retried = |s: &mut Stream, u: &UnitId| {
        s.steps(
            u,
            "vm-0",
            &[(
                "work",
                StepOutcome::Failed {
                    message: "x".into(),
                },
            )],
        )
        .push(Event::UnitRetried {
            unit: u.clone(),
            vm: "vm-0".into(),
            attempt: 1,
            outcome: failed(),
            duration: std::time::Duration::from_secs(1),
        });
    };
    let r = run(|s, _| {
        s.start(&[a.clone(), b.clone()]);
        retried(s, &a);
        s.pass(&a, "vm-0");
        retried(s, &b);
        s.steps(
            &b,
            "vm-0",
            &[(
                "work",
                StepOutcome::Failed {
                    message: "x".into(),
                },
            )],
        )
        .finish(&b, "vm-0", failed(), &[]);
        let mut st = stats(2, 1, 1, 0, 0, 0);
        st.flaky = 1;
        s.end(st, 1, false);
    });
    let j = r.junit();
    let s = suite(&j, "s@t");
    let TestCaseStatus::Success { flaky_runs } = &case(s, "iter-1").status else {
        panic!("the retry passed")
    };
    assert_eq!(flaky_runs.len(), 1);
    assert_eq!(flaky_runs[0].kind, NonSuccessKind::Failure);
    let TestCaseStatus::NonSuccess { kind, reruns, .. } = &case(s, "iter-2").status else {
        panic!("every attempt failed")
    };
    assert_eq!(*kind, NonSuccessKind::Failure);
    assert_eq!(reruns.kind, quick_junit::FlakyOrRerun::Rerun);
    assert_eq!(reruns.runs.len(), 1);
    let xml = fs::read_to_string(r.dir.join("junit.xml")).unwrap();
    assert!(xml.contains("<flakyFailure"), "{xml}");
    assert!(xml.contains("<rerunFailure"), "{xml}");
    let sum = r.summary();
    assert_eq!(sum["stats"]["flaky"], 1);
    assert_eq!(sum["units"][0]["flaky"], true);
    assert_eq!(sum["units"][0]["retries"][0]["outcome"], "failed");
    assert!(sum["units"][1].get("flaky").is_none());
    assert!(
        sum["units"][1]["replay"]
            .as_str()
            .unwrap()
            .starts_with("hvlab run s --template t --replay-seed "),
        "{sum:#}"
    );
    let term = r.term.text();
    assert!(term.contains("; 1 flaky"), "{term}");
    assert!(term.contains("FLAKY s@t#1  passed on attempt 2"), "{term}");
    assert!(!term.contains("infrastructure error"), "{term}");
}

#[test]
fn the_standard_set_holds_a_reserve_until_the_run_finishes() {
    let (_root, dir) = new_run();
    let opts = TerminalOptions {
        format: OutputFormat::Human,
        color: false,
        progress: false,
    };
    let mut f = Fanout::standard_with(
        &dir,
        TerminalReporter::with_writer(opts, Box::new(Buf::default())),
    )
    .unwrap();
    let reserve = dir.join(crate::results::Reserve::FILE);
    let mut s = Stream::new(dir.path());
    s.start(&[]).end(stats(0, 0, 0, 0, 0, 0), 0, false);
    f.event(&s.events[0]).unwrap();
    assert!(reserve.is_file());
    f.event(&s.events[1]).unwrap();
    assert!(!reserve.exists());
    assert!(!f.failed());
}

#[test]
fn every_crash_is_filed_in_a_crash_folder_the_reports_link_to() {
    let us = [unit("s", "t", 1), unit("s", "t", 2), unit("s", "t", 3)];
    let r = run(|s, _| {
        s.start(&us).crash(&us[0], "vm-1").crash(&us[1], "vm-2");
        let mut bad = super::fixtures::page_fault_crash("s/t/iter-3/dumps/MEMORY.DMP");
        bad.bucket = None;
        bad.triage_error = Some("triage s/t/iter-3/dumps/MEMORY.DMP: truncated".into());
        s.steps(&us[2], "vm-1", &[("stress maps", StepOutcome::Crashed)])
            .push(Event::CrashDetected {
                unit: us[2].clone(),
                vm: "vm-1".into(),
                crash: bad.clone(),
            })
            .finish(
                &us[2],
                "vm-1",
                UnitOutcome::Failed {
                    message: "guest bugchecked".into(),
                    crash: Some(bad),
                },
                &[],
            );
        s.end(stats(3, 0, 3, 0, 0, 3), 1, false);
    });
    let read = |rel: &str| -> Value {
        serde_json::from_slice(&fs::read(r.dir.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}")))
            .unwrap()
    };
    let bucket = "crashes/0x50-sample_ebpf_ext.sys-map_find_entry";
    let idx = read(&format!("{bucket}/index.json"));
    assert_eq!(
        idx["bucket"]["title"],
        "PAGE_FAULT_IN_NONPAGED_AREA in sample_ebpf_ext.sys!map_find_entry"
    );
    let crashes = idx["crashes"].as_array().unwrap();
    assert_eq!(crashes.len(), 2, "{idx:#}");
    for (c, u) in crashes.iter().zip(&us) {
        assert_eq!(
            c["unit"]["iteration"].as_u64(),
            Some(u64::from(u.iteration))
        );
        assert_eq!(c["unit_dir"], format!("s/t/iter-{}", u.iteration));
        assert_eq!(
            c["dumps"][0],
            format!("s/t/iter-{}/MEMORY.DMP", u.iteration)
        );
        assert_eq!(c["seed"].as_u64(), Some(super::fixtures::seed_of(u)));
        assert_eq!(c["bugcheck"]["code"], 0x50);
        assert!(c.get("triage_error").is_none(), "{c:#}");
    }
    let untriaged = read("crashes/untriaged/index.json");
    assert_eq!(untriaged["bucket"], Value::Null);
    assert_eq!(untriaged["crashes"].as_array().unwrap().len(), 1);
    assert_eq!(
        untriaged["crashes"][0]["triage_error"],
        "triage s/t/iter-3/dumps/MEMORY.DMP: truncated"
    );
    assert_eq!(untriaged["crashes"][0]["unit_dir"], "s/t/iter-3");

    let sum = r.summary();
    assert_eq!(sum["units"][0]["crash_dir"], bucket);
    assert_eq!(sum["units"][2]["crash_dir"], "crashes/untriaged");
    assert_eq!(sum["crash_buckets"][0]["dir"], bucket);

    let html = r.html();
    for folder in [bucket, "crashes/untriaged"] {
        assert!(html.contains(&format!("href=\"{folder}\"")), "{html}");
        assert!(r.dir.join(folder).is_dir());
    }
    let j = r.junit();
    let c = case(suite(&j, "s@t"), "iter-3");
    let TestCaseStatus::NonSuccess { description, .. } = &c.status else {
        panic!("{:?}", c.status)
    };
    let want = format!(
        "crash folder: {}",
        r.dir.join("crashes/untriaged").display()
    );
    assert!(
        description.as_ref().unwrap().as_str().contains(&want),
        "{description:?}"
    );
}

#[test]
fn passing_and_failing_units_keep_their_step_output() {
    let ok = unit("s", "t", 1);
    let bad = unit("s", "t", 2);
    let r = run(|s, _| {
        s.start(&[ok.clone(), bad.clone()])
            .steps(&ok, "vm-1", &[("start the extension", StepOutcome::Passed)])
            .pass(&ok, "vm-1")
            .steps(
                &bad,
                "vm-1",
                &[(
                    "map workload",
                    StepOutcome::Failed {
                        message: "errors: 1".into(),
                    },
                )],
            )
            .finish(
                &bad,
                "vm-1",
                UnitOutcome::Failed {
                    message: "errors: 1".into(),
                    crash: None,
                },
                &[],
            )
            .end(stats(2, 1, 1, 0, 0, 0), 1, false);
    });
    let log = |u: &UnitId| fs::read_to_string(r.dir.join(RunDir::unit_rel(u)).join("steps.log"));
    let ok_log = log(&ok).expect("a passing unit's folder holds its step log");
    assert!(
        ok_log.contains("steps[0] start the extension: passed"),
        "{ok_log}"
    );
    let bad_log = log(&bad).unwrap();
    assert!(
        bad_log.contains("steps[0] map workload: failed: errors: 1"),
        "{bad_log}"
    );
    assert!(bad_log.contains("    error: key 7 missing"), "{bad_log}");
    // The page shows the failing unit's log and links the file.
    let html = r.html();
    assert!(html.contains("    lookup failed"), "{html}");
    assert!(html.contains("href=\"s/t/iter-2/steps.log\""), "{html}");
}

#[test]
fn whole_run_files_are_rewritten_a_logarithmic_number_of_times() {
    let mut rw = Rewrites::new();
    let done = Event::UnitRetried {
        unit: unit("s", "t", 1),
        vm: "vm".into(),
        attempt: 1,
        outcome: UnitOutcome::Cancelled,
        duration: std::time::Duration::ZERO,
    };
    let first: Vec<bool> = (0..12).map(|_| rw.due(&done)).collect();
    // Every unit while there are fewer than ten, then every tenth of those written.
    assert!(first[..11].iter().all(|d| *d), "{first:?}");
    let rewrites = (12..10_000).filter(|_| rw.due(&done)).count();
    assert!(rewrites < 100, "{rewrites} rewrites for 10,000 units");
    assert!(rw.due(&Event::Interrupted { count: 1 }));
}
