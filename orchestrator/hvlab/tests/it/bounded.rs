//! Hostile sizes on a real run: huge unnamed command lines must not make the results grow
//! with them, and `hvlab.log` tells the story of a run at the default level.

use std::path::Path;

use crate::support::{Sandbox, events, junit, text};

/// 1 MiB of argument, ignored by the sim guest's `cmd /c exit 0`.
fn huge_arg() -> String {
    "A".repeat(1024 * 1024)
}

/// A scenario of 50 unnamed `exec` steps with a 1 MiB command line each (a `repeat`, so
/// the file stays under the config limit), one that echoes 1 MiB, then one that fails.
fn hostile_scenario(dir: &Path) -> std::path::PathBuf {
    let big = huge_arg();
    let yaml = format!(
        "name: hostile-sizes\npayload: sim-ebpf\ntimeout: 5m\nstep_timeout: 30s\nsteps:\n  \
         - repeat:\n      count: 50\n      steps:\n        \
         - exec: {{command: [cmd, /c, exit, '0', '{big}']}}\n  \
         - exec: {{command: [cmd, /c, echo, '{big}']}}\n  \
         - exec: {{command: [cmd, /c, exit, '1', '{big}']}}\n"
    );
    let p = dir.join("hostile.scenario.yaml");
    std::fs::write(&p, yaml).unwrap();
    p
}

#[test]
fn huge_unnamed_command_lines_leave_small_results_with_cut_notes() {
    let sb = Sandbox::new();
    let scenario = hostile_scenario(sb.dir.path());
    let out = sb
        .run(&[scenario.to_str().unwrap(), "--seed", "1"])
        .output()
        .unwrap();
    // The last step fails on purpose: exit 1, a test failure.
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        out.stderr.len() < 256 * 1024,
        "terminal got {} bytes",
        out.stderr.len()
    );
    let run = sb.run_dir();
    for (file, max) in [
        ("junit.xml", 2 << 20),
        ("events.jsonl", 2 << 20),
        ("summary.json", 2 << 20),
        ("index.html", 2 << 20),
        ("hvlab.log", 2 << 20),
    ] {
        let len = std::fs::metadata(run.join(file)).unwrap().len();
        assert!(len < max, "{file} is {len} bytes");
    }
    let evs = events(&run);
    let labels: Vec<&str> = evs
        .iter()
        .filter(|e| e["event"] == "step_started")
        .map(|e| e["label"].as_str().unwrap())
        .collect();
    assert!(labels.len() >= 52, "{} steps started", labels.len());
    for l in labels.iter().filter(|l| l.starts_with("exec ")) {
        assert!(l.len() <= 120, "{l}");
        assert!(l.ends_with("iB cut]"), "{l}");
    }
    let failed = evs
        .iter()
        .find(|e| e["event"] == "step_finished" && e["outcome"]["status"] == "failed")
        .expect("the last exec fails");
    let message = failed["outcome"]["message"].as_str().unwrap();
    assert!(
        message.len() <= 4096 && message.contains("cut]"),
        "{message}"
    );
    let echoed = evs
        .iter()
        .filter_map(|e| e["output"]["stdout"].as_str())
        .find(|s| s.starts_with("AAAA"))
        .expect("the echo step's output");
    assert!(
        echoed.len() <= 64 * 1024 && echoed.ends_with("KiB cut]"),
        "{} bytes",
        echoed.len()
    );
    let report = junit(&run);
    let cases: Vec<&str> = report
        .test_suites
        .iter()
        .flat_map(|s| &s.test_cases)
        .map(|c| c.name.as_str())
        .collect();
    assert!(!cases.is_empty());
    assert!(sb.leftover_vms().is_empty(), "{:?}", sb.leftover_vms());
}

#[test]
fn hvlab_log_tells_the_story_of_a_run_at_the_default_level() {
    let sb = Sandbox::new();
    let out = sb.run(&["smoke", "--seed", "7"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let run = sb.run_dir();
    let log = std::fs::read_to_string(run.join("hvlab.log")).unwrap();
    let run_id = run.file_name().unwrap().to_str().unwrap();
    let has = |needle: &str| log.lines().any(|l| l.contains(needle));
    for needle in [
        &format!("run_id={run_id}") as &str,
        "seed=0x0000000000000007",
        "units=2",
        "smoke@ws2022#1",
        "provisioning VM",
        "VM ready after ",
        "payload deployed and checkpointed after ",
        "unit started",
        "step started: start the sample extension",
        "step finished: start the sample extension: passed in ",
        "step=steps[2]",
        "unit finished: PASS in ",
        "VM removed",
        "run finished after ",
    ] {
        assert!(has(needle), "hvlab.log lacks {needle:?}:\n{log}");
    }
    for l in log.lines() {
        assert!(
            l.contains(" INFO ") || l.contains(" WARN "),
            "unexpected level: {l}"
        );
    }
    // Durations keep their milliseconds (`0.012s`), never whole seconds only.
    let durations: Vec<&str> = log
        .split_whitespace()
        .filter(|w| {
            w.ends_with('s') && w.contains('.') && w.starts_with(|c: char| c.is_ascii_digit())
        })
        .collect();
    assert!(!durations.is_empty(), "{log}");
    for d in durations {
        let frac = d.trim_end_matches(['s', ')']).rsplit('.').next().unwrap();
        assert_eq!(frac.len(), 3, "{d} in\n{log}");
    }
}
