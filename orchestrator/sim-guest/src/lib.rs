//! The simulated guest: a Windows-shaped disk, sim-kernel, and the guest-agent server.
//!
//! A simulated VM is a process running [`run_process`] on a disk directory (the hvlab CLI
//! calls it from its hidden `__sim-guest --disk DIR` subcommand); tests use the in-process
//! form [`RunningGuest`]. [`protocol`] is the wire contract with the orchestrator.
//!
//! ```text
//!  boot: vm.json ─ boot delay ─ new boot id ─ events about the previous boot (6008/41/1001)
//!        ─ sim-kernel (cpus, test signing, verifier) ─ boot/system/auto services
//!        ─ agent on 127.0.0.1:0 ─ agent.json {port, boot_id, pid}
//!  run:  one thread per connection: exec, files, services, settings, events, metrics
//!  exit: Reboot ─► 10   Shutdown / SIGTERM ─► 0   bugcheck (incl. SIGUSR1 = NMI) ─► dump
//!        per CrashControl, crash record ─► 11 (AutoReboot) or 12 (halt)
//! ```
//!
//! # Disk directory
//! ```text
//! <disk>/vm.json                   {name, cpus, memory_mb, boot_delay_ms, resume?, tags?}
//!                                  written by the hypervisor before each start
//!        registry.json             services, boot options (testsigning), CrashControl,
//!                                  verifier; rewritten atomically on every change
//!                                  (missing = empty registry, Windows defaults)
//!        bootstat.json             this boot's id, clean-shutdown flag, crash record
//!        memory.json               running state a checkpoint restore resumes (`resume`)
//!        agent.json                {port, boot_id, pid}, written once the agent listens,
//!                                  removed on an orderly exit
//!        eventlog/System.jsonl     the System event log, one record per line
//!        staging/                  uploads in flight (never visible under C/)
//!        C/                        drive C: (`C:\ebpf\x.sys` is `C/ebpf/x.sys`)
//!        C/Windows/System32/drivers/
//!        C/Windows/MEMORY.DMP      complete / kernel / automatic dumps
//!        C/Windows/Minidump/       small dumps, MMDDYY-NNNNN-01.dmp
//! ```
//! [`disk::Disk::create`] makes a fresh one (the template).
//!
//! # Windows fidelity notes
//! - Events 41 and 1001 are written by the boot *after* a bugcheck, as on Windows (see
//!   [`bootstat`]); so is 6008. A guest that halted (AutoReboot off) shows them once it is
//!   started again. The dump itself is on disk before the process exits.
//! - Test signing and Driver Verifier changes take effect at the next boot; CrashControl
//!   is read when the bugcheck happens.
//! - An NMI always bugchecks 0x80 (Windows 8 and later do, whatever `NMICrashDump` says).

mod bootstat;
mod crash;
pub mod disk;
mod dispatch;
pub mod error;
pub mod eventlog;
mod exec;
pub mod files;
mod guest;
mod process;
pub mod registry;
mod scm;
pub mod server;
pub mod winpath;

pub use bootstat::{BootStat, CrashRecord, SavedState, bugcheck_text};
pub use dispatch::MAX_EVENTS_PER_REPLY;
pub use exec::{MAX_TIMEOUT_MS, TOOL_FORMAT};
pub use guest::{BootError, BootOptions, Control, PowerEvent, RunningGuest};
pub use process::run_process;
/// The wire contract with the orchestrator lives in the shared Windows vocabulary.
pub use win_vocab::protocol;

pub use protocol::launch::{
    EXIT_BUGCHECK_HALT, EXIT_BUGCHECK_REBOOT, EXIT_INFRA, EXIT_POWER_OFF, EXIT_REBOOT, EXIT_USAGE,
};
