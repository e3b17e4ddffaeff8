//! `hvlab run [SCENARIOS...]`: validates, resolves settings once, creates the results
//! directory and hands over to the runner; the exit code is the runner's verdict.

use std::path::{Path, PathBuf};

use chrono::Utc;
use lab_config::{Plan, ValidateRequest, Workspace, validate};
use lab_runner::report::{Fanout, OutputFormat, TerminalOptions};
use lab_runner::results::RunDir;
use lab_runner::run::{RunPolicy, RunSettings, run};
use lab_runner::signals::SignalSource;

use crate::cli::{Format, RunArgs};
use crate::error::CliError;
use crate::filter::Filter;
use crate::select::{self, Selection};
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
    select_plan_by(
        root,
        lab,
        &Selection {
            scenarios: scenarios.to_vec(),
            tags: tags.to_vec(),
            ..Selection::default()
        },
        None,
    )
}

/// [`select_plan`] with every criterion of [`Selection`] (templates and a filter too).
///
/// `payload` is `--payload`: the payload of scenarios that pin none.
pub fn select_plan_by(
    root: &Path,
    lab: &Path,
    sel: &Selection,
    payload: Option<&str>,
) -> Result<Plan, CliError> {
    let mut plan = validated_plan(root, lab, &sel.scenarios, payload)?;
    select::narrow(&mut plan, sel)?;
    if plan.scenarios.is_empty() {
        return Err(select::nothing_matches(sel));
    }
    let used: Vec<String> = plan
        .scenarios
        .iter()
        .map(|s| s.payload.name.clone())
        .collect();
    plan.payloads.retain(|p| used.contains(&p.name));
    Ok(plan)
}

/// Validates the lab, payloads and scenarios; with named `scenarios` (files or names) the
/// plan holds only those.
pub fn validated_plan(
    root: &Path,
    lab: &Path,
    scenarios: &[String],
    payload: Option<&str>,
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
        payload: payload.map(str::to_owned),
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
            .find(|n| !known.contains(n) && !select::is_file(n))
        {
            return Err(CliError::Usage(format!(
                "no scenario named or at `{missing}` (scenarios on this lab: {})",
                known.join(", ")
            )));
        }
        plan.scenarios.retain(|s| {
            scenarios.contains(&s.name) || scenarios.iter().any(|f| Path::new(f) == &*s.file)
        });
    }
    Ok(plan)
}

/// Parses `-E` filters (or-ed when repeated); a bad one is a usage error (exit 2) pointing
/// at its column.
pub fn parse_filters(exprs: &[String]) -> Result<Option<Filter>, CliError> {
    let mut out: Option<Filter> = None;
    for e in exprs {
        let f = Filter::parse(e).map_err(|e| CliError::Usage(e.to_string()))?;
        out = Some(match out {
            None => f,
            Some(prev) => Filter::Or(Box::new(prev), Box::new(f)),
        });
    }
    Ok(out)
}

/// Runs `hvlab run`.
pub fn run_cmd(root: &Path, args: &RunArgs, env: &EnvSettings) -> Result<u8, CliError> {
    let lab = lab_path(root, args.lab.as_deref())?;
    let sel = Selection {
        scenarios: args.scenarios.clone(),
        tags: args.tag.clone(),
        templates: args.template.clone(),
        filter: parse_filters(&args.filter)?,
    };
    let plan = select_plan_by(root, &lab, &sel, args.payload.as_deref())?;
    let seed = args.seed.unwrap_or_else(lab_runner::seed::random_seed);
    // A replay runs one iteration unless told otherwise.
    let iterations = args.iterations.or(args.replay_seed.map(|_| 1));
    let only = match args.shard {
        None => None,
        Some(spec) => {
            let timings = args
                .timings
                .as_deref()
                .map(crate::shard::read_timings)
                .transpose()?;
            let all: Vec<_> = lab_runner::run::expand(&plan, iterations, seed)
                .into_iter()
                .map(|u| u.id)
                .collect();
            let mine = crate::shard::select(&all, spec, timings.as_ref());
            if mine.is_empty() {
                // An empty shard is not an error in a CI matrix wider than the suite.
                eprintln!(
                    "shard {spec}: no unit of the {} selected falls in this shard; nothing to run",
                    all.len()
                );
                return Ok(0);
            }
            Some(mine)
        }
    };
    if args.dry_run {
        crate::stdout(&backend::dry_run(&plan)?)?;
        return Ok(0);
    }
    let results_root = args.results.clone().unwrap_or_else(|| root.join("results"));
    let run_dir = RunDir::create(&results_root, Utc::now())
        .map_err(|e| CliError::infra("start the run", e))?;
    // Removed when the run ends; a killed run's marker reads as dead (pid + start time).
    let _marker = lab_runner::in_progress::RunMarker::create(run_dir.path())
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
            iterations,
            seed,
            max_vms: args.vms.map(|n| n as usize),
            only,
            keep_dumps: args.keep_dumps,
            policy: RunPolicy {
                retries: args.retries,
                fail_fast: args.fail_fast && !args.no_fail_fast,
                replay_seed: args.replay_seed,
            },
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
