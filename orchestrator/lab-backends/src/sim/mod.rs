//! The embedded simulated lab: VMs are `sim-guest` child processes with a disk directory.
//!
//! ```text
//! <root>/templates/base/            empty Windows-shaped disk every VM is cloned from
//! <root>/vms/<vm>/owner.json        run id + orchestrator pid (for `hvlab lab gc`)
//!                 disk/             the guest's disk (vm.json, registry, C/..., eventlog/)
//!                 checkpoints/<cp>/ copies of disk/
//!                 guest.pid         pid of the current guest process
//!                 console.log       guest stdout/stderr
//! ```
//! Provision = clone of the template directory, checkpoint/restore = copy of the disk
//! directory, boot = process start, heartbeat = agent ping, boot id = new per boot.

pub mod agent;
pub mod disk;
mod guest;
mod vm;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use guest::SimGuest;
pub use vm::{GuestLauncher, Status};

use self::disk::{CHECKPOINTS_DIR, DISK_DIR, OwnerRecord};
use self::vm::SimVm;
use crate::error::{BackendError, Result};
use crate::guest::{AnyGuest, Guest};
use crate::hypervisor::Hypervisor;
use crate::model::{ConsoleSegment, OwnedVm, StopMode, VmSpec, VmState};
use crate::process;

/// The simulated hypervisor. Cheap to clone; all clones share the VM table.
#[derive(Debug, Clone)]
pub struct SimHypervisor {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    root: PathBuf,
    launcher: GuestLauncher,
    vms: std::sync::Mutex<HashMap<String, Arc<SimVm>>>,
}

/// Default root of the simulated lab's state: per user, stable across runs so that
/// `hvlab lab gc` finds what a killed run left behind.
pub fn default_root() -> PathBuf {
    std::env::temp_dir().join(format!("hvlab-sim-{}", nix::unistd::getuid()))
}

impl SimHypervisor {
    pub fn new(root: impl Into<PathBuf>, launcher: GuestLauncher) -> Self {
        SimHypervisor {
            inner: Arc::new(Inner {
                root: root.into(),
                launcher,
                vms: Default::default(),
            }),
        }
    }

    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    fn vm_dir(&self, vm: &str) -> PathBuf {
        self.inner.root.join("vms").join(vm)
    }

    fn get(&self, vm: &str, operation: &str) -> Result<Arc<SimVm>> {
        self.inner
            .vms
            .lock()
            .expect("vm table lock")
            .get(vm)
            .cloned()
            .ok_or_else(|| BackendError::VmState {
                vm: vm.to_owned(),
                operation: operation.to_owned(),
                message: "no such VM in this lab session".into(),
            })
    }

    /// Status as the monitor sees it (state, pid, boot count).
    pub fn status(&self, vm: &str) -> Result<Status> {
        Ok(self.get(vm, "status")?.status())
    }

    /// The base template disk: the Windows directories a fresh install has.
    fn ensure_template(&self) -> Result<PathBuf> {
        let base = self.inner.root.join("templates").join("base");
        for sub in [
            "C/Windows/System32/drivers",
            "C/Windows/Minidump",
            "C/Windows/Temp",
            "eventlog",
        ] {
            let p = base.join(sub);
            std::fs::create_dir_all(&p).map_err(BackendError::io("create template disk", &p))?;
        }
        Ok(base)
    }

    /// Removes a VM found on disk, whether or not this process created it: kills its guest
    /// process if it still runs, then deletes its directory. Used by `delete` and `gc`.
    pub fn remove_on_disk(&self, vm: &str) -> Result<()> {
        let dir = self.vm_dir(vm);
        if let Some(pid) = std::fs::read_to_string(dir.join(disk::GUEST_PID_FILE))
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
            && is_our_guest(pid, &dir)
        {
            // Guests run in their own process group (see `process::Supervised`).
            process::kill_group(pid);
        }
        disk::remove_tree(&dir)
    }
}

/// True if `pid` is a guest process serving a disk under `vm_dir` (guards against a reused
/// pid belonging to something else).
fn is_our_guest(pid: u32, vm_dir: &Path) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let needle = vm_dir.join(DISK_DIR);
    String::from_utf8_lossy(&cmdline).contains(&*needle.to_string_lossy())
}

impl Hypervisor for SimHypervisor {
    fn kind(&self) -> &'static str {
        "sim"
    }

    async fn create(&self, spec: &VmSpec) -> Result<()> {
        let dir = self.vm_dir(&spec.name);
        if dir.exists() {
            return Err(BackendError::VmState {
                vm: spec.name.clone(),
                operation: "create".into(),
                message: format!("{} already exists", dir.display()),
            });
        }
        let template = self.ensure_template()?;
        std::fs::create_dir_all(&dir).map_err(BackendError::io("create VM directory", &dir))?;
        let owner = OwnerRecord {
            vm: spec.name.clone(),
            run_id: spec.run_id.clone(),
            template: spec.template.clone(),
            owner_pid: std::process::id(),
            created: chrono::Utc::now(),
        };
        disk::write_atomic(
            &dir.join(disk::OWNER_FILE),
            &serde_json::to_vec_pretty(&owner).expect("owner record serialises"),
        )?;
        disk::copy_tree(&template, &dir.join(DISK_DIR))?;
        let vm = Arc::new(SimVm::new(dir, spec.clone()));
        self.inner
            .vms
            .lock()
            .expect("vm table lock")
            .insert(spec.name.clone(), vm);
        Ok(())
    }

    async fn start(&self, vm: &str) -> Result<()> {
        self.get(vm, "start")?
            .power_on(&self.inner.launcher, true)
            .await
    }

    async fn stop(&self, vm: &str, mode: StopMode) -> Result<()> {
        let handle = self.get(vm, "stop")?;
        if mode == StopMode::Graceful {
            let guest = SimGuest::new(vm, handle.disk());
            let mut rx = handle.subscribe();
            if guest.call_shutdown().await.is_ok() {
                let off = tokio::time::timeout(
                    Duration::from_secs(10),
                    rx.wait_for(|s| s.state == VmState::Off),
                )
                .await
                .is_ok_and(|r| r.is_ok());
                if off {
                    return handle.power_off().await;
                }
            }
        }
        handle.power_off().await
    }

    async fn wait_ready(&self, vm: &str, timeout: Duration) -> Result<String> {
        let handle = self.get(vm, "wait for ready")?;
        let guest = SimGuest::new(vm, handle.disk());
        let deadline = Instant::now() + timeout;
        let mut last_error = None;
        loop {
            let status = handle.status();
            match status.state {
                VmState::Off => {
                    return Err(BackendError::VmState {
                        vm: vm.to_owned(),
                        operation: "wait for ready".into(),
                        message: format!(
                            "the VM is off (guest exit code {:?}); see {}",
                            status.last_exit,
                            handle.dir.join(disk::CONSOLE_LOG).display()
                        ),
                    });
                }
                VmState::Starting | VmState::Running => {
                    let agent = agent::read_agent_info(&handle.disk());
                    if agent.as_ref().map(|a| Some(a.pid)) == Some(status.pid) {
                        match guest.boot_id().await {
                            Ok(id) => return Ok(id),
                            Err(e) => last_error = Some(lab_error::Chain(&e).to_string()),
                        }
                    }
                }
                VmState::Crashed | VmState::Stopping => {}
            }
            if Instant::now() >= deadline {
                return Err(BackendError::VmState {
                    vm: vm.to_owned(),
                    operation: "wait for ready".into(),
                    message: format!(
                        "the guest did not answer within {timeout:?}{}",
                        last_error
                            .map(|e| format!(" (last error: {e})"))
                            .unwrap_or_default()
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
    }

    async fn checkpoint(&self, vm: &str, name: &str) -> Result<()> {
        let handle = self.get(vm, "checkpoint")?;
        let target = handle.dir.join(CHECKPOINTS_DIR).join(name);
        disk::remove_tree(&target)?;
        disk::copy_tree(&handle.disk(), &target).map(|_| ())
    }

    async fn restore(&self, vm: &str, name: &str) -> Result<()> {
        let handle = self.get(vm, "restore checkpoint")?;
        let source = handle.dir.join(CHECKPOINTS_DIR).join(name);
        if !source.is_dir() {
            return Err(BackendError::VmState {
                vm: vm.to_owned(),
                operation: "restore checkpoint".into(),
                message: format!("no checkpoint named {name:?}"),
            });
        }
        let t0 = Instant::now();
        handle.power_off().await?;
        let off = t0.elapsed();
        disk::replace_tree(&source, &handle.disk())?;
        let copied = t0.elapsed();
        handle.power_on(&self.inner.launcher, false).await?;
        let spawned = t0.elapsed();
        self.wait_ready(vm, Duration::from_secs(30)).await?;
        tracing::debug!(
            vm,
            checkpoint = name,
            ?off,
            ?copied,
            ?spawned,
            ready = ?t0.elapsed(),
            "checkpoint restored"
        );
        Ok(())
    }

    async fn delete(&self, vm: &str) -> Result<()> {
        let handle = self.inner.vms.lock().expect("vm table lock").remove(vm);
        if let Some(h) = handle {
            h.power_off().await?;
        }
        self.remove_on_disk(vm)
    }

    async fn state(&self, vm: &str) -> Result<VmState> {
        Ok(self.get(vm, "query state")?.status().state)
    }

    async fn heartbeat(&self, vm: &str) -> Result<bool> {
        let handle = self.get(vm, "heartbeat")?;
        if handle.status().state != VmState::Running && handle.status().state != VmState::Starting {
            return Ok(false);
        }
        let guest = SimGuest::new(vm, handle.disk());
        Ok(
            tokio::time::timeout(Duration::from_secs(2), guest.boot_id())
                .await
                .map(|r| r.is_ok())
                .unwrap_or(false),
        )
    }

    async fn inject_nmi(&self, vm: &str) -> Result<()> {
        self.get(vm, "inject NMI")?.nmi().await
    }

    async fn console_len(&self, vm: &str) -> Result<Option<u64>> {
        let path = self
            .get(vm, "read the console log")?
            .dir
            .join(disk::CONSOLE_LOG);
        match std::fs::metadata(&path) {
            Ok(m) => Ok(Some(m.len())),
            // No guest has started yet: nothing written so far.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Some(0)),
            Err(e) => Err(BackendError::io("read the console log", &path)(e)),
        }
    }

    async fn console_since(
        &self,
        vm: &str,
        from: u64,
        max: usize,
    ) -> Result<Option<ConsoleSegment>> {
        let path = self
            .get(vm, "read the console log")?
            .dir
            .join(disk::CONSOLE_LOG);
        disk::read_from(&path, from, max).map(Some)
    }

    async fn list_owned(&self) -> Result<Vec<OwnedVm>> {
        let vms_dir = self.inner.root.join("vms");
        let mut out = Vec::new();
        let entries = match std::fs::read_dir(&vms_dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => {
                return Err(BackendError::Io {
                    what: "list VMs".into(),
                    path: vms_dir,
                    source: e,
                });
            }
        };
        for entry in entries.flatten() {
            let dir = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let owner = disk::read_owner(&dir);
            let known = self
                .inner
                .vms
                .lock()
                .expect("vm table lock")
                .get(&name)
                .cloned();
            let state = match known {
                Some(h) => h.status().state,
                None => {
                    let pid = std::fs::read_to_string(dir.join(disk::GUEST_PID_FILE))
                        .ok()
                        .and_then(|s| s.trim().parse::<u32>().ok());
                    if pid.is_some_and(|p| is_our_guest(p, &dir)) {
                        VmState::Running
                    } else {
                        VmState::Off
                    }
                }
            };
            out.push(OwnedVm {
                name,
                run_id: owner.as_ref().map(|o| o.run_id.clone()).unwrap_or_default(),
                template: owner
                    .as_ref()
                    .map(|o| o.template.clone())
                    .unwrap_or_default(),
                state,
                owner_alive: owner.map(|o| process::pid_alive(o.owner_pid)),
                host: None,
                owner: None,
                age: None,
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn guest(&self, vm: &str) -> Result<AnyGuest> {
        let handle = self.get(vm, "connect to guest")?;
        if handle.status().state == VmState::Off {
            return Err(BackendError::VmState {
                vm: vm.to_owned(),
                operation: "connect to guest".into(),
                message: "the VM is off".into(),
            });
        }
        Ok(AnyGuest::Sim(SimGuest::new(vm, handle.disk())))
    }
}
