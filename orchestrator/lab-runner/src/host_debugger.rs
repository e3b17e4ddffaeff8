//! The lab's `debugger:` on a Hyper-V lab: `!analyze -v` runs on the crashed VM's host
//! (where the Debugging Tools are), on the collected dump copied back there, with the
//! payload's driver files as the first symbol folder; its output is parsed here with the
//! same parser as on the sim lab.

use std::path::{Path, PathBuf};
use std::time::Duration;

use lab_backends::hyperv::HyperV;
use lab_backends::hyperv::debugger::HostAnalyze;

use crate::events::Event;
use crate::exec::UnitCtx;

/// Runs and parses `!analyze -v` on the VM's host. `Err` is the reason, for the warning
/// that keeps hvlab's own triage.
pub(crate) async fn analyze(
    ctx: &UnitCtx<'_>,
    hv: &HyperV,
    d: &lab_config::Debugger,
    dump: &Path,
    timeout: Duration,
) -> Result<crash_triage::Analyze, String> {
    let symbol_files = driver_files(ctx);
    let ask = HostAnalyze {
        debugger: &d.path,
        symbol_path: d.symbol_path.as_deref(),
        symbol_files: &symbol_files,
        timeout,
    };
    let done = hv
        .analyze_dump(ctx.vm, dump, &ask)
        .await
        .map_err(|e| format!("on the host of {}: {}", ctx.vm, lab_error::Chain(&e)))?;
    if let Some(left) = &done.left_behind {
        let _ = ctx.events.send(Event::Warning {
            message: format!("could not remove the debugger's copy of the dump: {left}"),
        });
    }
    crash_triage::parse_analyze(&done.process.stdout).ok_or_else(|| {
        format!(
            "on the host of {}: its output holds no !analyze result (exit code {})",
            ctx.vm, done.process.exit_code
        )
    })
}

/// The payload's driver images, and a PDB beside each when the build left one: what the
/// debugger needs to name functions of a driver that is no longer loaded.
fn driver_files(ctx: &UnitCtx<'_>) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for image in crate::crash::driver_images(ctx) {
        out.push(image.to_owned());
        let pdb = image.with_extension("pdb");
        if pdb.is_file() {
            out.push(pdb);
        }
    }
    out
}
