//! One simulated VM's power cycle: a monitor task owns the guest process and restarts it
//! after a reboot or a bugcheck (AutoReboot), exactly the shape of a real crash-reboot.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use win_vocab::protocol::launch;

use super::disk::{self, CONSOLE_LOG, GUEST_PID_FILE};
use crate::error::{BackendError, Result};
use crate::model::{VmSpec, VmState};
use crate::process::Supervised;

/// How to start a guest process: `program args... --disk <disk>`. The CLI passes its own
/// executable and the hidden guest subcommand, so `cargo run` needs nothing else built.
#[derive(Debug, Clone)]
pub struct GuestLauncher {
    pub program: PathBuf,
    pub args: Vec<OsString>,
}

/// Power state plus what the monitor knows about the current guest process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub state: VmState,
    pub pid: Option<u32>,
    /// Incremented on every guest process start.
    pub boots: u64,
    /// Exit code of the previous guest process, if it exited.
    pub last_exit: Option<i32>,
}

/// Commands to the monitor task.
#[derive(Debug)]
enum Ctl {
    /// Pull the plug and end the monitor.
    Kill,
    /// Deliver an NMI (SIGUSR1) to the guest.
    Nmi,
}

/// A simulated VM: its directory, its spec and its running monitor, if powered on.
#[derive(Debug)]
pub struct SimVm {
    pub name: String,
    pub dir: PathBuf,
    pub spec: VmSpec,
    status: watch::Sender<Status>,
    running: tokio::sync::Mutex<Option<Running>>,
}

#[derive(Debug)]
struct Running {
    ctl: mpsc::UnboundedSender<Ctl>,
    monitor: JoinHandle<()>,
}

impl SimVm {
    pub fn new(dir: PathBuf, spec: VmSpec) -> Self {
        let (status, _) = watch::channel(Status {
            state: VmState::Off,
            pid: None,
            boots: 0,
            last_exit: None,
        });
        SimVm {
            name: spec.name.clone(),
            dir,
            spec,
            status,
            running: tokio::sync::Mutex::new(None),
        }
    }

    pub fn disk(&self) -> PathBuf {
        self.dir.join(disk::DISK_DIR)
    }

    pub fn status(&self) -> Status {
        self.status.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<Status> {
        self.status.subscribe()
    }

    /// Powers the VM on. `cold` applies the template's boot delay; a checkpoint restore
    /// resumes without one (a standard checkpoint keeps memory, so there is no boot).
    pub async fn power_on(&self, launcher: &GuestLauncher, cold: bool) -> Result<()> {
        let mut running = self.running.lock().await;
        if let Some(r) = running.as_ref()
            && !r.monitor.is_finished()
        {
            return Err(BackendError::VmState {
                vm: self.name.clone(),
                operation: "start".into(),
                message: "the VM is already running".into(),
            });
        }
        let delay = if cold {
            self.spec.boot_delay
        } else {
            Duration::ZERO
        };
        let child = self.spawn_guest(launcher, delay, !cold)?;
        let (ctl, rx) = mpsc::unbounded_channel();
        let monitor = tokio::spawn(monitor(
            self.name.clone(),
            self.dir.clone(),
            self.spec.clone(),
            launcher.clone(),
            child,
            rx,
            self.status.clone(),
        ));
        *running = Some(Running { ctl, monitor });
        Ok(())
    }

    /// Turns the VM off at once and waits for the monitor to finish.
    pub async fn power_off(&self) -> Result<()> {
        let taken = self.running.lock().await.take();
        if let Some(r) = taken {
            let _ = r.ctl.send(Ctl::Kill);
            let _ = r.monitor.await;
        }
        self.status.send_modify(|s| {
            s.state = VmState::Off;
            s.pid = None;
        });
        Ok(())
    }

    /// Delivers an NMI to the running guest.
    pub async fn nmi(&self) -> Result<()> {
        let running = self.running.lock().await;
        match running.as_ref() {
            Some(r) if !r.monitor.is_finished() => r
                .ctl
                .send(Ctl::Nmi)
                .map_err(|_| self.not_running("inject NMI")),
            _ => Err(self.not_running("inject NMI")),
        }
    }

    fn not_running(&self, operation: &str) -> BackendError {
        BackendError::VmState {
            vm: self.name.clone(),
            operation: operation.into(),
            message: "the VM is not running".into(),
        }
    }

    fn spawn_guest(
        &self,
        launcher: &GuestLauncher,
        delay: Duration,
        resume: bool,
    ) -> Result<Supervised> {
        spawn_guest(
            &self.name,
            &self.dir,
            &self.spec,
            launcher,
            delay,
            resume,
            &self.status,
        )
    }
}

fn spawn_guest(
    name: &str,
    dir: &Path,
    spec: &VmSpec,
    launcher: &GuestLauncher,
    delay: Duration,
    resume: bool,
    status: &watch::Sender<Status>,
) -> Result<Supervised> {
    let disk = dir.join(disk::DISK_DIR);
    // The shared launch contract's type for vm.json, so both sides agree on the format.
    let vm_json = win_vocab::protocol::launch::VmConfig {
        name: name.to_owned(),
        cpus: spec.vcpus,
        memory_mb: spec.memory_mb,
        boot_delay_ms: delay.as_millis() as u64,
        resume,
        tags: [("run_id".to_owned(), spec.run_id.clone())].into(),
    };
    let bytes = serde_json::to_vec_pretty(&vm_json).expect("vm.json serialises");
    disk::write_atomic(&disk.join("vm.json"), &bytes)?;
    // A stale agent.json would make wait_ready talk to the previous boot.
    let _ = std::fs::remove_file(disk.join("agent.json"));
    let mut cmd = tokio::process::Command::new(&launcher.program);
    cmd.args(&launcher.args).arg("--disk").arg(&disk);
    let child = Supervised::spawn(format!("guest of {name}"), cmd, &dir.join(CONSOLE_LOG))?;
    disk::write_atomic(
        &dir.join(GUEST_PID_FILE),
        child.pid().to_string().as_bytes(),
    )?;
    status.send_modify(|s| {
        s.state = VmState::Starting;
        s.pid = Some(child.pid());
        s.boots += 1;
    });
    Ok(child)
}

/// Owns the guest process: restarts it after a reboot or an auto-reboot bugcheck, and stops
/// when told to or when the guest powers off or halts.
async fn monitor(
    name: String,
    dir: PathBuf,
    spec: VmSpec,
    launcher: GuestLauncher,
    mut child: Supervised,
    mut ctl: mpsc::UnboundedReceiver<Ctl>,
    status: watch::Sender<Status>,
) {
    loop {
        tokio::select! {
            code = child.wait() => {
                let code = code.ok().flatten();
                tracing::debug!(vm = %name, ?code, "guest process exited");
                let restart = matches!(
                    code,
                    Some(launch::EXIT_REBOOT) | Some(launch::EXIT_BUGCHECK_REBOOT)
                );
                let state = match code {
                    Some(launch::EXIT_BUGCHECK_REBOOT) | Some(launch::EXIT_BUGCHECK_HALT) => VmState::Crashed,
                    _ => VmState::Off,
                };
                status.send_modify(|s| {
                    s.state = state;
                    s.pid = None;
                    s.last_exit = code;
                });
                if !restart {
                    return;
                }
                match spawn_guest(&name, &dir, &spec, &launcher, spec.boot_delay, false, &status) {
                    Ok(c) => child = c,
                    Err(e) => {
                        tracing::error!(vm = %name, error = %e, "could not restart the guest");
                        status.send_modify(|s| s.state = VmState::Off);
                        return;
                    }
                }
            }
            cmd = ctl.recv() => match cmd {
                Some(Ctl::Nmi) => {
                    if let Err(e) = child.signal(Signal::SIGUSR1) {
                        tracing::warn!(vm = %name, error = %e, "NMI delivery failed");
                    }
                }
                Some(Ctl::Kill) | None => {
                    let _ = child.kill().await;
                    status.send_modify(|s| {
                        s.state = VmState::Off;
                        s.pid = None;
                    });
                    return;
                }
            },
        }
    }
}
