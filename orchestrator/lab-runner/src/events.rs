//! The events a run emits, in order, to every reporter (terminal, JUnit, JSON, HTML).
//!
//! The runner never prints: everything a user sees or a file records is derived from this
//! stream, so a reporter can be added without touching the runner (nextest's split).
//! Events are serialisable so `events.jsonl` is a faithful log and tests can replay them.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One unit of work: a scenario on a VM template, one iteration of it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct UnitId {
    /// Scenario name (unique across the plan).
    pub scenario: String,
    /// VM template the unit runs on.
    pub template: String,
    /// 1-based iteration number.
    pub iteration: u32,
}

impl std::fmt::Display for UnitId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}#{}", self.scenario, self.template, self.iteration)
    }
}

/// A timestamped event. `at` is wall-clock for logs; durations inside events are measured
/// with a monotonic clock.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope {
    pub at: DateTime<Utc>,
    #[serde(flatten)]
    pub event: Event,
}

/// Everything that happens during a run that a user or a results file cares about.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The plan is resolved and the results directory exists.
    RunStarted {
        run_id: String,
        /// Lab file and kind (`sim` / `hyperv`).
        lab: String,
        lab_kind: String,
        results_dir: PathBuf,
        /// Every unit that is scheduled, in plan order.
        units: Vec<UnitId>,
        /// The run seed every unit seed derives from.
        seed: u64,
        /// At most this many VMs at once.
        max_vms: usize,
    },
    /// A VM is being created from a template.
    VmProvisioning { vm: String, template: String },
    /// A VM answered its first command after boot.
    VmReady {
        vm: String,
        boot_id: String,
        #[serde(with = "crate::secs")]
        elapsed: Duration,
    },
    /// The payload is deployed and the `deployed` checkpoint taken.
    VmDeployed {
        vm: String,
        #[serde(with = "crate::secs")]
        elapsed: Duration,
    },
    /// A VM was removed at teardown.
    VmRemoved { vm: String },
    /// A unit began on a VM (after the checkpoint restore).
    UnitStarted { unit: UnitId, vm: String, seed: u64 },
    /// A step began. `path` locates it in the scenario (`steps[2].parallel[0]`).
    StepStarted {
        unit: UnitId,
        path: String,
        /// Human label: the step's `name` or a description of the step.
        label: String,
        #[serde(with = "crate::secs")]
        timeout: Duration,
    },
    /// A step ended.
    StepFinished {
        unit: UnitId,
        path: String,
        label: String,
        outcome: StepOutcome,
        #[serde(with = "crate::secs")]
        duration: Duration,
        /// Tool output kept for reports (already capped by the runner).
        output: Option<StepOutput>,
    },
    /// The guest crashed, hung or vanished while a unit ran.
    CrashDetected {
        unit: UnitId,
        vm: String,
        crash: Crash,
    },
    /// A file was collected into the results directory.
    ArtifactCollected {
        unit: Option<UnitId>,
        vm: String,
        kind: ArtifactKind,
        /// Relative to the run's results directory.
        path: PathBuf,
    },
    /// A unit ended.
    UnitFinished {
        unit: UnitId,
        vm: String,
        seed: u64,
        outcome: UnitOutcome,
        #[serde(with = "crate::secs")]
        duration: Duration,
        /// JUnit files a tool wrote in the guest (e.g. Catch2 `-r junit`), collected and
        /// relative to the results directory; reporters merge them.
        guest_junit: Vec<PathBuf>,
    },
    /// An attempt of a unit errored (the lab failed under it, not the code under test); the
    /// unit runs again on a fresh VM per the lab's `infra_retries`. Or it failed and runs
    /// again per `--retries` / the scenario's `retries:` (on the same VM, from `deployed`). `attempt` is the 1-based
    /// number of the attempt that errored; the unit's verdict comes in `UnitFinished`.
    UnitRetried {
        unit: UnitId,
        vm: String,
        attempt: u32,
        outcome: UnitOutcome,
        #[serde(with = "crate::secs")]
        duration: Duration,
    },
    /// The lab itself failed (not the code under test).
    InfraError {
        vm: Option<String>,
        message: String,
        /// Why, outermost cause first; reporters show `message: cause: cause`.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        causes: Vec<String>,
    },
    /// Something the user should know that changes no verdict (e.g. a corrupt bucket index
    /// was moved aside and a fresh one started).
    Warning { message: String },
    /// `--keep-dumps N` removed dumps of earlier runs from a crash bucket.
    DumpsRemoved {
        bucket: String,
        /// The `N` of `--keep-dumps`.
        keep: usize,
        /// Relative to the results root (`<run-id>/<unit>/dumps/MEMORY.DMP`).
        removed: Vec<PathBuf>,
    },
    /// A Ctrl-C (or SIGTERM) arrived; `count` is 1 for the graceful stop, 2 for force.
    Interrupted { count: u32 },
    /// A Hyper-V host takes no more VMs: it failed its health check before the run, or it
    /// was lost mid-run (its units end errored; the run goes on on the other hosts).
    HostDrained { host: String, reason: String },
    /// Teardown could not remove something; named so the user can remove it.
    Leftover { what: String, how_to_remove: String },
    /// The last event. Reporters finalise their files here.
    RunFinished {
        #[serde(with = "crate::secs")]
        elapsed: Duration,
        stats: RunStats,
        /// Exit code the CLI will return (0, 1, 2, 3 or 130).
        exit_code: i32,
        interrupted: bool,
    },
}

/// How a step ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum StepOutcome {
    Passed,
    /// An expectation did not hold; the message says which and with what values.
    Failed {
        message: String,
    },
    /// The step exceeded its timeout (treated as a hang of the guest).
    TimedOut,
    /// The guest crashed during the step.
    Crashed,
    /// Not run because an earlier step failed or the run was cancelled.
    Skipped,
    Cancelled,
    /// The lab failed under the step (transport, VM) rather than the code under test.
    Errored {
        message: String,
    },
}

/// What a tool step produced, for reports.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepOutput {
    pub exit_code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// Counters parsed from the tool's JSON line, if its contract has one.
    pub counters: Option<serde_json::Map<String, serde_json::Value>>,
}

/// A detected guest crash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Crash {
    pub kind: CrashKind,
    /// The step that was running, if any.
    pub step: Option<String>,
    pub bugcheck: Option<BugcheckInfo>,
    /// Collected dump files, relative to the results directory.
    pub dumps: Vec<PathBuf>,
    /// Crash bucket (signature id and title), when triage produced one.
    pub bucket: Option<Bucket>,
    /// Triage error text when a dump could not be read.
    pub triage_error: Option<String>,
    /// Dumps the guest wrote that could not be kept (download failed, disk full).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dumps_lost: Vec<LostDump>,
}

/// A dump that was not kept, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LostDump {
    /// The dump as the guest names it (`C:\Windows\MEMORY.DMP`).
    pub dump: String,
    /// Why, with the OS cause (`write .../MEMORY.DMP: No space left on device (os error 28)`).
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CrashKind {
    /// The guest bugchecked and rebooted (boot id changed).
    Bugcheck,
    /// A step hung; the lab injected an NMI to get a dump.
    Hang,
    /// The agent connection was lost and the guest did not come back.
    ConnectionLost,
    /// The hypervisor heartbeat was lost.
    HeartbeatLost,
}

/// Bugcheck facts from the event log and/or the dump.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BugcheckInfo {
    pub code: u32,
    /// Symbolic name (`PAGE_FAULT_IN_NONPAGED_AREA`), when known.
    pub name: Option<String>,
    pub params: [u64; 4],
    /// Faulting module (`sample_ebpf_ext.sys`), when known.
    pub module: Option<String>,
    /// Faulting function, when known.
    pub symbol: Option<String>,
}

impl From<lab_backends::Bugcheck> for BugcheckInfo {
    /// The facts every record has (code, table name, parameters); where it hit is unknown.
    fn from(b: lab_backends::Bugcheck) -> Self {
        BugcheckInfo {
            code: b.code,
            name: b.name().map(str::to_owned),
            params: b.params,
            module: None,
            symbol: None,
        }
    }
}

/// A crash bucket: the same bug in two runs has the same id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bucket {
    pub id: String,
    pub title: String,
    /// First time this bucket was seen in this results root.
    pub new: bool,
    /// The upstream issue that tracks this crash (`known-issues.yaml`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known_issue: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArtifactKind {
    StepLog,
    Dump,
    Triage,
    EventLog,
    GuestJunit,
    /// The VM's serial console during the unit (`<unit>/console.log`).
    Console,
    Other,
}

/// How a unit ended.
// A few of these exist per run; boxing the crash would only complicate every reporter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum UnitOutcome {
    Passed,
    /// The code under test failed: an expectation, a crash or a hang.
    Failed {
        message: String,
        crash: Option<Crash>,
    },
    /// The lab failed (provisioning, transport); says nothing about the code under test.
    Errored {
        message: String,
        /// Why, outermost cause first; reporters show `message: cause: cause`.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        causes: Vec<String>,
    },
    /// Not run or stopped because the run was interrupted.
    Cancelled,
}

impl UnitOutcome {
    /// The lab failed with `e`: its message, and each of its causes.
    pub fn errored(e: &dyn std::error::Error) -> Self {
        let (message, causes) = lab_error::split(e);
        UnitOutcome::Errored { message, causes }
    }

    /// The lab failed and `message` says everything known.
    pub fn errored_msg(message: impl Into<String>) -> Self {
        UnitOutcome::Errored {
            message: message.into(),
            causes: vec![],
        }
    }

    /// The text reports show for an error: `message: cause: cause`.
    pub fn error_text(message: &str, causes: &[String]) -> String {
        lab_error::join(message, causes)
    }

    pub fn is_pass(&self) -> bool {
        matches!(self, UnitOutcome::Passed)
    }
}

/// Counts for the summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunStats {
    pub units: usize,
    pub passed: usize,
    pub failed: usize,
    pub errored: usize,
    pub cancelled: usize,
    pub crashes: usize,
    /// Units run again after an infrastructure error (counted once however many retries).
    #[serde(default)]
    pub retried: usize,
    /// Units that failed, then passed on a retry (`--retries`, `retries:`); counted in
    /// `passed` too.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub flaky: usize,
    /// Failed units whose crash is a known issue (`known-issues.yaml`).
    #[serde(default)]
    pub known: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}
