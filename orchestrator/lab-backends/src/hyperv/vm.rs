//! `Hypervisor` for Hyper-V: placement of VMs on hosts by capacity, VM lifecycle through
//! host scripts, readiness (heartbeat, then a round trip into the guest), garbage
//! collection by the tag in each VM's Notes.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use super::error::PsError;
use super::health::{self, HealthNeeds, HostFacts, HostReport};
use super::host::{AnyPsHost, call};
use super::lease::{LEASE_TERM, Lease};
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
    /// Hosts that take no new VM (failed their health check, or lost mid-run), with why.
    drained: Mutex<BTreeMap<usize, String>>,
    /// VM name -> the boot id its guest last reported beside another result, until taken
    /// (`Guest::take_seen_boot_id`).
    pub(super) seen_boot: Mutex<HashMap<String, String>>,
    /// VM name -> its tag, for lease renewal.
    pub(super) tags: Mutex<HashMap<String, VmTag>>,
    pub(super) renewing: AtomicBool,
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
                seen_boot: Default::default(),
                secrets: Default::default(),
                guest_transports: Default::default(),
                drained: Default::default(),
                tags: Default::default(),
                renewing: AtomicBool::new(false),
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
        match call(self.host(i), script, self.inner.config.timing.op_timeout).await {
            Ok(v) => Ok(v),
            Err(e) => {
                self.notice_loss(i, &e).await;
                Err(e.into_backend(vm, false))
            }
        }
    }

    /// After a host call failed without an answer from PowerShell (transport, timeout):
    /// a host that does not answer a ping either is lost, and takes no new VM.
    async fn notice_loss(&self, i: usize, e: &PsError) {
        if !matches!(
            e,
            PsError::Transport { .. } | PsError::Timeout { .. } | PsError::Spawn { .. }
        ) || self.is_drained(i)
        {
            return;
        }
        let probe = call::<serde_json::Value, _>(
            self.host(i),
            &hs::ping(),
            self.inner.config.timing.op_timeout,
        )
        .await;
        if let Err(p) = probe {
            let reason = format!(
                "lost mid-run: {} (and a ping: {})",
                lab_error::Chain(e),
                lab_error::Chain(&p)
            );
            tracing::error!(host = %self.inner.config.hosts[i].name, "{reason}");
            self.drain(i, reason);
        }
    }

    fn is_drained(&self, i: usize) -> bool {
        self.inner
            .drained
            .lock()
            .expect("drained lock")
            .contains_key(&i)
    }

    /// Takes host `i` out of placement (its VMs stay where they are).
    pub fn drain(&self, i: usize, reason: String) {
        self.inner
            .drained
            .lock()
            .expect("drained lock")
            .entry(i)
            .or_insert(reason);
    }

    /// Drained hosts by name, with why, in lab-file order.
    pub fn drained(&self) -> Vec<(String, String)> {
        self.inner
            .drained
            .lock()
            .expect("drained lock")
            .iter()
            .map(|(i, r)| (self.inner.config.hosts[*i].name.clone(), r.clone()))
            .collect()
    }

    /// Why no host can take a new VM.
    fn no_room(&self) -> String {
        let drained = self.drained();
        if drained.len() == self.inner.hosts.len() {
            let why: Vec<String> = drained.iter().map(|(h, r)| format!("{h} {r}")).collect();
            format!("no host of the lab can take a VM: {}", why.join("; "))
        } else {
            "every host of the lab is at its capacity".into()
        }
    }

    /// Whether a new VM would find a slot on a host that is not drained.
    pub fn has_room(&self) -> bool {
        self.pick_host().is_some()
    }

    /// The health check of every host, run at once on all of them (one script each): a
    /// host that fails it is drained with the reason. Hashing a base disk can take
    /// minutes, so the check gets the transfer timeout when it hashes.
    pub async fn check_hosts(&self, needs: &HealthNeeds) -> Vec<HostReport> {
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..self.inner.hosts.len() {
            let hv = self.clone();
            let needs = needs.clone();
            tasks.spawn(async move { (i, hv.check_host(i, &needs).await) });
        }
        let mut reports: Vec<(usize, Option<String>)> = Vec::new();
        while let Some(r) = tasks.join_next().await {
            match r {
                Ok(r) => reports.push(r),
                Err(e) => tracing::error!("a host health check task failed: {e}"),
            }
        }
        reports.sort_by_key(|(i, _)| *i);
        reports
            .into_iter()
            .map(|(i, problem)| {
                let host = &self.inner.config.hosts[i];
                if let Some(p) = &problem {
                    self.drain(i, format!("failed its health check: {p}"));
                }
                HostReport {
                    host: host.name.clone(),
                    capacity: host.capacity,
                    problem,
                }
            })
            .collect()
    }

    async fn check_host(&self, i: usize, needs: &HealthNeeds) -> Option<String> {
        let host = &self.inner.config.hosts[i];
        let hashing: Vec<String> = needs
            .bases
            .iter()
            .filter(|(_, h)| h.is_some())
            .map(|(p, _)| p.clone())
            .collect();
        let timing = self.inner.config.timing;
        let timeout = if hashing.is_empty() {
            timing.op_timeout
        } else {
            timing.transfer_timeout
        };
        let script = hs::health(
            &host.vm_dir,
            host.switch.as_deref(),
            needs.bases.iter().map(|(p, _)| p.clone()).collect(),
            hashing,
        );
        match call::<HostFacts, _>(self.host(i), &script, timeout).await {
            Ok(facts) => {
                let p = health::problems(host, needs, &facts);
                (!p.is_empty()).then(|| p.join("; "))
            }
            Err(e) => Some(format!("unreachable: {}", lab_error::Chain(&e))),
        }
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
    pub(super) async fn locate(&self, vm: &str, operation: &str) -> Result<usize> {
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
        self.pick_host_in(&table)
    }

    /// `pick_host` over a VM table the caller holds locked, so that picking a host and
    /// taking its slot are one step: two creates at once cannot both take a host's last slot.
    fn pick_host_in(&self, table: &HashMap<String, (usize, String)>) -> Option<usize> {
        let drained = self.inner.drained.lock().expect("drained lock").clone();
        let mut used = vec![0u32; self.inner.hosts.len()];
        for (i, _) in table.values() {
            used[*i] += 1;
        }
        self.inner
            .config
            .hosts
            .iter()
            .enumerate()
            .filter(|(i, h)| used[*i] < h.capacity && !drained.contains_key(i))
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
        // Pick the host and reserve its slot under one lock, before the slow create, so
        // concurrent creates spread out and never exceed a host's capacity.
        let i = {
            let mut table = self.inner.vms.lock().expect("vm table lock");
            if table.contains_key(&spec.name) {
                return Err(BackendError::VmState {
                    vm: spec.name.clone(),
                    operation: "create".into(),
                    message: "a VM of that name already exists in this lab session".into(),
                });
            }
            let picked = self.pick_host_in(&table);
            if let Some(i) = picked {
                table.insert(spec.name.clone(), (i, spec.template.clone()));
            }
            picked
        };
        let i = i.ok_or_else(|| BackendError::VmState {
            vm: spec.name.clone(),
            operation: "create".into(),
            message: self.no_room(),
        })?;
        let host = &self.inner.config.hosts[i];
        let tag = VmTag {
            hvlab: 1,
            run_id: spec.run_id.clone(),
            template: spec.template.clone(),
            lease: Some(Lease::mine(LEASE_TERM)),
        };
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
            notes: tag.notes(),
        };
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
        self.inner
            .tags
            .lock()
            .expect("tag lock")
            .insert(spec.name.clone(), tag);
        self.start_renewing();
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
        let hb: Heartbeat = self.host_call(i, vm, &hs::restore(vm, name)).await?;
        // The restore script read the heartbeat: when it is already up, only the guest's
        // answer is left to wait for (its boot id, kept for the unit that follows).
        if hb.alive() && self.guest_handle(vm)?.boot_id().await.is_ok() {
            return Ok(());
        }
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
        self.inner.tags.lock().expect("tag lock").remove(vm);
        self.inner
            .seen_boot
            .lock()
            .expect("boot id lock")
            .remove(vm);
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
        for (i, listed) in self.list_owned_by_host().await.into_iter().enumerate() {
            let host = &self.inner.config.hosts[i].name;
            out.extend(listed.map_err(|e: PsError| e.into_backend(host, false))?);
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn guest(&self, vm: &str) -> Result<AnyGuest> {
        Ok(AnyGuest::HyperV(self.guest_handle(vm)?))
    }

    // A Hyper-V VM's COM ports are not captured unless one is piped to a file; until the
    // lab sets that up (docs/hyperv.md), there is no console log to keep.
    async fn console_len(&self, _vm: &str) -> Result<Option<u64>> {
        Ok(None)
    }

    async fn console_since(
        &self,
        _vm: &str,
        _from: u64,
        _max: usize,
    ) -> Result<Option<crate::model::ConsoleSegment>> {
        Ok(None)
    }
}
