//! Soak: false failures of the default (non-fault) suite under load.
//!
//! Every scenario of the default suite is correct code on the correct build, so any unit
//! that does not pass is a false verdict. The suite runs for at least `HVLAB_SOAK_UNITS`
//! unit-iterations (default 200) while busy threads keep every core loaded, then a short
//! idle baseline runs in the same process; the figures printed are the false-failure counts
//! of both and the loaded/idle wall time per unit.
//!
//! Run: `cargo bench -p hvlab --bench soak` (target: 0 false failures in 200 under load).

#[path = "../tests/it/hog.rs"]
mod hog;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use quick_junit::TestCaseStatus;

/// Units per iteration of the default suite (5 scenarios x 2 templates); checked below.
const UNITS_PER_ITERATION: usize = 10;
const ITERATIONS_PER_RUN: usize = 5;

struct Tally {
    units: usize,
    false_failures: Vec<String>,
    wall: Duration,
}

fn main() {
    let want: usize = std::env::var("HVLAB_SOAK_UNITS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let runs = want
        .div_ceil(UNITS_PER_ITERATION * ITERATIONS_PER_RUN)
        .max(1);
    let loaded = {
        let hog = hog::CpuHog::start();
        println!(
            "soak: {runs} runs x {ITERATIONS_PER_RUN} iterations of the default suite, {} busy threads",
            hog.threads()
        );
        soak(runs, ITERATIONS_PER_RUN, 1000)
    };
    let idle = soak(1, 2, 2000);
    let per_unit = |t: &Tally| t.wall.as_secs_f64() / t.units.max(1) as f64;
    println!(
        "soak: false failures under load: {} / {} unit-iterations (target 0)",
        loaded.false_failures.len(),
        loaded.units
    );
    println!(
        "soak: idle baseline: {} / {} unit-iterations",
        idle.false_failures.len(),
        idle.units
    );
    println!(
        "soak: wall time per unit: {:.3} s loaded, {:.3} s idle, ratio {:.2}",
        per_unit(&loaded),
        per_unit(&idle),
        per_unit(&loaded) / per_unit(&idle)
    );
    for f in loaded.false_failures.iter().chain(&idle.false_failures) {
        println!("  false failure: {f}");
    }
}

fn soak(runs: usize, iterations: usize, seed_base: u64) -> Tally {
    let dir = tempfile::tempdir().unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut tally = Tally {
        units: 0,
        false_failures: Vec::new(),
        wall: Duration::ZERO,
    };
    for run in 0..runs {
        let results = dir.path().join(format!("results-{run}"));
        let seed = (seed_base + run as u64).to_string();
        let t = Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_hvlab"))
            .env("HVLAB_SIM_ROOT", dir.path().join("sim"))
            .env("NO_COLOR", "1")
            .arg("--root")
            .arg(&repo)
            .args([
                "run",
                "--iterations",
                &iterations.to_string(),
                "--seed",
                &seed,
            ])
            .arg("--results")
            .arg(&results)
            .output()
            .unwrap();
        tally.wall += t.elapsed();
        let run_dir = std::fs::read_dir(&results)
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.is_dir())
            .expect("a run folder");
        let xml = std::fs::read_to_string(run_dir.join("junit.xml")).unwrap();
        let report = quick_junit::Report::deserialize_from_str(&xml).unwrap();
        let mut units = 0;
        for suite in &report.test_suites {
            for case in &suite.test_cases {
                units += 1;
                if !matches!(case.status, TestCaseStatus::Success { .. }) {
                    tally.false_failures.push(format!(
                        "seed {seed}: {} {}",
                        suite.name.as_str(),
                        case.name.as_str()
                    ));
                }
            }
        }
        assert_eq!(
            units,
            UNITS_PER_ITERATION * iterations,
            "the default suite changed size; update UNITS_PER_ITERATION"
        );
        if out.status.code() != Some(0) && tally.false_failures.is_empty() {
            tally
                .false_failures
                .push(format!("seed {seed}: exit {:?}", out.status.code()));
        }
        tally.units += units;
    }
    tally
}
