//! The guest's state and its power cycle: boot from a disk directory, serve, and exit on a
//! reboot, shutdown or bugcheck. [`RunningGuest`] is the in-process form (tests, and what
//! [`crate::run_process`] drives).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use chrono::Utc;
use parking_lot::{Condvar, Mutex};
use sim_kernel::{Kernel, KernelConfig};

use crate::bootstat::{self, BootStat, SavedState};
use crate::disk::{self, AgentInfo, Disk, DiskError, VmConfig};
use crate::eventlog::{EventLog, SYSTEM_LOG};
use crate::files::Files;
use crate::protocol::Verifier;
use crate::registry::RegistryStore;
use crate::server::Server;
use crate::{EXIT_BUGCHECK_HALT, EXIT_BUGCHECK_REBOOT, EXIT_POWER_OFF, EXIT_REBOOT};

/// Why a guest could not boot.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// The disk directory or one of its files is unusable (exit code 2).
    #[error("boot from the disk")]
    Disk(#[from] DiskError),
    /// The event log could not be opened or written (exit code 3).
    #[error("open the event log {path}")]
    EventLog {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The kernel refused its configuration (exit code 2).
    #[error("boot the kernel")]
    Kernel(#[source] sim_kernel::KernelError),
    /// No loopback port or thread for the agent (exit code 3).
    #[error("start the guest agent")]
    Agent(#[source] std::io::Error),
}

impl BootError {
    /// The process exit code for this failure.
    pub fn exit_code(&self) -> i32 {
        match self {
            BootError::Disk(DiskError::Write { .. }) => crate::EXIT_INFRA,
            BootError::Disk(_) | BootError::Kernel(_) => crate::EXIT_USAGE,
            BootError::EventLog { .. } | BootError::Agent(_) => crate::EXIT_INFRA,
        }
    }
}

/// How the guest leaves the running state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerEvent {
    Reboot,
    Shutdown,
    Bugcheck { auto_reboot: bool },
}

impl PowerEvent {
    /// The documented exit code of the guest process for this event.
    pub fn exit_code(self) -> i32 {
        match self {
            PowerEvent::Reboot => EXIT_REBOOT,
            PowerEvent::Shutdown => EXIT_POWER_OFF,
            PowerEvent::Bugcheck { auto_reboot: true } => EXIT_BUGCHECK_REBOOT,
            PowerEvent::Bugcheck { auto_reboot: false } => EXIT_BUGCHECK_HALT,
        }
    }
}

/// The first power event wins; waiters are woken.
#[derive(Debug, Default)]
pub(crate) struct Power {
    event: Mutex<Option<PowerEvent>>,
    cv: Condvar,
    /// Set at once when the kernel stops, before the crash path has finished.
    pub(crate) halting: AtomicBool,
}

impl Power {
    pub(crate) fn request(&self, ev: PowerEvent) {
        let mut g = self.event.lock();
        if g.is_none() {
            *g = Some(ev);
            self.cv.notify_all();
        }
    }

    pub(crate) fn current(&self) -> Option<PowerEvent> {
        *self.event.lock()
    }

    fn wait(&self, timeout: Option<Duration>) -> Option<PowerEvent> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut g = self.event.lock();
        while g.is_none() {
            match deadline {
                Some(d) => {
                    if self.cv.wait_until(&mut g, d).timed_out() {
                        break;
                    }
                }
                None => self.cv.wait(&mut g),
            }
        }
        *g
    }
}

/// Options of an in-process boot.
#[derive(Debug, Clone, Default)]
pub struct BootOptions {
    /// Ignore `boot_delay_ms` of `vm.json` (tests).
    pub skip_boot_delay: bool,
}

/// Everything a running guest owns; shared by the agent threads and the crash thread.
#[derive(Debug)]
pub(crate) struct GuestCore {
    pub(crate) disk: Disk,
    pub(crate) vm: VmConfig,
    pub(crate) boot_id: String,
    pub(crate) started: Instant,
    pub(crate) registry: RegistryStore,
    pub(crate) events: EventLog,
    pub(crate) files: Files,
    pub(crate) kernel: Kernel,
    /// Boot options in force for this boot (registry changes apply at the next one).
    pub(crate) test_signing: bool,
    pub(crate) verifier: Verifier,
    pub(crate) power: Power,
    /// The SCM database lock: service control requests run one at a time.
    pub(crate) scm: Mutex<crate::scm::ScmState>,
    /// Held for the whole of a service control request.
    pub(crate) scm_control: Mutex<()>,
    pub(crate) bootstat: Mutex<BootStat>,
}

/// A booted guest serving its agent in this process.
#[derive(Debug)]
pub struct RunningGuest {
    core: Arc<GuestCore>,
    server: Server,
    crash_thread: Option<thread::JoinHandle<()>>,
    finished: Option<i32>,
}

impl RunningGuest {
    /// Boots the guest on `disk_dir`: reads `vm.json` and the registry, logs the events of
    /// the previous boot, boots sim-kernel, starts boot/system/auto services, serves the
    /// agent on `127.0.0.1:0` and writes `agent.json`.
    pub fn boot(disk_dir: &Path, opts: &BootOptions) -> Result<RunningGuest, BootError> {
        let disk = Disk::open(disk_dir)?;
        let vm = disk.vm_config()?;
        if !opts.skip_boot_delay && vm.boot_delay_ms > 0 {
            thread::sleep(Duration::from_millis(vm.boot_delay_ms));
        }
        let boot_id = new_boot_id();
        // Uploads in flight when the previous boot ended (or the checkpoint was taken) are
        // lost, as an open file handle is across a reboot.
        let _ = std::fs::remove_dir_all(disk.staging_dir());
        let registry = RegistryStore::load(disk.registry_path())?;
        let log_path = disk.eventlog_dir().join(format!("{SYSTEM_LOG}.jsonl"));
        let events = EventLog::open(log_path.clone()).map_err(|source| BootError::EventLog {
            path: log_path.clone(),
            source,
        })?;
        let log_err = |source| BootError::EventLog {
            path: log_path.clone(),
            source,
        };

        let saved: Option<SavedState> = if vm.resume {
            disk::read_json(&disk.memory_json()).ok()
        } else {
            None
        };
        let prev: Option<BootStat> = disk::read_json(&disk.bootstat_path()).ok();
        if saved.is_none() {
            // A cold boot: report how the previous one ended, then log this boot.
            if let Some(prev) = &prev {
                for ev in bootstat::events_for_previous_boot(prev) {
                    events.append(ev).map_err(log_err)?;
                }
            }
            events.append(bootstat::boot_event()).map_err(log_err)?;
        }
        let stat = BootStat {
            boot_id: boot_id.clone(),
            booted_at: Utc::now(),
            clean_shutdown: false,
            bugcheck: None,
        };
        disk::write_json(&disk.bootstat_path(), &stat)?;

        let reg = registry.snapshot();
        let (test_signing, verifier) = match &saved {
            Some(s) => (s.test_signing, s.verifier.clone()),
            None => (reg.boot.test_signing, reg.verifier.clone()),
        };
        let kernel = Kernel::boot(KernelConfig {
            cpus: vm.cpus,
            verifier_drivers: verifier.drivers.clone(),
            test_signing,
            ..KernelConfig::default()
        })
        .map_err(BootError::Kernel)?;
        let files = Files::new(disk.root().to_owned(), disk.staging_dir());
        let core = Arc::new(GuestCore {
            files,
            vm,
            boot_id,
            started: Instant::now(),
            registry,
            events,
            kernel,
            test_signing,
            verifier,
            power: Power::default(),
            scm: Mutex::new(crate::scm::ScmState::default()),
            scm_control: Mutex::new(()),
            bootstat: Mutex::new(stat),
            disk,
        });
        core.finish_pending_deletes()?;
        core.start_services_at_boot(saved.as_ref().map(|s| s.running_services.as_slice()));
        // A checkpoint taken before any service control must still resume as this boot.
        core.save_running_state();

        let crash_core = core.clone();
        let crash_thread = thread::Builder::new()
            .name("crash-watch".into())
            .spawn(move || crash_core.watch_bugchecks())
            .map_err(BootError::Agent)?;
        let server = Server::start(core.clone()).map_err(BootError::Agent)?;
        let info = AgentInfo {
            port: server.addr().port(),
            boot_id: core.boot_id.clone(),
            pid: std::process::id(),
        };
        disk::write_json(&core.disk.agent_json(), &info)?;
        Ok(RunningGuest {
            core,
            server,
            crash_thread: Some(crash_thread),
            finished: None,
        })
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.server.addr()
    }

    pub fn boot_id(&self) -> &str {
        &self.core.boot_id
    }

    /// The guest's kernel (tests use it to observe or provoke).
    pub fn kernel(&self) -> &Kernel {
        &self.core.kernel
    }

    /// Injects an NMI: the kernel bugchecks 0x80, whatever the agent threads are doing.
    pub fn nmi(&self) {
        self.core.kernel.nmi();
    }

    /// Asks for a clean shutdown (what SIGTERM does in the process form).
    pub fn request_shutdown(&self) {
        self.core.power.request(PowerEvent::Shutdown);
    }

    /// A handle that can press the guest's buttons from another thread.
    pub fn control(&self) -> Control {
        Control {
            core: self.core.clone(),
        }
    }

    /// Waits for a power event (`None` = forever), brings the guest down accordingly and
    /// returns the process exit code; `None` if the timeout passed first.
    pub fn wait_exit(&mut self, timeout: Option<Duration>) -> Option<i32> {
        if let Some(code) = self.finished {
            return Some(code);
        }
        let ev = self.core.power.wait(timeout)?;
        self.server.stop();
        match ev {
            PowerEvent::Reboot | PowerEvent::Shutdown => self.core.clean_shutdown(),
            // The crash thread wrote the dump and the crash record before raising it.
            PowerEvent::Bugcheck { .. } => {}
        }
        self.core.kernel.shutdown();
        if let Some(t) = self.crash_thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(self.core.disk.agent_json());
        let code = ev.exit_code();
        self.finished = Some(code);
        Some(code)
    }

    /// Pulls the plug: no shutdown records (the next boot logs an unexpected shutdown).
    pub fn power_off(mut self) {
        self.pull_plug();
    }

    fn pull_plug(&mut self) {
        if self.finished.is_some() {
            return;
        }
        self.server.stop();
        self.core.power.halting.store(true, Ordering::SeqCst);
        self.core.kernel.shutdown();
        if let Some(t) = self.crash_thread.take() {
            let _ = t.join();
        }
        self.finished = Some(EXIT_POWER_OFF);
    }
}

/// The guest's buttons, usable from any thread (signal handlers, tests).
#[derive(Debug, Clone)]
pub struct Control {
    core: Arc<GuestCore>,
}

impl Control {
    /// NMI: bugcheck 0x80 (see [`RunningGuest::nmi`]).
    pub fn nmi(&self) {
        self.core.kernel.nmi();
    }

    /// The power button: a clean shutdown.
    pub fn shutdown(&self) {
        self.core.power.request(PowerEvent::Shutdown);
    }
}

impl Drop for RunningGuest {
    fn drop(&mut self) {
        self.pull_plug();
    }
}

impl GuestCore {
    /// The clean half of a reboot or shutdown: event 6006 and a clean boot record.
    fn clean_shutdown(&self) {
        let _ = self.events.append(bootstat::shutdown_event());
        let mut stat = self.bootstat.lock();
        stat.clean_shutdown = true;
        let _ = disk::write_json(&self.disk.bootstat_path(), &*stat);
    }

    pub(crate) fn uptime_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }
}

/// A boot id unique across boots and guests: hash of time, pid and a process counter.
fn new_boot_id() -> String {
    use sha2::{Digest, Sha256};
    use std::sync::atomic::AtomicU64;
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = Sha256::new();
    h.update(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
            .to_le_bytes(),
    );
    h.update(std::process::id().to_le_bytes());
    h.update(COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    let d = hex::encode(h.finalize());
    // Shaped like a GUID, as Windows report ids are.
    format!(
        "{}-{}-{}-{}-{}",
        &d[0..8],
        &d[8..12],
        &d[12..16],
        &d[16..20],
        &d[20..32]
    )
}
