//! Reporters: everything a user sees or a results file holds is rendered here from the
//! runner's [`Envelope`] stream (the runner itself never prints).
//!
//! ```text
//! runner ──Envelope──> Fanout ─┬─> TerminalReporter   stderr (human) | stdout (JSON lines)
//!                              ├─> JsonLinesReporter  events.jsonl
//!                              ├─> JunitReporter      junit.xml    (rewritten per unit)
//!                              ├─> SummaryReporter    summary.json (rewritten per unit)
//!                              └─> HtmlReporter       index.html   (rewritten per unit)
//! ```
//! Reporters are plain sync code; a failing one never stops the others.

#[cfg(test)]
mod fixtures;
mod guest_junit;
mod html;
mod jsonl;
mod junit;
mod junit_case;
mod log;
mod model;
mod summary;
mod summary_text;
mod terminal;
mod text;

use std::fmt;
use std::fs::OpenOptions;
use std::io::{self, BufWriter};
use std::path::PathBuf;

pub use html::HtmlReporter;
pub use jsonl::JsonLinesReporter;
pub use junit::JunitReporter;
pub use log::LogReporter;
pub use model::{BucketSeen, RunEnd, RunInfo, RunModel, StepRecord, UnitRecord};
pub use summary::{Summary, SummaryReporter, build_summary};
pub use summary_text::{Paint, render_summary};
pub use terminal::{OutputFormat, TerminalOptions, TerminalReporter};
pub use text::{duration as duration_text, timeout as timeout_text};

use crate::events::{Envelope, Event};
use crate::results::{ResultsError, RunDir};

/// Errors a reporter can hit. Messages read after "failed to".
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("write {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Results(#[from] ResultsError),
    #[error("serialize junit.xml")]
    Junit(#[source] quick_junit::SerializeError),
    #[error("serialize {what} as JSON")]
    Json {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("write to the terminal")]
    Terminal(#[source] io::Error),
    #[error("report to {} of {} reporters: {}", .0.len(), .1, FanoutList(.0))]
    Fanout(Vec<(&'static str, ReportError)>, usize),
}

/// Renders fanout failures as `junit: write ...: <cause>; html: ...`.
struct FanoutList<'a>(&'a [(&'static str, ReportError)]);

impl fmt::Display for FanoutList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (name, e)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{name}: {}", lab_error::Chain(e))?;
        }
        Ok(())
    }
}

/// Whether a file derived from the whole run (junit.xml, summary.json, index.html) must be
/// rewritten after `ev`: when the run starts, after each unit, on Ctrl-C and at the end, so
/// a run that is interrupted or even killed always leaves valid files behind.
pub fn rewrite_due(ev: &Event) -> bool {
    matches!(
        ev,
        Event::RunStarted { .. }
            | Event::UnitFinished { .. }
            | Event::Interrupted { .. }
            | Event::RunFinished { .. }
    )
}

/// The run's `events.jsonl` reporter. The file is created new: a run never appends to (or
/// truncates) another run's log.
pub fn events_log(
    run_dir: &RunDir,
) -> Result<JsonLinesReporter<BufWriter<std::fs::File>>, ReportError> {
    let path = run_dir.join(RunDir::EVENTS);
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|source| ReportError::Io {
            path: path.clone(),
            source,
        })?;
    Ok(JsonLinesReporter::new(BufWriter::new(file), path))
}

/// A sink for run events.
pub trait Reporter: Send {
    /// Handles one event. Called in event order; `RunFinished` is the last call.
    fn event(&mut self, ev: &Envelope) -> Result<(), ReportError>;
}

/// Feeds every event to several reporters. A reporter that fails is still fed later
/// events (a full disk may clear; the terminal must keep going regardless); the failures of
/// one event come back together as [`ReportError::Fanout`].
#[derive(Default)]
pub struct Fanout {
    reporters: Vec<(&'static str, Box<dyn Reporter>)>,
}

impl fmt::Debug for Fanout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<_> = self.reporters.iter().map(|(n, _)| *n).collect();
        f.debug_struct("Fanout").field("reporters", &names).finish()
    }
}

impl Fanout {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a reporter; `name` labels its errors.
    pub fn push(&mut self, name: &'static str, reporter: impl Reporter + 'static) -> &mut Self {
        self.reporters.push((name, Box::new(reporter)));
        self
    }

    pub fn len(&self) -> usize {
        self.reporters.len()
    }

    pub fn is_empty(&self) -> bool {
        self.reporters.is_empty()
    }

    /// The standard set for a run: the terminal (human or JSON lines), `events.jsonl`,
    /// `junit.xml`, `summary.json` and `index.html` in `run_dir`.
    pub fn standard(run_dir: &RunDir, terminal: TerminalOptions) -> Result<Self, ReportError> {
        Self::standard_with(run_dir, TerminalReporter::new(terminal))
    }

    /// [`Fanout::standard`] with a given terminal reporter (e.g. one writing to a buffer).
    pub fn standard_with(
        run_dir: &RunDir,
        terminal: TerminalReporter,
    ) -> Result<Self, ReportError> {
        let mut f = Fanout::new();
        f.push("terminal", terminal)
            .push("events.jsonl", events_log(run_dir)?)
            .push("junit.xml", JunitReporter::new(run_dir.path()))
            .push("summary.json", SummaryReporter::new(run_dir.path()))
            .push("index.html", HtmlReporter::new(run_dir.path()))
            .push("hvlab.log", LogReporter);
        Ok(f)
    }
}

impl Reporter for Fanout {
    fn event(&mut self, ev: &Envelope) -> Result<(), ReportError> {
        let mut failed = Vec::new();
        for (name, r) in &mut self.reporters {
            if let Err(e) = r.event(ev) {
                failed.push((*name, e));
            }
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(ReportError::Fanout(failed, self.reporters.len()))
        }
    }
}

#[cfg(test)]
mod tests;
