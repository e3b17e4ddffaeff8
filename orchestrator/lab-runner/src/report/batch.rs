//! The run's files from a finished, folded model in one pass (`hvlab results merge`): the
//! same builders the live reporters use (junit.xml, summary.json, index.html, crash folder
//! indexes), written once instead of after every unit.

use std::collections::HashMap;
use std::path::Path;

use super::model::RunModel;
use super::{ReportError, build_summary, crash_dirs, html, junit};
use crate::results::{RunDir, atomic_write};

/// Writes junit.xml, summary.json, index.html and `crashes/*/index.json` into `dir` from
/// `model` (whose artifact paths are relative to `dir`).
pub fn write_all(model: &RunModel, dir: &Path) -> Result<(), ReportError> {
    let guest: HashMap<_, _> = model
        .units
        .iter()
        .filter(|u| !u.guest_junit.is_empty())
        .map(|u| {
            let cases = junit::guest_cases(
                dir,
                &u.id,
                u.vm.as_deref().unwrap_or_default(),
                u.seed.unwrap_or_default(),
                &u.guest_junit,
            );
            (u.id.clone(), cases)
        })
        .collect();
    let xml = junit::build_report(model, dir, &guest)
        .to_string()
        .map_err(ReportError::Junit)?;
    atomic_write(&dir.join(RunDir::JUNIT), xml.as_bytes())?;
    let mut json =
        serde_json::to_vec_pretty(&build_summary(model)).map_err(|source| ReportError::Json {
            what: "summary.json",
            source,
        })?;
    json.push(b'\n');
    atomic_write(&dir.join(RunDir::SUMMARY), &json)?;
    atomic_write(
        &dir.join(RunDir::INDEX),
        html::render_with(model, None).as_bytes(),
    )?;
    for (folder, index) in crash_dirs::indexes(model) {
        let mut json = serde_json::to_vec_pretty(&index).map_err(|source| ReportError::Json {
            what: "crashes/<bucket>/index.json",
            source,
        })?;
        json.push(b'\n');
        let d = dir.join(&folder);
        std::fs::create_dir_all(&d).map_err(|source| ReportError::Io {
            path: d.clone(),
            source,
        })?;
        atomic_write(&d.join("index.json"), &json)?;
    }
    Ok(())
}
