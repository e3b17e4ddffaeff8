//! `<unit>/steps.log`: every step of a unit with its outcome and the output it kept, for
//! passing and failing units alike, appended as each step ends (no whole-file rewrites)
//! and capped per unit so a chatty tool cannot fill the disk.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use super::{ReportError, Reporter, text};
use crate::events::{Envelope, Event, UnitId};
use crate::results::RunDir;

/// File name in the unit's folder.
pub const STEP_LOG: &str = "steps.log";

/// Most bytes written to one unit's `steps.log` (each step's output is already capped by
/// the runner, see bounds.rs; this bounds a unit with very many steps).
pub const MAX_STEP_LOG: u64 = 1024 * 1024;

/// Appends each finished step to its unit's `steps.log`.
#[derive(Debug)]
pub struct StepLogReporter {
    dir: PathBuf,
    /// Bytes written per unit so far.
    written: HashMap<UnitId, u64>,
}

impl StepLogReporter {
    pub fn new(results_dir: &Path) -> Self {
        StepLogReporter {
            dir: results_dir.to_owned(),
            written: HashMap::new(),
        }
    }
}

/// One step as it reads in the log: the timeline line, then its output indented.
pub fn entry(
    path: &str,
    label: &str,
    outcome: &str,
    took: &str,
    out: Option<(&str, &str)>,
) -> String {
    let mut s = format!("{path} {label}: {outcome} {took}\n");
    if let Some((stdout, stderr)) = out {
        for (name, t) in [("stdout", stdout), ("stderr", stderr)] {
            if !t.is_empty() {
                s.push_str(&format!("  {name}:\n"));
                for line in t.lines() {
                    s.push_str("    ");
                    s.push_str(line);
                    s.push('\n');
                }
            }
        }
    }
    s
}

impl Reporter for StepLogReporter {
    fn event(&mut self, ev: &Envelope) -> Result<(), ReportError> {
        let Event::StepFinished {
            unit,
            path,
            label,
            outcome,
            duration,
            output,
        } = &ev.event
        else {
            return Ok(());
        };
        let written = self.written.entry(unit.clone()).or_default();
        if *written >= MAX_STEP_LOG {
            return Ok(());
        }
        let mut s = entry(
            path,
            label,
            &text::step_outcome(outcome),
            &text::duration(*duration),
            output
                .as_ref()
                .map(|o| (o.stdout.as_str(), o.stderr.as_str())),
        );
        let room = usize::try_from(MAX_STEP_LOG - *written).unwrap_or(usize::MAX);
        if s.len() > room {
            let mut cut = room;
            while !s.is_char_boundary(cut) {
                cut -= 1;
            }
            s.truncate(cut);
            s.push_str("\n[steps.log capped: later output is in events.jsonl]\n");
        }
        let folder = self.dir.join(RunDir::unit_rel(unit));
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| ReportError::Io { path, source }
        };
        std::fs::create_dir_all(&folder).map_err(io(&folder))?;
        let file = folder.join(STEP_LOG);
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&file)
            .and_then(|mut f| f.write_all(s.as_bytes()))
            .map_err(io(&file))?;
        *written += s.len() as u64;
        Ok(())
    }
}
