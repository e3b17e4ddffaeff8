//! `hvlab repro SCENARIO`: loop one scenario on the lab with a searching jitter until it
//! fails or a budget ends, and report the failure rate per bucket with replay commands;
//! `hvlab repro --replay RUN/ITERATION` (or `SCENARIO --replay-seed S`) re-runs one
//! recorded iteration's seed.

use std::path::{Path, PathBuf};

use chrono::Utc;
use lab_runner::report::{OutputFormat, TerminalOptions};
use lab_runner::repro::{self, Mode, ReproSettings};
use lab_runner::results::RunDir;
use lab_runner::signals::SignalSource;

use crate::cli::{Format, ReproArgs};
use crate::commands::run::{lab_path, select_plan};
use crate::error::CliError;
use crate::settings::EnvSettings;
use crate::{backend, logging};

/// What to run, resolved from the arguments (and, for `--replay`, the recorded run).
struct Target {
    scenario: String,
    mode: Mode,
    /// Only this VM template (replay, or `--template`).
    template: Option<String>,
    note: Option<String>,
}

fn resolve(args: &ReproArgs, results_root: &Path) -> Result<Target, CliError> {
    if args.times.is_some() && args.replay.is_none() && args.replay_seed.is_none() {
        return Err(CliError::Usage(
            "--times only applies to a replay (--replay RUN/ITERATION or --replay-seed S)".into(),
        ));
    }
    let times = args.times.unwrap_or(1);
    if let Some(reference) = &args.replay {
        if args.scenario.is_some() || args.seed.is_some() || args.replay_seed.is_some() {
            return Err(CliError::Usage(
                "--replay RUN/ITERATION replays a recorded iteration: give no SCENARIO, --seed \
                 or --replay-seed with it"
                    .into(),
            ));
        }
        let (dir, iteration) = repro::locate_record(reference, results_root)
            .map_err(|e| CliError::Usage(e.to_string()))?;
        let (rec, it) = repro::load_record(&dir, iteration)
            .map_err(|e| CliError::Usage(lab_error::Chain(&e).to_string()))?;
        if args.template.as_deref().is_some_and(|t| t != it.template) {
            return Err(CliError::Usage(format!(
                "--template {}: iteration {iteration} ran on template `{}`",
                args.template.as_deref().unwrap_or_default(),
                it.template
            )));
        }
        let scenario = if rec.scenario_file.is_file() {
            rec.scenario_file.display().to_string()
        } else {
            rec.scenario.clone()
        };
        return Ok(Target {
            scenario,
            template: Some(it.template.clone()),
            mode: Mode::Replay {
                seed: it.seed,
                template: it.template.clone(),
                times,
            },
            note: Some(format!(
                "replaying {} iteration {iteration}: scenario {}, template {}, seed {}",
                dir.display(),
                rec.scenario,
                it.template,
                it.seed
            )),
        });
    }
    let Some(scenario) = args.scenario.clone() else {
        return Err(CliError::Usage(
            "name the scenario to reproduce (a file or a name), or --replay RUN/ITERATION".into(),
        ));
    };
    match args.replay_seed {
        Some(seed) => Ok(Target {
            scenario,
            template: args.template.clone(),
            mode: Mode::Replay {
                seed,
                template: String::new(),
                times,
            },
            note: None,
        }),
        None => Ok(Target {
            scenario,
            template: args.template.clone(),
            mode: Mode::Search,
            note: None,
        }),
    }
}

/// Runs `hvlab repro`.
pub fn run_cmd(root: &Path, args: &ReproArgs, env: &EnvSettings) -> Result<u8, CliError> {
    let results_root = args.results.clone().unwrap_or_else(|| root.join("results"));
    let target = resolve(args, &results_root)?;
    let lab = lab_path(root, args.lab.as_deref())?;
    let mut plan = select_plan(root, &lab, std::slice::from_ref(&target.scenario), &[])?;
    if plan.scenarios.len() != 1 {
        return Err(CliError::Usage(format!(
            "`{}` selects {} scenarios; repro runs exactly one",
            target.scenario,
            plan.scenarios.len()
        )));
    }
    let mut mode = target.mode;
    let scenario = &mut plan.scenarios[0];
    if let Some(t) = &target.template {
        if !scenario.vms.contains(t) {
            return Err(CliError::Usage(format!(
                "template `{t}` is not one the scenario `{}` runs on ({})",
                scenario.name,
                scenario.vms.join(", ")
            )));
        }
        scenario.vms = vec![t.clone()];
    }
    if let Mode::Replay { template, .. } = &mut mode
        && template.is_empty()
    {
        *template = scenario.vms[0].clone();
    }
    let known = crate::known::settings(root, args.known_issues_file.as_deref(), args.known_issues)?;
    let run_dir = RunDir::create(&results_root, Utc::now())
        .map_err(|e| CliError::infra("start the repro run", e))?;
    let _marker = lab_runner::in_progress::RunMarker::create(run_dir.path())
        .map_err(|e| CliError::infra("start the repro", e))?;
    let _log = logging::to_file(&run_dir.join(RunDir::LOG))?;
    if let Some(note) = &target.note
        && args.format == Format::Human
    {
        eprintln!("{note}");
    }
    let format = match args.format {
        Format::Human => OutputFormat::Human,
        Format::Json => OutputFormat::Json,
    };
    let terminal = TerminalOptions::detect(format, env.no_color);
    let rt = crate::runtime(true)?;
    rt.block_on(async {
        let hypervisor = backend::connect(&plan.lab, env)?;
        let settings = ReproSettings {
            plan,
            hypervisor,
            max_vms: args.vms.map(|n| n as usize),
            until: args.until,
            max_iterations: args.max_iterations,
            max_time: args.max_time.map(Into::into),
            keep: args.keep,
            keep_dumps: args.keep_dumps,
            seed: args.seed.unwrap_or_else(lab_runner::seed::random_seed),
            mode,
            replay_prefix: replay_prefix(args),
            known,
        };
        let signals = SignalSource::os().map_err(|source| CliError::Io {
            action: "install the Ctrl-C handler".into(),
            source,
        })?;
        let outcome = repro::run(settings, run_dir, terminal, signals)
            .await
            .map_err(|e| match e {
                repro::ReproError::Run(r) => CliError::Run(Box::new(r)),
                other => CliError::infra("reproduce the failure", other),
            })?;
        Ok(outcome.run.exit_code as u8)
    })
}

/// `hvlab repro [--results DIR] [--lab FILE] --replay`: the replay command's prefix, with
/// the options that locate the run and its lab when they are not the defaults.
fn replay_prefix(args: &ReproArgs) -> String {
    let mut s = String::from("hvlab repro");
    let quoted = |p: &PathBuf| {
        let t = p.display().to_string();
        if t.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-".contains(c))
        {
            t
        } else {
            format!("'{}'", t.replace('\'', r"'\''"))
        }
    };
    if let Some(r) = &args.results {
        s.push_str(&format!(" --results {}", quoted(r)));
    }
    if let Some(l) = &args.lab {
        s.push_str(&format!(" --lab {}", quoted(l)));
    }
    s.push_str(" --replay");
    s
}
