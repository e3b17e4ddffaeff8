//! `hvlab run [SCENARIOS...]`: validates, resolves settings once, creates the results
//! directory and hands over to the runner; the exit code is the runner's verdict.

use std::path::{Path, PathBuf};

use chrono::Utc;
use lab_config::{Plan, ValidateRequest, Workspace, validate};
use lab_runner::report::{Fanout, OutputFormat, TerminalOptions};
use lab_runner::results::RunDir;
use lab_runner::run::{RunSettings, run};
use lab_runner::signals::SignalSource;

use crate::cli::{Format, RunArgs};
use crate::error::CliError;
use crate::settings::EnvSettings;
use crate::{backend, logging};

/// Picks the lab file: `--lab`, else the default sim lab under the root.
pub fn lab_path(root: &Path, lab: Option<&Path>) -> Result<PathBuf, CliError> {
    let path = match lab {
        Some(p) => p.to_path_buf(),
        None => Workspace::discover(root)
            .map_err(|source| CliError::Io {
                action: format!("list configuration files under `{}`", root.display()),
                source,
            })?
            .default_lab(),
    };
    if path.exists() && !path.is_file() {
        // A FIFO or device would block or never end: say what it is (exit 2).
        lab_config::check_regular_file(&path).map_err(CliError::Config)?;
    }
    if !path.is_file() {
        return Err(CliError::Usage(format!(
            "lab file `{}` does not exist",
            path.display()
        )));
    }
    Ok(path)
}

/// Validates the lab, payloads and scenarios and narrows the plan to the selection: named
/// scenarios (files or names), else those with `--tag`, else every scenario not tagged
/// `fault`.
pub fn select_plan(
    root: &Path,
    lab: &Path,
    scenarios: &[String],
    tags: &[String],
) -> Result<Plan, CliError> {
    let ws = Workspace::discover(root).map_err(|source| CliError::Io {
        action: format!("list configuration files under `{}`", root.display()),
        source,
    })?;
    let files: Vec<PathBuf> = scenarios
        .iter()
        .map(PathBuf::from)
        .filter(|p| p.is_file())
        .collect();
    let by_file = !scenarios.is_empty() && files.len() == scenarios.len();
    let req = ValidateRequest {
        labs: vec![lab.to_path_buf()],
        payloads: ws.payloads.clone(),
        scenarios: if by_file { files } else { ws.scenarios.clone() },
        lab: Some(lab.to_path_buf()),
        default_lab: None,
        explicit_scenarios: by_file,
    };
    let validated = validate(&req).map_err(CliError::Config)?;
    let mut plan =
        validated.plans.into_iter().next().ok_or_else(|| {
            CliError::Usage(format!("no scenario runs on lab `{}`", lab.display()))
        })?;
    if !scenarios.is_empty() && !by_file {
        let known: Vec<String> = plan.scenarios.iter().map(|s| s.name.clone()).collect();
        if let Some(missing) = scenarios
            .iter()
            .find(|n| !known.contains(n) && !Path::new(n).is_file())
        {
            return Err(CliError::Usage(format!(
                "no scenario named or at `{missing}` (scenarios on this lab: {})",
                known.join(", ")
            )));
        }
        plan.scenarios.retain(|s| {
            scenarios.contains(&s.name) || scenarios.iter().any(|f| Path::new(f) == &*s.file)
        });
    } else if scenarios.is_empty() {
        if tags.is_empty() {
            plan.scenarios.retain(|s| !s.is_fault());
        } else {
            plan.scenarios.retain(|s| tags.iter().any(|t| s.has_tag(t)));
        }
    }
    if plan.scenarios.is_empty() {
        return Err(CliError::Usage("no scenario matches the selection".into()));
    }
    let used: Vec<String> = plan
        .scenarios
        .iter()
        .map(|s| s.payload.name.clone())
        .collect();
    plan.payloads.retain(|p| used.contains(&p.name));
    Ok(plan)
}

/// Runs `hvlab run`.
pub fn run_cmd(root: &Path, args: &RunArgs, env: &EnvSettings) -> Result<u8, CliError> {
    let lab = lab_path(root, args.lab.as_deref())?;
    let plan = select_plan(root, &lab, &args.scenarios, &args.tag)?;
    if args.dry_run {
        crate::stdout(&backend::dry_run(&plan)?)?;
        return Ok(0);
    }
    let results_root = args.results.clone().unwrap_or_else(|| root.join("results"));
    let run_dir = RunDir::create(&results_root, Utc::now())
        .map_err(|e| CliError::infra("start the run", e))?;
    let _log = logging::to_file(&run_dir.join(RunDir::LOG))?;
    let format = match args.format {
        Format::Human => OutputFormat::Human,
        Format::Json => OutputFormat::Json,
    };
    let reporters = Fanout::standard(&run_dir, TerminalOptions::detect(format, env.no_color))
        .map_err(|e| CliError::infra("start the run", e))?;
    let rt = crate::runtime(true)?;
    rt.block_on(async {
        let hypervisor = backend::connect(&plan.lab, env)?;
        let settings = RunSettings {
            plan,
            hypervisor,
            iterations: args.iterations,
            seed: args.seed.unwrap_or_else(lab_runner::seed::random_seed),
            max_vms: args.vms.map(|n| n as usize),
            only: None,
            keep_dumps: args.keep_dumps,
            known: crate::known::settings(
                root,
                args.known_issues_file.as_deref(),
                args.known_issues,
            )?,
        };
        let signals = SignalSource::os().map_err(|source| CliError::Io {
            action: "install the Ctrl-C handler".into(),
            source,
        })?;
        let outcome = run(settings, run_dir, reporters, signals)
            .await
            .map_err(|e| CliError::Run(Box::new(e)))?;
        Ok(outcome.exit_code as u8)
    })
}
