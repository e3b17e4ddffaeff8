//! What the runner tests share: a validated plan from lab, payload and scenario text, and
//! a run of it on a Hyper-V backend with the standard reporters.

use std::path::{Path, PathBuf};

use chrono::Utc;
use lab_backends::AnyHypervisor;
use lab_backends::hyperv::HyperV;
use lab_config::{ValidateRequest, validate};
use lab_runner::report::{Fanout, OutputFormat, TerminalOptions};
use lab_runner::results::RunDir;
use lab_runner::run::{RunOutcome, RunSettings, run};
use lab_runner::signals::SignalSource;

/// Writes `build` (file name, content) into `dir/build`, the three files into `dir` (the
/// payload's `BUILD` replaced by that folder) and validates them: the one plan.
pub fn plan(
    dir: &Path,
    build: &[(&str, &[u8])],
    lab: &str,
    payload: &str,
    scenario: &str,
) -> lab_config::Plan {
    let build_dir = dir.join("build");
    std::fs::create_dir_all(&build_dir).unwrap();
    for (name, body) in build {
        std::fs::write(build_dir.join(name), body).unwrap();
    }
    let (lab_file, payload_file, scenario_file) = (
        dir.join("lab.yaml"),
        dir.join("payload.yaml"),
        dir.join("scenario.yaml"),
    );
    std::fs::write(&lab_file, lab).unwrap();
    let quoted = format!("'{}'", build_dir.display());
    std::fs::write(&payload_file, payload.replace("BUILD", &quoted)).unwrap();
    std::fs::write(&scenario_file, scenario).unwrap();
    validate(&ValidateRequest {
        labs: vec![lab_file.clone()],
        payloads: vec![payload_file],
        scenarios: vec![scenario_file],
        lab: Some(lab_file),
        default_lab: None,
        explicit_scenarios: true,
        payload: None,
    })
    .unwrap_or_else(|d| panic!("{d}"))
    .plans
    .remove(0)
}

/// Runs `plan` on `hv` (seed 7, at most `max_vms` VMs) into `dir/results` with the
/// standard reporters, the terminal without colour or progress bars: the outcome and the
/// run folder.
pub async fn run_on(
    dir: &Path,
    plan: lab_config::Plan,
    hv: HyperV,
    max_vms: Option<usize>,
) -> (RunOutcome, PathBuf) {
    let run_dir = RunDir::create(&dir.join("results"), Utc::now()).unwrap();
    let path = run_dir.path().to_path_buf();
    let terminal = TerminalOptions {
        format: OutputFormat::Human,
        color: false,
        progress: false,
    };
    let reporters = Fanout::standard(&run_dir, terminal).unwrap();
    let (signals, _press) = SignalSource::channel();
    let settings = RunSettings {
        known: Default::default(),
        plan,
        hypervisor: AnyHypervisor::HyperV(hv),
        iterations: None,
        seed: 7,
        max_vms,
        only: None,
        keep_dumps: Default::default(),
        policy: Default::default(),
    };
    // Boxed: the run's future is deep enough that nesting it in the tests' own futures
    // overflows the compiler's layout query depth.
    let outcome = Box::pin(run(settings, run_dir, reporters, signals))
        .await
        .unwrap();
    (outcome, path)
}
