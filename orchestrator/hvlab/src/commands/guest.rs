//! `hvlab __sim-guest --disk DIR` (hidden): the process a simulated VM runs. The lab starts
//! this very executable, so `cargo run` needs nothing else built.

use crate::cli::GuestArgs;

/// Boots the simulated guest and returns its exit code (reboot, bugcheck, power off).
pub fn run(args: &GuestArgs) -> u8 {
    let code = sim_guest::run_process(&args.disk);
    u8::try_from(code).unwrap_or(crate::exit::INFRA_ERROR)
}
