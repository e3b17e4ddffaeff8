//! The shipped configuration set (`vm-configs/`, `driver-payloads/`, `scenarios/`) and
//! validation of any set of files against each other, collecting every problem in one pass.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::diag::{Diagnostic, Diagnostics};
use crate::model::{Lab, Payload, Plan};
use crate::values::Loc;
use crate::wire::lab::LabKind;
use crate::wire::payload::PayloadTarget;
use crate::{ScenarioSource, load_lab, load_payload, load_scenario, resolve_with};

/// The lab used for scenarios when none is named.
pub const DEFAULT_LAB: &str = "vm-configs/local-sim.yaml";

/// The configuration files of a checkout, sorted by path within each folder.
#[derive(Debug, Clone)]
pub struct Workspace {
    /// The repository root.
    pub root: PathBuf,
    /// `vm-configs/*.yaml`.
    pub labs: Vec<PathBuf>,
    /// `driver-payloads/*.yaml`.
    pub payloads: Vec<PathBuf>,
    /// `scenarios/*.yaml`.
    pub scenarios: Vec<PathBuf>,
}

fn yaml_files(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    match std::fs::read_dir(dir) {
        Ok(rd) => {
            for e in rd {
                let p = e?.path();
                // Not only regular files: a folder, FIFO or device named `*.yaml` is listed
                // so that reading it reports what it is instead of skipping it silently.
                if matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")) {
                    out.push(p);
                }
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    out.sort();
    Ok(out)
}

impl Workspace {
    /// Lists the shipped files under `root` (missing folders are empty).
    pub fn discover(root: &Path) -> io::Result<Self> {
        Ok(Self {
            root: root.to_path_buf(),
            labs: yaml_files(&root.join("vm-configs"))?,
            payloads: yaml_files(&root.join("driver-payloads"))?,
            scenarios: yaml_files(&root.join("scenarios"))?,
        })
    }

    /// `vm-configs/local-sim.yaml` under the root.
    pub fn default_lab(&self) -> PathBuf {
        self.root.join(DEFAULT_LAB)
    }

    /// A request that validates everything in the workspace.
    pub fn request(&self) -> ValidateRequest {
        ValidateRequest {
            labs: self.labs.clone(),
            payloads: self.payloads.clone(),
            scenarios: self.scenarios.clone(),
            lab: None,
            default_lab: Some(self.default_lab()),
            explicit_scenarios: false,
            payload: None,
        }
    }
}

/// What to validate.
#[derive(Debug, Clone, Default)]
pub struct ValidateRequest {
    /// Lab files.
    pub labs: Vec<PathBuf>,
    /// Payload manifests (scenarios may reference only these).
    pub payloads: Vec<PathBuf>,
    /// Scenario files.
    pub scenarios: Vec<PathBuf>,
    /// Validate every scenario against this lab (it is loaded if not in `labs`).
    pub lab: Option<PathBuf>,
    /// Without `lab`: sim scenarios are checked against this lab, windows scenarios against
    /// the first Hyper-V lab in `labs`.
    pub default_lab: Option<PathBuf>,
    /// `hvlab run --payload`: the payload of scenarios that do not pin one (instead of the
    /// lab's default `payload`).
    pub payload: Option<String>,
    /// The scenarios were named by the user: a payload that does not fit the lab is an
    /// error. Otherwise such scenarios are skipped (listed in [`Validated::skipped`]).
    pub explicit_scenarios: bool,
}

/// A successful validation.
#[derive(Debug, Clone)]
pub struct Validated {
    /// Labs, in request order.
    pub labs: Vec<Lab>,
    /// Payloads, in request order.
    pub payloads: Vec<Arc<Payload>>,
    /// One plan per lab that scenarios were checked against.
    pub plans: Vec<Plan>,
    /// Scenarios left out because their payload does not fit the chosen lab, with why.
    pub skipped: Vec<(PathBuf, String)>,
}

impl Validated {
    /// Number of files checked.
    pub fn file_count(&self) -> usize {
        self.labs.len() + self.payloads.len() + self.scenario_count() + self.skipped_count()
    }

    /// Distinct scenario files that passed (one checked on two labs counts once).
    fn scenario_count(&self) -> usize {
        let files: HashSet<&Path> = self
            .plans
            .iter()
            .flat_map(|p| p.scenarios.iter().map(|s| &*s.file))
            .collect();
        files.len()
    }

    /// Skipped scenario files that did not pass on any other lab.
    fn skipped_count(&self) -> usize {
        let passed: HashSet<&Path> = self
            .plans
            .iter()
            .flat_map(|p| p.scenarios.iter().map(|s| &*s.file))
            .collect();
        let skipped: HashSet<&Path> = self
            .skipped
            .iter()
            .map(|(p, _)| p.as_path())
            .filter(|p| !passed.contains(p))
            .collect();
        skipped.len()
    }

    /// The plan for the lab named `name`.
    pub fn plan_for(&self, name: &str) -> Option<&Plan> {
        self.plans.iter().find(|p| p.lab.name == name)
    }

    /// One-line summary, e.g. `ok: 2 labs, 2 payloads, 13 scenarios`.
    pub fn summary(&self) -> String {
        let n = self.scenario_count();
        let plural = |n: usize, w: &str| format!("{n} {w}{}", if n == 1 { "" } else { "s" });
        let mut s = format!(
            "ok: {}, {}, {} valid",
            plural(self.labs.len(), "lab"),
            plural(self.payloads.len(), "payload"),
            plural(n, "scenario")
        );
        if self.skipped_count() > 0 {
            s.push_str(&format!(
                " ({} skipped: payload target does not fit the lab)",
                self.skipped_count()
            ));
        }
        s
    }
}

/// Reports `name` defined in two files.
fn duplicate(
    diags: &mut Diagnostics,
    what: &str,
    name: &str,
    file: &Path,
    loc: Loc,
    first: &(PathBuf, Loc),
) {
    diags.push(
        Diagnostic::new(
            "duplicate-name",
            file,
            Some(loc),
            "name",
            format!("duplicate {what} name `{name}`"),
        )
        .with_related(&first.0, Some(first.1), "first defined here"),
    );
}

/// Validates labs, payloads and scenarios against each other. Every file is checked even
/// when others fail; the error holds every problem found.
pub fn validate(req: &ValidateRequest) -> Result<Validated, Diagnostics> {
    let mut diags = Diagnostics::new();

    let mut lab_paths = req.labs.clone();
    for extra in req.lab.iter().chain(req.default_lab.iter()) {
        if !lab_paths.contains(extra)
            && (req.lab.as_ref() == Some(extra) || !req.scenarios.is_empty())
        {
            lab_paths.push(extra.clone());
        }
    }
    let mut labs: Vec<(PathBuf, Lab)> = Vec::new();
    let mut lab_names: HashMap<String, (PathBuf, Loc)> = HashMap::new();
    for p in &lab_paths {
        match load_lab(p) {
            Ok(l) => {
                if let Some(first) = lab_names.get(&l.name) {
                    duplicate(&mut diags, "lab", &l.name, p, Loc::at(1, 1), first);
                } else {
                    lab_names.insert(l.name.clone(), (p.clone(), Loc::at(1, 1)));
                }
                labs.push((p.clone(), l));
            }
            Err(e) => diags.extend(e),
        }
    }

    let mut payloads: Vec<Arc<Payload>> = Vec::new();
    let mut payload_names: HashMap<String, (PathBuf, Loc)> = HashMap::new();
    let mut broken: HashSet<String> = HashSet::new();
    for p in &req.payloads {
        match load_payload(p) {
            Ok(pl) => {
                if let Some(first) = payload_names.get(&pl.name) {
                    duplicate(&mut diags, "payload", &pl.name, p, Loc::at(1, 1), first);
                    continue;
                }
                payload_names.insert(pl.name.clone(), (p.clone(), Loc::at(1, 1)));
                payloads.push(Arc::new(pl));
            }
            Err(e) => {
                // A payload that exists but is broken: scenarios naming it get no second error.
                if let Some(name) = crate::source::read_source(p)
                    .ok()
                    .and_then(|s| name_of(&s.text))
                {
                    broken.insert(name);
                }
                diags.extend(e);
            }
        }
    }

    let find_lab = |path: &Path| labs.iter().find(|(p, _)| p == path).map(|(_, l)| l);
    let first_hyperv = labs
        .iter()
        .find(|(_, l)| l.kind() == LabKind::Hyperv)
        .map(|(_, l)| l);
    // `--payload` is checked once, not once per scenario that would use it.
    if let (Some(name), Some(lab)) = (&req.payload, req.lab.as_deref().and_then(find_lab)) {
        match payloads.iter().find(|p| &p.name == name) {
            None if !broken.contains(name) => {
                let names: Vec<&str> = payloads.iter().map(|p| p.name.as_str()).collect();
                diags.push(
                    Diagnostic::new(
                        "unknown-reference",
                        &lab.file,
                        None,
                        "",
                        format!("unknown payload `{name}` (named by `--payload`)"),
                    )
                    .with_help(format!("payloads: {}", crate::validate::list(&names))),
                );
                return Err(diags);
            }
            Some(p) if !fits(p.target, lab.kind()) => {
                diags.push(
                    Diagnostic::new(
                        "target-mismatch",
                        &p.file,
                        None,
                        "target",
                        format!(
                            "payload `{name}` (named by `--payload`) does not run on lab `{}`: its target does not fit a `{}` lab",
                            lab.name,
                            if lab.kind() == LabKind::Sim { "sim" } else { "hyperv" }
                        ),
                    )
                    .with_related(&lab.file, None, "the lab"),
                );
                return Err(diags);
            }
            _ => {}
        }
    }
    let mut per_lab: BTreeMap<usize, Vec<crate::model::Scenario>> = BTreeMap::new();
    let mut skipped = Vec::new();
    let mut scenario_names: HashMap<String, (PathBuf, Loc)> = HashMap::new();
    let lab_failed = |path: &Option<PathBuf>| path.as_ref().is_some_and(|p| find_lab(p).is_none());
    for p in &req.scenarios {
        let src: ScenarioSource = match load_scenario(p) {
            Ok(s) => s,
            Err(e) => {
                diags.extend(e);
                continue;
            }
        };
        if let Some(first) = scenario_names.get(src.name()) {
            duplicate(&mut diags, "scenario", src.name(), p, src.name_loc(), first);
        } else {
            scenario_names.insert(src.name().to_owned(), (p.clone(), src.name_loc()));
        }
        let pinned_owned = src.payload_name().map(str::to_owned);
        let pinned = pinned_owned.as_deref().or(req.payload.as_deref());
        let target_of = |name: &str| {
            payloads
                .iter()
                .find(|pl| pl.name == name)
                .map(|pl| pl.target)
        };
        let target = pinned.and_then(target_of);
        let default_lab = || {
            req.default_lab
                .as_deref()
                .and_then(find_lab)
                .or_else(|| labs.first().map(|(_, l)| l))
        };
        // A scenario that pins no payload is checked on every lab it can run on: the default
        // lab and the first Hyper-V lab that names a default payload.
        let mut targets: Vec<&Lab> = Vec::new();
        match (&req.lab, target, pinned) {
            (Some(l), _, _) => targets.extend(find_lab(l)),
            (None, Some(PayloadTarget::Windows), _) => targets.extend(first_hyperv),
            (None, _, Some(_)) => targets.extend(default_lab()),
            (None, _, None) => {
                targets.extend(default_lab());
                if let Some(h) = first_hyperv.filter(|h| h.payload.is_some())
                    && !targets.iter().any(|l| std::ptr::eq(*l, h))
                {
                    targets.push(h);
                }
            }
        }
        if targets.is_empty() {
            if lab_failed(&req.lab) || lab_failed(&req.default_lab) {
                continue; // the lab's own errors are already reported
            }
            let msg = if target == Some(PayloadTarget::Windows) {
                "no Hyper-V lab to check this windows scenario against: pass `--lab <hyperv lab file>`"
            } else {
                "no lab to check this scenario against: pass `--lab <lab file>`"
            };
            diags.push(Diagnostic::new(
                "no-lab",
                p,
                Some(src.name_loc()),
                "payload",
                msg,
            ));
            continue;
        }
        let source = src.source.clone();
        let mut src = Some(src);
        for lab in targets {
            let effective = pinned.or(lab.payload.as_ref().map(|(n, _)| n.as_str()));
            if let Some(t) = effective.and_then(target_of)
                && !fits(t, lab.kind())
                && !req.explicit_scenarios
            {
                skipped.push((
                    p.clone(),
                    format!(
                        "payload `{}` does not run on lab `{}`",
                        effective.unwrap_or_default(),
                        lab.name
                    ),
                ));
                continue;
            }
            let idx = labs
                .iter()
                .position(|(_, l)| std::ptr::eq(l, lab))
                .unwrap_or(0);
            let this = match src.take() {
                Some(s) => s,
                None => match crate::parse_scenario(source.clone()) {
                    Ok(s) => s,
                    Err(e) => {
                        diags.extend(e);
                        continue;
                    }
                },
            };
            match resolve_with(this, lab, &payloads, &broken, req.payload.as_deref()) {
                Ok(s) => per_lab.entry(idx).or_default().push(s),
                Err(e) => diags.extend(e),
            }
        }
    }
    if !diags.is_empty() {
        return Err(diags);
    }
    let plans = per_lab
        .into_iter()
        .map(|(idx, scenarios)| {
            let lab = labs[idx].1.clone();
            let used: HashSet<&str> = scenarios.iter().map(|s| s.payload.name.as_str()).collect();
            let payloads = payloads
                .iter()
                .filter(|p| used.contains(p.name.as_str()))
                .cloned()
                .collect();
            Plan {
                lab,
                payloads,
                scenarios,
            }
        })
        .collect();
    Ok(Validated {
        labs: labs.into_iter().map(|(_, l)| l).collect(),
        payloads,
        plans,
        skipped,
    })
}

/// A sim payload runs on a sim lab, a Windows payload on a Hyper-V lab.
fn fits(target: PayloadTarget, lab: LabKind) -> bool {
    matches!(
        (target, lab),
        (PayloadTarget::Sim, LabKind::Sim) | (PayloadTarget::Windows, LabKind::Hyperv)
    )
}

/// The top-level `name:` of a YAML file, read leniently (for "is this a known payload").
fn name_of(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix("name:"))
        .map(|n| n.trim().trim_matches(['"', '\'']).to_owned())
        .filter(|n| !n.is_empty())
}
