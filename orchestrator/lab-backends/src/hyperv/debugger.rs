//! `!analyze -v` on a VM's Hyper-V host, where the Debugging Tools live. The host's own
//! copy of a dump is gone by then (a download removes its gzip'd staging copy as soon as it
//! is fetched, and the guest's file right after, so the next crash is not mistaken for this
//! one), so the collected dump is copied back into the host's staging folder, with the
//! payload's driver files beside it as a symbol folder, analysed, and the folder removed.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::HyperV;
use super::host::{PowerShellHost, call};
use super::scripts::files;
use super::scripts::guest::ProcessResult;
use super::scripts::host as hs;
use crate::error::{BackendError, Result};

/// Distinguishes the analysis folders of one process.
static ANALYSIS: AtomicU64 = AtomicU64::new(0);

/// Time allowed for one `!analyze -v` (symbol downloads can be slow).
pub const ANALYZE_TIMEOUT: Duration = Duration::from_secs(300);

/// What the runner asks of the host debugger.
#[derive(Debug, Clone)]
pub struct HostAnalyze<'a> {
    /// kd.exe / cdb.exe on the host (`debugger.path`).
    pub debugger: &'a str,
    /// The lab's `debugger.symbol_path`, searched after the payload's driver files.
    pub symbol_path: Option<&'a str>,
    /// Local driver images (and their PDBs) copied to the host's symbol folder.
    pub symbol_files: &'a [PathBuf],
    /// How long the debugger may run before the host script kills it.
    pub timeout: Duration,
}

/// What the debugger printed, and what could not be removed from the host afterwards.
#[derive(Debug, Clone)]
pub struct HostAnalysis {
    pub process: ProcessResult,
    /// The host folder left behind, and why (named so a user can remove it).
    pub left_behind: Option<String>,
}

/// The host folder of one analysis and the paths in it: `<staging>\<pid>-<vm>-<n>-analyze`
/// holding `dump\<name>` and `symbols\`.
pub fn host_paths(staging: &str, vm: &str, dump_name: &str) -> (String, String, String) {
    let n = ANALYSIS.fetch_add(1, Ordering::Relaxed);
    let dir = format!("{staging}\\{}-{vm}-{n}-analyze", std::process::id());
    let dump = format!("{dir}\\dump\\{dump_name}");
    let symbols = format!("{dir}\\symbols");
    (dir, dump, symbols)
}

/// The `-y` path: the payload's driver folder on the host first (the debugger finds the
/// unloaded driver's image there), then the lab's.
pub fn symbol_path(host_symbols: Option<&str>, lab: Option<&str>) -> Option<String> {
    let parts: Vec<&str> = host_symbols.into_iter().chain(lab).collect();
    (!parts.is_empty()).then(|| parts.join(";"))
}

impl HyperV {
    /// Runs the host debugger's `!analyze -v` on `dump` (a dump collected from `vm`) on the
    /// VM's host and returns what it printed. The host folder it uses is removed whatever
    /// happens; one that could not be removed is named in the result.
    pub async fn analyze_dump(
        &self,
        vm: &str,
        dump: &Path,
        a: &HostAnalyze<'_>,
    ) -> Result<HostAnalysis> {
        let i = self.locate(vm, "analyze a crash dump").await?;
        let host = self.host(i);
        let staging = self.config().hosts[i].staging_dir();
        let name = dump
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "MEMORY.DMP".to_owned());
        let (dir, host_dump, host_symbols) = host_paths(&staging, vm, &name);
        let ran = self
            .analyze_in(host, vm, dump, a, &host_dump, &host_symbols)
            .await;
        let removed = call::<serde_json::Value, _>(
            host,
            &files::remove(&dir),
            self.config().timing.op_timeout,
        )
        .await;
        let left_behind = removed
            .err()
            .map(|e| format!("{dir} on host {}: {}", host.target(), lab_error::Chain(&e)));
        Ok(HostAnalysis {
            process: ran?,
            left_behind,
        })
    }

    async fn analyze_in(
        &self,
        host: &super::AnyPsHost,
        vm: &str,
        dump: &Path,
        a: &HostAnalyze<'_>,
        host_dump: &str,
        host_symbols: &str,
    ) -> Result<ProcessResult> {
        let ps = |e: super::error::PsError| e.into_backend(vm, false);
        host.put_file(dump, host_dump).await.map_err(ps)?;
        let mut copied = false;
        for f in a.symbol_files {
            let Some(file) = f.file_name() else { continue };
            let to = format!("{host_symbols}\\{}", file.to_string_lossy());
            host.put_file(f, &to).await.map_err(ps)?;
            copied = true;
        }
        let symbols = symbol_path(copied.then_some(host_symbols), a.symbol_path);
        let script = hs::debugger_analyze(
            a.debugger,
            host_dump,
            symbols.as_deref(),
            a.timeout.as_millis() as u64,
        );
        // The script kills the debugger at the timeout; the margin lets it report that.
        let limit = a.timeout + self.config().timing.op_timeout;
        let r: ProcessResult = call(host, &script, limit).await.map_err(ps)?;
        if r.timed_out {
            return Err(BackendError::VmState {
                vm: vm.to_owned(),
                operation: "analyze a crash dump".into(),
                message: format!(
                    "debugger {} gave no result within {}s, killed",
                    a.debugger,
                    a.timeout.as_secs()
                ),
            });
        }
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driver_folder_comes_before_the_lab_symbol_path() {
        assert_eq!(
            symbol_path(Some(r"D:\s\symbols"), Some("srv*C:\\sym*https://msdl")),
            Some(r"D:\s\symbols;srv*C:\sym*https://msdl".to_owned())
        );
        assert_eq!(symbol_path(None, Some("srv*")), Some("srv*".to_owned()));
        assert_eq!(symbol_path(Some("x"), None), Some("x".to_owned()));
        assert_eq!(symbol_path(None, None), None);
    }

    #[test]
    fn each_analysis_gets_its_own_folder() {
        let (a, dump, sym) = host_paths(r"D:\vms\.hvlab-staging", "vm1", "MEMORY.DMP");
        let (b, _, _) = host_paths(r"D:\vms\.hvlab-staging", "vm1", "MEMORY.DMP");
        assert_ne!(a, b);
        assert!(
            dump.starts_with(&a) && dump.ends_with(r"\dump\MEMORY.DMP"),
            "{dump}"
        );
        assert_eq!(sym, format!(r"{a}\symbols"));
    }
}
