//! Verdicts under load: the default suite must be green with every core busy. A correct
//! driver once "leaked" under Driver Verifier whenever the epoch timer thread was preempted
//! (synchronize returned before the frees), so the README's main job was red on a busy
//! machine while an idle one passed.

use quick_junit::TestCaseStatus;

use crate::hog::CpuHog;
use crate::support::{Sandbox, junit, text};

/// Runs of the default suite, each with its own seed, while a hog keeps both cores busy.
const RUNS: u32 = 2;
const ITERATIONS: &str = "2";

#[test]
fn the_default_suite_is_green_with_every_core_busy() {
    let _alone = crate::support::exclusive_load();
    let hog = CpuHog::start();
    let mut not_passed = Vec::new();
    let mut units = 0;
    for run in 0..RUNS {
        let sb = Sandbox::new();
        let seed = (100 + run).to_string();
        let out = sb
            .run(&["--iterations", ITERATIONS, "--seed", &seed])
            .output()
            .unwrap();
        let report = junit(&sb.run_dir());
        for suite in &report.test_suites {
            for case in &suite.test_cases {
                units += 1;
                if !matches!(case.status, TestCaseStatus::Success { .. }) {
                    not_passed.push(format!(
                        "seed {seed}: {} {}: {:?}",
                        suite.name.as_str(),
                        case.name.as_str(),
                        case.status
                    ));
                }
            }
        }
        assert!(
            not_passed.is_empty() && out.status.code() == Some(0),
            "with {} busy threads, run {run} exited {:?}; not passed:\n{}\n{}",
            hog.threads(),
            out.status.code(),
            not_passed.join("\n"),
            text(&out)
        );
        assert!(sb.leftover_vms().is_empty(), "VMs left behind");
    }
    // 5 scenarios x 2 templates x 2 iterations per run: a smaller count means units were
    // silently dropped rather than passed.
    assert!(units >= 20 * RUNS as usize, "only {units} units ran");
}
