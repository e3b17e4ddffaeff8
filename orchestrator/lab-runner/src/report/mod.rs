//! Reporters: everything a user sees or a results file holds is rendered here from the
//! runner's [`Envelope`] stream (the runner itself never prints).
//!
//! ```text
//! runner ──Envelope──> Fanout ─┬─> TerminalReporter   stderr (human) | stdout (JSON lines)
//!                              ├─> JsonLinesReporter  events.jsonl
//!                              ├─> JunitReporter      junit.xml    (on a schedule)
//!                              ├─> SummaryReporter    summary.json (on a schedule)
//!                              └─> HtmlReporter       index.html   (on a schedule)
//! ```
//! Reporters are plain sync code; a failing one never stops the others. A reporter that
//! fails (a full or read-only disk) is announced to all of them as an
//! [`Event::InfraError`], so the terminal, junit.xml and summary.json say which file could
//! not be written and why, and the run ends with exit code 3.

mod batch;
mod crash_dirs;
#[cfg(test)]
mod fixtures;
mod guest_junit;
mod html;
mod jsonl;
mod junit;
mod junit_case;
mod log;
mod model;
mod steplog;
mod summary;
mod summary_text;
mod terminal;
pub(crate) mod text;

use std::fmt;
use std::fs::OpenOptions;
use std::io;
use std::path::{Path, PathBuf};

pub use batch::write_all;
pub use crash_dirs::{CrashDirReporter, crash_folder};
pub use html::{HtmlReporter, ReproBucket, ReproView};
pub use jsonl::{JsonLinesReporter, LineLog, Truncate};
pub use junit::JunitReporter;
pub use log::LogReporter;
pub use model::{BucketSeen, RunEnd, RunInfo, RunModel, StepRecord, UnitRecord};
pub use steplog::StepLogReporter;
pub use summary::{Summary, SummaryReporter, build_summary};
pub use summary_text::{Paint, render_summary};
pub use terminal::{OutputFormat, TerminalOptions, TerminalReporter};
pub use text::dumps_removed as dumps_removed_line;
pub use text::{duration as duration_text, timeout as timeout_text};

use crate::events::{Envelope, Event};
use crate::results::{Reserve, ResultsError, RunDir};

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
/// rewritten after `ev` (thinned out for unit ends by [`Rewrites`]): when the run starts,
/// after a unit, on Ctrl-C and at the end, so
/// a run that is interrupted or even killed always leaves valid files behind; and on a lab
/// error, so one that happens while the final files are written still reaches them.
pub fn rewrite_due(ev: &Event) -> bool {
    matches!(
        ev,
        Event::RunStarted { .. }
            | Event::UnitFinished { .. }
            | Event::UnitRetried { .. }
            | Event::InfraError { .. }
            | Event::Interrupted { .. }
            | Event::RunFinished { .. }
    )
}

/// When a whole-run file (junit.xml, summary.json, index.html, crash indexes) is rewritten.
///
/// Rebuilding one costs time proportional to the units so far, so rewriting after every
/// unit made a run's reporting quadratic (10,000 units: 10,000 rebuilds of up to 10,000
/// units). Always on the events of [`rewrite_due`] other than unit ends; after a unit ends
/// (finished or retried) only once the units since the last rewrite reach a tenth of the
/// units then written (so every unit while there are fewer than ten, and a geometric
/// number of rebuilds in all: constant cost per unit), or [`Rewrites::MAX_STALE`] has
/// passed. A killed run leaves files at most that stale; `events.jsonl` has every event.
#[derive(Debug, Default)]
pub struct Rewrites {
    units: usize,
    units_written: usize,
    written_at: Option<std::time::Instant>,
}

impl Rewrites {
    /// Longest a finished unit waits to reach the whole-run files.
    pub const MAX_STALE: std::time::Duration = std::time::Duration::from_secs(5);

    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the files must be rewritten after `ev` (counts the unit ends it sees).
    pub fn due(&mut self, ev: &Event) -> bool {
        let unit_end = matches!(ev, Event::UnitFinished { .. } | Event::UnitRetried { .. });
        self.units += usize::from(unit_end);
        let due = if unit_end {
            let step = (self.units_written / 10).max(1);
            self.units >= self.units_written + step
                || self
                    .written_at
                    .is_none_or(|t| t.elapsed() >= Self::MAX_STALE)
        } else {
            rewrite_due(ev)
        };
        if due {
            self.units_written = self.units;
            self.written_at = Some(std::time::Instant::now());
        }
        due
    }
}

/// The run's `events.jsonl` reporter. The file is created new: a run never appends to (or
/// truncates) another run's log. Unbuffered on purpose: [`LineLog`] writes each event as one
/// whole line and cuts a partial one back, so the file never ends mid-JSON.
pub fn events_log(
    run_dir: &RunDir,
) -> Result<JsonLinesReporter<LineLog<std::fs::File>>, ReportError> {
    let path = run_dir.join(RunDir::EVENTS);
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|source| ReportError::Io {
            path: path.clone(),
            source,
        })?;
    Ok(JsonLinesReporter::new(LineLog::new(file, 0), path))
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
    /// Room held for the final files, released when `RunFinished` arrives.
    reserve: Option<Reserve>,
    /// Reporter failures already announced as `InfraError` (each message once).
    announced: Vec<String>,
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

    /// Holds [`Reserve::BYTES`] in `dir` until the run finishes, so the final junit.xml and
    /// summary.json can still be written when the run filled its disk.
    pub fn hold_reserve(&mut self, dir: &Path) -> Result<&mut Self, ReportError> {
        self.reserve = Some(Reserve::create(dir)?);
        Ok(self)
    }

    /// Whether any reporter failed during the run (a results file is missing or stale):
    /// the run's exit code is then 3.
    pub fn failed(&self) -> bool {
        !self.announced.is_empty()
    }

    /// The failures announced so far, as their `InfraError` messages.
    pub fn failures(&self) -> &[String] {
        &self.announced
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
        f.hold_reserve(run_dir.path())?
            .push("terminal", terminal)
            .push("events.jsonl", events_log(run_dir)?)
            // Before the files that link to crash folders, so the folders exist first.
            .push("crashes", CrashDirReporter::new(run_dir.path()))
            .push("junit.xml", JunitReporter::new(run_dir.path()))
            .push("summary.json", SummaryReporter::new(run_dir.path()))
            .push("index.html", HtmlReporter::new(run_dir.path()))
            .push("steps.log", StepLogReporter::new(run_dir.path()))
            .push("hvlab.log", LogReporter);
        Ok(f)
    }
}

impl Fanout {
    /// Feeds one event to every reporter and returns the failures.
    fn deliver(&mut self, ev: &Envelope) -> Vec<(&'static str, ReportError)> {
        let mut failed = Vec::new();
        for (name, r) in &mut self.reporters {
            if let Err(e) = r.event(ev) {
                failed.push((*name, e));
            }
        }
        failed
    }

    /// Announces each new failure to every reporter as an `InfraError`. Announcing can fail
    /// in turn (another file on the same full disk); each distinct message is announced
    /// once, so this ends.
    fn announce(
        &mut self,
        at: chrono::DateTime<chrono::Utc>,
        failed: &[(&'static str, ReportError)],
    ) {
        let mut pending: Vec<String> = failed
            .iter()
            .map(|(name, e)| format!("record results: {name}: {}", lab_error::Chain(e)))
            .collect();
        while let Some(message) = pending.pop() {
            if self.announced.contains(&message) {
                continue;
            }
            self.announced.push(message.clone());
            let ev = Envelope {
                at,
                event: Event::InfraError {
                    vm: None,
                    message,
                    causes: vec![],
                },
            };
            for (name, e) in self.deliver(&ev) {
                pending.push(format!("record results: {name}: {}", lab_error::Chain(&e)));
            }
        }
    }
}

impl Reporter for Fanout {
    fn event(&mut self, ev: &Envelope) -> Result<(), ReportError> {
        let mut failed = Vec::new();
        if matches!(ev.event, Event::RunFinished { .. })
            && let Some(mut reserve) = self.reserve.take()
            && let Err(e) = reserve.release()
        {
            failed.push(("reserve", ReportError::Results(e)));
        }
        failed.extend(self.deliver(ev));
        if failed.is_empty() {
            Ok(())
        } else {
            self.announce(ev.at, &failed);
            Err(ReportError::Fanout(failed, self.reporters.len()))
        }
    }
}

#[cfg(test)]
mod tests;
