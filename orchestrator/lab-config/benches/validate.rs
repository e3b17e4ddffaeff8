//! Validation throughput: 1,000 generated scenario files checked against the shipped lab
//! and payloads (target: all 1,000 in under 1 s). Baseline, measured in the same run: an
//! untyped YAML parse of the same files (read + parse into a JSON value, no validation).
//!
//! Run: `cargo bench -p lab-config --bench validate`

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const FILES: usize = 1_000;
const ROUNDS: usize = 5;

/// Writes `FILES` scenarios: the shipped sim scenarios, renamed, with some variation so the
/// files are not byte-identical.
fn generate(dir: &Path, repo: &Path) -> Vec<PathBuf> {
    let mut templates = Vec::new();
    for e in std::fs::read_dir(repo.join("scenarios")).unwrap() {
        let p = e.unwrap().path();
        let text = std::fs::read_to_string(&p).unwrap();
        if text.contains("payload: sim-ebpf") {
            templates.push(text);
        }
    }
    templates.sort();
    (0..FILES)
        .map(|i| {
            let t = &templates[i % templates.len()];
            let mut text = String::new();
            for line in t.lines() {
                if let Some(name) = line.strip_prefix("name: ") {
                    text.push_str(&format!("name: {name}-{i}\n"));
                } else if line.starts_with("timeout: ") {
                    text.push_str(&format!("timeout: {}s\n", 30 + i % 30));
                } else {
                    text.push_str(line);
                    text.push('\n');
                }
            }
            let p = dir.join(format!("gen-{i:04}.yaml"));
            std::fs::write(&p, text).unwrap();
            p
        })
        .collect()
}

fn best_of(mut f: impl FnMut()) -> Duration {
    (0..ROUNDS)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .min()
        .unwrap()
}

fn main() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = tempfile::tempdir().unwrap();
    let scenarios = generate(dir.path(), &repo);
    let req = lab_config::ValidateRequest {
        labs: vec![repo.join("vm-configs/local-sim.yaml")],
        payloads: vec![repo.join("driver-payloads/sim-ebpf.yaml")],
        scenarios: scenarios.clone(),
        default_lab: Some(repo.join("vm-configs/local-sim.yaml")),
        lab: None,
        explicit_scenarios: true,
        payload: None,
    };
    let v = lab_config::validate(&req)
        .unwrap_or_else(|d| panic!("generated scenarios must be valid:\n{d}"));
    assert_eq!(v.plans[0].scenarios.len(), FILES);

    let validate = best_of(|| {
        black_box(lab_config::validate(black_box(&req)).unwrap());
    });
    let raw = best_of(|| {
        for p in &scenarios {
            let text = std::fs::read_to_string(p).unwrap();
            black_box(serde_saphyr::from_str::<serde_json::Value>(&text).unwrap());
        }
    });
    let per_s = |d: Duration| FILES as f64 / d.as_secs_f64();
    println!(
        "validate: {FILES} scenario files (+ lab + payload) in {:.1} ms = {:.0} files/s (best of {ROUNDS})",
        validate.as_secs_f64() * 1e3,
        per_s(validate)
    );
    println!(
        "baseline: untyped YAML parse of the same files in {:.1} ms = {:.0} files/s",
        raw.as_secs_f64() * 1e3,
        per_s(raw)
    );
    println!(
        "ratio: validation costs {:.2}x an untyped parse",
        validate.as_secs_f64() / raw.as_secs_f64()
    );
    println!(
        "target: 1,000 files in under 1 s: {}",
        if validate < Duration::from_secs(1) {
            "met"
        } else {
            "MISSED"
        }
    );
}
