//! `hvlab lab status` and `hvlab lab gc`: the VMs hvlab created on the simulated lab, and
//! removal of those a killed run left behind.

use lab_backends::Hypervisor;

use crate::cli::{LabArgs, LabCommand};
use crate::error::CliError;
use crate::settings::EnvSettings;
use crate::{backend, exit};

/// Runs `hvlab lab ...`.
pub fn run(args: &LabArgs, env: &EnvSettings) -> Result<u8, CliError> {
    let hv = backend::sim(env)?;
    let rt = crate::runtime(false)?;
    rt.block_on(async {
        let vms = hv
            .list_owned()
            .await
            .map_err(|e| CliError::infra("list the lab's VMs", e))?;
        match &args.command {
            LabCommand::Status => {
                if vms.is_empty() {
                    println!("no hvlab VMs under {}", hv.root().display());
                }
                for vm in &vms {
                    let owner = match vm.owner_alive {
                        Some(true) => "run in progress",
                        Some(false) => "orphaned (its run has ended)",
                        None => "owner unknown",
                    };
                    println!(
                        "{}  run {}  template {}  {:?}  {owner}",
                        vm.name, vm.run_id, vm.template, vm.state
                    );
                }
                Ok(exit::SUCCESS)
            }
            LabCommand::Gc { all, dry_run } => {
                let mut failed = Vec::new();
                let mut removed = 0;
                for vm in vms.iter().filter(|v| *all || v.owner_alive != Some(true)) {
                    if *dry_run {
                        println!("would remove {} (run {})", vm.name, vm.run_id);
                        continue;
                    }
                    match hv.remove_on_disk(&vm.name) {
                        Ok(()) => {
                            removed += 1;
                            println!("removed {} (run {})", vm.name, vm.run_id);
                        }
                        Err(e) => failed.push(format!("{}: {e}", vm.name)),
                    }
                }
                if !*dry_run {
                    println!("{removed} VM(s) removed from {}", hv.root().display());
                }
                if failed.is_empty() {
                    Ok(exit::SUCCESS)
                } else {
                    Err(CliError::infra_msg(format!(
                        "remove leftover VMs: {}",
                        failed.join("; ")
                    )))
                }
            }
        }
    })
}
