//! `hvlab run` end to end on the simulated lab: real guest processes, real sim-kernel races,
//! real dumps. The default and fault suites run once each and several tests read their
//! results.

use std::process::Output;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use quick_junit::{NonSuccessKind, TestCaseStatus};

use crate::support::{Sandbox, events, junit, text};

fn default_run() -> &'static (Sandbox, Output) {
    static RUN: OnceLock<(Sandbox, Output)> = OnceLock::new();
    RUN.get_or_init(|| {
        let sb = Sandbox::new();
        let out = sb.run(&["--seed", "1"]).output().unwrap();
        (sb, out)
    })
}

fn fault_run() -> &'static (Sandbox, Output) {
    static RUN: OnceLock<(Sandbox, Output)> = OnceLock::new();
    RUN.get_or_init(|| {
        let _timing = crate::support::timing_sensitive();
        let sb = Sandbox::new();
        let out = sb
            .run(&["--tag", "fault", "--seed", "2", "--vms", "2"])
            .output()
            .unwrap();
        (sb, out)
    })
}

/// The failure message and description of a scenario's testcase(s) in junit.xml.
fn failure_text(report: &quick_junit::Report, scenario: &str) -> Vec<String> {
    let mut out = vec![];
    for suite in report
        .test_suites
        .iter()
        .filter(|s| s.name.as_str().starts_with(&format!("{scenario}@")))
    {
        for case in &suite.test_cases {
            match &case.status {
                TestCaseStatus::NonSuccess {
                    kind: NonSuccessKind::Failure,
                    message,
                    description,
                    ..
                } => out.push(format!(
                    "{} {}",
                    message.as_ref().map(|m| m.as_str()).unwrap_or(""),
                    description.as_ref().map(|m| m.as_str()).unwrap_or("")
                )),
                other => panic!("{scenario}: expected a failure, got {other:?}"),
            }
        }
    }
    assert!(!out.is_empty(), "no testcase for {scenario}");
    out
}

#[test]
fn the_default_suite_passes_and_leaves_nothing_behind() {
    let (sb, out) = default_run();
    assert_eq!(out.status.code(), Some(0), "{}", text(out));
    let report = junit(&sb.run_dir());
    assert!(
        report.test_suites.len() >= 5,
        "one suite per scenario x template"
    );
    for suite in &report.test_suites {
        assert!(
            !suite.name.as_str().starts_with("fault-"),
            "fault scenarios are opt-in"
        );
        assert!(!suite.test_cases.is_empty());
        for case in &suite.test_cases {
            assert!(
                matches!(case.status, TestCaseStatus::Success { .. }),
                "{} / {} did not pass: {:?}",
                suite.name.as_str(),
                case.name.as_str(),
                case.status
            );
        }
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("passed, 0 failed"),
        "summary printed: {stderr}"
    );
    assert!(
        sb.leftover_vms().is_empty(),
        "VMs left: {:?}",
        sb.leftover_vms()
    );
    assert!(sb.live_guests().is_empty(), "guest processes left");
    for f in ["summary.json", "index.html", "hvlab.log", "events.jsonl"] {
        assert!(sb.run_dir().join(f).is_file(), "{f} missing");
    }
}

#[test]
fn stop_with_live_maps_pends_until_the_maps_are_deleted() {
    let (sb, out) = default_run();
    assert_eq!(out.status.code(), Some(0), "{}", text(out));
    // The step names are those of scenarios/stop-extension-live-maps.yaml: a stop that
    // expects stop_pending, deleting the maps, then waiting for stopped.
    let evs = events(&sb.run_dir());
    let steps: Vec<(String, String)> = evs
        .iter()
        .filter(|e| {
            e["event"] == "step_finished" && e["unit"]["scenario"] == "stop-extension-live-maps"
        })
        .map(|e| {
            (
                e["label"].as_str().unwrap().to_owned(),
                e["outcome"]["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let pending = steps
        .iter()
        .position(|(l, s)| l.contains("waits for the maps' rundown") && s == "passed")
        .unwrap_or_else(|| panic!("no passed stop expecting stop_pending in {steps:?}"));
    let stopped = steps
        .iter()
        .rposition(|(l, s)| l.contains("stop completes once the maps are gone") && s == "passed")
        .unwrap_or_else(|| panic!("no passed wait for stopped in {steps:?}"));
    assert!(
        pending < stopped,
        "STOP_PENDING must come before STOPPED: {steps:?}"
    );
}

#[test]
fn each_fault_switch_fails_with_its_own_evidence() {
    let (sb, out) = fault_run();
    assert_eq!(out.status.code(), Some(1), "{}", text(out));
    let run = sb.run_dir();
    let report = junit(&run);
    let expect: &[(&str, &[&str])] = &[
        (
            "fault-free-without-epoch",
            &[
                "PAGE_FAULT_IN_NONPAGED_AREA",
                "sample_ext_free_without_epoch.sys",
            ],
        ),
        (
            "fault-hang-on-unload",
            &["NMI_HARDWARE_FAILURE", "sample_ext_hang_on_unload.sys"],
        ),
        ("fault-stuck-reader", &["did not return"]),
        (
            "fault-detach-without-rundown",
            &["sample_ext_detach_without_rundown"],
        ),
    ];
    for (scenario, needles) in expect {
        for msg in failure_text(&report, scenario) {
            for n in *needles {
                assert!(msg.contains(n), "{scenario}: `{n}` not in failure `{msg}`");
            }
        }
    }
    // The leaked values are ebpfcore's allocations (epoch_allocate_with_tag), so Driver
    // Verifier on the extension does not see them at its unload: the pool check catches the
    // leak on both templates.
    let leak = failure_text(&report, "fault-leak-on-replace");
    assert_eq!(leak.len(), 2, "{leak:?}");
    assert!(
        leak.iter().all(|m| m.contains("smpl_pool_bytes")),
        "{leak:?}"
    );
    for msg in failure_text(&report, "fault-double-free-on-replace") {
        assert!(
            msg.contains("KERNEL_SECURITY_CHECK_FAILURE") || msg.contains("BAD_POOL_CALLER"),
            "double free: {msg}"
        );
    }
    // Crashes carry their bucket, and their dumps are in the results.
    for scenario in [
        "fault-free-without-epoch",
        "fault-hang-on-unload",
        "fault-double-free-on-replace",
    ] {
        for msg in failure_text(&report, scenario) {
            assert!(
                msg.contains("bucket"),
                "{scenario}: no bucket named in `{msg}`"
            );
        }
        let dumps = run
            .join(scenario)
            .join("ws2022")
            .join("iter-1")
            .join("dumps");
        let n = std::fs::read_dir(&dumps).map(|d| d.count()).unwrap_or(0);
        assert!(n > 0, "{scenario}: no dump in {}", dumps.display());
    }
    assert!(sb.leftover_vms().is_empty());
    assert!(sb.live_guests().is_empty());
}

#[test]
fn a_hang_becomes_an_nmi_dump_blamed_on_the_stuck_driver() {
    let (sb, _) = fault_run();
    let run = sb.run_dir();
    let dump = run.join("fault-hang-on-unload/ws2022/iter-1/dumps/MEMORY.DMP");
    let t = crash_triage_out(sb, &dump);
    assert!(t.contains("NMI_HARDWARE_FAILURE (0x80)"), "{t}");
    assert!(t.contains("sample_ext_hang_on_unload.sys"), "{t}");
    let evs = events(&run);
    assert!(
        evs.iter().any(|e| e["event"] == "crash_detected"
            && e["unit"]["scenario"] == "fault-hang-on-unload"
            && e["crash"]["kind"] == "hang"),
        "no hang crash event"
    );
}

fn crash_triage_out(sb: &Sandbox, dump: &std::path::Path) -> String {
    let out = sb.hvlab().arg("triage").arg(dump).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits until a unit has started in the run under `sb`.
fn wait_for_unit_start(sb: &Sandbox, child: &mut std::process::Child) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(rd) = std::fs::read_dir(sb.results()) {
            for d in rd.filter_map(Result::ok) {
                let ev = std::fs::read_to_string(d.path().join("events.jsonl")).unwrap_or_default();
                if ev.contains("\"step_started\"") {
                    return;
                }
            }
        }
        if let Some(st) = child.try_wait().unwrap() {
            panic!("hvlab exited early: {st}");
        }
        assert!(Instant::now() < deadline, "no unit started within 60s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn signal(child: &std::process::Child, sig: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), sig).unwrap();
}

#[test]
fn ctrl_c_mid_run_tears_down_and_leaves_a_valid_junit() {
    let sb = Sandbox::new();
    let mut child = sb
        .run(&["custom-map-stress", "restart-extension-during-invocation"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for_unit_start(&sb, &mut child);
    signal(&child, nix::sys::signal::Signal::SIGINT);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    let report = junit(&sb.run_dir());
    let xml = std::fs::read_to_string(sb.run_dir().join("junit.xml")).unwrap();
    assert!(
        xml.contains("interrupted"),
        "junit.xml must say the run was interrupted"
    );
    assert!(report.test_suites.iter().any(|s| {
        s.test_cases
            .iter()
            .any(|c| matches!(c.status, TestCaseStatus::Skipped { .. }))
    }));
    assert!(
        sb.leftover_vms().is_empty(),
        "VMs left: {:?}",
        sb.leftover_vms()
    );
    assert!(sb.live_guests().is_empty(), "guest processes left");
}

#[test]
fn a_killed_orchestrator_leaves_only_what_lab_gc_removes() {
    let sb = Sandbox::new();
    let mut child = sb
        .run(&["custom-map-stress"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for_unit_start(&sb, &mut child);
    signal(&child, nix::sys::signal::Signal::SIGKILL);
    child.wait().unwrap();
    assert!(
        !sb.leftover_vms().is_empty(),
        "a SIGKILLed run cannot clean up"
    );
    let status = sb.hvlab().args(["lab", "status"]).output().unwrap();
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("orphaned"),
        "{}",
        text(&status)
    );
    let gc = sb.hvlab().args(["lab", "gc"]).output().unwrap();
    assert_eq!(gc.status.code(), Some(0), "{}", text(&gc));
    assert!(
        text(&gc).contains("removed"),
        "gc says what it removed: {}",
        text(&gc)
    );
    assert!(
        sb.leftover_vms().is_empty(),
        "gc left {:?}",
        sb.leftover_vms()
    );
    // What the killed run had written is still whole: atomic files parse, and the event log
    // holds only complete lines (a SIGKILL can land mid-run, never mid-file).
    let run_dir = sb.run_dir();
    let log = std::fs::read_to_string(run_dir.join("events.jsonl")).unwrap();
    assert!(log.ends_with('\n'), "events.jsonl ends in a partial line");
    for line in log.lines() {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("events.jsonl line does not parse ({e}): {line}"));
    }
    for f in ["junit.xml", "summary.json"] {
        let p = run_dir.join(f);
        if !p.exists() {
            continue;
        }
        let body = std::fs::read_to_string(&p).unwrap();
        if f == "junit.xml" {
            junit(&run_dir);
        } else {
            let sum: serde_json::Value = serde_json::from_str(&body)
                .unwrap_or_else(|e| panic!("summary.json does not parse ({e})"));
            // A killed run has no exit code to record; it must not read as finished.
            assert_eq!(sum["finished"], false, "{sum}");
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while !sb.live_guests().is_empty() {
        assert!(
            Instant::now() < deadline,
            "gc left guest processes {:?}",
            sb.live_guests()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Copies the repository's configuration folders into `dst` (a root a test may break).
pub(crate) fn copy_config(dst: &std::path::Path) {
    fn copy(from: &std::path::Path, to: &std::path::Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap().filter_map(Result::ok) {
            let p = e.path();
            if p.is_dir() {
                copy(&p, &to.join(e.file_name()));
            } else {
                std::fs::copy(&p, to.join(e.file_name())).unwrap();
            }
        }
    }
    let root = crate::support::repo_root();
    for d in ["vm-configs", "driver-payloads", "scenarios"] {
        copy(&root.join(d), &dst.join(d));
    }
}

#[test]
fn an_unknown_scenario_is_a_usage_error() {
    let sb = Sandbox::new();
    let out = sb.run(&["no-such-scenario"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no scenario named or at `no-such-scenario`"),
        "{err}"
    );
    assert!(
        err.contains("smoke"),
        "the message lists the scenarios: {err}"
    );
}

#[test]
fn a_build_file_that_does_not_match_its_hash_stops_the_run_before_any_vm() {
    let sb = Sandbox::new();
    let root = sb.dir.path().join("repo");
    copy_config(&root);
    let file = root.join("driver-payloads/sim-build/sample_ebpf_ext.sys");
    let mut bytes = std::fs::read(&file).unwrap();
    bytes.push(b' ');
    std::fs::write(&file, bytes).unwrap();
    let out = sb
        .run(&["smoke"])
        .arg("--root")
        .arg(&root)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("sample_ebpf_ext.sys"), "names the file: {err}");
    assert!(
        err.contains("sha256 of") && err.contains("db39930a"),
        "names the actual hash: {err}"
    );
    assert!(sb.leftover_vms().is_empty());
}

#[test]
fn a_reader_that_closes_the_pipe_early_ends_triage_quietly() {
    let (sb, _) = fault_run();
    let mut child = sb
        .hvlab()
        .arg("triage")
        .arg(sb.run_dir())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Like `| head -0`: the reader goes away before the report is written.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(out.status.code(), Some(0), "{err}");
}

/// `href="..."` values of a page, HTML-unescaped and percent-decoded.
fn hrefs(html: &str) -> Vec<String> {
    html.split("href=\"")
        .skip(1)
        .map(|s| {
            let raw = s[..s.find('"').unwrap()]
                .replace("&quot;", "\"")
                .replace("&#39;", "'")
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&amp;", "&");
            let b = raw.as_bytes();
            let mut out = Vec::new();
            let mut i = 0;
            while i < b.len() {
                if b[i] == b'%' && i + 2 < b.len() {
                    out.push(u8::from_str_radix(&raw[i + 1..i + 3], 16).unwrap());
                    i += 3;
                } else {
                    out.push(b[i]);
                    i += 1;
                }
            }
            String::from_utf8(out).unwrap()
        })
        .collect()
}

#[test]
fn every_link_in_index_html_resolves_and_crash_folders_hold_the_triage() {
    let (sb, _) = fault_run();
    let run = sb.run_dir();
    let html = std::fs::read_to_string(run.join("index.html")).unwrap();
    let links = hrefs(&html);
    let relative: Vec<&String> = links
        .iter()
        .filter(|h| !h.contains("://") && !h.starts_with('/') && !h.starts_with('#'))
        .collect();
    assert!(
        relative.iter().any(|h| h.starts_with("crashes/")),
        "{links:?}"
    );
    for h in &relative {
        assert!(run.join(h).exists(), "index.html links to missing {h}");
    }

    // Every crashed unit names its crash folder, and the folder lists it.
    let sum: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("summary.json")).unwrap()).unwrap();
    let mut crashed = 0;
    for u in sum["units"].as_array().unwrap() {
        let Some(folder) = u["crash_dir"].as_str() else {
            continue;
        };
        crashed += 1;
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(run.join(folder).join("index.json")).unwrap())
                .unwrap();
        let listed = index["crashes"].as_array().unwrap();
        assert!(
            listed
                .iter()
                .any(|c| c["unit"] == u["unit"] && c["unit_dir"] == u["dir"]),
            "{folder}/index.json lacks {}",
            u["unit"]
        );
        for c in listed {
            for d in c["dumps"].as_array().unwrap() {
                assert!(run.join(d.as_str().unwrap()).is_file(), "{folder}: {d}");
            }
        }
        if !folder.ends_with("untriaged") {
            for f in ["analyze.txt", "triage.json"] {
                assert!(run.join(folder).join(f).is_file(), "{folder}/{f}");
            }
        }
    }
    assert!(crashed >= 4, "{sum:#}");

    let folder_of = |scenario: &str| -> std::path::PathBuf {
        let u = sum["units"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["unit"]["scenario"] == scenario)
            .unwrap();
        run.join(u["crash_dir"].as_str().unwrap())
    };
    let hang =
        std::fs::read_to_string(folder_of("fault-hang-on-unload").join("analyze.txt")).unwrap();
    let a = crash_triage::parse_analyze(&hang).unwrap();
    assert_eq!(a.bugcheck_code, Some(0x80), "{hang}");
    assert_eq!(
        a.image_name.as_deref(),
        Some("sample_ext_hang_on_unload.sys"),
        "{hang}"
    );

    let text =
        std::fs::read_to_string(folder_of("fault-free-without-epoch").join("analyze.txt")).unwrap();
    let a = crash_triage::parse_analyze(&text).unwrap();
    assert_eq!(
        (a.bugcheck_name.as_deref(), a.module_name.as_deref()),
        (
            Some("PAGE_FAULT_IN_NONPAGED_AREA"),
            Some("sample_ext_free_without_epoch")
        ),
        "{text}"
    );
    insta::with_settings!({
        filters => vec![
            // Which template's dump is triaged first, and the guest's clock, vary per run.
            (r"Loading Dump File \[.*\]", "Loading Dump File [DUMP]"),
            (r"Debug session time: .*", "Debug session time: [TIME]"),
            (r"System Uptime: .*", "System Uptime: [UPTIME]"),
            // Addresses and offsets differ per run (allocation and load addresses).
            (r"[0-9a-f]{8}`[0-9a-f]{8}", "[ADDR]"),
            // STACK_TEXT frames name the callback that faulted, which varies with timing.
            (r"(\[ADDR\] : ).*", "$1[FRAME]"),
            (r"(Arg[13]: )[0-9a-f]{16}", "$1[ADDR]"),
            (r"(BUGCHECK_P[13]: )[0-9a-f]+", "$1[ADDR]"),
            (r"\+[0-9a-f]+\n", "+[OFFSET]\n"),
        ],
    }, {
        insta::assert_snapshot!(text);
    });
}
