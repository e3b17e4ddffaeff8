//! Wire format of payload manifests (`driver-payloads/*.yaml`): files to copy, kernel
//! drivers to install, tools with typed command templates, and metrics.

use schemars::JsonSchema;
use serde::Deserialize;

use crate::values::{ArgValueWire, HumanDuration, Sp};

/// What a payload runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PayloadTarget {
    /// Simulated guests (sim-kernel driver images and tools).
    Sim,
    /// Real Windows guests.
    Windows,
}

/// A payload manifest.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Payload manifest")]
#[schemars(rename = "Payload")]
pub(crate) struct PayloadWire {
    /// Payload name, referenced by scenarios' `payload`.
    pub name: Sp<String>,
    /// `sim` or `windows`: which labs it runs on.
    pub target: Sp<PayloadTarget>,
    /// Free text.
    #[serde(default)]
    pub description: Option<String>,
    /// Directory the file sources are relative to. May use `${VAR}` (environment);
    /// a relative path is relative to this manifest.
    pub build_dir: Sp<String>,
    /// Files copied to the guest.
    pub files: Sp<Vec<FileWire>>,
    /// Kernel drivers installed as services.
    #[serde(default)]
    pub drivers: Option<Sp<Vec<DriverWire>>>,
    /// Programs scenarios run.
    #[serde(default)]
    pub tools: Option<Sp<Vec<ToolWire>>>,
    /// Numbers scenarios read from the guest.
    #[serde(default)]
    pub metrics: Option<Sp<Vec<MetricWire>>>,
}

/// One file of the payload.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "File")]
pub(crate) struct FileWire {
    /// Path relative to `build_dir` (or to this manifest's folder, see `relative_to`).
    pub source: Sp<String>,
    /// What `source` is relative to: `build_dir` (default) or `manifest`, for files shipped
    /// next to the manifest in this repository (hvlab's Windows tools); those are checked
    /// at validation time even when `build_dir` uses `${VAR}`.
    #[serde(default)]
    pub relative_to: Option<SourceBase>,
    /// Absolute Windows path in the guest, e.g. `C:\Windows\System32\drivers\ebpfcore.sys`.
    pub destination: Sp<String>,
    /// Expected SHA-256 (64 hex digits), checked before upload and after copy.
    #[serde(default)]
    pub sha256: Option<Sp<String>>,
}

/// What a payload file's `source` is relative to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceBase {
    /// The payload's `build_dir`.
    BuildDir,
    /// The folder of the payload manifest.
    Manifest,
}

/// Service start type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StartType {
    /// Loaded by the boot loader.
    Boot,
    /// Loaded during kernel initialisation.
    System,
    /// Started by the service control manager at boot.
    Auto,
    /// Started on request (by a scenario step).
    Demand,
}

/// The YAML accepts the start types a test driver can use (not `disabled`); the model
/// speaks the shared vocabulary.
impl From<StartType> for win_vocab::StartType {
    fn from(s: StartType) -> Self {
        match s {
            StartType::Boot => win_vocab::StartType::Boot,
            StartType::System => win_vocab::StartType::System,
            StartType::Auto => win_vocab::StartType::Auto,
            StartType::Demand => win_vocab::StartType::Demand,
        }
    }
}

/// How a driver image is signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SignatureKind {
    /// Test-signed: loads only with test signing on.
    Test,
    /// Production-signed: loads everywhere.
    Production,
    /// Unsigned: never loads on x64 Windows (error 577).
    Unsigned,
}

/// A kernel driver service.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Driver")]
pub(crate) struct DriverWire {
    /// Service name (`sc.exe create <service>`).
    pub service: Sp<String>,
    /// The driver binary: the `destination` of one of this payload's files.
    pub binary: Sp<String>,
    /// Start type. Default `demand`.
    #[serde(default)]
    pub start: Option<Sp<StartType>>,
    /// Services that must be running before this one starts.
    #[serde(default)]
    pub depends_on: Option<Vec<Sp<String>>>,
    /// Signature kind of the image. Default `test`.
    #[serde(default)]
    pub signature: Option<SignatureKind>,
}

/// Type of a tool argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ArgType {
    /// A whole number (with optional `min` / `max`).
    Int,
    /// A human duration (with optional `min` / `max`).
    Duration,
    /// Free text.
    String,
    /// A switch: with `flag`, the flag alone when true and nothing when false.
    Bool,
    /// One of `values`.
    Enum,
}

/// How a duration argument is rendered on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DurationUnit {
    /// humantime text, e.g. `5s`, `1m 30s` (default).
    Human,
    /// Whole milliseconds.
    Ms,
    /// Whole seconds.
    S,
    /// Whole minutes.
    M,
}

/// A typed tool argument.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Arg")]
pub(crate) struct ArgWire {
    /// Name used in scenarios' `args` and in `{name}` placeholders.
    pub name: Sp<String>,
    /// Value type.
    #[serde(rename = "type")]
    pub ty: Sp<ArgType>,
    /// Value used when a scenario does not give one. Without a default the argument is
    /// optional and left out of the command line when not given (unless `required`).
    #[serde(default)]
    pub default: Option<Sp<ArgValueWire>>,
    /// The scenario must give a value.
    #[serde(default)]
    pub required: Option<bool>,
    /// Smallest value (int, or duration text).
    #[serde(default)]
    pub min: Option<Sp<ArgValueWire>>,
    /// Largest value (int, or duration text).
    #[serde(default)]
    pub max: Option<Sp<ArgValueWire>>,
    /// Allowed values of an `enum` argument.
    #[serde(default)]
    pub values: Option<Sp<Vec<String>>>,
    /// Appended after the command as `flag value` (`flag` alone for a true bool). A flag
    /// ending in `=` or `:` is joined with the value (`-td=5`, and `-er=true` for a bool). Without a flag, the argument
    /// must appear as a `{name}` placeholder in `command`.
    #[serde(default)]
    pub flag: Option<Sp<String>>,
    /// Duration arguments only: how the value is written. Default `human`.
    #[serde(default)]
    pub unit: Option<Sp<DurationUnit>>,
}

/// Format of the counters a tool reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CountersFormat {
    /// The last line of stdout that is a JSON object of numbers.
    JsonLine,
}

/// What a tool promises about its result.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Result")]
pub(crate) struct ResultWire {
    /// Exit codes that mean success. Default `[0]`.
    #[serde(default)]
    pub exit_codes: Option<Sp<Vec<i64>>>,
    /// The tool prints counters in this format.
    #[serde(default)]
    pub counters: Option<Sp<CountersFormat>>,
    /// Counter names the tool reports (scenarios may only check these).
    #[serde(default)]
    pub counter_names: Option<Sp<Vec<Sp<String>>>>,
    /// Guest path of a JUnit file the tool writes (e.g. Catch2 `-r junit -o <path>`);
    /// available to `command` as `{junit}`.
    #[serde(default)]
    pub junit: Option<Sp<String>>,
}

/// A program scenarios run.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Tool")]
pub(crate) struct ToolWire {
    /// Tool name, referenced by `run` steps.
    pub name: Sp<String>,
    /// The executable: the `destination` of one of this payload's files.
    pub program: Sp<String>,
    /// Argument template after the program. `{arg}` is an argument's value; builtins:
    /// `{seed}`, `{iteration}`, `{vm}`, `{scenario}`, `{junit}`. An element that is only a
    /// placeholder of an unset optional argument is dropped.
    #[serde(default)]
    pub command: Option<Sp<Vec<Sp<String>>>>,
    /// Typed arguments.
    #[serde(default)]
    pub arguments: Option<Sp<Vec<ArgWire>>>,
    /// Result contract. Default: exit code 0, no counters, no JUnit.
    #[serde(default)]
    pub result: Option<Sp<ResultWire>>,
    /// Default time limit for one run (a step's `timeout` overrides it).
    #[serde(default)]
    pub timeout: Option<Sp<HumanDuration>>,
}

/// Epoch counters the sim guest serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EpochCounter {
    /// Bytes freed but not yet reclaimed (`epoch_pending_bytes`).
    PendingBytes,
    /// The current global epoch (`epoch_current`).
    Current,
    /// The last released epoch (`epoch_released`).
    Released,
}

/// A number read from the guest. Exactly one source key.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Metric")]
pub(crate) struct MetricWire {
    /// Metric name, referenced by `record_metric` / `assert_metric` steps.
    pub name: Sp<String>,
    /// Outstanding bytes of a pool tag (4 characters, e.g. `Smpl`).
    #[serde(default)]
    pub pool_bytes: Option<Sp<String>>,
    /// Outstanding allocations of a pool tag.
    #[serde(default)]
    pub pool_allocs: Option<Sp<String>>,
    /// An epoch counter (sim only).
    #[serde(default)]
    pub epoch: Option<Sp<EpochCounter>>,
    /// A PowerShell script that prints JSON (windows only); use with `field`.
    #[serde(default)]
    pub powershell: Option<Sp<String>>,
    /// The JSON field holding the number in the script's output.
    #[serde(default)]
    pub field: Option<Sp<String>>,
}
