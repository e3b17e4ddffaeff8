//! `hvlab results merge DIR... --out DIR` (one results folder from a run's CI shards) and
//! `hvlab results prune` (remove old run folders, never one in progress).

use std::path::Path;

use chrono::Utc;
use lab_runner::prune::{self, PrunePolicy};

use crate::cli::{ResultsArgs, ResultsCommand};
use crate::error::CliError;

/// Runs `hvlab results`.
pub fn run(root: &Path, args: &ResultsArgs) -> Result<u8, CliError> {
    match &args.command {
        ResultsCommand::Merge { dirs, out } => {
            let merged = lab_runner::merge::merge(dirs, out).map_err(|e| match e.exit_code() {
                2 => CliError::Usage(lab_error::Chain(&e).to_string()),
                _ => CliError::infra("merge results", e),
            })?;
            let s = merged.stats;
            eprintln!(
                "merged {} shards into {}: {} units: {} passed, {} failed, {} errored, {} cancelled; {} crash{}",
                merged.shards,
                out.display(),
                s.units,
                s.passed,
                s.failed,
                s.errored,
                s.cancelled,
                s.crashes,
                if s.crashes == 1 { "" } else { "es" }
            );
            // The merged verdict, so a CI merge job can gate on it like on a run.
            Ok(merged.exit_code as u8)
        }
        ResultsCommand::Prune {
            keep,
            older_than,
            results,
            dry_run,
        } => {
            let results_root = results.clone().unwrap_or_else(|| root.join("results"));
            let policy = PrunePolicy {
                keep: *keep,
                older_than: older_than.map(Into::into),
            };
            let runs = prune::plan(&results_root, policy, Utc::now())
                .map_err(|e| CliError::infra("prune results", e))?;
            let mut out = String::new();
            for r in runs.iter().filter(|r| r.running) {
                out.push_str(&format!("kept {} (in progress)\n", r.id));
            }
            let removed: Vec<&prune::RunEntry> = if *dry_run {
                runs.iter().filter(|r| r.remove).collect()
            } else {
                prune::remove(&runs).map_err(|e| CliError::infra("prune results", e))?
            };
            let verb = if *dry_run { "would remove" } else { "removed" };
            for r in &removed {
                out.push_str(&format!("{verb} {}\n", r.id));
            }
            let kept = runs.len() - removed.len();
            out.push_str(&format!(
                "{verb} {} run{}, kept {kept} in {}\n",
                removed.len(),
                if removed.len() == 1 { "" } else { "s" },
                results_root.display()
            ));
            crate::stdout(&out)?;
            Ok(0)
        }
    }
}
