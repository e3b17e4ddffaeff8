//! `hvlab triage PATH...`: triage kernel dumps, or every dump under a results directory,
//! and group them into crash buckets. Exit 0 when every dump parsed, 2 when one could not
//! be read (the report still lists the others).

use crash_triage::report::{self, ReportOptions};

use crate::cli::{Format, TriageArgs};
use crate::error::CliError;

/// Runs `hvlab triage`.
pub fn run(args: &TriageArgs) -> Result<u8, CliError> {
    if let Some(missing) = args.paths.iter().find(|p| !p.exists()) {
        return Err(CliError::Usage(format!(
            "`{}` does not exist",
            missing.display()
        )));
    }
    let options = ReportOptions::default();
    let r = report::triage_paths(&args.paths, &options)
        .map_err(|e| CliError::Usage(format!("triage: {}", lab_error::Chain(&e))))?;
    match args.format {
        Format::Human => crate::stdout(&report::render_text(&r))?,
        Format::Json => crate::stdout(&format!("{}\n", report::render_json(&r)))?,
    }
    Ok(u8::try_from(r.exit_code()).unwrap_or(crate::exit::CONFIG_ERROR))
}
