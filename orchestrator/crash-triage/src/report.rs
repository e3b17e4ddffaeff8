//! The data and renderings behind `hvlab triage PATH...`: triage each dump (files, or
//! `*.dmp` found under directories), sign and group them, and render text or JSON.
//! The CLI verb only parses arguments, calls [`triage_paths`], prints one rendering and
//! exits with [`Report::exit_code`].

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::analyze::{Analyze, DebuggerConfig, run_analyze};
use crate::bucket::{BUCKETS_FILE, Bucket, BucketIndex};
use crate::signature::{Signature, signature};
use crate::triage::{BugCheck, DumpFormat, FaultingModule, LoadedModule, Triage, triage_file};

/// How to triage.
#[derive(Debug, Clone, Default)]
pub struct ReportOptions {
    /// Run `!analyze -v` with this debugger on each dump.
    pub debugger: Option<DebuggerConfig>,
    /// Time allowed per debugger run (default 5 minutes).
    pub debugger_timeout: Option<Duration>,
    /// Local folders of driver files that name functions the dump cannot (unloaded
    /// drivers): see [`crate::symbols`].
    pub symbol_path: Option<crate::symbols::SymbolPath>,
}

/// The result for one dump.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum Outcome {
    Triaged {
        triage: Box<Triage>,
        analyze: Option<Box<Analyze>>,
        /// Why `!analyze` gave nothing, when a debugger was configured.
        analyze_error: Option<String>,
        signature: Signature,
    },
    Failed {
        /// Machine-readable kind, e.g. `truncated`.
        code: String,
        offset: Option<u64>,
        /// The full message (what, which file, where).
        message: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportEntry {
    pub path: PathBuf,
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// Dumps of one signature in this report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportBucket {
    pub id: String,
    pub title: String,
    pub dumps: Vec<PathBuf>,
    /// The bucket's history from a `buckets.json` next to the inputs, when there is one.
    pub history: Option<Bucket>,
    /// The issue a known-issues file names for the bucket (set by the caller, which reads
    /// the file: see [`Report::mark_known`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known_issue: Option<String>,
}

/// Everything `hvlab triage` shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub entries: Vec<ReportEntry>,
    pub buckets: Vec<ReportBucket>,
}

/// Why the inputs could not even be listed.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Report {
    /// Sets each bucket's `known_issue` to what `find(id, title)` names.
    pub fn mark_known(&mut self, find: impl Fn(&str, &str) -> Option<String>) {
        for b in &mut self.buckets {
            b.known_issue = find(&b.id, &b.title);
        }
    }

    fn known_issue(&self, id: &str) -> Option<&str> {
        self.buckets
            .iter()
            .find(|b| b.id == id)
            .and_then(|b| b.known_issue.as_deref())
    }

    /// 0 when every dump was triaged, 2 (an input error, from the one exit-code table)
    /// when any input was unreadable or not a dump.
    pub fn exit_code(&self) -> i32 {
        let failed = self
            .entries
            .iter()
            .any(|e| matches!(e.outcome, Outcome::Failed { .. }));
        i32::from(if failed {
            lab_error::exit::CONFIG_ERROR
        } else {
            lab_error::exit::SUCCESS
        })
    }
}

/// The dump files named by `paths`: files as given, directories searched recursively for
/// `*.dmp` (any case), each directory's finds sorted by path.
pub fn find_dumps(paths: &[PathBuf]) -> Result<Vec<PathBuf>, ReportError> {
    let mut out = Vec::new();
    for path in paths {
        let meta = std::fs::metadata(path).map_err(|source| ReportError::Read {
            path: path.clone(),
            source,
        })?;
        if meta.is_dir() {
            let mut found = Vec::new();
            walk(path, &mut found)?;
            found.sort();
            out.extend(found);
        } else {
            out.push(path.clone());
        }
    }
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), ReportError> {
    let read_err = |source| ReportError::Read {
        path: dir.to_path_buf(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(read_err)? {
        let entry = entry.map_err(read_err)?;
        let path = entry.path();
        let kind = entry.file_type().map_err(read_err)?;
        if kind.is_dir() {
            walk(&path, out)?;
        } else if kind.is_file()
            && path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("dmp"))
        {
            out.push(path);
        }
    }
    Ok(())
}

/// Triage everything `paths` names. Unreadable dumps become `Failed` entries; only an
/// input path that cannot be listed at all is an error.
pub fn triage_paths(paths: &[PathBuf], options: &ReportOptions) -> Result<Report, ReportError> {
    let dumps = find_dumps(paths)?;
    let timeout = options.debugger_timeout.unwrap_or(Duration::from_secs(300));
    let entries: Vec<ReportEntry> = dumps
        .into_iter()
        .map(|path| {
            let outcome = match triage_file(&path) {
                Ok(mut triage) => {
                    if let Some(p) = &options.symbol_path {
                        crate::symbols::symbolize(&mut triage, p);
                    }
                    let (analyze, analyze_error) = match &options.debugger {
                        Some(d) => match run_analyze(d, &path, timeout) {
                            Ok(a) => (Some(Box::new(a)), None),
                            Err(e) => (None, Some(lab_error::Chain(&e).to_string())),
                        },
                        None => (None, None),
                    };
                    let signature = signature(&triage, analyze.as_deref());
                    Outcome::Triaged {
                        triage: Box::new(triage),
                        analyze,
                        analyze_error,
                        signature,
                    }
                }
                Err(e) => Outcome::Failed {
                    code: e.kind.code().to_owned(),
                    offset: e.offset,
                    message: lab_error::Chain(&e).to_string(),
                },
            };
            ReportEntry { path, outcome }
        })
        .collect();

    let history = history_for(paths);
    let mut groups: BTreeMap<String, ReportBucket> = BTreeMap::new();
    for e in &entries {
        if let Outcome::Triaged { signature, .. } = &e.outcome {
            groups
                .entry(signature.id.clone())
                .or_insert_with(|| ReportBucket {
                    id: signature.id.clone(),
                    title: signature.title.clone(),
                    dumps: Vec::new(),
                    history: history
                        .as_ref()
                        .and_then(|h| h.buckets.get(&signature.id).cloned()),
                    known_issue: None,
                })
                .dumps
                .push(e.path.clone());
        }
    }
    let mut buckets: Vec<ReportBucket> = groups.into_values().collect();
    buckets.sort_by(|a, b| {
        b.dumps
            .len()
            .cmp(&a.dumps.len())
            .then(a.title.cmp(&b.title))
    });
    Ok(Report { entries, buckets })
}

/// The bucket index next to the inputs: in a given directory (a results root) or its
/// parent (a run directory inside one).
fn history_for(paths: &[PathBuf]) -> Option<BucketIndex> {
    paths.iter().filter(|p| p.is_dir()).find_map(|dir| {
        [Some(dir.as_path()), dir.parent()]
            .into_iter()
            .flatten()
            .find(|d| d.join(BUCKETS_FILE).is_file())
            .and_then(|d| BucketIndex::load(d).ok())
    })
}

/// The report as pretty JSON (`--format json`).
pub fn render_json(report: &Report) -> String {
    serde_json::to_string_pretty(report).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

/// The report for people: one block per dump, then the bucket table.
pub fn render_text(report: &Report) -> String {
    let mut out = String::new();
    for e in &report.entries {
        let _ = writeln!(out, "{}", e.path.display());
        match &e.outcome {
            Outcome::Triaged {
                triage,
                analyze,
                analyze_error,
                signature,
            } => {
                render_triaged(
                    &mut out,
                    triage,
                    analyze.as_deref(),
                    analyze_error.as_deref(),
                    signature,
                );
                if let Some(issue) = report.known_issue(&signature.id) {
                    let _ = writeln!(out, "  known issue: {issue}");
                }
            }
            Outcome::Failed { message, .. } => {
                let _ = writeln!(out, "  error:     {message}");
            }
        }
        out.push('\n');
    }
    let failed = report
        .entries
        .iter()
        .filter(|e| matches!(e.outcome, Outcome::Failed { .. }))
        .count();
    let _ = writeln!(
        out,
        "{} dump(s), {} triaged, {} unreadable, {} bucket(s)",
        report.entries.len(),
        report.entries.len() - failed,
        failed,
        report.buckets.len()
    );
    if !report.buckets.is_empty() {
        let _ = writeln!(
            out,
            "\n{:<16}  {:>5}  {:>9}  TITLE",
            "BUCKET", "DUMPS", "ALL RUNS"
        );
        for b in &report.buckets {
            let history = b.history.as_ref().map_or_else(
                || "-".to_owned(),
                |h| format!("{}x/{}r", h.count, h.runs.len()),
            );
            let known = b
                .known_issue
                .as_deref()
                .map_or_else(String::new, |i| format!("  (known issue: {i})"));
            let _ = writeln!(
                out,
                "{:<16}  {:>5}  {:>9}  {}{known}",
                b.id,
                b.dumps.len(),
                history,
                b.title
            );
        }
    }
    out
}

fn render_triaged(
    out: &mut String,
    t: &Triage,
    analyze: Option<&Analyze>,
    analyze_error: Option<&str>,
    signature: &Signature,
) {
    let b = &t.bugcheck;
    let _ = writeln!(
        out,
        "  dump:      {}, {} bytes",
        t.format.describe(),
        t.file_size
    );
    let _ = writeln!(out, "  bugcheck:  {}", b.display_name());
    let params: Vec<String> = b.params.iter().map(|p| format!("{p:016x}")).collect();
    let _ = writeln!(out, "  params:    {}", params.join(" "));
    if let Some(sub) = b.subcode {
        let meaning = b.subcode_meaning.as_deref().unwrap_or("no description");
        let _ = writeln!(out, "  subcode:   {sub:#x}: {meaning}");
    }
    let place = match (t.stack.first(), &t.faulting_module) {
        (Some(f), _) if f.module.is_some() => f.display(),
        (_, Some(m)) if m.unloaded => format!("{} (unloaded)+{:#x}", m.name, m.offset),
        (_, Some(m)) => format!("{}+{:#x}", m.name, m.offset),
        (_, None) => "not in a listed module".to_owned(),
    };
    let _ = writeln!(out, "  rip:       {:016x} ({place})", t.rip);
    for (i, f) in t.stack.iter().enumerate().skip(1) {
        let label = if i == 1 { "stack:" } else { "" };
        let _ = writeln!(out, "  {label:<10} {:016x} {}", f.address, f.display());
    }
    for u in &t.unloaded_modules {
        let when = u.time.map_or_else(
            || "time unknown".to_owned(),
            |s| s.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        );
        let _ = writeln!(
            out,
            "  unloaded:  {} {:016x}-{:016x}, {when}",
            u.name,
            u.base,
            u.base + u.size
        );
    }
    let time = t.system_time.map_or_else(
        || "unknown".to_owned(),
        |s| s.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
    );
    let up = t
        .uptime
        .map_or_else(String::new, |u| format!(", up {}", humanize(u)));
    let _ = writeln!(out, "  time:      {time}{up}");
    let s = &t.system;
    let build = if s.major_version == 0xC {
        "checked"
    } else {
        "free"
    };
    let product = s.product_type.map_or("unknown product", |p| match p {
        crate::spec::ProductType::Workstation => "workstation",
        crate::spec::ProductType::DomainController => "domain controller",
        crate::spec::ProductType::Server => "server",
    });
    let machine = if s.machine == 0x8664 {
        "x64".to_owned()
    } else {
        format!("machine {:#x}", s.machine)
    };
    let _ = writeln!(
        out,
        "  system:    Windows build {} ({build}, {product}), {machine}, {} processor(s), {} module(s)",
        s.build,
        s.processors,
        t.modules.len()
    );
    if let Some(a) = analyze {
        for (key, value) in [
            ("FAILURE_BUCKET_ID", &a.failure_bucket_id),
            ("SYMBOL_NAME", &a.symbol_name),
            ("PROCESS_NAME", &a.process_name),
        ] {
            if let Some(v) = value {
                let _ = writeln!(out, "  analyze:   {key} {v}");
            }
        }
        for (i, frame) in a.stack.iter().enumerate() {
            let label = if i == 0 { "STACK_TEXT" } else { "          " };
            let _ = writeln!(out, "  analyze:   {label} {frame}");
        }
    }
    if let Some(e) = analyze_error {
        let _ = writeln!(out, "  analyze:   failed: {e}");
    }
    for w in &t.warnings {
        let _ = writeln!(out, "  warning:   {w}");
    }
    let _ = writeln!(out, "  bucket:    {} {}", signature.id, signature.title);
    if let Some(f) = &signature.function {
        let _ = writeln!(
            out,
            "  function:  {f} (the blamed frame's; not part of the bucket)"
        );
    }
}

fn humanize(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        _ => format!("{}h {}m", s / 3600, (s % 3600) / 60),
    }
}

/// The bucket a crash was filed in, as the results folder names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketRef {
    pub id: String,
    pub title: String,
    /// First seen in this run (no earlier run of the results root had it).
    pub new: bool,
}

/// `crashes/<bucket>/triage.json`: what triage learned from the first dump of a run that
/// landed in the bucket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CrashTriage {
    /// The dump triaged, relative to the run folder.
    pub dump: PathBuf,
    pub format: DumpFormat,
    pub format_description: String,
    pub bugcheck: BugCheck,
    pub rip: u64,
    pub faulting_module: Option<FaultingModule>,
    /// Sorted by base address.
    pub modules: Vec<LoadedModule>,
    /// Drivers unloaded earlier in the boot (`MmUnloadedDrivers`).
    #[serde(default)]
    pub unloaded_modules: Vec<crate::triage::UnloadedDriver>,
    /// RIP's frame, then the return addresses on the faulting thread's stack.
    #[serde(default)]
    pub stack: Vec<crate::triage::StackFrame>,
    pub warnings: Vec<String>,
    pub signature: Signature,
    pub bucket: BucketRef,
}

impl CrashTriage {
    pub fn new(t: &Triage, dump: PathBuf, signature: &Signature, new: bool) -> Self {
        CrashTriage {
            dump,
            format: t.format,
            format_description: t.format.describe().to_owned(),
            bugcheck: t.bugcheck.clone(),
            rip: t.rip,
            faulting_module: t.faulting_module.clone(),
            modules: t.modules.clone(),
            unloaded_modules: t.unloaded_modules.clone(),
            stack: t.stack.clone(),
            warnings: t.warnings.clone(),
            signature: signature.clone(),
            bucket: BucketRef {
                id: signature.id.clone(),
                title: signature.title.clone(),
                new,
            },
        }
    }
}

/// `0xfffff807`4a000000`-style address as WinDbg prints it.
fn windbg_addr(a: u64) -> String {
    format!("{:08x}`{:08x}", a >> 32, a & 0xFFFF_FFFF)
}

/// `crashes/<bucket>/analyze.txt`: the triage in the shape of `!analyze -v` output, so
/// readers (and [`crate::parse_analyze`]) used to the debugger find the fields where they
/// expect them. Only facts the dump holds are written: SYMBOL_NAME is `module+offset`
/// unless a debugger named the function, and MODULE_NAME / IMAGE_NAME are left out when
/// RIP is in no listed module (so re-signing the parsed text gives the same bucket).
/// STACK_TEXT lists the frames with the names triage found (dump exports, symbol path).
pub fn render_analyze(c: &CrashTriage, t: &Triage) -> String {
    let mut out = String::new();
    let b = &c.bugcheck;
    let _ = writeln!(
        out,
        "hvlab crash triage (no debugger; fields as !analyze -v)"
    );
    let _ = writeln!(out, "Loading Dump File [{}]", c.dump.display());
    let _ = writeln!(out, "{}", c.format_description);
    if let Some(time) = t.system_time {
        let _ = writeln!(
            out,
            "Debug session time: {}",
            time.format("%a %b %e %H:%M:%S%.3f %Y (UTC + 0:00)")
        );
    }
    if let Some(up) = t.uptime {
        let s = up.as_secs();
        let _ = writeln!(
            out,
            "System Uptime: {} days {}:{:02}:{:02}.{:03}",
            s / 86400,
            (s % 86400) / 3600,
            (s % 3600) / 60,
            s % 60,
            up.subsec_millis()
        );
    }
    let star = "*".repeat(79);
    let _ = writeln!(
        out,
        "\n{star}\n*{:77}*\n*{:^77}*\n*{:77}*\n{star}\n",
        "", "Bugcheck Analysis", ""
    );
    let name = b
        .name
        .clone()
        .unwrap_or_else(|| format!("BUGCHECK_{:X}", b.code));
    let _ = writeln!(out, "{name} ({:x})", b.code);
    if let Some(m) = &b.subcode_meaning {
        let _ = writeln!(out, "{m}");
    }
    let _ = writeln!(out, "Arguments:");
    for (i, p) in b.params.iter().enumerate() {
        let _ = writeln!(out, "Arg{}: {p:016x}", i + 1);
    }
    let _ = writeln!(out, "\nDebugging Details:\n------------------\n");
    let _ = writeln!(out, "BUGCHECK_CODE:  {:x}\n", b.code);
    for (i, p) in b.params.iter().enumerate() {
        let _ = writeln!(out, "BUGCHECK_P{}: {p:x}\n", i + 1);
    }
    let _ = writeln!(out, "DUMP_TYPE:  {}\n", c.format_description);
    let _ = writeln!(out, "FAULTING_IP:  {}\n", windbg_addr(c.rip));
    let stem = |n: &str| n.rsplit_once('.').map_or(n, |(s, _)| s).to_owned();
    let symbol = match (&c.faulting_module, &c.signature.symbol) {
        (Some(m), Some(s)) => Some(format!("{}!{s}", stem(&m.name))),
        (Some(m), None) => Some(format!("{}+{:x}", stem(&m.name), m.offset)),
        (None, _) => None,
    };
    if let Some(s) = &symbol {
        let _ = writeln!(out, "SYMBOL_NAME:  {s}\n");
    }
    if let Some(m) = &c.faulting_module {
        let _ = writeln!(out, "MODULE_NAME: {}\n", stem(&m.name));
        let _ = writeln!(out, "IMAGE_NAME:  {}\n", m.name);
    }
    let place = match &c.faulting_module {
        Some(m) => format!(
            "{}!{}",
            stem(&m.name),
            c.signature.symbol.as_deref().unwrap_or("unknown_function")
        ),
        None => "Unknown_Module".to_owned(),
    };
    // The bucket's code: a 0x50 in an unloaded driver is filed as 0xCE (docs/triage.md).
    let _ = writeln!(
        out,
        "FAILURE_BUCKET_ID:  0x{:X}_{place}\n",
        c.signature.bugcheck_code
    );
    if !c.stack.is_empty() {
        // `retaddr : frame` rows as the debugger's STACK_TEXT (no child-SP: the stack is
        // scanned, not unwound), RIP's frame first; unloaded images are marked as such.
        let _ = writeln!(out, "STACK_TEXT:");
        for f in &c.stack {
            let _ = writeln!(out, "{} : {}", windbg_addr(f.address), f.display());
        }
        let _ = writeln!(out);
    }
    let _ = writeln!(out, "HVLAB_BUCKET_ID:  {}\n", c.bucket.id);
    let _ = writeln!(out, "HVLAB_BUCKET_TITLE:  {}\n", c.bucket.title);
    for w in &c.warnings {
        let _ = writeln!(out, "HVLAB_WARNING:  {w}\n");
    }
    let _ = writeln!(
        out,
        "0: kd> lm\nstart             end                 module name"
    );
    for m in &c.modules {
        let _ = writeln!(
            out,
            "{} {}   {:<20} {}",
            windbg_addr(m.base),
            windbg_addr(m.base.wrapping_add(m.size)),
            stem(&m.name),
            m.path
        );
    }
    if !c.unloaded_modules.is_empty() {
        let _ = writeln!(out, "\nUnloaded modules:");
        for u in &c.unloaded_modules {
            let _ = writeln!(
                out,
                "{} {}   {}",
                windbg_addr(u.base),
                windbg_addr(u.base.wrapping_add(u.size)),
                u.name
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DumpKind, DumpSpec, Module, parse_analyze, triage_bytes};

    fn triaged(rip: u64) -> Triage {
        let modules = vec![
            Module::new("ntoskrnl.exe", 0xFFFF_F807_4A00_0000, 0x0104_6000),
            Module::new("sample_ebpf_ext.sys", 0xFFFF_F807_5020_0000, 0x0001_0000),
        ];
        let spec = DumpSpec::new(
            DumpKind::Kernel,
            0x50,
            [0xFFFF_B00A_1C2E_3000, 0, rip, 2],
            rip,
            modules,
        );
        triage_bytes(
            std::path::Path::new("MEMORY.DMP"),
            crate::dump_bytes(&spec).expect("dump"),
        )
        .expect("triage")
    }

    #[test]
    fn analyze_text_parses_back_to_the_same_bugcheck_module_and_bucket() {
        let t = triaged(0xFFFF_F807_5020_1A3C);
        let sig = signature(&t, None);
        let c = CrashTriage::new(&t, PathBuf::from("s/t/iter-1/dumps/MEMORY.DMP"), &sig, true);
        let a = parse_analyze(&render_analyze(&c, &t)).expect("an analysis");
        assert_eq!(a.bugcheck_code, Some(0x50));
        assert_eq!(
            a.bugcheck_name.as_deref(),
            Some("PAGE_FAULT_IN_NONPAGED_AREA")
        );
        assert_eq!(a.bugcheck_args, t.bugcheck.params.to_vec());
        assert_eq!(a.module_name.as_deref(), Some("sample_ebpf_ext"));
        assert_eq!(a.image_name.as_deref(), Some("sample_ebpf_ext.sys"));
        assert_eq!(a.symbol_name.as_deref(), Some("sample_ebpf_ext+1a3c"));
        assert_eq!(
            a.failure_bucket_id.as_deref(),
            Some("0x50_sample_ebpf_ext!unknown_function")
        );
        // Whoever re-signs the text with the debugger path files it in the same bucket.
        assert_eq!(signature(&t, Some(&a)), sig);
    }

    #[test]
    fn analyze_text_without_a_faulting_module_names_none() {
        let t = triaged(0x1000);
        assert!(t.faulting_module.is_none());
        let sig = signature(&t, None);
        let c = CrashTriage::new(&t, PathBuf::from("MEMORY.DMP"), &sig, false);
        let a = parse_analyze(&render_analyze(&c, &t)).expect("an analysis");
        assert_eq!(
            (&a.module_name, &a.image_name, &a.symbol_name),
            (&None, &None, &None)
        );
        assert_eq!(a.failure_bucket_id.as_deref(), Some("0x50_Unknown_Module"));
        assert_eq!(signature(&t, Some(&a)), sig);
    }
}
