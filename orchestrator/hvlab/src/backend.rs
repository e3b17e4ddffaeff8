//! Turns a validated lab into a hypervisor backend.

use lab_backends::AnyHypervisor;
use lab_backends::sim::{GuestLauncher, SimHypervisor, default_root};
use lab_config::{Lab, LabBackend};

use crate::error::CliError;

/// The hidden verb a simulated VM runs (`hvlab __sim-guest --disk DIR`).
pub const GUEST_VERB: &str = "__sim-guest";

/// The simulated lab's state directory: `HVLAB_SIM_ROOT`, else a per-user temp folder.
pub fn sim_root() -> std::path::PathBuf {
    std::env::var_os("HVLAB_SIM_ROOT")
        .map(Into::into)
        .unwrap_or_else(default_root)
}

/// The simulated hypervisor, launching guests as this very executable.
pub fn sim() -> Result<SimHypervisor, CliError> {
    let exe = std::env::current_exe().map_err(|source| CliError::Io {
        action: "find the hvlab executable to start simulated guests".into(),
        source,
    })?;
    Ok(SimHypervisor::new(
        sim_root(),
        GuestLauncher {
            program: exe,
            args: vec![GUEST_VERB.into()],
        },
    ))
}

/// A backend for `lab`.
pub fn connect(lab: &Lab) -> Result<AnyHypervisor, CliError> {
    match &lab.backend {
        LabBackend::Sim(_) => Ok(AnyHypervisor::Sim(sim()?)),
        LabBackend::HyperV(_) => Err(CliError::Infra(format!(
            "run on lab `{}`: the Hyper-V backend is not part of this build yet; run on the simulated lab (vm-configs/local-sim.yaml)",
            lab.name
        ))),
    }
}
