//! `expect_bugcheck` inside a `parallel` block, beside the step that crashes the guest, and
//! crash counts that agree with the bucket counts. The crash is deterministic (the detach
//! without rundown lets the extension unload under a live map, whose teardown then calls
//! the unloaded driver: 0xCE), so no race is involved.

use crate::support::{Sandbox, junit, text};

const SCENARIO: &str = "name: NAME
payload: sim-ebpf
vms: [ws2022-verifier]
timeout: 1m
step_timeout: 15s
setup:
  - driver_start: {driver: sample_ext_detach_without_rundown}
steps:
  - run:
      tool: map_tool
      args: {op: create, name: live_a, map_type: sample, max_entries: 128, pin: true}
  - run:
      tool: map_tool
      args: {op: fill, name: live_a, count: 100}
  - driver_stop: {driver: sample_ext_detach_without_rundown, expect: stopped, timeout: 5s}
  - parallel:
      - run: {tool: map_tool, args: {op: delete, name: live_a}}
      - expect_bugcheck: {code: CODE, within: 5s}
  - expect_no_bugcheck: {}
";

#[test]
fn a_crash_expected_inside_parallel_passes_and_a_wrong_code_fails() {
    let sb = Sandbox::new();
    let mut args = vec![];
    for (name, code) in [("expected-ce", "0xCE"), ("expected-50", "0x50")] {
        let path = sb.dir.path().join(format!("{name}.yaml"));
        let yaml = SCENARIO.replace("NAME", name).replace("CODE", code);
        std::fs::write(&path, yaml).unwrap();
        args.push(path.to_string_lossy().into_owned());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = sb.run(&args).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let report = junit(&sb.run_dir());
    let case = |scenario: &str| {
        report
            .test_suites
            .iter()
            .find(|s| s.name.as_str().starts_with(&format!("{scenario}@")))
            .unwrap_or_else(|| panic!("no suite for {scenario}"))
            .test_cases[0]
            .status
            .clone()
    };
    assert!(
        matches!(
            case("expected-ce"),
            quick_junit::TestCaseStatus::Success { .. }
        ),
        "the crash the parallel block expected must pass the unit: {:?}\n{}",
        case("expected-ce"),
        text(&out)
    );
    match case("expected-50") {
        quick_junit::TestCaseStatus::NonSuccess { description, .. } => {
            let d = description.map(|d| d.to_string()).unwrap_or_default();
            assert!(d.contains("expected bugcheck 0x50, got bugcheck 0x"), "{d}");
        }
        other => panic!("a crash with another code must fail the unit: {other:?}"),
    }
    // Two crashes happened (one expected): the summary counts both, as the bucket does.
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(sb.run_dir().join("summary.json")).unwrap()).unwrap();
    let in_buckets: u64 = summary["crash_buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["count"].as_u64().unwrap())
        .sum();
    assert_eq!(summary["stats"]["crashes"], 2, "{summary:#}");
    assert_eq!(in_buckets, 2, "{summary:#}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("2 crashes"), "{}", text(&out));
}
