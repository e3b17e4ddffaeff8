//! What the runner tests share: a validated plan from lab, payload and scenario text, and
//! the standard reporters with a plain terminal.

use std::path::Path;

use lab_config::{ValidateRequest, validate};
use lab_runner::report::{Fanout, OutputFormat, TerminalOptions};
use lab_runner::results::RunDir;

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

/// The standard reporters, the terminal without colour or progress bars.
pub fn reporters(run_dir: &RunDir) -> Fanout {
    let terminal = TerminalOptions {
        format: OutputFormat::Human,
        color: false,
        progress: false,
    };
    Fanout::standard(run_dir, terminal).unwrap()
}
