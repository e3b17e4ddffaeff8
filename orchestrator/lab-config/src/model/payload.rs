//! Resolved payload manifest: files, drivers in install order, tools with typed arguments,
//! and metrics.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::Origin;
pub use crate::wire::payload::{
    CountersFormat, DurationUnit, EpochCounter, PayloadTarget, SignatureKind,
};

/// A validated payload manifest.
#[derive(Debug, Clone)]
pub struct Payload {
    /// Payload name.
    pub name: String,
    /// `sim` or `windows`.
    pub target: PayloadTarget,
    /// Free text.
    pub description: Option<String>,
    /// The manifest file.
    pub file: Arc<Path>,
    /// `build_dir` as written (may contain `${VAR}`); see [`Payload::build_dir`].
    pub build_dir_template: String,
    /// Files to copy.
    pub files: Vec<PayloadFile>,
    /// Driver services.
    pub drivers: Vec<Driver>,
    /// Indices into `drivers`, dependencies first (computed at validation; no cycles).
    pub install_order: Vec<usize>,
    /// Tools.
    pub tools: Vec<Tool>,
    /// Metrics.
    pub metrics: Vec<Metric>,
}

/// A `${VAR}` in `build_dir` is not set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "resolve build_dir `{template}` of payload `{payload}`: environment variable `{var}` is not set"
)]
pub struct UnsetVariable {
    /// The payload.
    pub payload: String,
    /// `build_dir` as written.
    pub template: String,
    /// The variable.
    pub var: String,
}

/// Expands `${VAR}` with `lookup`; `Err(var)` names the first unset variable.
pub(crate) fn expand_vars(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            return Ok(out);
        };
        let var = &after[..end];
        out.push_str(&lookup(var).ok_or_else(|| var.to_owned())?);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

impl Payload {
    /// The build directory with `${VAR}` expanded from `lookup` (e.g. the environment) and a
    /// relative result joined to the manifest's folder.
    pub fn build_dir_with(
        &self,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<PathBuf, UnsetVariable> {
        let expanded =
            expand_vars(&self.build_dir_template, lookup).map_err(|var| UnsetVariable {
                payload: self.name.clone(),
                template: self.build_dir_template.clone(),
                var,
            })?;
        let p = PathBuf::from(expanded);
        Ok(if p.is_absolute() {
            p
        } else {
            self.file.parent().unwrap_or(Path::new(".")).join(p)
        })
    }

    /// The build directory, expanding variables from the process environment.
    pub fn build_dir(&self) -> Result<PathBuf, UnsetVariable> {
        self.build_dir_with(&|v| std::env::var(v).ok())
    }

    /// The driver with this service name.
    pub fn driver(&self, service: &str) -> Option<&Driver> {
        self.drivers.iter().find(|d| d.service == service)
    }

    /// The tool with this name.
    pub fn tool(&self, name: &str) -> Option<&Tool> {
        self.tools.iter().find(|t| t.name == name)
    }

    /// The metric with this name.
    pub fn metric(&self, name: &str) -> Option<&Metric> {
        self.metrics.iter().find(|m| m.name == name)
    }

    /// Drivers in dependency order.
    pub fn drivers_in_install_order(&self) -> impl Iterator<Item = &Driver> {
        self.install_order.iter().map(|&i| &self.drivers[i])
    }
}

/// A file copied to the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadFile {
    /// Path relative to the build directory.
    pub source: String,
    /// Absolute Windows path in the guest.
    pub destination: String,
    /// Expected SHA-256, lowercase hex.
    pub sha256: Option<String>,
}

/// A kernel driver service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Driver {
    /// Service name.
    pub service: String,
    /// Guest path of the image (a file's destination).
    pub binary: String,
    /// Index of that file in [`Payload::files`].
    pub file: usize,
    /// Start type.
    pub start: win_vocab::StartType,
    /// Services that must run first.
    pub depends_on: Vec<String>,
    /// Signature kind.
    pub signature: SignatureKind,
    /// Where it was written.
    pub origin: Origin,
}

impl Driver {
    /// Deploy starts it (boot/system/auto); `demand` drivers are started by steps.
    pub fn started_by_deploy(&self) -> bool {
        !matches!(self.start, win_vocab::StartType::Demand)
    }
}

/// A program scenarios run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tool {
    /// Tool name.
    pub name: String,
    /// Guest path of the executable (a file's destination).
    pub program: String,
    /// Argument template after the program.
    pub command: Vec<String>,
    /// Typed arguments in declaration order.
    pub arguments: Vec<ToolArg>,
    /// Result contract.
    pub result: ResultContract,
    /// Default time limit of one run.
    pub timeout: Option<Duration>,
    /// Where it was written.
    pub origin: Origin,
}

impl Tool {
    /// The argument with this name.
    pub fn argument(&self, name: &str) -> Option<&ToolArg> {
        self.arguments.iter().find(|a| a.name == name)
    }
}

/// A typed tool argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolArg {
    /// Name.
    pub name: String,
    /// Type and constraints.
    pub kind: ArgKind,
    /// Default value.
    pub default: Option<ArgValue>,
    /// A scenario must give a value.
    pub required: bool,
    /// Appended as `flag value` (or joined when the flag ends in `=` / `:`).
    pub flag: Option<String>,
}

/// Type and constraints of an argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgKind {
    /// Whole number.
    Int {
        /// Smallest.
        min: Option<i64>,
        /// Largest.
        max: Option<i64>,
    },
    /// Duration.
    Duration {
        /// Smallest.
        min: Option<Duration>,
        /// Largest.
        max: Option<Duration>,
        /// How it is written on the command line.
        unit: DurationUnit,
    },
    /// Text.
    String,
    /// Switch.
    Bool,
    /// One of `values`.
    Enum {
        /// Allowed values.
        values: Vec<String>,
    },
}

impl ArgKind {
    /// The type's name as written in manifests.
    pub fn type_name(&self) -> &'static str {
        match self {
            ArgKind::Int { .. } => "int",
            ArgKind::Duration { .. } => "duration",
            ArgKind::String => "string",
            ArgKind::Bool => "bool",
            ArgKind::Enum { .. } => "enum",
        }
    }
}

/// A typed argument value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgValue {
    /// Whole number.
    Int(i64),
    /// Duration.
    Duration(Duration),
    /// Text (also enum values).
    String(String),
    /// Switch.
    Bool(bool),
}

impl fmt::Display for ArgValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArgValue::Int(i) => write!(f, "{i}"),
            ArgValue::Duration(d) => write!(f, "{}", crate::values::format_duration(*d)),
            ArgValue::String(s) => f.write_str(s),
            ArgValue::Bool(b) => write!(f, "{b}"),
        }
    }
}

/// What a tool promises about its result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultContract {
    /// Exit codes that mean success.
    pub exit_codes: Vec<i64>,
    /// Counters format, if the tool reports counters.
    pub counters: Option<CountersFormat>,
    /// Counter names it reports (empty = not declared; then any name may be checked).
    pub counter_names: Vec<String>,
    /// Guest path of the JUnit file it writes.
    pub junit: Option<String>,
}

/// A number read from the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metric {
    /// Name.
    pub name: String,
    /// How to read it.
    pub source: MetricSource,
    /// Where it was written.
    pub origin: Origin,
}

/// How a metric is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetricSource {
    /// Outstanding bytes of a pool tag.
    PoolBytes {
        /// 4-character tag.
        tag: String,
    },
    /// Outstanding allocations of a pool tag.
    PoolAllocs {
        /// 4-character tag.
        tag: String,
    },
    /// A sim epoch counter.
    Epoch(EpochCounter),
    /// A PowerShell script printing JSON, and the field holding the number.
    PowerShell {
        /// Script text.
        script: String,
        /// JSON field.
        field: String,
    },
}

impl MetricSource {
    /// The name of the metric in the sim guest agent protocol (`pool_bytes:Smpl`,
    /// `epoch_pending_bytes`, ...); `None` for PowerShell metrics.
    pub fn sim_key(&self) -> Option<String> {
        match self {
            MetricSource::PoolBytes { tag } => Some(format!("pool_bytes:{tag}")),
            MetricSource::PoolAllocs { tag } => Some(format!("pool_allocs:{tag}")),
            MetricSource::Epoch(EpochCounter::PendingBytes) => {
                Some("epoch_pending_bytes".to_owned())
            }
            MetricSource::Epoch(EpochCounter::Current) => Some("epoch_current".to_owned()),
            MetricSource::Epoch(EpochCounter::Released) => Some("epoch_released".to_owned()),
            MetricSource::PowerShell { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_variables_and_names_unset_ones() {
        let env = |v: &str| (v == "B").then(|| "/build".to_owned());
        assert_eq!(
            expand_vars("${B}/x64/Debug", &env),
            Ok("/build/x64/Debug".to_owned())
        );
        assert_eq!(expand_vars("plain", &env), Ok("plain".to_owned()));
        assert_eq!(expand_vars("${NOPE}/x", &env), Err("NOPE".to_owned()));
    }
}
