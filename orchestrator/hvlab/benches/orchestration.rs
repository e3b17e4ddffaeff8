//! Orchestration overhead of `hvlab run` on the simulated lab, and checkpoint-restore time.
//!
//! A generated suite of scenarios whose steps are sleeps of known length runs on several
//! sim VMs. The baseline, measured in the same run, executes the same schedule as plain
//! in-process sleeps on as many tasks as there are VMs; the ratio is hvlab's wall time over
//! it. Per-step overhead comes from the events (step duration minus its sleep). Restore time
//! is measured on a sim VM directly through the hypervisor API.
//!
//! Run: `cargo bench -p hvlab --bench orchestration`

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use lab_backends::sim::{GuestLauncher, SimHypervisor};
use lab_backends::{CrashControl, GuestSettings, Hypervisor, StopMode, Verifier, VmSpec};

const VMS: usize = 2;
const SCENARIOS: usize = 8;
const STEPS: usize = 10;
const STEP: Duration = Duration::from_millis(100);
const RESTORES: usize = 30;

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("repo");
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    for d in ["vm-configs", "driver-payloads"] {
        copy(&repo.join(d), &root.join(d));
    }
    std::fs::create_dir_all(root.join("scenarios")).unwrap();
    for i in 0..SCENARIOS {
        let mut y = format!(
            "name: sleeps-{i}\npayload: sim-ebpf\nvms: [ws2022]\niterations: 1\ntimeout: 1m\nsteps:\n"
        );
        for _ in 0..STEPS {
            y.push_str(&format!("  - sleep: {}ms\n", STEP.as_millis()));
        }
        std::fs::write(root.join(format!("scenarios/sleeps-{i}.yaml")), y).unwrap();
    }
    println!(
        "orchestration: {SCENARIOS} units x {STEPS} sleep steps of {} ms on {VMS} sim VMs",
        STEP.as_millis()
    );

    // Baseline: the ideal schedule, really slept, VMS tasks in parallel.
    let per_task = SCENARIOS.div_ceil(VMS) * STEPS;
    let t = Instant::now();
    let handles: Vec<_> = (0..VMS)
        .map(|_| {
            std::thread::spawn(move || {
                for _ in 0..per_task {
                    std::thread::sleep(STEP);
                }
            })
        })
        .collect();
    handles.into_iter().for_each(|h| h.join().unwrap());
    let baseline = t.elapsed();

    let t = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_hvlab"))
        .env("HVLAB_SIM_ROOT", dir.path().join("sim"))
        .arg("--root")
        .arg(&root)
        .args(["run", "--vms", &VMS.to_string(), "--results"])
        .arg(dir.path().join("results"))
        .output()
        .unwrap();
    let wall = t.elapsed();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let run_dir = std::fs::read_dir(dir.path().join("results"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.is_dir())
        .unwrap();
    let events: Vec<serde_json::Value> = std::fs::read_to_string(run_dir.join("events.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let dur = |v: &serde_json::Value| std::time::Duration::from_secs_f64(v.as_f64().unwrap());
    let mut step_over: Vec<f64> = events
        .iter()
        .filter(|e| e["event"] == "step_finished")
        .map(|e| (dur(&e["duration"]).as_secs_f64() - STEP.as_secs_f64()) * 1e3)
        .collect();
    step_over.sort_by(f64::total_cmp);
    let at = |e: &serde_json::Value| {
        chrono::DateTime::parse_from_rfc3339(e["at"].as_str().unwrap()).unwrap()
    };
    let first = events
        .iter()
        .find(|e| e["event"] == "unit_started")
        .map(at)
        .unwrap();
    let last = events
        .iter()
        .filter(|e| e["event"] == "unit_finished")
        .map(at)
        .max()
        .unwrap();
    let units_phase = (last - first).to_std().unwrap();

    let pct = |x: Duration| (x.as_secs_f64() / baseline.as_secs_f64() - 1.0) * 100.0;
    println!(
        "  baseline (same schedule slept in-process): {:>8.3} s",
        baseline.as_secs_f64()
    );
    println!(
        "  hvlab run, whole process:                 {:>8.3} s  ratio {:.3} ({:+.1}%, includes booting and deploying {VMS} VMs)",
        wall.as_secs_f64(),
        wall.as_secs_f64() / baseline.as_secs_f64(),
        pct(wall)
    );
    println!(
        "  hvlab run, first unit start -> last end:  {:>8.3} s  ratio {:.3} ({:+.1}%, target <= +5%)",
        units_phase.as_secs_f64(),
        units_phase.as_secs_f64() / baseline.as_secs_f64(),
        pct(units_phase)
    );
    println!(
        "  per-step overhead: p50 {:.2} ms, p95 {:.2} ms, max {:.2} ms (target <= 5 ms)",
        step_over[step_over.len() / 2],
        step_over[step_over.len() * 95 / 100],
        step_over[step_over.len() - 1]
    );

    restore_time(dir.path());
}

/// Checkpoint-restore latency of one sim VM (kill, copy the disk back, resume, agent up).
fn restore_time(dir: &Path) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let hv = SimHypervisor::new(
            dir.join("sim-restore"),
            GuestLauncher {
                program: env!("CARGO_BIN_EXE_hvlab").into(),
                args: vec!["__sim-guest".into()],
            },
        );
        let spec = VmSpec {
            name: "bench-restore".into(),
            run_id: "bench".into(),
            template: "ws2022".into(),
            vcpus: 4,
            memory_mb: 2048,
            boot_delay: Duration::from_millis(50),
            guest: GuestSettings {
                test_signing: true,
                crash_control: CrashControl::LAB,
                verifier: Verifier::default(),
            },
        };
        hv.create(&spec).await.unwrap();
        let t = Instant::now();
        hv.start("bench-restore").await.unwrap();
        hv.wait_ready("bench-restore", Duration::from_secs(30)).await.unwrap();
        let cold = t.elapsed();
        hv.checkpoint("bench-restore", "deployed").await.unwrap();
        let mut times = Vec::new();
        for _ in 0..RESTORES {
            let t = Instant::now();
            hv.restore("bench-restore", "deployed").await.unwrap();
            times.push(t.elapsed());
        }
        times.sort();
        let p50 = times[times.len() / 2];
        let p95 = times[times.len() * 95 / 100];
        println!(
            "checkpoint restore of a sim VM ({RESTORES}x): p50 {:.1} ms, p95 {:.1} ms (target <= 100 ms: p95/target {:.2}); cold boot {:.1} ms",
            p50.as_secs_f64() * 1e3,
            p95.as_secs_f64() * 1e3,
            p95.as_secs_f64() / 0.1,
            cold.as_secs_f64() * 1e3
        );
        hv.stop("bench-restore", StopMode::TurnOff).await.unwrap();
        hv.delete("bench-restore").await.unwrap();
    });
}

fn copy(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().filter_map(Result::ok) {
        let p = e.path();
        if p.is_dir() {
            copy(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}
