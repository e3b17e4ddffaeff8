//! A template with `auto_reboot: false` leaves a crashed guest halted at its bugcheck: the
//! runner resets it and collects the dump, so the crash reads as the crash it is (exit 1),
//! not as a guest that never came back (a lab error, exit 3).

use quick_junit::{NonSuccessKind, TestCaseStatus};

use crate::run::copy_config;
use crate::support::{Sandbox, events, junit, text, timing_sensitive};

#[test]
fn a_guest_halted_at_a_bugcheck_is_reset_and_its_crash_reported() {
    let _race = timing_sensitive();
    let sb = Sandbox::new();
    let root = sb.dir.path().join("repo");
    copy_config(&root);
    let lab = root.join("vm-configs/local-sim.yaml");
    let yaml = std::fs::read_to_string(&lab).unwrap();
    assert!(
        yaml.contains("auto_reboot: true"),
        "the shipped lab reboots"
    );
    std::fs::write(
        &lab,
        yaml.replace("auto_reboot: true", "auto_reboot: false"),
    )
    .unwrap();
    let out = sb
        .run(&["fault-free-without-epoch", "--vms", "1", "--seed", "2"])
        .arg("--root")
        .arg(&root)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let run = sb.run_dir();
    let evs = events(&run);
    assert!(
        !evs.iter().any(|e| e["event"] == "infra_error"),
        "a halted guest is no lab error: {}",
        text(&out)
    );
    let crashes: Vec<_> = evs
        .iter()
        .filter(|e| e["event"] == "crash_detected")
        .collect();
    assert!(!crashes.is_empty(), "no crash: {}", text(&out));
    for c in &crashes {
        assert_eq!(c["crash"]["bugcheck"]["code"], 0x50, "{c}");
    }
    let report = junit(&run);
    let mut failures = 0;
    for suite in &report.test_suites {
        for case in &suite.test_cases {
            if let TestCaseStatus::NonSuccess {
                kind: NonSuccessKind::Failure,
                message,
                ..
            } = &case.status
            {
                failures += 1;
                let m = message.as_deref().unwrap_or_default();
                assert!(m.contains("PAGE_FAULT_IN_NONPAGED_AREA"), "{m}");
            }
        }
    }
    assert!(failures > 0, "no failed test case: {}", text(&out));
    assert!(sb.leftover_vms().is_empty());
    assert!(sb.live_guests().is_empty());
}
