//! Command-line types (clap derive). Adding a verb: one variant in [`Command`] and one arm in
//! `crate::dispatch`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::exit;

/// hvlab: run scenario files against Windows kernel drivers (eBPF-for-Windows custom maps)
/// on Hyper-V VMs or on the embedded simulated lab.
#[derive(Debug, Parser)]
#[command(name = "hvlab", version, after_help = exit::HELP)]
pub struct Cli {
    /// Repository root holding vm-configs/, driver-payloads/ and scenarios/ (default: the
    /// nearest folder upwards from the current one that has them).
    #[arg(long, global = true, env = "HVLAB_ROOT", value_name = "DIR")]
    pub root: Option<PathBuf>,

    /// The verb.
    #[command(subcommand)]
    pub command: Command,
}

/// The verbs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check lab, payload and scenario files (default: everything shipped) without running.
    #[command(after_help = exit::HELP)]
    Validate(ValidateArgs),
    /// Write (or check) the JSON Schemas of the configuration file kinds.
    #[command(after_help = exit::HELP)]
    Schema(SchemaArgs),
    /// Run scenarios on a lab (default: every shipped scenario not tagged `fault`, on the
    /// simulated lab) and write results/<run-id>/.
    #[command(after_help = exit::HELP)]
    Run(RunArgs),
    /// Loop one scenario with a searching timing jitter until it fails (or a budget ends);
    /// report the failure rate per crash bucket and how to replay it.
    #[command(after_help = exit::HELP)]
    Repro(ReproArgs),
    /// Triage kernel dumps (files or results directories): bugcheck, faulting driver, bucket.
    #[command(after_help = TRIAGE_HELP)]
    Triage(TriageArgs),
    /// List scenarios, their units per template, tags, templates and the payloads' tools
    /// with their arguments (the same selection options as `run`).
    #[command(after_help = exit::HELP)]
    List(ListArgs),
    /// Work with results folders: merge CI shards, prune old runs.
    #[command(after_help = exit::HELP)]
    Results(ResultsArgs),
    /// Inspect or clean up the VMs hvlab created (simulated lab).
    #[command(after_help = exit::HELP)]
    Lab(LabArgs),
    /// The process a simulated VM runs (started by the lab, not by users).
    #[command(name = "__sim-guest", hide = true)]
    SimGuest(GuestArgs),
}

/// Output on stdout / stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Progress and a summary for people, on stderr.
    Human,
    /// One JSON event per line on stdout, for machines.
    Json,
}

/// `hvlab run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Scenario files or names (default: all shipped, minus those tagged `fault`).
    #[arg(value_name = "SCENARIOS")]
    pub scenarios: Vec<String>,

    /// Run the scenarios carrying this tag (repeatable), e.g. `--tag fault`.
    #[arg(long, value_name = "TAG")]
    pub tag: Vec<String>,

    /// Lab file (default: vm-configs/local-sim.yaml).
    #[arg(long, value_name = "LAB_FILE")]
    pub lab: Option<PathBuf>,

    /// Payload for scenarios that pin none (default: the lab file's `payload`).
    #[arg(long, value_name = "NAME")]
    pub payload: Option<String>,

    /// At most this many VMs at once (default: the lab's capacity).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=256))]
    pub vms: Option<u64>,

    /// Iterations per scenario and VM template (overrides the scenario files).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub iterations: Option<u32>,

    /// Run seed; every random choice of every unit derives from it (default: random,
    /// recorded in the results).
    #[arg(long, value_name = "SEED")]
    pub seed: Option<u64>,

    /// Dumps each crash bucket keeps across runs in the results root: `all` (default), or N
    /// to remove, oldest first, dumps of *earlier* runs while a bucket holds more than N.
    /// Dumps of this run are always kept; what is removed is printed and recorded.
    #[arg(long, value_name = "all|N", default_value = "all")]
    pub keep_dumps: lab_runner::KeepDumps,

    /// Results root (default: <root>/results); the run writes <DIR>/<run-id>/.
    #[arg(long, value_name = "DIR")]
    pub results: Option<PathBuf>,

    /// Terminal output.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,

    /// Print the scripts the run would send to its Hyper-V hosts and exit, without
    /// contacting a host or reading a secret.
    #[arg(long)]
    pub dry_run: bool,

    /// Only these VM templates of each scenario's matrix (repeatable).
    #[arg(long, value_name = "TEMPLATE")]
    pub template: Vec<String>,

    /// Filter expression over units, e.g. `tag(stress) and not template(ws2022-verifier)`
    /// (predicates `scenario(glob)`, `tag(name)`, `template(glob)`, `all()`; `and`/`&`,
    /// `or`/`|`, `not`/`!`, parentheses). Repeated filters are or-ed.
    #[arg(short = 'E', long = "filter", value_name = "EXPR")]
    pub filter: Vec<String>,

    /// Start no unit after the first one that fails or errors (the rest are reported
    /// cancelled).
    #[arg(long, overrides_with = "no_fail_fast")]
    pub fail_fast: bool,

    /// Run every unit whatever fails (the default).
    #[arg(long, overrides_with = "fail_fast")]
    pub no_fail_fast: bool,

    /// Re-runs of a failed unit (overrides each scenario's `retries:`); a unit that passes
    /// on a retry is reported flaky. Unlike `retries:`, this also retries crashes.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(0..=10))]
    pub retries: Option<u32>,

    /// Run the selected units with this unit seed (the `seed` junit.xml and summary.json
    /// record for a unit); one iteration unless --iterations says otherwise.
    #[arg(long, value_name = "SEED", conflicts_with = "seed")]
    pub replay_seed: Option<u64>,

    /// Run only shard K of N (e.g. `2/4`, for CI matrices): units are split by a hash of
    /// their id, or by durations with --timings. Merge the shards' results with
    /// `hvlab results merge`.
    #[arg(long, value_name = "K/N")]
    pub shard: Option<crate::shard::ShardSpec>,

    /// Balance --shard by unit durations from a previous run's summary.json.
    #[arg(long, value_name = "SUMMARY_JSON", requires = "shard")]
    pub timings: Option<PathBuf>,

    /// Crashes already tracked upstream (default: <root>/known-issues.yaml if it exists);
    /// see docs/known-issues.md.
    #[arg(long, value_name = "FILE")]
    pub known_issues_file: Option<PathBuf>,

    /// What a known crash does to the exit code: `fail` (default: exit 1, marked known) or
    /// `warn` (a run whose only failures are known crashes exits 0).
    #[arg(long, value_name = "fail|warn", default_value = "fail")]
    pub known_issues: lab_runner::known::KnownPolicy,
}

/// `hvlab list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Scenario files or names (default: all on the lab, including those tagged `fault`).
    #[arg(value_name = "SCENARIOS")]
    pub scenarios: Vec<String>,

    /// Only scenarios carrying this tag (repeatable).
    #[arg(long, value_name = "TAG")]
    pub tag: Vec<String>,

    /// Only these VM templates (repeatable).
    #[arg(long, value_name = "TEMPLATE")]
    pub template: Vec<String>,

    /// Filter expression, as for `hvlab run -E`.
    #[arg(short = 'E', long = "filter", value_name = "EXPR")]
    pub filter: Vec<String>,

    /// Lab file (default: vm-configs/local-sim.yaml).
    #[arg(long, value_name = "LAB_FILE")]
    pub lab: Option<PathBuf>,

    /// Output: text for people, or one JSON document.
    #[arg(long, value_enum, default_value_t = ListFormat::Human)]
    pub format: ListFormat,
}

/// `hvlab list --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ListFormat {
    Human,
    Json,
}

/// `hvlab results`.
#[derive(Debug, Args)]
pub struct ResultsArgs {
    #[command(subcommand)]
    pub command: ResultsCommand,
}

/// `hvlab results` verbs.
#[derive(Debug, Subcommand)]
pub enum ResultsCommand {
    /// Merge the results folders of several shards of one run into one folder: junit.xml,
    /// summary.json, events.jsonl, index.html and crash folders re-rendered from the merged
    /// events; unit folders copied.
    Merge {
        /// Run folders to merge (each holding events.jsonl).
        #[arg(value_name = "DIR", required = true)]
        dirs: Vec<PathBuf>,
        /// The merged folder (created; must not exist or be empty).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Remove old run folders from a results root. A run still in progress is never
    /// touched. Default: keep the newest 20 runs.
    Prune {
        /// Keep at least the newest N runs.
        #[arg(long, value_name = "N")]
        keep: Option<usize>,
        /// Remove runs that started longer ago than this (e.g. `7d`, `12h`).
        #[arg(long, value_name = "DURATION")]
        older_than: Option<humantime::Duration>,
        /// Results root (default: <root>/results).
        #[arg(long, value_name = "DIR")]
        results: Option<PathBuf>,
        /// Only list what would be removed.
        #[arg(long)]
        dry_run: bool,
    },
}

/// `hvlab repro`.
#[derive(Debug, Args)]
pub struct ReproArgs {
    /// The scenario to reproduce (a file or a name).
    #[arg(value_name = "SCENARIO")]
    pub scenario: Option<String>,

    /// Lab file (default: vm-configs/local-sim.yaml).
    #[arg(long, value_name = "LAB_FILE")]
    pub lab: Option<PathBuf>,

    /// VMs looping the scenario at once (default: the lab's capacity).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=256))]
    pub vms: Option<u64>,

    /// Start at most this many iterations.
    #[arg(long, value_name = "N", default_value_t = 200,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_iterations: u32,

    /// Start no iteration after this much time (e.g. `10m`); running ones finish.
    #[arg(long, value_name = "DURATION")]
    pub max_time: Option<humantime::Duration>,

    /// Stop at the `first` failure, after `N-failures`, or only when a `budget` ends.
    #[arg(long, value_name = "WHEN", default_value = "first")]
    pub until: lab_runner::repro::Until,

    /// Run seed; each iteration's seed derives from it and the results so far (default:
    /// random, recorded in the results).
    #[arg(long, value_name = "SEED")]
    pub seed: Option<u64>,

    /// Re-run one recorded iteration exactly (its scenario, template and seed), e.g.
    /// `20250304-050607-1a2b/7` or `results/<run-id>/7`.
    #[arg(long, value_name = "RUN/ITERATION")]
    pub replay: Option<String>,

    /// Re-run SCENARIO with this iteration seed (as printed in junit.xml / repro.json).
    #[arg(long, value_name = "SEED")]
    pub replay_seed: Option<u64>,

    /// Replays of the seed (with --replay or --replay-seed), to measure how reliably it
    /// reproduces.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub times: Option<u32>,

    /// Only this VM template of the scenario.
    #[arg(long, value_name = "TEMPLATE")]
    pub template: Option<String>,

    /// Failed iterations per bucket kept in full (dumps); later ones are counted.
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub keep: usize,

    /// Dumps each crash bucket keeps across runs in the results root: `all` (default), or N
    /// to remove, oldest first, dumps of *earlier* runs while a bucket holds more than N.
    /// Dumps of this run are always kept; what is removed is printed and recorded.
    #[arg(long, value_name = "all|N", default_value = "all")]
    pub keep_dumps: lab_runner::KeepDumps,

    /// Results root (default: <root>/results); the repro writes <DIR>/<run-id>/.
    #[arg(long, value_name = "DIR")]
    pub results: Option<PathBuf>,

    /// Terminal output.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,

    /// Crashes already tracked upstream (default: <root>/known-issues.yaml if it exists);
    /// see docs/known-issues.md.
    #[arg(long, value_name = "FILE")]
    pub known_issues_file: Option<PathBuf>,

    /// What a known crash does to the exit code: `fail` (default: exit 1, marked known) or
    /// `warn` (a repro whose only failures are known crashes exits 0).
    #[arg(long, value_name = "fail|warn", default_value = "fail")]
    pub known_issues: lab_runner::known::KnownPolicy,
}

/// Exit codes of `hvlab triage`.
const TRIAGE_HELP: &str = "\
Exit codes:
  0    every dump was triaged
  2    a path or a dump could not be read (the others are still reported)";

/// `hvlab triage`.
#[derive(Debug, Args)]
pub struct TriageArgs {
    /// Dump files (*.dmp) or folders to search for them, e.g. results/<run-id>.
    #[arg(value_name = "PATHS", required = true)]
    pub paths: Vec<PathBuf>,

    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,

    /// Run `!analyze -v` on each dump with this kd.exe / cdb.exe (`-z DUMP -c "!analyze -v;
    /// q"`); its FAILURE_BUCKET_ID, image and symbol refine the bucket. A debugger that
    /// fails is reported per dump and triage keeps hvlab's own signature.
    #[arg(long, value_name = "PATH")]
    pub debugger: Option<PathBuf>,

    /// Symbol path (`DIR;DIR;srv*...`): passed to --debugger with `-y`; its local folders
    /// (e.g. a payload's driver build folder) also name functions of unloaded drivers, from
    /// the driver file matching the module's name and image size.
    #[arg(long, value_name = "PATH")]
    pub symbols: Option<String>,

    /// Crashes already tracked upstream, named next to their buckets (default: <root>/known-issues.yaml if it exists);
    /// see docs/known-issues.md.
    #[arg(long, value_name = "FILE")]
    pub known_issues_file: Option<PathBuf>,
}

/// `hvlab lab`.
#[derive(Debug, Args)]
pub struct LabArgs {
    #[command(subcommand)]
    pub command: LabCommand,

    /// Lab file: a Hyper-V lab's VMs are listed on every one of its hosts (default: the
    /// simulated lab).
    #[arg(long, value_name = "LAB_FILE", global = true)]
    pub lab: Option<PathBuf>,
}

/// `hvlab lab` verbs.
#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// List the VMs hvlab created and whether their run is still alive.
    Status,
    /// Remove VMs whose run has ended (a killed or crashed orchestrator's leftovers).
    Gc {
        /// Also remove VMs of runs that are still in progress.
        #[arg(long)]
        all: bool,
        /// Only list what would be removed.
        #[arg(long)]
        dry_run: bool,
        /// Also remove VMs created longer ago than this (e.g. `12h`), whatever their lease
        /// says (a run that hangs but still renews).
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
        older_than: Option<std::time::Duration>,
    },
}

/// `hvlab __sim-guest`.
#[derive(Debug, Args)]
pub struct GuestArgs {
    /// The VM's disk directory.
    #[arg(long, value_name = "DIR")]
    pub disk: PathBuf,
}

/// `hvlab validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Files or folders to check (default: vm-configs/, driver-payloads/, scenarios/).
    /// A file's kind comes from its folder, else from its content.
    #[arg(value_name = "PATHS")]
    pub paths: Vec<PathBuf>,

    /// Check scenarios against this lab (default: vm-configs/local-sim.yaml for sim
    /// payloads, the first Hyper-V lab for windows payloads).
    #[arg(long, value_name = "LAB_FILE")]
    pub lab: Option<PathBuf>,
}

/// `hvlab schema`.
#[derive(Debug, Args)]
pub struct SchemaArgs {
    /// Folder to write the schema of each file kind into (lab, payload, scenario and
    /// known-issues `.schema.json`; default: <root>/schemas).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,

    /// Do not write: exit 1 if the files in the folder are missing or out of date.
    #[arg(long)]
    pub check: bool,
}
