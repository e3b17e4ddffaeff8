//! The upstream-bug catalogue (docs/upstream-bugs.md), measured: for every
//! `scenarios/upstream-<issue>-*.yaml` bug scenario and its `-clean` twin, on the simulated
//! lab, with the real `hvlab` binary in temp roots:
//!
//! - detection: failed units of `hvlab run <bug> --iterations N --no-fail-fast`, and the
//!   verdict (crash bucket or failing check) they failed with most often;
//! - repro: wall time to first failure of `hvlab repro <bug> --max-time 2m` over K tries
//!   with different seeds (median, and how many found it within 2 minutes: target >= 9 of 10);
//! - clean: failed units of `hvlab run <twin> --iterations M --no-fail-fast` while one busy
//!   thread per core loads the machine (every such failure is false: target 0 in 200).
//!
//! N, K and M come from `HVLAB_CATALOGUE_RUNS`, `HVLAB_CATALOGUE_TRIES` and
//! `HVLAB_CATALOGUE_CLEAN` (defaults 5, 5, 10: about ten minutes on a 2-core machine);
//! `HVLAB_BENCH_FULL=1` runs the figures (10 runs, 10 tries, 200 clean iterations).
//! `HVLAB_CATALOGUE_ONLY=<substring>` measures only the bugs whose scenario name contains it.
//!
//! Run: `cargo bench -p hvlab --bench catalogue`.

#[path = "../tests/it/hog.rs"]
mod hog;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What `hvlab repro` must stay within, per the target.
const REPRO_BUDGET: Duration = Duration::from_secs(120);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn env_count(name: &str, default: u32, full: u32) -> u32 {
    if std::env::var("HVLAB_BENCH_FULL").is_ok_and(|v| v == "1") {
        return full;
    }
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(default)
}

fn hvlab(sim_root: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hvlab"));
    cmd.env("HVLAB_SIM_ROOT", sim_root)
        .env("NO_COLOR", "1")
        .arg("--root")
        .arg(repo())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

/// The one run folder `hvlab` made under `results`.
fn run_dir(results: &Path) -> PathBuf {
    std::fs::read_dir(results)
        .unwrap_or_else(|e| panic!("no results in {}: {e}", results.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.is_dir())
        .unwrap_or_else(|| panic!("no run folder in {}", results.display()))
}

/// Units of one `hvlab run` and how they ended.
struct Tally {
    units: usize,
    failed: usize,
    /// Verdict (crash bucket, or the failing check up to its first ':') -> failed units.
    verdicts: BTreeMap<String, usize>,
}

impl Tally {
    fn top_verdict(&self) -> String {
        self.verdicts
            .iter()
            .max_by_key(|(_, n)| **n)
            .map_or_else(|| "-".to_string(), |(v, n)| format!("{v} ({n})"))
    }
}

/// `hvlab run <scenario> --iterations n --no-fail-fast`, tallied from its summary.json.
fn run(sim: &Path, dir: &Path, scenario: &Path, n: u32, seed: u64) -> Tally {
    let results = dir.join(format!("run-{seed}"));
    let status = hvlab(sim)
        .arg("run")
        .arg(scenario)
        .args(["--iterations", &n.to_string(), "--no-fail-fast"])
        .args(["--seed", &seed.to_string(), "--results"])
        .arg(&results)
        .status()
        .unwrap();
    assert!(
        matches!(status.code(), Some(0 | 1)),
        "hvlab run {} exited {status} (not a verdict)",
        scenario.display()
    );
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run_dir(&results).join("summary.json")).unwrap())
            .unwrap();
    let units = summary["units"].as_array().unwrap();
    let mut tally = Tally {
        units: units.len(),
        failed: 0,
        verdicts: BTreeMap::new(),
    };
    for u in units.iter().filter(|u| u["outcome"] != "passed") {
        tally.failed += 1;
        let verdict = match u["crash"]["bucket"]["title"].as_str() {
            Some(bucket) => bucket.to_string(),
            None => {
                let msg = u["message"].as_str().unwrap_or("(no message)");
                msg.split(':').next().unwrap_or(msg).to_string()
            }
        };
        *tally.verdicts.entry(verdict).or_default() += 1;
    }
    tally
}

/// Wall time of `hvlab repro <scenario> --until first`, or None if it did not fail.
fn repro(sim: &Path, dir: &Path, scenario: &Path, seed: u64) -> Option<Duration> {
    let results = dir.join(format!("repro-{seed}"));
    let t = Instant::now();
    let status = hvlab(sim)
        .arg("repro")
        .arg(scenario)
        .args(["--until", "first", "--max-time", "2m"])
        .args(["--seed", &seed.to_string(), "--results"])
        .arg(&results)
        .status()
        .unwrap();
    let wall = t.elapsed();
    match status.code() {
        Some(1) => Some(wall),
        Some(0) => None,
        _ => panic!("hvlab repro {} exited {status}", scenario.display()),
    }
}

/// Every `upstream-*.yaml` bug scenario with its clean twin, by name.
fn catalogue() -> Vec<(String, PathBuf, PathBuf)> {
    let only = std::env::var("HVLAB_CATALOGUE_ONLY").unwrap_or_default();
    let dir = repo().join("scenarios");
    let mut bugs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok())
        .filter_map(|f| f.strip_suffix(".yaml").map(str::to_string))
        .filter(|n| n.starts_with("upstream-") && !n.ends_with("-clean") && n.contains(&only))
        .map(|n| {
            let bug = dir.join(format!("{n}.yaml"));
            let twin = dir.join(format!("{n}-clean.yaml"));
            assert!(twin.is_file(), "{n} has no clean twin {}", twin.display());
            (n, bug, twin)
        })
        .collect();
    bugs.sort();
    assert!(!bugs.is_empty(), "no upstream-bug scenarios match {only:?}");
    bugs
}

fn fmt_secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

fn main() {
    let n = env_count("HVLAB_CATALOGUE_RUNS", 5, 10);
    let k = env_count("HVLAB_CATALOGUE_TRIES", 5, 10);
    let m = env_count("HVLAB_CATALOGUE_CLEAN", 10, 200);
    let bugs = catalogue();
    let tmp = tempfile::tempdir().unwrap();
    let started = Instant::now();
    println!(
        "catalogue: {} upstream bugs; detection over {n} runs, repro over {k} tries (budget 2m), \
         clean twin over {m} iterations under load (sim lab, release hvlab)",
        bugs.len()
    );
    let mut rows = Vec::new();
    let mut busy = 0;
    for (i, (name, bug, twin)) in bugs.iter().enumerate() {
        let dir = tmp.path().join(name);
        let sim = dir.join("sim");
        let seed = 1000 * (i as u64 + 1);
        let detect = run(&sim, &dir, bug, n, seed);
        let mut found: Vec<Duration> = (0..k)
            .filter_map(|t| repro(&sim, &dir, bug, seed + 100 + u64::from(t)))
            .collect();
        found.sort();
        let within = found.iter().filter(|d| **d <= REPRO_BUDGET).count();
        // Not found counts as slower than every find, so the median is honest.
        let median = if found.len() as u32 > k / 2 {
            fmt_secs(found[(k / 2) as usize])
        } else {
            "> 2m".to_string()
        };
        let clean = {
            let load = hog::CpuHog::start();
            busy = load.threads();
            run(&sim, &dir, twin, m, seed + 500)
        };
        println!(
            "  {name}: detected {}/{} units, repro median {median} ({within}/{k} within 2m), \
             clean twin under load {}/{} false failures",
            detect.failed, detect.units, clean.failed, clean.units
        );
        // Every verdict, so a detection by another check or a false failure can be read.
        for (what, t) in [("bug", &detect), ("clean twin", &clean)] {
            for (v, c) in &t.verdicts {
                println!("    {what} verdict: {v} ({c})");
            }
        }
        rows.push((name.clone(), detect, median, within, clean));
        // Each bug's temp root goes when it is measured: the disk is small.
        let _ = std::fs::remove_dir_all(&dir);
    }
    println!();
    println!("(clean twins ran with {busy} busy threads in the benchmark process)");
    println!(
        "| upstream bug | detected (units) | repro median | repro found <= 2m | clean false failures under load (units) | verdict (failed units) |"
    );
    println!("|---|---|---|---|---|---|");
    for (name, detect, median, within, clean) in &rows {
        println!(
            "| {name} | {}/{} | {median} | {within}/{k} | {}/{} | {} |",
            detect.failed,
            detect.units,
            clean.failed,
            clean.units,
            detect.top_verdict()
        );
    }
    let missed = rows.iter().filter(|r| r.1.failed < r.1.units).count();
    let slow = rows
        .iter()
        .filter(|r| (r.3 as f64) < 0.9 * f64::from(k))
        .count();
    let false_f: usize = rows.iter().map(|r| r.4.failed).sum();
    println!(
        "targets: every unit of every bug detected: {}; repro within 2m in >= 9/10 tries: {}; \
         0 clean false failures: {}",
        if missed == 0 { "ok" } else { "MISSED" },
        if slow == 0 { "ok" } else { "BELOW TARGET" },
        if false_f == 0 { "ok" } else { "FALSE FAILURES" }
    );
    println!(
        "map-op throughput vs dashmap (find target >= 0.3x): `cargo bench -p sim-kernel --bench kernel`"
    );
    println!("catalogue: {:.0}s in all", started.elapsed().as_secs_f64());
}
