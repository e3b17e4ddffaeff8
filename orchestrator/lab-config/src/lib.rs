//! Lab, payload and scenario YAML: strict wire types, validation into a resolved Plan, JSON schemas.
//!
//! ```text
//! file bytes ──read_source──> text (size, UTF-8, tabs checked)
//!            ──serde-saphyr──> wire types (unknown keys, types, durations; budgets)
//!            ──validate──────> Lab / Payload / Scenario (references resolved) ──> Plan
//!   every problem on the way becomes a Diagnostic (file:line:col, YAML path, related file)
//! ```
//!
//! Entry points: [`load_lab`], [`load_payload`], [`load_scenario`] + [`resolve_scenario`] for
//! single files; [`Workspace::discover`] and [`validate`] for a whole set, which is what
//! `hvlab validate` and `hvlab run` use. The runner consumes [`Plan`]; wire types stay private.

mod cap;
mod diag;
mod known;
mod model;
pub mod schema;
mod source;
mod tools_doc;
mod validate;
mod values;
mod wire;
mod workspace;
mod yaml_path;

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

pub use cap::{LABEL_MAX, MESSAGE_MAX, cap_in_place, cap_text, human_bytes};
pub use diag::{Diagnostic, Diagnostics, Related};
pub use known::{
    KNOWN_ISSUES_FILE, KnownIssue, KnownIssues, KnownMatch, Pattern, load_known_issues,
    parse_known_issues,
};
pub use model::*;
pub use source::{
    MAX_DEPTH, MAX_FILE_BYTES, SourceFile, check_regular_file, read_source, source_from_bytes,
};
pub use tools_doc::tools_markdown;
pub use validate::scenario::BUILTIN_CHECKPOINTS;
pub use values::{Loc, format_duration};
pub use wire::lab::{CheckpointType, ConnectionKind, CrashDumpKind, GuestTransportKind, LabKind};
pub use wire::payload::{
    ArgType, CountersFormat, DurationUnit, EpochCounter, PayloadTarget, SignatureKind, StartType,
};
pub use wire::scenario::DriverState;
pub use workspace::{ValidateRequest, Validated, Workspace, validate};

/// Re-exported so callers can name the builtin placeholders of command templates.
pub use model::invocation::BUILTIN_PLACEHOLDERS;

fn one(d: impl Into<Box<Diagnostic>>, src: Option<&SourceFile>) -> Diagnostics {
    let mut ds = Diagnostics::new();
    if let Some(s) = src {
        ds.add_source(&s.path, s.text.clone());
    }
    ds.push(*d.into());
    ds
}

fn many(ds: Vec<Diagnostic>, src: &SourceFile) -> Diagnostics {
    let mut out = Diagnostics::new();
    out.add_source(&src.path, src.text.clone());
    for d in ds {
        out.push(d);
    }
    out
}

/// Parses and validates a lab file already read.
pub fn parse_lab(src: &SourceFile) -> Result<Lab, Diagnostics> {
    let header: wire::lab::LabHeader = source::parse(src, "lab file").map_err(|d| many(d, src))?;
    let Some(kind) = header.kind else {
        let d = Diagnostic::new(
            "parse",
            &src.path,
            Some(Loc::at(1, 1)),
            "",
            "missing field `kind`",
        )
        .with_help("a lab file starts with `kind: sim` or `kind: hyperv`");
        return Err(one(d, Some(src)));
    };
    let mut diags = Diagnostics::new();
    diags.add_source(&src.path, src.text.clone());
    let lab = {
        let mut cx = validate::Cx::new(&src.path, &mut diags);
        match kind.value {
            LabKind::Sim => {
                let w = source::parse(src, "sim lab file").map_err(|d| many(d, src))?;
                validate::lab::sim(&mut cx, w)
            }
            LabKind::Hyperv => {
                let w = source::parse(src, "Hyper-V lab file").map_err(|d| many(d, src))?;
                validate::lab::hyperv(&mut cx, w)
            }
        }
    };
    match lab {
        Some(lab) if diags.is_empty() => Ok(lab),
        _ => Err(diags),
    }
}

/// Reads, parses and validates a lab file (`vm-configs/*.yaml`).
pub fn load_lab(path: &Path) -> Result<Lab, Diagnostics> {
    parse_lab(&read_source(path)?)
}

/// Parses and validates a payload manifest already read.
pub fn parse_payload(src: &SourceFile) -> Result<Payload, Diagnostics> {
    let w: wire::payload::PayloadWire =
        source::parse(src, "payload manifest").map_err(|d| many(d, src))?;
    let mut diags = Diagnostics::new();
    diags.add_source(&src.path, src.text.clone());
    let p = validate::payload::payload(&mut validate::Cx::new(&src.path, &mut diags), w);
    match p {
        Some(p) if diags.is_empty() => Ok(p),
        _ => Err(diags),
    }
}

/// Reads, parses and validates a payload manifest (`driver-payloads/*.yaml`).
pub fn load_payload(path: &Path) -> Result<Payload, Diagnostics> {
    parse_payload(&read_source(path)?)
}

/// A scenario file that parsed strictly but is not yet checked against a lab and payloads
/// (that needs [`resolve_scenario`]). Its accessors let a caller pick the lab and payload.
#[derive(Debug)]
pub struct ScenarioSource {
    source: SourceFile,
    wire: wire::scenario::ScenarioWire,
}

impl ScenarioSource {
    /// The scenario's name as written.
    pub fn name(&self) -> &str {
        &self.wire.name.value
    }
    /// The payload it pins (`payload:`), if it names one.
    pub fn payload_name(&self) -> Option<&str> {
        self.wire.payload.as_ref().map(|p| p.value.as_str())
    }
    /// Tags as written.
    pub fn tags(&self) -> Vec<&str> {
        self.wire
            .tags
            .iter()
            .flatten()
            .map(|t| t.value.as_str())
            .collect()
    }
    /// The file.
    pub fn path(&self) -> &Path {
        &self.source.path
    }
    pub(crate) fn name_loc(&self) -> Loc {
        self.wire.name.loc
    }
}

/// Parses a scenario file already read.
pub fn parse_scenario(src: SourceFile) -> Result<ScenarioSource, Diagnostics> {
    let wire = source::parse(&src, "scenario").map_err(|d| many(d, &src))?;
    Ok(ScenarioSource { source: src, wire })
}

/// Reads and strictly parses a scenario file (`scenarios/*.yaml`).
pub fn load_scenario(path: &Path) -> Result<ScenarioSource, Diagnostics> {
    parse_scenario(read_source(path)?)
}

/// Validates a parsed scenario against a lab and the available payloads.
pub fn resolve_scenario(
    src: ScenarioSource,
    lab: &Lab,
    payloads: &[Arc<Payload>],
) -> Result<Scenario, Diagnostics> {
    resolve_with(src, lab, payloads, &HashSet::new(), None)
}

pub(crate) fn resolve_with(
    src: ScenarioSource,
    lab: &Lab,
    payloads: &[Arc<Payload>],
    broken: &HashSet<String>,
    payload_flag: Option<&str>,
) -> Result<Scenario, Diagnostics> {
    let mut diags = Diagnostics::new();
    diags.add_source(&src.source.path, src.source.text.clone());
    let env = validate::scenario::Env {
        lab,
        payloads,
        broken_payloads: broken,
        payload_flag,
    };
    let s = validate::scenario::scenario(
        &mut validate::Cx::new(&src.source.path, &mut diags),
        src.wire,
        &env,
    );
    match s {
        Some(s) if diags.is_empty() => Ok(s),
        _ => Err(diags),
    }
}
