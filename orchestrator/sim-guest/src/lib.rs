//! The simulated guest: a Windows-shaped disk, sim-kernel, and the guest-agent server.
//!
//! [`protocol`] is the wire contract between the orchestrator's guest client and this
//! guest agent.

pub mod disk;
pub mod error;
pub mod eventlog;
pub mod files;
pub mod protocol;
pub mod registry;
pub mod winpath;

/// Exit code: the guest was shut down (`Shutdown` request or SIGTERM), like a power-off.
pub const EXIT_POWER_OFF: i32 = 0;
/// Exit code: the disk directory or `vm.json` is missing or invalid.
pub const EXIT_USAGE: i32 = 2;
/// Exit code: the guest could not run (I/O failure on its disk, no loopback port).
pub const EXIT_INFRA: i32 = 3;
/// Exit code: the guest asked to be restarted (`Reboot` request); start it again.
pub const EXIT_REBOOT: i32 = 10;
/// Exit code: the guest bugchecked and `AutoReboot` is on; start it again.
pub const EXIT_BUGCHECK_REBOOT: i32 = 11;
/// Exit code: the guest bugchecked and `AutoReboot` is off; it stays off (a blue screen).
pub const EXIT_BUGCHECK_HALT: i32 = 12;
