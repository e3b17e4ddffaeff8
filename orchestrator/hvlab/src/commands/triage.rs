//! `hvlab triage PATH...`: triage kernel dumps, or every dump under a results directory,
//! and group them into crash buckets; buckets a known-issues file names show their issue.
//! Exit 0 when every dump parsed, 2 when one could not be read (the report still lists
//! the others).

use std::path::Path;

use crash_triage::report::{self, ReportOptions};

use crate::cli::{Format, TriageArgs};
use crate::error::CliError;

/// Runs `hvlab triage`.
pub fn run(root: &Path, args: &TriageArgs) -> Result<u8, CliError> {
    if let Some(missing) = args.paths.iter().find(|p| !p.exists()) {
        return Err(CliError::Usage(format!(
            "`{}` does not exist",
            missing.display()
        )));
    }
    // Triage's exit code does not depend on what crashed, so only the file matters here.
    let known = crate::known::settings(
        root,
        args.known_issues_file.as_deref(),
        lab_runner::known::KnownPolicy::default(),
    )?;
    for w in known.expiry_warnings() {
        eprintln!("warning: {w}");
    }
    let options = ReportOptions {
        debugger: args
            .debugger
            .as_ref()
            .map(|path| crash_triage::DebuggerConfig {
                path: path.clone(),
                symbol_path: args.symbols.clone(),
            }),
        // Local folders of the symbol path name functions of unloaded drivers.
        symbol_path: args.symbols.as_deref().map(crash_triage::SymbolPath::parse),
        ..ReportOptions::default()
    };
    let mut r = report::triage_paths(&args.paths, &options)
        .map_err(|e| CliError::Usage(format!("triage: {}", lab_error::Chain(&e))))?;
    if let Some(issues) = &known.issues {
        r.mark_known(|id, title| issues.find(id, title, known.today).map(|e| e.issue.clone()));
    }
    match args.format {
        Format::Human => crate::stdout(&report::render_text(&r))?,
        Format::Json => crate::stdout(&format!("{}\n", report::render_json(&r)))?,
    }
    Ok(u8::try_from(r.exit_code()).unwrap_or(crate::exit::CONFIG_ERROR))
}
