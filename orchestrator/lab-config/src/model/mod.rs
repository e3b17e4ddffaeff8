//! The validated, resolved model the runner consumes: a [`Lab`], [`Payload`]s and
//! [`Scenario`]s with every reference checked and every default applied. Nothing here is a
//! wire type; each item remembers where it was written ([`Origin`]) for later messages.

pub(crate) mod invocation;
mod lab;
pub(crate) mod payload;
mod scenario;

use std::path::Path;
use std::sync::Arc;

pub use invocation::{InvocationContext, RenderError};
pub use lab::{
    Connection, Credentials, Debugger, GuestConfig, GuestTransport, Host, HyperVLab,
    HyperVTemplate, Lab, LabBackend, Secret, SecretError, SecretRef, SimLab, SimTemplate,
    TemplateSummary, Verifier, VerifierFlags,
};
pub use payload::{
    ArgKind, ArgValue, Driver, Metric, MetricSource, Payload, PayloadFile, ResultContract, Tool,
    ToolArg, UnsetVariable,
};
pub use scenario::{
    AssertMetric, CounterCheck, DriverOp, DriverRef, Exec, MetricCondition, MetricRef, RepeatMode,
    RunTool, Scenario, SleepSpec, Step, StepKind, ToolRef,
};

use crate::values::Loc;

/// Where an item was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The file.
    pub file: Arc<Path>,
    /// Line and column in it.
    pub loc: Loc,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}:{}",
            self.file.display(),
            self.loc.line,
            self.loc.column
        )
    }
}

/// Everything a run needs: one lab, the payloads its scenarios use, and the scenarios.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The lab the scenarios run on.
    pub lab: Lab,
    /// Payloads used by `scenarios` (shared with them).
    pub payloads: Vec<Arc<Payload>>,
    /// Validated scenarios, in file-name order.
    pub scenarios: Vec<Scenario>,
}

/// One cell of the run matrix: a scenario on a VM template for one iteration.
#[derive(Debug, Clone, Copy)]
pub struct MatrixEntry<'a> {
    /// The scenario.
    pub scenario: &'a Scenario,
    /// The VM template name.
    pub template: &'a str,
    /// 0-based iteration.
    pub iteration: u32,
}

impl Plan {
    /// Scenario x VM template x iteration, in a stable order.
    pub fn matrix(&self) -> Vec<MatrixEntry<'_>> {
        let mut out = Vec::new();
        for scenario in &self.scenarios {
            for template in &scenario.vms {
                for iteration in 0..scenario.iterations {
                    out.push(MatrixEntry {
                        scenario,
                        template,
                        iteration,
                    });
                }
            }
        }
        out
    }

    /// Scenarios carrying `tag`.
    pub fn with_tag<'a>(&'a self, tag: &'a str) -> impl Iterator<Item = &'a Scenario> + 'a {
        self.scenarios.iter().filter(move |s| s.has_tag(tag))
    }
}
