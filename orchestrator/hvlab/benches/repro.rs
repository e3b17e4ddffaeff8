//! Time to first failure on the hot-unload race: `hvlab repro` against a naive loop that
//! calls `hvlab run` on the same scenario until it fails (what a developer does by hand).
//!
//! Both run the shipped `scenarios/fault-hot-unload-race.yaml` on the simulated lab, in the
//! same process, on the same machine, for several seeds. Each time is the wall time of the
//! whole job (process start, VM provisioning, iterations, teardown): what a user waits.
//! Prints the median time to first failure of each, their ratio (target: repro >= 10x
//! faster) and the iterations per minute of each.
//!
//! Run: `cargo bench -p hvlab --bench repro` (two to four minutes).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const SEEDS: [u64; 7] = [1, 2, 3, 4, 5, 6, 7];
/// A naive loop that has not failed after this many runs is stopped (and counted at that).
const MAX_NAIVE_RUNS: u32 = 80;
const SCENARIO: &str = "scenarios/fault-hot-unload-race.yaml";

fn repo() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn scenario() -> String {
    repo().join(SCENARIO).display().to_string()
}

struct Job {
    wall: Duration,
    iterations: u32,
    found: bool,
}

fn hvlab(sim_root: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hvlab"));
    cmd.env("HVLAB_SIM_ROOT", sim_root)
        .env("NO_COLOR", "1")
        .arg("--root")
        .arg(repo())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    cmd
}

fn repro(dir: &Path, seed: u64) -> Job {
    let results = dir.join(format!("repro-{seed}"));
    let t = Instant::now();
    let status = hvlab(&dir.join("sim"))
        .args([
            "repro",
            &scenario(),
            "--until",
            "first",
            "--max-iterations",
            "200",
        ])
        .args(["--seed", &seed.to_string(), "--results"])
        .arg(&results)
        .status()
        .unwrap();
    let wall = t.elapsed();
    let run = std::fs::read_dir(&results)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.join("repro.json").is_file())
        .unwrap_or_else(|| panic!("hvlab repro wrote no run ({status})"));
    let rec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("repro.json")).unwrap()).unwrap();
    Job {
        wall,
        iterations: rec["completed"].as_u64().unwrap_or(0) as u32,
        found: status.code() == Some(1),
    }
}

fn naive(dir: &Path, seed: u64) -> Job {
    let results = dir.join(format!("naive-{seed}"));
    let t = Instant::now();
    for i in 1..=MAX_NAIVE_RUNS {
        let status = hvlab(&dir.join("sim"))
            .args([
                "run",
                &scenario(),
                "--seed",
                &(seed * 1000 + u64::from(i)).to_string(),
            ])
            .arg("--results")
            .arg(&results)
            .status()
            .unwrap();
        match status.code() {
            Some(1) => {
                return Job {
                    wall: t.elapsed(),
                    iterations: i,
                    found: true,
                };
            }
            Some(0) => {}
            other => panic!("hvlab run exited {other:?}"),
        }
    }
    Job {
        wall: t.elapsed(),
        iterations: MAX_NAIVE_RUNS,
        found: false,
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn per_minute(jobs: &[Job]) -> f64 {
    let its: u32 = jobs.iter().map(|j| j.iterations).sum();
    let secs: f64 = jobs.iter().map(|j| j.wall.as_secs_f64()).sum();
    f64::from(its) * 60.0 / secs
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    println!(
        "repro: time to first failure of {SCENARIO} over seeds {SEEDS:?} (sim lab, wall time of the whole job)"
    );
    let mut r = Vec::new();
    let mut n = Vec::new();
    for seed in SEEDS {
        let a = repro(dir.path(), seed);
        let b = naive(dir.path(), seed);
        println!(
            "  seed {seed}: hvlab repro {:>6.2}s ({:>2} iterations{})   naive loop of hvlab run {:>6.2}s ({:>2} runs{})",
            a.wall.as_secs_f64(),
            a.iterations,
            if a.found { "" } else { ", NOT FOUND" },
            b.wall.as_secs_f64(),
            b.iterations,
            if b.found { "" } else { ", NOT FOUND" },
        );
        r.push(a);
        n.push(b);
    }
    let mr = median(r.iter().map(|j| j.wall).collect());
    let mn = median(n.iter().map(|j| j.wall).collect());
    println!(
        "median time to first failure: hvlab repro {:.2}s, naive loop {:.2}s",
        mr.as_secs_f64(),
        mn.as_secs_f64()
    );
    println!(
        "ratio (naive / repro): {:.1}x (target >= 10x)",
        mn.as_secs_f64() / mr.as_secs_f64()
    );
    println!(
        "iterations per minute: hvlab repro {:.0}, naive loop {:.0}",
        per_minute(&r),
        per_minute(&n)
    );
}
