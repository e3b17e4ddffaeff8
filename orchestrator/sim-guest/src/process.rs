//! The guest as a process: `run_process(disk)` boots, serves until a power event, and
//! returns the exit code. Signals stand in for the hypervisor's buttons: SIGUSR1 is an NMI
//! (bugcheck 0x80 and a dump, even when every agent thread is stuck), SIGTERM and SIGINT
//! are the ACPI power button (clean shutdown). Pulling the plug is SIGKILL.
//!
//! The process's stderr is its serial console: a few lines about boot and exit, which the
//! hypervisor keeps in the VM's console log.

use std::path::Path;
use std::sync::Arc;
use std::sync::OnceLock;
use std::thread;

use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR1};
use signal_hook::iterator::Signals;

use crate::guest::{BootOptions, Control, RunningGuest};

/// Boots the guest on `disk_dir` and runs it until it reboots, shuts down or bugchecks;
/// returns the process exit code (see the `EXIT_*` constants).
pub fn run_process(disk_dir: &Path) -> i32 {
    // Handlers first: SIGUSR1's default action would kill the process during boot.
    let mut signals = match Signals::new([SIGUSR1, SIGTERM, SIGINT]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("sim-guest: failed to install signal handlers: {e}");
            return crate::EXIT_INFRA;
        }
    };
    let handle = signals.handle();
    // Signals may arrive before the guest has booted; the thread finds it here once it has.
    let target: Arc<OnceLock<Control>> = Arc::new(OnceLock::new());
    let pending_shutdown = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (t, p) = (target.clone(), pending_shutdown.clone());
    let signal_thread = thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                match (sig, t.get()) {
                    (SIGUSR1, Some(c)) => c.nmi(),
                    // An NMI before the kernel runs hits the firmware: nothing to dump.
                    (SIGUSR1, None) => {}
                    (_, Some(c)) => c.shutdown(),
                    (_, None) => p.store(true, std::sync::atomic::Ordering::SeqCst),
                }
            }
        });
    if let Err(e) = signal_thread {
        eprintln!("sim-guest: failed to start the signal thread: {e}");
        return crate::EXIT_INFRA;
    }

    eprintln!("sim-guest: booting from {}", disk_dir.display());
    let mut guest = match RunningGuest::boot(disk_dir, &BootOptions::default()) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("sim-guest: failed to {}", lab_error::Chain(&e));
            handle.close();
            return e.exit_code();
        }
    };
    eprintln!(
        "sim-guest: up, boot id {}, agent on {}",
        guest.boot_id(),
        guest.addr()
    );
    let _ = target.set(guest.control());
    if pending_shutdown.load(std::sync::atomic::Ordering::SeqCst) {
        guest.request_shutdown();
    }
    let code = guest.wait_exit(None).unwrap_or(crate::EXIT_INFRA);
    eprintln!("sim-guest: exiting with code {code}");
    handle.close();
    code
}
