//! Windows kernel dumps: writing them for the simulated lab, triage, signatures and buckets.
//!
//! ```text
//! sim guest bugchecks ─► write_dump(path, &DumpSpec)          (writer/)
//! collected *.dmp     ─► triage_file(path) -> Triage          (triage/)
//!   debugger on host  ─► analyze_command() / parse_analyze()  (analyze.rs)
//!   symbol path       ─► symbolize(&mut Triage, &SymbolPath)  (symbols.rs)
//!                     ─► signature(&Triage, Option<&Analyze>) (signature.rs)
//!                     ─► BucketIndex::record(results root)    (bucket.rs)
//! `hvlab triage PATH` ─► report::triage_paths + render_text / render_json (report.rs)
//! ```

pub mod analyze;
pub mod bucket;
pub mod codes;
mod format;
pub mod report;
pub mod signature;
pub mod spec;
pub mod symbols;
pub mod triage;
pub mod writer;

pub use analyze::{Analyze, DebuggerConfig, analyze_command, parse_analyze, run_analyze};
pub use bucket::{BucketIndex, BucketUpdate, CrashRecord, KeepDumps};
pub use signature::{Signature, signature};
pub use spec::{
    DumpKind, DumpSpec, Export, Module, OsVersion, PageEncoding, ProductType, UnloadedModule,
};
pub use symbols::{SymbolPath, symbolize};
pub use triage::{
    BugCheck, DumpFormat, FaultingModule, LoadedModule, StackFrame, SystemInfo, Triage,
    TriageError, TriageErrorKind, UnloadedDriver, triage_bytes, triage_file,
};
pub use writer::{WriteError, dump_bytes, write_dump};
