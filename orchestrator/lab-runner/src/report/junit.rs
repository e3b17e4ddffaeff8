//! `junit.xml`: one testsuite per scenario x template, one testcase per iteration, guest
//! JUnit merged in. Rewritten atomically after every finished unit, on Ctrl-C and at the
//! end, so a run that is killed at any point leaves a valid file saying how far it got.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use quick_junit::{FlakyOrRerun, Property, Report, TestCase, TestCaseStatus, TestSuite};

use super::junit_case::{as_rerun, fixed, unit_case};
use super::model::{RunModel, UnitRecord};
use super::{ReportError, Reporter, guest_junit};
use crate::events::{Envelope, Event, UnitId, UnitOutcome};
use crate::results::{RunDir, atomic_write};

/// Writes `<results_dir>/junit.xml`.
#[derive(Debug)]
pub struct JunitReporter {
    results_dir: PathBuf,
    model: RunModel,
    /// Guest testcases per unit, parsed once when the unit finishes.
    guest: HashMap<UnitId, Vec<TestCase>>,
    rewrites: super::Rewrites,
}

impl JunitReporter {
    pub fn new(results_dir: &Path) -> Self {
        JunitReporter {
            results_dir: results_dir.to_owned(),
            model: RunModel::new(),
            guest: HashMap::new(),
            rewrites: super::Rewrites::new(),
        }
    }

    fn write(&self) -> Result<(), ReportError> {
        let report = build_report(&self.model, &self.results_dir, &self.guest);
        let xml = report.to_string().map_err(ReportError::Junit)?;
        atomic_write(&self.results_dir.join(RunDir::JUNIT), xml.as_bytes())?;
        Ok(())
    }
}

impl Reporter for JunitReporter {
    fn event(&mut self, ev: &Envelope) -> Result<(), ReportError> {
        self.model.apply(ev);
        if let Event::UnitFinished {
            unit,
            vm,
            seed,
            guest_junit,
            ..
        } = &ev.event
        {
            let cases = guest_cases(&self.results_dir, unit, vm, *seed, guest_junit);
            self.guest.insert(unit.clone(), cases);
        }
        if self.rewrites.due(&ev.event) {
            self.write()?;
        }
        Ok(())
    }
}

/// The testcases of the JUnit files a unit's tools wrote in the guest, labelled with the
/// unit's VM, seed and iteration.
pub fn guest_cases(
    results_dir: &Path,
    unit: &UnitId,
    vm: &str,
    seed: u64,
    guest_junit: &[PathBuf],
) -> Vec<TestCase> {
    let class = format!("{}@{}", unit.scenario, unit.template);
    let prefix = format!("iter-{}", unit.iteration);
    let mut cases: Vec<TestCase> = guest_junit
        .iter()
        .flat_map(|rel| guest_junit::load_cases(results_dir, rel, &prefix, &class))
        .collect();
    for c in &mut cases {
        c.add_property(Property::new("vm", vm));
        c.add_property(Property::new("seed", seed.to_string()));
        c.add_property(Property::new("iteration", unit.iteration.to_string()));
    }
    cases
}

/// Builds the whole report from the folded run.
pub fn build_report(
    model: &RunModel,
    results_dir: &Path,
    guest: &HashMap<UnitId, Vec<TestCase>>,
) -> Report {
    let interrupted = model.interrupted();
    let mut name = format!("hvlab run {}", model.run.run_id);
    if interrupted {
        name.push_str(if model.end.is_some() {
            " (interrupted)"
        } else {
            " (interrupted: the run did not finish)"
        });
    }
    let mut report = Report::new(name);
    if let Some(t) = model.run.started_at {
        report.set_timestamp(fixed(t));
    }
    if let Some(end) = model.end {
        report.set_time(end.elapsed);
    }

    // Suites in plan order of their first unit.
    let mut suites: Vec<(String, Vec<&UnitRecord>)> = Vec::new();
    for u in &model.units {
        let key = format!("{}@{}", u.id.scenario, u.id.template);
        match suites.iter_mut().find(|(k, _)| *k == key) {
            Some((_, units)) => units.push(u),
            None => suites.push((key, vec![u])),
        }
    }
    let unfinished = model.unfinished().count();
    for (key, units) in suites {
        let mut suite = TestSuite::new(key);
        suite_properties(&mut suite, model, interrupted);
        if interrupted {
            suite.set_system_out(format!(
                "run interrupted: {unfinished} of {} units did not finish\n",
                model.units.len()
            ));
        }
        if let Some(t) = units.iter().filter_map(|u| u.started_at).min() {
            suite.set_timestamp(fixed(t));
        }
        suite.set_time(units.iter().filter_map(|u| u.duration).sum());
        for case in suite_cases(model, &units, results_dir, guest) {
            suite.add_test_case(case);
        }
        report.add_test_suite(suite);
    }
    if !model.infra_errors.is_empty() {
        report.add_test_suite(lab_suite(model, interrupted));
    }
    report
}

fn suite_properties(suite: &mut TestSuite, model: &RunModel, interrupted: bool) {
    suite.add_property(Property::new("run-id", model.run.run_id.as_str()));
    suite.add_property(Property::new("lab", model.run.lab.as_str()));
    suite.add_property(Property::new("run-seed", model.run.seed.to_string()));
    suite.add_property(Property::new("interrupted", interrupted.to_string()));
    suite.add_property(Property::new(
        "run-complete",
        model.end.is_some().to_string(),
    ));
}

/// The cases of one suite. Units that ran the same seed more than once (repro mode) and
/// did not all pass are folded into one case: passed at least once -> success with
/// `flakyFailure`s; never passed -> the last failure with the earlier ones as
/// `rerunFailure`s. Same-seed units that all passed stay one case per iteration.
fn suite_cases(
    model: &RunModel,
    units: &[&UnitRecord],
    results_dir: &Path,
    guest: &HashMap<UnitId, Vec<TestCase>>,
) -> Vec<TestCase> {
    let ran = |u: &UnitRecord| {
        matches!(
            u.outcome,
            Some(UnitOutcome::Passed | UnitOutcome::Failed { .. } | UnitOutcome::Errored { .. })
        )
    };
    let same_seed = |u: &UnitRecord| -> Vec<&UnitRecord> {
        units
            .iter()
            .copied()
            .filter(|o| ran(o) && ran(u) && o.seed.is_some() && o.seed == u.seed)
            .collect()
    };
    let mut out = Vec::new();
    let mut done: Vec<&UnitId> = Vec::new();
    for u in units {
        if done.contains(&&u.id) {
            continue;
        }
        let group = same_seed(u);
        let any_failed = group.iter().any(|g| g.outcome != Some(UnitOutcome::Passed));
        if group.len() > 1 && any_failed {
            done.extend(group.iter().map(|g| &g.id));
            out.push(grouped_case(model, &group, results_dir));
            for g in &group {
                out.extend(guest.get(&g.id).into_iter().flatten().cloned());
            }
        } else {
            out.push(unit_case(model, u, results_dir));
            out.extend(guest.get(&u.id).into_iter().flatten().cloned());
        }
    }
    out
}

fn grouped_case(model: &RunModel, group: &[&UnitRecord], results_dir: &Path) -> TestCase {
    let cases: Vec<TestCase> = group
        .iter()
        .map(|u| unit_case(model, u, results_dir))
        .collect();
    let passed = group
        .iter()
        .position(|u| u.outcome == Some(UnitOutcome::Passed));
    let main_idx = passed.unwrap_or(cases.len() - 1);
    let mut main = cases[main_idx].clone();
    let reruns = cases
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != main_idx)
        .filter_map(|(_, c)| as_rerun(c));
    main.status.add_reruns(reruns);
    if passed.is_none() {
        main.status.set_rerun_kind(FlakyOrRerun::Rerun);
    }
    let runs: Vec<String> = group.iter().map(|u| u.id.iteration.to_string()).collect();
    main.add_property(Property::new("runs", runs.join(",")));
    if matches!(main.status, TestCaseStatus::Success { .. }) {
        main.add_property(Property::new("flaky", "true"));
    }
    main
}

/// Lab failures (not the code under test) as errored cases, so CI does not show green
/// when the lab broke before any unit ran.
fn lab_suite(model: &RunModel, interrupted: bool) -> TestSuite {
    let mut suite = TestSuite::new("hvlab@lab");
    suite_properties(&mut suite, model, interrupted);
    let mut err = String::new();
    for (what, how) in &model.leftovers {
        let _ = writeln!(err, "left behind: {what} (remove with: {how})");
    }
    if !err.is_empty() {
        suite.set_system_err(err);
    }
    for (i, (vm, message)) in model.infra_errors.iter().enumerate() {
        let mut status = TestCaseStatus::non_success(quick_junit::NonSuccessKind::Error);
        let msg = match vm {
            Some(vm) => format!("{vm}: {message}"),
            None => message.clone(),
        };
        status.set_message(msg).set_type("lab-error");
        let mut case = TestCase::new(format!("infra-error-{}", i + 1), status);
        case.set_classname("hvlab@lab");
        if let Some(vm) = vm {
            case.add_property(Property::new("vm", vm.as_str()));
        }
        suite.add_test_case(case);
    }
    suite
}
