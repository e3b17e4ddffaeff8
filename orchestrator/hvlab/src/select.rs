//! Which units a run (or `hvlab list`) covers: named scenarios, `--tag`, `--template` and
//! `-E` filters narrow the validated plan; every criterion given must hold. Without
//! scenarios, tags or a filter, scenarios tagged `fault` are left out (they are expected to
//! fail).

use std::collections::BTreeSet;
use std::path::Path;

use lab_config::Plan;

use crate::error::CliError;
use crate::filter::{Cell, Filter};

/// The selection criteria of `run` and `list`.
#[derive(Debug, Default, Clone)]
pub struct Selection {
    /// Scenario files or names.
    pub scenarios: Vec<String>,
    /// Any of these tags.
    pub tags: Vec<String>,
    /// Any of these templates.
    pub templates: Vec<String>,
    pub filter: Option<Filter>,
}

impl Selection {
    /// Whether nothing narrows the plan (the default run: everything not tagged `fault`).
    fn is_default(&self) -> bool {
        self.scenarios.is_empty() && self.tags.is_empty() && self.filter.is_none()
    }
}

/// Every tag of the plan's scenarios, sorted.
pub fn known_tags(plan: &Plan) -> BTreeSet<&str> {
    plan.scenarios
        .iter()
        .flat_map(|s| s.tags.iter().map(String::as_str))
        .collect()
}

/// Every template the lab defines.
pub fn known_templates(plan: &Plan) -> Vec<&str> {
    match &plan.lab.backend {
        lab_config::LabBackend::Sim(s) => s.templates.iter().map(|t| t.name.as_str()).collect(),
        lab_config::LabBackend::HyperV(h) => h.templates.iter().map(|t| t.name.as_str()).collect(),
    }
}

/// Checks tag and template names against the plan: a typo is a usage error that lists what
/// exists, not an empty run.
fn check_names(plan: &Plan, sel: &Selection) -> Result<(), CliError> {
    let tags = known_tags(plan);
    let filter_tags = sel.filter.as_ref().map(Filter::tags).unwrap_or_default();
    let unknown = sel
        .tags
        .iter()
        .map(String::as_str)
        .chain(filter_tags)
        .find(|t| !tags.contains(t));
    if let Some(t) = unknown {
        return Err(CliError::Usage(format!(
            "no scenario on this lab has the tag `{t}` (known tags: {})",
            tags.into_iter().collect::<Vec<_>>().join(", ")
        )));
    }
    let templates = known_templates(plan);
    if let Some(t) = sel
        .templates
        .iter()
        .find(|t| !templates.contains(&t.as_str()))
    {
        return Err(CliError::Usage(format!(
            "the lab has no template `{t}` (templates: {})",
            templates.join(", ")
        )));
    }
    Ok(())
}

/// Narrows `plan` to the selection: scenarios lose the templates (matrix cells) that do not
/// match, and scenarios left with none are dropped. Named scenarios were resolved by the
/// caller (the plan holds only them).
pub fn narrow(plan: &mut Plan, sel: &Selection) -> Result<(), CliError> {
    check_names(plan, sel)?;
    let default = sel.is_default();
    for s in &mut plan.scenarios {
        let keep_scenario = if default {
            !s.is_fault()
        } else {
            sel.tags.is_empty() || sel.tags.iter().any(|t| s.has_tag(t))
        };
        if !keep_scenario {
            s.vms.clear();
            continue;
        }
        let (name, tags) = (s.name.clone(), s.tags.clone());
        s.vms.retain(|template| {
            (sel.templates.is_empty() || sel.templates.iter().any(|t| t == template))
                && sel.filter.as_ref().is_none_or(|f| {
                    f.matches(&Cell {
                        scenario: &name,
                        tags: &tags,
                        template,
                    })
                })
        });
    }
    plan.scenarios.retain(|s| !s.vms.is_empty());
    Ok(())
}

/// The text of "nothing matched", saying which criteria were given.
pub fn nothing_matches(sel: &Selection) -> CliError {
    let mut given = Vec::new();
    if !sel.scenarios.is_empty() {
        given.push(format!("scenarios {}", sel.scenarios.join(", ")));
    }
    if !sel.tags.is_empty() {
        given.push(format!("--tag {}", sel.tags.join(", ")));
    }
    if !sel.templates.is_empty() {
        given.push(format!("--template {}", sel.templates.join(", ")));
    }
    if let Some(f) = &sel.filter {
        given.push(format!("--filter {f}"));
    }
    CliError::Usage(if given.is_empty() {
        "no scenario matches the selection".into()
    } else {
        format!(
            "no scenario matches the selection ({}); `hvlab list` shows what there is",
            given.join("; ")
        )
    })
}

/// True when `arg` names a scenario file rather than a scenario name.
pub fn is_file(arg: &str) -> bool {
    Path::new(arg).is_file()
}
