//! Caps every free-text field of an [`Event`] as it enters the stream, so each reporter
//! (terminal, events.jsonl, junit.xml, summary.json, index.html, hvlab.log) is bounded by
//! construction however long a command line, message or tool output was.

use lab_config::{LABEL_MAX, MESSAGE_MAX, cap_in_place};

use crate::events::{Crash, Event, StepOutcome, StepOutput, UnitOutcome};

/// Tool output kept per stream in events and reports (bytes).
pub const OUTPUT_MAX: usize = 64 * 1024;

/// Short free text that names things (bucket titles, modules, symbols, leftovers).
const NAME_MAX: usize = 512;

impl Event {
    /// The event with every free-text field capped (see [`lab_config::cap_text`]).
    pub fn bounded(mut self) -> Self {
        match &mut self {
            Event::StepStarted { label, .. } => cap_in_place(label, LABEL_MAX),
            Event::StepFinished {
                label,
                outcome,
                output,
                ..
            } => {
                cap_in_place(label, LABEL_MAX);
                cap_step_outcome(outcome);
                if let Some(o) = output {
                    cap_output(o);
                }
            }
            Event::CrashDetected { crash, .. } => cap_crash(crash),
            Event::UnitFinished { outcome, .. } | Event::UnitRetried { outcome, .. } => {
                cap_unit_outcome(outcome)
            }
            Event::InfraError {
                message, causes, ..
            } => {
                cap_in_place(message, MESSAGE_MAX);
                cap_causes(causes);
            }
            Event::Warning { message } => cap_in_place(message, MESSAGE_MAX),
            Event::HostDrained { host, reason } => {
                cap_in_place(host, NAME_MAX);
                cap_in_place(reason, MESSAGE_MAX);
            }
            Event::DumpsRemoved {
                bucket, removed, ..
            } => {
                cap_in_place(bucket, NAME_MAX);
                // The paths are the record of what was deleted; a long list keeps its head.
                removed.truncate(1000);
            }
            Event::Leftover {
                what,
                how_to_remove,
            } => {
                cap_in_place(what, MESSAGE_MAX);
                cap_in_place(how_to_remove, MESSAGE_MAX);
            }
            Event::RunStarted { .. }
            | Event::VmProvisioning { .. }
            | Event::VmReady { .. }
            | Event::VmDeployed { .. }
            | Event::VmRemoved { .. }
            | Event::UnitStarted { .. }
            | Event::ArtifactCollected { .. }
            | Event::Interrupted { .. }
            | Event::RunFinished { .. } => {}
        }
        self
    }
}

/// A cause chain is a handful of lines; a runaway one keeps its first links.
fn cap_causes(causes: &mut Vec<String>) {
    causes.truncate(16);
    for c in causes.iter_mut() {
        cap_in_place(c, MESSAGE_MAX);
    }
}

fn cap_unit_outcome(o: &mut UnitOutcome) {
    match o {
        UnitOutcome::Failed { message, crash } => {
            cap_in_place(message, MESSAGE_MAX);
            if let Some(c) = crash {
                cap_crash(c);
            }
        }
        UnitOutcome::Errored { message, causes } => {
            cap_in_place(message, MESSAGE_MAX);
            cap_causes(causes);
        }
        UnitOutcome::Passed | UnitOutcome::Cancelled => {}
    }
}

fn cap_step_outcome(o: &mut StepOutcome) {
    match o {
        StepOutcome::Failed { message } | StepOutcome::Errored { message } => {
            cap_in_place(message, MESSAGE_MAX)
        }
        StepOutcome::Passed
        | StepOutcome::TimedOut
        | StepOutcome::Crashed
        | StepOutcome::Skipped
        | StepOutcome::Cancelled => {}
    }
}

fn cap_output(o: &mut StepOutput) {
    cap_in_place(&mut o.stdout, OUTPUT_MAX);
    cap_in_place(&mut o.stderr, OUTPUT_MAX);
}

fn cap_crash(c: &mut Crash) {
    if let Some(s) = &mut c.step {
        cap_in_place(s, LABEL_MAX);
    }
    if let Some(t) = &mut c.triage_error {
        cap_in_place(t, MESSAGE_MAX);
    }
    if let Some(b) = &mut c.bucket {
        cap_in_place(&mut b.title, NAME_MAX);
    }
    if let Some(b) = &mut c.bugcheck {
        for s in [&mut b.name, &mut b.module, &mut b.symbol]
            .into_iter()
            .flatten()
        {
            cap_in_place(s, NAME_MAX);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::events::UnitId;

    fn unit() -> UnitId {
        UnitId {
            scenario: "s".into(),
            template: "t".into(),
            iteration: 1,
        }
    }

    #[test]
    fn a_step_with_a_huge_command_line_and_output_is_bounded() {
        let huge = "x".repeat(3 * 1024 * 1024);
        let ev = Event::StepFinished {
            unit: unit(),
            path: "steps[0]".into(),
            label: format!("exec {huge}"),
            outcome: StepOutcome::Failed {
                message: format!("exec {huge}: exit code 1"),
            },
            duration: Duration::from_millis(3),
            output: Some(StepOutput {
                exit_code: Some(1),
                stdout: huge.clone(),
                stderr: huge.clone(),
                counters: None,
            }),
        }
        .bounded();
        let json = serde_json::to_string(&ev).unwrap();
        assert!(
            json.len() < 2 * OUTPUT_MAX + 2 * MESSAGE_MAX,
            "{} bytes",
            json.len()
        );
        let Event::StepFinished { label, .. } = ev else {
            unreachable!()
        };
        assert!(
            label.len() <= LABEL_MAX && label.ends_with("MiB cut]"),
            "{label}"
        );
    }

    #[test]
    fn infra_and_unit_messages_are_bounded() {
        let huge = "é".repeat(100_000);
        let ev = Event::InfraError {
            vm: None,
            message: huge.clone(),
            causes: vec![huge.clone()],
        }
        .bounded();
        assert!(matches!(&ev, Event::InfraError { message, causes, .. }
            if message.len() <= MESSAGE_MAX && causes[0].len() <= MESSAGE_MAX));
        let ev = Event::UnitFinished {
            unit: unit(),
            vm: "vm".into(),
            seed: 1,
            outcome: UnitOutcome::Errored {
                message: huge.clone(),
                causes: vec![huge],
            },
            duration: Duration::ZERO,
            guest_junit: vec![],
        }
        .bounded();
        let Event::UnitFinished {
            outcome: UnitOutcome::Errored { message, causes },
            ..
        } = ev
        else {
            unreachable!()
        };
        assert!(message.len() <= MESSAGE_MAX && message.ends_with("KiB cut]"));
        assert!(causes[0].len() <= MESSAGE_MAX);
    }
}
