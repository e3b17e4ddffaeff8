//! Lab errors are errors, not failures: a guest process killed mid-step (no bugcheck record,
//! no dump) errors its unit (exit 3) instead of failing it, and the lab's `infra_retries`
//! runs the unit again on a fresh VM.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use quick_junit::{NonSuccessKind, TestCaseStatus};

use crate::run::copy_config;
use crate::support::{Sandbox, events, junit, text};

/// A scenario with one guest step long enough to be killed in (3 s of map stress).
const KILL_TARGET: &str = "\
name: kill-target
payload: sim-ebpf
vms: [ws2022]
iterations: 1
timeout: 2m
step_timeout: 30s
steps:
  - driver_start: {driver: sample_ebpf_ext}
  - name: long map workload
    run:
      tool: map_stress
      args: {threads: 2, duration: 3s, keys: 16}
  - driver_stop: {driver: sample_ebpf_ext, expect: stopped, timeout: 5s}
  - expect_no_bugcheck: {}
";

/// Runs `kill-target` and `smoke` on two VMs with the lab's `infra_retries` set to
/// `retries`, SIGKILLs the guest process of `kill-target`'s first attempt during its long
/// step, and returns the sandbox, the output and the killed VM.
fn run_and_kill_once(retries: u32) -> (Sandbox, Output, String) {
    let sb = Sandbox::new();
    let root = sb.dir.path().join("repo");
    copy_config(&root);
    std::fs::write(root.join("scenarios/kill-target.yaml"), KILL_TARGET).unwrap();
    let lab = root.join("vm-configs/local-sim.yaml");
    let yaml = std::fs::read_to_string(&lab).unwrap();
    assert!(
        yaml.contains("infra_retries: 1"),
        "the shipped lab sets the default"
    );
    std::fs::write(
        &lab,
        yaml.replace("infra_retries: 1", &format!("infra_retries: {retries}")),
    )
    .unwrap();
    let mut child = sb
        .run(&["kill-target", "smoke", "--vms", "2", "--seed", "3"])
        .arg("--root")
        .arg(&root)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let vm = wait_for_long_step(&sb, &mut child);
    let pid: i32 = std::fs::read_to_string(sb.sim_root().join("vms").join(&vm).join("guest.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // Pull the plug on the VM's process: no bugcheck, no dump, no clean shutdown.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    (sb, out, vm)
}

/// Waits until `kill-target`'s long step has started; returns the unit's VM.
fn wait_for_long_step(sb: &Sandbox, child: &mut std::process::Child) -> String {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(dir) = run_dir(sb) {
            let evs = read_events(&dir);
            let vm = evs
                .iter()
                .find(|e| e["event"] == "unit_started" && e["unit"]["scenario"] == "kill-target")
                .and_then(|e| e["vm"].as_str().map(str::to_owned));
            let long_step = evs.iter().any(|e| {
                e["event"] == "step_started"
                    && e["unit"]["scenario"] == "kill-target"
                    && e["label"] == "long map workload"
            });
            if let (Some(vm), true) = (vm, long_step) {
                return vm;
            }
        }
        if let Some(st) = child.try_wait().unwrap() {
            panic!("hvlab exited before the long step started: {st}");
        }
        assert!(
            Instant::now() < deadline,
            "the long step did not start within 120s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn run_dir(sb: &Sandbox) -> Option<PathBuf> {
    std::fs::read_dir(sb.results())
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.is_dir())
}

/// The events written so far (a line being written may be incomplete: skipped).
fn read_events(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("events.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn case<'a>(report: &'a quick_junit::Report, class: &str) -> &'a quick_junit::TestCase {
    report
        .test_suites
        .iter()
        .flat_map(|s| &s.test_cases)
        .find(|c| c.classname.as_ref().map(|n| n.as_str()) == Some(class))
        .unwrap_or_else(|| panic!("no testcase {class}"))
}

fn assert_nothing_left(sb: &Sandbox) {
    assert!(
        sb.leftover_vms().is_empty(),
        "VMs left: {:?}",
        sb.leftover_vms()
    );
    assert!(
        sb.live_guests().is_empty(),
        "guest processes left: {:?}",
        sb.live_guests()
    );
}

#[test]
fn a_killed_vm_process_is_an_error_not_a_failure() {
    let (sb, out, _) = run_and_kill_once(0);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let dir = sb.run_dir();
    let report = junit(&dir);
    let killed = case(&report, "kill-target@ws2022");
    let TestCaseStatus::NonSuccess {
        kind,
        message,
        description,
        ..
    } = &killed.status
    else {
        panic!("kill-target passed: {}", text(&out));
    };
    assert_eq!(*kind, NonSuccessKind::Error, "an <error>, not a <failure>");
    let message = message.as_ref().map(|m| m.as_str()).unwrap_or_default();
    assert!(
        message.contains(
            "the VM restarted without a bugcheck record or dump: its process died or was \
             powered off (not a kernel crash)"
        ),
        "{message}"
    );
    let description = description.as_ref().map(|d| d.as_str()).unwrap_or_default();
    assert!(
        description.contains("boot id") && description.contains("found: event ids"),
        "keeps the evidence: {description}"
    );
    assert!(
        matches!(
            case(&report, "smoke@ws2022").status,
            TestCaseStatus::Success { .. }
        ),
        "the other unit ran and passed"
    );
    let evs = events(&dir);
    assert!(
        !evs.iter().any(|e| e["event"] == "crash_detected"),
        "a killed process is not a crash"
    );
    assert!(!evs.iter().any(|e| e["event"] == "unit_retried"));
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["stats"]["failed"], 0);
    assert_eq!(summary["stats"]["errored"], 1);
    assert_eq!(
        summary["stats"]["passed"], 2,
        "both smoke units ran and passed"
    );
    assert_eq!(summary["stats"]["crashes"], 0);
    assert_nothing_left(&sb);
}

#[test]
fn a_killed_vm_process_is_retried_on_a_fresh_vm_and_passes() {
    let (sb, out, killed_vm) = run_and_kill_once(1);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let dir = sb.run_dir();
    let evs = events(&dir);
    let retried: Vec<_> = evs
        .iter()
        .filter(|e| e["event"] == "unit_retried")
        .collect();
    assert_eq!(retried.len(), 1, "one retry");
    assert_eq!(retried[0]["vm"], killed_vm.as_str());
    assert_eq!(retried[0]["outcome"]["status"], "errored");
    let starts: Vec<&str> = evs
        .iter()
        .filter(|e| e["event"] == "unit_started" && e["unit"]["scenario"] == "kill-target")
        .filter_map(|e| e["vm"].as_str())
        .collect();
    assert_eq!(starts.len(), 2, "{starts:?}");
    assert_ne!(starts[1], killed_vm, "the retry runs on a fresh VM");
    assert!(
        evs.iter()
            .any(|e| e["event"] == "vm_removed" && e["vm"] == killed_vm.as_str()),
        "the errored VM is discarded"
    );

    let report = junit(&dir);
    let TestCaseStatus::Success { flaky_runs } = &case(&report, "kill-target@ws2022").status else {
        panic!("the retry passed: {}", text(&out));
    };
    assert_eq!(flaky_runs.len(), 1, "the errored attempt is a <flakyError>");
    assert_eq!(flaky_runs[0].kind, NonSuccessKind::Error);
    let rerun_msg = flaky_runs[0]
        .message
        .as_ref()
        .map(|m| m.as_str())
        .unwrap_or_default();
    assert!(
        rerun_msg.contains("the VM restarted without a bugcheck record or dump"),
        "{rerun_msg}"
    );

    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["stats"]["retried"], 1);
    assert_eq!(
        summary["stats"]["passed"], 3,
        "both smoke units and the retried unit"
    );
    let unit = summary["units"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["unit"]["scenario"] == "kill-target")
        .unwrap();
    assert_eq!(unit["retries"][0]["attempt"], 1);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("1 retried after an infrastructure error"),
        "{err}"
    );
    assert_nothing_left(&sb);
}
