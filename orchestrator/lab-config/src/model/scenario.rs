//! Resolved scenario: VM matrix, timeouts with defaults applied, and steps whose references
//! (drivers, tools, metrics, checkpoints, baselines) are checked against the payload.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::Origin;
use super::invocation::{InvocationContext, RenderError, expand_builtins};
use super::payload::{ArgValue, Payload};

/// A validated scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Scenario name.
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// The scenario file.
    pub file: Arc<Path>,
    /// Tags.
    pub tags: Vec<String>,
    /// The payload it deploys.
    pub payload: Arc<Payload>,
    /// VM template names (the matrix), in the lab's order when not given.
    pub vms: Vec<String>,
    /// Iterations per VM.
    pub iterations: u32,
    /// Re-runs of a failed iteration (`retries:`; `hvlab run --retries` overrides it).
    pub retries: u32,
    /// Time limit of one iteration on one VM.
    pub timeout: Duration,
    /// Default step time limit (already applied to every step below).
    pub step_timeout: Duration,
    /// Setup steps.
    pub setup: Vec<Step>,
    /// Test steps.
    pub steps: Vec<Step>,
}

impl Scenario {
    /// True when the scenario has `tag`.
    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t == tag)
    }

    /// Scenarios tagged `fault` are expected to fail and are left out of default runs.
    pub fn is_fault(&self) -> bool {
        self.has_tag("fault")
    }
}

/// One step.
#[derive(Debug, Clone)]
pub struct Step {
    /// The name given in the file, if any.
    pub name: Option<String>,
    /// What it does.
    pub kind: StepKind,
    /// Where it was written.
    pub origin: Origin,
}

impl Step {
    /// The name for reports: the given name, else a short description.
    pub fn display_name(&self) -> String {
        // A generated label repeats the whole command line; keep it a label.
        let label = self.name.clone().unwrap_or_else(|| self.kind.describe());
        match crate::cap::cap_text(&label, crate::cap::LABEL_MAX) {
            std::borrow::Cow::Borrowed(_) => label,
            std::borrow::Cow::Owned(capped) => capped,
        }
    }
}

/// What a step does.
#[derive(Debug, Clone)]
pub enum StepKind {
    /// Copy files, create services, start non-demand drivers in dependency order.
    Deploy,
    /// Start a driver.
    DriverStart(DriverOp),
    /// Stop a driver.
    DriverStop(DriverOp),
    /// Stop then start a driver.
    DriverRestart(DriverOp),
    /// Wait for a driver state.
    DriverWait(DriverOp),
    /// Run a payload tool.
    Run(RunTool),
    /// Run a raw command.
    Exec(Exec),
    /// Run steps concurrently.
    Parallel(Vec<Step>),
    /// Run steps in order.
    Sequence(Vec<Step>),
    /// Repeat steps.
    Repeat {
        /// Count or duration.
        mode: RepeatMode,
        /// One round.
        steps: Vec<Step>,
    },
    /// Sleep.
    Sleep(SleepSpec),
    /// Take a checkpoint.
    Checkpoint {
        /// Name.
        name: String,
    },
    /// Restore a checkpoint (`deployed` or one taken earlier).
    Restore {
        /// Name.
        name: String,
    },
    /// Reboot and wait until ready.
    Reboot {
        /// Time allowed.
        timeout: Duration,
    },
    /// Read a metric and remember it.
    RecordMetric {
        /// The metric.
        metric: MetricRef,
        /// Name to remember it under.
        as_name: String,
    },
    /// Check a metric.
    AssertMetric(AssertMetric),
    /// Expect a bugcheck.
    ExpectBugcheck {
        /// Expected code (`None` = any).
        code: Option<u32>,
        /// Time to wait for it.
        within: Duration,
    },
    /// Fail if the guest bugchecked during this iteration.
    ExpectNoBugcheck,
}

impl StepKind {
    /// A short description, e.g. `driver_stop sample_ebpf_ext (expect stop_pending)`.
    pub fn describe(&self) -> String {
        let state = |s: win_vocab::ServiceState| s.to_string();
        match self {
            StepKind::Deploy => "deploy".to_owned(),
            StepKind::DriverStart(o) => format!(
                "driver_start {} (expect {})",
                o.driver.service,
                state(o.expect)
            ),
            StepKind::DriverStop(o) => format!(
                "driver_stop {} (expect {})",
                o.driver.service,
                state(o.expect)
            ),
            StepKind::DriverRestart(o) => format!(
                "driver_restart {} (expect {})",
                o.driver.service,
                state(o.expect)
            ),
            StepKind::DriverWait(o) => {
                format!("driver_wait {} ({})", o.driver.service, state(o.expect))
            }
            StepKind::Run(r) => format!("run {}", r.tool.name),
            StepKind::Exec(e) => format!("exec {}", e.command.join(" ")),
            StepKind::Parallel(s) => format!("parallel ({} steps)", s.len()),
            StepKind::Sequence(s) => format!("sequence ({} steps)", s.len()),
            StepKind::Repeat {
                mode: RepeatMode::Count(n),
                ..
            } => format!("repeat {n}x"),
            StepKind::Repeat {
                mode: RepeatMode::Duration(d),
                ..
            } => format!("repeat for {}", crate::values::format_duration(*d)),
            StepKind::Sleep(SleepSpec::Fixed(d)) => {
                format!("sleep {}", crate::values::format_duration(*d))
            }
            StepKind::Sleep(SleepSpec::Random { min, max }) => {
                format!(
                    "sleep {}..{}",
                    crate::values::format_duration(*min),
                    crate::values::format_duration(*max)
                )
            }
            StepKind::Checkpoint { name } => format!("checkpoint {name}"),
            StepKind::Restore { name } => format!("restore {name}"),
            StepKind::Reboot { .. } => "reboot".to_owned(),
            StepKind::RecordMetric { metric, as_name } => {
                format!("record_metric {} as {as_name}", metric.name)
            }
            StepKind::AssertMetric(a) => format!("assert_metric {}", a.metric.name),
            StepKind::ExpectBugcheck { code: Some(c), .. } => format!("expect_bugcheck {c:#x}"),
            StepKind::ExpectBugcheck { code: None, .. } => "expect_bugcheck".to_owned(),
            StepKind::ExpectNoBugcheck => "expect_no_bugcheck".to_owned(),
        }
    }
}

/// A resolved driver reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriverRef {
    /// Index in the scenario payload's `drivers`.
    pub index: usize,
    /// Service name.
    pub service: String,
}

/// A driver control step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriverOp {
    /// The driver.
    pub driver: DriverRef,
    /// State to reach within `timeout`. `stop_pending`: the stop was accepted but has not
    /// completed (a service that reaches `stopped` instead fails); see docs/scenarios.md.
    pub expect: win_vocab::ServiceState,
    /// Time to wait.
    pub timeout: Duration,
}

/// A resolved tool reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolRef {
    /// Index in the scenario payload's `tools`.
    pub index: usize,
    /// Tool name.
    pub name: String,
}

/// A bound on a reported counter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterCheck {
    /// Counter name.
    pub name: String,
    /// Smallest accepted value.
    pub min: Option<i64>,
    /// Largest accepted value.
    pub max: Option<i64>,
}

impl CounterCheck {
    /// True when `value` is within the bounds.
    pub fn accepts(&self, value: i64) -> bool {
        self.min.is_none_or(|m| value >= m) && self.max.is_none_or(|m| value <= m)
    }
}

/// A `run` step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunTool {
    /// The tool.
    pub tool: ToolRef,
    /// Argument values given by the step (typed; defaults are applied by `argv`).
    pub args: BTreeMap<String, ArgValue>,
    /// Exit codes that pass.
    pub exit_codes: Vec<i64>,
    /// Counter bounds (requires the tool to report counters).
    pub counters: Vec<CounterCheck>,
    /// Time limit.
    pub timeout: Duration,
}

impl RunTool {
    /// The argv to execute in the guest.
    pub fn argv(
        &self,
        payload: &Payload,
        ctx: &InvocationContext<'_>,
    ) -> Result<Vec<String>, RenderError> {
        payload.tools[self.tool.index].render(&self.args, ctx)
    }
}

/// An `exec` step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exec {
    /// Program and arguments as written (builtins unexpanded).
    pub command: Vec<String>,
    /// Exit codes that pass.
    pub exit_codes: Vec<i64>,
    /// Time limit.
    pub timeout: Duration,
}

impl Exec {
    /// The argv with `{seed}`, `{iteration}`, `{vm}`, `{scenario}` expanded.
    pub fn argv(&self, ctx: &InvocationContext<'_>) -> Result<Vec<String>, RenderError> {
        self.command
            .iter()
            .map(|e| expand_builtins(e, ctx))
            .collect()
    }
}

/// How long a `repeat` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepeatMode {
    /// This many rounds.
    Count(u32),
    /// Start rounds until this much time has passed.
    Duration(Duration),
}

/// A sleep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SleepSpec {
    /// Fixed.
    Fixed(Duration),
    /// Uniform in `[min, max]`, drawn from the iteration's seeded RNG.
    Random {
        /// Lower bound.
        min: Duration,
        /// Upper bound.
        max: Duration,
    },
}

/// A resolved metric reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricRef {
    /// Index in the scenario payload's `metrics`.
    pub index: usize,
    /// Metric name.
    pub name: String,
}

/// An `assert_metric` step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssertMetric {
    /// The metric.
    pub metric: MetricRef,
    /// The condition.
    pub condition: MetricCondition,
    /// Poll until it holds or this passes (`None`: check once).
    pub within: Option<Duration>,
}

/// What `assert_metric` checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetricCondition {
    /// Equal to.
    Equals(i64),
    /// At most.
    AtMost(i64),
    /// At least.
    AtLeast(i64),
    /// Within `tolerance` of a value recorded earlier in the same iteration.
    Baseline {
        /// The `record_metric` name.
        name: String,
        /// Allowed absolute difference.
        tolerance: u64,
    },
}

impl MetricCondition {
    /// True when `value` satisfies the condition (`baseline` = the recorded value, if any).
    pub fn holds(&self, value: i64, baseline: Option<i64>) -> bool {
        match self {
            MetricCondition::Equals(x) => value == *x,
            MetricCondition::AtMost(x) => value <= *x,
            MetricCondition::AtLeast(x) => value >= *x,
            MetricCondition::Baseline { tolerance, .. } => {
                baseline.is_some_and(|b| value.abs_diff(b) <= *tolerance)
            }
        }
    }
}
