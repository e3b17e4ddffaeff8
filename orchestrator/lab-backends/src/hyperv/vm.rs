//! `Hypervisor` for Hyper-V: placement of VMs on hosts by capacity, VM lifecycle through
//! host scripts, readiness (heartbeat, then a round trip into the guest), garbage
//! collection by the tag in each VM's Notes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use super::error::PsError;
use super::host::{AnyPsHost, call};
use super::parse::{self, Heartbeat, List, VmInfo, VmTag};
use super::script::{PsValue, Script};
use super::scripts::host as hs;
use super::{HyperVConfig, HyperVGuest, TemplateConfig};
use crate::error::{BackendError, Result};
use crate::guest::{AnyGuest, Guest};
use crate::hypervisor::Hypervisor;
use crate::model::{OwnedVm, StopMode, VmSpec, VmState};

/// The Hyper-V hypervisor. Cheap to clone; clones share the VM table.
#[derive(Debug, Clone)]
pub struct HyperV {
    pub(super) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(super) struct Inner {
    pub(super) config: HyperVConfig,
    pub(super) hosts: Vec<Arc<AnyPsHost>>,
    /// VM name -> (host index, template name) for VMs this process created.
    vms: Mutex<HashMap<String, (usize, String)>>,
    /// Guest passwords read so far, by template.
    secrets: Mutex<HashMap<String, PsValue>>,
    /// Open WinRM/SSH connections to guests, by VM.
    pub(super) guest_transports: Mutex<HashMap<String, Arc<lab_transport::AnyTransport>>>,
}

impl HyperV {
    /// `hosts[i]` runs the scripts of `config.hosts[i]`.
    pub fn new(config: HyperVConfig, hosts: Vec<Arc<AnyPsHost>>) -> Self {
        assert_eq!(
            config.hosts.len(),
            hosts.len(),
            "one PowerShell host per configured host"
        );
        HyperV {
            inner: Arc::new(Inner {
                config,
                hosts,
                vms: Default::default(),
                secrets: Default::default(),
                guest_transports: Default::default(),
            }),
        }
    }

    pub fn config(&self) -> &HyperVConfig {
        &self.inner.config
    }

    pub(super) fn host(&self, i: usize) -> &AnyPsHost {
        &self.inner.hosts[i]
    }

    pub(super) fn template(&self, name: &str) -> Option<&TemplateConfig> {
        self.inner.config.templates.iter().find(|t| t.name == name)
    }

    /// Runs a host script about `vm` on host `i` and parses its result.
    pub(super) async fn host_call<T: DeserializeOwned>(
        &self,
        i: usize,
        vm: &str,
        script: &Script,
    ) -> Result<T> {
        call(self.host(i), script, self.inner.config.timing.op_timeout)
            .await
            .map_err(|e| e.into_backend(vm, false))
    }

    /// The guest password of a template as a script value (read once, or a placeholder in
    /// a dry run).
    pub(super) fn guest_password(&self, template: &TemplateConfig) -> Result<PsValue> {
        let mut cache = self.inner.secrets.lock().expect("secret cache lock");
        if let Some(v) = cache.get(&template.name) {
            return Ok(v.clone());
        }
        let Some(r) = &template.guest.password else {
            return Ok(PsValue::Str(String::new()));
        };
        let value = if self.inner.config.read_secrets {
            PsValue::Secret(r.resolve().map_err(|e| BackendError::VmState {
                vm: template.name.clone(),
                operation: "read the guest credentials of template".into(),
                message: e.to_string(),
            })?)
        } else {
            PsValue::Unread(format!("{r:?}"))
        };
        cache.insert(template.name.clone(), value.clone());
        Ok(value)
    }

    /// Host and template of a VM this process created.
    pub(super) fn placed(&self, vm: &str) -> Option<(usize, String)> {
        self.inner
            .vms
            .lock()
            .expect("vm table lock")
            .get(vm)
            .cloned()
    }

    /// The host holding `vm`: from the table, else by asking each host.
    async fn locate(&self, vm: &str, operation: &str) -> Result<usize> {
        if let Some((i, _)) = self.placed(vm) {
            return Ok(i);
        }
        for i in 0..self.inner.hosts.len() {
            if self
                .host_call::<VmInfo>(i, vm, &hs::state(vm))
                .await
                .is_ok()
            {
                return Ok(i);
            }
        }
        Err(BackendError::VmState {
            vm: vm.to_owned(),
            operation: operation.to_owned(),
            message: "no such VM on any host of this lab".into(),
        })
    }

    /// The host with the most room left, if any has room.
    fn pick_host(&self) -> Option<usize> {
        let table = self.inner.vms.lock().expect("vm table lock");
        let mut used = vec![0u32; self.inner.hosts.len()];
        for (i, _) in table.values() {
            used[*i] += 1;
        }
        self.inner
            .config
            .hosts
            .iter()
            .enumerate()
            .filter(|(i, h)| used[*i] < h.capacity)
            .max_by_key(|(i, h)| {
                // Most free slots first; ties go to the first host in the lab file.
                (h.capacity - used[*i], std::cmp::Reverse(*i))
            })
            .map(|(i, _)| i)
    }

    async fn heartbeat_info(&self, vm: &str) -> Result<Heartbeat> {
        let i = self.locate(vm, "read the heartbeat").await?;
        self.host_call(i, vm, &hs::heartbeat(vm)).await
    }

    /// The guest's first routable address (link-local ones skipped).
    pub async fn address(&self, vm: &str) -> Result<Option<String>> {
        let i = self.locate(vm, "discover the address").await?;
        let list: List<String> = self.host_call(i, vm, &hs::addresses(vm)).await?;
        Ok(parse::pick_address(&list.0))
    }

    fn guest_handle(&self, vm: &str) -> Result<HyperVGuest> {
        let (host, template) = self.placed(vm).ok_or_else(|| BackendError::VmState {
            vm: vm.to_owned(),
            operation: "connect to guest".into(),
            message: "no such VM in this lab session".into(),
        })?;
        Ok(HyperVGuest::new(self.clone(), vm, host, &template))
    }

    async fn probe_ready(&self, vm: &str) -> Result<String> {
        let hb = self.heartbeat_info(vm).await?;
        if hb.state == "Off" {
            return Err(BackendError::VmState {
                vm: vm.to_owned(),
                operation: "wait for ready".into(),
                message: "the VM is off".into(),
            });
        }
        if !hb.alive() {
            return Err(BackendError::connection(
                vm,
                format!(
                    "the heartbeat is {} (VM {})",
                    hb.status.as_deref().unwrap_or("not reported"),
                    hb.state
                ),
            ));
        }
        self.guest_handle(vm)?.boot_id().await
    }
}

impl Hypervisor for HyperV {
    fn kind(&self) -> &'static str {
        "hyperv"
    }

    async fn create(&self, spec: &VmSpec) -> Result<()> {
        let template = self
            .template(&spec.template)
            .ok_or_else(|| BackendError::VmState {
                vm: spec.name.clone(),
                operation: "create".into(),
                message: format!("the lab has no Hyper-V template {:?}", spec.template),
            })?
            .clone();
        let i = self.pick_host().ok_or_else(|| BackendError::VmState {
            vm: spec.name.clone(),
            operation: "create".into(),
            message: "every host of the lab is at its capacity".into(),
        })?;
        let host = &self.inner.config.hosts[i];
        let new = hs::NewVm {
            name: spec.name.clone(),
            vm_root: host.vm_dir.clone(),
            base_vhdx: template.base_vhdx.clone(),
            generation: template.generation,
            memory_bytes: spec.memory_mb * 1024 * 1024,
            vcpus: spec.vcpus,
            secure_boot: template.secure_boot,
            checkpoint_type: template.checkpoint.as_str(),
            switch: host.switch.clone(),
            notes: VmTag {
                hvlab: 1,
                run_id: spec.run_id.clone(),
                template: spec.template.clone(),
            }
            .notes(),
        };
        // Reserve the slot before the slow create so concurrent creates spread out.
        {
            let mut table = self.inner.vms.lock().expect("vm table lock");
            if table.contains_key(&spec.name) {
                return Err(BackendError::VmState {
                    vm: spec.name.clone(),
                    operation: "create".into(),
                    message: "a VM of that name already exists in this lab session".into(),
                });
            }
            table.insert(spec.name.clone(), (i, spec.template.clone()));
        }
        let created: Result<serde_json::Value> =
            self.host_call(i, &spec.name, &hs::create(&new)).await;
        if let Err(e) = created {
            self.inner
                .vms
                .lock()
                .expect("vm table lock")
                .remove(&spec.name);
            return Err(e);
        }
        Ok(())
    }

    async fn start(&self, vm: &str) -> Result<()> {
        let i = self.locate(vm, "start").await?;
        self.host_call::<serde_json::Value>(i, vm, &hs::start(vm))
            .await
            .map(|_| ())
    }

    async fn stop(&self, vm: &str, mode: StopMode) -> Result<()> {
        let i = self.locate(vm, "stop").await?;
        let script = hs::stop(vm, mode == StopMode::TurnOff);
        self.host_call::<serde_json::Value>(i, vm, &script)
            .await
            .map(|_| ())
    }

    /// Heartbeat, then the boot id read inside the guest. Boot-time failures (no heartbeat
    /// yet, PowerShell Direct not up, credentials refused before logon starts, a broken
    /// session) are retried until `timeout`; the last one is reported if it runs out. A VM
    /// that is off or missing fails at once.
    async fn wait_ready(&self, vm: &str, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        let mut last: String;
        loop {
            match self.probe_ready(vm).await {
                Ok(id) => return Ok(id),
                Err(e @ BackendError::VmState { .. }) => return Err(e),
                Err(e) => last = e.to_string(),
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(BackendError::VmState {
                    vm: vm.to_owned(),
                    operation: "wait for ready".into(),
                    message: format!(
                        "the guest did not answer within {timeout:?} (last error: {last})"
                    ),
                });
            }
            tokio::time::sleep(self.inner.config.timing.poll.min(deadline - now)).await;
        }
    }

    async fn checkpoint(&self, vm: &str, name: &str) -> Result<()> {
        let i = self.locate(vm, "checkpoint").await?;
        self.host_call::<serde_json::Value>(i, vm, &hs::checkpoint(vm, name))
            .await
            .map(|_| ())
    }

    async fn restore(&self, vm: &str, name: &str) -> Result<()> {
        let i = self.locate(vm, "restore checkpoint").await?;
        self.host_call::<serde_json::Value>(i, vm, &hs::restore(vm, name))
            .await?;
        let budget = self.inner.config.timing.op_timeout;
        self.wait_ready(vm, budget).await.map(|_| ())
    }

    async fn delete(&self, vm: &str) -> Result<()> {
        let candidates: Vec<usize> = match self.placed(vm) {
            Some((i, _)) => vec![i],
            None => (0..self.inner.hosts.len()).collect(),
        };
        let mut failure = None;
        for i in candidates {
            let script = hs::remove(vm, &self.inner.config.hosts[i].vm_dir);
            if let Err(e) = self.host_call::<serde_json::Value>(i, vm, &script).await {
                failure = Some(e);
            }
        }
        if let Some(e) = failure {
            return Err(e);
        }
        self.inner.vms.lock().expect("vm table lock").remove(vm);
        self.inner
            .guest_transports
            .lock()
            .expect("transport lock")
            .remove(vm);
        Ok(())
    }

    async fn state(&self, vm: &str) -> Result<VmState> {
        let i = self.locate(vm, "query state").await?;
        let info: VmInfo = self.host_call(i, vm, &hs::state(vm)).await?;
        parse::vm_state(&info.state).ok_or_else(|| BackendError::Protocol {
            vm: vm.to_owned(),
            message: format!("unknown Hyper-V VM state {:?}", info.state),
        })
    }

    async fn heartbeat(&self, vm: &str) -> Result<bool> {
        Ok(self.heartbeat_info(vm).await?.alive())
    }

    async fn inject_nmi(&self, vm: &str) -> Result<()> {
        let i = self.locate(vm, "inject NMI").await?;
        self.host_call::<serde_json::Value>(i, vm, &hs::inject_nmi(vm))
            .await
            .map(|_| ())
    }

    async fn list_owned(&self) -> Result<Vec<OwnedVm>> {
        let mut out = Vec::new();
        for i in 0..self.inner.hosts.len() {
            let host = &self.inner.config.hosts[i].name;
            let list: List<VmInfo> = call(
                self.host(i),
                &hs::list_owned(),
                self.inner.config.timing.op_timeout,
            )
            .await
            .map_err(|e: PsError| e.into_backend(host, false))?;
            for v in list.0 {
                let tag = v.notes.as_deref().and_then(VmTag::from_notes);
                out.push(OwnedVm {
                    state: parse::vm_state(&v.state).unwrap_or(VmState::Off),
                    run_id: tag.as_ref().map(|t| t.run_id.clone()).unwrap_or_default(),
                    template: tag.map(|t| t.template).unwrap_or_default(),
                    name: v.name,
                    // Another machine's orchestrator cannot be checked from here.
                    owner_alive: None,
                });
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn guest(&self, vm: &str) -> Result<AnyGuest> {
        Ok(AnyGuest::HyperV(self.guest_handle(vm)?))
    }
}
