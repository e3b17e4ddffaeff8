//! The terminal reporter. Human mode talks to stderr: progress bars when stderr is a
//! terminal (plain lines otherwise), a line per finished unit, crash lines and the final
//! summary. JSON mode writes each event as a JSON line to stdout and nothing else, so
//! stdout stays pure data for pipes.

use std::collections::HashMap;
use std::io::{self, IsTerminal, Write};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::jsonl::JsonLinesReporter;
use super::model::RunModel;
use super::summary_text::{Paint, render_summary};
use super::{ReportError, Reporter, text};
use crate::events::{Envelope, Event, UnitId, UnitOutcome};

/// `--format human|json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputFormat {
    #[default]
    Human,
    Json,
}

/// How the terminal reporter renders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TerminalOptions {
    pub format: OutputFormat,
    /// ANSI colours in human mode.
    pub color: bool,
    /// Progress bars in human mode (only sensible on a terminal).
    pub progress: bool,
}

impl TerminalOptions {
    /// Colours and bars only when stderr is a terminal; no colours when `no_color` (the
    /// caller resolves `NO_COLOR`, no-color.org, from its environment).
    pub fn detect(format: OutputFormat, no_color: bool) -> Self {
        let tty = io::stderr().is_terminal();
        TerminalOptions {
            format,
            color: tty && !no_color,
            progress: tty,
        }
    }
}

/// Renders the run for a person (stderr) or a program (stdout).
#[derive(Debug)]
pub struct TerminalReporter(Inner);

enum Inner {
    Human(Box<Human>),
    Json(JsonLinesReporter<Box<dyn Write + Send>>),
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Inner::Human(_) => "Human",
            Inner::Json(_) => "Json",
        })
    }
}

impl TerminalReporter {
    /// Writes to stderr (human) or stdout (JSON).
    pub fn new(opts: TerminalOptions) -> Self {
        let out: Box<dyn Write + Send> = match opts.format {
            OutputFormat::Human => Box::new(io::stderr()),
            OutputFormat::Json => Box::new(io::stdout()),
        };
        Self::with_writer(opts, out)
    }

    /// Writes to `out` instead (tests). Progress bars always draw on stderr, so they are
    /// only used when `opts.progress` is set.
    pub fn with_writer(opts: TerminalOptions, out: Box<dyn Write + Send>) -> Self {
        TerminalReporter(match opts.format {
            OutputFormat::Json => Inner::Json(JsonLinesReporter::new(out, "stdout")),
            OutputFormat::Human => Inner::Human(Box::new(Human {
                out,
                paint: Paint { color: opts.color },
                progress: opts.progress,
                bars: None,
                model: RunModel::new(),
            })),
        })
    }
}

impl Reporter for TerminalReporter {
    fn event(&mut self, ev: &Envelope) -> Result<(), ReportError> {
        match &mut self.0 {
            Inner::Human(h) => h.event(ev).map_err(ReportError::Terminal),
            Inner::Json(j) => j.event(ev),
        }
    }
}

struct Bars {
    multi: MultiProgress,
    overall: ProgressBar,
    units: HashMap<UnitId, ProgressBar>,
}

struct Human {
    out: Box<dyn Write + Send>,
    paint: Paint,
    progress: bool,
    bars: Option<Bars>,
    model: RunModel,
}

impl Human {
    /// One line above the bars (or plain when there are none).
    fn line(&mut self, s: &str) -> io::Result<()> {
        match &self.bars {
            // println is a no-op on a hidden target: then write plainly.
            Some(b) if !b.multi.is_hidden() => b.multi.println(s),
            _ => writeln!(self.out, "{s}"),
        }
    }

    fn event(&mut self, ev: &Envelope) -> io::Result<()> {
        self.model.apply(ev);
        let p = self.paint;
        match &ev.event {
            Event::RunStarted {
                run_id,
                lab,
                lab_kind,
                units,
                seed,
                max_vms,
                ..
            } => {
                if self.progress {
                    self.bars = Some(start_bars(units.len() as u64));
                }
                self.line(&format!(
                    "hvlab run {run_id}: {} units on {lab} ({lab_kind}), up to {max_vms} VMs, seed {seed}",
                    units.len()
                ))?;
            }
            Event::UnitStarted { unit, vm, .. } => {
                if let Some(b) = &mut self.bars {
                    let bar = b
                        .multi
                        .add(ProgressBar::new_spinner().with_style(spinner_style()));
                    bar.set_prefix(format!("{unit} on {vm}"));
                    bar.enable_steady_tick(Duration::from_millis(120));
                    b.units.insert(unit.clone(), bar);
                }
            }
            Event::StepStarted {
                unit,
                label,
                timeout,
                ..
            } => {
                if let Some(bar) = self.bars.as_ref().and_then(|b| b.units.get(unit)) {
                    bar.set_message(format!("{label} (timeout {})", text::timeout(*timeout)));
                    bar.reset_elapsed();
                }
            }
            Event::CrashDetected { unit, vm, crash } => {
                let mut s = format!(
                    "{} {unit} on {vm}: {}",
                    p.status("CRASH"),
                    text::crash(crash)
                );
                if let Some(b) = &crash.bucket {
                    s.push_str(&format!("\n        crash {}", text::bucket(b)));
                }
                for d in &crash.dumps {
                    s.push_str(&format!("\n        dump {}", d.display()));
                }
                for l in &crash.dumps_lost {
                    s.push_str(&format!("\n        dump {} not kept: {}", l.dump, l.reason));
                }
                self.line(&s)?;
            }
            Event::UnitFinished {
                unit,
                outcome,
                duration,
                ..
            } => {
                if let Some(b) = &mut self.bars {
                    if let Some(bar) = b.units.remove(unit) {
                        bar.finish_and_clear();
                        b.multi.remove(&bar);
                    }
                    b.overall.inc(1);
                }
                let reason = text::outcome_reason(outcome);
                let sep = if reason.is_empty() { "" } else { "  " };
                self.line(&format!(
                    "{} [{:>9}] {unit}{sep}{reason}",
                    p.status(text::outcome_word(Some(outcome))),
                    text::duration(*duration)
                ))?;
            }
            Event::UnitRetried {
                unit,
                attempt,
                outcome,
                duration,
                ..
            } => {
                if let Some(bar) = self.bars.as_mut().and_then(|b| b.units.remove(unit)) {
                    bar.finish_and_clear();
                    if let Some(b) = &self.bars {
                        b.multi.remove(&bar);
                    }
                }
                let (what, again) = match outcome {
                    UnitOutcome::Failed { .. } => ("failed", "running it again"),
                    _ => ("errored", "running it again on a fresh VM"),
                };
                self.line(&format!(
                    "{} [{:>9}] {unit}  attempt {attempt} {what}: {}; {again}",
                    p.status("RETRY"),
                    text::duration(*duration),
                    text::outcome_reason(outcome)
                ))?;
            }
            Event::InfraError {
                vm,
                message,
                causes,
            } => {
                let line = text::infra_error(vm.as_deref(), message, causes);
                self.line(&format!("{} {line}", p.status("ERROR")))?;
            }
            Event::Warning { message } => {
                self.line(&format!("{} {message}", p.status("WARN")))?;
            }
            Event::DumpsRemoved {
                bucket,
                keep,
                removed,
            } => self.line(&text::dumps_removed(bucket, *keep, removed))?,
            Event::Interrupted { count } => self.line(if *count <= 1 {
                "interrupted: stopping after the current steps, collecting and tearing down \
                 (press Ctrl-C again to force)"
            } else {
                "interrupted again: powering off and deleting VMs now"
            })?,
            Event::HostDrained { host, reason } => {
                self.line(&format!("{} host {host}: {reason}", p.status("DRAIN")))?;
            }
            Event::Leftover {
                what,
                how_to_remove,
            } => self.line(&format!(
                "left behind: {what} (remove with: {how_to_remove})"
            ))?,
            Event::RunFinished { .. } => {
                if let Some(b) = self.bars.take() {
                    for bar in b.units.values() {
                        bar.finish_and_clear();
                    }
                    b.overall.finish_and_clear();
                    b.multi.clear()?;
                }
                let summary = render_summary(&self.model, p);
                self.out.write_all(b"\n")?;
                self.out.write_all(summary.as_bytes())?;
            }
            Event::VmProvisioning { .. }
            | Event::VmReady { .. }
            | Event::VmDeployed { .. }
            | Event::VmRemoved { .. }
            | Event::StepFinished { .. }
            | Event::ArtifactCollected { .. } => {}
        }
        self.out.flush()
    }
}

fn start_bars(units: u64) -> Bars {
    let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template("[{elapsed_precise}] {bar:30} {pos}/{len} units")
        .expect("valid template");
    let overall = multi.add(ProgressBar::new(units).with_style(style));
    // Ticks keep the elapsed time moving while no unit finishes.
    overall.enable_steady_tick(Duration::from_millis(500));
    Bars {
        multi,
        overall,
        units: HashMap::new(),
    }
}

fn spinner_style() -> ProgressStyle {
    ProgressStyle::with_template("  {spinner} {prefix}: {wide_msg} {elapsed}")
        .expect("valid template")
}
