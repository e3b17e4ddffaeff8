//! The VM console log a unit keeps: `<unit>/console.log` for passing and failing units,
//! non-empty on the sim lab (the guest's serial console names each boot), bounded, and
//! linked from the failure in index.html.

use crate::support::{Sandbox, text};

#[test]
fn passing_and_failing_units_keep_their_vm_console_log() {
    let sb = Sandbox::new();
    let out = {
        let _timing = crate::support::timing_sensitive();
        // One VM: the first unit boots it, the second starts from a checkpoint restore.
        sb.run(&[
            "smoke",
            "fault-detach-without-rundown",
            "--seed",
            "3",
            "--vms",
            "1",
        ])
        .output()
        .unwrap()
    };
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let run = sb.run_dir();
    let sum: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("summary.json")).unwrap()).unwrap();
    let units = sum["units"].as_array().unwrap();
    let mut seen = Vec::new();
    for u in units {
        let status = u["outcome"].as_str().unwrap().to_owned();
        let dir = run.join(u["dir"].as_str().unwrap());
        let console = std::fs::read_to_string(dir.join("console.log"))
            .unwrap_or_else(|e| panic!("{}: no console.log ({e}): {u:#}", dir.display()));
        assert!(
            console.contains("sim-guest: booting from"),
            "{}: {console}",
            dir.display()
        );
        assert!(
            console.len() <= lab_runner::bounds::OUTPUT_MAX,
            "{} bytes",
            console.len()
        );
        seen.push((u["unit"]["scenario"].as_str().unwrap().to_owned(), status));
    }
    // Each scenario runs once per VM template.
    seen.sort();
    seen.dedup();
    assert_eq!(
        seen,
        [
            (
                "fault-detach-without-rundown".to_owned(),
                "failed".to_owned()
            ),
            ("smoke".to_owned(), "passed".to_owned())
        ],
        "{sum:#}"
    );
    // The crash rebooted the failing unit's guest: its console shows the exit and reboot.
    let failing = units
        .iter()
        .find(|u| u["unit"]["scenario"] == "fault-detach-without-rundown")
        .unwrap();
    let console = std::fs::read_to_string(
        run.join(failing["dir"].as_str().unwrap())
            .join("console.log"),
    )
    .unwrap();
    assert!(console.contains("exiting with code"), "{console}");
    let html = std::fs::read_to_string(run.join("index.html")).unwrap();
    let rel = format!("{}/console.log", failing["dir"].as_str().unwrap());
    assert!(
        html.contains(&format!("href=\"{rel}\"")),
        "{rel} not linked"
    );
}
