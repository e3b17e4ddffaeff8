//! Shared helpers: the repository root, an isolated `hvlab` command (own simulated-lab root
//! and results folder), and readers for what a run writes.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository root (holds vm-configs/, driver-payloads/, scenarios/).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// A sandbox for one test: its own simulated-lab state and results root.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Self {
        Sandbox {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn sim_root(&self) -> PathBuf {
        self.dir.path().join("sim")
    }

    pub fn results(&self) -> PathBuf {
        self.dir.path().join("results")
    }

    /// `hvlab` with the repository as root and this sandbox's lab and results.
    pub fn hvlab(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hvlab"));
        cmd.env("HVLAB_SIM_ROOT", self.sim_root())
            .env("NO_COLOR", "1")
            .env_remove("HVLAB_LOG")
            .arg("--root")
            .arg(repo_root());
        cmd
    }

    /// `hvlab run ARGS... --results <sandbox>`.
    pub fn run(&self, args: &[&str]) -> Command {
        let mut cmd = self.hvlab();
        cmd.arg("run")
            .args(args)
            .arg("--results")
            .arg(self.results());
        cmd
    }

    /// The single run folder under the results root.
    pub fn run_dir(&self) -> PathBuf {
        let mut dirs = self.run_dirs();
        assert_eq!(dirs.len(), 1, "expected one run folder, got {dirs:?}");
        dirs.pop().unwrap()
    }

    /// The run folders under the results root, oldest first (run ids sort by time).
    pub fn run_dirs(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(self.results())
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        dirs.sort();
        dirs
    }

    /// VM folders left in the simulated lab.
    pub fn leftover_vms(&self) -> Vec<String> {
        match std::fs::read_dir(self.sim_root().join("vms")) {
            Ok(rd) => rd
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect(),
            Err(_) => vec![],
        }
    }

    /// Pids of live processes whose command line mentions this sandbox (guests).
    pub fn live_guests(&self) -> Vec<u32> {
        let needle = self.sim_root().to_string_lossy().into_owned();
        let mut out = vec![];
        for e in std::fs::read_dir("/proc").unwrap().filter_map(Result::ok) {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
                continue;
            };
            let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            let zombie = stat.split_whitespace().nth(2) == Some("Z");
            if !zombie && String::from_utf8_lossy(&cmd).contains(&needle) {
                out.push(pid);
            }
        }
        out
    }
}

/// Parses a run's junit.xml back (a JUnit consumer must accept it).
pub fn junit(run_dir: &Path) -> quick_junit::Report {
    let xml = std::fs::read_to_string(run_dir.join("junit.xml")).unwrap();
    quick_junit::Report::deserialize_from_str(&xml)
        .unwrap_or_else(|e| panic!("junit.xml does not parse: {e}\n{xml}"))
}

/// Every event of a run.
pub fn events(run_dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run_dir.join("events.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Output of a finished command as text, for messages.
pub fn text(out: &std::process::Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Serialises the CPU hog of the load test against the tests that need a race to fire with
/// its usual timing (fault runs, repro searches and replays): they hold [`timing_sensitive`]
/// while their runs execute, the load test holds [`exclusive_load`]. Without it the hog,
/// started by a test running in parallel, would slow the races those tests expect to see.
static LOAD: std::sync::RwLock<()> = std::sync::RwLock::new(());

pub fn timing_sensitive() -> std::sync::RwLockReadGuard<'static, ()> {
    LOAD.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub fn exclusive_load() -> std::sync::RwLockWriteGuard<'static, ()> {
    LOAD.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
